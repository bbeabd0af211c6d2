-- Customer subscribers (double opt-in from the status page).
CREATE TABLE subscribers (
    id              uuid PRIMARY KEY,
    email           text NOT NULL,
    email_key       text NOT NULL UNIQUE,
    components      jsonb NOT NULL DEFAULT '[]',
    lang            text NOT NULL,
    status          text NOT NULL CHECK (status IN ('pending', 'confirmed', 'unsubscribed')),
    created_at      timestamptz NOT NULL,
    confirmed_at    timestamptz,
    unsubscribed_at timestamptz,
    mailed_at       timestamptz,
    mails_today     integer NOT NULL DEFAULT 0,
    updated_at      timestamptz NOT NULL
);
CREATE INDEX subscribers_status_idx ON subscribers (status, created_at DESC, id DESC);
-- Keys the service keeps for itself, shared by every replica (the key links are signed with).
CREATE TABLE service_keys (
    name       text PRIMARY KEY,
    value      bytea NOT NULL,
    created_at timestamptz NOT NULL
);
-- Mails that are no event's delivery (the confirmation mail), sent by the workers with
-- retries, once each.
CREATE TABLE mail_outbox (
    id              uuid PRIMARY KEY,
    subscriber_id   uuid REFERENCES subscribers (id) ON DELETE CASCADE,
    to_address      text NOT NULL,
    subject         text NOT NULL,
    text_body       text NOT NULL,
    html_body       text NOT NULL,
    headers         jsonb NOT NULL DEFAULT '[]',
    status          text NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    last_error      text,
    created_at      timestamptz NOT NULL,
    sent_at         timestamptz
);
CREATE INDEX mail_outbox_due_idx ON mail_outbox (next_attempt_at) WHERE status = 'pending';
