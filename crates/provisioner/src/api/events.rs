//! `GET /v1/provisionings/{id}/events`: the run's transitions as Server-Sent Events, read
//! through [`crate::event_feed`]. Each event's `id:` is its sequence number, so a client that
//! reconnects with `Last-Event-ID` continues after the last event it saw; the stream ends
//! after the event that leaves the run terminal.

use std::convert::Infallible;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use chrono::DateTime;
use futures::Stream;
use futures::stream::{self, StreamExt};
use saga::EventRecord;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::ApiState;
use super::error::{ApiError, ErrorBody};
use super::provisionings::parse_id;
use crate::client::FieldError;
use crate::event_feed::{EventFeed, StopAt};
use crate::journal_outage::{self, Patience};
use crate::outcome::Outcome;

/// How long opening an event stream waits for a journal that does not answer.
const OPEN_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

fn camel(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut upper = false;
    for c in key.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// An event as the stream carries it: camelCase fields, times as RFC 3339, and no step
/// output (outputs can hold sealed secrets; the run's record is in `GET`).
pub fn event_body(record: &EventRecord) -> Value {
    let mut body = Map::new();
    body.insert("seq".into(), record.seq.into());
    body.insert(
        "at".into(),
        DateTime::from_timestamp_millis(record.at_ms)
            .map(|t| Value::String(t.to_rfc3339()))
            .unwrap_or(Value::Null),
    );
    if let Ok(Value::Object(fields)) = serde_json::to_value(&record.event) {
        for (key, value) in fields {
            match key.as_str() {
                "output" => {}
                "retry_at" => {
                    let at = value
                        .as_i64()
                        .and_then(DateTime::from_timestamp_millis)
                        .map(|t| Value::String(t.to_rfc3339()))
                        .unwrap_or(Value::Null);
                    body.insert("retryAt".into(), at);
                }
                _ => {
                    body.insert(camel(&key), value);
                }
            }
        }
    }
    Value::Object(body)
}

fn sse_event(record: &EventRecord) -> Event {
    Event::default()
        .id(record.seq.to_string())
        .event(record.event.kind())
        .data(event_body(record).to_string())
}

fn last_event_id(headers: &HeaderMap) -> Result<i64, ApiError> {
    let Some(raw) = headers.get("last-event-id") else {
        return Ok(0);
    };
    raw.to_str()
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .filter(|n| *n >= 0)
        .ok_or_else(|| {
            ApiError::fields(
                Outcome::Invalid,
                "the stream cannot be resumed",
                vec![FieldError {
                    field: "Last-Event-ID".into(),
                    message: "must be the `id:` of an event this stream sent (a whole number)"
                        .into(),
                }],
            )
        })
}

#[utoipa::path(
    get, path = "/v1/provisionings/{id}/events", tag = "provisionings",
    params(
        ("id" = String, Path, description = "The run's id"),
        ("Last-Event-ID" = Option<i64>, Header, description = "Resume after this event"),
    ),
    responses(
        (status = 200, description = "text/event-stream of the run's events; `id:` is the sequence number, `event:` the type, `data:` the event as JSON", content_type = "text/event-stream", body = String),
        (status = 400, body = ErrorBody),
        (status = 401, description = "No valid bearer token"),
        (status = 403, description = "Not an admin"),
        (status = 404, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn stream(
    State(state): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    events_of(state, id, &headers, RunsShown::Any).await
}

/// Which runs an events route streams.
#[derive(Debug, Clone, Copy)]
pub enum RunsShown {
    Any,
    /// Only runs of this saga; another run is answered with `other(id)` (a 404 that says
    /// where that run's events are).
    Saga {
        name: &'static str,
        other: fn(Uuid) -> ApiError,
    },
}

/// The events of the run the path names, as `stream` serves them, for any route that
/// streams a run's events.
pub async fn events_of(
    state: ApiState,
    id: Result<Path<String>, PathRejection>,
    headers: &HeaderMap,
    shown: RunsShown,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>> + use<>>, ApiError> {
    let id = parse_id(&super::body::path_param(id, "id", Outcome::NotFound)?)?;
    if let RunsShown::Saga { name, other } = shown
        && state.app.engine.status(id).await?.saga != name
    {
        return Err(other(id));
    }
    let after = last_event_id(headers)?;
    // A request is not kept waiting minutes for its answer: opening rides out a blip, and
    // only the stream, once open (its keep-alives flowing), waits out a longer outage.
    let opening = Patience {
        limit: OPEN_PATIENCE,
        ..Patience::default()
    };
    let feed = EventFeed::open_with(
        &state.app.engine,
        id,
        after,
        StopAt::Terminal,
        journal_outage::log_notice,
        opening,
    )
    .await?
    .with_patience(Patience::default());
    let events = stream::unfold(Some(feed), |feed| async move {
        let mut feed = feed?;
        match feed.next().await {
            Ok(Some(batch)) => {
                let events: Vec<_> = batch.iter().map(sse_event).map(Ok).collect();
                Some((stream::iter(events), Some(feed)))
            }
            Ok(None) => None,
            Err(e) => {
                // The client sees why the stream stopped, and resumes from its last id.
                let event = Event::default()
                    .event("error")
                    .data(serde_json::json!({"message": e.to_string()}).to_string());
                Some((stream::iter(vec![Ok(event)]), None))
            }
        }
    })
    .flatten();
    Ok(Sse::new(events).keep_alive(
        KeepAlive::new()
            .interval(state.options.keep_alive)
            .text("keep-alive"),
    ))
}
