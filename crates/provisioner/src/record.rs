//! The client's resource record: what a provision run made or adopted, as ids and URLs. It
//! is read from the run's journaled outputs and never holds a secret: the record types simply
//! have no field for one, and secret fields stay sealed in the journal.

use saga::{RunStatus, RunView, StepPhase};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::steps::vercel_domain::{self, DnsRecord};
use crate::steps::{
    auth_urls, database_schema, github_repo, n8n_modules, n8n_workflow, supabase_project,
    vercel_project,
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SupabaseRecord {
    pub project_ref: String,
    pub name: String,
    pub region: String,
    pub api_url: String,
    pub adopted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseRecord {
    /// SHA-256 of the latest applied migration file (of the one schema file, in records made
    /// before migrations).
    pub checksum: String,
    pub already_applied: bool,
    /// The highest applied migration version (absent in records made before migrations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The versions the run applied, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub applied_now: Vec<String>,
    /// Each check that ran and whether it passed, e.g. `rlsEnabled: true`.
    pub checks: Vec<CheckRecord>,
    /// How the schema step reached the database: `pooler`, `override_template` or `sql_api`
    /// (absent in records made before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckRecord {
    pub check: String,
    pub description: String,
    pub passed: bool,
    pub relations_examined: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GithubRecord {
    pub full_name: String,
    pub html_url: String,
    pub default_branch: String,
    pub adopted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VercelRecord {
    pub project_id: String,
    pub name: String,
    pub deployment_id: String,
    pub deployment_url: String,
    pub app_url: String,
    pub ready: bool,
    pub adopted: bool,
    /// The HTTP status the deployment URL answered with (checked with `wait_for_ready`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered: Option<u16>,
}

/// The client's domain on its Vercel project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DomainRecord {
    /// `None`: no `[vercel] domain` configured (see `skipped`).
    pub domain: Option<String>,
    pub verified: bool,
    pub misconfigured: bool,
    /// The DNS records still to create; empty once the domain serves.
    #[serde(default)]
    pub dns_records: Vec<DnsRecord>,
    pub app_url: String,
    pub adopted: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

/// The app's URLs in the Supabase project's auth settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthUrlsRecord {
    pub site_url: String,
    pub allowed: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_site_url: Option<String>,
    pub changed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct N8nRecord {
    pub workflow_id: String,
    pub name: String,
    pub webhook_url: String,
    pub adopted: bool,
}

/// One module's n8n workflow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct N8nModuleRecord {
    pub module: String,
    #[serde(flatten)]
    pub workflow: N8nRecord,
}

/// The outcome of a run, in the shape operators and the admin app read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceRecord {
    pub run_id: Uuid,
    pub saga: String,
    pub status: RunStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub supabase: Option<SupabaseRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<DatabaseRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub github: Option<GithubRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vercel: Option<VercelRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n8n: Option<N8nRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<DomainRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_urls: Option<AuthUrlsRecord>,
    /// The module workflows (`n8n_modules`), in module order.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub modules: Vec<N8nModuleRecord>,
    /// Deprovision: what was removed.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub removed: Vec<String>,
    /// Why the run did not succeed, when it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// needs_attention: the steps whose resources may still exist.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub still_exists: Option<Vec<String>>,
    /// Deprovision parked: the resources its failed teardown steps found and could not
    /// remove, by name.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub left: Vec<String>,
}

impl ResourceRecord {
    pub fn from_run(view: &RunView) -> Self {
        // Only outputs of steps that still stand count: an undone step's resource is gone.
        let output = |name: &str| {
            view.steps
                .iter()
                .find(|s| s.name == name && s.phase == StepPhase::Succeeded)
                .and_then(|s| s.output.clone())
        };
        fn part<T: serde::de::DeserializeOwned>(value: Option<serde_json::Value>) -> Option<T> {
            value.and_then(|v| serde_json::from_value(v).ok())
        }
        let database = output(database_schema::NAME).and_then(|v| {
            let checks = v["checks"]["checks"]
                .as_array()
                .map(|checks| {
                    checks
                        .iter()
                        .filter_map(|c| {
                            Some(CheckRecord {
                                check: c["check"].as_str()?.to_owned(),
                                description: c["description"].as_str()?.to_owned(),
                                passed: c["passed"].as_bool()?,
                                relations_examined: usize::try_from(
                                    c["relationsExamined"].as_u64()?,
                                )
                                .ok()?,
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            Some(DatabaseRecord {
                checksum: v["checksum"].as_str()?.to_owned(),
                already_applied: v["alreadyApplied"].as_bool()?,
                version: v["version"].as_str().map(str::to_owned),
                applied_now: v["appliedNow"]
                    .as_array()
                    .map(|versions| {
                        versions
                            .iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default(),
                checks,
                access: v["access"].as_str().map(str::to_owned),
            })
        });
        let removed = view
            .steps
            .iter()
            .filter_map(|s| s.output.as_ref())
            .filter_map(|o| o["resources"].as_array())
            .flatten()
            .filter_map(|r| r.as_str().map(str::to_owned))
            .collect();
        let left = view
            .steps
            .iter()
            .filter(|s| s.phase != StepPhase::Succeeded)
            .filter_map(|s| s.last_error_detail.as_ref())
            .filter_map(|d| d["left"].as_array())
            .flatten()
            .filter_map(|r| r.as_str().map(str::to_owned))
            .collect();
        let failure = match view.status {
            RunStatus::Succeeded => None,
            _ => view
                .compensation_reason
                .clone()
                .or_else(|| view.attention_reason.clone())
                .or_else(|| view.steps.iter().find_map(|s| s.last_error.clone())),
        };
        Self {
            run_id: view.id,
            saga: view.saga.clone(),
            status: view.status,
            supabase: part(output(supabase_project::NAME)),
            database,
            github: part(output(github_repo::NAME)),
            vercel: part(output(vercel_project::NAME)),
            n8n: part(output(n8n_workflow::NAME)),
            domain: part(output(vercel_domain::NAME)),
            auth_urls: part(output(auth_urls::NAME)),
            modules: output(n8n_modules::NAME)
                .and_then(|v| part(v.get("workflows").cloned()))
                .unwrap_or_default(),
            removed,
            failure,
            still_exists: view.needs_attention.clone(),
            left,
        }
    }
}
