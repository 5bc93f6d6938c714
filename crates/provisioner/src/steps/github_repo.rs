//! `github_repo`: the client's private repository `client-{slug}-app` in the agency's org,
//! generated from the template repository, waited on until its default branch exists
//! (generation is asynchronous and Vercel refuses an empty repository).
//!
//! The lookup is a direct `GET /repos/{org}/{name}`, or, while many runs look up at once, the
//! stack's shared listing of the org's repositories
//! ([`RepositoryLookups`](providers::github::RepositoryLookups)); an existing repository is
//! adopted only if it was generated from the expected template. A run marks the repository it generates with
//! its id at the end of the description ([`marker`]).

use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use providers::ProviderError;
use providers::github::{GenerateRepository, Repository};
use saga::{RetryPolicy, StepContext, StepError, StepPolicy};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{ProviderResource, Recorded, RunMark, parse_time, poll_delays, provider_failure};
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
    stack
        .github_repos
        .find(name)
        .await
        .map_err(|e| provider_failure(&format!("look up GitHub repository {name}"), e))
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

/// The words a run's repository description ends with: the run's marker. Names stay the
/// seed's, so a repository made by hand or by an earlier pipeline is found and adopted; only
/// the description says which run made it.
pub fn marker(run_id: Uuid) -> String {
    format!("provisioner run {run_id}")
}

/// The client's repository, as the shared lifecycle drives it. Marked by its description,
/// which the generate call takes (so the mark is there from the repository's first moment).
#[derive(Debug, Clone, Copy, Default)]
pub struct GithubRepos;

impl GithubRepos {
    async fn wait_for_branch(
        &self,
        stack: &Stack,
        repo: &Repository,
        branch: &str,
    ) -> Result<(), StepError> {
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
impl ProviderResource for GithubRepos {
    type Found = Repository;
    type Output = GithubRepo;

    const STEP: &'static str = NAME;
    const TEARDOWN: &'static str = TEARDOWN;

    fn policy(&self, stack: &Stack) -> StepPolicy {
        StepPolicy {
            action: RetryPolicy {
                timeout: Duration::from_secs(stack.settings.github.branch_timeout_secs + 120),
                ..RetryPolicy::default()
            },
            undo: StepPolicy::default().undo,
        }
    }

    async fn find(&self, stack: &Stack, slug: &ClientSlug) -> Result<Vec<Repository>, StepError> {
        Ok(lookup(stack, &repo_name(slug)).await?.into_iter().collect())
    }

    async fn create(
        &self,
        stack: &Stack,
        ctx: &StepContext<'_, Client>,
    ) -> Result<Repository, StepError> {
        let client = ctx.input();
        let name = repo_name(&client.client_id);
        let (owner, template) = &stack.env.github_template;
        let body = GenerateRepository {
            owner: stack.env.github_org.clone(),
            name: name.clone(),
            description: Some(format!(
                "App of {} ({}), {}",
                client.client_name,
                client.client_id,
                marker(ctx.run_id())
            )),
            private: true,
        };
        match stack
            .github
            .generate_from_template(owner, template, &body)
            .await
        {
            Ok(repo) => Ok(repo),
            // Made in the meantime, by someone else or by a lost attempt of ours: the next
            // attempt's lookup finds it and reads its mark.
            Err(ProviderError::Conflict { .. }) => Err(StepError::retry_after(
                Duration::from_secs(1),
                format!(
                    "GitHub says {name} exists although the lookup did not find it; looking again"
                ),
            )),
            Err(e) => Err(provider_failure(
                &format!("generate GitHub repository {name} from {owner}/{template}"),
                e,
            )),
        }
    }

    async fn made_by(
        &self,
        _: &Stack,
        repo: &Repository,
        mark: &RunMark,
    ) -> Result<bool, StepError> {
        let marker = marker(mark.run_id);
        Ok(repo
            .description
            .as_deref()
            .is_some_and(|d| d.ends_with(&marker)))
    }

    fn check_adoptable(
        &self,
        stack: &Stack,
        _: &StepContext<'_, Client>,
        repo: &Repository,
    ) -> Result<(), StepError> {
        let (owner, template) = &stack.env.github_template;
        if repo.generated_from(owner, template) {
            Ok(())
        } else {
            Err(StepError::permanent(format!(
                "GitHub repository {} exists but was not generated from {owner}/{template}; rename or delete it, then retry the run",
                repo.full_name
            )))
        }
    }

    async fn complete(
        &self,
        stack: &Stack,
        _: &StepContext<'_, Client>,
        repo: Repository,
        adopted: bool,
    ) -> Result<GithubRepo, StepError> {
        let branch = repo
            .default_branch
            .clone()
            .unwrap_or_else(|| "main".to_owned());
        self.wait_for_branch(stack, &repo, &branch).await?;
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

    fn id(&self, repo: &Repository) -> String {
        repo.name.clone()
    }

    fn created_at(&self, repo: &Repository) -> Option<DateTime<Utc>> {
        repo.created_at.as_deref().and_then(parse_time)
    }

    fn describe(&self, repo: &Repository) -> String {
        format!("GitHub repository {}", repo.full_name)
    }

    fn recorded(&self, output: &GithubRepo) -> Recorded {
        Recorded {
            adopted: output.adopted,
            id: output.name.clone(),
        }
    }

    async fn delete(&self, stack: &Stack, name: &str) -> Result<(), StepError> {
        delete(stack, name).await
    }
}
