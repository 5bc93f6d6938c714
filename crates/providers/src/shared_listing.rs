//! One listing of a provider's resources answers every lookup waiting for it.
//!
//! A batch of a hundred runs looking their resources up by name would make a hundred calls;
//! each page of a listing answers all of them. Lookups register and wait; one task per
//! [`SharedListing`] makes at most one listing per interval while anyone waits, and hands
//! each listing to every waiter it was made for.
//!
//! The rule that makes a shared answer safe: a waiter is answered only by a listing that
//! started after it asked (and, unless it takes earlier answers, after the moment it names,
//! if later; a poll names when it wants its next answer at the latest and takes any listing
//! made for someone else before that, [`SharedListing::by`]). A resource its run
//! created before asking is therefore in the answer, so "absent" is never stale; a waiter
//! that arrives while a listing is in flight joins the next one. Listings run one at a time,
//! at least `interval` apart from start to start.
//!
//! A failed listing fails every waiter it was made for with the same error, so a 429 is
//! received once and every waiter hears its `Retry-After` at once. A driver task that ends any
//! other way (panic, runtime shut down) drops its waiters, who hear that it stopped, and the
//! next waiter starts a fresh one.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

use crate::error::{Provider, ProviderError};

/// What the shared listing calls to list everything (every page).
type ListAll<T> = Box<
    dyn Fn() -> Pin<Box<dyn Future<Output = Result<Vec<T>, ProviderError>> + Send>> + Send + Sync,
>;

/// One complete listing, shared by every waiter it answered.
#[derive(Debug)]
pub struct Listing<T> {
    /// Every item, all pages, in the provider's order.
    pub items: Vec<T>,
    /// When the listing's first call was sent.
    pub started: Instant,
}

type Answer<T> = Result<Arc<Listing<T>>, ProviderError>;

struct Waiter<T> {
    /// No listing is started for this waiter before this instant.
    not_before: Instant,
    /// When it asked; with `takes_earlier`, any listing started since answers it.
    asked: Instant,
    takes_earlier: bool,
    sender: oneshot::Sender<Answer<T>>,
}

impl<T> Waiter<T> {
    /// Whether a listing started at `started` answers this waiter.
    fn answered_by(&self, started: Instant) -> bool {
        self.not_before <= started || (self.takes_earlier && self.asked <= started)
    }
}

struct State<T> {
    /// The driver task serving the waiters, if one runs.
    driver: Option<u64>,
    waiters: Vec<Waiter<T>>,
    last_start: Option<Instant>,
}

struct Shared<T> {
    provider: Provider,
    interval: Duration,
    list: ListAll<T>,
    state: Mutex<State<T>>,
    listings: AtomicU64,
    drivers_started: AtomicU64,
    /// Wakes a driver sleeping towards a later start when a waiter that may go sooner joins.
    joined: Notify,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A coalesced listing of one kind of resource (clone it freely; clones share everything).
pub struct SharedListing<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Clone for SharedListing<T> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<T> std::fmt::Debug for SharedListing<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedListing")
            .field("provider", &self.shared.provider)
            .field("interval", &self.shared.interval)
            .field("listings", &self.listings())
            .finish_non_exhaustive()
    }
}

impl<T> SharedListing<T> {
    /// How many listings have been made (each is one call per page).
    pub fn listings(&self) -> u64 {
        self.shared.listings.load(Ordering::Relaxed)
    }

    /// How many driver tasks have been started (one per stretch of time with waiters).
    pub fn drivers_started(&self) -> u64 {
        self.shared.drivers_started.load(Ordering::Relaxed)
    }

    /// The least time between the starts of two listings.
    pub fn interval(&self) -> Duration {
        self.shared.interval
    }
}

impl<T: Send + Sync + 'static> SharedListing<T> {
    /// `list` makes one complete listing; `interval` is the least time between the starts of
    /// two listings.
    pub fn new<F, Fut>(provider: Provider, interval: Duration, list: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<T>, ProviderError>> + Send + 'static,
    {
        let list: ListAll<T> = Box::new(move || Box::pin(list()));
        Self {
            shared: Arc::new(Shared {
                provider,
                interval,
                list,
                state: Mutex::new(State {
                    driver: None,
                    waiters: Vec::new(),
                    last_start: None,
                }),
                listings: AtomicU64::new(0),
                drivers_started: AtomicU64::new(0),
                joined: Notify::new(),
            }),
        }
    }

    /// A listing that started after this call.
    pub async fn fresh(&self) -> Result<Arc<Listing<T>>, ProviderError> {
        self.started_after(Instant::now()).await
    }

    /// A listing that started at or after `not_before` (and after this call).
    pub async fn started_after(
        &self,
        not_before: Instant,
    ) -> Result<Arc<Listing<T>>, ProviderError> {
        self.wait_for(not_before, false).await
    }

    /// A listing that started after this call, at `due` or sooner: no listing is started for
    /// this caller before `due`, but one started earlier for another waiter (after this call)
    /// answers it too. For polls, which want an answer about every so often and gain from
    /// sharing any listing made meanwhile.
    pub async fn by(&self, due: Instant) -> Result<Arc<Listing<T>>, ProviderError> {
        self.wait_for(due, true).await
    }

    async fn wait_for(
        &self,
        not_before: Instant,
        takes_earlier: bool,
    ) -> Result<Arc<Listing<T>>, ProviderError> {
        let asked = Instant::now();
        let not_before = not_before.max(asked);
        let (sender, receiver) = oneshot::channel();
        let start_driver = {
            let mut state = self.shared.lock();
            state.waiters.push(Waiter {
                not_before,
                asked,
                takes_earlier,
                sender,
            });
            match state.driver {
                Some(_) => None,
                None => {
                    let id = self.shared.drivers_started.fetch_add(1, Ordering::Relaxed);
                    state.driver = Some(id);
                    Some(id)
                }
            }
        };
        match start_driver {
            Some(id) => drop(tokio::spawn(drive(Arc::clone(&self.shared), id))),
            None => self.shared.joined.notify_one(),
        }
        receiver.await.unwrap_or_else(|_| {
            Err(ProviderError::Retryable {
                provider: self.shared.provider,
                status: None,
                message: "the shared listing stopped before answering".into(),
                after: None,
                ambiguous: false,
            })
        })
    }
}

/// Clears its driver's registration when dropped, however the driver ends: its waiters'
/// senders go with it, so they hear it stopped, and the next waiter starts a new driver.
struct DriverRegistration<T> {
    shared: Arc<Shared<T>>,
    id: u64,
}

impl<T> Drop for DriverRegistration<T> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        if state.driver == Some(self.id) {
            state.driver = None;
            state.waiters.clear();
        }
    }
}

async fn drive<T: Send + Sync + 'static>(shared: Arc<Shared<T>>, id: u64) {
    let _registration = DriverRegistration {
        shared: Arc::clone(&shared),
        id,
    };
    loop {
        let start_at = {
            let mut state = shared.lock();
            // Waiters that gave up (timed out, cancelled) have dropped their receivers.
            state.waiters.retain(|w| !w.sender.is_closed());
            let Some(earliest) = state.waiters.iter().map(|w| w.not_before).min() else {
                state.driver = None;
                return;
            };
            match state.last_start {
                Some(last) => earliest.max(last + shared.interval),
                None => earliest,
            }
        };
        if Instant::now() < start_at {
            // A waiter joining meanwhile may want an earlier start (a lookup beside readiness
            // waits that asked for one interval's delay): look again when one joins.
            tokio::select! {
                () = tokio::time::sleep_until(start_at) => {}
                () = shared.joined.notified() => {}
            }
            continue;
        }
        let (started, batch) = {
            let mut state = shared.lock();
            let started = Instant::now();
            state.last_start = Some(started);
            let (batch, later): (Vec<_>, Vec<_>) = std::mem::take(&mut state.waiters)
                .into_iter()
                .partition(|w| w.answered_by(started));
            state.waiters = later;
            (started, batch)
        };
        shared.listings.fetch_add(1, Ordering::Relaxed);
        let answer: Answer<T> = (shared.list)()
            .await
            .map(|items| Arc::new(Listing { items, started }));
        if let Err(error) = &answer {
            tracing::debug!(provider = %shared.provider, %error, waiters = batch.len(), "shared listing failed");
        }
        for waiter in batch {
            // A waiter that gave up meanwhile simply does not hear the answer.
            let _ = waiter.sender.send(answer.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;

    use super::*;

    const INTERVAL: Duration = Duration::from_millis(500);

    /// A listing that answers with its own number, after `takes`.
    fn numbered(takes: Duration) -> SharedListing<u64> {
        let made = Arc::new(AtomicU64::new(0));
        SharedListing::new(Provider::Supabase, INTERVAL, move || {
            let number = made.fetch_add(1, Ordering::Relaxed) + 1;
            async move {
                tokio::time::sleep(takes).await;
                Ok(vec![number])
            }
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_poll_alone_gets_its_listing_at_its_due_time() {
        let listing = numbered(Duration::ZERO);
        let asked = Instant::now();
        let answer = listing.by(asked + Duration::from_secs(3)).await.unwrap();
        assert_eq!(answer.started, asked + Duration::from_secs(3));
        assert_eq!(listing.listings(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_poll_takes_a_listing_made_for_a_lookup_before_its_due_time() {
        let listing = numbered(Duration::ZERO);
        let asked = Instant::now();
        let poll = tokio::spawn({
            let listing = listing.clone();
            async move { listing.by(asked + Duration::from_secs(10)).await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        let lookup = listing.fresh().await.unwrap();
        let poll = poll.await.unwrap().unwrap();
        assert_eq!(poll.items, lookup.items, "one listing answered both");
        assert_eq!(poll.started, asked + Duration::from_secs(1));
        assert_eq!(listing.listings(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_poll_never_takes_a_listing_that_started_before_it_asked() {
        let listing = numbered(Duration::from_secs(1));
        let t0 = Instant::now();
        let lookup = tokio::spawn({
            let listing = listing.clone();
            async move { listing.fresh().await }
        });
        // The lookup's listing is in flight when the poll asks.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let poll = listing.by(t0 + Duration::from_millis(200)).await.unwrap();
        let lookup = lookup.await.unwrap().unwrap();
        assert_eq!(lookup.started, t0);
        assert!(
            poll.started > t0 + Duration::from_millis(100),
            "{:?}",
            poll.started - t0
        );
        assert_eq!(poll.items, vec![2]);
    }
}
