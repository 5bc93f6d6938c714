//! `database_schema`: the app's schema applied to the client's project database in one
//! transaction, its version (checksum) recorded there so a repeat does nothing, then checked
//! as the Data API will meet it (see [`tenant_db::check_schema`]). A failed check fails the
//! run, which removes the project.
//!
//! The step's error is one line per root cause, and carries the whole report as its detail
//! (`StepError::detail`); its output on success carries the report too, warnings included.
//!
//! No undo of its own: the schema goes with the project.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use saga::{RetryPolicy, Step, StepContext, StepError, StepPolicy};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::supabase_project::{self, SupabaseProject};
use crate::client::Client;
use crate::stack::Stack;
use crate::tenant_db::{self, CheckOptions, CheckReport, TenantDbError};

pub const NAME: &str = "database_schema";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseSchema {
    pub checksum: String,
    pub already_applied: bool,
    pub checks: CheckReport,
}

fn failure(err: TenantDbError) -> StepError {
    let detail = match &err {
        TenantDbError::SchemaRefused { statements } => {
            Some(serde_json::json!({ "refusedStatements": statements }))
        }
        _ => None,
    };
    let error = if err.is_retryable() {
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
            action: RetryPolicy {
                timeout: Duration::from_secs(300),
                ..RetryPolicy::default()
            },
            undo: StepPolicy::default().undo,
        }
    }

    async fn action(&self, ctx: &StepContext<'_, Client>) -> Result<DatabaseSchema, StepError> {
        let project: SupabaseProject = ctx.output(supabase_project::NAME)?;
        let url = self.stack.database_url(
            &project.project_ref,
            &project.db_host,
            &SecretString::from(project.db_password.expose().clone()),
        );
        let schema = &self.stack.templates.schema;
        let applied = tenant_db::apply_schema(&url, &schema.sql)
            .await
            .map_err(failure)?;
        let settings = &self.stack.settings.schema_checks;
        let options = CheckOptions {
            exposed_schemas: settings.exposed_schemas.clone(),
            allow_anon_secret_columns: settings.allow_anon_secret_columns.clone(),
            allow_authenticated_secret_columns: settings.allow_authenticated_secret_columns.clone(),
        };
        let checks = tenant_db::check_schema(&url, &options)
            .await
            .map_err(failure)?;
        if !checks.passed {
            return Err(checks_failed(&project.name, &checks));
        }
        Ok(DatabaseSchema {
            checksum: applied.checksum,
            already_applied: applied.already_applied,
            checks,
        })
    }

    async fn undo(
        &self,
        _ctx: &StepContext<'_, Client>,
        _output: Option<DatabaseSchema>,
    ) -> Result<(), StepError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenant_db::{CheckName, Finding, Severity};

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
