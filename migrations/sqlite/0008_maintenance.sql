-- Scheduled maintenance: the window, the lifecycle and what the workers did on their own.
CREATE TABLE maintenances (
    id              TEXT PRIMARY KEY,
    title           TEXT NOT NULL,
    body            TEXT NOT NULL DEFAULT '',
    scheduled_for   INTEGER NOT NULL,
    scheduled_until INTEGER NOT NULL CHECK (scheduled_until > scheduled_for),
    status          TEXT NOT NULL CHECK (status IN ('scheduled', 'in_progress', 'verifying', 'completed',
                                                    'cancelled')),
    auto_start      INTEGER NOT NULL,
    auto_complete   INTEGER NOT NULL,
    started_at      INTEGER,
    completed_at    INTEGER,
    cancelled_at    INTEGER,
    reminded_at     INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    version         INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX maintenances_scheduled_idx ON maintenances (scheduled_for DESC, id DESC);
-- What the workers look for: the maintenances that are not final.
CREATE INDEX maintenances_pending_idx ON maintenances (scheduled_for)
    WHERE status IN ('scheduled', 'in_progress', 'verifying');
-- The components of each maintenance, in the order given; `active` while it is in progress
-- or verifying, so a component's effective status reads only the active ones.
CREATE TABLE maintenance_components (
    maintenance_id TEXT NOT NULL REFERENCES maintenances (id) ON DELETE CASCADE,
    component_id   TEXT NOT NULL REFERENCES components (id) ON DELETE CASCADE,
    position       INTEGER NOT NULL,
    active         INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (maintenance_id, component_id)
);
CREATE INDEX maintenance_components_active_idx ON maintenance_components (component_id) WHERE active;
-- A maintenance's public timeline.
CREATE TABLE maintenance_updates (
    id             TEXT PRIMARY KEY,
    maintenance_id TEXT NOT NULL REFERENCES maintenances (id) ON DELETE CASCADE,
    status         TEXT NOT NULL,
    body           TEXT NOT NULL,
    automatic      INTEGER NOT NULL,
    author         TEXT NOT NULL,
    created_at     INTEGER NOT NULL
);
CREATE INDEX maintenance_updates_timeline_idx ON maintenance_updates (maintenance_id, created_at, id);
-- The maintenance that caused a component's status change (not a foreign key, like the incident).
ALTER TABLE component_status_changes ADD COLUMN maintenance_id TEXT;
