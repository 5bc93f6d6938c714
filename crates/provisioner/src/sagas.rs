//! The two sagas of a client stack, declared in one place so the DAG reads like DESIGN §1.
//!
//! provision:   supabase_project ─┬─ database_schema
//!              github_repo ──────┴─ vercel_project
//!              n8n_workflow
//! deprovision: the same graph reversed: the Vercel project goes before the repository and the
//!              Supabase project it is wired to; the n8n workflow stands alone.

use std::sync::Arc;

use saga::{DefinitionError, Registry, SagaDefinition};

use crate::client::{Client, Teardown};
use crate::stack::Stack;
use crate::steps::TeardownStep;
use crate::steps::database_schema::DatabaseSchemaStep;
use crate::steps::github_repo::{self, GithubRepoStep, GithubRepos};
use crate::steps::n8n_workflow::{N8nWorkflowStep, N8nWorkflows};
use crate::steps::supabase_project::{self, SupabaseProjectStep, SupabaseProjects};
use crate::steps::vercel_project::{self, VercelProjectStep, VercelProjects};

pub const PROVISION: &str = "provision";
pub const DEPROVISION: &str = "deprovision";

/// Bump when a step is added, removed or rewired; keep registering the old version while
/// runs started under it may still be in flight.
pub const PROVISION_VERSION: u32 = 1;
pub const DEPROVISION_VERSION: u32 = 1;

pub fn provision(stack: &Arc<Stack>) -> Result<SagaDefinition, DefinitionError> {
    let stack = || Arc::clone(stack);
    SagaDefinition::builder::<Client>(PROVISION, PROVISION_VERSION)
        .step(SupabaseProjectStep { stack: stack() }, &[])
        .step(GithubRepoStep { stack: stack() }, &[])
        .step(N8nWorkflowStep { stack: stack() }, &[])
        .step(
            DatabaseSchemaStep { stack: stack() },
            &[supabase_project::NAME],
        )
        .step(
            VercelProjectStep { stack: stack() },
            &[supabase_project::NAME, github_repo::NAME],
        )
        .build()
}

pub fn deprovision(stack: &Arc<Stack>) -> Result<SagaDefinition, DefinitionError> {
    SagaDefinition::builder::<Teardown>(DEPROVISION, DEPROVISION_VERSION)
        .step(TeardownStep::new(stack, N8nWorkflows), &[])
        .step(TeardownStep::new(stack, VercelProjects), &[])
        .step(
            TeardownStep::new(stack, GithubRepos),
            &[vercel_project::TEARDOWN],
        )
        .step(
            TeardownStep::new(stack, SupabaseProjects),
            &[vercel_project::TEARDOWN],
        )
        .build()
}

/// Both sagas, as the engine needs them to start new runs and finish old ones.
pub fn registry(stack: &Arc<Stack>) -> Result<Registry, DefinitionError> {
    Registry::new()
        .with(provision(stack)?)?
        .with(deprovision(stack)?)
}

/// The idempotency key of a client's provision or deprovision run in `generation` (how many
/// teardowns of the client succeeded before it).
pub fn run_key(saga: &str, slug: &crate::client::ClientSlug, generation: u32) -> String {
    format!("{saga}:{slug}:{generation}")
}

// Steps each saga must contain, by name; a rename breaks recorded runs, so it is checked.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::{database_schema, n8n_workflow};

    #[test]
    fn step_names_are_stable() {
        assert_eq!(supabase_project::NAME, "supabase_project");
        assert_eq!(database_schema::NAME, "database_schema");
        assert_eq!(github_repo::NAME, "github_repo");
        assert_eq!(vercel_project::NAME, "vercel_project");
        assert_eq!(n8n_workflow::NAME, "n8n_workflow");
    }
}
