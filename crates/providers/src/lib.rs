//! Typed clients for the four services a client stack is built on: the Supabase Management
//! API, GitHub REST, Vercel REST and the n8n public API, each exactly as far as provisioning
//! needs, all behind one HTTP policy (timeouts, error classification, rate-limit headers, a
//! shared rate budget per credential, secret redaction).
//!
//! This crate knows the providers' contracts and nothing about why they are called: no
//! sagas, journals, tenants or retries-until-done. It answers each call once, with an error
//! that says whether and when trying again makes sense; the caller owns the retry loop, and
//! resolves ambiguous creates by looking the resource up. Base URLs are configuration, so the
//! same clients talk to the real services or to the simulators.

pub mod classification;
pub mod error;
pub mod github;
pub mod http_policy;
pub mod n8n;
pub mod rate_budget;
pub mod rate_limit_headers;
pub mod shared_listing;
pub mod supabase;
pub mod vercel;

pub use error::{Provider, ProviderError};
pub use github::{GithubClient, GithubConfig};
pub use http_policy::HttpPolicy;
pub use n8n::{N8nApiFlavour, N8nClient, N8nConfig};
pub use rate_budget::{Allowance, RateBudget, RateBudgetConfig, WindowLimit, WindowLoad};
pub use secrecy::SecretString;
pub use shared_listing::SharedListing;
pub use supabase::{ProjectListing, ReadinessOutcome, SupabaseClient, SupabaseConfig};
pub use url::Url;
pub use vercel::{VercelClient, VercelConfig};
