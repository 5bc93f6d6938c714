//! The app schema in a client's Supabase database: its migrations applied, each file once, and
//! the result checked as the Data API will meet it.
//!
//! - [`apply_migrations`] (`migrations`) applies the pending files of a
//!   [`MigrationSet`](crate::templates::MigrationSet) in version order over a direct connection
//!   (not a transaction-mode pooler), each in its own transaction (or, marked
//!   `-- provisioner:no-transaction`, as one statement outside any), and records each in
//!   `supabase_migrations.schema_migrations` as the Supabase CLI does, with our checksum beside
//!   it in `provisioner.migration_checksums`, a schema the API roles cannot reach. No file runs
//!   twice, whatever appliers run at once or crash; a file that fails leaves nothing of itself.
//!   [`migration_state`] reads what a tenant has (applied, pending, drift) without changing it.
//!   The files are parsed and screened when the set is loaded (`screening`), before anything
//!   is sent.
//! - [`check_schema`] (`checks`, `probe`) inspects every schema the Data API exposes: row
//!   level security on every table, every table readable as `authenticated` with rows in it (a
//!   policy that recurses, directly, through a function or through another table, fails here as
//!   it would for a real user), no secret-looking column readable by `anon` or by other
//!   tenants, no view that skips row level security, no `SECURITY DEFINER` function open to
//!   `anon`. The result is a [`CheckReport`] of findings (`report`), one per root cause.
//!
//! All three also run through the Management API's SQL endpoint
//! ([`apply_migrations_over_endpoint`], [`migration_state_over_endpoint`],
//! [`check_schema_over_endpoint`], `sql_endpoint`) for a project whose password is not ours,
//! with the same guarantees: each transactional file is one statement, each probe round one
//! statement that ends in an error. Which route a connection takes (the session pooler, or
//! `SUPABASE_DB_URL_TEMPLATE`) is `route`'s business.
//!
//! The connection URL carries the database password: it is taken as a
//! [`SecretString`](secrecy::SecretString), never logged, and scrubbed from every error
//! message (`target`).

// A failed migration's error carries the file, the statement and PostgreSQL's whole answer,
// which makes `TenantDbError` larger than clippy's default for `Err`. It is built once per
// failed tenant operation, never in a hot loop, and matched field by field by its callers;
// boxing it would cost clarity for no measurable gain.
#![allow(clippy::result_large_err)]

mod catalog;
mod checks;
mod migrations;
mod probe;
mod report;
mod route;
pub(crate) mod screening;
mod secrets;
mod sql_endpoint;
mod target;

use std::time::Duration;

use sha2::{Digest, Sha256};

pub use checks::{CheckOptions, DEFAULT_EXPOSED_SCHEMAS, check_schema, check_schema_over_endpoint};
pub use migrations::{
    AppliedMigration, MigrationDrift, MigrationsApplied, TenantMigrationState, apply_migrations,
    apply_migrations_over_endpoint, migration_state, migration_state_over_endpoint,
};
pub use report::{CheckName, CheckOutcome, CheckReport, Finding, Severity};
pub use route::{DatabaseRoute, RouteError, RouteKind, session_pooler, template_route};
pub use screening::{NO_TRANSACTION_MARKER, RefusedStatement};
pub use secrets::looks_secret;
pub use sql_endpoint::SqlEndpoint;

/// Why the schema step could not apply or inspect the tenant database. Messages never contain
/// the connection password.
#[derive(Debug, thiserror::Error)]
pub enum TenantDbError {
    #[error("the tenant database URL is not valid: {reason}")]
    InvalidUrl { reason: String },

    #[error("could not connect to the tenant database {database} on {host}: {message}")]
    Connect {
        host: String,
        database: String,
        message: String,
        /// SQLSTATE when the server answered (e.g. `3D000` no such database); none for I/O.
        code: Option<String>,
    },

    #[error("{what} did not finish within {after:?}")]
    Timeout { what: &'static str, after: Duration },

    #[error(
        "a migration ended the surrounding transaction (COMMIT or ROLLBACK inside the file, e.g. \
         in a procedure it calls), so it was not applied atomically and was rolled back; remove \
         transaction control from the file"
    )]
    SchemaEndsTransaction,

    #[error(
        "migration {file_name} (version {version}) failed{}: `{statement}`: {message}{}{}{}; {}",
        line.map(|l| format!(" at line {l}")).unwrap_or_default(),
        code.as_ref().map(|c| format!(" (SQLSTATE {c})")).unwrap_or_default(),
        detail.as_ref().map(|d| format!("; detail: {d}")).unwrap_or_default(),
        hint.as_ref().map(|h| format!("; hint: {h}")).unwrap_or_default(),
        if *outside_transaction {
            "it ran outside a transaction, so what it did before failing may remain (a failed \
             CREATE INDEX CONCURRENTLY leaves an invalid index: drop it before trying again); \
             earlier files stay applied"
        } else {
            "nothing of this file was kept; earlier files stay applied"
        }
    )]
    MigrationFailed {
        version: String,
        file_name: String,
        /// The failing statement's first line, shortened, the password scrubbed.
        statement: String,
        /// Line of the file the error points at (or where the failing statement starts).
        line: Option<usize>,
        message: String,
        code: Option<String>,
        detail: Option<String>,
        hint: Option<String>,
        /// The file ran outside a transaction (marked `-- provisioner:no-transaction`).
        outside_transaction: bool,
    },

    #[error(
        "the migrations were not applied, nothing was run: the database's migration history \
         differs from the migration files: {}",
        drift.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    )]
    MigrationDrift { drift: Vec<MigrationDrift> },

    #[error(
        "the connecting role cannot act as {role}: {message}; connect as the project's owner \
         role (a member of anon, authenticated and service_role) or a superuser"
    )]
    CannotActAs { role: &'static str, message: String },

    #[error("{during} through the Management API's SQL endpoint failed: {message}")]
    Endpoint {
        during: &'static str,
        message: String,
        code: Option<String>,
        /// The request failed for a while (rate limit, timeout, 5xx), not the SQL.
        retryable: bool,
    },

    #[error("{during} failed: {message}")]
    Database {
        during: &'static str,
        message: String,
        code: Option<String>,
    },
}

impl TenantDbError {
    /// Whether trying again later may succeed: the server unreachable, starting up, out of
    /// resources, or a deadlock. A broken schema, a refused login or a missing database stay
    /// broken. A migration file that failed for the moment (e.g. the server out of shared
    /// memory for its locks) inside its transaction kept nothing, so it is tried again; one
    /// that ran outside a transaction may have left half its work, so it is not.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Timeout { .. } => true,
            Self::Connect { code, .. } | Self::Database { code, .. } => {
                code.as_deref().is_none_or(is_momentary)
            }
            Self::Endpoint {
                retryable, code, ..
            } => *retryable || code.as_deref().is_some_and(is_momentary),
            Self::MigrationFailed {
                code,
                outside_transaction,
                ..
            } => !outside_transaction && code.as_deref().is_some_and(is_momentary),
            Self::InvalidUrl { .. }
            | Self::SchemaEndsTransaction
            | Self::MigrationDrift { .. }
            | Self::CannotActAs { .. } => false,
        }
    }
}

impl TenantDbError {
    /// Whether the server was short of something many sessions compete for (class 53:
    /// memory, its lock table, connections) or two sessions deadlocked (class 40): busy
    /// sessions all retrying after the same wait would only meet again.
    pub fn is_contention(&self) -> bool {
        let code = match self {
            Self::Connect { code, .. }
            | Self::Database { code, .. }
            | Self::Endpoint { code, .. }
            | Self::MigrationFailed { code, .. } => code.as_deref(),
            _ => None,
        };
        self.is_retryable() && code.is_some_and(|c| c.starts_with("53") || c.starts_with("40"))
    }
}

/// Whether `sqlstate` describes the moment, not the request ([`TRANSIENT_SQLSTATE_CLASSES`]).
pub(crate) fn is_momentary(sqlstate: &str) -> bool {
    TRANSIENT_SQLSTATE_CLASSES
        .iter()
        .any(|class| sqlstate.starts_with(class))
}

/// Logs in to the database at `db_url` and out again: whether the route and its password are
/// accepted (a refused password is [`TenantDbError::Connect`] with SQLSTATE `28P01`).
pub async fn try_login(db_url: &secrecy::SecretString) -> Result<(), TenantDbError> {
    let conn = target::Target::parse(db_url)?.connect().await?;
    // Closing politely only saves the server a log line; the login already answered.
    let _ = sqlx::Connection::close(conn).await;
    Ok(())
}

/// SQLSTATE classes that describe the moment, not the request: 08 connection exception,
/// 40 transaction rollback (deadlock, serialisation), 53 insufficient resources, 57 operator
/// intervention (e.g. 57P03 "the database system is starting up").
const TRANSIENT_SQLSTATE_CLASSES: &[&str] = &["08", "40", "53", "57"];

/// The schema's version: SHA-256 of the script's bytes, lowercase hex.
pub fn schema_checksum(schema_sql: &str) -> String {
    schema_checksum_of_bytes(schema_sql.as_bytes())
}

/// [`schema_checksum`] of a file's bytes, before they are known to be UTF-8.
pub fn schema_checksum_of_bytes(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `"name"`, with embedded quotes doubled: an identifier for SQL or a `search_path` value.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

pub(crate) fn sqlstate(e: &sqlx::Error) -> Option<String> {
    e.as_database_error()
        .and_then(|d| d.code())
        .map(|c| c.into_owned())
}

/// PostgreSQL's own message when the server sent one, else sqlx's description.
pub(crate) fn error_message(e: &sqlx::Error) -> String {
    match e.as_database_error() {
        Some(d) => d.message().to_owned(),
        None => e.to_string(),
    }
}

/// 1-based line of the 1-based character `position` in `text`.
pub(crate) fn line_of(text: &str, position: usize) -> usize {
    1 + text
        .chars()
        .take(position.saturating_sub(1))
        .filter(|&c| c == '\n')
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_is_sha256_hex() {
        // SHA-256 of the empty string, a published constant.
        assert_eq!(
            schema_checksum(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_ne!(schema_checksum("a"), schema_checksum("b"));
    }

    #[test]
    fn positions_map_to_lines() {
        let text = "one\ntwo\nthree";
        assert_eq!(line_of(text, 1), 1);
        assert_eq!(line_of(text, 5), 2);
        assert_eq!(line_of(text, 9), 3);
    }

    #[test]
    fn only_momentary_failures_are_retryable() {
        let connect = |code: Option<&str>| TenantDbError::Connect {
            host: "h:5432".into(),
            database: "d".into(),
            message: "m".into(),
            code: code.map(str::to_owned),
        };
        assert!(connect(None).is_retryable(), "I/O: server not up yet");
        assert!(connect(Some("57P03")).is_retryable(), "starting up");
        assert!(
            connect(Some("53300")).is_retryable(),
            "too many connections"
        );
        assert!(!connect(Some("28P01")).is_retryable(), "wrong password");
        assert!(!connect(Some("3D000")).is_retryable(), "no such database");
        let deadlock = TenantDbError::Database {
            during: "x",
            message: "m".into(),
            code: Some("40P01".into()),
        };
        assert!(deadlock.is_retryable());
        let broken = TenantDbError::MigrationFailed {
            version: "0002".into(),
            file_name: "0002_x.sql".into(),
            statement: "SELECT * FROM nowhere".into(),
            message: "m".into(),
            code: Some("42P01".into()),
            line: Some(3),
            detail: None,
            hint: None,
            outside_transaction: false,
        };
        assert!(!broken.is_retryable());
        assert!(!TenantDbError::SchemaEndsTransaction.is_retryable());
    }

    #[test]
    fn a_migration_the_server_had_no_resources_for_is_retried_when_nothing_was_kept() {
        let failed = |code: &str, outside_transaction| TenantDbError::MigrationFailed {
            version: "0001".into(),
            file_name: "0001_init.sql".into(),
            statement: "CREATE TABLE public.companies (".into(),
            message: "out of shared memory".into(),
            code: Some(code.into()),
            line: Some(127),
            detail: None,
            hint: Some("You might need to increase max_locks_per_transaction.".into()),
            outside_transaction,
        };
        assert!(
            failed("53200", false).is_retryable(),
            "out of shared memory"
        );
        assert!(failed("40P01", false).is_retryable(), "deadlock");
        // Half of a file without a transaction may remain: a person looks first.
        assert!(!failed("53200", true).is_retryable());
        assert!(!failed("42P07", false).is_retryable(), "table exists");
    }
}
