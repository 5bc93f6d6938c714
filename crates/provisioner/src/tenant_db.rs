//! Applying the app schema to a client's Supabase database, and checking it as a user would meet it.
//!
//! [`apply_schema`] runs a schema script in one transaction over a direct connection (not a
//! transaction-mode pooler) and records the script's SHA-256 checksum in
//! `provisioner.schema_versions` inside the tenant database, a schema the API roles cannot
//! reach. A second call with the same script finds the checksum and does nothing; a script that
//! fails anywhere leaves nothing behind.
//!
//! [`check_schema`] inspects `public` the way the Supabase API will meet it: row level security
//! on every table, every table selectable as `authenticated` with a synthetic user (a policy
//! that recurses fails here exactly as it would for a real user), and no table readable by
//! `anon` that has a secret-looking column. Failed checks are a [`CheckReport`], not an error;
//! [`TenantDbError`] is kept for "could not look".
//!
//! The connection URL carries the database password: it is taken as a [`SecretString`], never
//! logged, and scrubbed from every error message.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::postgres::{PgConnectOptions, PgDatabaseError, PgErrorPosition};
use sqlx::{AssertSqlSafe, Connection, PgConnection, Row};

/// How long a connection attempt may take before the step gives up on it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long applying a schema may take in all; a timeout drops the connection, which rolls back.
const APPLY_TIMEOUT: Duration = Duration::from_secs(300);
/// A schema waiting this long for a lock is stuck behind something else; fail rather than hang.
const APPLY_LOCK_TIMEOUT: &str = "30s";
/// Serialises concurrent applies to one tenant database (any fixed key; advisory keys are per
/// database). The bytes spell "schemaver".
const APPLY_ADVISORY_LOCK_KEY: i64 = 0x7363_6865_6d61_7665;

/// The outcome of [`apply_schema`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Applied {
    /// SHA-256 of the schema script, lowercase hex: the schema's version.
    pub checksum: String,
    /// True when the database already had this version and nothing was run.
    pub already_applied: bool,
}

/// What [`check_schema`] may let through.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckOptions {
    /// `"table.column"` pairs in `public` that `anon` may read although their names look
    /// secret (e.g. a public key that really is public).
    pub allow_anon_secret_columns: Vec<String>,
}

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
        "the schema failed{} and nothing of it was kept: {message}{}{}{}",
        line.map(|l| format!(" at line {l}")).unwrap_or_default(),
        code.as_ref().map(|c| format!(" (SQLSTATE {c})")).unwrap_or_default(),
        detail.as_ref().map(|d| format!("; detail: {d}")).unwrap_or_default(),
        hint.as_ref().map(|h| format!("; hint: {h}")).unwrap_or_default(),
    )]
    SchemaFailed {
        message: String,
        code: Option<String>,
        /// Line of the schema script the error points at, when PostgreSQL gives a position.
        line: Option<usize>,
        detail: Option<String>,
        hint: Option<String>,
    },

    #[error(
        "the schema ended the surrounding transaction (COMMIT or ROLLBACK inside the script), so it \
         was not applied atomically; remove transaction control from the schema"
    )]
    SchemaEndsTransaction,

    #[error(
        "the tenant database already has schema version {applied}, not {wanted}; changing the \
         schema of an existing client is a migration, which this step does not do"
    )]
    DifferentVersionApplied { applied: String, wanted: String },

    #[error(
        "the connecting role cannot act as {role}: {message}; connect as the project's owner \
         role (a member of anon, authenticated and service_role) or a superuser"
    )]
    CannotActAs { role: &'static str, message: String },

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
    /// broken.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Timeout { .. } => true,
            Self::Connect { code, .. } | Self::Database { code, .. } => match code.as_deref() {
                None => true,
                Some(code) => TRANSIENT_SQLSTATE_CLASSES
                    .iter()
                    .any(|c| code.starts_with(c)),
            },
            Self::InvalidUrl { .. }
            | Self::SchemaFailed { .. }
            | Self::SchemaEndsTransaction
            | Self::DifferentVersionApplied { .. }
            | Self::CannotActAs { .. } => false,
        }
    }
}

/// SQLSTATE classes that describe the moment, not the request: 08 connection exception,
/// 40 transaction rollback (deadlock, serialisation), 53 insufficient resources, 57 operator
/// intervention (e.g. 57P03 "the database system is starting up").
const TRANSIENT_SQLSTATE_CLASSES: &[&str] = &["08", "40", "53", "57"];

/// The schema's version: SHA-256 of the script's bytes, lowercase hex.
pub fn schema_checksum(schema_sql: &str) -> String {
    hex::encode(Sha256::digest(schema_sql.as_bytes()))
}

/// Applies `schema_sql` to the database at `db_url` in one transaction, unless this exact
/// script (by checksum) is already recorded there.
///
/// The script must not contain transaction control, `CREATE INDEX CONCURRENTLY` or psql
/// meta-commands. Concurrent calls on one database are serialised by an advisory lock; the
/// later one finds the version recorded.
pub async fn apply_schema(
    db_url: &SecretString,
    schema_sql: &str,
) -> Result<Applied, TenantDbError> {
    let target = Target::parse(db_url)?;
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
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(APPLY_ADVISORY_LOCK_KEY)
        .execute(&mut *tx)
        .await
        .map_err(db("locking the schema version table"))?;
    sqlx::raw_sql(
        "CREATE SCHEMA IF NOT EXISTS provisioner;
         REVOKE ALL ON SCHEMA provisioner FROM PUBLIC;
         CREATE TABLE IF NOT EXISTS provisioner.schema_versions (
             checksum   text        PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         );
         REVOKE ALL ON provisioner.schema_versions FROM PUBLIC;",
    )
    .execute(&mut *tx)
    .await
    .map_err(db("creating the schema version table"))?;

    let recorded: Vec<String> =
        sqlx::query_scalar("SELECT checksum FROM provisioner.schema_versions ORDER BY applied_at")
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

    sqlx::raw_sql(AssertSqlSafe(format!(
        "SET LOCAL lock_timeout = '{APPLY_LOCK_TIMEOUT}'"
    )))
    .execute(&mut *tx)
    .await
    .map_err(db("setting the lock timeout"))?;
    let txid_before: i64 = sqlx::query_scalar("SELECT txid_current()")
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

    let txid_after: i64 = sqlx::query_scalar("SELECT txid_current()")
        .fetch_one(&mut *tx)
        .await
        .map_err(db("reading the transaction id"))?;
    if txid_after != txid_before {
        let _ = tx.rollback().await;
        return Err(TenantDbError::SchemaEndsTransaction);
    }

    sqlx::query("INSERT INTO provisioner.schema_versions (checksum) VALUES ($1)")
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

/// Which check a [`CheckOutcome`] reports on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CheckName {
    /// Row level security is enabled on every table in `public`.
    RlsEnabled,
    /// Every table in `public` can be selected as `authenticated` with a synthetic user.
    SelectableAsAuthenticated,
    /// No relation `anon` can read has a secret-looking column (unless allowed).
    NoAnonSecretColumns,
}

impl CheckName {
    fn description(self) -> &'static str {
        match self {
            Self::RlsEnabled => "row level security is enabled on every table in public",
            Self::SelectableAsAuthenticated => {
                "every table in public can be selected as authenticated with a synthetic user"
            }
            Self::NoAnonSecretColumns => {
                "no relation in public that anon can read has a secret-looking column"
            }
        }
    }
}

/// One thing a check found wrong, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckFailure {
    /// Relation name in `public`.
    pub table: String,
    pub column: Option<String>,
    pub message: String,
    pub remedy: String,
}

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckOutcome {
    pub check: CheckName,
    pub description: String,
    pub passed: bool,
    /// How many relations the check looked at.
    pub relations_examined: usize,
    pub failures: Vec<CheckFailure>,
    /// `table.column` pairs that would have failed but are allowed by configuration.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed: Vec<String>,
}

/// Everything [`check_schema`] looked at; `passed` only if every check passed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckReport {
    pub passed: bool,
    pub checks: Vec<CheckOutcome>,
}

impl CheckReport {
    /// Every failure of every check, with the check it belongs to.
    pub fn failures(&self) -> impl Iterator<Item = (CheckName, &CheckFailure)> {
        self.checks
            .iter()
            .flat_map(|c| c.failures.iter().map(move |f| (c.check, f)))
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for check in &self.checks {
            let verdict = if check.passed { "ok" } else { "FAILED" };
            writeln!(
                f,
                "{verdict}: {} ({} relations)",
                check.description, check.relations_examined
            )?;
            for failure in &check.failures {
                let at = match &failure.column {
                    Some(column) => format!("public.{}.{column}", failure.table),
                    None => format!("public.{}", failure.table),
                };
                writeln!(f, "  {at}: {}", failure.message)?;
                writeln!(f, "    fix: {}", failure.remedy)?;
            }
            for allowed in &check.allowed {
                writeln!(f, "  allowed by configuration: {allowed}")?;
            }
        }
        Ok(())
    }
}

/// Inspects `public` in the database at `db_url` as the Supabase API roles would meet it.
///
/// Connect as the project's owner role (a member of `authenticated`) or a superuser. Nothing
/// is changed: the `authenticated` probes run in transactions that are rolled back.
pub async fn check_schema(
    db_url: &SecretString,
    options: &CheckOptions,
) -> Result<CheckReport, TenantDbError> {
    let target = Target::parse(db_url)?;
    let mut conn = target.connect().await?;
    let relations = list_relations(&mut conn, &target).await?;

    let checks = vec![
        check_rls_enabled(&relations),
        check_selectable_as_authenticated(&mut conn, &target, &relations).await?,
        check_anon_secret_columns(&mut conn, &target, options).await?,
    ];
    let _ = conn.close().await;
    Ok(CheckReport {
        passed: checks.iter().all(|c| c.passed),
        checks,
    })
}

#[derive(Debug)]
struct Relation {
    name: String,
    is_table: bool,
    rls_enabled: bool,
}

async fn list_relations(
    conn: &mut PgConnection,
    target: &Target,
) -> Result<Vec<Relation>, TenantDbError> {
    let rows = sqlx::query(
        "SELECT c.relname::text AS name, c.relkind IN ('r', 'p') AS is_table,
                c.relrowsecurity AS rls_enabled
         FROM pg_catalog.pg_class c
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
         ORDER BY c.relname",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| target.database_error("listing the relations in public", &e))?;
    rows.iter()
        .map(|row| {
            Ok(Relation {
                name: row.try_get("name")?,
                is_table: row.try_get("is_table")?,
                rls_enabled: row.try_get("rls_enabled")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(|e| target.database_error("reading the relations in public", &e))
}

fn check_rls_enabled(relations: &[Relation]) -> CheckOutcome {
    let tables: Vec<&Relation> = relations.iter().filter(|r| r.is_table).collect();
    let failures = tables
        .iter()
        .filter(|t| !t.rls_enabled)
        .map(|t| CheckFailure {
            table: t.name.clone(),
            column: None,
            message: "row level security is disabled: every role with a grant reads and writes \
                      every row through the API"
                .to_owned(),
            remedy: format!(
                "ALTER TABLE public.{} ENABLE ROW LEVEL SECURITY; then add policies for the \
                 rows each role may see",
                quote_ident(&t.name)
            ),
        })
        .collect();
    outcome(CheckName::RlsEnabled, tables.len(), failures, Vec::new())
}

async fn check_selectable_as_authenticated(
    conn: &mut PgConnection,
    target: &Target,
    relations: &[Relation],
) -> Result<CheckOutcome, TenantDbError> {
    let synthetic_user = uuid::Uuid::new_v4();
    let claims = serde_json::json!({ "sub": synthetic_user, "role": "authenticated" }).to_string();
    let tables: Vec<&Relation> = relations.iter().filter(|r| r.is_table).collect();
    let mut failures = Vec::new();

    for table in &tables {
        let db = |during: &'static str| move |e: sqlx::Error| target.database_error(during, &e);
        let mut tx = conn
            .begin()
            .await
            .map_err(db("starting a probe transaction"))?;
        sqlx::raw_sql("SET LOCAL ROLE authenticated")
            .execute(&mut *tx)
            .await
            .map_err(|e| TenantDbError::CannotActAs {
                role: "authenticated",
                message: target.redact(&error_message(&e)),
            })?;
        sqlx::query("SELECT set_config('request.jwt.claims', $1, true)")
            .bind(&claims)
            .execute(&mut *tx)
            .await
            .map_err(db("setting the synthetic user's claims"))?;
        let probe = format!("SELECT 1 FROM public.{} LIMIT 1", quote_ident(&table.name));
        // The identifier comes from pg_class and is quoted.
        if let Err(e) = sqlx::raw_sql(AssertSqlSafe(probe)).execute(&mut *tx).await {
            let message = target.redact(&error_message(&e));
            let remedy = if message.contains("infinite recursion") {
                format!(
                    "a policy on public.{} queries public.{} itself; move the membership lookup \
                     into a SECURITY DEFINER function with a fixed search_path and call it from \
                     the policy",
                    table.name, table.name
                )
            } else if message.contains("permission denied") {
                format!(
                    "GRANT SELECT ON public.{} TO authenticated (and rely on its policies to \
                     limit the rows)",
                    quote_ident(&table.name)
                )
            } else {
                format!(
                    "run `SELECT 1 FROM public.{} LIMIT 1` as authenticated to reproduce, and fix \
                     the policies or functions it names",
                    quote_ident(&table.name)
                )
            };
            failures.push(CheckFailure {
                table: table.name.clone(),
                column: None,
                message,
                remedy,
            });
        }
        tx.rollback()
            .await
            .map_err(db("rolling back a probe transaction"))?;
    }
    Ok(outcome(
        CheckName::SelectableAsAuthenticated,
        tables.len(),
        failures,
        Vec::new(),
    ))
}

async fn check_anon_secret_columns(
    conn: &mut PgConnection,
    target: &Target,
    options: &CheckOptions,
) -> Result<CheckOutcome, TenantDbError> {
    // A relation is readable by anon when anon may SELECT the column and either nothing
    // filters rows (RLS off, or not a table at all, e.g. a view running as its owner) or a
    // permissive SELECT policy applies to anon (directly, through PUBLIC, or through a role
    // anon belongs to). A policy's expression is not judged: one written for anon is taken
    // to be meant to let anon read.
    let rows = sqlx::query(
        "SELECT c.relname::text AS relation, a.attname::text AS column_name,
                c.relkind IN ('r', 'p') AS is_table, c.relrowsecurity AS rls_enabled,
                (SELECT string_agg(p.polname::text, ', ' ORDER BY p.polname)
                 FROM pg_catalog.pg_policy p
                 WHERE p.polrelid = c.oid AND p.polpermissive AND p.polcmd IN ('r', '*')
                   AND EXISTS (
                       SELECT 1 FROM unnest(p.polroles) AS r(role_oid)
                       WHERE CASE WHEN r.role_oid = 0 THEN true
                                  ELSE pg_catalog.pg_has_role('anon', r.role_oid, 'MEMBER') END
                   )) AS anon_policies
         FROM pg_catalog.pg_class c
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
           AND pg_catalog.has_column_privilege('anon', c.oid, a.attnum, 'SELECT')
         ORDER BY c.relname, a.attnum",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| target.database_error("reading what anon can select", &e))?;

    let allowed_by_config: BTreeSet<&str> = options
        .allow_anon_secret_columns
        .iter()
        .map(|s| s.strip_prefix("public.").unwrap_or(s))
        .collect();
    let mut readable_relations = BTreeSet::new();
    let mut failures = Vec::new();
    let mut allowed = Vec::new();
    for row in &rows {
        let read = |e: sqlx::Error| target.database_error("reading what anon can select", &e);
        let relation: String = row.try_get("relation").map_err(read)?;
        let column: String = row.try_get("column_name").map_err(read)?;
        let is_table: bool = row.try_get("is_table").map_err(read)?;
        let rls_enabled: bool = row.try_get("rls_enabled").map_err(read)?;
        let anon_policies: Option<String> = row.try_get("anon_policies").map_err(read)?;

        let why_readable = if !is_table {
            "it is not a table, so row level security does not filter it".to_owned()
        } else if !rls_enabled {
            "row level security is disabled".to_owned()
        } else if let Some(policies) = anon_policies {
            format!("policy {policies} lets anon select rows")
        } else {
            continue;
        };
        readable_relations.insert(relation.clone());
        if !looks_secret(&column) {
            continue;
        }
        let pair = format!("{relation}.{column}");
        if allowed_by_config.contains(pair.as_str()) {
            allowed.push(pair);
            continue;
        }
        failures.push(CheckFailure {
            message: format!(
                "anon (the public API key) can read this column, whose name looks secret: \
                 {why_readable}"
            ),
            remedy: format!(
                "REVOKE SELECT ON public.{} FROM anon, or enable row level security with no \
                 policy for anon/public; if the value is meant to be public, allow \"{pair}\" \
                 in the configuration",
                quote_ident(&relation)
            ),
            table: relation,
            column: Some(column),
        });
    }
    Ok(outcome(
        CheckName::NoAnonSecretColumns,
        readable_relations.len(),
        failures,
        allowed,
    ))
}

fn outcome(
    check: CheckName,
    relations_examined: usize,
    failures: Vec<CheckFailure>,
    allowed: Vec<String>,
) -> CheckOutcome {
    CheckOutcome {
        check,
        description: check.description().to_owned(),
        passed: failures.is_empty(),
        relations_examined,
        failures,
        allowed,
    }
}

/// Whether a column name has a word that marks a secret: `api_key`, `accessToken`,
/// `password_hash`, `client_secret` do; `monkey`, `keyboard_layout`, `tokenizer` do not.
/// Words are split at non-alphanumerics and at lower-to-upper case changes.
pub fn looks_secret(column: &str) -> bool {
    const SECRET_WORDS: &[&str] = &[
        "secret",
        "secrets",
        "token",
        "tokens",
        "password",
        "passwords",
        "passwd",
        "key",
        "keys",
        "apikey",
        "apikeys",
    ];
    column_words(column)
        .iter()
        .any(|w| SECRET_WORDS.contains(&w.as_str()))
}

fn column_words(column: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut previous_lower = false;
    for ch in column.chars() {
        if !ch.is_alphanumeric() {
            if !current.is_empty() {
                words.push(std::mem::take(&mut current));
            }
            previous_lower = false;
            continue;
        }
        if ch.is_uppercase() && previous_lower && !current.is_empty() {
            words.push(std::mem::take(&mut current));
        }
        previous_lower = ch.is_lowercase() || ch.is_ascii_digit();
        current.extend(ch.to_lowercase());
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A tenant database to talk to, with what is needed to name it in errors and to scrub its
/// password from them.
struct Target {
    options: PgConnectOptions,
    host: String,
    database: String,
    /// The password as written in the URL and percent-decoded; either may surface in a message.
    password_forms: Vec<String>,
}

impl Target {
    fn parse(db_url: &SecretString) -> Result<Self, TenantDbError> {
        let raw = db_url.expose_secret();
        let url = url::Url::parse(raw).map_err(|e| TenantDbError::InvalidUrl {
            reason: e.to_string(),
        })?;
        let mut password_forms = Vec::new();
        if let Some(written) = url.password().filter(|p| !p.is_empty()) {
            let decoded = percent_decode(written);
            password_forms.push(written.to_owned());
            if decoded != written && !decoded.is_empty() {
                password_forms.push(decoded);
            }
        }
        // Longest first, so a form containing another is scrubbed whole.
        password_forms.sort_by_key(|p| std::cmp::Reverse(p.len()));
        let host = format!(
            "{}:{}",
            url.host_str().unwrap_or("localhost"),
            url.port().unwrap_or(5432)
        );
        let database = url.path().trim_start_matches('/').to_owned();
        let partial = Self {
            options: PgConnectOptions::new(),
            host,
            database,
            password_forms,
        };
        let options = raw
            .parse::<PgConnectOptions>()
            .map_err(|e| TenantDbError::InvalidUrl {
                reason: partial.redact(&e.to_string()),
            })?
            .application_name("provisioner-schema");
        Ok(Self { options, ..partial })
    }

    async fn connect(&self) -> Result<PgConnection, TenantDbError> {
        match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&self.options)).await
        {
            Err(_) => Err(TenantDbError::Timeout {
                what: "connecting to the tenant database",
                after: CONNECT_TIMEOUT,
            }),
            Ok(Err(e)) => Err(TenantDbError::Connect {
                host: self.host.clone(),
                database: self.database.clone(),
                message: self.redact(&error_message(&e)),
                code: sqlstate(&e),
            }),
            Ok(Ok(conn)) => Ok(conn),
        }
    }

    fn redact(&self, text: &str) -> String {
        self.password_forms.iter().fold(text.to_owned(), |acc, p| {
            acc.replace(p.as_str(), "[REDACTED]")
        })
    }

    fn database_error(&self, during: &'static str, e: &sqlx::Error) -> TenantDbError {
        TenantDbError::Database {
            during,
            message: self.redact(&error_message(e)),
            code: sqlstate(e),
        }
    }

    fn schema_error(&self, schema_sql: &str, e: &sqlx::Error) -> TenantDbError {
        let pg = e
            .as_database_error()
            .and_then(|d| d.try_downcast_ref::<PgDatabaseError>());
        let Some(pg) = pg else {
            return TenantDbError::SchemaFailed {
                message: self.redact(&error_message(e)),
                code: None,
                line: None,
                detail: None,
                hint: None,
            };
        };
        let line = match pg.position() {
            Some(PgErrorPosition::Original(position)) => Some(line_of(schema_sql, position)),
            _ => None,
        };
        let mut message = pg.message().to_owned();
        if let Some(context) = pg.r#where() {
            message.push_str(&format!(" (in {context})"));
        }
        TenantDbError::SchemaFailed {
            message: self.redact(&message),
            code: Some(pg.code().to_owned()),
            line,
            detail: pg.detail().map(|d| self.redact(d)),
            hint: pg.hint().map(|h| self.redact(h)),
        }
    }
}

/// `%XX` sequences decoded as the userinfo of a URL is (no `+` for space), lossily as UTF-8.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex_pair = bytes
            .get(i + 1..i + 3)
            .filter(|pair| pair.iter().all(u8::is_ascii_hexdigit))
            .and_then(|pair| std::str::from_utf8(pair).ok())
            .and_then(|pair| u8::from_str_radix(pair, 16).ok());
        match (bytes[i], hex_pair) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (other, _) => {
                out.push(other);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn sqlstate(e: &sqlx::Error) -> Option<String> {
    e.as_database_error()
        .and_then(|d| d.code())
        .map(|c| c.into_owned())
}

/// PostgreSQL's own message when the server sent one, else sqlx's description.
fn error_message(e: &sqlx::Error) -> String {
    match e.as_database_error() {
        Some(d) => d.message().to_owned(),
        None => e.to_string(),
    }
}

/// 1-based line of the 1-based character `position` in `text`.
fn line_of(text: &str, position: usize) -> usize {
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
    fn secret_words_are_whole_words() {
        for secret in [
            "api_key",
            "access_token",
            "password",
            "password_hash",
            "client_secret",
            "webhook_secrets",
            "refreshToken",
            "APIKey",
            "apikey",
            "signing-key",
            "key",
        ] {
            assert!(looks_secret(secret), "{secret} should look secret");
        }
        for harmless in [
            "monkey",
            "keyboard_layout",
            "tokenizer",
            "donkeys",
            "turkey_count",
            "name",
            "secretary",
            "passworded",
        ] {
            assert!(!looks_secret(harmless), "{harmless} should not look secret");
        }
    }

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
    fn urls_keep_their_password_out_of_errors() {
        let url = SecretString::from("postgres://owner:canary%2Fpw-4471@127.0.0.1:5432/db");
        let target = Target::parse(&url).expect("a valid URL");
        let scrubbed = target.redact("saw canary%2Fpw-4471 and canary/pw-4471");
        assert_eq!(scrubbed, "saw [REDACTED] and [REDACTED]");
        assert_eq!(target.host, "127.0.0.1:5432");
        assert_eq!(target.database, "db");

        let bad = SecretString::from("postgres://owner:canary-4471@127.0.0.1:notaport/db");
        let err = Target::parse(&bad).err().expect("an invalid URL");
        assert!(!format!("{err} {err:?}").contains("canary-4471"));
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
        let broken = TenantDbError::SchemaFailed {
            message: "m".into(),
            code: Some("42P01".into()),
            line: Some(3),
            detail: None,
            hint: None,
        };
        assert!(!broken.is_retryable());
        assert!(!TenantDbError::SchemaEndsTransaction.is_retryable());
    }

    #[test]
    fn report_serialises_in_camel_case() {
        let report = CheckReport {
            passed: false,
            checks: vec![outcome(
                CheckName::NoAnonSecretColumns,
                1,
                vec![CheckFailure {
                    table: "integrations".into(),
                    column: Some("api_token".into()),
                    message: "m".into(),
                    remedy: "r".into(),
                }],
                Vec::new(),
            )],
        };
        let json = serde_json::to_value(&report).expect("serialisable");
        assert_eq!(json["checks"][0]["check"], "noAnonSecretColumns");
        assert_eq!(json["checks"][0]["relationsExamined"], 1);
        assert_eq!(json["checks"][0]["failures"][0]["column"], "api_token");
        let text = report.to_string();
        assert!(text.contains("FAILED"));
        assert!(text.contains("public.integrations.api_token"));
    }
}
