-- Core schema: incidents, their affected components and timeline, components, and
-- idempotency records. Enumerations are stored as their wire names and checked.
-- Case-insensitive keys (search_text, name_key, group_key) are case-folded by the service
-- and compared bytewise (COLLATE "C"), so every backend matches and orders alike.
-- migrations/sqlite/ holds the same schema for SQLite.

CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE components (
    id          uuid PRIMARY KEY,
    name        text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    description text NOT NULL DEFAULT '',
    name_key    text COLLATE "C" NOT NULL,
    group_name  text,
    group_key   text COLLATE "C" NOT NULL DEFAULT '',
    position    integer NOT NULL DEFAULT 0,
    status      text NOT NULL CHECK (status IN ('operational', 'degraded_performance', 'partial_outage',
                                                'major_outage', 'under_maintenance')),
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    version     bigint NOT NULL DEFAULT 1
);
CREATE UNIQUE INDEX components_name_key ON components (name_key);
CREATE INDEX components_order_idx ON components (group_key, position, name_key, id);

CREATE SEQUENCE incident_reference_seq;

CREATE TABLE incidents (
    id                       uuid PRIMARY KEY,
    reference_number         bigint NOT NULL UNIQUE DEFAULT nextval('incident_reference_seq'),
    title                    text NOT NULL CHECK (char_length(title) BETWEEN 1 AND 200),
    summary                  text NOT NULL DEFAULT '',
    search_text              text NOT NULL,
    severity                 text NOT NULL CHECK (severity IN ('sev1', 'sev2', 'sev3', 'sev4')),
    status                   text NOT NULL CHECK (status IN ('investigating', 'identified', 'monitoring',
                                                             'resolved', 'closed')),
    impact                   text NOT NULL CHECK (impact IN ('none', 'minor', 'major', 'critical')),
    affected_components      jsonb NOT NULL DEFAULT '[]',
    affected_customers       bigint CHECK (affected_customers >= 0),
    eta                      timestamptz,
    workaround_availability  text NOT NULL CHECK (workaround_availability IN ('unknown', 'available', 'none')),
    workaround_text          text,
    cause_kind               text NOT NULL CHECK (cause_kind IN ('unknown', 'internal', 'third_party')),
    cause_provider           text,
    cause_external_reference text,
    commander                text,
    labels                   jsonb NOT NULL DEFAULT '{}',
    related_incident_ids     jsonb NOT NULL DEFAULT '[]',
    root_cause               text,
    resolution_summary       text,
    reopen_count             integer NOT NULL DEFAULT 0,
    started_at               timestamptz NOT NULL,
    detected_at              timestamptz NOT NULL,
    acknowledged_at          timestamptz,
    acknowledged_by          text,
    identified_at            timestamptz,
    mitigated_at             timestamptz,
    resolved_at              timestamptz,
    closed_at                timestamptz,
    created_at               timestamptz NOT NULL,
    updated_at               timestamptz NOT NULL,
    version                  bigint NOT NULL DEFAULT 1
);
ALTER SEQUENCE incident_reference_seq OWNED BY incidents.reference_number;

-- One index per list filter, each ending in the keyset order (newest first).
CREATE INDEX incidents_created_idx ON incidents (created_at DESC, id DESC);
CREATE INDEX incidents_status_idx ON incidents (status, created_at DESC, id DESC);
CREATE INDEX incidents_severity_idx ON incidents (severity, created_at DESC, id DESC);
CREATE INDEX incidents_open_idx ON incidents (created_at DESC, id DESC)
    WHERE status IN ('investigating', 'identified', 'monitoring');
CREATE INDEX incidents_text_idx ON incidents USING gin (search_text gin_trgm_ops);

-- Which components each incident affects: drives the `component` filter and the effective
-- component status. Component ids are not foreign keys: resolved incidents keep naming a
-- component deleted later.
CREATE TABLE incident_components (
    incident_id  uuid NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    component_id uuid NOT NULL,
    status       text NOT NULL,
    PRIMARY KEY (incident_id, component_id)
);
CREATE INDEX incident_components_component_idx ON incident_components (component_id, incident_id);

CREATE TABLE incident_updates (
    id          uuid PRIMARY KEY,
    incident_id uuid NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    kind        text NOT NULL CHECK (kind IN ('created', 'update', 'status_change', 'field_change',
                                              'acknowledgement')),
    body        text NOT NULL,
    visibility  text NOT NULL CHECK (visibility IN ('public', 'internal')),
    status_from text,
    status_to   text,
    changes     jsonb NOT NULL DEFAULT '[]',
    author      text NOT NULL,
    created_at  timestamptz NOT NULL
);
CREATE INDEX incident_updates_timeline_idx ON incident_updates (incident_id, created_at, id);

CREATE TABLE idempotency_keys (
    scope        text NOT NULL,
    key          text NOT NULL,
    request_hash bytea NOT NULL,
    response     jsonb,
    created_at   timestamptz NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);
