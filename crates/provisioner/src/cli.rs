//! `provisioner` on the command line: argument parsing, and the commands that are not the
//! demo. Exit codes: 0 success, 1 a run that did not succeed, 2 a usage or configuration error.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use saga::{RunStatus, RunView};
use uuid::Uuid;

use crate::app::{App, AppOptions, open_journal, secret_key_from_env};
use crate::client::{Client, ClientRecord, ClientSlug, InvalidClient};
use crate::config::Config;
use crate::progress::Progress;
use crate::record::ResourceRecord;

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
    Provision(ProvisionArgs),
    /// Tear a client down, from its record or whatever part of it exists.
    Deprovision(DeprovisionArgs),
    /// Show a run's state and its resource record.
    Status(StatusArgs),
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
}

#[derive(Debug, Args)]
pub struct ProvisionArgs {
    /// The client's slug, e.g. acme-dental.
    #[arg(long = "client-id")]
    pub client_id: String,
    /// The client's display name.
    #[arg(long)]
    pub name: String,
    /// The client's contact e-mail.
    #[arg(long)]
    pub email: String,
    /// starter, professional, enterprise (or core, growth, scale).
    #[arg(long)]
    pub tier: String,
    /// Wait for the run to settle (this version always does: the command drives the run).
    #[arg(long)]
    pub wait: bool,
    /// Print the resource record as JSON on stdout, as the last line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DeprovisionArgs {
    #[arg(long = "client-id")]
    pub client_id: String,
    /// Wait for the run to settle (this version always does: the command drives the run).
    #[arg(long)]
    pub wait: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The run's id.
    pub run: String,
    #[arg(long)]
    pub json: bool,
}

/// A failure that decides the exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad arguments or configuration: exit 2.
    #[error("{0}")]
    Usage(String),
    /// The run ended in something other than success: exit 1.
    #[error("{0}")]
    RunFailed(String),
    /// Anything else that stopped the command: exit 1.
    #[error("{0}")]
    Other(String),
}

impl CliError {
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Usage(_) => 2,
            Self::RunFailed(_) | Self::Other(_) => 1,
        }
    }
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
    let path = config_path(config_file);
    let mut problems = Vec::new();
    let config = Config::load(path.as_deref(), &env).map_err(|e| problems.extend(e.problems));
    let key = secret_key_from_env(&env).map_err(|e| problems.push(e.to_string()));
    let (Ok(config), Ok(key)) = (config, key) else {
        return Err(CliError::Usage(format!(
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
        .map_err(|e| CliError::Other(e.to_string()))?;
    let options = AppOptions {
        workers,
        ..AppOptions::default()
    };
    App::start(&config, journal, &key, options)
        .await
        .map_err(|e| CliError::Usage(e.to_string()))
}

/// SIGINT (Ctrl-C) or SIGTERM (what a service manager sends), whichever comes first. Made
/// before the work it guards starts, so neither signal can kill the process without cleanup
/// once it is listening.
#[derive(Debug)]
pub struct StopSignal {
    terminate: Option<tokio::signal::unix::Signal>,
}

impl StopSignal {
    pub fn listen() -> Self {
        let terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| tracing::warn!(error = %e, "cannot listen for SIGTERM"))
            .ok();
        StopSignal { terminate }
    }

    /// Resolves when either signal arrives.
    pub async fn received(&mut self) {
        let terminate = async {
            match &mut self.terminate {
                Some(signal) => {
                    signal.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = terminate => {}
        }
    }
}

/// Drives a started run to its end with live progress; Ctrl-C or SIGTERM hands the run back
/// intact.
pub async fn drive(app: &App, run_id: Uuid, title: &str) -> Result<RunView, CliError> {
    let mut stop = StopSignal::listen();
    let steps: Vec<String> = app
        .engine
        .status(run_id)
        .await
        .map_err(|e| CliError::Other(e.to_string()))?
        .steps
        .into_iter()
        .map(|s| s.name)
        .collect();
    let progress = Progress::follow(&app.engine, run_id, title, &steps);
    let outcome = tokio::select! {
        view = app.wait(run_id) => view.map_err(|e| CliError::Other(e.to_string())),
        () = stop.received() => Err(CliError::Other(format!(
            "interrupted: run {run_id} is journaled and resumes where it stopped when the same command runs again"
        ))),
    };
    progress.finish().await;
    outcome
}

/// Prints the outcome and turns a run that did not succeed into exit code 1.
pub fn report(view: &RunView, json: bool) -> Result<(), CliError> {
    let record = ResourceRecord::from_run(view);
    if json {
        print_json(&record)?;
    } else {
        eprint!("{}", human(&record));
    }
    match view.status {
        RunStatus::Succeeded => Ok(()),
        other => Err(CliError::RunFailed(format!(
            "run {} ended {other}{}",
            view.id,
            record
                .still_exists
                .as_ref()
                .map(|s| format!(
                    "; resources of these steps may still exist: {}",
                    s.join(", ")
                ))
                .unwrap_or_default()
        ))),
    }
}

/// The record as one JSON line on stdout: the command's output with `--json`.
pub fn print_json(record: &ResourceRecord) -> Result<(), CliError> {
    let line = serde_json::to_string(record).map_err(|e| CliError::Other(e.to_string()))?;
    #[allow(clippy::print_stdout)] // the record is the command's output
    {
        println!("{line}");
    }
    Ok(())
}

/// The record as a person reads it.
pub fn human(record: &ResourceRecord) -> String {
    let mut out = format!(
        "run {} ({}): {}\n",
        record.run_id, record.saga, record.status
    );
    let adopted = |a: bool| if a { " (adopted)" } else { "" };
    if let Some(s) = &record.supabase {
        out += &format!(
            "  supabase   {} {} in {}{}\n",
            s.name,
            s.project_ref,
            s.region,
            adopted(s.adopted)
        );
    }
    if let Some(d) = &record.database {
        out += &format!(
            "  schema     version {}{}\n",
            &d.checksum[..12.min(d.checksum.len())],
            if d.already_applied {
                " (already applied)"
            } else {
                ""
            }
        );
        for c in &d.checks {
            out += &format!(
                "    {} {} ({} relations)\n",
                if c.passed { "ok  " } else { "FAIL" },
                c.description,
                c.relations_examined
            );
        }
    }
    if let Some(g) = &record.github {
        out += &format!("  github     {}{}\n", g.html_url, adopted(g.adopted));
    }
    if let Some(v) = &record.vercel {
        out += &format!(
            "  vercel     {} → {}{}\n",
            v.deployment_url,
            v.app_url,
            adopted(v.adopted)
        );
    }
    if let Some(n) = &record.n8n {
        out += &format!(
            "  n8n        {} (workflow {}){}\n",
            n.webhook_url,
            n.workflow_id,
            adopted(n.adopted)
        );
    }
    for r in &record.removed {
        out += &format!("  removed    {r}\n");
    }
    if let Some(f) = &record.failure {
        out += &format!("  failure    {f}\n");
    }
    if let Some(s) = &record.still_exists {
        out += &format!("  still exists (steps): {}\n", s.join(", "));
    }
    out
}

/// The `provision` flags as a validated client. The record's rules speak of its JSON fields
/// (`clientId`), which the API keeps; here each problem names the flag that was typed.
pub fn client_from_flags(args: &ProvisionArgs) -> Result<Client, CliError> {
    ClientRecord {
        client_id: Some(args.client_id.clone()),
        client_name: Some(args.name.clone()),
        org_email: Some(args.email.clone()),
        tier: Some(args.tier.clone()),
    }
    .validate()
    .map_err(|InvalidClient(errors)| {
        CliError::Usage(format!(
            "invalid arguments: {}",
            errors
                .iter()
                .map(|e| format!("{} {}", provision_flag(e.field), e.message))
                .collect::<Vec<_>>()
                .join("; ")
        ))
    })
}

/// The `provision` flag that carries a client record's field.
fn provision_flag(field: &str) -> &str {
    match field {
        "clientId" => "--client-id",
        "clientName" => "--name",
        "orgEmail" => "--email",
        "tier" => "--tier",
        other => other,
    }
}

pub async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Demo(args) => crate::demo::run(args).await,
        Command::Sandbox(args) if args.sweep => crate::demo::sweep().await,
        Command::Sandbox(_) => crate::demo::sandbox().await,
        Command::Provision(args) => {
            let client = client_from_flags(&args)?;
            let app = open_app(cli.config, true).await?;
            let started = app
                .provision(&client)
                .await
                .map_err(|e| CliError::Usage(e.to_string()))?;
            let title = format!(
                "provisioning {} (run {}{})",
                client.client_id,
                started.run_id,
                if started.created { "" } else { ", existing" }
            );
            let view = drive(&app, started.run_id, &title).await;
            app.shutdown(Duration::from_secs(10)).await;
            report(&view?, args.json)
        }
        Command::Deprovision(args) => {
            let slug = ClientSlug::parse(&args.client_id)
                .map_err(|e| CliError::Usage(format!("--client-id {e}")))?;
            let app = open_app(cli.config, true).await?;
            let started = app
                .deprovision(&slug)
                .await
                .map_err(|e| CliError::Usage(e.to_string()))?;
            let title = format!("tearing down {slug} (run {})", started.run_id);
            let view = drive(&app, started.run_id, &title).await;
            app.shutdown(Duration::from_secs(10)).await;
            report(&view?, args.json)
        }
        Command::Status(args) => {
            let run_id = Uuid::parse_str(args.run.trim())
                .map_err(|e| CliError::Usage(format!("RUN must be a run id (a UUID): {e}")))?;
            let app = open_app(cli.config, false).await?;
            let view = app
                .engine
                .status(run_id)
                .await
                .map_err(|e| CliError::Other(e.to_string()));
            let elsewhere = view.as_ref().ok().and_then(|v| app.environment_note(v));
            app.shutdown(Duration::from_secs(1)).await;
            let view = view?;
            let record = ResourceRecord::from_run(&view);
            if args.json {
                print_json(&record)?;
            } else {
                eprint!("{}", human(&record));
                if let Some(note) = elsewhere {
                    eprintln!("  {note}");
                }
                for step in &view.steps {
                    eprintln!(
                        "  step {:<24} {:?} (attempt {}){}",
                        step.name,
                        step.phase,
                        step.attempt,
                        step.last_error
                            .as_ref()
                            .map(|e| format!(": {e}"))
                            .unwrap_or_default()
                    );
                }
            }
            Ok(())
        }
    }
}
