//! `github_repo`: the client's private repository `client-{slug}-app` in the agency's org,
//! generated from the template repository, waited on until its default branch exists
//! (generation is asynchronous and Vercel refuses an empty repository).
//!
//! The lookup is a direct `GET /repos/{org}/{name}`; an existing repository is adopted only if
//! it was generated from the expected template.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use providers::ProviderError;
use providers::github::{GenerateRepository, Repository};
use saga::{RetryPolicy, Step, StepContext, StepError, StepPolicy};
use serde::{Deserialize, Serialize};

use super::{Removal, created_by_run, parse_time, poll_delays, provider_failure};
use crate::client::{Client, ClientSlug};
use crate::stack::Stack;

pub const NAME: &str = "github_repo";
pub const TEARDOWN: &str = "delete_github_repo";

pub fn repo_name(slug: &ClientSlug) -> String {
    format!("client-{slug}-app")
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GithubRepo {
    pub id: u64,
    pub owner: String,
    pub name: String,
    pub full_name: String,
    pub html_url: String,
    pub default_branch: String,
    pub adopted: bool,
}

async fn lookup(stack: &Stack, name: &str) -> Result<Option<Repository>, StepError> {
    match stack
        .github
        .get_repository(&stack.env.github_org, name)
        .await
    {
        Ok(repo) => Ok(Some(repo)),
        Err(ProviderError::NotFound) => Ok(None),
        Err(e) => Err(provider_failure(
            &format!("look up GitHub repository {name}"),
            e,
        )),
    }
}

async fn delete(stack: &Stack, name: &str) -> Result<(), StepError> {
    match stack
        .github
        .delete_repository(&stack.env.github_org, name)
        .await
    {
        Ok(()) | Err(ProviderError::NotFound) => Ok(()),
        Err(e) => Err(provider_failure(
            &format!("delete GitHub repository {name}"),
            e,
        )),
    }
}

#[derive(Debug, Clone)]
pub struct GithubRepoStep {
    pub stack: Arc<Stack>,
}

impl GithubRepoStep {
    fn check_origin(&self, repo: &Repository) -> Result<(), StepError> {
        let (owner, template) = &self.stack.env.github_template;
        if repo.generated_from(owner, template) {
            Ok(())
        } else {
            Err(StepError::permanent(format!(
                "GitHub repository {} exists but was not generated from {owner}/{template}; rename or delete it, then retry the run",
                repo.full_name
            )))
        }
    }

    async fn generate(&self, client: &Client, name: &str) -> Result<Repository, StepError> {
        let stack = &self.stack;
        let (owner, template) = &stack.env.github_template;
        let body = GenerateRepository {
            owner: stack.env.github_org.clone(),
            name: name.to_owned(),
            description: Some(format!(
                "App of {} ({}), provisioned by provisioner",
                client.client_name, client.client_id
            )),
            private: true,
        };
        match stack
            .github
            .generate_from_template(owner, template, &body)
            .await
        {
            Ok(repo) => Ok(repo),
            // Someone (or our own lost attempt) made it in the meantime: look again.
            Err(ProviderError::Conflict { .. }) => match lookup(stack, name).await? {
                Some(repo) => Ok(repo),
                None => Err(StepError::retryable(format!(
                    "GitHub said {name} exists but cannot find it yet"
                ))),
            },
            Err(e) => Err(provider_failure(
                &format!("generate GitHub repository {name} from {owner}/{template}"),
                e,
            )),
        }
    }

    async fn wait_for_branch(&self, repo: &Repository, branch: &str) -> Result<(), StepError> {
        let stack = &self.stack;
        let deadline =
            Instant::now() + Duration::from_secs(stack.settings.github.branch_timeout_secs);
        let mut delays = poll_delays(Duration::from_secs(2));
        loop {
            let exists = stack
                .github
                .branch_exists(&repo.owner.login, &repo.name, branch)
                .await
                .map_err(|e| {
                    provider_failure(&format!("read branch {branch} of {}", repo.full_name), e)
                })?;
            if exists {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(StepError::permanent(format!(
                    "GitHub repository {} still has no branch {branch} after {} s; check the template repository has that branch",
                    repo.full_name, stack.settings.github.branch_timeout_secs
                )));
            }
            tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(2))).await;
        }
    }
}

#[async_trait]
impl Step for GithubRepoStep {
    type Input = Client;
    type Output = GithubRepo;

    fn name(&self) -> &'static str {
        NAME
    }

    fn policy(&self) -> StepPolicy {
        StepPolicy {
            action: RetryPolicy {
                timeout: Duration::from_secs(self.stack.settings.github.branch_timeout_secs + 120),
                ..RetryPolicy::default()
            },
            undo: StepPolicy::default().undo,
        }
    }

    async fn action(&self, ctx: &StepContext<'_, Client>) -> Result<GithubRepo, StepError> {
        let client = ctx.input();
        let name = repo_name(&client.client_id);
        let (repo, adopted) = match lookup(&self.stack, &name).await? {
            Some(repo) => {
                self.check_origin(&repo)?;
                let ours = created_by_run(
                    repo.created_at.as_deref().and_then(parse_time),
                    ctx.run_id(),
                );
                (repo, !ours)
            }
            None => (self.generate(client, &name).await?, false),
        };
        let branch = repo
            .default_branch
            .clone()
            .unwrap_or_else(|| "main".to_owned());
        self.wait_for_branch(&repo, &branch).await?;
        Ok(GithubRepo {
            id: repo.id,
            owner: repo.owner.login.clone(),
            html_url: repo
                .html_url
                .clone()
                .unwrap_or_else(|| format!("https://github.com/{}", repo.full_name)),
            full_name: repo.full_name,
            name: repo.name,
            default_branch: branch,
            adopted,
        })
    }

    async fn undo(
        &self,
        ctx: &StepContext<'_, Client>,
        output: Option<GithubRepo>,
    ) -> Result<(), StepError> {
        match output {
            Some(repo) if repo.adopted => Ok(()),
            Some(repo) => delete(&self.stack, &repo.name).await,
            None => {
                let name = repo_name(&ctx.input().client_id);
                match lookup(&self.stack, &name).await? {
                    Some(repo)
                        if created_by_run(
                            repo.created_at.as_deref().and_then(parse_time),
                            ctx.run_id(),
                        ) =>
                    {
                        delete(&self.stack, &name).await
                    }
                    _ => Ok(()),
                }
            }
        }
    }
}

/// Deprovision: deletes `client-{slug}-app` from the org.
#[derive(Debug, Clone, Copy, Default)]
pub struct GithubRepos;

#[async_trait]
impl Removal for GithubRepos {
    const STEP: &'static str = TEARDOWN;

    async fn remove_all(&self, stack: &Stack, slug: &ClientSlug) -> Result<Vec<String>, StepError> {
        let name = repo_name(slug);
        let mut removed = Vec::new();
        if let Some(repo) = lookup(stack, &name).await? {
            delete(stack, &name).await?;
            removed.push(format!("GitHub repository {}", repo.full_name));
        }
        Ok(removed)
    }
}
