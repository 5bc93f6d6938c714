//! The state all four simulators share: one world, because the providers depend on each other
//! (Vercel links only repositories that exist on the GitHub simulator and are not empty).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
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
    /// Project creations still running on their own tasks (their callers may be gone).
    pub(crate) creations: CreationsInProgress,
    world: Mutex<World>,
}

/// Counts creations that outlive their request, so a test can wait for what a dead caller
/// sent to land before it looks at the world.
#[derive(Debug, Default)]
pub(crate) struct CreationsInProgress(AtomicUsize);

impl CreationsInProgress {
    pub(crate) fn count(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

/// Held for as long as one creation runs.
pub(crate) struct CreationGuard(Arc<Shared>);

impl Drop for CreationGuard {
    fn drop(&mut self) {
        self.0.creations.0.fetch_sub(1, Ordering::AcqRel);
    }
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
            creations: CreationsInProgress::default(),
            world: Mutex::new(world),
        }
    }

    pub(crate) fn creation_started(self: &Arc<Self>) -> CreationGuard {
        self.creations.0.fetch_add(1, Ordering::AcqRel);
        CreationGuard(Arc::clone(self))
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
