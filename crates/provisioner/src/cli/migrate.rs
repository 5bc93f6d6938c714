//! `provisioner migrate plan|apply`: the fleet's tenant databases moved to a migration
//! version (see [`crate::migrate`]). `plan` reads only; `apply` is a rollout run of the
//! journal, driven and followed here (or, with `--detach`, by whichever process has workers).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::doctor::write_stdout;
use super::provision::print_started;
use super::{CliError, drive, open_app};
use crate::migrate::plan::plan;
use crate::migrate::report::RolloutReport;
use crate::migrate::{self, MigrateError, Options};
use crate::outcome::{Failure, Outcome};

#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(subcommand)]
    pub command: MigrateCommand,
}

#[derive(Debug, Subcommand)]
pub enum MigrateCommand {
    /// Per tenant: the applied version, the pending files, drift, and what apply would do
    /// (read-only; exit 1 when any tenant has drift or cannot be read).
    #[command(
        after_help = "Examples:\n  provisioner migrate plan --all\n  provisioner migrate plan --client-id acme-dental --client-id bright-smiles --to 0003 --json"
    )]
    Plan(PlanArgs),
    /// Move the selected tenants to a version in waves, as a resumable rollout run.
    #[command(
        after_help = "The first wave must fully succeed before the next starts. By default a failed tenant halts the rollout after its wave (the run needs attention, naming the tenant, the file, the statement and the PostgreSQL error); tenants already migrated stay migrated. Fix the cause and run the same command again: it resumes the rollout, skipping tenants at the target.\n\nExamples:\n  provisioner migrate apply --all --waves 1,10%,rest\n  provisioner migrate apply --client-id acme-dental --to 0002 --json\n  provisioner migrate apply --all --concurrency 16 --continue-on-error --detach"
    )]
    Apply(ApplyArgs),
}

#[derive(Debug, Args)]
pub struct Selection {
    /// Every client whose provision succeeded and that was not torn down since.
    #[arg(long)]
    pub all: bool,
    /// This client (repeat for more).
    #[arg(
        long = "client-id",
        value_name = "ID",
        conflicts_with = "all",
        required_unless_present = "all"
    )]
    pub client_id: Vec<String>,
    /// The target version (a migration file's version, e.g. 0003); default: the latest.
    #[arg(long, value_name = "VERSION")]
    pub to: Option<String>,
    /// Tenants handled at once, each holding one database connection (1 to 64; default 8).
    #[arg(long)]
    pub concurrency: Option<usize>,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub selection: Selection,
    /// The plan as one JSON object on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub selection: Selection,
    /// How the tenants are cut into waves: counts, percentages (rounded up, at least 1) and
    /// a final `rest`, at most 8 waves; default 1,10%,rest.
    #[arg(long, value_name = "SPEC")]
    pub waves: Option<String>,
    /// A failed tenant does not halt the rollout after the first wave (the canary, which
    /// must fully succeed): every later wave runs, the run ends succeeded and the failures
    /// are reported at the end (exit 1).
    #[arg(long)]
    pub continue_on_error: bool,
    /// The rollout's report as one JSON object on stdout, as the last line (with --detach:
    /// the run id and whether it was created).
    #[arg(long)]
    pub json: bool,
    /// Start (or resume) the rollout and print its id at once; a process with workers on the
    /// same journal drives it, and `watch RUN` follows it.
    #[arg(long)]
    pub detach: bool,
}

/// The API's field names as the flags that carry them.
fn flag(field: &str) -> &str {
    match field {
        "all" => "--all/--client-id",
        "clientIds" => "--client-id",
        "to" => "--to",
        "waves" => "--waves",
        "concurrency" => "--concurrency",
        other => other,
    }
}

fn cli_error(err: MigrateError) -> CliError {
    match err {
        MigrateError::Invalid { field, message } => {
            Failure::new(Outcome::Unprocessable, format!("{} {message}", flag(field)))
        }
        other => other.into(),
    }
}

fn options(selection: &Selection) -> Options {
    Options {
        all: selection.all,
        client_ids: selection.client_id.clone(),
        to: selection.to.clone(),
        concurrency: selection.concurrency,
        ..Options::default()
    }
}

pub async fn run(args: MigrateArgs, config: Option<PathBuf>) -> Result<(), CliError> {
    match args.command {
        MigrateCommand::Plan(args) => plan_command(args, config).await,
        MigrateCommand::Apply(args) => apply_command(args, config).await,
    }
}

async fn plan_command(args: PlanArgs, config: Option<PathBuf>) -> Result<(), CliError> {
    let app = open_app(config, false).await?;
    let result = plan(&app, &options(&args.selection)).await;
    app.shutdown(Duration::from_secs(1)).await;
    let plan = result.map_err(cli_error)?;
    if args.json {
        let line = serde_json::to_string(&plan).map_err(|e| CliError::internal(e.to_string()))?;
        write_stdout(&format!("{line}\n"));
    } else {
        write_stdout(&format!("{}\n", plan.table()));
    }
    if plan.drift || plan.unreadable {
        let bad: Vec<&str> = plan
            .tenants
            .iter()
            .filter(|t| !t.drift.is_empty() || t.error.is_some())
            .map(|t| t.client_id.as_str())
            .collect();
        return Err(CliError::run_failed(format!(
            "{} tenant(s) have drift or cannot be read ({}); apply would refuse or fail them",
            bad.len(),
            bad.join(", ")
        )));
    }
    Ok(())
}

async fn apply_command(args: ApplyArgs, config: Option<PathBuf>) -> Result<(), CliError> {
    let mut options = options(&args.selection);
    options.waves = args.waves.clone();
    options.continue_on_error = args.continue_on_error;
    let app = open_app(config, !args.detach).await?;
    let started = migrate::start(&app, &options, None)
        .await
        .map_err(cli_error);
    if args.detach {
        app.shutdown(Duration::from_secs(1)).await;
        return print_started(&started?, args.json);
    }
    let started = match started {
        Ok(started) => started,
        Err(e) => {
            app.shutdown(Duration::from_secs(1)).await;
            return Err(e);
        }
    };
    let title = format!(
        "migration rollout (run {}{})",
        started.run_id,
        if started.created { "" } else { ", resumed" }
    );
    let view = drive(&app, started.run_id, &title).await;
    app.shutdown(Duration::from_secs(10)).await;
    let report = RolloutReport::from_run(&view?);
    if args.json {
        let line = serde_json::to_string(&report).map_err(|e| CliError::internal(e.to_string()))?;
        write_stdout(&format!("{line}\n"));
    } else {
        eprint!("{}", report.human());
    }
    if report.complete() {
        return Ok(());
    }
    Err(CliError::run_failed(format!(
        "rollout {} ended {} with {} failed tenant(s){}",
        report.run_id,
        report.status,
        report.failures.len(),
        match report.status {
            saga::RunStatus::NeedsAttention =>
                "; fix the cause and run the same command again to resume it",
            // --continue-on-error: the run went through every wave and is finished.
            saga::RunStatus::Succeeded =>
                "; fix them and run `migrate apply` again: a new rollout skips the tenants at the target",
            _ => "",
        }
    )))
}
