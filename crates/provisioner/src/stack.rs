//! What every step of the client stack shares: the four provider clients (one rate budget
//! per credential for the whole process), the shared listings that answer many runs'
//! lookups (and Supabase readiness waits) with one call per interval, the templates and the
//! settings. Built once per process from a validated [`Config`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hmac::{Hmac, Mac};
use providers::github::RepositoryLookups;
use providers::n8n::Workflow;
use providers::supabase::PoolerConfig;
use providers::{
    GithubClient, GithubConfig, N8nApiFlavour, N8nClient, N8nConfig, ProjectListing, Provider,
    SharedListing, SupabaseClient, SupabaseConfig, Url, VercelClient, VercelConfig,
};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use crate::config::{Config, ProviderEnv, Settings};
use crate::templates::Templates;
use crate::tenant_db::DatabaseRoute;

/// How often the shared Supabase listing lists the projects while runs look projects up or
/// wait on them.
pub const READINESS_INTERVAL: Duration = Duration::from_secs(5);

/// The least time between two shared listings that only answer lookups (n8n workflows,
/// GitHub repositories). A
/// lookup on an idle process is answered at once; in a batch, lookups that arrive while a
/// listing is in flight wait at most this long for the next.
pub const LOOKUP_INTERVAL: Duration = Duration::from_secs(1);

/// How long a project's pooler routes, once read, answer its next database connections. A
/// schema step that retries (a busy database server) would otherwise read them again on every
/// attempt; a project's pooler does not move within minutes.
pub const POOLER_ROUTES_KEPT_FOR: Duration = Duration::from_secs(300);

/// Above this many projects' routes, the expired ones are dropped.
const POOLER_ROUTES_MAX: usize = 4096;

/// Each project's pooler routes, by ref, with when they were read.
type PoolerRoutes = HashMap<String, (tokio::time::Instant, Vec<PoolerConfig>)>;

#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error("{name} is not a usable URL ({value:?}); fix the variable")]
    Url { name: &'static str, value: String },
    #[error("cannot build the {0} client: {1}")]
    Client(&'static str, providers::ProviderError),
    #[error(transparent)]
    Template(#[from] crate::templates::TemplateError),
    #[error("cannot build an HTTP client for webhook checks: {0}")]
    Http(String),
}

/// Shared by every step of every run in the process.
#[derive(Debug, Clone)]
pub struct Stack {
    pub supabase: SupabaseClient,
    /// Every Supabase lookup by name and readiness wait goes through it.
    pub supabase_projects: ProjectListing,
    pub github: GithubClient,
    /// Every GitHub lookup by name goes through it.
    pub github_repos: RepositoryLookups,
    pub vercel: VercelClient,
    pub n8n: N8nClient,
    /// Every workflow of the n8n instance, listed (all pages) at most once per
    /// [`LOOKUP_INTERVAL`] for every run looking a webhook path up.
    pub n8n_workflows: SharedListing<Workflow>,
    /// For calls that are not provider API calls (the n8n production webhook check).
    pub http: reqwest::Client,
    pub templates: Arc<Templates>,
    pub settings: Arc<Settings>,
    pub env: Arc<ProviderEnv>,
    /// Region codes the org may use, fetched once per process (the Management API limits
    /// every endpoint to 120 calls a minute, and a batch would spend them on this).
    offered_regions: Arc<tokio::sync::OnceCell<Vec<String>>>,
    /// Each project's pooler routes and when they were read, for [`POOLER_ROUTES_KEPT_FOR`].
    pooler_routes: Arc<Mutex<PoolerRoutes>>,
    /// Derives each project's database password, so a repeat after a crash knows the password
    /// the first attempt gave Supabase.
    password_key: Arc<SecretString>,
}

impl Stack {
    pub fn new(
        config: &Config,
        templates: Templates,
        password_key: SecretString,
        readiness_interval: Duration,
    ) -> Result<Self, StackError> {
        let env = &config.providers;
        let budget = |provider: &str, default: providers::RateBudgetConfig| match config
            .settings
            .rate_budgets
            .get(provider)
        {
            Some(b) => {
                let window = |set: Option<u32>,
                              default: Option<providers::WindowLimit>,
                              per: fn(u32) -> providers::WindowLimit| {
                    set.map(per).or(default)
                };
                providers::RateBudgetConfig {
                    requests_per_second: b.requests_per_second,
                    burst: b.burst,
                    max_concurrent: b.max_concurrent,
                    per_endpoint: window(
                        b.per_endpoint_per_minute,
                        default.per_endpoint,
                        providers::WindowLimit::per_minute,
                    ),
                    overall: window(
                        b.per_hour,
                        default.overall,
                        providers::WindowLimit::per_hour,
                    ),
                    creates: window(
                        b.creates_per_minute,
                        default.creates,
                        providers::WindowLimit::per_minute,
                    ),
                    creates_long: window(
                        b.creates_per_hour,
                        default.creates_long,
                        providers::WindowLimit::per_hour,
                    ),
                    ..default
                }
            }
            None => default,
        };
        let url = |name: &'static str, value: &str| {
            Url::parse(value).map_err(|_| StackError::Url {
                name,
                value: value.to_owned(),
            })
        };
        let mut supabase_config = SupabaseConfig::new(
            url("SUPABASE_API_URL", &env.supabase_api_url)?,
            env.supabase_token.clone(),
        );
        supabase_config.budget = budget("supabase", supabase_config.budget);
        let supabase =
            SupabaseClient::new(supabase_config).map_err(|e| StackError::Client("supabase", e))?;
        let mut github_config = GithubConfig::new(
            url("GITHUB_API_URL", &env.github_api_url)?,
            env.github_token.clone(),
        );
        github_config.api_version = config.settings.github.api_version.clone();
        github_config.budget = budget("github", github_config.budget);
        let github =
            GithubClient::new(github_config).map_err(|e| StackError::Client("github", e))?;
        let mut vercel_config = VercelConfig::new(
            url("VERCEL_API_URL", &env.vercel_api_url)?,
            env.vercel_token.clone(),
        );
        vercel_config.team_id = env.vercel_team_id.clone();
        vercel_config.budget = budget("vercel", vercel_config.budget);
        let vercel =
            VercelClient::new(vercel_config).map_err(|e| StackError::Client("vercel", e))?;
        // The public API lives under `/api/v1` of the instance (N8N_PUBLIC_API_ENDPOINT default).
        let n8n_url = url("N8N_HOST", &format!("{}/api/v1", env.n8n_base_url))?;
        let n8n_key = env.n8n_api_key.clone();
        // Validated settings hold "auto", "v1" or "v2"; "auto" lets the client detect the line.
        let mut n8n_config = match config.settings.n8n.api_version.as_str() {
            "v1" => N8nConfig::new(n8n_url, n8n_key, N8nApiFlavour::ActivateDeactivate),
            "v2" => N8nConfig::new(n8n_url, n8n_key, N8nApiFlavour::PublishUnpublish),
            _ => N8nConfig::detecting(n8n_url, n8n_key),
        };
        n8n_config.budget = budget("n8n", n8n_config.budget);
        let n8n = N8nClient::new(n8n_config).map_err(|e| StackError::Client("n8n", e))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .map_err(|e| StackError::Http(e.to_string()))?;
        let lookup_interval = readiness_interval.min(LOOKUP_INTERVAL);
        let n8n_workflows = {
            let n8n = n8n.clone();
            SharedListing::new(Provider::N8n, lookup_interval, move || {
                let n8n = n8n.clone();
                async move { n8n.list_workflows().await }
            })
        };
        Ok(Self {
            supabase_projects: ProjectListing::new(supabase.clone(), readiness_interval),
            n8n_workflows,
            github_repos: RepositoryLookups::new(github.clone(), &env.github_org, lookup_interval),
            supabase,
            github,
            vercel,
            n8n,
            http,
            templates: Arc::new(templates),
            settings: Arc::new(config.settings.clone()),
            env: Arc::new(env.clone()),
            password_key: Arc::new(password_key),
            offered_regions: Arc::new(tokio::sync::OnceCell::new()),
            pooler_routes: Arc::default(),
        })
    }

    /// The region codes offered to the configured org.
    pub async fn offered_regions(&self) -> Result<&[String], providers::ProviderError> {
        let regions = self
            .offered_regions
            .get_or_try_init(|| async {
                self.supabase
                    .available_regions(&self.env.supabase_org_slug, None)
                    .await
                    .map(|r| r.all)
            })
            .await?;
        Ok(regions.as_slice())
    }

    /// The database password of the project called `project_name`: an HMAC of the name under
    /// the provisioner's secret key, URL-safe, 43 characters.
    pub fn database_password(&self, project_name: &str) -> SecretString {
        // HMAC accepts keys of any length, so new_from_slice cannot fail here.
        let mut mac =
            match Hmac::<Sha256>::new_from_slice(self.password_key.expose_secret().as_bytes()) {
                Ok(mac) => mac,
                Err(_) => unreachable_hmac(),
            };
        mac.update(b"supabase-db-password/");
        mac.update(project_name.as_bytes());
        let digest = mac.finalize().into_bytes();
        use base64::Engine;
        SecretString::from(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest))
    }

    /// The route to a project's database with `password` in it: `SUPABASE_DB_URL_TEMPLATE`
    /// when set, else the project's session pooler (read from the Management API; see
    /// [`tenant_db::session_pooler`](crate::tenant_db::session_pooler)).
    pub async fn database_route(
        &self,
        project_ref: &str,
        host: &str,
        password: &SecretString,
    ) -> Result<DatabaseRoute, DatabaseRouteError> {
        if let Some(template) = &self.env.supabase_db_url_template {
            return Ok(crate::tenant_db::template_route(
                template,
                project_ref,
                host,
                password,
            )?);
        }
        let configs = self.pooler_routes(project_ref).await?;
        Ok(crate::tenant_db::session_pooler(
            project_ref,
            &configs,
            password,
        )?)
    }

    /// The project's pooler routes: read from the Management API at most once per
    /// [`POOLER_ROUTES_KEPT_FOR`].
    async fn pooler_routes(
        &self,
        project_ref: &str,
    ) -> Result<Vec<PoolerConfig>, DatabaseRouteError> {
        let now = tokio::time::Instant::now();
        let kept = |routes: &PoolerRoutes| {
            routes
                .get(project_ref)
                .filter(|(read, _)| now.duration_since(*read) < POOLER_ROUTES_KEPT_FOR)
                .map(|(_, configs)| configs.clone())
        };
        if let Some(configs) = kept(
            &self
                .pooler_routes
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        ) {
            return Ok(configs);
        }
        let configs = self
            .supabase
            .pooler_config(project_ref)
            .await
            .map_err(|source| DatabaseRouteError::Pooler {
                project_ref: project_ref.to_owned(),
                source,
            })?;
        let mut routes = self
            .pooler_routes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if routes.len() >= POOLER_ROUTES_MAX {
            routes.retain(|_, (read, _)| now.duration_since(*read) < POOLER_ROUTES_KEPT_FOR);
        }
        routes.insert(project_ref.to_owned(), (now, configs.clone()));
        Ok(configs)
    }
}

/// Why no route to a project's database could be made.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseRouteError {
    #[error("could not read the pooler routes of Supabase project {project_ref}: {source}")]
    Pooler {
        project_ref: String,
        source: providers::ProviderError,
    },
    #[error(transparent)]
    Route(#[from] crate::tenant_db::RouteError),
}

#[cold]
fn unreachable_hmac() -> ! {
    // Hmac<Sha256>::new_from_slice only fails for fixed-size-key MACs; HMAC takes any length.
    panic!("HMAC-SHA256 rejected a key, which it never does")
}
