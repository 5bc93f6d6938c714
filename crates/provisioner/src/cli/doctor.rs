//! `provisioner doctor`: is this configuration able to provision? Each check makes at most a
//! read-only call and says how to fix what fails. [`preflight`] is its cheap part (every
//! token accepted), which `provision` and `batch` run before they start anything.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use providers::{N8nApiFlavour, ProviderError};
use saga::{RunFilter, RunStatus};
use secrecy::SecretString;
use serde::Serialize;

use super::{CliError, config_path, env};
use crate::app::{App, AppOptions, open_journal, secret_key_from_env};
use crate::config::Config;
use crate::outcome::Outcome;
use crate::sagas;
use crate::stack::Stack;
use crate::steps::supabase_project;
use crate::tenant_db::{self, RouteKind};

/// A Vercel project search no client's project matches: the call proves the token and team
/// without listing anything.
const VERCEL_PROBE_SEARCH: &str = "provisioner-doctor-probe";
/// An n8n workflow id no workflow has: a 404 proves the key.
const N8N_PROBE_ID: &str = "provisioner-doctor-probe";
/// How long the tenant database route may take to accept a TCP connection.
const ROUTE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Args)]
#[command(after_help = "Example:\n  provisioner doctor\n  provisioner doctor --json")]
pub struct DoctorArgs {
    /// Print the checks as JSON on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// One line of the doctor's table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub check: String,
    pub passed: bool,
    pub detail: String,
    /// What to do about a failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// The provider answered that it is rate limiting or failing (429, 5xx): worth trying
    /// again after the wait the provider asked for, if it said.
    #[serde(skip)]
    transient: Option<Option<Duration>>,
}

impl Check {
    fn pass(check: &str, detail: impl Into<String>) -> Self {
        Self {
            check: check.to_owned(),
            passed: true,
            detail: detail.into(),
            fix: None,
            transient: None,
        }
    }

    fn fail(check: &str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            check: check.to_owned(),
            passed: false,
            detail: detail.into(),
            fix: Some(fix.into()),
            transient: None,
        }
    }
}

/// What a refused call means for the variable behind it.
fn refused(check: &str, err: &ProviderError, token_var: &str, not_found_fix: &str) -> Check {
    // The provider answered that it is busy or failing for now; no answer at all (a wrong
    // URL, nothing listening) is a configuration problem and is reported at once.
    let for_now = err.is_retryable() && matches!(err.status(), Some(429 | 500..=599));
    let fix = match err.status() {
        Some(401) => format!("{token_var} is refused: create a new token and export it"),
        Some(403) => format!("{token_var} lacks a permission this call needs: {not_found_fix}"),
        Some(404) => not_found_fix.to_owned(),
        _ if for_now => {
            "the service is rate limiting or failing for now; try again in a while".to_owned()
        }
        _ => "the service did not answer as expected; check its URL variable and try again"
            .to_owned(),
    };
    let mut check = Check::fail(check, err.to_string(), fix);
    if for_now {
        check.transient = Some(err.retry_after());
    }
    check
}

/// How long `preflight` keeps checking again while every failure is transient.
const PREFLIGHT_PATIENCE: Duration = Duration::from_secs(120);
/// The longest `preflight` waits between rounds, whatever a provider asks for.
const PREFLIGHT_MAX_WAIT: Duration = Duration::from_secs(30);

/// Every credential checked with one read-only call each (run concurrently).
pub async fn credential_checks(stack: &Stack) -> Vec<Check> {
    let (supabase, github, vercel, n8n) = tokio::join!(
        supabase_check(stack),
        github_checks(stack),
        vercel_check(stack),
        n8n_check(stack)
    );
    let mut checks = vec![supabase];
    checks.extend(github);
    checks.push(vercel);
    checks.push(n8n);
    checks
}

/// The cheap part of `doctor`: every token accepted, the Supabase organization and region,
/// the GitHub scopes and template. An error lists every failed check with its fix.
/// A provider that is only rate limiting or failing for now (a 429 storm, a 5xx burst) is
/// waited out, as its `Retry-After` says (at least 1 s, at most 30 s a round), for up to two
/// minutes; a refused token fails at once.
pub async fn preflight(stack: &Stack) -> Result<(), CliError> {
    let give_up_at = tokio::time::Instant::now() + PREFLIGHT_PATIENCE;
    let failed: Vec<Check> = loop {
        let failed: Vec<Check> = credential_checks(stack)
            .await
            .into_iter()
            .filter(|c| !c.passed)
            .collect();
        if failed.is_empty() {
            return Ok(());
        }
        let now = tokio::time::Instant::now();
        if now >= give_up_at || failed.iter().any(|c| c.transient.is_none()) {
            break failed;
        }
        let wait = failed
            .iter()
            .filter_map(|c| c.transient.flatten())
            .max()
            .unwrap_or(Duration::from_secs(1))
            .clamp(Duration::from_secs(1), PREFLIGHT_MAX_WAIT)
            .min(give_up_at - now);
        tokio::time::sleep(wait).await;
    };
    Err(CliError::new(
        Outcome::Misconfigured,
        format!(
            "the credentials are not usable, nothing was started:\n{}\nrun `provisioner doctor` for every check",
            failed
                .iter()
                .map(|c| format!(
                    "  - {}: {} (fix: {})",
                    c.check,
                    c.detail,
                    c.fix.as_deref().unwrap_or("")
                ))
                .collect::<Vec<_>>()
                .join("\n")
        ),
    ))
}

async fn supabase_check(stack: &Stack) -> Check {
    const NAME: &str = "supabase token and organization";
    let org = &stack.env.supabase_org_slug;
    let region = &stack.settings.supabase.region;
    let organization = match stack.supabase.get_organization(org).await {
        Ok(o) => o,
        Err(e) => {
            return refused(
                NAME,
                &e,
                "SUPABASE_MANAGEMENT_TOKEN",
                "SUPABASE_ORG_ID must be the slug of an organization the token belongs to",
            );
        }
    };
    match stack.supabase.available_regions(org, None).await {
        Ok(regions) if regions.all.iter().any(|r| r == region) => Check::pass(
            NAME,
            format!(
                "token accepted; organization {org} ({}) is offered region {region}",
                organization.name
            ),
        ),
        Ok(regions) => Check::fail(
            NAME,
            format!("organization {org} is not offered region {region}"),
            format!(
                "set supabase.region in provisioner.toml to one of {}",
                regions.all.join(", ")
            ),
        ),
        Err(e) => refused(
            NAME,
            &e,
            "SUPABASE_MANAGEMENT_TOKEN",
            "SUPABASE_ORG_ID must be the slug of an organization the token belongs to",
        ),
    }
}

async fn github_checks(stack: &Stack) -> Vec<Check> {
    const TOKEN: &str = "github token scopes";
    const TEMPLATE: &str = "github template repository";
    let (owner, name) = &stack.env.github_template;
    match stack.github.get_repository_with_scopes(owner, name).await {
        Ok((repo, scopes)) => {
            let scopes_check = match scopes {
                None => Check::pass(
                    TOKEN,
                    "token accepted; it reports no OAuth scopes (a fine-grained token): it needs \
                     Administration and Contents write on the organization",
                ),
                Some(scopes) => {
                    let missing: Vec<&str> = ["repo", "delete_repo"]
                        .into_iter()
                        .filter(|s| !scopes.iter().any(|have| have == s))
                        .collect();
                    if missing.is_empty() {
                        Check::pass(
                            TOKEN,
                            format!("token accepted; scopes {}", scopes.join(", ")),
                        )
                    } else {
                        Check::fail(
                            TOKEN,
                            format!(
                                "token accepted but lacks {} (has: {})",
                                missing.join(", "),
                                scopes.join(", ")
                            ),
                            "give GITHUB_TOKEN the repo and delete_repo scopes (delete_repo lets \
                             a teardown remove the repository)",
                        )
                    }
                }
            };
            let template_check = if repo.is_template == Some(true) {
                Check::pass(
                    TEMPLATE,
                    format!("{} is a template repository", repo.full_name),
                )
            } else {
                Check::fail(
                    TEMPLATE,
                    format!("{} is not marked as a template", repo.full_name),
                    "tick \"Template repository\" in the repository's settings, or point \
                     GITHUB_TEMPLATE_REPO at one that is",
                )
            };
            vec![scopes_check, template_check]
        }
        Err(e) => vec![refused(
            TOKEN,
            &e,
            "GITHUB_TOKEN",
            &format!(
                "GITHUB_TEMPLATE_REPO ({owner}/{name}) does not exist or the token cannot see it"
            ),
        )],
    }
}

async fn vercel_check(stack: &Stack) -> Check {
    const NAME: &str = "vercel token and team";
    let team = stack.env.vercel_team_id.as_deref();
    match stack.vercel.list_projects(VERCEL_PROBE_SEARCH).await {
        Ok(_) => Check::pass(
            NAME,
            match team {
                Some(team) => format!("token accepted for team {team}"),
                None => "token accepted (personal account: VERCEL_TEAM_ID is not set)".to_owned(),
            },
        ),
        Err(e) => refused(
            NAME,
            &e,
            "VERCEL_TOKEN",
            "VERCEL_TEAM_ID must be a team the token is a member of (or unset it for a personal account)",
        ),
    }
}

async fn n8n_check(stack: &Stack) -> Check {
    const NAME: &str = "n8n api key";
    match stack.n8n.get_workflow(N8N_PROBE_ID).await {
        Err(ProviderError::NotFound) | Ok(_) => Check::pass(NAME, "key accepted"),
        Err(e) => refused(
            NAME,
            &e,
            "N8N_API_KEY",
            "N8N_HOST must be the n8n instance's base URL (its public API is under /api/v1)",
        ),
    }
}

/// The server's line and whether `n8n.api_version` suits it.
async fn n8n_line_check(stack: &Stack) -> Check {
    const NAME: &str = "n8n version";
    let configured = stack.settings.n8n.api_version.as_str();
    let needed = |line: N8nApiFlavour| match line {
        N8nApiFlavour::ActivateDeactivate => ("1.x", "v1"),
        N8nApiFlavour::PublishUnpublish => ("2.x", "v2"),
    };
    match stack.n8n.detect_line().await {
        Ok(line) => {
            let (version, wants) = needed(line);
            if configured == "auto" || configured == wants {
                Check::pass(
                    NAME,
                    format!(
                        "n8n {version}: needs api_version \"{wants}\"; configured \"{configured}\""
                    ),
                )
            } else {
                Check::fail(
                    NAME,
                    format!("n8n {version}, but n8n.api_version is \"{configured}\""),
                    format!("set n8n.api_version to \"{wants}\" or \"auto\" in provisioner.toml"),
                )
            }
        }
        Err(e) => Check::fail(
            NAME,
            format!("cannot tell the server's line: {e}"),
            "set n8n.api_version to \"v1\" (n8n 1.x) or \"v2\" (n8n 2.x) in provisioner.toml",
        ),
    }
}

/// Which route the schema step takes to tenant databases (the project's session pooler, or
/// the `SUPABASE_DB_URL_TEMPLATE` override) and whether its host answers. Both need a project
/// to ask about (the pooler's host, or the template's `{host}`); with none yet, that is said.
async fn tenant_route_check(stack: &Stack) -> Check {
    const NAME: &str = "tenant database route";
    let template = stack.env.supabase_db_url_template.as_deref();
    let needs_project = template.is_none_or(|t| t.contains("{host}") || t.contains("{ref}"));
    let project = if needs_project {
        match stack.supabase.list_projects().await {
            Ok(projects) => projects.into_iter().next(),
            Err(e) => {
                return refused(
                    NAME,
                    &e,
                    "SUPABASE_MANAGEMENT_TOKEN",
                    "the token must be able to list the organization's projects",
                );
            }
        }
    } else {
        None
    };
    let route_name = match template {
        Some(_) => RouteKind::OverrideTemplate.describe(),
        None => RouteKind::Pooler.describe(),
    };
    let (address, fix) = match (template, &project) {
        (Some(template), project) if !needs_project || project.is_some() => {
            let (project_ref, host) = project
                .as_ref()
                .map(|p| {
                    (
                        p.project_ref.clone(),
                        p.database
                            .as_ref()
                            .map(|d| d.host.clone())
                            .unwrap_or_default(),
                    )
                })
                .unwrap_or_default();
            match tenant_db::template_route(template, &project_ref, &host, &SecretString::from("x"))
            {
                Ok(route) => (
                    route.address,
                    "check SUPABASE_DB_URL_TEMPLATE's host and port, and that this machine may reach it (the direct host db.<ref>.supabase.co is IPv6-only); unset it to use the session pooler",
                ),
                Err(e) => {
                    return Check::fail(
                        NAME,
                        format!("{route_name}: {e}"),
                        "write it as postgresql://USER:{password}@HOST:PORT/DB with {ref} or {host}, or unset it to use the session pooler",
                    );
                }
            }
        }
        (None, Some(project)) => {
            let configs = match stack.supabase.pooler_config(&project.project_ref).await {
                Ok(configs) => configs,
                Err(e) => {
                    return refused(
                        NAME,
                        &e,
                        "SUPABASE_MANAGEMENT_TOKEN",
                        "the token must be able to read a project's pooler configuration (database:read)",
                    );
                }
            };
            match tenant_db::session_pooler(
                &project.project_ref,
                &configs,
                &SecretString::from("x"),
            ) {
                Ok(route) => (
                    route.address,
                    "check that this machine may reach the pooler on port 5432 (outbound firewall), or set SUPABASE_DB_URL_TEMPLATE to another route",
                ),
                Err(e) => {
                    return Check::fail(
                        NAME,
                        format!("{route_name}: {e}"),
                        "set SUPABASE_DB_URL_TEMPLATE to reach the project's database another way",
                    );
                }
            }
        }
        _ => {
            return Check::pass(
                NAME,
                format!(
                    "{route_name}; no project exists yet to try it on (checked at the first run)"
                ),
            );
        }
    };
    match tokio::time::timeout(ROUTE_TIMEOUT, tokio::net::TcpStream::connect(&address)).await {
        Ok(Ok(_)) => Check::pass(NAME, format!("{route_name}: {address} accepts connections")),
        Ok(Err(e)) => Check::fail(
            NAME,
            format!("{route_name}: {address} refuses connections: {e}"),
            fix,
        ),
        Err(_) => Check::fail(
            NAME,
            format!(
                "{route_name}: {address} did not answer within {} s",
                ROUTE_TIMEOUT.as_secs()
            ),
            fix,
        ),
    }
}

/// Opens a provision run's sealed output with the key, when a run holds one.
async fn sealed_values_check(app: &App) -> Check {
    const NAME: &str = "secret key opens sealed values";
    let filter = RunFilter {
        status: Some(RunStatus::Succeeded),
        saga: Some(sagas::PROVISION.to_owned()),
        after: None,
        limit: 1,
        ..RunFilter::default()
    };
    let runs = match app.engine.list(&filter).await {
        Ok(runs) => runs,
        Err(e) => {
            return Check::fail(
                NAME,
                format!("cannot read the journal: {e}"),
                "check journal.url in provisioner.toml",
            );
        }
    };
    let Some(run) = runs.first() else {
        return Check::pass(NAME, "key present; the journal holds no sealed value yet");
    };
    match app
        .engine
        .output::<serde_json::Value>(run.id, supabase_project::NAME)
        .await
    {
        Ok(_) => Check::pass(NAME, format!("key opens run {}'s sealed values", run.id)),
        Err(e) => Check::fail(
            NAME,
            format!("run {}: {e}", run.id),
            "PROVISIONER_SECRET_KEY must be the key the journal's runs were sealed with; restore it",
        ),
    }
}

/// Every check, in the order a person fixes them.
pub async fn checks(config_file: Option<PathBuf>) -> Vec<Check> {
    let mut checks = Vec::new();
    let path = config_path(config_file);
    let config = match Config::load(path.as_deref(), &env) {
        Ok(config) => {
            checks.push(Check::pass(
                "configuration",
                match &path {
                    Some(p) => format!("{} and the environment are valid", p.display()),
                    None => "the environment is valid (no provisioner.toml: defaults)".to_owned(),
                },
            ));
            Some(config)
        }
        Err(e) => {
            for problem in e.problems {
                checks.push(Check::fail(
                    "configuration",
                    problem,
                    "set the variable or key as the line says",
                ));
            }
            None
        }
    };
    let key = match secret_key_from_env(&env) {
        Ok(key) => {
            checks.push(Check::pass("secret key", "PROVISIONER_SECRET_KEY is set"));
            Some(key)
        }
        Err(e) => {
            checks.push(Check::fail(
                "secret key",
                e.to_string(),
                "export PROVISIONER_SECRET_KEY (the same key every run of this journal used)",
            ));
            None
        }
    };
    let Some(config) = config else {
        return checks;
    };
    let journal = match open_journal(config.settings.journal.url.as_deref()).await {
        Ok(journal) => {
            checks.push(Check::pass(
                "journal",
                "reachable, and its schema is migrated",
            ));
            Some(journal)
        }
        Err(e) => {
            checks.push(Check::fail(
                "journal",
                e.to_string(),
                "check journal.url in provisioner.toml and that the database answers",
            ));
            None
        }
    };
    let (Some(journal), Some(key)) = (journal, key) else {
        return checks;
    };
    let options = AppOptions {
        workers: false,
        ..AppOptions::default()
    };
    let app = match App::start(&config, journal, &key, options).await {
        Ok(app) => app,
        Err(e) => {
            checks.push(Check::fail(
                "client stack",
                e.to_string(),
                "fix the setting the line names",
            ));
            return checks;
        }
    };
    checks.extend(credential_checks(&app.stack).await);
    let (line, route, sealed) = tokio::join!(
        n8n_line_check(&app.stack),
        tenant_route_check(&app.stack),
        sealed_values_check(&app)
    );
    checks.extend([line, route, sealed]);
    app.shutdown(Duration::from_secs(1)).await;
    checks
}

/// The table: one line per check, then each failure's fix.
pub fn table(checks: &[Check]) -> String {
    let width = checks.iter().map(|c| c.check.len()).max().unwrap_or(0);
    let mut out = String::new();
    for c in checks {
        let mark = if c.passed { "pass" } else { "FAIL" };
        out.push_str(&format!("{mark}  {:<width$}  {}\n", c.check, c.detail));
        if let Some(fix) = &c.fix {
            out.push_str(&format!("      {:<width$}  fix: {fix}\n", ""));
        }
    }
    out
}

pub async fn run(args: DoctorArgs, config: Option<PathBuf>) -> Result<(), CliError> {
    let checks = checks(config).await;
    if args.json {
        let line = serde_json::to_string(&checks).map_err(|e| CliError::internal(e.to_string()))?;
        write_stdout(&format!("{line}\n"));
    } else {
        write_stdout(&table(&checks));
    }
    let failed: Vec<&str> = checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| c.check.as_str())
        .collect();
    if failed.is_empty() {
        return Ok(());
    }
    Err(CliError::new(
        Outcome::Misconfigured,
        format!(
            "{} of {} checks failed ({}); each has its fix above",
            failed.len(),
            checks.len(),
            failed.join(", ")
        ),
    ))
}

/// A command's data, on stdout (progress and errors go to stderr).
pub(super) fn write_stdout(text: &str) {
    #[allow(clippy::print_stdout)] // the command's output
    {
        print!("{text}");
    }
}
