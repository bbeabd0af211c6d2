-- Notifications for SQLite: the tables of migrations/postgres/0004_notifications.sql,
-- translated.

CREATE TABLE subscriptions (
    id                         TEXT PRIMARY KEY,
    channel                    TEXT NOT NULL CHECK (channel IN ('webhook', 'slack', 'teams', 'email')),
    target                     TEXT NOT NULL,
    event_types                TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(event_types)),
    min_severity               TEXT CHECK (min_severity IN ('sev1', 'sev2', 'sev3', 'sev4')),
    component_ids              TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(component_ids)),
    include_internal           INTEGER NOT NULL DEFAULT 0,
    paused                     INTEGER NOT NULL DEFAULT 0,
    disabled_at                INTEGER,
    disabled_reason            TEXT,
    failing_since              INTEGER,
    secret                     TEXT,
    previous_secret            TEXT,
    previous_secret_expires_at INTEGER,
    created_at                 INTEGER NOT NULL,
    updated_at                 INTEGER NOT NULL,
    created_by                 TEXT NOT NULL,
    version                    INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX subscriptions_created_idx ON subscriptions (created_at DESC, id DESC);

CREATE TABLE deliveries (
    id               TEXT PRIMARY KEY,
    event_id         TEXT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    subscription_id  TEXT NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    event_type       TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'sending', 'delivered', 'failed', 'cancelled')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER,
    lease_owner      TEXT,
    lease_expires_at INTEGER,
    last_attempt_at  INTEGER,
    last_status_code INTEGER,
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    delivered_at     INTEGER
);
CREATE INDEX deliveries_due_idx ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_lease_idx ON deliveries (lease_expires_at) WHERE status = 'sending';
CREATE INDEX deliveries_subscription_idx ON deliveries (subscription_id, created_at DESC, id DESC);

CREATE TABLE delivery_attempts (
    id               TEXT PRIMARY KEY,
    delivery_id      TEXT NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    subscription_id  TEXT NOT NULL,
    attempted_at     INTEGER NOT NULL,
    status_code      INTEGER,
    latency_ms       INTEGER NOT NULL,
    response_excerpt TEXT,
    error            TEXT
);
CREATE INDEX delivery_attempts_delivery_idx ON delivery_attempts (delivery_id, attempted_at DESC, id DESC);
CREATE INDEX delivery_attempts_subscription_idx ON delivery_attempts (subscription_id, attempted_at DESC, id DESC);
