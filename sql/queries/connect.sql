-- stripe_account_of --
-- A provider's connected account (none: not onboarded through Connect).
SELECT provider_id, account_id, charges_enabled, payouts_enabled, details_submitted, requirements, stripe_updated_at
FROM stripe_accounts WHERE provider_id = %(provider_id)s;

-- connect_provider --
-- What creating a provider's connected account needs: the provider, live, and its contact.
SELECT id, name, contact_email FROM providers WHERE id = %(provider_id)s AND deleted_at IS NULL;

-- insert_stripe_account --
-- The account we created for a provider, as Stripe answered. One per provider: a racing second creator
-- (same Stripe idempotency key, so the same account) inserts nothing.
INSERT INTO stripe_accounts (provider_id, account_id, charges_enabled, payouts_enabled, details_submitted,
                             requirements, stripe_updated_at)
VALUES (%(provider_id)s, %(account_id)s, %(charges_enabled)s, %(payouts_enabled)s, %(details_submitted)s,
        %(requirements)s, to_timestamp(%(stripe_created)s))
ON CONFLICT (provider_id) DO NOTHING
RETURNING provider_id, account_id;

-- apply_account_state --
-- What an account.updated event says, unless the row already holds a state Stripe produced later (the
-- event's ``created`` is older): any order of arrival ends at the newest state. A tie (one second) goes to
-- the event applied last.
UPDATE stripe_accounts a
SET charges_enabled = %(charges_enabled)s, payouts_enabled = %(payouts_enabled)s,
    details_submitted = %(details_submitted)s, requirements = %(requirements)s, stripe_updated_at = e.stripe_created
FROM stripe_events e
WHERE a.account_id = %(account_id)s AND e.event_id = %(event_id)s AND e.stripe_created >= a.stripe_updated_at
RETURNING a.provider_id, a.account_id, a.charges_enabled, a.payouts_enabled, a.requirements;

-- adopt_stripe_account --
-- An account.updated for an account we have no row of (its event beat our own record of creating it), whose
-- metadata names a live provider without an account: recorded from the event.
INSERT INTO stripe_accounts (provider_id, account_id, charges_enabled, payouts_enabled, details_submitted,
                             requirements, stripe_updated_at)
SELECT p.id, %(account_id)s, %(charges_enabled)s, %(payouts_enabled)s, %(details_submitted)s, %(requirements)s,
       e.stripe_created
FROM providers p, stripe_events e
WHERE p.id = %(provider_id)s AND p.deleted_at IS NULL AND e.event_id = %(event_id)s
ON CONFLICT DO NOTHING
RETURNING provider_id, account_id, charges_enabled, payouts_enabled, requirements;

-- stripe_account_exists --
SELECT 1 FROM stripe_accounts WHERE account_id = %(account_id)s;

-- check_provider_live --
-- Gateway-side pre-check for a provider command: the provider exists and is not deleted.
SELECT 1 FROM providers WHERE id = %(provider_id)s AND deleted_at IS NULL
