-- Alert ingestion: integrations (only a hash of each secret is kept), the incident each
-- alert group currently maps to, every alert received, and the acknowledgement reminders sent.
CREATE TABLE integrations (
    id               uuid PRIMARY KEY,
    name             text NOT NULL,
    kind             text NOT NULL CHECK (kind IN ('alertmanager', 'grafana', 'pagerduty_events_v2')),
    secret_hash      bytea NOT NULL UNIQUE,
    secret_prefix    text NOT NULL,
    default_severity text NOT NULL,
    rules            jsonb NOT NULL,
    grouping         text NOT NULL CHECK (grouping IN ('group_key', 'fingerprint')),
    auto_resolve     boolean NOT NULL,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    version          bigint NOT NULL DEFAULT 1
);
CREATE INDEX integrations_created_idx ON integrations (created_at DESC, id DESC);
-- The incident a group (or an alert, or a PagerDuty dedup_key) joins while it is open: one
-- row per key, locked while alerts of the key are taken in, so concurrent deliveries of a
-- new group open one incident.
CREATE TABLE alert_groups (
    integration_id uuid NOT NULL REFERENCES integrations (id) ON DELETE CASCADE,
    dedup_key      text NOT NULL,
    incident_id    uuid,
    PRIMARY KEY (integration_id, dedup_key)
);
-- Every alert received, as received (bounded), linked to its incident.
CREATE TABLE alerts (
    id             uuid PRIMARY KEY,
    integration_id uuid NOT NULL,
    incident_id    uuid,
    dedup_key      text NOT NULL,
    fingerprint    text NOT NULL,
    status         text NOT NULL,
    title          text NOT NULL,
    received_at    timestamptz NOT NULL,
    payload        jsonb NOT NULL
);
CREATE INDEX alerts_incident_idx ON alerts (incident_id, received_at, id);
CREATE INDEX alerts_integration_idx ON alerts (integration_id, received_at, id);
CREATE INDEX alerts_state_idx ON alerts (incident_id, dedup_key, fingerprint, received_at DESC, id DESC);
-- Reminders sent for an incident nobody acknowledged (`incident.ack_overdue`).
CREATE TABLE ack_reminders (
    incident_id  uuid PRIMARY KEY REFERENCES incidents (id) ON DELETE CASCADE,
    sent         bigint NOT NULL,
    last_sent_at timestamptz NOT NULL
);
CREATE INDEX incidents_unacknowledged_idx ON incidents (created_at)
    WHERE acknowledged_at IS NULL AND status IN ('investigating', 'identified', 'monitoring');
-- Timeline entries of kind `alert`: what a delivery of alerts said.
ALTER TABLE incident_updates DROP CONSTRAINT incident_updates_kind_check;
ALTER TABLE incident_updates ADD CONSTRAINT incident_updates_kind_check
    CHECK (kind IN ('created', 'update', 'status_change', 'field_change', 'acknowledgement', 'alert'));
