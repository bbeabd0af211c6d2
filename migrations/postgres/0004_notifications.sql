-- Notifications: subscriptions, one delivery per (event, subscription), and every attempt.
-- Workers claim due deliveries with FOR UPDATE SKIP LOCKED under a lease; nothing holds a
-- transaction across a network call.

CREATE TABLE subscriptions (
    id                         uuid PRIMARY KEY,
    channel                    text NOT NULL CHECK (channel IN ('webhook', 'slack', 'teams', 'email')),
    target                     text NOT NULL,
    event_types                jsonb NOT NULL DEFAULT '[]',
    min_severity               text CHECK (min_severity IN ('sev1', 'sev2', 'sev3', 'sev4')),
    component_ids              jsonb NOT NULL DEFAULT '[]',
    include_internal           boolean NOT NULL DEFAULT false,
    paused                     boolean NOT NULL DEFAULT false,
    disabled_at                timestamptz,
    disabled_reason            text,
    failing_since              timestamptz,
    secret                     text,
    previous_secret            text,
    previous_secret_expires_at timestamptz,
    created_at                 timestamptz NOT NULL,
    updated_at                 timestamptz NOT NULL,
    created_by                 text NOT NULL,
    version                    bigint NOT NULL DEFAULT 1
);
CREATE INDEX subscriptions_created_idx ON subscriptions (created_at DESC, id DESC);

CREATE TABLE deliveries (
    id               uuid PRIMARY KEY,
    event_id         uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    subscription_id  uuid NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    event_type       text NOT NULL,
    status           text NOT NULL CHECK (status IN ('pending', 'sending', 'delivered', 'failed', 'cancelled')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz,
    lease_owner      text,
    lease_expires_at timestamptz,
    last_attempt_at  timestamptz,
    last_status_code integer,
    last_error       text,
    created_at       timestamptz NOT NULL,
    delivered_at     timestamptz
);
CREATE INDEX deliveries_due_idx ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_lease_idx ON deliveries (lease_expires_at) WHERE status = 'sending';
CREATE INDEX deliveries_subscription_idx ON deliveries (subscription_id, created_at DESC, id DESC);

CREATE TABLE delivery_attempts (
    id               uuid PRIMARY KEY,
    delivery_id      uuid NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    subscription_id  uuid NOT NULL,
    attempted_at     timestamptz NOT NULL,
    status_code      integer,
    latency_ms       bigint NOT NULL,
    response_excerpt text,
    error            text
);
CREATE INDEX delivery_attempts_delivery_idx ON delivery_attempts (delivery_id, attempted_at DESC, id DESC);
CREATE INDEX delivery_attempts_subscription_idx ON delivery_attempts (subscription_id, attempted_at DESC, id DESC);
