//! Every call the simulators answered, in order: what tests count and what the contract check
//! reads. Headers are never recorded, so no token can end up here, and secret values inside
//! bodies (passwords, API keys, environment variable values) are replaced before recording.

use std::sync::Mutex;

use crate::Provider;
use crate::contract::Exchange;

/// One call as the simulator saw it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LoggedRequest {
    pub provider: Provider,
    pub method: String,
    /// The concrete path, without the query string.
    pub path: String,
    /// `"METHOD /template"`, with the spec's parameter names, e.g. `"GET /v1/projects/{ref}"`.
    pub endpoint: String,
    /// The raw query string, if any.
    pub query: Option<String>,
    pub status: u16,
    /// With secret values replaced by [`REDACTED`].
    pub request_body: Option<serde_json::Value>,
    /// With secret values replaced by [`REDACTED`].
    pub response_body: Option<serde_json::Value>,
    pub at: chrono::DateTime<chrono::Utc>,
    /// The call was performed but its connection was dropped before the answer was sent.
    pub connection_dropped: bool,
}

#[derive(Debug, Default)]
pub(crate) struct RequestLog {
    entries: Mutex<Vec<LoggedRequest>>,
}

impl RequestLog {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<LoggedRequest>> {
        // Appends are atomic under the lock, so a poisoned lock still holds a consistent log.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn push(&self, entry: LoggedRequest) {
        self.lock().push(entry);
    }

    pub(crate) fn entries(&self) -> Vec<LoggedRequest> {
        self.lock().clone()
    }

    pub(crate) fn count(&self, provider: Provider, endpoint: &str) -> usize {
        self.lock()
            .iter()
            .filter(|entry| entry.provider == provider && entry.endpoint == endpoint)
            .count()
    }
}

/// What replaces a secret value in a logged body (still a string, so the logged exchange keeps
/// its shape for the contract check).
pub const REDACTED: &str = "[redacted]";

/// Fields whose values are secrets in every provider's bodies.
const SECRET_FIELDS: [&str; 4] = ["db_pass", "api_key", "password", "token"];

/// Replaces secret values in a body about to be logged: database passwords, API keys, and
/// Vercel environment variable values (they carry Supabase keys).
pub(crate) fn redact(provider: Provider, body: &mut serde_json::Value) {
    match body {
        serde_json::Value::Object(object) => {
            for (key, value) in object.iter_mut() {
                let secret = SECRET_FIELDS.contains(&key.as_str())
                    || (provider == Provider::Vercel && key == "value");
                if secret && value.is_string() {
                    *value = serde_json::Value::String(REDACTED.to_owned());
                } else {
                    redact(provider, value);
                }
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                redact(provider, item);
            }
        }
        _ => {}
    }
}

/// Calls that belong to an API contract (n8n's production webhooks are the workflow's own
/// interface, not the public API, so they are left out).
pub(crate) fn exchanges(entries: &[LoggedRequest]) -> Vec<Exchange> {
    entries
        .iter()
        .filter(|entry| !entry.endpoint.contains(" /webhook/"))
        .map(|entry| Exchange {
            provider: entry.provider,
            method: entry.method.clone(),
            path: entry.path.clone(),
            status: entry.status,
            request_body: entry.request_body.clone(),
            response_body: entry.response_body.clone(),
        })
        .collect()
}
