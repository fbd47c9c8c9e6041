-- insert_provider --
-- A provider (salon, listing owner) with its time zone, currency, commission and cancellation policy.
INSERT INTO providers (slug, name, time_zone, currency, commission_bps, hold_ttl_seconds, cancellation_policy)
VALUES (%(slug)s, %(name)s, %(time_zone)s, %(currency)s, %(commission_bps)s, %(hold_ttl_seconds)s,
        %(cancellation_policy)s)
RETURNING id, slug, name, time_zone, currency, commission_bps;

-- get_provider_by_slug --
-- Find a provider by its slug (the seed is re-runnable).
SELECT id, slug, name, time_zone, currency, commission_bps FROM providers WHERE slug = %(slug)s;

-- insert_resource --
-- A bookable resource: a master's time (slot) or a listing's nights (stay).
INSERT INTO resources (provider_id, kind, name, nightly_price)
VALUES (%(provider_id)s, %(kind)s, %(name)s, %(nightly_price)s)
RETURNING id, provider_id, kind, name;

-- list_provider_resources --
-- A provider's live resources with the services each offers.
SELECT r.id, r.provider_id, r.kind, r.name,
       coalesce(array_agg(rs.service_id ORDER BY rs.created_at) FILTER (WHERE rs.service_id IS NOT NULL),
                '{}') AS service_ids
FROM resources r LEFT JOIN resource_services rs ON rs.resource_id = r.id
WHERE r.provider_id = %(provider_id)s AND r.deleted_at IS NULL
GROUP BY r.id ORDER BY r.created_at, r.name;

-- insert_service --
-- A service with its duration and price in minor units.
INSERT INTO services (provider_id, name, duration_minutes, price, currency)
VALUES (%(provider_id)s, %(name)s, %(duration_minutes)s, %(price)s, %(currency)s)
RETURNING id, provider_id, name, duration_minutes, price, currency;

-- list_provider_services --
-- A provider's live services.
SELECT id, provider_id, name, duration_minutes, price, currency
FROM services WHERE provider_id = %(provider_id)s AND deleted_at IS NULL ORDER BY created_at, name;

-- offer_service --
-- Let a resource offer a service.
INSERT INTO resource_services (resource_id, service_id) VALUES (%(resource_id)s, %(service_id)s)
ON CONFLICT DO NOTHING;

-- insert_resource_hours --
-- Opening hours of a resource on one weekday, in its provider's time zone.
INSERT INTO resource_hours (resource_id, weekday, opens_at, closes_at)
VALUES (%(resource_id)s, %(weekday)s, %(opens_at)s, %(closes_at)s);

-- create_provider --
-- A provider created through the API, with its cancellation policy.
INSERT INTO providers (slug, name, time_zone, currency, commission_bps, hold_ttl_seconds, cancellation_policy,
                       payout_account, contact_email, request_cancellation_policy, dispute_liability)
VALUES (%(slug)s, %(name)s, %(time_zone)s, %(currency)s, %(commission_bps)s, %(hold_ttl_seconds)s,
        %(cancellation_policy)s, %(payout_account)s, %(contact_email)s, %(request_cancellation_policy)s,
        %(dispute_liability)s)
RETURNING *;

-- get_provider --
-- One provider (soft-deleted ones too: they stay readable).
SELECT *, provider_stripe_account(id) AS stripe_account FROM providers WHERE id = %(id)s;

-- list_providers --
-- Live providers, oldest first, keyset-paginated on (created_at, id).
SELECT *, provider_stripe_account(id) AS stripe_account FROM providers
WHERE deleted_at IS NULL AND (%(scope)s::uuid[] IS NULL OR id = ANY (%(scope)s::uuid[]))
  AND (%(after_created_at)s::timestamptz IS NULL
       OR (created_at, id) > (%(after_created_at)s::timestamptz, %(after_id)s::uuid))
ORDER BY created_at, id LIMIT %(limit)s;

-- update_provider --
-- Change the given fields of a live provider (NULL: leave as is).
UPDATE providers SET
  name = coalesce(%(name)s, name), time_zone = coalesce(%(time_zone)s, time_zone),
  commission_bps = coalesce(%(commission_bps)s, commission_bps),
  hold_ttl_seconds = coalesce(%(hold_ttl_seconds)s, hold_ttl_seconds),
  cancellation_policy = coalesce(%(cancellation_policy)s, cancellation_policy),
  request_cancellation_policy = coalesce(%(request_cancellation_policy)s, request_cancellation_policy),
  payout_account = coalesce(%(payout_account)s, payout_account),
  contact_email = coalesce(%(contact_email)s, contact_email),
  dispute_liability = coalesce(%(dispute_liability)s, dispute_liability), updated_at = now()
WHERE id = %(id)s AND deleted_at IS NULL
RETURNING *, provider_stripe_account(id) AS stripe_account;

-- delete_provider --
-- Soft-delete a provider: it takes no new bookings; its history stays.
UPDATE providers SET deleted_at = now(), updated_at = now() WHERE id = %(id)s AND deleted_at IS NULL
RETURNING *, provider_stripe_account(id) AS stripe_account;

-- create_resource --
-- A resource of a live provider.
INSERT INTO resources (provider_id, kind, name, nightly_price, booking_mode, request_ttl_hours, security_deposit)
SELECT p.id, %(kind)s, %(name)s, %(nightly_price)s, %(booking_mode)s, %(request_ttl_hours)s, %(security_deposit)s
FROM providers p WHERE p.id = %(provider_id)s AND p.deleted_at IS NULL
RETURNING *;

-- get_resource --
-- One resource with the services it offers and its weekly hours (soft-deleted ones too), if in the
-- caller's scope (NULL: every provider).
SELECT * FROM resource_details WHERE id = %(id)s AND (%(scope)s::uuid[] IS NULL OR provider_id = ANY (%(scope)s::uuid[]));

-- list_resources --
-- Live resources, optionally of one provider and kind, keyset-paginated.
SELECT r.* FROM resource_details r
WHERE r.deleted_at IS NULL AND (%(scope)s::uuid[] IS NULL OR r.provider_id = ANY (%(scope)s::uuid[]))
  AND (%(provider_id)s::uuid IS NULL OR r.provider_id = %(provider_id)s::uuid)
  AND (%(kind)s::text IS NULL OR r.kind = %(kind)s::text)
  AND (%(after_created_at)s::timestamptz IS NULL
       OR (r.created_at, r.id) > (%(after_created_at)s::timestamptz, %(after_id)s::uuid))
ORDER BY r.created_at, r.id LIMIT %(limit)s;

-- update_resource --
-- Change a live resource: its name, nightly price, booking mode, request TTL or deposit (existing bookings keep
-- their snapshot).
UPDATE resources SET name = coalesce(%(name)s, name), nightly_price = coalesce(%(nightly_price)s, nightly_price),
                     booking_mode = coalesce(%(booking_mode)s, booking_mode),
                     request_ttl_hours = coalesce(%(request_ttl_hours)s, request_ttl_hours),
                     security_deposit = coalesce(%(security_deposit)s, security_deposit),
                     updated_at = now()
WHERE id = %(id)s AND deleted_at IS NULL
RETURNING id;

-- delete_resource --
-- Soft-delete a resource: no new bookings; existing ones keep their snapshots.
UPDATE resources SET deleted_at = now(), updated_at = now() WHERE id = %(id)s AND deleted_at IS NULL RETURNING id;

-- create_service --
-- A service of a live provider, priced in the provider's currency.
INSERT INTO services (provider_id, name, duration_minutes, price, currency)
SELECT p.id, %(name)s, %(duration_minutes)s, %(price)s, p.currency
FROM providers p WHERE p.id = %(provider_id)s AND p.deleted_at IS NULL
RETURNING *;

-- get_service --
-- One service (soft-deleted ones too), if in the caller's scope.
SELECT * FROM services WHERE id = %(id)s AND (%(scope)s::uuid[] IS NULL OR provider_id = ANY (%(scope)s::uuid[]));

-- list_services --
-- Live services, optionally of one provider, keyset-paginated.
SELECT * FROM services
WHERE deleted_at IS NULL AND (%(scope)s::uuid[] IS NULL OR provider_id = ANY (%(scope)s::uuid[]))
  AND (%(provider_id)s::uuid IS NULL OR provider_id = %(provider_id)s::uuid)
  AND (%(after_created_at)s::timestamptz IS NULL
       OR (created_at, id) > (%(after_created_at)s::timestamptz, %(after_id)s::uuid))
ORDER BY created_at, id LIMIT %(limit)s;

-- update_service --
-- Change a live service; bookings already made keep the snapshot they took.
UPDATE services SET name = coalesce(%(name)s, name), duration_minutes = coalesce(%(duration_minutes)s, duration_minutes),
                    price = coalesce(%(price)s, price), updated_at = now()
WHERE id = %(id)s AND deleted_at IS NULL
RETURNING *, provider_stripe_account(id) AS stripe_account;

-- delete_service --
-- Soft-delete a service.
UPDATE services SET deleted_at = now(), updated_at = now() WHERE id = %(id)s AND deleted_at IS NULL RETURNING *;

-- offer_live_service --
-- Let a live slot resource offer a live service of the same provider; no row back: not possible.
WITH pair AS (
  SELECT r.id AS resource_id, s.id AS service_id FROM resources r JOIN services s ON s.provider_id = r.provider_id
  WHERE r.id = %(resource_id)s AND s.id = %(service_id)s AND r.kind = 'slot'
    AND r.deleted_at IS NULL AND s.deleted_at IS NULL
), offered AS (
  INSERT INTO resource_services (resource_id, service_id) SELECT resource_id, service_id FROM pair
  ON CONFLICT DO NOTHING
)
SELECT resource_id FROM pair;

-- withdraw_service --
-- Stop a resource offering a service.
DELETE FROM resource_services WHERE resource_id = %(resource_id)s AND service_id = %(service_id)s RETURNING resource_id;

-- clear_resource_hours --
-- Drop a resource's weekly hours (replaced in the same transaction).
DELETE FROM resource_hours WHERE resource_id = %(resource_id)s;

-- list_resource_blocks --
-- A resource's live blocks, in time order.
SELECT id, resource_id, lower(period) AS start_at, upper(period) AS end_at, reason, created_at
FROM resource_blocks WHERE resource_id = %(resource_id)s AND deleted_at IS NULL ORDER BY lower(period);

-- delete_resource_block --
-- Lift a block.
UPDATE resource_blocks SET deleted_at = now(), updated_at = now()
WHERE id = %(id)s AND resource_id = %(resource_id)s AND deleted_at IS NULL RETURNING id;
