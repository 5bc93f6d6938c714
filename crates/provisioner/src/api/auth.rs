//! Who is calling the API, and may they: every `/v1` and `/api` request carries
//! `Authorization: Bearer` with either a Supabase user JWT or a static API token.
//!
//! - User JWTs: HS256 with the project's legacy secret (`SUPABASE_JWT_SECRET`), or ES256/RS256
//!   with the keys published at `PROVISIONER_JWKS_URL`. The algorithm comes from the key, never
//!   from the token: HS256 is only ever checked against the secret, ES256/RS256 only against
//!   the JWKS key named by `kid`, whose own algorithm must match. Keys a token points at
//!   (`jku`, `x5u`, `jwk`, `x5c`) are never fetched or used; such tokens are refused.
//! - API tokens: configured only as SHA-256 hashes, compared in constant time; the caller is
//!   then known by the token's name.
//!
//! Missing or invalid credentials are 401 with `WWW-Authenticate`; a valid user without the
//! admin role (read from the configured claim path, never from `user_metadata`) is 403; a
//! principal over its rate limit is 429 with `Retry-After`.

mod jwks;
mod rate_limit;
mod tokens;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use crate::config::{ApiSettings, ConfigError};
use jwks::{JwksCache, KeyLookup};
use rate_limit::PrincipalRateLimit;
use tokens::{ApiTokens, TokenMatch};

/// Environment variable holding the Supabase project's legacy HS256 JWT secret.
pub const JWT_SECRET_VAR: &str = "SUPABASE_JWT_SECRET";
/// Environment variable holding the URL of the JWKS with the ES256/RS256 signing keys.
pub const JWKS_URL_VAR: &str = "PROVISIONER_JWKS_URL";

/// Supabase's legacy secrets are 40+ characters; anything much shorter can be brute-forced
/// offline from a single token.
const MIN_SECRET_LEN: usize = 32;
/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECS: u64 = 30;

/// An authenticated caller allowed to use the API.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Principal {
    /// The JWT's `sub` (the Supabase user id) or the API token's configured name.
    pub name: String,
    pub kind: PrincipalKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PrincipalKind {
    /// A Supabase user with the admin role.
    User,
    /// A machine holding one of the configured API tokens.
    ApiToken,
}

impl PrincipalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::ApiToken => "api_token",
        }
    }
}

/// Why a credential was not accepted. The texts name the rule, never the credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    NotBearer,
    Malformed,
    UnknownToken,
    RevokedToken,
    AlgorithmNotAccepted,
    AlgorithmMismatch,
    EmbeddedKey,
    MissingKeyId,
    UnknownKeyId,
    BadSignature,
    Expired,
    NotYetValid,
    WrongAudience,
    WrongIssuer,
    MissingClaim,
}

impl Rejection {
    fn description(self) -> &'static str {
        match self {
            Self::NotBearer => "the Authorization header must be one 'Bearer <token>'",
            Self::Malformed => "the token is neither a JWT nor a known API token",
            Self::UnknownToken => "the token is neither a JWT nor a known API token",
            Self::RevokedToken => "the API token has been revoked",
            Self::AlgorithmNotAccepted => "the token's signing algorithm is not accepted here",
            Self::AlgorithmMismatch => "the token's algorithm does not match its key",
            Self::EmbeddedKey => {
                "the token names its own key (jku, x5u, jwk or x5c), which is never trusted"
            }
            Self::MissingKeyId => "the token has no kid naming its signing key",
            Self::UnknownKeyId => "the token's kid is not among the published signing keys",
            Self::BadSignature => "the token's signature does not verify",
            Self::Expired => "the token has expired",
            Self::NotYetValid => "the token is not valid yet (nbf)",
            Self::WrongAudience => "the token is for another audience",
            Self::WrongIssuer => "the token is from another issuer",
            Self::MissingClaim => "the token lacks a required claim (exp, sub, aud)",
        }
    }
}

/// Why a request was not let in; its response carries the status the caller can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("authentication required: send Authorization: Bearer <token>")]
    Missing,
    #[error("invalid credentials: {}", .0.description())]
    Invalid(Rejection),
    #[error("{principal} is authenticated but is not an admin")]
    Forbidden { principal: String },
    #[error("too many requests from {principal}; retry in {} s", retry_after_secs(*.retry_after))]
    RateLimited {
        principal: String,
        retry_after: Duration,
    },
    /// The JWKS could not be fetched, so no ES256/RS256 token can be checked.
    #[error("the signing keys cannot be fetched right now; retry in {} s", retry_after_secs(*.retry_after))]
    KeysUnavailable { retry_after: Duration },
}

fn retry_after_secs(d: Duration) -> u64 {
    // Rounded up so a client that waits exactly this long is let in.
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl AuthError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Missing | Self::Invalid(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::KeysUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::Missing | Self::Invalid(_) => "unauthorized",
            Self::Forbidden { .. } => "forbidden",
            Self::RateLimited { .. } => "rate_limited",
            Self::KeysUnavailable { .. } => "unavailable",
        }
    }

    /// RFC 6750 §3: the challenge a client reads to know what to fix.
    fn challenge(&self) -> Option<String> {
        const REALM: &str = "Bearer realm=\"provisioner\"";
        match self {
            Self::Missing => Some(REALM.to_owned()),
            Self::Invalid(r) => Some(format!(
                "{REALM}, error=\"invalid_token\", error_description=\"{}\"",
                r.description()
            )),
            Self::Forbidden { .. } => Some(format!(
                "{REALM}, error=\"insufficient_scope\", error_description=\"the admin role is required\""
            )),
            Self::RateLimited { .. } | Self::KeysUnavailable { .. } => None,
        }
    }
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let body = Json(serde_json::json!({
            "error": self.code(),
            "message": self.to_string(),
        }));
        let mut response = (self.status(), body).into_response();
        let headers = response.headers_mut();
        if let Some(challenge) = self.challenge()
            && let Ok(value) = HeaderValue::from_str(&challenge)
        {
            headers.insert(header::WWW_AUTHENTICATE, value);
        }
        if let Self::RateLimited { retry_after, .. } | Self::KeysUnavailable { retry_after } = self
        {
            headers.insert(header::RETRY_AFTER, retry_after_secs(retry_after).into());
        }
        response
    }
}

/// Checks the credentials of every API request. Cheap to share: clone the `Arc` it is kept in.
pub struct Authenticator {
    hs256: Option<DecodingKey>,
    jwks: Option<JwksCache>,
    tokens: ApiTokens,
    audience: String,
    issuer: Option<String>,
    role_path: Vec<String>,
    admin_role: String,
    rate_limit: PrincipalRateLimit,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The secret and the token hashes stay out of logs.
        f.debug_struct("Authenticator")
            .field("hs256", &self.hs256.is_some())
            .field("jwks", &self.jwks)
            .field("api_tokens", &self.tokens.len())
            .field("audience", &self.audience)
            .field("issuer", &self.issuer)
            .field("role_path", &self.role_path.join("."))
            .field("admin_role", &self.admin_role)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Builds the authenticator from `[api]` and the environment (read through `env`). Every
    /// problem, in the file's settings or the environment, comes back in one error.
    pub fn from_config(
        settings: &ApiSettings,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut problems = settings.problems();
        let var = |name: &str| env(name).filter(|v| !v.trim().is_empty());

        let hs256 = match var(JWT_SECRET_VAR) {
            Some(secret) if secret.len() < MIN_SECRET_LEN => {
                problems.push(format!(
                    "{JWT_SECRET_VAR}: shorter than {MIN_SECRET_LEN} characters; use the project's JWT secret (Supabase dashboard: Project Settings > JWT Keys > Legacy JWT Secret)"
                ));
                None
            }
            // Supabase signs with the secret's text as it is shown, not base64-decoded.
            Some(secret) => Some(DecodingKey::from_secret(secret.as_bytes())),
            None => None,
        };
        let jwks = match var(JWKS_URL_VAR) {
            Some(url) => match JwksCache::new(&url) {
                Ok(cache) => Some(cache),
                Err(rule) => {
                    problems.push(format!("{JWKS_URL_VAR}: {rule}"));
                    None
                }
            },
            None => None,
        };
        let tokens = ApiTokens::from_settings(&settings.tokens);
        if hs256.is_none() && jwks.is_none() && tokens.is_empty() && problems.is_empty() {
            problems.push(format!(
                "no way to authenticate API callers: set {JWT_SECRET_VAR} (HS256 user tokens), {JWKS_URL_VAR} (ES256/RS256 user tokens, e.g. https://<ref>.supabase.co/auth/v1/.well-known/jwks.json) or add [[api.tokens]]"
            ));
        }
        if !problems.is_empty() {
            return Err(ConfigError { problems });
        }
        Ok(Self {
            hs256,
            jwks,
            tokens,
            audience: settings.jwt_audience.clone(),
            issuer: settings.jwt_issuer.clone(),
            role_path: settings.role_claim.split('.').map(str::to_owned).collect(),
            admin_role: settings.admin_role.clone(),
            rate_limit: PrincipalRateLimit::new(
                settings.rate_limit_per_minute,
                settings.rate_limit_burst,
            ),
        })
    }

    /// The shortest time between two JWKS fetches triggered by unknown `kid`s (default one
    /// minute). Lowering it is for tests that rotate keys; it bounds how often a stream of
    /// tokens with made-up `kid`s can make us call the JWKS endpoint.
    pub fn with_jwks_refresh_interval(mut self, interval: Duration) -> Self {
        if let Some(jwks) = &mut self.jwks {
            jwks.set_min_refresh(interval);
        }
        self
    }

    /// Fetches the JWKS now (when one is configured), so the first request does not wait for
    /// it and a wrong URL shows at start-up. Fails if the keys cannot be fetched.
    pub async fn refresh_keys(&self) -> Result<usize, String> {
        match &self.jwks {
            Some(jwks) => jwks.refresh().await,
            None => Ok(0),
        }
    }

    /// The admin principal behind `headers`' `Authorization`, or why there is none:
    /// [`Self::identify`], then [`Self::admit`].
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, AuthError> {
        let principal = self.identify(headers).await?;
        self.admit(&principal)?;
        Ok(principal)
    }

    /// Whether `principal` is within its rate limit now; counts the request if so.
    pub fn admit(&self, principal: &Principal) -> Result<(), AuthError> {
        self.rate_limit
            .check(principal)
            .map_err(|retry_after| AuthError::RateLimited {
                principal: principal.name.clone(),
                retry_after,
            })
    }

    /// The admin principal behind `headers`' `Authorization`, without the rate limit.
    pub async fn identify(&self, headers: &HeaderMap) -> Result<Principal, AuthError> {
        let mut values = headers.get_all(header::AUTHORIZATION).iter();
        let Some(value) = values.next() else {
            return Err(AuthError::Missing);
        };
        if values.next().is_some() {
            return Err(AuthError::Invalid(Rejection::NotBearer));
        }
        let token = bearer_token(value).ok_or(AuthError::Invalid(Rejection::NotBearer))?;

        match self.tokens.find(token) {
            TokenMatch::Active(name) => {
                return Ok(Principal {
                    name: name.to_owned(),
                    kind: PrincipalKind::ApiToken,
                });
            }
            TokenMatch::Revoked(name) => {
                tracing::warn!(api_token = name, "revoked API token refused");
                return Err(AuthError::Invalid(Rejection::RevokedToken));
            }
            TokenMatch::None => {}
        }
        if token.split('.').count() != 3 {
            return Err(AuthError::Invalid(Rejection::UnknownToken));
        }
        let claims = self.verify_jwt(token).await?;
        let sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or(AuthError::Invalid(Rejection::MissingClaim))?;
        if !self.is_admin(&claims) {
            return Err(AuthError::Forbidden {
                principal: sub.to_owned(),
            });
        }
        Ok(Principal {
            name: sub.to_owned(),
            kind: PrincipalKind::User,
        })
    }

    /// Verifies the signature with the key the token's algorithm and `kid` select, then the
    /// registered claims; returns all claims.
    async fn verify_jwt(&self, token: &str) -> Result<Value, AuthError> {
        let invalid = AuthError::Invalid;
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| invalid(Rejection::Malformed))?;
        if header.jku.is_some()
            || header.x5u.is_some()
            || header.jwk.is_some()
            || header.x5c.is_some()
        {
            return Err(invalid(Rejection::EmbeddedKey));
        }
        let (algorithm, key): (Algorithm, Arc<DecodingKey>) = match header.alg {
            Algorithm::HS256 => match &self.hs256 {
                // The secret is only ever an HMAC key: a token "signed" with a published
                // public key as its HMAC secret fails here, as it does not know the secret.
                Some(secret) => (Algorithm::HS256, Arc::new(secret.clone())),
                None => return Err(invalid(Rejection::AlgorithmNotAccepted)),
            },
            Algorithm::ES256 | Algorithm::RS256 => {
                let Some(jwks) = &self.jwks else {
                    return Err(invalid(Rejection::AlgorithmNotAccepted));
                };
                let kid = header.kid.ok_or(invalid(Rejection::MissingKeyId))?;
                let pinned = match jwks.key(&kid).await {
                    KeyLookup::Found(pinned) => pinned,
                    KeyLookup::Unknown => return Err(invalid(Rejection::UnknownKeyId)),
                    KeyLookup::Unavailable { retry_after } => {
                        return Err(AuthError::KeysUnavailable { retry_after });
                    }
                };
                if pinned.algorithm != header.alg {
                    return Err(invalid(Rejection::AlgorithmMismatch));
                }
                (pinned.algorithm, pinned.key.clone())
            }
            _ => return Err(invalid(Rejection::AlgorithmNotAccepted)),
        };

        let mut validation = Validation::new(algorithm);
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_audience(&[&self.audience]);
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
        }
        // Supabase's anon and service_role keys are JWTs signed with the same secret but carry
        // neither `sub` nor the user audience, so they never get in.
        validation.set_required_spec_claims(&["exp", "sub", "aud"]);
        jsonwebtoken::decode::<Value>(token, &key, &validation)
            .map(|data| data.claims)
            .map_err(|e| {
                invalid(match e.kind() {
                    ErrorKind::ExpiredSignature => Rejection::Expired,
                    ErrorKind::ImmatureSignature => Rejection::NotYetValid,
                    ErrorKind::InvalidAudience => Rejection::WrongAudience,
                    ErrorKind::InvalidIssuer => Rejection::WrongIssuer,
                    ErrorKind::InvalidSignature => Rejection::BadSignature,
                    ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                        Rejection::AlgorithmMismatch
                    }
                    ErrorKind::MissingRequiredClaim(_) => Rejection::MissingClaim,
                    _ => Rejection::Malformed,
                })
            })
    }

    /// The role at the configured claim path equals the admin role (a string, or one entry of
    /// an array of strings).
    fn is_admin(&self, claims: &Value) -> bool {
        let role = self
            .role_path
            .iter()
            .try_fold(claims, |value, segment| value.get(segment));
        match role {
            Some(Value::String(role)) => *role == self.admin_role,
            Some(Value::Array(roles)) => roles
                .iter()
                .any(|r| r.as_str() == Some(self.admin_role.as_str())),
            _ => false,
        }
    }
}

/// The token of a `Bearer` credential (the scheme is case-insensitive, RFC 7235 §2.1).
fn bearer_token(value: &HeaderValue) -> Option<&str> {
    let value = value.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && !token.contains(' '))
        .then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings_with_role(path: &str) -> ApiSettings {
        ApiSettings {
            role_claim: path.into(),
            ..ApiSettings::default()
        }
    }

    #[test]
    fn nothing_to_authenticate_with_is_a_configuration_problem() {
        let err = Authenticator::from_config(&ApiSettings::default(), &|_| None).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(JWT_SECRET_VAR), "{text}");
        assert!(text.contains(JWKS_URL_VAR), "{text}");
        assert!(text.contains("[[api.tokens]]"), "{text}");
    }

    #[test]
    fn short_secrets_and_bad_jwks_urls_are_named_without_their_values() {
        let env = |name: &str| match name {
            JWT_SECRET_VAR => Some("short-secret-value".to_owned()),
            JWKS_URL_VAR => Some("http://keys.example.com/jwks.json".to_owned()),
            _ => None,
        };
        let err = Authenticator::from_config(&ApiSettings::default(), &env).unwrap_err();
        assert_eq!(err.problems.len(), 2, "{err}");
        let text = err.to_string();
        assert!(
            text.contains("SUPABASE_JWT_SECRET: shorter than 32"),
            "{text}"
        );
        assert!(text.contains("PROVISIONER_JWKS_URL: "), "{text}");
        assert!(text.contains("https"), "{text}");
        assert!(!text.contains("short-secret-value"), "{text}");
    }

    #[test]
    fn the_role_is_read_from_the_configured_path_only() {
        let env = |name: &str| (name == JWT_SECRET_VAR).then(|| "x".repeat(40));
        let auth = Authenticator::from_config(&settings_with_role("app_metadata.role"), &env)
            .expect("valid settings");
        let admin = serde_json::json!({"app_metadata": {"role": "admin"}});
        let listed = serde_json::json!({"app_metadata": {"role": ["viewer", "admin"]}});
        let user_claimed = serde_json::json!({"user_metadata": {"role": "admin"}, "role": "admin"});
        let other = serde_json::json!({"app_metadata": {"role": "viewer"}});
        assert!(auth.is_admin(&admin));
        assert!(auth.is_admin(&listed));
        assert!(!auth.is_admin(&user_claimed));
        assert!(!auth.is_admin(&other));
    }

    #[test]
    fn bearer_credentials_are_parsed_strictly() {
        let token = |v: &str| bearer_token(&HeaderValue::from_str(v).unwrap()).map(str::to_owned);
        assert_eq!(token("Bearer abc").as_deref(), Some("abc"));
        assert_eq!(token("bearer abc").as_deref(), Some("abc"));
        assert_eq!(token("Basic abc"), None);
        assert_eq!(token("Bearer "), None);
        assert_eq!(token("Bearer a b"), None);
        assert_eq!(token("abc"), None);
    }

    #[test]
    fn responses_carry_the_challenge_or_the_wait() {
        let missing = AuthError::Missing.into_response();
        assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            missing.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"provisioner\""
        );
        let invalid = AuthError::Invalid(Rejection::Expired).into_response();
        let challenge = invalid.headers()[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap();
        assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
        let forbidden = AuthError::Forbidden {
            principal: "u".into(),
        }
        .into_response();
        assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
        let limited = AuthError::RateLimited {
            principal: "u".into(),
            retry_after: Duration::from_millis(1_200),
        }
        .into_response();
        assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(limited.headers()[header::RETRY_AFTER], "2");
    }
}
