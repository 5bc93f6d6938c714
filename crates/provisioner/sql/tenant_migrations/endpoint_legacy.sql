-- The legacy single-schema checksums, oldest first, as JSON.
(SELECT COALESCE(pg_catalog.jsonb_agg(v.checksum ORDER BY v.applied_at), '[]'::jsonb)
 FROM provisioner.schema_versions AS v)
