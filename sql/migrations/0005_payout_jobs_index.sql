-- transactional: false
-- The re-drive of stuck payouts looks up a payout's send jobs by payload. 0004 indexed them with the
-- payout job's type spelled out in its predicate; job types are named once, in shared/registry.py, so the
-- index keys on what the rows carry instead: any job about a payout. Built CONCURRENTLY (outside a
-- transaction, hence the yoyo directive above) so a deploy never blocks writes to jobs; the new index
-- exists before the old one goes.
CREATE INDEX CONCURRENTLY IF NOT EXISTS jobs_payout_id_idx
  ON jobs ((payload->>'payout_id'), updated_at) WHERE payload ? 'payout_id';
DROP INDEX CONCURRENTLY IF EXISTS jobs_payout_send_idx;
