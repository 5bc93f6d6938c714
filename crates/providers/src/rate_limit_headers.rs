//! What a response's headers say about when the next request may go out.
//!
//! Each provider speaks its own dialect (API-CONTRACTS §1.6, §2.3, §3.6):
//! - `Retry-After`: delay-seconds or an HTTP-date (RFC 9110 §10.2.3); GitHub and Vercel send it.
//! - Supabase `X-RateLimit-Reset`: seconds left until the window resets (recorded "60").
//! - GitHub `x-ratelimit-reset`: UTC epoch seconds; `x-ratelimit-remaining: 0` means the
//!   primary limit is spent until then.
//! - Vercel's `X-RateLimit-*` semantics are not confirmed by a first-party source, so only its
//!   `Retry-After` is trusted.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::HeaderMap;

use crate::error::Provider;

/// The rate-limit facts one response carried, already turned into waits relative to `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RateLimitSignal {
    /// From `Retry-After`.
    pub retry_after: Option<Duration>,
    /// Requests left in the current window.
    pub remaining: Option<u64>,
    /// Time until the window resets, from the provider's reset header.
    pub reset_in: Option<Duration>,
}

impl RateLimitSignal {
    pub fn parse(provider: Provider, headers: &HeaderMap, now: SystemTime) -> Self {
        let retry_after =
            header_str(headers, "retry-after").and_then(|v| parse_retry_after(v, now));
        let remaining =
            header_str(headers, "x-ratelimit-remaining").and_then(|v| v.trim().parse().ok());
        let reset_in = match provider {
            Provider::Supabase => {
                header_str(headers, "x-ratelimit-reset").and_then(parse_seconds_left)
            }
            Provider::Github => {
                header_str(headers, "x-ratelimit-reset").and_then(|v| parse_epoch_seconds(v, now))
            }
            Provider::Vercel | Provider::N8n => None,
        };
        RateLimitSignal {
            retry_after,
            remaining,
            reset_in,
        }
    }

    /// How long to hold off after a rate-limited answer: `Retry-After` first, else the reset.
    pub fn wait(&self) -> Option<Duration> {
        self.retry_after.or(self.reset_in)
    }

    /// The window is spent: the next request would be refused until the reset.
    pub fn exhausted(&self) -> bool {
        self.remaining == Some(0)
    }
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `Retry-After: 120` or `Retry-After: Wed, 21 Oct 2015 07:28:00 GMT`.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    // A date already past means "now".
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Supabase: the header holds the seconds remaining in the window.
pub fn parse_seconds_left(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let seconds: f64 = value.parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds))
}

/// GitHub: the header holds the UTC epoch second at which the window resets.
pub fn parse_epoch_seconds(value: &str, now: SystemTime) -> Option<Duration> {
    let epoch: u64 = value.trim().parse().ok()?;
    let at = UNIX_EPOCH.checked_add(Duration::from_secs(epoch))?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn at(epoch: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(epoch)
    }

    #[test]
    fn retry_after_seconds_and_http_date() {
        let now = at(1_445_412_470); // Wed, 21 Oct 2015 07:27:50 GMT
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }

    #[test]
    fn supabase_reset_is_seconds_left_not_an_epoch() {
        let now = at(2_000_000_000);
        let signal = RateLimitSignal::parse(
            Provider::Supabase,
            &headers(&[
                ("x-ratelimit-limit", "120"),
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", "14"),
            ]),
            now,
        );
        assert_eq!(signal.reset_in, Some(Duration::from_secs(14)));
        assert_eq!(signal.remaining, Some(0));
        assert!(signal.exhausted());
        assert_eq!(signal.wait(), Some(Duration::from_secs(14)));
    }

    #[test]
    fn github_reset_is_an_epoch() {
        let now = at(1_700_000_000);
        let signal = RateLimitSignal::parse(
            Provider::Github,
            &headers(&[
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", "1700000042"),
            ]),
            now,
        );
        assert_eq!(signal.reset_in, Some(Duration::from_secs(42)));
        // An epoch in the past: the window has already reset.
        let late = RateLimitSignal::parse(
            Provider::Github,
            &headers(&[("x-ratelimit-reset", "1699999000")]),
            now,
        );
        assert_eq!(late.reset_in, Some(Duration::ZERO));
    }

    #[test]
    fn retry_after_wins_over_reset() {
        let now = at(1_700_000_000);
        let signal = RateLimitSignal::parse(
            Provider::Github,
            &headers(&[("retry-after", "3"), ("x-ratelimit-reset", "1700000060")]),
            now,
        );
        assert_eq!(signal.wait(), Some(Duration::from_secs(3)));
    }

    #[test]
    fn vercel_reset_header_is_not_trusted() {
        let signal = RateLimitSignal::parse(
            Provider::Vercel,
            &headers(&[("x-ratelimit-reset", "1700000060"), ("retry-after", "7")]),
            at(1_700_000_000),
        );
        assert_eq!(signal.reset_in, None);
        assert_eq!(signal.wait(), Some(Duration::from_secs(7)));
    }

    #[test]
    fn absent_headers_give_no_wait() {
        let signal = RateLimitSignal::parse(Provider::N8n, &HeaderMap::new(), at(0));
        assert_eq!(signal, RateLimitSignal::default());
        assert_eq!(signal.wait(), None);
        assert!(!signal.exhausted());
    }
}
