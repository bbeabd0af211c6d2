-- Every change of a component's effective status: when, from what, to what, and the incident
-- that caused it (none for a status set by hand). Newest first per component is the order
-- every reader wants. The incident is not a foreign key: a deleted incident's changes stay.
CREATE TABLE component_status_changes (
    id           uuid PRIMARY KEY,
    component_id uuid NOT NULL REFERENCES components (id) ON DELETE CASCADE,
    changed_at   timestamptz NOT NULL,
    from_status  text NOT NULL,
    to_status    text NOT NULL,
    incident_id  uuid
);
CREATE INDEX component_status_changes_component_idx ON component_status_changes (component_id, changed_at DESC, id DESC);
CREATE INDEX component_status_changes_time_idx ON component_status_changes (changed_at);
-- The history of incidents recorded before this migration is replayed once, by the service,
-- right after the migrations run (it needs the domain's rules); this marks whether it has been.
INSERT INTO counters (name, value) VALUES ('component_history_backfilled', 0);
