//! The Supabase Management API (v1) simulator: projects backed by real PostgreSQL databases,
//! the UNKNOWN → COMING_UP → ACTIVE_HEALTHY timeline, api-keys, regions, organizations, and the
//! per-token × scope × endpoint rate limit with its headers on every response.

mod auth_config;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Extension, MatchedPath, Path, Query, Request, State as AxumState};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::Provider;
use crate::config::random_lowercase;
use crate::listener::{ProjectFate, Tap, endpoint_name, json};
use crate::project_db::ProjectDbError;
use crate::rate_limit::FixedWindows;
use crate::world::Shared;

/// Region codes of the create body's enum (and of available-regions).
const REGIONS: [(&str, &str); 18] = [
    ("us-east-1", "East US (North Virginia)"),
    ("us-east-2", "East US (Ohio)"),
    ("us-west-1", "West US (North California)"),
    ("us-west-2", "West US (Oregon)"),
    ("ap-east-1", "East Asia (Hong Kong)"),
    ("ap-southeast-1", "Southeast Asia (Singapore)"),
    ("ap-northeast-1", "Northeast Asia (Tokyo)"),
    ("ap-northeast-2", "Northeast Asia (Seoul)"),
    ("ap-southeast-2", "Oceania (Sydney)"),
    ("eu-west-1", "West EU (Ireland)"),
    ("eu-west-2", "West EU (London)"),
    ("eu-west-3", "West EU (Paris)"),
    ("eu-north-1", "North EU (Stockholm)"),
    ("eu-central-1", "Central EU (Frankfurt)"),
    ("eu-central-2", "Central EU (Zurich)"),
    ("ca-central-1", "Canada (Central)"),
    ("ap-south-1", "South Asia (Mumbai)"),
    ("sa-east-1", "South America (São Paulo)"),
];

/// `V1CreateProjectBody` has `additionalProperties: false`; these are its properties.
const CREATE_FIELDS: [&str; 10] = [
    "db_pass",
    "name",
    "organization_id",
    "organization_slug",
    "plan",
    "region",
    "region_selection",
    "kps_enabled",
    "desired_instance_size",
    "template_url",
];

const RATE_WINDOW: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
pub(crate) struct State {
    projects: BTreeMap<String, Project>,
    /// Each project's auth settings, made on first use ([`auth_config`]).
    auth_configs: BTreeMap<String, serde_json::Map<String, Value>>,
    next_numeric_id: i64,
    rate_windows: FixedWindows<(String, String, String)>,
}

#[derive(Debug, Clone)]
struct Project {
    reference: String,
    numeric_id: i64,
    name: String,
    organization_slug: String,
    region: String,
    instance_size: String,
    created_at: chrono::DateTime<chrono::Utc>,
    created: Instant,
    fate: Option<ProjectFate>,
    keys: ProjectKeys,
}

#[derive(Debug, Clone)]
struct ProjectKeys {
    anon: String,
    service_role: String,
    publishable: String,
    publishable_id: String,
    secret: String,
    secret_id: String,
}

/// A project as the inventory reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProjectSummary {
    pub reference: String,
    pub name: String,
    pub status: String,
}

impl State {
    pub(crate) fn summaries(&self, shared: &Shared) -> Vec<ProjectSummary> {
        let now = Instant::now();
        self.projects
            .values()
            .map(|project| ProjectSummary {
                reference: project.reference.clone(),
                name: project.name.clone(),
                status: status(project, shared, now).to_owned(),
            })
            .collect()
    }
}

fn status(project: &Project, shared: &Shared, now: Instant) -> &'static str {
    if now.duration_since(project.created) < shared.config.supabase_ready_after {
        return "COMING_UP";
    }
    match project.fate {
        None => "ACTIVE_HEALTHY",
        Some(ProjectFate::StuckComingUp) => "COMING_UP",
        Some(ProjectFate::InitFailed) => "INIT_FAILED",
    }
}

pub(crate) fn error(status: StatusCode, message: &str) -> Response {
    json(status, &json!({ "message": message }))
}

/// The recorded 400 for deleting a project that is still coming up.
pub(crate) fn not_ready_for_deletion() -> Response {
    error(StatusCode::BAD_REQUEST, "Project not ready for deletion.")
}

fn not_found() -> Response {
    // The exact 404 wording for an unknown ref is not in any recording we have.
    error(StatusCode::NOT_FOUND, "Project not found")
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let tap = Tap {
        shared: shared.clone(),
        provider: Provider::Supabase,
    };
    Router::new()
        .route("/v1/projects", get(list_projects).post(create_project))
        .route("/v1/projects/available-regions", get(available_regions))
        .route(
            "/v1/projects/{ref}",
            get(get_project).delete(delete_project),
        )
        .route("/v1/projects/{ref}/api-keys", get(api_keys))
        .route("/v1/projects/{ref}/api-keys/legacy", get(legacy_api_keys))
        .route("/v1/projects/{ref}/health", get(health))
        .route(
            "/v1/projects/{ref}/config/auth",
            get(auth_config::get_auth_config).patch(auth_config::patch_auth_config),
        )
        .route(
            "/v1/projects/{ref}/config/database/pooler",
            get(pooler_config),
        )
        .route(
            "/v1/projects/{ref}/database/query",
            axum::routing::post(run_query),
        )
        .route(
            "/v1/projects/{ref}/database/password",
            axum::routing::patch(update_password),
        )
        .route("/v1/organizations", get(list_organizations))
        .route("/v1/organizations/{slug}", get(get_organization))
        .route(
            "/v1/organizations/{slug}/projects",
            get(organization_projects),
        )
        .fallback(|| async { error(StatusCode::NOT_FOUND, "Cannot find the requested resource") })
        .with_state(shared.clone())
        .layer(axum::middleware::from_fn_with_state(
            tap.clone(),
            crate::listener::inject,
        ))
        .layer(axum::middleware::from_fn_with_state(shared, gate))
        .layer(axum::middleware::from_fn_with_state(
            tap,
            crate::listener::record,
        ))
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

/// Authentication and the rate limit: 120/min per token × scope × endpoint, with
/// `X-RateLimit-Limit/Remaining/Reset` (reset = seconds left) on every response.
async fn gate(AxumState(shared): AxumState<Arc<Shared>>, request: Request, next: Next) -> Response {
    let token = match bearer(request.headers()) {
        Some(token) if token == shared.config.credentials.supabase_token => token.to_owned(),
        _ => return error(StatusCode::UNAUTHORIZED, "Unauthorized"),
    };
    let template = request
        .extensions()
        .get::<MatchedPath>()
        .map(|matched| matched.as_str().to_owned())
        .unwrap_or_default();
    let endpoint = endpoint_name(request.method().as_str(), &template);
    let segments: Vec<String> = request.uri().path().split('/').map(str::to_owned).collect();
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    // Scope as Supabase documents it: the project or organization in the path, the body's
    // organization for project creation, else the user.
    let scope = if template.starts_with("/v1/projects/{ref}") {
        format!("project:{}", segments.get(3).cloned().unwrap_or_default())
    } else if template.starts_with("/v1/organizations/{slug}") {
        format!(
            "organization:{}",
            segments.get(3).cloned().unwrap_or_default()
        )
    } else if endpoint == "POST /v1/projects" {
        let organization = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|body| body.get("organization_slug").cloned())
            .and_then(|slug| slug.as_str().map(str::to_owned))
            .unwrap_or_default();
        format!("organization:{organization}")
    } else {
        "user".to_owned()
    };
    let request = Request::from_parts(parts, Body::from(bytes));

    let limit = shared.config.supabase_rate_limit_per_minute;
    let counted = shared.config.rate_limits.then(|| {
        shared.world().supabase.rate_windows.count(
            (token, scope, endpoint),
            RATE_WINDOW,
            Instant::now(),
        )
    });
    let mut response = match counted {
        Some(counted) if counted.over(limit) => {
            error(StatusCode::TOO_MANY_REQUESTS, "Too many requests")
        }
        _ => next.run(request).await,
    };
    let headers = response.headers_mut();
    // An injected 429 already says "nothing left"; keep its figures.
    if let Some(counted) = counted
        && !headers.contains_key("x-ratelimit-remaining")
    {
        headers.insert("x-ratelimit-limit", HeaderValue::from(limit));
        headers.insert(
            "x-ratelimit-remaining",
            HeaderValue::from(limit.saturating_sub(counted.count)),
        );
        headers.insert(
            "x-ratelimit-reset",
            HeaderValue::from(counted.resets_in_secs()),
        );
    }
    if let Ok(value) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        headers.insert("x-gotrue-id", value);
    }
    response
}

fn fake_jwt(project_ref: &str, role: &str) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let issued = chrono::Utc::now().timestamp();
    let payload = json!({
        "iss": "supabase",
        "ref": project_ref,
        "role": role,
        "iat": issued,
        "exp": issued + 10 * 365 * 24 * 3600,
    });
    let payload = URL_SAFE_NO_PAD.encode(payload.to_string());
    let signature = URL_SAFE_NO_PAD.encode(random_lowercase(32));
    format!("{header}.{payload}.{signature}")
}

fn database_host(shared: &Shared, project_ref: &str) -> String {
    match &shared.databases {
        Some(databases) => databases.host(),
        None => format!("db.{project_ref}.supabase.co"),
    }
}

fn project_json(project: &Project, shared: &Shared, now: Instant, with_database: bool) -> Value {
    let mut body = json!({
        "id": project.reference,
        "ref": project.reference,
        "organization_id": project.organization_slug,
        "organization_slug": project.organization_slug,
        "name": project.name,
        "region": project.region,
        "created_at": project.created_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "status": status(project, shared, now),
    });
    if with_database {
        body["database"] = json!({
            "host": database_host(shared, &project.reference),
            "version": "15.8.1.085",
            "postgres_engine": "15",
            "release_channel": "ga",
        });
    }
    body
}

fn find_org(shared: &Shared, slug: &str) -> bool {
    shared.config.credentials.supabase_org_slug == slug
}

fn region_from(body: &serde_json::Map<String, Value>) -> Result<String, String> {
    let region = body.get("region").and_then(Value::as_str);
    let selection = body.get("region_selection");
    match (region, selection) {
        (Some(_), Some(_)) => {
            Err("Only one of region or region_selection can be specified".to_owned())
        }
        (Some(code), None) => known_region(code),
        (None, Some(selection)) => {
            let code = selection.get("code").and_then(Value::as_str).unwrap_or("");
            match selection.get("type").and_then(Value::as_str) {
                Some("specific") => known_region(code),
                Some("smartGroup") => match code {
                    "americas" => Ok("us-east-1".to_owned()),
                    "emea" => Ok("eu-central-1".to_owned()),
                    "apac" => Ok("ap-southeast-1".to_owned()),
                    _ => {
                        Err("region_selection.code must be one of americas, emea, apac".to_owned())
                    }
                },
                _ => Err("region_selection.type must be one of specific, smartGroup".to_owned()),
            }
        }
        (None, None) => Ok("us-east-1".to_owned()),
    }
}

fn known_region(code: &str) -> Result<String, String> {
    if REGIONS.iter().any(|(known, _)| *known == code) {
        Ok(code.to_owned())
    } else {
        Err(format!(
            "region must be one of the following values: {}",
            region_codes()
        ))
    }
}

fn region_codes() -> String {
    REGIONS
        .iter()
        .map(|(code, _)| *code)
        .collect::<Vec<_>>()
        .join(", ")
}

async fn create_project(
    AxumState(shared): AxumState<Arc<Shared>>,
    fate: Option<Extension<ProjectFate>>,
    body: Bytes,
) -> Response {
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "Request body must be a JSON object",
        );
    };
    if let Some(extra) = body
        .keys()
        .find(|key| !CREATE_FIELDS.contains(&key.as_str()))
    {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("property {extra} should not exist"),
        );
    }
    let name = match body.get("name").and_then(Value::as_str) {
        Some(name) if !name.is_empty() && name.chars().count() <= 256 => name.to_owned(),
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "name must be a string shorter than or equal to 256 characters",
            );
        }
    };
    let Some(db_pass) = body.get("db_pass").and_then(Value::as_str) else {
        return error(StatusCode::BAD_REQUEST, "db_pass must be a string");
    };
    if db_pass.chars().count() < 4 {
        return error(
            StatusCode::BAD_REQUEST,
            "db_pass must be longer than or equal to 4 characters",
        );
    }
    let organization = body
        .get("organization_slug")
        .or_else(|| body.get("organization_id"))
        .and_then(Value::as_str)
        .unwrap_or("");
    if organization.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "organization_slug must be a string",
        );
    }
    if !find_org(&shared, organization) {
        return error(StatusCode::FORBIDDEN, "Forbidden resource");
    }
    let region = match region_from(&body) {
        Ok(region) => region,
        Err(message) => return error(StatusCode::BAD_REQUEST, &message),
    };
    let instance_size = body
        .get("desired_instance_size")
        .and_then(Value::as_str)
        .unwrap_or("nano")
        .to_owned();

    let fate = fate.map(|Extension(fate)| fate);
    let organization = organization.to_owned();
    let db_pass = db_pass.to_owned();
    // The creation runs on its own task: a client that gives up mid-request (a timeout) must
    // not cancel it half-way, which would strand a role or database. As on the real service,
    // the project then exists although nobody saw the answer.
    let creation = tokio::spawn({
        let shared = shared.clone();
        let running = shared.creation_started();
        async move {
            let _running = running;
            let reference = random_lowercase(20);
            if let Some(databases) = &shared.databases {
                databases.create(&reference, &db_pass).await?;
            }
            let mut world = shared.world();
            world.supabase.next_numeric_id += 1;
            let project = Project {
                numeric_id: 700_000 + world.supabase.next_numeric_id,
                name,
                organization_slug: organization,
                region,
                instance_size,
                created_at: chrono::Utc::now(),
                created: Instant::now(),
                fate,
                keys: ProjectKeys {
                    anon: fake_jwt(&reference, "anon"),
                    service_role: fake_jwt(&reference, "service_role"),
                    publishable: format!("sb_publishable_{}", random_lowercase(32)),
                    publishable_id: uuid::Uuid::new_v4().to_string(),
                    secret: format!("sb_secret_{}", random_lowercase(32)),
                    secret_id: uuid::Uuid::new_v4().to_string(),
                },
                reference: reference.clone(),
            };
            world.supabase.projects.insert(reference, project.clone());
            Ok::<Project, ProjectDbError>(project)
        }
    });
    let project = match creation.await {
        Ok(Ok(project)) => project,
        Ok(Err(problem)) => {
            tracing::error!(error = %problem, "could not create the project database");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Failed to create project",
            );
        }
        Err(_) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Failed to create project",
            );
        }
    };
    let mut body = project_json(&project, &shared, Instant::now(), false);
    // A fresh project reads UNKNOWN in the create answer (recorded), COMING_UP afterwards.
    body["status"] = json!("UNKNOWN");
    json(StatusCode::CREATED, &body)
}

async fn list_projects(AxumState(shared): AxumState<Arc<Shared>>) -> Response {
    let now = Instant::now();
    let world = shared.world();
    let projects: Vec<Value> = world
        .supabase
        .projects
        .values()
        .map(|project| project_json(project, &shared, now, true))
        .collect();
    json(StatusCode::OK, &Value::Array(projects))
}

async fn get_project(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(reference): Path<String>,
) -> Response {
    let world = shared.world();
    match world.supabase.projects.get(&reference) {
        Some(project) => json(
            StatusCode::OK,
            &project_json(project, &shared, Instant::now(), true),
        ),
        None => not_found(),
    }
}

async fn delete_project(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(reference): Path<String>,
) -> Response {
    {
        let world = shared.world();
        let Some(project) = world.supabase.projects.get(&reference) else {
            return not_found();
        };
        if project.created.elapsed() < shared.config.supabase_ready_after {
            return not_ready_for_deletion();
        }
    }
    // Like creation, deletion finishes even if the client stops waiting for it.
    let deletion = tokio::spawn({
        let shared = shared.clone();
        let reference = reference.clone();
        async move {
            if let Some(databases) = &shared.databases {
                databases.drop_project(&reference).await?;
            }
            let mut world = shared.world();
            world.supabase.auth_configs.remove(&reference);
            Ok::<Option<Project>, ProjectDbError>(world.supabase.projects.remove(&reference))
        }
    });
    let removed = match deletion.await {
        Ok(Ok(removed)) => removed,
        Ok(Err(problem)) => {
            tracing::error!(project = %reference, error = %problem, "could not drop the project database");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Failed to delete project",
            );
        }
        Err(_) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Failed to delete project",
            );
        }
    };
    match removed {
        Some(project) => json(
            StatusCode::OK,
            &json!({
                "id": project.numeric_id,
                "ref": project.reference,
                "name": project.name,
                "slug": project.reference,
            }),
        ),
        None => not_found(),
    }
}

#[derive(Debug, serde::Deserialize)]
struct ApiKeysQuery {
    reveal: Option<String>,
}

async fn api_keys(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(reference): Path<String>,
    Query(query): Query<ApiKeysQuery>,
) -> Response {
    let world = shared.world();
    let Some(project) = world.supabase.projects.get(&reference) else {
        return not_found();
    };
    let now = Instant::now();
    let settled = shared.config.supabase_ready_after + shared.config.supabase_api_keys_settle;
    if status(project, &shared, now) != "ACTIVE_HEALTHY"
        || now.duration_since(project.created) < settled
    {
        // Documented only as "may briefly return 4xx" after ACTIVE_HEALTHY; status and
        // wording here are ours.
        return error(
            StatusCode::BAD_REQUEST,
            "API keys are not available while the project is coming up",
        );
    }
    let reveal = query.reveal.as_deref() == Some("true");
    let keys = &project.keys;
    let prefix_len = "sb_secret_".len() + 4;
    let secret = if reveal {
        keys.secret.clone()
    } else {
        let prefix: String = keys.secret.chars().take(prefix_len).collect();
        let hidden = keys.secret.chars().count().saturating_sub(prefix_len);
        format!("{prefix}{}", "·".repeat(hidden))
    };
    let stamp = project
        .created_at
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let body = json!([
        {
            "name": "anon",
            "api_key": keys.anon,
            "id": "anon",
            "type": "legacy",
            "hash": hash_of(&keys.anon),
            "prefix": keys.anon.chars().take(5).collect::<String>(),
            "description": "Legacy anon API key",
        },
        {
            "name": "service_role",
            "api_key": keys.service_role,
            "id": "service_role",
            "type": "legacy",
            "hash": hash_of(&keys.service_role),
            "prefix": keys.service_role.chars().take(5).collect::<String>(),
            "description": "Legacy service_role API key",
        },
        {
            "id": keys.publishable_id,
            "name": "default",
            "type": "publishable",
            "api_key": keys.publishable,
            "description": null,
            "secret_jwt_template": null,
            "hash": hash_of(&keys.publishable),
            "prefix": keys.publishable.chars().take("sb_publishable_".len() + 4).collect::<String>(),
            "inserted_at": stamp,
            "updated_at": stamp,
        },
        {
            "id": keys.secret_id,
            "name": "default",
            "type": "secret",
            "api_key": secret,
            "description": null,
            "secret_jwt_template": { "role": "service_role" },
            "hash": hash_of(&keys.secret),
            "prefix": keys.secret.chars().take(prefix_len).collect::<String>(),
            "inserted_at": stamp,
            "updated_at": stamp,
        },
    ]);
    json(StatusCode::OK, &body)
}

/// A stable, non-reversible stand-in for the key hash Supabase shows (not cryptographic: the
/// keys are fake).
fn hash_of(key: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut hasher);
    let first = hasher.finish();
    first.hash(&mut hasher);
    let second = hasher.finish();
    URL_SAFE_NO_PAD.encode([first.to_be_bytes(), second.to_be_bytes()].concat())
}

async fn legacy_api_keys(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(reference): Path<String>,
) -> Response {
    if !shared.world().supabase.projects.contains_key(&reference) {
        return not_found();
    }
    json(StatusCode::OK, &json!({ "enabled": true }))
}

#[derive(Debug, serde::Deserialize)]
struct HealthQuery {
    services: Option<String>,
}

async fn health(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(reference): Path<String>,
    Query(query): Query<HealthQuery>,
) -> Response {
    let Some(services) = query.services.filter(|services| !services.is_empty()) else {
        return error(StatusCode::BAD_REQUEST, "services should not be empty");
    };
    let world = shared.world();
    let Some(project) = world.supabase.projects.get(&reference) else {
        return not_found();
    };
    let service_status = match status(project, &shared, Instant::now()) {
        "ACTIVE_HEALTHY" => "ACTIVE_HEALTHY",
        "INIT_FAILED" => "UNHEALTHY",
        _ => "COMING_UP",
    };
    let body: Vec<Value> = services
        .split(',')
        .map(|name| {
            json!({
                "name": name.trim(),
                "healthy": service_status == "ACTIVE_HEALTHY",
                "status": service_status,
            })
        })
        .collect();
    json(StatusCode::OK, &Value::Array(body))
}

/// The project's pooler routes (`SupavisorConfigResponse`). The sandbox offers the session
/// route only, to the project's real database through its pooler front (TLS, the login
/// checked against the project's current password): user `postgres.{ref}`, a login role
/// acting as the project's role. Without PostgreSQL it answers with Supabase's shape of the
/// route.
async fn pooler_config(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(reference): Path<String>,
) -> Response {
    let region = {
        let world = shared.world();
        match world.supabase.projects.get(&reference) {
            Some(project) => project.region.clone(),
            None => return not_found(),
        }
    };
    let user = crate::project_db::pooler_role(&reference);
    let (host, port, database) = match &shared.databases {
        Some(databases) => (
            "127.0.0.1".to_owned(),
            databases.pooler_port(),
            crate::project_db::object_name(&reference),
        ),
        None => (
            format!("aws-0-{region}.pooler.supabase.com"),
            5432,
            "postgres".to_owned(),
        ),
    };
    let connection_string = format!("postgresql://{user}:[YOUR-PASSWORD]@{host}:{port}/{database}");
    json(
        StatusCode::OK,
        &json!([{
            "identifier": reference,
            "database_type": "PRIMARY",
            "is_using_scram_auth": true,
            "db_user": user,
            "db_host": host,
            "db_port": port,
            "db_name": database,
            "connection_string": connection_string,
            "connectionString": connection_string,
            "default_pool_size": 15,
            "max_client_conn": 200,
            "pool_mode": "session",
        }]),
    )
}

/// `POST /v1/projects/{ref}/database/query`: the SQL runs in the project's database as its
/// role. A failing statement answers 400 with PostgreSQL's SQLSTATE and message in the
/// `message` [unverified: the wording of the real service's SQL error answer].
async fn run_query(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(reference): Path<String>,
    body: Bytes,
) -> Response {
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "Request body must be a JSON object",
        );
    };
    let query = match body.get("query").and_then(Value::as_str) {
        Some(query) if !query.is_empty() => query.to_owned(),
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "query must be longer than or equal to 1 characters",
            );
        }
    };
    let parameters = match body.get("parameters") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.clone(),
        Some(_) => return error(StatusCode::BAD_REQUEST, "parameters must be an array"),
    };
    let read_only = match body.get("read_only") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(flag)) => *flag,
        Some(_) => return error(StatusCode::BAD_REQUEST, "read_only must be a boolean value"),
    };
    if !shared.world().supabase.projects.contains_key(&reference) {
        return not_found();
    }
    if shared.databases.is_none() {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Failed to run sql query: this sandbox runs without PostgreSQL",
        );
    }
    // Runs to its end even if the client stops waiting, as a query on the server would.
    let run = tokio::spawn(async move {
        match &shared.databases {
            Some(databases) => {
                databases
                    .run_query(&reference, &query, &parameters, read_only)
                    .await
            }
            None => Err(sqlx::Error::PoolClosed),
        }
    });
    match run.await {
        Ok(Ok(rows)) => json(StatusCode::CREATED, &Value::Array(rows)),
        Ok(Err(sqlx::Error::Database(database))) => error(
            StatusCode::BAD_REQUEST,
            &format!(
                "Failed to run sql query: ERROR:  {}: {}",
                database.code().unwrap_or_default(),
                database.message()
            ),
        ),
        Ok(Err(problem)) => {
            tracing::warn!(error = %problem, "could not run a project query");
            error(StatusCode::INTERNAL_SERVER_ERROR, "Failed to run sql query")
        }
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "Failed to run sql query"),
    }
}

/// `PATCH /v1/projects/{ref}/database/password`: the project's role (and its pooler role)
/// get the new password.
async fn update_password(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(reference): Path<String>,
    body: Bytes,
) -> Response {
    let password = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(body)) => match body.get("password") {
            Some(Value::String(password)) if password.chars().count() >= 4 => password.clone(),
            Some(Value::String(_)) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "password must be longer than or equal to 4 characters",
                );
            }
            _ => return error(StatusCode::BAD_REQUEST, "password must be a string"),
        },
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "Request body must be a JSON object",
            );
        }
    };
    if !shared.world().supabase.projects.contains_key(&reference) {
        return not_found();
    }
    if shared.databases.is_some() {
        let shared = shared.clone();
        let change = tokio::spawn(async move {
            match &shared.databases {
                Some(databases) => databases.set_password(&reference, &password).await,
                None => Ok(()),
            }
        });
        match change.await {
            Ok(Ok(())) => {}
            Ok(Err(problem)) => {
                tracing::error!(error = %problem, "could not change a project's password");
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Failed to update database password",
                );
            }
            Err(_) => {
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Failed to update database password",
                );
            }
        }
    }
    json(
        StatusCode::OK,
        &json!({ "message": "Database password updated" }),
    )
}

async fn list_organizations(AxumState(shared): AxumState<Arc<Shared>>) -> Response {
    let slug = &shared.config.credentials.supabase_org_slug;
    json(
        StatusCode::OK,
        &json!([{ "id": slug, "slug": slug, "name": "Sandbox Org" }]),
    )
}

async fn get_organization(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(slug): Path<String>,
) -> Response {
    if !find_org(&shared, &slug) {
        return error(StatusCode::FORBIDDEN, "Forbidden resource");
    }
    json(
        StatusCode::OK,
        &json!({
            "id": slug,
            "name": "Sandbox Org",
            "plan": "pro",
            "opt_in_tags": [],
            "allowed_release_channels": ["ga"],
        }),
    )
}

#[derive(Debug, serde::Deserialize)]
struct OrganizationProjectsQuery {
    offset: Option<String>,
    limit: Option<String>,
    search: Option<String>,
    sort: Option<String>,
    statuses: Option<String>,
}

async fn organization_projects(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(slug): Path<String>,
    Query(query): Query<OrganizationProjectsQuery>,
) -> Response {
    if !find_org(&shared, &slug) {
        return error(StatusCode::FORBIDDEN, "Forbidden resource");
    }
    let offset = match query.offset.as_deref().map(str::parse::<usize>) {
        None => 0,
        Some(Ok(offset)) => offset,
        Some(Err(_)) => {
            return error(StatusCode::BAD_REQUEST, "offset must not be less than 0");
        }
    };
    let limit = match query.limit.as_deref().map(str::parse::<usize>) {
        None => 100,
        Some(Ok(limit)) if (1..=100).contains(&limit) => limit,
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "limit must not be greater than 100 and not be less than 1",
            );
        }
    };
    let statuses: Option<Vec<String>> = match query.statuses.as_deref() {
        None | Some("") => None,
        Some(list) => {
            let wanted: Vec<String> = list.split(',').map(|s| s.trim().to_owned()).collect();
            if wanted
                .iter()
                .any(|status| status != "ACTIVE_HEALTHY" && status != "INACTIVE")
            {
                return error(
                    StatusCode::BAD_REQUEST,
                    "statuses must be a comma-separated list of: ACTIVE_HEALTHY, INACTIVE",
                );
            }
            Some(wanted)
        }
    };
    let sort = query.sort.as_deref().unwrap_or("name_asc");
    if !["name_asc", "name_desc", "created_asc", "created_desc"].contains(&sort) {
        return error(
            StatusCode::BAD_REQUEST,
            "sort must be one of the following values: name_asc, name_desc, created_asc, created_desc",
        );
    }
    let search = query.search.unwrap_or_default().to_lowercase();
    let now = Instant::now();
    let world = shared.world();
    let mut matching: Vec<&Project> = world
        .supabase
        .projects
        .values()
        .filter(|project| project.organization_slug == slug)
        .filter(|project| search.is_empty() || project.name.to_lowercase().contains(&search))
        .filter(|project| {
            statuses
                .as_ref()
                .is_none_or(|wanted| wanted.iter().any(|s| s == status(project, &shared, now)))
        })
        .collect();
    match sort {
        "name_desc" => {
            matching.sort_by(|a, b| b.name.cmp(&a.name).then(b.numeric_id.cmp(&a.numeric_id)))
        }
        "created_asc" => matching.sort_by_key(|project| project.numeric_id),
        "created_desc" => matching.sort_by_key(|project| std::cmp::Reverse(project.numeric_id)),
        _ => matching.sort_by(|a, b| a.name.cmp(&b.name).then(a.numeric_id.cmp(&b.numeric_id))),
    }
    let count = matching.len();
    let page: Vec<Value> = matching
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|project| {
            let project_status = status(project, &shared, now);
            let database_status = match project_status {
                "ACTIVE_HEALTHY" | "COMING_UP" | "INIT_FAILED" => project_status,
                _ => "UNKNOWN",
            };
            json!({
                "ref": project.reference,
                "name": project.name,
                "cloud_provider": "AWS",
                "region": project.region,
                "is_branch": false,
                "status": project_status,
                "inserted_at": project.created_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "databases": [{
                    "infra_compute_size": project.instance_size,
                    "region": project.region,
                    "status": database_status,
                    "cloud_provider": "AWS",
                    "identifier": project.reference,
                    "type": "PRIMARY",
                }],
            })
        })
        .collect();
    json(
        StatusCode::OK,
        &json!({
            "projects": page,
            "pagination": { "count": count, "limit": limit, "offset": offset },
        }),
    )
}

#[derive(Debug, serde::Deserialize)]
struct RegionsQuery {
    organization_slug: Option<String>,
}

async fn available_regions(Query(query): Query<RegionsQuery>) -> Response {
    if query.organization_slug.as_deref().unwrap_or("").is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "organization_slug should not be empty",
        );
    }
    let specific: Vec<Value> = REGIONS
        .iter()
        .map(|(code, name)| json!({ "name": name, "code": code, "type": "specific", "provider": "AWS" }))
        .collect();
    let smart_groups = json!([
        { "name": "Americas", "code": "americas", "type": "smartGroup" },
        { "name": "Europe, Middle East and Africa", "code": "emea", "type": "smartGroup" },
        { "name": "Asia-Pacific", "code": "apac", "type": "smartGroup" },
    ]);
    json(
        StatusCode::OK,
        &json!({
            "recommendations": {
                "smartGroup": smart_groups[0],
                "specific": [specific[0]],
            },
            "all": { "smartGroup": smart_groups, "specific": specific },
        }),
    )
}
