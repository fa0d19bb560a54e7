-- Indexes for the read side (manman-status-api): session lists by status, recent failures.

CREATE INDEX sessions_status_id_idx ON sessions (status, session_id DESC);
CREATE INDEX sessions_failures_idx ON sessions (ended_at) WHERE status IN ('crashed', 'lost');
CREATE INDEX server_game_configs_server_idx ON server_game_configs (server_id);
