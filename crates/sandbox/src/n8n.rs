//! The n8n public API (v1 paths, 1.x or 2.x behaviour) simulator: workflows validated like the
//! real request validator (read-only and unknown fields rejected), listed with `nextCursor`,
//! activated/published and deactivated/unpublished, deleted; and the production webhook of
//! every active workflow answering on `/webhook/<path>`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State as AxumState};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::Rng;
use rand::distr::Alphanumeric;
use serde_json::{Map, Value, json};

use crate::Provider;
use crate::config::N8nVersion;
use crate::listener::{Tap, json};
use crate::world::Shared;

const API_KEY_HEADER: &str = "x-n8n-api-key";

const WRITABLE_V1: [&str; 5] = ["name", "nodes", "connections", "settings", "staticData"];
const WRITABLE_V2: [&str; 10] = [
    "name",
    "description",
    "nodes",
    "connections",
    "settings",
    "staticData",
    "pinData",
    "nodeGroups",
    "parentFolderId",
    "shared",
];
const READ_ONLY_V1: [&str; 6] = [
    "id",
    "active",
    "createdAt",
    "updatedAt",
    "tags",
    "activeVersion",
];
const READ_ONLY_V2: [&str; 10] = [
    "id",
    "active",
    "createdAt",
    "updatedAt",
    "tags",
    "activeVersion",
    "isArchived",
    "versionId",
    "triggerCount",
    "meta",
];
const SETTINGS_V1: [&str; 12] = [
    "saveExecutionProgress",
    "saveManualExecutions",
    "saveDataErrorExecution",
    "saveDataSuccessExecution",
    "executionTimeout",
    "errorWorkflow",
    "timezone",
    "executionOrder",
    "callerPolicy",
    "callerIds",
    "timeSavedPerExecution",
    "availableInMCP",
];
const SETTINGS_V2_EXTRA: [&str; 6] = [
    "binaryMode",
    "timeSavedMode",
    "redactionPolicy",
    "customTelemetryTags",
    "credentialResolverId",
    "availableInMCP",
];
const NODE_FIELDS: [&str; 21] = [
    "id",
    "name",
    "webhookId",
    "disabled",
    "notesInFlow",
    "notes",
    "type",
    "typeVersion",
    "executeOnce",
    "alwaysOutputData",
    "retryOnFail",
    "maxTries",
    "waitBetweenTries",
    "continueOnFail",
    "onError",
    "position",
    "parameters",
    "credentials",
    "customTelemetryTags",
    "createdAt",
    "updatedAt",
];
const WEBHOOK_NODE: &str = "n8n-nodes-base.webhook";
const RESPOND_NODE: &str = "n8n-nodes-base.respondToWebhook";

#[derive(Debug, Default)]
pub(crate) struct State {
    /// In creation order (cursor paging walks this order).
    workflows: Vec<Workflow>,
    /// Registered production webhooks: (method, path) → workflow id.
    webhooks: HashMap<(String, String), String>,
}

#[derive(Debug, Clone)]
struct Workflow {
    id: String,
    name: String,
    description: Option<String>,
    nodes: Vec<Value>,
    connections: Value,
    settings: Value,
    static_data: Value,
    active: bool,
    version_id: String,
    active_version: Option<ActiveVersion>,
    version_counter: u32,
    created_at: String,
    updated_at: String,
}

#[derive(Debug, Clone)]
struct ActiveVersion {
    version_id: String,
    nodes: Vec<Value>,
    connections: Value,
    name: Option<String>,
    description: Option<String>,
    created_at: String,
}

/// A workflow as the inventory reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WorkflowSummary {
    pub id: String,
    pub name: String,
    pub active: bool,
}

impl State {
    pub(crate) fn summaries(&self) -> Vec<WorkflowSummary> {
        self.workflows
            .iter()
            .map(|workflow| WorkflowSummary {
                id: workflow.id.clone(),
                name: workflow.name.clone(),
                active: workflow.active,
            })
            .collect()
    }

    fn position(&self, id: &str) -> Option<usize> {
        self.workflows.iter().position(|workflow| workflow.id == id)
    }

    fn unregister(&mut self, id: &str) {
        self.webhooks.retain(|_, owner| owner != id);
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn random_id() -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(16)
        .map(char::from)
        .collect()
}

pub(crate) fn error(status: StatusCode, message: &str) -> Response {
    json(status, &json!({ "message": message }))
}

fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "Not Found")
}

/// 1.x's answer to `publish`/`unpublish`, whatever the workflow id: its request validator
/// matches the path to `GET /workflows/{id}/{versionId}` and refuses the method (observed on
/// 1.123.50).
fn no_such_verb_on_1x() -> Response {
    error(StatusCode::METHOD_NOT_ALLOWED, "POST method not allowed")
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let tap = Tap {
        shared: shared.clone(),
        provider: Provider::N8n,
    };
    Router::new()
        .route(
            "/api/v1/workflows",
            get(list_workflows).post(create_workflow),
        )
        .route(
            "/api/v1/workflows/{workflowId}",
            get(get_workflow).delete(delete_workflow),
        )
        .route("/api/v1/workflows/{workflowId}/activate", post(activate))
        .route("/api/v1/workflows/{workflowId}/publish", post(publish))
        .route(
            "/api/v1/workflows/{workflowId}/deactivate",
            post(deactivate),
        )
        .route("/api/v1/workflows/{workflowId}/unpublish", post(unpublish))
        .route_layer(axum::middleware::from_fn_with_state(
            tap.clone(),
            crate::listener::inject,
        ))
        .route_layer(axum::middleware::from_fn_with_state(shared.clone(), gate))
        // Production webhooks are the workflows' own interface: no API key, no injected faults.
        .route("/webhook/{*path}", any(webhook))
        .fallback(|| async { not_found() })
        .with_state(shared)
        .layer(axum::middleware::from_fn_with_state(
            tap,
            crate::listener::record,
        ))
}

async fn gate(AxumState(shared): AxumState<Arc<Shared>>, request: Request, next: Next) -> Response {
    let key = request
        .headers()
        .get(API_KEY_HEADER)
        .and_then(|value| value.to_str().ok());
    let v1 = shared.config.n8n_version == N8nVersion::V1;
    match key {
        // Observed on 1.123.50; 2.x answers plain "Unauthorized" to both.
        None if v1 => error(StatusCode::UNAUTHORIZED, "'X-N8N-API-KEY' header required"),
        Some(key) if key != shared.config.credentials.n8n_api_key && v1 => {
            error(StatusCode::UNAUTHORIZED, "unauthorized")
        }
        Some(key) if key == shared.config.credentials.n8n_api_key => next.run(request).await,
        _ => error(StatusCode::UNAUTHORIZED, "Unauthorized"),
    }
}

fn json_content_type_refused(headers: &HeaderMap) -> Option<Response> {
    let content_type = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    if content_type.starts_with("application/json") {
        None
    } else {
        Some(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &format!("unsupported media type {content_type}"),
        ))
    }
}

fn is_trigger(node: &Value) -> bool {
    if node.get("disabled").and_then(Value::as_bool) == Some(true) {
        return false;
    }
    let kind = node.get("type").and_then(Value::as_str).unwrap_or("");
    kind == WEBHOOK_NODE
        || (kind.ends_with("Trigger") && kind != "n8n-nodes-base.manualTrigger")
        || kind == "n8n-nodes-base.cron"
        || kind == "n8n-nodes-base.interval"
}

fn trigger_count(nodes: &[Value]) -> usize {
    nodes.iter().filter(|node| is_trigger(node)).count()
}

/// The production webhooks a workflow registers: (method, path after `/webhook/`).
fn webhook_keys(workflow: &Workflow) -> Vec<(String, String)> {
    workflow
        .nodes
        .iter()
        .filter(|node| node.get("type").and_then(Value::as_str) == Some(WEBHOOK_NODE))
        .filter(|node| node.get("disabled").and_then(Value::as_bool) != Some(true))
        .map(|node| {
            let parameters = node.get("parameters");
            let method = parameters
                .and_then(|p| p.get("httpMethod"))
                .and_then(Value::as_str)
                .unwrap_or("GET")
                .to_uppercase();
            let path = parameters
                .and_then(|p| p.get("path"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .trim_matches('/')
                .to_owned();
            // Without a webhookId n8n prefixes the workflow id and the node name (observed:
            // `/webhook/<workflowId>/webhook/<path>` for a node named "Webhook").
            let full = match node.get("webhookId").and_then(Value::as_str) {
                Some(_) => path,
                None => {
                    let node_name = node.get("name").and_then(Value::as_str).unwrap_or("");
                    let encoded: String =
                        url::form_urlencoded::byte_serialize(node_name.to_lowercase().as_bytes())
                            .collect::<String>()
                            .replace('+', "%20");
                    format!("{}/{encoded}/{path}", workflow.id)
                }
            };
            (method, full)
        })
        .collect()
}

/// The personal project every workflow of the sandbox belongs to.
const PROJECT_ID: &str = "sandboxPersonal01";

/// Which operation answers: each returns a slightly different workflow object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// `POST /workflows`: everything, including `parentFolder` (2.x).
    Created,
    /// get (2.x: as deactivate and delete).
    Fetched,
    /// deactivate/unpublish.
    Deactivated,
    /// delete.
    Deleted,
    /// activate/publish: no `shared`.
    Published,
    /// an item of the list: no `sourceWorkflowId`, sharing without the project object.
    Listed,
}

/// The top-level keys of each 1.x answer (observed on 1.123.50; `get` with
/// `excludePinnedData=true`, as the client asks). Every answer has the keys of [`V1_ALWAYS`].
fn v1_keys(shape: Shape) -> &'static [&'static str] {
    match shape {
        Shape::Created => &["description", "pinData", "versionCounter"],
        Shape::Fetched => &[
            "activeVersion",
            "description",
            "shared",
            "tags",
            "versionCounter",
        ],
        Shape::Listed => &["activeVersion", "pinData", "shared", "tags"],
        Shape::Published => &["activeVersion", "description", "pinData", "versionCounter"],
        Shape::Deactivated => &[
            "activeVersion",
            "description",
            "pinData",
            "shared",
            "versionCounter",
        ],
        Shape::Deleted => &["description", "pinData", "shared", "versionCounter"],
    }
}

const V1_ALWAYS: [&str; 14] = [
    "active",
    "activeVersionId",
    "connections",
    "createdAt",
    "id",
    "isArchived",
    "meta",
    "name",
    "nodes",
    "settings",
    "staticData",
    "triggerCount",
    "updatedAt",
    "versionId",
];

/// A 1.x `activeVersion` has no node groups, autosave flag nor publish history.
const V1_ACTIVE_VERSION_ABSENT: [&str; 3] = ["nodeGroups", "autosaved", "workflowPublishHistory"];

fn workflow_json_for(workflow: &Workflow, shape: Shape, version: N8nVersion) -> Value {
    let mut body = workflow_json(workflow, shape);
    if version == N8nVersion::V1
        && let Some(object) = body.as_object_mut()
    {
        let extra = v1_keys(shape);
        object.retain(|key, _| V1_ALWAYS.contains(&key.as_str()) || extra.contains(&key.as_str()));
        if let Some(Value::Object(active_version)) = object.get_mut("activeVersion") {
            active_version.retain(|key, _| !V1_ACTIVE_VERSION_ABSENT.contains(&key.as_str()));
        }
    }
    body
}

fn workflow_json(workflow: &Workflow, shape: Shape) -> Value {
    let active_version = match &workflow.active_version {
        None => Value::Null,
        Some(version) => json!({
            "versionId": version.version_id,
            "workflowId": workflow.id,
            "nodes": version.nodes,
            "connections": version.connections,
            "nodeGroups": [],
            "authors": "1",
            "name": version.name,
            "description": version.description,
            "autosaved": false,
            "createdAt": version.created_at,
            "updatedAt": version.created_at,
            "workflowPublishHistory": [],
        }),
    };
    let mut body = json!({
        "id": workflow.id,
        "name": workflow.name,
        "description": workflow.description,
        "active": workflow.active,
        "activeVersionId": workflow.active_version.as_ref().map(|v| v.version_id.clone()),
        "isArchived": false,
        "createdAt": workflow.created_at,
        "updatedAt": workflow.updated_at,
        "versionId": workflow.version_id,
        "versionCounter": workflow.version_counter,
        "sourceWorkflowId": null,
        "triggerCount": trigger_count(&workflow.nodes),
        "nodes": workflow.nodes,
        "connections": workflow.connections,
        "nodeGroups": [],
        "settings": workflow.settings,
        "staticData": workflow.static_data,
        "meta": null,
        "pinData": null,
        "tags": [],
        "shared": [{
            "role": "workflow:owner",
            "workflowId": workflow.id,
            "projectId": PROJECT_ID,
            "project": {
                "id": PROJECT_ID,
                "name": "Sandbox Owner <owner@sandbox.invalid>",
                "type": "personal",
                "icon": null,
                "description": null,
                "customTelemetryTags": [],
                "creatorId": null,
                "createdAt": workflow.created_at,
                "updatedAt": workflow.created_at,
            },
            "createdAt": workflow.created_at,
            "updatedAt": workflow.created_at,
        }],
        "activeVersion": active_version,
        "parentFolder": null,
    });
    if let Some(object) = body.as_object_mut() {
        if shape != Shape::Created {
            object.remove("parentFolder");
        }
        match shape {
            Shape::Published => {
                object.remove("shared");
            }
            Shape::Listed => {
                object.remove("sourceWorkflowId");
                // The 2.x spec's list item describes `activeVersion` without the publish
                // history (and closes it); the single-workflow answers carry it.
                if let Some(Value::Object(active_version)) = object.get_mut("activeVersion") {
                    active_version.remove("workflowPublishHistory");
                }
                if let Some(Value::Array(shared)) = object.get_mut("shared") {
                    for entry in shared {
                        if let Some(entry) = entry.as_object_mut() {
                            entry.remove("project");
                        }
                    }
                }
            }
            Shape::Created | Shape::Fetched | Shape::Deactivated | Shape::Deleted => {}
        }
    }
    body
}

/// Validates a create body as n8n's request validator does; `Err` is the 400 message.
fn validate(body: &Value, version: N8nVersion) -> Result<(), String> {
    let Some(object) = body.as_object() else {
        return Err("request/body must be object".to_owned());
    };
    let (writable, read_only): (&[&str], &[&str]) = match version {
        N8nVersion::V1 => (&WRITABLE_V1, &READ_ONLY_V1),
        N8nVersion::V2 => (&WRITABLE_V2, &READ_ONLY_V2),
    };
    if let Some(field) = object.keys().find(|key| read_only.contains(&key.as_str())) {
        return Err(format!("request/body/{field} is read-only"));
    }
    if object.keys().any(|key| !writable.contains(&key.as_str())) {
        return Err("request/body must NOT have additional properties".to_owned());
    }
    for required in ["name", "nodes", "connections", "settings"] {
        if !object.contains_key(required) {
            return Err(format!(
                "request/body must have required property '{required}'"
            ));
        }
    }
    if !object.get("name").is_some_and(Value::is_string) {
        return Err("request/body/name must be string".to_owned());
    }
    if !object.get("connections").is_some_and(Value::is_object) {
        return Err("request/body/connections must be object".to_owned());
    }
    let Some(settings) = object.get("settings").and_then(Value::as_object) else {
        return Err("request/body/settings must be object".to_owned());
    };
    let allowed_setting = |key: &str| {
        SETTINGS_V1.contains(&key)
            || (version == N8nVersion::V2 && SETTINGS_V2_EXTRA.contains(&key))
    };
    if settings.keys().any(|key| !allowed_setting(key)) {
        return Err("request/body/settings must NOT have additional properties".to_owned());
    }
    let Some(nodes) = object.get("nodes").and_then(Value::as_array) else {
        return Err("request/body/nodes must be array".to_owned());
    };
    for (index, node) in nodes.iter().enumerate() {
        let Some(node) = node.as_object() else {
            return Err(format!("request/body/nodes/{index} must be object"));
        };
        if node.keys().any(|key| !NODE_FIELDS.contains(&key.as_str())) {
            return Err(format!(
                "request/body/nodes/{index} must NOT have additional properties"
            ));
        }
    }
    Ok(())
}

async fn create_workflow(
    AxumState(shared): AxumState<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refusal) = json_content_type_refused(&headers) {
        return refusal;
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "request/body must be object");
    };
    if let Err(message) = validate(&body, shared.config.n8n_version) {
        return error(StatusCode::BAD_REQUEST, &message);
    }
    let mut nodes: Vec<Value> = body
        .get("nodes")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    // n8n assigns ids to nodes that have none.
    for node in &mut nodes {
        if let Some(node) = node.as_object_mut()
            && !node.contains_key("id")
        {
            node.insert("id".to_owned(), json!(uuid::Uuid::new_v4().to_string()));
        }
    }
    let stamp = now();
    let workflow = Workflow {
        id: random_id(),
        name: body
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        description: body
            .get("description")
            .and_then(Value::as_str)
            .map(str::to_owned),
        nodes,
        connections: body.get("connections").cloned().unwrap_or(json!({})),
        settings: body.get("settings").cloned().unwrap_or(json!({})),
        static_data: body.get("staticData").cloned().unwrap_or(Value::Null),
        active: false,
        version_id: uuid::Uuid::new_v4().to_string(),
        active_version: None,
        version_counter: 1,
        created_at: stamp.clone(),
        updated_at: stamp,
    };
    let response = workflow_json_for(&workflow, Shape::Created, shared.config.n8n_version);
    shared.world().n8n.workflows.push(workflow);
    json(StatusCode::OK, &response)
}

#[derive(Debug, serde::Deserialize, serde::Serialize)]
struct Cursor {
    limit: usize,
    offset: usize,
}

#[derive(Debug, serde::Deserialize)]
struct ListQuery {
    name: Option<String>,
    active: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

async fn list_workflows(
    AxumState(shared): AxumState<Arc<Shared>>,
    Query(query): Query<ListQuery>,
) -> Response {
    let cursor = match query.cursor.as_deref().filter(|c| !c.is_empty()) {
        None => None,
        Some(raw) => match STANDARD
            .decode(raw)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Cursor>(&bytes).ok())
        {
            Some(cursor) => Some(cursor),
            None => return error(StatusCode::BAD_REQUEST, "An invalid cursor was provided"),
        },
    };
    let limit = match query.limit.as_deref() {
        None => cursor.as_ref().map_or(100, |cursor| cursor.limit),
        Some(raw) => match raw.parse::<f64>() {
            Ok(limit) if limit > 250.0 => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "request/query/limit must be <= 250",
                );
            }
            Ok(limit) if limit >= 1.0 => limit as usize,
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "request/query/limit must be number",
                );
            }
        },
    };
    let offset = cursor.map_or(0, |cursor| cursor.offset);
    let active = match query.active.as_deref() {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "request/query/active must be equal to one of the allowed values: true, false",
            );
        }
    };
    let name = query
        .name
        .map(|name| name.trim().to_owned())
        .unwrap_or_default();
    let world = shared.world();
    let matching: Vec<&Workflow> = world
        .n8n
        .workflows
        .iter()
        .filter(|workflow| name.is_empty() || workflow.name.contains(&name))
        .filter(|workflow| active.is_none_or(|active| workflow.active == active))
        .collect();
    let page: Vec<Value> = matching
        .iter()
        .skip(offset)
        .take(limit)
        .map(|workflow| workflow_json_for(workflow, Shape::Listed, shared.config.n8n_version))
        .collect();
    let next_offset = offset + limit;
    let next_cursor = if next_offset < matching.len() {
        let cursor = json!({ "limit": limit, "offset": next_offset });
        Value::String(STANDARD.encode(cursor.to_string()))
    } else {
        Value::Null
    };
    json(
        StatusCode::OK,
        &json!({ "data": page, "nextCursor": next_cursor }),
    )
}

async fn get_workflow(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(id): Path<String>,
) -> Response {
    let world = shared.world();
    match world
        .n8n
        .workflows
        .iter()
        .find(|workflow| workflow.id == id)
    {
        Some(workflow) => json(
            StatusCode::OK,
            &workflow_json_for(workflow, Shape::Fetched, shared.config.n8n_version),
        ),
        None => not_found(),
    }
}

async fn delete_workflow(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(id): Path<String>,
) -> Response {
    let mut world = shared.world();
    let Some(position) = world.n8n.position(&id) else {
        return not_found();
    };
    let workflow = world.n8n.workflows.remove(position);
    world.n8n.unregister(&id);
    json(
        StatusCode::OK,
        &workflow_json_for(&workflow, Shape::Deleted, shared.config.n8n_version),
    )
}

async fn activate(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    turn_on(&shared, &id, &headers, &body)
}

async fn publish(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if shared.config.n8n_version == N8nVersion::V1 {
        return no_such_verb_on_1x();
    }
    turn_on(&shared, &id, &headers, &body)
}

async fn deactivate(AxumState(shared): AxumState<Arc<Shared>>, Path(id): Path<String>) -> Response {
    turn_off(&shared, &id)
}

async fn unpublish(AxumState(shared): AxumState<Arc<Shared>>, Path(id): Path<String>) -> Response {
    if shared.config.n8n_version == N8nVersion::V1 {
        return no_such_verb_on_1x();
    }
    turn_off(&shared, &id)
}

fn turn_on(shared: &Shared, id: &str, headers: &HeaderMap, body: &Bytes) -> Response {
    if !body.is_empty()
        && let Some(refusal) = json_content_type_refused(headers)
    {
        return refusal;
    }
    let options: Map<String, Value> = if body.is_empty() {
        Map::new()
    } else {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(options)) => options,
            _ => return error(StatusCode::BAD_REQUEST, "request/body must be object"),
        }
    };
    let version = shared.config.n8n_version;
    // 1.x's activate defines no body and ignores one (observed: `{"versionId":"nope"}`
    // activates the current version).
    let options = match version {
        N8nVersion::V1 => Map::new(),
        N8nVersion::V2 => options,
    };
    let mut world = shared.world();
    let Some(position) = world.n8n.position(id) else {
        return not_found();
    };
    let workflow = world.n8n.workflows[position].clone();
    if let Some(wanted) = options.get("versionId").and_then(Value::as_str)
        && wanted != workflow.version_id
    {
        return error(StatusCode::NOT_FOUND, "Version not found");
    }
    if trigger_count(&workflow.nodes) == 0 {
        let message = match version {
            N8nVersion::V1 => {
                "Workflow has no node to start the workflow - at least one trigger, poller or webhook node is required"
            }
            N8nVersion::V2 => {
                "Workflow has no node to start the workflow - at least one active trigger, poll trigger, webhook trigger, or schedule trigger node is required"
            }
        };
        return error(StatusCode::BAD_REQUEST, message);
    }
    let keys = webhook_keys(&workflow);
    if version == N8nVersion::V2
        && keys
            .iter()
            .any(|key| world.n8n.webhooks.get(key).is_some_and(|owner| owner != id))
    {
        return error(
            StatusCode::CONFLICT,
            "There is a conflict with one of the webhooks.",
        );
    }
    world.n8n.unregister(id);
    for key in keys {
        // 1.x lets the later activation take the path over silently (observed).
        world.n8n.webhooks.insert(key, id.to_owned());
    }
    let stamp = now();
    let workflow = &mut world.n8n.workflows[position];
    workflow.active = true;
    workflow.updated_at = stamp.clone();
    workflow.active_version = Some(ActiveVersion {
        version_id: workflow.version_id.clone(),
        nodes: workflow.nodes.clone(),
        connections: workflow.connections.clone(),
        name: options
            .get("name")
            .and_then(Value::as_str)
            .map(str::to_owned),
        description: options
            .get("description")
            .and_then(Value::as_str)
            .map(str::to_owned),
        created_at: stamp,
    });
    json(
        StatusCode::OK,
        &workflow_json_for(workflow, Shape::Published, version),
    )
}

fn turn_off(shared: &Shared, id: &str) -> Response {
    let mut world = shared.world();
    let Some(position) = world.n8n.position(id) else {
        return not_found();
    };
    world.n8n.unregister(id);
    let workflow = &mut world.n8n.workflows[position];
    workflow.active = false;
    workflow.active_version = None;
    workflow.updated_at = now();
    json(
        StatusCode::OK,
        &workflow_json_for(workflow, Shape::Deactivated, shared.config.n8n_version),
    )
}

fn parameter<'a>(node: &'a Value, name: &str) -> Option<&'a Value> {
    node.get("parameters")?.get(name)
}

async fn webhook(
    AxumState(shared): AxumState<Arc<Shared>>,
    method: Method,
    Path(path): Path<String>,
    body: Bytes,
) -> Response {
    let path = path.trim_matches('/').to_owned();
    let method = method.as_str().to_owned();
    let world = shared.world();
    let workflow = world
        .n8n
        .webhooks
        .get(&(method.clone(), path.clone()))
        .and_then(|id| world.n8n.workflows.iter().find(|w| &w.id == id))
        .filter(|workflow| workflow.active);
    let Some(workflow) = workflow else {
        return json(
            StatusCode::NOT_FOUND,
            &json!({
                "code": 404,
                "message": format!("The requested webhook \"{method} {path}\" is not registered."),
                "hint": "The workflow must be active for a production URL to run successfully. You can activate the workflow using the toggle in the top-right of the editor. Note that unlike test URL calls, production URL calls aren't shown on the canvas (only in the executions list)",
            }),
        );
    };
    let nodes = workflow
        .active_version
        .as_ref()
        .map_or(&workflow.nodes, |version| &version.nodes);
    let trigger = nodes.iter().find(|node| {
        node.get("type").and_then(Value::as_str) == Some(WEBHOOK_NODE)
            && webhook_keys(&Workflow {
                nodes: vec![(*node).clone()],
                ..workflow.clone()
            })
            .contains(&(method.clone(), path.clone()))
    });
    let incoming: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mode = trigger
        .and_then(|node| parameter(node, "responseMode"))
        .and_then(Value::as_str)
        .unwrap_or("onReceived");
    match mode {
        "responseNode" => {
            let Some(respond) = nodes
                .iter()
                .find(|node| node.get("type").and_then(Value::as_str) == Some(RESPOND_NODE))
            else {
                return json(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &json!({ "code": 0, "message": "No Respond to Webhook node found in the workflow" }),
                );
            };
            respond_node_answer(respond, incoming)
        }
        "lastNode" => json(StatusCode::OK, &incoming),
        _ => json(
            StatusCode::OK,
            &json!({ "message": "Workflow was started" }),
        ),
    }
}

/// What a Respond-to-Webhook node sends. Expressions (`={{ … }}`) are not evaluated: the
/// sandbox answers with the literal after the `=`.
fn respond_node_answer(node: &Value, incoming: Value) -> Response {
    let status = parameter(node, "options")
        .and_then(|options| options.get("responseCode"))
        .and_then(Value::as_u64)
        .and_then(|code| u16::try_from(code).ok())
        .and_then(|code| StatusCode::from_u16(code).ok())
        .unwrap_or(StatusCode::OK);
    let respond_with = parameter(node, "respondWith")
        .and_then(Value::as_str)
        .unwrap_or("firstIncomingItem");
    let literal = |value: Option<&Value>| -> Option<String> {
        match value? {
            Value::String(text) => Some(text.strip_prefix('=').unwrap_or(text).to_owned()),
            other => Some(other.to_string()),
        }
    };
    match respond_with {
        "json" => {
            let text = literal(parameter(node, "responseBody")).unwrap_or_default();
            match serde_json::from_str::<Value>(&text) {
                Ok(value) => json(status, &value),
                Err(_) => (status, text).into_response(),
            }
        }
        "text" => {
            let text = literal(parameter(node, "responseBody")).unwrap_or_default();
            (status, text).into_response()
        }
        "noData" => status.into_response(),
        _ => json(status, &incoming),
    }
}
