-- Usage history (issue 26): one point per session per minute (the first heartbeat sample of
-- the minute), written with the latest sample in the processor's heartbeat batch and pruned
-- after SAMPLE_HISTORY_DAYS.

CREATE TABLE session_history (
    session_id     bigint NOT NULL REFERENCES sessions (session_id) ON DELETE CASCADE,
    bucket         timestamptz NOT NULL,
    cpu_percent    real NOT NULL,
    rss_bytes      bigint NOT NULL,
    -- NULL: the count was unknown.
    players_online integer,
    PRIMARY KEY (session_id, bucket)
);
CREATE INDEX session_history_bucket_idx ON session_history (bucket);
