//! Vercel REST: a project linked to a GitHub repository, its environment variables, and its
//! first deployment. Shapes follow `vercel-rest-subset.json` and API-CONTRACTS §3.

mod domains;

pub use domains::{DomainConfig, ProjectDomain, RecommendedCname, RecommendedIpv4, Verification};

use reqwest::Method;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::error::{Provider, ProviderError};
use crate::http_policy::{Call, Credential, HttpPolicy, Transport, expose_for_body};
use crate::rate_budget::RateBudgetConfig;

#[derive(Debug, Clone)]
pub struct VercelConfig {
    /// `https://api.vercel.com` in production.
    pub base_url: Url,
    pub token: SecretString,
    /// Sent as `?teamId=` on every call when set.
    pub team_id: Option<String>,
    pub policy: HttpPolicy,
    pub budget: RateBudgetConfig,
}

impl VercelConfig {
    pub fn new(base_url: Url, token: SecretString) -> Self {
        VercelConfig {
            base_url,
            token,
            team_id: None,
            policy: HttpPolicy::default(),
            budget: RateBudgetConfig::default_for(Provider::Vercel),
        }
    }
}

/// Body of `POST /v11/projects` (`additionalProperties: false`; only `name` is required).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CreateProject {
    pub name: String,
    /// `nextjs`, …; `None` lets Vercel detect it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub framework: Option<String>,
    #[serde(rename = "gitRepository")]
    pub git_repository: GitRepository,
}

/// `gitRepository`: `{type, repo: "owner/name"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GitRepository {
    #[serde(rename = "type")]
    pub provider: String,
    pub repo: String,
}

impl GitRepository {
    pub fn github(owner: &str, name: &str) -> Self {
        GitRepository {
            provider: "github".to_owned(),
            repo: format!("{owner}/{name}"),
        }
    }
}

/// The fields of a project the client stack reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Project {
    pub id: String,
    pub name: String,
    #[serde(rename = "accountId")]
    pub account_id: String,
    #[serde(default)]
    pub framework: Option<String>,
    #[serde(default)]
    pub link: Option<ProjectLink>,
    /// Milliseconds since the epoch; tells a project this run made from one it found.
    #[serde(default, rename = "createdAt")]
    pub created_at: Option<i64>,
}

/// `link` of a project connected to a Git repository (GitHub variant fields).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ProjectLink {
    #[serde(rename = "type")]
    pub provider: String,
    #[serde(default)]
    pub org: Option<String>,
    #[serde(default)]
    pub repo: Option<String>,
    /// What a deployment's `gitSource.repoId` wants.
    #[serde(default, rename = "repoId")]
    pub repo_id: Option<u64>,
    #[serde(default, rename = "productionBranch")]
    pub production_branch: Option<String>,
}

impl Project {
    /// True when the project is linked to GitHub repository `owner/name`.
    pub fn linked_to(&self, owner: &str, name: &str) -> bool {
        self.link.as_ref().is_some_and(|link| {
            link.provider == "github"
                && link
                    .org
                    .as_deref()
                    .is_some_and(|o| o.eq_ignore_ascii_case(owner))
                && link
                    .repo
                    .as_deref()
                    .is_some_and(|r| r.eq_ignore_ascii_case(name))
        })
    }
}

/// `type` of an environment variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EnvType {
    Plain,
    Encrypted,
    Sensitive,
}

/// `target` of an environment variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EnvTarget {
    Production,
    Preview,
    Development,
}

/// One entry of the env batch. The value is secret: it goes into the body and nowhere else.
#[derive(Debug, Clone, Serialize)]
pub struct EnvVar {
    pub key: String,
    #[serde(serialize_with = "expose_for_body")]
    pub value: SecretString,
    #[serde(rename = "type")]
    pub env_type: EnvType,
    pub target: Vec<EnvTarget>,
}

/// `POST /v11/projects` with `environmentVariables`: the variables exist from the project's
/// first moment, in the same call.
#[derive(Debug, Serialize)]
struct CreateProjectWithEnv<'a> {
    #[serde(flatten)]
    project: &'a CreateProject,
    #[serde(rename = "environmentVariables")]
    environment_variables: &'a [EnvVar],
}

/// An entry of `GET /v10/projects/{idOrName}/env`, as far as a plain variable is read.
#[derive(Debug, Deserialize)]
struct ListedEnv {
    key: String,
    #[serde(rename = "type")]
    env_type: String,
    #[serde(default)]
    value: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ProjectPage {
    #[serde(default)]
    projects: Vec<Project>,
    #[serde(default)]
    pagination: Option<Pagination>,
}

/// `next` is a continuation token or a timestamp, by the spec's two variants; either goes
/// back as `from`. Null on the last page.
#[derive(Debug, Deserialize)]
struct Pagination {
    #[serde(default)]
    next: Option<serde_json::Value>,
}

impl Pagination {
    fn next_from(&self) -> Option<String> {
        match self.next.as_ref()? {
            serde_json::Value::String(token) if !token.is_empty() => Some(token.clone()),
            serde_json::Value::Number(at) => Some(at.to_string()),
            _ => None,
        }
    }
}

/// Pages read at most by one listing: ten thousand projects. A listing that would go on
/// is an error, not a silently short answer (a sweep would miss what it did not read).
const MAX_PROJECT_PAGES: usize = 100;

#[derive(Debug, Deserialize)]
struct EnvList {
    #[serde(default)]
    envs: Vec<ListedEnv>,
}

#[derive(Debug, Deserialize)]
struct EnvBatchAnswer {
    #[serde(default)]
    failed: Vec<EnvFailure>,
}

#[derive(Debug, Deserialize)]
struct EnvFailure {
    error: EnvFailureDetail,
}

/// Deliberately without the spec's `value` field: it can echo what was sent.
#[derive(Debug, Deserialize)]
struct EnvFailureDetail {
    code: String,
    #[serde(default)]
    key: Option<String>,
    #[serde(default, rename = "envVarKey")]
    env_var_key: Option<String>,
}

/// Body of `POST /v13/deployments`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CreateDeployment {
    /// The project's name.
    pub name: String,
    /// The project id; overrides `name` for the project choice.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// `production`; `None` makes a preview deployment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(rename = "gitSource")]
    pub git_source: GitSource,
}

/// `gitSource` `{type: "github", ref, repoId}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GitSource {
    #[serde(rename = "type")]
    pub provider: String,
    #[serde(rename = "ref")]
    pub git_ref: String,
    #[serde(rename = "repoId")]
    pub repo_id: u64,
}

impl GitSource {
    pub fn github(git_ref: &str, repo_id: u64) -> Self {
        GitSource {
            provider: "github".to_owned(),
            git_ref: git_ref.to_owned(),
            repo_id,
        }
    }
}

/// `readyState` of a deployment; BLOCKED comes from Vercel's newer SDK, later values read
/// as `Unrecognised`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReadyState {
    Queued,
    Building,
    Initializing,
    Ready,
    Error,
    Canceled,
    Blocked,
    #[serde(other)]
    Unrecognised,
}

impl ReadyState {
    /// The deployment will not become READY.
    pub fn is_terminal_failure(self) -> bool {
        matches!(
            self,
            ReadyState::Error | ReadyState::Canceled | ReadyState::Blocked
        )
    }
}

/// The fields of a deployment the client stack reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Deployment {
    pub id: String,
    pub url: String,
    #[serde(rename = "readyState")]
    pub ready_state: ReadyState,
    #[serde(default, rename = "projectId")]
    pub project_id: Option<String>,
    #[serde(default, rename = "aliasAssigned")]
    pub alias_assigned: Option<serde_json::Value>,
    #[serde(default, rename = "errorCode")]
    pub error_code: Option<String>,
    #[serde(default, rename = "errorMessage")]
    pub error_message: Option<String>,
}

/// One item of `GET /v6/deployments`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DeploymentSummary {
    pub uid: String,
    pub url: String,
    #[serde(default, rename = "readyState")]
    pub ready_state: Option<ReadyState>,
    #[serde(default)]
    pub target: Option<String>,
    pub created: i64,
}

#[derive(Debug, Deserialize)]
struct DeploymentList {
    deployments: Vec<DeploymentSummary>,
}

#[derive(Debug, Clone)]
pub struct VercelClient {
    transport: Transport,
}

impl VercelClient {
    pub fn new(config: VercelConfig) -> Result<Self, ProviderError> {
        let mut transport = Transport::new(
            Provider::Vercel,
            &config.base_url,
            Credential::Bearer(config.token),
            config.policy,
            config.budget,
        )?;
        if let Some(team_id) = config.team_id {
            transport = transport.with_default_query("teamId", team_id);
        }
        Ok(VercelClient { transport })
    }

    pub fn budget(&self) -> &std::sync::Arc<crate::rate_budget::RateBudget> {
        self.transport.budget()
    }

    /// `POST /v11/projects` → 200. A taken name is `Conflict` (409): look the project up and
    /// check [`Project::linked_to`] before adopting it.
    pub async fn create_project(&self, body: &CreateProject) -> Result<Project, ProviderError> {
        const OP: &str = "POST /v11/projects";
        let call =
            Call::new(Method::POST, OP, vec!["v11", "projects"]).json(Provider::Vercel, body)?;
        self.transport
            .execute(call)
            .await?
            .json(Provider::Vercel, OP)
    }

    /// [`create_project`](Self::create_project) with environment variables in the same body
    /// (`environmentVariables`), so that they cannot be missing from a project that exists.
    pub async fn create_project_with_env(
        &self,
        body: &CreateProject,
        vars: &[EnvVar],
    ) -> Result<Project, ProviderError> {
        const OP: &str = "POST /v11/projects";
        let body = CreateProjectWithEnv {
            project: body,
            environment_variables: vars,
        };
        let mut call =
            Call::new(Method::POST, OP, vec!["v11", "projects"]).json(Provider::Vercel, &body)?;
        for var in vars {
            call = call.secret(&var.value);
        }
        self.transport
            .execute(call)
            .await?
            .json(Provider::Vercel, OP)
    }

    /// The value of the project's `plain` variable `key` (`GET /v10/projects/{idOrName}/env`),
    /// or `None` when it has none. Variables of the other types are never read back.
    pub async fn plain_env_value(
        &self,
        id_or_name: &str,
        key: &str,
    ) -> Result<Option<String>, ProviderError> {
        const OP: &str = "GET /v10/projects/{idOrName}/env";
        let call = Call::new(Method::GET, OP, vec!["v10", "projects", id_or_name, "env"]);
        let list: EnvList = self
            .transport
            .execute(call)
            .await?
            .json(Provider::Vercel, OP)?;
        Ok(list
            .envs
            .into_iter()
            .find(|e| e.key == key && e.env_type == "plain")
            .and_then(|e| e.value))
    }

    /// The names of the project's environment variables (`GET /v10/projects/{idOrName}/env`);
    /// values are not read.
    pub async fn env_names(&self, id_or_name: &str) -> Result<Vec<String>, ProviderError> {
        const OP: &str = "GET /v10/projects/{idOrName}/env";
        let call = Call::new(Method::GET, OP, vec!["v10", "projects", id_or_name, "env"]);
        let list: EnvList = self
            .transport
            .execute(call)
            .await?
            .json(Provider::Vercel, OP)?;
        Ok(list.envs.into_iter().map(|e| e.key).collect())
    }

    /// `GET /v10/projects?search=…&limit=100`, page after page (`from` = the last page's
    /// `pagination.next`): every project whose name contains `search`.
    pub async fn list_projects(&self, search: &str) -> Result<Vec<Project>, ProviderError> {
        const OP: &str = "GET /v10/projects";
        let mut projects = Vec::new();
        let mut from: Option<String> = None;
        for _ in 0..MAX_PROJECT_PAGES {
            let mut call = Call::new(Method::GET, OP, vec!["v10", "projects"])
                .query("search", search)
                .query("limit", "100");
            if let Some(from) = &from {
                call = call.query("from", from);
            }
            let page: ProjectPage = self
                .transport
                .execute(call)
                .await?
                .json(Provider::Vercel, OP)?;
            projects.extend(page.projects);
            match page.pagination.as_ref().and_then(Pagination::next_from) {
                Some(next) if from.as_ref() != Some(&next) => from = Some(next),
                _ => return Ok(projects),
            }
        }
        // Every page answered 200; the listing as a whole is what cannot be used.
        Err(ProviderError::Permanent {
            status: 200,
            message: format!(
                "{OP}: more than {MAX_PROJECT_PAGES} pages of projects match {search:?}; remove projects or list fewer"
            ),
        })
    }

    /// `GET /v9/projects/{idOrName}`; `NotFound` when absent.
    pub async fn get_project(&self, id_or_name: &str) -> Result<Project, ProviderError> {
        const OP: &str = "GET /v9/projects/{idOrName}";
        let call = Call::new(Method::GET, OP, vec!["v9", "projects", id_or_name]);
        self.transport
            .execute(call)
            .await?
            .json(Provider::Vercel, OP)
    }

    /// `POST /v10/projects/{idOrName}/env?upsert=true` with the whole batch in one array.
    /// Any `failed[]` entry makes the call fail with the keys and codes (never the values).
    pub async fn upsert_env(&self, id_or_name: &str, vars: &[EnvVar]) -> Result<(), ProviderError> {
        const OP: &str = "POST /v10/projects/{idOrName}/env";
        let mut call = Call::new(Method::POST, OP, vec!["v10", "projects", id_or_name, "env"])
            .query("upsert", "true")
            .json(Provider::Vercel, vars)?;
        for var in vars {
            call = call.secret(&var.value);
        }
        let answer: EnvBatchAnswer = self
            .transport
            .execute(call)
            .await?
            .json(Provider::Vercel, OP)?;
        if answer.failed.is_empty() {
            return Ok(());
        }
        let entries = answer
            .failed
            .into_iter()
            .map(|f| {
                let key = f
                    .error
                    .key
                    .or(f.error.env_var_key)
                    .unwrap_or_else(|| "(unnamed)".to_owned());
                format!("{key}: {}", f.error.code)
            })
            .collect();
        Err(ProviderError::PartiallyRejected {
            provider: Provider::Vercel,
            entries,
        })
    }

    /// `POST /v13/deployments` → 200 with the new deployment (usually QUEUED).
    pub async fn create_deployment(
        &self,
        body: &CreateDeployment,
    ) -> Result<Deployment, ProviderError> {
        const OP: &str = "POST /v13/deployments";
        let call =
            Call::new(Method::POST, OP, vec!["v13", "deployments"]).json(Provider::Vercel, body)?;
        self.transport
            .execute(call)
            .await?
            .json(Provider::Vercel, OP)
    }

    /// `GET /v13/deployments/{idOrUrl}`: poll `ready_state` until READY or a terminal failure.
    pub async fn get_deployment(&self, id_or_url: &str) -> Result<Deployment, ProviderError> {
        const OP: &str = "GET /v13/deployments/{idOrUrl}";
        let call = Call::new(Method::GET, OP, vec!["v13", "deployments", id_or_url]);
        self.transport
            .execute(call)
            .await?
            .json(Provider::Vercel, OP)
    }

    /// `GET /v6/deployments?projectId=&target=`: the project's deployments, newest first
    /// (the first page, up to 100: enough to tell whether one exists).
    pub async fn list_deployments(
        &self,
        project_id: &str,
        target: Option<&str>,
    ) -> Result<Vec<DeploymentSummary>, ProviderError> {
        const OP: &str = "GET /v6/deployments";
        let mut call = Call::new(Method::GET, OP, vec!["v6", "deployments"])
            .query("projectId", project_id)
            .query("limit", "100");
        if let Some(target) = target {
            call = call.query("target", target);
        }
        let page: DeploymentList = self
            .transport
            .execute(call)
            .await?
            .json(Provider::Vercel, OP)?;
        Ok(page.deployments)
    }

    /// `DELETE /v9/projects/{idOrName}` → 204 (env vars and deployments go with it);
    /// `NotFound` when already gone.
    pub async fn delete_project(&self, id_or_name: &str) -> Result<(), ProviderError> {
        const OP: &str = "DELETE /v9/projects/{idOrName}";
        let call = Call::new(Method::DELETE, OP, vec!["v9", "projects", id_or_name]);
        self.transport.execute(call).await.map(|_| ())
    }
}
