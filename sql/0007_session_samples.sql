-- What each session's game is doing, from its host's heartbeats: one row per session with the
-- latest sample (not a time series), replaced by each heartbeat and kept after the session ends.

CREATE TABLE session_samples (
    session_id   bigint PRIMARY KEY REFERENCES sessions (session_id) ON DELETE CASCADE,
    sampled_at   timestamptz NOT NULL,
    cpu_percent  real NOT NULL,
    rss_bytes    bigint NOT NULL,
    threads      integer NOT NULL,
    open_files   integer NOT NULL,
    processes    integer NOT NULL
);
