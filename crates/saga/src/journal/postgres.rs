//! The PostgreSQL journal: several worker processes share it. Claims use
//! `FOR UPDATE SKIP LOCKED` so workers never wait on each other's rows; writes are batched
//! per process by group commit, and fenced per run by lease generation.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, Row, Transaction};
use uuid::Uuid;

use super::group_commit::{BatchWriter, GroupCommitter, WriteDone, WriteOp, unexpected};
use super::lane;
use super::outbox::{attempt_count, group_entries, settlements};
use super::{
    Append, AppendReceipt, Claim, Command, CreateOutcome, Delivery, DeliveryLease, DeliveryOutcome,
    DeliveryState, Journal, JournalError, LeaseRequest, NewRun, Outbox, OutboxEntry, RunFilter,
    RunRow, Settlement, Writer, allowed_text, decode_event, decode_input, decode_status,
    encode_event, pending_param, refusal, wake_params,
};
use crate::event::{EventRecord, RunEvent, RunStatus};

/// Every statement this backend runs.
mod sql {
    pub(super) const MIGRATIONS: &[(i64, &str)] = &[
        (
            1,
            include_str!("../../sql/postgres/migrations/0001_journal.sql"),
        ),
        (
            2,
            include_str!("../../sql/postgres/migrations/0002_environment.sql"),
        ),
        (
            3,
            include_str!("../../sql/postgres/migrations/0003_outbox.sql"),
        ),
    ];
    pub(super) const MIGRATIONS_TABLE: &str =
        include_str!("../../sql/postgres/migrations_table.sql");
    pub(super) const MIGRATION_LOCK: &str = include_str!("../../sql/postgres/migration_lock.sql");
    pub(super) const MIGRATION_APPLIED: &str =
        include_str!("../../sql/postgres/migration_applied.sql");
    pub(super) const RECORD_MIGRATION: &str =
        include_str!("../../sql/postgres/record_migration.sql");
    pub(super) const INSERT_RUN: &str = include_str!("../../sql/postgres/insert_run.sql");
    pub(super) const INSERT_EVENTS: &str = include_str!("../../sql/postgres/insert_events.sql");
    pub(super) const APPEND_FENCED: &str = include_str!("../../sql/postgres/append_fenced.sql");
    pub(super) const APPEND_OPERATOR: &str = include_str!("../../sql/postgres/append_operator.sql");
    pub(super) const REFUSAL: &str = include_str!("../../sql/postgres/refusal.sql");
    pub(super) const RUN_STATUS_FOR_UPDATE: &str =
        include_str!("../../sql/postgres/run_status_for_update.sql");
    pub(super) const SELECT_RUN: &str = include_str!("../../sql/postgres/select_run.sql");
    pub(super) const SELECT_RUN_BY_KEY: &str =
        include_str!("../../sql/postgres/select_run_by_key.sql");
    pub(super) const LIST_RUNS: &str = include_str!("../../sql/postgres/list_runs.sql");
    pub(super) const LIST_RUNS_NEWEST: &str =
        include_str!("../../sql/postgres/list_runs_newest.sql");
    pub(super) const EVENTS_SINCE: &str = include_str!("../../sql/postgres/events_since.sql");
    pub(super) const CLAIM: &str = include_str!("../../sql/postgres/claim.sql");
    pub(super) const RENEW: &str = include_str!("../../sql/postgres/renew.sql");
    pub(super) const RENEW_FREE: &str = include_str!("../../sql/postgres/renew_free.sql");
    pub(super) const LOCK_RUNS: &str = include_str!("../../sql/postgres/lock_runs.sql");
    pub(super) const OUTBOX_INSERT: &str = include_str!("../../sql/postgres/outbox_insert.sql");
    pub(super) const OUTBOX_DUE: &str = include_str!("../../sql/postgres/outbox_due.sql");
    pub(super) const OUTBOX_CLAIM: &str = include_str!("../../sql/postgres/outbox_claim.sql");
    pub(super) const OUTBOX_FINISH: &str = include_str!("../../sql/postgres/outbox_finish.sql");
    pub(super) const OUTBOX_OF_RUN: &str = include_str!("../../sql/postgres/outbox_of_run.sql");
}

/// Commit loops per process: while one batch commits, the next gathers and commits beside it.
const WRITERS: usize = 4;

/// Connections per process: the commit loops' (one each, a pool of their own) and the
/// readers' (recovery, step lookups, the CLI).
const MAX_CONNECTIONS: u32 = 12;

/// The interactive lane's commit loops and connections (its readers have the rest), apart
/// from the workers' so an API request never waits behind their batches. Opened only when
/// a request first needs one (or by `warm_up`): worker processes never open them.
const INTERACTIVE_WRITERS: usize = 2;
const INTERACTIVE_CONNECTIONS: u32 = 4;
/// The interactive lane's connections are named so on the server (`pg_stat_activity`).
pub const INTERACTIVE_APPLICATION_NAME: &str = "saga journal, interactive lane";

/// Renewals that leave busy rows to try again before the last, which waits for them.
const BUSY_RENEWAL_PASSES: usize = 2;

/// Callers wait this long for a pooled connection before the call fails.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct PostgresJournal {
    /// The workers' lane's readers.
    pool: PgPool,
    /// Its commit loops' connections, apart from the readers': a worker that claims ten
    /// thousand runs reads each back, and a write (a lease renewal) queued behind those reads
    /// for a connection would land after the leases had lapsed.
    write_pool: PgPool,
    committer: GroupCommitter,
    interactive_pool: PgPool,
    interactive_committer: GroupCommitter,
}

impl PostgresJournal {
    /// Connects to `url` and migrates the journal tables (safe with concurrent callers).
    pub async fn connect(url: &str) -> Result<Self, JournalError> {
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS - WRITERS as u32)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            // sqlx checks every connection it hands out with a round trip (the default, kept):
            // skipping the check for recently used ones handed dead connections out after the
            // journal's server restarted, and a batch took the failed read as the run's end.
            .connect(url)
            .await?;
        Self::from_pool(pool).await
    }

    pub async fn from_pool(pool: PgPool) -> Result<Self, JournalError> {
        migrate(&pool).await?;
        // Same server and settings as `pool` (which also decides whether connections are
        // checked before use); connections open on first use.
        let interactive_pool = PgPoolOptions::new()
            .max_connections(INTERACTIVE_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .test_before_acquire(pool.options().get_test_before_acquire())
            .connect_lazy_with(
                pool.connect_options()
                    .as_ref()
                    .clone()
                    .application_name(INTERACTIVE_APPLICATION_NAME),
            );
        let write_pool = PgPoolOptions::new()
            .max_connections(WRITERS as u32)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .test_before_acquire(pool.options().get_test_before_acquire())
            .connect_lazy_with(pool.connect_options().as_ref().clone());
        let writers = |pool: &PgPool, count: usize, user: &'static str| {
            (0..count)
                .map(|_| PostgresWriter {
                    pool: pool.clone(),
                    user,
                })
                .collect()
        };
        Ok(Self {
            committer: GroupCommitter::spawn(writers(&write_pool, WRITERS, "writer")),
            write_pool,
            interactive_committer: GroupCommitter::spawn(writers(
                &interactive_pool,
                INTERACTIVE_WRITERS,
                "interactive_writer",
            )),
            pool,
            interactive_pool,
        })
    }
}

impl PostgresJournal {
    /// Transactions this journal has committed (each may hold many runs' writes).
    pub fn commits(&self) -> u64 {
        self.committer.commits() + self.interactive_committer.commits()
    }

    /// The pool of the calling task's lane (see [`super::interactive`]).
    fn read_pool(&self) -> &PgPool {
        if lane::is_interactive() {
            &self.interactive_pool
        } else {
            &self.pool
        }
    }

    /// The commit loops of the calling task's lane.
    fn committer(&self) -> &GroupCommitter {
        if lane::is_interactive() {
            &self.interactive_committer
        } else {
            &self.committer
        }
    }

    /// A pooled connection for one read, the wait for it measured apart from the query.
    async fn reader(&self) -> Result<PoolConnection<Postgres>, JournalError> {
        let waiting = Instant::now();
        let connection = self.read_pool().acquire().await?;
        let user = if lane::is_interactive() {
            "interactive_read"
        } else {
            "read"
        };
        crate::measure::journal_pool_wait(user, waiting.elapsed());
        Ok(connection)
    }
}

async fn migrate(pool: &PgPool) -> Result<(), JournalError> {
    let mut tx = pool.begin().await?;
    sqlx::query(sql::MIGRATION_LOCK).execute(&mut *tx).await?;
    sqlx::query(sql::MIGRATIONS_TABLE).execute(&mut *tx).await?;
    for &(version, script) in sql::MIGRATIONS {
        let applied: i64 = sqlx::query_scalar(sql::MIGRATION_APPLIED)
            .bind(version)
            .fetch_one(&mut *tx)
            .await?;
        if applied == 0 {
            sqlx::raw_sql(script).execute(&mut *tx).await?;
            sqlx::query(sql::RECORD_MIGRATION)
                .bind(version)
                .bind(crate::clock::now_ms())
                .execute(&mut *tx)
                .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

fn run_row(row: &PgRow) -> Result<RunRow, JournalError> {
    let input: String = row.try_get("input")?;
    let status: String = row.try_get("status")?;
    let version: i64 = row.try_get("saga_version")?;
    let pending: Option<String> = row.try_get("pending_command")?;
    Ok(RunRow {
        id: row.try_get("id")?,
        saga: row.try_get("saga_name")?,
        version: u32::try_from(version)
            .map_err(|_| JournalError::Corrupt(format!("saga version {version}")))?,
        idempotency_key: row.try_get("idempotency_key")?,
        input: decode_input(&input)?,
        status: decode_status(&status)?,
        created_at_ms: row.try_get("created_at")?,
        updated_at_ms: row.try_get("updated_at")?,
        last_seq: row.try_get("last_seq")?,
        wake_at_ms: row.try_get("wake_at")?,
        lease_owner: row.try_get("lease_owner")?,
        lease_generation: row.try_get("lease_generation")?,
        lease_expires_at_ms: row.try_get("lease_expires_at")?,
        pending_command: pending.as_deref().and_then(Command::parse),
        environment: row.try_get("environment")?,
    })
}

fn leases(rows: &[PgRow]) -> Result<Vec<Claim>, JournalError> {
    rows.iter()
        .map(|r| {
            Ok(Claim {
                run_id: r.try_get(0)?,
                generation: r.try_get(1)?,
                // Only the claim query says; renewals have no such column.
                took_over: r.try_get::<bool, _>(2).unwrap_or(false),
            })
        })
        .collect()
}

struct PostgresWriter {
    pool: PgPool,
    /// The pool-wait metric's label: which lane's commit loop this is.
    user: &'static str,
}

type Tx = Transaction<'static, Postgres>;

async fn insert_events(
    tx: &mut Tx,
    run_id: Uuid,
    first_seq: i64,
    at: i64,
    events: &[RunEvent],
) -> Result<(), JournalError> {
    let seqs: Vec<i64> = (first_seq..).take(events.len()).collect();
    let kinds: Vec<&str> = events.iter().map(RunEvent::kind).collect();
    let bodies = events
        .iter()
        .map(encode_event)
        .collect::<Result<Vec<_>, _>>()?;
    sqlx::query(sql::INSERT_EVENTS)
        .bind(run_id)
        .bind(at)
        .bind(seqs)
        .bind(kinds)
        .bind(bodies)
        .execute(&mut **tx)
        .await?;
    // In the events' own transaction: the settlement and its notification stand or fall together.
    for (seq, status) in settlements(first_seq, events) {
        sqlx::query(sql::OUTBOX_INSERT)
            .bind(run_id)
            .bind(seq)
            .bind(status.as_str())
            .bind(at)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

async fn claim_deliveries(
    tx: &mut Tx,
    lease: &DeliveryLease,
    now_ms: i64,
    limit: u32,
) -> Result<Vec<Delivery>, JournalError> {
    let due = sqlx::query(sql::OUTBOX_DUE)
        .bind(&lease.consumer)
        .bind(now_ms)
        .bind(i64::from(limit))
        .bind(lease.environment.as_deref())
        .fetch_all(&mut **tx)
        .await?;
    let mut claimed = Vec::with_capacity(due.len());
    // In the order read (oldest first), which every claimer shares: no two wait on each other.
    for row in &due {
        let run_id: Uuid = row.try_get(0)?;
        let seq: i64 = row.try_get(1)?;
        let attempts: Option<i64> = sqlx::query_scalar(sql::OUTBOX_CLAIM)
            .bind(run_id)
            .bind(seq)
            .bind(&lease.consumer)
            .bind(&lease.owner)
            .bind(now_ms)
            .bind(lease.lease_ms)
            .fetch_optional(&mut **tx)
            .await?;
        let Some(attempts) = attempts else { continue };
        let status: String = row.try_get(2)?;
        claimed.push(Delivery {
            settlement: Settlement {
                run_id,
                seq,
                status: decode_status(&status)?,
                at_ms: row.try_get(3)?,
                saga: row.try_get(4)?,
                idempotency_key: row.try_get(5)?,
            },
            consumer: lease.consumer.clone(),
            attempt: attempt_count(attempts)?,
        });
    }
    Ok(claimed)
}

async fn finish_delivery(
    tx: &mut Tx,
    delivery: &Delivery,
    owner: &str,
    now_ms: i64,
    outcome: &DeliveryOutcome,
) -> Result<bool, JournalError> {
    let (kind, retry_at, error) = outcome.params();
    let recorded: Option<i64> = sqlx::query_scalar(sql::OUTBOX_FINISH)
        .bind(delivery.settlement.run_id)
        .bind(delivery.settlement.seq)
        .bind(&delivery.consumer)
        .bind(owner)
        .bind(i64::from(delivery.attempt))
        .bind(kind)
        .bind(retry_at)
        .bind(now_ms)
        .bind(error)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(recorded.is_some())
}

async fn create(tx: &mut Tx, run: &NewRun) -> Result<WriteDone, JournalError> {
    let (owner, generation, expires) = match &run.claim {
        Some(l) => (Some(l.worker.clone()), 1_i64, Some(run.now_ms + l.lease_ms)),
        None => (None, 0, None),
    };
    let input =
        serde_json::to_string(&run.input).map_err(|e| JournalError::Corrupt(e.to_string()))?;
    let inserted = sqlx::query(sql::INSERT_RUN)
        .bind(run.id)
        .bind(&run.saga)
        .bind(i64::from(run.version))
        .bind(&run.idempotency_key)
        .bind(&input)
        .bind(run.now_ms)
        .bind(&owner)
        .bind(generation)
        .bind(expires)
        .bind(run.status.as_str())
        .bind(run.row(None, 0, None).last_seq)
        .bind(run.environment.as_deref())
        .fetch_optional(&mut **tx)
        .await?;
    if inserted.is_none() {
        let row = sqlx::query(sql::SELECT_RUN_BY_KEY)
            .bind(&run.idempotency_key)
            .fetch_one(&mut **tx)
            .await?;
        return Ok(WriteDone::Created(CreateOutcome::Existing(run_row(&row)?)));
    }
    insert_events(tx, run.id, 1, run.now_ms, &run.all_events()).await?;
    Ok(WriteDone::Created(CreateOutcome::Created(
        run.row(owner, generation, expires),
    )))
}

async fn append(tx: &mut Tx, a: &Append) -> Result<WriteDone, JournalError> {
    let count = i64::try_from(a.events.len())
        .map_err(|_| JournalError::Corrupt("too many events".into()))?;
    let (statement, generation, owner) = match &a.writer {
        Writer::Lease { worker, generation } => {
            (sql::APPEND_FENCED, Some(*generation), Some(worker.as_str()))
        }
        Writer::Operator { allowed_from } => {
            let status: Option<String> = sqlx::query_scalar(sql::RUN_STATUS_FOR_UPDATE)
                .bind(a.run_id)
                .fetch_optional(&mut **tx)
                .await?;
            let status = decode_status(&status.ok_or(JournalError::NotFound(a.run_id))?)?;
            if !allowed_from.contains(&status) {
                return Err(JournalError::WrongState {
                    run_id: a.run_id,
                    status,
                    allowed: allowed_text(allowed_from),
                });
            }
            (sql::APPEND_OPERATOR, None, None)
        }
    };
    let (wake_mode, wake_at) = wake_params(a.wake);
    let row = sqlx::query(statement)
        .bind(a.run_id)
        .bind(generation)
        .bind(count)
        .bind(a.status.map(RunStatus::as_str))
        .bind(wake_mode)
        .bind(wake_at)
        .bind(a.release)
        .bind(pending_param(a.pending))
        .bind(a.now_ms)
        .bind(owner)
        .bind(a.guard_commands)
        .fetch_optional(&mut **tx)
        .await?;
    let Some(row) = row else {
        return Err(match &a.writer {
            Writer::Lease { worker, generation } => {
                let why = sqlx::query(sql::REFUSAL)
                    .bind(a.run_id)
                    .fetch_optional(&mut **tx)
                    .await?;
                let why = match why {
                    Some(r) => Some((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)),
                    None => None,
                };
                refusal(a.run_id, worker, *generation, why)
            }
            Writer::Operator { .. } => JournalError::NotFound(a.run_id),
        });
    };
    let last_seq: i64 = row.try_get(0)?;
    let pending: Option<String> = row.try_get(1)?;
    let first_seq = last_seq - count + 1;
    if !a.events.is_empty() {
        insert_events(tx, a.run_id, first_seq, a.now_ms, &a.events).await?;
    }
    Ok(WriteDone::Appended(AppendReceipt {
        first_seq,
        pending: pending.as_deref().and_then(Command::parse),
    }))
}

async fn apply(tx: &mut Tx, op: &WriteOp) -> Result<WriteDone, JournalError> {
    match op {
        WriteOp::Create(run) => create(tx, run).await,
        WriteOp::Append(a) => append(tx, a).await,
        WriteOp::Claim {
            lease,
            now_ms,
            limit,
        } => {
            let rows = sqlx::query(sql::CLAIM)
                .bind(&lease.worker)
                .bind(now_ms)
                .bind(lease.lease_ms)
                .bind(i64::from(*limit))
                .bind(lease.environment.as_deref())
                .fetch_all(&mut **tx)
                .await?;
            Ok(WriteDone::Leases(leases(&rows)?))
        }
        WriteOp::Renew {
            lease,
            held,
            now_ms,
            skip_busy,
        } => {
            let ids: Vec<Uuid> = held.iter().map(|c| c.run_id).collect();
            let generations: Vec<i64> = held.iter().map(|c| c.generation).collect();
            let rows = sqlx::query(if *skip_busy {
                sql::RENEW_FREE
            } else {
                sql::RENEW
            })
            .bind(&lease.worker)
            .bind(now_ms)
            .bind(lease.lease_ms)
            .bind(ids)
            .bind(generations)
            .fetch_all(&mut **tx)
            .await?;
            if !*skip_busy {
                return Ok(WriteDone::Leases(leases(&rows)?));
            }
            let mut renewed = Vec::with_capacity(rows.len());
            let mut busy = Vec::new();
            for row in &rows {
                let claim = Claim {
                    run_id: row.try_get(0)?,
                    generation: row.try_get(1)?,
                    took_over: false,
                };
                if row.try_get::<bool, _>(2)? {
                    busy.push(claim);
                } else {
                    renewed.push(claim);
                }
            }
            Ok(WriteDone::Renewed { renewed, busy })
        }
        WriteOp::ClaimDeliveries {
            lease,
            now_ms,
            limit,
        } => Ok(WriteDone::Deliveries(
            claim_deliveries(tx, lease, *now_ms, *limit).await?,
        )),
        WriteOp::FinishDelivery {
            delivery,
            owner,
            now_ms,
            outcome,
        } => Ok(WriteDone::Finished(
            finish_delivery(tx, delivery, owner, *now_ms, outcome).await?,
        )),
    }
}

/// The order a batch's writes are applied in. The rows of the runs they write are locked
/// before any of them, by [`runs_written`].
fn lock_order(op: &WriteOp) -> (u8, String) {
    match op {
        WriteOp::Create(run) => (0, run.id.to_string()),
        WriteOp::Append(a) => (0, a.run_id.to_string()),
        WriteOp::Renew { .. } => (1, String::new()),
        WriteOp::Claim { .. } => (2, String::new()),
        // Last: a delivery claim may wait for another process's claim of the same row.
        WriteOp::ClaimDeliveries { .. } | WriteOp::FinishDelivery { .. } => (3, String::new()),
    }
}

/// The runs whose rows a batch's appends and renewals write. A transaction locks them all
/// first, in one statement and in id order: locked as each write came to them, two batches
/// (of this process's commit loops or of two processes) that both append to some runs and
/// renew others could each hold a row the other waits for, and PostgreSQL would only break
/// the cycle after its deadlock timeout, failing one batch whole.
fn runs_written(ops: &[WriteOp]) -> Vec<Uuid> {
    let mut runs = Vec::new();
    for op in ops {
        match op {
            WriteOp::Append(append) => runs.push(append.run_id),
            WriteOp::Renew {
                held,
                skip_busy: false,
                ..
            } => runs.extend(held.iter().map(|claim| claim.run_id)),
            // It never waits for a row, so it cannot close a cycle of waits.
            WriteOp::Renew {
                skip_busy: true, ..
            } => {}
            // New rows, rows skipped when locked, and the outbox's own rows.
            WriteOp::Create(_)
            | WriteOp::Claim { .. }
            | WriteOp::ClaimDeliveries { .. }
            | WriteOp::FinishDelivery { .. } => {}
        }
    }
    runs
}

/// Deadlock or serialisation failure: the whole batch can simply be tried again.
fn worth_retrying(e: &JournalError) -> bool {
    match e {
        JournalError::Database(e) => e
            .as_database_error()
            .and_then(|d| d.code())
            .is_some_and(|code| code == "40P01" || code == "40001"),
        _ => false,
    }
}

impl PostgresWriter {
    async fn try_batch(
        &self,
        ops: &[WriteOp],
        order: &[usize],
    ) -> Result<Vec<Result<WriteDone, JournalError>>, JournalError> {
        let waiting = Instant::now();
        let mut tx = self.pool.begin().await?;
        // Includes the BEGIN round trip, which is small beside a wait for a connection.
        crate::measure::journal_pool_wait(self.user, waiting.elapsed());
        let runs = runs_written(ops);
        if !runs.is_empty() {
            sqlx::query(sql::LOCK_RUNS)
                .bind(&runs)
                .execute(&mut *tx)
                .await?;
        }
        let mut outcomes: Vec<Option<Result<WriteDone, JournalError>>> =
            ops.iter().map(|_| None).collect();
        for &i in order {
            match apply(&mut tx, &ops[i]).await {
                // PostgreSQL aborts the transaction on a failed statement: the batch is lost.
                Err(e @ (JournalError::Database(_) | JournalError::Corrupt(_))) => return Err(e),
                outcome => outcomes[i] = Some(outcome),
            }
        }
        tx.commit().await?;
        Ok(outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Err(JournalError::Unavailable("write skipped".into()))))
            .collect())
    }
}

#[async_trait]
impl BatchWriter for PostgresWriter {
    async fn write_batch(
        &mut self,
        ops: &[WriteOp],
    ) -> Result<Vec<Result<WriteDone, JournalError>>, JournalError> {
        let mut order: Vec<usize> = (0..ops.len()).collect();
        order.sort_by_key(|&i| lock_order(&ops[i]));
        let mut tries = 0;
        loop {
            match self.try_batch(ops, &order).await {
                Err(e) if tries < 3 && worth_retrying(&e) => tries += 1,
                outcome => return outcome,
            }
        }
    }
}

#[async_trait]
impl Journal for PostgresJournal {
    async fn create_run(&self, run: NewRun) -> Result<CreateOutcome, JournalError> {
        match self.committer().submit(WriteOp::Create(run)).await? {
            WriteDone::Created(c) => Ok(c),
            other => Err(unexpected(other)),
        }
    }

    async fn append(&self, append: Append) -> Result<AppendReceipt, JournalError> {
        match self.committer().submit(WriteOp::Append(append)).await? {
            WriteDone::Appended(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    async fn claim(
        &self,
        lease: &LeaseRequest,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<Claim>, JournalError> {
        let op = WriteOp::Claim {
            lease: lease.clone(),
            now_ms,
            limit,
        };
        match self.committer().submit(op).await? {
            WriteDone::Leases(l) => Ok(l),
            other => Err(unexpected(other)),
        }
    }

    async fn renew(
        &self,
        lease: &LeaseRequest,
        held: &[Claim],
        now_ms: i64,
    ) -> Result<Vec<Claim>, JournalError> {
        // A run's row is held by whatever transaction appends to it: a renewal that waited
        // for each of ten thousand rows in turn held the ones it had locked meanwhile, every
        // append behind it waited too, and a round took longer than the lease (api_bench
        // --inflight-runs). So it renews the free rows at once, tries the busy ones again
        // (their appends take milliseconds), and waits only for the last few.
        let mut renewed = Vec::with_capacity(held.len());
        let mut left = held.to_vec();
        for pass in 0..=BUSY_RENEWAL_PASSES {
            let skip_busy = pass < BUSY_RENEWAL_PASSES;
            let op = WriteOp::Renew {
                lease: lease.clone(),
                held: std::mem::take(&mut left),
                now_ms,
                skip_busy,
            };
            match self.committer().submit(op).await? {
                WriteDone::Renewed { renewed: r, busy } => {
                    renewed.extend(r);
                    left = busy;
                }
                WriteDone::Leases(r) => renewed.extend(r),
                other => return Err(unexpected(other)),
            }
            if left.is_empty() {
                break;
            }
        }
        Ok(renewed)
    }

    async fn run(&self, run_id: Uuid) -> Result<Option<RunRow>, JournalError> {
        let started = Instant::now();
        let row = sqlx::query(sql::SELECT_RUN)
            .bind(run_id)
            .fetch_optional(&mut *self.reader().await?)
            .await?;
        let row = row.as_ref().map(run_row).transpose();
        crate::measure::journal_read("run", started.elapsed());
        row
    }

    async fn run_by_key(&self, key: &str) -> Result<Option<RunRow>, JournalError> {
        let started = Instant::now();
        let row = sqlx::query(sql::SELECT_RUN_BY_KEY)
            .bind(key)
            .fetch_optional(&mut *self.reader().await?)
            .await?;
        let row = row.as_ref().map(run_row).transpose();
        crate::measure::journal_read("run_by_key", started.elapsed());
        row
    }

    async fn events_since(
        &self,
        run_id: Uuid,
        after_seq: i64,
    ) -> Result<Vec<EventRecord>, JournalError> {
        let started = Instant::now();
        let rows = sqlx::query(sql::EVENTS_SINCE)
            .bind(run_id)
            .bind(after_seq)
            .fetch_all(&mut *self.reader().await?)
            .await?;
        let events = rows
            .iter()
            .map(|r| {
                let body: String = r.try_get(2)?;
                decode_event(run_id, r.try_get(0)?, r.try_get(1)?, &body)
            })
            .collect();
        crate::measure::journal_read("events_since", started.elapsed());
        events
    }

    async fn list(&self, filter: &RunFilter) -> Result<Vec<RunRow>, JournalError> {
        if filter.newest_first {
            let rows = sqlx::query(sql::LIST_RUNS_NEWEST)
                .bind(filter.status.map(RunStatus::as_str))
                .bind(filter.saga.as_deref())
                .bind(filter.before)
                .bind(i64::from(filter.limit))
                .bind(filter.key_like.as_deref())
                .fetch_all(self.read_pool())
                .await?;
            return rows.iter().map(run_row).collect();
        }
        let rows = sqlx::query(sql::LIST_RUNS)
            .bind(filter.status.map(RunStatus::as_str))
            .bind(filter.saga.as_deref())
            .bind(filter.after)
            .bind(i64::from(filter.limit))
            .fetch_all(self.read_pool())
            .await?;
        rows.iter().map(run_row).collect()
    }

    fn outbox(&self) -> Option<&dyn Outbox> {
        Some(self)
    }

    /// Opening a connection costs a process fork on the server, and TLS when it is on: tens of
    /// milliseconds, more on a busy machine, which the request that finds the pool short would
    /// otherwise wait for. So every connection the pool may hold is opened here, at once, and
    /// each prepares the reads a request makes. The pool keeps them while they are in use and
    /// closes them after its idle timeout (sqlx's ten minutes), as before.
    /// Both lanes are opened: `serve` warms up because it answers requests.
    async fn warm_up(&self) -> Result<usize, JournalError> {
        let mut opened = 0;
        for pool in [&self.pool, &self.write_pool, &self.interactive_pool] {
            opened += warm_up_pool(pool).await?;
        }
        Ok(opened)
    }
}

/// Opens every connection `pool` may hold and prepares on each the reads a request makes.
async fn warm_up_pool(pool: &PgPool) -> Result<usize, JournalError> {
    let size = pool.options().get_max_connections() as usize;
    // Held together, so the pool must open a new connection for each.
    let connections = futures::future::try_join_all((0..size).map(|_| pool.acquire())).await?;
    for mut connection in connections {
        // Keys and ids no run has: each statement is parsed and cached, nothing is read.
        sqlx::query(sql::SELECT_RUN)
            .bind(Uuid::nil())
            .fetch_optional(&mut *connection)
            .await?;
        sqlx::query(sql::SELECT_RUN_BY_KEY)
            .bind("")
            .fetch_optional(&mut *connection)
            .await?;
        sqlx::query(sql::EVENTS_SINCE)
            .bind(Uuid::nil())
            .bind(0_i64)
            .fetch_all(&mut *connection)
            .await?;
    }
    Ok(size)
}

#[async_trait]
impl Outbox for PostgresJournal {
    async fn claim_deliveries(
        &self,
        lease: &DeliveryLease,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<Delivery>, JournalError> {
        self.committer()
            .claim_deliveries(lease, now_ms, limit)
            .await
    }

    async fn finish_delivery(
        &self,
        delivery: &Delivery,
        owner: &str,
        now_ms: i64,
        outcome: &DeliveryOutcome,
    ) -> Result<bool, JournalError> {
        self.committer()
            .finish_delivery(delivery, owner, now_ms, outcome)
            .await
    }

    async fn outbox_of_run(&self, run_id: Uuid) -> Result<Vec<OutboxEntry>, JournalError> {
        let rows = sqlx::query(sql::OUTBOX_OF_RUN)
            .bind(run_id)
            .fetch_all(self.read_pool())
            .await?;
        let mut joined = Vec::with_capacity(rows.len());
        for r in &rows {
            let status: String = r.try_get(1)?;
            let consumer: Option<String> = r.try_get(3)?;
            let delivery = match consumer {
                Some(consumer) => Some(DeliveryState {
                    consumer,
                    attempts: attempt_count(r.try_get(4)?)?,
                    next_attempt_at_ms: r.try_get(5)?,
                    delivered_at_ms: r.try_get(6)?,
                    gave_up_at_ms: r.try_get(7)?,
                    last_error: r.try_get(8)?,
                }),
                None => None,
            };
            joined.push((
                r.try_get(0)?,
                decode_status(&status)?,
                r.try_get(2)?,
                delivery,
            ));
        }
        Ok(group_entries(joined))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use sqlx::Connection;

    use super::*;
    use crate::testkit::postgres::fresh_database;

    /// Sessions on `database` waiting for a lock.
    async fn waiting_for_locks(admin: &PgPool, database: &str) -> i64 {
        sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'",
        )
        .bind(database)
        .fetch_one(admin)
        .await
        .unwrap()
    }

    async fn until_waiting(admin: &PgPool, database: &str, sessions: i64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while waiting_for_locks(admin, database).await < sessions {
            assert!(
                Instant::now() < deadline,
                "{sessions} sessions never waited"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The last pass of a renewal, which waits for the rows other transactions hold.
    fn renew(lease: &LeaseRequest, run: Uuid, now_ms: i64) -> WriteOp {
        WriteOp::Renew {
            lease: lease.clone(),
            held: vec![Claim {
                run_id: run,
                generation: 1,
                took_over: false,
            }],
            now_ms,
            skip_busy: false,
        }
    }

    /// Two runs created under `lease` at `now`, in id order.
    async fn two_leased_runs(
        journal: &PostgresJournal,
        lease: &LeaseRequest,
        now: i64,
    ) -> (Uuid, Uuid) {
        let mut runs = Vec::new();
        for i in 0..2 {
            let id = Uuid::now_v7();
            let created = journal
                .create_run(NewRun {
                    id,
                    saga: "s".into(),
                    version: 1,
                    idempotency_key: format!("order-{i}"),
                    input: serde_json::json!({}),
                    now_ms: now,
                    claim: Some(lease.clone()),
                    events: Vec::new(),
                    status: RunStatus::Queued,
                    environment: None,
                })
                .await
                .unwrap();
            let CreateOutcome::Created(row) = created else {
                panic!("not created: {created:?}");
            };
            assert_eq!(row.lease_generation, 1);
            runs.push(id);
        }
        runs.sort();
        (runs[0], runs[1])
    }

    async fn lease_expires_at(pool: &PgPool, run: Uuid) -> i64 {
        sqlx::query_scalar("SELECT lease_expires_at FROM saga_runs WHERE id = $1")
            .bind(run)
            .fetch_one(pool)
            .await
            .unwrap()
    }

    /// Two leased runs in a fresh journal, the row of the higher id held by another
    /// session's open transaction (`holder`).
    struct HeldRow {
        database: crate::testkit::postgres::FreshDatabase,
        journal: PostgresJournal,
        lease: LeaseRequest,
        now: i64,
        low: Uuid,
        high: Uuid,
        admin: PgPool,
        holder: sqlx::PgConnection,
    }

    async fn one_of_two_rows_held() -> Option<HeldRow> {
        let database = fresh_database().await.unwrap()?;
        let journal = PostgresJournal::connect(&database.url).await.unwrap();
        let lease = LeaseRequest {
            worker: "w".into(),
            lease_ms: 60_000,
            environment: None,
        };
        let now = crate::clock::now_ms();
        let (low, high) = two_leased_runs(&journal, &lease, now).await;
        let admin = PgPool::connect(&database.url).await.unwrap();
        let mut holder = sqlx::PgConnection::connect(&database.url).await.unwrap();
        sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
        sqlx::query("SELECT id FROM saga_runs WHERE id = $1 FOR UPDATE")
            .bind(high)
            .execute(&mut holder)
            .await
            .unwrap();
        Some(HeldRow {
            database,
            journal,
            lease,
            now,
            low,
            high,
            admin,
            holder,
        })
    }

    /// While another transaction holds one run's row, a renewal of two runs renews the other
    /// at once and waits only for the held one. Locking both first, as appends do, it kept
    /// the free row locked and unrenewed behind the held one: with thousands of runs
    /// appending, a round of renewals outlasted the lease.
    #[tokio::test]
    async fn a_renewal_renews_free_rows_at_once_and_waits_only_for_a_held_one() {
        let Some(HeldRow {
            database,
            journal,
            lease,
            now,
            low: free,
            high: held,
            admin,
            mut holder,
        }) = one_of_two_rows_held().await
        else {
            return;
        };

        let claims: Vec<Claim> = [free, held]
            .into_iter()
            .map(|run_id| Claim {
                run_id,
                generation: 1,
                took_over: false,
            })
            .collect();
        let later = now + 1_000;
        let renewal = {
            let journal = journal.clone();
            let lease = lease.clone();
            tokio::spawn(async move { journal.renew(&lease, &claims, later).await })
        };
        until_waiting(&admin, &database.name, 1).await;
        assert_eq!(lease_expires_at(&admin, free).await, later + lease.lease_ms);
        assert_eq!(lease_expires_at(&admin, held).await, now + lease.lease_ms);
        assert!(!renewal.is_finished());

        sqlx::query("COMMIT").execute(&mut holder).await.unwrap();
        let mut renewed: Vec<Uuid> = renewal
            .await
            .unwrap()
            .unwrap()
            .into_iter()
            .map(|c| c.run_id)
            .collect();
        renewed.sort();
        assert_eq!(renewed, [free, held]);
        assert_eq!(lease_expires_at(&admin, held).await, later + lease.lease_ms);
    }

    /// Two batches renew the same two runs in opposite orders while a third session holds
    /// one of the rows. Locked as each write came to them, the first would hold the other
    /// row and wait on the second, which would wait on it: PostgreSQL would fail one batch
    /// as a deadlock. Locked up front in id order, the second waits for the first and both
    /// commit.
    #[tokio::test]
    async fn batches_that_write_the_same_runs_in_opposite_orders_both_commit() {
        let Some(HeldRow {
            database,
            journal,
            lease,
            now,
            low,
            high,
            admin,
            mut holder,
        }) = one_of_two_rows_held().await
        else {
            return;
        };

        let batch = |first: Uuid, second: Uuid| {
            let writer = PostgresWriter {
                pool: journal.write_pool.clone(),
                user: "writer",
            };
            let ops = vec![renew(&lease, first, now), renew(&lease, second, now)];
            tokio::spawn(async move { writer.try_batch(&ops, &[0, 1]).await })
        };
        let one = batch(high, low);
        until_waiting(&admin, &database.name, 1).await;
        let two = batch(low, high);
        until_waiting(&admin, &database.name, 2).await;
        sqlx::query("COMMIT").execute(&mut holder).await.unwrap();

        for outcome in [one.await.unwrap(), two.await.unwrap()] {
            let outcomes = outcome.expect("the batch committed");
            for renewed in outcomes {
                assert!(
                    matches!(renewed, Ok(WriteDone::Leases(ref l)) if l.len() == 1),
                    "{renewed:?}"
                );
            }
        }
        drop(journal);
        admin.close().await;
        holder.close().await.unwrap();
        database.drop_database().await.unwrap();
    }
}
