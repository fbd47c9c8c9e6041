-- widget_provider --
-- A live provider by its slug, as its booking page shows it.
SELECT id, slug, name, time_zone, currency FROM providers WHERE slug = %(slug)s AND deleted_at IS NULL;
