-- Retention: indexes that let the workers find what they may prune without reading the rest
-- of a table, and the event log's horizon. Audit records and idempotency records already have
-- theirs (audit_events_time_idx, idempotency_keys_created_idx). migrations/postgres/ holds the same.

-- Finished deliveries by when they finished (their last attempt, else their creation); the
-- expression and the predicate are the ones the pruning statement uses.
CREATE INDEX deliveries_finished_idx ON deliveries ((COALESCE(last_attempt_at, created_at)))
    WHERE status IN ('delivered', 'failed', 'cancelled');
-- Whether an event still has deliveries (and the foreign key's check when an event goes).
CREATE INDEX deliveries_event_idx ON deliveries (event_id);
-- Sequenced events by age.
CREATE INDEX events_time_idx ON events (time) WHERE seq IS NOT NULL;
-- Received alerts by age.
CREATE INDEX alerts_received_idx ON alerts (received_at);
-- The highest seq of a pruned event: a reader resuming from a cursor below it may have
-- missed events, and is told so instead.
INSERT INTO counters (name, value) VALUES ('events_pruned_through', 0);
