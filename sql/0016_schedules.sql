-- Schedules (issue 26): a deployment's chores on a cron expression in a time zone, each a list
-- of steps; every firing is one row of schedule_runs (unique per schedule and minute, so a
-- firing is never run twice, whichever API replica claims it).

CREATE TABLE schedules (
    schedule_id       bigserial PRIMARY KEY,
    sgc_id            bigint NOT NULL REFERENCES server_game_configs (sgc_id) ON DELETE CASCADE,
    name              text NOT NULL,
    cron              text NOT NULL,
    timezone          text NOT NULL DEFAULT 'UTC',
    steps             jsonb NOT NULL,
    -- Skip the firing (recorded) when the deployment has no running session.
    only_when_running boolean NOT NULL DEFAULT false,
    paused            boolean NOT NULL DEFAULT false,
    -- NULL while paused.
    next_run_at       timestamptz,
    created_by        text NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX schedules_due_idx ON schedules (next_run_at) WHERE NOT paused;

CREATE TABLE schedule_runs (
    run_id          bigserial PRIMARY KEY,
    schedule_id     bigint NOT NULL REFERENCES schedules (schedule_id) ON DELETE CASCADE,
    scheduled_for   timestamptz NOT NULL,
    status          text NOT NULL DEFAULT 'running' CHECK (status IN
                    ('running', 'completed', 'failed', 'skipped')),
    -- The step to run next (from 0) and when; a restart or stop waits for its maintenance row,
    -- a backup for its backup row.
    step            integer NOT NULL DEFAULT 0,
    next_step_at    timestamptz,
    waiting_on      bigint,
    -- One entry per step run: {"step", "ok", "detail", "at"}.
    results         jsonb NOT NULL DEFAULT '[]'::jsonb,
    reason          text,
    started_at      timestamptz NOT NULL DEFAULT now(),
    ended_at        timestamptz,
    UNIQUE (schedule_id, scheduled_for)
);
CREATE INDEX schedule_runs_active_idx ON schedule_runs (next_step_at) WHERE status = 'running';
