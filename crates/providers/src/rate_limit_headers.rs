//! What a response's headers say about when the next request may go out.
//!
//! Each provider speaks its own dialect (API-CONTRACTS §1.6, §2.3, §3.6):
//! - `Retry-After`: delay-seconds or an HTTP-date (RFC 9110 §10.2.3); GitHub and Vercel send it.
//! - Supabase `X-RateLimit-Reset`: seconds left until the window resets (recorded "60").
//! - GitHub `x-ratelimit-reset`: UTC epoch seconds; `x-ratelimit-remaining: 0` means the
//!   primary limit is spent until then.
//! - Vercel's `X-RateLimit-*` semantics are not confirmed by a first-party source, so only its
//!   `Retry-After` is trusted.
//!
//! Every wait read here is clamped to [`MAX_PROVIDER_WAIT`]: a header is input from outside,
//! and `Retry-After: 99999999999999999` or `X-RateLimit-Reset: 1e300` must not overflow an
//! `Instant` (a panic) nor park the process for centuries.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::HeaderMap;

use crate::error::Provider;

/// The longest a provider can make us wait with one answer. No documented limit window is
/// longer (GitHub's primary window is an hour); anything beyond is a bug on the other side,
/// and waiting an hour then asking again is the sane answer to it.
pub const MAX_PROVIDER_WAIT: Duration = Duration::from_secs(3600);

/// `wait`, or [`MAX_PROVIDER_WAIT`] when it is longer.
pub fn clamp_wait(wait: Duration) -> Duration {
    wait.min(MAX_PROVIDER_WAIT)
}

/// A count of seconds given as digits (any length): clamped rather than refused, since an
/// absurdly long wait still means "not now".
fn clamped_whole_seconds(value: &str) -> Option<Duration> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(match value.parse::<u64>() {
        Ok(seconds) => clamp_wait(Duration::from_secs(seconds)),
        // More digits than a u64 holds.
        Err(_) => MAX_PROVIDER_WAIT,
    })
}

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

/// The requests a window allows, as `X-RateLimit-Limit` announces it (Supabase, GitHub).
pub fn announced_limit(headers: &HeaderMap) -> Option<u64> {
    header_str(headers, "x-ratelimit-limit").and_then(|v| v.trim().parse().ok())
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `Retry-After: 120` or `Retry-After: Wed, 21 Oct 2015 07:28:00 GMT`.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Some(wait) = clamped_whole_seconds(value) {
        return Some(wait);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    // A date already past means "now".
    Some(clamp_wait(at.duration_since(now).unwrap_or(Duration::ZERO)))
}

/// Supabase: the header holds the seconds remaining in the window.
pub fn parse_seconds_left(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Some(wait) = clamped_whole_seconds(value) {
        return Some(wait);
    }
    let seconds: f64 = value.parse().ok()?;
    // Clamped before the conversion: `from_secs_f64` panics on values past `Duration::MAX`.
    (seconds.is_finite() && seconds >= 0.0)
        .then(|| Duration::from_secs_f64(seconds.min(MAX_PROVIDER_WAIT.as_secs_f64())))
}

/// GitHub: the header holds the UTC epoch second at which the window resets.
pub fn parse_epoch_seconds(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // An epoch too large for a u64 or a SystemTime is far in the future: the longest wait.
    let Some(at) = value
        .parse::<u64>()
        .ok()
        .and_then(|epoch| UNIX_EPOCH.checked_add(Duration::from_secs(epoch)))
    else {
        return Some(MAX_PROVIDER_WAIT);
    };
    Some(clamp_wait(at.duration_since(now).unwrap_or(Duration::ZERO)))
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
    fn absurd_waits_are_clamped_to_an_hour() {
        let now = at(1_700_000_000);
        for value in [
            "99999999999999999",
            "18446744073709551615",
            "999999999999999999999999999999",
        ] {
            assert_eq!(parse_retry_after(value, now), Some(MAX_PROVIDER_WAIT));
            assert_eq!(parse_seconds_left(value), Some(MAX_PROVIDER_WAIT));
            assert_eq!(parse_epoch_seconds(value, now), Some(MAX_PROVIDER_WAIT));
        }
        for value in ["1e300", "1.7976931348623157e308", "86400.5"] {
            assert_eq!(
                parse_seconds_left(value),
                Some(MAX_PROVIDER_WAIT),
                "{value}"
            );
        }
        assert_eq!(
            parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now),
            Some(MAX_PROVIDER_WAIT)
        );
        assert_eq!(parse_seconds_left("inf"), None);
        assert_eq!(parse_seconds_left("NaN"), None);
        assert_eq!(parse_seconds_left("-1e300"), None);
        assert_eq!(parse_seconds_left("2.5"), Some(Duration::from_millis(2500)));
    }

    #[test]
    fn absent_headers_give_no_wait() {
        let signal = RateLimitSignal::parse(Provider::N8n, &HeaderMap::new(), at(0));
        assert_eq!(signal, RateLimitSignal::default());
        assert_eq!(signal.wait(), None);
        assert!(!signal.exhausted());
    }
}
