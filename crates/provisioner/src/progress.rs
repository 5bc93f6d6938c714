//! Live step progress for a terminal, drawn from the engine's events: one spinner per step on
//! a terminal, one plain line per transition otherwise (CI logs, pipes).

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use saga::{Engine, EventRecord, RunEvent};
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;
use uuid::Uuid;

/// Follows one run until it settles or the watcher is dropped.
#[derive(Debug)]
pub struct Progress {
    task: JoinHandle<()>,
}

impl Progress {
    /// `steps` in the order to draw them.
    pub fn follow(engine: &Engine, run_id: Uuid, title: &str, steps: &[String]) -> Self {
        // Subscribe before reading the history, so nothing falls between the two.
        let events = engine.subscribe();
        let drawing = Drawing::new(title, steps);
        let task = tokio::spawn(drawing.run(engine.clone(), events, run_id));
        Self { task }
    }

    /// Stops drawing (the run settled, or we are leaving).
    pub async fn finish(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

struct Drawing {
    bars: Option<(MultiProgress, HashMap<String, ProgressBar>)>,
    started: HashMap<String, i64>,
}

impl Drawing {
    fn new(title: &str, steps: &[String]) -> Self {
        eprintln!("{title}");
        let bars = std::io::stderr().is_terminal().then(|| {
            let multi = MultiProgress::new();
            let style = ProgressStyle::with_template("  {spinner} {prefix:<24} {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner());
            let bars = steps
                .iter()
                .map(|step| {
                    let bar = multi.add(ProgressBar::new_spinner());
                    bar.set_style(style.clone());
                    bar.set_prefix(step.clone());
                    bar.set_message("waiting");
                    (step.clone(), bar)
                })
                .collect();
            (multi, bars)
        });
        Self {
            bars,
            started: HashMap::new(),
        }
    }

    fn say(&self, step: &str, message: String, done: bool) {
        match self.bars.as_ref().and_then(|(_, bars)| bars.get(step)) {
            Some(bar) if done => bar.finish_with_message(message),
            Some(bar) => {
                bar.enable_steady_tick(Duration::from_millis(120));
                bar.set_message(message);
            }
            None => eprintln!("  {step:<24} {message}"),
        }
    }

    fn elapsed(&self, step: &str, at_ms: i64) -> String {
        self.started
            .get(step)
            .map(|t| format!(" in {:.2} s", (at_ms - t) as f64 / 1000.0))
            .unwrap_or_default()
    }

    fn show(&mut self, record: &EventRecord) {
        let at = record.at_ms;
        match &record.event {
            RunEvent::StepStarted { step, attempt } => {
                self.started.entry(step.clone()).or_insert(at);
                let suffix = if *attempt > 1 {
                    format!(" (attempt {attempt})")
                } else {
                    String::new()
                };
                self.say(step, format!("running{suffix}"), false);
            }
            RunEvent::StepSucceeded { step, .. } => {
                let took = self.elapsed(step, at);
                self.say(step, format!("done{took}"), true);
            }
            RunEvent::StepFailed {
                step,
                error,
                retry_at,
                ..
            } => match retry_at {
                Some(when) => self.say(
                    step,
                    format!(
                        "retrying in {:.1} s: {error}",
                        (*when - at).max(0) as f64 / 1000.0
                    ),
                    false,
                ),
                None => self.say(step, format!("failed: {error}"), true),
            },
            RunEvent::UndoStarted { step, .. } => self.say(step, "undoing".into(), false),
            RunEvent::UndoSucceeded { step, .. } => self.say(step, "undone".into(), true),
            RunEvent::UndoFailed {
                step,
                error,
                retry_at,
                ..
            } => {
                let final_failure = retry_at.is_none();
                self.say(step, format!("undo failed: {error}"), final_failure)
            }
            RunEvent::CompensationStarted { reason } => {
                self.println(format!("  undoing what was made: {reason}"));
            }
            _ => {}
        }
    }

    fn println(&self, line: String) {
        match &self.bars {
            Some((multi, _)) => {
                let _ = multi.println(line);
            }
            None => eprintln!("{line}"),
        }
    }

    async fn run(
        mut self,
        engine: Engine,
        mut events: tokio::sync::broadcast::Receiver<EventRecord>,
        run_id: Uuid,
    ) {
        let mut last_seq = 0;
        if let Ok(history) = engine.events_since(run_id, 0).await {
            for record in history {
                last_seq = record.seq;
                self.show(&record);
            }
        }
        loop {
            match events.recv().await {
                Ok(record) if record.run_id == run_id && record.seq > last_seq => {
                    last_seq = record.seq;
                    self.show(&record);
                }
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            }
        }
    }
}
