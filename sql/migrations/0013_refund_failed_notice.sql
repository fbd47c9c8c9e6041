-- A refund that fails after it was created (refund.failed: the card was closed, say) gives the money back on
-- the ledger (refund_reversal, 0010) and now tells both sides (topic refund_failed): the customer that the
-- money did not reach them and that the provider will be in touch; the provider that the refund needs
-- another way (the amount is back on their balance).
INSERT INTO notification_templates (event, audience, subject, text_body, html_body) VALUES
('refund_failed', 'customer', 'Your refund from {{ provider.name }} could not be completed',
 E'Hello {{ customer.name }},\n\nthe refund of {{ event.amount_display }} for {{ booking.service_name }} could not reach your card ({{ event.reason }}). {{ provider.name }} has been told and will arrange another way to pay you back.\n\n{{ link }}\n',
 '<p>Hello {{ customer.name }},</p><p>the refund of {{ event.amount_display }} for <b>{{ booking.service_name }}</b> could not reach your card ({{ event.reason }}). {{ provider.name }} has been told and will arrange another way to pay you back.</p><p><a href="{{ link }}">Your booking</a></p>'),
('refund_failed', 'provider', 'Refund failed: {{ event.amount_display }} for {{ booking.service_name }}',
 E'The refund of {{ event.amount_display }} to {{ customer.name }} for {{ booking.service_name }} on {{ booking.start_at }} failed at Stripe ({{ event.reason }}). The amount is back on your balance; please refund the customer another way.\n\n{{ link }}\n',
 '<p>The refund of {{ event.amount_display }} to {{ customer.name }} for <b>{{ booking.service_name }}</b> on {{ booking.start_at }} failed at Stripe ({{ event.reason }}). The amount is back on your balance; please refund the customer another way.</p><p><a href="{{ link }}">Open the booking</a></p>');
