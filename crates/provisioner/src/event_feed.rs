//! A run's events in sequence order, from any point, until the run stops: the one reader behind
//! the CLI's progress display, `watch`, and the API's event stream. It reads the journal by
//! sequence number, so it sees every transition whichever process wrote it, and it keeps reading
//! until it has returned the event that stopped the run (stopping at the first quiet moment
//! would lose a run's last events). A journal that stops answering for a while (a server
//! restart) is waited out as [`crate::journal_outage`] says, not taken for the run's end.

use std::time::Duration;

use saga::{Engine, EngineError, EventRecord, RunEvent, RunStatus};
use tokio::sync::broadcast::{self, error::RecvError};
use uuid::Uuid;

use crate::journal_outage::{self, Notice, Patience};

/// Where a feed ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopAt {
    /// At any settled state, including `paused` (what a command driving the run waits for).
    Settled,
    /// Only at a state no worker leaves on its own: succeeded, compensated, needs_attention,
    /// abandoned (a paused run's feed waits for it to go on).
    Terminal,
}

impl StopAt {
    /// Whether `event` moves its run to a state where this feed ends.
    pub fn stopped_by(self, event: &RunEvent) -> bool {
        stopping_status(event).is_some_and(|s| self.stops(s))
    }

    /// Whether a run in `status` is where this feed ends.
    pub fn stops(self, status: RunStatus) -> bool {
        match self {
            Self::Settled => status.is_settled(),
            Self::Terminal => status.is_settled() && status != RunStatus::Paused,
        }
    }
}

/// The status a journal event moves its run to, for the events that stop one.
fn stopping_status(event: &RunEvent) -> Option<RunStatus> {
    match event {
        RunEvent::RunSucceeded => Some(RunStatus::Succeeded),
        RunEvent::RunCompensated => Some(RunStatus::Compensated),
        RunEvent::RunNeedsAttention { .. } => Some(RunStatus::NeedsAttention),
        RunEvent::RunAbandoned { .. } => Some(RunStatus::Abandoned),
        RunEvent::RunPaused => Some(RunStatus::Paused),
        _ => None,
    }
}

/// Follows one run. Made with [`EventFeed::open`]; read with [`EventFeed::next`].
#[derive(Debug)]
pub struct EventFeed {
    engine: Engine,
    run_id: Uuid,
    last_seq: i64,
    stop_at: StopAt,
    /// Stopping events at or before this sequence number do not end the feed: they belong to
    /// an earlier leg of a run an operator has since set going again (retry, resume).
    stops_after_seq: i64,
    /// The run was already stopped when the feed opened.
    stopped_at_open: bool,
    finished: bool,
    wakeups: broadcast::Receiver<EventRecord>,
    /// How often the journal is read when no event of this process says something happened
    /// (another process may be driving the run).
    poll: Duration,
    patience: Patience,
    notice: Notice,
}

impl EventFeed {
    /// The feed of `run_id` after sequence number `after_seq` (0 = from the start). Fails if
    /// the run does not exist. Journal outages are told through `notice` while they are
    /// waited out.
    pub async fn open(
        engine: &Engine,
        run_id: Uuid,
        after_seq: i64,
        stop_at: StopAt,
        notice: Notice,
    ) -> Result<Self, EngineError> {
        Self::open_with(
            engine,
            run_id,
            after_seq,
            stop_at,
            notice,
            Patience::default(),
        )
        .await
    }

    /// [`EventFeed::open`] with its own patience for journal outages.
    pub async fn open_with(
        engine: &Engine,
        run_id: Uuid,
        after_seq: i64,
        stop_at: StopAt,
        notice: Notice,
        patience: Patience,
    ) -> Result<Self, EngineError> {
        // Subscribe before reading the status, so nothing falls between the two.
        let wakeups = engine.subscribe();
        let view = journal_outage::retrying(&patience, notice, || engine.status(run_id)).await?;
        Ok(Self {
            engine: engine.clone(),
            run_id,
            last_seq: after_seq.max(0),
            stop_at,
            stops_after_seq: 0,
            stopped_at_open: stop_at.stops(view.status),
            finished: false,
            wakeups,
            poll: Duration::from_millis(250),
            patience,
            notice,
        })
    }

    /// Waits out later journal outages with `patience` (the one `open_with` was given is
    /// for opening).
    pub fn with_patience(mut self, patience: Patience) -> Self {
        self.patience = patience;
        self
    }

    /// Ends the feed only at a stopping event after `seq`, so a feed replaying a run from the
    /// start does not end at the `compensated` or `paused` a retry or resume has since left.
    pub fn stopping_only_after(mut self, seq: i64) -> Self {
        self.stops_after_seq = seq;
        self
    }

    /// The sequence number of the last event returned (what a client resumes from).
    pub fn last_seq(&self) -> i64 {
        self.last_seq
    }

    /// The next events, in order; `None` once the event that stopped the run has been
    /// returned (or the run was already stopped and nothing after `after_seq` is left).
    pub async fn next(&mut self) -> Result<Option<Vec<EventRecord>>, EngineError> {
        if self.finished {
            return Ok(None);
        }
        loop {
            let (engine, run_id, after) = (&self.engine, self.run_id, self.last_seq);
            let batch = journal_outage::retrying(&self.patience, self.notice, || {
                engine.events_since(run_id, after)
            })
            .await?;
            if let Some(last) = batch.last() {
                self.last_seq = last.seq;
                if batch
                    .iter()
                    .filter(|r| r.seq > self.stops_after_seq)
                    .filter_map(|r| stopping_status(&r.event))
                    .any(|s| self.stop_at.stops(s))
                {
                    self.finished = true;
                }
                return Ok(Some(batch));
            }
            if self.stopped_at_open {
                self.finished = true;
                return Ok(None);
            }
            self.wait().await;
        }
    }

    /// Until this process publishes an event of the run, or the poll interval passes.
    async fn wait(&mut self) {
        let deadline = tokio::time::sleep(self.poll);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                () = &mut deadline => return,
                received = self.wakeups.recv() => match received {
                    Ok(record) if record.run_id == self.run_id && record.seq > self.last_seq => return,
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => return,
                    // No more wakeups from this process: polling alone carries on.
                    Err(RecvError::Closed) => {
                        deadline.as_mut().await;
                        return;
                    }
                },
            }
        }
    }
}
