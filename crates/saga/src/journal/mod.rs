//! The journal: append-only, sequence-numbered events per run, plus a small `runs` row per
//! run that projects what workers need to find work (status, timer, lease) without reading
//! events. Every write by a worker is fenced by its lease generation.
//!
//! Every event that settles a run also writes an outbox row in the same transaction (see
//! [`Outbox`]), for consumers that tell the outside world.
//!
//! Two implementations share this trait: [`SqliteJournal`] (one process) and
//! [`PostgresJournal`] (several worker processes). Their SQL lives in `sql/<backend>/`.

mod group_commit;
mod lane;
mod outbox;
mod postgres;
mod sqlite;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;
use uuid::Uuid;

use crate::event::{EventRecord, RunEvent, RunStatus};

pub use lane::interactive;
pub use outbox::{
    Delivery, DeliveryLease, DeliveryOutcome, DeliveryState, Outbox, OutboxEntry, Settlement,
    settled_status,
};
pub use postgres::{INTERACTIVE_APPLICATION_NAME, PostgresJournal};
pub use sqlite::SqliteJournal;

#[derive(Debug, Clone, thiserror::Error)]
pub enum JournalError {
    /// Fencing: the writer's lease generation is stale (or it no longer owns the run).
    #[error(
        "write refused: run {run_id} is no longer leased to this worker under generation {generation}"
    )]
    Fenced { run_id: Uuid, generation: i64 },
    /// A guarded append was refused because an operator command waits for the owner.
    #[error("run {run_id} has a pending {command:?} command")]
    CommandPending { run_id: Uuid, command: Command },
    #[error("run {0} not found")]
    NotFound(Uuid),
    #[error("run {run_id} is {status}; this needs it to be one of: {allowed}")]
    WrongState {
        run_id: Uuid,
        status: RunStatus,
        allowed: String,
    },
    #[error("journal database error: {0}")]
    Database(#[source] Arc<sqlx::Error>),
    #[error("journal holds data this build cannot read: {0}")]
    Corrupt(String),
    #[error("journal unavailable: {0}")]
    Unavailable(String),
}

impl JournalError {
    /// Whether the same operation may succeed if tried again later, with nothing changed on
    /// this side: the server restarting or not reachable, a connection cut, the pool's wait
    /// running out, the database busy or shutting down, its disk full (once space is freed).
    /// Fencing, missing runs, refused states, corrupt data and a stopped writer are not.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Database(e) => transient_database(e),
            Self::Fenced { .. }
            | Self::CommandPending { .. }
            | Self::NotFound(_)
            | Self::WrongState { .. }
            | Self::Corrupt(_)
            | Self::Unavailable(_) => false,
        }
    }

    /// The journal's storage is full (SQLite's `SQLITE_FULL`, PostgreSQL's `disk_full`):
    /// writes fail until space is freed, reads still work.
    pub fn is_disk_full(&self) -> bool {
        let Self::Database(e) = self else {
            return false;
        };
        let sqlx::Error::Database(db) = e.as_ref() else {
            return false;
        };
        if let Some(sqlite) = db.try_downcast_ref::<sqlx::sqlite::SqliteError>() {
            return sqlite_primary_code(sqlite) == Some(SQLITE_FULL);
        }
        db.code().as_deref() == Some(PG_DISK_FULL)
    }
}

/// SQLite's primary result codes a retry can get past: busy, locked, full.
const SQLITE_BUSY: i32 = 5;
const SQLITE_LOCKED: i32 = 6;
const SQLITE_FULL: i32 = 13;
const PG_DISK_FULL: &str = "53100";

/// PostgreSQL's SQLSTATEs a retry can get past: the server shutting down, starting up or
/// out of connections, serialization conflicts. Class 08 (connection exceptions) is too.
const PG_TRANSIENT: &[&str] = &[
    "57P01", // admin_shutdown
    "57P02", // crash_shutdown
    "57P03", // cannot_connect_now
    "53300", // too_many_connections
    PG_DISK_FULL,
    "40001", // serialization_failure
    "40P01", // deadlock_detected
];

fn sqlite_primary_code(e: &sqlx::sqlite::SqliteError) -> Option<i32> {
    // The code is SQLite's extended result code; its low byte is the primary one.
    sqlx::error::DatabaseError::code(e)
        .and_then(|c| c.parse::<i32>().ok())
        .map(|c| c & 0xff)
}

fn transient_database(e: &sqlx::Error) -> bool {
    match e {
        // A PostgreSQL connection refused, reset or cut mid-answer (SQLite reports its own
        // I/O failures as database errors, not as these).
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => true,
        sqlx::Error::Database(db) => {
            if let Some(sqlite) = db.try_downcast_ref::<sqlx::sqlite::SqliteError>() {
                return matches!(
                    sqlite_primary_code(sqlite),
                    Some(SQLITE_BUSY | SQLITE_LOCKED | SQLITE_FULL)
                );
            }
            db.code()
                .is_some_and(|code| code.starts_with("08") || PG_TRANSIENT.contains(&&*code))
        }
        _ => false,
    }
}

impl From<sqlx::Error> for JournalError {
    fn from(e: sqlx::Error) -> Self {
        Self::Database(Arc::new(e))
    }
}

/// Who holds (or asks for) a lease, and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRequest {
    pub worker: String,
    pub lease_ms: i64,
    /// Claims take only runs started in this environment (`None`: runs with none).
    pub environment: Option<String>,
}

/// A run to insert. With `claim`, the new run is leased to that worker in the same write,
/// and `events` (the owner's first events, after `run_created`) are written with it.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub id: Uuid,
    pub saga: String,
    pub version: u32,
    pub idempotency_key: String,
    pub input: Value,
    pub now_ms: i64,
    pub claim: Option<LeaseRequest>,
    pub events: Vec<RunEvent>,
    /// The status after `events` (`queued` when there are none).
    pub status: RunStatus,
    /// The environment the run belongs to; only workers of it claim the run.
    pub environment: Option<String>,
}

impl NewRun {
    /// `run_created` followed by the initial events: what the journal stores, from seq 1.
    pub(crate) fn all_events(&self) -> Vec<RunEvent> {
        let mut all = Vec::with_capacity(self.events.len() + 1);
        all.push(RunEvent::RunCreated {
            saga: self.saga.clone(),
            version: self.version,
            idempotency_key: self.idempotency_key.clone(),
        });
        all.extend(self.events.iter().cloned());
        all
    }

    pub(crate) fn row(
        &self,
        owner: Option<String>,
        generation: i64,
        expires: Option<i64>,
    ) -> RunRow {
        RunRow {
            id: self.id,
            saga: self.saga.clone(),
            version: self.version,
            idempotency_key: self.idempotency_key.clone(),
            input: self.input.clone(),
            status: self.status,
            created_at_ms: self.now_ms,
            updated_at_ms: self.now_ms,
            last_seq: 1 + i64::try_from(self.events.len()).unwrap_or(0),
            wake_at_ms: Some(self.now_ms),
            lease_owner: owner,
            lease_generation: generation,
            lease_expires_at_ms: expires,
            pending_command: None,
            environment: self.environment.clone(),
        }
    }
}

/// The projected row of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRow {
    pub id: Uuid,
    pub saga: String,
    pub version: u32,
    pub idempotency_key: String,
    pub input: Value,
    pub status: RunStatus,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub last_seq: i64,
    pub wake_at_ms: Option<i64>,
    pub lease_owner: Option<String>,
    pub lease_generation: i64,
    pub lease_expires_at_ms: Option<i64>,
    pub pending_command: Option<Command>,
    /// The environment the run was started in (see [`NewRun::environment`]).
    pub environment: Option<String>,
}

#[derive(Debug, Clone)]
pub enum CreateOutcome {
    /// Inserted; `run_created` has sequence 1.
    Created(RunRow),
    /// A run with this idempotency key already exists.
    Existing(RunRow),
}

/// An operator request a worker must act on between steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Pause,
    Cancel,
}

impl Command {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Pause => "pause",
            Self::Cancel => "cancel",
        }
    }
    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "pause" => Some(Self::Pause),
            "cancel" => Some(Self::Cancel),
            _ => None,
        }
    }
}

/// What an append does to the run's timer (`wake_at`, when a worker should pick it up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    Keep,
    /// Not runnable until an operator command.
    Never,
    At(i64),
    /// The earlier of the current timer and this time; stays unset if unset.
    Hasten(i64),
}

/// What an append does to the run's pending operator command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PendingChange {
    Keep,
    Clear,
    /// Cancel is never downgraded to pause.
    Set(Command),
}

/// Who writes, and the check the journal makes before accepting the write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Writer {
    /// A worker under its lease: refused unless it still owns the run under `generation`.
    Lease { worker: String, generation: i64 },
    /// An operator command: refused unless the run's status is one of `allowed_from`.
    Operator { allowed_from: Vec<RunStatus> },
}

#[derive(Debug, Clone)]
pub struct Append {
    pub run_id: Uuid,
    pub writer: Writer,
    pub now_ms: i64,
    pub events: Vec<RunEvent>,
    pub status: Option<RunStatus>,
    pub wake: Wake,
    /// Give the lease up in the same write.
    pub release: bool,
    pub pending: PendingChange,
    /// Refuse the append (with [`JournalError::CommandPending`]) if an operator command is
    /// pending: used when the append starts new steps, so pause and cancel land between steps.
    pub guard_commands: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendReceipt {
    /// Sequence number of the first appended event; the rest follow consecutively.
    pub first_seq: i64,
    /// The operator command waiting for the owner, if any.
    pub pending: Option<Command>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Claim {
    pub run_id: Uuid,
    pub generation: i64,
    /// The run was held by a worker whose lease expired (it stopped without handing it
    /// back), as far as the backend can tell; false for renewals and fresh claims.
    pub took_over: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunFilter {
    pub status: Option<RunStatus>,
    pub saga: Option<String>,
    /// Only runs whose id sorts after this one (ids are UUIDv7, so this pages by age).
    pub after: Option<Uuid>,
    pub limit: u32,
    /// Newest first, and only runs whose id sorts before this one (`after` is then ignored):
    /// keyset paging that stays stable while new runs arrive.
    pub newest_first: bool,
    pub before: Option<Uuid>,
    /// Only runs whose idempotency key matches this SQL `LIKE` pattern (newest-first listings
    /// only); the caller keeps `%` and `_` out of the parts it did not mean as wildcards.
    pub key_like: Option<String>,
}

/// Storage for runs and their events.
#[async_trait]
pub trait Journal: Send + Sync + fmt::Debug + 'static {
    /// Inserts a run and its `run_created` event, or returns the run holding the key.
    async fn create_run(&self, run: NewRun) -> Result<CreateOutcome, JournalError>;

    /// Appends events atomically, updating the run's projection, after the writer's check.
    async fn append(&self, append: Append) -> Result<AppendReceipt, JournalError>;

    /// Leases up to `limit` runs of `lease.environment` whose timer is due and whose lease is
    /// free or expired.
    async fn claim(
        &self,
        lease: &LeaseRequest,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<Claim>, JournalError>;

    /// Extends the leases in `held`; returns those `lease.worker` still holds.
    async fn renew(
        &self,
        lease: &LeaseRequest,
        held: &[Claim],
        now_ms: i64,
    ) -> Result<Vec<Claim>, JournalError>;

    async fn run(&self, run_id: Uuid) -> Result<Option<RunRow>, JournalError>;
    /// The run holding `key`, if any.
    async fn run_by_key(&self, key: &str) -> Result<Option<RunRow>, JournalError>;

    async fn events_since(
        &self,
        run_id: Uuid,
        after_seq: i64,
    ) -> Result<Vec<EventRecord>, JournalError>;

    async fn list(&self, filter: &RunFilter) -> Result<Vec<RunRow>, JournalError>;

    /// The journal's outbox of settlements, written with the events that settle runs; `None`
    /// for a journal that keeps none.
    fn outbox(&self) -> Option<&dyn Outbox> {
        None
    }

    /// Opens now what the journal would otherwise open on first use (a PostgreSQL journal's
    /// pooled connections and their prepared reads), so that a long-running process's first
    /// requests do not wait for it. Returns how many connections are open; journals with
    /// nothing to open return 0.
    async fn warm_up(&self) -> Result<usize, JournalError> {
        Ok(0)
    }
}

pub(crate) fn decode_event(
    run_id: Uuid,
    seq: i64,
    at_ms: i64,
    body: &str,
) -> Result<EventRecord, JournalError> {
    let event = serde_json::from_str(body)
        .map_err(|e| JournalError::Corrupt(format!("event {run_id}/{seq}: {e}")))?;
    Ok(EventRecord {
        run_id,
        seq,
        at_ms,
        event,
    })
}

pub(crate) fn encode_event(event: &RunEvent) -> Result<String, JournalError> {
    serde_json::to_string(event).map_err(|e| JournalError::Corrupt(e.to_string()))
}

/// Events as one JSON array, in order.
pub(crate) fn encode_events(events: &[RunEvent]) -> Result<String, JournalError> {
    serde_json::to_string(events).map_err(|e| JournalError::Corrupt(e.to_string()))
}

pub(crate) fn decode_status(s: &str) -> Result<RunStatus, JournalError> {
    s.parse()
        .map_err(|e: crate::event::UnknownStatus| JournalError::Corrupt(e.to_string()))
}

pub(crate) fn decode_input(s: &str) -> Result<Value, JournalError> {
    serde_json::from_str(s).map_err(|e| JournalError::Corrupt(format!("run input: {e}")))
}

/// The textual form of a wake change, as the SQL expects it: (mode, time).
pub(crate) fn wake_params(wake: Wake) -> (&'static str, Option<i64>) {
    match wake {
        Wake::Keep => ("keep", None),
        Wake::Never => ("never", None),
        Wake::At(t) => ("at", Some(t)),
        Wake::Hasten(t) => ("hasten", Some(t)),
    }
}

pub(crate) fn pending_param(pending: PendingChange) -> &'static str {
    match pending {
        PendingChange::Keep => "keep",
        PendingChange::Clear => "clear",
        PendingChange::Set(c) => c.as_str(),
    }
}

/// Explains a fenced append that matched no row.
pub(crate) fn refusal(
    run_id: Uuid,
    worker: &str,
    generation: i64,
    row: Option<(Option<String>, i64, Option<String>)>,
) -> JournalError {
    match row {
        Some((Some(owner), current, Some(command))) if owner == worker && current == generation => {
            match Command::parse(&command) {
                Some(command) => JournalError::CommandPending { run_id, command },
                None => JournalError::Corrupt(format!("pending command `{command}`")),
            }
        }
        _ => JournalError::Fenced { run_id, generation },
    }
}

pub(crate) fn allowed_text(allowed: &[RunStatus]) -> String {
    allowed
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
