-- The statement incidentd runs for GET /v1/incidents/{id} (and gRPC GetIncident): one
-- SELECT on the pool, no transaction. `id` is passed with -D; run with -M prepared. Keep in
-- step with src/store/sql/incidents.rs (SELECT_INCIDENT_BY_ID).
SELECT id, reference_number, title, summary, severity, status, impact, affected_components, affected_customers, eta, workaround_availability, workaround_text, cause_kind, cause_provider, cause_external_reference, commander, labels, related_incident_ids, root_cause, resolution_summary, reopen_count, started_at, detected_at, acknowledged_at, acknowledged_by, identified_at, mitigated_at, resolved_at, closed_at, created_at, updated_at, version FROM incidents WHERE id = :id;
