//! The two sagas of a client stack, declared in one place so the DAG reads like DESIGN §1.
//!
//! provision:   supabase_project ─┬─ database_schema
//!              github_repo ──────┴─ vercel_project ─┬─ auth_urls
//!                                                   └─ vercel_domain
//!              n8n_workflow,  n8n_modules
//!              (auth_urls also reads supabase_project's output; the client's domain name is
//!              deterministic, so auth_urls does not wait for vercel_domain.)
//! deprovision: the same graph reversed: the client's domain, then the Vercel project, go
//!              before the repository and the Supabase project it is wired to; the n8n
//!              workflows (main and modules) stand alone. Every step is forward-only.

use std::sync::Arc;

use saga::{DefinitionError, Registry, SagaDefinition};

use crate::client::{Client, Teardown};
use crate::stack::Stack;
use crate::steps::auth_urls::AuthUrlsStep;
use crate::steps::database_schema::DatabaseSchemaStep;
use crate::steps::github_repo::{self, GithubRepos};
use crate::steps::lifecycle::TeardownV1;
use crate::steps::n8n_modules::{N8nModulesStep, N8nModulesTeardown};
use crate::steps::n8n_workflow::N8nWorkflows;
use crate::steps::supabase_project::{self, SupabaseProjects};
use crate::steps::vercel_domain::{self, VercelDomainStep, VercelDomainTeardown};
use crate::steps::vercel_project::{self, VercelProjects};
use crate::steps::{ResourceStep, TeardownStep};

pub const PROVISION: &str = "provision";
pub const DEPROVISION: &str = "deprovision";

/// Bump when a step is added, removed or rewired; keep registering the old version while
/// runs started under it may still be in flight.
/// 2: `auth_urls` and `vercel_domain` after `vercel_project`; the module workflows
///    (`n8n_modules`) alone.
pub const PROVISION_VERSION: u32 = 2;
/// 2: the teardown steps are forward-only (version 1's undo deleted once more).
/// 3: the client's domain is removed before its Vercel project; the module workflows are
///    deleted too.
pub const DEPROVISION_VERSION: u32 = 3;

pub fn provision(stack: &Arc<Stack>) -> Result<SagaDefinition, DefinitionError> {
    SagaDefinition::builder::<Client>(PROVISION, PROVISION_VERSION)
        .step(ResourceStep::new(stack, SupabaseProjects), &[])
        .step(ResourceStep::new(stack, GithubRepos), &[])
        .step(ResourceStep::new(stack, N8nWorkflows), &[])
        .step(N8nModulesStep::new(stack), &[])
        .step(
            DatabaseSchemaStep {
                stack: Arc::clone(stack),
            },
            &[supabase_project::NAME],
        )
        .step(
            ResourceStep::new(stack, VercelProjects),
            &[supabase_project::NAME, github_repo::NAME],
        )
        .step(
            AuthUrlsStep {
                stack: Arc::clone(stack),
            },
            &[supabase_project::NAME, vercel_project::NAME],
        )
        .step(VercelDomainStep::new(stack), &[vercel_project::NAME])
        .build()
}

/// Version 1 of the provision saga (the five resources), registered so that runs started
/// under it finish.
fn provision_v1(stack: &Arc<Stack>) -> Result<SagaDefinition, DefinitionError> {
    SagaDefinition::builder::<Client>(PROVISION, 1)
        .step(ResourceStep::new(stack, SupabaseProjects), &[])
        .step(ResourceStep::new(stack, GithubRepos), &[])
        .step(ResourceStep::new(stack, N8nWorkflows), &[])
        .step(
            DatabaseSchemaStep {
                stack: Arc::clone(stack),
            },
            &[supabase_project::NAME],
        )
        .step(
            ResourceStep::new(stack, VercelProjects),
            &[supabase_project::NAME, github_repo::NAME],
        )
        .build()
}

/// Forward-only: a deletion has nothing to undo. A teardown that cannot finish parks the run
/// in needs_attention naming the steps whose resources are left; `retry` runs them again.
pub fn deprovision(stack: &Arc<Stack>) -> Result<SagaDefinition, DefinitionError> {
    SagaDefinition::builder::<Teardown>(DEPROVISION, DEPROVISION_VERSION)
        .forward_step(TeardownStep::new(stack, N8nWorkflows), &[])
        .forward_step(N8nModulesTeardown::new(stack), &[])
        .forward_step(VercelDomainTeardown::new(stack), &[])
        .forward_step(
            TeardownStep::new(stack, VercelProjects),
            &[vercel_domain::TEARDOWN],
        )
        .forward_step(
            TeardownStep::new(stack, GithubRepos),
            &[vercel_project::TEARDOWN],
        )
        .forward_step(
            TeardownStep::new(stack, SupabaseProjects),
            &[vercel_project::TEARDOWN],
        )
        .build()
}

/// Version 2 of the deprovision saga (no domain or module-workflow steps), registered so that
/// runs started under it finish.
fn deprovision_v2(stack: &Arc<Stack>) -> Result<SagaDefinition, DefinitionError> {
    SagaDefinition::builder::<Teardown>(DEPROVISION, 2)
        .forward_step(TeardownStep::new(stack, N8nWorkflows), &[])
        .forward_step(TeardownStep::new(stack, VercelProjects), &[])
        .forward_step(
            TeardownStep::new(stack, GithubRepos),
            &[vercel_project::TEARDOWN],
        )
        .forward_step(
            TeardownStep::new(stack, SupabaseProjects),
            &[vercel_project::TEARDOWN],
        )
        .build()
}

/// Version 1 of the deprovision saga, registered so that runs started under it finish (and a
/// parked one can be retried: its undo deletes again).
fn deprovision_v1(stack: &Arc<Stack>) -> Result<SagaDefinition, DefinitionError> {
    SagaDefinition::builder::<Teardown>(DEPROVISION, 1)
        .step(TeardownV1(TeardownStep::new(stack, N8nWorkflows)), &[])
        .step(TeardownV1(TeardownStep::new(stack, VercelProjects)), &[])
        .step(
            TeardownV1(TeardownStep::new(stack, GithubRepos)),
            &[vercel_project::TEARDOWN],
        )
        .step(
            TeardownV1(TeardownStep::new(stack, SupabaseProjects)),
            &[vercel_project::TEARDOWN],
        )
        .build()
}

/// Every saga (provision, deprovision and the fleet's migration rollouts, see
/// [`crate::migrate`]), as the engine needs them to start new runs and finish old ones.
pub fn registry(stack: &Arc<Stack>) -> Result<Registry, DefinitionError> {
    Registry::new()
        .with(crate::migrate::definition(stack)?)?
        .with(provision_v1(stack)?)?
        .with(provision(stack)?)?
        .with(deprovision_v1(stack)?)?
        .with(deprovision_v2(stack)?)?
        .with(deprovision(stack)?)
}

/// The idempotency key of a client's provision or deprovision run in `generation` (how many
/// teardowns of the client succeeded before it).
pub fn run_key(saga: &str, slug: &crate::client::ClientSlug, generation: u32) -> String {
    format!("{saga}:{slug}:{generation}")
}

/// The key of the client's provision run `revision` within `generation`. Revision 0 is the
/// generation's first provisioning ([`run_key`]); each later one provisions the client again
/// with more modules (`App::provision`), adopting what the earlier ones made.
pub fn provision_key(slug: &crate::client::ClientSlug, generation: u32, revision: u32) -> String {
    let first = run_key(PROVISION, slug, generation);
    match revision {
        0 => first,
        r => format!("{first}:{r}"),
    }
}

// Steps each saga must contain, by name; a rename breaks recorded runs, so it is checked.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::{auth_urls, database_schema, n8n_modules, n8n_workflow};

    #[test]
    fn a_revision_keeps_the_key_shape_saga_slug_generation() {
        let slug = crate::client::ClientSlug::parse("acme-dental").unwrap();
        assert_eq!(provision_key(&slug, 2, 0), run_key(PROVISION, &slug, 2));
        assert_eq!(provision_key(&slug, 2, 1), "provision:acme-dental:2:1");
        // Listings read the client from the second field of any key.
        assert_eq!(
            provision_key(&slug, 0, 3).split(':').nth(1),
            Some("acme-dental")
        );
    }

    #[test]
    fn step_names_are_stable() {
        assert_eq!(supabase_project::NAME, "supabase_project");
        assert_eq!(database_schema::NAME, "database_schema");
        assert_eq!(github_repo::NAME, "github_repo");
        assert_eq!(vercel_project::NAME, "vercel_project");
        assert_eq!(n8n_workflow::NAME, "n8n_workflow");
        assert_eq!(auth_urls::NAME, "auth_urls");
        assert_eq!(vercel_domain::NAME, "vercel_domain");
        assert_eq!(vercel_domain::TEARDOWN, "delete_vercel_domain");
        assert_eq!(n8n_modules::NAME, "n8n_modules");
        assert_eq!(n8n_modules::TEARDOWN, "delete_n8n_module_workflows");
    }
}
