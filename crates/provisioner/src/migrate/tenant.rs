//! One tenant database as a rollout or a plan reaches it: by the same route and
//! `[supabase] adopted_database` rules as the `database_schema` step
//! ([`database_schema::tenant_access`]), from the tenant's recorded project and its derived
//! password, which is never journaled.

use saga::Secret;
use serde::Serialize;

use super::selection::Tenant;
use crate::stack::Stack;
use crate::steps::database_schema::{self, TenantAccess};
use crate::steps::supabase_project::SupabaseProject;
use crate::templates::MigrationSet;
use crate::tenant_db::{
    CheckOptions, MigrationDrift, MigrationsApplied, TenantDbError, TenantMigrationState,
};

/// How one tenant's migration went wrong, in parts a caller can show or act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantFailure {
    pub client_id: String,
    /// One paragraph: the file, the statement and the PostgreSQL error when a file failed.
    pub message: String,
    /// Another attempt may succeed (the database did not answer, a connection dropped).
    pub retryable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statement: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Edited or unknown applied versions that made the tenant refuse the migration.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<DriftView>,
}

/// A drift finding as the plan and the rollout report it (camelCase, like the rest of the
/// API's JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum DriftView {
    /// An applied file whose text changed since it was applied.
    #[serde(rename_all = "camelCase")]
    Edited { version: String, file_name: String },
    /// A version applied in the database that no migration file has.
    #[serde(rename_all = "camelCase")]
    Unknown {
        version: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    /// A schema applied before migrations existed that is not the first migration.
    #[serde(rename_all = "camelCase")]
    UnrecognisedLegacySchema { checksum: String },
}

impl From<&MigrationDrift> for DriftView {
    fn from(drift: &MigrationDrift) -> Self {
        match drift {
            MigrationDrift::Edited { version, file_name } => Self::Edited {
                version: version.clone(),
                file_name: file_name.clone(),
            },
            MigrationDrift::Unknown { version, name } => Self::Unknown {
                version: version.clone(),
                name: name.clone(),
            },
            MigrationDrift::UnrecognisedLegacySchema { checksum } => {
                Self::UnrecognisedLegacySchema {
                    checksum: checksum.clone(),
                }
            }
        }
    }
}

impl TenantFailure {
    pub fn new(client_id: &str, message: impl Into<String>, retryable: bool) -> Self {
        Self {
            client_id: client_id.to_owned(),
            message: message.into(),
            retryable,
            version: None,
            file_name: None,
            statement: None,
            code: None,
            drift: Vec::new(),
        }
    }

    pub fn from_db(client_id: &str, err: &TenantDbError) -> Self {
        let mut failure = Self::new(client_id, err.to_string(), err.is_retryable());
        match err {
            TenantDbError::MigrationFailed {
                version,
                file_name,
                statement,
                code,
                ..
            } => {
                failure.version = Some(version.clone());
                failure.file_name = Some(file_name.clone());
                failure.statement = Some(statement.clone());
                failure.code = code.clone();
            }
            TenantDbError::MigrationDrift { drift } => {
                failure.drift = drift.iter().map(DriftView::from).collect();
            }
            _ => {}
        }
        failure
    }
}

/// The tenant's project as the schema step knew it; the password is derived from its name.
fn project(stack: &Stack, tenant: &Tenant) -> SupabaseProject {
    use secrecy::ExposeSecret;
    SupabaseProject {
        project_ref: tenant.project_ref.clone(),
        name: tenant.project_name.clone(),
        region: tenant.region.clone(),
        api_url: tenant.api_url.clone(),
        db_host: tenant.db_host.clone(),
        adopted: tenant.adopted,
        db_password: Secret::new(
            stack
                .database_password(&tenant.project_name)
                .expose_secret()
                .to_owned(),
        ),
        // Reaching the database takes neither API key; the rollout never reads them.
        anon_key: Secret::new(String::new()),
        service_role_key: Secret::new(String::new()),
    }
}

async fn access(stack: &Stack, tenant: &Tenant) -> Result<TenantAccess, TenantFailure> {
    database_schema::tenant_access(stack, &project(stack, tenant))
        .await
        .map_err(|e| TenantFailure::new(&tenant.client_id, e.message(), e.is_retryable()))
}

/// What the tenant's database records against `set` (read-only).
pub async fn state(
    stack: &Stack,
    tenant: &Tenant,
    set: &MigrationSet,
) -> Result<TenantMigrationState, TenantFailure> {
    let access = access(stack, tenant).await?;
    access
        .state(set)
        .await
        .map_err(|e| TenantFailure::from_db(&tenant.client_id, &e))
}

/// Applies what `set` has that the tenant lacks, then runs the schema checks.
pub async fn migrate(
    stack: &Stack,
    tenant: &Tenant,
    set: &MigrationSet,
) -> Result<MigrationsApplied, TenantFailure> {
    let access = access(stack, tenant).await?;
    let applied = access
        .apply(set)
        .await
        .map_err(|e| TenantFailure::from_db(&tenant.client_id, &e))?;
    let report = access
        .check(&check_options(stack))
        .await
        .map_err(|e| TenantFailure::from_db(&tenant.client_id, &e))?;
    if !report.passed {
        return Err(TenantFailure::new(
            &tenant.client_id,
            format!(
                "migrated to {} but the schema failed its checks (the migration stays applied; fix it with a new migration):\n{}",
                applied.version,
                report.brief()
            ),
            false,
        ));
    }
    Ok(applied)
}

fn check_options(stack: &Stack) -> CheckOptions {
    let settings = &stack.settings.schema_checks;
    CheckOptions {
        exposed_schemas: settings.exposed_schemas.clone(),
        allow_anon_secret_columns: settings.allow_anon_secret_columns.clone(),
        allow_authenticated_secret_columns: settings.allow_authenticated_secret_columns.clone(),
    }
}
