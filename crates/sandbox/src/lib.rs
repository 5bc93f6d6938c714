//! Stateful simulators of the four provider APIs the provisioner talks to (Supabase
//! Management, GitHub REST, Vercel REST, n8n public API), on loopback, with latency and fault
//! injection. Used by tests, `provisioner demo` and `provisioner sandbox`; never by a
//! production code path. Knows nothing of the provisioner or its clients: it is built from the
//! providers' contracts, so that a client bug and a simulator bug do not cancel out.

// GitHub's full-repository object is one large `json!` literal.
#![recursion_limit = "512"]

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

pub mod config;
pub mod contract;
mod control;
pub mod faults;
mod github;
mod listener;
mod n8n;
mod pooler;
mod project_db;
mod rate_limit;
pub mod request_log;
mod supabase;
mod vercel;
mod world;

pub use config::{
    Credentials, DEFAULT_POSTGRES_ADMIN_URL, LatencyProfile, N8nVersion, SandboxConfig,
};
pub use faults::{FaultKind, FaultRule, Faults};
pub use github::RepoSummary;
pub use n8n::WorkflowSummary;
pub use project_db::{NAME_PREFIX, OWNER_MARK, POOLER_ROLE_PREFIX, ProjectDbError, SweepReport};
pub use request_log::LoggedRequest;
pub use supabase::ProjectSummary;
pub use vercel::VercelSummary;

/// What a fresh Supabase project's database already contains (roles, `auth`, `extensions`,
/// grants); applied to every simulated project's database on create.
pub const SUPABASE_BOOTSTRAP_SQL: &str = include_str!("../sql/supabase_bootstrap.sql");

/// The four providers, as the simulators, the request log and the contracts name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Supabase,
    Github,
    Vercel,
    N8n,
}

/// Base URLs (`http://127.0.0.1:PORT`, no trailing slash) of the listeners.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SandboxUrls {
    pub supabase: String,
    pub github: String,
    pub vercel: String,
    /// The n8n instance; its API is under `/api/v1`, production webhooks under `/webhook/`.
    pub n8n: String,
    /// `/_sandbox/inventory`, `/_sandbox/requests`, `/_sandbox/faults`.
    pub control: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot bind a loopback listener: {0}")]
    Bind(#[from] std::io::Error),
    #[error("cannot prepare the PostgreSQL server for project databases: {0}")]
    Databases(#[from] ProjectDbError),
}

/// Every live resource of every provider, and the project databases still on the server.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Inventory {
    pub supabase_projects: Vec<ProjectSummary>,
    /// Databases this sandbox created that still exist on the PostgreSQL server.
    pub supabase_databases: Vec<String>,
    /// Login roles this sandbox created (one per project) that still exist on the server.
    #[serde(default)]
    pub supabase_roles: Vec<String>,
    /// Generated repositories (the pre-existing template is not listed).
    pub github_repos: Vec<RepoSummary>,
    pub vercel_projects: Vec<VercelSummary>,
    pub vercel_deployments: Vec<VercelSummary>,
    /// Domains on projects: `name` is the domain, `id` its project's id.
    #[serde(default)]
    pub vercel_domains: Vec<VercelSummary>,
    pub n8n_workflows: Vec<WorkflowSummary>,
    /// Set when the database server could not be asked; an inventory with this set is not
    /// proof of anything.
    pub database_error: Option<String>,
}

impl Inventory {
    /// Nothing left anywhere (and the database server was asked).
    pub fn is_empty(&self) -> bool {
        self.resource_names().is_empty() && self.database_error.is_none()
    }

    /// One readable line per live resource.
    pub fn resource_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        names.extend(
            self.supabase_projects
                .iter()
                .map(|p| format!("supabase project {} ({})", p.name, p.reference)),
        );
        names.extend(
            self.supabase_databases
                .iter()
                .map(|d| format!("postgres database {d}")),
        );
        names.extend(
            self.supabase_roles
                .iter()
                .map(|r| format!("postgres role {r}")),
        );
        names.extend(
            self.github_repos
                .iter()
                .map(|r| format!("github repo {}", r.full_name)),
        );
        names.extend(
            self.vercel_projects
                .iter()
                .map(|p| format!("vercel project {} ({})", p.name, p.id)),
        );
        names.extend(
            self.vercel_deployments
                .iter()
                .map(|d| format!("vercel deployment {} of {}", d.id, d.name)),
        );
        names.extend(
            self.vercel_domains
                .iter()
                .map(|d| format!("vercel domain {} on {}", d.name, d.id)),
        );
        names.extend(
            self.n8n_workflows
                .iter()
                .map(|w| format!("n8n workflow {} ({})", w.name, w.id)),
        );
        names
    }
}

/// Drops the project databases and roles that sandboxes which no longer run (killed outright,
/// crashed) left on the PostgreSQL server at `admin_url`. Only objects a sandbox marked as its
/// own are considered, and those of sandboxes still running are kept.
pub async fn sweep_leftovers(admin_url: &str) -> Result<SweepReport, ProjectDbError> {
    project_db::sweep(admin_url).await
}

/// A running set of simulators. Prefer `shutdown`; dropping it also stops the listeners and
/// drops the project databases (blocking briefly), so a panicking test leaves nothing on the
/// server.
#[derive(Debug)]
pub struct Sandbox {
    shared: Arc<world::Shared>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Sandbox {
    /// Binds one loopback listener per provider plus the control listener, prepares the
    /// database server (when project databases are on) and starts serving.
    pub async fn start(config: SandboxConfig) -> Result<Sandbox, SandboxError> {
        let databases = if config.supabase_databases {
            Some(project_db::ProjectDatabases::connect(&config.postgres_admin_url).await?)
        } else {
            None
        };
        let (supabase_listener, supabase_addr) = listener::bind().await?;
        let (github_listener, github_addr) = listener::bind().await?;
        let (vercel_listener, vercel_addr) = listener::bind().await?;
        let (n8n_listener, n8n_addr) = listener::bind().await?;
        let (control_listener, control_addr) = listener::bind().await?;
        let urls = SandboxUrls {
            supabase: format!("http://{supabase_addr}"),
            github: format!("http://{github_addr}"),
            vercel: format!("http://{vercel_addr}"),
            n8n: format!("http://{n8n_addr}"),
            control: format!("http://{control_addr}"),
        };
        let shared = Arc::new(world::Shared::new(config, urls, databases));
        let (shutdown, watcher) = watch::channel(false);
        let tasks = vec![
            listener::serve(
                supabase_listener,
                supabase::router(shared.clone()),
                watcher.clone(),
            ),
            listener::serve(
                github_listener,
                github::router(shared.clone()),
                watcher.clone(),
            ),
            listener::serve(
                vercel_listener,
                vercel::router(shared.clone()),
                watcher.clone(),
            ),
            listener::serve(n8n_listener, n8n::router(shared.clone()), watcher.clone()),
            listener::serve(control_listener, control::router(shared.clone()), watcher),
        ];
        Ok(Sandbox {
            shared,
            shutdown,
            tasks,
        })
    }

    pub fn urls(&self) -> &SandboxUrls {
        &self.shared.urls
    }

    pub fn credentials(&self) -> &Credentials {
        &self.shared.config.credentials
    }

    pub fn config(&self) -> &SandboxConfig {
        &self.shared.config
    }

    /// The environment a provisioner needs to talk to this sandbox instead of the real
    /// services.
    /// The environment a provisioner needs to talk to this sandbox. No
    /// `SUPABASE_DB_URL_TEMPLATE`: the provisioner's default route, the project's session
    /// pooler, is what the sandbox serves (see [`Sandbox::direct_db_url_template`] for the
    /// override).
    pub fn env_exports(&self) -> Vec<(String, String)> {
        let urls = &self.shared.urls;
        let credentials = &self.shared.config.credentials;
        [
            ("SUPABASE_API_URL", urls.supabase.clone()),
            (
                "SUPABASE_MANAGEMENT_TOKEN",
                credentials.supabase_token.clone(),
            ),
            ("SUPABASE_ORG_ID", credentials.supabase_org_slug.clone()),
            ("GITHUB_API_URL", urls.github.clone()),
            ("GITHUB_TOKEN", credentials.github_token.clone()),
            ("GITHUB_ORG", credentials.github_org.clone()),
            (
                "GITHUB_TEMPLATE_REPO",
                credentials.github_template_repo.clone(),
            ),
            ("VERCEL_API_URL", urls.vercel.clone()),
            ("VERCEL_TOKEN", credentials.vercel_token.clone()),
            ("VERCEL_TEAM_ID", credentials.vercel_team_id.clone()),
            // Deployment hosts (`*.vercel.app`, project domains) are served by the Vercel
            // listener, picked by the Host header.
            ("VERCEL_DEPLOYMENT_ORIGIN", urls.vercel.clone()),
            ("N8N_HOST", urls.n8n.clone()),
            ("N8N_API_KEY", credentials.n8n_api_key.clone()),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect()
    }

    /// A `SUPABASE_DB_URL_TEMPLATE` naming the projects' databases directly (the project's
    /// own role, no pooler), for runs that override the default route; `None` without
    /// PostgreSQL.
    pub fn direct_db_url_template(&self) -> Option<String> {
        self.shared.databases.as_ref().map(|databases| {
            format!(
                "postgresql://{prefix}{{ref}}:{{password}}@{{host}}:{port}/{prefix}{{ref}}",
                prefix = NAME_PREFIX,
                port = databases.port()
            )
        })
    }

    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    /// Waits until no project creation is running on behalf of a caller that may be gone (a
    /// killed process's request lands, as on the real service), at most `limit`; true if none is.
    pub async fn settle(&self, limit: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while self.shared.creations.count() > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        true
    }

    /// Project creations running now, their callers waiting or gone.
    pub fn creations_in_progress(&self) -> usize {
        self.shared.creations.count()
    }

    pub async fn inventory(&self) -> Inventory {
        control::inventory(&self.shared).await
    }

    /// Drift made outside the provisioner: removes Vercel project `project`'s environment
    /// variable `key`, as an edit in the dashboard would. True when there was one.
    pub fn remove_vercel_env(&self, project: &str, key: &str) -> bool {
        self.shared.world().vercel.remove_env(project, key)
    }

    /// Outside Vercel, another account uses `apex`: domains added under it from now on are
    /// unverified, with a TXT challenge at `_vercel.{apex}`.
    pub fn own_vercel_apex_elsewhere(&self, apex: &str) {
        self.shared.world().vercel.domains.own_apex_elsewhere(apex);
    }

    /// The DNS record for `domain` now points at Vercel: its config reads `CNAME`, not
    /// misconfigured.
    pub fn point_vercel_dns(&self, domain: &str) {
        self.shared.world().vercel.domains.point_dns(domain);
    }

    /// READY deployments answer 502 `NO_RESPONSE_FROM_FUNCTION` while `failing` (an app that
    /// crashes on start), and serve their page again once it is off.
    pub fn fail_vercel_deployments(&self, failing: bool) {
        self.shared.world().vercel.edge.fail_deployments(failing);
    }

    /// Every call so far, in order. Never contains headers.
    pub fn request_log(&self) -> Vec<LoggedRequest> {
        self.shared.log.entries()
    }

    /// How many calls `endpoint` (`"POST /v1/projects"`, the route template with the spec's
    /// parameter names; n8n's include `/api/v1`) of `provider` received.
    pub fn calls(&self, provider: Provider, endpoint: &str) -> usize {
        self.shared.log.count(provider, endpoint)
    }

    /// The request log as contract exchanges (n8n production-webhook calls left out).
    pub fn exchanges(&self) -> Vec<contract::Exchange> {
        request_log::exchanges(&self.shared.log.entries())
    }

    /// Stops every listener and drops the project databases still on the server.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        for task in std::mem::take(&mut self.tasks) {
            let _ = task.await;
        }
        if let Some(databases) = &self.shared.databases {
            databases.drop_all().await;
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        for task in &self.tasks {
            task.abort();
        }
        if let Some(databases) = &self.shared.databases {
            databases.drop_all_blocking();
        }
    }
}
