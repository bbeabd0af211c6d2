-- Alert ingestion: integrations (only a hash of each secret is kept), the incident each
-- alert group currently maps to, every alert received, and the acknowledgement reminders sent.
CREATE TABLE integrations (
    id               TEXT PRIMARY KEY,
    name             TEXT NOT NULL,
    kind             TEXT NOT NULL CHECK (kind IN ('alertmanager', 'grafana', 'pagerduty_events_v2')),
    secret_hash      BLOB NOT NULL UNIQUE,
    secret_prefix    TEXT NOT NULL,
    default_severity TEXT NOT NULL,
    rules            TEXT NOT NULL,
    grouping         TEXT NOT NULL CHECK (grouping IN ('group_key', 'fingerprint')),
    auto_resolve     INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    version          INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX integrations_created_idx ON integrations (created_at DESC, id DESC);
-- The incident a group (or an alert, or a PagerDuty dedup_key) joins while it is open: one
-- row per key, locked while alerts of the key are taken in, so concurrent deliveries of a
-- new group open one incident.
CREATE TABLE alert_groups (
    integration_id TEXT NOT NULL REFERENCES integrations (id) ON DELETE CASCADE,
    dedup_key      TEXT NOT NULL,
    incident_id    TEXT,
    PRIMARY KEY (integration_id, dedup_key)
);
-- Every alert received, as received (bounded), linked to its incident.
CREATE TABLE alerts (
    id             TEXT PRIMARY KEY,
    integration_id TEXT NOT NULL,
    incident_id    TEXT,
    dedup_key      TEXT NOT NULL,
    fingerprint    TEXT NOT NULL,
    status         TEXT NOT NULL,
    title          TEXT NOT NULL,
    received_at    INTEGER NOT NULL,
    payload        TEXT NOT NULL
);
CREATE INDEX alerts_incident_idx ON alerts (incident_id, received_at, id);
CREATE INDEX alerts_integration_idx ON alerts (integration_id, received_at, id);
CREATE INDEX alerts_state_idx ON alerts (incident_id, dedup_key, fingerprint, received_at DESC, id DESC);
-- Reminders sent for an incident nobody acknowledged (`incident.ack_overdue`).
CREATE TABLE ack_reminders (
    incident_id  TEXT PRIMARY KEY REFERENCES incidents (id) ON DELETE CASCADE,
    sent         INTEGER NOT NULL,
    last_sent_at INTEGER NOT NULL
);
CREATE INDEX incidents_unacknowledged_idx ON incidents (created_at)
    WHERE acknowledged_at IS NULL AND status IN ('investigating', 'identified', 'monitoring');
-- Timeline entries of kind `alert`: what a delivery of alerts said. SQLite cannot change a
-- CHECK constraint in place: the table is rebuilt (nothing references it).
CREATE TABLE incident_updates_new (
    id          TEXT PRIMARY KEY,
    incident_id TEXT NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    kind        TEXT NOT NULL CHECK (kind IN ('created', 'update', 'status_change', 'field_change',
                                              'acknowledgement', 'alert')),
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
