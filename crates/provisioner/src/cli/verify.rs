//! `provisioner verify`: a provisioned client's stack checked against its record, item by
//! item, with read-only calls (and the webhook's own check call). Environment variables are
//! compared by name; no value is read.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use providers::ProviderError;
use providers::supabase::ProjectStatus;
use providers::vercel::ReadyState;
use saga::{Engine, RunFilter, RunStatus};
use secrecy::SecretString;
use serde::Serialize;
use uuid::Uuid;

use super::doctor::write_stdout;
use super::{CliError, open_app};
use crate::app::App;
use crate::client::Client;
use crate::client::ClientSlug;
use crate::outcome::Outcome;
use crate::record::N8nRecord;
use crate::record::ResourceRecord;
use crate::sagas;
use crate::steps::auth_urls;
use crate::steps::supabase_project::{self, SupabaseProject};
use crate::steps::vercel_domain;
use crate::steps::vercel_project::{STACK_ENV, branding_env};
use crate::templates::MigrationSet;
use crate::tenant_db::{self, CheckOptions, TenantMigrationState};

/// Journal pages read by `--all`.
const PAGE: u32 = 200;

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  provisioner verify --client-id acme-dental\n  provisioner verify --all --json"
)]
pub struct VerifyArgs {
    /// The client to verify.
    #[arg(
        long = "client-id",
        conflicts_with = "all",
        required_unless_present = "all"
    )]
    pub client_id: Option<String>,
    /// Every client whose provision succeeded and that was not torn down since.
    #[arg(long)]
    pub all: bool,
    /// One JSON line per item on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// One thing compared with the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Item {
    pub client: String,
    pub item: String,
    /// False: the stack has drifted from its record here.
    pub ok: bool,
    pub detail: String,
}

fn item(client: &str, name: &str, ok: bool, detail: impl Into<String>) -> Item {
    Item {
        client: client.to_owned(),
        item: name.to_owned(),
        ok,
        detail: detail.into(),
    }
}

fn missing(err: &ProviderError) -> String {
    match err {
        ProviderError::NotFound => "gone: the provider has no such resource".to_owned(),
        other => format!("cannot be read: {other}"),
    }
}

/// How many teardowns of `slug` succeeded: its current provision run has that generation.
async fn generation(engine: &Engine, slug: &ClientSlug) -> Result<u32, CliError> {
    let mut generation = 0;
    loop {
        let key = sagas::run_key(sagas::DEPROVISION, slug, generation);
        match engine.find_by_key(&key).await? {
            Some(run) if run.status == RunStatus::Succeeded => generation += 1,
            _ => return Ok(generation),
        }
    }
}

/// The client's newest provision run in its generation (a later revision added modules),
/// when it succeeded.
async fn provisioned_run(engine: &Engine, slug: &ClientSlug) -> Result<Uuid, CliError> {
    let generation = generation(engine, slug).await?;
    let mut newest = None;
    for revision in 0.. {
        let key = sagas::provision_key(slug, generation, revision);
        match engine.find_by_key(&key).await? {
            Some(run) => newest = Some(run),
            None => break,
        }
    }
    match newest {
        Some(run) if run.status == RunStatus::Succeeded => Ok(run.id),
        Some(run) => Err(CliError::new(
            Outcome::Conflict,
            format!(
                "client {slug}'s provision run {} is {}, not succeeded: there is no complete record to verify against; see `provisioner status {}`",
                run.id, run.status, run.id
            ),
        )),
        None => Err(CliError::new(
            Outcome::NotFound,
            format!("client {slug} has no provision run in this journal; check --client-id"),
        )),
    }
}

/// Every succeeded provision run whose client was not torn down afterwards.
async fn live_runs(engine: &Engine) -> Result<Vec<(ClientSlug, Uuid)>, CliError> {
    let mut live = Vec::new();
    let mut after = None;
    loop {
        let page = engine
            .list(&RunFilter {
                status: Some(RunStatus::Succeeded),
                saga: Some(sagas::PROVISION.to_owned()),
                after,
                limit: PAGE,
                ..RunFilter::default()
            })
            .await?;
        for run in &page {
            let Some(slug) = run
                .idempotency_key
                .split(':')
                .nth(1)
                .and_then(|s| ClientSlug::parse(s).ok())
            else {
                continue;
            };
            if provisioned_run(engine, &slug).await.ok() == Some(run.id) {
                live.push((slug, run.id));
            }
        }
        match page.last() {
            Some(last) if page.len() == PAGE as usize => after = Some(last.id),
            _ => return Ok(live),
        }
    }
}

async fn supabase_items(
    app: &App,
    client: &str,
    run_id: Uuid,
    record: &ResourceRecord,
) -> Vec<Item> {
    let stack = &app.stack;
    let Some(sb) = &record.supabase else {
        return vec![item(
            client,
            "supabase project",
            false,
            "the record has no Supabase project",
        )];
    };
    let mut items = Vec::new();
    match stack.supabase.get_project(&sb.project_ref).await {
        Ok(p) if p.status == ProjectStatus::ActiveHealthy => items.push(item(
            client,
            "supabase project",
            true,
            format!("{} ({}) is healthy", sb.name, sb.project_ref),
        )),
        Ok(p) => items.push(item(
            client,
            "supabase project",
            false,
            format!(
                "{} ({}) is {:?}, not healthy",
                sb.name, sb.project_ref, p.status
            ),
        )),
        Err(e) => {
            items.push(item(
                client,
                "supabase project",
                false,
                format!("{}: {}", sb.name, missing(&e)),
            ));
            return items;
        }
    }
    let project: SupabaseProject = match app.engine.output(run_id, supabase_project::NAME).await {
        Ok(p) => p,
        Err(e) => {
            items.push(item(
                client,
                "schema checks",
                false,
                format!("cannot open the record's database credentials: {e}"),
            ));
            return items;
        }
    };
    let route = match stack
        .database_route(
            &project.project_ref,
            &project.db_host,
            &SecretString::from(project.db_password.expose().clone()),
        )
        .await
    {
        Ok(route) => route,
        Err(e) => {
            items.push(item(
                client,
                "schema checks",
                false,
                format!("no route to the database: {e}"),
            ));
            return items;
        }
    };
    let url = route.url;
    items.push(schema_version_item(
        client,
        &stack.templates.migrations,
        record,
        tenant_db::migration_state(&url, &stack.templates.migrations).await,
    ));
    let settings = &stack.settings.schema_checks;
    let options = CheckOptions {
        exposed_schemas: settings.exposed_schemas.clone(),
        allow_anon_secret_columns: settings.allow_anon_secret_columns.clone(),
        allow_authenticated_secret_columns: settings.allow_authenticated_secret_columns.clone(),
    };
    items.push(match tenant_db::check_schema(&url, &options).await {
        Ok(report) if report.passed => item(client, "schema checks", true, "every check passes"),
        Ok(report) => item(client, "schema checks", false, report.brief()),
        Err(e) => item(
            client,
            "schema checks",
            false,
            format!("cannot check the database: {e}"),
        ),
    });
    items
}

/// The client's schema version against the latest migration: read from the database itself
/// (applied versions, pending ones, drift); when the database cannot be read, from the record.
fn schema_version_item(
    client: &str,
    set: &MigrationSet,
    record: &ResourceRecord,
    live: Result<TenantMigrationState, tenant_db::TenantDbError>,
) -> Item {
    const WHAT: &str = "schema version";
    let latest = set.latest_version();
    let state = match live {
        Ok(state) => state,
        Err(e) => {
            let recorded = record.database.as_ref().and_then(|d| d.version.clone());
            return item(
                client,
                WHAT,
                false,
                format!(
                    "cannot read the database's migration history ({e}); the record says {}, \
                     the latest is {latest}",
                    recorded.as_deref().unwrap_or("no version")
                ),
            );
        }
    };
    if !state.drift.is_empty() {
        return item(
            client,
            WHAT,
            false,
            format!(
                "the migration history differs from the files: {}",
                state
                    .drift
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        );
    }
    match (state.version(), state.pending.is_empty()) {
        (Some(version), true) => item(client, WHAT, true, format!("{version} (the latest)")),
        (version, _) => item(
            client,
            WHAT,
            false,
            format!(
                "at {}, behind the latest {latest}: {} pending ({}); apply them with \
                 `provisioner migrate apply --client-id {client}`",
                version.unwrap_or("no version"),
                state.pending.len(),
                state.pending.join(", ")
            ),
        ),
    }
}

async fn github_items(app: &App, client: &str, record: &ResourceRecord) -> Vec<Item> {
    let stack = &app.stack;
    let Some(gh) = &record.github else {
        return vec![item(
            client,
            "github repository",
            false,
            "the record has no repository",
        )];
    };
    let Some((owner, name)) = gh.full_name.split_once('/') else {
        return vec![item(
            client,
            "github repository",
            false,
            format!("{} is not owner/name", gh.full_name),
        )];
    };
    let (t_owner, t_name) = &stack.env.github_template;
    vec![match stack.github.get_repository(owner, name).await {
        Ok(repo) if gh.adopted || repo.generated_from(t_owner, t_name) => item(
            client,
            "github repository",
            true,
            format!("{} exists, from {t_owner}/{t_name}", gh.full_name),
        ),
        Ok(_) => item(
            client,
            "github repository",
            false,
            format!(
                "{} exists but was not generated from {t_owner}/{t_name}",
                gh.full_name
            ),
        ),
        Err(e) => item(
            client,
            "github repository",
            false,
            format!("{}: {}", gh.full_name, missing(&e)),
        ),
    }]
}

/// The variables the provision saga gave the client's Vercel project: the stack's own, and
/// one per branding field the client's record has (by the configured names).
fn expected_env(app: &App, input: Option<&Client>) -> Vec<String> {
    let branding = input.and_then(|c| c.branding.as_ref());
    STACK_ENV
        .iter()
        .map(|name| (*name).to_owned())
        .chain(
            branding_env(branding, &app.stack.settings.vercel.branding_env)
                .into_iter()
                .map(|(name, _)| name),
        )
        .collect()
}

async fn vercel_items(
    app: &App,
    client: &str,
    record: &ResourceRecord,
    expected_env: &[String],
) -> Vec<Item> {
    let stack = &app.stack;
    let Some(vc) = &record.vercel else {
        return vec![item(
            client,
            "vercel project",
            false,
            "the record has no Vercel project",
        )];
    };
    let mut items = Vec::new();
    match stack.vercel.get_project(&vc.project_id).await {
        Ok(project) => {
            let linked = record
                .github
                .as_ref()
                .and_then(|g| g.full_name.split_once('/'));
            match linked {
                Some((owner, name)) if project.linked_to(owner, name) => items.push(item(
                    client,
                    "vercel project",
                    true,
                    format!("{} is linked to {owner}/{name}", vc.name),
                )),
                _ => items.push(item(
                    client,
                    "vercel project",
                    false,
                    format!("{} is not linked to the client's repository", vc.name),
                )),
            }
        }
        Err(e) => {
            items.push(item(
                client,
                "vercel project",
                false,
                format!("{}: {}", vc.name, missing(&e)),
            ));
            return items;
        }
    }
    match stack.vercel.env_names(&vc.project_id).await {
        Ok(names) => {
            for expected in expected_env {
                let present = names.iter().any(|n| n == expected);
                items.push(item(
                    client,
                    &format!("vercel env {expected}"),
                    present,
                    if present {
                        "present"
                    } else {
                        "missing from the project"
                    },
                ));
            }
        }
        Err(e) => items.push(item(client, "vercel env", false, missing(&e))),
    }
    items.push(
        match stack
            .vercel
            .list_deployments(&vc.project_id, Some("production"))
            .await
        {
            Ok(deployments) => match deployments
                .iter()
                .find(|d| d.ready_state == Some(ReadyState::Ready))
            {
                Some(d) => item(
                    client,
                    "vercel deployment",
                    true,
                    format!("{} is READY", d.url),
                ),
                None => item(
                    client,
                    "vercel deployment",
                    false,
                    "no production deployment is READY",
                ),
            },
            Err(e) => item(client, "vercel deployment", false, missing(&e)),
        },
    );
    items
}

/// The client's domain still on its Vercel project, and whether Vercel can serve it: an
/// unverified or misconfigured domain is drift naming the DNS records to create. No item
/// when the record has no domain (none was configured).
async fn domain_items(app: &App, client: &str, record: &ResourceRecord) -> Vec<Item> {
    let stack = &app.stack;
    let (Some(domain), Some(vc)) = (
        record.domain.as_ref().and_then(|d| d.domain.as_ref()),
        &record.vercel,
    ) else {
        return Vec::new();
    };
    let found = match stack
        .vercel
        .get_project_domain(&vc.project_id, domain)
        .await
    {
        Ok(found) => found,
        Err(ProviderError::NotFound) => {
            return vec![item(
                client,
                "vercel domain",
                false,
                format!(
                    "{domain} is no longer on {}; provision the client again to add it",
                    vc.name
                ),
            )];
        }
        Err(e) => return vec![item(client, "vercel domain", false, missing(&e))],
    };
    let config = match stack.vercel.domain_config(domain).await {
        Ok(config) => config,
        Err(e) => {
            return vec![item(
                client,
                "vercel domain",
                false,
                format!("{domain}: its DNS view {}", missing(&e)),
            )];
        }
    };
    let records = vercel_domain::dns_records(&found, &config);
    vec![if found.verified && !config.misconfigured {
        item(
            client,
            "vercel domain",
            true,
            format!("{domain} is on {}, verified", vc.name),
        )
    } else {
        let state = if found.verified {
            "verified but its DNS does not point at Vercel"
        } else {
            "not verified"
        };
        let create: Vec<String> = records
            .iter()
            .map(|r| format!("{} {} {}", r.record_type, r.name, r.value))
            .collect();
        item(
            client,
            "vercel domain",
            false,
            format!(
                "{domain} is on {} but {state}; create DNS {}",
                vc.name,
                if create.is_empty() {
                    "records as Vercel's dashboard shows (it named none)".to_owned()
                } else {
                    create.join("; ")
                }
            ),
        )
    }]
}

/// The Supabase auth config still sends users to the app: `site_url` and the app's entries
/// of `uri_allow_list` as the run set them. No item when the record has no auth URLs (a
/// version 1 run).
async fn auth_items(app: &App, client: &str, record: &ResourceRecord) -> Vec<Item> {
    let (Some(auth), Some(sb)) = (&record.auth_urls, &record.supabase) else {
        return Vec::new();
    };
    vec![match app.stack.supabase.auth_urls(&sb.project_ref).await {
        Ok(current) => {
            let wrong = auth_urls::differences(&current, &auth.site_url, &auth.allowed);
            if wrong.is_empty() {
                item(
                    client,
                    "supabase auth urls",
                    true,
                    format!("site_url is {}", auth.site_url),
                )
            } else {
                item(
                    client,
                    "supabase auth urls",
                    false,
                    format!(
                        "{}; provision the client again to set them",
                        wrong.join("; ")
                    ),
                )
            }
        }
        Err(e) => item(client, "supabase auth urls", false, missing(&e)),
    }]
}

async fn n8n_items(app: &App, client: &str, record: &ResourceRecord) -> Vec<Item> {
    let Some(wf) = &record.n8n else {
        return vec![item(
            client,
            "n8n workflow",
            false,
            "the record has no workflow",
        )];
    };
    let mut items = workflow_items(app, client, "n8n workflow", "n8n webhook", wf).await;
    for module in &record.modules {
        items.extend(
            workflow_items(
                app,
                client,
                &format!("n8n module {}", module.module),
                &format!("n8n module {} webhook", module.module),
                &module.workflow,
            )
            .await,
        );
    }
    items
}

/// One workflow of the record: active, and its webhook answering.
async fn workflow_items(
    app: &App,
    client: &str,
    label: &str,
    webhook_label: &str,
    wf: &N8nRecord,
) -> Vec<Item> {
    let stack = &app.stack;
    let mut items = Vec::new();
    match stack.n8n.get_workflow(&wf.workflow_id).await {
        Ok(w) if w.active => {
            items.push(item(client, label, true, format!("{} is active", wf.name)))
        }
        Ok(_) => items.push(item(
            client,
            label,
            false,
            format!("{} is not active", wf.name),
        )),
        Err(e) => {
            items.push(item(
                client,
                label,
                false,
                format!("{}: {}", wf.name, missing(&e)),
            ));
            return items;
        }
    }
    // The same check call the provision step makes once the workflow is active.
    let answer = stack
        .http
        .post(&wf.webhook_url)
        .json(&serde_json::json!({ "check": "provisioner" }))
        .send()
        .await;
    items.push(match answer {
        Ok(r) if r.status().is_success() => item(
            client,
            webhook_label,
            true,
            format!("{} answers", wf.webhook_url),
        ),
        Ok(r) => item(
            client,
            webhook_label,
            false,
            format!("{} answered {}", wf.webhook_url, r.status()),
        ),
        Err(e) => item(
            client,
            webhook_label,
            false,
            format!("{} does not answer: {e}", wf.webhook_url),
        ),
    });
    items
}

/// Every item of one client's stack.
pub async fn verify_client(
    app: &App,
    slug: &ClientSlug,
    run_id: Uuid,
) -> Result<Vec<Item>, CliError> {
    let view = app.engine.status(run_id).await?;
    let record = ResourceRecord::from_run(&view);
    let input: Option<Client> = app
        .run_input(run_id)
        .await?
        .and_then(|v| serde_json::from_value(v).ok());
    let expected_env = expected_env(app, input.as_ref());
    let client = slug.as_str();
    let (supabase, auth, github, vercel, domain, n8n) = tokio::join!(
        supabase_items(app, client, run_id, &record),
        auth_items(app, client, &record),
        github_items(app, client, &record),
        vercel_items(app, client, &record, &expected_env),
        domain_items(app, client, &record),
        n8n_items(app, client, &record)
    );
    Ok([supabase, auth, github, vercel, domain, n8n].concat())
}

fn table(items: &[Item]) -> String {
    let client_w = items.iter().map(|i| i.client.len()).max().unwrap_or(0);
    let item_w = items.iter().map(|i| i.item.len()).max().unwrap_or(0);
    items
        .iter()
        .map(|i| {
            format!(
                "{:<5}  {:<client_w$}  {:<item_w$}  {}\n",
                if i.ok { "ok" } else { "DRIFT" },
                i.client,
                i.item,
                i.detail
            )
        })
        .collect()
}

pub async fn run(args: VerifyArgs, config: Option<PathBuf>) -> Result<(), CliError> {
    let wanted = match &args.client_id {
        Some(raw) => Some(
            ClientSlug::parse(raw)
                .map_err(|rule| CliError::usage(format!("--client-id {raw:?}: {rule}")))?,
        ),
        None => None,
    };
    let app = open_app(config, false).await?;
    let result = verify(&app, wanted).await;
    app.shutdown(Duration::from_secs(1)).await;
    let items = result?;
    if args.json {
        for i in &items {
            let line = serde_json::to_string(i).map_err(|e| CliError::internal(e.to_string()))?;
            write_stdout(&format!("{line}\n"));
        }
    } else {
        write_stdout(&table(&items));
    }
    let drifted: Vec<String> = items
        .iter()
        .filter(|i| !i.ok)
        .map(|i| format!("{} {}", i.client, i.item))
        .collect();
    if drifted.is_empty() {
        Ok(())
    } else {
        Err(CliError::run_failed(format!(
            "drift found in {} item(s): {}",
            drifted.len(),
            drifted.join(", ")
        )))
    }
}

async fn verify(app: &App, wanted: Option<ClientSlug>) -> Result<Vec<Item>, CliError> {
    let runs = match wanted {
        Some(slug) => {
            let run = provisioned_run(&app.engine, &slug).await?;
            vec![(slug, run)]
        }
        None => live_runs(&app.engine).await?,
    };
    let mut items = Vec::new();
    for (slug, run) in runs {
        items.extend(verify_client(app, &slug, run).await?);
    }
    Ok(items)
}
