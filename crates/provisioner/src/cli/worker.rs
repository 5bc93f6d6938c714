//! `provisioner worker`: only workers, so several processes can share one PostgreSQL journal
//! (beside a `serve --no-workers`). With `--listen` it also serves `/healthz`, `/readyz` and
//! `/metrics`: steps and provider calls are measured where they run, which is here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::serve::{bind, serve_until_stopped, service_routes};
use super::{CliError, StopSignal, open_app_with};
use crate::app::{AppOptions, DEFAULT_MAX_ACTIVE_RUNS};

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Also serve /healthz, /readyz and /metrics on this address.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// On SIGTERM/SIGINT, how long in-flight steps may take to finish, in seconds; runs still
    /// in flight after it are left to another worker once their lease expires.
    #[arg(long, default_value_t = 30)]
    pub grace_secs: u64,
    /// Most runs this process drives at once; the rest wait in the journal for another
    /// worker (or for a slot here).
    #[arg(
        long,
        default_value_t = DEFAULT_MAX_ACTIVE_RUNS,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000)
    )]
    pub max_runs: usize,
}

pub async fn run(args: WorkerArgs, config: Option<PathBuf>) -> Result<(), CliError> {
    let mut stop = StopSignal::listen();
    let options = AppOptions {
        max_active_runs: args.max_runs,
        ..AppOptions::default()
    };
    let mut app = open_app_with(config, options).await?;
    let grace = Duration::from_secs(args.grace_secs);
    tracing::info!(worker = app.engine.worker_id(), "worker started");
    match args.listen {
        Some(addr) => {
            let router = service_routes(&app, true)?;
            let listener = bind(addr).await?;
            let background = (app.take_workers(), app.take_notifier());
            serve_until_stopped(listener, router, background, &mut stop, grace).await
        }
        None => {
            stop.received().await;
            tracing::info!(
                grace_secs = grace.as_secs(),
                "stopping: no new claims; in-flight steps may finish"
            );
            app.shutdown(grace).await;
            tracing::info!("stopped");
            Ok(())
        }
    }
}
