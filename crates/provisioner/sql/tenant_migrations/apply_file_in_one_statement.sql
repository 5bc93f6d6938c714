-- One migration file as one statement, for the Management API's SQL endpoint (one request per
-- call, no session to keep a transaction open across calls). The DO block takes the tenant's
-- migration lock, creates the history tables, and unless the version is recorded runs the
-- file's statements and records both rows: EXECUTE cannot end the transaction, so the file and
-- its rows commit together or not at all. A failing statement is re-raised with its number in
-- front of PostgreSQL's message (SQLSTATE, detail and hint kept), so the caller can name it.
-- With __RUN__ false the file is recorded without running (a legacy tenant's first migration,
-- or a statement run outside a transaction just before). The SELECT after it answers whether
-- this very transaction recorded it (now() is the transaction's start, the row's default).
-- Filled in by the caller: __LOCK_KEY__ (a number), __BOOKKEEPING__ and __STATEMENTS__
-- (dollar-quoted literals; __STATEMENTS__ an ARRAY of them), __VERSION__, __NAME__ and
-- __CHECKSUM__ (quoted literals), __RUN__ (true or false), __BODY_TAG__ (a dollar-quote tag
-- that occurs in none of them).
DO __BODY_TAG__
DECLARE
  statement_number integer := 0;
  statement_text text;
  failed_state text;
  failed_message text;
  failed_detail text;
  failed_hint text;
BEGIN
  PERFORM pg_catalog.pg_advisory_xact_lock(__LOCK_KEY__);
  EXECUTE __BOOKKEEPING__;
  IF EXISTS (SELECT 1 FROM supabase_migrations.schema_migrations WHERE version = __VERSION__) THEN
    RETURN;
  END IF;
  IF __RUN__ THEN
    PERFORM pg_catalog.set_config('lock_timeout', '30s', true);
    BEGIN
      FOREACH statement_text IN ARRAY __STATEMENTS__ LOOP
        statement_number := statement_number + 1;
        EXECUTE statement_text;
      END LOOP;
    EXCEPTION WHEN OTHERS THEN
      GET STACKED DIAGNOSTICS failed_state = RETURNED_SQLSTATE, failed_message = MESSAGE_TEXT,
        failed_detail = PG_EXCEPTION_DETAIL, failed_hint = PG_EXCEPTION_HINT;
      RAISE EXCEPTION USING ERRCODE = failed_state,
        MESSAGE = 'provisioner-statement ' || statement_number || ': ' || failed_message,
        DETAIL = failed_detail, HINT = failed_hint;
    END;
  END IF;
  INSERT INTO supabase_migrations.schema_migrations (version, name, statements)
    VALUES (__VERSION__, __NAME__, __STATEMENTS__);
  INSERT INTO provisioner.migration_checksums (version, checksum) VALUES (__VERSION__, __CHECKSUM__);
  DELETE FROM provisioner.migration_claims WHERE version = __VERSION__;
END
__BODY_TAG__;
SELECT applied_at = pg_catalog.now() AS applied_now
FROM provisioner.migration_checksums
WHERE version = __VERSION__
