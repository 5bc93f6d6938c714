//! Per-principal rate limit: a GCRA bucket per caller, so one misbehaving script cannot starve
//! the admins using the app.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::Principal;

/// Above this many tracked principals, idle ones (whose bucket is full again) are dropped.
const PRUNE_ABOVE: usize = 10_000;

pub(super) struct PrincipalRateLimit {
    /// Time one request "costs".
    interval: Duration,
    /// How far ahead of now a principal's bucket may run: `burst` requests' worth.
    tolerance: Duration,
    /// Theoretical arrival time per principal.
    next_free: Mutex<HashMap<(super::PrincipalKind, String), Instant>>,
}

impl PrincipalRateLimit {
    pub(super) fn new(per_minute: u32, burst: u32) -> Self {
        let interval = Duration::from_secs(60) / per_minute.max(1);
        Self {
            interval,
            tolerance: interval * burst.max(1),
            next_free: Mutex::new(HashMap::new()),
        }
    }

    /// Ok if `principal` may make a request now, else how long until it may.
    pub(super) fn check(&self, principal: &Principal) -> Result<(), Duration> {
        let now = Instant::now();
        // A poisoned lock only means another request panicked mid-update; the map of instants
        // is still usable.
        let mut next_free = self
            .next_free
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if next_free.len() > PRUNE_ABOVE {
            next_free.retain(|_, tat| *tat > now);
        }
        let key = (principal.kind, principal.name.clone());
        let tat = next_free.get(&key).copied().unwrap_or(now).max(now);
        let after = tat + self.interval;
        let ahead = after - now;
        if ahead > self.tolerance {
            return Err(ahead - self.tolerance);
        }
        next_free.insert(key, after);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::PrincipalKind;
    use super::*;

    fn principal(name: &str) -> Principal {
        Principal {
            name: name.into(),
            kind: PrincipalKind::User,
        }
    }

    #[test]
    fn a_burst_is_allowed_then_the_caller_waits_about_one_interval() {
        let limit = PrincipalRateLimit::new(60, 3);
        let alice = principal("alice");
        for _ in 0..3 {
            assert!(limit.check(&alice).is_ok());
        }
        let wait = limit.check(&alice).unwrap_err();
        assert!(
            wait <= Duration::from_secs(1) && wait > Duration::from_millis(900),
            "{wait:?}"
        );
        // Another principal has its own bucket.
        assert!(limit.check(&principal("bob")).is_ok());
    }
}
