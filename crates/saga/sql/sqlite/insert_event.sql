INSERT INTO saga_events (run_id, seq, at, kind, body) VALUES (?1, ?2, ?3, ?4, ?5)
