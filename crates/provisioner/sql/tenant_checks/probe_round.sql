-- One round of the probe as a single statement, for the Management API's SQL endpoint (one
-- request per call, no transaction kept across calls). It does what the probe does on a
-- connection (set aside constraints and triggers, give every table its two synthetic rows,
-- read tables as the synthetic user) and then raises the error PV001 whose message carries
-- what it found as JSON after `provisioner-probe-result `. The error is the point: a
-- statement that fails keeps nothing, so every round is rolled back whole, whatever the
-- endpoint does with transactions. Each probe runs in a block of its own that ends by raising
-- PV000, so one probe's role, settings and disabled row level security never reach the next.
--
-- Filled in by the caller: __BODY_TAG__ (a dollar-quote tag occurring nowhere else),
-- __SCHEMAS__ (text[] literal), __CLAIMS__, __MINE__, __THEIRS__ (quoted literals),
-- __SPECS__ (a jsonb literal: [{"table": i, "without": [j, ...]}], or NULL for every table
-- alone), and the check queries __TARGETS_SQL__, __PREPARATION_SQL__, __ROWS_SQL__,
-- __AS_AUTHENTICATED_SQL__ (dollar-quoted).
--
-- Unlike the connection's probe, no statement_timeout per read: a timeout set inside a
-- statement does not bound that statement; the endpoint's own request timeout bounds a round.
DO __BODY_TAG__
DECLARE
  schemas text[] := __SCHEMAS__;
  claims text := __CLAIMS__;
  specs jsonb := __SPECS__;
  targets jsonb := '[]';
  others jsonb := '{}';
  warnings jsonb := '[]';
  results jsonb := '[]';
  found_target record;
  preparation text;
  synthetic_row int;
  row_owner text;
  synthetic record;
  location_oid bigint;
  location_ctid text;
  spec jsonb;
  probed jsonb;
  other jsonb;
  without_index text;
  stage text;
  visible bigint;
  others_visible bigint;
BEGIN
  PERFORM pg_catalog.set_config('lock_timeout', '5s', true);
  FOR found_target IN EXECUTE __TARGETS_SQL__ USING schemas LOOP
    targets := targets || pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object(
      'schema', found_target.schema_name, 'name', found_target.name,
      'probe', found_target.probe, 'disable_rls', found_target.disable_rls));
  END LOOP;

  FOR preparation IN EXECUTE __PREPARATION_SQL__ USING schemas LOOP
    BEGIN
      EXECUTE preparation;
    EXCEPTION WHEN OTHERS THEN
      -- Shows up as the table's failed insert, as on a connection.
      NULL;
    END;
  END LOOP;

  FOR synthetic_row, row_owner IN SELECT * FROM (VALUES (1, __MINE__), (2, __THEIRS__)) AS r LOOP
    FOR synthetic IN EXECUTE __ROWS_SQL__ USING schemas, synthetic_row, row_owner LOOP
      BEGIN
        EXECUTE synthetic.insert_statement INTO location_oid, location_ctid;
        IF synthetic_row = 2 THEN
          others := others || pg_catalog.jsonb_build_object(
            pg_catalog.format('%I.%I', synthetic.schema_name, synthetic.name),
            pg_catalog.jsonb_build_array(location_oid, location_ctid));
        END IF;
      EXCEPTION WHEN OTHERS THEN
        warnings := warnings || pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object(
          'schema', synthetic.schema_name, 'name', synthetic.name,
          'row', synthetic_row, 'message', SQLERRM));
      END;
    END LOOP;
  END LOOP;

  IF specs IS NULL THEN
    SELECT COALESCE(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
             'table', i - 1, 'without', '[]'::jsonb) ORDER BY i), '[]')
      INTO specs
      FROM pg_catalog.generate_series(1, pg_catalog.jsonb_array_length(targets)) AS i;
  END IF;

  FOR spec IN SELECT value FROM pg_catalog.jsonb_array_elements(specs) LOOP
    probed := targets -> (spec ->> 'table')::int;
    other := others -> pg_catalog.format('%I.%I', probed ->> 'schema', probed ->> 'name');
    stage := 'isolating';
    BEGIN
      FOR without_index IN SELECT value FROM pg_catalog.jsonb_array_elements_text(spec -> 'without') LOOP
        EXECUTE targets -> without_index::int ->> 'disable_rls';
      END LOOP;
      stage := 'acting';
      EXECUTE __AS_AUTHENTICATED_SQL__ USING claims,
        pg_catalog.format('%I, public, extensions', probed ->> 'schema');
      stage := 'reading';
      EXECUTE probed ->> 'probe' INTO visible, others_visible
        USING (other ->> 0)::bigint, other ->> 1;
      RAISE SQLSTATE 'PV000';
    EXCEPTION
      WHEN SQLSTATE 'PV000' THEN
        results := results || pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object(
          'outcome', 'read', 'others_visible', others_visible > 0));
      WHEN OTHERS THEN
        results := results || pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object(
          'outcome', CASE stage WHEN 'isolating' THEN 'not_isolated'
                                WHEN 'acting' THEN 'cannot_act_as' ELSE 'failed' END,
          'code', SQLSTATE, 'message', SQLERRM));
    END;
  END LOOP;

  RAISE EXCEPTION USING ERRCODE = 'PV001', MESSAGE = 'provisioner-probe-result ' ||
    pg_catalog.jsonb_build_object(
      'targets', (SELECT COALESCE(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                    'schema', t -> 'schema', 'name', t -> 'name') ORDER BY n), '[]')
                  FROM pg_catalog.jsonb_array_elements(targets) WITH ORDINALITY AS e(t, n)),
      'warnings', warnings,
      'results', results)::text;
END
__BODY_TAG__
