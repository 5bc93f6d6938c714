//! `vercel_project`: the client's Vercel project `client-{slug}-app`, linked to the client's
//! repository, with the app's environment in one upsert call, and its first production
//! deployment from the default branch (optionally waited on until READY).
//!
//! Vercel project names are unique per team, so the lookup is `GET /v9/projects/{name}`; an
//! existing project is adopted only if it is linked to the client's repository.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use providers::ProviderError;
use providers::vercel::{
    CreateDeployment, CreateProject, EnvTarget, EnvType, EnvVar, GitRepository, GitSource, Project,
    ReadyState,
};
use saga::{RetryPolicy, Step, StepContext, StepError, StepPolicy};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::github_repo::{self, GithubRepo};
use super::supabase_project::{self, SupabaseProject};
use super::{Removal, created_by_run, poll_delays, provider_failure, time_from_millis};
use crate::client::{Client, ClientSlug};
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

/// The app's environment: Supabase's URL and anon key everywhere, the service-role key only
/// in production and as a sensitive variable (never readable back), and the app's own URL.
fn environment(supabase: &SupabaseProject, app_url: &str) -> Vec<EnvVar> {
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
            everywhere,
        ),
    ]
}

#[derive(Debug, Clone)]
pub struct VercelProjectStep {
    pub stack: Arc<Stack>,
}

impl VercelProjectStep {
    async fn create(&self, name: &str, repo: &GithubRepo) -> Result<Project, StepError> {
        let stack = &self.stack;
        let framework = Some(stack.settings.vercel.framework.clone()).filter(|f| !f.is_empty());
        let body = CreateProject {
            name: name.to_owned(),
            framework,
            git_repository: GitRepository::github(&repo.owner, &repo.name),
        };
        match stack.vercel.create_project(&body).await {
            Ok(project) => Ok(project),
            Err(ProviderError::Conflict { .. }) => lookup(stack, name).await?.ok_or_else(|| {
                StepError::retryable(format!("Vercel said {name} exists but cannot find it yet"))
            }),
            Err(e) => Err(provider_failure(
                &format!("create Vercel project {name}"),
                e,
            )),
        }
    }

    /// The project's production deployment: the newest one that has not failed, else a new
    /// one from the default branch. A repeat (crash, re-provision) finds the first instead of
    /// deploying again.
    async fn deployment(
        &self,
        project: &Project,
        repo: &GithubRepo,
    ) -> Result<(String, String), StepError> {
        let stack = &self.stack;
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

    async fn wait_until_ready(&self, deployment_id: &str) -> Result<(), StepError> {
        let timeout = Duration::from_secs(self.stack.settings.vercel.deploy_timeout_secs);
        let deadline = Instant::now() + timeout;
        let mut delays = poll_delays(Duration::from_secs(2));
        loop {
            let deployment = self
                .stack
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
impl Step for VercelProjectStep {
    type Input = Client;
    type Output = VercelProject;

    fn name(&self) -> &'static str {
        NAME
    }

    fn policy(&self) -> StepPolicy {
        StepPolicy {
            action: RetryPolicy {
                timeout: Duration::from_secs(self.stack.settings.vercel.deploy_timeout_secs + 120),
                ..RetryPolicy::default()
            },
            undo: StepPolicy::default().undo,
        }
    }

    async fn action(&self, ctx: &StepContext<'_, Client>) -> Result<VercelProject, StepError> {
        let supabase: SupabaseProject = ctx.output(supabase_project::NAME)?;
        let repo: GithubRepo = ctx.output(github_repo::NAME)?;
        let stack = &self.stack;
        let name = project_name(&ctx.input().client_id);
        let (project, adopted) = match lookup(stack, &name).await? {
            Some(project) if project.linked_to(&repo.owner, &repo.name) => {
                let ours =
                    created_by_run(project.created_at.and_then(time_from_millis), ctx.run_id());
                (project, !ours)
            }
            Some(_) => {
                return Err(StepError::permanent(format!(
                    "Vercel project {name} exists but is not linked to {}; rename or delete it, then retry the run",
                    repo.full_name
                )));
            }
            None => (self.create(&name, &repo).await?, false),
        };
        let app_url = app_url(&project.name);
        stack
            .vercel
            .upsert_env(&project.id, &environment(&supabase, &app_url))
            .await
            .map_err(|e| provider_failure(&format!("set environment of {name}"), e))?;
        let (deployment_id, deployment_url) = self.deployment(&project, &repo).await?;
        let ready = stack.settings.vercel.wait_for_ready;
        if ready {
            self.wait_until_ready(&deployment_id).await?;
        }
        Ok(VercelProject {
            project_id: project.id,
            name: project.name,
            deployment_url: format!("https://{deployment_url}"),
            deployment_id,
            app_url,
            ready,
            adopted,
        })
    }

    async fn undo(
        &self,
        ctx: &StepContext<'_, Client>,
        output: Option<VercelProject>,
    ) -> Result<(), StepError> {
        match output {
            Some(project) if project.adopted => Ok(()),
            Some(project) => delete(&self.stack, &project.project_id).await,
            None => {
                let name = project_name(&ctx.input().client_id);
                match lookup(&self.stack, &name).await? {
                    Some(project)
                        if created_by_run(
                            project.created_at.and_then(time_from_millis),
                            ctx.run_id(),
                        ) =>
                    {
                        delete(&self.stack, &project.id).await
                    }
                    _ => Ok(()),
                }
            }
        }
    }
}

/// Deprovision: deletes `client-{slug}-app` (its env vars and deployments go with it).
#[derive(Debug, Clone, Copy, Default)]
pub struct VercelProjects;

#[async_trait]
impl Removal for VercelProjects {
    const STEP: &'static str = TEARDOWN;

    async fn remove_all(&self, stack: &Stack, slug: &ClientSlug) -> Result<Vec<String>, StepError> {
        let name = project_name(slug);
        let mut removed = Vec::new();
        if let Some(project) = lookup(stack, &name).await? {
            delete(stack, &project.id).await?;
            removed.push(format!("Vercel project {name} ({})", project.id));
        }
        Ok(removed)
    }
}
