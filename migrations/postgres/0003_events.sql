-- Events: the transactional outbox and the event log. A change writes its events in its own
-- transaction with seq NULL; the sequencer (one at a time, under an advisory lock) gives
-- committed events their commit-order seq, so a reader after seq N never misses an event
-- that commits later with a smaller number.

CREATE TABLE events (
    id            uuid PRIMARY KEY,
    seq           bigint UNIQUE,
    type          text NOT NULL,
    subject       text NOT NULL,
    time          timestamptz NOT NULL,
    severity      text,
    component_ids jsonb NOT NULL DEFAULT '[]',
    data          jsonb NOT NULL,
    public_data   jsonb
);
CREATE INDEX events_unsequenced_idx ON events (id) WHERE seq IS NULL;
CREATE INDEX events_subject_idx ON events (subject, seq);

CREATE TABLE counters (
    name  text PRIMARY KEY,
    value bigint NOT NULL
);
INSERT INTO counters (name, value) VALUES ('event_seq', 0);
