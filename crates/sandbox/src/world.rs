//! The state all four simulators share: one world, because the providers depend on each other
//! (Vercel links only repositories that exist on the GitHub simulator and are not empty).

use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use crate::config::SandboxConfig;
use crate::faults::Faults;
use crate::project_db::ProjectDatabases;
use crate::request_log::RequestLog;
use crate::{SandboxUrls, github, n8n, supabase, vercel};

#[derive(Debug)]
pub(crate) struct World {
    pub(crate) supabase: supabase::State,
    pub(crate) github: github::State,
    pub(crate) vercel: vercel::State,
    pub(crate) n8n: n8n::State,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: SandboxConfig,
    pub(crate) urls: SandboxUrls,
    pub(crate) faults: Faults,
    pub(crate) log: RequestLog,
    pub(crate) databases: Option<ProjectDatabases>,
    world: Mutex<World>,
}

impl Shared {
    pub(crate) fn new(
        config: SandboxConfig,
        urls: SandboxUrls,
        databases: Option<ProjectDatabases>,
    ) -> Self {
        let now = Instant::now();
        let world = World {
            supabase: supabase::State::default(),
            github: github::State::new(&config, &urls, now),
            vercel: vercel::State::default(),
            n8n: n8n::State::default(),
        };
        let faults = Faults::default();
        for rule in &config.faults {
            faults.add(rule.clone());
        }
        Self {
            config,
            urls,
            faults,
            log: RequestLog::default(),
            databases,
            world: Mutex::new(world),
        }
    }

    /// The world, locked. Never held across an `.await`.
    pub(crate) fn world(&self) -> MutexGuard<'_, World> {
        // Handlers mutate the world in short, non-panicking sections; a poisoned lock means a
        // bug elsewhere already failed a test, and the state is still usable.
        self.world
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
