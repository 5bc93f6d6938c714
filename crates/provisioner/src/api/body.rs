//! Request bodies and query strings as the API reads them: JSON objects within the size
//! limit, unknown fields refused, and wrong shapes (400) told apart from broken rules (422),
//! each error naming the field as the client wrote it.

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, Path, Request};
use serde_json::{Map, Value};

use super::error::ApiError;
use crate::client::{Branding, Client, ClientRecord, FieldError, Modules};
use crate::outcome::Outcome;

/// A request body that is a JSON object (an empty body counts as `{}`).
#[derive(Debug, Clone, Default)]
pub struct JsonObject(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let route = super::latency::route_of(&req);
        let started = std::time::Instant::now();
        let body = Self::read(req, state).await;
        super::latency::stage(&route, "body", started.elapsed());
        body
    }
}

impl JsonObject {
    async fn read<S: Send + Sync>(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    Outcome::TooLarge,
                    format!(
                        "the request body is larger than {} KiB; send only the fields this request takes",
                        super::BODY_LIMIT_BYTES / 1024
                    ),
                )
            } else {
                ApiError::new(
                    Outcome::Invalid,
                    format!("the request body could not be read: {rejection}"),
                )
            }
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self::default());
        }
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => Ok(Self(map)),
            Ok(_) => Err(ApiError::new(
                Outcome::Invalid,
                "the request body must be a JSON object ({\"field\": value, ...})",
            )),
            Err(e) => Err(ApiError::new(
                Outcome::Invalid,
                format!("the request body is not valid JSON ({e}); send a JSON object"),
            )),
        }
    }
}

/// A path parameter's text. axum refuses one that is not UTF-8 once percent-decoded
/// (`%FF`) with a plain-text 400 that no route documents; it is refused here as any other
/// value the parameter does not take, with `outcome` (404 for a run id, 422 for a client id),
/// in the API's error shape, naming the parameter.
pub fn path_param(
    path: Result<Path<String>, PathRejection>,
    name: &str,
    outcome: Outcome,
) -> Result<String, ApiError> {
    path.map(|Path(text)| text).map_err(|rejection| {
        ApiError::fields(
            outcome,
            &format!("the path's {name} cannot be read"),
            vec![field(
                name,
                format!(
                    "cannot be read ({}); percent-encode UTF-8 text only",
                    rejection.body_text()
                ),
            )],
        )
    })
}

fn field(field: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        message: message.into(),
    }
}

/// The fields of `body` not in `known`, as errors.
pub fn unknown_fields(body: &Map<String, Value>, known: &[&str]) -> Vec<FieldError> {
    body.keys()
        .filter(|k| !known.contains(&k.as_str()))
        .map(|k| {
            field(
                k.as_str(),
                format!(
                    "is not a field of this request; the fields are {}",
                    known.join(", ")
                ),
            )
        })
        .collect()
}

const CLIENT_FIELDS: [&str; 7] = [
    "clientId",
    "clientName",
    "orgEmail",
    "tier",
    "branding",
    "modules",
    "metadata",
];

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

/// Shape errors of a client body: unknown fields (anywhere but under `metadata`), and values
/// of the wrong JSON type. `extra` names further top-level fields the caller handles.
fn client_shape(body: &Map<String, Value>, extra: &[&str]) -> Vec<FieldError> {
    let known: Vec<&str> = CLIENT_FIELDS.iter().chain(extra).copied().collect();
    let mut errors = unknown_fields(body, &known);
    for name in ["clientId", "clientName", "orgEmail", "tier"] {
        if let Some(value) = body.get(name)
            && !(value.is_string() || value.is_null())
        {
            errors.push(field(name, format!("is {value}; it must be a string")));
        }
    }
    for (section, keys) in [("branding", Branding::KEYS), ("modules", Modules::KEYS)] {
        match body.get(section) {
            None | Some(Value::Null) => {}
            Some(Value::Object(map)) => {
                let accepted: Vec<&str> = keys.split(", ").collect();
                for key in map.keys() {
                    if !accepted.contains(&key.as_str()) && !accepted.contains(&snake(key).as_str())
                    {
                        errors.push(field(
                            format!("{section}.{key}"),
                            format!("is not a {section} key; use {keys}"),
                        ));
                    }
                }
            }
            Some(other) => errors.push(field(
                section,
                format!("is {other}; it must be an object with the keys {keys}"),
            )),
        }
    }
    if let Some(value) = body.get("metadata")
        && !(value.is_object() || value.is_null())
    {
        errors.push(field(
            "metadata",
            format!("is {value}; it must be a JSON object (kept with the run as given)"),
        ));
    }
    errors
}

/// The client a body describes: 400 for its shape, 422 for its rules.
pub fn client(body: &Map<String, Value>, extra: &[&str]) -> Result<Client, ApiError> {
    let shape = client_shape(body, extra);
    if !shape.is_empty() {
        return Err(ApiError::fields(
            Outcome::Invalid,
            "the request body does not have the expected shape",
            shape,
        ));
    }
    let record: Map<String, Value> = body
        .iter()
        .filter(|(k, _)| CLIENT_FIELDS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let record: ClientRecord = serde_json::from_value(Value::Object(record)).map_err(|e| {
        ApiError::new(
            Outcome::Invalid,
            format!("the request body does not have the expected shape: {e}"),
        )
    })?;
    Ok(record.validate()?)
}

/// A query string's parameters, refusing any not in `known` (400) and repeated ones.
pub fn query(raw: Option<&str>, known: &[&str]) -> Result<Vec<(String, String)>, ApiError> {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut errors = Vec::new();
    for (i, (k, _)) in pairs.iter().enumerate() {
        if !known.contains(&k.as_str()) {
            errors.push(field(
                k.as_str(),
                format!(
                    "is not a query parameter of this request; the parameters are {}",
                    known.join(", ")
                ),
            ));
        } else if pairs[..i].iter().any(|(seen, _)| seen == k) {
            errors.push(field(k.as_str(), "is given twice; give it once"));
        }
    }
    if errors.is_empty() {
        Ok(pairs)
    } else {
        Err(ApiError::fields(
            Outcome::Invalid,
            "the query string is not accepted",
            errors,
        ))
    }
}
