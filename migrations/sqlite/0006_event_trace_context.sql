-- The W3C trace context of the request that caused an event: the deliveries it fans out to
-- continue that trace (the webhook carries a traceparent in it).
ALTER TABLE events ADD COLUMN traceparent text;
