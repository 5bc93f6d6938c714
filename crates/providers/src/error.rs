//! The one error type every provider call returns, shaped by what the caller must do next:
//! wait and retry, give up, treat the resource as absent, or adopt/resolve a conflict.

use std::time::Duration;

/// Which provider a call went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Provider {
    Supabase,
    Github,
    Vercel,
    N8n,
}

impl Provider {
    pub fn name(self) -> &'static str {
        match self {
            Provider::Supabase => "supabase",
            Provider::Github => "github",
            Provider::Vercel => "vercel",
            Provider::N8n => "n8n",
        }
    }
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a provider call did not produce its result.
///
/// Messages carry the provider's own wording (with any secret the request held scrubbed out),
/// never a token, key, password or environment value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// Worth trying again, after `after` when the provider said how long (Retry-After or a
    /// rate-limit reset), else after the caller's own backoff.
    ///
    /// `ambiguous` is true when the request may have reached the provider and been acted on
    /// (the response was lost: timeout after sending, connection dropped mid-exchange). A
    /// create that fails this way must be resolved by looking the resource up, never by
    /// assuming it did or did not happen.
    #[error("{provider}: transient failure{}: {message}", status_suffix(*.status))]
    Retryable {
        provider: Provider,
        status: Option<u16>,
        message: String,
        after: Option<Duration>,
        ambiguous: bool,
    },
    /// The provider refused and will refuse again: bad token, invalid body, forbidden, …
    #[error("provider refused the request (HTTP {status}): {message}")]
    Permanent { status: u16, message: String },
    /// The resource does not exist (HTTP 404, or the call's documented equivalent).
    #[error("not found")]
    NotFound,
    /// The resource (or its name) already exists or is in a conflicting state.
    #[error("conflict: {message}")]
    Conflict { message: String },
    /// The provider answered with a success status but a body our types cannot read.
    #[error("{provider}: unreadable response to {operation}: {message}")]
    Decode {
        provider: Provider,
        operation: String,
        message: String,
    },
    /// Some entries of a batch were rejected (Vercel env upsert `failed[]`); names the keys,
    /// never the values.
    #[error("{provider}: rejected entries: {}", .entries.join("; "))]
    PartiallyRejected {
        provider: Provider,
        entries: Vec<String>,
    },
    /// The client was configured with something it cannot use (bad base URL, header value).
    #[error("invalid provider client configuration: {0}")]
    Config(String),
}

fn status_suffix(status: Option<u16>) -> String {
    status.map(|s| format!(" (HTTP {s})")).unwrap_or_default()
}

impl ProviderError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, ProviderError::Retryable { .. })
    }

    /// How long the provider asked us to wait, when it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ProviderError::Retryable { after, .. } => *after,
            _ => None,
        }
    }

    /// True when the request may have been performed although no answer arrived.
    pub fn is_ambiguous(&self) -> bool {
        matches!(
            self,
            ProviderError::Retryable {
                ambiguous: true,
                ..
            }
        )
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            ProviderError::Retryable { status, .. } => *status,
            ProviderError::Permanent { status, .. } => Some(*status),
            ProviderError::NotFound => Some(404),
            _ => None,
        }
    }
}
