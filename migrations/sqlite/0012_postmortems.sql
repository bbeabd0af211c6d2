-- no-transaction
-- Fixing it for good: the tables and constraints of migrations/postgres/0012_postmortems.sql.
-- SQLite cannot change a CHECK constraint in place, so `incidents` (for the `merged` status
-- and `merged_into`) and `incident_updates` (for the `merge` and `link` kinds) are rebuilt.
-- Other tables reference `incidents`: dropping it with foreign keys on would delete their
-- rows, so this migration runs outside sqlx's transaction, turns them off, and opens its own.
PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;

CREATE TABLE incidents_new (
    id                       TEXT PRIMARY KEY,
    reference_number         INTEGER NOT NULL UNIQUE,
    title                    TEXT NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    summary                  TEXT NOT NULL DEFAULT '',
    search_text              TEXT NOT NULL,
    severity                 TEXT NOT NULL CHECK (severity IN ('sev1', 'sev2', 'sev3', 'sev4')),
    status                   TEXT NOT NULL CHECK (status IN ('investigating', 'identified', 'monitoring',
                                                             'resolved', 'closed', 'merged')),
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
    version                  INTEGER NOT NULL DEFAULT 1,
    merged_into              TEXT REFERENCES incidents (id) ON DELETE CASCADE,
    -- The ids of affected_components, for the analytics (derived by the service).
    component_ids            TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(component_ids))
);
INSERT INTO incidents_new (id, reference_number, title, summary, search_text, severity, status, impact,
                           affected_components, affected_customers, eta, workaround_availability, workaround_text,
                           cause_kind, cause_provider, cause_external_reference, commander, labels,
                           related_incident_ids, root_cause, resolution_summary, reopen_count, started_at,
                           detected_at, acknowledged_at, acknowledged_by, identified_at, mitigated_at, resolved_at,
                           closed_at, created_at, updated_at, version, component_ids)
    SELECT id, reference_number, title, summary, search_text, severity, status, impact, affected_components,
           affected_customers, eta, workaround_availability, workaround_text, cause_kind, cause_provider,
           cause_external_reference, commander, labels, related_incident_ids, root_cause, resolution_summary,
           reopen_count, started_at, detected_at, acknowledged_at, acknowledged_by, identified_at, mitigated_at,
           resolved_at, closed_at, created_at, updated_at, version,
           (SELECT json_group_array(json_extract(c.value, '$.component_id')) FROM json_each(affected_components) c)
    FROM incidents;
DROP TABLE incidents;
ALTER TABLE incidents_new RENAME TO incidents;
CREATE INDEX incidents_created_idx ON incidents (created_at DESC, id DESC);
CREATE INDEX incidents_status_idx ON incidents (status, created_at DESC, id DESC);
CREATE INDEX incidents_severity_idx ON incidents (severity, created_at DESC, id DESC);
CREATE INDEX incidents_open_idx ON incidents (created_at DESC, id DESC)
    WHERE status IN ('investigating', 'identified', 'monitoring');
CREATE INDEX incidents_unacknowledged_idx ON incidents (created_at)
    WHERE acknowledged_at IS NULL AND status IN ('investigating', 'identified', 'monitoring');
CREATE INDEX incidents_merged_into_idx ON incidents (merged_into) WHERE merged_into IS NOT NULL;
CREATE INDEX incidents_stats_idx ON incidents (created_at, severity, status, acknowledged_at, resolved_at, reopen_count);
-- The search index (incidents_fts) is a table of its own and survives; its triggers went with
-- the old table.
CREATE TRIGGER incidents_fts_insert AFTER INSERT ON incidents BEGIN
    INSERT INTO incidents_fts (rowid, search_text) VALUES (new.reference_number, new.search_text);
END;
CREATE TRIGGER incidents_fts_update AFTER UPDATE OF search_text ON incidents BEGIN
    UPDATE incidents_fts SET search_text = new.search_text WHERE rowid = new.reference_number;
END;
CREATE TRIGGER incidents_fts_delete AFTER DELETE ON incidents BEGIN
    DELETE FROM incidents_fts WHERE rowid = old.reference_number;
END;

CREATE TABLE incident_updates_new (
    id          TEXT PRIMARY KEY,
    incident_id TEXT NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    kind        TEXT NOT NULL CHECK (kind IN ('created', 'update', 'status_change', 'field_change',
                                              'acknowledgement', 'alert', 'merge', 'link')),
    body        TEXT NOT NULL,
    visibility  TEXT NOT NULL CHECK (visibility IN ('public', 'internal')),
    status_from TEXT,
    status_to   TEXT,
    changes     TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(changes)),
    author      TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
INSERT INTO incident_updates_new (id, incident_id, kind, body, visibility, status_from, status_to, changes, author,
                                  created_at)
    SELECT id, incident_id, kind, body, visibility, status_from, status_to, changes, author, created_at
    FROM incident_updates;
DROP TABLE incident_updates;
ALTER TABLE incident_updates_new RENAME TO incident_updates;
CREATE INDEX incident_updates_timeline_idx ON incident_updates (incident_id, created_at, id);

CREATE TABLE postmortems (
    incident_id          TEXT PRIMARY KEY REFERENCES incidents (id) ON DELETE CASCADE,
    status               TEXT NOT NULL CHECK (status IN ('draft', 'in_review', 'published')),
    body                 TEXT NOT NULL,
    public_summary       TEXT NOT NULL,
    root_cause_category  TEXT NOT NULL,
    contributing_factors TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(contributing_factors)),
    recurrence_risk      TEXT CHECK (recurrence_risk IN ('low', 'medium', 'high')),
    recurrence_reason    TEXT,
    third_party          INTEGER NOT NULL,
    author               TEXT NOT NULL,
    published_at         INTEGER,
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL,
    version              INTEGER NOT NULL DEFAULT 1,
    incident_declared_at INTEGER NOT NULL
);
CREATE INDEX postmortems_declared_idx ON postmortems (incident_declared_at, root_cause_category);

-- Due dates are ISO dates (TEXT), which compare and sort as dates.
CREATE TABLE actions (
    id                   TEXT PRIMARY KEY,
    incident_id          TEXT NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    title                TEXT NOT NULL,
    owner                TEXT,
    owner_key            TEXT,
    due_date             TEXT,
    priority             TEXT NOT NULL CHECK (priority IN ('high', 'medium', 'low')),
    status               TEXT NOT NULL CHECK (status IN ('open', 'done', 'wont_do')),
    tracker              TEXT,
    completed_at         INTEGER,
    overdue_notified_for TEXT,
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL,
    version              INTEGER NOT NULL DEFAULT 1,
    incident_declared_at INTEGER NOT NULL
);
CREATE INDEX actions_incident_idx ON actions (incident_id);
CREATE INDEX actions_declared_idx ON actions (incident_declared_at, status, due_date);
CREATE INDEX actions_order_idx ON actions ((status <> 'open'), (coalesce(due_date, '9999-12-31')), id);
CREATE INDEX actions_owner_idx ON actions (owner_key);
CREATE INDEX actions_due_idx ON actions (due_date) WHERE status = 'open';

CREATE TABLE incident_links (
    id               TEXT PRIMARY KEY,
    from_incident_id TEXT NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    to_incident_id   TEXT NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    kind             TEXT NOT NULL CHECK (kind IN ('related', 'caused_by', 'recurrence_of')),
    created_by       TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    UNIQUE (from_incident_id, to_incident_id, kind)
);
CREATE INDEX incident_links_to_idx ON incident_links (to_incident_id);

COMMIT;
PRAGMA foreign_keys = ON;
