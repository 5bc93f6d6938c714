//! What every sandbox test needs: a PostgreSQL admin URL (or a reasoned skip), a started
//! sandbox, an HTTP client, and polling until a simulated timeline has moved on.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout
)]

use std::future::Future;
use std::time::Duration;

use sandbox::{Sandbox, SandboxConfig};
use sqlx::Connection;

/// The PostgreSQL server to use, or `None` when the test may skip (printed reason).
pub async fn admin_url() -> Option<String> {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| sandbox::DEFAULT_POSTGRES_ADMIN_URL.to_owned());
    match sqlx::PgConnection::connect(&url).await {
        Ok(connection) => {
            let _ = connection.close().await;
            Some(url)
        }
        Err(problem) => {
            let required = std::env::var("PROVISIONER_TEST_REQUIRE_POSTGRES").is_ok()
                || std::env::var("CI").as_deref() == Ok("true");
            assert!(
                !required,
                "PostgreSQL is required but does not answer: {problem}"
            );
            println!("skipping: no PostgreSQL at DATABASE_URL or 127.0.0.1:5432 ({problem})");
            None
        }
    }
}

/// A sandbox with test timelines and real project databases; `None` when skipping.
pub async fn start_with(adjust: impl FnOnce(&mut SandboxConfig)) -> Option<Sandbox> {
    let url = admin_url().await?;
    let mut config = SandboxConfig::for_tests(url);
    adjust(&mut config);
    Some(Sandbox::start(config).await.expect("sandbox starts"))
}

pub async fn start() -> Option<Sandbox> {
    start_with(|_| {}).await
}

/// A sandbox that needs no database server (project databases off).
pub async fn start_without_databases(adjust: impl FnOnce(&mut SandboxConfig)) -> Sandbox {
    let mut config = SandboxConfig::for_tests("postgres://unused@127.0.0.1:1/unused");
    config.supabase_databases = false;
    adjust(&mut config);
    Sandbox::start(config).await.expect("sandbox starts")
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client builds")
}

/// Polls `probe` until it yields `Some`, for at most 20 s (a bound on a broken simulator, not
/// a performance assertion).
pub async fn eventually<T, F, Fut>(mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not reached within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Statuses the simulators answer although the spec does not list them, each because the
/// real service does: (provider, method, spec template, status, why).
const STATUSES_BEYOND_THE_SPEC: &[(sandbox::Provider, &str, &str, u16, &str)] = &[
    (
        sandbox::Provider::Supabase,
        "GET",
        "/v1/projects/{ref}/api-keys",
        400,
        "documented only as \"may briefly return 4xx\" right after ACTIVE_HEALTHY (supabase/cli e2e setup)",
    ),
    (
        sandbox::Provider::Supabase,
        "GET",
        "/v1/projects/{ref}",
        404,
        "an unknown or deleted ref",
    ),
    (
        sandbox::Provider::Supabase,
        "DELETE",
        "/v1/projects/{ref}",
        404,
        "an unknown or already deleted ref",
    ),
    (
        sandbox::Provider::Supabase,
        "POST",
        "/v1/projects/{ref}/database/query",
        404,
        "an unknown or deleted ref",
    ),
    (
        sandbox::Provider::Supabase,
        "PATCH",
        "/v1/projects/{ref}/database/password",
        400,
        "a body the request validation refuses (password shorter than the schema's minLength 4)",
    ),
];

/// Every response the sandbox returned keeps its provider's contract (the official spec, with
/// the documented real-world allowances and `STATUSES_BEYOND_THE_SPEC`). Request-side findings
/// are left out: tests send wrong requests on purpose.
pub fn assert_contracts(sandbox: &Sandbox) {
    let contracts = sandbox::contract::Contracts::shared().expect("the specs load");
    let exchanges = sandbox.exchanges();
    assert!(!exchanges.is_empty(), "no exchanges were recorded");
    let beyond_the_spec = |exchange: &sandbox::contract::Exchange| {
        let template = contracts.template(exchange.provider, &exchange.method, &exchange.path);
        STATUSES_BEYOND_THE_SPEC
            .iter()
            .any(|(provider, method, known, status, _)| {
                *provider == exchange.provider
                    && *method == exchange.method
                    && template == Some(*known)
                    && *status == exchange.status
            })
    };
    let violations: Vec<String> = exchanges
        .iter()
        .filter(|exchange| !beyond_the_spec(exchange))
        .map(|exchange| deployment_read_as_create(contracts, exchange))
        .flat_map(|exchange| contracts.check(&exchange))
        .filter(|violation| violation.direction == sandbox::contract::Direction::Response)
        .map(|violation| violation.to_string())
        .collect();
    assert!(
        violations.is_empty(),
        "simulator responses break the contract:\n{}",
        violations.join("\n")
    );
}

/// Vercel's `GET /v13/deployments/{idOrUrl}` answer is a `oneOf` whose second alternative only
/// drops required fields from the first (no `additionalProperties: false`), so every complete
/// deployment is valid under both and fails the `oneOf`. A 200 read is therefore checked
/// against the create answer's schema, which is the first alternative on its own.
fn deployment_read_as_create(
    contracts: &sandbox::contract::Contracts,
    exchange: &sandbox::contract::Exchange,
) -> sandbox::contract::Exchange {
    let is_read = exchange.provider == sandbox::Provider::Vercel
        && exchange.method == "GET"
        && exchange.status == 200
        && contracts.template(exchange.provider, &exchange.method, &exchange.path)
            == Some("/v13/deployments/{idOrUrl}");
    if !is_read {
        return exchange.clone();
    }
    sandbox::contract::Exchange {
        method: "POST".to_owned(),
        path: "/v13/deployments".to_owned(),
        request_body: None,
        ..exchange.clone()
    }
}
