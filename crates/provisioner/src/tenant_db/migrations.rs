//! A tenant database's migrations: which of a [`MigrationSet`] it has, and applying the rest,
//! each file once.
//!
//! What is recorded, in the tenant database:
//! - `supabase_migrations.schema_migrations (version text primary key, statements text[],
//!   name text)`, the table the Supabase CLI keeps, so `supabase migration list` and the
//!   dashboard see the same history: one row per applied file, `statements` as PostgreSQL's
//!   parser splits the file;
//! - beside it `provisioner.migration_checksums (version, checksum, applied_at)`, in the schema
//!   the API roles cannot reach: the SHA-256 of each applied file, so a file edited after it was
//!   applied is found (drift) rather than silently taken for the applied one.
//!
//! How each file runs exactly once, even with concurrent appliers or a crash anywhere:
//! - an applier first takes a session advisory lock on the tenant database, polling for it
//!   without holding a transaction open (a waiter inside a transaction would hold a snapshot
//!   that a `CREATE INDEX CONCURRENTLY` of the holder waits for: a deadlock);
//! - a file without the marker runs in one transaction that takes the same lock as a
//!   transaction lock, checks the version is not recorded, runs the file, writes both rows and
//!   commits: a crash anywhere before the commit leaves neither the file's effects nor its rows;
//! - a file marked `-- provisioner:no-transaction` holds one statement, run outside a
//!   transaction under the session lock after the same check, then recorded. A process that
//!   dies after the statement ran and before it was recorded leaves it unrecorded, and the next
//!   apply runs it again: such a statement must be idempotent (`CREATE INDEX CONCURRENTLY IF
//!   NOT EXISTS`; loading refuses one without `IF NOT EXISTS`). A `CREATE INDEX CONCURRENTLY`
//!   that was interrupted while building leaves an invalid index, which `IF NOT EXISTS` then
//!   skips: drop an invalid index by hand before applying again.
//!
//! Through the Management API's SQL endpoint (a project whose password is not ours) each
//! transactional file is one statement doing the same (lock, check, file, both rows); a marked
//! file is claimed by a row in `provisioner.migration_claims`, since no session outlives a
//! request there, and only the claim's holder runs it.
//!
//! A tenant provisioned before migrations existed has `provisioner.schema_versions` holding the
//! checksum of the one schema file it was given and no `schema_migrations` row. When that
//! checksum equals the first migration's (the old `schema.sql` became `0001_init.sql`
//! byte for byte), the first migration counts as applied: `apply` records it in both tables
//! without running it. Any other recorded checksum is drift.
//!
//! Drift is refused by `apply` before anything runs, and reported by `state`: a recorded
//! version whose checksum differs from its file's (edited), a recorded version with no file
//! (unknown), a legacy schema checksum matching no file.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use super::TenantDbError;
use super::screening;
use super::sql_endpoint::{SqlEndpoint, dollar_quote, quote_literal, without_comment_lines};
use super::target::Target;
use crate::templates::{Migration, MigrationSet, compare_versions, same_version};

/// The tenant's migration lock: one key per database (advisory keys are per database). The
/// bytes spell "schemaver", the key the single-schema apply of earlier versions took, so an
/// older provisioner and this one never apply to a tenant at once.
const APPLY_ADVISORY_LOCK_KEY: i64 = 0x7363_6865_6d61_7665;
/// How long one apply may take in all, waiting for the lock included; a timeout drops the
/// connection, which rolls back the file in progress and releases the lock.
const APPLY_TIMEOUT: Duration = Duration::from_secs(600);
/// How long reading the history may take.
const STATE_TIMEOUT: Duration = Duration::from_secs(60);
/// Between two tries of the lock while another applier holds it.
const LOCK_POLL: Duration = Duration::from_millis(100);

const BOOKKEEPING_TABLES_SQL: &str =
    include_str!("../../sql/tenant_migrations/bookkeeping_tables.sql");
const HISTORY_TABLES_SQL: &str = include_str!("../../sql/tenant_migrations/history_tables.sql");
const RECORDED_MIGRATIONS_SQL: &str =
    include_str!("../../sql/tenant_migrations/recorded_migrations.sql");
const RECORDED_CHECKSUMS_SQL: &str =
    include_str!("../../sql/tenant_migrations/recorded_checksums.sql");
const LEGACY_CHECKSUMS_SQL: &str = include_str!("../../sql/tenant_migrations/legacy_checksums.sql");
const IS_RECORDED_SQL: &str = include_str!("../../sql/tenant_migrations/is_recorded.sql");
const RECORD_MIGRATION_SQL: &str = include_str!("../../sql/tenant_migrations/record_migration.sql");
const RECORD_CHECKSUM_SQL: &str = include_str!("../../sql/tenant_migrations/record_checksum.sql");
const TRY_SESSION_LOCK_SQL: &str = include_str!("../../sql/tenant_migrations/try_session_lock.sql");
const SESSION_UNLOCK_SQL: &str = include_str!("../../sql/tenant_migrations/session_unlock.sql");
const SESSION_LOCK_TIMEOUT_SQL: &str =
    include_str!("../../sql/tenant_migrations/session_lock_timeout.sql");
const SESSION_LOCK_TIMEOUT_RESET_SQL: &str =
    include_str!("../../sql/tenant_migrations/session_lock_timeout_reset.sql");
const XACT_LOCK_SQL: &str = include_str!("../../sql/tenant_migrations/transaction_lock.sql");
const LOCK_TIMEOUT_SQL: &str =
    include_str!("../../sql/tenant_migrations/transaction_lock_timeout.sql");
const TRANSACTION_ID_SQL: &str = include_str!("../../sql/tenant_migrations/transaction_id.sql");
const APPLY_FILE_IN_ONE_STATEMENT_SQL: &str =
    include_str!("../../sql/tenant_migrations/apply_file_in_one_statement.sql");
const ENDPOINT_HISTORY_SQL: &str = include_str!("../../sql/tenant_migrations/endpoint_history.sql");
const ENDPOINT_MIGRATIONS_SQL: &str =
    include_str!("../../sql/tenant_migrations/endpoint_migrations.sql");
const ENDPOINT_CHECKSUMS_SQL: &str =
    include_str!("../../sql/tenant_migrations/endpoint_checksums.sql");
const ENDPOINT_LEGACY_SQL: &str = include_str!("../../sql/tenant_migrations/endpoint_legacy.sql");
const ENDPOINT_ABSENT_SQL: &str = include_str!("../../sql/tenant_migrations/endpoint_absent.sql");
const CLAIM_IN_ONE_STATEMENT_SQL: &str =
    include_str!("../../sql/tenant_migrations/claim_in_one_statement.sql");
const ENDPOINT_IS_RECORDED_SQL: &str =
    include_str!("../../sql/tenant_migrations/endpoint_is_recorded.sql");
/// A claim on a no-transaction file older than this is taken for a dead holder's and taken over.
const CLAIM_STALE_AFTER: Duration = Duration::from_secs(30 * 60);
/// Between two looks at whether the holder of a claim has recorded its file.
const CLAIM_POLL: Duration = Duration::from_millis(250);

/// What a tenant database has of a [`MigrationSet`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantMigrationState {
    /// Every version recorded in the tenant (or counted as applied, see the module's
    /// documentation on legacy tenants), oldest first.
    pub applied: Vec<AppliedMigration>,
    /// Versions of the set not applied yet, in the order `apply` would run them.
    pub pending: Vec<String>,
    /// What stops `apply`; empty when it may go ahead.
    pub drift: Vec<MigrationDrift>,
}

impl TenantMigrationState {
    /// The highest applied version, if any.
    pub fn version(&self) -> Option<&str> {
        self.applied.last().map(|a| a.version.as_str())
    }
}

/// One version recorded in a tenant database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppliedMigration {
    pub version: String,
    /// The name recorded in `schema_migrations` (absent when the CLI or the legacy record left
    /// none).
    pub name: Option<String>,
    /// Our checksum of the file as applied; absent for a version someone else recorded (e.g.
    /// `supabase db push`).
    pub checksum: Option<String>,
}

/// A difference between a tenant's recorded history and the migration files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum MigrationDrift {
    /// The version was applied from a file whose content differs from `file_name` now.
    Edited { version: String, file_name: String },
    /// The version is recorded in the tenant but no file has it.
    Unknown {
        version: String,
        name: Option<String>,
    },
    /// The tenant was given a single schema file before migrations existed, and its checksum
    /// is not the first migration's.
    UnrecognisedLegacySchema { checksum: String },
}

impl std::fmt::Display for MigrationDrift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Edited { version, file_name } => write!(
                f,
                "version {version} was applied from a different {file_name} than the one there \
                 now: restore the file as it was applied and put the change in a new migration"
            ),
            Self::Unknown { version, name } => write!(
                f,
                "version {version}{} is applied in the database but no migration file has it: \
                 add the file that applied it (or remove its row from \
                 supabase_migrations.schema_migrations if it was never meant to be there)",
                name.as_ref().map(|n| format!(" ({n})")).unwrap_or_default()
            ),
            Self::UnrecognisedLegacySchema { checksum } => write!(
                f,
                "the database was given a schema file (checksum {}) before migrations existed \
                 that is not the first migration: make the first migration that file, byte for \
                 byte",
                &checksum[..checksum.len().min(12)]
            ),
        }
    }
}

/// The outcome of [`apply_migrations`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MigrationsApplied {
    /// Versions run by this call, in order (a legacy tenant's first migration, recorded
    /// without running, is not among them).
    pub applied_now: Vec<String>,
    /// Versions of the set found applied already.
    pub already_applied: Vec<String>,
    /// The highest applied version afterwards.
    pub version: String,
}

/// What the tenant database at `db_url` has of `set`. Reads only: it creates nothing, not even
/// the bookkeeping tables.
pub async fn migration_state(
    db_url: &SecretString,
    set: &MigrationSet,
) -> Result<TenantMigrationState, TenantDbError> {
    let target = Target::parse(db_url)?;
    let mut conn = target.connect().await?;
    let history = tokio::time::timeout(STATE_TIMEOUT, read_history(&mut conn, &target))
        .await
        .map_err(|_| TenantDbError::Timeout {
            what: "reading the migration history",
            after: STATE_TIMEOUT,
        })??;
    // Closing politely only saves the server a log line; the history is read.
    let _ = conn.close().await;
    Ok(history.compare(set).state)
}

/// Applies every pending migration of `set` in version order (pass `set.up_to(v)` to stop at
/// `v`), each once (see the module's documentation). Refuses with
/// [`TenantDbError::MigrationDrift`] before running anything when the tenant's history and the
/// files disagree. A failing file leaves nothing of itself (unless it runs outside a
/// transaction) and the earlier files applied.
pub async fn apply_migrations(
    db_url: &SecretString,
    set: &MigrationSet,
) -> Result<MigrationsApplied, TenantDbError> {
    let target = Target::parse(db_url)?;
    let mut conn = target.connect().await?;
    let outcome = tokio::time::timeout(APPLY_TIMEOUT, apply_locked(&mut conn, &target, set))
        .await
        .map_err(|_| TenantDbError::Timeout {
            what: "applying the migrations",
            after: APPLY_TIMEOUT,
        })??;
    // The session lock goes with the connection either way.
    let _ = conn.close().await;
    Ok(outcome)
}

/// One row of `supabase_migrations.schema_migrations`.
#[derive(Debug, Clone)]
struct RecordedRow {
    version: String,
    name: Option<String>,
}

/// A tenant's migration history as recorded in it.
#[derive(Debug, Default)]
struct History {
    migrations: Vec<RecordedRow>,
    checksums: BTreeMap<String, String>,
    /// `provisioner.schema_versions`, oldest first.
    legacy: Vec<String>,
}

/// The history against a set: the state, and whether the first migration is to be recorded
/// as applied without running (a legacy tenant's).
#[derive(Debug)]
struct Comparison {
    state: TenantMigrationState,
    adopt_legacy: Option<Migration>,
}

impl Comparison {
    /// The comparison an apply may go on from: drift refuses it before anything runs.
    fn refuse_drift(self) -> Result<Self, TenantDbError> {
        if self.state.drift.is_empty() {
            Ok(self)
        } else {
            Err(TenantDbError::MigrationDrift {
                drift: self.state.drift,
            })
        }
    }

    /// The files of `set` still to run, in the order they run.
    fn pending_files<'a>(&'a self, set: &'a MigrationSet) -> impl Iterator<Item = &'a Migration> {
        self.state
            .pending
            .iter()
            .filter_map(|version| set.get(version))
    }
}

/// An apply's bookkeeping, the same whichever way the files reach the database: what was
/// found applied, what this apply ran, and the highest version applied.
struct ApplyTally {
    applied_now: Vec<String>,
    already_applied: Vec<String>,
    highest: Option<String>,
}

impl ApplyTally {
    fn new(set: &MigrationSet, comparison: &Comparison) -> Self {
        Self {
            applied_now: Vec::new(),
            already_applied: set
                .migrations()
                .iter()
                .filter(|m| !comparison.state.pending.contains(&m.version))
                .map(|m| m.version.clone())
                .collect(),
            highest: comparison.state.version().map(str::to_owned),
        }
    }

    /// A pending file is done: `ran` when this apply ran it, else another applier had.
    fn count(&mut self, migration: &Migration, ran: bool) {
        if ran {
            self.applied_now.push(migration.version.clone());
        } else {
            self.already_applied.push(migration.version.clone());
        }
        if self
            .highest
            .as_deref()
            .is_none_or(|h| compare_versions(h, &migration.version).is_lt())
        {
            self.highest = Some(migration.version.clone());
        }
    }

    fn finish(mut self, set: &MigrationSet) -> MigrationsApplied {
        self.already_applied.sort_by(|a, b| compare_versions(a, b));
        MigrationsApplied {
            applied_now: self.applied_now,
            already_applied: self.already_applied,
            // A set is never empty, so after a successful apply its first version at least
            // is applied; the fallback is never taken.
            version: self
                .highest
                .unwrap_or_else(|| set.latest_version().to_owned()),
        }
    }
}

impl History {
    fn compare(&self, set: &MigrationSet) -> Comparison {
        let mut applied = Vec::new();
        let mut drift = Vec::new();
        for row in &self.migrations {
            let checksum = self.checksums.get(&row.version).cloned();
            match set.known(&row.version) {
                None => drift.push(MigrationDrift::Unknown {
                    version: row.version.clone(),
                    name: row.name.clone(),
                }),
                // A version someone else recorded (no checksum of ours) cannot be verified;
                // it is taken as applied.
                Some(file) if checksum.as_ref().is_some_and(|c| *c != file.checksum) => {
                    drift.push(MigrationDrift::Edited {
                        version: row.version.clone(),
                        file_name: file.file_name.clone(),
                    });
                }
                Some(_) => {}
            }
            applied.push(AppliedMigration {
                version: row.version.clone(),
                name: row.name.clone(),
                checksum,
            });
        }
        let mut adopt_legacy = None;
        let first = &set.migrations()[0];
        let first_recorded = self
            .migrations
            .iter()
            .any(|row| same_version(&row.version, &first.version));
        if !first_recorded && let Some(last) = self.legacy.last() {
            if self.legacy.contains(&first.checksum) {
                applied.push(AppliedMigration {
                    version: first.version.clone(),
                    name: Some(first.name.clone()),
                    checksum: Some(first.checksum.clone()),
                });
                adopt_legacy = Some(first.clone());
            } else {
                drift.push(MigrationDrift::UnrecognisedLegacySchema {
                    checksum: last.clone(),
                });
            }
        }
        applied.sort_by(|a, b| compare_versions(&a.version, &b.version));
        let pending = set
            .migrations()
            .iter()
            .filter(|m| !applied.iter().any(|a| same_version(&a.version, &m.version)))
            .map(|m| m.version.clone())
            .collect();
        Comparison {
            state: TenantMigrationState {
                applied,
                pending,
                drift,
            },
            adopt_legacy,
        }
    }
}

async fn read_history(conn: &mut PgConnection, target: &Target) -> Result<History, TenantDbError> {
    let db = |during: &'static str| move |e: sqlx::Error| target.database_error(during, &e);
    let (migrations, checksums, legacy): (bool, bool, bool) = sqlx::query_as(HISTORY_TABLES_SQL)
        .fetch_one(&mut *conn)
        .await
        .map_err(db("looking for the migration history tables"))?;
    let mut history = History::default();
    if migrations {
        let rows: Vec<(String, Option<String>)> = sqlx::query_as(RECORDED_MIGRATIONS_SQL)
            .fetch_all(&mut *conn)
            .await
            .map_err(db("reading supabase_migrations.schema_migrations"))?;
        history.migrations = rows
            .into_iter()
            .map(|(version, name)| RecordedRow { version, name })
            .collect();
    }
    if checksums {
        let rows: Vec<(String, String)> = sqlx::query_as(RECORDED_CHECKSUMS_SQL)
            .fetch_all(&mut *conn)
            .await
            .map_err(db("reading provisioner.migration_checksums"))?;
        history.checksums = rows.into_iter().collect();
    }
    if legacy {
        history.legacy = sqlx::query_scalar(LEGACY_CHECKSUMS_SQL)
            .fetch_all(&mut *conn)
            .await
            .map_err(db("reading provisioner.schema_versions"))?;
    }
    Ok(history)
}

/// Waits for the tenant's migration lock by polling (see `try_session_lock.sql`).
async fn lock_session(conn: &mut PgConnection, target: &Target) -> Result<(), TenantDbError> {
    let started = Instant::now();
    loop {
        let taken: bool = sqlx::query_scalar(TRY_SESSION_LOCK_SQL)
            .bind(APPLY_ADVISORY_LOCK_KEY)
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| target.database_error("taking the migration lock", &e))?;
        if taken {
            if started.elapsed() > LOCK_POLL {
                tracing::debug!(waited = ?started.elapsed(), "took the tenant's migration lock");
            }
            return Ok(());
        }
        tokio::time::sleep(LOCK_POLL).await;
    }
}

async fn apply_locked(
    conn: &mut PgConnection,
    target: &Target,
    set: &MigrationSet,
) -> Result<MigrationsApplied, TenantDbError> {
    let db = |during: &'static str| move |e: sqlx::Error| target.database_error(during, &e);
    lock_session(conn, target).await?;
    {
        let mut tx = conn
            .begin()
            .await
            .map_err(db("starting the bookkeeping transaction"))?;
        sqlx::query(XACT_LOCK_SQL)
            .bind(APPLY_ADVISORY_LOCK_KEY)
            .execute(&mut *tx)
            .await
            .map_err(db("taking the migration lock"))?;
        sqlx::raw_sql(BOOKKEEPING_TABLES_SQL)
            .execute(&mut *tx)
            .await
            .map_err(db("creating the migration history tables"))?;
        tx.commit()
            .await
            .map_err(db("committing the migration history tables"))?;
    }
    let comparison = read_history(conn, target)
        .await?
        .compare(set)
        .refuse_drift()?;
    let mut tally = ApplyTally::new(set, &comparison);
    if let Some(first) = &comparison.adopt_legacy {
        // Recorded as applied without running: the legacy tenant was given this very file.
        let mut tx = conn
            .begin()
            .await
            .map_err(db("starting the legacy adoption transaction"))?;
        sqlx::query(XACT_LOCK_SQL)
            .bind(APPLY_ADVISORY_LOCK_KEY)
            .execute(&mut *tx)
            .await
            .map_err(db("taking the migration lock"))?;
        if !is_recorded(&mut tx, target, &first.version).await? {
            record(&mut tx, target, first).await?;
        }
        tx.commit()
            .await
            .map_err(db("committing the legacy adoption"))?;
    }
    for migration in comparison.pending_files(set) {
        let ran = if migration.outside_transaction {
            run_outside_transaction(conn, target, migration).await?
        } else {
            run_in_transaction(conn, target, migration).await?
        };
        tally.count(migration, ran);
    }
    sqlx::query_scalar::<_, bool>(SESSION_UNLOCK_SQL)
        .bind(APPLY_ADVISORY_LOCK_KEY)
        .fetch_one(&mut *conn)
        .await
        .map_err(db("releasing the migration lock"))?;
    Ok(tally.finish(set))
}

async fn is_recorded(
    conn: &mut PgConnection,
    target: &Target,
    version: &str,
) -> Result<bool, TenantDbError> {
    sqlx::query_scalar(IS_RECORDED_SQL)
        .bind(version)
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| target.database_error("reading the migration history", &e))
}

/// Both rows of an applied migration.
async fn record(
    conn: &mut PgConnection,
    target: &Target,
    migration: &Migration,
) -> Result<(), TenantDbError> {
    let db = |e: sqlx::Error| target.database_error("recording the migration", &e);
    sqlx::query(RECORD_MIGRATION_SQL)
        .bind(&migration.version)
        .bind(&migration.name)
        .bind(&migration.statements)
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    sqlx::query(RECORD_CHECKSUM_SQL)
        .bind(&migration.version)
        .bind(&migration.checksum)
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    Ok(())
}

/// One file in one transaction: lock, check, run, record, commit. True when it ran; false when
/// another applier had recorded it meanwhile.
async fn run_in_transaction(
    conn: &mut PgConnection,
    target: &Target,
    migration: &Migration,
) -> Result<bool, TenantDbError> {
    let db = |during: &'static str| move |e: sqlx::Error| target.database_error(during, &e);
    let mut tx = conn
        .begin()
        .await
        .map_err(db("starting the migration's transaction"))?;
    sqlx::query(XACT_LOCK_SQL)
        .bind(APPLY_ADVISORY_LOCK_KEY)
        .execute(&mut *tx)
        .await
        .map_err(db("taking the migration lock"))?;
    if is_recorded(&mut tx, target, &migration.version).await? {
        tx.rollback()
            .await
            .map_err(db("ending the migration's transaction"))?;
        return Ok(false);
    }
    sqlx::raw_sql(LOCK_TIMEOUT_SQL)
        .execute(&mut *tx)
        .await
        .map_err(db("setting the lock timeout"))?;
    let txid_before: i64 = sqlx::query_scalar(TRANSACTION_ID_SQL)
        .fetch_one(&mut *tx)
        .await
        .map_err(db("reading the transaction id"))?;
    if let Err(failure) = run_file(&mut tx, target, migration).await {
        // Answer only once nothing of the file remains; should the rollback itself fail, the
        // connection is closed on return, which rolls back too.
        let _ = tx.rollback().await;
        return Err(failure);
    }
    // Loading refuses transaction control; this is the server's own word on it, for whatever
    // the parser could not see (a procedure that commits, say).
    let txid_after: i64 = sqlx::query_scalar(TRANSACTION_ID_SQL)
        .fetch_one(&mut *tx)
        .await
        .map_err(db("reading the transaction id"))?;
    if txid_after != txid_before {
        let _ = tx.rollback().await;
        return Err(TenantDbError::SchemaEndsTransaction);
    }
    record(&mut tx, target, migration).await?;
    tx.commit()
        .await
        .map_err(db("committing the migration's transaction"))?;
    Ok(true)
}

/// A marked file's one statement, outside any transaction, under the session lock: check, run,
/// record. A crash between the run and the record leaves it unrecorded, to be run again.
async fn run_outside_transaction(
    conn: &mut PgConnection,
    target: &Target,
    migration: &Migration,
) -> Result<bool, TenantDbError> {
    let db = |during: &'static str| move |e: sqlx::Error| target.database_error(during, &e);
    if is_recorded(conn, target, &migration.version).await? {
        return Ok(false);
    }
    sqlx::raw_sql(SESSION_LOCK_TIMEOUT_SQL)
        .execute(&mut *conn)
        .await
        .map_err(db("setting the lock timeout"))?;
    run_file(conn, target, migration).await?;
    sqlx::raw_sql(SESSION_LOCK_TIMEOUT_RESET_SQL)
        .execute(&mut *conn)
        .await
        .map_err(db("resetting the lock timeout"))?;
    let mut tx = conn
        .begin()
        .await
        .map_err(db("starting the record's transaction"))?;
    record(&mut tx, target, migration).await?;
    tx.commit()
        .await
        .map_err(db("committing the migration's record"))?;
    Ok(true)
}

/// Runs the file's text as written, counting the statements that complete, so a failure names
/// the statement that failed.
async fn run_file(
    conn: &mut PgConnection,
    target: &Target,
    migration: &Migration,
) -> Result<(), TenantDbError> {
    let mut completed = 0_usize;
    // The file is the operator's own migration, run as written: that is the point of this
    // step, so it is asserted safe rather than parameterised.
    let mut results = sqlx::raw_sql(AssertSqlSafe(migration.sql.as_str())).execute_many(conn);
    loop {
        match results.try_next().await {
            Ok(Some(_)) => completed += 1,
            Ok(None) => return Ok(()),
            Err(e) => return Err(migration_error(target, migration, completed, &e)),
        }
    }
}

/// The error of a failed file: the failing statement (the one after those that completed, or
/// the one holding the position PostgreSQL points at), its line, and PostgreSQL's own words.
fn migration_error(
    target: &Target,
    migration: &Migration,
    completed: usize,
    e: &sqlx::Error,
) -> TenantDbError {
    let super::target::PgFailure {
        message,
        code,
        line,
        detail,
        hint,
    } = target.failure_in(&migration.sql, e);
    let statements = screening::split(&migration.sql).unwrap_or_default();
    let statement = statements.get(completed);
    TenantDbError::MigrationFailed {
        version: migration.version.clone(),
        file_name: migration.file_name.clone(),
        statement: statement
            .map(|s| target.redact(&shortened(&s.text)))
            .unwrap_or_default(),
        line: line.or(statement.map(|s| s.line)),
        message,
        code,
        detail,
        hint,
        outside_transaction: migration.outside_transaction,
    }
}

/// A statement's first line, at most 80 characters: enough to find it in the file.
pub(crate) fn shortened(statement: &str) -> String {
    let first = statement.lines().next().unwrap_or_default().trim();
    let mut out: String = first.chars().take(80).collect();
    if first.chars().count() > 80 || statement.lines().nth(1).is_some() {
        out.push('…');
    }
    out
}

/// [`migration_state`] through the Management API's SQL endpoint: two reads (which history
/// tables exist, then what they hold); nothing is created.
pub async fn migration_state_over_endpoint(
    endpoint: &SqlEndpoint,
    set: &MigrationSet,
) -> Result<TenantMigrationState, TenantDbError> {
    Ok(history_over_endpoint(endpoint).await?.compare(set).state)
}

/// [`apply_migrations`] through the Management API's SQL endpoint, for a project whose database
/// password is not ours. Each file without the marker is one statement
/// (`apply_file_in_one_statement.sql`: lock, check, the file, both rows), so the once-only and
/// all-or-nothing guarantees hold although each request is its own session.
///
/// What differs from a connection: no session outlives a request, so a marked file is claimed
/// by a row (`provisioner.migration_claims`) instead of a session lock; its holder sends the
/// statement alone and then records it, and other appliers wait for the record (a claim older
/// than 30 minutes is taken to be a dead holder's and taken over: the statement runs again,
/// which it must bear anyway). A failing statement's line is where it starts, PostgreSQL's
/// position within it being lost.
pub async fn apply_migrations_over_endpoint(
    endpoint: &SqlEndpoint,
    set: &MigrationSet,
) -> Result<MigrationsApplied, TenantDbError> {
    let comparison = history_over_endpoint(endpoint)
        .await?
        .compare(set)
        .refuse_drift()?;
    let mut tally = ApplyTally::new(set, &comparison);
    if let Some(first) = &comparison.adopt_legacy {
        apply_file_over_endpoint(endpoint, first, false).await?;
    }
    for migration in comparison.pending_files(set) {
        let ran = if migration.outside_transaction {
            run_outside_transaction_over_endpoint(endpoint, migration).await?
        } else {
            apply_file_over_endpoint(endpoint, migration, true).await?
        };
        tally.count(migration, ran);
    }
    Ok(tally.finish(set))
}

async fn history_over_endpoint(endpoint: &SqlEndpoint) -> Result<History, TenantDbError> {
    let during = "reading the migration history";
    let rows = endpoint
        .rows(&without_comment_lines(HISTORY_TABLES_SQL), &[], during)
        .await?;
    let present = |column: &str| {
        rows.first()
            .and_then(|row| row.get(column))
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false)
    };
    let fragment = |exists: bool, sql: &str| {
        if exists {
            without_comment_lines(sql)
        } else {
            without_comment_lines(ENDPOINT_ABSENT_SQL)
        }
    };
    let query = without_comment_lines(ENDPOINT_HISTORY_SQL)
        .replace(
            "__MIGRATIONS__",
            &fragment(present("migrations"), ENDPOINT_MIGRATIONS_SQL),
        )
        .replace(
            "__CHECKSUMS__",
            &fragment(present("checksums"), ENDPOINT_CHECKSUMS_SQL),
        )
        .replace(
            "__LEGACY__",
            &fragment(present("legacy"), ENDPOINT_LEGACY_SQL),
        );
    let rows = endpoint.rows(&query, &[], during).await?;
    let malformed = || TenantDbError::Endpoint {
        during,
        message: "the answer did not hold the history's three columns".to_owned(),
        code: None,
        retryable: false,
    };
    let row = rows.first().ok_or_else(malformed)?;
    let text = |value: &serde_json::Value, key: &str| {
        value
            .get(key)
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
    };
    let list = |column: &str| {
        row.get(column)
            .and_then(serde_json::Value::as_array)
            .cloned()
            .ok_or_else(malformed)
    };
    let mut history = History::default();
    for item in list("migrations")? {
        history.migrations.push(RecordedRow {
            version: text(&item, "version").ok_or_else(malformed)?,
            name: text(&item, "name"),
        });
    }
    for item in list("checksums")? {
        history.checksums.insert(
            text(&item, "version").ok_or_else(malformed)?,
            text(&item, "checksum").ok_or_else(malformed)?,
        );
    }
    for item in list("legacy")? {
        history
            .legacy
            .push(item.as_str().ok_or_else(malformed)?.to_owned());
    }
    Ok(history)
}

/// One file through `apply_file_in_one_statement.sql`; with `run` false it is only recorded.
/// True when this request recorded it.
async fn apply_file_over_endpoint(
    endpoint: &SqlEndpoint,
    migration: &Migration,
    run: bool,
) -> Result<bool, TenantDbError> {
    let bookkeeping = dollar_quote(BOOKKEEPING_TABLES_SQL, "bookkeeping");
    let statements = format!(
        "ARRAY[{}]::text[]",
        migration
            .statements
            .iter()
            .map(|s| dollar_quote(s, "statement"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut body_tag = String::from("$apply$");
    let mut n = 0;
    while migration.sql.contains(&body_tag) || BOOKKEEPING_TABLES_SQL.contains(&body_tag) {
        n += 1;
        body_tag = format!("$apply_{n}$");
    }
    let statement = without_comment_lines(APPLY_FILE_IN_ONE_STATEMENT_SQL)
        .replace("__BODY_TAG__", &body_tag)
        .replace("__LOCK_KEY__", &APPLY_ADVISORY_LOCK_KEY.to_string())
        .replace("__RUN__", if run { "true" } else { "false" })
        .replace("__VERSION__", &quote_literal(&migration.version))
        .replace("__NAME__", &quote_literal(&migration.name))
        .replace("__CHECKSUM__", &quote_literal(&migration.checksum))
        .replace("__BOOKKEEPING__", &bookkeeping)
        // Last: the statements are the only part that may hold the other markers' text.
        .replace("__STATEMENTS__", &statements);
    let rows = endpoint.send(&statement, &[]).await.map_err(|failure| {
        if failure.retryable {
            failure.into_error("applying a migration")
        } else {
            endpoint_migration_error(migration, failure.message, failure.code)
        }
    })?;
    let applied_now = rows
        .first()
        .and_then(|row| row.get("applied_now"))
        .and_then(serde_json::Value::as_bool);
    // No checksum row: the version was recorded by someone else (the CLI), so not by us now.
    Ok(applied_now.unwrap_or(false))
}

/// A marked file over the endpoint: claimed (`claim_in_one_statement.sql`), its statement sent
/// alone by the claim's holder, then recorded. An applier that finds it claimed waits for the
/// record: false when another applier ran it.
async fn run_outside_transaction_over_endpoint(
    endpoint: &SqlEndpoint,
    migration: &Migration,
) -> Result<bool, TenantDbError> {
    let started = Instant::now();
    match claim_over_endpoint(endpoint, migration).await? {
        Claim::Recorded => return Ok(false),
        Claim::Held => {}
        // Its holder's record is awaited; a holder that died leaves a claim the first apply
        // after it went stale takes over.
        Claim::HeldByAnother => loop {
            if started.elapsed() > APPLY_TIMEOUT {
                return Err(TenantDbError::Timeout {
                    what: "waiting for another applier to finish a migration that runs outside \
                           a transaction",
                    after: APPLY_TIMEOUT,
                });
            }
            tokio::time::sleep(CLAIM_POLL).await;
            if recorded_over_endpoint(endpoint, migration).await? {
                return Ok(false);
            }
        },
    }
    endpoint
        .send(&migration.sql, &[])
        .await
        .map_err(|failure| {
            if failure.retryable {
                failure.into_error("applying a migration")
            } else {
                let mut error = endpoint_migration_error(migration, failure.message, failure.code);
                if let TenantDbError::MigrationFailed {
                    statement, line, ..
                } = &mut error
                    && let Some(only) = screening::split(&migration.sql)
                        .ok()
                        .and_then(|s| s.into_iter().next())
                {
                    *statement = shortened(&only.text);
                    *line = Some(only.line);
                }
                error
            }
        })?;
    apply_file_over_endpoint(endpoint, migration, false).await?;
    Ok(true)
}

/// Where a no-transaction file stands for an applier on the endpoint.
enum Claim {
    /// This applier holds the claim: it runs the file.
    Held,
    /// Another applier holds a fresh claim.
    HeldByAnother,
    /// The file is recorded: nothing to do.
    Recorded,
}

async fn claim_over_endpoint(
    endpoint: &SqlEndpoint,
    migration: &Migration,
) -> Result<Claim, TenantDbError> {
    let mut body_tag = String::from("$claim$");
    let mut n = 0;
    while BOOKKEEPING_TABLES_SQL.contains(&body_tag) {
        n += 1;
        body_tag = format!("$claim_{n}$");
    }
    let statement = without_comment_lines(CLAIM_IN_ONE_STATEMENT_SQL)
        .replace("__BODY_TAG__", &body_tag)
        .replace("__LOCK_KEY__", &APPLY_ADVISORY_LOCK_KEY.to_string())
        .replace(
            "__STALE_SECONDS__",
            &CLAIM_STALE_AFTER.as_secs().to_string(),
        )
        .replace("__VERSION__", &quote_literal(&migration.version))
        .replace(
            "__BOOKKEEPING__",
            &dollar_quote(BOOKKEEPING_TABLES_SQL, "bookkeeping"),
        );
    let rows = endpoint
        .rows(
            &statement,
            &[],
            "claiming a migration that runs outside a transaction",
        )
        .await?;
    if rows
        .first()
        .and_then(|row| row.get("claimed"))
        .and_then(serde_json::Value::as_bool)
        == Some(true)
    {
        return Ok(Claim::Held);
    }
    Ok(if recorded_over_endpoint(endpoint, migration).await? {
        Claim::Recorded
    } else {
        Claim::HeldByAnother
    })
}

async fn recorded_over_endpoint(
    endpoint: &SqlEndpoint,
    migration: &Migration,
) -> Result<bool, TenantDbError> {
    let query = without_comment_lines(ENDPOINT_IS_RECORDED_SQL)
        .replace("__VERSION__", &quote_literal(&migration.version));
    let rows = endpoint
        .rows(&query, &[], "reading the migration history")
        .await?;
    Ok(rows
        .first()
        .and_then(|row| row.get("recorded"))
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false))
}

/// The marker `apply_file_in_one_statement.sql` puts before a failing statement's message.
const STATEMENT_MARKER: &str = "provisioner-statement ";

/// A failed file's error from the endpoint's message: the statement named by its number when
/// the message carries one.
fn endpoint_migration_error(
    migration: &Migration,
    message: String,
    code: Option<String>,
) -> TenantDbError {
    let numbered = message.find(STATEMENT_MARKER).and_then(|at| {
        let rest = &message[at + STATEMENT_MARKER.len()..];
        let (number, text) = rest.split_once(": ")?;
        Some((number.parse::<usize>().ok()?, text.to_owned()))
    });
    let statements = screening::split(&migration.sql).unwrap_or_default();
    let (statement, message) = match numbered {
        Some((number, text)) => (number.checked_sub(1).and_then(|i| statements.get(i)), text),
        None => (None, message),
    };
    TenantDbError::MigrationFailed {
        version: migration.version.clone(),
        file_name: migration.file_name.clone(),
        statement: statement.map(|s| shortened(&s.text)).unwrap_or_default(),
        line: statement.map(|s| s.line),
        message,
        code,
        detail: None,
        hint: None,
        outside_transaction: migration.outside_transaction,
    }
}
