//! Live step progress, drawn from a run's journal through [`crate::event_feed`]: one spinner per
//! step on a terminal, one plain line per transition otherwise (CI logs, pipes). It reads by
//! sequence number until the event that stops the run, so the last transitions of a run are
//! always shown, and it shows them whichever process drives the run.
//!
//! Logs and bars share stderr: while bars are drawn, [`LogWriter`] writes each log line with
//! the bars suspended, so neither garbles the other.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use saga::{Engine, EngineError, EventRecord, RunEvent};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::event_feed::{EventFeed, StopAt};

/// The bars being drawn, if any: log lines are written with them suspended. Every write to
/// stderr while bars may be drawn happens with this lock held, so no line is written between
/// the bars appearing and their being registered here (it would sit below them and be wiped by
/// their next redraw), and none reaches bars that were closed (a redraw of closed bars wipes
/// the first ones for good: indicatif clears dropped bars at the head of the list and does not
/// draw them again).
static ACTIVE_BARS: Mutex<Option<MultiProgress>> = Mutex::new(None);

fn lock_active_bars() -> std::sync::MutexGuard<'static, Option<MultiProgress>> {
    // The slot is only ever replaced whole: a panic elsewhere cannot leave it half-changed.
    ACTIVE_BARS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Bars a command draws itself (`batch`): from now on log lines go around them. Register
/// before the first bar is added, so nothing is written between a frame and the registration.
pub fn register_bars(multi: &MultiProgress) {
    *lock_active_bars() = Some(multi.clone());
}

/// Runs `last_frame` (the final draws of registered bars) and lets the bars go in one step:
/// no log line lands between the two, and none reaches the bars afterwards.
pub fn release_bars(last_frame: impl FnOnce()) {
    let mut active = lock_active_bars();
    last_frame();
    *active = None;
}

/// The log writer for the binary's tracing subscriber: stderr, with the live bars (when any
/// are drawn) cleared for the line and redrawn after it.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // The fmt layer hands over one formatted event per call, so a line is never split
        // around a redraw.
        let bars = lock_active_bars();
        match bars.as_ref() {
            Some(bars) => bars.suspend(|| std::io::stderr().write_all(buf))?,
            None => std::io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;
    fn make_writer(&'a self) -> Self::Writer {
        LogWriter
    }
}

/// A line on stderr that never cuts through the bars.
pub fn say(line: &str) {
    let bars = lock_active_bars();
    match bars.as_ref() {
        Some(bars) => {
            if bars.println(line).is_err() {
                eprintln!("{line}");
            }
        }
        None => eprintln!("{line}"),
    }
}

/// What to follow and how.
#[derive(Debug, Clone)]
pub struct Follow {
    /// The first line, above the steps.
    pub title: String,
    /// The steps in the order to draw them.
    pub steps: Vec<String>,
    /// Stopping events up to this sequence number belong to an earlier leg of the run (one
    /// that a retry or resume set going again) and do not end the display.
    pub stops_after_seq: i64,
    pub stop_at: StopAt,
    /// Each event as a JSON line on stdout instead of a drawing.
    pub json: bool,
}

/// Follows one run until it stops (as `Follow::stop_at` says) or is aborted.
#[derive(Debug)]
pub struct Progress {
    task: JoinHandle<Result<(), EngineError>>,
}

impl Progress {
    /// Fails if the run does not exist.
    pub async fn follow(
        engine: &Engine,
        run_id: Uuid,
        follow: Follow,
    ) -> Result<Self, EngineError> {
        let feed = EventFeed::open(engine, run_id, 0, follow.stop_at, say)
            .await?
            .stopping_only_after(follow.stops_after_seq);
        let mut display = Display::new(&follow);
        let task = tokio::spawn(async move {
            let mut feed = feed;
            let outcome = loop {
                match feed.next().await {
                    Ok(Some(batch)) => {
                        for record in &batch {
                            display.show(record);
                        }
                    }
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(e),
                }
            };
            display.close();
            outcome
        });
        Ok(Self { task })
    }

    /// Until the event that stopped the run has been drawn.
    pub async fn finished(&mut self) -> Result<(), EngineError> {
        match (&mut self.task).await {
            Ok(outcome) => outcome,
            // The task only ends by returning or by `abort`, which consumes `self`: a panic
            // while drawing is all that is left, and the run itself is unaffected by it.
            Err(e) => {
                tracing::warn!(error = %e, "the progress display stopped");
                Ok(())
            }
        }
    }

    /// Stops drawing at once (the operator is leaving); the bars drawn so far stay.
    pub async fn abort(self) {
        self.task.abort();
        let _ = self.task.await;
        let mut bars = lock_active_bars();
        if let Some(bars) = bars.take() {
            let _ = bars.clear();
        }
    }
}

/// The display without a feed: the caller hands it each event in sequence order (a run
/// followed through a server's event stream). It draws as [`Progress`] does.
pub struct Display {
    drawing: Drawing,
    json: bool,
}

impl Display {
    /// Prints the title and, on a terminal, draws each step waiting.
    pub fn new(follow: &Follow) -> Self {
        Self {
            drawing: Drawing::new(follow),
            json: follow.json,
        }
    }

    pub fn show(&mut self, record: &EventRecord) {
        if self.json {
            print_event(record);
        } else {
            self.drawing.show(record);
        }
    }

    /// Leaves what is drawn on screen; stderr goes back to plain writes.
    pub fn close(&mut self) {
        self.drawing.close();
    }
}

impl std::fmt::Debug for Display {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Display")
            .field("json", &self.json)
            .finish_non_exhaustive()
    }
}

fn print_event(record: &EventRecord) {
    match serde_json::to_string(record) {
        Ok(line) => {
            #[allow(clippy::print_stdout)] // with --json the events are the command's output
            {
                println!("{line}");
            }
        }
        Err(e) => tracing::warn!(error = %e, "an event could not be written as JSON"),
    }
}

/// What a running step is waiting on, in the words an operator uses.
fn running_note(step: &str) -> Option<&'static str> {
    use crate::steps::{
        database_schema, github_repo, n8n_modules, n8n_workflow, supabase_project, vercel_project,
    };
    Some(match step {
        s if s == supabase_project::NAME => "waiting for the project to be healthy",
        s if s == github_repo::NAME => "waiting for the repository's default branch",
        s if s == vercel_project::NAME => "waiting for the deployment to be ready",
        s if s == database_schema::NAME => "applying the schema and its checks",
        s if s == n8n_workflow::NAME => "creating and activating the workflow",
        s if s == n8n_modules::NAME => "creating and activating the module workflows",
        _ => return None,
    })
}

/// Why a failed attempt waits before the next: "rate limited by supabase, 23 s" for a rate
/// limit, else the error and the wait.
pub fn wait_reason(error: &str, wait_ms: i64) -> String {
    let secs = (wait_ms.max(0) as f64 / 1000.0).ceil() as i64;
    // Transient provider errors read "supabase: transient failure (HTTP 429): …".
    let provider = error.split(':').next().unwrap_or_default().trim();
    let rate_limited =
        error.contains("HTTP 429") || error.to_ascii_lowercase().contains("rate limit");
    if rate_limited && !provider.is_empty() && !provider.contains(' ') {
        format!("rate limited by {provider}, {secs} s")
    } else {
        format!("retrying in {secs} s: {error}")
    }
}

struct StepLine {
    bar: Option<ProgressBar>,
    started_ms: Option<i64>,
}

struct Drawing {
    bars: Option<MultiProgress>,
    steps: HashMap<String, StepLine>,
    running_style: ProgressStyle,
    settled_style: ProgressStyle,
}

impl Drawing {
    fn new(follow: &Follow) -> Self {
        let running_style =
            ProgressStyle::with_template("  {spinner} {prefix:<24} {wide_msg} [{elapsed}]")
                .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let settled_style = ProgressStyle::with_template("  {prefix:<26} {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        // Bars only where a person watches: stderr on a terminal, and not when stdout carries
        // the events as JSON.
        let drawn = !follow.json && std::io::stderr().is_terminal();
        if !follow.json {
            say(&follow.title);
        }
        // Held until the bars are registered: their first frame is drawn as they are added.
        let mut active = lock_active_bars();
        let bars = drawn.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        let steps = follow
            .steps
            .iter()
            .map(|step| {
                let bar = bars.as_ref().map(|multi| {
                    let bar = multi.add(ProgressBar::new_spinner());
                    bar.set_style(settled_style.clone());
                    bar.set_prefix(step.clone());
                    bar.set_message("waiting");
                    bar
                });
                (
                    step.clone(),
                    StepLine {
                        bar,
                        started_ms: None,
                    },
                )
            })
            .collect();
        if let Some(multi) = &bars {
            *active = Some(multi.clone());
        }
        drop(active);
        Self {
            bars,
            steps,
            running_style,
            settled_style,
        }
    }

    /// A step moved: `live` while it is still working (spinner and clock), else settled.
    fn step(&mut self, step: &str, message: String, live: bool) {
        let drawn = self.bars.is_some();
        let line = self.steps.entry(step.to_owned()).or_insert(StepLine {
            bar: None,
            started_ms: None,
        });
        if line.bar.is_none() && drawn {
            // A step the display was not told about (a saga version with other steps).
            if let Some(multi) = &self.bars {
                let bar = multi.add(ProgressBar::new_spinner());
                bar.set_prefix(step.to_owned());
                line.bar = Some(bar);
            }
        }
        match &line.bar {
            Some(bar) if live => {
                bar.set_style(self.running_style.clone());
                bar.reset_elapsed();
                bar.enable_steady_tick(Duration::from_millis(120));
                bar.set_message(message);
            }
            Some(bar) => {
                bar.disable_steady_tick();
                bar.set_style(self.settled_style.clone());
                bar.set_message(message);
                bar.tick();
            }
            None => eprintln!("  {step:<24} {message}"),
        }
    }

    fn elapsed(&self, step: &str, at_ms: i64) -> String {
        self.steps
            .get(step)
            .and_then(|l| l.started_ms)
            .map(|t| format!(" in {:.2} s", (at_ms - t) as f64 / 1000.0))
            .unwrap_or_default()
    }

    fn started(&mut self, step: &str, at_ms: i64) {
        if let Some(line) = self.steps.get_mut(step) {
            line.started_ms = Some(at_ms);
        } else {
            self.steps.insert(
                step.to_owned(),
                StepLine {
                    bar: None,
                    started_ms: Some(at_ms),
                },
            );
        }
    }

    fn show(&mut self, record: &EventRecord) {
        let at = record.at_ms;
        match &record.event {
            RunEvent::StepStarted { step, attempt } => {
                self.started(step, at);
                let note = running_note(step)
                    .map(|n| format!(": {n}"))
                    .unwrap_or_default();
                self.step(step, format!("running (attempt {attempt}){note}"), true);
            }
            RunEvent::StepSucceeded { step, attempt, .. } => {
                let took = self.elapsed(step, at);
                self.step(step, format!("done{took} (attempt {attempt})"), false);
            }
            RunEvent::StepFailed {
                step,
                attempt,
                error,
                retry_at,
                ..
            } => match retry_at {
                Some(when) => {
                    let reason = wait_reason(error, *when - at);
                    self.step(step, format!("attempt {attempt} failed; {reason}"), true);
                }
                None => {
                    let took = self.elapsed(step, at);
                    self.step(
                        step,
                        format!("failed{took} (attempt {attempt}): {error}"),
                        false,
                    );
                }
            },
            RunEvent::UndoStarted { step, attempt } => {
                self.started(step, at);
                self.step(step, format!("undoing (attempt {attempt})"), true);
            }
            RunEvent::UndoSucceeded { step, .. } => {
                let took = self.elapsed(step, at);
                self.step(step, format!("undone{took}"), false);
            }
            RunEvent::UndoFailed {
                step,
                attempt,
                error,
                retry_at,
                ..
            } => match retry_at {
                Some(when) => {
                    let reason = wait_reason(error, *when - at);
                    self.step(
                        step,
                        format!("undo attempt {attempt} failed; {reason}"),
                        true,
                    );
                }
                None => self.step(step, format!("undo failed: {error}"), false),
            },
            RunEvent::CompensationStarted { reason } => {
                self.line(format!("  undoing what was made: {reason}"));
            }
            RunEvent::PauseRequested => {
                self.line("  pause requested: in-flight steps finish first".into())
            }
            RunEvent::RunPaused => self.line("  run paused".into()),
            RunEvent::RunResumed => self.line("  run resumed".into()),
            RunEvent::CancelRequested => self.line(
                "  cancel requested: in-flight steps finish, then everything made is undone".into(),
            ),
            RunEvent::RetryRequested => self.line("  retry requested".into()),
            RunEvent::RunSucceeded => self.line("  run succeeded".into()),
            RunEvent::RunCompensated => {
                self.line("  run compensated: everything made was undone".into())
            }
            RunEvent::RunNeedsAttention { remaining, reason } => self.line(format!(
                "  run needs attention: {reason}; resources of these steps may still exist: {}",
                remaining.join(", ")
            )),
            RunEvent::RunAbandoned { reason } => self.line(format!("  run abandoned: {reason}")),
            RunEvent::RequestedBy { action, actor } => {
                self.line(format!("  {action} requested by {actor}"))
            }
            RunEvent::RunCreated { .. } | RunEvent::RunStarted | RunEvent::RunCancelled => {}
        }
    }

    fn line(&self, line: String) {
        match &self.bars {
            Some(multi) => {
                if multi.println(&line).is_err() {
                    eprintln!("{line}");
                }
            }
            None => eprintln!("{line}"),
        }
    }

    /// Leaves the bars on screen as they are and hands stderr back to plain writes.
    fn close(&mut self) {
        let Some(multi) = self.bars.take() else {
            return;
        };
        // No log line in between: the last frame is drawn and the bars are let go as one.
        let mut active = lock_active_bars();
        for line in self.steps.values() {
            if let Some(bar) = &line.bar {
                bar.disable_steady_tick();
                bar.set_style(self.settled_style.clone());
                bar.abandon();
            }
        }
        *active = None;
        drop(multi);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_limit_names_the_provider_and_the_wait() {
        assert_eq!(
            wait_reason("supabase: transient failure (HTTP 429): slow down", 22_400),
            "rate limited by supabase, 23 s"
        );
        assert_eq!(
            wait_reason("github: transient failure (HTTP 502): bad gateway", 1_000),
            "retrying in 1 s: github: transient failure (HTTP 502): bad gateway"
        );
    }
}
