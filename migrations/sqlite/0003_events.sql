-- Events for SQLite: the tables of migrations/postgres/0003_events.sql, translated. The
-- counters table already exists here (0001).

CREATE TABLE events (
    id            TEXT PRIMARY KEY,
    seq           INTEGER UNIQUE,
    type          TEXT NOT NULL,
    subject       TEXT NOT NULL,
    time          INTEGER NOT NULL,
    severity      TEXT,
    component_ids TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(component_ids)),
    data          TEXT NOT NULL CHECK (json_valid(data)),
    public_data   TEXT CHECK (public_data IS NULL OR json_valid(public_data))
);
CREATE INDEX events_unsequenced_idx ON events (id) WHERE seq IS NULL;
CREATE INDEX events_subject_idx ON events (subject, seq);

INSERT INTO counters (name, value) VALUES ('event_seq', 0);
