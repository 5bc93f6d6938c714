//! Runs started and followed through a running `provisioner serve` (`--server URL`), with the
//! token from `PROVISIONER_TOKEN`: `POST /v1/provisionings`, `DELETE /v1/clients/{clientId}`,
//! then `GET /v1/provisionings/{id}/events` (Server-Sent Events) drawn with the same display
//! as a local run. A dropped stream is reopened with `Last-Event-ID`, so no event is missed or
//! shown twice. Every refusal of the server becomes one paragraph saying what to do; the token
//! is sent as a sensitive header and never written anywhere.

use std::time::Duration;

use chrono::DateTime;
use futures::StreamExt;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};
use saga::{EventRecord, RunEvent};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{CliError, StopSignal};
use crate::event_feed::StopAt;
use crate::outcome::{Failure, Outcome};
use crate::progress::{Display, Follow};
use crate::record::ResourceRecord;

/// The environment variable holding the bearer token for `--server`.
pub const TOKEN_VAR: &str = "PROVISIONER_TOKEN";

/// How many times in a row the event stream may fail to open or drop without a new event
/// before the command gives up on following (the run goes on at the server).
const RECONNECT_TRIES: u32 = 20;

/// A run the server started or already had, as its answer described it.
#[derive(Debug, Clone)]
pub struct RemoteRun {
    pub id: Uuid,
    /// 202 (a new run), not 200 (the run the client already has).
    pub created: bool,
    pub steps: Vec<String>,
    pub status: String,
    pub last_event_id: i64,
}

impl RemoteRun {
    pub fn from_view(view: &Value, created: bool) -> Result<Self, CliError> {
        let id = view["id"]
            .as_str()
            .and_then(|s| Uuid::parse_str(s).ok())
            .ok_or_else(|| unexpected("a run without an id"))?;
        Ok(Self {
            id,
            created,
            steps: view["steps"]
                .as_array()
                .map(|steps| {
                    steps
                        .iter()
                        .filter_map(|s| s["name"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
            status: view["status"].as_str().unwrap_or_default().to_owned(),
            last_event_id: view["lastEventId"].as_i64().unwrap_or(0),
        })
    }

    /// With `--detach`: the id, or `{"runId":…,"created":…}`, as the local path prints it.
    pub fn print_started(&self, json: bool) {
        let line = if json {
            serde_json::json!({ "runId": self.id, "created": self.created }).to_string()
        } else {
            self.id.to_string()
        };
        #[allow(clippy::print_stdout)] // the run id is the command's output
        {
            println!("{line}");
        }
    }
}

fn unexpected(what: &str) -> Failure {
    Failure::new(
        Outcome::Internal,
        format!("the server's answer was not understood ({what}); is --server a provisioner API?"),
    )
}

/// A `provisioner serve` to talk to.
#[derive(Debug)]
pub struct Server {
    base: Url,
    token: SecretString,
    http: reqwest::Client,
}

impl Server {
    /// `url` as given to `--server`, and the token from `PROVISIONER_TOKEN` (read through
    /// `env`). Fails, before any request, on a URL that is not http(s) or a missing token.
    pub fn connect(url: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, CliError> {
        let base = Url::parse(url.trim())
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| {
                CliError::usage(format!(
                    "--server {url:?} is not a server URL; give the address `provisioner serve` listens on, e.g. --server http://127.0.0.1:8080"
                ))
            })?;
        let token = env(TOKEN_VAR)
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Failure::new(
                    Outcome::Misconfigured,
                    format!(
                        "--server needs a token: set {TOKEN_VAR} to an API token the server accepts (one of its [[api.tokens]], or an admin's JWT)"
                    ),
                )
            })?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| CliError::internal(format!("no HTTP client: {e}")))?;
        Ok(Self {
            base,
            token: SecretString::from(token),
            http,
        })
    }

    /// The server's URL, as given.
    pub fn base(&self) -> &Url {
        &self.base
    }

    fn url(&self, path: &str) -> Result<Url, CliError> {
        self.base
            .join(path)
            .map_err(|e| CliError::usage(format!("--server {}: {e}", self.base)))
    }

    fn authorization(&self) -> Result<HeaderValue, CliError> {
        let mut value = HeaderValue::from_str(&format!("Bearer {}", self.token.expose_secret()))
            .map_err(|_| {
                Failure::new(
                    Outcome::Misconfigured,
                    format!("{TOKEN_VAR} holds characters a token cannot have; set it to the token as issued"),
                )
            })?;
        // Kept out of any debug output of the request.
        value.set_sensitive(true);
        Ok(value)
    }

    /// Sends one request; a refusal or an unreachable server becomes the failure to report.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: HeaderMap,
    ) -> Result<reqwest::Response, CliError> {
        let url = self.url(path)?;
        let mut request = self
            .http
            .request(method.clone(), url)
            .header(AUTHORIZATION, self.authorization()?)
            .headers(headers);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| self.unreachable(&e))?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(self.refusal(&method, path, response).await)
    }

    fn unreachable(&self, err: &reqwest::Error) -> Failure {
        // The error's own text names the URL (never the token); its source says why.
        let mut why = String::new();
        let mut source: Option<&dyn std::error::Error> = std::error::Error::source(err);
        while let Some(s) = source {
            why = s.to_string();
            source = s.source();
        }
        let kind = if err.is_connect() {
            "could not connect"
        } else if err.is_timeout() {
            "timed out"
        } else {
            "the exchange failed"
        };
        Failure::new(
            Outcome::Unavailable,
            format!(
                "the server at {} did not answer: {kind}{}; check that `provisioner serve` runs there and that --server names it",
                self.base,
                if why.is_empty() {
                    String::new()
                } else {
                    format!(" ({why})")
                }
            ),
        )
    }

    async fn refusal(&self, method: &Method, path: &str, response: reqwest::Response) -> Failure {
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let message = body["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("HTTP {status}"));
        let request = format!("{method} {path}");
        match status {
            StatusCode::UNAUTHORIZED => Failure::new(
                Outcome::Misconfigured,
                format!(
                    "the server refused {TOKEN_VAR} ({message}); set {TOKEN_VAR} to a token the server at {} accepts (one of its [[api.tokens]], or a current admin JWT)",
                    self.base
                ),
            ),
            StatusCode::FORBIDDEN => Failure::new(
                Outcome::Misconfigured,
                format!(
                    "the server accepted {TOKEN_VAR} but will not let it do this ({message}); use an admin's token"
                ),
            ),
            StatusCode::TOO_MANY_REQUESTS => Failure::new(
                Outcome::Unavailable,
                format!(
                    "the server is rate limiting this token ({message}); {request} was not carried out: run the command again{}",
                    retry_after
                        .map(|s| format!(" in {s} s"))
                        .unwrap_or_else(|| " later".into())
                ),
            ),
            _ => {
                let outcome = match body["error"].as_str() {
                    Some("invalid") => Outcome::Invalid,
                    Some("unprocessable") => Outcome::Unprocessable,
                    Some("not_found") => Outcome::NotFound,
                    Some("conflict") => Outcome::Conflict,
                    Some("too_large") => Outcome::TooLarge,
                    _ if status.is_server_error() => Outcome::Unavailable,
                    _ => Outcome::Invalid,
                };
                let fields = body["fields"]
                    .as_array()
                    .map(|fields| {
                        fields
                            .iter()
                            .filter_map(|f| {
                                Some(crate::client::FieldError {
                                    field: f["field"].as_str()?.to_owned(),
                                    message: f["message"].as_str()?.to_owned(),
                                })
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                Failure {
                    outcome,
                    message: format!(
                        "the server refused {request} (HTTP {}): {message}",
                        status.as_u16()
                    ),
                    fields,
                }
            }
        }
    }

    /// The answer's body as JSON; a body cut short is the server becoming unreachable.
    async fn json(&self, response: reqwest::Response) -> Result<Value, CliError> {
        let body = response.bytes().await.map_err(|e| self.unreachable(&e))?;
        serde_json::from_slice(&body).map_err(|_| unexpected("not JSON"))
    }

    async fn started(&self, response: reqwest::Response) -> Result<RemoteRun, CliError> {
        let created = response.status() == StatusCode::ACCEPTED;
        let view = self.json(response).await?;
        RemoteRun::from_view(&view, created)
    }

    /// `POST /v1/provisionings` with the client's fields as the API takes them.
    pub async fn provision(&self, body: &Value) -> Result<RemoteRun, CliError> {
        let response = self
            .send(
                Method::POST,
                "/v1/provisionings",
                Some(body),
                HeaderMap::new(),
            )
            .await?;
        self.started(response).await
    }

    /// `DELETE /v1/clients/{clientId}`: the client's teardown run.
    pub async fn deprovision(&self, client_id: &str) -> Result<RemoteRun, CliError> {
        let response = self
            .send(
                Method::DELETE,
                &format!("/v1/clients/{client_id}"),
                None,
                HeaderMap::new(),
            )
            .await?;
        self.started(response).await
    }

    /// `POST /v1/provisionings/{id}/{command}` (cancel, pause, resume, retry, abandon): the
    /// run as it is once the command is recorded.
    pub async fn command(
        &self,
        id: Uuid,
        command: &str,
        body: Option<&Value>,
    ) -> Result<RemoteRun, CliError> {
        let path = format!("/v1/provisionings/{id}/{command}");
        let response = self
            .send(Method::POST, &path, body, HeaderMap::new())
            .await?;
        self.started(response).await
    }

    /// `GET /v1/provisionings/{id}`: the run as the API shows it. A read, so a dropped
    /// connection or a server error is tried again a few times before it is reported.
    pub async fn run(&self, id: Uuid) -> Result<Value, CliError> {
        let path = format!("/v1/provisionings/{id}");
        let mut tries = 0;
        loop {
            tries += 1;
            let answer = match self.send(Method::GET, &path, None, HeaderMap::new()).await {
                Ok(response) => self.json(response).await,
                Err(failure) => Err(failure),
            };
            match answer {
                Err(failure) if transient(&failure) && tries < 5 => {
                    tokio::time::sleep(Duration::from_millis(200 * tries)).await;
                }
                answer => return answer,
            }
        }
    }

    /// The run's resource record, from its view.
    pub async fn record(&self, id: Uuid) -> Result<ResourceRecord, CliError> {
        let view = self.run(id).await?;
        serde_json::from_value(view["record"].clone())
            .map_err(|_| unexpected("a run without its resource record"))
    }

    /// Draws the run's events as they come until it stops as `stop_at` says (or, for a run
    /// already stopped when it was started, until its history is shown), reopening the
    /// stream after the last event seen whenever it drops. Ctrl-C leaves the run to the
    /// server.
    pub async fn follow(
        &self,
        run: &RemoteRun,
        title: &str,
        stop_at: StopAt,
        json: bool,
    ) -> Result<(), CliError> {
        let follow = Follow {
            title: title.to_owned(),
            steps: run.steps.clone(),
            stops_after_seq: run.last_event_id,
            stop_at,
            json,
        };
        let mut display = Display::new(&follow);
        let mut stop = StopSignal::listen();
        let followed = tokio::select! {
            followed = self.read_events(run, &follow, &mut display) => followed,
            () = stop.received() => Err(Failure::new(
                Outcome::Interrupted,
                format!(
                    "interrupted: run {} goes on at the server; `provisioner watch {} --server {}` follows it again",
                    run.id, run.id, self.base
                ),
            )),
        };
        display.close();
        followed
    }

    async fn read_events(
        &self,
        run: &RemoteRun,
        follow: &Follow,
        display: &mut Display,
    ) -> Result<(), CliError> {
        // A run already stopped when it was started or looked up shows its history and ends.
        let until_seq = status_stops(follow.stop_at, &run.status).then_some(run.last_event_id);
        let mut last_seq = 0_i64;
        let mut failures = 0_u32;
        let mut last_failure: Option<Failure> = None;
        loop {
            if until_seq.is_some_and(|until| last_seq >= until) {
                return Ok(());
            }
            let mut headers = HeaderMap::new();
            if last_seq > 0
                && let Ok(value) = HeaderValue::from_str(&last_seq.to_string())
            {
                headers.insert("last-event-id", value);
            }
            let path = format!("/v1/provisionings/{}/events", run.id);
            match self.send(Method::GET, &path, None, headers).await {
                Ok(response) => {
                    let mut events = SseReader::new(response);
                    loop {
                        match events.next().await {
                            Ok(Some(sse)) => {
                                let Some(record) = sse_record(run.id, &sse)? else {
                                    continue;
                                };
                                if record.seq <= last_seq {
                                    continue;
                                }
                                last_seq = record.seq;
                                failures = 0;
                                display.show(&record);
                                if record.seq > follow.stops_after_seq
                                    && follow.stop_at.stopped_by(&record.event)
                                {
                                    return Ok(());
                                }
                                if until_seq.is_some_and(|until| last_seq >= until) {
                                    return Ok(());
                                }
                            }
                            Ok(None) => break,
                            Err(dropped) => {
                                tracing::debug!(error = %dropped, run_id = %run.id, last_seq, "the event stream dropped; reopening it");
                                break;
                            }
                        }
                    }
                }
                Err(f) if transient(&f) => last_failure = Some(f),
                Err(f) => return Err(f),
            }
            // The stream ended without the event that stops the run: the run may have
            // stopped in a way the stream does not end on, or the connection dropped.
            match self.run(run.id).await {
                Ok(view) => {
                    let status = view["status"].as_str().unwrap_or_default();
                    let latest = view["lastEventId"].as_i64().unwrap_or(0);
                    if status_stops(follow.stop_at, status) && latest <= last_seq {
                        return Ok(());
                    }
                }
                Err(f) if transient(&f) => last_failure = Some(f),
                Err(f) => return Err(f),
            }
            failures += 1;
            if failures >= RECONNECT_TRIES {
                return Err(Failure::new(
                    Outcome::Unavailable,
                    format!(
                        "lost the server while following run {}{}; the run goes on there: `provisioner watch {} --server {}` follows it again",
                        run.id,
                        last_failure
                            .map(|f| format!(" ({})", f.message))
                            .unwrap_or_default(),
                        run.id,
                        self.base
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(100 * u64::from(failures.min(10)))).await;
        }
    }
}

/// A failure worth another try while following (the server restarting, a rate limit).
fn transient(failure: &Failure) -> bool {
    failure.outcome == Outcome::Unavailable
}

fn status_stops(stop_at: StopAt, status: &str) -> bool {
    status
        .parse::<saga::RunStatus>()
        .is_ok_and(|s| stop_at.stops(s))
}

/// One Server-Sent Event.
#[derive(Debug, Default)]
struct Sse {
    id: Option<String>,
    event: Option<String>,
    data: String,
}

/// Reads events off a `text/event-stream` body (the WHATWG format: fields per line, a blank
/// line ends an event, lines starting with `:` are comments such as keep-alives).
struct SseReader {
    body: futures::stream::BoxStream<'static, reqwest::Result<axum::body::Bytes>>,
    buffer: Vec<u8>,
}

impl SseReader {
    fn new(response: reqwest::Response) -> Self {
        Self {
            body: response.bytes_stream().boxed(),
            buffer: Vec::new(),
        }
    }

    /// The next event; `None` at the end of the stream; an error if the connection dropped.
    async fn next(&mut self) -> Result<Option<Sse>, reqwest::Error> {
        loop {
            if let Some(block) = self.take_block() {
                if let Some(event) = parse_block(&block) {
                    return Ok(Some(event));
                }
                continue;
            }
            match self.body.next().await {
                Some(Ok(chunk)) => self.buffer.extend_from_slice(&chunk),
                Some(Err(e)) => return Err(e),
                // An unfinished event at the end is dropped, as the format says.
                None => return Ok(None),
            }
        }
    }

    /// The text up to the next blank line, if the buffer holds one.
    fn take_block(&mut self) -> Option<String> {
        let text = &self.buffer;
        let end = (0..text.len()).find_map(|i| {
            if text[i..].starts_with(b"\n\n") {
                Some((i, 2))
            } else if text[i..].starts_with(b"\r\n\r\n") {
                Some((i, 4))
            } else {
                None
            }
        })?;
        let block: Vec<u8> = self.buffer.drain(..end.0 + end.1).collect();
        Some(String::from_utf8_lossy(&block[..end.0]).into_owned())
    }
}

fn parse_block(block: &str) -> Option<Sse> {
    let mut event = Sse::default();
    let mut any = false;
    for line in block.lines() {
        if line.starts_with(':') || line.is_empty() {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        any = true;
        match field {
            "id" => event.id = Some(value.to_owned()),
            "event" => event.event = Some(value.to_owned()),
            "data" => {
                if !event.data.is_empty() {
                    event.data.push('\n');
                }
                event.data.push_str(value);
            }
            _ => {}
        }
    }
    any.then_some(event)
}

fn snake(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 4);
    for c in key.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// An event of the stream as the journal record the display draws. The stream carries
/// camelCase fields, RFC 3339 times and no step output (see the API's events route); an
/// `error` event (the server could not read the journal) is treated as a dropped stream by
/// the caller reopening it.
fn sse_record(run_id: Uuid, sse: &Sse) -> Result<Option<EventRecord>, CliError> {
    if sse.event.as_deref() == Some("error") {
        tracing::debug!(data = %sse.data, "the server's event stream reported an error");
        return Ok(None);
    }
    let Some(seq) = sse
        .id
        .as_deref()
        .and_then(|id| id.trim().parse::<i64>().ok())
    else {
        return Ok(None);
    };
    let body: Map<String, Value> =
        serde_json::from_str(&sse.data).map_err(|_| unexpected("an event that is not JSON"))?;
    let millis = |v: &Value| {
        v.as_str()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.timestamp_millis())
    };
    let at_ms = body.get("at").and_then(millis).unwrap_or(0);
    let mut event = Map::new();
    for (key, value) in &body {
        match key.as_str() {
            "seq" | "at" => {}
            "retryAt" => {
                event.insert(
                    "retry_at".into(),
                    millis(value).map(Value::from).unwrap_or(Value::Null),
                );
            }
            _ => {
                event.insert(snake(key), value.clone());
            }
        }
    }
    if event.get("type").and_then(Value::as_str) == Some("step_succeeded") {
        // Outputs stay at the server; the display does not draw them.
        event.entry("output").or_insert(Value::Null);
    }
    let event: RunEvent = serde_json::from_value(Value::Object(event))
        .map_err(|e| unexpected(&format!("event {seq}: {e}")))?;
    Ok(Some(EventRecord {
        run_id,
        seq,
        at_ms,
        event,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_events_become_the_journal_records_the_display_draws() {
        let run = Uuid::now_v7();
        let failed = Sse {
            id: Some("7".into()),
            event: Some("step_failed".into()),
            data: r#"{"seq":7,"at":"2026-12-01T10:00:00.250+00:00","type":"step_failed","step":"github_repo","attempt":1,"error":"github: transient failure (HTTP 429): slow","retryAt":"2026-12-01T10:00:23.000+00:00"}"#.into(),
        };
        let record = sse_record(run, &failed).unwrap().unwrap();
        assert_eq!(record.seq, 7);
        assert_eq!(
            record.event,
            RunEvent::StepFailed {
                step: "github_repo".into(),
                attempt: 1,
                error: "github: transient failure (HTTP 429): slow".into(),
                retry_at: Some(record.at_ms + 22_750),
                detail: None,
            }
        );
        let created = Sse {
            id: Some("1".into()),
            event: Some("run_created".into()),
            data: r#"{"seq":1,"at":"2026-12-01T10:00:00+00:00","type":"run_created","saga":"provision","version":1,"idempotencyKey":"provision:acme:0"}"#.into(),
        };
        assert!(matches!(
            sse_record(run, &created).unwrap().unwrap().event,
            RunEvent::RunCreated { idempotency_key, .. } if idempotency_key == "provision:acme:0"
        ));
        let done = Sse {
            id: Some("9".into()),
            event: Some("step_succeeded".into()),
            data: r#"{"seq":9,"at":"2026-12-01T10:00:01+00:00","type":"step_succeeded","step":"github_repo","attempt":2}"#.into(),
        };
        assert!(matches!(
            sse_record(run, &done).unwrap().unwrap().event,
            RunEvent::StepSucceeded { attempt: 2, .. }
        ));
    }

    #[test]
    fn blocks_split_on_blank_lines_and_comments_are_skipped() {
        assert!(parse_block(":keep-alive").is_none());
        let event = parse_block("id: 3\nevent: run_started\ndata: {\"a\":1}").unwrap();
        assert_eq!(event.id.as_deref(), Some("3"));
        assert_eq!(event.event.as_deref(), Some("run_started"));
        assert_eq!(event.data, "{\"a\":1}");
    }
}
