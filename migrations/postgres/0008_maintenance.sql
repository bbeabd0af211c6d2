-- Scheduled maintenance: the window, the lifecycle and what the workers did on their own.
CREATE TABLE maintenances (
    id              uuid PRIMARY KEY,
    title           text NOT NULL,
    body            text NOT NULL DEFAULT '',
    scheduled_for   timestamptz NOT NULL,
    scheduled_until timestamptz NOT NULL CHECK (scheduled_until > scheduled_for),
    status          text NOT NULL CHECK (status IN ('scheduled', 'in_progress', 'verifying', 'completed',
                                                    'cancelled')),
    auto_start      boolean NOT NULL,
    auto_complete   boolean NOT NULL,
    started_at      timestamptz,
    completed_at    timestamptz,
    cancelled_at    timestamptz,
    reminded_at     timestamptz,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    version         bigint NOT NULL DEFAULT 1
);
CREATE INDEX maintenances_scheduled_idx ON maintenances (scheduled_for DESC, id DESC);
-- What the workers look for: the maintenances that are not final.
CREATE INDEX maintenances_pending_idx ON maintenances (scheduled_for)
    WHERE status IN ('scheduled', 'in_progress', 'verifying');
-- The components of each maintenance, in the order given; `active` while it is in progress
-- or verifying, so a component's effective status reads only the active ones.
CREATE TABLE maintenance_components (
    maintenance_id uuid NOT NULL REFERENCES maintenances (id) ON DELETE CASCADE,
    component_id   uuid NOT NULL REFERENCES components (id) ON DELETE CASCADE,
    position       integer NOT NULL,
    active         boolean NOT NULL DEFAULT false,
    PRIMARY KEY (maintenance_id, component_id)
);
CREATE INDEX maintenance_components_active_idx ON maintenance_components (component_id) WHERE active;
-- A maintenance's public timeline.
CREATE TABLE maintenance_updates (
    id             uuid PRIMARY KEY,
    maintenance_id uuid NOT NULL REFERENCES maintenances (id) ON DELETE CASCADE,
    status         text NOT NULL,
    body           text NOT NULL,
    automatic      boolean NOT NULL,
    author         text NOT NULL,
    created_at     timestamptz NOT NULL
);
CREATE INDEX maintenance_updates_timeline_idx ON maintenance_updates (maintenance_id, created_at, id);
-- The maintenance that caused a component's status change (not a foreign key, like the incident).
ALTER TABLE component_status_changes ADD COLUMN maintenance_id uuid;
