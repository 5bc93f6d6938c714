//! `database_schema`: the app's schema applied to the client's project database in one
//! transaction, its version (checksum) recorded there so a repeat does nothing, then checked
//! as a user would meet it (RLS on every table, every table selectable as `authenticated`,
//! nothing secret-looking readable by `anon`). A failed check fails the run, which removes
//! the project; the report says which table broke which rule.
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
    if err.is_retryable() {
        // e.g. a fresh project refusing connections for a moment after ACTIVE_HEALTHY.
        StepError::retry_after(Duration::from_secs(3), err.to_string())
    } else {
        StepError::permanent(err.to_string())
    }
}

/// One line per failure: which check, which table (and column), what to do.
fn report_failures(report: &CheckReport) -> String {
    report
        .failures()
        .map(|(check, f)| {
            let at = f
                .column
                .as_ref()
                .map_or(f.table.clone(), |c| format!("{}.{c}", f.table));
            format!("{check:?} on {at}: {}; {}", f.message, f.remedy)
        })
        .collect::<Vec<_>>()
        .join(" | ")
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
        let options = CheckOptions {
            allow_anon_secret_columns: self
                .stack
                .settings
                .schema_checks
                .allow_anon_secret_columns
                .clone(),
        };
        let checks = tenant_db::check_schema(&url, &options)
            .await
            .map_err(failure)?;
        if !checks.passed {
            return Err(StepError::permanent(format!(
                "the schema of {} failed its checks: {}",
                project.name,
                report_failures(&checks)
            )));
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
