//! A started sandbox with the four clients pointed at it, and the checks every simulator
//! test ends with.
// Each test binary includes this module and uses a different subset of it.
#![allow(dead_code, clippy::print_stdout)]

use std::future::Future;
use std::time::Duration;

use providers::github::GithubConfig;
use providers::n8n::N8nConfig;
use providers::supabase::SupabaseConfig;
use providers::vercel::VercelConfig;
use providers::{
    GithubClient, HttpPolicy, N8nApiFlavour, N8nClient, ProviderError, RateBudgetConfig,
    SecretString, SupabaseClient, Url, VercelClient,
};
use sandbox::contract::Contracts;
use sandbox::{N8nVersion, Provider, Sandbox, SandboxConfig};
use sqlx::Connection;

pub struct Harness {
    pub sandbox: Sandbox,
    pub supabase: SupabaseClient,
    pub github: GithubClient,
    pub vercel: VercelClient,
    pub n8n: N8nClient,
}

/// The PostgreSQL server for project databases, or `None` when the test may skip.
pub async fn admin_url() -> Option<String> {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| sandbox::DEFAULT_POSTGRES_ADMIN_URL.to_owned());
    match sqlx::PgConnection::connect(&url).await {
        Ok(connection) => {
            let _ = connection.close().await;
            Some(url)
        }
        Err(problem) => {
            let required = std::env::var_os("PROVISIONER_TEST_REQUIRE_POSTGRES").is_some()
                || std::env::var("CI").as_deref() == Ok("true");
            assert!(
                !required,
                "PostgreSQL is required but does not answer: {problem}"
            );
            println!("skipped: no PostgreSQL at DATABASE_URL or the local default ({problem})");
            None
        }
    }
}

pub fn policy() -> HttpPolicy {
    HttpPolicy {
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(10),
    }
}

fn parse(url: &str) -> Url {
    Url::parse(url).expect("sandbox URL")
}

impl Harness {
    /// A sandbox with real project databases (skips without PostgreSQL, per the house rules).
    pub async fn start(adjust: impl FnOnce(&mut SandboxConfig)) -> Option<Harness> {
        let url = admin_url().await?;
        let mut config = SandboxConfig::for_tests(url);
        adjust(&mut config);
        Some(Harness::with_config(config).await)
    }

    /// A sandbox whose Supabase projects have no database: for volume tests of paging and
    /// readiness, which never touch a project's database.
    pub async fn start_without_databases(adjust: impl FnOnce(&mut SandboxConfig)) -> Harness {
        let mut config = SandboxConfig::for_tests("postgres://unused@127.0.0.1:1/unused");
        config.supabase_databases = false;
        adjust(&mut config);
        Harness::with_config(config).await
    }

    async fn with_config(config: SandboxConfig) -> Harness {
        let sandbox = Sandbox::start(config).await.expect("sandbox starts");
        let clients = Clients::for_sandbox(&sandbox, RateBudgetConfig::unlimited());
        Harness {
            supabase: clients.supabase,
            github: clients.github,
            vercel: clients.vercel,
            n8n: clients.n8n,
            sandbox,
        }
    }

    pub fn org(&self) -> String {
        self.sandbox.credentials().supabase_org_slug.clone()
    }

    pub fn github_org(&self) -> String {
        self.sandbox.credentials().github_org.clone()
    }

    pub fn template(&self) -> (String, String) {
        let (owner, name) = self.sandbox.credentials().template_owner_and_name();
        (owner.to_owned(), name.to_owned())
    }

    /// Every exchange so far keeps its provider's contract, both ways; then shut down.
    pub async fn finish(self) {
        self.finish_allowing(&[]).await;
    }

    /// As `finish`, accepting the listed statuses a test injected on purpose.
    pub async fn finish_allowing(self, injected: &[Undocumented]) {
        assert_contracts_allowing(&self.sandbox, injected);
        self.sandbox.shutdown().await;
    }
}

pub struct Clients {
    pub supabase: SupabaseClient,
    pub github: GithubClient,
    pub vercel: VercelClient,
    pub n8n: N8nClient,
}

impl Clients {
    pub fn for_sandbox(sandbox: &Sandbox, budget: RateBudgetConfig) -> Clients {
        let credentials = sandbox.credentials();
        Clients::with_tokens(
            sandbox,
            budget,
            [
                credentials.supabase_token.as_str(),
                credentials.github_token.as_str(),
                credentials.vercel_token.as_str(),
                credentials.n8n_api_key.as_str(),
            ],
        )
    }

    /// Clients with the given tokens (supabase, github, vercel, n8n): wrong ones test 401s.
    pub fn with_tokens(sandbox: &Sandbox, budget: RateBudgetConfig, tokens: [&str; 4]) -> Clients {
        let urls = sandbox.urls();
        let credentials = sandbox.credentials();
        let [supabase_token, github_token, vercel_token, n8n_key] = tokens;

        let mut supabase =
            SupabaseConfig::new(parse(&urls.supabase), SecretString::from(supabase_token));
        supabase.policy = policy();
        supabase.budget = budget;
        let mut github = GithubConfig::new(parse(&urls.github), SecretString::from(github_token));
        github.policy = policy();
        github.budget = budget;
        let mut vercel = VercelConfig::new(parse(&urls.vercel), SecretString::from(vercel_token));
        vercel.team_id = Some(credentials.vercel_team_id.clone());
        vercel.policy = policy();
        vercel.budget = budget;
        let flavour = match sandbox.config().n8n_version {
            N8nVersion::V1 => N8nApiFlavour::ActivateDeactivate,
            N8nVersion::V2 => N8nApiFlavour::PublishUnpublish,
        };
        let mut n8n = N8nConfig::new(
            parse(&format!("{}/api/v1", urls.n8n)),
            SecretString::from(n8n_key),
            flavour,
        );
        n8n.policy = policy();
        n8n.budget = budget;
        Clients {
            supabase: SupabaseClient::new(supabase).expect("supabase client"),
            github: GithubClient::new(github).expect("github client"),
            vercel: VercelClient::new(vercel).expect("vercel client"),
            n8n: N8nClient::new(n8n).expect("n8n client"),
        }
    }
}

/// A status the simulator answers on purpose that the official spec does not document for
/// the operation: `(provider, METHOD, path template, status)`.
pub type Undocumented = (Provider, &'static str, &'static str, u16);

/// Answers the simulators give for real-world situations the trimmed specs list no status
/// for. Each is a gap in the contract module's list of known undocumented statuses, kept
/// here, narrowly, until it is recorded there:
/// - Supabase answers 404 for a project ref that does not exist (get and delete); the spec
///   documents only 200/401/403/429(/500).
/// - Supabase's api-keys "may briefly return 4xx" right after ACTIVE_HEALTHY
///   (API-CONTRACTS §1.5); the simulator uses 400.
pub const SIMULATOR_UNDOCUMENTED: &[Undocumented] = &[
    (Provider::Supabase, "GET", "/v1/projects/{ref}", 404),
    (Provider::Supabase, "DELETE", "/v1/projects/{ref}", 404),
    (
        Provider::Supabase,
        "GET",
        "/v1/projects/{ref}/api-keys",
        400,
    ),
];

/// Response bodies the simulators give that the validator rejects for a reason that is not
/// the client's: `(provider, METHOD, path template, message fragment)`. Reported, kept
/// narrow, to be removed once fixed where it belongs:
/// - Vercel `GET /v13/deployments/{idOrUrl}`: the spec's 200 body is a `oneOf` of two loose
///   deployment shapes, and the simulated body satisfies both, which `oneOf` forbids.
/// - n8n `GET /workflows`: a listed published workflow's `activeVersion` carries
///   `workflowPublishHistory`, which the spec's `activeVersion` (additionalProperties: false)
///   does not allow and API-CONTRACTS §8 does not list among the real server's extra keys.
pub const SIMULATOR_BODY_GAPS: &[(Provider, &str, &str, &str)] = &[
    (
        Provider::Vercel,
        "GET",
        "/v13/deployments/{idOrUrl}",
        "valid under more than one of the schemas listed in the 'oneOf' keyword",
    ),
    (
        Provider::N8n,
        "GET",
        "/workflows",
        "/activeVersion/workflowPublishHistory`: property is not allowed here",
    ),
];

/// Every exchange keeps its provider's contract both ways; the only violations accepted are
/// "status N is not documented" for the listed (provider, method, template, status): the
/// simulator gaps above and the statuses a test injected on purpose.
pub fn assert_contracts_allowing(sandbox: &Sandbox, injected: &[Undocumented]) {
    let contracts = Contracts::shared().expect("the specs load");
    let exchanges = sandbox.exchanges();
    assert!(!exchanges.is_empty(), "no exchanges were recorded");
    let allowed = |exchange: &sandbox::contract::Exchange, message: &str| {
        let template = contracts.template(exchange.provider, &exchange.method, &exchange.path);
        message.starts_with(&format!("status {} is not documented", exchange.status))
            && SIMULATOR_UNDOCUMENTED.iter().chain(injected).any(
                |(provider, method, path, status)| {
                    *provider == exchange.provider
                        && *method == exchange.method
                        && Some(*path) == template
                        && *status == exchange.status
                },
            )
    };
    let body_gap = |exchange: &sandbox::contract::Exchange, message: &str| {
        let template = contracts.template(exchange.provider, &exchange.method, &exchange.path);
        SIMULATOR_BODY_GAPS
            .iter()
            .any(|(provider, method, path, fragment)| {
                *provider == exchange.provider
                    && *method == exchange.method
                    && Some(*path) == template
                    && message.contains(fragment)
            })
    };
    let violations: Vec<String> = exchanges
        .iter()
        .flat_map(|exchange| {
            contracts
                .check(exchange)
                .into_iter()
                .filter(|violation| {
                    !allowed(exchange, &violation.message)
                        && !body_gap(exchange, &violation.message)
                })
                .map(|violation| violation.to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        violations.is_empty(),
        "{} violations in {} exchanges:\n{}",
        violations.len(),
        exchanges.len(),
        violations.join("\n")
    );
}

pub fn assert_contracts(sandbox: &Sandbox) {
    assert_contracts_allowing(sandbox, &[]);
}

/// Calls `attempt` until it succeeds, retrying only what the client classifies retryable,
/// at most 500 times 20 ms apart (a bound on a broken simulator, not a timing assertion).
pub async fn until_ok<T, F, Fut>(mut attempt: F) -> Result<T, ProviderError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ProviderError>>,
{
    let mut tries = 0;
    loop {
        match attempt().await {
            Err(error) if error.is_retryable() && tries < 500 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => return other,
        }
    }
}

/// Polls `probe` until it yields `Some`, at most 500 times 20 ms apart.
pub async fn eventually<T, F, Fut>(mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    for _ in 0..500 {
        if let Some(value) = probe().await {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("condition not reached after 500 polls");
}
