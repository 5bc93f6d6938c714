//! Authentication of the HTTP API over real HTTP: a JWKS served on loopback with keys made
//! here, first in front of a router whose only route is guarded by the `Authenticator`, then
//! in front of the real `/v1` and `/api` routes over the sandbox.

#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use provisioner::api::auth::{AuthError, Authenticator, Principal, PrincipalKind};
use provisioner::config::{ApiSettings, ApiTokenSettings, Settings};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const SECRET: &str = "canary-hs256-secret-0123456789abcdefghijklmnop";
const ISSUER: &str = "https://agency.supabase.co/auth/v1";
const API_TOKEN: &str = "canary-api-token-Zq8d2XkP0vLw7RtY5bNc3MfH";
const REVOKED_TOKEN: &str = "canary-revoked-token-Gh4Jk9Lm2Np6Qr1St5Uv";

/// An ES256 signing key and its public JWK as Supabase publishes it.
struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    public_jwk: Value,
    /// The uncompressed public point, a tempting "secret" for an HS256 forgery.
    public_point: Vec<u8>,
}

impl SigningKey {
    fn generate(kid: &str) -> Self {
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        let encoding = EncodingKey::from_ec_der(pkcs8.as_ref());
        let mut jwk = Jwk::from_encoding_key(&encoding, Algorithm::ES256).unwrap();
        jwk.common.key_id = Some(kid.into());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        let mut public_jwk = serde_json::to_value(&jwk).unwrap();
        // Supabase's JWKS entries carry WebCrypto's fields too.
        public_jwk["ext"] = json!(true);
        public_jwk["key_ops"] = json!(["verify"]);
        Self {
            kid: kid.into(),
            encoding,
            public_jwk,
            public_point: pair.public_key().as_ref().to_vec(),
        }
    }

    fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Claims of a Supabase user session; `role` is the Postgres role, not ours.
fn claims(sub: &str, app_role: Option<&str>) -> Value {
    let mut claims = json!({
        "sub": sub,
        "aud": "authenticated",
        "iss": ISSUER,
        "iat": now(),
        "exp": now() + 3600,
        "role": "authenticated",
        "email": format!("{sub}@agency.example"),
        "app_metadata": {"provider": "email", "providers": ["email"]},
        "user_metadata": {},
    });
    if let Some(role) = app_role {
        claims["app_metadata"]["role"] = json!(role);
    }
    claims
}

fn hs256(claims: &Value, secret: &[u8], kid: Option<&str>) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret)).unwrap()
}

fn unsigned(claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{payload}.")
}

fn sha256_hex(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A JWKS endpoint on loopback that counts its fetches; its keys can be swapped mid-test.
#[derive(Clone)]
struct KeyServer {
    keys: Arc<Mutex<Vec<Value>>>,
    fetches: Arc<AtomicUsize>,
    url: String,
}

impl KeyServer {
    async fn start(keys: Vec<Value>) -> Self {
        let keys = Arc::new(Mutex::new(keys));
        let fetches = Arc::new(AtomicUsize::new(0));
        let app = axum::Router::new().route(
            "/auth/v1/.well-known/jwks.json",
            get({
                let keys = keys.clone();
                let fetches = fetches.clone();
                move || async move {
                    fetches.fetch_add(1, Ordering::SeqCst);
                    Json(json!({"keys": *keys.lock().unwrap()}))
                }
            }),
        );
        let addr = serve(app).await;
        Self {
            keys,
            fetches,
            url: format!("http://{addr}/auth/v1/.well-known/jwks.json"),
        }
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

async fn serve(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn settings() -> ApiSettings {
    ApiSettings {
        jwt_issuer: Some(ISSUER.into()),
        tokens: vec![
            ApiTokenSettings {
                name: "admin-app".into(),
                sha256: sha256_hex(API_TOKEN),
                revoked: false,
            },
            ApiTokenSettings {
                name: "old-ci".into(),
                sha256: sha256_hex(REVOKED_TOKEN),
                revoked: true,
            },
        ],
        ..ApiSettings::default()
    }
}

fn env_with(jwks_url: &str) -> impl Fn(&str) -> Option<String> + '_ {
    move |name| match name {
        "SUPABASE_JWT_SECRET" => Some(SECRET.into()),
        "PROVISIONER_JWKS_URL" => Some(jwks_url.into()),
        _ => None,
    }
}

/// The smallest app guarded the way the API is: one route answering who the caller is.
async fn guarded_app(auth: Authenticator) -> String {
    async fn whoami(State(auth): State<Arc<Authenticator>>, headers: HeaderMap) -> Response {
        match auth.authenticate(&headers).await {
            Ok(Principal { name, kind }) => {
                Json(json!({"name": name, "kind": kind.as_str()})).into_response()
            }
            Err(e) => e.into_response(),
        }
    }
    let app = axum::Router::new()
        .route("/v1/whoami", get(whoami))
        .with_state(Arc::new(auth));
    format!("http://{}/v1/whoami", serve(app).await)
}

struct Answer {
    status: StatusCode,
    challenge: Option<String>,
    retry_after: Option<String>,
    text: String,
    body: Value,
}

async fn call(url: &str, authorization: Option<&str>) -> Answer {
    request(reqwest::Method::GET, url, authorization, None).await
}

async fn request(
    method: reqwest::Method,
    url: &str,
    authorization: Option<&str>,
    body: Option<&Value>,
) -> Answer {
    let mut request = reqwest::Client::new().request(method, url);
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.unwrap();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let challenge = header("www-authenticate");
    let retry_after = header("retry-after");
    let headers_text = format!("{:?}", response.headers());
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Answer {
        status,
        challenge,
        retry_after,
        text: format!("{headers_text}\n{text}"),
        body,
    }
}

/// What a case must get: refused with a status, or let in as a named principal.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    Refused(StatusCode),
    Admitted {
        name: &'static str,
        kind: &'static str,
    },
}

const ADMIN_SUB: &str = "1b7f0c5e-admin";

/// The issue's auth matrix: each case's `Authorization` value and what it must get.
fn matrix(key: &SigningKey, stranger: &SigningKey) -> Vec<(&'static str, Option<String>, Expect)> {
    let unauthorized = Expect::Refused(StatusCode::UNAUTHORIZED);
    let forbidden = Expect::Refused(StatusCode::FORBIDDEN);
    let admin = claims(ADMIN_SUB, Some("admin"));
    let with = |key: &str, value: Value| {
        let mut c = admin.clone();
        c[key] = value;
        c
    };
    let mut expired = with("exp", json!(now() - 3600));
    expired["iat"] = json!(now() - 7200);
    let mut user_metadata_only = claims("2c8e1d6f-user", None);
    user_metadata_only["user_metadata"]["role"] = json!("admin");
    user_metadata_only["role"] = json!("admin");
    let bearer = |token: String| Some(format!("Bearer {token}"));
    vec![
        ("none", None, unauthorized),
        (
            "not bearer",
            Some(format!("Basic {API_TOKEN}")),
            unauthorized,
        ),
        ("garbage", bearer("not-a-token".into()), unauthorized),
        (
            "garbage jwt",
            bearer("eyJhbGciOi.eyJzdWIi.c2ln".into()),
            unauthorized,
        ),
        ("expired", bearer(key.sign(&expired)), unauthorized),
        (
            "not yet valid",
            bearer(key.sign(&with("nbf", json!(now() + 3600)))),
            unauthorized,
        ),
        (
            "wrong audience",
            bearer(key.sign(&with("aud", json!("anon")))),
            unauthorized,
        ),
        (
            "wrong issuer",
            bearer(key.sign(&with(
                "iss",
                json!("https://other-tenant.supabase.co/auth/v1"),
            ))),
            unauthorized,
        ),
        ("alg none", bearer(unsigned(&admin)), unauthorized),
        (
            "HS256 keyed with the published JWK",
            bearer(hs256(
                &admin,
                key.public_jwk.to_string().as_bytes(),
                Some(&key.kid),
            )),
            unauthorized,
        ),
        (
            "HS256 keyed with the public point",
            bearer(hs256(&admin, &key.public_point, Some(&key.kid))),
            unauthorized,
        ),
        (
            "HS256 with another secret",
            bearer(hs256(
                &admin,
                b"guessed-secret-guessed-secret-guessed",
                None,
            )),
            unauthorized,
        ),
        ("unknown kid", bearer(stranger.sign(&admin)), unauthorized),
        (
            "revoked API token",
            bearer(REVOKED_TOKEN.into()),
            unauthorized,
        ),
        (
            "API token's hash instead of the token",
            bearer(sha256_hex(API_TOKEN)),
            unauthorized,
        ),
        (
            "non-admin",
            bearer(key.sign(&claims("3d9f2e7a-user", Some("viewer")))),
            forbidden,
        ),
        (
            "no role at all",
            bearer(key.sign(&claims("4e0a3f8b-user", None))),
            forbidden,
        ),
        (
            "role only in user_metadata",
            bearer(key.sign(&user_metadata_only)),
            forbidden,
        ),
        (
            "non-admin over HS256",
            bearer(hs256(
                &claims("5f1b4a9c-user", None),
                SECRET.as_bytes(),
                None,
            )),
            forbidden,
        ),
        (
            "admin over ES256 from the JWKS",
            bearer(key.sign(&admin)),
            Expect::Admitted {
                name: ADMIN_SUB,
                kind: "user",
            },
        ),
        (
            "admin over HS256",
            bearer(hs256(&admin, SECRET.as_bytes(), None)),
            Expect::Admitted {
                name: ADMIN_SUB,
                kind: "user",
            },
        ),
        (
            "API token",
            bearer(API_TOKEN.into()),
            Expect::Admitted {
                name: "admin-app",
                kind: "api_token",
            },
        ),
    ]
}

/// Status, challenge and error code of a refusal as RFC 6750 and our body promise them.
fn assert_refused(case: &str, answer: &Answer, status: StatusCode, had_credentials: bool) {
    assert_eq!(answer.status, status, "{case}: {}", answer.text);
    if status == StatusCode::UNAUTHORIZED {
        let challenge = answer.challenge.clone().unwrap_or_default();
        assert!(challenge.starts_with("Bearer "), "{case}: {challenge:?}");
        assert_eq!(
            challenge.contains("error=\"invalid_token\""),
            had_credentials,
            "{case}: {challenge}"
        );
        assert_eq!(answer.body["error"], "unauthorized", "{case}");
    } else {
        assert_eq!(answer.body["error"], "forbidden", "{case}");
    }
}

#[tokio::test]
async fn the_auth_matrix_over_http() {
    let key = SigningKey::generate("key-2026-11");
    let stranger = SigningKey::generate("not-published");
    let jwks = KeyServer::start(vec![key.public_jwk.clone()]).await;
    let auth = Authenticator::from_config(&settings(), &env_with(&jwks.url)).unwrap();
    let url = guarded_app(auth).await;

    for (case, authorization, expect) in matrix(&key, &stranger) {
        let answer = call(&url, authorization.as_deref()).await;
        match expect {
            Expect::Refused(status) => {
                assert_refused(case, &answer, status, authorization.is_some())
            }
            Expect::Admitted { name, kind } => {
                assert_eq!(answer.status, StatusCode::OK, "{case}: {}", answer.text);
                assert_eq!(answer.body, json!({"name": name, "kind": kind}), "{case}");
            }
        }
    }
    // One fetch served every ES256 check, including the unknown kid (it came within the
    // minute after the first fetch).
    assert_eq!(jwks.fetches(), 1);
}

#[tokio::test]
async fn no_secret_or_token_is_echoed_in_any_answer() {
    let key = SigningKey::generate("k");
    let jwks = KeyServer::start(vec![key.public_jwk.clone()]).await;
    let auth = Authenticator::from_config(&settings(), &env_with(&jwks.url)).unwrap();
    let url = guarded_app(auth).await;
    let mut expired = claims("u", Some("admin"));
    expired["exp"] = json!(now() - 3600);
    let presented = [
        API_TOKEN.to_owned(),
        format!("{API_TOKEN}x"),
        REVOKED_TOKEN.to_owned(),
        hs256(&expired, SECRET.as_bytes(), None),
        hs256(&claims("u", None), SECRET.as_bytes(), None),
    ];
    for token in &presented {
        let answer = call(&url, Some(&format!("Bearer {token}"))).await;
        for secret in [SECRET, API_TOKEN, REVOKED_TOKEN, token.as_str()] {
            // The caller's own principal name may come back; credentials never do.
            if answer.status == StatusCode::OK && secret == token {
                continue;
            }
            assert!(!answer.text.contains(secret), "{}", answer.text);
        }
    }
    let debug = format!(
        "{:?}",
        Authenticator::from_config(&settings(), &env_with(&jwks.url)).unwrap()
    );
    assert!(!debug.contains(SECRET), "{debug}");
    assert!(!debug.contains(&sha256_hex(API_TOKEN)), "{debug}");
}

#[tokio::test]
async fn an_unknown_kid_refetches_the_keys_at_most_once_per_interval() {
    let old = SigningKey::generate("old");
    let new = SigningKey::generate("new");
    let jwks = KeyServer::start(vec![old.public_jwk.clone()]).await;
    let auth = Authenticator::from_config(&settings(), &env_with(&jwks.url))
        .unwrap()
        .with_jwks_refresh_interval(Duration::from_secs(5));
    let url = guarded_app(auth).await;
    let admin = claims("admin-user", Some("admin"));

    assert_eq!(
        call(&url, Some(&format!("Bearer {}", old.sign(&admin))))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(jwks.fetches(), 1);

    // The keys rotate. Within the interval a new kid is refused without a fetch, however
    // many tokens carry it.
    jwks.keys.lock().unwrap().push(new.public_jwk.clone());
    for _ in 0..2 {
        let answer = call(&url, Some(&format!("Bearer {}", new.sign(&admin)))).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.text);
    }
    assert_eq!(jwks.fetches(), 1);

    // After it, the unknown kid triggers one fetch and the new key is used from then on.
    tokio::time::sleep(Duration::from_millis(5_500)).await;
    for _ in 0..3 {
        let answer = call(&url, Some(&format!("Bearer {}", new.sign(&admin)))).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    }
    assert_eq!(jwks.fetches(), 2);
}

#[tokio::test]
async fn the_default_interval_is_a_minute() {
    let key = SigningKey::generate("published");
    let stranger = SigningKey::generate("made-up");
    let jwks = KeyServer::start(vec![key.public_jwk.clone()]).await;
    let auth = Authenticator::from_config(&settings(), &env_with(&jwks.url)).unwrap();
    assert_eq!(auth.refresh_keys().await, Ok(1));
    let url = guarded_app(auth).await;
    let admin = claims("admin-user", Some("admin"));
    for _ in 0..20 {
        call(&url, Some(&format!("Bearer {}", stranger.sign(&admin)))).await;
    }
    assert_eq!(jwks.fetches(), 1);
}

#[tokio::test]
async fn unreachable_keys_are_503_with_retry_after_and_hs256_keeps_working() {
    // A port that was just free: nothing listens there.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/auth/v1/.well-known/jwks.json",
        closed.local_addr().unwrap()
    );
    drop(closed);
    let auth = Authenticator::from_config(&settings(), &env_with(&url)).unwrap();
    assert!(auth.refresh_keys().await.is_err());
    let app = guarded_app(auth).await;
    let admin = claims("admin-user", Some("admin"));
    let key = SigningKey::generate("k");
    let answer = call(&app, Some(&format!("Bearer {}", key.sign(&admin)))).await;
    assert_eq!(
        answer.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        answer.text
    );
    let wait: u64 = answer.retry_after.unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    let answer = call(
        &app,
        Some(&format!(
            "Bearer {}",
            hs256(&admin, SECRET.as_bytes(), None)
        )),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
}

#[tokio::test]
async fn without_a_jwks_asymmetric_tokens_are_refused_and_without_a_secret_hs256_is() {
    let key = SigningKey::generate("k");
    let admin = claims("admin-user", Some("admin"));
    let hs_only = |name: &str| (name == "SUPABASE_JWT_SECRET").then(|| SECRET.to_owned());
    let url = guarded_app(Authenticator::from_config(&settings(), &hs_only).unwrap()).await;
    let answer = call(&url, Some(&format!("Bearer {}", key.sign(&admin)))).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);

    let jwks = KeyServer::start(vec![key.public_jwk.clone()]).await;
    let jwks_only = |name: &str| (name == "PROVISIONER_JWKS_URL").then(|| jwks.url.clone());
    let url = guarded_app(Authenticator::from_config(&settings(), &jwks_only).unwrap()).await;
    let forged = hs256(&admin, key.public_jwk.to_string().as_bytes(), Some("k"));
    assert_eq!(
        call(&url, Some(&format!("Bearer {forged}"))).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(&url, Some(&format!("Bearer {}", key.sign(&admin))))
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn each_principal_is_rate_limited_with_retry_after() {
    let api = ApiSettings {
        // One request a minute after a burst of two: the third comes well within the minute
        // even on a loaded machine.
        rate_limit_per_minute: 1,
        rate_limit_burst: 2,
        ..settings()
    };
    let hs_only = |name: &str| (name == "SUPABASE_JWT_SECRET").then(|| SECRET.to_owned());
    let url = guarded_app(Authenticator::from_config(&api, &hs_only).unwrap()).await;
    let machine = format!("Bearer {API_TOKEN}");
    for _ in 0..2 {
        assert_eq!(call(&url, Some(&machine)).await.status, StatusCode::OK);
    }
    let limited = call(&url, Some(&machine)).await;
    assert_eq!(
        limited.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        limited.text
    );
    let wait: u64 = limited.retry_after.unwrap().parse().unwrap();
    assert!((50..=60).contains(&wait), "{wait}");
    assert_eq!(limited.body["error"], "rate_limited");
    // An admin user has a bucket of its own.
    let user = hs256(
        &claims("admin-user", Some("admin")),
        SECRET.as_bytes(),
        None,
    );
    assert_eq!(
        call(&url, Some(&format!("Bearer {user}"))).await.status,
        StatusCode::OK
    );
}

#[test]
fn the_api_section_is_validated_key_by_key() {
    let text = format!(
        r#"
[api]
jwt_audience = ""
role_claim = "user_metadata.role"
rate_limit_per_minute = 0
rate_limit_burst = 0
cors_origins = ["https://admin.example.com", "https://admin.example.com/app"]
legacy_wait_secs = 600

[[api.tokens]]
name = "ci"
sha256 = "{API_TOKEN}"

[[api.tokens]]
name = "ci"
sha256 = "{hash}"
"#,
        hash = sha256_hex(API_TOKEN)
    );
    let err = Settings::from_toml(&text).unwrap_err();
    let problems = err.problems.join("\n");
    for key in [
        "api.jwt_audience",
        "api.role_claim",
        "api.rate_limit_per_minute",
        "api.rate_limit_burst",
        "api.cors_origins[1]",
        "api.legacy_wait_secs",
        "api.tokens[0].sha256",
        "api.tokens[1].name",
    ] {
        assert!(problems.contains(key), "{key} missing in:\n{problems}");
    }
    assert!(!problems.contains("api.cors_origins[0]"), "{problems}");
    // A token pasted where its hash belongs is not repeated back.
    assert!(!problems.contains(API_TOKEN), "{problems}");
    assert!(problems.contains("user_metadata"), "{problems}");

    let defaults = Settings::from_toml("").unwrap().api;
    assert_eq!(defaults.jwt_audience, "authenticated");
    assert_eq!(defaults.role_claim, "app_metadata.role");
    assert_eq!(defaults.admin_role, "admin");
    assert!(defaults.cors_origins.is_empty());
    assert_eq!(defaults.legacy_wait(), Duration::from_secs(25));
    assert_eq!(defaults.jwt_issuer, None);
}

#[test]
fn auth_errors_are_the_types_the_routes_use() {
    // The error names the principal it refuses, so the audit log can say who.
    let e = AuthError::Forbidden {
        principal: "u-1".into(),
    };
    assert_eq!(e.status(), StatusCode::FORBIDDEN);
    assert!(e.to_string().contains("u-1"));
    assert_eq!(PrincipalKind::ApiToken.as_str(), "api_token");
}

#[tokio::test]
async fn the_auth_matrix_on_the_real_routes() {
    let Some(world) = support::world().await else {
        return;
    };
    let key = SigningKey::generate("key-2026-11");
    let stranger = SigningKey::generate("not-published");
    let jwks = KeyServer::start(vec![key.public_jwk.clone()]).await;
    let auth = Authenticator::from_config(&settings(), &env_with(&jwks.url)).unwrap();
    let state = provisioner::api::ApiState::new(
        Arc::new(world.app),
        Arc::new(auth),
        provisioner::api::ApiOptions::default(),
    );
    let base = format!("http://{}", serve(provisioner::api::router(state)).await);
    let list = format!("{base}/v1/provisionings");

    for (case, authorization, expect) in matrix(&key, &stranger) {
        let answer = call(&list, authorization.as_deref()).await;
        match expect {
            Expect::Refused(status) => {
                assert_refused(case, &answer, status, authorization.is_some())
            }
            Expect::Admitted { .. } => {
                assert_eq!(answer.status, StatusCode::OK, "{case}: {}", answer.text)
            }
        }
    }

    // Every guarded route refuses before it reads the body or the journal.
    let slug = support::unique_slug("auth");
    let client = json!({
        "clientId": slug,
        "clientName": "Auth Matrix",
        "orgEmail": format!("ops@{slug}.example"),
        "tier": "starter",
    });
    let run = "0197a4e2-0000-7000-8000-000000000000";
    let guarded = [
        ("GET", "/v1/provisionings".to_owned()),
        ("POST", "/v1/provisionings".to_owned()),
        ("GET", format!("/v1/provisionings/{run}")),
        ("GET", format!("/v1/provisionings/{run}/events")),
        ("POST", format!("/v1/provisionings/{run}/cancel")),
        ("POST", format!("/v1/provisionings/{run}/pause")),
        ("POST", format!("/v1/provisionings/{run}/resume")),
        ("POST", format!("/v1/provisionings/{run}/retry")),
        ("POST", format!("/v1/provisionings/{run}/abandon")),
        ("GET", "/v1/clients".to_owned()),
        ("GET", format!("/v1/clients/{slug}")),
        ("DELETE", format!("/v1/clients/{slug}")),
        ("POST", "/api/provisioning".to_owned()),
    ];
    let viewer = format!(
        "Bearer {}",
        key.sign(&claims("3d9f2e7a-user", Some("viewer")))
    );
    for (method, path) in &guarded {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let url = format!("{base}{path}");
        let answer = request(method.clone(), &url, None, Some(&client)).await;
        assert_refused(path, &answer, StatusCode::UNAUTHORIZED, false);
        let answer = request(method, &url, Some(&viewer), Some(&client)).await;
        assert_refused(path, &answer, StatusCode::FORBIDDEN, true);
    }
    let admin = format!("Bearer {}", key.sign(&claims(ADMIN_SUB, Some("admin"))));
    let runs = call(&list, Some(&admin)).await;
    assert_eq!(runs.status, StatusCode::OK, "{}", runs.text);
    assert!(
        !runs.text.contains(&slug),
        "a refused POST started a run: {}",
        runs.text
    );

    // The public document stays public.
    assert_eq!(
        call(&format!("{base}/openapi.json"), None).await.status,
        StatusCode::OK
    );

    // An admitted call is recorded under the principal's name.
    let machine = format!("Bearer {API_TOKEN}");
    let started = request(reqwest::Method::POST, &list, Some(&machine), Some(&client)).await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{}", started.text);
    let id = started.body["id"].as_str().unwrap().to_owned();
    let run = call(&format!("{list}/{id}"), Some(&admin)).await;
    assert_eq!(run.status, StatusCode::OK, "{}", run.text);
    assert!(run.text.contains("admin-app"), "{}", run.text);
    assert!(!run.text.contains(API_TOKEN), "{}", run.text);
}
