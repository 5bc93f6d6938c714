-- Releases the session's migration lock. $1: the lock key.
SELECT pg_catalog.pg_advisory_unlock($1)
