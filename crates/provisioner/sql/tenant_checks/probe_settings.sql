-- Bounds for the probe's transaction: a policy that loops, or a lock held elsewhere, fails
-- its probe rather than hanging the check.
SELECT pg_catalog.set_config('statement_timeout', '10s', true),
       pg_catalog.set_config('lock_timeout', '5s', true)
