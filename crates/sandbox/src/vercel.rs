//! The Vercel REST simulator: projects (409 on a taken name, linked only to repositories that
//! exist on the GitHub simulator and are not empty), environment variables in batches with
//! `upsert`, deployments from `gitSource` going QUEUED → BUILDING → READY, deletes.

mod domains;
mod edge;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State as AxumState};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::Rng;
use rand::distr::Alphanumeric;
use serde_json::{Map, Value, json};

use crate::Provider;
use crate::config::random_lowercase;
use crate::listener::{Tap, json};
use crate::world::Shared;

/// `POST /v11/projects` body properties (`additionalProperties: false`).
const CREATE_FIELDS: [&str; 21] = [
    "enablePreviewFeedback",
    "enableProductionFeedback",
    "previewDeploymentsDisabled",
    "buildCommand",
    "commandForIgnoringBuildStep",
    "devCommand",
    "environmentVariables",
    "framework",
    "gitRepository",
    "installCommand",
    "name",
    "skipGitConnectDuringLink",
    "ssoProtection",
    "outputDirectory",
    "publicSource",
    "rootDirectory",
    "serverlessFunctionRegion",
    "serverlessFunctionZeroConfigFailover",
    "oidcTokenConfig",
    "enableAffectedProjectsDeployments",
    "resourceConfig",
];

const TARGETS: [&str; 3] = ["production", "preview", "development"];
const ENV_TYPES: [&str; 5] = ["system", "secret", "encrypted", "plain", "sensitive"];

#[derive(Debug, Default)]
pub(crate) struct State {
    projects: BTreeMap<String, Project>,
    deployments: BTreeMap<String, Deployment>,
    pub(crate) domains: domains::Domains,
    pub(crate) edge: edge::Edge,
    /// Requests per endpoint, when a limit is configured.
    rate_windows: crate::rate_limit::FixedWindows<String>,
}

#[derive(Debug, Clone)]
struct Project {
    id: String,
    name: String,
    created_ms: i64,
    updated_ms: i64,
    settings: Map<String, Value>,
    link: Option<Link>,
    envs: Vec<EnvVar>,
}

#[derive(Debug, Clone)]
struct Link {
    org: String,
    repo: String,
    repo_id: i64,
    created_ms: i64,
}

#[derive(Debug, Clone)]
struct EnvVar {
    id: String,
    key: String,
    value: String,
    kind: String,
    targets: Vec<String>,
    git_branch: Option<String>,
    comment: Option<String>,
    created_ms: i64,
    updated_ms: i64,
}

#[derive(Debug, Clone)]
struct Deployment {
    id: String,
    project_id: String,
    name: String,
    url: String,
    target: Option<String>,
    created_ms: i64,
    created: Instant,
    git_ref: String,
    /// The `gitSource` as the client sent it: the spec's alternatives overlap unless the
    /// answer repeats exactly one of them.
    git_source: Value,
    meta: Map<String, Value>,
}

/// A project or deployment as the inventory reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VercelSummary {
    pub id: String,
    pub name: String,
}

impl State {
    /// Removes project `name`'s variable `key` behind the API's back, as a person editing the
    /// project in the dashboard would; true when there was one.
    pub(crate) fn remove_env(&mut self, name: &str, key: &str) -> bool {
        let Some(project) = self.projects.values_mut().find(|p| p.name == name) else {
            return false;
        };
        let before = project.envs.len();
        project.envs.retain(|env| env.key != key);
        project.envs.len() != before
    }

    pub(crate) fn project_summaries(&self) -> Vec<VercelSummary> {
        self.projects
            .values()
            .map(|project| VercelSummary {
                id: project.id.clone(),
                name: project.name.clone(),
            })
            .collect()
    }

    pub(crate) fn deployment_summaries(&self) -> Vec<VercelSummary> {
        self.deployments
            .values()
            .map(|deployment| VercelSummary {
                id: deployment.id.clone(),
                name: deployment.name.clone(),
            })
            .collect()
    }

    /// Project domains, each as `{id: project id, name: domain}`.
    pub(crate) fn domain_summaries(&self) -> Vec<VercelSummary> {
        self.domains
            .summaries()
            .into_iter()
            .map(|(name, id)| VercelSummary { id, name })
            .collect()
    }

    fn find(&self, id_or_name: &str) -> Option<&Project> {
        self.projects
            .get(id_or_name)
            .or_else(|| self.projects.values().find(|p| p.name == id_or_name))
    }

    fn find_id(&self, id_or_name: &str) -> Option<String> {
        self.find(id_or_name).map(|project| project.id.clone())
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn random_id(prefix: &str, len: usize) -> String {
    let tail: String = rand::rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect();
    format!("{prefix}{tail}")
}

/// Vercel's envelope: `{"error":{"code","message",…}}`.
pub(crate) fn error(status: StatusCode, code: &str, message: &str) -> Response {
    error_with(status, json!({ "code": code, "message": message }))
}

fn error_with(status: StatusCode, error: Value) -> Response {
    json(status, &json!({ "error": error }))
}

fn project_not_found() -> Response {
    error(StatusCode::NOT_FOUND, "not_found", "Project not found")
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let tap = Tap {
        shared: shared.clone(),
        provider: Provider::Vercel,
    };
    let shared_edge = shared.clone();
    Router::new()
        .route("/v11/projects", post(create_project))
        .route("/v10/projects", get(list_projects))
        .route(
            "/v9/projects/{idOrName}",
            get(get_project).delete(delete_project),
        )
        .route(
            "/v10/projects/{idOrName}/env",
            post(create_env).get(list_env),
        )
        .route("/v13/deployments", post(create_deployment))
        .route("/v6/deployments", get(list_deployments))
        .route("/v13/deployments/{idOrUrl}", get(get_deployment))
        .route(
            "/v10/projects/{idOrName}/domains",
            post(domains::add_domain),
        )
        .route(
            "/v9/projects/{idOrName}/domains/{domain}",
            get(domains::get_domain).delete(domains::remove_domain),
        )
        .route("/v6/domains/{domain}/config", get(domains::domain_config))
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "not_found",
                "The requested resource was not found",
            )
        })
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
        // Deployment hosts are the apps, not the API: neither gated nor recorded.
        .layer(axum::middleware::from_fn_with_state(
            shared_edge,
            edge::serve,
        ))
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

fn team_id_of(query: Option<&str>) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(name, _)| name == "teamId")
        .map(|(_, value)| value.into_owned())
}

/// Vercel answers 403 `forbidden` both for a missing and for a wrong token, and for a team the
/// token cannot act for.
async fn gate(AxumState(shared): AxumState<Arc<Shared>>, request: Request, next: Next) -> Response {
    match bearer(request.headers()) {
        None => {
            return error_with(
                StatusCode::FORBIDDEN,
                json!({
                    "code": "forbidden",
                    "message": "The request is missing an authentication token",
                    "missingToken": true,
                }),
            );
        }
        Some(token) if token != shared.config.credentials.vercel_token => {
            return error_with(
                StatusCode::FORBIDDEN,
                json!({ "code": "forbidden", "message": "Not authorized", "invalidToken": true }),
            );
        }
        Some(_) => {}
    }
    if let Some(team) = team_id_of(request.uri().query())
        && team != shared.config.credentials.vercel_team_id
    {
        return error(StatusCode::FORBIDDEN, "forbidden", "Not authorized");
    }
    let Some(limit) = shared
        .config
        .vercel_rate_limit_per_minute
        .filter(|_| shared.config.rate_limits)
    else {
        return next.run(request).await;
    };
    // One window per endpoint: the token is the sandbox's only one.
    let template = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|matched| matched.as_str().to_owned())
        .unwrap_or_default();
    let endpoint = crate::listener::endpoint_name(request.method().as_str(), &template);
    let counted =
        shared
            .world()
            .vercel
            .rate_windows
            .count(endpoint, RATE_WINDOW, std::time::Instant::now());
    let mut response = if counted.over(limit) {
        error(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_requests",
            "Rate limit exceeded",
        )
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    headers.insert("x-ratelimit-limit", HeaderValue::from(limit));
    headers.insert(
        "x-ratelimit-remaining",
        HeaderValue::from(limit.saturating_sub(counted.count)),
    );
    headers.insert(
        "x-ratelimit-reset",
        HeaderValue::from(counted.resets_at_epoch),
    );
    if counted.over(limit) {
        headers.insert(
            header::RETRY_AFTER,
            HeaderValue::from(counted.resets_in_secs().max(1)),
        );
    }
    response
}

/// Vercel's rate-limit window as the simulator counts it.
const RATE_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

fn valid_project_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && !name.contains("---")
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
}

fn env_json(env: &EnvVar) -> Value {
    // Vercel never echoes secret values in clear; plain ones come back as sent.
    let value = if env.kind == "plain" {
        env.value.clone()
    } else {
        STANDARD.encode(format!("enc:{}:{}", env.id, random_lowercase(16)))
    };
    let mut body = json!({
        "id": env.id,
        "key": env.key,
        "value": value,
        "type": env.kind,
        "target": env.targets,
        "configurationId": null,
        "createdAt": env.created_ms,
        "updatedAt": env.updated_ms,
        "createdBy": null,
        "updatedBy": null,
        "decrypted": false,
    });
    if let Some(branch) = &env.git_branch {
        body["gitBranch"] = json!(branch);
    }
    if let Some(comment) = &env.comment {
        body["comment"] = json!(comment);
    }
    body
}

fn project_json(shared: &Shared, project: &Project) -> Value {
    let team = &shared.config.credentials.vercel_team_id;
    let setting = |name: &str| project.settings.get(name).cloned().unwrap_or(Value::Null);
    let mut body = json!({
        "accountId": team,
        "id": project.id,
        "name": project.name,
        "nodeVersion": "22.x",
        "directoryListing": false,
        "resourceConfig": { "functionDefaultRegions": ["iad1"] },
        "defaultResourceConfig": { "functionDefaultRegions": ["iad1"] },
        "createdAt": project.created_ms,
        "updatedAt": project.updated_ms,
        "framework": setting("framework"),
        "buildCommand": setting("buildCommand"),
        "devCommand": setting("devCommand"),
        "installCommand": setting("installCommand"),
        "outputDirectory": setting("outputDirectory"),
        "rootDirectory": setting("rootDirectory"),
        "commandForIgnoringBuildStep": setting("commandForIgnoringBuildStep"),
        "publicSource": setting("publicSource"),
        "env": project.envs.iter().map(env_json).collect::<Vec<_>>(),
        "live": false,
        "gitForkProtection": true,
        "autoExposeSystemEnvs": true,
        "latestDeployments": [],
    });
    if let Some(link) = &project.link {
        body["link"] = json!({
            "type": "github",
            "org": link.org,
            "repo": link.repo,
            "repoId": link.repo_id,
            "repoOwnerId": crate::github::State::owner_id(&link.org),
            "gitCredentialId": format!("cred_{}", link.repo_id),
            "productionBranch": "main",
            "deployHooks": [],
            "createdAt": link.created_ms,
            "updatedAt": link.created_ms,
            "sourceless": true,
        });
    }
    body
}

fn repo_not_linkable(shared: &Shared, full_name: &str) -> Option<Response> {
    let now = Instant::now();
    match shared.world().github.lookup(full_name, now) {
        None => Some(error_with(
            StatusCode::BAD_REQUEST,
            json!({
                "code": "repo_not_found",
                "message": "To link a GitHub repository, you need to install the GitHub integration first. Make sure there aren't any typos and that you have access to the repository if it's private.",
                "action": "Install GitHub App",
                "link": "https://github.com/apps/vercel",
                "repo": full_name,
            }),
        )),
        Some((_, false)) => Some(empty_repo()),
        Some((_, true)) => None,
    }
}

fn empty_repo() -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "incorrect_git_source_info",
        "The provided GitHub repository does not contain the requested branch or commit reference. Please ensure the repository is not empty.",
    )
}

/// Parses one environment variable of a create body; `Err` is the message of a 400.
fn parse_env(value: &Value, now: i64) -> Result<EnvVar, String> {
    let Some(object) = value.as_object() else {
        return Err("Invalid request: environment variable must be an object.".to_owned());
    };
    let text = |name: &str| object.get(name).and_then(Value::as_str).map(str::to_owned);
    let key = text("key").ok_or("Invalid request: missing required property `key`.")?;
    let value = text("value").ok_or("Invalid request: missing required property `value`.")?;
    let kind = text("type").unwrap_or_else(|| "encrypted".to_owned());
    if !ENV_TYPES.contains(&kind.as_str()) {
        return Err(format!(
            "Invalid request: `type` should be equal to one of the allowed values \"{}\".",
            ENV_TYPES.join(", ")
        ));
    }
    let targets: Vec<String> = match object.get("target") {
        Some(Value::String(target)) => vec![target.clone()],
        Some(Value::Array(targets)) => targets
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => return Err("Invalid request: missing required property `target`.".to_owned()),
    };
    if targets.is_empty() || targets.iter().any(|t| !TARGETS.contains(&t.as_str())) {
        return Err(
            "Invalid request: `target` should be equal to one of the allowed values \"production, preview, development\".".to_owned(),
        );
    }
    Ok(EnvVar {
        id: random_id("", 16),
        key,
        value,
        kind,
        targets,
        git_branch: text("gitBranch"),
        comment: text("comment"),
        created_ms: now,
        updated_ms: now,
    })
}

async fn create_project(AxumState(shared): AxumState<Arc<Shared>>, body: Bytes) -> Response {
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "bad_request", "Invalid JSON.");
    };
    if let Some(extra) = body
        .keys()
        .find(|key| !CREATE_FIELDS.contains(&key.as_str()))
    {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            &format!("Invalid request: should NOT have additional property `{extra}`."),
        );
    }
    let Some(name) = body.get("name").and_then(Value::as_str) else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "Invalid request: missing required property `name`.",
        );
    };
    if !valid_project_name(name) {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "Project names can be up to 100 characters long and must be lowercase. They can include letters, digits, and the following characters: '.', '_', '-'. However, they cannot contain the sequence '---'.",
        );
    }
    let now = now_ms();
    let mut envs = Vec::new();
    if let Some(list) = body.get("environmentVariables") {
        let Some(list) = list.as_array() else {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "Invalid request: `environmentVariables` should be array.",
            );
        };
        for value in list {
            match parse_env(value, now) {
                Ok(env) => envs.push(env),
                Err(message) => return error(StatusCode::BAD_REQUEST, "bad_request", &message),
            }
        }
    }
    let link = match body.get("gitRepository") {
        None => None,
        Some(repository) => {
            let kind = repository.get("type").and_then(Value::as_str);
            let Some(full_name) = repository.get("repo").and_then(Value::as_str) else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "Invalid request: `gitRepository` missing required property `repo`.",
                );
            };
            if kind != Some("github") {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "This sandbox links GitHub repositories only.",
                );
            }
            if let Some(refusal) = repo_not_linkable(&shared, full_name) {
                return refusal;
            }
            let found = shared.world().github.lookup(full_name, Instant::now());
            let Some((repo_id, _)) = found else {
                // Deleted between the two looks.
                return repo_not_linkable(&shared, full_name).unwrap_or_else(empty_repo);
            };
            let (org, repo) = full_name.split_once('/').unwrap_or(("", full_name));
            Some(Link {
                org: org.to_owned(),
                repo: repo.to_owned(),
                repo_id,
                created_ms: now,
            })
        }
    };
    let mut settings = Map::new();
    for field in [
        "framework",
        "buildCommand",
        "devCommand",
        "installCommand",
        "outputDirectory",
        "rootDirectory",
        "commandForIgnoringBuildStep",
        "publicSource",
    ] {
        if let Some(value) = body.get(field) {
            settings.insert(field.to_owned(), value.clone());
        }
    }
    let mut world = shared.world();
    if world.vercel.projects.values().any(|p| p.name == name) {
        return error(
            StatusCode::CONFLICT,
            "conflict",
            &format!("Project \"{name}\" already exists."),
        );
    }
    let project = Project {
        id: random_id("prj_", 28),
        name: name.to_owned(),
        created_ms: now,
        updated_ms: now,
        settings,
        link,
        envs,
    };
    world
        .vercel
        .projects
        .insert(project.id.clone(), project.clone());
    drop(world);
    json(StatusCode::OK, &project_json(&shared, &project))
}

#[derive(Debug, serde::Deserialize)]
struct ListQuery {
    search: Option<String>,
    limit: Option<String>,
    from: Option<String>,
}

/// A project's place in the listing order (newest first, ties by id), as the continuation
/// token `next` carries it: a page taken after a deletion still starts where it should.
fn list_position(project: &Project) -> (std::cmp::Reverse<i64>, String) {
    (std::cmp::Reverse(project.created_ms), project.id.clone())
}

fn list_token(project: &Project) -> String {
    format!("{}.{}", project.created_ms, project.id)
}

fn parse_list_token(token: &str) -> Option<(std::cmp::Reverse<i64>, String)> {
    let (created, id) = token.split_once('.')?;
    Some((std::cmp::Reverse(created.parse().ok()?), id.to_owned()))
}

async fn list_projects(
    AxumState(shared): AxumState<Arc<Shared>>,
    Query(query): Query<ListQuery>,
) -> Response {
    let limit = query
        .limit
        .as_deref()
        .and_then(|limit| limit.parse::<usize>().ok())
        .unwrap_or(20)
        .clamp(1, 100);
    let search = query.search.unwrap_or_default();
    let after = match query.from.as_deref().map(parse_list_token) {
        None => None,
        Some(Some(after)) => Some(after),
        Some(None) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "Invalid request: `from` is not a continuation token from `pagination.next`.",
            );
        }
    };
    let world = shared.world();
    let mut matching: Vec<&Project> = world
        .vercel
        .projects
        .values()
        .filter(|project| project.name.contains(&search))
        .filter(|project| {
            after
                .as_ref()
                .is_none_or(|after| list_position(project) > *after)
        })
        .collect();
    matching.sort_by_key(|project| list_position(project));
    let page: Vec<&Project> = matching.iter().take(limit).copied().collect();
    let next = match page.last() {
        Some(last) if matching.len() > limit => json!(list_token(last)),
        _ => Value::Null,
    };
    json(
        StatusCode::OK,
        &json!({
            "projects": page.iter().map(|project| project_json(&shared, project)).collect::<Vec<_>>(),
            // The continuation-token variant: with `prev` as well, a last page (`next: null`)
            // would match both of the spec's `oneOf` alternatives.
            "pagination": { "count": page.len(), "next": next },
        }),
    )
}

async fn get_project(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(id_or_name): Path<String>,
) -> Response {
    let world = shared.world();
    match world.vercel.find(&id_or_name) {
        Some(project) => json(StatusCode::OK, &project_json(&shared, project)),
        None => project_not_found(),
    }
}

async fn delete_project(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(id_or_name): Path<String>,
) -> Response {
    let mut world = shared.world();
    let Some(id) = world.vercel.find_id(&id_or_name) else {
        return project_not_found();
    };
    world.vercel.projects.remove(&id);
    world.vercel.domains.remove_project(&id);
    // Deployments and environment variables go with their project.
    world
        .vercel
        .deployments
        .retain(|_, deployment| deployment.project_id != id);
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Debug, serde::Deserialize)]
struct EnvQuery {
    upsert: Option<String>,
}

async fn create_env(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(id_or_name): Path<String>,
    Query(query): Query<EnvQuery>,
    body: Bytes,
) -> Response {
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "bad_request", "Invalid JSON.");
    };
    let single = body.is_object();
    let items: Vec<Value> = match body {
        Value::Array(items) => items,
        object @ Value::Object(_) => vec![object],
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "Invalid request: body should be object or array.",
            );
        }
    };
    let now = now_ms();
    let mut parsed = Vec::new();
    for item in &items {
        match parse_env(item, now) {
            Ok(env) => parsed.push(env),
            Err(message) => return error(StatusCode::BAD_REQUEST, "bad_request", &message),
        }
    }
    let upsert = query.upsert.as_deref() == Some("true");
    let mut world = shared.world();
    let Some(id) = world.vercel.find_id(&id_or_name) else {
        return project_not_found();
    };
    let Some(project) = world.vercel.projects.get_mut(&id) else {
        return project_not_found();
    };
    let mut created = Vec::new();
    let mut failed = Vec::new();
    for env in parsed {
        let clash = project.envs.iter_mut().find(|existing| {
            existing.key == env.key
                && existing.git_branch == env.git_branch
                && existing.targets.iter().any(|t| env.targets.contains(t))
        });
        match clash {
            Some(existing) if upsert => {
                existing.value = env.value;
                existing.kind = env.kind;
                existing.targets = env.targets;
                existing.comment = env.comment;
                existing.updated_ms = now;
                created.push(env_json(existing));
            }
            Some(existing) => {
                let target = existing
                    .targets
                    .iter()
                    .find(|t| env.targets.contains(t))
                    .cloned()
                    .unwrap_or_default();
                failed.push(json!({
                    "error": {
                        "code": "ENV_CONFLICT",
                        "message": format!(
                            "A variable with the name `{}` already exists for the target {target}.",
                            env.key
                        ),
                        "key": env.key,
                        "envVarKey": env.key,
                        "envVarId": existing.id,
                        "target": env.targets,
                    }
                }));
            }
            None => {
                created.push(env_json(&env));
                project.envs.push(env);
            }
        }
    }
    project.updated_ms = now;
    drop(world);
    if single && created.is_empty() {
        // A lone variable that clashes is a top-level error, not a partial success.
        if let Some(Value::Object(mut entry)) = failed.pop()
            && let Some(inner) = entry.remove("error")
        {
            return error_with(StatusCode::BAD_REQUEST, inner);
        }
    }
    let created = if single {
        created.pop().unwrap_or(Value::Null)
    } else {
        Value::Array(created)
    };
    json(
        StatusCode::CREATED,
        &json!({ "created": created, "failed": failed }),
    )
}

async fn list_env(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(id_or_name): Path<String>,
) -> Response {
    let world = shared.world();
    match world.vercel.find(&id_or_name) {
        Some(project) => json(
            StatusCode::OK,
            &json!({ "envs": project.envs.iter().map(env_json).collect::<Vec<_>>() }),
        ),
        None => project_not_found(),
    }
}

fn ready_state(shared: &Shared, deployment: &Deployment, now: Instant) -> &'static str {
    let elapsed = now.duration_since(deployment.created);
    let build = shared.config.vercel_build_time;
    if elapsed < build / 5 {
        "QUEUED"
    } else if elapsed < build {
        "BUILDING"
    } else {
        "READY"
    }
}

fn deployment_json(shared: &Shared, deployment: &Deployment, now: Instant) -> Value {
    let team = &shared.config.credentials.vercel_team_id;
    let state = ready_state(shared, deployment, now);
    let ready = state == "READY";
    let building_at =
        deployment.created_ms + (shared.config.vercel_build_time / 5).as_millis() as i64;
    let alias: Vec<String> = if ready {
        match deployment.target.as_deref() {
            Some("production") => vec![format!("{}.vercel.app", deployment.name)],
            _ => vec![format!(
                "{}-git-{}.vercel.app",
                deployment.name, deployment.git_ref
            )],
        }
    } else {
        Vec::new()
    };
    let mut body = json!({
        "id": deployment.id,
        "url": deployment.url,
        "name": deployment.name,
        "projectId": deployment.project_id,
        "ownerId": team,
        "readyState": state,
        "status": state,
        "type": "LAMBDAS",
        "target": deployment.target,
        "createdAt": deployment.created_ms,
        "bootedAt": deployment.created_ms,
        "buildingAt": building_at,
        "buildSkipped": false,
        "aliasAssigned": ready,
        "aliasError": null,
        "alias": alias,
        "inspectorUrl": format!("https://vercel.com/{team}/{}/{}", deployment.name, deployment.id),
        "isInConcurrentBuildsQueue": false,
        "isInSystemBuildsQueue": false,
        "public": false,
        "plan": "pro",
        "createdIn": "sfo1",
        "regions": ["iad1"],
        "version": 2,
        "routes": null,
        "build": { "env": [] },
        "env": [],
        "meta": deployment.meta,
        "creator": { "uid": "sandbox-user", "username": "sandbox" },
        "projectSettings": {},
        "gitSource": deployment.git_source,
    });
    if ready {
        body["readyAt"] =
            json!(deployment.created_ms + shared.config.vercel_build_time.as_millis() as i64);
    }
    body
}

async fn create_deployment(AxumState(shared): AxumState<Arc<Shared>>, body: Bytes) -> Response {
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "bad_request", "Invalid JSON.");
    };
    let Some(name) = body.get("name").and_then(Value::as_str) else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "Invalid request: missing required property `name`.",
        );
    };
    let project_key = body
        .get("project")
        .and_then(Value::as_str)
        .unwrap_or(name)
        .to_owned();
    let Some(source) = body.get("gitSource").and_then(Value::as_object) else {
        return error(
            StatusCode::NOT_IMPLEMENTED,
            "not_implemented",
            "The sandbox deploys from `gitSource` only; file uploads are not simulated.",
        );
    };
    if source.get("type").and_then(Value::as_str) != Some("github") {
        return error(
            StatusCode::BAD_REQUEST,
            "incorrect_git_source_info",
            "The sandbox deploys from GitHub sources only.",
        );
    }
    let Some(git_ref) = source.get("ref").and_then(Value::as_str) else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "Invalid request: `gitSource` missing required property `ref`.",
        );
    };
    let repo_id = source.get("repoId").and_then(|id| {
        id.as_i64()
            .or_else(|| id.as_str().and_then(|s| s.parse().ok()))
    });
    let now = Instant::now();
    let world_repo = {
        let world = shared.world();
        match repo_id {
            Some(id) => world.github.lookup_id(id, now),
            None => {
                let org = source.get("org").and_then(Value::as_str).unwrap_or("");
                let repo = source.get("repo").and_then(Value::as_str).unwrap_or("");
                let full = format!("{org}/{repo}");
                world
                    .github
                    .lookup(&full, now)
                    .map(|(_, filled)| (full, filled))
            }
        }
    };
    let Some((full_name, filled)) = world_repo else {
        return error(
            StatusCode::BAD_REQUEST,
            "incorrect_git_source_info",
            "The provided GitHub repository can't be found.",
        );
    };
    if !filled || git_ref != "main" {
        return empty_repo();
    }
    let Some((repo_id, _)) = shared.world().github.lookup(&full_name, now) else {
        return empty_repo();
    };
    let (org, repo) = full_name.split_once('/').unwrap_or(("", &full_name));
    let mut meta = Map::new();
    if let Some(Value::Object(given)) = body.get("meta") {
        for (key, value) in given {
            if let Some(text) = value.as_str() {
                meta.insert(key.clone(), json!(text));
            }
        }
    }
    meta.insert("githubCommitRef".to_owned(), json!(git_ref));
    meta.insert("githubOrg".to_owned(), json!(org));
    meta.insert("githubRepo".to_owned(), json!(repo));
    meta.insert("githubRepoId".to_owned(), json!(repo_id.to_string()));
    let target = body
        .get("target")
        .and_then(Value::as_str)
        .map(str::to_owned);

    let mut world = shared.world();
    let Some(project) = world.vercel.find(&project_key) else {
        return project_not_found();
    };
    let project_id = project.id.clone();
    let project_name = project.name.clone();
    let id = random_id("dpl_", 28);
    let deployment = Deployment {
        url: format!("{project_name}-{}.vercel.app", random_lowercase(9)),
        id: id.clone(),
        project_id,
        name: project_name,
        target,
        created_ms: now_ms(),
        created: now,
        git_ref: git_ref.to_owned(),
        git_source: if source.contains_key("repoId") {
            json!({ "type": "github", "ref": git_ref, "repoId": repo_id })
        } else {
            json!({ "type": "github", "ref": git_ref, "org": org, "repo": repo })
        },
        meta,
    };
    world.vercel.deployments.insert(id, deployment.clone());
    drop(world);
    json(StatusCode::OK, &deployment_json(&shared, &deployment, now))
}

#[derive(Debug, serde::Deserialize)]
struct DeploymentListQuery {
    #[serde(rename = "projectId")]
    project_id: Option<String>,
    target: Option<String>,
    limit: Option<usize>,
}

/// `GET /v6/deployments`: newest first, filtered by project and target as the real API does.
async fn list_deployments(
    AxumState(shared): AxumState<Arc<Shared>>,
    Query(query): Query<DeploymentListQuery>,
) -> Response {
    let world = shared.world();
    let now = Instant::now();
    let mut found: Vec<&Deployment> = world
        .vercel
        .deployments
        .values()
        .filter(|d| query.project_id.as_ref().is_none_or(|p| &d.project_id == p))
        .filter(|d| {
            query
                .target
                .as_ref()
                .is_none_or(|t| d.target.as_ref() == Some(t))
        })
        .collect();
    found.sort_by_key(|d| std::cmp::Reverse(d.created_ms));
    let limit = query.limit.unwrap_or(20).clamp(1, 100);
    let count = found.len().min(limit);
    let deployments: Vec<Value> = found
        .into_iter()
        .take(limit)
        .map(|d| {
            let full = deployment_json(&shared, d, now);
            json!({
                "uid": d.id,
                "name": d.name,
                "projectId": d.project_id,
                "url": d.url,
                "created": d.created_ms,
                "createdAt": d.created_ms,
                "state": full["readyState"],
                "readyState": full["readyState"],
                "type": "LAMBDAS",
                "target": d.target,
                "creator": full["creator"],
                "inspectorUrl": full["inspectorUrl"],
                "meta": d.meta,
            })
        })
        .collect();
    json(
        StatusCode::OK,
        &json!({
            "deployments": deployments,
            "pagination": { "count": count, "next": null, "prev": null },
        }),
    )
}

async fn get_deployment(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(id_or_url): Path<String>,
) -> Response {
    let world = shared.world();
    let found = world.vercel.deployments.get(&id_or_url).or_else(|| {
        world
            .vercel
            .deployments
            .values()
            .find(|deployment| deployment.url == id_or_url)
    });
    match found {
        Some(deployment) => json(
            StatusCode::OK,
            &deployment_json(&shared, deployment, Instant::now()),
        ),
        None => error(StatusCode::NOT_FOUND, "not_found", "Deployment not found"),
    }
}
