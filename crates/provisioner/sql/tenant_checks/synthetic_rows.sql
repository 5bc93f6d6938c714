-- One INSERT per table in the exposed schemas ($1) giving it a synthetic row, numbered $2
-- (1: the signed-in user's, 2: another tenant's), whose every uuid column holds $3.
--
-- Every column of a type gets the same value in one row: all uuids are $3, all numbers $2,
-- all text 'synthetic-$2'. So row 1 of every table points at row 1 of every other one (the
-- user's membership, organisation, profile, ...) and row 2 at row 2: two coherent tenants,
-- one of them the signed-in user's (when $3 is the user's id), without knowing the schema.
-- Enums take their first label in row 1 and their last in row 2; arrays and JSON are empty.
-- A type with no sensible literal gets NULL, and a NOT NULL column of it makes the insert
-- fail (reported as a warning, the table probed without that row). Partitions get their rows
-- through their parent.
SELECT n.nspname::pg_catalog.text AS schema_name,
       c.relname::pg_catalog.text AS name,
       CASE WHEN pg_catalog.count(a.attnum) = 0 THEN
           pg_catalog.format(
               'INSERT INTO %I.%I DEFAULT VALUES RETURNING tableoid::pg_catalog.int8, '
               'ctid::pg_catalog.text', n.nspname, c.relname)
       ELSE
           pg_catalog.format(
               'INSERT INTO %I.%I (%s) OVERRIDING SYSTEM VALUE VALUES (%s) '
               'RETURNING tableoid::pg_catalog.int8, ctid::pg_catalog.text',
               n.nspname, c.relname,
               pg_catalog.string_agg(pg_catalog.quote_ident(a.attname), ', ' ORDER BY a.attnum),
               pg_catalog.string_agg(
                   CASE
                       WHEN base.typtype = 'e' THEN pg_catalog.quote_literal((
                           SELECT e.enumlabel::pg_catalog.text FROM pg_catalog.pg_enum e
                           WHERE e.enumtypid = base.oid
                           ORDER BY CASE WHEN $2 = 1 THEN e.enumsortorder
                                         ELSE -e.enumsortorder END
                           LIMIT 1))
                       WHEN base.typcategory = 'A' THEN '''{}'''
                       WHEN base.oid = 'pg_catalog.uuid'::pg_catalog.regtype
                           THEN pg_catalog.quote_literal($3::pg_catalog.text)
                       WHEN base.oid = 'pg_catalog.bool'::pg_catalog.regtype
                           THEN CASE WHEN $2 = 1 THEN 'true' ELSE 'false' END
                       WHEN base.oid IN ('pg_catalog.json'::pg_catalog.regtype,
                                         'pg_catalog.jsonb'::pg_catalog.regtype) THEN '''{}'''
                       WHEN base.oid = 'pg_catalog.bytea'::pg_catalog.regtype
                           THEN pg_catalog.quote_literal('\x0' || $2::pg_catalog.text)
                       WHEN base.typcategory = 'N' THEN pg_catalog.quote_literal($2::pg_catalog.text)
                       WHEN base.typcategory = 'S'
                           THEN pg_catalog.quote_literal('synthetic-' || $2::pg_catalog.text)
                       WHEN base.typcategory = 'D' THEN '''now'''
                       WHEN base.typcategory = 'T' THEN '''1 hour'''
                       WHEN base.typcategory = 'I'
                           THEN pg_catalog.quote_literal('192.0.2.' || $2::pg_catalog.text)
                       WHEN base.typcategory = 'R' THEN '''empty'''
                       ELSE 'NULL'
                   END || '::' || pg_catalog.format_type(a.atttypid, a.atttypmod),
                   ', ' ORDER BY a.attnum))
       END AS insert_statement
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_attribute a
  ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
LEFT JOIN pg_catalog.pg_type declared ON declared.oid = a.atttypid
LEFT JOIN pg_catalog.pg_type base
  ON base.oid = COALESCE(NULLIF(declared.typbasetype, 0), declared.oid)
WHERE n.nspname::pg_catalog.text = ANY ($1::pg_catalog.text[])
  AND c.relkind IN ('r', 'p')
  AND NOT c.relispartition
GROUP BY n.nspname, c.relname
ORDER BY n.nspname, c.relname
