SELECT status FROM saga_runs WHERE id = ?1
