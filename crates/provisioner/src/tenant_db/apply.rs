//! Applying a schema script in one transaction, once per version.

use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use super::screening::{self, Refusal};
use super::target::Target;
use super::{TenantDbError, schema_checksum};

/// How long applying a schema may take in all; a timeout drops the connection, which rolls back.
const APPLY_TIMEOUT: Duration = Duration::from_secs(300);
/// Serialises concurrent applies to one tenant database (any fixed key; advisory keys are per
/// database). The bytes spell "schemaver".
const APPLY_ADVISORY_LOCK_KEY: i64 = 0x7363_6865_6d61_7665;

const VERSION_TABLE_SQL: &str = include_str!("../../sql/tenant_schema/version_table.sql");
const LOCK_SQL: &str = include_str!("../../sql/tenant_schema/lock.sql");
const LOCK_TIMEOUT_SQL: &str = include_str!("../../sql/tenant_schema/lock_timeout.sql");
const RECORDED_VERSIONS_SQL: &str = include_str!("../../sql/tenant_schema/recorded_versions.sql");
const RECORD_VERSION_SQL: &str = include_str!("../../sql/tenant_schema/record_version.sql");
const TRANSACTION_ID_SQL: &str = include_str!("../../sql/tenant_schema/transaction_id.sql");

/// The outcome of [`apply_schema`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Applied {
    /// SHA-256 of the schema script, lowercase hex: the schema's version.
    pub checksum: String,
    /// True when the database already had this version and nothing was run.
    pub already_applied: bool,
}

/// Applies `schema_sql` to the database at `db_url` in one transaction, unless this exact
/// script (by checksum) is already recorded there.
///
/// The script is parsed first, and refused before anything is sent when it holds transaction
/// control, role changes or statements that cannot run in a transaction (see
/// [`screening`](super::screening)). Concurrent calls on one database are serialised by an
/// advisory lock; the later one finds the version recorded.
pub async fn apply_schema(
    db_url: &SecretString,
    schema_sql: &str,
) -> Result<Applied, TenantDbError> {
    let target = Target::parse(db_url)?;
    screening::screen(schema_sql).map_err(|refusal| match refusal {
        Refusal::Unparsable { message } => TenantDbError::SchemaUnparsable {
            message: target.redact(&message),
        },
        Refusal::Statements(statements) => TenantDbError::SchemaRefused {
            statements: statements
                .into_iter()
                .map(|mut s| {
                    s.statement = target.redact(&s.statement);
                    s
                })
                .collect(),
        },
    })?;
    let mut conn = target.connect().await?;
    let checksum = schema_checksum(schema_sql);
    let outcome = tokio::time::timeout(
        APPLY_TIMEOUT,
        apply_in_transaction(&mut conn, &target, schema_sql, &checksum),
    )
    .await
    .map_err(|_| TenantDbError::Timeout {
        what: "applying the schema",
        after: APPLY_TIMEOUT,
    })??;
    // Closing politely only saves the server a log line; the outcome is already settled.
    let _ = conn.close().await;
    Ok(outcome)
}

async fn apply_in_transaction(
    conn: &mut PgConnection,
    target: &Target,
    schema_sql: &str,
    checksum: &str,
) -> Result<Applied, TenantDbError> {
    let db = |during: &'static str| move |e: sqlx::Error| target.database_error(during, &e);

    let mut tx = conn
        .begin()
        .await
        .map_err(db("starting the schema transaction"))?;
    sqlx::query(LOCK_SQL)
        .bind(APPLY_ADVISORY_LOCK_KEY)
        .execute(&mut *tx)
        .await
        .map_err(db("locking the schema version table"))?;
    sqlx::raw_sql(VERSION_TABLE_SQL)
        .execute(&mut *tx)
        .await
        .map_err(db("creating the schema version table"))?;

    let recorded: Vec<String> = sqlx::query_scalar(RECORDED_VERSIONS_SQL)
        .fetch_all(&mut *tx)
        .await
        .map_err(db("reading the schema version"))?;
    if recorded.iter().any(|c| c == checksum) {
        tx.rollback()
            .await
            .map_err(db("ending the schema transaction"))?;
        return Ok(Applied {
            checksum: checksum.to_owned(),
            already_applied: true,
        });
    }
    if let Some(applied) = recorded.into_iter().last() {
        return Err(TenantDbError::DifferentVersionApplied {
            applied,
            wanted: checksum.to_owned(),
        });
    }

    sqlx::raw_sql(LOCK_TIMEOUT_SQL)
        .execute(&mut *tx)
        .await
        .map_err(db("setting the lock timeout"))?;
    let txid_before: i64 = sqlx::query_scalar(TRANSACTION_ID_SQL)
        .fetch_one(&mut *tx)
        .await
        .map_err(db("reading the transaction id"))?;

    // The script is the operator's own template, run as written: that is the point of this
    // step, so it is asserted safe rather than parameterised.
    if let Err(e) = sqlx::raw_sql(AssertSqlSafe(schema_sql))
        .execute(&mut *tx)
        .await
    {
        // Answer only once nothing of the script remains; should the rollback itself fail,
        // the connection is closed on return, which rolls back too.
        let failure = target.schema_error(schema_sql, &e);
        let _ = tx.rollback().await;
        return Err(failure);
    }

    // The screening refuses transaction control before anything is sent; this is the
    // server's own word on it, for whatever the parser could not see (a procedure that
    // commits, say).
    let txid_after: i64 = sqlx::query_scalar(TRANSACTION_ID_SQL)
        .fetch_one(&mut *tx)
        .await
        .map_err(db("reading the transaction id"))?;
    if txid_after != txid_before {
        let _ = tx.rollback().await;
        return Err(TenantDbError::SchemaEndsTransaction);
    }

    sqlx::query(RECORD_VERSION_SQL)
        .bind(checksum)
        .execute(&mut *tx)
        .await
        .map_err(db("recording the schema version"))?;
    tx.commit()
        .await
        .map_err(db("committing the schema transaction"))?;
    Ok(Applied {
        checksum: checksum.to_owned(),
        already_applied: false,
    })
}
