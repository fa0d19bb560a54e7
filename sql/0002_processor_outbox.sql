-- The processor's delivery guarantees: a transactional outbox of external events (published at
-- least once by the relay thread) and an inbox of applied message ids (no double application).

CREATE TABLE event_outbox (
    event_id     bigserial PRIMARY KEY,
    routing_key  text NOT NULL,
    payload      jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE processed_messages (
    message_id    text PRIMARY KEY,
    processed_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX processed_messages_age_idx ON processed_messages (processed_at);

CREATE INDEX servers_stale_idx ON servers (last_seen) WHERE status = 'online';
