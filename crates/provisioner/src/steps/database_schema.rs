//! `database_schema`: the app schema's migrations applied to the client's project database in
//! version order, each file once (see [`tenant_db::apply_migrations`]): a new client gets all
//! of them, an adopted or earlier client is brought to the latest the same way. Then the schema
//! is checked as the Data API will meet it (see [`tenant_db::check_schema`]). A failed check
//! fails the run, which removes the project (an adopted one is left alone).
//!
//! The step's error is one line per root cause, and carries the whole report as its detail
//! (`StepError::detail`); its output on success carries the report too, warnings included.
//!
//! The database is reached by the route [`Stack::database_route`] gives (the project's session
//! pooler unless `SUPABASE_DB_URL_TEMPLATE` overrides it), logging in with the project's
//! derived password. An adopted project whose database refuses that password (one another
//! pipeline made) is handled as `supabase.adopted_database` says, never guessed:
//! - `refuse` (the default): a permanent error naming the two other choices;
//! - `sql_api`: the migrations are applied and the schema checked through the Management API's
//!   SQL endpoint, with the same guarantees (see [`tenant_db::apply_migrations_over_endpoint`]);
//! - `reset_password`: the project's database password is set to the derived one
//!   (`PATCH /v1/projects/{ref}/database/password`) and the attempt ends with a retryable
//!   error saying so, which the journal keeps (no password in it); the next attempt logs in.
//!
//! A project this provisioner created is never reset, whatever the setting: its refusal is a
//! permanent error.
//!
//! No undo of its own: the schema goes with the project.
//!
//! [`tenant_access`] is that route and those rules on their own, for whatever else needs to
//! reach a client's database (a fleet migration rollout): it logs in once to learn whether the
//! password is accepted, and answers a [`TenantAccess`] to read the migration state, apply
//! migrations and check the schema through.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use saga::{RetryPolicy, Step, StepContext, StepError, StepPolicy};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::provider_failure;
use super::supabase_project::{self, SupabaseProject};
use crate::client::Client;
use crate::config::AdoptedDatabase;
use crate::stack::{DatabaseRouteError, Stack};
use crate::templates::MigrationSet;
use crate::tenant_db::{
    self, CheckOptions, CheckReport, MigrationsApplied, RouteKind, SqlEndpoint, TenantDbError,
    TenantMigrationState,
};

pub const NAME: &str = "database_schema";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseSchema {
    /// SHA-256 of the latest applied migration file.
    pub checksum: String,
    /// True when every migration was applied already and nothing ran.
    pub already_applied: bool,
    /// The highest applied migration version; absent in records made before migrations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The versions this run applied, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub applied_now: Vec<String>,
    pub checks: CheckReport,
    /// How the database was reached; absent in records made before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<DatabaseAccess>,
}

/// The way the step reached the tenant database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DatabaseAccess {
    /// Logged in through the project's session pooler.
    Pooler,
    /// Logged in through `SUPABASE_DB_URL_TEMPLATE`.
    OverrideTemplate,
    /// The Management API's SQL endpoint (an adopted project's password is not ours).
    SqlApi,
}

impl From<RouteKind> for DatabaseAccess {
    fn from(kind: RouteKind) -> Self {
        match kind {
            RouteKind::Pooler => Self::Pooler,
            RouteKind::OverrideTemplate => Self::OverrideTemplate,
        }
    }
}

/// SQLSTATE of "password authentication failed".
const PASSWORD_REFUSED: &str = "28P01";

fn password_refused(err: &TenantDbError) -> bool {
    matches!(err, TenantDbError::Connect { code: Some(code), .. } if code == PASSWORD_REFUSED)
}

fn route_failure(err: DatabaseRouteError) -> StepError {
    match err {
        DatabaseRouteError::Pooler {
            project_ref,
            source,
        } => provider_failure(
            &format!("read the pooler routes of Supabase project {project_ref}"),
            source,
        ),
        DatabaseRouteError::Route(route) => StepError::permanent(route.to_string()),
    }
}

/// The adopted project's database refuses our password and the operator chose nothing.
fn adopted_refused(project: &SupabaseProject) -> StepError {
    StepError::permanent(format!(
        "the database of adopted Supabase project {} ({}) refuses the provisioner's derived \
         password: another pipeline made it with a password the provisioner never saw. Choose \
         how to go on in provisioner.toml and run again: [supabase] adopted_database = \
         \"sql_api\" (apply and check the schema through the Management API's SQL endpoint, \
         beta, no password needed) or adopted_database = \"reset_password\" (set the \
         project's database password to the provisioner's derived one; anything else using \
         the old password stops working)",
        project.name, project.project_ref
    ))
}

/// Our own project's database refuses our password: changed by hand, never reset by us.
fn own_project_refused(project: &SupabaseProject) -> StepError {
    StepError::permanent(format!(
        "the database of Supabase project {} ({}) refuses the provisioner's derived password \
         although this provisioner created the project: its password was changed outside the \
         provisioner. supabase.adopted_database applies only to adopted projects, so nothing \
         was reset; set the project's database password back to the derived one (or set \
         SUPABASE_DB_URL_TEMPLATE to a route with the current password) and retry",
        project.name, project.project_ref
    ))
}

fn failure(err: TenantDbError) -> StepError {
    let detail = match &err {
        TenantDbError::MigrationFailed {
            version,
            file_name,
            line,
            code,
            ..
        } => Some(serde_json::json!({
            "migrationFailed": {
                "version": version,
                "fileName": file_name,
                "line": line,
                "code": code,
            }
        })),
        TenantDbError::MigrationDrift { drift } => Some(serde_json::json!({ "drift": drift })),
        _ => None,
    };
    let error = if err.is_contention() {
        // Spread by the policy's jittered backoff: a fixed wait would bring every run that
        // met the same shortage back at the same moment.
        StepError::retryable(err.to_string())
    } else if err.is_retryable() {
        // e.g. a fresh project refusing connections for a moment after ACTIVE_HEALTHY.
        StepError::retry_after(Duration::from_secs(3), err.to_string())
    } else {
        StepError::permanent(err.to_string())
    };
    match detail {
        Some(detail) => error.with_detail(detail),
        None => error,
    }
}

/// The step's error for a schema that failed its checks: a short message, one line per root
/// cause, and the whole report as detail.
fn checks_failed(project_name: &str, report: &CheckReport) -> StepError {
    let message = format!(
        "the schema of {project_name} failed its checks:\n{}",
        report.brief()
    );
    match serde_json::to_value(report) {
        Ok(detail) => StepError::permanent(message).with_detail(detail),
        // The report is plain strings, numbers and lists; should it ever not serialise, the
        // message still says what failed.
        Err(_) => StepError::permanent(message),
    }
}

/// The action's policy: a database server short of memory or connections for many sessions
/// at once (a batch's migrations) recovers as they finish, so the attempts are many and spread
/// over about five minutes of jittered, doubling waits.
const CONTENDED: RetryPolicy = RetryPolicy {
    timeout: Duration::from_secs(300),
    max_attempts: 10,
    backoff_base: Duration::from_secs(2),
    backoff_cap: Duration::from_secs(60),
};

#[derive(Debug, Clone)]
pub struct DatabaseSchemaStep {
    pub stack: Arc<Stack>,
}

#[async_trait]
impl Step for DatabaseSchemaStep {
    type Input = Client;
    type Output = DatabaseSchema;

    fn name(&self) -> &'static str {
        NAME
    }

    fn policy(&self) -> StepPolicy {
        StepPolicy {
            action: CONTENDED,
            undo: StepPolicy::default().undo,
        }
    }

    async fn action(&self, ctx: &StepContext<'_, Client>) -> Result<DatabaseSchema, StepError> {
        super::budget_waits_untimed(async {
            let project: SupabaseProject = ctx.output(supabase_project::NAME)?;
            let access = tenant_access(&self.stack, &project).await?;
            let set = &self.stack.templates.migrations;
            let applied = access.apply(set).await.map_err(failure)?;
            let checks = access.check(&self.check_options()).await.map_err(failure)?;
            if !checks.passed {
                return Err(checks_failed(&project.name, &checks));
            }
            let latest = set.get(&applied.version).map(|m| m.checksum.clone());
            Ok(DatabaseSchema {
                checksum: latest.unwrap_or_default(),
                already_applied: applied.applied_now.is_empty(),
                version: Some(applied.version),
                applied_now: applied.applied_now,
                checks,
                access: Some(access.kind()),
            })
        })
        .await
    }

    async fn undo(
        &self,
        _ctx: &StepContext<'_, Client>,
        _output: Option<DatabaseSchema>,
    ) -> Result<(), StepError> {
        Ok(())
    }
}

impl DatabaseSchemaStep {
    fn check_options(&self) -> CheckOptions {
        let settings = &self.stack.settings.schema_checks;
        CheckOptions {
            exposed_schemas: settings.exposed_schemas.clone(),
            allow_anon_secret_columns: settings.allow_anon_secret_columns.clone(),
            allow_authenticated_secret_columns: settings.allow_authenticated_secret_columns.clone(),
        }
    }
}

/// How a client's database is reached: logged in by [`Stack::database_route`], or through the
/// Management API's SQL endpoint when an adopted project's password is not ours and
/// `supabase.adopted_database = "sql_api"`.
#[derive(Debug, Clone)]
pub enum TenantAccess {
    Connection {
        url: SecretString,
        kind: RouteKind,
    },
    /// Boxed: the endpoint holds a whole Supabase client, a connection a URL.
    SqlApi(Box<SqlEndpoint>),
}

/// The way to `project`'s database, by the same route and `supabase.adopted_database` rules as
/// the step (see the module's documentation): logs in once to learn whether the derived
/// password is accepted. With `reset_password`, the password is reset and the answer is the
/// step's retryable error saying so; the next call logs in.
pub async fn tenant_access(
    stack: &Stack,
    project: &SupabaseProject,
) -> Result<TenantAccess, StepError> {
    let password = SecretString::from(project.db_password.expose().clone());
    let route = stack
        .database_route(&project.project_ref, &project.db_host, &password)
        .await
        .map_err(route_failure)?;
    match tenant_db::try_login(&route.url).await {
        Ok(()) => Ok(TenantAccess::Connection {
            url: route.url,
            kind: route.kind,
        }),
        Err(err) if password_refused(&err) && !project.adopted => Err(own_project_refused(project)),
        Err(err) if password_refused(&err) => match stack.settings.supabase.adopted_database {
            AdoptedDatabase::Refuse => Err(adopted_refused(project)),
            AdoptedDatabase::SqlApi => Ok(TenantAccess::SqlApi(Box::new(SqlEndpoint::new(
                stack.supabase.clone(),
                &project.project_ref,
            )))),
            AdoptedDatabase::ResetPassword => Err(reset_password(stack, project, &password).await),
        },
        Err(err) => Err(failure(err)),
    }
}

impl TenantAccess {
    /// How the database is reached, as the step's output records it.
    pub fn kind(&self) -> DatabaseAccess {
        match self {
            Self::Connection { kind, .. } => (*kind).into(),
            Self::SqlApi(_) => DatabaseAccess::SqlApi,
        }
    }

    /// [`tenant_db::migration_state`] (or its endpoint twin): reads only.
    pub async fn state(&self, set: &MigrationSet) -> Result<TenantMigrationState, TenantDbError> {
        match self {
            Self::Connection { url, .. } => tenant_db::migration_state(url, set).await,
            Self::SqlApi(endpoint) => tenant_db::migration_state_over_endpoint(endpoint, set).await,
        }
    }

    /// [`tenant_db::apply_migrations`] (or its endpoint twin).
    pub async fn apply(&self, set: &MigrationSet) -> Result<MigrationsApplied, TenantDbError> {
        match self {
            Self::Connection { url, .. } => tenant_db::apply_migrations(url, set).await,
            Self::SqlApi(endpoint) => {
                tenant_db::apply_migrations_over_endpoint(endpoint, set).await
            }
        }
    }

    /// [`tenant_db::check_schema`] (or its endpoint twin).
    pub async fn check(&self, options: &CheckOptions) -> Result<CheckReport, TenantDbError> {
        match self {
            Self::Connection { url, .. } => tenant_db::check_schema(url, options).await,
            Self::SqlApi(endpoint) => {
                tenant_db::check_schema_over_endpoint(endpoint, options).await
            }
        }
    }
}

/// Sets the adopted project's database password to the derived one, and ends the attempt with a
/// retryable error that says so: the journal keeps it as the attempt's failure (with the
/// project and time as detail, never the password), and the next attempt logs in with the
/// derived password.
async fn reset_password(
    stack: &Stack,
    project: &SupabaseProject,
    password: &SecretString,
) -> StepError {
    let project_ref = &project.project_ref;
    if let Err(e) = stack
        .supabase
        .update_database_password(project_ref, password)
        .await
    {
        return provider_failure(
            &format!("reset the database password of adopted Supabase project {project_ref}"),
            e,
        );
    }
    tracing::info!(
        project = %project.name,
        project_ref = %project_ref,
        "reset the database password of an adopted project to the derived one"
    );
    StepError::retry_after(
        Duration::from_secs(2),
        format!(
            "reset the database password of adopted Supabase project {} ({project_ref}) to \
             the provisioner's derived one, as supabase.adopted_database = \"reset_password\" \
             allows; logging in again",
            project.name
        ),
    )
    .with_detail(serde_json::json!({
        "passwordReset": {
            "projectRef": project_ref,
            "project": project.name,
            "at": chrono::Utc::now().to_rfc3339(),
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenant_db::{CheckName, Finding, Severity};

    #[test]
    fn a_server_short_of_resources_is_retried_on_jittered_backoff_not_a_fixed_wait() {
        let short = TenantDbError::Connect {
            host: "h:5432".into(),
            database: "d".into(),
            message: "out of shared memory".into(),
            code: Some("53200".into()),
        };
        assert!(
            matches!(failure(short), StepError::Retryable { after: None, .. }),
            "no fixed wait"
        );
        let starting = TenantDbError::Connect {
            host: "h:5432".into(),
            database: "d".into(),
            message: "the database system is starting up".into(),
            code: Some("57P03".into()),
        };
        assert!(matches!(
            failure(starting),
            StepError::Retryable { after: Some(_), .. }
        ));
        // The waits' ceilings add up to minutes, not seconds.
        let mut ceilings = Duration::ZERO;
        for failed in 1..CONTENDED.max_attempts {
            let doubled = CONTENDED.backoff_base * (1 << (failed - 1).min(16));
            ceilings += doubled.min(CONTENDED.backoff_cap);
        }
        assert!(ceilings >= Duration::from_secs(240), "{ceilings:?}");
    }

    fn root(table: &str, also_failing: usize) -> Finding {
        Finding {
            check: CheckName::SelectableAsAuthenticated,
            severity: Severity::Failure,
            schema: "public".into(),
            table: table.into(),
            column: None,
            cause: format!("a policy on it reads {table} itself (infinite recursion ...)"),
            hint: "read it through a SECURITY DEFINER function".into(),
            also_failing: (0..also_failing).map(|i| format!("public.t{i}")).collect(),
        }
    }

    #[test]
    fn a_failed_check_is_one_line_per_root_cause_with_the_report_as_detail() {
        let mut warning = root("audit_log", 0);
        warning.severity = Severity::Warning;
        let report = CheckReport::new(
            vec!["public".into()],
            vec![(CheckName::SelectableAsAuthenticated, 23, Vec::new())],
            vec![root("users", 20), root("teams", 0), warning],
        );
        let error = checks_failed("acme", &report);
        let message = error.to_string();
        let lines: Vec<&str> = message.lines().collect();
        assert_eq!(lines.len(), 3, "{message}");
        assert_eq!(lines[0], "the schema of acme failed its checks:");
        assert!(lines[1].starts_with("SelectableAsAuthenticated on users: "));
        assert!(lines[2].starts_with("SelectableAsAuthenticated on teams: "));
        assert!(!message.contains("audit_log"), "warnings are not failures");
        assert!(message.len() < 1000, "{} bytes", message.len());

        let detail = error.detail().expect("the report as detail");
        assert_eq!(detail["findings"].as_array().map(Vec::len), Some(3));
        assert_eq!(detail["findings"][0]["alsoFailing"][19], "public.t19");
    }
}
