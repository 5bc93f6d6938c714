//! Coalesced waiting for Supabase projects to become ACTIVE_HEALTHY.
//!
//! Supabase allows about 120 requests a minute per scope (API-CONTRACTS §1.6), so one poll
//! loop per waiting run does not scale: 100 runs polling every 5 s would need 1,200 calls a
//! minute. Here every waiter registers its project ref; one loop per organization lists the
//! organization's projects (all pages) once per interval and answers every waiter from that
//! one listing, then stops when nobody waits.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::oneshot;

use super::{ProjectStatus, SupabaseClient};
use crate::error::{Provider, ProviderError};

/// How one wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadinessOutcome {
    /// The project is ACTIVE_HEALTHY.
    Ready,
    /// The project reached INIT_FAILED or REMOVED: it will never be ready.
    Failed { status: ProjectStatus },
    /// The wait's deadline passed; `last_status` is what the last listing said, if the project
    /// appeared in it at all.
    TimedOut { last_status: Option<ProjectStatus> },
}

type Answer = Result<ReadinessOutcome, ProviderError>;

#[derive(Debug, Default)]
struct OrganizationWaiters {
    waiters: HashMap<String, Vec<oneshot::Sender<Answer>>>,
    last_status: HashMap<String, ProjectStatus>,
}

#[derive(Debug)]
struct Shared {
    client: SupabaseClient,
    interval: Duration,
    organizations: Mutex<HashMap<String, OrganizationWaiters>>,
    listings: AtomicU64,
}

/// Shared by every run that waits on projects through the same client (clone it freely).
#[derive(Debug, Clone)]
pub struct Readiness {
    shared: Arc<Shared>,
}

impl Readiness {
    /// `interval` is the time between listings (Supabase's own CLI polls every 5 s).
    pub fn new(client: SupabaseClient, interval: Duration) -> Self {
        Readiness {
            shared: Arc::new(Shared {
                client,
                interval,
                organizations: Mutex::new(HashMap::new()),
                listings: AtomicU64::new(0),
            }),
        }
    }

    /// How many organization listings (one per interval per organization with waiters) have
    /// been made so far; each listing is one call per page of 100 projects.
    pub fn listings(&self) -> u64 {
        self.shared.listings.load(Ordering::Relaxed)
    }

    /// Waits until `project_ref` in `organization_slug` is ready, has failed, or `timeout`
    /// passes. A listing that fails permanently (401, 403, …) fails every waiter of that
    /// organization with that error; transient failures are retried at the next interval.
    pub async fn wait(
        &self,
        organization_slug: &str,
        project_ref: &str,
        timeout: Duration,
    ) -> Result<ReadinessOutcome, ProviderError> {
        let (sender, receiver) = oneshot::channel();
        let start_loop = {
            let mut organizations = self.lock();
            let start_loop = !organizations.contains_key(organization_slug);
            organizations
                .entry(organization_slug.to_owned())
                .or_default()
                .waiters
                .entry(project_ref.to_owned())
                .or_default()
                .push(sender);
            start_loop
        };
        if start_loop {
            tokio::spawn(poll_organization(
                Arc::clone(&self.shared),
                organization_slug.to_owned(),
            ));
        }
        match tokio::time::timeout(timeout, receiver).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(ProviderError::Retryable {
                provider: Provider::Supabase,
                status: None,
                message: "readiness poller stopped before answering".into(),
                after: None,
                ambiguous: false,
            }),
            Err(_) => {
                let last_status = self
                    .lock()
                    .get(organization_slug)
                    .and_then(|org| org.last_status.get(project_ref).copied());
                Ok(ReadinessOutcome::TimedOut { last_status })
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, OrganizationWaiters>> {
        self.shared
            .organizations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The one loop for an organization; it exists exactly while the organization has an entry
/// in the map, and removes that entry (under the lock) when no waiter is left.
async fn poll_organization(shared: Arc<Shared>, organization_slug: String) {
    loop {
        tokio::time::sleep(shared.interval).await;
        {
            let mut organizations = shared
                .organizations
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let Some(org) = organizations.get_mut(&organization_slug) else {
                return;
            };
            // Waiters that timed out or were cancelled have dropped their receivers.
            org.waiters.retain(|_, senders| {
                senders.retain(|s| !s.is_closed());
                !senders.is_empty()
            });
            let OrganizationWaiters {
                waiters,
                last_status,
            } = org;
            last_status.retain(|project_ref, _| waiters.contains_key(project_ref));
            if waiters.is_empty() {
                organizations.remove(&organization_slug);
                return;
            }
        }

        shared.listings.fetch_add(1, Ordering::Relaxed);
        let listing = shared
            .client
            .list_organization_projects(&organization_slug)
            .await;

        let mut organizations = shared
            .organizations
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(org) = organizations.get_mut(&organization_slug) else {
            return;
        };
        match listing {
            Ok(projects) => {
                for project in projects {
                    if !org.waiters.contains_key(&project.project_ref) {
                        continue;
                    }
                    org.last_status
                        .insert(project.project_ref.clone(), project.status);
                    let outcome = if project.status == ProjectStatus::ActiveHealthy {
                        ReadinessOutcome::Ready
                    } else if project.status.is_terminal_failure() {
                        ReadinessOutcome::Failed {
                            status: project.status,
                        }
                    } else {
                        continue;
                    };
                    for sender in org.waiters.remove(&project.project_ref).unwrap_or_default() {
                        // A waiter that gave up meanwhile simply does not hear the answer.
                        let _ = sender.send(Ok(outcome));
                    }
                }
            }
            Err(error) if error.is_retryable() => {
                // The shared budget already holds back for any wait the provider named.
                tracing::debug!(
                    organization = %organization_slug,
                    %error,
                    "readiness listing failed transiently; trying again next interval"
                );
            }
            Err(error) => {
                for (_, senders) in org.waiters.drain() {
                    for sender in senders {
                        let _ = sender.send(Err(error.clone()));
                    }
                }
            }
        }
    }
}
