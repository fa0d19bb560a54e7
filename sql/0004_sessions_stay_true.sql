-- Sessions stay true under faults: restart rules per config, why a session ended, its restarts
-- and last exit, and since when a host has been offline (hosts away too long lose their
-- sessions).

ALTER TABLE game_configs
    ADD COLUMN backoff_initial_ms  integer NOT NULL DEFAULT 1000 CHECK (backoff_initial_ms >= 100),
    ADD COLUMN backoff_max_ms      integer NOT NULL DEFAULT 60000 CHECK (backoff_max_ms >= backoff_initial_ms),
    ADD COLUMN retry_limit         integer NOT NULL DEFAULT 5 CHECK (retry_limit >= 0),
    ADD COLUMN reset_after_seconds integer NOT NULL DEFAULT 600 CHECK (reset_after_seconds >= 0);

ALTER TABLE sessions
    ADD COLUMN reason         text,
    ADD COLUMN restart_count  integer NOT NULL DEFAULT 0,
    ADD COLUMN last_exit_code integer,
    ADD COLUMN last_exit_at   timestamptz;

ALTER TABLE servers ADD COLUMN offline_since timestamptz;
UPDATE servers SET offline_since = updated_at WHERE status = 'offline';
CREATE INDEX servers_offline_idx ON servers (offline_since) WHERE status = 'offline';
