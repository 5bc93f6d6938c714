-- Our checksum of every applied migration file, as JSON.
(SELECT COALESCE(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
   'version', c.version, 'checksum', c.checksum)), '[]'::jsonb)
 FROM provisioner.migration_checksums AS c)
