//! Rate-limit windows as the simulated providers count them: a key's window opens with its
//! first request and lasts the window's length; every request in it counts, refused ones too
//! (Supabase answers 429 "for the rest of the minute", API-CONTRACTS §1.6).

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// What counting one request found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counted {
    /// This request's number in its window, from 1.
    pub(crate) count: u32,
    /// Time left until the window resets.
    pub(crate) resets_in: Duration,
    /// The reset as UTC epoch seconds (GitHub's `x-ratelimit-reset`).
    pub(crate) resets_at_epoch: i64,
}

impl Counted {
    /// Whether the request is over `limit`.
    pub(crate) fn over(&self, limit: u32) -> bool {
        self.count > limit
    }

    /// The reset in whole seconds, rounded up (Supabase's `X-RateLimit-Reset`, `Retry-After`).
    pub(crate) fn resets_in_secs(&self) -> u64 {
        self.resets_in.as_secs_f64().ceil() as u64
    }
}

#[derive(Debug)]
struct Opened {
    started: Instant,
    started_epoch: i64,
    count: u32,
}

#[derive(Debug)]
pub(crate) struct FixedWindows<K> {
    windows: HashMap<K, Opened>,
}

impl<K> Default for FixedWindows<K> {
    fn default() -> Self {
        FixedWindows {
            windows: HashMap::new(),
        }
    }
}

impl<K: Hash + Eq> FixedWindows<K> {
    /// Counts one request of `key` arriving at `now`, in windows `length` long.
    pub(crate) fn count(&mut self, key: K, length: Duration, now: Instant) -> Counted {
        let window = self.windows.entry(key).or_insert_with(|| Opened {
            started: now,
            started_epoch: chrono::Utc::now().timestamp(),
            count: 0,
        });
        if now.duration_since(window.started) >= length {
            window.started = now;
            window.started_epoch = chrono::Utc::now().timestamp();
            window.count = 0;
        }
        window.count = window.count.saturating_add(1);
        Counted {
            count: window.count,
            resets_in: length.saturating_sub(now.duration_since(window.started)),
            resets_at_epoch: window.started_epoch
                + i64::try_from(length.as_secs()).unwrap_or(i64::MAX),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_counts_from_its_first_request_and_resets_after_its_length() {
        let mut windows = FixedWindows::default();
        let minute = Duration::from_secs(60);
        let t0 = Instant::now();
        assert_eq!(windows.count("a", minute, t0).count, 1);
        let second = windows.count("a", minute, t0 + Duration::from_secs(20));
        assert_eq!(second.count, 2);
        assert_eq!(second.resets_in, Duration::from_secs(40));
        assert!(second.over(1));
        assert!(!second.over(2));
        // Another key has its own window.
        assert_eq!(
            windows
                .count("b", minute, t0 + Duration::from_secs(20))
                .count,
            1
        );
        let next = windows.count("a", minute, t0 + Duration::from_secs(60));
        assert_eq!(next.count, 1);
        assert_eq!(next.resets_in_secs(), 60);
    }
}
