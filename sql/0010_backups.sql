-- Backups of a deployment's files to S3 (issue 24): the config's settings, one row per backup
-- and one per restore.

ALTER TABLE game_configs
    ADD COLUMN backup_policy jsonb NOT NULL DEFAULT '{}'::jsonb;

CREATE TABLE backups (
    backup_id     bigserial PRIMARY KEY,
    sgc_id        bigint NOT NULL REFERENCES server_game_configs (sgc_id),
    server_id     bigint NOT NULL REFERENCES servers (server_id),
    status        text NOT NULL DEFAULT 'pending' CHECK (status IN
                  ('pending', 'running', 'completed', 'failed', 'pruned', 'deleted')),
    note          text,
    pinned        boolean NOT NULL DEFAULT false,
    -- Where it lives: the archive, its manifest, and the multipart upload while it runs.
    s3_key        text NOT NULL,
    manifest_key  text NOT NULL,
    upload_id     text,
    part_size     bigint NOT NULL,
    -- The host's progress and result.
    bytes_done    bigint NOT NULL DEFAULT 0,
    bytes_total   bigint,
    size_bytes    bigint,
    file_count    integer,
    sha256        text,
    -- How long a running game's saves were paused (pre actions done → post actions sent).
    paused_ms     bigint,
    reason        text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    ended_at      timestamptz,
    -- Past this, a backup still pending or running is failed (the agent died or lost touch).
    finish_by     timestamptz NOT NULL
);
-- Two backups of one deployment never run at once.
CREATE UNIQUE INDEX backups_one_active_idx ON backups (sgc_id)
    WHERE status IN ('pending', 'running');
CREATE INDEX backups_sgc_idx ON backups (sgc_id, backup_id);
CREATE INDEX backups_overdue_idx ON backups (finish_by) WHERE status IN ('pending', 'running');

CREATE TABLE backup_restores (
    restore_id    bigserial PRIMARY KEY,
    backup_id     bigint NOT NULL REFERENCES backups (backup_id),
    sgc_id        bigint NOT NULL REFERENCES server_game_configs (sgc_id),
    status        text NOT NULL DEFAULT 'stopping' CHECK (status IN
                  ('stopping', 'restoring', 'completed', 'failed')),
    -- The session that was running (stopped first, started again after).
    stopped_session_id bigint REFERENCES sessions (session_id),
    started_session_id bigint REFERENCES sessions (session_id),
    reason        text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    ended_at      timestamptz,
    finish_by     timestamptz NOT NULL
);
CREATE UNIQUE INDEX backup_restores_one_active_idx ON backup_restores (sgc_id)
    WHERE status IN ('stopping', 'restoring');
