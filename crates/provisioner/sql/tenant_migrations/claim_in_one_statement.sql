-- Claims a file that runs outside a transaction, for an applier on the Management API's SQL
-- endpoint: no session outlives a request there, so instead of a session lock the claim is a
-- row. Two such statements at once would wait on each other's snapshots (a deadlock), so only
-- the claim's holder runs it; the others wait for its record. A claim older than
-- __STALE_SECONDS__ is taken over (its holder died). The DO block creates the history tables
-- under the migration lock, as every apply does; the INSERT answers `claimed` only to the
-- applier that now holds the claim, and nothing when the file is recorded already.
-- Filled in by the caller: __LOCK_KEY__ and __STALE_SECONDS__ (numbers), __BOOKKEEPING__ (a
-- dollar-quoted literal), __VERSION__ (a quoted literal), __BODY_TAG__ (a dollar-quote tag that
-- occurs in none of them).
DO __BODY_TAG__
BEGIN
  PERFORM pg_catalog.pg_advisory_xact_lock(__LOCK_KEY__);
  EXECUTE __BOOKKEEPING__;
END
__BODY_TAG__;
INSERT INTO provisioner.migration_claims AS claim (version)
SELECT __VERSION__
WHERE NOT EXISTS (SELECT 1 FROM supabase_migrations.schema_migrations WHERE version = __VERSION__)
ON CONFLICT (version) DO UPDATE SET claimed_at = pg_catalog.now()
  WHERE claim.claimed_at < pg_catalog.now() - pg_catalog.make_interval(secs => __STALE_SECONDS__)
RETURNING true AS claimed
