//! How fast and how wide we may call one provider with one credential.
//!
//! A budget is a token bucket (steady rate + burst) plus a cap on requests in flight, and it
//! can be paused: a 429 (or a response saying the window is spent) stops every caller sharing
//! the budget until the provider's reset, instead of each caller discovering the limit alone.
//! Budgets live in a process-wide registry keyed by (provider, origin, credential), so every
//! client instance built with the same token shares one budget.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::error::Provider;
use crate::rate_limit_headers::{MAX_PROVIDER_WAIT, clamp_wait};

/// The limits of one budget.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateBudgetConfig {
    /// Steady refill rate of the bucket.
    pub requests_per_second: f64,
    /// Bucket size: how many requests may go out back to back after a quiet spell.
    pub burst: u32,
    /// Requests in flight at once.
    pub max_concurrent: usize,
    /// Pause after a rate-limited answer that named no reset.
    pub pause_without_reset: Duration,
}

impl RateBudgetConfig {
    /// Defaults below each provider's published limit, so the limit is reached by bursts
    /// only, not by steady load.
    pub fn default_for(provider: Provider) -> Self {
        match provider {
            // 120 requests/min per caller, scope and endpoint (API-CONTRACTS §1.6).
            Provider::Supabase => RateBudgetConfig {
                requests_per_second: 1.6,
                burst: 20,
                max_concurrent: 8,
                pause_without_reset: Duration::from_secs(60),
            },
            // 5,000/h primary, ≤100 concurrent secondary; repo creation trips secondary
            // limits, and GitHub asks for at least a minute when it names no reset (§2.3).
            Provider::Github => RateBudgetConfig {
                requests_per_second: 1.2,
                burst: 30,
                max_concurrent: 10,
                pause_without_reset: Duration::from_secs(60),
            },
            // No confirmed numbers (§3.6): modest defaults, 429s honoured.
            Provider::Vercel => RateBudgetConfig {
                requests_per_second: 2.0,
                burst: 20,
                max_concurrent: 8,
                pause_without_reset: Duration::from_secs(10),
            },
            // Self-hosted n8n has no rate limiting in its public API (§4.1).
            Provider::N8n => RateBudgetConfig {
                requests_per_second: 20.0,
                burst: 50,
                max_concurrent: 16,
                pause_without_reset: Duration::from_secs(5),
            },
        }
    }

    /// Effectively unlimited: for tests that exercise volume, not the budget.
    pub fn unlimited() -> Self {
        RateBudgetConfig {
            requests_per_second: 1.0e6,
            burst: 1_000_000,
            max_concurrent: 1024,
            pause_without_reset: Duration::from_secs(1),
        }
    }
}

/// The token bucket's arithmetic, separate from clocks and locks so it can be tested exactly.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    tokens: f64,
    refilled_at: Instant,
    paused_until: Option<Instant>,
}

impl Bucket {
    pub fn full(config: &RateBudgetConfig, now: Instant) -> Self {
        Bucket {
            tokens: f64::from(config.burst.max(1)),
            refilled_at: now,
            paused_until: None,
        }
    }

    /// Takes one token, or says how long until one is available (pauses included).
    pub fn try_take(&mut self, config: &RateBudgetConfig, now: Instant) -> Result<(), Duration> {
        if let Some(until) = self.paused_until {
            if until > now {
                return Err(until - now);
            }
            self.paused_until = None;
        }
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        let burst = f64::from(config.burst.max(1));
        let rate = config.requests_per_second.max(f64::MIN_POSITIVE);
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.refilled_at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            // A tiny rate would make this wait overflow `Duration` (a panic); no token is
            // worth waiting longer than a provider may make us wait.
            let seconds = ((1.0 - self.tokens) / rate).min(MAX_PROVIDER_WAIT.as_secs_f64());
            Err(Duration::from_secs_f64(seconds))
        }
    }

    /// Stops all takes until `until` (never shortens an existing pause). The bucket is
    /// emptied too: the provider said the window is spent, so no burst follows the pause.
    pub fn pause_until(&mut self, until: Instant) {
        let until = match self.paused_until {
            Some(existing) if existing > until => existing,
            _ => until,
        };
        self.paused_until = Some(until);
        self.tokens = 0.0;
        self.refilled_at = until;
    }

    pub fn paused_until(&self) -> Option<Instant> {
        self.paused_until
    }
}

/// One (provider, origin, credential)'s shared budget.
#[derive(Debug)]
pub struct RateBudget {
    config: RateBudgetConfig,
    bucket: Mutex<Bucket>,
    in_flight: Arc<Semaphore>,
}

/// Held while a request is in flight; dropping it frees a concurrency slot.
#[derive(Debug)]
pub struct BudgetPermit {
    _slot: Option<OwnedSemaphorePermit>,
}

impl RateBudget {
    pub fn new(config: RateBudgetConfig) -> Self {
        RateBudget {
            config,
            bucket: Mutex::new(Bucket::full(&config, Instant::now())),
            in_flight: Arc::new(Semaphore::new(config.max_concurrent.max(1))),
        }
    }

    pub fn config(&self) -> &RateBudgetConfig {
        &self.config
    }

    /// Waits for a concurrency slot, then for a token (and the end of any pause).
    pub async fn acquire(&self) -> BudgetPermit {
        // The semaphore is never closed, so acquiring only fails in theory; going ahead
        // without a slot then is the lesser harm than failing the call.
        let slot = Arc::clone(&self.in_flight).acquire_owned().await.ok();
        loop {
            let wait = {
                let mut bucket = self.bucket.lock().unwrap_or_else(PoisonError::into_inner);
                match bucket.try_take(&self.config, Instant::now()) {
                    Ok(()) => break,
                    Err(wait) => wait,
                }
            };
            tokio::time::sleep(wait).await;
        }
        BudgetPermit { _slot: slot }
    }

    /// Stops every caller of this budget for `duration` (or the configured default when the
    /// provider named no reset).
    pub fn pause_for(&self, duration: Option<Duration>) {
        let duration = clamp_wait(duration.unwrap_or(self.config.pause_without_reset));
        let now = Instant::now();
        // Clamped above, so this only fails on a clock near its end; then no pause beats a
        // panic.
        let Some(until) = now.checked_add(duration) else {
            return;
        };
        self.bucket
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pause_until(until);
    }

    /// Time left in the current pause, if any.
    pub fn paused_for(&self) -> Option<Duration> {
        let bucket = self.bucket.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        bucket
            .paused_until()
            .filter(|until| *until > now)
            .map(|until| until - now)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct BudgetKey {
    provider: Provider,
    origin: String,
    credential: u64,
}

fn registry() -> &'static Mutex<HashMap<BudgetKey, Weak<RateBudget>>> {
    static REGISTRY: OnceLock<Mutex<HashMap<BudgetKey, Weak<RateBudget>>>> = OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(HashMap::new()))
}

/// A keyed hash of the credential: budgets are told apart without the registry holding any
/// token in clear. The key is random per process, so the value means nothing outside it.
fn credential_fingerprint(credential: &SecretString) -> u64 {
    static KEY: OnceLock<RandomState> = OnceLock::new();
    KEY.get_or_init(RandomState::new)
        .hash_one(credential.expose_secret())
}

/// The process-wide budget for this provider, origin and credential, created with `config`
/// on first use. Later callers share the existing budget and its limits (the first
/// configuration wins while any client holds the budget).
pub fn shared_budget(
    provider: Provider,
    origin: &str,
    credential: &SecretString,
    config: RateBudgetConfig,
) -> Arc<RateBudget> {
    let key = BudgetKey {
        provider,
        origin: origin.to_owned(),
        credential: credential_fingerprint(credential),
    };
    let mut map = registry().lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(existing) = map.get(&key).and_then(Weak::upgrade) {
        if existing.config != config {
            tracing::warn!(
                provider = provider.name(),
                "rate budget already exists for this credential with other limits; keeping them"
            );
        }
        return existing;
    }
    map.retain(|_, budget| budget.strong_count() > 0);
    let budget = Arc::new(RateBudget::new(config));
    map.insert(key, Arc::downgrade(&budget));
    budget
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(rate: f64, burst: u32) -> RateBudgetConfig {
        RateBudgetConfig {
            requests_per_second: rate,
            burst,
            max_concurrent: 4,
            pause_without_reset: Duration::from_secs(30),
        }
    }

    #[test]
    fn burst_then_steady_rate() {
        let cfg = config(2.0, 3);
        let t0 = Instant::now();
        let mut bucket = Bucket::full(&cfg, t0);
        for _ in 0..3 {
            assert_eq!(bucket.try_take(&cfg, t0), Ok(()));
        }
        // Empty: the next token arrives after 1/rate.
        assert_eq!(bucket.try_take(&cfg, t0), Err(Duration::from_millis(500)));
        assert_eq!(
            bucket.try_take(&cfg, t0 + Duration::from_millis(250)),
            Err(Duration::from_millis(250))
        );
        assert_eq!(
            bucket.try_take(&cfg, t0 + Duration::from_millis(500)),
            Ok(())
        );
    }

    #[test]
    fn refill_never_exceeds_burst() {
        let cfg = config(10.0, 2);
        let t0 = Instant::now();
        let mut bucket = Bucket::full(&cfg, t0);
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(bucket.try_take(&cfg, later), Ok(()));
        assert_eq!(bucket.try_take(&cfg, later), Ok(()));
        assert!(bucket.try_take(&cfg, later).is_err());
    }

    #[test]
    fn pause_blocks_until_reset_and_leaves_no_burst() {
        let cfg = config(1.0, 5);
        let t0 = Instant::now();
        let mut bucket = Bucket::full(&cfg, t0);
        bucket.pause_until(t0 + Duration::from_secs(14));
        assert_eq!(bucket.try_take(&cfg, t0), Err(Duration::from_secs(14)));
        assert_eq!(
            bucket.try_take(&cfg, t0 + Duration::from_secs(4)),
            Err(Duration::from_secs(10))
        );
        // At the reset the bucket starts empty and refills at the steady rate.
        let reset = t0 + Duration::from_secs(14);
        assert_eq!(bucket.try_take(&cfg, reset), Err(Duration::from_secs(1)));
        assert_eq!(
            bucket.try_take(&cfg, reset + Duration::from_secs(1)),
            Ok(())
        );
    }

    #[test]
    fn a_shorter_pause_does_not_cut_a_longer_one() {
        let cfg = config(1.0, 1);
        let t0 = Instant::now();
        let mut bucket = Bucket::full(&cfg, t0);
        bucket.pause_until(t0 + Duration::from_secs(60));
        bucket.pause_until(t0 + Duration::from_secs(5));
        assert_eq!(bucket.paused_until(), Some(t0 + Duration::from_secs(60)));
    }

    #[test]
    fn same_credential_shares_a_budget_other_credential_does_not() {
        let cfg = config(1.0, 1);
        let a1 = shared_budget(
            Provider::Github,
            "http://127.0.0.1:1",
            &SecretString::from("token-a"),
            cfg,
        );
        let a2 = shared_budget(
            Provider::Github,
            "http://127.0.0.1:1",
            &SecretString::from("token-a"),
            cfg,
        );
        let b = shared_budget(
            Provider::Github,
            "http://127.0.0.1:1",
            &SecretString::from("token-b"),
            cfg,
        );
        let other_provider = shared_budget(
            Provider::Vercel,
            "http://127.0.0.1:1",
            &SecretString::from("token-a"),
            cfg,
        );
        assert!(Arc::ptr_eq(&a1, &a2));
        assert!(!Arc::ptr_eq(&a1, &b));
        assert!(!Arc::ptr_eq(&a1, &other_provider));
        a1.pause_for(Some(Duration::from_secs(30)));
        assert!(a2.paused_for().is_some());
        assert!(b.paused_for().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn concurrency_cap_holds_callers_until_a_slot_frees() {
        let budget = Arc::new(RateBudget::new(RateBudgetConfig {
            max_concurrent: 2,
            ..RateBudgetConfig::unlimited()
        }));
        let first = budget.acquire().await;
        let _second = budget.acquire().await;
        let third = {
            let budget = Arc::clone(&budget);
            tokio::spawn(async move { budget.acquire().await })
        };
        tokio::task::yield_now().await;
        assert!(!third.is_finished());
        drop(first);
        assert!(third.await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn acquire_sleeps_through_a_pause() {
        let budget = RateBudget::new(RateBudgetConfig::unlimited());
        budget.pause_for(Some(Duration::from_secs(42)));
        let before = Instant::now();
        let _permit = budget.acquire().await;
        // Paused clock: the only way past the pause is to have slept through it.
        assert!(Instant::now() - before >= Duration::from_secs(42));
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_beyond_an_hour_is_held_to_an_hour() {
        let budget = RateBudget::new(RateBudgetConfig::unlimited());
        budget.pause_for(Some(Duration::from_secs(99_999_999_999_999_999)));
        assert_eq!(budget.paused_for(), Some(MAX_PROVIDER_WAIT));
        budget.pause_for(Some(Duration::MAX));
        assert_eq!(budget.paused_for(), Some(MAX_PROVIDER_WAIT));
    }

    #[test]
    fn a_vanishing_rate_waits_at_most_an_hour_for_a_token() {
        let cfg = config(1e-30, 1);
        let t0 = Instant::now();
        let mut bucket = Bucket::full(&cfg, t0);
        assert_eq!(bucket.try_take(&cfg, t0), Ok(()));
        assert_eq!(bucket.try_take(&cfg, t0), Err(MAX_PROVIDER_WAIT));
    }
}
