-- Why a fenced append matched no row: lost lease, or a command waiting for the owner.
SELECT lease_owner, lease_generation, pending_command FROM saga_runs WHERE id = $1
