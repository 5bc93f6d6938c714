//! A fresh world per test, as `spawn_app` does elsewhere: the four simulators on loopback
//! (Supabase projects as real databases), an SQLite journal in a temporary directory, and the
//! provisioner's engine and workers pointed at them.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout
)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use provisioner::app::{App, AppOptions, open_sqlite};
use provisioner::client::{Client, ClientRecord};
use provisioner::config::{Config, Settings};
use saga::SealingKey;
use sandbox::{Sandbox, SandboxConfig};
use secrecy::SecretString;
use sqlx::Connection;

/// The PostgreSQL server for project databases, or `None` when the test may skip.
pub async fn admin_url() -> Option<String> {
    let url = std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| sandbox::DEFAULT_POSTGRES_ADMIN_URL.to_owned());
    match sqlx::PgConnection::connect(&url).await {
        Ok(c) => {
            let _ = c.close().await;
            Some(url)
        }
        Err(e) => {
            assert!(
                !saga::testkit::postgres::postgres_required(),
                "PostgreSQL is required but does not answer: {e}"
            );
            println!("skipping: no PostgreSQL answers ({e}); set DATABASE_URL");
            None
        }
    }
}

pub struct World {
    pub sandbox: Sandbox,
    pub app: App,
    pub config: Config,
    pub secret_key: SecretString,
    pub dir: tempfile::TempDir,
}

pub fn env_map(sandbox: &Sandbox) -> HashMap<String, String> {
    sandbox.env_exports().into_iter().collect()
}

pub fn config_for(sandbox: &Sandbox, settings: Settings) -> Config {
    let env = env_map(sandbox);
    let mut config =
        Config::load(None, &|k| env.get(k).cloned()).expect("sandbox env is a valid config");
    config.settings = settings;
    config
}

pub fn fast_options() -> AppOptions {
    AppOptions {
        readiness_interval: Duration::from_millis(100),
        lease: Duration::from_secs(2),
        poll_interval: Duration::from_millis(50),
        workers: true,
    }
}

pub fn test_settings() -> Settings {
    let mut settings = Settings::default();
    settings.supabase.ready_timeout_secs = 20;
    settings.github.branch_timeout_secs = 20;
    settings.vercel.deploy_timeout_secs = 20;
    settings.vercel.wait_for_ready = true;
    settings
}

pub async fn start_app(
    sandbox: &Sandbox,
    settings: Settings,
    journal: &std::path::Path,
    key: &SecretString,
) -> App {
    let config = config_for(sandbox, settings);
    let journal = open_sqlite(journal).await.expect("journal opens");
    App::start(&config, journal, key, fast_options())
        .await
        .expect("app starts")
}

/// Sandbox + app; `None` when skipping for lack of PostgreSQL.
pub async fn world_with(
    adjust: impl FnOnce(&mut SandboxConfig),
    settings: Settings,
) -> Option<World> {
    let url = admin_url().await?;
    let mut sandbox_config = SandboxConfig::for_tests(url);
    adjust(&mut sandbox_config);
    let sandbox = Sandbox::start(sandbox_config)
        .await
        .expect("sandbox starts");
    let dir = tempfile::tempdir().unwrap();
    let (_, encoded) = SealingKey::generate();
    let secret_key = SecretString::from(encoded);
    let config = config_for(&sandbox, settings.clone());
    let app = start_app(
        &sandbox,
        settings,
        &dir.path().join("journal.sqlite"),
        &secret_key,
    )
    .await;
    Some(World {
        sandbox,
        app,
        config,
        secret_key,
        dir,
    })
}

pub async fn world() -> Option<World> {
    world_with(|_| {}, test_settings()).await
}

pub fn client(slug: &str) -> Client {
    ClientRecord {
        client_id: Some(slug.into()),
        client_name: Some(format!("Client {slug}")),
        org_email: Some(format!("ops@{slug}.example")),
        tier: Some("growth".into()),
    }
    .validate()
    .unwrap()
}

pub fn unique_slug(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

pub fn keep_alive<T>(_: &Arc<T>) {}
