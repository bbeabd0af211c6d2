-- The notifications confirmed subscribers get: one row per event and subscriber (so nobody
-- gets one twice), queued by the sequencer in the event's fan-out and sent by the workers
-- under a lease, with retries. `subject` (the incident or maintenance) lets a subscriber who
-- heard of something hear of its end even if its components changed since.
CREATE TABLE customer_mails (
    event_id        uuid NOT NULL,
    subscriber_id   uuid NOT NULL REFERENCES subscribers (id) ON DELETE CASCADE,
    subject         text NOT NULL,
    status          text NOT NULL CHECK (status IN ('pending', 'sent', 'failed', 'skipped')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    last_error      text,
    created_at      timestamptz NOT NULL,
    sent_at         timestamptz,
    PRIMARY KEY (event_id, subscriber_id)
);
CREATE INDEX customer_mails_due_idx ON customer_mails (next_attempt_at) WHERE status = 'pending';
CREATE INDEX customer_mails_subject_idx ON customer_mails (subject, subscriber_id);
CREATE INDEX customer_mails_subscriber_idx ON customer_mails (subscriber_id);
-- Operators search subscribers by address.
CREATE INDEX subscribers_confirmed_idx ON subscribers (status) WHERE status = 'confirmed';
