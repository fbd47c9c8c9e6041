-- depends: 0001_init
-- Catalog read helpers: the resource as the API shows it, and the busy time availability subtracts.

-- A resource with the services it offers and its weekly hours, as the catalog API shows it.
CREATE VIEW resource_details AS
SELECT r.*,
       coalesce((SELECT array_agg(rs.service_id ORDER BY rs.created_at) FROM resource_services rs
                 WHERE rs.resource_id = r.id), '{}') AS service_ids,
       coalesce((SELECT jsonb_agg(jsonb_build_object('weekday', h.weekday, 'opens_at', h.opens_at,
                                                     'closes_at', h.closes_at) ORDER BY h.weekday, h.opens_at)
                 FROM resource_hours h WHERE h.resource_id = r.id), '[]') AS hours
FROM resources r;

-- The time a resource cannot be booked inside a window: bookings that hold time, and live blocks.
-- One index scan each, merged into a multirange that availability tests candidates against in memory.
CREATE FUNCTION resource_busy(resource uuid, win tstzrange) RETURNS tstzmultirange
LANGUAGE sql STABLE AS $$
  SELECT coalesce((SELECT range_agg(b.period) FROM bookings b
                   WHERE b.resource_id = resource AND b.status IN ('pending_payment', 'paid', 'completed')
                     AND b.period && win), '{}'::tstzmultirange)
       + coalesce((SELECT range_agg(k.period) FROM resource_blocks k
                   WHERE k.resource_id = resource AND k.deleted_at IS NULL AND k.period && win),
                  '{}'::tstzmultirange)
$$;

