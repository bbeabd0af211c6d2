-- Fixing it for good: a postmortem per incident, follow-up actions, typed links between
-- incidents, and merging (a merged incident is read-only and points at the one it went into;
-- deleting that one deletes what was merged into it). migrations/sqlite/ holds the same.

ALTER TABLE incidents DROP CONSTRAINT incidents_status_check;
ALTER TABLE incidents ADD CONSTRAINT incidents_status_check
    CHECK (status IN ('investigating', 'identified', 'monitoring', 'resolved', 'closed', 'merged'));
ALTER TABLE incidents ADD COLUMN merged_into uuid REFERENCES incidents (id) ON DELETE CASCADE;
CREATE INDEX incidents_merged_into_idx ON incidents (merged_into) WHERE merged_into IS NOT NULL;

-- The analytics (GET /v1/stats) read a window of incidents through one covering index, the
-- components of each included as an array (derived from affected_components by the service).
ALTER TABLE incidents ADD COLUMN component_ids uuid[] NOT NULL DEFAULT '{}';
UPDATE incidents SET component_ids = ARRAY(SELECT (c ->> 'component_id')::uuid
                                           FROM jsonb_array_elements(affected_components) c)
 WHERE affected_components <> '[]';
CREATE INDEX incidents_stats_idx ON incidents (created_at)
    INCLUDE (id, severity, status, cause_kind, cause_provider, reopen_count, acknowledged_at, resolved_at,
             component_ids);

ALTER TABLE incident_updates DROP CONSTRAINT incident_updates_kind_check;
ALTER TABLE incident_updates ADD CONSTRAINT incident_updates_kind_check
    CHECK (kind IN ('created', 'update', 'status_change', 'field_change', 'acknowledgement', 'alert', 'merge',
                    'link'));

CREATE TABLE postmortems (
    incident_id          uuid PRIMARY KEY REFERENCES incidents (id) ON DELETE CASCADE,
    status               text NOT NULL CHECK (status IN ('draft', 'in_review', 'published')),
    body                 text NOT NULL,
    public_summary       text NOT NULL,
    root_cause_category  text NOT NULL,
    contributing_factors jsonb NOT NULL DEFAULT '[]',
    recurrence_risk      text CHECK (recurrence_risk IN ('low', 'medium', 'high')),
    recurrence_reason    text,
    third_party          boolean NOT NULL,
    author               text NOT NULL,
    published_at         timestamptz,
    created_at           timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL,
    version              bigint NOT NULL DEFAULT 1,
    -- When its incident was declared (which never changes): the analytics count a window's
    -- postmortems by category without reading the incidents.
    incident_declared_at timestamptz NOT NULL
);
CREATE INDEX postmortems_declared_idx ON postmortems (incident_declared_at) INCLUDE (root_cause_category);

-- Follow-up actions. The list across incidents is ordered open first, by due date (so the
-- overdue come first), then by id; `owner_key` is the owner case-folded by the service.
CREATE TABLE actions (
    id                   uuid PRIMARY KEY,
    incident_id          uuid NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    title                text NOT NULL,
    owner                text,
    owner_key            text COLLATE "C",
    due_date             date,
    priority             text NOT NULL CHECK (priority IN ('high', 'medium', 'low')),
    status               text NOT NULL CHECK (status IN ('open', 'done', 'wont_do')),
    tracker              text,
    completed_at         timestamptz,
    overdue_notified_for date,
    created_at           timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL,
    version              bigint NOT NULL DEFAULT 1,
    -- When its incident was declared: the analytics count a window's actions by status.
    incident_declared_at timestamptz NOT NULL
);
CREATE INDEX actions_incident_idx ON actions (incident_id);
CREATE INDEX actions_declared_idx ON actions (incident_declared_at) INCLUDE (status, due_date);
CREATE INDEX actions_order_idx ON actions ((status <> 'open'), (coalesce(due_date, DATE '9999-12-31')), id);
CREATE INDEX actions_owner_idx ON actions (owner_key);
CREATE INDEX actions_due_idx ON actions (due_date) WHERE status = 'open';

-- Typed links: `from` related to / caused by / a recurrence of `to`; each side sees the other.
CREATE TABLE incident_links (
    id               uuid PRIMARY KEY,
    from_incident_id uuid NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    to_incident_id   uuid NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    kind             text NOT NULL CHECK (kind IN ('related', 'caused_by', 'recurrence_of')),
    created_by       text NOT NULL,
    created_at       timestamptz NOT NULL,
    UNIQUE (from_incident_id, to_incident_id, kind)
);
CREATE INDEX incident_links_to_idx ON incident_links (to_incident_id);
