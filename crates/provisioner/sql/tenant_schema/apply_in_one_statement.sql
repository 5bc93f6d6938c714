-- The whole apply as one statement, for the Management API's SQL endpoint (one request per
-- call, no session to keep a transaction open across calls). The DO block locks, creates the
-- version table, and runs the script only when no version is recorded; EXECUTE cannot end the
-- transaction, so the script and its version row commit together or not at all. The SELECT
-- after it answers what is recorded: `applied_now` is true for a row this very transaction
-- wrote (now() is the transaction's start, the row's default).
-- Filled in by the caller: __LOCK_KEY__ (a number), __VERSION_TABLE__ and __SCRIPT__
-- (dollar-quoted literals), __CHECKSUM__ (a quoted literal), __BODY_TAG__ (a dollar-quote tag
-- that occurs in none of them).
DO __BODY_TAG__
BEGIN
  PERFORM pg_catalog.pg_advisory_xact_lock(__LOCK_KEY__);
  EXECUTE __VERSION_TABLE__;
  IF EXISTS (SELECT 1 FROM provisioner.schema_versions) THEN
    RETURN;
  END IF;
  PERFORM pg_catalog.set_config('lock_timeout', '30s', true);
  EXECUTE __SCRIPT__;
  INSERT INTO provisioner.schema_versions (checksum) VALUES (__CHECKSUM__);
END
__BODY_TAG__;
SELECT checksum, applied_at = pg_catalog.now() AS applied_now
FROM provisioner.schema_versions
ORDER BY applied_at
