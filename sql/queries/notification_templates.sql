-- A provider's email templates: the platform's defaults (provider_id NULL) and its own overrides. Every
-- statement is scoped by the provider in the path; another provider's override is never read or changed.
-- An override exists only for an (event, audience) that has a default: nobody invents events, and nobody
-- mails an audience the platform does not (a customer must never receive a provider's payout email).

-- notification_template_list --
-- The effective template per (event, audience) for this provider: its override where it has one, else the
-- default (the same choice delivery_to_send makes). No row at all: no such provider; one row with a NULL
-- event: a provider without templates.
SELECT t.event, t.audience, t.subject, t.text_body, t.html_body, t.source, t.updated_at
FROM providers p
LEFT JOIN LATERAL (
  SELECT DISTINCT ON (event, audience) event, audience, subject, text_body, html_body, updated_at,
         CASE WHEN provider_id IS NULL THEN 'default' ELSE 'provider' END AS source
  FROM notification_templates
  WHERE (provider_id IS NULL OR provider_id = p.id)
    AND audience <> 'user'  -- sign-in and invitation mail is the platform's, not a provider's to change
  ORDER BY event, audience, provider_id NULLS LAST
) t ON true
WHERE p.id = %(provider_id)s
ORDER BY t.event, t.audience;

-- notification_template_target --
-- What an override is checked against before it is stored: the live provider (its name, time zone and
-- currency make the sample context) and whether the event has a default. No row: no such live provider.
SELECT p.name, p.time_zone, p.currency,
       EXISTS (SELECT 1 FROM notification_templates t
               WHERE t.provider_id IS NULL AND t.event = %(event)s AND t.audience = %(audience)s
                 AND t.audience <> 'user') AS event_known
FROM providers p
WHERE p.id = %(provider_id)s AND p.deleted_at IS NULL;

-- notification_template_upsert --
-- Store (or replace) this provider's override of an event that has a default; no row when the provider is
-- not live or the event has no default. The conflict target is the unique index's own expression.
INSERT INTO notification_templates (provider_id, event, audience, subject, text_body, html_body)
SELECT p.id, %(event)s, %(audience)s, %(subject)s, %(text_body)s, %(html_body)s
FROM providers p
WHERE p.id = %(provider_id)s AND p.deleted_at IS NULL
  AND EXISTS (SELECT 1 FROM notification_templates t
              WHERE t.provider_id IS NULL AND t.event = %(event)s AND t.audience = %(audience)s)
ON CONFLICT (event, audience, coalesce(provider_id, '00000000-0000-0000-0000-000000000000'))
DO UPDATE SET subject = EXCLUDED.subject, text_body = EXCLUDED.text_body, html_body = EXCLUDED.html_body
RETURNING event, audience, subject, text_body, html_body, 'provider' AS source, updated_at;

-- notification_template_delete --
-- Drop this provider's override: the default applies again. No row when it had none.
DELETE FROM notification_templates
WHERE provider_id = %(provider_id)s AND event = %(event)s AND audience = %(audience)s
RETURNING id;
