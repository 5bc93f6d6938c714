//! Applying a schema script in one transaction, once per version.

use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use super::screening::{self, Refusal};
use super::sql_endpoint::{SqlEndpoint, dollar_quote, quote_literal, without_comment_lines};
use super::target::Target;
use super::{TenantDbError, schema_checksum};

/// How long applying a schema may take in all; a timeout drops the connection, which rolls back.
const APPLY_TIMEOUT: Duration = Duration::from_secs(300);
/// Serialises concurrent applies to one tenant database (any fixed key; advisory keys are per
/// database). The bytes spell "schemaver".
pub(super) const APPLY_ADVISORY_LOCK_KEY: i64 = 0x7363_6865_6d61_7665;

const VERSION_TABLE_SQL: &str = include_str!("../../sql/tenant_schema/version_table.sql");
const LOCK_SQL: &str = include_str!("../../sql/tenant_schema/lock.sql");
const LOCK_TIMEOUT_SQL: &str = include_str!("../../sql/tenant_schema/lock_timeout.sql");
const RECORDED_VERSIONS_SQL: &str = include_str!("../../sql/tenant_schema/recorded_versions.sql");
const RECORD_VERSION_SQL: &str = include_str!("../../sql/tenant_schema/record_version.sql");
const TRANSACTION_ID_SQL: &str = include_str!("../../sql/tenant_schema/transaction_id.sql");
const APPLY_IN_ONE_STATEMENT_SQL: &str =
    include_str!("../../sql/tenant_schema/apply_in_one_statement.sql");

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
    screen(&target, schema_sql)?;
    let conn = target.connect().await?;
    apply_checked(conn, &target, schema_sql).await
}

/// Parses the script and refuses what cannot run atomically, before anything is sent.
fn screen(target: &Target, schema_sql: &str) -> Result<(), TenantDbError> {
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
    })
}

/// [`apply_schema`] through the Management API's SQL endpoint, for a project whose database
/// password is not ours. The same screening first; then the lock, the version check, the
/// script and its version row go as one statement (`apply_in_one_statement.sql`), so the
/// one-transaction guarantee holds although each call is its own request: a script that
/// fails anywhere leaves nothing, not even the version table's first row.
///
/// What differs from a connection: a failing statement's line is not known (the endpoint
/// reports the error of the `DO` block that ran it).
pub async fn apply_schema_over_endpoint(
    endpoint: &SqlEndpoint,
    schema_sql: &str,
) -> Result<Applied, TenantDbError> {
    // No URL, so nothing to scrub: the endpoint never sees a password.
    let target = Target::without_password();
    screen(&target, schema_sql)?;
    let checksum = schema_checksum(schema_sql);
    let version_table = dollar_quote(VERSION_TABLE_SQL, "version_table");
    let script = dollar_quote(schema_sql, "schema");
    let mut body_tag = String::from("$apply$");
    let mut n = 0;
    while schema_sql.contains(&body_tag) || VERSION_TABLE_SQL.contains(&body_tag) {
        n += 1;
        body_tag = format!("$apply_{n}$");
    }
    let statement = without_comment_lines(APPLY_IN_ONE_STATEMENT_SQL)
        .replace("__BODY_TAG__", &body_tag)
        .replace("__LOCK_KEY__", &APPLY_ADVISORY_LOCK_KEY.to_string())
        .replace("__CHECKSUM__", &quote_literal(&checksum))
        .replace("__VERSION_TABLE__", &version_table)
        // Last: the script is the only part that may hold the other markers' text.
        .replace("__SCRIPT__", &script);
    let rows = endpoint.send(&statement, &[]).await.map_err(|failure| {
        if failure.retryable {
            failure.into_error("applying the schema")
        } else {
            TenantDbError::SchemaFailed {
                message: failure.message,
                code: failure.code,
                line: None,
                detail: None,
                hint: None,
            }
        }
    })?;
    let recorded: Vec<(String, bool)> = rows
        .iter()
        .filter_map(|row| {
            Some((
                row.get("checksum")?.as_str()?.to_owned(),
                row.get("applied_now")?.as_bool()?,
            ))
        })
        .collect();
    if recorded.len() != rows.len() {
        return Err(TenantDbError::Endpoint {
            during: "reading the schema version",
            message: "the answer held a row without checksum and applied_now".to_owned(),
            code: None,
            retryable: false,
        });
    }
    match recorded.iter().find(|(c, _)| *c == checksum) {
        Some((_, applied_now)) => Ok(Applied {
            checksum,
            already_applied: !applied_now,
        }),
        None => Err(TenantDbError::DifferentVersionApplied {
            applied: recorded
                .last()
                .map(|(c, _)| c.clone())
                .unwrap_or_else(|| "(none recorded)".to_owned()),
            wanted: checksum,
        }),
    }
}

async fn apply_checked(
    mut conn: PgConnection,
    target: &Target,
    schema_sql: &str,
) -> Result<Applied, TenantDbError> {
    let checksum = schema_checksum(schema_sql);
    let outcome = tokio::time::timeout(
        APPLY_TIMEOUT,
        apply_in_transaction(&mut conn, target, schema_sql, &checksum),
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
