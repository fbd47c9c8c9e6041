-- insert_provider --
-- A provider (salon, listing owner) with its time zone, currency and commission.
INSERT INTO providers (slug, name, time_zone, currency, commission_bps, hold_ttl_seconds)
VALUES (%(slug)s, %(name)s, %(time_zone)s, %(currency)s, %(commission_bps)s, %(hold_ttl_seconds)s)
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

-- insert_public_token --
-- A widget token for a provider; only its SHA-256 is kept.
INSERT INTO public_tokens (token_sha256, provider_id) VALUES (%(token_sha256)s, %(provider_id)s);
