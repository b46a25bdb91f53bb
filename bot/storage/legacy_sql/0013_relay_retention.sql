-- Relay retention: the periodic sweep deletes delivered/failed posts older than relay.retention_days
-- and forgets Idempotency-Keys older than relay.idempotency_hours, in bounded batches. These partial
-- indexes let each batch find its oldest rows without scanning the table.
CREATE INDEX relay_outbox_finished_created ON relay_outbox(created_at)
    WHERE status IN ('delivered', 'failed');
CREATE INDEX relay_outbox_idempotency_created ON relay_outbox(created_at)
    WHERE idempotency_key IS NOT NULL;
