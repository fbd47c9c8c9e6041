-- depends: 0015_ledger_statement
-- A booking's hold is placed by ONE statement (insert_slot_booking, insert_stay_booking in sql/queries), not
-- by a transaction of five round trips (BEGIN, the resource's lock, the sweep of its lapsed holds, the insert,
-- COMMIT): each round trip cost the bookings worker about 0.1 ms of CPU, a fifth of its time per booking.
--
-- What has to happen before the insert, in this order, moves into functions the insert calls first:
-- * expire_overdue_holds(): the sweep, as the statement in sql/queries/booking.sql was (the scheduler calls it
--   for every resource, a hold for its own);
-- * sweep_resource_for_hold(): a hold's first step: take the resource's advisory lock, then sweep its lapsed
--   holds. Functions are VOLATILE, so the sweep reads a snapshot taken after the lock was granted: it sees
--   what the hold that held the lock before committed. The insert that follows in the calling statement
--   reads the catalog in the statement's own snapshot; the exclusion constraint is checked against every
--   committed row and sees the holds this transaction has just expired as gone, as it did when they were
--   separate statements of one transaction. (The catalog read, opening hours and blocked periods included, is
--   as of the statement's start, before any wait for the lock; a block committed during that wait of
--   milliseconds is not seen, as one committed just after the hold's insert never was: blocks are checked,
--   not constrained.)

-- Holds past hold_expires_at become expired (freeing the time at once), with audit and outbox rows: all of
-- them (the scheduler) or one resource's (a new booking there, so a lapsed hold never blocks it). An
-- unanswered request lapses the same way. SKIP LOCKED: a hold being paid (a request being approved) right
-- now is left to whichever transaction commits first.
-- Each expired booking's open PaymentIntent gets a cancel-intent job (its type, queue and actor come from
-- the registry as p_cancel_*), so the customer can no longer pay for it; the caller enqueues the returned
-- job ids (else the sweeper). A deposit never held is released with its booking.
CREATE FUNCTION expire_overdue_holds(p_resource_id uuid, p_limit int, p_actor text, p_max_attempts int,
                                     p_cancel_type text, p_cancel_queue text, p_cancel_actor text,
                                     OUT expired bigint, OUT cancel_jobs uuid[])
LANGUAGE plpgsql VOLATILE AS $$  -- PL/pgSQL, not SQL: its plan is kept for the session, a SQL function's is not
BEGIN
  WITH lapsed AS (
    SELECT id, status FROM bookings
    WHERE status IN ('requested', 'pending_payment') AND hold_expires_at <= now()
      AND (p_resource_id IS NULL OR resource_id = p_resource_id)
    ORDER BY hold_expires_at LIMIT p_limit
    FOR UPDATE SKIP LOCKED
  ), moved AS (
    UPDATE bookings b SET status = 'expired' FROM lapsed l WHERE b.id = l.id
    RETURNING b.id, b.provider_id, l.status AS from_status
  ), audit AS (
    INSERT INTO booking_audit_log (booking_id, actor, from_status, to_status, reason)
    SELECT id, p_actor, from_status, 'expired',
           CASE from_status WHEN 'requested' THEN 'request not answered in time' ELSE 'payment hold expired' END
    FROM moved
  ), event AS (
    INSERT INTO outbox (topic, aggregate_id, payload)
    SELECT 'booking_expired', id,
           jsonb_build_object('booking_id', id, 'provider_id', provider_id, 'status', 'expired',
                              'from_status', from_status, 'link', '/booking/' || id)
    FROM moved
  ), deposits AS (
    UPDATE booking_deposits d SET status = 'released' FROM moved m
    WHERE d.booking_id = m.id AND d.status = 'pending'
  ), cancel_intents AS (
    INSERT INTO jobs (id, type, queue, actor, payload, max_attempts)
    SELECT gen_random_uuid(), p_cancel_type, p_cancel_queue, p_cancel_actor,
           jsonb_build_object('payment_intent_id', p.payment_intent_id), p_max_attempts
    FROM moved m JOIN payments p ON p.booking_id = m.id AND p.status IN ('requires_payment', 'failed')
    RETURNING id
  )
  SELECT (SELECT count(*) FROM moved), (SELECT array_agg(id) FROM cancel_intents) INTO expired, cancel_jobs;
END;
$$;

-- A hold's first step. The advisory lock (two-int key space: never the idempotency keys' bigint locks) makes
-- two holds on one resource run one after the other instead of deadlocking: each expires the resource's
-- lapsed holds and inserts, and an exclusion check waits on the other's uncommitted rows, so two at once
-- could each wait for the other. Returns how many holds it expired (their cancel-intent jobs are left to the
-- scheduler's sweeper to enqueue).
CREATE FUNCTION sweep_resource_for_hold(p_resource_id uuid, p_max_attempts int, p_cancel_type text,
                                        p_cancel_queue text, p_cancel_actor text) RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  PERFORM pg_advisory_xact_lock(7001, hashtext(p_resource_id::text));
  RETURN (SELECT e.expired FROM expire_overdue_holds(p_resource_id, 100, 'system', p_max_attempts, p_cancel_type,
                                                     p_cancel_queue, p_cancel_actor) e);
END;
$$;
