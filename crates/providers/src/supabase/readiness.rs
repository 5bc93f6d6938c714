//! Coalesced waiting for Supabase projects to become ACTIVE_HEALTHY.
//!
//! Supabase allows about 120 requests a minute per scope (API-CONTRACTS §1.6), so one poll
//! loop per waiting run does not scale: 100 runs polling every 5 s would need 1,200 calls a
//! minute. Here every waiter registers its project ref; one loop per organization lists the
//! organization's projects (all pages) once per interval and answers every waiter from that
//! one listing, then stops when nobody waits.
//!
//! A loop that ends any other way (its task panicked, or the runtime it ran on shut down)
//! takes its organization's entry with it: its waiters hear that it stopped, and the next
//! wait starts a fresh loop instead of joining one that no longer runs.

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

#[derive(Debug)]
struct OrganizationWaiters {
    /// Which loop serves this entry; a loop only ever removes the entry it was started for.
    poller: u64,
    waiters: HashMap<String, Vec<oneshot::Sender<Answer>>>,
    last_status: HashMap<String, ProjectStatus>,
}

#[derive(Debug)]
struct Shared {
    client: SupabaseClient,
    interval: Duration,
    organizations: Mutex<HashMap<String, OrganizationWaiters>>,
    listings: AtomicU64,
    pollers_started: AtomicU64,
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
                pollers_started: AtomicU64::new(0),
            }),
        }
    }

    /// How many polling loops have been started so far (one per organization and stretch of
    /// time with waiters).
    pub fn pollers_started(&self) -> u64 {
        self.shared.pollers_started.load(Ordering::Relaxed)
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
            let mut start_loop = None;
            organizations
                .entry(organization_slug.to_owned())
                .or_insert_with(|| {
                    let poller = self.shared.pollers_started.fetch_add(1, Ordering::Relaxed);
                    start_loop = Some(poller);
                    OrganizationWaiters {
                        poller,
                        waiters: HashMap::new(),
                        last_status: HashMap::new(),
                    }
                })
                .waiters
                .entry(project_ref.to_owned())
                .or_default()
                .push(sender);
            start_loop
        };
        if let Some(poller) = start_loop {
            tokio::spawn(poll_organization(
                Arc::clone(&self.shared),
                organization_slug.to_owned(),
                poller,
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

/// Removes its loop's entry when dropped: the loop's future is dropped however the loop ends
/// (return, panic, task aborted, runtime shut down), so no entry outlives its loop.
struct PollerRegistration {
    shared: Arc<Shared>,
    organization_slug: String,
    poller: u64,
}

impl Drop for PollerRegistration {
    fn drop(&mut self) {
        let mut organizations = self
            .shared
            .organizations
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // After a normal end the entry is gone already, or belongs to a newer loop.
        if organizations
            .get(&self.organization_slug)
            .is_some_and(|org| org.poller == self.poller)
        {
            // Dropping the senders tells every waiter the loop stopped.
            organizations.remove(&self.organization_slug);
        }
    }
}

/// The one loop for an organization; it exists exactly while the organization has an entry
/// in the map, and removes that entry (under the lock) when no waiter is left.
async fn poll_organization(shared: Arc<Shared>, organization_slug: String, poller: u64) {
    let _registration = PollerRegistration {
        shared: Arc::clone(&shared),
        organization_slug: organization_slug.clone(),
        poller,
    };
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
                ..
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
