//! `provisioner serve`: the HTTP API and (unless `--no-workers`) the workers in one process.
//! SIGTERM or SIGINT stops it gracefully: no new connections or claims, in-flight requests
//! and steps get the grace period to finish, leases are handed back, exit 0.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use clap::Args;
use tokio::net::TcpListener;

use super::worker_runtime::WorkerRuntime;
use super::{CliError, StopSignal, config_path, env, open_app};
use crate::api::auth::Authenticator;
use crate::api::health::Readiness;
use crate::api::{ApiOptions, ApiState};
use crate::config::Config;
use crate::notify::{EXIT_DRAIN, Notifier};
use saga::Workers;

use crate::app::App;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; the address is printed on stdout).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Serve only the API; `provisioner worker` processes sharing the journal drive the runs.
    #[arg(long)]
    pub no_workers: bool,
    /// On SIGTERM/SIGINT, how long in-flight requests and steps may take to finish, in
    /// seconds; runs still in flight after it are left to another worker once their lease
    /// expires.
    #[arg(long, default_value_t = 30)]
    pub grace_secs: u64,
}

pub async fn run(args: ServeArgs, config: Option<PathBuf>) -> Result<(), CliError> {
    // Listening before anything starts: a signal during start-up still stops us cleanly.
    let mut stop = StopSignal::listen();
    let workers = !args.no_workers;
    let settings = Config::load(config_path(config.clone()).as_deref(), &env)
        .map_err(|e| {
            CliError::usage(format!(
                "configuration is not usable:\n{}",
                e.problems
                    .iter()
                    .map(|p| format!("  - {p}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            ))
        })?
        .settings
        .api;
    let auth = Authenticator::from_config(&settings, &env).map_err(|e| {
        CliError::usage(format!(
            "the API cannot authenticate callers:\n{}",
            e.problems
                .iter()
                .map(|p| format!("  - {p}"))
                .collect::<Vec<_>>()
                .join("\n")
        ))
    })?;
    // With its workers, the process runs them on threads of their own below the API's
    // priority, so a request does not queue behind the runs they drive.
    let worker_runtime = if workers {
        Some(WorkerRuntime::start()?)
    } else {
        None
    };
    let mut app = match &worker_runtime {
        Some(runtime) => runtime.run(open_app(config, true)).await??,
        None => open_app(config, false).await?,
    };
    // Before listening: the first requests find the journal's connections open.
    match app.engine.journal().warm_up().await {
        Ok(_) => {}
        Err(e) => tracing::warn!(
            error = %e,
            "the journal's connections could not all be opened ahead; they open on first use"
        ),
    }
    let metrics = crate::api::metrics::install().map_err(|e| CliError::internal(e.to_string()))?;
    let readiness = Readiness::new(app.engine.clone(), workers);
    let listener = bind(args.listen).await?;
    let workers = app.take_workers();
    let notifier = app.take_notifier();
    let state = ApiState::new(
        Arc::new(app),
        Arc::new(auth),
        ApiOptions::from_settings(&settings),
    );
    let router = crate::api::server_router(state, readiness, metrics);
    let served = serve_until_stopped(
        listener,
        router,
        (workers, notifier),
        &mut stop,
        Duration::from_secs(args.grace_secs),
    )
    .await;
    // Only now, the workers stopped: their threads go with it.
    drop(worker_runtime);
    served
}

/// `/healthz`, `/readyz` and `/metrics`, which every long-running command serves.
pub(super) fn service_routes(app: &App, workers: bool) -> Result<Router, CliError> {
    let metrics = crate::api::metrics::install().map_err(|e| CliError::internal(e.to_string()))?;
    Ok(crate::api::service_router(
        Readiness::new(app.engine.clone(), workers),
        metrics,
    ))
}

pub(super) async fn bind(addr: SocketAddr) -> Result<TcpListener, CliError> {
    TcpListener::bind(addr).await.map_err(|e| {
        CliError::usage(format!(
            "--listen {addr}: cannot listen there ({e}); pick a free address, or port 0 for any"
        ))
    })
}

/// Serves `router` until a stop signal, then drains the server and the workers together.
pub(super) async fn serve_until_stopped(
    listener: TcpListener,
    router: Router,
    workers: Background,
    stop: &mut StopSignal,
    grace: Duration,
) -> Result<(), CliError> {
    let addr = listener
        .local_addr()
        .map_err(|e| CliError::internal(format!("the listener has no address: {e}")))?;
    announce(addr);
    let (tell, told) = tokio::sync::oneshot::channel::<()>();
    let mut server = tokio::spawn(
        axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = told.await;
            })
            .into_future(),
    );
    tokio::select! {
        () = stop.received() => {}
        ended = &mut server => {
            // The server only ends by itself when accepting fails for good.
            stop_workers(workers, grace).await;
            return Err(CliError::internal(match ended {
                Ok(Ok(())) => "the HTTP server stopped on its own".to_owned(),
                Ok(Err(e)) => format!("the HTTP server failed: {e}"),
                Err(e) => format!("the HTTP server task failed: {e}"),
            }));
        }
    }
    tracing::info!(
        grace_secs = grace.as_secs(),
        "stopping: no new connections or claims; in-flight work may finish"
    );
    let _ = tell.send(());
    let (_, http) = tokio::join!(
        stop_workers(workers, grace),
        tokio::time::timeout(grace, &mut server)
    );
    if http.is_err() {
        // Long-lived connections (event streams) would otherwise hold the process open.
        server.abort();
        tracing::warn!("connections still open after the grace period were closed");
    }
    tracing::info!("stopped");
    Ok(())
}

/// What runs beside the server: the workers and the notification delivery loops.
pub(super) type Background = (Option<Workers>, Option<Notifier>);

/// Workers first (their last settlements are then in the outbox), then the notifications due.
async fn stop_workers((workers, notifier): Background, grace: Duration) {
    if let Some(workers) = workers {
        workers.shutdown(grace).await;
    }
    if let Some(notifier) = notifier {
        notifier.shutdown(grace.min(EXIT_DRAIN)).await;
    }
}

/// The bound address on stdout (the only thing printed there), so whoever started the process
/// with port 0 learns the port.
fn announce(addr: SocketAddr) {
    tracing::info!(%addr, "listening");
    #[allow(clippy::print_stdout)] // the command's one line of output
    {
        println!("listening on http://{addr}");
    }
}
