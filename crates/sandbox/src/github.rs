//! The GitHub REST simulator: repositories generated from a template (422 on a taken name),
//! empty for a while after generation (the default branch answers 404), fetched, listed per
//! organization with `Link` paging, deleted; `x-ratelimit-*` headers and 401 bodies as GitHub's.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State as AxumState};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::config::SandboxConfig;
use crate::listener::{Tap, json};
use crate::rate_limit::FixedWindows;
use crate::world::Shared;
use crate::{Provider, SandboxUrls};

const DOCS: &str = "https://docs.github.com/rest";
const RATE_WINDOW: Duration = Duration::from_secs(3600);
/// The shorter of the two windows of the content-creation limits.
const CREATION_MINUTE: Duration = Duration::from_secs(60);
/// The login the sandbox's token belongs to.
const USER_LOGIN: &str = "sandbox-bot";

#[derive(Debug)]
pub(crate) struct State {
    base_url: String,
    repos: BTreeMap<(String, String), Repo>,
    next_id: i64,
    /// The primary limit's windows, per token.
    rate_windows: FixedWindows<String>,
    /// The secondary limits on content-creating requests, per token and window length.
    creation_windows: FixedWindows<(String, u64)>,
}

#[derive(Debug, Clone)]
struct Repo {
    id: i64,
    owner: String,
    name: String,
    description: Option<String>,
    private: bool,
    is_template: bool,
    template: Option<(String, String)>,
    created_at: chrono::DateTime<chrono::Utc>,
    /// The repository has content (its default branch exists) from this instant on.
    filled_at: Instant,
    head_sha: String,
}

/// A repository as the inventory reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RepoSummary {
    pub id: i64,
    pub full_name: String,
}

fn key(owner: &str, name: &str) -> (String, String) {
    (owner.to_lowercase(), name.to_lowercase())
}

fn random_sha() -> String {
    let mut sha = String::new();
    for _ in 0..5 {
        sha.push_str(&format!("{:08x}", rand::random::<u32>()));
    }
    sha
}

impl State {
    pub(crate) fn new(config: &SandboxConfig, urls: &SandboxUrls, now: Instant) -> Self {
        let (owner, name) = config.credentials.template_owner_and_name();
        let mut repos = BTreeMap::new();
        repos.insert(
            key(owner, name),
            Repo {
                id: 100_000_001,
                owner: owner.to_owned(),
                name: name.to_owned(),
                description: Some("Client stack template".to_owned()),
                private: true,
                is_template: true,
                template: None,
                created_at: chrono::Utc::now(),
                filled_at: now,
                head_sha: random_sha(),
            },
        );
        Self {
            base_url: urls.github.clone(),
            repos,
            next_id: 100_000_001,
            rate_windows: FixedWindows::default(),
            creation_windows: FixedWindows::default(),
        }
    }

    /// Repositories other than templates (what clients created).
    pub(crate) fn summaries(&self) -> Vec<RepoSummary> {
        self.repos
            .values()
            .filter(|repo| !repo.is_template)
            .map(|repo| RepoSummary {
                id: repo.id,
                full_name: format!("{}/{}", repo.owner, repo.name),
            })
            .collect()
    }

    /// The repository `owner/name` if it exists: its id and whether it has content yet.
    pub(crate) fn lookup(&self, full_name: &str, now: Instant) -> Option<(i64, bool)> {
        let (owner, name) = full_name.split_once('/')?;
        self.repos
            .get(&key(owner, name))
            .map(|repo| (repo.id, now >= repo.filled_at))
    }

    /// The repository with this id: its `owner/name` and whether it has content yet.
    pub(crate) fn lookup_id(&self, id: i64, now: Instant) -> Option<(String, bool)> {
        self.repos.values().find(|repo| repo.id == id).map(|repo| {
            (
                format!("{}/{}", repo.owner, repo.name),
                now >= repo.filled_at,
            )
        })
    }

    /// The numeric id of an account (stable per login).
    pub(crate) fn owner_id(login: &str) -> i64 {
        let mut id: i64 = 7_000_000;
        for byte in login.to_lowercase().bytes() {
            id = (id * 31 + i64::from(byte)) % 90_000_000;
        }
        id + 10_000_000
    }
}

pub(crate) fn error(
    status: StatusCode,
    message: &str,
    documentation_url: Option<&str>,
) -> Response {
    json(
        status,
        &json!({
            "message": message,
            "documentation_url": documentation_url.unwrap_or(DOCS),
            "status": status.as_u16().to_string(),
        }),
    )
}

fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "Not Found", None)
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let tap = Tap {
        shared: shared.clone(),
        provider: Provider::Github,
    };
    Router::new()
        // Routes under /repos share parameter names; the tap reports this one under the spec's
        // `{template_owner}/{template_repo}`.
        .route("/repos/{owner}/{repo}/generate", post(generate))
        .route("/repos/{owner}/{repo}", get(get_repo).delete(delete_repo))
        .route("/repos/{owner}/{repo}/branches/{branch}", get(get_branch))
        .route("/orgs/{org}/repos", get(list_org_repos))
        .fallback(|| async { not_found() })
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

fn token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("token "))
}

/// Authentication and the primary rate limit, with GitHub's headers on every answer.
async fn gate(AxumState(shared): AxumState<Arc<Shared>>, request: Request, next: Next) -> Response {
    let token = match token(request.headers()) {
        None => return error(StatusCode::UNAUTHORIZED, "Requires authentication", None),
        Some(token) if token != shared.config.credentials.github_token => {
            return error(StatusCode::UNAUTHORIZED, "Bad credentials", None);
        }
        Some(token) => token.to_owned(),
    };
    let limit = shared.config.github_rate_limit_per_hour;
    let now = Instant::now();
    // Content-creating: the only POST the simulator serves is repository generation.
    let creating = request.method() == axum::http::Method::POST;
    let (primary, creation_wait) = if shared.config.rate_limits {
        let mut world = shared.world();
        let primary = world
            .github
            .rate_windows
            .count(token.clone(), RATE_WINDOW, now);
        let mut wait = None;
        if creating {
            for (length, creation_limit) in [
                (CREATION_MINUTE, shared.config.github_creations_per_minute),
                (RATE_WINDOW, shared.config.github_creations_per_hour),
            ] {
                let counted = world.github.creation_windows.count(
                    (token.clone(), length.as_secs()),
                    length,
                    now,
                );
                if counted.over(creation_limit) {
                    wait = wait.max(Some(counted.resets_in_secs()));
                }
            }
        }
        (Some(primary), wait)
    } else {
        (None, None)
    };
    let mut response = match (primary, creation_wait) {
        (Some(primary), _) if primary.over(limit) => error(
            StatusCode::FORBIDDEN,
            "API rate limit exceeded for user ID 1. If you reach out to GitHub Support for help, please include the request ID.",
            Some("https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"),
        ),
        (_, Some(wait)) => {
            let mut response = error(
                StatusCode::FORBIDDEN,
                "You have exceeded a secondary rate limit on content creation. Wait before you try again.",
                Some(
                    "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits",
                ),
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(wait.max(1)));
            response
        }
        _ => next.run(request).await,
    };
    let headers = response.headers_mut();
    if let Some(primary) = primary {
        headers.insert("x-ratelimit-limit", HeaderValue::from(limit));
        headers.insert(
            "x-ratelimit-remaining",
            HeaderValue::from(limit.saturating_sub(primary.count)),
        );
        headers.insert(
            "x-ratelimit-reset",
            HeaderValue::from(primary.resets_at_epoch),
        );
        headers.insert(
            "x-ratelimit-used",
            HeaderValue::from(primary.count.min(limit)),
        );
        headers.insert("x-ratelimit-resource", HeaderValue::from_static("core"));
    }
    if let Ok(scopes) = HeaderValue::from_str(&shared.config.github_token_scopes) {
        headers.insert("x-oauth-scopes", scopes);
    }
    headers.insert(
        "x-github-api-version-selected",
        HeaderValue::from_static("2022-11-28"),
    );
    response
}

fn user_json(base: &str, login: &str) -> Value {
    let html = format!("https://github.com/{login}");
    let api = format!("{base}/users/{login}");
    let id = State::owner_id(login);
    let kind = if login == USER_LOGIN {
        "User"
    } else {
        "Organization"
    };
    json!({
        "login": login,
        "id": id,
        "node_id": format!("O_sandbox{id}"),
        "avatar_url": format!("https://avatars.githubusercontent.com/u/{id}?v=4"),
        "gravatar_id": "",
        "url": api,
        "html_url": html,
        "followers_url": format!("{api}/followers"),
        "following_url": format!("{api}/following{{/other_user}}"),
        "gists_url": format!("{api}/gists{{/gist_id}}"),
        "starred_url": format!("{api}/starred{{/owner}}{{/repo}}"),
        "subscriptions_url": format!("{api}/subscriptions"),
        "organizations_url": format!("{api}/orgs"),
        "repos_url": format!("{api}/repos"),
        "events_url": format!("{api}/events{{/privacy}}"),
        "received_events_url": format!("{api}/received_events"),
        "type": kind,
        "user_view_type": "public",
        "site_admin": false,
    })
}

fn repo_json(state: &State, repo: &Repo, with_template: bool) -> Value {
    let base = &state.base_url;
    let full = format!("{}/{}", repo.owner, repo.name);
    let api = format!("{base}/repos/{full}");
    let stamp = repo
        .created_at
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut body = json!({
        "id": repo.id,
        "node_id": format!("R_sandbox{}", repo.id),
        "name": repo.name,
        "full_name": full,
        "owner": user_json(base, &repo.owner),
        "private": repo.private,
        "html_url": format!("https://github.com/{full}"),
        "description": repo.description,
        "fork": false,
        "url": api,
        "archive_url": format!("{api}/{{archive_format}}{{/ref}}"),
        "assignees_url": format!("{api}/assignees{{/user}}"),
        "blobs_url": format!("{api}/git/blobs{{/sha}}"),
        "branches_url": format!("{api}/branches{{/branch}}"),
        "collaborators_url": format!("{api}/collaborators{{/collaborator}}"),
        "comments_url": format!("{api}/comments{{/number}}"),
        "commits_url": format!("{api}/commits{{/sha}}"),
        "compare_url": format!("{api}/compare/{{base}}...{{head}}"),
        "contents_url": format!("{api}/contents/{{+path}}"),
        "contributors_url": format!("{api}/contributors"),
        "deployments_url": format!("{api}/deployments"),
        "downloads_url": format!("{api}/downloads"),
        "events_url": format!("{api}/events"),
        "forks_url": format!("{api}/forks"),
        "git_commits_url": format!("{api}/git/commits{{/sha}}"),
        "git_refs_url": format!("{api}/git/refs{{/sha}}"),
        "git_tags_url": format!("{api}/git/tags{{/sha}}"),
        "git_url": format!("git://github.com/{full}.git"),
        "issue_comment_url": format!("{api}/issues/comments{{/number}}"),
        "issue_events_url": format!("{api}/issues/events{{/number}}"),
        "issues_url": format!("{api}/issues{{/number}}"),
        "keys_url": format!("{api}/keys{{/key_id}}"),
        "labels_url": format!("{api}/labels{{/name}}"),
        "languages_url": format!("{api}/languages"),
        "merges_url": format!("{api}/merges"),
        "milestones_url": format!("{api}/milestones{{/number}}"),
        "notifications_url": format!("{api}/notifications{{?since,all,participating}}"),
        "pulls_url": format!("{api}/pulls{{/number}}"),
        "releases_url": format!("{api}/releases{{/id}}"),
        "ssh_url": format!("git@github.com:{full}.git"),
        "stargazers_url": format!("{api}/stargazers"),
        "statuses_url": format!("{api}/statuses/{{sha}}"),
        "subscribers_url": format!("{api}/subscribers"),
        "subscription_url": format!("{api}/subscription"),
        "tags_url": format!("{api}/tags"),
        "teams_url": format!("{api}/teams"),
        "trees_url": format!("{api}/git/trees{{/sha}}"),
        "clone_url": format!("https://github.com/{full}.git"),
        "mirror_url": null,
        "hooks_url": format!("{api}/hooks"),
        "svn_url": format!("https://github.com/{full}"),
        "homepage": null,
        "language": null,
        "forks_count": 0,
        "stargazers_count": 0,
        "watchers_count": 0,
        "size": 0,
        "default_branch": "main",
        "open_issues_count": 0,
        "is_template": repo.is_template,
        "topics": [],
        "has_issues": true,
        "has_projects": true,
        "has_wiki": false,
        "has_pages": false,
        "has_downloads": true,
        "has_discussions": false,
        "archived": false,
        "disabled": false,
        "visibility": if repo.private { "private" } else { "public" },
        "pushed_at": stamp,
        "created_at": stamp,
        "updated_at": stamp,
        "permissions": { "admin": true, "maintain": true, "push": true, "triage": true, "pull": true },
        "allow_rebase_merge": true,
        "allow_squash_merge": true,
        "allow_auto_merge": false,
        "delete_branch_on_merge": false,
        "allow_merge_commit": true,
        "allow_update_branch": false,
        "use_squash_pr_title_as_default": false,
        "squash_merge_commit_title": "COMMIT_OR_PR_TITLE",
        "squash_merge_commit_message": "COMMIT_MESSAGES",
        "merge_commit_title": "MERGE_MESSAGE",
        "merge_commit_message": "PR_TITLE",
        "allow_forking": false,
        "web_commit_signoff_required": false,
        "network_count": 0,
        "subscribers_count": 1,
        "license": null,
        "forks": 0,
        "open_issues": 0,
        "watchers": 0,
    });
    if repo.owner.to_lowercase() != USER_LOGIN {
        body["organization"] = user_json(base, &repo.owner);
    }
    if with_template {
        let template = repo
            .template
            .as_ref()
            .and_then(|(owner, name)| state.repos.get(&key(owner, name)))
            .map(|template| repo_json(state, template, false));
        body["template_repository"] = template.unwrap_or(Value::Null);
    }
    body
}

async fn generate(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path((template_owner, template_repo)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let generate_docs =
        "https://docs.github.com/rest/repos/repos#create-a-repository-using-a-template";
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "Problems parsing JSON",
            Some(generate_docs),
        );
    };
    let Some(name) = body
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
    else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid request.\n\n\"name\" wasn't supplied.",
            Some(generate_docs),
        );
    };
    let owner = body
        .get("owner")
        .and_then(Value::as_str)
        .unwrap_or(USER_LOGIN)
        .to_owned();
    let org = &shared.config.credentials.github_org;
    if !owner.eq_ignore_ascii_case(org) && !owner.eq_ignore_ascii_case(USER_LOGIN) {
        return not_found();
    }
    let now = Instant::now();
    let mut world = shared.world();
    let state = &mut world.github;
    let Some(template) = state
        .repos
        .get(&key(&template_owner, &template_repo))
        .cloned()
    else {
        return not_found();
    };
    if !template.is_template {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!(
                "{}/{} is not a template repository",
                template.owner, template.name
            ),
            Some(generate_docs),
        );
    }
    if state.repos.contains_key(&key(&owner, name)) {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Could not clone: Name already exists on this account",
            Some(generate_docs),
        );
    }
    state.next_id += 1;
    let repo = Repo {
        id: state.next_id,
        owner: owner.clone(),
        name: name.to_owned(),
        description: body
            .get("description")
            .and_then(Value::as_str)
            .map(str::to_owned),
        private: body
            .get("private")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        is_template: false,
        template: Some((template.owner.clone(), template.name.clone())),
        created_at: chrono::Utc::now(),
        filled_at: now + shared.config.github_empty_for,
        head_sha: random_sha(),
    };
    state.repos.insert(key(&owner, name), repo.clone());
    let body = repo_json(state, &repo, true);
    let location = format!("{}/repos/{}/{}", state.base_url, repo.owner, repo.name);
    drop(world);
    let mut response = json(StatusCode::CREATED, &body);
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

async fn get_repo(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path((owner, name)): Path<(String, String)>,
) -> Response {
    let world = shared.world();
    match world.github.repos.get(&key(&owner, &name)) {
        Some(repo) => json(StatusCode::OK, &repo_json(&world.github, repo, true)),
        None => error(
            StatusCode::NOT_FOUND,
            "Not Found",
            Some("https://docs.github.com/rest/repos/repos#get-a-repository"),
        ),
    }
}

async fn delete_repo(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path((owner, name)): Path<(String, String)>,
) -> Response {
    match shared.world().github.repos.remove(&key(&owner, &name)) {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "Not Found",
            Some("https://docs.github.com/rest/repos/repos#delete-a-repository"),
        ),
    }
}

async fn get_branch(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path((owner, name, branch)): Path<(String, String, String)>,
) -> Response {
    let branch_docs = "https://docs.github.com/rest/branches/branches#get-a-branch";
    let world = shared.world();
    let state = &world.github;
    let Some(repo) = state.repos.get(&key(&owner, &name)) else {
        return error(StatusCode::NOT_FOUND, "Not Found", Some(branch_docs));
    };
    // Generation copies the template after answering 201: until then the repo has no branches.
    if Instant::now() < repo.filled_at || branch != "main" {
        return error(StatusCode::NOT_FOUND, "Branch not found", Some(branch_docs));
    }
    let full = format!("{}/{}", repo.owner, repo.name);
    let api = format!("{}/repos/{full}", state.base_url);
    let sha = &repo.head_sha;
    let stamp = repo
        .created_at
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let git_user = json!({ "name": "Sandbox Bot", "email": "bot@sandbox.invalid", "date": stamp });
    json(
        StatusCode::OK,
        &json!({
            "name": branch,
            "commit": {
                "sha": sha,
                "node_id": format!("C_sandbox{sha}"),
                "url": format!("{api}/commits/{sha}"),
                "html_url": format!("https://github.com/{full}/commit/{sha}"),
                "comments_url": format!("{api}/commits/{sha}/comments"),
                "commit": {
                    "url": format!("{api}/git/commits/{sha}"),
                    "author": git_user,
                    "committer": git_user,
                    "message": "Initial commit",
                    "comment_count": 0,
                    "tree": { "sha": sha, "url": format!("{api}/git/trees/{sha}") },
                },
                "author": null,
                "committer": null,
                "parents": [],
            },
            "_links": {
                "self": format!("{api}/branches/{branch}"),
                "html": format!("https://github.com/{full}/tree/{branch}"),
            },
            "protected": false,
            "protection": { "enabled": false },
            "protection_url": format!("{api}/branches/{branch}/protection"),
        }),
    )
}

#[derive(Debug, serde::Deserialize)]
struct ListQuery {
    sort: Option<String>,
    direction: Option<String>,
    per_page: Option<String>,
    page: Option<String>,
}

async fn list_org_repos(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(org): Path<String>,
    Query(query): Query<ListQuery>,
) -> Response {
    let world = shared.world();
    let state = &world.github;
    if !org.eq_ignore_ascii_case(&shared.config.credentials.github_org) {
        return not_found();
    }
    let per_page = query
        .per_page
        .as_deref()
        .and_then(|value| value.parse::<usize>().ok())
        .unwrap_or(30)
        .clamp(1, 100);
    let page = query
        .page
        .as_deref()
        .and_then(|value| value.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let sort = query.sort.as_deref().unwrap_or("created");
    let ascending = match query.direction.as_deref() {
        Some("asc") => true,
        Some("desc") => false,
        _ => sort == "full_name",
    };
    let mut repos: Vec<&Repo> = state
        .repos
        .values()
        .filter(|repo| repo.owner.eq_ignore_ascii_case(&org))
        .collect();
    if sort == "full_name" {
        repos.sort_by_key(|repo| repo.name.to_lowercase());
    } else {
        repos.sort_by_key(|repo| repo.id);
    }
    if !ascending {
        repos.reverse();
    }
    let last_page = repos.len().div_ceil(per_page).max(1);
    let body: Vec<Value> = repos
        .iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .map(|repo| repo_json(state, repo, false))
        .collect();

    let mut extra = String::new();
    if let Some(sort) = &query.sort {
        extra.push_str(&format!("&sort={sort}"));
    }
    if let Some(direction) = &query.direction {
        extra.push_str(&format!("&direction={direction}"));
    }
    let page_url = |number: usize| {
        format!(
            "{}/orgs/{org}/repos?per_page={per_page}{extra}&page={number}",
            state.base_url
        )
    };
    let mut links = Vec::new();
    if page > 1 {
        links.push(format!("<{}>; rel=\"prev\"", page_url(page - 1)));
    }
    if page < last_page {
        links.push(format!("<{}>; rel=\"next\"", page_url(page + 1)));
        links.push(format!("<{}>; rel=\"last\"", page_url(last_page)));
    }
    if page > 1 {
        links.push(format!("<{}>; rel=\"first\"", page_url(1)));
    }
    let mut response = json(StatusCode::OK, &Value::Array(body));
    if !links.is_empty()
        && let Ok(link) = HeaderValue::from_str(&links.join(", "))
    {
        response.headers_mut().insert(header::LINK, link);
    }
    response
}
