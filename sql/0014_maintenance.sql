-- Maintenance that waits for the players (issue 26): a restart or stop of a live session once
-- its server is empty or at a deadline, with warnings to the players on the way.

CREATE TABLE maintenance (
    maintenance_id  bigserial PRIMARY KEY,
    session_id      bigint NOT NULL REFERENCES sessions (session_id) ON DELETE CASCADE,
    action          text NOT NULL CHECK (action IN ('restart', 'stop')),
    -- waiting (for the players) → stopping (restart: the stop is sent, the start comes when the
    -- session has ended) → done | cancelled | failed.
    status          text NOT NULL DEFAULT 'waiting' CHECK (status IN
                    ('waiting', 'stopping', 'done', 'cancelled', 'failed')),
    deadline        timestamptz NOT NULL,
    -- A console line with {minutes}, sent at each mark (seconds before the deadline).
    warn_command    text,
    warn_at_seconds integer[] NOT NULL DEFAULT '{}',
    warned_seconds  integer[] NOT NULL DEFAULT '{}',
    -- The last player count seen, why it acted (or failed, or was cancelled).
    players_seen    integer,
    reason          text,
    new_session_id  bigint,
    created_by      text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    acted_at        timestamptz,
    ended_at        timestamptz
);
-- One maintenance at a time per session.
CREATE UNIQUE INDEX maintenance_one_active_idx ON maintenance (session_id)
    WHERE status IN ('waiting', 'stopping');
CREATE INDEX maintenance_session_idx ON maintenance (session_id, maintenance_id);
