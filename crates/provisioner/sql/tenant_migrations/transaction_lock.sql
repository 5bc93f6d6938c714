-- Serialises concurrent applies to one database until the transaction ends. $1: the lock key.
SELECT pg_catalog.pg_advisory_xact_lock($1)
