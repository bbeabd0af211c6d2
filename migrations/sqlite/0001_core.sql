-- Core schema for SQLite: the tables and constraints of migrations/postgres/0001_core.sql,
-- translated. Timestamps are INTEGER microseconds since the Unix epoch (exact ordering and
-- comparison), ids are lower-case hyphenated UUID text (ordered like Postgres uuids), JSON is
-- TEXT. Text search uses an FTS5 trigram index kept in step by triggers.

CREATE TABLE components (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    description TEXT NOT NULL DEFAULT '',
    name_key    TEXT NOT NULL,
    group_name  TEXT,
    group_key   TEXT NOT NULL DEFAULT '',
    position    INTEGER NOT NULL DEFAULT 0,
    status      TEXT NOT NULL CHECK (status IN ('operational', 'degraded_performance', 'partial_outage',
                                                'major_outage', 'under_maintenance')),
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    version     INTEGER NOT NULL DEFAULT 1
);
CREATE UNIQUE INDEX components_name_key ON components (name_key);
CREATE INDEX components_order_idx ON components (group_key, position, name_key, id);

-- Postgres uses a sequence; here a counter row, advanced inside the writing transaction.
CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT INTO counters (name, value) VALUES ('incident_reference', 0);

CREATE TABLE incidents (
    id                       TEXT PRIMARY KEY,
    reference_number         INTEGER NOT NULL UNIQUE,
    title                    TEXT NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    summary                  TEXT NOT NULL DEFAULT '',
    search_text              TEXT NOT NULL,
    severity                 TEXT NOT NULL CHECK (severity IN ('sev1', 'sev2', 'sev3', 'sev4')),
    status                   TEXT NOT NULL CHECK (status IN ('investigating', 'identified', 'monitoring',
                                                             'resolved', 'closed')),
    impact                   TEXT NOT NULL CHECK (impact IN ('none', 'minor', 'major', 'critical')),
    affected_components      TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(affected_components)),
    affected_customers       INTEGER CHECK (affected_customers >= 0),
    eta                      INTEGER,
    workaround_availability  TEXT NOT NULL CHECK (workaround_availability IN ('unknown', 'available', 'none')),
    workaround_text          TEXT,
    cause_kind               TEXT NOT NULL CHECK (cause_kind IN ('unknown', 'internal', 'third_party')),
    cause_provider           TEXT,
    cause_external_reference TEXT,
    commander                TEXT,
    labels                   TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(labels)),
    related_incident_ids     TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(related_incident_ids)),
    root_cause               TEXT,
    resolution_summary       TEXT,
    reopen_count             INTEGER NOT NULL DEFAULT 0,
    started_at               INTEGER NOT NULL,
    detected_at              INTEGER NOT NULL,
    acknowledged_at          INTEGER,
    acknowledged_by          TEXT,
    identified_at            INTEGER,
    mitigated_at             INTEGER,
    resolved_at              INTEGER,
    closed_at                INTEGER,
    created_at               INTEGER NOT NULL,
    updated_at               INTEGER NOT NULL,
    version                  INTEGER NOT NULL DEFAULT 1
);

-- One index per list filter, each ending in the keyset order (newest first).
CREATE INDEX incidents_created_idx ON incidents (created_at DESC, id DESC);
CREATE INDEX incidents_status_idx ON incidents (status, created_at DESC, id DESC);
CREATE INDEX incidents_severity_idx ON incidents (severity, created_at DESC, id DESC);
CREATE INDEX incidents_open_idx ON incidents (created_at DESC, id DESC)
    WHERE status IN ('investigating', 'identified', 'monitoring');

CREATE VIRTUAL TABLE incidents_fts USING fts5(search_text, tokenize = 'trigram');
CREATE TRIGGER incidents_fts_insert AFTER INSERT ON incidents BEGIN
    INSERT INTO incidents_fts (rowid, search_text) VALUES (new.reference_number, new.search_text);
END;
CREATE TRIGGER incidents_fts_update AFTER UPDATE OF search_text ON incidents BEGIN
    UPDATE incidents_fts SET search_text = new.search_text WHERE rowid = new.reference_number;
END;
CREATE TRIGGER incidents_fts_delete AFTER DELETE ON incidents BEGIN
    DELETE FROM incidents_fts WHERE rowid = old.reference_number;
END;

CREATE TABLE incident_components (
    incident_id  TEXT NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    component_id TEXT NOT NULL,
    status       TEXT NOT NULL,
    PRIMARY KEY (incident_id, component_id)
);
CREATE INDEX incident_components_component_idx ON incident_components (component_id, incident_id);

CREATE TABLE incident_updates (
    id          TEXT PRIMARY KEY,
    incident_id TEXT NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    kind        TEXT NOT NULL CHECK (kind IN ('created', 'update', 'status_change', 'field_change',
                                              'acknowledgement')),
    body        TEXT NOT NULL,
    visibility  TEXT NOT NULL CHECK (visibility IN ('public', 'internal')),
    status_from TEXT,
    status_to   TEXT,
    changes     TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(changes)),
    author      TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX incident_updates_timeline_idx ON incident_updates (incident_id, created_at, id);

CREATE TABLE idempotency_keys (
    scope        TEXT NOT NULL,
    key          TEXT NOT NULL,
    request_hash BLOB NOT NULL,
    response     TEXT,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);
