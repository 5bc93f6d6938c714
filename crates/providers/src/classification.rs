//! The one table that turns a provider's answer into what the caller should do next.
//!
//! | answer | outcome |
//! | --- | --- |
//! | 2xx | success |
//! | 404 | `NotFound` |
//! | 409; GitHub 422 "… already exists …" (`/generate`) | `Conflict` |
//! | 429; GitHub 403 with `retry-after` or `x-ratelimit-remaining: 0` | `Retryable` after the provider's wait, budget paused |
//! | 408, 425, 5xx | `Retryable` (after `Retry-After` when sent) |
//! | Supabase 400 "Project not ready for deletion." on delete | `Retryable` |
//! | Supabase api-keys 4xx other than 401/403 (briefly after ACTIVE_HEALTHY) | `Retryable` |
//! | anything else | `Permanent` with the provider's message |
//!
//! Sources: API-CONTRACTS §1.5–1.7 (Supabase), §2.3–2.4 (GitHub), §3.1, §3.7 (Vercel), §4.1 (n8n).

use crate::error::{Provider, ProviderError};
use crate::rate_limit_headers::RateLimitSignal;

/// Documented transient 4xx answers that only some calls have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TransientClientErrors {
    #[default]
    None,
    /// Supabase `DELETE /v1/projects/{ref}` while the project is still provisioning.
    SupabaseNotReadyForDeletion,
    /// Supabase `GET /v1/projects/{ref}/api-keys` right after ACTIVE_HEALTHY "may briefly
    /// return 4xx" (its CLI retries 12× every 10 s): every 4xx but 401/403 is transient there.
    SupabaseApiKeysWarmingUp,
}

/// True when the answer says we are being rate limited (as opposed to refused).
pub fn is_rate_limited(provider: Provider, status: u16, signal: &RateLimitSignal) -> bool {
    status == 429
        || (provider == Provider::Github
            && status == 403
            && (signal.exhausted() || signal.retry_after.is_some()))
}

/// The outcome of a non-transport answer: `None` for success, else the error to return.
/// `message` is the provider's own message, already read from its error envelope.
pub fn classify(
    provider: Provider,
    status: u16,
    signal: &RateLimitSignal,
    message: &str,
    transient: TransientClientErrors,
) -> Option<ProviderError> {
    if (200..300).contains(&status) {
        return None;
    }
    let retryable = |after| ProviderError::Retryable {
        provider,
        status: Some(status),
        message: message.to_owned(),
        after,
        ambiguous: false,
    };
    if is_rate_limited(provider, status, signal) {
        return Some(retryable(signal.wait()));
    }
    if status >= 500 || status == 408 || status == 425 {
        return Some(retryable(signal.retry_after));
    }
    let auth_failure = status == 401 || status == 403;
    match transient {
        TransientClientErrors::SupabaseNotReadyForDeletion
            if status == 400
                && message
                    .to_ascii_lowercase()
                    .contains("not ready for deletion") =>
        {
            return Some(retryable(None));
        }
        TransientClientErrors::SupabaseApiKeysWarmingUp
            if (400..500).contains(&status) && !auth_failure =>
        {
            return Some(retryable(None));
        }
        _ => {}
    }
    match status {
        404 => Some(ProviderError::NotFound),
        409 => Some(ProviderError::Conflict {
            message: message.to_owned(),
        }),
        // `/generate` with a taken name: "Could not clone: Name already exists on this
        // account"; plain repo creation words it "name already exists on this account".
        422 if provider == Provider::Github
            && message.to_ascii_lowercase().contains("already exists") =>
        {
            Some(ProviderError::Conflict {
                message: message.to_owned(),
            })
        }
        _ => Some(ProviderError::Permanent {
            status,
            message: message.to_owned(),
        }),
    }
}

/// Reads the provider's error envelope into one line of text.
///
/// Supabase and n8n: `{"message"}`; GitHub: `{"message", "errors"?}`; Vercel:
/// `{"error": {"code", "message"}}`. Anything else: the start of the body as text.
pub fn provider_message(provider: Provider, body: &[u8]) -> String {
    const MAX: usize = 500;
    truncate(provider_message_whole(provider, body), MAX)
}

/// [`provider_message`] without the length limit.
pub fn provider_message_whole(provider: Provider, body: &[u8]) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let from_json = parsed.as_ref().and_then(|json| match provider {
        Provider::Vercel => {
            let error = json.get("error").or_else(|| json.get("err"))?;
            let message = error.get("message").and_then(|m| m.as_str()).unwrap_or("");
            match error.get("code").and_then(|c| c.as_str()) {
                Some(code) => Some(format!("{code}: {message}")),
                None => Some(message.to_owned()),
            }
        }
        Provider::Github => {
            let mut text = json.get("message")?.as_str()?.to_owned();
            if let Some(errors) = json.get("errors").and_then(|e| e.as_array()) {
                let details: Vec<String> = errors
                    .iter()
                    .filter_map(|e| match e {
                        serde_json::Value::String(s) => Some(s.clone()),
                        other => other
                            .get("message")
                            .or_else(|| other.get("code"))
                            .and_then(|m| m.as_str())
                            .map(str::to_owned),
                    })
                    .collect();
                if !details.is_empty() {
                    text = format!("{text} ({})", details.join("; "));
                }
            }
            Some(text)
        }
        Provider::Supabase | Provider::N8n => json
            .get("message")
            .and_then(|m| m.as_str())
            .map(str::to_owned),
    });
    match from_json {
        Some(text) => text,
        None if body.is_empty() => "(empty body)".to_owned(),
        None => String::from_utf8_lossy(body).trim().to_owned(),
    }
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn signal() -> RateLimitSignal {
        RateLimitSignal::default()
    }

    fn outcome(provider: Provider, status: u16, message: &str) -> Option<ProviderError> {
        classify(
            provider,
            status,
            &signal(),
            message,
            TransientClientErrors::None,
        )
    }

    #[test]
    fn success_is_none() {
        for status in [200, 201, 204] {
            assert_eq!(outcome(Provider::Supabase, status, ""), None);
        }
    }

    #[test]
    fn not_found_and_conflicts_are_distinct() {
        assert_eq!(
            outcome(Provider::Vercel, 404, "not_found: Project not found"),
            Some(ProviderError::NotFound)
        );
        assert_eq!(
            outcome(
                Provider::Vercel,
                409,
                "conflict: Project \"x\" already exists."
            ),
            Some(ProviderError::Conflict {
                message: "conflict: Project \"x\" already exists.".into()
            })
        );
        assert!(matches!(
            outcome(
                Provider::Github,
                422,
                "Could not clone: Name already exists on this account"
            ),
            Some(ProviderError::Conflict { .. })
        ));
        // A 422 that is not about the name is a plain refusal.
        assert_eq!(
            outcome(Provider::Github, 422, "Validation Failed"),
            Some(ProviderError::Permanent {
                status: 422,
                message: "Validation Failed".into()
            })
        );
    }

    #[test]
    fn server_errors_and_timeouts_are_retryable() {
        for status in [408, 425, 500, 502, 503, 504] {
            let err = outcome(Provider::N8n, status, "Internal server error");
            assert!(
                matches!(
                    err,
                    Some(ProviderError::Retryable {
                        ambiguous: false,
                        ..
                    })
                ),
                "{status}: {err:?}"
            );
        }
    }

    #[test]
    fn too_many_requests_carries_the_providers_wait() {
        let with_reset = RateLimitSignal {
            retry_after: None,
            remaining: Some(0),
            reset_in: Some(Duration::from_secs(37)),
        };
        let err = classify(
            Provider::Supabase,
            429,
            &with_reset,
            "Too many requests",
            TransientClientErrors::None,
        );
        assert_eq!(
            err.and_then(|e| e.retry_after()),
            Some(Duration::from_secs(37))
        );
    }

    #[test]
    fn github_403_is_a_rate_limit_only_when_the_headers_say_so() {
        let spent = RateLimitSignal {
            retry_after: None,
            remaining: Some(0),
            reset_in: Some(Duration::from_secs(120)),
        };
        let err = classify(
            Provider::Github,
            403,
            &spent,
            "API rate limit exceeded",
            TransientClientErrors::None,
        );
        assert!(err.as_ref().is_some_and(ProviderError::is_retryable));
        assert_eq!(
            err.and_then(|e| e.retry_after()),
            Some(Duration::from_secs(120))
        );

        let secondary = RateLimitSignal {
            retry_after: Some(Duration::from_secs(60)),
            ..Default::default()
        };
        assert!(
            classify(
                Provider::Github,
                403,
                &secondary,
                "secondary",
                TransientClientErrors::None
            )
            .is_some_and(|e| e.is_retryable())
        );

        let left = RateLimitSignal {
            remaining: Some(4999),
            ..Default::default()
        };
        assert_eq!(
            classify(
                Provider::Github,
                403,
                &left,
                "Organization members cannot delete repositories.",
                TransientClientErrors::None
            ),
            Some(ProviderError::Permanent {
                status: 403,
                message: "Organization members cannot delete repositories.".into()
            })
        );
        // Other providers' 403 is never a rate limit.
        assert!(matches!(
            classify(
                Provider::N8n,
                403,
                &spent,
                "Forbidden",
                TransientClientErrors::None
            ),
            Some(ProviderError::Permanent { status: 403, .. })
        ));
    }

    #[test]
    fn unauthorized_is_permanent_everywhere() {
        for provider in [
            Provider::Supabase,
            Provider::Github,
            Provider::Vercel,
            Provider::N8n,
        ] {
            for transient in [
                TransientClientErrors::None,
                TransientClientErrors::SupabaseApiKeysWarmingUp,
                TransientClientErrors::SupabaseNotReadyForDeletion,
            ] {
                assert!(matches!(
                    classify(provider, 401, &signal(), "Unauthorized", transient),
                    Some(ProviderError::Permanent { status: 401, .. })
                ));
            }
        }
    }

    #[test]
    fn supabase_documented_transient_4xx() {
        let not_ready = classify(
            Provider::Supabase,
            400,
            &signal(),
            "Project not ready for deletion.",
            TransientClientErrors::SupabaseNotReadyForDeletion,
        );
        assert!(not_ready.is_some_and(|e| e.is_retryable()));
        // The same words on a call without the rule are a refusal.
        assert!(matches!(
            outcome(Provider::Supabase, 400, "Project not ready for deletion."),
            Some(ProviderError::Permanent { status: 400, .. })
        ));
        // Another 400 on delete is a refusal.
        assert!(matches!(
            classify(
                Provider::Supabase,
                400,
                &signal(),
                "Invalid project ref",
                TransientClientErrors::SupabaseNotReadyForDeletion
            ),
            Some(ProviderError::Permanent { status: 400, .. })
        ));
        for status in [400, 404, 409, 422] {
            assert!(
                classify(
                    Provider::Supabase,
                    status,
                    &signal(),
                    "not yet",
                    TransientClientErrors::SupabaseApiKeysWarmingUp
                )
                .is_some_and(|e| e.is_retryable()),
                "{status}"
            );
        }
        assert!(matches!(
            classify(
                Provider::Supabase,
                403,
                &signal(),
                "Forbidden",
                TransientClientErrors::SupabaseApiKeysWarmingUp
            ),
            Some(ProviderError::Permanent { status: 403, .. })
        ));
    }

    #[test]
    fn error_envelopes_are_read_per_provider() {
        assert_eq!(
            provider_message(
                Provider::Vercel,
                br#"{"error":{"code":"conflict","message":"Project \"a\" already exists."}}"#
            ),
            "conflict: Project \"a\" already exists."
        );
        assert_eq!(
            provider_message(
                Provider::Github,
                br#"{"message":"Repository creation failed.","errors":[{"resource":"Repository","code":"custom","field":"name","message":"name already exists on this account"}],"documentation_url":"x"}"#
            ),
            "Repository creation failed. (name already exists on this account)"
        );
        assert_eq!(
            provider_message(
                Provider::Supabase,
                br#"{"message":"Project not ready for deletion."}"#
            ),
            "Project not ready for deletion."
        );
        assert_eq!(
            provider_message(
                Provider::N8n,
                br#"{"message":"'X-N8N-API-KEY' header required"}"#
            ),
            "'X-N8N-API-KEY' header required"
        );
        assert_eq!(provider_message(Provider::N8n, b""), "(empty body)");
        assert_eq!(
            provider_message(Provider::N8n, b"<html>Bad Gateway</html>"),
            "<html>Bad Gateway</html>"
        );
        let long = "x".repeat(2000);
        assert!(provider_message(Provider::N8n, long.as_bytes()).len() < 600);
    }
}
