-- The environment a run was started in (an opaque fingerprint of the provider endpoints and
-- accounts). Workers claim only runs of their own environment. Runs from before this
-- column have none, and only workers without an environment claim them.
ALTER TABLE saga_runs ADD COLUMN environment TEXT;
