//! Reading every table as a signed-in user meets it: with rows in it.
//!
//! A policy's expressions only run on rows, so a probe of empty tables passes a policy that
//! calls a (non-`SECURITY DEFINER`) function reading its own table, and every signed-in query
//! then fails with "stack depth limit exceeded" once a row exists. So the probe first gives
//! every table in the exposed schemas two synthetic rows, as the connecting role (the tables'
//! owner, for whom row level security does not apply): row 1 belongs to the synthetic user
//! (every uuid column holds the user's id, so the user is a member of row 1's organisation),
//! row 2 to another tenant (every uuid another id). See `synthetic_rows.sql` for the values.
//! Foreign keys and CHECK constraints are dropped and user triggers disabled first: they bear
//! on writes, not on what a policy lets a user read.
//!
//! Then, as `authenticated` with the synthetic user's claims, every table is read whole, so
//! every row's policy expressions run. A table that fails with recursion (PostgreSQL's
//! "infinite recursion detected in policy" or "stack depth limit exceeded") is then tested
//! with the row level security of the other failing tables taken away, to tell the table
//! whose own policy recurses from the tables that only read it, and tables that recurse
//! through each other.
//!
//! **Nothing of the probe is left afterwards**: all of it (rows, dropped constraints,
//! disabled triggers, disabled row level security, role and settings) happens inside one
//! transaction that is always rolled back, never committed; the probe's savepoints are only
//! ever rolled back into it. Should the connection drop midway, the server rolls back too.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::postgres::{PgDatabaseError, PgRow};
use sqlx::{AssertSqlSafe, Connection, PgConnection, Postgres, Row, Transaction};

use super::report::{CheckName, Finding, Severity, display_name};
use super::sql_endpoint::{SqlEndpoint, dollar_quote, quote_literal, without_comment_lines};
use super::target::Target;
use super::{TenantDbError, error_message, quote_ident};

const PROBE_SETTINGS_SQL: &str = include_str!("../../sql/tenant_checks/probe_settings.sql");
const PROBE_TARGETS_SQL: &str = include_str!("../../sql/tenant_checks/probe_targets.sql");
const PREPARATION_SQL: &str = include_str!("../../sql/tenant_checks/synthetic_row_preparation.sql");
const SYNTHETIC_ROWS_SQL: &str = include_str!("../../sql/tenant_checks/synthetic_rows.sql");
const AS_AUTHENTICATED_SQL: &str = include_str!("../../sql/tenant_checks/as_authenticated.sql");
const PROBE_ROUND_SQL: &str = include_str!("../../sql/tenant_checks/probe_round.sql");
/// What a probe round's closing error carries before its JSON.
const ROUND_RESULT_MARK: &str = "provisioner-probe-result ";
/// SQLSTATE of a probe round's closing error.
const ROUND_RESULT_CODE: &str = "PV001";

/// SQLSTATE of "infinite recursion detected in policy for relation ...".
const POLICY_RECURSION: &str = "42P17";
/// SQLSTATE of "stack depth limit exceeded": a function in a policy reading the table again.
const STACK_DEPTH_EXCEEDED: &str = "54001";
const PERMISSION_DENIED: &str = "42501";
const QUERY_CANCELED: &str = "57014";

/// What probing the tables found.
pub(crate) struct ProbeResults {
    /// How many tables were probed.
    pub tables_examined: usize,
    /// Failures of [`CheckName::SelectableAsAuthenticated`], one per root cause, and warnings
    /// for tables that could not be given their synthetic rows.
    pub findings: Vec<Finding>,
    /// Tables (schema, name) in which the synthetic user could read the other tenant's row.
    pub others_row_visible: BTreeSet<(String, String)>,
}

struct ProbeTarget {
    schema: String,
    name: String,
    probe: String,
    disable_rls: String,
    /// `tableoid` and `ctid` of the other tenant's synthetic row, once inserted.
    other_row: Option<(i64, String)>,
}

impl ProbeTarget {
    fn qualified(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }
}

#[derive(Clone)]
struct ProbeFailure {
    code: Option<String>,
    message: String,
}

impl ProbeFailure {
    /// The server could not run the probe for the moment (out of memory, a deadlock, …):
    /// it says nothing about the table's policies.
    fn is_momentary(&self) -> bool {
        self.code.as_deref().is_some_and(super::is_momentary)
    }

    fn is_recursion(&self) -> bool {
        matches!(
            self.code.as_deref(),
            Some(POLICY_RECURSION | STACK_DEPTH_EXCEEDED)
        )
    }
}

enum Probed {
    Read {
        others_visible: bool,
    },
    Failed(ProbeFailure),
    /// Taking another table's row level security away failed (e.g. the connecting role does
    /// not own it), so the probe says nothing.
    NotIsolated,
}

/// Gives every table in `exposed_schemas` its synthetic rows and reads each as
/// `authenticated`, in a transaction that is rolled back.
pub(crate) async fn probe_tables(
    conn: &mut PgConnection,
    target: &Target,
    exposed_schemas: &[String],
) -> Result<ProbeResults, TenantDbError> {
    let db = |during: &'static str| move |e: sqlx::Error| target.database_error(during, &e);
    let mine = uuid::Uuid::new_v4();
    let theirs = uuid::Uuid::new_v4();
    let claims =
        serde_json::json!({ "sub": mine, "role": "authenticated", "aud": "authenticated" })
            .to_string();

    let mut tx = conn
        .begin()
        .await
        .map_err(db("starting the probe transaction"))?;
    sqlx::query(PROBE_SETTINGS_SQL)
        .execute(&mut *tx)
        .await
        .map_err(db("bounding the probe transaction"))?;
    let mut tables = probe_targets(&mut tx, target, exposed_schemas).await?;

    let preparation: Vec<String> = sqlx::query_scalar(PREPARATION_SQL)
        .bind(exposed_schemas)
        .fetch_all(&mut *tx)
        .await
        .map_err(db("listing the constraints and triggers to set aside"))?;
    // All at once in the common case; one by one only when something refuses, so the rest
    // still happens. A constraint that cannot be set aside shows up as its table's failed
    // insert.
    if batch(&mut tx, &preparation).await.is_err() {
        for statement in &preparation {
            let _ = batch(&mut tx, std::slice::from_ref(statement)).await;
        }
    }

    let mut findings = Vec::new();
    for (row, owner) in [(1_i32, mine), (2_i32, theirs)] {
        let composed = sqlx::query(SYNTHETIC_ROWS_SQL)
            .bind(exposed_schemas)
            .bind(row)
            .bind(owner.to_string())
            .fetch_all(&mut *tx)
            .await
            .map_err(db("composing the synthetic rows"))?;
        let mut inserts = Vec::with_capacity(composed.len());
        for insert in &composed {
            let read = |e: sqlx::Error| target.database_error("composing the synthetic rows", &e);
            let schema: String = insert.try_get("schema_name").map_err(read)?;
            let name: String = insert.try_get("name").map_err(read)?;
            let statement: String = insert.try_get("insert_statement").map_err(read)?;
            inserts.push((schema, name, statement));
        }
        let statements: Vec<String> = inserts.iter().map(|(_, _, s)| s.clone()).collect();
        let together = match batch(&mut tx, &statements).await {
            Ok(rows) if rows.len() == inserts.len() => Some(rows),
            _ => None,
        };
        for (i, (schema, name, statement)) in inserts.into_iter().enumerate() {
            let inserted = match &together {
                Some(rows) => location(&rows[i]),
                None => batch(&mut tx, std::slice::from_ref(&statement))
                    .await
                    .and_then(|rows| rows.first().map_or(Err(sqlx::Error::RowNotFound), location)),
            };
            match inserted {
                Ok(location) => {
                    if row == 2
                        && let Some(table) = tables
                            .iter_mut()
                            .find(|t| t.schema == schema && t.name == name)
                    {
                        table.other_row = Some(location);
                    }
                }
                Err(e) => findings.push(insert_warning(
                    schema,
                    name,
                    i64::from(row),
                    &target.redact(&error_message(&e)),
                )),
            }
        }
    }

    let mut outcomes: BTreeMap<usize, ProbeFailure> = BTreeMap::new();
    let mut others_row_visible = BTreeSet::new();
    if let Some(visible) = probe_all_at_once(&mut tx, target, &claims, &tables).await? {
        for (table, others_visible) in tables.iter().zip(visible) {
            if others_visible {
                others_row_visible.insert((table.schema.clone(), table.name.clone()));
            }
        }
        tx.rollback()
            .await
            .map_err(db("rolling back the probe transaction"))?;
        return Ok(ProbeResults {
            tables_examined: tables.len(),
            findings,
            others_row_visible,
        });
    }
    {
        let mut prober = InTransaction {
            tx: &mut tx,
            target,
            claims: &claims,
            tables: &tables,
        };
        let mut each = Vec::with_capacity(tables.len());
        for index in 0..tables.len() {
            each.push(prober.probe(index, &[]).await?);
        }
        findings.extend(
            judge(
                &mut prober,
                &tables,
                each,
                &mut outcomes,
                &mut others_row_visible,
            )
            .await?,
        );
    }

    tx.rollback()
        .await
        .map_err(db("rolling back the probe transaction"))?;
    Ok(ProbeResults {
        tables_examined: tables.len(),
        findings,
        others_row_visible,
    })
}

async fn probe_targets(
    tx: &mut Transaction<'_, Postgres>,
    target: &Target,
    exposed_schemas: &[String],
) -> Result<Vec<ProbeTarget>, TenantDbError> {
    let rows = sqlx::query(PROBE_TARGETS_SQL)
        .bind(exposed_schemas)
        .fetch_all(&mut **tx)
        .await
        .map_err(|e| target.database_error("listing the tables to probe", &e))?;
    rows.iter()
        .map(|row| {
            Ok(ProbeTarget {
                schema: row.try_get("schema_name")?,
                name: row.try_get("name")?,
                probe: row.try_get("probe")?,
                disable_rls: row.try_get("disable_rls")?,
                other_row: None,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(|e| target.database_error("reading the tables to probe", &e))
}

/// Runs `statements` as one batch in a savepoint, kept if every one succeeds and rolled back
/// whole if any fails; the rows they return, in order.
async fn batch(
    tx: &mut Transaction<'_, Postgres>,
    statements: &[String],
) -> Result<Vec<PgRow>, sqlx::Error> {
    if statements.is_empty() {
        return Ok(Vec::new());
    }
    let mut savepoint = tx.begin().await?;
    // Every statement was composed by a check query from catalog names quoted with %I and
    // values quoted with quote_literal.
    match sqlx::raw_sql(AssertSqlSafe(statements.join(";\n")))
        .fetch_all(&mut *savepoint)
        .await
    {
        Ok(rows) => {
            savepoint.commit().await?;
            Ok(rows)
        }
        Err(e) => {
            savepoint.rollback().await?;
            Err(e)
        }
    }
}

/// `tableoid` and `ctid` of a synthetic row, from its INSERT's RETURNING.
fn location(row: &PgRow) -> Result<(i64, String), sqlx::Error> {
    Ok((row.try_get(0)?, row.try_get(1)?))
}

/// Reads every table as the synthetic user in one savepoint, acting as `authenticated` once
/// per schema: one round trip per table when every read succeeds, as it does for a sound
/// schema. `None` at the first failure, after which each table is probed on its own.
/// Whether the other tenant's row was visible, per table, otherwise.
async fn probe_all_at_once(
    tx: &mut Transaction<'_, Postgres>,
    target: &Target,
    claims: &str,
    tables: &[ProbeTarget],
) -> Result<Option<Vec<bool>>, TenantDbError> {
    let db = |during: &'static str| move |e: sqlx::Error| target.database_error(during, &e);
    let mut savepoint = tx.begin().await.map_err(db("starting a probe"))?;
    let mut acting_in: Option<&str> = None;
    let mut visible = Vec::with_capacity(tables.len());
    for table in tables {
        if acting_in != Some(table.schema.as_str()) {
            act_as_authenticated(&mut savepoint, target, claims, &table.schema).await?;
            acting_in = Some(table.schema.as_str());
        }
        let (other_oid, other_ctid) = table.other_row.clone().unzip();
        // Composed by `probe_targets.sql` from quoted catalog names.
        let read = sqlx::query_as::<_, (i64, i64)>(AssertSqlSafe(table.probe.clone()))
            .bind(other_oid)
            .bind(other_ctid)
            .fetch_one(&mut *savepoint)
            .await;
        match read {
            Ok((_, others_visible)) => visible.push(others_visible > 0),
            Err(_) => {
                savepoint.rollback().await.map_err(db("ending a probe"))?;
                return Ok(None);
            }
        }
    }
    savepoint.rollback().await.map_err(db("ending a probe"))?;
    Ok(Some(visible))
}

/// Acts as a signed-in user until the (sub)transaction ends, with the search path the Data
/// API sets for a request to `schema`.
async fn act_as_authenticated(
    savepoint: &mut Transaction<'_, Postgres>,
    target: &Target,
    claims: &str,
    schema: &str,
) -> Result<(), TenantDbError> {
    let search_path = format!("{}, public, extensions", quote_ident(schema));
    sqlx::query(AS_AUTHENTICATED_SQL)
        .bind(claims)
        .bind(search_path)
        .execute(&mut **savepoint)
        .await
        .map_err(|e| match super::sqlstate(&e) {
            // The server short of resources says nothing about the role's rights.
            Some(code) if super::is_momentary(&code) => {
                target.database_error("acting as authenticated", &e)
            }
            _ => TenantDbError::CannotActAs {
                role: "authenticated",
                message: target.redact(&error_message(&e)),
            },
        })?;
    Ok(())
}

/// [`probe_tables`] through the Management API's SQL endpoint. Each round is one statement
/// (`probe_round.sql`) that sets up the synthetic rows, runs its probes and raises an error
/// carrying their results, so it is always rolled back whole: the first round probes every
/// table alone, and each probe the recursion tracing asks for afterwards is a round of its
/// own (rare: only schemas whose policies recurse need them).
pub(crate) async fn probe_tables_over_endpoint(
    endpoint: &SqlEndpoint,
    exposed_schemas: &[String],
) -> Result<ProbeResults, TenantDbError> {
    let mut rounds = Rounds {
        endpoint,
        schemas: exposed_schemas,
        claims: String::new(),
        mine: uuid::Uuid::new_v4(),
        theirs: uuid::Uuid::new_v4(),
    };
    rounds.claims = serde_json::json!({
        "sub": rounds.mine, "role": "authenticated", "aud": "authenticated"
    })
    .to_string();
    let first = rounds.round(None).await?;
    let tables: Vec<ProbeTarget> = first
        .targets
        .iter()
        .map(|(schema, name)| ProbeTarget {
            schema: schema.clone(),
            name: name.clone(),
            probe: String::new(),
            disable_rls: String::new(),
            other_row: None,
        })
        .collect();
    if first.results.len() != tables.len() {
        return Err(round_unreadable("a result per table"));
    }
    let mut findings: Vec<Finding> = first
        .warnings
        .into_iter()
        .map(|(schema, name, row, message)| insert_warning(schema, name, row, &message))
        .collect();
    let mut outcomes = BTreeMap::new();
    let mut others_row_visible = BTreeSet::new();
    findings.extend(
        judge(
            &mut rounds,
            &tables,
            first.results,
            &mut outcomes,
            &mut others_row_visible,
        )
        .await?,
    );
    Ok(ProbeResults {
        tables_examined: tables.len(),
        findings,
        others_row_visible,
    })
}

/// Probe rounds against one database, with one synthetic user for all of them.
struct Rounds<'a> {
    endpoint: &'a SqlEndpoint,
    schemas: &'a [String],
    claims: String,
    mine: uuid::Uuid,
    theirs: uuid::Uuid,
}

/// What a round found: the tables in probe order, the synthetic rows that could not be
/// inserted (schema, table, row, why) and one outcome per probe asked for.
struct Round {
    targets: Vec<(String, String)>,
    warnings: Vec<(String, String, i64, String)>,
    results: Vec<Probed>,
}

fn round_unreadable(what: &str) -> TenantDbError {
    TenantDbError::Endpoint {
        during: "probing the tables as authenticated",
        message: format!("the probe round's answer lacks {what}"),
        code: None,
        retryable: false,
    }
}

impl Rounds<'_> {
    /// One round: `specs` as (table, without) pairs, or every table alone.
    async fn round(&self, specs: Option<&[(usize, Vec<usize>)]>) -> Result<Round, TenantDbError> {
        let during = "probing the tables as authenticated";
        let specs = match specs {
            None => "NULL".to_owned(),
            Some(specs) => {
                let specs: Vec<serde_json::Value> = specs
                    .iter()
                    .map(|(table, without)| serde_json::json!({ "table": table, "without": without }))
                    .collect();
                format!(
                    "{}::jsonb",
                    quote_literal(&serde_json::Value::from(specs).to_string())
                )
            }
        };
        let schemas = format!(
            "ARRAY[{}]::text[]",
            self.schemas
                .iter()
                .map(|s| quote_literal(s))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let embedded = [
            PROBE_TARGETS_SQL,
            PREPARATION_SQL,
            SYNTHETIC_ROWS_SQL,
            AS_AUTHENTICATED_SQL,
        ];
        let mut body_tag = "$probe_round$".to_owned();
        let mut n = 0;
        while embedded.iter().any(|sql| sql.contains(&body_tag)) || schemas.contains(&body_tag) {
            n += 1;
            body_tag = format!("$probe_round_{n}$");
        }
        let statement = without_comment_lines(PROBE_ROUND_SQL)
            .replace("__BODY_TAG__", &body_tag)
            .replace("__SCHEMAS__", &schemas)
            .replace("__CLAIMS__", &quote_literal(&self.claims))
            .replace("__MINE__", &quote_literal(&self.mine.to_string()))
            .replace("__THEIRS__", &quote_literal(&self.theirs.to_string()))
            .replace("__SPECS__", &specs)
            .replace(
                "__TARGETS_SQL__",
                &dollar_quote(PROBE_TARGETS_SQL, "targets"),
            )
            .replace(
                "__PREPARATION_SQL__",
                &dollar_quote(PREPARATION_SQL, "preparation"),
            )
            .replace("__ROWS_SQL__", &dollar_quote(SYNTHETIC_ROWS_SQL, "rows"))
            .replace(
                "__AS_AUTHENTICATED_SQL__",
                &dollar_quote(AS_AUTHENTICATED_SQL, "as_authenticated"),
            );
        let failure = match self.endpoint.send(&statement, &[]).await {
            // A round always ends in its error; an answer with rows is not one of ours.
            Ok(_) => return Err(round_unreadable("its closing error")),
            Err(failure) => failure,
        };
        let result = match failure.message.find(ROUND_RESULT_MARK) {
            Some(at)
                if failure.code.as_deref() == Some(ROUND_RESULT_CODE) || failure.code.is_none() =>
            {
                let json = &failure.message[at + ROUND_RESULT_MARK.len()..];
                serde_json::Deserializer::from_str(json)
                    .into_iter::<serde_json::Value>()
                    .next()
                    .and_then(Result::ok)
                    .ok_or_else(|| round_unreadable("readable JSON"))?
            }
            _ => return Err(failure.into_error(during)),
        };
        let text = |v: &serde_json::Value, key: &str| {
            v.get(key).and_then(|x| x.as_str()).map(str::to_owned)
        };
        let targets = result["targets"]
            .as_array()
            .ok_or_else(|| round_unreadable("its tables"))?
            .iter()
            .map(|t| Some((text(t, "schema")?, text(t, "name")?)))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| round_unreadable("table names"))?;
        let warnings = result["warnings"]
            .as_array()
            .ok_or_else(|| round_unreadable("its warnings"))?
            .iter()
            .map(|w| {
                Some((
                    text(w, "schema")?,
                    text(w, "name")?,
                    w.get("row")?.as_i64()?,
                    text(w, "message").unwrap_or_default(),
                ))
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| round_unreadable("readable warnings"))?;
        let mut results = Vec::new();
        for r in result["results"]
            .as_array()
            .ok_or_else(|| round_unreadable("its results"))?
        {
            results.push(match text(r, "outcome").as_deref() {
                Some("read") => Probed::Read {
                    others_visible: r["others_visible"].as_bool().unwrap_or(false),
                },
                Some("not_isolated") => Probed::NotIsolated,
                Some("cannot_act_as") => {
                    return Err(TenantDbError::CannotActAs {
                        role: "authenticated",
                        message: text(r, "message").unwrap_or_default(),
                    });
                }
                Some("failed") => Probed::Failed(ProbeFailure {
                    code: text(r, "code"),
                    message: text(r, "message").unwrap_or_default(),
                }),
                _ => return Err(round_unreadable("a known outcome")),
            });
        }
        Ok(Round {
            targets,
            warnings,
            results,
        })
    }
}

#[async_trait::async_trait]
impl Prober for Rounds<'_> {
    async fn probe(&mut self, table: usize, without: &[usize]) -> Result<Probed, TenantDbError> {
        let mut round = self.round(Some(&[(table, without.to_vec())])).await?;
        round
            .results
            .pop()
            .ok_or_else(|| round_unreadable("the probe's result"))
    }
}

/// A table that could not be given one of its synthetic rows.
fn insert_warning(schema: String, name: String, row: i64, message: &str) -> Finding {
    Finding {
        check: CheckName::SelectableAsAuthenticated,
        severity: Severity::Warning,
        table: name.clone(),
        column: None,
        cause: format!(
            "could not give it synthetic row {row} of 2 ({message}), so its policies were \
             probed without that row"
        ),
        hint: format!(
            "nothing to fix unless the cause is unexpected; a column type the check has no \
             sample value for, or a domain's CHECK, can refuse the row: insert a row into \
             {}.{} yourself and read it as authenticated",
            quote_ident(&schema),
            quote_ident(&name)
        ),
        schema,
        also_failing: Vec::new(),
    }
}

/// One probe: `tables[table]` read whole as the synthetic user, with the row level security
/// of `without` (indexes into the same tables) taken away first; nothing of it is kept.
#[async_trait::async_trait]
trait Prober: Send {
    async fn probe(&mut self, table: usize, without: &[usize]) -> Result<Probed, TenantDbError>;
}

/// Probes in savepoints of the probe's transaction on a connection.
struct InTransaction<'a, 'c> {
    tx: &'a mut Transaction<'c, Postgres>,
    target: &'a Target,
    claims: &'a str,
    tables: &'a [ProbeTarget],
}

#[async_trait::async_trait]
impl Prober for InTransaction<'_, '_> {
    async fn probe(&mut self, table: usize, without: &[usize]) -> Result<Probed, TenantDbError> {
        let without: Vec<&ProbeTarget> = without.iter().map(|&i| &self.tables[i]).collect();
        probe(
            self.tx,
            self.target,
            self.claims,
            &self.tables[table],
            &without,
        )
        .await
    }
}

/// From each table's own probe (`each`, in table order): the tables whose other-tenant row
/// was visible, the failures, and their findings with recursion traced to its root causes.
async fn judge(
    prober: &mut dyn Prober,
    tables: &[ProbeTarget],
    each: Vec<Probed>,
    outcomes: &mut BTreeMap<usize, ProbeFailure>,
    others_row_visible: &mut BTreeSet<(String, String)>,
) -> Result<Vec<Finding>, TenantDbError> {
    for (index, probed) in each.into_iter().enumerate() {
        match probed {
            Probed::Read { others_visible } => {
                if others_visible {
                    let table = &tables[index];
                    others_row_visible.insert((table.schema.clone(), table.name.clone()));
                }
            }
            Probed::Failed(failure) if failure.is_momentary() => {
                // Not a finding: the check is made again when the server can run it.
                return Err(TenantDbError::Database {
                    during: "reading a table as authenticated",
                    message: format!("{}: {}", tables[index].qualified(), failure.message),
                    code: failure.code,
                });
            }
            Probed::Failed(failure) => {
                outcomes.insert(index, failure);
            }
            Probed::NotIsolated => {}
        }
    }
    let recursing: Vec<usize> = outcomes
        .iter()
        .filter(|(_, f)| f.is_recursion())
        .map(|(&i, _)| i)
        .collect();
    let attribution = attribute(prober, &recursing).await?;
    let mut findings = Vec::new();
    for (index, failure) in outcomes.iter() {
        if !failure.is_recursion() {
            findings.push(plain_failure(&tables[*index], failure));
        }
    }
    for root in attribution {
        findings.push(recursion_finding(tables, outcomes, root));
    }
    Ok(findings)
}

/// Reads `table` whole as the synthetic user, with the row level security of `without`
/// taken away first, all in a savepoint that is rolled back.
async fn probe(
    tx: &mut Transaction<'_, Postgres>,
    target: &Target,
    claims: &str,
    table: &ProbeTarget,
    without: &[&ProbeTarget],
) -> Result<Probed, TenantDbError> {
    let db = |during: &'static str| move |e: sqlx::Error| target.database_error(during, &e);
    let mut savepoint = tx.begin().await.map_err(db("starting a probe"))?;
    if !without.is_empty() {
        let statements: Vec<&str> = without.iter().map(|t| t.disable_rls.as_str()).collect();
        // Composed by `probe_targets.sql` from quoted catalog names.
        let disabled = sqlx::raw_sql(AssertSqlSafe(statements.join(";\n")))
            .execute(&mut *savepoint)
            .await;
        if disabled.is_err() {
            savepoint.rollback().await.map_err(db("ending a probe"))?;
            return Ok(Probed::NotIsolated);
        }
    }
    act_as_authenticated(&mut savepoint, target, claims, &table.schema).await?;
    let (other_oid, other_ctid) = table.other_row.clone().unzip();
    // Composed by `probe_targets.sql` from quoted catalog names.
    let read = sqlx::query_as::<_, (i64, i64)>(AssertSqlSafe(table.probe.clone()))
        .bind(other_oid)
        .bind(other_ctid)
        .fetch_one(&mut *savepoint)
        .await;
    savepoint.rollback().await.map_err(db("ending a probe"))?;
    Ok(match read {
        Ok((_, others_visible)) => Probed::Read {
            others_visible: others_visible > 0,
        },
        Err(e) => Probed::Failed(ProbeFailure {
            code: e
                .as_database_error()
                .and_then(|d| d.try_downcast_ref::<PgDatabaseError>())
                .map(|pg| pg.code().to_owned()),
            message: target.redact(&error_message(&e)),
        }),
    })
}

/// A root cause among the recursing tables, and the tables failing only because of it.
struct RootCause {
    /// Indexes of the tables whose policies recurse: one for a table reading itself, two or
    /// more for tables reading each other.
    members: Vec<usize>,
    because_of_it: Vec<usize>,
}

/// Tells, among the tables whose probes recursed, the root causes from their consequences:
/// a table that still recurses with every other recursing table's row level security taken
/// away recurses through itself; one that then reads fine fails because of the tables it
/// reads; tables that each read fine without the other's row level security, but not with
/// it, recurse through each other.
async fn attribute(
    prober: &mut dyn Prober,
    recursing: &[usize],
) -> Result<Vec<RootCause>, TenantDbError> {
    let passes = |probed: &Probed| matches!(probed, Probed::Read { .. });
    let others = |of: usize, among: &[usize]| -> Vec<usize> {
        among.iter().copied().filter(|&i| i != of).collect()
    };

    let mut self_recursing = Vec::new();
    let mut rest = Vec::new();
    for &index in recursing {
        let without_others = others(index, recursing);
        let probed = prober.probe(index, &without_others).await?;
        if without_others.is_empty() || !passes(&probed) {
            self_recursing.push(index);
        } else {
            rest.push(index);
        }
    }

    let mut roots: Vec<RootCause> = self_recursing
        .iter()
        .map(|&index| RootCause {
            members: vec![index],
            because_of_it: Vec::new(),
        })
        .collect();
    let mut unexplained = Vec::new();
    for &index in &rest {
        if self_recursing.is_empty() {
            unexplained.push(index);
            continue;
        }
        let without_roots = others(index, &self_recursing);
        if !passes(&prober.probe(index, &without_roots).await?) {
            unexplained.push(index);
            continue;
        }
        let mut culprits = Vec::new();
        if roots.len() > 1 {
            for (r, root) in roots.iter().enumerate() {
                let alone = [root.members[0]];
                if passes(&prober.probe(index, &alone).await?) {
                    culprits.push(r);
                }
            }
        }
        if culprits.is_empty() {
            culprits = (0..roots.len()).collect();
        }
        for r in culprits {
            roots[r].because_of_it.push(index);
        }
    }

    // What is left recurses through other tables that are not roots themselves: a cycle.
    // `reads[t]` holds the tables whose row level security alone makes t readable.
    let mut reads: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
    for &index in &unexplained {
        let mut read = BTreeSet::new();
        for &other in &unexplained {
            if other != index && passes(&prober.probe(index, &[other]).await?) {
                read.insert(other);
            }
        }
        reads.insert(index, read);
    }
    let mut cycle_of: BTreeMap<usize, usize> = BTreeMap::new();
    for &index in &unexplained {
        if cycle_of.contains_key(&index) {
            continue;
        }
        let members: Vec<usize> = unexplained
            .iter()
            .copied()
            .filter(|&other| {
                other == index || (reads[&index].contains(&other) && reads[&other].contains(&index))
            })
            .collect();
        if members.len() < 2 {
            continue;
        }
        for &member in &members {
            cycle_of.insert(member, roots.len());
        }
        roots.push(RootCause {
            members,
            because_of_it: Vec::new(),
        });
    }
    for &index in &unexplained {
        if cycle_of.contains_key(&index) {
            continue;
        }
        let culprits: BTreeSet<usize> = reads[&index]
            .iter()
            .filter_map(|read| cycle_of.get(read).copied())
            .collect();
        if culprits.is_empty() {
            // Neither a root nor explained by one: report it as its own cause.
            roots.push(RootCause {
                members: vec![index],
                because_of_it: Vec::new(),
            });
        }
        for r in culprits {
            roots[r].because_of_it.push(index);
        }
    }
    Ok(roots)
}

fn recursion_finding(
    tables: &[ProbeTarget],
    failures: &BTreeMap<usize, ProbeFailure>,
    root: RootCause,
) -> Finding {
    let first = &tables[root.members[0]];
    let message = failures
        .get(&root.members[0])
        .map(|f| f.message.clone())
        .unwrap_or_default();
    let through_function = failures
        .get(&root.members[0])
        .is_some_and(|f| f.code.as_deref() == Some(STACK_DEPTH_EXCEEDED));
    let table = quote_ident(&first.name);
    let (cause, hint) = if root.members.len() == 1 {
        let cause = if through_function {
            format!(
                "a policy on it calls a function that reads {} again as the signed-in user, so \
                 reading any row recurses until the stack runs out ({message})",
                first.name
            )
        } else {
            format!("a policy on it reads {} itself ({message})", first.name)
        };
        let hint = format!(
            "have the policy read {}.{table} only through a SECURITY DEFINER function owned by \
             the table's owner, with SET search_path = '' (its query then skips the table's row \
             level security), or rewrite the policy so it does not read the table it protects",
            quote_ident(&first.schema)
        );
        (cause, hint)
    } else {
        let names: Vec<String> = root
            .members
            .iter()
            .map(|&i| display_name(&tables[i].schema, &tables[i].name))
            .collect();
        let mut cycle = names.clone();
        cycle.push(names[0].clone());
        (
            format!(
                "the policies on {} read each other's tables ({}), so reading any of them \
                 recurses ({message})",
                names.join(" and "),
                cycle.join(" → ")
            ),
            "break the cycle: have one of these policies read the other table through a \
             SECURITY DEFINER function owned by the tables' owner, with SET search_path = '', \
             or drop one of the lookups"
                .to_owned(),
        )
    };
    Finding {
        check: CheckName::SelectableAsAuthenticated,
        severity: Severity::Failure,
        schema: first.schema.clone(),
        table: first.name.clone(),
        column: None,
        cause,
        hint,
        also_failing: root
            .because_of_it
            .iter()
            .map(|&i| tables[i].qualified())
            .collect(),
    }
}

fn plain_failure(table: &ProbeTarget, failure: &ProbeFailure) -> Finding {
    let qualified = format!(
        "{}.{}",
        quote_ident(&table.schema),
        quote_ident(&table.name)
    );
    let hint = match failure.code.as_deref() {
        Some(PERMISSION_DENIED) => format!(
            "GRANT USAGE ON SCHEMA {} and GRANT SELECT ON {qualified} TO authenticated (and rely \
             on its policies to limit the rows), or grant what the error names",
            quote_ident(&table.schema)
        ),
        Some(QUERY_CANCELED) => format!(
            "reading {qualified} as authenticated took longer than 10 s with two rows: look \
             for a policy or function that loops"
        ),
        _ => format!(
            "run `SELECT count(*) FROM {qualified}` as authenticated, with a row in it, to \
             reproduce, and fix the policies or functions it names"
        ),
    };
    Finding {
        check: CheckName::SelectableAsAuthenticated,
        severity: Severity::Failure,
        schema: table.schema.clone(),
        table: table.name.clone(),
        column: None,
        cause: failure.message.clone(),
        hint,
        also_failing: Vec::new(),
    }
}
