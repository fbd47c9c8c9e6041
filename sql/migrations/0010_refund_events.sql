-- depends: 0009_rentals
-- Refunds from refund events (Stripe API 2024-10-28.acacia and later sends refund.created, refund.updated and
-- refund.failed for every refund; a Charge no longer lists its refunds since 2022-11-15).

-- The most a charge.refunded event ever reported as the charge's amount_refunded. It is a hint only, for
-- when the charge's event arrives before its refunds' events: payments.amount_refunded is computed from the
-- refunds we know (those Stripe created and did not fail) and this hint less the refunds known failed.
ALTER TABLE payments
  ADD COLUMN stripe_amount_refunded bigint NOT NULL DEFAULT 0
    CHECK (stripe_amount_refunded >= 0 AND stripe_amount_refunded <= amount);
UPDATE payments SET stripe_amount_refunded = amount_refunded WHERE amount_refunded > 0;

-- A refund that failed after Stripe created it (the card was closed, the bank returned it) gives the money
-- back: its posting is compensated once by the exact negation of its entries.
-- (Widens the list of 0009_rentals by 'refund_reversal'.)
ALTER TABLE ledger_transactions DROP CONSTRAINT ledger_transactions_kind_check,
  ADD CONSTRAINT ledger_transactions_kind_check CHECK (kind IN (
    'capture', 'deposit_capture', 'refund', 'refund_reversal', 'maturity', 'payout_initiated', 'payout_paid',
    'payout_returned'));

-- What a refund event did. (Widens the list of 0009_rentals by 'refund_failed'.)
ALTER TABLE stripe_event_effects DROP CONSTRAINT stripe_event_effects_effect_check,
  ADD CONSTRAINT stripe_event_effects_effect_check CHECK (effect IN (
    'booking_paid', 'payment_failed', 'late_payment_refund', 'refund_recorded', 'refund_failed', 'no_change',
    'unknown_booking', 'amount_mismatch', 'ignored', 'deposit_authorized', 'deposit_claimed', 'deposit_released',
    'deposit_lapsed', 'deposit_failed'));

-- A refund's status moves one way: pending → succeeded → failed, or pending → failed. A failed refund never
-- succeeds again (a new refund would be a new row).
CREATE FUNCTION refunds_check_status() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF OLD.status = 'failed' AND NEW.status <> 'failed' OR OLD.status = 'succeeded' AND NEW.status = 'pending' THEN
    RAISE EXCEPTION 'refund % cannot go from % to %', OLD.id, OLD.status, NEW.status
      USING ERRCODE = 'check_violation', CONSTRAINT = 'refunds_valid_transition';
  END IF;
  IF OLD.stripe_refund_id IS NOT NULL AND NEW.stripe_refund_id IS DISTINCT FROM OLD.stripe_refund_id THEN
    RAISE EXCEPTION 'refund % already names Stripe refund %', OLD.id, OLD.stripe_refund_id
      USING ERRCODE = 'check_violation', CONSTRAINT = 'refunds_valid_transition';
  END IF;
  RETURN NEW;
END;
$$;
CREATE TRIGGER refunds_check_status BEFORE UPDATE ON refunds FOR EACH ROW EXECUTE FUNCTION refunds_check_status();
