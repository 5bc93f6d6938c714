//! Which tenants a rollout or a plan covers, read from the journal: every client whose newest
//! provision run (of its current generation) succeeded, as `verify --all` finds them, or the
//! clients named with `--client-id`. Each tenant is what reaching its database takes
//! (project ref, name, host), never its password, which is derived from the name again when
//! needed (see [`crate::stack::Stack::database_password`]).

use saga::{RunFilter, RunStatus};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::MigrateError;
use crate::app::App;
use crate::client::ClientSlug;
use crate::sagas;
use crate::steps::supabase_project;

/// Journal pages read for `--all`.
const PAGE: u32 = 200;

/// The tenants asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Selection {
    /// Every provisioned client that was not torn down.
    All,
    /// These clients, in this order.
    ClientIds(Vec<String>),
}

/// One tenant database and the run that made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tenant {
    pub client_id: String,
    pub provision_run: Uuid,
    pub project_ref: String,
    pub project_name: String,
    pub region: String,
    pub api_url: String,
    pub db_host: String,
    pub adopted: bool,
}

/// The non-secret part of the `supabase_project` step's output (its keys and password are
/// not read into this process).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProjectPart {
    project_ref: String,
    name: String,
    region: String,
    api_url: String,
    db_host: String,
    adopted: bool,
}

/// The client's newest provision run of its generation, if it succeeded.
async fn provisioned(app: &App, slug: &ClientSlug) -> Result<Option<Uuid>, MigrateError> {
    let (_, _, run) = app.latest_provision(slug).await?;
    Ok(run
        .filter(|r| r.status == RunStatus::Succeeded)
        .map(|r| r.id))
}

async fn tenant(app: &App, slug: &ClientSlug, run: Uuid) -> Result<Tenant, MigrateError> {
    let part: ProjectPart = app
        .engine
        .output(run, supabase_project::NAME)
        .await
        .map_err(|e| MigrateError::Record {
            client_id: slug.to_string(),
            message: e.to_string(),
        })?;
    Ok(Tenant {
        client_id: slug.to_string(),
        provision_run: run,
        project_ref: part.project_ref,
        project_name: part.name,
        region: part.region,
        api_url: part.api_url,
        db_host: part.db_host,
        adopted: part.adopted,
    })
}

/// The tenants of `selection`, in a stable order: `--client-id`s as given, `--all` by client
/// id. A named client without a succeeded provision run is an error naming it.
pub async fn resolve(app: &App, selection: &Selection) -> Result<Vec<Tenant>, MigrateError> {
    let mut tenants = Vec::new();
    match selection {
        Selection::ClientIds(ids) => {
            let mut unknown = Vec::new();
            for id in ids {
                let slug =
                    ClientSlug::parse(id.trim()).map_err(|message| MigrateError::Invalid {
                        field: "clientIds",
                        message: format!("{id:?}: {message}"),
                    })?;
                if tenants
                    .iter()
                    .any(|t: &Tenant| t.client_id == slug.as_str())
                {
                    continue;
                }
                match provisioned(app, &slug).await? {
                    Some(run) => tenants.push(tenant(app, &slug, run).await?),
                    None => unknown.push(slug.to_string()),
                }
            }
            if !unknown.is_empty() {
                return Err(MigrateError::NotProvisioned {
                    client_ids: unknown,
                });
            }
        }
        Selection::All => {
            let mut after = None;
            loop {
                let page = app
                    .engine
                    .list(&RunFilter {
                        status: Some(RunStatus::Succeeded),
                        saga: Some(sagas::PROVISION.to_owned()),
                        after,
                        limit: PAGE,
                        ..RunFilter::default()
                    })
                    .await
                    .map_err(crate::app::AppError::from)?;
                for run in &page {
                    let Some(slug) = run
                        .idempotency_key
                        .split(':')
                        .nth(1)
                        .and_then(|s| ClientSlug::parse(s).ok())
                    else {
                        continue;
                    };
                    // Only the client's current run counts: an older revision or a torn-down
                    // generation is not a live tenant.
                    if provisioned(app, &slug).await? == Some(run.id) {
                        tenants.push(tenant(app, &slug, run.id).await?);
                    }
                }
                match page.last() {
                    Some(last) if page.len() == PAGE as usize => after = Some(last.id),
                    _ => break,
                }
            }
            tenants.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        }
    }
    Ok(tenants)
}
