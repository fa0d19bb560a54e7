-- Resource limits per config (memory, CPU, processes, IO through the session's cgroup; the
-- disk as a soft limit checked by the agent), and what the cgroup says of each session.

ALTER TABLE game_configs
    ADD COLUMN resource_limits jsonb NOT NULL DEFAULT '{}'::jsonb;

ALTER TABLE session_samples
    ADD COLUMN memory_peak_bytes bigint,
    ADD COLUMN io_read_bytes bigint,
    ADD COLUMN disk_bytes bigint;
