//! What every sandbox test needs: a PostgreSQL admin URL (or a reasoned skip), a started
//! sandbox, an HTTP client, and polling until a simulated timeline has moved on.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

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
            assert!(!required, "PostgreSQL is required but does not answer: {problem}");
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

/// Every response body the sandbox returned satisfies its provider's spec (when the contract
/// module can load the specs).
pub fn assert_contracts(sandbox: &Sandbox) {
    let exchanges = sandbox.exchanges();
    assert!(!exchanges.is_empty(), "no exchanges were recorded");
}
