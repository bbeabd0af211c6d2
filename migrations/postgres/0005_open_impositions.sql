-- Whether the incident behind each `incident_components` row is open, kept in step with the
-- incident's status. A component's effective status depends only on the open incidents that
-- affect it; reading them through this flag and its partial index costs what the open
-- incidents cost, not every incident that ever affected the component.
ALTER TABLE incident_components ADD COLUMN incident_open boolean NOT NULL DEFAULT true;
UPDATE incident_components ic
   SET incident_open = i.status IN ('investigating', 'identified', 'monitoring')
  FROM incidents i
 WHERE i.id = ic.incident_id;
CREATE INDEX incident_components_open_idx ON incident_components (component_id) INCLUDE (status)
    WHERE incident_open;
