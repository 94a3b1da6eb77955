-- A run of a limited queue that stops executing frees a slot, and the workers of that
-- queue are woken at once rather than at their next poll. The executor that released it
-- needs no wake-up: a worker claims again after each run of a limited queue ends, handed
-- back or suspended (see RunLoop.execute). Only the other workers serving the queue are
-- told, so that a queue served by one worker no longer sends every listener of the
-- database a notification per finished run.
CREATE OR REPLACE FUNCTION forgeflow.notify_slot_released() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM forgeflow.queues WHERE name = NEW.queue AND limited)
       AND EXISTS (SELECT 1 FROM forgeflow.workers w
                   WHERE NEW.queue = ANY (w.queues) AND w.id <> OLD.lease_owner) THEN
        PERFORM pg_notify('forgeflow_wakeup', NEW.queue);
    END IF;
    RETURN NULL;
END
$$;
