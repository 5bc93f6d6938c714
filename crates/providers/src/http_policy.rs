//! The single path every provider request takes: rate budget, timeouts, authentication,
//! classification of the answer, and redaction of anything secret on the way out.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use url::Url;

use crate::classification::{self, TransientClientErrors};
use crate::error::{Provider, ProviderError};
use crate::rate_budget::{self, Endpoint, RateBudget, RateBudgetConfig};
use crate::rate_limit_headers::RateLimitSignal;

/// Timeouts applied to every call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpPolicy {
    /// TCP + TLS connect. A connect failure is never ambiguous: nothing was sent.
    pub connect_timeout: Duration,
    /// Whole request, first byte out to last byte in. Expiry after sending is ambiguous.
    pub request_timeout: Duration,
}

impl Default for HttpPolicy {
    fn default() -> Self {
        HttpPolicy {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
        }
    }
}

/// How a client proves who it is. The value never leaves this type except into the header.
#[derive(Clone)]
pub(crate) enum Credential {
    Bearer(SecretString),
    Header(HeaderName, SecretString),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Bearer(_) => f.write_str("Bearer([REDACTED])"),
            Credential::Header(name, _) => write!(f, "Header({name}, [REDACTED])"),
        }
    }
}

impl Credential {
    fn secret(&self) -> &SecretString {
        match self {
            Credential::Bearer(secret) | Credential::Header(_, secret) => secret,
        }
    }

    fn header(&self) -> Result<(HeaderName, HeaderValue), ProviderError> {
        let (name, text) = match self {
            Credential::Bearer(token) => (
                reqwest::header::AUTHORIZATION,
                format!("Bearer {}", token.expose_secret()),
            ),
            Credential::Header(name, key) => (name.clone(), key.expose_secret().to_owned()),
        };
        let mut value = HeaderValue::from_str(&text).map_err(|_| {
            ProviderError::Config("credential contains characters not allowed in a header".into())
        })?;
        // Keeps the value out of any Debug output of the request (hyper, reqwest, h2).
        value.set_sensitive(true);
        Ok((name, value))
    }
}

/// Where a request goes: a path under the client's base URL, or a URL the provider handed
/// us (a GitHub `Link` page), which must stay on the base URL's origin.
#[derive(Debug)]
pub(crate) enum Target<'a> {
    Path(Vec<&'a str>),
    Absolute(Url),
}

/// One request, described.
#[derive(Debug)]
pub(crate) struct Call<'a> {
    pub method: Method,
    /// The endpoint as the spec names it (`GET /v1/projects/{ref}`), for logs and errors.
    pub operation: &'static str,
    pub target: Target<'a>,
    pub query: Vec<(&'static str, String)>,
    /// Serialized JSON; may hold secrets, so it is never logged nor put into an error.
    pub body: Option<Vec<u8>>,
    pub transient: TransientClientErrors,
    /// Values to scrub from any provider message that comes back (echoed passwords, env
    /// values).
    pub secrets: Vec<&'a SecretString>,
    /// Keep the provider's error message whole instead of cutting it at 500 bytes: for an
    /// answer whose message is the result (a database error the caller parses).
    pub whole_message: bool,
}

impl<'a> Call<'a> {
    pub fn new(method: Method, operation: &'static str, segments: Vec<&'a str>) -> Self {
        Call {
            method,
            operation,
            target: Target::Path(segments),
            query: Vec::new(),
            body: None,
            transient: TransientClientErrors::None,
            secrets: Vec::new(),
            whole_message: false,
        }
    }

    pub fn query(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.query.push((name, value.into()));
        self
    }

    pub fn json<T: serde::Serialize + ?Sized>(
        mut self,
        provider: Provider,
        body: &T,
    ) -> Result<Self, ProviderError> {
        let bytes = serde_json::to_vec(body).map_err(|e| ProviderError::Decode {
            provider,
            operation: self.operation.to_owned(),
            message: format!("request body could not be encoded: {}", e.classify_name()),
        })?;
        self.body = Some(bytes);
        Ok(self)
    }

    pub fn transient(mut self, transient: TransientClientErrors) -> Self {
        self.transient = transient;
        self
    }

    pub fn secret(mut self, secret: &'a SecretString) -> Self {
        self.secrets.push(secret);
        self
    }

    pub fn whole_message(mut self) -> Self {
        self.whole_message = true;
        self
    }
}

trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}

impl ClassifyName for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "io",
            serde_json::error::Category::Syntax => "syntax",
            serde_json::error::Category::Data => "data",
            serde_json::error::Category::Eof => "eof",
        }
    }
}

/// A successful answer.
#[derive(Debug)]
pub(crate) struct Reply {
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json<T: DeserializeOwned>(
        &self,
        provider: Provider,
        operation: &str,
    ) -> Result<T, ProviderError> {
        serde_json::from_slice(&self.body).map_err(|e| decode_error(provider, operation, &e))
    }
}

/// A description of a decode failure that cannot quote response values (which may be keys).
fn decode_error(provider: Provider, operation: &str, e: &serde_json::Error) -> ProviderError {
    let text = e.to_string();
    let safe = if text.starts_with("missing field") {
        text.split(" at line")
            .next()
            .unwrap_or("missing field")
            .to_owned()
    } else {
        text.split([':', ',', '`'])
            .next()
            .unwrap_or("")
            .trim()
            .to_owned()
    };
    ProviderError::Decode {
        provider,
        operation: operation.to_owned(),
        message: format!(
            "{} ({} error at line {} column {})",
            safe,
            e.classify_name(),
            e.line(),
            e.column()
        ),
    }
}

/// A provider's HTTP endpoint with its credential, policy and shared rate budget.
#[derive(Clone)]
pub(crate) struct Transport {
    provider: Provider,
    base: Url,
    client: reqwest::Client,
    credential: Credential,
    headers: HeaderMap,
    default_query: Vec<(&'static str, String)>,
    budget: Arc<RateBudget>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("provider", &self.provider)
            .field("base", &self.base.as_str())
            .field("credential", &self.credential)
            .field("budget", self.budget.config())
            .finish_non_exhaustive()
    }
}

impl Transport {
    pub fn new(
        provider: Provider,
        base: &Url,
        credential: Credential,
        policy: HttpPolicy,
        budget: RateBudgetConfig,
    ) -> Result<Self, ProviderError> {
        if base.cannot_be_a_base() || !matches!(base.scheme(), "http" | "https") {
            return Err(ProviderError::Config(format!(
                "{provider} base URL must be an http(s) URL, got {base}"
            )));
        }
        let client = reqwest::Client::builder()
            .connect_timeout(policy.connect_timeout)
            .timeout(policy.request_timeout)
            // A redirect would re-send the request elsewhere; each provider's documented
            // answers are final, so a 3xx is reported, not followed.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("provisioner-providers/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|_| ProviderError::Config("HTTP client could not be built".into()))?;
        let origin = base.origin().ascii_serialization();
        let budget = rate_budget::shared_budget(provider, &origin, credential.secret(), budget);
        let mut headers = HeaderMap::new();
        headers.insert(
            reqwest::header::ACCEPT,
            HeaderValue::from_static("application/json"),
        );
        Ok(Transport {
            provider,
            base: base.clone(),
            client,
            credential,
            headers,
            default_query: Vec::new(),
            budget,
        })
    }

    pub fn with_header(mut self, name: HeaderName, value: &str) -> Result<Self, ProviderError> {
        let value = HeaderValue::from_str(value)
            .map_err(|_| ProviderError::Config(format!("invalid value for header {name}")))?;
        self.headers.insert(name, value);
        Ok(self)
    }

    pub fn with_default_query(mut self, name: &'static str, value: String) -> Self {
        self.default_query.push((name, value));
        self
    }

    pub fn budget(&self) -> &Arc<RateBudget> {
        &self.budget
    }

    fn url_for(&self, call: &Call<'_>) -> Result<Url, ProviderError> {
        let mut url = match &call.target {
            Target::Path(segments) => {
                let mut url = self.base.clone();
                {
                    let mut path = url.path_segments_mut().map_err(|()| {
                        ProviderError::Config("base URL cannot take a path".into())
                    })?;
                    path.pop_if_empty();
                    path.extend(segments.iter());
                }
                url
            }
            Target::Absolute(url) => {
                // The credential goes with the request: never to another origin.
                if url.origin() != self.base.origin() {
                    return Err(ProviderError::Decode {
                        provider: self.provider,
                        operation: call.operation.to_owned(),
                        message: format!(
                            "next-page link points to another origin ({}); not followed",
                            url.origin().ascii_serialization()
                        ),
                    });
                }
                url.clone()
            }
        };
        if !call.query.is_empty() || !self.default_query.is_empty() {
            let existing: Vec<String> = url.query_pairs().map(|(k, _)| k.into_owned()).collect();
            let mut pairs = url.query_pairs_mut();
            for (name, value) in self.default_query.iter().chain(call.query.iter()) {
                if !existing.iter().any(|k| k == name) {
                    pairs.append_pair(name, value);
                }
            }
        }
        Ok(url)
    }

    /// Sends `call` and returns its answer if it succeeded, else the classified error.
    pub async fn execute(&self, call: Call<'_>) -> Result<Reply, ProviderError> {
        let url = self.url_for(&call)?;
        let auth = self.credential.header()?;
        let provider = self.provider.name();
        let endpoint = match &call.target {
            Target::Path(segments) => Endpoint::for_path(self.provider, call.operation, segments),
            Target::Absolute(_) => Endpoint::new(call.operation),
        };
        let waiting = tokio::time::Instant::now();
        let observed = crate::rate_budget::wait_observed();
        let permit = self.budget.acquire(&endpoint).await;
        drop(observed);
        let waited = waiting.elapsed();
        // Below a millisecond the budget had a token ready: not a wait worth counting.
        if waited >= Duration::from_millis(1) {
            metrics::counter!("provider_rate_budget_waits_total", "provider" => provider)
                .increment(1);
            metrics::histogram!("provider_rate_budget_wait_seconds", "provider" => provider)
                .record(waited.as_secs_f64());
        }
        let started = tokio::time::Instant::now();
        // The request is built, and the sending future allocated, only once the budget lets
        // the call go: thousands of calls wait in the budgets at once, and each carried its
        // built request and the space of a send in flight while it waited.
        let (auth_name, auth_value) = auth;
        let mut request = self
            .client
            .request(call.method.clone(), url)
            .headers(self.headers.clone())
            .header(auth_name, auth_value);
        if let Some(body) = call.body.clone() {
            request = request
                .header(
                    reqwest::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )
                .body(body);
        }
        let outcome = Box::pin(self.send(call, request, permit, started)).await;
        let result = match &outcome {
            Ok(_) => "ok",
            Err(ProviderError::Retryable { .. }) => "retryable",
            Err(_) => "error",
        };
        metrics::counter!(
            "provider_calls_total",
            "provider" => provider,
            "result" => result,
        )
        .increment(1);
        metrics::histogram!("provider_call_duration_seconds", "provider" => provider)
            .record(started.elapsed().as_secs_f64());
        if matches!(outcome, Err(ProviderError::Retryable { .. })) {
            // The engine tries a retryable failure again (within the step's budget).
            metrics::counter!("provider_retries_total", "provider" => provider).increment(1);
        }
        outcome
    }

    async fn send(
        &self,
        call: Call<'_>,
        request: reqwest::RequestBuilder,
        permit: crate::rate_budget::BudgetPermit,
        started: tokio::time::Instant,
    ) -> Result<Reply, ProviderError> {
        let sent = request.send().await;
        let response = match sent {
            Ok(response) => response,
            Err(error) => {
                drop(permit);
                let error = transport_error(self.provider, error, &call);
                tracing::debug!(
                    provider = self.provider.name(),
                    operation = call.operation,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    %error,
                    "provider call failed in transport"
                );
                return Err(error);
            }
        };
        let status = response.status();
        let headers = response.headers().clone();
        let body = match response.bytes().await {
            Ok(body) => body.to_vec(),
            Err(error) => {
                drop(permit);
                // The status line arrived: the provider has acted on the request.
                return Err(ProviderError::Retryable {
                    provider: self.provider,
                    status: Some(status.as_u16()),
                    message: format!(
                        "{}: response body lost: {}",
                        call.operation,
                        error_chain(&error.without_url())
                    ),
                    after: None,
                    ambiguous: true,
                });
            }
        };
        let signal = RateLimitSignal::parse(self.provider, &headers, SystemTime::now());
        let rate_limited = classification::is_rate_limited(self.provider, status.as_u16(), &signal);
        // Learned before the slot frees, so the next request already knows what this answer
        // said about the window.
        permit.observe(
            &signal,
            crate::rate_limit_headers::announced_limit(&headers),
            rate_limited,
        );
        drop(permit);

        tracing::debug!(
            provider = self.provider.name(),
            operation = call.operation,
            status = status.as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            remaining = signal.remaining,
            "provider call answered"
        );
        if rate_limited {
            metrics::counter!("provider_rate_limited_total", "provider" => self.provider.name())
                .increment(1);
        }
        if status.is_success() {
            return Ok(Reply { headers, body });
        }
        let text = if call.whole_message {
            classification::provider_message_whole(self.provider, &body)
        } else {
            classification::provider_message(self.provider, &body)
        };
        let message = scrub(text, &call.secrets, self.credential.secret());
        match classification::classify(
            self.provider,
            status.as_u16(),
            &signal,
            &message,
            call.transient,
        ) {
            Some(error) => Err(error),
            // Unreachable by construction (non-success is always classified); answering
            // with the status keeps this honest rather than pretending success.
            None => Err(ProviderError::Permanent {
                status: status.as_u16(),
                message,
            }),
        }
    }
}

/// A transport failure: nothing answered. Ambiguous unless we know nothing was sent.
fn transport_error(provider: Provider, error: reqwest::Error, call: &Call<'_>) -> ProviderError {
    let error = error.without_url();
    if error.is_builder() {
        return ProviderError::Config(format!(
            "{} request could not be built: {}",
            call.operation,
            error_chain(&error)
        ));
    }
    let not_sent = error.is_connect();
    let what = if error.is_timeout() {
        "timed out"
    } else if not_sent {
        "could not connect"
    } else {
        "connection lost"
    };
    ProviderError::Retryable {
        provider,
        status: None,
        message: format!("{} {what}: {}", call.operation, error_chain(&error)),
        after: None,
        ambiguous: !not_sent,
    }
}

fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Replaces every occurrence of the call's secrets (and the credential) in provider text.
fn scrub(mut text: String, secrets: &[&SecretString], credential: &SecretString) -> String {
    for secret in secrets.iter().copied().chain(std::iter::once(credential)) {
        let value = secret.expose_secret();
        // Very short values would blank out ordinary words; none of ours are that short.
        if value.len() >= 4 && text.contains(value) {
            text = text.replace(value, "[REDACTED]");
        }
    }
    text
}

/// Serializes a secret into a request body (the only place it is exposed).
pub(crate) fn expose_for_body<S: serde::Serializer>(
    secret: &SecretString,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(secret.expose_secret())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn scrub_removes_secrets_from_provider_text() {
        let pass = SecretString::from("hunter2-canary");
        let token = SecretString::from("sbp_canarytoken");
        let text = scrub(
            "password hunter2-canary too weak for sbp_canarytoken".into(),
            &[&pass],
            &token,
        );
        assert_eq!(text, "password [REDACTED] too weak for [REDACTED]");
    }

    #[test]
    fn decode_errors_do_not_quote_values() {
        #[derive(serde::Deserialize, Debug)]
        struct Key {
            #[allow(dead_code)]
            size: u64,
        }
        let err = serde_json::from_str::<Key>(r#"{"size":"eyJ-secret-jwt"}"#).unwrap_err();
        let described = decode_error(Provider::Supabase, "GET x", &err);
        assert!(
            !described.to_string().contains("eyJ-secret-jwt"),
            "{described}"
        );
        let missing = serde_json::from_str::<Key>("{}").unwrap_err();
        assert!(
            decode_error(Provider::Supabase, "GET x", &missing)
                .to_string()
                .contains("missing field `size`")
        );
    }

    #[test]
    fn credential_debug_is_redacted() {
        let credential = Credential::Bearer(SecretString::from("canary-token-123"));
        assert!(!format!("{credential:?}").contains("canary"));
        let (_, value) = credential.header().unwrap();
        assert!(!format!("{value:?}").contains("canary"));
    }

    #[test]
    fn paths_are_joined_and_escaped_under_the_base() {
        let base = Url::parse("http://127.0.0.1:5678/api/v1").unwrap();
        let transport = Transport::new(
            Provider::N8n,
            &base,
            Credential::Bearer(SecretString::from("k")),
            HttpPolicy::default(),
            RateBudgetConfig::unlimited(),
        )
        .unwrap()
        .with_default_query("teamId", "team_1".into());
        let call = Call::new(
            Method::GET,
            "GET /workflows/{id}",
            vec!["workflows", "a b/c"],
        )
        .query("limit", "250");
        assert_eq!(
            transport.url_for(&call).unwrap().as_str(),
            "http://127.0.0.1:5678/api/v1/workflows/a%20b%2Fc?teamId=team_1&limit=250"
        );
        let foreign = Call {
            target: Target::Absolute(Url::parse("http://example.org/api/v1/workflows").unwrap()),
            ..Call::new(Method::GET, "GET next", vec![])
        };
        assert!(transport.url_for(&foreign).is_err());
    }
}
