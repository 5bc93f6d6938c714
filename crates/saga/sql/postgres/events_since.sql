SELECT seq, at, body FROM saga_events WHERE run_id = $1 AND seq > $2 ORDER BY seq
