//! `provisioner list`: the journal's runs, filtered, as a table or JSON. Read-only: no worker
//! is started.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use saga::{Engine, RunFilter, RunStatus, RunSummary};

use super::{CliError, open_app};
use crate::client::ClientSlug;
use crate::sagas;

#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  provisioner list --status needs_attention --saga provision --limit 20\n  provisioner list --client-id acme-dental --json"
)]
pub struct ListArgs {
    /// Only runs in this state: queued, running, paused, cancelled, compensating, succeeded,
    /// compensated, needs_attention, abandoned.
    #[arg(long, value_parser = parse_status)]
    pub status: Option<RunStatus>,
    /// Only runs of this saga: provision, deprovision or migration_rollout.
    #[arg(long, value_parser = [sagas::PROVISION, sagas::DEPROVISION, crate::migrate::SAGA])]
    pub saga: Option<String>,
    /// Only the runs of this client (its provisionings and teardowns).
    #[arg(long = "client-id")]
    pub client_id: Option<String>,
    /// At most this many runs: the newest ones (the oldest ones with --oldest-first).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub limit: u32,
    /// List the oldest run first (by default the newest run comes first).
    #[arg(long)]
    pub oldest_first: bool,
    /// One JSON array of runs on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
}

pub fn parse_status(raw: &str) -> Result<RunStatus, String> {
    raw.parse::<RunStatus>().map_err(|_| {
        format!(
            "{raw:?} is not a run status; use one of {}",
            RunStatus::ALL.map(RunStatus::as_str).join(", ")
        )
    })
}

/// The client a run belongs to, read from its idempotency key (`saga:slug:generation`).
pub fn client_of(run: &RunSummary) -> &str {
    run.idempotency_key.split(':').nth(1).unwrap_or("")
}

/// Every run of a client, oldest first: each generation's provisioning and teardown (a
/// generation ends with a teardown that succeeded).
pub async fn client_runs(engine: &Engine, slug: &ClientSlug) -> Result<Vec<RunSummary>, CliError> {
    let mut runs = Vec::new();
    for generation in 0.. {
        let mut found = false;
        // Provisionings of a generation: the first, then one per revision that added modules.
        for revision in 0.. {
            let key = sagas::provision_key(slug, generation, revision);
            match engine.find_by_key(&key).await.map_err(CliError::from)? {
                Some(run) => {
                    found = true;
                    runs.push(run);
                }
                None => break,
            }
        }
        let key = sagas::run_key(sagas::DEPROVISION, slug, generation);
        if let Some(run) = engine.find_by_key(&key).await.map_err(CliError::from)? {
            found = true;
            runs.push(run);
        }
        if !found {
            break;
        }
    }
    runs.sort_by_key(|r| (r.created_at, r.id));
    Ok(runs)
}

pub fn parse_slug(raw: &str) -> Result<ClientSlug, CliError> {
    ClientSlug::parse(raw.trim()).map_err(|e| CliError::usage(format!("--client-id {e}")))
}

pub async fn run(args: ListArgs, config: Option<PathBuf>) -> Result<(), CliError> {
    let slug = args.client_id.as_deref().map(parse_slug).transpose()?;
    let app = open_app(config, false).await?;
    let runs = match &slug {
        Some(slug) => client_runs(&app.engine, slug).await.map(|mut runs| {
            if !args.oldest_first {
                runs.reverse();
            }
            runs.into_iter()
                .filter(|r| args.status.is_none_or(|s| r.status == s))
                .filter(|r| args.saga.as_deref().is_none_or(|s| r.saga == s))
                .take(args.limit as usize)
                .collect::<Vec<_>>()
        }),
        None => app
            .engine
            .list(&RunFilter {
                status: args.status,
                saga: args.saga.clone(),
                after: None,
                limit: args.limit,
                newest_first: !args.oldest_first,
                ..RunFilter::default()
            })
            .await
            .map_err(CliError::from),
    };
    app.shutdown(Duration::from_secs(1)).await;
    let runs = runs?;
    let out = if args.json {
        serde_json::to_string(&runs).map_err(|e| CliError::internal(e.to_string()))?
    } else {
        table(&runs)
    };
    #[allow(clippy::print_stdout)] // the listing is the command's output
    {
        println!("{out}");
    }
    Ok(())
}

fn table(runs: &[RunSummary]) -> String {
    let mut out = format!(
        "{:<36}  {:<11}  {:<24}  {:<15}  {:<20}  {}",
        "RUN", "SAGA", "CLIENT", "STATUS", "CREATED", "UPDATED"
    );
    for r in runs {
        out += &format!(
            "\n{:<36}  {:<11}  {:<24}  {:<15}  {:<20}  {}",
            r.id,
            r.saga,
            client_of(r),
            r.status,
            r.created_at.format("%Y-%m-%d %H:%M:%S"),
            r.updated_at.format("%Y-%m-%d %H:%M:%S")
        );
    }
    if runs.is_empty() {
        out += "\n(no runs)";
    }
    out
}
