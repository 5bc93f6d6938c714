//! The outbox: a durable record that a run settled ("run X entered state S at event N"),
//! written in the same transaction as the event itself, and the per-consumer delivery
//! bookkeeping that lets whoever tells the outside world about it (webhooks, mail) do so at
//! least once, from any process, without two processes sending the same row at once.
//!
//! The engine knows nothing of consumers: the journal writes a row whenever an appended
//! event settles a run; consumers claim rows under a lease, send, and record the outcome.

use std::fmt;

use async_trait::async_trait;
use uuid::Uuid;

use super::JournalError;
use crate::event::{RunEvent, RunStatus};

/// The status a run enters with `event`, when the event settles it (no worker acts on the run
/// again without an operator: it ended, or it waits for one). These are the events that write
/// an outbox row.
pub fn settled_status(event: &RunEvent) -> Option<RunStatus> {
    match event {
        RunEvent::RunSucceeded => Some(RunStatus::Succeeded),
        RunEvent::RunCompensated => Some(RunStatus::Compensated),
        RunEvent::RunNeedsAttention { .. } => Some(RunStatus::NeedsAttention),
        RunEvent::RunPaused => Some(RunStatus::Paused),
        RunEvent::RunAbandoned { .. } => Some(RunStatus::Abandoned),
        _ => None,
    }
}

/// The outbox rows for the settling events among `events`, the first of which has `first_seq`.
pub(crate) fn settlements(first_seq: i64, events: &[RunEvent]) -> Vec<(i64, RunStatus)> {
    (first_seq..)
        .zip(events)
        .filter_map(|(seq, e)| settled_status(e).map(|s| (seq, s)))
        .collect()
}

/// One outbox row: the run entered `status` with its event `seq`, at `at_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    pub run_id: Uuid,
    pub seq: i64,
    pub status: RunStatus,
    pub at_ms: i64,
    pub saga: String,
    pub idempotency_key: String,
}

impl Settlement {
    /// Stable across attempts and processes: receivers deduplicate on it.
    pub fn id(&self) -> String {
        format!("{}.{}", self.run_id, self.seq)
    }
}

/// Who claims deliveries, for which consumer, and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryLease {
    /// The receiver the deliveries are for; each consumer gets every row once.
    pub consumer: String,
    /// The claiming process (a worker id).
    pub owner: String,
    /// How long the claim holds without an outcome; after it another process may send again.
    pub lease_ms: i64,
    /// Only rows of runs started in this environment (`None`: runs with none), as for claims.
    pub environment: Option<String>,
}

/// A claimed delivery: send it, then [`Outbox::finish_delivery`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub settlement: Settlement,
    pub consumer: String,
    /// 1 for the first attempt; counts claims, so an attempt cut short by a crash counts too.
    pub attempt: u32,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    Delivered,
    /// Failed; try again at `at_ms`.
    Retry {
        at_ms: i64,
        error: String,
    },
    /// Failed for good (too many attempts, too old, or refused for ever); never sent again.
    GaveUp {
        error: String,
    },
}

impl DeliveryOutcome {
    pub(crate) fn params(&self) -> (&'static str, Option<i64>, Option<&str>) {
        match self {
            Self::Delivered => ("delivered", None, None),
            Self::Retry { at_ms, error } => ("retry", Some(*at_ms), Some(error)),
            Self::GaveUp { error } => ("gave_up", None, Some(error)),
        }
    }
}

/// Where one consumer's delivery of a row stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryState {
    pub consumer: String,
    pub attempts: u32,
    pub next_attempt_at_ms: i64,
    pub delivered_at_ms: Option<i64>,
    pub gave_up_at_ms: Option<i64>,
    pub last_error: Option<String>,
}

/// A run's outbox row with its deliveries so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    pub seq: i64,
    pub status: RunStatus,
    pub at_ms: i64,
    pub deliveries: Vec<DeliveryState>,
}

/// Deliveries of settlements, for consumers outside the engine.
#[async_trait]
pub trait Outbox: Send + Sync + fmt::Debug {
    /// Leases up to `limit` rows `lease.consumer` has not finished and nobody is sending, oldest
    /// first, counting an attempt for each. A row is leased to one claimer at a time.
    async fn claim_deliveries(
        &self,
        lease: &DeliveryLease,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<Delivery>, JournalError>;

    /// Records how an attempt ended; false (nothing recorded) when `owner` no longer holds it.
    async fn finish_delivery(
        &self,
        delivery: &Delivery,
        owner: &str,
        now_ms: i64,
        outcome: &DeliveryOutcome,
    ) -> Result<bool, JournalError>;

    /// A run's outbox rows and their deliveries, in event order.
    async fn outbox_of_run(&self, run_id: Uuid) -> Result<Vec<OutboxEntry>, JournalError>;
}

pub(crate) fn attempt_count(n: i64) -> Result<u32, JournalError> {
    u32::try_from(n).map_err(|_| JournalError::Corrupt(format!("delivery attempts {n}")))
}

/// Folds joined rows (one per row and consumer, consumer `None` when there is no delivery yet).
pub(crate) fn group_entries(
    rows: Vec<(i64, RunStatus, i64, Option<DeliveryState>)>,
) -> Vec<OutboxEntry> {
    let mut entries: Vec<OutboxEntry> = Vec::new();
    for (seq, status, at_ms, delivery) in rows {
        if entries.last().is_none_or(|e| e.seq != seq) {
            entries.push(OutboxEntry {
                seq,
                status,
                at_ms,
                deliveries: Vec::new(),
            });
        }
        if let (Some(entry), Some(d)) = (entries.last_mut(), delivery) {
            entry.deliveries.push(d);
        }
    }
    entries
}
