//! `vercel_project`: the client's Vercel project `client-{slug}-app`, linked to the client's
//! repository, with the app's environment (the Supabase keys, the app's URL and the client's
//! branding as plain variables) in one upsert call, and its first production deployment from
//! the default branch (optionally waited on until READY and until its URL answers over HTTP).
//!
//! Vercel project names are unique per team, so the lookup is `GET /v9/projects/{name}`; an
//! existing project is adopted only if it is linked to the client's repository. A run marks
//! the project it creates with a plain variable holding its id ([`MARKER_VAR`]).

use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use providers::ProviderError;
use providers::vercel::{
    CreateDeployment, CreateProject, EnvTarget, EnvType, EnvVar, GitRepository, GitSource, Project,
    ReadyState,
};
use saga::{RetryPolicy, StepContext, StepError, StepPolicy};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::github_repo::{self, GithubRepo};
use super::supabase_project::{self, SupabaseProject};
use super::{ProviderResource, Recorded, RunMark, poll_delays, provider_failure, time_from_millis};
use crate::client::{Branding, Client, ClientSlug};
use crate::config::BrandingEnv;
use crate::stack::Stack;

pub const NAME: &str = "vercel_project";
pub const TEARDOWN: &str = "delete_vercel_project";

pub fn project_name(slug: &ClientSlug) -> String {
    format!("client-{slug}-app")
}

/// Vercel's default production domain for a project.
pub fn app_url(project_name: &str) -> String {
    format!("https://{project_name}.vercel.app")
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VercelProject {
    pub project_id: String,
    pub name: String,
    pub deployment_id: String,
    pub deployment_url: String,
    pub app_url: String,
    pub ready: bool,
    pub adopted: bool,
    /// With `wait_for_ready`: the HTTP status the deployment URL answered with.
    #[serde(default)]
    pub answered: Option<u16>,
}

async fn lookup(stack: &Stack, name: &str) -> Result<Option<Project>, StepError> {
    match stack.vercel.get_project(name).await {
        Ok(project) => Ok(Some(project)),
        Err(ProviderError::NotFound) => Ok(None),
        Err(e) => Err(provider_failure(
            &format!("look up Vercel project {name}"),
            e,
        )),
    }
}

async fn delete(stack: &Stack, id_or_name: &str) -> Result<(), StepError> {
    match stack.vercel.delete_project(id_or_name).await {
        Ok(()) | Err(ProviderError::NotFound) => Ok(()),
        Err(e) => Err(provider_failure(
            &format!("delete Vercel project {id_or_name}"),
            e,
        )),
    }
}

/// The plain variable that marks a project with the run that created it. The app can read
/// it; it holds no secret.
pub const MARKER_VAR: &str = "PROVISIONER_RUN_ID";

fn marker(run_id: Uuid) -> EnvVar {
    EnvVar {
        key: MARKER_VAR.to_owned(),
        value: SecretString::from(run_id.to_string()),
        env_type: EnvType::Plain,
        target: vec![
            EnvTarget::Production,
            EnvTarget::Preview,
            EnvTarget::Development,
        ],
    }
}

/// The variables this step sets on every client's project, whatever its branding.
pub const STACK_ENV: &[&str] = &[
    "NEXT_PUBLIC_SUPABASE_URL",
    "NEXT_PUBLIC_SUPABASE_ANON_KEY",
    "SUPABASE_SERVICE_ROLE_KEY",
    "NEXT_PUBLIC_APP_URL",
    MARKER_VAR,
];

/// The client's branding as (variable name, value) under `names`: one per field the client
/// gave, none for the others.
pub fn branding_env<'b>(
    branding: Option<&'b Branding>,
    names: &BrandingEnv,
) -> Vec<(String, &'b str)> {
    let Some(branding) = branding else {
        return Vec::new();
    };
    let values = [
        &branding.primary_color,
        &branding.secondary_color,
        &branding.company_name,
        &branding.tagline,
        &branding.logo_url,
    ];
    names
        .names()
        .into_iter()
        .zip(values)
        .filter_map(|((_, name), value)| Some((name.to_owned(), value.as_deref()?)))
        .collect()
}

/// The app's environment: Supabase's URL and anon key everywhere, the service-role key only
/// in production and as a sensitive variable (never readable back), the app's own URL, and
/// the client's branding. Branding is public in the app, so its variables are `plain` (the
/// value readable back, as Vercel's env API offers for non-secrets), never encrypted.
fn environment(
    supabase: &SupabaseProject,
    app_url: &str,
    branding: &[(String, &str)],
) -> Vec<EnvVar> {
    let everywhere = vec![
        EnvTarget::Production,
        EnvTarget::Preview,
        EnvTarget::Development,
    ];
    let var = |key: &str, value: &str, env_type, target: Vec<EnvTarget>| EnvVar {
        key: key.to_owned(),
        value: SecretString::from(value.to_owned()),
        env_type,
        target,
    };
    vec![
        var(
            "NEXT_PUBLIC_SUPABASE_URL",
            &supabase.api_url,
            EnvType::Encrypted,
            everywhere.clone(),
        ),
        var(
            "NEXT_PUBLIC_SUPABASE_ANON_KEY",
            supabase.anon_key.expose(),
            EnvType::Encrypted,
            everywhere.clone(),
        ),
        var(
            "SUPABASE_SERVICE_ROLE_KEY",
            supabase.service_role_key.expose(),
            EnvType::Sensitive,
            vec![EnvTarget::Production],
        ),
        var(
            "NEXT_PUBLIC_APP_URL",
            app_url,
            EnvType::Encrypted,
            everywhere.clone(),
        ),
    ]
    .into_iter()
    .chain(
        branding
            .iter()
            .map(|(name, value)| var(name, value, EnvType::Plain, everywhere.clone())),
    )
    .collect()
}

/// How one request to a deployment host went: the status when the app answered, else why not.
async fn probe(client: &reqwest::Client, origin: Option<&str>, host: &str) -> Result<u16, String> {
    // With an origin set (the sandbox), connect there and name the host in `Host`, which is
    // what Vercel's edge routes by; otherwise go to the host itself.
    let request = match origin {
        Some(origin) => client
            .get(format!("{origin}/"))
            .header(reqwest::header::HOST, host),
        None => client.get(format!("https://{host}/")),
    };
    let response = request.send().await.map_err(|e| e.to_string())?;
    let status = response.status();
    // Vercel marks its own answers (not ready, not found, the function failed) with
    // `x-vercel-error`; anything else below 500 comes from the app.
    match response.headers().get("x-vercel-error") {
        Some(code) => Err(format!(
            "{status} {}",
            code.to_str().unwrap_or("(unreadable x-vercel-error)")
        )),
        None if status.is_server_error() => Err(status.to_string()),
        None => Ok(status.as_u16()),
    }
}

/// Polls the deployment's URL until the app answers (any status below 500 that is not one
/// of Vercel's platform errors), for at most `vercel.answer_timeout_secs`. Redirects are not
/// followed: a redirect is an answer of the app, or Vercel's "not ready yet".
async fn wait_until_answering(stack: &Stack, host: &str) -> Result<u16, StepError> {
    let timeout = Duration::from_secs(stack.settings.vercel.answer_timeout_secs);
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10).min(timeout))
        .build()
        .map_err(|e| StepError::permanent(format!("cannot build an HTTP client: {e}")))?;
    let origin = stack.env.vercel_deployment_origin.as_deref();
    let deadline = Instant::now() + timeout;
    let mut delays = poll_delays(Duration::from_secs(2));
    loop {
        let last = match probe(&client, origin, host).await {
            Ok(status) => return Ok(status),
            Err(why) => why,
        };
        if Instant::now() >= deadline {
            return Err(StepError::permanent(format!(
                "deployment URL https://{host} is READY but did not answer within {} s (last: {last}); check the deployment's runtime logs in Vercel, or raise vercel.answer_timeout_secs",
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(2))).await;
    }
}

/// The client's Vercel project, as the shared lifecycle drives it. Marked by a plain
/// environment variable holding the run's id ([`MARKER_VAR`]), sent in the create call itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct VercelProjects;

impl VercelProjects {
    /// The project's production deployment: the newest one that has not failed, else a new
    /// one from the default branch. A repeat (crash, re-provision) finds the first instead of
    /// deploying again.
    async fn deployment(
        &self,
        stack: &Stack,
        project: &Project,
        repo: &GithubRepo,
    ) -> Result<(String, String), StepError> {
        let existing = stack
            .vercel
            .list_deployments(&project.id, Some("production"))
            .await
            .map_err(|e| provider_failure(&format!("list deployments of {}", project.name), e))?;
        if let Some(found) = existing
            .into_iter()
            .find(|d| !d.ready_state.is_some_and(ReadyState::is_terminal_failure))
        {
            return Ok((found.uid, found.url));
        }
        let created = stack
            .vercel
            .create_deployment(&CreateDeployment {
                name: project.name.clone(),
                project: Some(project.id.clone()),
                target: Some("production".into()),
                git_source: GitSource::github(&repo.default_branch, repo.id),
            })
            .await
            .map_err(|e| provider_failure(&format!("deploy {}", project.name), e))?;
        Ok((created.id, created.url))
    }

    async fn wait_until_ready(&self, stack: &Stack, deployment_id: &str) -> Result<(), StepError> {
        let timeout = Duration::from_secs(stack.settings.vercel.deploy_timeout_secs);
        let deadline = Instant::now() + timeout;
        let mut delays = poll_delays(Duration::from_secs(2));
        loop {
            let deployment = stack
                .vercel
                .get_deployment(deployment_id)
                .await
                .map_err(|e| provider_failure(&format!("read deployment {deployment_id}"), e))?;
            match deployment.ready_state {
                ReadyState::Ready => return Ok(()),
                state if state.is_terminal_failure() => {
                    return Err(StepError::permanent(format!(
                        "deployment {deployment_id} ended {state:?}: {}; see the build log in Vercel",
                        deployment
                            .error_message
                            .unwrap_or_else(|| "no reason given".into())
                    )));
                }
                _ if Instant::now() >= deadline => {
                    return Err(StepError::permanent(format!(
                        "deployment {deployment_id} not READY after {} s; raise vercel.deploy_timeout_secs or check Vercel",
                        timeout.as_secs()
                    )));
                }
                _ => tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(2))).await,
            }
        }
    }
}

#[async_trait]
impl ProviderResource for VercelProjects {
    type Found = Project;
    type Output = VercelProject;

    const STEP: &'static str = NAME;
    const TEARDOWN: &'static str = TEARDOWN;

    fn policy(&self, stack: &Stack) -> StepPolicy {
        StepPolicy {
            action: RetryPolicy {
                timeout: Duration::from_secs(
                    stack.settings.vercel.deploy_timeout_secs
                        + stack.settings.vercel.answer_timeout_secs
                        + 120,
                ),
                ..RetryPolicy::default()
            },
            undo: StepPolicy::default().undo,
        }
    }

    async fn find(&self, stack: &Stack, slug: &ClientSlug) -> Result<Vec<Project>, StepError> {
        Ok(lookup(stack, &project_name(slug))
            .await?
            .into_iter()
            .collect())
    }

    async fn create(
        &self,
        stack: &Stack,
        ctx: &StepContext<'_, Client>,
    ) -> Result<Project, StepError> {
        let repo: GithubRepo = ctx.output(github_repo::NAME)?;
        let name = project_name(&ctx.input().client_id);
        let framework = Some(stack.settings.vercel.framework.clone()).filter(|f| !f.is_empty());
        let body = CreateProject {
            name: name.clone(),
            framework,
            git_repository: GitRepository::github(&repo.owner, &repo.name),
        };
        match stack
            .vercel
            .create_project_with_env(&body, &[marker(ctx.run_id())])
            .await
        {
            Ok(project) => Ok(project),
            // Made in the meantime, by someone else or by a lost attempt of ours: the next
            // attempt's lookup finds it and reads its mark.
            Err(ProviderError::Conflict { .. }) => Err(StepError::retry_after(
                Duration::from_secs(1),
                format!(
                    "Vercel says {name} exists although the lookup did not find it; looking again"
                ),
            )),
            Err(e) => Err(provider_failure(
                &format!("create Vercel project {name}"),
                e,
            )),
        }
    }

    async fn made_by(
        &self,
        stack: &Stack,
        project: &Project,
        mark: &RunMark,
    ) -> Result<bool, StepError> {
        let value = stack
            .vercel
            .plain_env_value(&project.id, MARKER_VAR)
            .await
            .map_err(|e| provider_failure(&format!("read {MARKER_VAR} of {}", project.name), e))?;
        Ok(value.is_some_and(|v| v == mark.run_id.to_string()))
    }

    fn check_adoptable(
        &self,
        _: &Stack,
        ctx: &StepContext<'_, Client>,
        project: &Project,
    ) -> Result<(), StepError> {
        let repo: GithubRepo = ctx.output(github_repo::NAME)?;
        if project.linked_to(&repo.owner, &repo.name) {
            Ok(())
        } else {
            Err(StepError::permanent(format!(
                "Vercel project {} exists but is not linked to {}; rename or delete it, then retry the run",
                project.name, repo.full_name
            )))
        }
    }

    async fn complete(
        &self,
        stack: &Stack,
        ctx: &StepContext<'_, Client>,
        project: Project,
        adopted: bool,
    ) -> Result<VercelProject, StepError> {
        let supabase: SupabaseProject = ctx.output(supabase_project::NAME)?;
        let repo: GithubRepo = ctx.output(github_repo::NAME)?;
        // The client's domain when one is configured: the app links to itself by it.
        let app_url = super::vercel_domain::app_url(&stack.settings, &ctx.input().client_id);
        let branding = branding_env(
            ctx.input().branding.as_ref(),
            &stack.settings.vercel.branding_env,
        );
        stack
            .vercel
            .upsert_env(&project.id, &environment(&supabase, &app_url, &branding))
            .await
            .map_err(|e| provider_failure(&format!("set environment of {}", project.name), e))?;
        let (deployment_id, deployment_url) = self.deployment(stack, &project, &repo).await?;
        let ready = stack.settings.vercel.wait_for_ready;
        let mut answered = None;
        if ready {
            self.wait_until_ready(stack, &deployment_id).await?;
            answered = Some(wait_until_answering(stack, &deployment_url).await?);
        }
        Ok(VercelProject {
            project_id: project.id,
            name: project.name,
            deployment_url: format!("https://{deployment_url}"),
            deployment_id,
            app_url,
            ready,
            adopted,
            answered,
        })
    }

    fn id(&self, project: &Project) -> String {
        project.id.clone()
    }

    fn created_at(&self, project: &Project) -> Option<DateTime<Utc>> {
        project.created_at.and_then(time_from_millis)
    }

    fn describe(&self, project: &Project) -> String {
        format!("Vercel project {} ({})", project.name, project.id)
    }

    fn recorded(&self, output: &VercelProject) -> Recorded {
        Recorded {
            adopted: output.adopted,
            id: output.project_id.clone(),
        }
    }

    async fn delete(&self, stack: &Stack, id: &str) -> Result<(), StepError> {
        delete(stack, id).await
    }
}
