//! Checking a tenant database the way the Supabase Data API will meet it.

use std::collections::BTreeSet;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use sqlx::Connection;

use super::catalog::{Catalog, CatalogRow};
use super::probe::{self, ProbeResults};
use super::report::{CheckName, CheckReport, Finding, Severity, display_name};
use super::secrets::looks_secret;
use super::sql_endpoint::SqlEndpoint;
use super::target::Target;
use super::{TenantDbError, quote_ident};

const RELATIONS_SQL: &str = include_str!("../../sql/tenant_checks/relations.sql");
const ANON_READABLE_COLUMNS_SQL: &str =
    include_str!("../../sql/tenant_checks/anon_readable_columns.sql");
const AUTHENTICATED_READABLE_COLUMNS_SQL: &str =
    include_str!("../../sql/tenant_checks/authenticated_readable_columns.sql");
const ANON_DEFINER_FUNCTIONS_SQL: &str =
    include_str!("../../sql/tenant_checks/anon_definer_functions.sql");
const RLS_BYPASSING_VIEWS_SQL: &str =
    include_str!("../../sql/tenant_checks/rls_bypassing_views.sql");

/// The schemas the Supabase Data API exposes unless configured otherwise.
pub const DEFAULT_EXPOSED_SCHEMAS: &[&str] = &["public", "graphql_public"];

/// What [`check_schema`] looks at and may let through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckOptions {
    /// The schemas the Data API exposes; every relation and function in them is checked.
    pub exposed_schemas: Vec<String>,
    /// `"table.column"` (in `public`) or `"schema.table.column"` pairs that `anon` may read
    /// although their names look secret (e.g. a public key that really is public).
    pub allow_anon_secret_columns: Vec<String>,
    /// The same, for columns `authenticated` may read in other tenants' rows.
    pub allow_authenticated_secret_columns: Vec<String>,
}

impl Default for CheckOptions {
    fn default() -> Self {
        Self {
            exposed_schemas: DEFAULT_EXPOSED_SCHEMAS
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            allow_anon_secret_columns: Vec::new(),
            allow_authenticated_secret_columns: Vec::new(),
        }
    }
}

/// Inspects the exposed schemas of the database at `db_url` as the Data API roles would meet
/// them. Failed checks are findings in the [`CheckReport`], not an error; [`TenantDbError`]
/// is kept for "could not look".
///
/// Connect as the project's owner role (a member of `authenticated`) or a superuser. Every
/// query runs with `search_path = pg_catalog`, so the schema under check cannot shadow what
/// the checks call. Nothing is changed: the probe as `authenticated` (see
/// [`probe`](super::probe)) works in a transaction that is rolled back.
pub async fn check_schema(
    db_url: &SecretString,
    options: &CheckOptions,
) -> Result<CheckReport, TenantDbError> {
    let target = Target::parse(db_url)?;
    let mut conn = target.connect_for_checks().await?;
    let probed = probe::probe_tables(&mut conn, &target, &options.exposed_schemas).await?;
    let report = {
        let mut catalog = Catalog::Connection {
            conn: &mut conn,
            target: &target,
        };
        run_checks(&mut catalog, options, probed).await?
    };
    let _ = conn.close().await;
    Ok(report)
}

/// [`check_schema`] through the Management API's SQL endpoint, for a project whose database
/// password is not ours: the same checks and the same report. Each call is one request, so
/// the probe runs as single statements that always end in an error, which rolls back all
/// they did (see [`probe`](super::probe)); the catalog queries only read.
pub async fn check_schema_over_endpoint(
    endpoint: &SqlEndpoint,
    options: &CheckOptions,
) -> Result<CheckReport, TenantDbError> {
    let probed = probe::probe_tables_over_endpoint(endpoint, &options.exposed_schemas).await?;
    let mut catalog = Catalog::Endpoint(endpoint);
    run_checks(&mut catalog, options, probed).await
}

async fn run_checks(
    catalog: &mut Catalog<'_>,
    options: &CheckOptions,
    probed: ProbeResults,
) -> Result<CheckReport, TenantDbError> {
    let schemas = &options.exposed_schemas;
    let relations = list_relations(catalog, schemas).await?;

    let mut examined = Vec::new();
    let mut findings = Vec::new();

    let rls = check_rls_enabled(&relations);
    examined.push((CheckName::RlsEnabled, rls.examined, Vec::new()));
    findings.extend(rls.findings);

    examined.push((
        CheckName::SelectableAsAuthenticated,
        probed.tables_examined,
        Vec::new(),
    ));
    findings.extend(probed.findings.iter().cloned());

    let anon = check_anon_secret_columns(catalog, options).await?;
    examined.push((CheckName::NoAnonSecretColumns, anon.examined, anon.allowed));
    findings.extend(anon.findings);

    let shared = check_shared_secret_columns(catalog, options, &probed).await?;
    examined.push((
        CheckName::NoSharedSecretColumns,
        shared.examined,
        shared.allowed,
    ));
    findings.extend(shared.findings);

    let views = check_rls_bypassing_views(catalog, schemas, &relations).await?;
    examined.push((CheckName::NoRlsBypassingViews, views.examined, Vec::new()));
    findings.extend(views.findings);

    let functions = check_anon_definer_functions(catalog, schemas).await?;
    examined.push((
        CheckName::NoAnonDefinerFunctions,
        functions.examined,
        Vec::new(),
    ));
    findings.extend(functions.findings);

    Ok(CheckReport::new(schemas.clone(), examined, findings))
}

/// What one check contributes to the report.
struct Checked {
    examined: usize,
    findings: Vec<Finding>,
    allowed: Vec<String>,
}

#[derive(Debug)]
struct Relation {
    schema: String,
    name: String,
    is_table: bool,
    is_partition: bool,
    rls_enabled: bool,
}

async fn list_relations(
    catalog: &mut Catalog<'_>,
    schemas: &[String],
) -> Result<Vec<Relation>, TenantDbError> {
    let during = "listing the relations in the exposed schemas";
    let rows = catalog.rows(RELATIONS_SQL, schemas, during).await?;
    rows.iter()
        .map(|row: &CatalogRow| {
            Ok(Relation {
                schema: row.text("schema_name", during)?,
                name: row.text("name", during)?,
                is_table: row.flag("is_table", during)?,
                is_partition: row.flag("is_partition", during)?,
                rls_enabled: row.flag("rls_enabled", during)?,
            })
        })
        .collect()
}

fn qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident(name))
}

fn check_rls_enabled(relations: &[Relation]) -> Checked {
    // The Data API reads a partition through its parent or directly; either way the
    // partition's own flag decides when it is named directly.
    let tables: Vec<&Relation> = relations.iter().filter(|r| r.is_table).collect();
    let findings = tables
        .iter()
        .filter(|t| !t.rls_enabled)
        .map(|t| Finding {
            check: CheckName::RlsEnabled,
            severity: Severity::Failure,
            schema: t.schema.clone(),
            table: t.name.clone(),
            column: None,
            cause: format!(
                "row level security is disabled{}: every role with a grant reads and writes \
                 every row through the API",
                if t.is_partition {
                    " on this partition"
                } else {
                    ""
                }
            ),
            hint: format!(
                "ALTER TABLE {} ENABLE ROW LEVEL SECURITY; then add policies for the rows each \
                 role may see",
                qualified(&t.schema, &t.name)
            ),
            also_failing: Vec::new(),
        })
        .collect();
    Checked {
        examined: tables.len(),
        findings,
        allowed: Vec::new(),
    }
}

/// The configured `table.column` / `schema.table.column` entries, as `schema.table.column`.
fn allow_list(entries: &[String]) -> BTreeSet<String> {
    entries
        .iter()
        .map(|entry| {
            if entry.split('.').count() == 2 {
                format!("public.{entry}")
            } else {
                entry.clone()
            }
        })
        .collect()
}

async fn check_anon_secret_columns(
    catalog: &mut Catalog<'_>,
    options: &CheckOptions,
) -> Result<Checked, TenantDbError> {
    let during = "reading what anon can select";
    let rows = catalog
        .rows(ANON_READABLE_COLUMNS_SQL, &options.exposed_schemas, during)
        .await?;

    let allowed_by_config = allow_list(&options.allow_anon_secret_columns);
    let mut readable_relations = BTreeSet::new();
    let mut findings = Vec::new();
    let mut allowed = Vec::new();
    for row in &rows {
        let schema = row.text("schema_name", during)?;
        let relation = row.text("relation", during)?;
        let column = row.text("column_name", during)?;
        let is_table = row.flag("is_table", during)?;
        let rls_enabled = row.flag("rls_enabled", during)?;
        let anon_policies = row.maybe_text("anon_policies", during)?;

        let why_readable = if !is_table {
            "it is not a table, so row level security does not filter it".to_owned()
        } else if !rls_enabled {
            "row level security is disabled".to_owned()
        } else if let Some(policies) = anon_policies {
            format!("policy {policies} lets anon select rows")
        } else {
            continue;
        };
        readable_relations.insert((schema.clone(), relation.clone()));
        if !looks_secret(&column) {
            continue;
        }
        let entry = format!("{schema}.{relation}.{column}");
        if allowed_by_config.contains(&entry) {
            allowed.push(entry);
            continue;
        }
        findings.push(Finding {
            check: CheckName::NoAnonSecretColumns,
            severity: Severity::Failure,
            cause: format!(
                "anon (the public API key) can read this column, whose name looks secret: \
                 {why_readable}"
            ),
            hint: format!(
                "REVOKE SELECT ON {} FROM anon, or enable row level security with no policy for \
                 anon/public; if the value is meant to be public, allow \"{}\" in \
                 schema_checks.allow_anon_secret_columns",
                qualified(&schema, &relation),
                display_name(&schema, &format!("{relation}.{column}"))
            ),
            schema,
            table: relation,
            column: Some(column),
            also_failing: Vec::new(),
        });
    }
    Ok(Checked {
        examined: readable_relations.len(),
        findings,
        allowed,
    })
}

async fn check_shared_secret_columns(
    catalog: &mut Catalog<'_>,
    options: &CheckOptions,
    probed: &ProbeResults,
) -> Result<Checked, TenantDbError> {
    let during = "reading what authenticated can select";
    let rows = catalog
        .rows(
            AUTHENTICATED_READABLE_COLUMNS_SQL,
            &options.exposed_schemas,
            during,
        )
        .await?;
    let allowed_by_config = allow_list(&options.allow_authenticated_secret_columns);
    let mut examined = BTreeSet::new();
    let mut findings = Vec::new();
    let mut allowed = Vec::new();
    for row in &rows {
        let schema = row.text("schema_name", during)?;
        let relation = row.text("relation", during)?;
        let column = row.text("column_name", during)?;
        if !looks_secret(&column) {
            continue;
        }
        let key = (schema.clone(), relation.clone());
        examined.insert(key.clone());
        if !probed.others_row_visible.contains(&key) {
            continue;
        }
        let entry = format!("{schema}.{relation}.{column}");
        if allowed_by_config.contains(&entry) {
            allowed.push(entry);
            continue;
        }
        findings.push(Finding {
            check: CheckName::NoSharedSecretColumns,
            severity: Severity::Failure,
            cause: "any signed-in user can read this column, whose name looks secret, in other \
                    tenants' rows: the synthetic user read a row that belongs to nobody they \
                    share anything with"
                .to_owned(),
            hint: format!(
                "limit the SELECT policies of {} to the user's own (organisation's) rows, or \
                 REVOKE SELECT ({}) ON it FROM authenticated and read it server-side; if every \
                 user may see it, allow \"{}\" in schema_checks.allow_authenticated_secret_columns",
                qualified(&schema, &relation),
                quote_ident(&column),
                display_name(&schema, &format!("{relation}.{column}"))
            ),
            schema,
            table: relation,
            column: Some(column),
            also_failing: Vec::new(),
        });
    }
    Ok(Checked {
        examined: examined.len(),
        findings,
        allowed,
    })
}

async fn check_rls_bypassing_views(
    catalog: &mut Catalog<'_>,
    schemas: &[String],
    relations: &[Relation],
) -> Result<Checked, TenantDbError> {
    let during = "reading the views over tables with row level security";
    let rows = catalog
        .rows(RLS_BYPASSING_VIEWS_SQL, schemas, during)
        .await?;
    let mut findings = Vec::new();
    for row in &rows {
        let schema = row.text("schema_name", during)?;
        let name = row.text("name", during)?;
        let is_materialized = row.flag("is_materialized", during)?;
        let tables_read = row.text("tables_read", during)?;
        let readers = row.text("readers", during)?;
        let view = qualified(&schema, &name);
        let (cause, hint) = if is_materialized {
            (
                format!(
                    "{readers} can read this materialized view of {tables_read}; a materialized \
                     view has no row level security, so they see every row it holds"
                ),
                format!(
                    "REVOKE SELECT ON {view} FROM anon, authenticated (read it through a \
                     function that filters rows), or move it to a schema the API does not expose"
                ),
            )
        } else {
            (
                format!(
                    "{readers} can read this view of {tables_read}; it runs as its owner, to \
                     whom the row level security of {tables_read} does not apply, so they see \
                     every row"
                ),
                format!(
                    "ALTER VIEW {view} SET (security_invoker = true), so the reader's policies \
                     apply, or REVOKE SELECT ON {view} FROM anon, authenticated"
                ),
            )
        };
        findings.push(Finding {
            check: CheckName::NoRlsBypassingViews,
            severity: Severity::Failure,
            schema,
            table: name,
            column: None,
            cause,
            hint,
            also_failing: Vec::new(),
        });
    }
    Ok(Checked {
        examined: relations.iter().filter(|r| !r.is_table).count(),
        findings,
        allowed: Vec::new(),
    })
}

async fn check_anon_definer_functions(
    catalog: &mut Catalog<'_>,
    schemas: &[String],
) -> Result<Checked, TenantDbError> {
    let during = "reading the SECURITY DEFINER functions anon can execute";
    let rows = catalog
        .rows(ANON_DEFINER_FUNCTIONS_SQL, schemas, during)
        .await?;
    let mut findings = Vec::new();
    for row in &rows {
        let schema = row.text("schema_name", during)?;
        let name = row.text("name", during)?;
        let arguments = row.text("arguments", during)?;
        if !row.flag("anon_can_execute", during)? {
            continue;
        }
        let function = format!("{}({arguments})", qualified(&schema, &name));
        findings.push(Finding {
            check: CheckName::NoAnonDefinerFunctions,
            severity: Severity::Failure,
            cause: format!(
                "anon (the public API key) can call it as /rpc/{name}, and it runs as its owner, \
                 past every row level security policy the owner is not subject to"
            ),
            hint: format!(
                "REVOKE EXECUTE ON FUNCTION {function} FROM PUBLIC, anon (grant it to \
                 authenticated if signed-in users need it), make it SECURITY INVOKER, or move it \
                 to a schema the API does not expose"
            ),
            schema,
            table: format!("{name}({arguments})"),
            column: None,
            also_failing: Vec::new(),
        });
    }
    Ok(Checked {
        examined: rows.len(),
        findings,
        allowed: Vec::new(),
    })
}
