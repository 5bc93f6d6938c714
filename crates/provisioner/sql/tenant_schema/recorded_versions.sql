-- Every schema version recorded, oldest first.
SELECT checksum FROM provisioner.schema_versions ORDER BY applied_at
