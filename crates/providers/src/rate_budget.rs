//! How fast and how wide we may call one provider with one credential.
//!
//! A budget checks four things before a request goes out, all at once:
//! - a cap on the provider's requests in flight;
//! - a token bucket across all of the provider's endpoints (steady rate + burst): a safety net
//!   the operator can turn down, not where the providers count;
//! - windows where the provider counts (API-CONTRACTS §1.6, §2.3): each endpoint its own (and,
//!   for Supabase, each project or organization the path names its own, as Supabase counts per
//!   scope), GitHub's hourly total, GitHub's limits on content-creating calls. A window is a log
//!   of send times allowing at most N requests in any span of its length plus a second (for the
//!   spread between sending and arriving), which holds however the provider aligns its own
//!   windows and still lets a batch spend a whole window at once;
//! - what the provider's rate-limit headers said: a lower limit than ours is adopted, the
//!   `Remaining` count is spent down until the reset, and `Remaining: 0` (or a 429) pauses the
//!   request's windows until the reset.
//!
//! Waiting requests are served by [`Priority`]: the calls that start long-running resources
//! (a Supabase project, a Vercel deployment, a generated repository, a Vercel project) first,
//! then other writes, then reads. A request whose own window is spent never holds up one whose
//! windows are open, and no request holds an in-flight slot while it waits.
//!
//! Budgets live in a process-wide registry keyed by (provider, origin, credential), so every
//! client instance built with the same token shares one budget.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::ops::Bound::{Excluded, Unbounded};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

use crate::error::Provider;
use crate::rate_limit_headers::{MAX_PROVIDER_WAIT, RateLimitSignal, clamp_wait};

/// Added to every window: a request is logged when it is sent but counted by the provider when
/// it arrives, and the gap varies from one request to the next.
pub const ARRIVAL_SLACK: Duration = Duration::from_secs(1);

/// Above this many windows the idle ones (nothing sent within their span, nothing in flight,
/// nothing told) are dropped: per-project windows would otherwise grow with every project.
const IDLE_WINDOWS_KEPT: usize = 4096;

/// At most `requests` in any `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowLimit {
    pub requests: u32,
    pub window: Duration,
}

impl WindowLimit {
    pub const fn per_minute(requests: u32) -> Self {
        WindowLimit {
            requests,
            window: Duration::from_secs(60),
        }
    }

    pub const fn per_hour(requests: u32) -> Self {
        WindowLimit {
            requests,
            window: Duration::from_secs(3600),
        }
    }

    /// The steady rate this window allows, in requests per second.
    pub fn per_second(&self) -> f64 {
        f64::from(self.requests) / self.window.as_secs_f64().max(f64::MIN_POSITIVE)
    }
}

/// The limits of one budget.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateBudgetConfig {
    /// Steady refill rate of the provider-wide bucket.
    pub requests_per_second: f64,
    /// Size of the provider-wide bucket: how many requests may go out back to back.
    pub burst: u32,
    /// Requests in flight at once.
    pub max_concurrent: usize,
    /// Pause after a rate-limited answer that named no reset.
    pub pause_without_reset: Duration,
    /// Each endpoint's own window (× scope for Supabase); for reads only when
    /// `per_endpoint_writes` is set.
    pub per_endpoint: Option<WindowLimit>,
    /// Each writing endpoint's own window, where writes count more than reads (GitHub: 5
    /// points against 1, §2.3).
    pub per_endpoint_writes: Option<WindowLimit>,
    /// All endpoints together (GitHub's primary limit).
    pub overall: Option<WindowLimit>,
    /// Every creating call (`POST`) together, and the same over a longer window (GitHub's
    /// content-creation limits).
    pub creates: Option<WindowLimit>,
    pub creates_long: Option<WindowLimit>,
    /// Serve waiting requests by [`Priority`]; `false`: in the order they came (to measure what
    /// the order is worth).
    pub by_priority: bool,
}

impl RateBudgetConfig {
    /// Defaults just under each provider's published limits.
    pub fn default_for(provider: Provider) -> Self {
        match provider {
            // 120 requests/min per caller × scope × endpoint; `POST /v1/projects` counts
            // against the organization (§1.6). Nothing limits the endpoints together.
            Provider::Supabase => RateBudgetConfig {
                requests_per_second: 50.0,
                burst: 200,
                max_concurrent: 16,
                pause_without_reset: Duration::from_secs(60),
                per_endpoint: Some(WindowLimit::per_minute(115)),
                per_endpoint_writes: None,
                overall: None,
                creates: None,
                creates_long: None,
                by_priority: true,
            },
            // 5,000/h primary; secondary: ≤100 concurrent, 900 points/min per endpoint (a read
            // 1 point, a write 5), and at most 80 content-creating requests a minute and 500
            // an hour (§2.3, from GitHub's REST rate-limit page). GitHub asks for at least a
            // minute when it names no reset. The hour's creations are the published 500, not
            // fewer: a count under it would hold every batch of 481 to 500 clients back a
            // whole hour, while the window's arrival slack already covers requests counted
            // later than they were sent. A token other tools also create with is met by
            // GitHub's refusal, which pauses the window (`creates_per_hour` lowers it).
            Provider::Github => RateBudgetConfig {
                requests_per_second: 50.0,
                burst: 200,
                max_concurrent: 20,
                pause_without_reset: Duration::from_secs(60),
                per_endpoint: Some(WindowLimit::per_minute(850)),
                per_endpoint_writes: Some(WindowLimit::per_minute(170)),
                overall: Some(WindowLimit::per_hour(4_900)),
                creates: Some(WindowLimit::per_minute(75)),
                creates_long: Some(WindowLimit::per_hour(500)),
                by_priority: true,
            },
            // No first-party figures (§3.6): writes at 100 a minute per endpoint is an
            // assumption, reads are held by the provider-wide bucket only; 429s and their
            // Retry-After are honoured.
            Provider::Vercel => RateBudgetConfig {
                requests_per_second: 50.0,
                burst: 200,
                max_concurrent: 16,
                pause_without_reset: Duration::from_secs(10),
                per_endpoint: None,
                per_endpoint_writes: Some(WindowLimit::per_minute(100)),
                overall: None,
                creates: None,
                creates_long: None,
                by_priority: true,
            },
            // Self-hosted n8n has no rate limiting in its public API (§4.1).
            Provider::N8n => RateBudgetConfig {
                requests_per_second: 20.0,
                burst: 50,
                max_concurrent: 16,
                pause_without_reset: Duration::from_secs(5),
                per_endpoint: None,
                per_endpoint_writes: None,
                overall: None,
                creates: None,
                creates_long: None,
                by_priority: true,
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
            per_endpoint: None,
            per_endpoint_writes: None,
            overall: None,
            creates: None,
            creates_long: None,
            by_priority: true,
        }
    }

    /// The window that limits `operation` (`"GET /v1/projects"`) on its own, if any.
    pub fn endpoint_window(&self, operation: &str) -> Option<WindowLimit> {
        if is_read(operation) {
            self.per_endpoint
        } else {
            self.per_endpoint_writes.or(self.per_endpoint)
        }
    }
}

impl RateBudgetConfig {
    /// The windows a request to `endpoint` counts in.
    fn keys_for(&self, endpoint: &Endpoint) -> Vec<WindowKey> {
        let creating = endpoint.operation.starts_with("POST ");
        let mut keys = Vec::new();
        if self.endpoint_window(endpoint.operation).is_some() {
            keys.push(WindowKey::Endpoint(endpoint.clone()));
        }
        if self.overall.is_some() {
            keys.push(WindowKey::Overall);
        }
        if creating && self.creates.is_some() {
            keys.push(WindowKey::Creates);
        }
        if creating && self.creates_long.is_some() {
            keys.push(WindowKey::CreatesLong);
        }
        keys
    }

    fn limit_of(&self, key: &WindowKey) -> Option<WindowLimit> {
        match key {
            WindowKey::Endpoint(endpoint) => self.endpoint_window(endpoint.operation),
            WindowKey::Overall => self.overall,
            WindowKey::Creates => self.creates,
            WindowKey::CreatesLong => self.creates_long,
        }
    }

    /// Every window of this configuration that `calls` count in, with how many of them do,
    /// and the provider-wide bucket's steady rate as one more (all calls, one second's worth
    /// of tokens a second). Sorted by [`WindowLoad::seconds`], the largest first.
    pub fn window_loads(&self, calls: impl IntoIterator<Item = Endpoint>) -> Vec<WindowLoad> {
        let mut counted: HashMap<WindowKey, u64> = HashMap::new();
        let mut all = 0_u64;
        for endpoint in calls {
            all += 1;
            for key in self.keys_for(&endpoint) {
                *counted.entry(key).or_default() += 1;
            }
        }
        let mut loads: Vec<WindowLoad> = counted
            .into_iter()
            .filter_map(|(key, calls)| {
                let limit = self.limit_of(&key)?;
                Some(WindowLoad {
                    window: key.describe(limit),
                    calls,
                    allowance: Allowance::Window(limit),
                })
            })
            .collect();
        if all > 0 && self.requests_per_second.is_finite() && self.requests_per_second > 0.0 {
            loads.push(WindowLoad {
                window: format!(
                    "all calls at {}/s (the provider-wide bucket)",
                    self.requests_per_second
                ),
                calls: all,
                allowance: Allowance::Bucket {
                    burst: self.burst,
                    per_second: self.requests_per_second,
                },
            });
        }
        loads.sort_by(|a, b| {
            b.seconds()
                .total_cmp(&a.seconds())
                .then_with(|| a.window.cmp(&b.window))
        });
        loads
    }
}

/// How many of a batch's calls one window counts, and so how long the window makes them take.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowLoad {
    /// What the window counts, e.g. `GET /v1/projects [user] at 120/60s`.
    pub window: String,
    pub calls: u64,
    pub allowance: Allowance,
}

/// What a window lets through.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Allowance {
    /// At most `requests` in any span of `window`.
    Window(WindowLimit),
    /// A token bucket: `burst` at once, then `per_second`.
    Bucket { burst: u32, per_second: f64 },
}

impl WindowLoad {
    /// The shortest time from the first of the calls to the last that the window allows: a
    /// lower bound on how long they take, whatever the order. N calls under "A in any W" need
    /// ⌊(N − 1) ÷ A⌋ whole windows, so calls that fit in one allowance cost nothing here (an
    /// hourly allowance a batch stays inside does not bind it, however long the hour); a
    /// bucket sends its burst at once and the rest at its rate.
    pub fn seconds(&self) -> f64 {
        match self.allowance {
            Allowance::Window(limit) => {
                let windows = self.calls.saturating_sub(1) / u64::from(limit.requests.max(1));
                windows as f64 * limit.window.as_secs_f64()
            }
            Allowance::Bucket { burst, per_second } => {
                self.calls.saturating_sub(u64::from(burst)) as f64
                    / per_second.max(f64::MIN_POSITIVE)
            }
        }
    }

    /// The calls ÷ the allowed steady rate (allowance ÷ window length): what the calls would
    /// take at that rate, and no bound when they fit in one allowance.
    pub fn at_steady_rate(&self) -> f64 {
        let per_second = match self.allowance {
            Allowance::Window(limit) => limit.per_second(),
            Allowance::Bucket { per_second, .. } => per_second,
        };
        self.calls as f64 / per_second.max(f64::MIN_POSITIVE)
    }
}

fn is_read(operation: &str) -> bool {
    operation.starts_with("GET ") || operation.starts_with("HEAD ")
}

/// Which waiting request goes first. Lower is sooner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// Starts a resource that takes long to come up: the batch's critical path runs through it.
    LongPole,
    /// Any other write.
    Write,
    /// Lookups and polls.
    Read,
}

/// The calls that start the slow resources of a client stack: a Supabase project (minutes to
/// come up), a Vercel deployment (its build), the generated repository and the Vercel project
/// the deployment waits on.
pub const LONG_POLES: &[&str] = &[
    "POST /v1/projects",
    "POST /v13/deployments",
    "POST /repos/{template_owner}/{template_repo}/generate",
    "POST /v11/projects",
];

impl Priority {
    pub fn of(operation: &str) -> Self {
        if LONG_POLES.contains(&operation) {
            Priority::LongPole
        } else if is_read(operation) {
            Priority::Read
        } else {
            Priority::Write
        }
    }
}

/// One request as the budget sees it: the endpoint as the spec names it, and the scope the
/// provider counts it against where that is part of the path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    pub operation: &'static str,
    pub scope: Option<String>,
}

impl Endpoint {
    pub fn new(operation: &'static str) -> Self {
        Endpoint {
            operation,
            scope: None,
        }
    }

    /// `operation` sent to the path `segments`. Supabase counts project- and
    /// organization-scoped endpoints per project or organization: the value standing for the
    /// template's first parameter (`{ref}`, `{slug}`) is the scope. Other providers count per
    /// endpoint only.
    pub fn for_path(provider: Provider, operation: &'static str, segments: &[&str]) -> Self {
        let scope = match provider {
            Provider::Supabase => operation
                .split_once(' ')
                .map(|(_, path)| path)
                .and_then(|path| {
                    path.trim_start_matches('/')
                        .split('/')
                        .position(|part| part.starts_with('{'))
                })
                .and_then(|index| segments.get(index))
                .map(|value| (*value).to_owned()),
            Provider::Github | Provider::Vercel | Provider::N8n => None,
        };
        Endpoint { operation, scope }
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

    fn refill(&mut self, config: &RateBudgetConfig, now: Instant) -> Result<(), Duration> {
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
            Ok(())
        } else {
            // A tiny rate would make this wait overflow `Duration` (a panic); no token is
            // worth waiting longer than a provider may make us wait.
            let seconds = ((1.0 - self.tokens) / rate).min(MAX_PROVIDER_WAIT.as_secs_f64());
            Err(Duration::from_secs_f64(seconds))
        }
    }

    /// How long until a token is available (pauses included), without taking it.
    pub fn wait_for_token(&mut self, config: &RateBudgetConfig, now: Instant) -> Option<Duration> {
        self.refill(config, now).err()
    }

    /// Takes one token, or says how long until one is available (pauses included).
    pub fn try_take(&mut self, config: &RateBudgetConfig, now: Instant) -> Result<(), Duration> {
        self.refill(config, now)?;
        self.tokens -= 1.0;
        Ok(())
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

/// What the provider's headers said about one window: requests left until the reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Told {
    left: u32,
    resets_at: Instant,
}

/// Two resets closer than this are taken for the same window (the headers count whole seconds).
const SAME_WINDOW: Duration = Duration::from_secs(2);

/// One window's log of send times, and what the provider told about it.
#[derive(Debug, Clone)]
pub struct Window {
    limit: WindowLimit,
    sent: VecDeque<Instant>,
    in_flight: u32,
    told: Option<Told>,
    paused_until: Option<Instant>,
}

impl Window {
    pub fn new(limit: WindowLimit) -> Self {
        Window {
            limit: WindowLimit {
                requests: limit.requests.max(1),
                window: limit.window,
            },
            sent: VecDeque::new(),
            in_flight: 0,
            told: None,
            paused_until: None,
        }
    }

    fn span(&self) -> Duration {
        self.limit.window + ARRIVAL_SLACK
    }

    /// `None` when a request may go now, else the earliest instant one may.
    pub fn opens_at(&mut self, now: Instant) -> Option<Instant> {
        if let Some(until) = self.paused_until {
            if until > now {
                return Some(until);
            }
            self.paused_until = None;
        }
        if let Some(told) = self.told {
            if told.resets_at <= now {
                self.told = None;
            } else if told.left == 0 {
                return Some(told.resets_at);
            }
        }
        let span = self.span();
        while self.sent.front().is_some_and(|sent| *sent + span <= now) {
            self.sent.pop_front();
        }
        let limit = self.limit.requests as usize;
        if self.sent.len() < limit {
            None
        } else {
            // The send whose expiry makes room for one more.
            self.sent
                .get(self.sent.len() - limit)
                .map(|sent| *sent + span)
        }
    }

    /// Logs a request sent at `now` (after [`Window::opens_at`] said it may go).
    pub fn take(&mut self, now: Instant) {
        self.sent.push_back(now);
        self.in_flight += 1;
        if let Some(told) = self.told.as_mut() {
            told.left = told.left.saturating_sub(1);
        }
    }

    fn finish(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// The provider said `remaining` requests are left until `reset_in` from `now`, on the
    /// answer to one of this window's requests (still counted in flight).
    pub fn told(&mut self, remaining: u64, reset_in: Duration, now: Instant) {
        let resets_at = now + clamp_wait(reset_in);
        if remaining == 0 {
            self.pause_until(resets_at);
            return;
        }
        // Requests still in flight may not have been counted yet: counting them again can
        // only hold back too much, never send too much.
        let others = u64::from(self.in_flight.saturating_sub(1));
        let left = u32::try_from(remaining.saturating_sub(others)).unwrap_or(u32::MAX);
        self.told = Some(match self.told {
            // An answer from a window that has since reset: nothing to learn.
            Some(current) if resets_at + SAME_WINDOW < current.resets_at => current,
            // The same window: the lower count is the later one.
            Some(current) if resets_at <= current.resets_at + SAME_WINDOW => Told {
                left: left.min(current.left),
                resets_at: resets_at.max(current.resets_at),
            },
            // A new window.
            _ => Told { left, resets_at },
        });
    }

    /// Adopts a limit the provider announced, when it is lower than ours.
    pub fn lower_limit(&mut self, requests: u32) {
        self.limit.requests = self.limit.requests.min(requests.max(1));
    }

    pub fn limit(&self) -> WindowLimit {
        self.limit
    }

    fn pause_until(&mut self, until: Instant) {
        if self.paused_until.is_none_or(|existing| existing < until) {
            self.paused_until = Some(until);
        }
    }

    fn idle(&self, now: Instant) -> bool {
        self.in_flight == 0
            && self.told.is_none()
            && self.paused_until.is_none_or(|until| until <= now)
            && self
                .sent
                .back()
                .is_none_or(|last| *last + self.span() <= now)
    }
}

/// Which window a request counts in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum WindowKey {
    Endpoint(Endpoint),
    Overall,
    Creates,
    CreatesLong,
}

/// Windows of one kind share a limit the provider's headers may lower.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum WindowKind {
    Endpoint,
    Overall,
    Creates,
    CreatesLong,
}

impl WindowKey {
    /// What the window counts, for people: `GET /v1/projects [user] at 115/60s`.
    fn describe(&self, limit: WindowLimit) -> String {
        let what = match self {
            WindowKey::Endpoint(Endpoint {
                operation,
                scope: Some(scope),
            }) => format!("{operation} [{scope}]"),
            WindowKey::Endpoint(Endpoint {
                operation,
                scope: None,
            }) => (*operation).to_owned(),
            WindowKey::Overall => "all calls".to_owned(),
            WindowKey::Creates | WindowKey::CreatesLong => "creating calls (POST)".to_owned(),
        };
        format!("{what} at {}/{}s", limit.requests, limit.window.as_secs())
    }

    fn kind(&self) -> WindowKind {
        match self {
            WindowKey::Endpoint(_) => WindowKind::Endpoint,
            WindowKey::Overall => WindowKind::Overall,
            WindowKey::Creates => WindowKind::Creates,
            WindowKey::CreatesLong => WindowKind::CreatesLong,
        }
    }
}

/// The windows a provider's `X-RateLimit-*` headers describe: Supabase's count each endpoint
/// and scope, GitHub's the primary (hourly) total. Vercel's meaning is unconfirmed (§3.6), so
/// only its `Retry-After` is used.
fn told_kind(provider: Provider) -> Option<WindowKind> {
    match provider {
        Provider::Supabase => Some(WindowKind::Endpoint),
        Provider::Github => Some(WindowKind::Overall),
        Provider::Vercel | Provider::N8n => None,
    }
}

#[derive(Debug)]
struct Waiter {
    keys: Vec<WindowKey>,
    grant: oneshot::Sender<()>,
    /// Its task sleeps until its windows or the bucket open; `false` while it only waits for
    /// a grant (its windows were open when it last looked, so a freed slot grants it).
    timed: bool,
    /// Wakes its task to look again: a waiter that was only waiting for a slot has found its
    /// windows spent by the others since, or the bucket empty, and must sleep until they open.
    rewake: Arc<Notify>,
}

#[derive(Debug)]
struct State {
    bucket: Bucket,
    in_flight: usize,
    windows: HashMap<WindowKey, Window>,
    /// Limits the provider announced, lower than ours, for windows not made yet.
    learned: HashMap<WindowKind, u32>,
    waiters: HashMap<(Priority, u64), Waiter>,
    /// The waiters by the set of windows they count in, each set in line order. Requests of
    /// one set wait for the same windows, so only the first of each can be granted next.
    groups: HashMap<Vec<WindowKey>, BTreeSet<(Priority, u64)>>,
    /// The first in line of each set, in line order: all a dispatch pass has to look at, so
    /// ten thousand requests behind one spent window cost it one look, not ten thousand.
    heads: BTreeSet<(Priority, u64)>,
    next_seq: u64,
}

impl State {
    fn enqueue(&mut self, id: (Priority, u64), waiter: Waiter) {
        let group = self.groups.entry(waiter.keys.clone()).or_default();
        let head = group.first().copied();
        group.insert(id);
        if head.is_none_or(|head| id < head) {
            if let Some(head) = head {
                self.heads.remove(&head);
                // It may sleep on a timer still; when it wakes it finds itself untimed.
                if let Some(displaced) = self.waiters.get_mut(&head) {
                    displaced.timed = false;
                }
            }
            self.heads.insert(id);
        }
        self.waiters.insert(id, waiter);
    }

    /// Takes a waiter out of line; the next of its set, if any, becomes that set's first.
    fn dequeue(&mut self, id: (Priority, u64)) -> Option<Waiter> {
        let waiter = self.waiters.remove(&id)?;
        if let Some(group) = self.groups.get_mut(&waiter.keys) {
            group.remove(&id);
            if self.heads.remove(&id)
                && let Some(next) = group.first()
            {
                self.heads.insert(*next);
            }
            if group.is_empty() {
                self.groups.remove(&waiter.keys);
            }
        }
        Some(waiter)
    }

    /// Puts a waiter on a timer, waking it to set one if it had none.
    fn time(&mut self, id: (Priority, u64)) {
        if let Some(waiter) = self.waiters.get_mut(&id)
            && !waiter.timed
        {
            waiter.timed = true;
            waiter.rewake.notify_one();
        }
    }
}

/// One (provider, origin, credential)'s shared budget.
#[derive(Debug)]
pub struct RateBudget {
    provider: Provider,
    config: RateBudgetConfig,
    state: Mutex<State>,
}

/// Held while a request is in flight; dropping it frees its slot and lets the next one go.
#[derive(Debug)]
pub struct BudgetPermit {
    budget: Arc<RateBudget>,
    keys: Vec<WindowKey>,
}

impl BudgetPermit {
    /// Learns from the answer's rate-limit facts: a rate-limited answer pauses this request's
    /// windows (the whole budget when it has none) for the provider's wait, or the configured
    /// one; otherwise the announced limit and `Remaining` update the windows the provider's
    /// headers describe, and `Remaining: 0` pauses them until the reset.
    pub fn observe(&self, signal: &RateLimitSignal, limit: Option<u64>, rate_limited: bool) {
        self.budget.observe(&self.keys, signal, limit, rate_limited);
    }
}

impl Drop for BudgetPermit {
    fn drop(&mut self) {
        self.budget.release(&self.keys);
    }
}

impl RateBudget {
    pub fn new(provider: Provider, config: RateBudgetConfig) -> Arc<Self> {
        Arc::new(RateBudget {
            provider,
            config,
            state: Mutex::new(State {
                bucket: Bucket::full(&config, Instant::now()),
                in_flight: 0,
                windows: HashMap::new(),
                learned: HashMap::new(),
                waiters: HashMap::new(),
                groups: HashMap::new(),
                heads: BTreeSet::new(),
                next_seq: 0,
            }),
        })
    }

    pub fn config(&self) -> &RateBudgetConfig {
        &self.config
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn keys_for(&self, endpoint: &Endpoint) -> Vec<WindowKey> {
        self.config.keys_for(endpoint)
    }

    fn limit_of(&self, key: &WindowKey) -> Option<WindowLimit> {
        self.config.limit_of(key)
    }

    fn window<'s>(&self, state: &'s mut State, key: &WindowKey) -> Option<&'s mut Window> {
        let limit = self.limit_of(key)?;
        let learned = state.learned.get(&key.kind()).copied();
        Some(state.windows.entry(key.clone()).or_insert_with(|| {
            let mut window = Window::new(limit);
            if let Some(requests) = learned {
                window.lower_limit(requests);
            }
            window
        }))
    }

    /// The latest of the instants `keys`' windows open at; `None` when all are open now.
    fn opens_at(&self, state: &mut State, keys: &[WindowKey], now: Instant) -> Option<Instant> {
        keys.iter()
            .filter_map(|key| self.window(state, key).and_then(|w| w.opens_at(now)))
            .max()
    }

    /// Grants, in priority order, every waiting request whose windows are open, while slots
    /// and tokens last. It looks only at the first in line of each set of windows: that one
    /// sleeps on a timer while its windows are spent, the rest of its set wait untimed, and
    /// its grant names the next. Timing them all would wake thousands at the instant a window
    /// opens, each running this pass for one grant.
    fn dispatch(&self, state: &mut State, now: Instant) {
        let mut after: Option<(Priority, u64)> = None;
        loop {
            let next = match after {
                None => state.heads.first(),
                Some(after) => state.heads.range((Excluded(after), Unbounded)).next(),
            };
            let Some(&id) = next else {
                return;
            };
            after = Some(id);
            if state.in_flight >= self.config.max_concurrent.max(1) {
                return;
            }
            if state.bucket.wait_for_token(&self.config, now).is_some() {
                // The first in line sleeps until the next token; its grant dispatches the rest.
                state.time(id);
                return;
            }
            let Some(keys) = state.waiters.get(&id).map(|waiter| waiter.keys.clone()) else {
                continue;
            };
            if self.opens_at(state, &keys, now).is_some() {
                // Nothing else would wake it when its windows open.
                state.time(id);
                continue;
            }
            // The next of its set becomes a first in line after this one: this pass gets to it.
            let Some(waiter) = state.dequeue(id) else {
                continue;
            };
            if waiter.grant.send(()).is_err() {
                // The caller gave up waiting; its drop removes nothing now, so nothing is taken.
                continue;
            }
            // Checked above, so the token is there.
            let _ = state.bucket.try_take(&self.config, now);
            state.in_flight += 1;
            for key in &keys {
                if let Some(window) = self.window(state, key) {
                    window.take(now);
                }
            }
        }
    }

    /// Waits for a slot, a token and room in every window `endpoint` counts in (and the end
    /// of any pause), behind waiting requests of a higher priority.
    pub async fn acquire(self: &Arc<Self>, endpoint: &Endpoint) -> BudgetPermit {
        let keys = self.keys_for(endpoint);
        let (grant, mut granted) = oneshot::channel();
        let rewake = Arc::new(Notify::new());
        let id = {
            let mut state = self.lock();
            let priority = if self.config.by_priority {
                Priority::of(endpoint.operation)
            } else {
                Priority::Read
            };
            let id = (priority, state.next_seq);
            state.next_seq += 1;
            state.enqueue(
                id,
                Waiter {
                    keys: keys.clone(),
                    grant,
                    timed: false,
                    rewake: Arc::clone(&rewake),
                },
            );
            id
        };
        let waiting = Waiting {
            budget: self,
            id,
            keys: &keys,
            granted: &mut granted,
        };
        loop {
            let wake = {
                let mut state = self.lock();
                let now = Instant::now();
                self.dispatch(&mut state, now);
                if waiting.granted.try_recv().is_ok() {
                    break;
                }
                // Not granted. Timed by the pass above: sleep until this request's windows or
                // the bucket open. Untimed: a slot freed by another request's end grants it
                // directly, and the one ahead of it for the same windows times it when granted.
                let timed = state.waiters.get(&id).is_some_and(|waiter| waiter.timed);
                let opens = if timed {
                    let windows = self.opens_at(&mut state, &keys, now);
                    let token = state
                        .bucket
                        .wait_for_token(&self.config, now)
                        .map(|wait| now + wait);
                    windows.max(token)
                } else {
                    None
                };
                if let Some(waiter) = state.waiters.get_mut(&id) {
                    waiter.timed = opens.is_some();
                }
                opens
                    .unwrap_or(now + MAX_PROVIDER_WAIT)
                    .max(now + Duration::from_millis(1))
            };
            tokio::select! {
                result = &mut *waiting.granted => {
                    if result.is_ok() {
                        break;
                    }
                }
                () = tokio::time::sleep_until(wake) => {}
                () = rewake.notified() => {}
            }
        }
        waiting.done();
        BudgetPermit {
            budget: Arc::clone(self),
            keys,
        }
    }

    /// How many waiting requests sleep on a timer (the rest wait to be granted or woken).
    #[cfg(test)]
    fn timed_waiters(&self) -> usize {
        self.lock().waiters.values().filter(|w| w.timed).count()
    }

    fn release(&self, keys: &[WindowKey]) {
        let mut state = self.lock();
        let now = Instant::now();
        state.in_flight = state.in_flight.saturating_sub(1);
        for key in keys {
            if let Some(window) = state.windows.get_mut(key) {
                window.finish();
            }
        }
        if state.windows.len() > IDLE_WINDOWS_KEPT {
            state.windows.retain(|_, window| !window.idle(now));
        }
        self.dispatch(&mut state, now);
    }

    fn observe(
        &self,
        keys: &[WindowKey],
        signal: &RateLimitSignal,
        limit: Option<u64>,
        rate_limited: bool,
    ) {
        let mut state = self.lock();
        let now = Instant::now();
        if rate_limited {
            let wait = clamp_wait(signal.wait().unwrap_or(self.config.pause_without_reset));
            let until = now + wait;
            if keys.is_empty() {
                state.bucket.pause_until(until);
            }
            for key in keys {
                if let Some(window) = self.window(&mut state, key) {
                    window.pause_until(until);
                }
            }
            return;
        }
        let Some(kind) = told_kind(self.provider) else {
            return;
        };
        if !keys.iter().any(|key| key.kind() == kind) {
            // No window of the kind the headers describe is configured: a spent window still
            // stops the whole budget until its reset.
            if let (true, Some(reset_in)) = (signal.exhausted(), signal.reset_in) {
                state.bucket.pause_until(now + clamp_wait(reset_in));
            }
            return;
        }
        for key in keys.iter().filter(|key| key.kind() == kind) {
            if let Some(limit) = limit.and_then(|l| u32::try_from(l).ok())
                && self.limit_of(key).is_some_and(|ours| limit < ours.requests)
            {
                let learned = state.learned.entry(kind).or_insert(limit);
                *learned = (*learned).min(limit);
                if let Some(window) = self.window(&mut state, key) {
                    window.lower_limit(limit);
                }
            }
            if let (Some(remaining), Some(reset_in)) = (signal.remaining, signal.reset_in)
                && let Some(window) = self.window(&mut state, key)
            {
                window.told(remaining, reset_in, now);
            }
        }
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
        self.lock().bucket.pause_until(until);
    }

    /// Time left in the longest current pause (of the whole budget or of any window), if any.
    pub fn paused_for(&self) -> Option<Duration> {
        let state = self.lock();
        let now = Instant::now();
        state
            .windows
            .values()
            .filter_map(|window| window.paused_until)
            .chain(state.bucket.paused_until())
            .filter(|until| *until > now)
            .max()
            .map(|until| until - now)
    }

    /// Time left in the pause of `endpoint`'s own window, if any.
    pub fn endpoint_paused_for(&self, endpoint: &Endpoint) -> Option<Duration> {
        let state = self.lock();
        let now = Instant::now();
        state
            .windows
            .get(&WindowKey::Endpoint(endpoint.clone()))
            .and_then(|window| window.paused_until)
            .filter(|until| *until > now)
            .map(|until| until - now)
    }

    /// The limit `endpoint`'s own window applies now (after anything the provider announced).
    pub fn endpoint_limit(&self, endpoint: &Endpoint) -> Option<WindowLimit> {
        let state = self.lock();
        state
            .windows
            .get(&WindowKey::Endpoint(endpoint.clone()))
            .map(Window::limit)
            .or_else(|| self.config.endpoint_window(endpoint.operation))
    }
}

/// Told when a request starts waiting its turn in a budget; the wait ends when what it
/// returned is dropped. A step engine uses it to leave such waits out of an attempt's timeout
/// (an hour in GitHub's creation window is a turn, not a hang).
pub trait WaitObserver: Send + Sync {
    fn waiting(&self) -> Box<dyn Send>;
}

tokio::task_local! {
    static WAIT_OBSERVER: Arc<dyn WaitObserver>;
}

/// Runs `work` with `observer` told of every budget wait of the provider calls it makes on
/// this task.
pub async fn observing_waits<F: std::future::Future>(
    observer: Arc<dyn WaitObserver>,
    work: F,
) -> F::Output {
    WAIT_OBSERVER.scope(observer, work).await
}

/// What the task's observer (if any) holds while a request waits.
pub(crate) fn wait_observed() -> Option<Box<dyn Send>> {
    WAIT_OBSERVER.try_with(|observer| observer.waiting()).ok()
}

/// A request waiting in the queue; dropping it (the caller gave up) takes it out, and gives
/// back what it was granted if the grant came in between.
struct Waiting<'a> {
    budget: &'a Arc<RateBudget>,
    id: (Priority, u64),
    keys: &'a [WindowKey],
    granted: &'a mut oneshot::Receiver<()>,
}

impl Waiting<'_> {
    /// The grant was received and becomes a permit.
    fn done(self) {
        std::mem::forget(self);
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut state = self.budget.lock();
        match state.dequeue(self.id) {
            // It may have been the one on a timer for its windows: the next in line takes over.
            Some(_) => self.budget.dispatch(&mut state, Instant::now()),
            None => {
                drop(state);
                if self.granted.try_recv().is_ok() {
                    self.budget.release(self.keys);
                }
            }
        }
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
    let budget = RateBudget::new(provider, config);
    map.insert(key, Arc::downgrade(&budget));
    budget
}
#[cfg(test)]
mod tests {
    use super::*;

    fn load(calls: u64, allowance: Allowance) -> WindowLoad {
        WindowLoad {
            window: String::new(),
            calls,
            allowance,
        }
    }

    #[test]
    fn a_window_costs_only_the_whole_windows_its_calls_need_beyond_one_allowance() {
        let minute = Allowance::Window(WindowLimit::per_minute(80));
        // 80 fit in one minute's allowance; the 81st waits for the next window.
        assert_eq!(load(80, minute).seconds(), 0.0);
        assert_eq!(load(81, minute).seconds(), 60.0);
        assert_eq!(load(161, minute).seconds(), 120.0);
        // 100 creations inside an hour's 500 are not bound by the hour at all...
        let hour = Allowance::Window(WindowLimit::per_hour(500));
        assert_eq!(load(100, hour).seconds(), 0.0);
        // ...though at the hour's steady rate they would take 720 s.
        assert!((load(100, hour).at_steady_rate() - 720.0).abs() < 1e-9);
        assert_eq!(load(0, hour).seconds(), 0.0);
        // A bucket sends its burst at once, then the rest at its rate.
        let bucket = Allowance::Bucket {
            burst: 10,
            per_second: 2.0,
        };
        assert_eq!(load(10, bucket).seconds(), 0.0);
        assert_eq!(load(30, bucket).seconds(), 10.0);
    }

    fn config(rate: f64, burst: u32) -> RateBudgetConfig {
        RateBudgetConfig {
            requests_per_second: rate,
            burst,
            max_concurrent: 4,
            pause_without_reset: Duration::from_secs(30),
            ..RateBudgetConfig::unlimited()
        }
    }

    const GET_A: &str = "GET /a/{id}";
    const GET_B: &str = "GET /b";

    /// A budget limiting each endpoint to `requests` a minute, and nothing else.
    fn per_endpoint(requests: u32, max_concurrent: usize) -> Arc<RateBudget> {
        RateBudget::new(
            Provider::Supabase,
            RateBudgetConfig {
                max_concurrent,
                per_endpoint: Some(WindowLimit::per_minute(requests)),
                ..RateBudgetConfig::unlimited()
            },
        )
    }

    /// Whether `acquire` would return without waiting (paused clock: only sleeping advances it).
    async fn immediate(budget: &Arc<RateBudget>, operation: &'static str) -> BudgetPermit {
        let before = Instant::now();
        let permit = budget.acquire(&Endpoint::new(operation)).await;
        assert_eq!(Instant::now(), before, "{operation} had to wait");
        permit
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
        let budget = RateBudget::new(
            Provider::N8n,
            RateBudgetConfig {
                max_concurrent: 2,
                ..RateBudgetConfig::unlimited()
            },
        );
        let first = budget.acquire(&Endpoint::new(GET_B)).await;
        let _second = budget.acquire(&Endpoint::new(GET_B)).await;
        let third = {
            let budget = Arc::clone(&budget);
            tokio::spawn(async move { budget.acquire(&Endpoint::new(GET_B)).await })
        };
        tokio::task::yield_now().await;
        assert!(!third.is_finished());
        drop(first);
        assert!(third.await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn acquire_sleeps_through_a_pause() {
        let budget = RateBudget::new(Provider::N8n, RateBudgetConfig::unlimited());
        budget.pause_for(Some(Duration::from_secs(42)));
        let before = Instant::now();
        let _permit = budget.acquire(&Endpoint::new(GET_B)).await;
        // Paused clock: the only way past the pause is to have slept through it.
        assert!(Instant::now() - before >= Duration::from_secs(42));
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_beyond_an_hour_is_held_to_an_hour() {
        let budget = RateBudget::new(Provider::N8n, RateBudgetConfig::unlimited());
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

    #[tokio::test(start_paused = true)]
    async fn each_endpoint_spends_its_own_window_in_full() {
        let budget = per_endpoint(3, 16);
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(immediate(&budget, GET_A).await);
            held.push(immediate(&budget, GET_B).await);
        }
        drop(held);
        // The fourth call to one endpoint waits for its window (a minute and the slack), and
        // not a moment longer.
        let before = Instant::now();
        let _fourth = budget.acquire(&Endpoint::new(GET_A)).await;
        assert_eq!(
            Instant::now() - before,
            Duration::from_secs(60) + ARRIVAL_SLACK
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_spent_window_holds_back_only_its_own_endpoint() {
        let budget = per_endpoint(1, 1);
        drop(immediate(&budget, GET_A).await);
        // Waits for its window, without holding the only slot.
        let waiting = {
            let budget = Arc::clone(&budget);
            tokio::spawn(async move { budget.acquire(&Endpoint::new(GET_A)).await })
        };
        tokio::task::yield_now().await;
        drop(immediate(&budget, GET_B).await);
        assert!(!waiting.is_finished());
        assert!(waiting.await.is_ok());
    }

    #[test]
    fn supabase_counts_per_project_and_organization() {
        let get = Endpoint::for_path(
            Provider::Supabase,
            "GET /v1/projects/{ref}/api-keys",
            &["v1", "projects", "abcdefghijklmnopqrst", "api-keys"],
        );
        assert_eq!(get.scope.as_deref(), Some("abcdefghijklmnopqrst"));
        let list = Endpoint::for_path(
            Provider::Supabase,
            "GET /v1/organizations/{slug}/projects",
            &["v1", "organizations", "agency", "projects"],
        );
        assert_eq!(list.scope.as_deref(), Some("agency"));
        // Counted against the organization in the body: one per credential here.
        let create =
            Endpoint::for_path(Provider::Supabase, "POST /v1/projects", &["v1", "projects"]);
        assert_eq!(create.scope, None);
        let github = Endpoint::for_path(
            Provider::Github,
            "GET /repos/{owner}/{repo}",
            &["repos", "agency", "x"],
        );
        assert_eq!(github.scope, None);
    }

    #[tokio::test(start_paused = true)]
    async fn two_projects_of_one_endpoint_each_have_a_window() {
        let budget = per_endpoint(1, 16);
        let a = Endpoint::for_path(Provider::Supabase, GET_A, &["a", "one"]);
        let b = Endpoint::for_path(Provider::Supabase, GET_A, &["a", "two"]);
        let before = Instant::now();
        let _a = budget.acquire(&a).await;
        let _b = budget.acquire(&b).await;
        assert_eq!(Instant::now(), before);
    }

    #[tokio::test(start_paused = true)]
    async fn remaining_zero_pauses_the_window_until_the_reset() {
        let budget = per_endpoint(100, 16);
        let permit = immediate(&budget, GET_A).await;
        permit.observe(
            &RateLimitSignal {
                retry_after: None,
                remaining: Some(0),
                reset_in: Some(Duration::from_secs(14)),
            },
            Some(120),
            false,
        );
        drop(permit);
        let paused = budget
            .endpoint_paused_for(&Endpoint::new(GET_A))
            .expect("paused");
        assert_eq!(paused, Duration::from_secs(14));
        // The other endpoint goes on.
        drop(immediate(&budget, GET_B).await);
        let before = Instant::now();
        let _next = budget.acquire(&Endpoint::new(GET_A)).await;
        assert_eq!(Instant::now() - before, Duration::from_secs(14));
    }

    #[tokio::test(start_paused = true)]
    async fn remaining_is_spent_down_until_the_reset() {
        let budget = per_endpoint(100, 16);
        let permit = immediate(&budget, GET_A).await;
        // Another process with the same token has used most of the window.
        permit.observe(
            &RateLimitSignal {
                retry_after: None,
                remaining: Some(2),
                reset_in: Some(Duration::from_secs(30)),
            },
            None,
            false,
        );
        drop(permit);
        drop(immediate(&budget, GET_A).await);
        drop(immediate(&budget, GET_A).await);
        let before = Instant::now();
        let _fourth = budget.acquire(&Endpoint::new(GET_A)).await;
        assert_eq!(Instant::now() - before, Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn an_announced_lower_limit_is_adopted_a_higher_one_is_not() {
        let budget = per_endpoint(115, 16);
        let endpoint = Endpoint::new(GET_A);
        let told = |permit: &BudgetPermit, limit: u64| {
            permit.observe(&RateLimitSignal::default(), Some(limit), false);
        };
        let permit = immediate(&budget, GET_A).await;
        told(&permit, 10_000);
        assert_eq!(
            budget.endpoint_limit(&endpoint).map(|l| l.requests),
            Some(115)
        );
        told(&permit, 3);
        drop(permit);
        assert_eq!(
            budget.endpoint_limit(&endpoint).map(|l| l.requests),
            Some(3)
        );
        // Windows made later start from the announced limit.
        let other = Endpoint::new(GET_B);
        drop(budget.acquire(&other).await);
        assert_eq!(budget.endpoint_limit(&other).map(|l| l.requests), Some(3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_pauses_the_requests_windows_for_the_providers_wait() {
        let budget = per_endpoint(100, 16);
        let permit = immediate(&budget, GET_A).await;
        permit.observe(
            &RateLimitSignal {
                retry_after: Some(Duration::from_secs(7)),
                ..RateLimitSignal::default()
            },
            None,
            true,
        );
        drop(permit);
        assert_eq!(budget.paused_for(), Some(Duration::from_secs(7)));
        drop(immediate(&budget, GET_B).await);
    }

    #[tokio::test(start_paused = true)]
    async fn long_poles_go_before_lookups_that_waited_longer() {
        let budget = per_endpoint(1000, 1);
        let slot = immediate(&budget, GET_B).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for operation in [GET_A, GET_B, "POST /v1/projects", "PATCH /x", GET_A] {
            let (budget, order) = (Arc::clone(&budget), Arc::clone(&order));
            tasks.push(tokio::spawn(async move {
                let _permit = budget.acquire(&Endpoint::new(operation)).await;
                order
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(operation);
                tokio::task::yield_now().await;
            }));
            // Queued in this order.
            tokio::task::yield_now().await;
        }
        drop(slot);
        for task in tasks {
            assert!(task.await.is_ok());
        }
        let order = order.lock().unwrap_or_else(PoisonError::into_inner).clone();
        assert_eq!(
            order,
            ["POST /v1/projects", "PATCH /x", GET_A, GET_B, GET_A]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn github_creates_count_in_the_creation_windows_too() {
        let budget = RateBudget::new(
            Provider::Github,
            RateBudgetConfig {
                creates: Some(WindowLimit::per_minute(2)),
                overall: Some(WindowLimit::per_hour(100)),
                ..RateBudgetConfig::unlimited()
            },
        );
        const GENERATE: &str = "POST /repos/{template_owner}/{template_repo}/generate";
        drop(immediate(&budget, GENERATE).await);
        drop(immediate(&budget, "POST /other").await);
        // Reads are not creates.
        drop(immediate(&budget, GET_A).await);
        let before = Instant::now();
        drop(budget.acquire(&Endpoint::new(GENERATE)).await);
        assert_eq!(Instant::now() - before, Duration::from_secs(61));
    }

    #[tokio::test(start_paused = true)]
    async fn a_caller_that_stops_waiting_leaves_no_slot_taken() {
        let budget = per_endpoint(1000, 1);
        let slot = immediate(&budget, GET_A).await;
        let gave_up = {
            let budget = Arc::clone(&budget);
            tokio::spawn(async move { budget.acquire(&Endpoint::new(GET_A)).await })
        };
        tokio::task::yield_now().await;
        gave_up.abort();
        let _ = gave_up.await;
        drop(slot);
        drop(immediate(&budget, GET_A).await);
    }

    /// When each of `count` requests to `endpoint`, all asking at once and each holding its
    /// permit for `hold`, was granted, from the start, in order.
    async fn grant_times(
        budget: &Arc<RateBudget>,
        endpoint: &Endpoint,
        count: usize,
        hold: Duration,
    ) -> Vec<Duration> {
        let t0 = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..count {
            let budget = Arc::clone(budget);
            let endpoint = endpoint.clone();
            tasks.push(tokio::spawn(async move {
                let permit = budget.acquire(&endpoint).await;
                let granted = Instant::now() - t0;
                tokio::time::sleep(hold).await;
                drop(permit);
                granted
            }));
        }
        let mut granted = Vec::new();
        for task in tasks {
            granted.push(task.await.unwrap());
        }
        granted.sort();
        granted
    }

    /// 101 repository generations at once against GitHub's default budget: 75 go in the first
    /// minute, the rest as the window's first sends expire, none later than the second minute.
    #[tokio::test(start_paused = true)]
    async fn creations_beyond_one_minute_s_allowance_go_in_the_next_minute() {
        let budget = RateBudget::new(
            Provider::Github,
            RateBudgetConfig::default_for(Provider::Github),
        );
        let endpoint = Endpoint::for_path(
            Provider::Github,
            "POST /repos/{template_owner}/{template_repo}/generate",
            &["repos", "agency", "template", "generate"],
        );
        let granted = grant_times(&budget, &endpoint, 101, Duration::from_millis(300)).await;
        // 20 in flight at most, each for 300 ms: the first 75 go within 1.2 s.
        assert!(granted[74] <= Duration::from_millis(1200), "{granted:?}");
        assert!(granted[75] >= Duration::from_secs(60), "{granted:?}");
        assert!(granted[100] <= Duration::from_secs(63), "{granted:?}");
    }

    /// One request in flight at most and two tokens a second: the requests that waited for the
    /// slot find the bucket empty when it frees, and go as tokens come, not an hour later.
    #[tokio::test(start_paused = true)]
    async fn requests_that_waited_for_a_slot_go_when_the_bucket_refills() {
        let budget = RateBudget::new(
            Provider::N8n,
            RateBudgetConfig {
                requests_per_second: 2.0,
                burst: 2,
                max_concurrent: 1,
                ..RateBudgetConfig::unlimited()
            },
        );
        let endpoint = Endpoint::new("GET /workflows");
        let granted = grant_times(&budget, &endpoint, 5, Duration::from_millis(10)).await;
        // Two from the burst, then one every half second.
        assert!(granted[4] <= Duration::from_secs(2), "{granted:?}");
        assert!(granted[4] >= Duration::from_millis(1400), "{granted:?}");
    }
    /// Spawns `count` requests to `operation` and lets each reach its wait.
    async fn waiting(
        budget: &Arc<RateBudget>,
        operation: &'static str,
        count: usize,
    ) -> Vec<tokio::task::JoinHandle<Instant>> {
        let mut tasks = Vec::new();
        for _ in 0..count {
            let budget = Arc::clone(budget);
            tasks.push(tokio::spawn(async move {
                drop(budget.acquire(&Endpoint::new(operation)).await);
                Instant::now()
            }));
            tokio::task::yield_now().await;
        }
        for _ in 0..4 {
            tokio::task::yield_now().await;
        }
        tasks
    }

    /// A thousand requests behind one spent window: one sleeps on a timer per set of windows,
    /// not a thousand (which would all wake when it opens, each passing over all the others),
    /// and every one of them still goes when the window lets it.
    #[tokio::test(start_paused = true)]
    async fn of_many_requests_behind_a_spent_window_only_the_first_sleeps_on_a_timer() {
        let budget = per_endpoint(100, 1000);
        let t0 = Instant::now();
        let mut held = Vec::new();
        for _ in 0..100 {
            held.push(immediate(&budget, GET_A).await);
        }
        drop(held);
        let mut tasks = waiting(&budget, GET_A, 1000).await;
        tasks.extend(waiting(&budget, GET_B, 1).await);
        // GET_B's window is open: it went at once; GET_A's thousand wait behind one timer.
        assert_eq!(budget.timed_waiters(), 1);
        let mut done = Vec::new();
        for task in tasks {
            done.push(task.await.unwrap() - t0);
        }
        done.sort();
        assert_eq!(done[0], Duration::ZERO, "{:?}", &done[..3]);
        // A hundred a minute: the last of the thousand goes in the tenth minute after the
        // first hundred, not an hour later.
        let window = Duration::from_secs(60) + ARRIVAL_SLACK;
        assert_eq!(done[1], window, "{:?}", &done[..3]);
        assert_eq!(done[1000], window * 10, "{:?}", &done[995..]);
        assert_eq!(budget.timed_waiters(), 0);
    }

    /// The one on the timer gives up: the next in line takes the timer over and goes when the
    /// window opens, not after the hour an untimed waiter sleeps.
    #[tokio::test(start_paused = true)]
    async fn when_the_timed_request_gives_up_the_next_one_takes_its_timer_over() {
        let budget = per_endpoint(1, 16);
        let t0 = Instant::now();
        drop(immediate(&budget, GET_A).await);
        let mut tasks = waiting(&budget, GET_A, 2).await;
        assert_eq!(budget.timed_waiters(), 1);
        let second = tasks.pop().unwrap();
        let first = tasks.pop().unwrap();
        first.abort();
        let _ = first.await;
        assert_eq!(budget.timed_waiters(), 1);
        assert_eq!(
            second.await.unwrap() - t0,
            Duration::from_secs(60) + ARRIVAL_SLACK
        );
    }
}
