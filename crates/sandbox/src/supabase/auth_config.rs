//! `GET/PATCH /v1/projects/{ref}/config/auth`: each project's auth settings, one JSON object
//! with every key of the spec's `AuthConfigResponse` (all of them are required there). A new
//! project starts from the dashboard's defaults (`site_url` `http://localhost:3000`, an empty
//! allow list); a PATCH changes exactly the keys it carries, as the real endpoint does.

use std::sync::{Arc, OnceLock};

use axum::body::Bytes;
use axum::extract::{Path, State as AxumState};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::{error, not_found};
use crate::listener::json;
use crate::world::Shared;

const SPEC: &str = include_str!("../../specs/supabase-management-subset.json");

/// The spec's response keys (each with whether it may be null and its type) and the keys the
/// PATCH body accepts.
struct AuthSchema {
    response: Vec<(String, bool, String)>,
    patchable: Vec<String>,
}

fn schema() -> &'static AuthSchema {
    static SCHEMA: OnceLock<AuthSchema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        // The embedded spec is checked by the contract tests; should it ever lack these
        // schemas, the config is empty and every contract check of it fails loudly.
        let spec: Value = serde_json::from_str(SPEC).unwrap_or(Value::Null);
        let schemas = &spec["components"]["schemas"];
        let properties = |name: &str| -> Map<String, Value> {
            schemas[name]["properties"]
                .as_object()
                .cloned()
                .unwrap_or_default()
        };
        AuthSchema {
            response: properties("AuthConfigResponse")
                .into_iter()
                .map(|(key, schema)| {
                    let nullable = schema["nullable"].as_bool().unwrap_or(false);
                    let kind = schema["type"].as_str().unwrap_or("string").to_owned();
                    (key, nullable, kind)
                })
                .collect(),
            patchable: properties("UpdateAuthConfigBody").keys().cloned().collect(),
        }
    })
}

/// A new project's auth config: the known defaults, null where the spec allows it, and a
/// zero value of the right type elsewhere.
pub(crate) fn default_config() -> Map<String, Value> {
    let known = |key: &str| -> Option<Value> {
        Some(match key {
            "site_url" => json!("http://localhost:3000"),
            "uri_allow_list" => json!(""),
            "jwt_exp" => json!(3600),
            "disable_signup" => json!(false),
            "external_email_enabled" => json!(true),
            "mailer_autoconfirm" => json!(false),
            "mailer_otp_exp" => json!(3600),
            "mfa_phone_otp_length" => json!(6),
            "sms_otp_length" => json!(6),
            "password_min_length" => json!(6),
            _ => return None,
        })
    };
    schema()
        .response
        .iter()
        .map(|(key, nullable, kind)| {
            let value = known(key).unwrap_or_else(|| match (nullable, kind.as_str()) {
                (true, _) => Value::Null,
                (false, "boolean") => json!(false),
                (false, "integer" | "number") => json!(0),
                (false, _) => json!(""),
            });
            (key.clone(), value)
        })
        .collect()
}

fn config_of<'w>(
    world: &'w mut crate::world::World,
    reference: &str,
) -> Option<&'w mut Map<String, Value>> {
    if !world.supabase.projects.contains_key(reference) {
        return None;
    }
    Some(
        world
            .supabase
            .auth_configs
            .entry(reference.to_owned())
            .or_insert_with(default_config),
    )
}

pub(crate) async fn get_auth_config(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(reference): Path<String>,
) -> Response {
    let mut world = shared.world();
    match config_of(&mut world, &reference) {
        Some(config) => json(StatusCode::OK, &Value::Object(config.clone())),
        None => not_found(),
    }
}

/// Checks a PATCH body against `UpdateAuthConfigBody`: known keys, `site_url` one URL
/// (`^[^,]+$`), the two URL settings strings or null. `Err` is the message of a 400, the
/// Management API's answer to bodies its validation refuses (this operation's spec documents
/// no 400; the provisioner never sends such a body, and the contract check would flag one).
fn validate(body: &Map<String, Value>) -> Result<(), String> {
    let patchable = &schema().patchable;
    if let Some(key) = body.keys().find(|key| !patchable.contains(key)) {
        return Err(format!("property {key} should not exist"));
    }
    for key in ["site_url", "uri_allow_list"] {
        match body.get(key) {
            None | Some(Value::Null) | Some(Value::String(_)) => {}
            Some(_) => return Err(format!("{key} must be a string")),
        }
    }
    if let Some(Value::String(site)) = body.get("site_url")
        && (site.is_empty() || site.contains(','))
    {
        return Err("site_url must match ^[^,]+$ (one URL)".to_owned());
    }
    Ok(())
}

pub(crate) async fn patch_auth_config(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(reference): Path<String>,
    body: Bytes,
) -> Response {
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "Body must be a JSON object");
    };
    if let Err(message) = validate(&body) {
        return error(StatusCode::BAD_REQUEST, &message);
    }
    let mut world = shared.world();
    let Some(config) = config_of(&mut world, &reference) else {
        return not_found();
    };
    for (key, value) in body {
        config.insert(key, value);
    }
    json(StatusCode::OK, &Value::Object(config.clone()))
}
