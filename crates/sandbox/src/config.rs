//! What a sandbox is started with: timelines, latency, rate limits, the fake credentials and
//! the PostgreSQL server that hosts the simulated Supabase projects' databases.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use rand::Rng;
use rand::distr::Alphanumeric;

use crate::Provider;
use crate::faults::FaultRule;

/// Where simulated Supabase databases go when nothing else is said.
pub const DEFAULT_POSTGRES_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Which n8n line the simulator answers as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum N8nVersion {
    /// 1.x: `activate`/`deactivate`; a second workflow on a taken webhook path silently takes
    /// it over.
    V1,
    /// 2.x: `publish`/`unpublish` (with `activate`/`deactivate` as deprecated aliases) and a 409
    /// when a webhook path is already taken.
    #[default]
    V2,
}

/// Added latency per provider and per endpoint (`"POST /v1/projects"`); an endpoint entry
/// overrides its provider's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LatencyProfile {
    per_provider: HashMap<Provider, Duration>,
    per_endpoint: HashMap<(Provider, String), Duration>,
}

impl LatencyProfile {
    /// No added latency anywhere.
    pub fn none() -> Self {
        Self::default()
    }

    /// The seed's observed figures scaled down a hundredfold: GitHub ~35 ms, Vercel ~120 ms,
    /// n8n ~35 ms per call. Supabase's slowness is its readiness delay
    /// (`SandboxConfig::supabase_ready_after`), not per-call latency.
    pub fn seed() -> Self {
        Self::none()
            .with_provider(Provider::Github, Duration::from_millis(35))
            .with_provider(Provider::Vercel, Duration::from_millis(120))
            .with_provider(Provider::N8n, Duration::from_millis(35))
    }

    pub fn with_provider(mut self, provider: Provider, latency: Duration) -> Self {
        self.per_provider.insert(provider, latency);
        self
    }

    pub fn with_endpoint(
        mut self,
        provider: Provider,
        endpoint: impl Into<String>,
        latency: Duration,
    ) -> Self {
        self.per_endpoint
            .insert((provider, endpoint.into()), latency);
        self
    }

    /// The latency added to one call of `endpoint` (`"METHOD /template"`).
    pub fn for_endpoint(&self, provider: Provider, endpoint: &str) -> Duration {
        self.per_endpoint
            .get(&(provider, endpoint.to_owned()))
            .or_else(|| self.per_provider.get(&provider))
            .copied()
            .unwrap_or_default()
    }
}

/// The fake tokens the simulators accept, and the account names they pretend to be.
/// `Debug` never shows a token.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub supabase_token: String,
    /// The Supabase organization slug projects are created in.
    pub supabase_org_slug: String,
    pub github_token: String,
    /// The GitHub organization repositories are generated into.
    pub github_org: String,
    /// The template repository, `"owner/name"`; it exists from the start with `is_template`.
    pub github_template_repo: String,
    pub vercel_token: String,
    pub vercel_team_id: String,
    pub n8n_api_key: String,
}

fn random_chars(len: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

pub(crate) fn random_lowercase(len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(b'a' + rng.random_range(0..26u8)))
        .collect()
}

impl Credentials {
    /// Fresh random tokens in each provider's usual format, fixed account names.
    pub fn generate() -> Self {
        Self {
            supabase_token: format!("sbp_{}", random_chars(40).to_lowercase()),
            supabase_org_slug: random_lowercase(20),
            github_token: format!("ghp_{}", random_chars(36)),
            github_org: "sandbox-agency".to_owned(),
            github_template_repo: "sandbox-agency/client-stack-template".to_owned(),
            vercel_token: random_chars(24),
            vercel_team_id: format!("team_{}", random_chars(24)),
            n8n_api_key: format!("n8n_api_{}", random_chars(40)),
        }
    }

    /// Splits `github_template_repo` into owner and name.
    pub fn template_owner_and_name(&self) -> (&str, &str) {
        self.github_template_repo
            .split_once('/')
            .unwrap_or(("", self.github_template_repo.as_str()))
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("supabase_token", &"[redacted]")
            .field("supabase_org_slug", &self.supabase_org_slug)
            .field("github_token", &"[redacted]")
            .field("github_org", &self.github_org)
            .field("github_template_repo", &self.github_template_repo)
            .field("vercel_token", &"[redacted]")
            .field("vercel_team_id", &self.vercel_team_id)
            .field("n8n_api_key", &"[redacted]")
            .finish()
    }
}

/// Everything a sandbox is started with. `Default` is the seed preset (realistic shape, a
/// hundred times faster than the real services); `for_tests` shortens every timeline.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// The PostgreSQL server on which every simulated Supabase project gets a real database.
    pub postgres_admin_url: String,
    /// Whether projects get a real database. Only bulk tests that create hundreds of projects
    /// to exercise paging turn this off.
    pub supabase_databases: bool,
    /// How long a new project stays UNKNOWN/COMING_UP before ACTIVE_HEALTHY; deletes answer
    /// "Project not ready for deletion." during this window.
    pub supabase_ready_after: Duration,
    /// How long the api-keys endpoint still answers 4xx once a project is ACTIVE_HEALTHY.
    pub supabase_api_keys_settle: Duration,
    /// Whether the simulators enforce their rate limits and send the headers announcing them
    /// (Supabase's and GitHub's `X-RateLimit-*`, Vercel's when it has a limit). Off only for
    /// tests that exercise volume, not the limits.
    pub rate_limits: bool,
    /// Requests per minute per token × scope × endpoint before Supabase answers 429.
    pub supabase_rate_limit_per_minute: u32,
    /// How long a generated repository stays empty (its default branch answers 404).
    pub github_empty_for: Duration,
    /// Requests per hour per token before GitHub answers 403 (primary rate limit).
    pub github_rate_limit_per_hour: u32,
    /// GitHub's secondary limits on content-creating requests (repository generation), per
    /// token: a minute's and an hour's, answered 403 with `retry-after` (80 and 500 on GitHub's
    /// REST rate-limit page, API-CONTRACTS §2.3).
    pub github_creations_per_minute: u32,
    pub github_creations_per_hour: u32,
    /// The token's classic OAuth scopes, sent as `X-OAuth-Scopes` on every answer.
    pub github_token_scopes: String,
    /// Requests per minute per token × endpoint before Vercel answers 429 with `Retry-After`;
    /// `None`: no limit. Vercel publishes no per-endpoint figures (API-CONTRACTS §3.6), so
    /// whoever sets one says which figure they assume.
    pub vercel_rate_limit_per_minute: Option<u32>,
    /// QUEUED → BUILDING → READY takes this long.
    pub vercel_build_time: Duration,
    pub n8n_version: N8nVersion,
    pub latency: LatencyProfile,
    pub credentials: Credentials,
    /// Fault rules in force from the start (more can be added while running).
    pub faults: Vec<FaultRule>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            postgres_admin_url: DEFAULT_POSTGRES_ADMIN_URL.to_owned(),
            supabase_databases: true,
            supabase_ready_after: Duration::from_millis(1350),
            supabase_api_keys_settle: Duration::from_millis(100),
            rate_limits: true,
            supabase_rate_limit_per_minute: 120,
            github_empty_for: Duration::from_millis(300),
            github_rate_limit_per_hour: 5000,
            github_creations_per_minute: 80,
            github_creations_per_hour: 500,
            vercel_rate_limit_per_minute: None,
            github_token_scopes: "repo, delete_repo".to_owned(),
            vercel_build_time: Duration::from_millis(600),
            n8n_version: N8nVersion::V2,
            latency: LatencyProfile::seed(),
            credentials: Credentials::generate(),
            faults: Vec::new(),
        }
    }
}

impl SandboxConfig {
    /// Short timelines and no added latency, for tests.
    pub fn for_tests(postgres_admin_url: impl Into<String>) -> Self {
        Self {
            postgres_admin_url: postgres_admin_url.into(),
            supabase_ready_after: Duration::from_millis(150),
            supabase_api_keys_settle: Duration::from_millis(50),
            github_empty_for: Duration::from_millis(100),
            vercel_build_time: Duration::from_millis(150),
            latency: LatencyProfile::none(),
            ..Self::default()
        }
    }
}
