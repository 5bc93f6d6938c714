//! A fresh world per test, as `spawn_app` does elsewhere: the four simulators on loopback
//! (Supabase projects as real databases), an SQLite journal in a temporary directory, and the
//! provisioner's engine and workers pointed at them.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout
)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use provisioner::app::{App, AppOptions, open_sqlite};
use provisioner::client::{Client, ClientRecord, Module};
use provisioner::config::{Config, Settings};
use saga::SealingKey;
use sandbox::{Sandbox, SandboxConfig};
use secrecy::SecretString;
use sqlx::Connection;

/// The PostgreSQL server for project databases, or `None` when the test may skip.
/// The provision saga's steps and the deprovision saga's, by name, as the progress display
/// and the journal show them; written out (not read from the definitions) so that a rename,
/// which breaks recorded runs, fails the tests that use them.
pub const PROVISION_STEPS: [&str; 8] = [
    "supabase_project",
    "github_repo",
    "n8n_workflow",
    "n8n_modules",
    "database_schema",
    "vercel_project",
    "auth_urls",
    "vercel_domain",
];

pub const TEARDOWN_STEPS: [&str; 6] = [
    "delete_n8n_workflow",
    "delete_n8n_module_workflows",
    "delete_vercel_domain",
    "delete_vercel_project",
    "delete_github_repo",
    "delete_supabase_project",
];

pub async fn admin_url() -> Option<String> {
    let url = std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| sandbox::DEFAULT_POSTGRES_ADMIN_URL.to_owned());
    match sqlx::PgConnection::connect(&url).await {
        Ok(c) => {
            let _ = c.close().await;
            Some(url)
        }
        Err(e) => {
            assert!(
                !saga::testkit::postgres::postgres_required(),
                "PostgreSQL is required but does not answer: {e}"
            );
            println!("skipping: no PostgreSQL answers ({e}); set DATABASE_URL");
            None
        }
    }
}

pub struct World {
    pub sandbox: Sandbox,
    pub app: App,
    pub config: Config,
    pub secret_key: SecretString,
    pub dir: tempfile::TempDir,
}

pub fn env_map(sandbox: &Sandbox) -> HashMap<String, String> {
    sandbox.env_exports().into_iter().collect()
}

pub fn config_for(sandbox: &Sandbox, settings: Settings) -> Config {
    let env = env_map(sandbox);
    let mut config =
        Config::load(None, &|k| env.get(k).cloned()).expect("sandbox env is a valid config");
    config.settings = settings;
    config
}

pub fn fast_options() -> AppOptions {
    AppOptions {
        readiness_interval: Duration::from_millis(100),
        lease: Duration::from_secs(2),
        poll_interval: Duration::from_millis(50),
        workers: true,
        ..AppOptions::default()
    }
}

pub fn test_settings() -> Settings {
    let mut settings = Settings::default();
    settings.supabase.ready_timeout_secs = 20;
    settings.github.branch_timeout_secs = 20;
    settings.vercel.deploy_timeout_secs = 20;
    settings.vercel.wait_for_ready = true;
    settings
}

pub async fn start_app(
    sandbox: &Sandbox,
    settings: Settings,
    journal: &std::path::Path,
    key: &SecretString,
) -> App {
    let config = config_for(sandbox, settings);
    let journal = open_sqlite(journal).await.expect("journal opens");
    App::start(&config, journal, key, fast_options())
        .await
        .expect("app starts")
}

/// Sandbox + app; `None` when skipping for lack of PostgreSQL.
pub async fn world_with(
    adjust: impl FnOnce(&mut SandboxConfig),
    settings: Settings,
) -> Option<World> {
    let url = admin_url().await?;
    let mut sandbox_config = SandboxConfig::for_tests(url);
    adjust(&mut sandbox_config);
    let sandbox = Sandbox::start(sandbox_config)
        .await
        .expect("sandbox starts");
    let dir = tempfile::tempdir().unwrap();
    let (_, encoded) = SealingKey::generate();
    let secret_key = SecretString::from(encoded);
    let config = config_for(&sandbox, settings.clone());
    let app = start_app(
        &sandbox,
        settings,
        &dir.path().join("journal.sqlite"),
        &secret_key,
    )
    .await;
    Some(World {
        sandbox,
        app,
        config,
        secret_key,
        dir,
    })
}

pub async fn world() -> Option<World> {
    world_with(|_| {}, test_settings()).await
}

pub fn client(slug: &str) -> Client {
    ClientRecord {
        client_id: Some(slug.into()),
        client_name: Some(format!("Client {slug}")),
        org_email: Some(format!("ops@{slug}.example")),
        tier: Some("growth".into()),
        ..Default::default()
    }
    .validate()
    .unwrap()
}

pub fn unique_slug(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

pub fn keep_alive<T>(_: &Arc<T>) {}

/// Settings for runs that need not wait on Vercel builds: the deployment poll backs off to
/// two seconds, which would dominate test kits that run the saga dozens of times.
pub fn quick_settings() -> Settings {
    let mut settings = test_settings();
    settings.vercel.wait_for_ready = false;
    settings
}

/// A sandbox with short timelines over the test PostgreSQL server.
pub async fn sandbox_with(admin_url: &str, adjust: impl FnOnce(&mut SandboxConfig)) -> Sandbox {
    let mut config = SandboxConfig::for_tests(admin_url.to_owned());
    adjust(&mut config);
    Sandbox::start(config).await.expect("sandbox starts")
}

/// The client stack's shared clients pointed at `sandbox`, as `App::start` builds them.
pub fn stack_for(sandbox: &Sandbox, settings: Settings) -> Arc<provisioner::stack::Stack> {
    let config = config_for(sandbox, settings);
    let templates =
        provisioner::templates::Templates::load(&config.settings.templates).expect("templates");
    let (_, password_key) = SealingKey::generate();
    Arc::new(
        provisioner::stack::Stack::new(
            &config,
            templates,
            SecretString::from(password_key),
            fast_options().readiness_interval,
        )
        .expect("stack builds"),
    )
}

/// The inventory as comparable lines: the simulators' random ids (project refs, Vercel and
/// n8n ids, database and role names) are replaced by the deterministic names they belong to,
/// so two sandboxes holding the same stack list the same lines, and a duplicate shows up
/// twice.
pub fn stable_names(inventory: &sandbox::Inventory) -> Vec<String> {
    let project_of_ref: HashMap<&str, &str> = inventory
        .supabase_projects
        .iter()
        .map(|p| (p.reference.as_str(), p.name.as_str()))
        .collect();
    let owner = |kind: &str, object: &str| match (
        object
            .strip_prefix(sandbox::NAME_PREFIX)
            .and_then(|r| project_of_ref.get(r)),
        // A project's pooler login role (`postgres.{ref}`).
        object
            .strip_prefix(sandbox::POOLER_ROLE_PREFIX)
            .and_then(|r| project_of_ref.get(r)),
    ) {
        (Some(name), _) => format!("postgres {kind} of {name}"),
        (None, Some(name)) => format!("postgres pooler {kind} of {name}"),
        (None, None) => format!("postgres {kind} {object} without a project"),
    };
    let mut names = Vec::new();
    for p in &inventory.supabase_projects {
        names.push(format!("supabase project {}", p.name));
    }
    for d in &inventory.supabase_databases {
        names.push(owner("database", d));
    }
    for r in &inventory.supabase_roles {
        names.push(owner("role", r));
    }
    for r in &inventory.github_repos {
        names.push(format!("github repo {}", r.full_name));
    }
    for p in &inventory.vercel_projects {
        names.push(format!("vercel project {}", p.name));
    }
    for d in &inventory.vercel_deployments {
        names.push(format!("vercel deployment of {}", d.name));
    }
    for d in &inventory.vercel_domains {
        names.push(format!("vercel domain {}", d.name));
    }
    for w in &inventory.n8n_workflows {
        let state = if w.active { "active" } else { "inactive" };
        names.push(format!("n8n workflow {} ({state})", w.name));
    }
    if let Some(error) = &inventory.database_error {
        names.push(format!("inventory incomplete: {error}"));
    }
    names.sort();
    names
}

/// Which parts of a client's stack to build directly through the providers' clients (no
/// saga, no journal): what an old script, a run that died half way, or an earlier
/// provisioner left behind.
#[derive(Debug, Clone, Copy)]
pub struct Parts {
    pub supabase: bool,
    pub github: bool,
    pub vercel: bool,
    pub n8n: bool,
}

impl Parts {
    pub const ALL: Parts = Parts {
        supabase: true,
        github: true,
        vercel: true,
        n8n: true,
    };
}

/// Builds `parts` of `client`'s stack under the names the provision saga uses; Vercel needs
/// the repository (Vercel links only existing, non-empty repositories), so it implies it.
pub async fn build_parts(stack: &provisioner::stack::Stack, client: &Client, parts: Parts) {
    use provisioner::steps::{github_repo, n8n_workflow, supabase_project, vercel_project};
    let slug = &client.client_id;
    let supabase = async {
        if !parts.supabase {
            return;
        }
        let name = supabase_project::project_name(slug);
        let project = stack
            .supabase
            .create_project(&providers::supabase::CreateProject {
                name: name.clone(),
                organization_slug: stack.env.supabase_org_slug.clone(),
                db_pass: stack.database_password(&name),
                region_selection: Some(providers::supabase::RegionSelection::Specific {
                    code: stack.settings.supabase.region.clone(),
                }),
                desired_instance_size: None,
            })
            .await
            .expect("create Supabase project");
        let outcome = stack
            .supabase_projects
            .wait(
                &stack.env.supabase_org_slug,
                &project.project_ref,
                Duration::from_secs(20),
            )
            .await
            .expect("wait for Supabase project");
        assert_eq!(outcome, providers::ReadinessOutcome::Ready);
    };
    let github = async {
        if !(parts.github || parts.vercel) {
            return None;
        }
        let (owner, template) = &stack.env.github_template;
        let repo = stack
            .github
            .generate_from_template(
                owner,
                template,
                &providers::github::GenerateRepository {
                    owner: stack.env.github_org.clone(),
                    name: github_repo::repo_name(slug),
                    description: None,
                    private: true,
                },
            )
            .await
            .expect("generate repository");
        let branch = repo.default_branch.clone().unwrap_or_else(|| "main".into());
        while !stack
            .github
            .branch_exists(&repo.owner.login, &repo.name, &branch)
            .await
            .expect("read branch")
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Some(repo)
    };
    let n8n = async {
        if !parts.n8n {
            return;
        }
        let path = n8n_workflow::webhook_path(slug);
        // Not any run's id: what an earlier pipeline or a person made.
        let webhook_id = n8n_workflow::webhook_id(uuid::Uuid::new_v4());
        let doc = stack
            .templates
            .n8n_workflow(&provisioner::templates::N8nVars {
                slug: slug.as_str(),
                client_name: &client.client_name,
                webhook_id: &webhook_id,
                webhook_path: &path,
            });
        let body: providers::n8n::NewWorkflow = serde_json::from_value(doc).unwrap();
        let workflow = stack
            .n8n
            .create_workflow(&body)
            .await
            .expect("create workflow");
        stack
            .n8n
            .activate(&workflow.id)
            .await
            .expect("activate workflow");
    };
    let ((), repo, ()) = tokio::join!(supabase, github, n8n);
    if parts.vercel {
        let repo = repo.expect("the repository Vercel links to");
        let name = vercel_project::project_name(slug);
        let project = stack
            .vercel
            .create_project(&providers::vercel::CreateProject {
                name: name.clone(),
                framework: None,
                git_repository: providers::vercel::GitRepository::github(
                    &repo.owner.login,
                    &repo.name,
                ),
            })
            .await
            .expect("create Vercel project");
        stack
            .vercel
            .create_deployment(&providers::vercel::CreateDeployment {
                name,
                project: Some(project.id),
                target: Some("production".into()),
                git_source: providers::vercel::GitSource::github(
                    repo.default_branch.as_deref().unwrap_or("main"),
                    repo.id,
                ),
            })
            .await
            .expect("deploy");
    }
}

/// `stable_names` of one complete stack of `client`, as the provision saga leaves it.
pub fn full_stack_names(client: &Client) -> Vec<String> {
    let slug = client.client_id.as_str();
    let mut names = vec![
        format!("supabase project client-{slug}-prod"),
        format!("postgres database of client-{slug}-prod"),
        format!("postgres role of client-{slug}-prod"),
        format!("postgres pooler role of client-{slug}-prod"),
        format!("github repo sandbox-agency/client-{slug}-app"),
        format!("vercel project client-{slug}-app"),
        format!("vercel deployment of client-{slug}-app"),
        format!(
            "n8n workflow Client {slug} - {} (active)",
            client.client_name
        ),
    ];
    // The modules the client switches on (the test settings give tiers none), named as
    // their templates name them.
    for module in client.modules_with(&[]) {
        let label = match module {
            Module::Crm => "CRM",
            Module::Email => "Email",
            Module::Social => "Social",
            Module::ContentStudio => "Content Studio",
            Module::Accommodation => "Accommodation",
            Module::AiAgents => "AI Agents",
        };
        names.push(format!(
            "n8n workflow Client {slug} - {} - {label} (active)",
            client.client_name
        ));
    }
    names.sort();
    names
}
