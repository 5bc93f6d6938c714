//! Applying the app schema to a client's Supabase database, and checking it as a user would meet it.
