//! Run notifications: when a run settles (succeeded, compensated, needs_attention, or an
//! operator's `paused` / `abandoned`), each `[[notify]]` webhook is sent one signed JSON event
//! (or a Slack-style `{"text": ...}` message).
//!
//! Delivery is durable and at least once: the journal writes an outbox row in the same
//! transaction as the event that settles the run, and every process with workers (`serve`,
//! `worker`, and the one-shot commands while they run) claims rows under a lease, posts them,
//! and records the outcome in the journal. A failed post is retried with backoff until
//! `max_attempts` or `max_age_secs`, then given up and recorded as such; a process that dies
//! mid-post leaves its lease to expire and another sends again, so a receiver may see an event
//! twice and deduplicates on its `id`. Posting never holds up a run: it runs in its own tasks,
//! one per webhook, and touches only the outbox.
//!
//! The body carries no secret: ids, names, statuses, reasons (as `status` shows them). The
//! webhook's URL (a Slack URL is a credential) and key are never logged or journaled.

use std::time::Duration;

use hmac::{Hmac, Mac};
use saga::journal::{Delivery, DeliveryLease, DeliveryOutcome, Outbox, Settlement};
use saga::{Engine, EventRecord, RetryPolicy, RunState, RunStatus};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::NotifySettings;

/// The header carrying `sha256=<hex HMAC-SHA256 of the exact body bytes>`.
pub const SIGNATURE_HEADER: &str = "x-provisioner-signature";
/// The header carrying the event's stable id (also in the JSON body as `id`).
pub const EVENT_ID_HEADER: &str = "x-provisioner-event-id";
/// Shortest signing key accepted.
pub const MIN_KEY_LEN: usize = 16;
/// How long a one-shot command waits at exit for the notifications due then.
pub const EXIT_DRAIN: Duration = Duration::from_secs(10);

/// Rows claimed per webhook and round.
const BATCH: u32 = 8;
/// First retry ceiling; it doubles per failed attempt up to the webhook's `backoff_cap_secs`.
const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// A claim outlives the post's timeout by this much before another process may send again.
const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// `[[notify]].max_attempts`.
pub const MAX_ATTEMPTS_RANGE: std::ops::RangeInclusive<u32> = 1..=100;
/// `[[notify]].max_age_secs`: a minute to a week.
pub const MAX_AGE_SECS_RANGE: std::ops::RangeInclusive<u64> = 60..=604_800;
/// `[[notify]].timeout_secs`: one post.
pub const TIMEOUT_SECS_RANGE: std::ops::RangeInclusive<u64> = 1..=60;

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error(
        "notify: webhooks are configured but this journal keeps no outbox; use the SQLite or PostgreSQL journal"
    )]
    NoOutbox,
    #[error(
        "notify[{0}]: its URL or key was not read from the environment (load the configuration with Config::load)"
    )]
    Unresolved(usize),
    #[error("notify: the HTTP client could not be built: {0}")]
    Client(String),
}

/// The body format of a webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Slack,
}

/// Why `url` cannot be a webhook URL, as the end of a sentence ("... is not ..."), or `None`.
pub fn url_problem(url: &str) -> Option<String> {
    let Ok(parsed) = url::Url::parse(url) else {
        return Some("is not a URL; use https://host/path".into());
    };
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Some(
            "carries user:password@, which would end up in logs; put a key in secret_env instead"
                .into(),
        );
    }
    let loopback = matches!(
        parsed.host_str(),
        Some("localhost" | "127.0.0.1" | "[::1]" | "::1")
    );
    match parsed.scheme() {
        "https" => None,
        "http" if loopback => None,
        "http" => Some("uses http to a host other than localhost; use https".into()),
        _ => Some("is not an http(s) URL; use https://host/path".into()),
    }
}

/// Every rule the `[[notify]]` entries break, each naming its key.
pub fn settings_problems(list: &[NotifySettings]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut names = std::collections::BTreeSet::new();
    for (i, n) in list.iter().enumerate() {
        let key = format!("notify[{i}]");
        let name_ok = !n.name.is_empty()
            && n.name.len() <= 64
            && n.name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_'));
        if !name_ok {
            problems.push(format!(
                "{key}.name: {:?} is not a usable name; use 1 to 64 of a-z, 0-9, '-' or '_' (it names the webhook in logs and the journal)",
                n.name
            ));
        } else if !names.insert(n.name.as_str()) {
            problems.push(format!(
                "{key}.name: {:?} is used by another webhook; give each its own (deliveries are recorded per name)",
                n.name
            ));
        }
        match (&n.url, &n.url_env) {
            (Some(url), None) => {
                if let Some(rule) = url_problem(url) {
                    problems.push(format!("{key}.url: {rule}"));
                }
            }
            (None, Some(_)) => {}
            _ => problems.push(format!(
                "{key}: set exactly one of url and url_env (url_env names an environment variable holding the URL, for URLs that are secrets)"
            )),
        }
        let format = parse_format(&n.format);
        if format.is_none() {
            problems.push(format!(
                "{key}.format: {:?} is not a format; use \"json\" (the signed event) or \"slack\" (a text message)",
                n.format
            ));
        }
        if n.secret.is_some() {
            problems.push(format!(
                "{key}.secret: keys are not accepted in the file; export the key in an environment variable and name it with secret_env"
            ));
        }
        if format == Some(Format::Json) && n.secret_env.is_none() && n.signing_key.is_none() {
            problems.push(format!(
                "{key}.secret_env: required for format \"json\": name the environment variable holding the HMAC key (e.g. `openssl rand -hex 32`)"
            ));
        }
        if !MAX_ATTEMPTS_RANGE.contains(&n.max_attempts) {
            problems.push(format!(
                "{key}.max_attempts: {} is out of range; use {} to {}",
                n.max_attempts,
                MAX_ATTEMPTS_RANGE.start(),
                MAX_ATTEMPTS_RANGE.end()
            ));
        }
        for (field, value, range) in [
            ("max_age_secs", n.max_age_secs, MAX_AGE_SECS_RANGE),
            ("timeout_secs", n.timeout_secs, TIMEOUT_SECS_RANGE),
            (
                "backoff_cap_secs",
                n.backoff_cap_secs,
                crate::config::TIMEOUT_SECS_RANGE,
            ),
        ] {
            if !range.contains(&value) {
                problems.push(format!(
                    "{key}.{field}: {value} is out of range; use {} to {} seconds",
                    range.start(),
                    range.end()
                ));
            }
        }
    }
    problems
}

fn parse_format(s: &str) -> Option<Format> {
    match s {
        "json" => Some(Format::Json),
        "slack" => Some(Format::Slack),
        _ => None,
    }
}

/// `sha256=<hex>`: HMAC-SHA256 of `body` under `key`.
pub fn sign(key: &[u8], body: &[u8]) -> String {
    let mut mac = hmac_for(key);
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Whether `header` is `body`'s signature under `key` (compared in constant time).
pub fn verify(key: &[u8], body: &[u8], header: &str) -> bool {
    let Some(given) = header
        .trim()
        .strip_prefix("sha256=")
        .and_then(|h| hex::decode(h).ok())
    else {
        return false;
    };
    let mut mac = hmac_for(key);
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

fn hmac_for(key: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length (long ones are hashed first): this cannot fail.
    #[allow(clippy::expect_used)]
    Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length")
}

/// A webhook as the delivery loop uses it.
#[derive(Debug)]
struct Webhook {
    name: String,
    url: SecretString,
    format: Format,
    key: Option<SecretString>,
    max_attempts: u32,
    max_age: Duration,
    retry: RetryPolicy,
    http: reqwest::Client,
}

impl Webhook {
    fn from_settings(index: usize, s: &NotifySettings) -> Result<Self, NotifyError> {
        let url = s
            .resolved_url
            .clone()
            .ok_or(NotifyError::Unresolved(index))?;
        let format = parse_format(&s.format).unwrap_or(Format::Json);
        if format == Format::Json && s.signing_key.is_none() {
            return Err(NotifyError::Unresolved(index));
        }
        let timeout = Duration::from_secs(s.timeout_secs);
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            // A redirect would resend the signed body somewhere the operator did not name.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("provisioner/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| NotifyError::Client(e.without_url().to_string()))?;
        Ok(Self {
            name: s.name.clone(),
            url,
            format,
            key: s.signing_key.clone(),
            max_attempts: s.max_attempts,
            max_age: Duration::from_secs(s.max_age_secs),
            retry: RetryPolicy {
                timeout,
                max_attempts: s.max_attempts,
                backoff_base: BACKOFF_BASE,
                backoff_cap: Duration::from_secs(s.backoff_cap_secs),
            },
            http,
        })
    }

    fn lease_ms(&self) -> i64 {
        i64::try_from((self.retry.timeout + LEASE_MARGIN).as_millis()).unwrap_or(i64::MAX)
    }
}

/// The delivery loops of this process, one per webhook.
#[derive(Debug)]
pub struct Notifier {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

struct Loop {
    engine: Engine,
    hook: Webhook,
    poll: Duration,
}

impl Notifier {
    /// Starts a delivery loop per webhook (none configured: `None`). `poll` is how often a loop
    /// looks for rows other processes wrote; this process's own settlements wake it at once.
    pub fn start(
        engine: &Engine,
        webhooks: &[NotifySettings],
        poll: Duration,
    ) -> Result<Option<Self>, NotifyError> {
        if webhooks.is_empty() {
            return Ok(None);
        }
        if engine.journal().outbox().is_none() {
            return Err(NotifyError::NoOutbox);
        }
        let hooks = webhooks
            .iter()
            .enumerate()
            .map(|(i, s)| Webhook::from_settings(i, s))
            .collect::<Result<Vec<_>, _>>()?;
        let (stop, stopped) = watch::channel(false);
        let tasks = hooks
            .into_iter()
            .map(|hook| {
                let looping = Loop {
                    engine: engine.clone(),
                    hook,
                    poll,
                };
                tokio::spawn(looping.run(stopped.clone(), engine.subscribe()))
            })
            .collect();
        Ok(Some(Self { stop, tasks }))
    }

    /// Sends what is due now (up to `drain`), then stops. What is not sent by then stays in
    /// the outbox for the next process; a post cut short is sent again once its lease expires.
    pub async fn shutdown(self, drain: Duration) {
        let _ = self.stop.send(true);
        let aborts: Vec<_> = self.tasks.iter().map(JoinHandle::abort_handle).collect();
        if tokio::time::timeout(drain, futures::future::join_all(self.tasks))
            .await
            .is_err()
        {
            for a in aborts {
                a.abort();
            }
        }
    }

    /// Stops at once, as a crash would: claims in flight are left to expire.
    pub fn kill(self) {
        for task in self.tasks {
            task.abort();
        }
    }
}

impl Loop {
    async fn run(
        self,
        mut stop: watch::Receiver<bool>,
        mut events: tokio::sync::broadcast::Receiver<EventRecord>,
    ) {
        loop {
            let stopping = *stop.borrow();
            let handled = match self.round().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(webhook = %self.hook.name, error = %e, "notify: cannot read the outbox; trying again");
                    0
                }
            };
            if stopping && handled == 0 {
                return;
            }
            if handled > 0 {
                continue;
            }
            tokio::select! {
                () = tokio::time::sleep(self.poll) => {}
                _ = stop.changed() => {}
                () = settling(&mut events) => {}
            }
        }
    }

    /// Claims, posts and records one batch; returns how many were handled.
    async fn round(&self) -> Result<usize, saga::JournalError> {
        let Some(outbox) = self.engine.journal().outbox() else {
            return Ok(0);
        };
        let lease = DeliveryLease {
            consumer: self.hook.name.clone(),
            owner: self.engine.worker_id().to_owned(),
            lease_ms: self.hook.lease_ms(),
            environment: self.engine.environment().map(str::to_owned),
        };
        let claimed = outbox.claim_deliveries(&lease, now_ms(), BATCH).await?;
        let count = claimed.len();
        futures::future::join_all(
            claimed
                .into_iter()
                .map(|delivery| self.deliver(outbox, &lease.owner, delivery)),
        )
        .await;
        Ok(count)
    }

    async fn deliver(&self, outbox: &dyn Outbox, owner: &str, delivery: Delivery) {
        let hook = &self.hook;
        let started = std::time::Instant::now();
        let outcome = self.attempt(&delivery).await;
        let result = match &outcome {
            DeliveryOutcome::Delivered => "delivered",
            DeliveryOutcome::Retry { .. } => "failed",
            DeliveryOutcome::GaveUp { .. } => "gave_up",
        };
        metrics::counter!("notify_deliveries_total", "webhook" => hook.name.clone(), "result" => result)
            .increment(1);
        metrics::histogram!("notify_delivery_duration_seconds", "webhook" => hook.name.clone())
            .record(started.elapsed().as_secs_f64());
        let s = &delivery.settlement;
        match &outcome {
            DeliveryOutcome::Delivered => tracing::info!(
                webhook = %hook.name, run_id = %s.run_id, status = %s.status, attempt = delivery.attempt,
                "notification delivered"
            ),
            DeliveryOutcome::Retry { error, .. } => tracing::warn!(
                webhook = %hook.name, run_id = %s.run_id, attempt = delivery.attempt, error = %error,
                "notification not delivered; will retry"
            ),
            DeliveryOutcome::GaveUp { error } => tracing::warn!(
                webhook = %hook.name, run_id = %s.run_id, attempt = delivery.attempt, error = %error,
                "notification given up"
            ),
        }
        match outbox
            .finish_delivery(&delivery, owner, now_ms(), &outcome)
            .await
        {
            Ok(true) => {}
            // Another process took the claim over (ours expired): it decides now.
            Ok(false) => {
                tracing::warn!(webhook = %hook.name, run_id = %s.run_id, "notification claim expired before its outcome was recorded")
            }
            // Left leased: it is claimed and sent again once the lease expires.
            Err(e) => {
                tracing::warn!(webhook = %hook.name, run_id = %s.run_id, error = %e, "notification outcome not recorded")
            }
        }
    }

    async fn attempt(&self, delivery: &Delivery) -> DeliveryOutcome {
        let hook = &self.hook;
        let s = &delivery.settlement;
        let age_ms = now_ms().saturating_sub(s.at_ms);
        let max_age_ms = i64::try_from(hook.max_age.as_millis()).unwrap_or(i64::MAX);
        if age_ms > max_age_ms {
            return DeliveryOutcome::GaveUp {
                error: format!(
                    "not sent: the run settled {} s ago, beyond max_age_secs ({})",
                    age_ms / 1000,
                    hook.max_age.as_secs()
                ),
            };
        }
        let failed = |error: String| self.failed(delivery, error);
        let body = match self.body(delivery).await {
            Ok(body) => body,
            Err(e) => return failed(format!("the event could not be built: {e}")),
        };
        let mut request = hook
            .http
            .post(hook.url.expose_secret())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(EVENT_ID_HEADER, s.id());
        if let Some(key) = &hook.key {
            request = request.header(
                SIGNATURE_HEADER,
                sign(key.expose_secret().as_bytes(), &body),
            );
        }
        match request.body(body).send().await {
            Ok(response) if response.status().is_success() => DeliveryOutcome::Delivered,
            // The receiver says this endpoint is gone for good: asking again is pointless.
            Ok(response) if response.status() == reqwest::StatusCode::GONE => {
                DeliveryOutcome::GaveUp {
                    error: "the receiver answered 410 Gone".into(),
                }
            }
            Ok(response) => failed(format!("the receiver answered {}", response.status())),
            // Without the URL: it may be a credential (Slack's are).
            Err(e) => failed(format!("the post failed: {}", e.without_url())),
        }
    }

    fn failed(&self, delivery: &Delivery, error: String) -> DeliveryOutcome {
        if delivery.attempt >= self.hook.max_attempts {
            return DeliveryOutcome::GaveUp {
                error: format!(
                    "{error} (attempt {} of {})",
                    delivery.attempt, self.hook.max_attempts
                ),
            };
        }
        let wait = saga::next_delay(&self.hook.retry, delivery.attempt, None);
        DeliveryOutcome::Retry {
            at_ms: now_ms() + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX / 2),
            error,
        }
    }

    /// The body for this attempt: the run's state as of the settling event, not as it is now.
    async fn body(&self, delivery: &Delivery) -> Result<Vec<u8>, saga::EngineError> {
        let s = &delivery.settlement;
        let events = self.engine.events_since(s.run_id, 0).await?;
        let up_to: Vec<&EventRecord> = events.iter().filter(|e| e.seq <= s.seq).collect();
        let row = self.engine.journal().run(s.run_id).await?;
        let definition = row
            .as_ref()
            .and_then(|r| self.engine.registry().get(&r.saga, r.version));
        let state = RunState::fold(definition.map(|d| d.as_ref()), up_to);
        let client_id = row
            .as_ref()
            .and_then(|r| r.input.get("clientId"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let event = Event::new(s, &state, client_id, delivery.attempt);
        let value = match self.hook.format {
            Format::Json => event.json(),
            Format::Slack => json!({ "text": event.text() }),
        };
        // A JSON value always serialises.
        Ok(serde_json::to_vec(&value).unwrap_or_default())
    }
}

/// Resolves when an event that settles a run goes by (or the feed lags: look anyway).
async fn settling(events: &mut tokio::sync::broadcast::Receiver<EventRecord>) {
    loop {
        match events.recv().await {
            Ok(record) if saga::journal::settled_status(&record.event).is_some() => return,
            Ok(_) => {}
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return,
            // The engine is gone: only the poll remains.
            Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// What a notification says, whatever its format.
struct Event<'a> {
    settlement: &'a Settlement,
    client_id: Option<String>,
    reason: Option<String>,
    remaining: Option<Vec<String>>,
    attempt: u32,
}

impl<'a> Event<'a> {
    fn new(s: &'a Settlement, state: &RunState, client_id: Option<String>, attempt: u32) -> Self {
        let reason = match s.status {
            RunStatus::NeedsAttention => state.attention_reason.clone(),
            RunStatus::Compensated => state.compensation_reason.clone(),
            RunStatus::Abandoned => state.abandoned_reason.clone(),
            _ => None,
        };
        let remaining = (s.status == RunStatus::NeedsAttention)
            .then(|| state.needs_attention.clone())
            .flatten();
        Self {
            settlement: s,
            client_id,
            reason,
            remaining,
            attempt,
        }
    }

    fn waits_for_operator(&self) -> bool {
        matches!(
            self.settlement.status,
            RunStatus::NeedsAttention | RunStatus::Paused
        )
    }

    fn json(&self) -> Value {
        let s = self.settlement;
        json!({
            "id": s.id(),
            "type": format!("run.{}", s.status),
            "runId": s.run_id,
            "saga": s.saga,
            "clientId": self.client_id,
            "status": s.status,
            "seq": s.seq,
            "enteredAt": rfc3339(s.at_ms),
            "waitsForOperator": self.waits_for_operator(),
            "reason": self.reason,
            "remaining": self.remaining,
            "attempt": self.attempt,
            "sentAt": rfc3339(now_ms()),
        })
    }

    fn text(&self) -> String {
        let s = self.settlement;
        let who = self.client_id.as_deref().unwrap_or(&s.idempotency_key);
        let what = match s.status {
            RunStatus::Succeeded => "succeeded".to_owned(),
            RunStatus::Compensated => "failed and was rolled back".to_owned(),
            RunStatus::NeedsAttention => "needs an operator".to_owned(),
            RunStatus::Paused => "is paused, waiting for an operator".to_owned(),
            RunStatus::Abandoned => "was abandoned".to_owned(),
            other => other.to_string(),
        };
        let mut text = format!("{} of {who} {what}", s.saga);
        if let Some(reason) = &self.reason {
            text.push_str(&format!(": {reason}"));
        }
        if let Some(remaining) = self.remaining.as_ref().filter(|r| !r.is_empty()) {
            text.push_str(&format!(" (may still exist: {})", remaining.join(", ")));
        }
        text.push_str(&format!(" [run {}]", s.run_id));
        slack_escape(&text)
    }
}

/// Slack's message escaping: `&`, `<` and `>` are control characters in its text.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or(chrono::DateTime::UNIX_EPOCH)
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn a_signature_verifies_with_its_key_only_and_for_the_exact_body() {
        let body = br#"{"id":"x.1"}"#;
        let header = sign(b"key-one-0123456789", body);
        assert!(
            header.starts_with("sha256=") && header.len() == 7 + 64,
            "{header}"
        );
        assert!(verify(b"key-one-0123456789", body, &header));
        assert!(!verify(b"key-two-0123456789", body, &header));
        assert!(!verify(b"key-one-0123456789", br#"{"id":"x.2"}"#, &header));
        assert!(!verify(b"key-one-0123456789", body, "sha1=00"));
    }

    #[test]
    fn urls_must_be_https_or_http_to_localhost_and_carry_no_credentials() {
        assert_eq!(url_problem("https://hooks.example/x"), None);
        assert_eq!(url_problem("http://127.0.0.1:9/x"), None);
        assert!(
            url_problem("http://hooks.example/x")
                .unwrap()
                .contains("use https")
        );
        assert!(
            url_problem("https://u:p@hooks.example/")
                .unwrap()
                .contains("user:password")
        );
        assert!(url_problem("ftp://hooks.example/").is_some());
        assert!(url_problem("not a url").is_some());
    }

    #[test]
    fn slack_text_escapes_its_control_characters() {
        assert_eq!(slack_escape("a <b> & c"), "a &lt;b&gt; &amp; c");
    }
}
