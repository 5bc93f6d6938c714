//! `provisioner batch`: provisions every client of a manifest directory or JSON Lines file,
//! N at a time. Every manifest is validated before anything starts. Runs are keyed by client,
//! so running the same command again picks up where an interrupted batch stopped: settled
//! runs are reported as they ended, unfinished ones go on, missing ones start.

use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::Args;
use futures::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use saga::{EventRecord, RunEvent, RunStatus};
use serde::Serialize;
use uuid::Uuid;

use super::plan::{self, DEFAULT_CONCURRENCY};
use super::{CliError, StopSignal, open_app};
use crate::app::{App, AppError};
use crate::client::ClientSlug;
use crate::event_feed::{EventFeed, StopAt};
use crate::journal_outage::{Patience, retrying};
use crate::manifest::{self, Manifest};
use crate::outcome::{Failure, Outcome};
use crate::progress::say;
use crate::record::ResourceRecord;

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  provisioner batch clients/ --concurrency 8 --summary batch.json\n  provisioner batch clients.jsonl --client acme-dental --client bolt-gym\n  provisioner batch clients/ --dry-run"
)]
pub struct BatchArgs {
    /// A directory of manifests (one .json file per client) or a JSON Lines file.
    pub path: PathBuf,
    /// How many clients are provisioned at once.
    #[arg(long, default_value_t = DEFAULT_CONCURRENCY, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,
    /// Only this client of the manifests, by slug (repeatable).
    #[arg(long = "client", value_name = "SLUG")]
    pub clients: Vec<String>,
    /// Show the plan (what exists, what would be made, what blocks) and start nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Write the batch's summary (every client's status, duration, resources or root cause)
    /// to this file as JSON.
    #[arg(long, value_name = "FILE")]
    pub summary: Option<PathBuf>,
    /// Retry clients whose earlier run was compensated or needs attention (by default a
    /// settled run is reported as it ended).
    #[arg(long)]
    pub retry_failed: bool,
    /// Print the summary as JSON on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// How one client of the batch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientStatus {
    Succeeded,
    Compensated,
    NeedsAttention,
    Paused,
    Abandoned,
    /// Its run had started when the batch was interrupted; it is journaled and goes on when
    /// the batch runs again.
    Interrupted,
    /// The batch was interrupted before it started.
    NotStarted,
    /// Its run could not be started or followed (the journal, a conflict with an earlier run
    /// of other parameters).
    Error,
}

impl ClientStatus {
    fn of(status: RunStatus) -> Self {
        match status {
            RunStatus::Succeeded => Self::Succeeded,
            RunStatus::Compensated => Self::Compensated,
            RunStatus::NeedsAttention => Self::NeedsAttention,
            RunStatus::Paused => Self::Paused,
            RunStatus::Abandoned => Self::Abandoned,
            // A feed stops only at a settled state; anything else was cut short.
            _ => Self::Interrupted,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Compensated => "compensated",
            Self::NeedsAttention => "needs_attention",
            Self::Paused => "paused",
            Self::Abandoned => "abandoned",
            Self::Interrupted => "interrupted",
            Self::NotStarted => "not_started",
            Self::Error => "error",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientSummary {
    pub client_id: String,
    /// The manifest it came from (`file` or `file:line`).
    pub source: String,
    pub status: ClientStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<Uuid>,
    /// From the run's start to where it settled, as journaled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<i64>,
    /// What the run made or adopted: project ref, repository, app URL, webhook.
    pub resources: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root_cause: Option<String>,
    /// The run had settled before this batch (an earlier invocation ran it).
    pub earlier: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchSummary {
    pub path: PathBuf,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub concurrency: usize,
    pub interrupted: bool,
    pub counts: BTreeMap<&'static str, usize>,
    pub clients: Vec<ClientSummary>,
}

/// Overall and per-client progress on stderr: bars on a terminal, one line per transition
/// otherwise.
struct Display {
    bars: Option<(MultiProgress, ProgressBar)>,
    clients: Mutex<HashMap<String, ProgressBar>>,
    total: usize,
    done: AtomicUsize,
}

impl Display {
    fn new(total: usize) -> Self {
        let bars = std::io::stderr().is_terminal().then(|| {
            let multi = MultiProgress::new();
            crate::progress::register_bars(&multi);
            let overall = multi.add(ProgressBar::new(total as u64));
            overall.set_style(
                ProgressStyle::with_template("{bar:30} {pos}/{len} clients settled {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            (multi, overall)
        });
        Self {
            bars,
            clients: Mutex::new(HashMap::new()),
            total,
            done: AtomicUsize::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ProgressBar>> {
        // Every update is one insert, remove or lookup: a panic elsewhere cannot leave the
        // map half-changed.
        self.clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn client(&self, slug: &str, message: String) {
        match &self.bars {
            Some((multi, overall)) => {
                let mut bars = self.lock();
                let bar = bars.entry(slug.to_owned()).or_insert_with(|| {
                    let bar = multi.insert_before(overall, ProgressBar::new_spinner());
                    bar.set_style(
                        ProgressStyle::with_template("  {spinner} {prefix:<28} {wide_msg}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    bar.set_prefix(slug.to_owned());
                    bar.enable_steady_tick(Duration::from_millis(120));
                    bar
                });
                bar.set_message(message);
            }
            None => eprintln!("  {slug:<28} {message}"),
        }
    }

    fn event(&self, slug: &str, record: &EventRecord) {
        if let Some(message) = transition(record) {
            self.client(slug, message);
        }
    }

    fn settled(&self, summary: &ClientSummary) {
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        let line = format!(
            "[{done}/{}] {} {}{}",
            self.total,
            summary.client_id,
            summary.status.as_str(),
            summary
                .root_cause
                .as_ref()
                .map(|c| format!(": {c}"))
                .unwrap_or_default()
        );
        match &self.bars {
            Some((multi, overall)) => {
                if let Some(bar) = self.lock().remove(&summary.client_id) {
                    bar.finish_and_clear();
                    multi.remove(&bar);
                }
                let _ = multi.println(line);
                overall.inc(1);
            }
            None => eprintln!("{line}"),
        }
    }

    fn finish(&self) {
        let last_frame = || {
            if let Some((_, overall)) = &self.bars {
                overall.finish();
            }
            for (_, bar) in self.lock().drain() {
                bar.finish_and_clear();
            }
        };
        if self.bars.is_some() {
            crate::progress::release_bars(last_frame);
        } else {
            last_frame();
        }
    }
}

/// One line for a transition worth showing.
fn transition(record: &EventRecord) -> Option<String> {
    Some(match &record.event {
        RunEvent::StepStarted { step, attempt } if *attempt > 1 => {
            format!("{step} running (attempt {attempt})")
        }
        RunEvent::StepStarted { step, .. } => format!("{step} running"),
        RunEvent::StepSucceeded { step, .. } => format!("{step} done"),
        RunEvent::StepFailed {
            step,
            error,
            retry_at: Some(when),
            ..
        } => format!(
            "{step} retrying in {:.1} s: {error}",
            (*when - record.at_ms).max(0) as f64 / 1000.0
        ),
        RunEvent::StepFailed { step, error, .. } => format!("{step} failed: {error}"),
        RunEvent::CompensationStarted { reason } => format!("undoing what was made: {reason}"),
        RunEvent::UndoStarted { step, .. } => format!("{step} undoing"),
        RunEvent::UndoSucceeded { step, .. } => format!("{step} undone"),
        RunEvent::UndoFailed { step, error, .. } => format!("{step} undo failed: {error}"),
        _ => return None,
    })
}

fn resources(record: &ResourceRecord) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(s) = &record.supabase {
        out.push(format!("supabase {}", s.project_ref));
    }
    if let Some(g) = &record.github {
        out.push(format!("github {}", g.full_name));
    }
    if let Some(v) = &record.vercel {
        out.push(format!("vercel {}", v.app_url));
    }
    if let Some(n) = &record.n8n {
        out.push(format!("n8n {}", n.webhook_url));
    }
    out
}

/// What the journal says of a settled run, as a batch line.
async fn summarise(
    app: &App,
    manifest: &Manifest,
    run_id: Uuid,
    earlier: bool,
) -> Result<ClientSummary, Failure> {
    let view = retrying(&Patience::default(), say, || app.engine.status(run_id)).await?;
    let record = ResourceRecord::from_run(&view);
    let status = ClientStatus::of(view.status);
    Ok(ClientSummary {
        client_id: manifest.client.client_id.to_string(),
        source: manifest.source.to_string(),
        status,
        run_id: Some(run_id),
        duration_ms: Some((view.updated_at - view.created_at).num_milliseconds()),
        resources: if status == ClientStatus::Succeeded {
            resources(&record)
        } else {
            Vec::new()
        },
        root_cause: record.failure,
        earlier,
    })
}

/// The client's current provision run, if it has one.
async fn existing_run(app: &App, slug: &ClientSlug) -> Result<Option<(Uuid, RunStatus)>, AppError> {
    let key = app.provision_key(slug).await?;
    Ok(app
        .engine
        .find_by_key(&key)
        .await?
        .map(|run| (run.id, run.status)))
}

/// Provisions one client and follows its run until it settles. A run the client already has
/// is followed as it is (an unfinished one goes on from its journal); only a missing run is
/// started, and a failed one is run again only with `retry_failed`. A journal outage is
/// waited out (see [`crate::journal_outage`]): only the journal failing for its whole
/// patience ends the client as an error.
async fn provision_one(
    app: &App,
    manifest: &Manifest,
    display: &Display,
    retry_failed: bool,
    started: &Mutex<HashMap<String, Uuid>>,
) -> Result<ClientSummary, Failure> {
    let slug = &manifest.client.client_id;
    let patience = Patience::default();
    let existing = retrying(&patience, say, || existing_run(app, slug)).await?;
    let (run_id, after_seq, resumed) = match existing {
        Some((run_id, status)) => {
            let failed = matches!(status, RunStatus::Compensated | RunStatus::NeedsAttention);
            if status.is_settled() && status != RunStatus::Paused && !(failed && retry_failed) {
                return summarise(app, manifest, run_id, true).await;
            }
            // Events up to here belong to what the run did before (a retried run's history
            // holds the event that stopped it): the feed starts after them.
            let seen = retrying(&patience, say, || app.engine.status(run_id))
                .await?
                .last_seq;
            if failed {
                if status == RunStatus::NeedsAttention {
                    app.engine.retry(run_id).await?;
                } else {
                    // Runs a compensated run forward again.
                    retrying(&patience, say, || app.provision(&manifest.client)).await?;
                }
            }
            (run_id, seen, true)
        }
        None => {
            // Keyed by client: starting again after a cut-off answer finds the same run.
            let run = retrying(&patience, say, || app.provision(&manifest.client)).await?;
            (run.run_id, 0, !run.created)
        }
    };
    started
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(slug.to_string(), run_id);
    display.client(
        slug.as_str(),
        format!("run {run_id}{}", if resumed { " (resumed)" } else { "" }),
    );
    let mut feed = EventFeed::open(&app.engine, run_id, after_seq, StopAt::Settled, say).await?;
    while let Some(records) = feed.next().await? {
        for record in &records {
            display.event(slug.as_str(), record);
        }
    }
    // The feed has shown the stopping event; the journal's view is read once it is settled.
    retrying(&patience, say, || app.engine.wait_for(run_id)).await?;
    summarise(app, manifest, run_id, false).await
}

fn error_summary(
    manifest: &Manifest,
    status: ClientStatus,
    cause: Option<String>,
) -> ClientSummary {
    ClientSummary {
        client_id: manifest.client.client_id.to_string(),
        source: manifest.source.to_string(),
        status,
        run_id: None,
        duration_ms: None,
        resources: Vec::new(),
        root_cause: cause,
        earlier: false,
    }
}

/// The manifests the `--client` flags select (all when none is given).
fn select(manifests: Vec<Manifest>, wanted: &[String]) -> Result<Vec<Manifest>, CliError> {
    if wanted.is_empty() {
        return Ok(manifests);
    }
    let mut slugs = Vec::new();
    for raw in wanted {
        let slug =
            ClientSlug::parse(raw).map_err(|rule| CliError::usage(format!("--client {rule}")))?;
        if !manifests.iter().any(|m| m.client.client_id == slug) {
            return Err(CliError::usage(format!(
                "--client {slug}: no manifest has this clientId; the manifests hold {}",
                manifests
                    .iter()
                    .map(|m| m.client.client_id.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        slugs.push(slug);
    }
    Ok(manifests
        .into_iter()
        .filter(|m| slugs.contains(&m.client.client_id))
        .collect())
}

/// The final table, one row per client.
pub fn table(summary: &BatchSummary) -> String {
    let width = summary
        .clients
        .iter()
        .map(|c| c.client_id.len())
        .max()
        .unwrap_or(6)
        .max(6);
    let mut out = format!(
        "{:<width$}  {:<15}  {:>9}  resources / root cause\n",
        "client", "status", "duration"
    );
    for c in &summary.clients {
        let duration = c
            .duration_ms
            .map(|ms| format!("{:.1} s", ms as f64 / 1000.0))
            .unwrap_or_else(|| "-".into());
        let detail = match (&c.root_cause, c.resources.is_empty()) {
            (Some(cause), _) => cause.clone(),
            (None, false) => c.resources.join(", "),
            (None, true) => String::new(),
        };
        out += &format!(
            "{:<width$}  {:<15}  {:>9}  {detail}\n",
            c.client_id,
            c.status.as_str(),
            duration
        );
    }
    let counts: Vec<String> = summary
        .counts
        .iter()
        .map(|(k, n)| format!("{n} {k}"))
        .collect();
    out += &format!("{} clients: {}\n", summary.clients.len(), counts.join(", "));
    out
}

fn write_summary(path: &PathBuf, summary: &BatchSummary) -> Result<(), CliError> {
    let text =
        serde_json::to_string_pretty(summary).map_err(|e| CliError::internal(e.to_string()))?;
    std::fs::write(path, text + "\n").map_err(|e| {
        CliError::new(
            Outcome::Unavailable,
            format!(
                "cannot write the summary to {}: {e}; the runs are journaled, run the batch again with another --summary to get it",
                path.display()
            ),
        )
    })
}

pub async fn run(args: BatchArgs, config: Option<PathBuf>) -> Result<(), CliError> {
    let manifests = manifest::load(&args.path)
        .map_err(|e| CliError::new(Outcome::Unprocessable, e.to_string()))?;
    let manifests = select(manifests, &args.clients)?;
    let concurrency = usize::from(args.concurrency);
    if args.dry_run {
        let app = open_app(config, false).await?;
        let targets: Vec<plan::PlanTarget> = manifests
            .iter()
            .map(|m| plan::PlanTarget::of_client(&app.stack, &m.client))
            .collect();
        let plan = plan::plan_clients(&app.stack, &targets, concurrency).await;
        app.shutdown(Duration::from_secs(5)).await;
        return plan::print(&plan?, args.json);
    }
    // Listening before the first run starts, so Ctrl-C can never kill the process mid-batch.
    let mut stop = StopSignal::listen();
    let app = open_app(config, true).await?;
    // Every token accepted before the first client starts: a refused one would fail them all.
    if let Err(failure) = super::doctor::preflight(&app.stack).await {
        app.shutdown(Duration::from_secs(1)).await;
        return Err(failure);
    }
    let started_at = Utc::now();
    let display = Display::new(manifests.len());
    let stopping = AtomicBool::new(false);
    let started: Mutex<HashMap<String, Uuid>> = Mutex::new(HashMap::new());
    let results: Mutex<HashMap<String, ClientSummary>> = Mutex::new(HashMap::new());
    let work = futures::stream::iter(manifests.iter()).for_each_concurrent(concurrency, |m| {
        let (app, display, stopping, started, results) =
            (&app, &display, &stopping, &started, &results);
        async move {
            if stopping.load(Ordering::Acquire) {
                return;
            }
            let summary = provision_one(app, m, display, args.retry_failed, started)
                .await
                .unwrap_or_else(|e| error_summary(m, ClientStatus::Error, Some(e.message)));
            display.settled(&summary);
            results
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(summary.client_id.clone(), summary);
        }
    });
    let interrupted = tokio::select! {
        () = work => false,
        () = stop.received() => {
            stopping.store(true, Ordering::Release);
            true
        }
    };
    display.finish();
    // Hands in-flight runs back to the journal at a step boundary: the next batch resumes them.
    app.shutdown(Duration::from_secs(10)).await;

    let mut results = results
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let started = started
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let clients: Vec<ClientSummary> = manifests
        .iter()
        .map(|m| {
            let slug = m.client.client_id.to_string();
            results
                .remove(&slug)
                .unwrap_or_else(|| match started.get(&slug) {
                    Some(run_id) => ClientSummary {
                        run_id: Some(*run_id),
                        ..error_summary(m, ClientStatus::Interrupted, None)
                    },
                    None => error_summary(m, ClientStatus::NotStarted, None),
                })
        })
        .collect();
    let mut counts = BTreeMap::new();
    for c in &clients {
        *counts.entry(c.status.as_str()).or_default() += 1;
    }
    let summary = BatchSummary {
        path: args.path.clone(),
        started_at,
        finished_at: Utc::now(),
        concurrency,
        interrupted,
        counts,
        clients,
    };
    if let Some(path) = &args.summary {
        write_summary(path, &summary)?;
    }
    if args.json {
        plan::print_data(&summary)?;
    } else {
        #[allow(clippy::print_stdout)] // the table is the command's output
        {
            print!("{}", table(&summary));
        }
    }
    if interrupted {
        return Err(Failure::new(
            Outcome::Interrupted,
            "interrupted: no new client was started; the runs in flight are journaled, and running the same command again resumes the batch",
        ));
    }
    let failed: Vec<String> = summary
        .clients
        .iter()
        .filter(|c| c.status != ClientStatus::Succeeded)
        .map(|c| format!("{} ({})", c.client_id, c.status.as_str()))
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(CliError::run_failed(format!(
            "{} of {} clients did not succeed: {}",
            failed.len(),
            summary.clients.len(),
            failed.join(", ")
        )))
    }
}
