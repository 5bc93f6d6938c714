//! Coalesced lookups by name and waits for readiness on Supabase projects.
//!
//! Supabase allows about 120 requests a minute per caller, scope and endpoint (API-CONTRACTS
//! §1.6), so one lookup and one poll loop per run do not scale: 100 runs polling every 5 s
//! would need 1,200 calls a minute. Here one listing of every project the token sees
//! (`GET /v1/projects`, one call, no paging) per interval answers every run looking a
//! project up by name and every run waiting for one to become ACTIVE_HEALTHY, with the
//! database host the step records in the same answer, so no `GET /v1/projects/{ref}` follows.
//!
//! The unpaged list is chosen over the organization's paged one on purpose: offset pages
//! shift when a project is deleted while they are read, and a skipped entry would read as
//! "absent" and make a duplicate. Lookups are only answered by a listing that started after
//! they asked ([`SharedListing`]), so a project the run created before asking is in it.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::{Project, ProjectStatus, SupabaseClient};
use crate::error::{Provider, ProviderError};
use crate::shared_listing::{Listing, SharedListing};

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

/// A wait's outcome with the listing that told it.
#[derive(Debug, Clone)]
pub struct ProjectWait {
    pub outcome: ReadinessOutcome,
    /// The last listing the wait read; `None` when none answered before the deadline.
    pub listing: Option<Arc<Listing<Project>>>,
}

impl ProjectWait {
    /// The waited-on project as the last listing showed it.
    pub fn project(&self, project_ref: &str) -> Option<&Project> {
        self.listing
            .as_ref()?
            .items
            .iter()
            .find(|p| p.project_ref == project_ref)
    }

    /// Every project of the organization named exactly `name` in the last listing.
    pub fn named<'a>(&'a self, organization_slug: &'a str, name: &'a str) -> Vec<&'a Project> {
        self.listing
            .as_ref()
            .map(|l| named(&l.items, organization_slug, name).collect())
            .unwrap_or_default()
    }
}

fn named<'a>(
    projects: &'a [Project],
    organization_slug: &'a str,
    name: &'a str,
) -> impl Iterator<Item = &'a Project> {
    projects
        .iter()
        .filter(move |p| p.organization_slug == organization_slug && p.name == name)
}

/// Shared by every run that looks projects up or waits on them through the same client
/// (clone it freely).
#[derive(Debug, Clone)]
pub struct ProjectListing {
    listing: SharedListing<Project>,
    /// The shortest time a project seen coming up took to be seen ready, from the start of
    /// its wait: no project is worth a listing sooner than that after its wait starts.
    fastest_come_up: Arc<Mutex<Option<Duration>>>,
}

impl ProjectListing {
    /// `interval` is the least time between two listings (Supabase's own CLI polls every 5 s).
    pub fn new(client: SupabaseClient, interval: Duration) -> Self {
        let list = move || {
            let client = client.clone();
            async move { client.list_projects().await }
        };
        ProjectListing {
            listing: SharedListing::new(Provider::Supabase, interval, list),
            fastest_come_up: Arc::new(Mutex::new(None)),
        }
    }

    /// How long after its wait starts a project's first listing is due: the fastest come-up
    /// seen so far, and at least one interval.
    pub fn first_poll_after(&self) -> Duration {
        let learned = *self
            .fastest_come_up
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        learned.unwrap_or_default().max(self.listing.interval())
    }

    fn learn_come_up(&self, took: Duration) {
        let mut fastest = self
            .fastest_come_up
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *fastest = Some(fastest.map_or(took, |f| f.min(took)));
    }

    /// How many driver tasks have been started so far (one per stretch of time with waiters).
    pub fn pollers_started(&self) -> u64 {
        self.listing.drivers_started()
    }

    /// How many listings (one call each) have been made so far.
    pub fn listings(&self) -> u64 {
        self.listing.listings()
    }

    /// Every project of the organization named exactly `name` (Supabase allows duplicate
    /// names), from a listing that started after this call. A failed listing fails every
    /// lookup it was made for with its error.
    pub async fn find_by_name(
        &self,
        organization_slug: &str,
        name: &str,
    ) -> Result<Vec<Project>, ProviderError> {
        let listing = self.listing.fresh().await?;
        Ok(named(&listing.items, organization_slug, name)
            .cloned()
            .collect())
    }

    /// Waits until `project_ref` in `organization_slug` is ready, has failed, or `timeout`
    /// passes. A listing that fails permanently (401, 403, …) fails every waiter it was made
    /// for with that error; transient failures are retried at the next interval.
    pub async fn wait(
        &self,
        organization_slug: &str,
        project_ref: &str,
        timeout: Duration,
    ) -> Result<ReadinessOutcome, ProviderError> {
        Ok(self
            .wait_with_listing(organization_slug, project_ref, timeout)
            .await?
            .outcome)
    }

    /// [`wait`](Self::wait), with the listing that told the outcome (for the project's
    /// database host and its namesakes, without another call).
    pub async fn wait_with_listing(
        &self,
        organization_slug: &str,
        project_ref: &str,
        timeout: Duration,
    ) -> Result<ProjectWait, ProviderError> {
        let asked = Instant::now();
        let deadline = asked + timeout;
        let interval = self.listing.interval();
        // A project being waited on was just created or is coming up: no listing is made for
        // it before a project can have come up (what the fastest so far took), then one per
        // interval. Any listing made meanwhile for another wait or lookup answers it too.
        let mut due = asked + self.first_poll_after();
        let mut seen_coming_up = false;
        let mut last: Option<Arc<Listing<Project>>> = None;
        loop {
            let answer = tokio::time::timeout_at(deadline, self.listing.by(due)).await;
            let listing = match answer {
                Err(_) => {
                    let last_status = last.as_ref().and_then(|l| {
                        l.items
                            .iter()
                            .find(|p| {
                                p.project_ref == project_ref
                                    && p.organization_slug == organization_slug
                            })
                            .map(|p| p.status)
                    });
                    return Ok(ProjectWait {
                        outcome: ReadinessOutcome::TimedOut { last_status },
                        listing: last,
                    });
                }
                Ok(Err(error)) if error.is_retryable() => {
                    // The shared budget already holds back for any wait the provider named,
                    // and the listing's interval spaces the next attempt.
                    tracing::debug!(%error, "project listing failed transiently; waiting for the next");
                    due = Instant::now();
                    continue;
                }
                Ok(Err(error)) => return Err(error),
                Ok(Ok(listing)) => listing,
            };
            // An earlier answer than asked for (made for someone else) keeps the due time.
            due = due.max(listing.started + interval);
            let status = listing
                .items
                .iter()
                .find(|p| p.project_ref == project_ref && p.organization_slug == organization_slug)
                .map(|p| p.status);
            let started = listing.started;
            last = Some(listing);
            let outcome = match status {
                Some(ProjectStatus::ActiveHealthy) => {
                    // Only a project seen coming up tells how long coming up takes (an adopted
                    // one may have been ready for days).
                    if seen_coming_up {
                        self.learn_come_up(started.saturating_duration_since(asked));
                    }
                    ReadinessOutcome::Ready
                }
                Some(status) if status.is_terminal_failure() => ReadinessOutcome::Failed { status },
                _ => {
                    seen_coming_up = true;
                    continue;
                }
            };
            return Ok(ProjectWait {
                outcome,
                listing: last,
            });
        }
    }
}
