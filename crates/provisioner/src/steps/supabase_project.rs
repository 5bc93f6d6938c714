//! `supabase_project`: the client's Supabase project `client-{slug}-prod` in the configured
//! org, region and instance size, waited on until ACTIVE_HEALTHY, with its API keys.
//!
//! Supabase allows duplicate project names and has no idempotency key, so the action always
//! lists the org's projects by exact name before creating: a repeat after a lost response or
//! a crash adopts the project the first attempt made.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use providers::supabase::{CreateProject, OrganizationProject, RegionSelection};
use providers::{ProviderError, ReadinessOutcome};
use saga::{RetryPolicy, Secret, Step, StepContext, StepError, StepPolicy};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use super::{Removal, created_by_run, parse_time, provider_failure};
use crate::client::{Client, ClientSlug};
use crate::stack::Stack;

pub const NAME: &str = "supabase_project";
pub const TEARDOWN: &str = "delete_supabase_project";

pub fn project_name(slug: &ClientSlug) -> String {
    format!("client-{slug}-prod")
}

/// Supabase derives a project's API URL from its ref; the Management API does not return it.
pub fn api_url(project_ref: &str) -> String {
    format!("https://{project_ref}.supabase.co")
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SupabaseProject {
    pub project_ref: String,
    pub name: String,
    pub region: String,
    pub api_url: String,
    pub db_host: String,
    /// It existed before this run; an undo leaves it alone.
    pub adopted: bool,
    pub db_password: Secret<String>,
    pub anon_key: Secret<String>,
    pub service_role_key: Secret<String>,
}

/// Every project of the org named exactly `name`.
async fn lookup(stack: &Stack, name: &str) -> Result<Vec<OrganizationProject>, StepError> {
    stack
        .supabase
        .find_projects_by_name(&stack.env.supabase_org_slug, name)
        .await
        .map_err(|e| provider_failure(&format!("look up Supabase project {name}"), e))
}

/// Deletes one project; gone already counts as deleted, "not ready for deletion" is retried.
async fn delete(stack: &Stack, project_ref: &str) -> Result<(), StepError> {
    match stack.supabase.delete_project(project_ref).await {
        Ok(_) | Err(ProviderError::NotFound) => Ok(()),
        Err(e) => Err(provider_failure(
            &format!("delete Supabase project {project_ref}"),
            e,
        )),
    }
}

/// A status as the Management API spells it (`COMING_UP`), for messages operators compare
/// with Supabase's dashboard.
fn api_spelling(status: providers::supabase::ProjectStatus) -> String {
    let mut out = String::new();
    for (i, c) in format!("{status:?}").chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

#[derive(Debug, Clone)]
pub struct SupabaseProjectStep {
    pub stack: Arc<Stack>,
}

impl SupabaseProjectStep {
    async fn check_region(&self) -> Result<(), StepError> {
        let region = &self.stack.settings.supabase.region;
        let offered = self
            .stack
            .offered_regions()
            .await
            .map_err(|e| provider_failure("list Supabase regions", e))?;
        if offered.iter().any(|r| r == region) {
            Ok(())
        } else {
            Err(StepError::permanent(format!(
                "region {region:?} is not offered to this organization; set supabase.region to one of {}",
                offered.join(", ")
            )))
        }
    }

    async fn create(&self, client: &Client, name: &str) -> Result<String, StepError> {
        self.check_region().await?;
        let stack = &self.stack;
        let body = CreateProject {
            name: name.to_owned(),
            organization_slug: stack.env.supabase_org_slug.clone(),
            db_pass: stack.database_password(name),
            region_selection: Some(RegionSelection::Specific {
                code: stack.settings.supabase.region.clone(),
            }),
            desired_instance_size: Some(stack.settings.instance_size(client.tier).to_owned()),
        };
        match stack.supabase.create_project(&body).await {
            Ok(project) => Ok(project.project_ref),
            // The project may exist although the answer was lost: the retry looks it up.
            Err(e) => Err(provider_failure(
                &format!("create Supabase project {name}"),
                e,
            )),
        }
    }
}

#[async_trait]
impl Step for SupabaseProjectStep {
    type Input = Client;
    type Output = SupabaseProject;

    fn name(&self) -> &'static str {
        NAME
    }

    fn policy(&self) -> StepPolicy {
        let ready = self.stack.settings.ready_timeout();
        StepPolicy {
            action: RetryPolicy {
                // One attempt includes the wait for ACTIVE_HEALTHY.
                timeout: ready + Duration::from_secs(120),
                max_attempts: 8,
                ..RetryPolicy::default()
            },
            // Deletes fail with "not ready for deletion" while the project is still coming up.
            undo: RetryPolicy {
                max_attempts: 30,
                backoff_cap: Duration::from_secs(30),
                ..RetryPolicy::default()
            },
        }
    }

    async fn action(&self, ctx: &StepContext<'_, Client>) -> Result<SupabaseProject, StepError> {
        let client = ctx.input();
        let stack = &self.stack;
        let name = project_name(&client.client_id);
        let found = lookup(stack, &name).await?;
        let (project_ref, adopted) = match found.as_slice() {
            [] => (self.create(client, &name).await?, false),
            [one] => (
                one.project_ref.clone(),
                !created_by_run(
                    one.inserted_at.as_deref().and_then(parse_time),
                    ctx.run_id(),
                ),
            ),
            many if many.iter().all(|p| {
                created_by_run(p.inserted_at.as_deref().and_then(parse_time), ctx.run_id())
            }) =>
            {
                // Every one is this run's: an earlier attempt's create went on at Supabase after
                // its caller gave up (a lost answer, a dead worker). Keep the oldest, remove the
                // rest; one still coming up answers "not ready for deletion" and this attempt
                // is retried.
                let keep = many
                    .iter()
                    .min_by_key(|p| {
                        let created = p.inserted_at.as_deref().and_then(parse_time);
                        (created, p.project_ref.clone())
                    })
                    .map(|p| p.project_ref.clone())
                    .unwrap_or_default();
                for extra in many.iter().filter(|p| p.project_ref != keep) {
                    delete(stack, &extra.project_ref).await?;
                }
                (keep, false)
            }
            many => {
                return Err(StepError::permanent(format!(
                    "{} Supabase projects are named {name} (refs {}); delete the extra ones, then retry the run",
                    many.len(),
                    many.iter()
                        .map(|p| p.project_ref.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        };

        let org = &stack.env.supabase_org_slug;
        let timeout = stack.settings.ready_timeout();
        match stack.readiness.wait(org, &project_ref, timeout).await {
            Ok(ReadinessOutcome::Ready) => {}
            Ok(ReadinessOutcome::Failed { status }) => {
                return Err(StepError::permanent(format!(
                    "Supabase project {name} ({project_ref}) ended in {} and will never become ready; the run removes it",
                    api_spelling(status)
                )));
            }
            Ok(ReadinessOutcome::TimedOut { last_status }) => {
                return Err(StepError::permanent(format!(
                    "Supabase project {name} ({project_ref}) was not ACTIVE_HEALTHY after {} s (last status {}); Supabase may be degraded: retry the run later or raise supabase.ready_timeout_secs",
                    timeout.as_secs(),
                    last_status.map_or("unknown".to_owned(), api_spelling)
                )));
            }
            Err(e) => return Err(provider_failure("wait for the Supabase project", e)),
        }

        let project = stack
            .supabase
            .get_project(&project_ref)
            .await
            .map_err(|e| provider_failure(&format!("read Supabase project {project_ref}"), e))?;
        let keys = stack
            .supabase
            .api_keys(&project_ref)
            .await
            .map_err(|e| provider_failure(&format!("read API keys of {project_ref}"), e))?;
        if !adopted && lookup(stack, &name).await?.len() > 1 {
            // Supabase has no idempotency key, so an earlier attempt's create can land after
            // this attempt's lookup; the next attempt keeps one project and removes the rest.
            return Err(StepError::retry_after(
                Duration::from_secs(1),
                format!(
                    "a second Supabase project named {name} appeared while this attempt created one"
                ),
            ));
        }
        let db_host = project
            .database
            .map(|d| d.host)
            .unwrap_or_else(|| format!("db.{project_ref}.supabase.co"));
        Ok(SupabaseProject {
            api_url: api_url(&project_ref),
            project_ref,
            name,
            region: project.region,
            db_host,
            adopted,
            db_password: Secret::new(
                stack
                    .database_password(&project.name)
                    .expose_secret()
                    .to_owned(),
            ),
            anon_key: Secret::new(keys.anon.expose_secret().to_owned()),
            service_role_key: Secret::new(keys.service_role.expose_secret().to_owned()),
        })
    }

    async fn undo(
        &self,
        ctx: &StepContext<'_, Client>,
        output: Option<SupabaseProject>,
    ) -> Result<(), StepError> {
        match output {
            Some(project) if project.adopted => Ok(()),
            Some(project) => delete(&self.stack, &project.project_ref).await,
            None => {
                let name = project_name(&ctx.input().client_id);
                for project in lookup(&self.stack, &name).await? {
                    let created = project.inserted_at.as_deref().and_then(parse_time);
                    if created_by_run(created, ctx.run_id()) {
                        delete(&self.stack, &project.project_ref).await?;
                    }
                }
                Ok(())
            }
        }
    }
}

/// Deprovision: deletes every project of the org named `client-{slug}-prod`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SupabaseProjects;

#[async_trait]
impl Removal for SupabaseProjects {
    const STEP: &'static str = TEARDOWN;

    fn policy(&self) -> StepPolicy {
        // Deletes fail with "not ready for deletion" while a project is still coming up.
        StepPolicy::uniform(RetryPolicy {
            max_attempts: 30,
            backoff_cap: Duration::from_secs(30),
            ..RetryPolicy::default()
        })
    }

    async fn remove_all(&self, stack: &Stack, slug: &ClientSlug) -> Result<Vec<String>, StepError> {
        let name = project_name(slug);
        let mut removed = Vec::new();
        for project in lookup(stack, &name).await? {
            delete(stack, &project.project_ref).await?;
            removed.push(format!("Supabase project {name} ({})", project.project_ref));
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use providers::supabase::ProjectStatus;

    #[test]
    fn statuses_are_spelled_as_the_api_spells_them() {
        assert_eq!(api_spelling(ProjectStatus::ComingUp), "COMING_UP");
        assert_eq!(api_spelling(ProjectStatus::InitFailed), "INIT_FAILED");
        assert_eq!(api_spelling(ProjectStatus::ActiveHealthy), "ACTIVE_HEALTHY");
    }
}
