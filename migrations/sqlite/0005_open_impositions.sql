-- Whether the incident behind each `incident_components` row is open, kept in step with the
-- incident's status. A component's effective status depends only on the open incidents that
-- affect it; reading them through this flag and its partial index costs what the open
-- incidents cost, not every incident that ever affected the component.
ALTER TABLE incident_components ADD COLUMN incident_open INTEGER NOT NULL DEFAULT 1;
UPDATE incident_components
   SET incident_open = (SELECT i.status IN ('investigating', 'identified', 'monitoring')
                          FROM incidents i WHERE i.id = incident_components.incident_id);
CREATE INDEX incident_components_open_idx ON incident_components (component_id, status) WHERE incident_open;
