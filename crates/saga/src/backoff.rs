//! Exponential backoff with full jitter and a cap; a provider's own hint wins when larger.

use std::time::Duration;

use rand::Rng;

use crate::step::RetryPolicy;

/// The wait before the next attempt, after `failed_attempts` failures (1 for the first).
pub fn next_delay(policy: &RetryPolicy, failed_attempts: u32, hint: Option<Duration>) -> Duration {
    let doublings = failed_attempts.saturating_sub(1).min(32);
    let ceiling = policy
        .backoff_base
        .saturating_mul(1_u32 << doublings.min(31))
        .min(policy.backoff_cap);
    let ceiling_ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
    let jittered = Duration::from_millis(rand::rng().random_range(0..=ceiling_ms));
    match hint {
        Some(after) if after > jittered => after,
        _ => jittered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            timeout: Duration::from_secs(1),
            max_attempts: 10,
            backoff_base: Duration::from_millis(100),
            backoff_cap: Duration::from_millis(1000),
        }
    }

    #[test]
    fn delay_stays_under_the_doubling_ceiling_and_the_cap() {
        for attempt in 1..=12 {
            let ceiling = (100_u64 << (attempt - 1).min(20)).min(1000);
            for _ in 0..200 {
                let d = next_delay(&policy(), attempt, None);
                assert!(
                    d <= Duration::from_millis(ceiling),
                    "attempt {attempt}: {d:?}"
                );
            }
        }
    }

    #[test]
    fn a_larger_hint_wins_and_a_smaller_one_does_not_shorten() {
        let d = next_delay(&policy(), 1, Some(Duration::from_secs(30)));
        assert_eq!(d, Duration::from_secs(30));
        for _ in 0..100 {
            let d = next_delay(&policy(), 4, Some(Duration::from_millis(1)));
            assert!(d <= Duration::from_millis(800));
        }
    }
}
