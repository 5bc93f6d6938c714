-- Several worker processes may start at once; one migrates, the others wait for it.
SELECT pg_advisory_xact_lock(7250198731)
