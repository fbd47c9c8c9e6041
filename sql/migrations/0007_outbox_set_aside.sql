-- An outbox event the relay cannot fan out (its payload refused by a cast or a constraint: a bug upstream)
-- would otherwise fail every batch it is in and stop all notifications behind it. The relay sets such an
-- event aside alone: published, with no deliveries, and the reason here (SQLSTATE and error class, never the
-- payload). An operator re-drives set-aside events once the cause is fixed:
--   UPDATE outbox SET published_at = NULL, relay_error = NULL WHERE relay_error IS NOT NULL;
ALTER TABLE outbox ADD COLUMN relay_error text;
CREATE INDEX outbox_set_aside_idx ON outbox (id) WHERE relay_error IS NOT NULL;
