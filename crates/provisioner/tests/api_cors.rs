//! CORS over real HTTP on the real routes: off without `[api] cors_origins`; with it, a
//! listed origin's preflight is answered (before authentication) and every answer to it,
//! refusals and the event stream included, names the origin; an unlisted origin gets no CORS
//! header at all. And the configuration refuses origins that could never match.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api_support;
mod support;

use std::collections::BTreeMap;

use api_support::{Answer, TOKEN, body, serve_with};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use provisioner::api::ApiOptions;
use provisioner::config::Settings;
use reqwest::Method;
use serde_json::json;
use sha2::{Digest, Sha256};

const LISTED: &str = "https://admin.agency.example";
const ALSO_LISTED: &str = "http://localhost:5173";
const UNLISTED: &str = "https://admin.agency.example.evil.test";
const JWT_SECRET: &str = "cors-hs256-secret-0123456789abcdefghijklmnopq";

/// The `[api]` section as an operator writes it: two origins, and a burst small enough to
/// reach 429 in a few requests (each JWT subject has a bucket of its own).
fn settings(cors: bool) -> Settings {
    let origins = if cors {
        format!("cors_origins = [\"{LISTED}\", \"{ALSO_LISTED}\"]\n")
    } else {
        String::new()
    };
    Settings::from_toml(&format!(
        "[api]\n{origins}rate_limit_per_minute = 1\nrate_limit_burst = 30\n\n\
         [[api.tokens]]\nname = \"{}\"\nsha256 = \"{}\"\n",
        api_support::TOKEN_NAME,
        hex::encode(Sha256::digest(TOKEN.as_bytes()))
    ))
    .expect("the [api] section is valid")
}

fn jwt(sub: &str, role: &str) -> String {
    let now = chrono::Utc::now().timestamp();
    let claims = json!({
        "sub": sub, "aud": "authenticated", "iat": now, "exp": now + 3600,
        "role": "authenticated", "app_metadata": {"role": role}, "user_metadata": {},
    });
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

async fn api(cors: bool) -> Option<api_support::Api> {
    let world = support::world_with(|_| {}, support::quick_settings()).await?;
    let settings = settings(cors).api;
    let env = |name: &str| (name == "SUPABASE_JWT_SECRET").then(|| JWT_SECRET.to_owned());
    Some(serve_with(world, ApiOptions::from_settings(&settings), settings, &env).await)
}

/// The answer's `Access-Control-*` headers, by lowercase name.
fn cors_headers(answer: &Answer) -> BTreeMap<String, String> {
    answer
        .headers
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("access-control-"))
        .map(|(name, value)| (name.to_string(), value.to_str().unwrap().to_owned()))
        .collect()
}

fn header<'a>(answer: &'a Answer, name: &str) -> Option<&'a str> {
    answer.headers.get(name).map(|v| v.to_str().unwrap())
}

fn listed_items(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .collect()
}

impl api_support::Api {
    async fn preflight(&self, path: &str, origin: &str, method: &str, headers: &str) -> Answer {
        self.send(
            self.http
                .request(Method::OPTIONS, self.url(path))
                .header("Origin", origin)
                .header("Access-Control-Request-Method", method)
                .header("Access-Control-Request-Headers", headers),
        )
        .await
    }

    async fn call_from(
        &self,
        method: Method,
        path: &str,
        origin: &str,
        bearer: Option<&str>,
    ) -> Answer {
        let mut request = self
            .http
            .request(method, self.url(path))
            .header("Origin", origin);
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        self.send(request).await
    }
}

/// A real (non-preflight) answer to a listed origin: the origin echoed, caches told it
/// varies by origin, and the refusal headers readable.
fn assert_marked_for(answer: &Answer, origin: &str, case: &str) {
    assert_eq!(
        header(answer, "access-control-allow-origin"),
        Some(origin),
        "{case}: {:?}",
        answer.headers
    );
    assert!(
        header(answer, "vary").is_some_and(|v| listed_items(v).contains(&"origin".to_owned())),
        "{case}: {:?}",
        answer.headers
    );
    let exposed = listed_items(header(answer, "access-control-expose-headers").unwrap());
    for name in ["retry-after", "www-authenticate"] {
        assert!(exposed.contains(&name.to_owned()), "{case}: {exposed:?}");
    }
    // Bearer tokens, not cookies: no credentials mode.
    assert!(
        header(answer, "access-control-allow-credentials").is_none(),
        "{case}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn listed_origins_are_answered_and_unlisted_ones_get_no_cors_header() {
    let Some(api) = api(true).await else {
        return;
    };

    // A listed origin's preflight: answered without a token (browsers send none), before
    // authentication could refuse it, for the routes the admin app calls.
    for (path, method, asked) in [
        ("/v1/provisionings", "POST", "authorization,content-type"),
        ("/api/provisioning", "POST", "authorization,content-type"),
        (
            "/v1/provisionings/00000000-0000-7000-8000-000000000000/events",
            "GET",
            "authorization,last-event-id",
        ),
        ("/v1/clients/acme-dental", "DELETE", "authorization"),
    ] {
        for origin in [LISTED, ALSO_LISTED] {
            let answer = api.preflight(path, origin, method, asked).await;
            let case = format!("preflight {method} {path} from {origin}");
            assert_eq!(answer.status, 204, "{case}: {}", answer.text);
            assert!(answer.text.is_empty(), "{case}: {}", answer.text);
            let cors = cors_headers(&answer);
            assert_eq!(
                cors.get("access-control-allow-origin").map(String::as_str),
                Some(origin),
                "{case}: {cors:?}"
            );
            let methods = listed_items(&cors["access-control-allow-methods"]);
            assert!(methods.contains(&method.to_ascii_lowercase()), "{case}");
            let allowed = listed_items(&cors["access-control-allow-headers"]);
            for name in ["authorization", "content-type", "last-event-id"] {
                assert!(allowed.contains(&name.to_owned()), "{case}: {allowed:?}");
            }
            let max_age: u32 = cors["access-control-max-age"].parse().unwrap();
            assert!(max_age > 0, "{case}");
            assert!(!cors.contains_key("access-control-allow-credentials"));
            assert!(
                header(&answer, "vary").is_some_and(|v| listed_items(v).contains(&"origin".into())),
                "{case}"
            );
        }
    }

    // A real call from a listed origin: the answer names it.
    let started = api
        .send(
            api.http
                .post(api.url("/v1/provisionings"))
                .header("Origin", LISTED)
                .bearer_auth(TOKEN)
                .json(&body(&support::unique_slug("cors"))),
        )
        .await;
    assert_eq!(started.status, 202, "{}", started.text);
    assert_marked_for(&started, LISTED, "POST /v1/provisionings");
    let id = started.body["id"].as_str().unwrap().to_owned();
    let read = api
        .call_from(
            Method::GET,
            &format!("/v1/provisionings/{id}"),
            ALSO_LISTED,
            Some(TOKEN),
        )
        .await;
    assert_eq!(read.status, 200, "{}", read.text);
    assert_marked_for(&read, ALSO_LISTED, "GET /v1/provisionings/{id}");

    // The event stream: the headers come before the first event, and the stream flows.
    let stream = api
        .http
        .get(api.url(&format!("/v1/provisionings/{id}/events")))
        .header("Origin", LISTED)
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status().as_u16(), 200);
    let headers = stream.headers().clone();
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    assert_eq!(headers["access-control-allow-origin"], LISTED);
    assert!(listed_items(headers["vary"].to_str().unwrap()).contains(&"origin".into()));
    let mut stream = stream.bytes_stream();
    let first = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        futures::StreamExt::next(&mut stream),
    )
    .await
    .expect("an event comes")
    .expect("the stream is open")
    .unwrap();
    assert!(String::from_utf8_lossy(&first).contains("id:"), "{first:?}");
    drop(stream);

    // Refusals are readable by the app too: 401 (none, garbage), 403, 429, 413, 404.
    let missing = api
        .call_from(Method::GET, "/v1/provisionings", LISTED, None)
        .await;
    assert_eq!(missing.status, 401);
    assert!(header(&missing, "www-authenticate").is_some());
    assert_marked_for(&missing, LISTED, "401 without a token");
    let garbage = api
        .call_from(Method::GET, "/v1/clients", LISTED, Some("not-a-token"))
        .await;
    assert_eq!(garbage.status, 401);
    assert_marked_for(&garbage, LISTED, "401 with garbage");
    let viewer = jwt("cors-viewer", "viewer");
    let forbidden = api
        .call_from(Method::GET, "/v1/provisionings", LISTED, Some(&viewer))
        .await;
    assert_eq!(forbidden.status, 403, "{}", forbidden.text);
    assert_marked_for(&forbidden, LISTED, "403");
    let admin = jwt("cors-throttled-admin", "admin");
    let mut limited = None;
    for _ in 0..40 {
        let answer = api
            .call_from(Method::GET, "/v1/clients", LISTED, Some(&admin))
            .await;
        if answer.status == 429 {
            limited = Some(answer);
            break;
        }
        assert_eq!(answer.status, 200, "{}", answer.text);
        assert_marked_for(&answer, LISTED, "200 for a JWT admin");
    }
    let limited = limited.expect("the burst of 30 runs out");
    assert!(header(&limited, "retry-after").is_some());
    assert_marked_for(&limited, LISTED, "429");
    let too_large = api
        .send(
            api.http
                .post(api.url("/v1/provisionings"))
                .header("Origin", LISTED)
                .header("content-type", "application/json")
                .bearer_auth(TOKEN)
                .body(format!("{{\"metadata\":\"{}\"}}", "x".repeat(70 * 1024))),
        )
        .await;
    assert_eq!(too_large.status, 413, "{}", too_large.text);
    assert_marked_for(&too_large, LISTED, "413");
    let nowhere = api
        .call_from(Method::GET, "/v2/nothing", LISTED, Some(TOKEN))
        .await;
    assert_eq!(nowhere.status, 404);
    assert_marked_for(&nowhere, LISTED, "404");

    // An unlisted origin (a listed one's suffix trick included), and an origin differing
    // only in scheme or port: no CORS header, preflight or not, so the browser withholds
    // the answer. The request itself is served as for any caller without CORS.
    for origin in [
        UNLISTED,
        "http://admin.agency.example",
        "https://admin.agency.example:8443",
        "null",
    ] {
        let answer = api
            .preflight("/v1/provisionings", origin, "POST", "authorization")
            .await;
        assert_eq!(answer.status, 204, "{origin}");
        assert!(
            cors_headers(&answer).is_empty(),
            "{origin}: {:?}",
            answer.headers
        );
        let answer = api
            .call_from(Method::GET, "/v1/provisionings", origin, Some(TOKEN))
            .await;
        assert_eq!(answer.status, 200, "{origin}");
        assert!(
            cors_headers(&answer).is_empty(),
            "{origin}: {:?}",
            answer.headers
        );
        // Still marked as varying by origin, so no cache hands it to a listed one.
        assert!(
            header(&answer, "vary").is_some_and(|v| listed_items(v).contains(&"origin".into()))
        );
        let refused = api
            .call_from(Method::GET, "/v1/provisionings", origin, None)
            .await;
        assert_eq!(refused.status, 401);
        assert!(cors_headers(&refused).is_empty(), "{origin}");
    }
    // The service routes are for load balancers and scrapers, not browsers.
    for path in ["/healthz", "/readyz", "/metrics"] {
        let answer = api.call_from(Method::GET, path, LISTED, None).await;
        assert_eq!(answer.status, 200, "{path}");
        assert!(
            cors_headers(&answer).is_empty(),
            "{path}: {:?}",
            answer.headers
        );
    }
    // No Origin at all (a server calling): no CORS header either.
    let plain = api.get("/v1/provisionings").await;
    assert_eq!(plain.status, 200);
    assert!(cors_headers(&plain).is_empty(), "{:?}", plain.headers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_configured_origins_cors_stays_off() {
    let Some(api) = api(false).await else {
        return;
    };
    let preflight = api
        .preflight(
            "/v1/provisionings",
            LISTED,
            "POST",
            "authorization,content-type",
        )
        .await;
    assert!(
        cors_headers(&preflight).is_empty(),
        "{:?}",
        preflight.headers
    );
    assert_ne!(
        preflight.status, 204,
        "a preflight is not answered as one: {}",
        preflight.text
    );
    for (method, bearer, status) in [(Method::GET, Some(TOKEN), 200), (Method::GET, None, 401)] {
        let answer = api
            .call_from(method, "/v1/provisionings", LISTED, bearer)
            .await;
        assert_eq!(answer.status, status, "{}", answer.text);
        assert!(cors_headers(&answer).is_empty(), "{:?}", answer.headers);
        assert!(header(&answer, "vary").is_none(), "{:?}", answer.headers);
    }
}

#[test]
fn origins_are_checked_as_browsers_send_them() {
    let text = r#"
[api]
cors_origins = [
    "https://admin.example.com",
    "http://localhost:5173",
    "*",
    "https://admin.example.com/app",
    "https://Admin.Example.com",
    "https://admin.example.com:443",
    "https://admin.example.com/",
    "ftp://files.example.com",
    "admin.example.com",
    "https://ops:hunter2-canary@admin.example.com",
]
"#;
    let problems = Settings::from_toml(text).unwrap_err().problems;
    let of = |i: usize| -> Vec<&String> {
        let key = format!("api.cors_origins[{i}]:");
        problems.iter().filter(|p| p.starts_with(&key)).collect()
    };
    assert!(of(0).is_empty() && of(1).is_empty(), "{problems:#?}");
    assert!(of(2)[0].contains("bearer") && of(2)[0].contains("name each origin"));
    // Fixable ones say how browsers spell them.
    for i in [3, 4, 5, 6] {
        assert!(
            of(i)[0].contains("write \"https://admin.example.com\""),
            "{i}: {problems:#?}"
        );
    }
    for i in [7, 8] {
        assert!(of(i)[0].contains("http or https"), "{i}: {problems:#?}");
    }
    assert!(of(9)[0].contains("user name or password"), "{problems:#?}");
    assert!(
        problems.iter().all(|p| !p.contains("hunter2-canary")),
        "{problems:#?}"
    );
    assert_eq!(
        problems.len(),
        8,
        "one problem per bad entry: {problems:#?}"
    );

    let defaults = Settings::from_toml("").unwrap().api;
    assert!(defaults.cors_origins.is_empty());
    assert!(ApiOptions::from_settings(&defaults).cors_origins.is_empty());
}
