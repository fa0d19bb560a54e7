-- The database contract: hosts, games, game configs, deployments, sessions, ports, log references.

CREATE TABLE servers (
    server_id   bigserial PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (name <> ''),
    status      text NOT NULL DEFAULT 'offline' CHECK (status IN ('online', 'offline')),
    last_seen   timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE games (
    game_id     bigserial PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (name <> ''),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE game_configs (
    config_id            bigserial PRIMARY KEY,
    game_id              bigint NOT NULL REFERENCES games (game_id),
    name                 text NOT NULL CHECK (name <> ''),
    command              text NOT NULL CHECK (command <> ''),
    args                 jsonb NOT NULL DEFAULT '[]'::jsonb,
    env                  jsonb NOT NULL DEFAULT '{}'::jsonb,
    working_dir          text,
    stop_signal          text NOT NULL DEFAULT 'SIGTERM',
    stop_command         text,
    stop_timeout_seconds integer NOT NULL DEFAULT 30 CHECK (stop_timeout_seconds > 0),
    restart_policy       text NOT NULL DEFAULT 'never'
                         CHECK (restart_policy IN ('never', 'on-failure', 'always')),
    start_duration_ms    integer NOT NULL DEFAULT 1000 CHECK (start_duration_ms >= 0),
    port_definitions     jsonb NOT NULL DEFAULT '[]'::jsonb,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    UNIQUE (game_id, name)
);

CREATE TABLE server_game_configs (
    sgc_id          bigserial PRIMARY KEY,
    server_id       bigint NOT NULL REFERENCES servers (server_id),
    game_config_id  bigint NOT NULL REFERENCES game_configs (config_id),
    port_bindings   jsonb NOT NULL DEFAULT '[]'::jsonb,
    status          text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'retired')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (server_id, game_config_id)
);

CREATE TABLE sessions (
    session_id  bigserial PRIMARY KEY,
    sgc_id      bigint NOT NULL REFERENCES server_game_configs (sgc_id),
    status      text NOT NULL DEFAULT 'pending' CHECK (status IN
                ('pending', 'starting', 'running', 'stopping', 'stopped', 'crashed', 'lost')),
    started_at  timestamptz,
    ended_at    timestamptz,
    exit_code   integer,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sessions_sgc_idx ON sessions (sgc_id);
CREATE INDEX sessions_live_idx ON sessions (status)
    WHERE status IN ('pending', 'starting', 'running', 'stopping');

-- A row per port held by a live session; the primary key makes a double allocation impossible.
CREATE TABLE server_ports (
    server_id     bigint NOT NULL REFERENCES servers (server_id),
    port          integer NOT NULL CHECK (port BETWEEN 1 AND 65535),
    protocol      text NOT NULL DEFAULT 'tcp' CHECK (protocol IN ('tcp', 'udp')),
    session_id    bigint NOT NULL REFERENCES sessions (session_id) ON DELETE CASCADE,
    allocated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (server_id, port, protocol)
);
CREATE INDEX server_ports_session_idx ON server_ports (session_id);

CREATE TABLE log_references (
    log_id            bigserial PRIMARY KEY,
    session_id        bigint NOT NULL REFERENCES sessions (session_id),
    file_path         text NOT NULL,
    minute_timestamp  timestamptz NOT NULL,
    line_count        integer NOT NULL DEFAULT 0 CHECK (line_count >= 0),
    state             text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'archived', 'failed')),
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (session_id, minute_timestamp)
);
