-- Day two: readiness and liveness probes per config, why a session last exited, what
-- placement needs (a config's memory estimate, each host's memory and port range), and the
-- Unix user and limits a game runs with.

ALTER TABLE game_configs
    ADD COLUMN readiness jsonb,
    ADD COLUMN liveness jsonb,
    ADD COLUMN memory_estimate_mb integer NOT NULL DEFAULT 0 CHECK (memory_estimate_mb >= 0),
    ADD COLUMN run_as text,
    ADD COLUMN max_open_files integer CHECK (max_open_files > 0),
    ADD COLUMN max_processes integer CHECK (max_processes > 0);

ALTER TABLE sessions ADD COLUMN last_exit_reason text;

-- From the host's heartbeat (/proc/meminfo): NULL until a host new enough reports it.
ALTER TABLE servers
    ADD COLUMN memory_total_bytes bigint,
    ADD COLUMN memory_available_bytes bigint;

-- Live sessions by deployment: a host's live count for /status/workers from the index alone.
CREATE INDEX sessions_live_sgc_idx ON sessions (sgc_id)
    WHERE status IN ('pending', 'starting', 'running', 'stopping');

-- The ports `deploy --port auto` picks from, as the host's agent reports them (HOST_PORT_RANGE).
ALTER TABLE servers
    ADD COLUMN port_range_low integer NOT NULL DEFAULT 7000,
    ADD COLUMN port_range_high integer NOT NULL DEFAULT 8000,
    ADD CONSTRAINT servers_port_range_check
        CHECK (port_range_low BETWEEN 1 AND port_range_high AND port_range_high <= 65535);
