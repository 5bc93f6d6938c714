//! Stateful simulators of the four provider APIs the provisioner talks to (Supabase
//! Management, GitHub REST, Vercel REST, n8n public API), on loopback, with latency and fault
//! injection. Used by tests, `provisioner demo` and `provisioner sandbox`; never by a
//! production code path. Knows nothing of the provisioner or its clients: it is built from the
//! providers' contracts, so that a client bug and a simulator bug do not cancel out.

pub mod contract;

/// What a fresh Supabase project's database already contains (roles, `auth`, `extensions`,
/// grants); applied to every simulated project's database on create.
pub const SUPABASE_BOOTSTRAP_SQL: &str = include_str!("../sql/supabase_bootstrap.sql");

/// The four providers, as the simulators, the request log and the contracts name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Supabase,
    Github,
    Vercel,
    N8n,
}
