-- Customer subscribers (double opt-in from the status page).
CREATE TABLE subscribers (
    id              TEXT PRIMARY KEY,
    email           TEXT NOT NULL,
    email_key       TEXT NOT NULL UNIQUE,
    components      TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(components)),
    lang            TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'confirmed', 'unsubscribed')),
    created_at      INTEGER NOT NULL,
    confirmed_at    INTEGER,
    unsubscribed_at INTEGER,
    mailed_at       INTEGER,
    mails_today     INTEGER NOT NULL DEFAULT 0,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX subscribers_status_idx ON subscribers (status, created_at DESC, id DESC);
-- Keys the service keeps for itself, shared by every replica (the key links are signed with).
CREATE TABLE service_keys (
    name       TEXT PRIMARY KEY,
    value      BLOB NOT NULL,
    created_at INTEGER NOT NULL
);
-- Mails that are no event's delivery (the confirmation mail), sent by the workers with
-- retries, once each.
CREATE TABLE mail_outbox (
    id              TEXT PRIMARY KEY,
    subscriber_id   TEXT REFERENCES subscribers (id) ON DELETE CASCADE,
    to_address      TEXT NOT NULL,
    subject         TEXT NOT NULL,
    text_body       TEXT NOT NULL,
    html_body       TEXT NOT NULL,
    headers         TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(headers)),
    status          TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    sent_at         INTEGER
);
CREATE INDEX mail_outbox_due_idx ON mail_outbox (next_attempt_at) WHERE status = 'pending';
