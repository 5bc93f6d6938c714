//! `provisioner sweep`: resources at the four providers named like a client's
//! (`client-*-prod`, `client-*-app`, webhook `client-*/content` or `client-*/{module}`) that
//! no live client owns:
//! no run of the client's current generation exists, or its teardown succeeded. `--delete`
//! removes them through a forward-only `sweep` run, so every deletion is journaled.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use clap::Args;
use providers::ProviderError;
use saga::{
    Engine, ForwardStep, Registry, RetryPolicy, RunStatus, SagaDefinition, StepContext, StepError,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::doctor::write_stdout;
use super::{CliError, open_app};
use crate::app::{App, environment_fingerprint};
use crate::client::{ClientSlug, Module};
use crate::outcome::Outcome;
use crate::sagas;
use crate::stack::Stack;
use crate::steps::{parse_time, provider_failure, time_from_millis};

pub const SWEEP: &str = "sweep";
const SWEEP_VERSION: u32 = 1;

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  provisioner sweep\n  provisioner sweep --delete\n  provisioner sweep --delete --yes --json"
)]
pub struct SweepArgs {
    /// Remove what was found, after a confirmation (journaled as a `sweep` run).
    #[arg(long)]
    pub delete: bool,
    /// Do not ask before deleting.
    #[arg(long, requires = "delete")]
    pub yes: bool,
    /// One JSON line per resource on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    SupabaseProject,
    GithubRepo,
    VercelProject,
    N8nWorkflow,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::SupabaseProject => "supabase project",
            Kind::GithubRepo => "github repo",
            Kind::VercelProject => "vercel project",
            Kind::N8nWorkflow => "n8n workflow",
        }
    }
}

/// A resource no live client owns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Orphan {
    pub kind: Kind,
    /// What the provider calls it by (project ref, `owner/name`, project or workflow id).
    pub provider_id: String,
    pub name: String,
    /// The client slug its name carries.
    pub client: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime<Utc>>,
    /// Why no live client owns it.
    pub reason: String,
}

/// A resource named like a client's, before ownership is decided.
struct Candidate {
    kind: Kind,
    provider_id: String,
    name: String,
    client: String,
    created_at: Option<DateTime<Utc>>,
}

/// The slug in `client-{slug}{suffix}`, if the name follows that convention.
fn slug_in<'a>(name: &'a str, suffix: &str) -> Option<&'a str> {
    name.strip_prefix("client-")
        .and_then(|rest| rest.strip_suffix(suffix))
        .filter(|slug| !slug.is_empty())
}

/// The slug in a client workflow's webhook path: `client-{slug}/content` (the main one) or
/// `client-{slug}/{module}`.
fn workflow_slug(path: &str) -> Option<&str> {
    let (name, last) = path.rsplit_once('/')?;
    if last != "content" && Module::parse(last).is_none() {
        return None;
    }
    slug_in(name, "").filter(|slug| !slug.contains('/'))
}

async fn candidates(stack: &Stack) -> Result<Vec<Candidate>, CliError> {
    let fail = |what: &str, e: ProviderError| {
        CliError::new(Outcome::Unavailable, format!("cannot list {what}: {e}"))
    };
    let org = &stack.env.supabase_org_slug;
    let (projects, repos, vercel, workflows) = tokio::join!(
        stack.supabase.list_organization_projects(org),
        stack
            .github
            .list_organization_repositories(&stack.env.github_org),
        stack.vercel.list_projects("client-"),
        stack.n8n.list_workflows()
    );
    let mut found = Vec::new();
    for p in projects.map_err(|e| fail("Supabase projects", e))? {
        if let Some(slug) = slug_in(&p.name, "-prod") {
            found.push(Candidate {
                kind: Kind::SupabaseProject,
                provider_id: p.project_ref.clone(),
                client: slug.to_owned(),
                created_at: p.inserted_at.as_deref().and_then(parse_time),
                name: p.name,
            });
        }
    }
    for r in repos.map_err(|e| fail("GitHub repositories", e))? {
        if let Some(slug) = slug_in(&r.name, "-app") {
            found.push(Candidate {
                kind: Kind::GithubRepo,
                provider_id: r.full_name.clone(),
                client: slug.to_owned(),
                created_at: None,
                name: r.name,
            });
        }
    }
    for p in vercel.map_err(|e| fail("Vercel projects", e))? {
        if let Some(slug) = slug_in(&p.name, "-app") {
            found.push(Candidate {
                kind: Kind::VercelProject,
                provider_id: p.id.clone(),
                client: slug.to_owned(),
                created_at: p.created_at.and_then(time_from_millis),
                name: p.name,
            });
        }
    }
    for w in workflows.map_err(|e| fail("n8n workflows", e))? {
        let slug = w
            .nodes
            .iter()
            .filter_map(|n| n.webhook_path())
            .find_map(workflow_slug);
        if let Some(slug) = slug {
            found.push(Candidate {
                kind: Kind::N8nWorkflow,
                provider_id: w.id.clone(),
                client: slug.to_owned(),
                created_at: w.created_at.as_deref().and_then(parse_time),
                name: w.name.clone(),
            });
        }
    }
    Ok(found)
}

/// Why `client`'s resources are no live client's, or `None` when the client is live (a run of
/// its current generation exists, whatever its state, or its teardown is still under way).
async fn ownerless(engine: &Engine, client: &str) -> Result<Option<String>, CliError> {
    let Ok(slug) = ClientSlug::parse(client) else {
        return Ok(Some(format!(
            "{client:?} is not a client slug: no run can own it"
        )));
    };
    let mut generation = 0;
    loop {
        let key = sagas::run_key(sagas::DEPROVISION, &slug, generation);
        match engine.find_by_key(&key).await? {
            Some(run) if run.status == RunStatus::Succeeded => generation += 1,
            Some(_) => return Ok(None),
            None => break,
        }
    }
    let key = sagas::run_key(sagas::PROVISION, &slug, generation);
    Ok(match engine.find_by_key(&key).await? {
        Some(_) => None,
        None if generation > 0 => Some(format!("client {slug} was torn down")),
        None => Some("no run in the journal owns it".to_owned()),
    })
}

/// Every orphan, oldest first.
pub async fn find(app: &App) -> Result<Vec<Orphan>, CliError> {
    let mut orphans = Vec::new();
    for c in candidates(&app.stack).await? {
        let Some(reason) = ownerless(&app.engine, &c.client).await? else {
            continue;
        };
        let created_at = match (c.kind, c.created_at) {
            // The org listing has no creation time; the repository itself does.
            (Kind::GithubRepo, None) => match c.provider_id.split_once('/') {
                Some((owner, name)) => app
                    .stack
                    .github
                    .get_repository(owner, name)
                    .await
                    .ok()
                    .and_then(|r| r.created_at)
                    .as_deref()
                    .and_then(parse_time),
                None => None,
            },
            (_, at) => at,
        };
        orphans.push(Orphan {
            kind: c.kind,
            provider_id: c.provider_id,
            name: c.name,
            client: c.client,
            created_at,
            reason,
        });
    }
    orphans.sort_by(|a, b| (a.created_at, a.kind, &a.name).cmp(&(b.created_at, b.kind, &b.name)));
    Ok(orphans)
}

/// The input of a `sweep` run: what was found and confirmed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SweepInput {
    pub orphans: Vec<Orphan>,
}

/// What one provider's step removed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Swept {
    pub removed: Vec<String>,
}

/// Deletes the orphans of one provider; gone already counts as removed.
#[derive(Debug, Clone)]
struct DeleteOrphans {
    stack: Arc<Stack>,
    kind: Kind,
}

#[async_trait]
impl ForwardStep for DeleteOrphans {
    type Input = SweepInput;
    type Output = Swept;

    fn name(&self) -> &'static str {
        match self.kind {
            Kind::SupabaseProject => "sweep_supabase_projects",
            Kind::GithubRepo => "sweep_github_repos",
            Kind::VercelProject => "sweep_vercel_projects",
            Kind::N8nWorkflow => "sweep_n8n_workflows",
        }
    }

    fn policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            ..RetryPolicy::default()
        }
    }

    async fn action(&self, ctx: &StepContext<'_, SweepInput>) -> Result<Swept, StepError> {
        let mut removed = Vec::new();
        for o in ctx.input().orphans.iter().filter(|o| o.kind == self.kind) {
            let id = o.provider_id.as_str();
            let result = match self.kind {
                Kind::SupabaseProject => self.stack.supabase.delete_project(id).await.map(|_| ()),
                Kind::GithubRepo => match id.split_once('/') {
                    Some((owner, name)) => self.stack.github.delete_repository(owner, name).await,
                    None => Err(ProviderError::NotFound),
                },
                Kind::VercelProject => self.stack.vercel.delete_project(id).await,
                Kind::N8nWorkflow => {
                    // A published workflow must be turned off before n8n lets it go.
                    match self.stack.n8n.deactivate(id).await {
                        Ok(_) | Err(ProviderError::NotFound) => {}
                        Err(e) => {
                            return Err(provider_failure(
                                &format!("turn off n8n workflow {id}"),
                                e,
                            ));
                        }
                    }
                    self.stack.n8n.delete_workflow(id).await
                }
            };
            match result {
                Ok(()) | Err(ProviderError::NotFound) => {
                    removed.push(format!("{} {} ({id})", self.kind.label(), o.name));
                }
                Err(e) => {
                    return Err(provider_failure(
                        &format!("delete {} {} ({id})", self.kind.label(), o.name),
                        e,
                    ));
                }
            }
        }
        Ok(Swept { removed })
    }
}

fn sweep_registry(stack: &Arc<Stack>) -> Result<Registry, CliError> {
    let mut builder = SagaDefinition::builder::<SweepInput>(SWEEP, SWEEP_VERSION);
    for kind in [Kind::N8nWorkflow, Kind::VercelProject] {
        builder = builder.forward_step(
            DeleteOrphans {
                stack: Arc::clone(stack),
                kind,
            },
            &[],
        );
    }
    // A Vercel project goes before the repository and database it is wired to.
    for kind in [Kind::GithubRepo, Kind::SupabaseProject] {
        builder = builder.forward_step(
            DeleteOrphans {
                stack: Arc::clone(stack),
                kind,
            },
            &["sweep_vercel_projects"],
        );
    }
    let definition = builder
        .build()
        .map_err(|e| CliError::internal(format!("the sweep saga is inconsistent: {e}")))?;
    Registry::new()
        .with(definition)
        .map_err(|e| CliError::internal(format!("the sweep saga is inconsistent: {e}")))
}

/// Runs the deletion as a `sweep` run of its own engine over the same journal (workers of
/// other processes do not know the saga and leave its runs alone), and waits for it.
async fn delete(
    app: &App,
    config: &crate::config::Config,
    orphans: Vec<Orphan>,
) -> Result<saga::RunView, CliError> {
    let registry = sweep_registry(&app.stack)?;
    let engine = Engine::builder(Arc::clone(app.engine.journal()), registry)
        .environment(environment_fingerprint(config))
        .poll_interval(Duration::from_millis(200))
        .build();
    let workers = engine.run_workers();
    let key = format!("{SWEEP}:{}", Uuid::now_v7());
    let started = engine.start(SWEEP, &key, &SweepInput { orphans }).await;
    let view = match started {
        Ok(started) => engine
            .wait_for(started.run_id)
            .await
            .map_err(CliError::from),
        Err(e) => Err(CliError::from(e)),
    };
    workers.shutdown(Duration::from_secs(5)).await;
    view
}

fn age(at: Option<DateTime<Utc>>) -> String {
    let Some(at) = at else {
        return "?".to_owned();
    };
    let secs = (Utc::now() - at).num_seconds().max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

fn table(orphans: &[Orphan]) -> String {
    let name_w = orphans.iter().map(|o| o.name.len()).max().unwrap_or(0);
    let id_w = orphans
        .iter()
        .map(|o| o.provider_id.len())
        .max()
        .unwrap_or(0);
    orphans
        .iter()
        .map(|o| {
            format!(
                "{:<16}  {:<name_w$}  {:<id_w$}  {:>5}  {}\n",
                o.kind.label(),
                o.name,
                o.provider_id,
                age(o.created_at),
                o.reason
            )
        })
        .collect()
}

/// Asks on the terminal; anything but "yes" declines.
fn confirmed(count: usize) -> Result<bool, CliError> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(CliError::usage(
            "sweep --delete asks before deleting, and stdin is not a terminal: pass --yes to delete without asking",
        ));
    }
    eprint!("delete these {count} resource(s)? type yes to confirm: ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    stdin
        .lock()
        .read_line(&mut answer)
        .map_err(|e| CliError::usage(format!("cannot read the answer: {e}")))?;
    Ok(answer.trim() == "yes")
}

pub async fn run(args: SweepArgs, config_file: Option<PathBuf>) -> Result<(), CliError> {
    let app = open_app(config_file, false).await?;
    let config = crate::config::Config {
        settings: (*app.stack.settings).clone(),
        providers: (*app.stack.env).clone(),
    };
    let result = sweep(&app, &config, &args).await;
    app.shutdown(Duration::from_secs(1)).await;
    result
}

async fn sweep(
    app: &App,
    config: &crate::config::Config,
    args: &SweepArgs,
) -> Result<(), CliError> {
    let orphans = find(app).await?;
    if args.json {
        for o in &orphans {
            let line = serde_json::to_string(o).map_err(|e| CliError::internal(e.to_string()))?;
            write_stdout(&format!("{line}\n"));
        }
    } else {
        write_stdout(&table(&orphans));
    }
    if orphans.is_empty() {
        eprintln!("no orphaned resources");
        return Ok(());
    }
    if !args.delete {
        return Err(CliError::run_failed(format!(
            "{} orphaned resource(s) found; `provisioner sweep --delete` removes them",
            orphans.len()
        )));
    }
    if !args.yes && !confirmed(orphans.len())? {
        return Err(CliError::new(
            Outcome::Interrupted,
            "nothing deleted: not confirmed",
        ));
    }
    let count = orphans.len();
    let view = delete(app, config, orphans).await?;
    if view.status == RunStatus::Succeeded {
        eprintln!(
            "removed {count} resource(s); journaled as sweep run {}",
            view.id
        );
        Ok(())
    } else {
        let errors: Vec<String> = view
            .steps
            .iter()
            .filter_map(|s| s.last_error.as_ref().map(|e| format!("{}: {e}", s.name)))
            .collect();
        Err(CliError::run_failed(format!(
            "sweep run {} ended {}: {}",
            view.id,
            view.status,
            errors.join("; ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::workflow_slug;

    #[test]
    fn main_and_module_webhooks_name_their_client() {
        assert_eq!(workflow_slug("client-acme/content"), Some("acme"));
        assert_eq!(workflow_slug("client-acme-dental/crm"), Some("acme-dental"));
        assert_eq!(workflow_slug("client-acme/content_studio"), Some("acme"));
        assert_eq!(workflow_slug("client-acme/fax"), None);
        assert_eq!(workflow_slug("client-/crm"), None);
        assert_eq!(workflow_slug("client-a/b/crm"), None);
        assert_eq!(workflow_slug("other/crm"), None);
    }
}
