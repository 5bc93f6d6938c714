//! The SQLite journal: the embedded default for one process. WAL with `synchronous = FULL`,
//! so a committed event survives power loss; one writer connection fed by group commit,
//! and a small pool of readers that WAL lets run beside it.
//!
//! A transaction that fails (a full disk, an I/O error) costs the writer its connection: on
//! such errors SQLite may already have rolled the whole transaction back itself, after which
//! sqlx's own rollback fails and it keeps counting the transaction as open, so the next
//! `BEGIN` it issues is a `SAVEPOINT` and, after one more failure, a `ROLLBACK TO` that leaves
//! a transaction open for good: writes acknowledged but never committed, invisible to readers
//! and lost at exit. A fresh connection has no such state.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{Connection, Row, Sqlite, Transaction};
use uuid::Uuid;

use super::group_commit::{BatchWriter, GroupCommitter, WriteDone, WriteOp, unexpected};
use super::outbox::{attempt_count, group_entries, settlements};
use super::{
    Append, AppendReceipt, Claim, Command, CreateOutcome, Delivery, DeliveryLease, DeliveryOutcome,
    DeliveryState, Journal, JournalError, LeaseRequest, NewRun, Outbox, OutboxEntry, RunFilter,
    RunRow, Settlement, Writer, allowed_text, decode_event, decode_input, decode_status,
    encode_events, pending_param, refusal, wake_params,
};
use crate::event::{EventRecord, RunEvent, RunStatus};

/// Every statement this backend runs.
mod sql {
    pub(super) const MIGRATIONS: &[(i64, &str)] = &[
        (
            1,
            include_str!("../../sql/sqlite/migrations/0001_journal.sql"),
        ),
        (
            2,
            include_str!("../../sql/sqlite/migrations/0002_environment.sql"),
        ),
        (
            3,
            include_str!("../../sql/sqlite/migrations/0003_outbox.sql"),
        ),
    ];
    pub(super) const MIGRATIONS_TABLE: &str = include_str!("../../sql/sqlite/migrations_table.sql");
    pub(super) const MIGRATION_APPLIED: &str =
        include_str!("../../sql/sqlite/migration_applied.sql");
    pub(super) const RECORD_MIGRATION: &str = include_str!("../../sql/sqlite/record_migration.sql");
    pub(super) const INSERT_RUN: &str = include_str!("../../sql/sqlite/insert_run.sql");
    pub(super) const INSERT_EVENTS: &str = include_str!("../../sql/sqlite/insert_events.sql");
    pub(super) const APPEND_FENCED: &str = include_str!("../../sql/sqlite/append_fenced.sql");
    pub(super) const APPEND_OPERATOR: &str = include_str!("../../sql/sqlite/append_operator.sql");
    pub(super) const REFUSAL: &str = include_str!("../../sql/sqlite/refusal.sql");
    pub(super) const RUN_STATUS: &str = include_str!("../../sql/sqlite/run_status.sql");
    pub(super) const SELECT_RUN: &str = include_str!("../../sql/sqlite/select_run.sql");
    pub(super) const SELECT_RUN_BY_KEY: &str =
        include_str!("../../sql/sqlite/select_run_by_key.sql");
    pub(super) const LIST_RUNS: &str = include_str!("../../sql/sqlite/list_runs.sql");
    pub(super) const LIST_RUNS_NEWEST: &str = include_str!("../../sql/sqlite/list_runs_newest.sql");
    pub(super) const EVENTS_SINCE: &str = include_str!("../../sql/sqlite/events_since.sql");
    pub(super) const CLAIM: &str = include_str!("../../sql/sqlite/claim.sql");
    pub(super) const RENEW: &str = include_str!("../../sql/sqlite/renew.sql");
    pub(super) const OUTBOX_INSERT: &str = include_str!("../../sql/sqlite/outbox_insert.sql");
    pub(super) const OUTBOX_CLAIM: &str = include_str!("../../sql/sqlite/outbox_claim.sql");
    pub(super) const OUTBOX_SETTLEMENT: &str =
        include_str!("../../sql/sqlite/outbox_settlement.sql");
    pub(super) const OUTBOX_FINISH: &str = include_str!("../../sql/sqlite/outbox_finish.sql");
    pub(super) const OUTBOX_OF_RUN: &str = include_str!("../../sql/sqlite/outbox_of_run.sql");
}

#[derive(Debug, Clone)]
pub struct SqliteJournal {
    reader: SqlitePool,
    committer: GroupCommitter,
}

impl SqliteJournal {
    /// Opens (creating if needed) the journal database file at `path` and migrates it.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, JournalError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true);
        let mut writer = SqliteConnection::connect_with(&options).await?;
        migrate(&mut writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone().read_only(true))
            .await?;
        Ok(Self {
            reader,
            committer: GroupCommitter::spawn(vec![SqliteWriter {
                options,
                connection: Some(writer),
            }]),
        })
    }
}

impl SqliteJournal {
    /// Transactions this journal has committed (each may hold many runs' writes).
    pub fn commits(&self) -> u64 {
        self.committer.commits()
    }
}

async fn migrate(connection: &mut SqliteConnection) -> Result<(), JournalError> {
    sqlx::query(sql::MIGRATIONS_TABLE)
        .execute(&mut *connection)
        .await?;
    for &(version, script) in sql::MIGRATIONS {
        let mut tx = connection.begin().await?;
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
        tx.commit().await?;
    }
    Ok(())
}

fn parse_id(s: &str) -> Result<Uuid, JournalError> {
    Uuid::parse_str(s).map_err(|e| JournalError::Corrupt(format!("run id `{s}`: {e}")))
}

fn run_row(row: &SqliteRow) -> Result<RunRow, JournalError> {
    let id: String = row.try_get("id")?;
    let input: String = row.try_get("input")?;
    let status: String = row.try_get("status")?;
    let version: i64 = row.try_get("saga_version")?;
    let pending: Option<String> = row.try_get("pending_command")?;
    Ok(RunRow {
        id: parse_id(&id)?,
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

fn leases(rows: &[SqliteRow]) -> Result<Vec<Claim>, JournalError> {
    rows.iter()
        .map(|r| {
            let id: String = r.try_get(0)?;
            Ok(Claim {
                run_id: parse_id(&id)?,
                generation: r.try_get(1)?,
                // Only the claim query says; renewals have no such column.
                took_over: r.try_get::<bool, _>(2).unwrap_or(false),
            })
        })
        .collect()
}

/// The one connection that writes; `None` after a failed transaction until the next batch
/// opens a fresh one (see the module's comment).
struct SqliteWriter {
    options: SqliteConnectOptions,
    connection: Option<SqliteConnection>,
}

type Tx<'c> = Transaction<'c, Sqlite>;

async fn insert_events(
    tx: &mut Tx<'_>,
    run_id: &str,
    first_seq: i64,
    at: i64,
    events: &[RunEvent],
) -> Result<(), JournalError> {
    if events.is_empty() {
        return Ok(());
    }
    sqlx::query(sql::INSERT_EVENTS)
        .bind(run_id)
        .bind(first_seq)
        .bind(at)
        .bind(encode_events(events)?)
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
    tx: &mut Tx<'_>,
    lease: &DeliveryLease,
    now_ms: i64,
    limit: u32,
) -> Result<Vec<Delivery>, JournalError> {
    let rows = sqlx::query(sql::OUTBOX_CLAIM)
        .bind(&lease.consumer)
        .bind(&lease.owner)
        .bind(now_ms)
        .bind(lease.lease_ms)
        .bind(i64::from(limit))
        .bind(lease.environment.as_deref())
        .fetch_all(&mut **tx)
        .await?;
    let mut claimed = Vec::with_capacity(rows.len());
    for row in &rows {
        let run_id: String = row.try_get(0)?;
        let seq: i64 = row.try_get(1)?;
        let attempts: i64 = row.try_get(2)?;
        let about = sqlx::query(sql::OUTBOX_SETTLEMENT)
            .bind(&run_id)
            .bind(seq)
            .fetch_one(&mut **tx)
            .await?;
        let status: String = about.try_get(0)?;
        claimed.push(Delivery {
            settlement: Settlement {
                run_id: parse_id(&run_id)?,
                seq,
                status: decode_status(&status)?,
                at_ms: about.try_get(1)?,
                saga: about.try_get(2)?,
                idempotency_key: about.try_get(3)?,
            },
            consumer: lease.consumer.clone(),
            attempt: attempt_count(attempts)?,
        });
    }
    // Oldest first, as claimed (RETURNING keeps no order).
    claimed.sort_by_key(|d| (d.settlement.at_ms, d.settlement.run_id, d.settlement.seq));
    Ok(claimed)
}

async fn finish_delivery(
    tx: &mut Tx<'_>,
    delivery: &Delivery,
    owner: &str,
    now_ms: i64,
    outcome: &DeliveryOutcome,
) -> Result<bool, JournalError> {
    let (kind, retry_at, error) = outcome.params();
    let recorded: Option<i64> = sqlx::query_scalar(sql::OUTBOX_FINISH)
        .bind(delivery.settlement.run_id.to_string())
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

async fn create(tx: &mut Tx<'_>, run: &NewRun) -> Result<WriteDone, JournalError> {
    let id = run.id.to_string();
    let (owner, generation, expires) = match &run.claim {
        Some(l) => (Some(l.worker.clone()), 1_i64, Some(run.now_ms + l.lease_ms)),
        None => (None, 0, None),
    };
    let input =
        serde_json::to_string(&run.input).map_err(|e| JournalError::Corrupt(e.to_string()))?;
    let inserted = sqlx::query(sql::INSERT_RUN)
        .bind(&id)
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
    insert_events(tx, &id, 1, run.now_ms, &run.all_events()).await?;
    Ok(WriteDone::Created(CreateOutcome::Created(
        run.row(owner, generation, expires),
    )))
}

async fn append(tx: &mut Tx<'_>, a: &Append) -> Result<WriteDone, JournalError> {
    let id = a.run_id.to_string();
    let count = i64::try_from(a.events.len())
        .map_err(|_| JournalError::Corrupt("too many events".into()))?;
    let (statement, generation, owner) = match &a.writer {
        Writer::Lease { worker, generation } => {
            (sql::APPEND_FENCED, Some(*generation), Some(worker.as_str()))
        }
        Writer::Operator { allowed_from } => {
            let status: Option<String> = sqlx::query_scalar(sql::RUN_STATUS)
                .bind(&id)
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
        .bind(&id)
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
                    .bind(&id)
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
    insert_events(tx, &id, first_seq, a.now_ms, &a.events).await?;
    Ok(WriteDone::Appended(AppendReceipt {
        first_seq,
        pending: pending.as_deref().and_then(Command::parse),
    }))
}

async fn apply(tx: &mut Tx<'_>, op: &WriteOp) -> Result<WriteDone, JournalError> {
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
        // One writer: no other transaction holds a row, so none is ever busy.
        WriteOp::Renew {
            lease,
            held,
            now_ms,
            skip_busy: _,
        } => {
            let mut kept = Vec::with_capacity(held.len());
            for claim in held {
                let rows = sqlx::query(sql::RENEW)
                    .bind(&lease.worker)
                    .bind(now_ms)
                    .bind(lease.lease_ms)
                    .bind(claim.run_id.to_string())
                    .bind(claim.generation)
                    .fetch_all(&mut **tx)
                    .await?;
                kept.extend(leases(&rows)?);
            }
            Ok(WriteDone::Leases(kept))
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

async fn write_in_one_transaction(
    connection: &mut SqliteConnection,
    ops: &[WriteOp],
) -> Result<Vec<Result<WriteDone, JournalError>>, JournalError> {
    let mut tx = connection.begin().await?;
    let mut outcomes = Vec::with_capacity(ops.len());
    for op in ops {
        match apply(&mut tx, op).await {
            // A failed statement may have left partial work: give up the whole batch.
            Err(e @ (JournalError::Database(_) | JournalError::Corrupt(_))) => return Err(e),
            outcome => outcomes.push(outcome),
        }
    }
    tx.commit().await?;
    Ok(outcomes)
}

#[async_trait]
impl BatchWriter for SqliteWriter {
    async fn write_batch(
        &mut self,
        ops: &[WriteOp],
    ) -> Result<Vec<Result<WriteDone, JournalError>>, JournalError> {
        let connection = match self.connection.take() {
            Some(connection) => connection,
            None => SqliteConnection::connect_with(&self.options).await?,
        };
        let connection = self.connection.insert(connection);
        let written = write_in_one_transaction(connection, ops).await;
        if written.is_err()
            && let Some(broken) = self.connection.take()
        {
            // Closing rolls back whatever SQLite still holds open; an error closing a
            // connection that is being given up changes nothing for the batch.
            let _ = broken.close().await;
        }
        written
    }
}

#[async_trait]
impl Journal for SqliteJournal {
    async fn create_run(&self, run: NewRun) -> Result<CreateOutcome, JournalError> {
        match self.committer.submit(WriteOp::Create(run)).await? {
            WriteDone::Created(c) => Ok(c),
            other => Err(unexpected(other)),
        }
    }

    async fn append(&self, append: Append) -> Result<AppendReceipt, JournalError> {
        match self.committer.submit(WriteOp::Append(append)).await? {
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
        match self.committer.submit(op).await? {
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
        let op = WriteOp::Renew {
            lease: lease.clone(),
            held: held.to_vec(),
            now_ms,
            skip_busy: false,
        };
        match self.committer.submit(op).await? {
            WriteDone::Leases(l) => Ok(l),
            other => Err(unexpected(other)),
        }
    }

    async fn run(&self, run_id: Uuid) -> Result<Option<RunRow>, JournalError> {
        let row = sqlx::query(sql::SELECT_RUN)
            .bind(run_id.to_string())
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(run_row).transpose()
    }

    async fn run_by_key(&self, key: &str) -> Result<Option<RunRow>, JournalError> {
        let row = sqlx::query(sql::SELECT_RUN_BY_KEY)
            .bind(key)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(run_row).transpose()
    }

    async fn events_since(
        &self,
        run_id: Uuid,
        after_seq: i64,
    ) -> Result<Vec<EventRecord>, JournalError> {
        let rows = sqlx::query(sql::EVENTS_SINCE)
            .bind(run_id.to_string())
            .bind(after_seq)
            .fetch_all(&self.reader)
            .await?;
        rows.iter()
            .map(|r| {
                let body: String = r.try_get(2)?;
                decode_event(run_id, r.try_get(0)?, r.try_get(1)?, &body)
            })
            .collect()
    }

    async fn list(&self, filter: &RunFilter) -> Result<Vec<RunRow>, JournalError> {
        if filter.newest_first {
            let rows = sqlx::query(sql::LIST_RUNS_NEWEST)
                .bind(filter.status.map(RunStatus::as_str))
                .bind(filter.saga.as_deref())
                .bind(filter.before.map(|id| id.to_string()))
                .bind(i64::from(filter.limit))
                .bind(filter.key_like.as_deref())
                .fetch_all(&self.reader)
                .await?;
            return rows.iter().map(run_row).collect();
        }
        let rows = sqlx::query(sql::LIST_RUNS)
            .bind(filter.status.map(RunStatus::as_str))
            .bind(filter.saga.as_deref())
            .bind(filter.after.map(|id| id.to_string()))
            .bind(i64::from(filter.limit))
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(run_row).collect()
    }

    fn outbox(&self) -> Option<&dyn Outbox> {
        Some(self)
    }
}

#[async_trait]
impl Outbox for SqliteJournal {
    async fn claim_deliveries(
        &self,
        lease: &DeliveryLease,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<Delivery>, JournalError> {
        self.committer.claim_deliveries(lease, now_ms, limit).await
    }

    async fn finish_delivery(
        &self,
        delivery: &Delivery,
        owner: &str,
        now_ms: i64,
        outcome: &DeliveryOutcome,
    ) -> Result<bool, JournalError> {
        self.committer
            .finish_delivery(delivery, owner, now_ms, outcome)
            .await
    }

    async fn outbox_of_run(&self, run_id: Uuid) -> Result<Vec<OutboxEntry>, JournalError> {
        let rows = sqlx::query(sql::OUTBOX_OF_RUN)
            .bind(run_id.to_string())
            .fetch_all(&self.reader)
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
