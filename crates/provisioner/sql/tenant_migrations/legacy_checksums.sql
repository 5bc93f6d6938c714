-- The checksums of the single schema file given to a tenant before migrations, oldest first.
SELECT checksum FROM provisioner.schema_versions ORDER BY applied_at
