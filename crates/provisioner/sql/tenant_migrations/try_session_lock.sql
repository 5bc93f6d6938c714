-- Takes the tenant's migration lock for the session if it is free, without waiting: a waiter
-- blocked inside a statement would hold a snapshot that a CREATE INDEX CONCURRENTLY of the
-- holder waits for. $1: the lock key.
SELECT pg_catalog.pg_try_advisory_lock($1)
