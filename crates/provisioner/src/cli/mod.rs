//! `provisioner` on the command line: the clap definitions and the dispatch, with one file per
//! command beside this one. Exit codes come from [`crate::outcome`]: 0 success, 1 a run that
//! did not succeed, 2 a usage or configuration error.

mod batch;
mod completions;
mod control;
mod deprovision;
pub mod doctor;
mod follow;
mod list;
mod migrate;
mod output;
mod plan;
mod provision;
mod remote;
mod serve;
mod signal;
mod status;
pub mod sweep;
pub mod verify;
mod watch;
mod worker;
mod worker_runtime;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::app::{App, AppOptions, open_journal, secret_key_from_env};
use crate::config::Config;
pub use crate::outcome::Failure as CliError;

pub use follow::drive;
pub use output::{human, print_json, report};
pub use provision::client_from_flags;
pub use signal::StopSignal;

#[derive(Debug, Parser)]
#[command(
    name = "provisioner",
    version,
    about = "Onboards and tears down an agency client's stack: Supabase, GitHub, Vercel, n8n."
)]
pub struct Cli {
    /// provisioner.toml to use (else PROVISIONER_CONFIG, else ./provisioner.toml if present).
    #[arg(long, global = true, env = "PROVISIONER_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the simulators and a sample client end to end, with nothing to set up.
    Demo(DemoArgs),
    /// Start the four simulators until SIGINT/SIGTERM and print the environment pointing at
    /// them (and the control listener, as PROVISIONER_SANDBOX_URL).
    Sandbox(SandboxArgs),
    /// Provision a client: Supabase project and schema, GitHub repo, Vercel project, n8n workflow.
    Provision(provision::ProvisionArgs),
    /// Tear a client down, from its record or whatever part of it exists.
    Deprovision(deprovision::DeprovisionArgs),
    /// Show a run's state, its steps and its resource record.
    Status(status::StatusArgs),
    /// Provision every client of a manifest directory or JSON Lines file, N at a time.
    Batch(batch::BatchArgs),
    /// Show, with read-only calls, what provisioning clients would adopt, create or be blocked by.
    Plan(plan::PlanArgs),
    /// Check the configuration and every credential with read-only calls; a table of what
    /// passes and how to fix what fails.
    Doctor(doctor::DoctorArgs),
    /// Check provisioned clients against their records, item by item (read-only).
    Verify(verify::VerifyArgs),
    /// List resources named like a client's that no live client owns; --delete removes them.
    Sweep(sweep::SweepArgs),
    /// Print the shell completion script for bash, zsh or fish.
    Completions(completions::CompletionsArgs),
    /// Move the tenant databases to a migration version: plan (read-only) or apply (a
    /// rollout in waves, resumable).
    Migrate(migrate::MigrateArgs),
    /// List the journal's runs, by state, saga or client.
    List(list::ListArgs),
    /// Follow a run live until it succeeds, is compensated, needs attention or is abandoned.
    Watch(watch::WatchArgs),
    /// Continue a paused run where it stopped, and follow it.
    #[command(after_help = "Example:\n  provisioner resume 01934f3e-8a7b-7c1d-9e2f-0a1b2c3d4e5f")]
    Resume(control::ControlArgs),
    /// Cancel a run: in-flight steps finish, then everything made is undone.
    #[command(after_help = "Example:\n  provisioner cancel 01934f3e-8a7b-7c1d-9e2f-0a1b2c3d4e5f")]
    Cancel(control::ControlArgs),
    /// Retry a compensated run forward, or a run that needs attention from where it stopped.
    #[command(after_help = "Example:\n  provisioner retry 01934f3e-8a7b-7c1d-9e2f-0a1b2c3d4e5f")]
    Retry(control::ControlArgs),
    /// Pause a run: no new step starts; in-flight steps finish, then it parks as paused.
    #[command(
        after_help = "Example:\n  provisioner pause 01934f3e-8a7b-7c1d-9e2f-0a1b2c3d4e5f --detach"
    )]
    Pause(control::ControlArgs),
    /// Give up on a paused run or one that needs attention, with a reason kept in the journal.
    #[command(
        after_help = "Example:\n  provisioner abandon 01934f3e-8a7b-7c1d-9e2f-0a1b2c3d4e5f --reason 'client cancelled the contract; resources removed by hand'"
    )]
    Abandon(control::AbandonArgs),
    /// Run the HTTP API and (unless --no-workers) the workers until SIGTERM/SIGINT.
    Serve(serve::ServeArgs),
    /// Run only workers (several may share one PostgreSQL journal) until SIGTERM/SIGINT.
    Worker(worker::WorkerArgs),
}

impl Command {
    /// Long-running commands log what they do; one-shot commands only what goes wrong.
    pub fn default_log_level(&self) -> &'static str {
        match self {
            Command::Serve(_) | Command::Worker(_) => "info",
            _ => "warn",
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Latency {
    /// As fast as the simulators go.
    None,
    /// The seed's measured timings scaled down a hundredfold.
    Seed,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Leave the sample client's stack in place (the simulators keep running until Ctrl-C).
    #[arg(long)]
    pub keep: bool,
    /// Print the resource record as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    #[arg(long, value_enum, default_value = "none")]
    pub latency: Latency,
}

#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// Instead of serving: drop the databases and roles that sandboxes no longer running
    /// (killed outright, crashed) left on the PostgreSQL server, and say what was dropped.
    #[arg(long)]
    pub sweep: bool,
    /// `seed` makes the simulators as slow as the seed's figures scaled down a hundredfold
    /// (GitHub ~35 ms, Vercel ~120 ms, n8n ~35 ms a call, projects ready after ~1.4 s).
    #[arg(long, value_enum, default_value = "none", conflicts_with = "sweep")]
    pub latency: Latency,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// `--config`, else `./provisioner.toml` if present, else defaults.
fn config_path(explicit: Option<PathBuf>) -> Option<PathBuf> {
    explicit.or_else(|| {
        let local = PathBuf::from("provisioner.toml");
        local.is_file().then_some(local)
    })
}

async fn open_app(config_file: Option<PathBuf>, workers: bool) -> Result<App, CliError> {
    let options = AppOptions {
        workers,
        ..AppOptions::default()
    };
    open_app_with(config_file, options).await
}

async fn open_app_with(config_file: Option<PathBuf>, options: AppOptions) -> Result<App, CliError> {
    let path = config_path(config_file);
    let mut problems = Vec::new();
    let config = Config::load(path.as_deref(), &env).map_err(|e| problems.extend(e.problems));
    let key = secret_key_from_env(&env).map_err(|e| problems.push(e.to_string()));
    let (Ok(config), Ok(key)) = (config, key) else {
        return Err(CliError::usage(format!(
            "configuration is not usable:\n{}",
            problems
                .iter()
                .map(|p| format!("  - {p}"))
                .collect::<Vec<_>>()
                .join("\n")
        )));
    };
    let journal = open_journal(config.settings.journal.url.as_deref())
        .await
        .map_err(CliError::from)?;
    App::start(&config, journal, &key, options)
        .await
        .map_err(|e| CliError::usage(e.to_string()))
}

pub async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Demo(args) => crate::demo::run(args).await,
        Command::Sandbox(args) if args.sweep => crate::demo::sweep().await,
        Command::Sandbox(args) => crate::demo::sandbox(args.latency).await,
        Command::Provision(args) => provision::run(args, cli.config).await,
        Command::Deprovision(args) => deprovision::run(args, cli.config).await,
        Command::Status(args) => status::run(args, cli.config).await,
        Command::Batch(args) => batch::run(args, cli.config).await,
        Command::Plan(args) => plan::run(args, cli.config).await,
        Command::Doctor(args) => doctor::run(args, cli.config).await,
        Command::Completions(args) => completions::run(args),
        Command::Verify(args) => verify::run(args, cli.config).await,
        Command::Sweep(args) => sweep::run(args, cli.config).await,
        Command::Migrate(args) => migrate::run(args, cli.config).await,
        Command::List(args) => list::run(args, cli.config).await,
        Command::Watch(args) => watch::run(args, cli.config).await,
        Command::Resume(args) => control::run(control::Control::Resume, args, cli.config).await,
        Command::Cancel(args) => control::run(control::Control::Cancel, args, cli.config).await,
        Command::Retry(args) => control::run(control::Control::Retry, args, cli.config).await,
        Command::Pause(args) => control::run(control::Control::Pause, args, cli.config).await,
        Command::Abandon(args) => control::abandon(args, cli.config).await,
        Command::Serve(args) => serve::run(args, cli.config).await,
        Command::Worker(args) => worker::run(args, cli.config).await,
    }
}
