//! `provisioner plan`: what provisioning would do for each client, found out with read-only
//! calls. Each resource is looked up the way its step looks it up and judged by the step's own
//! test (a repository must come from the template, a Vercel project must be linked to the
//! client's repository); nothing is created, changed or deleted.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use providers::rate_budget::Endpoint;
use providers::{Provider, RateBudgetConfig, WindowLoad};
use serde::Serialize;

use super::{CliError, open_app};
use providers::ProviderError;

use crate::client::{Client, ClientSlug, Module};
use crate::stack::Stack;
use crate::steps::n8n_modules::{self, ModuleWorkflow};
use crate::steps::{
    ProviderResource, database_schema, github_repo, n8n_workflow, supabase_project, vercel_domain,
    vercel_project,
};

/// The batch size assumed for the ETA when none is given (as `batch` defaults to).
pub const DEFAULT_CONCURRENCY: u16 = 4;

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  provisioner plan --client-id acme-dental\n  provisioner plan clients/ --json"
)]
pub struct PlanArgs {
    /// A client to plan for, by slug (repeatable).
    #[arg(long = "client-id", conflicts_with = "path")]
    pub client_id: Vec<String>,
    /// A directory of manifests or a JSON Lines file: plans for every client in it.
    pub path: Option<PathBuf>,
    /// How many clients would run at once, for the ETA.
    #[arg(long, default_value_t = DEFAULT_CONCURRENCY, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,
    /// Print the plan as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// What provisioning does with one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// It exists and passes the step's test: the run adopts it.
    Adopt,
    /// Nothing carries its name: the run creates it.
    Create,
    /// It exists in a state the step refuses: the run would stop here.
    Blocked,
    /// What the run does here depends on what the plan was not given (a client's modules
    /// without its manifest).
    Unknown,
}

/// A client to plan for: its slug, and its modules when its manifest was given.
#[derive(Debug, Clone)]
pub struct PlanTarget {
    pub slug: ClientSlug,
    /// `None`: planned by slug only, so which modules it gets is not known.
    pub modules: Option<Vec<Module>>,
}

impl PlanTarget {
    /// A client from its manifest: its modules as the run would pick them.
    pub fn of_client(stack: &Stack, client: &Client) -> Self {
        PlanTarget {
            slug: client.client_id.clone(),
            modules: Some(n8n_modules::modules_of(stack, client)),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ResourcePlan {
    pub step: &'static str,
    pub name: String,
    pub action: Action,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientPlan {
    pub client_id: String,
    pub resources: Vec<ResourcePlan>,
    /// Provider API calls the run makes at least, per provider (polls while a provider
    /// finishes something come on top).
    pub api_calls: BTreeMap<&'static str, u32>,
    /// The client's run alone, from the measured latencies along its longest chain of steps.
    pub eta_secs: f64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub clients: Vec<ClientPlan>,
    pub api_calls: BTreeMap<&'static str, u32>,
    /// Mean latency of this plan's own read calls, per provider, in milliseconds.
    pub measured_latency_ms: BTreeMap<&'static str, f64>,
    /// Requests per second each provider's rate budget allows across all its endpoints (the
    /// safety net; the windows per endpoint are in `rate_bound_by`).
    pub rate_budget_per_sec: BTreeMap<&'static str, f64>,
    pub concurrency: usize,
    /// All clients at `concurrency`: the slower of the latency-bound waves and the
    /// rate-budget floor.
    pub eta_secs: f64,
    /// The rate-budget floor: over every window of the providers' budgets the plan's calls
    /// count in, the longest calls ÷ the window's allowed rate.
    pub rate_bound_secs: f64,
    /// The window that sets the floor, e.g. `github creating calls (POST) at 75/60s`.
    pub rate_bound_by: Option<String>,
    pub blocked: usize,
}

const PROVIDERS: [Provider; 4] = [
    Provider::Supabase,
    Provider::Github,
    Provider::Vercel,
    Provider::N8n,
];

/// How the rate budget counts one of a step's calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Counted {
    /// In the endpoint's own window, once per client.
    PerClient,
    /// Once per client, in the window of the client's own Supabase project (§1.6).
    PerProject,
    /// A shared listing's call or one made once per process: however many clients wait, it
    /// is made at most once per listing interval, so it is counted once for the plan.
    Shared,
}

use Counted::{PerClient, PerProject, Shared};

/// The calls each step makes besides polls, as written in its file, when it creates and when
/// it adopts. Supabase: lookup, regions (once per process), create, the shared listing that
/// finds it ready (with its database host), API keys; GitHub: lookup, generate, branch;
/// Vercel: lookup, create with env or read the marker, env upsert, deployments list, deploy,
/// deployment state; Vercel domain: lookup, add (only when created), domain and DNS view read
/// back; n8n (the main workflow and each module's): lookup in the shared listing, create,
/// activate.
fn step_calls(step: &str, action: Action) -> (Provider, &'static [(&'static str, Counted)]) {
    const SUPABASE_CREATE: &[(&str, Counted)] = &[
        ("GET /v1/projects", Shared),
        ("GET /v1/projects/available-regions", Shared),
        ("POST /v1/projects", PerClient),
        ("GET /v1/projects", Shared),
        ("GET /v1/projects/{ref}/api-keys", PerProject),
    ];
    const SUPABASE_ADOPT: &[(&str, Counted)] = &[
        ("GET /v1/projects", Shared),
        ("GET /v1/projects/available-regions", Shared),
        ("GET /v1/projects", Shared),
        ("GET /v1/projects/{ref}/api-keys", PerProject),
    ];
    const GITHUB_CREATE: &[(&str, Counted)] = &[
        ("GET /repos/{owner}/{repo}", PerClient),
        (
            "POST /repos/{template_owner}/{template_repo}/generate",
            PerClient,
        ),
        ("GET /repos/{owner}/{repo}/branches/{branch}", PerClient),
    ];
    const GITHUB_ADOPT: &[(&str, Counted)] = &[
        ("GET /repos/{owner}/{repo}", PerClient),
        ("GET /repos/{owner}/{repo}/branches/{branch}", PerClient),
    ];
    const VERCEL_CREATE: &[(&str, Counted)] = &[
        ("GET /v9/projects/{idOrName}", PerClient),
        ("POST /v11/projects", PerClient),
        ("POST /v10/projects/{idOrName}/env", PerClient),
        ("GET /v6/deployments", PerClient),
        ("POST /v13/deployments", PerClient),
        ("GET /v13/deployments/{idOrUrl}", PerClient),
    ];
    const VERCEL_ADOPT: &[(&str, Counted)] = &[
        ("GET /v9/projects/{idOrName}", PerClient),
        ("GET /v10/projects/{idOrName}/env", PerClient),
        ("POST /v10/projects/{idOrName}/env", PerClient),
        ("GET /v6/deployments", PerClient),
        ("POST /v13/deployments", PerClient),
        ("GET /v13/deployments/{idOrUrl}", PerClient),
    ];
    const DOMAIN_CREATE: &[(&str, Counted)] = &[
        ("GET /v9/projects/{idOrName}/domains/{domain}", PerClient),
        ("POST /v10/projects/{idOrName}/domains", PerClient),
        ("GET /v9/projects/{idOrName}/domains/{domain}", PerClient),
        ("GET /v6/domains/{domain}/config", PerClient),
    ];
    const DOMAIN_ADOPT: &[(&str, Counted)] = &[
        ("GET /v9/projects/{idOrName}/domains/{domain}", PerClient),
        ("GET /v9/projects/{idOrName}/domains/{domain}", PerClient),
        ("GET /v6/domains/{domain}/config", PerClient),
    ];
    const N8N_CREATE: &[(&str, Counted)] = &[
        ("GET /workflows", Shared),
        ("POST /workflows", PerClient),
        ("POST /workflows/{id}/activate", PerClient),
    ];
    const N8N_ADOPT: &[(&str, Counted)] = &[
        ("GET /workflows", Shared),
        ("POST /workflows/{id}/activate", PerClient),
    ];
    // The run stops at the lookup.
    const BLOCKED: usize = 1;
    let created = matches!(action, Action::Create);
    let (provider, calls) = match step {
        supabase_project::NAME if created => (Provider::Supabase, SUPABASE_CREATE),
        supabase_project::NAME => (Provider::Supabase, SUPABASE_ADOPT),
        github_repo::NAME if created => (Provider::Github, GITHUB_CREATE),
        github_repo::NAME => (Provider::Github, GITHUB_ADOPT),
        vercel_project::NAME if created => (Provider::Vercel, VERCEL_CREATE),
        vercel_project::NAME => (Provider::Vercel, VERCEL_ADOPT),
        vercel_domain::NAME if created => (Provider::Vercel, DOMAIN_CREATE),
        vercel_domain::NAME => (Provider::Vercel, DOMAIN_ADOPT),
        _ if created => (Provider::N8n, N8N_CREATE),
        _ => (Provider::N8n, N8N_ADOPT),
    };
    match action {
        Action::Blocked | Action::Unknown => (provider, &calls[..BLOCKED]),
        Action::Create | Action::Adopt => (provider, calls),
    }
}

/// The calls of a whole plan as its provider's rate budget counts them: every client's own,
/// and each shared call once.
#[derive(Debug, Default)]
struct PlannedCalls {
    calls: BTreeMap<&'static str, Vec<Endpoint>>,
    shared: std::collections::BTreeSet<(&'static str, &'static str)>,
}

impl PlannedCalls {
    fn add(
        &mut self,
        provider: Provider,
        slug: &ClientSlug,
        operation: &'static str,
        counted: Counted,
    ) {
        let scope = match counted {
            // The client's project, not yet known by its ref: the slug stands for it.
            PerProject => Some(slug.to_string()),
            PerClient => None,
            Shared => {
                if !self.shared.insert((provider.name(), operation)) {
                    return;
                }
                None
            }
        };
        self.calls
            .entry(provider.name())
            .or_default()
            .push(Endpoint { operation, scope });
    }

    /// For each provider, the window of its budget that `calls` need longest in (calls ÷
    /// the window's allowed rate), if any.
    fn tightest(
        &self,
        budget: impl Fn(Provider) -> RateBudgetConfig,
    ) -> Vec<(Provider, WindowLoad)> {
        PROVIDERS
            .iter()
            .filter_map(|provider| {
                let calls = self.calls.get(provider.name())?.clone();
                let load = budget(*provider).window_loads(calls).into_iter().next()?;
                Some((*provider, load))
            })
            .collect()
    }
}

#[derive(Debug, Default)]
struct Latencies {
    samples: BTreeMap<&'static str, (Duration, u32)>,
}

impl Latencies {
    fn add(&mut self, provider: Provider, took: Duration) {
        let entry = self.samples.entry(provider.name()).or_default();
        entry.0 += took;
        entry.1 += 1;
    }

    fn mean(&self, provider: Provider) -> Duration {
        self.samples
            .get(provider.name())
            .filter(|(_, n)| *n > 0)
            .map(|(total, n)| *total / *n)
            .unwrap_or_default()
    }
}

/// Times one lookup under its provider's name.
async fn timed<T>(
    latencies: &mut Latencies,
    provider: Provider,
    call: impl std::future::Future<Output = T>,
) -> T {
    let began = Instant::now();
    let out = call.await;
    latencies.add(provider, began.elapsed());
    out
}

fn describe_many<T>(what: &str, found: &[T], name: impl Fn(&T) -> String) -> String {
    format!(
        "{} {what}s carry this client's name ({}); delete the extra ones before provisioning",
        found.len(),
        found.iter().map(name).collect::<Vec<_>>().join(", ")
    )
}

async fn plan_one(
    stack: &Stack,
    slug: &ClientSlug,
    modules: Option<&[Module]>,
    latencies: &mut Latencies,
) -> Result<Vec<ResourcePlan>, CliError> {
    let failed = |what: &str, e: saga::StepError| {
        CliError::new(
            crate::outcome::Outcome::Unavailable,
            format!("plan for {slug}: cannot look up the {what}: {e}"),
        )
    };
    let mut plans = Vec::new();

    let name = supabase_project::project_name(slug);
    let projects = timed(
        latencies,
        Provider::Supabase,
        supabase_project::SupabaseProjects.find(stack, slug),
    )
    .await
    .map_err(|e| failed("Supabase project", e))?;
    let project_exists = !projects.is_empty();
    plans.push(match projects.as_slice() {
        [] => ResourcePlan {
            step: supabase_project::NAME,
            name,
            action: Action::Create,
            detail: format!("in {}", stack.settings.supabase.region),
        },
        [one] => ResourcePlan {
            step: supabase_project::NAME,
            name,
            action: Action::Adopt,
            detail: format!("{} in {}, {:?}", one.project_ref, one.region, one.status),
        },
        many => ResourcePlan {
            step: supabase_project::NAME,
            name,
            action: Action::Blocked,
            detail: describe_many("project", many, |p| p.project_ref.clone()),
        },
    });
    plans.push(ResourcePlan {
        step: database_schema::NAME,
        name: format!("schema of {}", supabase_project::project_name(slug)),
        action: if project_exists {
            Action::Adopt
        } else {
            Action::Create
        },
        detail: if project_exists {
            "applied if the project's database lacks it, then checked".into()
        } else {
            "applied to the new project's database, then checked".into()
        },
    });

    let repo_name = github_repo::repo_name(slug);
    let (owner, template) = &stack.env.github_template;
    let repos = timed(
        latencies,
        Provider::Github,
        github_repo::GithubRepos.find(stack, slug),
    )
    .await
    .map_err(|e| failed("GitHub repository", e))?;
    plans.push(match repos.as_slice() {
        [] => ResourcePlan {
            step: github_repo::NAME,
            name: format!("{}/{repo_name}", stack.env.github_org),
            action: Action::Create,
            detail: format!("generated from {owner}/{template}"),
        },
        [repo] if repo.generated_from(owner, template) => ResourcePlan {
            step: github_repo::NAME,
            name: repo.full_name.clone(),
            action: Action::Adopt,
            detail: format!("generated from {owner}/{template}"),
        },
        [repo] => ResourcePlan {
            step: github_repo::NAME,
            name: repo.full_name.clone(),
            action: Action::Blocked,
            detail: format!(
                "exists but was not generated from {owner}/{template}; rename or delete it before provisioning"
            ),
        },
        many => ResourcePlan {
            step: github_repo::NAME,
            name: format!("{}/{repo_name}", stack.env.github_org),
            action: Action::Blocked,
            detail: describe_many("repositorie", many, |r| r.full_name.clone()),
        },
    });

    let vercel_name = vercel_project::project_name(slug);
    let vercel = timed(
        latencies,
        Provider::Vercel,
        vercel_project::VercelProjects.find(stack, slug),
    )
    .await
    .map_err(|e| failed("Vercel project", e))?;
    plans.push(match vercel.as_slice() {
        [] => ResourcePlan {
            step: vercel_project::NAME,
            name: vercel_name,
            action: Action::Create,
            detail: format!("linked to {}/{repo_name}", stack.env.github_org),
        },
        [project] if project.linked_to(&stack.env.github_org, &repo_name) => ResourcePlan {
            step: vercel_project::NAME,
            name: vercel_name,
            action: Action::Adopt,
            detail: format!("{} linked to {}/{repo_name}", project.id, stack.env.github_org),
        },
        [project] => ResourcePlan {
            step: vercel_project::NAME,
            name: vercel_name,
            action: Action::Blocked,
            detail: format!(
                "{} exists but is not linked to {}/{repo_name}; rename or delete it before provisioning",
                project.id, stack.env.github_org
            ),
        },
        many => ResourcePlan {
            step: vercel_project::NAME,
            name: vercel_name,
            action: Action::Blocked,
            detail: describe_many("project", many, |p| p.id.clone()),
        },
    });

    let path = n8n_workflow::webhook_path(slug);
    let workflows = timed(
        latencies,
        Provider::N8n,
        n8n_workflow::N8nWorkflows.find(stack, slug),
    )
    .await
    .map_err(|e| failed("n8n workflow", e))?;
    plans.push(match workflows.as_slice() {
        [] => ResourcePlan {
            step: n8n_workflow::NAME,
            name: format!("webhook {path}"),
            action: Action::Create,
            detail: "created and activated".into(),
        },
        [w] => ResourcePlan {
            step: n8n_workflow::NAME,
            name: format!("webhook {path}"),
            action: Action::Adopt,
            detail: format!(
                "workflow {} ({}){}",
                w.id,
                w.name,
                if w.active { "" } else { ", activated" }
            ),
        },
        many => ResourcePlan {
            step: n8n_workflow::NAME,
            name: format!("webhook {path}"),
            action: Action::Blocked,
            detail: describe_many("workflow", many, |w| w.id.clone()),
        },
    });
    if let Some(domain) = plan_domain(stack, slug, latencies).await? {
        plans.push(domain);
    }
    plans.extend(plan_modules(stack, slug, modules, latencies).await?);
    Ok(plans)
}

/// The client's domain, when `[vercel] domain` is configured: on its project already
/// (adopted, with its verification state), or to be added. Another project holding the
/// domain is not visible to a read: Vercel names no holder on any read of a domain that is
/// not on the project asked about, and answers 409 only to the add, so the plan says so.
async fn plan_domain(
    stack: &Stack,
    slug: &ClientSlug,
    latencies: &mut Latencies,
) -> Result<Option<ResourcePlan>, CliError> {
    let Some(domain) = vercel_domain::client_domain(&stack.settings, slug) else {
        return Ok(None);
    };
    let project = vercel_project::project_name(slug);
    let found = timed(
        latencies,
        Provider::Vercel,
        stack.vercel.get_project_domain(&project, &domain),
    )
    .await;
    let plan = match found {
        Ok(found) => ResourcePlan {
            step: vercel_domain::NAME,
            name: domain,
            action: Action::Adopt,
            detail: format!(
                "on {project}, {}",
                if found.verified {
                    "verified"
                } else {
                    "not verified yet (the run reports the TXT record to create)"
                }
            ),
        },
        // No project yet, or the project without the domain.
        Err(ProviderError::NotFound) => ResourcePlan {
            step: vercel_domain::NAME,
            name: domain,
            action: Action::Create,
            detail: format!(
                "added to {project}; if another Vercel project holds it the run stops there with an error naming it (no read shows that beforehand)"
            ),
        },
        Err(e) => {
            return Err(CliError::new(
                crate::outcome::Outcome::Unavailable,
                format!("plan for {slug}: cannot look up domain {domain}: {e}"),
            ));
        }
    };
    Ok(Some(plan))
}

/// Each module's workflow: adopted when its webhook path exists, else created. Without the
/// client's manifest the module set is unknown: one `unknown` entry says so.
async fn plan_modules(
    stack: &Stack,
    slug: &ClientSlug,
    modules: Option<&[Module]>,
    latencies: &mut Latencies,
) -> Result<Vec<ResourcePlan>, CliError> {
    let Some(modules) = modules else {
        return Ok(vec![ResourcePlan {
            step: n8n_modules::NAME,
            name: "module workflows".into(),
            action: Action::Unknown,
            detail:
                "the client's modules come from its manifest: plan the manifest PATH to see them"
                    .into(),
        }]);
    };
    let mut plans = Vec::new();
    for module in modules {
        let path = n8n_modules::webhook_path(slug, *module);
        let found = timed(
            latencies,
            Provider::N8n,
            ModuleWorkflow(*module).find(stack, slug),
        )
        .await
        .map_err(|e| {
            CliError::new(
                crate::outcome::Outcome::Unavailable,
                format!("plan for {slug}: cannot look up the {module} workflow: {e}"),
            )
        })?;
        plans.push(match found.as_slice() {
            [] => ResourcePlan {
                step: n8n_modules::NAME,
                name: format!("webhook {path}"),
                action: Action::Create,
                detail: format!("{module} workflow created and activated"),
            },
            [w] => ResourcePlan {
                step: n8n_modules::NAME,
                name: format!("webhook {path}"),
                action: Action::Adopt,
                detail: format!(
                    "workflow {} ({}){}",
                    w.id,
                    w.name,
                    if w.active { "" } else { ", activated" }
                ),
            },
            many => ResourcePlan {
                step: n8n_modules::NAME,
                name: format!("webhook {path}"),
                action: Action::Blocked,
                detail: describe_many("workflow", many, |w| w.id.clone()),
            },
        });
    }
    Ok(plans)
}

/// The rate budget `stack`'s client of `provider` shares (as configured, first one wins).
fn budget_of(stack: &Stack, provider: Provider) -> RateBudgetConfig {
    let budget = match provider {
        Provider::Supabase => stack.supabase.budget(),
        Provider::Github => stack.github.budget(),
        Provider::Vercel => stack.vercel.budget(),
        Provider::N8n => stack.n8n.budget(),
    };
    *budget.config()
}

/// Plans for `targets`, with the ETA of running them `concurrency` at a time.
pub async fn plan_clients(
    stack: &Stack,
    targets: &[PlanTarget],
    concurrency: usize,
) -> Result<Plan, CliError> {
    let mut latencies = Latencies::default();
    let mut clients = Vec::new();
    for target in targets {
        let resources = plan_one(
            stack,
            &target.slug,
            target.modules.as_deref(),
            &mut latencies,
        )
        .await?;
        clients.push(ClientPlan {
            client_id: target.slug.to_string(),
            resources,
            api_calls: BTreeMap::new(),
            eta_secs: 0.0,
        });
    }
    let mut total: BTreeMap<&'static str, u32> = BTreeMap::new();
    let mut planned = PlannedCalls::default();
    for (client, target) in clients.iter_mut().zip(targets) {
        let slug = &target.slug;
        let mut chain: BTreeMap<&str, f64> = BTreeMap::new();
        for resource in &client.resources {
            if resource.step == database_schema::NAME || resource.action == Action::Unknown {
                continue;
            }
            let (provider, made) = step_calls(resource.step, resource.action);
            for (operation, counted) in made {
                planned.add(provider, slug, operation, *counted);
            }
            let calls = u32::try_from(made.len()).unwrap_or(u32::MAX);
            *client.api_calls.entry(provider.name()).or_default() += calls;
            *total.entry(provider.name()).or_default() += calls;
            // The module workflows are made one after another within their step.
            *chain.entry(resource.step).or_default() +=
                f64::from(calls) * latencies.mean(provider).as_secs_f64();
        }
        let at = |step: &str| chain.get(step).copied().unwrap_or_default();
        // Vercel waits for both the project and the repository, the domain for Vercel; n8n
        // and the modules run alongside.
        let vercel_path = at(supabase_project::NAME).max(at(github_repo::NAME))
            + at(vercel_project::NAME)
            + at(vercel_domain::NAME);
        client.eta_secs = vercel_path
            .max(at(n8n_workflow::NAME))
            .max(at(n8n_modules::NAME));
    }
    let concurrency = concurrency.max(1);
    let waves = clients.len().div_ceil(concurrency);
    let slowest = clients.iter().map(|c| c.eta_secs).fold(0.0, f64::max);
    let tightest = planned.tightest(|provider| budget_of(stack, provider));
    let bound = tightest
        .iter()
        .max_by(|a, b| a.1.seconds().total_cmp(&b.1.seconds()));
    let rate_floor = bound.map_or(0.0, |(_, load)| load.seconds());
    Ok(Plan {
        blocked: clients
            .iter()
            .filter(|c| c.resources.iter().any(|r| r.action == Action::Blocked))
            .count(),
        eta_secs: (waves as f64 * slowest).max(rate_floor),
        rate_bound_secs: rate_floor,
        rate_bound_by: bound.map(|(provider, load)| format!("{} {}", provider.name(), load.window)),
        measured_latency_ms: PROVIDERS
            .iter()
            .map(|p| (p.name(), latencies.mean(*p).as_secs_f64() * 1000.0))
            .collect(),
        rate_budget_per_sec: PROVIDERS
            .iter()
            .map(|p| (p.name(), budget_of(stack, *p).requests_per_second))
            .collect(),
        api_calls: total,
        concurrency,
        clients,
    })
}

/// Any command's data as one JSON line on stdout.
pub fn print_data<T: Serialize>(data: &T) -> Result<(), CliError> {
    let line = serde_json::to_string(data).map_err(|e| CliError::internal(e.to_string()))?;
    #[allow(clippy::print_stdout)] // the data is the command's output
    {
        println!("{line}");
    }
    Ok(())
}

/// The plan as a person reads it.
pub fn human(plan: &Plan) -> String {
    let mut out = String::new();
    for client in &plan.clients {
        out += &format!("{}\n", client.client_id);
        for r in &client.resources {
            let action = match r.action {
                Action::Adopt => "exists (adopt)",
                Action::Create => "create",
                Action::Blocked => "BLOCKED",
                Action::Unknown => "unknown",
            };
            out += &format!("  {:<17} {:<15} {}: {}\n", r.step, action, r.name, r.detail);
        }
        let calls: Vec<String> = client
            .api_calls
            .iter()
            .map(|(p, n)| format!("{p} {n}"))
            .collect();
        out += &format!(
            "  api calls (at least): {}; about {:.1} s\n",
            calls.join(", "),
            client.eta_secs
        );
    }
    let calls: Vec<String> = plan
        .api_calls
        .iter()
        .map(|(p, n)| format!("{p} {n}"))
        .collect();
    out += &format!(
        "{} client(s), {} blocked; api calls (at least): {}; ETA about {:.1} s at concurrency {} (latencies measured now, rate budgets as configured; provider-side waits such as a project coming up add to it)\n",
        plan.clients.len(),
        plan.blocked,
        calls.join(", "),
        plan.eta_secs,
        plan.concurrency
    );
    out
}

/// Prints the plan (JSON on stdout with `json`, else the text); a blocked client makes the
/// command exit 1, since provisioning it would stop.
pub fn print(plan: &Plan, json: bool) -> Result<(), CliError> {
    if json {
        print_data(plan)?;
    } else {
        #[allow(clippy::print_stdout)] // the plan is the command's output
        {
            print!("{}", human(plan));
        }
    }
    if plan.blocked > 0 {
        return Err(CliError::run_failed(format!(
            "{} client(s) have a resource in a state that blocks provisioning; see BLOCKED above",
            plan.blocked
        )));
    }
    Ok(())
}

pub async fn run(args: PlanArgs, config: Option<PathBuf>) -> Result<(), CliError> {
    let manifests =
        match &args.path {
            Some(path) => Some(crate::manifest::load(path).map_err(|e| {
                CliError::new(crate::outcome::Outcome::Unprocessable, e.to_string())
            })?),
            None => None,
        };
    let slugs: Vec<ClientSlug> = match (&manifests, args.client_id.is_empty()) {
        (Some(_), _) => Vec::new(),
        (None, false) => args
            .client_id
            .iter()
            .map(|raw| {
                ClientSlug::parse(raw)
                    .map_err(|rule| CliError::usage(format!("--client-id {rule}")))
            })
            .collect::<Result<_, _>>()?,
        (None, true) => {
            return Err(CliError::usage(
                "plan needs clients: give --client-id SLUG (repeatable) or a manifest PATH",
            ));
        }
    };
    let app = open_app(config, false).await?;
    let targets: Vec<PlanTarget> = match &manifests {
        Some(manifests) => manifests
            .iter()
            .map(|m| PlanTarget::of_client(&app.stack, &m.client))
            .collect(),
        None => slugs
            .into_iter()
            .map(|slug| PlanTarget {
                slug,
                modules: None,
            })
            .collect(),
    };
    let plan = plan_clients(&app.stack, &targets, usize::from(args.concurrency)).await;
    app.shutdown(Duration::from_secs(5)).await;
    print(&plan?, args.json)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slug(i: usize) -> ClientSlug {
        ClientSlug::parse(&format!("client-{i:03}")).expect("a valid slug")
    }

    /// Every step of `clients` new clients (no modules), as `plan_clients` adds them.
    fn new_clients(clients: usize) -> PlannedCalls {
        let mut planned = PlannedCalls::default();
        for i in 0..clients {
            for step in [
                supabase_project::NAME,
                github_repo::NAME,
                vercel_project::NAME,
                vercel_domain::NAME,
                n8n_workflow::NAME,
            ] {
                let (provider, made) = step_calls(step, Action::Create);
                for (operation, counted) in made {
                    planned.add(provider, &slug(i), operation, *counted);
                }
            }
        }
        planned
    }

    fn seconds_of(tightest: &[(Provider, WindowLoad)], provider: Provider) -> (f64, String) {
        let (_, load) = tightest
            .iter()
            .find(|(p, _)| *p == provider)
            .expect("the provider has calls");
        (load.seconds(), load.window.clone())
    }

    #[test]
    fn the_eta_floor_is_the_tightest_window_of_each_budget_not_its_overall_rate() {
        let tightest = new_clients(100).tightest(RateBudgetConfig::default_for);
        // GitHub: 100 generations, 75 a minute: the last waits for a second minute. The
        // 500-an-hour window holds all of them, so the hour does not bind.
        let (github, window) = seconds_of(&tightest, Provider::Github);
        assert!((github - 60.0).abs() < 1e-6, "{github} {window}");
        assert_eq!(window, "creating calls (POST) at 75/60s");
        // n8n has only the provider-wide bucket: 201 calls (two per client and the shared
        // listing) at 20/s after its burst.
        let (n8n, window) = seconds_of(&tightest, Provider::N8n);
        assert!(n8n > 0.0 && n8n < 201.0 / 20.0, "{n8n} {window}");
        assert!(window.contains("provider-wide bucket"), "{window}");
    }

    #[test]
    fn a_batch_inside_every_allowance_is_not_held_up_by_a_window() {
        // Ten clients fit in every window's allowance: no window adds a wait; only the
        // buckets' rates beyond their bursts could.
        let tightest = new_clients(10).tightest(RateBudgetConfig::default_for);
        for (provider, load) in &tightest {
            assert_eq!(load.seconds(), 0.0, "{provider:?} {}", load.window);
        }
        // Five hundred fit in GitHub's 500 an hour, so only its minutes bind: 75 a minute
        // leaves the last 50 for the seventh minute.
        let tightest = new_clients(500).tightest(RateBudgetConfig::default_for);
        let (github, window) = seconds_of(&tightest, Provider::Github);
        assert!((github - 360.0).abs() < 1e-6, "{github} {window}");
        // The 501st waits for the hour.
        let tightest = new_clients(501).tightest(RateBudgetConfig::default_for);
        let (github, window) = seconds_of(&tightest, Provider::Github);
        assert!((github - 3600.0).abs() < 1e-6, "{github} {window}");
    }
}
