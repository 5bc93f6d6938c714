//! `supabase_project`: the client's Supabase project `client-{slug}-prod` in the configured
//! org, region and instance size, waited on until ACTIVE_HEALTHY, with its API keys.
//!
//! Supabase allows duplicate project names and has no idempotency key, so the action always
//! looks the org's projects up by exact name before creating: a repeat after a lost response
//! or a crash adopts the project the first attempt made. Lookups, readiness waits and the
//! database host all come from the stack's one shared project listing
//! ([`ProjectListing`](providers::ProjectListing)): with many runs at once, one call per
//! interval answers them all, and a lookup is only answered by a listing that started after
//! it asked.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use providers::supabase::ProjectWait;
use providers::supabase::{CreateProject, Project, RegionSelection};
use providers::{ProviderError, ReadinessOutcome};
use saga::{RetryPolicy, Secret, StepContext, StepError, StepPolicy};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use super::{ProviderResource, Recorded, RunMark, parse_time, provider_failure};
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
async fn lookup(stack: &Stack, name: &str) -> Result<Vec<Project>, StepError> {
    stack
        .supabase_projects
        .find_by_name(&stack.env.supabase_org_slug, name)
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

/// The client's Supabase project, as the shared lifecycle drives it. Supabase's create body
/// has no field a run could mark its project with (name, organization, password, region, size
/// and a template URL), so ownership is the time test, bounded to this step's own attempts.
#[derive(Debug, Clone, Copy, Default)]
pub struct SupabaseProjects;

impl SupabaseProjects {
    async fn check_region(&self, stack: &Stack) -> Result<(), StepError> {
        let region = &stack.settings.supabase.region;
        let offered = stack
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

    /// Waits until the project is ACTIVE_HEALTHY; the answer carries the listing that said
    /// so, which also holds the project's database host and its namesakes.
    async fn wait_until_ready(
        &self,
        stack: &Stack,
        project_ref: &str,
        name: &str,
    ) -> Result<ProjectWait, StepError> {
        let org = &stack.env.supabase_org_slug;
        let timeout = stack.settings.ready_timeout();
        let wait = stack
            .supabase_projects
            .wait_with_listing(org, project_ref, timeout)
            .await
            .map_err(|e| provider_failure("wait for the Supabase project", e))?;
        match wait.outcome {
            ReadinessOutcome::Ready => Ok(wait),
            ReadinessOutcome::Failed { status } => Err(StepError::permanent(format!(
                "Supabase project {name} ({project_ref}) ended in {} and will never become ready; the run removes it",
                api_spelling(status)
            ))),
            ReadinessOutcome::TimedOut { last_status } => Err(StepError::permanent(format!(
                "Supabase project {name} ({project_ref}) was not ACTIVE_HEALTHY after {} s (last status {}); Supabase may be degraded: retry the run later or raise supabase.ready_timeout_secs",
                timeout.as_secs(),
                last_status.map_or("unknown".to_owned(), api_spelling)
            ))),
        }
    }
}

#[async_trait]
impl ProviderResource for SupabaseProjects {
    type Found = Project;
    type Output = SupabaseProject;

    const STEP: &'static str = NAME;
    const TEARDOWN: &'static str = TEARDOWN;

    fn policy(&self, stack: &Stack) -> StepPolicy {
        let ready = stack.settings.ready_timeout();
        StepPolicy {
            action: RetryPolicy {
                // One attempt includes the wait for ACTIVE_HEALTHY.
                timeout: ready + Duration::from_secs(120),
                max_attempts: 8,
                ..RetryPolicy::default()
            },
            undo: not_ready_for_deletion(),
        }
    }

    fn teardown_policy(&self) -> RetryPolicy {
        not_ready_for_deletion()
    }

    async fn find(&self, stack: &Stack, slug: &ClientSlug) -> Result<Vec<Project>, StepError> {
        lookup(stack, &project_name(slug)).await
    }

    async fn create(
        &self,
        stack: &Stack,
        ctx: &StepContext<'_, Client>,
    ) -> Result<Project, StepError> {
        self.check_region(stack).await?;
        let client = ctx.input();
        let name = project_name(&client.client_id);
        let body = CreateProject {
            name: name.clone(),
            organization_slug: stack.env.supabase_org_slug.clone(),
            db_pass: stack.database_password(&name),
            region_selection: Some(RegionSelection::Specific {
                code: stack.settings.supabase.region.clone(),
            }),
            desired_instance_size: Some(stack.settings.instance_size(client.tier).to_owned()),
        };
        match stack.supabase.create_project(&body).await {
            // The create's answer carries what the lookup's would (ref, name, region, creation
            // time); the database host comes with the readiness listing later.
            Ok(project) => Ok(project),
            // The project may exist although the answer was lost: the retry looks it up.
            Err(e) => Err(provider_failure(
                &format!("create Supabase project {name}"),
                e,
            )),
        }
    }

    async fn made_by(&self, _: &Stack, found: &Project, mark: &RunMark) -> Result<bool, StepError> {
        Ok(mark.made_during_attempts(self.created_at(found)))
    }

    async fn complete(
        &self,
        stack: &Stack,
        ctx: &StepContext<'_, Client>,
        found: Project,
        adopted: bool,
    ) -> Result<SupabaseProject, StepError> {
        let name = project_name(&ctx.input().client_id);
        let project_ref = found.project_ref;
        let wait = self.wait_until_ready(stack, &project_ref, &name).await?;
        let keys = stack
            .supabase
            .api_keys(&project_ref)
            .await
            .map_err(|e| provider_failure(&format!("read API keys of {project_ref}"), e))?;
        // The listing that said "ready" started after this attempt's create, so it shows every
        // project of the name that exists by then.
        if !adopted && wait.named(&stack.env.supabase_org_slug, &name).len() > 1 {
            // Supabase has no idempotency key, so an earlier attempt's create can land after
            // this attempt's lookup; the next attempt keeps one project and removes the rest.
            return Err(StepError::retry_after(
                Duration::from_secs(1),
                format!(
                    "a second Supabase project named {name} appeared while this attempt created one"
                ),
            ));
        }
        let listed = wait.project(&project_ref);
        let region = listed.map_or(found.region, |p| p.region.clone());
        let db_host = listed
            .and_then(|p| p.database.as_ref())
            .map(|d| d.host.clone())
            .unwrap_or_else(|| format!("db.{project_ref}.supabase.co"));
        Ok(SupabaseProject {
            api_url: api_url(&project_ref),
            project_ref,
            db_password: Secret::new(stack.database_password(&name).expose_secret().to_owned()),
            name,
            region,
            db_host,
            adopted,
            anon_key: Secret::new(keys.anon.expose_secret().to_owned()),
            service_role_key: Secret::new(keys.service_role.expose_secret().to_owned()),
        })
    }

    fn id(&self, found: &Project) -> String {
        found.project_ref.clone()
    }

    fn created_at(&self, found: &Project) -> Option<DateTime<Utc>> {
        parse_time(&found.created_at)
    }

    fn describe(&self, found: &Project) -> String {
        format!("Supabase project {} ({})", found.name, found.project_ref)
    }

    fn recorded(&self, output: &SupabaseProject) -> Recorded {
        Recorded {
            adopted: output.adopted,
            id: output.project_ref.clone(),
        }
    }

    async fn delete(&self, stack: &Stack, project_ref: &str) -> Result<(), StepError> {
        delete(stack, project_ref).await
    }
}

/// Deletes fail with "not ready for deletion" while a project is still coming up.
fn not_ready_for_deletion() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 30,
        backoff_cap: Duration::from_secs(30),
        ..RetryPolicy::default()
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
