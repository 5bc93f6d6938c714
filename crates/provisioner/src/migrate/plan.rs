//! `migrate plan`: per tenant, the version its database has applied, the files a rollout to
//! the target would apply, drift (an applied file edited since, a version no file has), and
//! what `apply` would do. It only reads: nothing is journaled and no tenant is changed.

use futures::StreamExt;
use serde::Serialize;

use super::selection::{self, Tenant};
use super::tenant::{self, DriftView, TenantFailure};
use super::{MigrateError, Options};
use crate::app::App;
use crate::stack::Stack;
use crate::templates::MigrationSet;
use crate::tenant_db::MigrationDrift;

/// One tenant's plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantPlan {
    pub client_id: String,
    pub project_ref: String,
    /// The highest applied version; absent for a database with none.
    pub version: Option<String>,
    /// The files a rollout to the target would apply, in order.
    pub pending: Vec<String>,
    pub drift: Vec<DriftView>,
    /// `apply`, `nothing`, `refuse` (drift) or `unknown` (the database could not be read).
    pub action: &'static str,
    /// The action in words.
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<TenantFailure>,
}

/// The plan of every selected tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FleetPlan {
    pub target: String,
    pub latest: String,
    pub tenants: Vec<TenantPlan>,
    /// Some tenant has drift: `apply` would refuse it.
    pub drift: bool,
    /// Some tenant's database could not be read.
    pub unreadable: bool,
}

impl FleetPlan {
    /// The plan as a table for people.
    pub fn table(&self) -> String {
        let mut out = format!(
            "target {} (latest {}), {} tenant(s)\n{:<24}  {:<8}  {:<7}  {}",
            self.target,
            self.latest,
            self.tenants.len(),
            "CLIENT",
            "VERSION",
            "ACTION",
            "DETAIL"
        );
        for t in &self.tenants {
            out += &format!(
                "\n{:<24}  {:<8}  {:<7}  {}",
                t.client_id,
                t.version.as_deref().unwrap_or("-"),
                t.action,
                t.detail
            );
        }
        out
    }
}

fn describe_drift(drift: &[MigrationDrift]) -> String {
    drift
        .iter()
        .map(|d| match d {
            MigrationDrift::Edited { version, file_name } => {
                format!("{file_name} (version {version}) was edited after it was applied")
            }
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

async fn tenant_plan(
    stack: &Stack,
    tenant: &Tenant,
    full: &MigrationSet,
    target: &MigrationSet,
) -> TenantPlan {
    let mut plan = TenantPlan {
        client_id: tenant.client_id.clone(),
        project_ref: tenant.project_ref.clone(),
        version: None,
        pending: Vec::new(),
        drift: Vec::new(),
        action: "unknown",
        detail: String::new(),
        error: None,
    };
    // Read against every file, so a tenant ahead of `--to` is not mistaken for drift.
    let state = match tenant::state(stack, tenant, full).await {
        Ok(state) => state,
        Err(failure) => {
            plan.detail = format!("cannot read the database: {}", failure.message);
            plan.error = Some(failure);
            return plan;
        }
    };
    plan.version = state.version().map(str::to_owned);
    plan.drift = state.drift.iter().map(DriftView::from).collect();
    let described = describe_drift(&state.drift);
    plan.pending = state
        .pending
        .iter()
        .filter(|p| {
            target
                .migrations()
                .iter()
                .any(|m| &m.version == *p || &m.file_name == *p)
        })
        .cloned()
        .collect();
    (plan.action, plan.detail) = if !plan.drift.is_empty() {
        (
            "refuse",
            format!("apply would refuse this tenant: {}", described),
        )
    } else if plan.pending.is_empty() {
        ("nothing", format!("at {} already", target.latest_version()))
    } else {
        ("apply", format!("would apply {}", plan.pending.join(", ")))
    };
    plan
}

/// The plan of the tenants `options` select, `concurrency` tenants read at a time.
pub async fn plan(app: &App, options: &Options) -> Result<FleetPlan, MigrateError> {
    let selection = super::selection(options)?;
    let target = super::target(&app.stack, options.to.as_deref())?;
    let concurrency = super::concurrency(options.concurrency)?;
    let full = &app.stack.templates.migrations;
    let subset = full.up_to(&target).map_err(|e| MigrateError::Invalid {
        field: "to",
        message: e.to_string(),
    })?;
    let tenants = selection::resolve(app, &selection).await?;
    // Collected first, so the stream's type carries no closure (see `wave`).
    let pending: Vec<_> = tenants
        .iter()
        .map(|t| tenant_plan(&app.stack, t, full, &subset))
        .collect();
    let plans: Vec<TenantPlan> = futures::stream::iter(pending)
        .buffered(concurrency)
        .collect()
        .await;
    Ok(FleetPlan {
        target,
        latest: full.latest_version().to_owned(),
        drift: plans.iter().any(|p| !p.drift.is_empty()),
        unreadable: plans.iter().any(|p| p.error.is_some()),
        tenants: plans,
    })
}
