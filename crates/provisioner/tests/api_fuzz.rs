//! The API fuzzed from its own `/openapi.json`: the router `provisioner serve` answers, on a
//! fresh PostgreSQL journal, behind one admin API token and an HS256 secret (both canaries).
//! For every documented operation, requests are generated from its parameters and body
//! schema: valid-ish values, wrong types, odd Unicode (NUL, RTL marks, combining characters,
//! surrogate escapes), very long strings, injection attempts in `clientId` (SQL, path
//! traversal, CRLF, `%00`), malformed JSON and bodies over 64 KiB, each under one of many
//! `Authorization` shapes. Every answer must hold:
//!
//! - no 5xx, and the server keeps answering (a panic would drop the connection);
//! - its status is one the operation documents;
//! - every 4xx body is the documented error shape (validated against the document's schema);
//! - a refused credential is 401/403, an accepted one is never refused for auth;
//! - no run is created by a rejected request, and every run in the journal was answered
//!   with a 2xx naming it;
//! - no canary secret, and no credential the request sent, in any body or header.
//!
//! Workers are off, so valid requests create runs that stay queued: nothing reaches the
//! providers. Case count: `PROVISIONER_FUZZ_CASES` (default [`CI_CASES`]); the counts are
//! printed as one JSON line and appended to the file `PROVISIONER_FUZZ_REPORT` names.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod fuzz_report;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use provisioner::api::auth::Authenticator;
use provisioner::api::health::Readiness;
use provisioner::api::{ApiOptions, ApiState};
use provisioner::app::{App, AppOptions};
use provisioner::config::{ApiSettings, ApiTokenSettings};
use saga::RunFilter;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Cases in the CI run; `PROVISIONER_FUZZ_CASES` overrides it for the long run.
const CI_CASES: u32 = 2_000;

const TOKEN: &str = "ptk_canary-fuzz-admin-token-7Hq2Lx9Vb4Nc";
const TOKEN_NAME: &str = "fuzz-admin";
const JWT_SECRET: &str = "canary-fuzz-hs256-secret-Jd83kQ0zLp5mWv2xRt7y";
const ADMIN_SUB: &str = "7c1e9a2b-fuzz-admin";

// ---------------------------------------------------------------------------------------
// The server under test.

struct Target {
    base: String,
    http: reqwest::Client,
    app: Arc<App>,
    secrets: Vec<String>,
    server: tokio::task::JoinHandle<()>,
    _sandbox: sandbox::Sandbox,
    database: Option<saga::testkit::postgres::FreshDatabase>,
}

impl Target {
    async fn start() -> Option<Self> {
        let database = saga::testkit::postgres::fresh_database().await.unwrap()?;
        let admin_url = support::admin_url().await?;
        let sandbox = sandbox::Sandbox::start(sandbox::SandboxConfig::for_tests(admin_url))
            .await
            .expect("sandbox starts");
        let (_, encoded) = saga::SealingKey::generate();
        let secret_key = SecretString::from(encoded);
        let config = support::config_for(&sandbox, support::quick_settings());
        let journal = provisioner::app::open_journal(Some(&database.url))
            .await
            .expect("the PostgreSQL journal opens");
        let options = AppOptions {
            workers: false,
            ..support::fast_options()
        };
        let app = Arc::new(
            App::start(&config, journal, &secret_key, options)
                .await
                .expect("app starts"),
        );
        let settings = ApiSettings {
            tokens: vec![ApiTokenSettings {
                name: TOKEN_NAME.into(),
                sha256: hex::encode(Sha256::digest(TOKEN.as_bytes())),
                revoked: false,
            }],
            // Thousands of requests from one principal: the limit is not what is fuzzed here.
            rate_limit_per_minute: 1_000_000,
            rate_limit_burst: 100_000,
            ..ApiSettings::default()
        };
        let env = |name: &str| (name == "SUPABASE_JWT_SECRET").then(|| JWT_SECRET.to_owned());
        let auth = Arc::new(Authenticator::from_config(&settings, &env).expect("auth config"));
        let api_options = ApiOptions {
            // The legacy route waits for a run no worker drives: answer 202 at once.
            legacy_wait: Duration::from_millis(20),
            ..ApiOptions::default()
        };
        let router = provisioner::api::server_router(
            ApiState::new(app.clone(), auth, api_options),
            Readiness::new(app.engine.clone(), false),
            provisioner::api::metrics::install().expect("metrics recorder"),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        let mut secrets: Vec<String> = support::env_map(&sandbox)
            .into_iter()
            .filter(|(k, _)| k.contains("TOKEN") || k.contains("KEY") || k.contains("SECRET"))
            .map(|(_, v)| v)
            .filter(|v| v.len() >= 8)
            .collect();
        secrets.extend([
            secret_key.expose_secret().to_owned(),
            TOKEN.to_owned(),
            JWT_SECRET.to_owned(),
        ]);
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        Some(Self {
            base,
            http,
            app,
            secrets,
            server,
            _sandbox: sandbox,
            database: Some(database),
        })
    }

    async fn newest_run(&self) -> Option<Uuid> {
        let filter = RunFilter {
            newest_first: true,
            limit: 1,
            ..RunFilter::default()
        };
        let runs = self.app.engine.list(&filter).await.expect("journal lists");
        runs.first().map(|r| r.id)
    }

    async fn all_runs(&self) -> Vec<Uuid> {
        let mut ids = Vec::new();
        let mut before = None;
        loop {
            let filter = RunFilter {
                newest_first: true,
                limit: 500,
                before,
                ..RunFilter::default()
            };
            let page = self.app.engine.list(&filter).await.expect("journal lists");
            let Some(last) = page.last() else {
                return ids;
            };
            before = Some(last.id);
            ids.extend(page.iter().map(|r| r.id));
        }
    }
}

// ---------------------------------------------------------------------------------------
// The document, as the fuzzer reads it.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Location {
    Path,
    Query,
    Header,
}

#[derive(Debug, Clone)]
struct Param {
    name: String,
    location: Location,
}

#[derive(Debug, Clone)]
struct Operation {
    method: String,
    path: String,
    params: Vec<Param>,
    /// The request body's schema, `$ref`s resolved one level (its properties).
    body: Option<Value>,
    /// Documented status -> the JSON schema of its body, when it has one.
    responses: BTreeMap<u16, Option<Value>>,
    authenticated: bool,
}

impl Operation {
    fn name(&self) -> String {
        format!("{} {}", self.method.to_uppercase(), self.path)
    }
}

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => doc
            .pointer(r.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("dangling $ref {r}")),
        None => schema,
    }
}

fn operations(doc: &Value) -> Vec<Operation> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            let params = op["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .map(|p| Param {
                            name: p["name"].as_str().unwrap().to_owned(),
                            location: match p["in"].as_str().unwrap() {
                                "path" => Location::Path,
                                "query" => Location::Query,
                                "header" => Location::Header,
                                other => panic!("{method} {path}: parameter in {other}"),
                            },
                        })
                        .collect()
                })
                .unwrap_or_default();
            let body = op
                .pointer("/requestBody/content/application~1json/schema")
                .map(|s| resolve(doc, s).clone());
            let responses = op["responses"]
                .as_object()
                .expect("responses")
                .iter()
                .map(|(status, response)| {
                    let schema = response
                        .pointer("/content/application~1json/schema")
                        .cloned();
                    (status.parse::<u16>().expect("numeric status"), schema)
                })
                .collect();
            ops.push(Operation {
                method: method.clone(),
                path: path.clone(),
                params,
                body,
                responses,
                authenticated: op.get("security").is_some(),
            });
        }
    }
    ops
}

/// A validator for `schema` (which may `$ref` the document's components).
fn validator(doc: &Value, schema: &Value) -> jsonschema::Validator {
    let mut root = schema.clone();
    if let Value::Object(map) = &mut root {
        map.insert("components".into(), doc["components"].clone());
    }
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .build(&root)
        .unwrap_or_else(|e| panic!("schema does not compile: {e}: {schema}"))
}

// ---------------------------------------------------------------------------------------
// Credentials.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Let in as the admin.
    Admitted,
    /// Refused with this status.
    Refused(u16),
}

/// One shape of `Authorization`: the header values sent (none, one, or several).
#[derive(Debug, Clone)]
struct AuthShape {
    name: &'static str,
    values: Vec<Vec<u8>>,
    expect: Expect,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn admin_claims() -> Value {
    json!({
        "sub": ADMIN_SUB,
        "aud": "authenticated",
        "iat": now(),
        "exp": now() + 3600,
        "role": "authenticated",
        "app_metadata": {"provider": "email", "role": "admin"},
        "user_metadata": {},
    })
}

fn signed(header: Header, claims: &Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret)).unwrap()
}

fn hs256(claims: &Value) -> String {
    signed(Header::new(Algorithm::HS256), claims, JWT_SECRET.as_bytes())
}

/// A JWT with a hand-written header, HMAC-SHA256-signed with our secret: the signature is
/// right, the header lies.
fn forged(header: &Value, claims: &Value) -> String {
    use hmac::Mac;
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(JWT_SECRET.as_bytes()).unwrap();
    mac.update(input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{input}.{signature}")
}

fn auth_shapes() -> Vec<AuthShape> {
    let bearer = |t: &str| format!("Bearer {t}").into_bytes();
    let one = |name, value: Vec<u8>, expect| AuthShape {
        name,
        values: vec![value],
        expect,
    };
    let (ok, no, forbidden) = (Expect::Admitted, Expect::Refused(401), Expect::Refused(403));
    let with = |key: &str, value: Value| {
        let mut c = admin_claims();
        c[key] = value;
        c
    };
    let without = |key: &str| {
        let mut c = admin_claims();
        c.as_object_mut().unwrap().remove(key);
        c
    };
    let mut expired = with("exp", json!(now() - 3600));
    expired["iat"] = json!(now() - 7200);
    let mut user_metadata_role = admin_claims();
    user_metadata_role["app_metadata"] = json!({"provider": "email"});
    user_metadata_role["user_metadata"] = json!({"role": "admin"});
    user_metadata_role["role"] = json!("admin");
    let mut role_case = admin_claims();
    role_case["app_metadata"]["role"] = json!("Admin");
    let mut role_list = admin_claims();
    role_list["app_metadata"]["role"] = json!(["viewer", "admin"]);
    let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(admin_claims().to_string());
    let mut jku = Header::new(Algorithm::HS256);
    jku.jku = Some("http://127.0.0.1:9/jwks.json".into());
    vec![
        one("the API token", bearer(TOKEN), ok),
        AuthShape {
            name: "missing",
            values: vec![],
            expect: no,
        },
        one("empty", Vec::new(), no),
        one("Bearer alone", b"Bearer".to_vec(), no),
        one("Bearer and a space", b"Bearer ".to_vec(), no),
        // RFC 7235 allows 1*SP between scheme and credentials.
        one("two spaces", format!("Bearer  {TOKEN}").into_bytes(), ok),
        one(
            "lowercase scheme",
            format!("bearer {TOKEN}").into_bytes(),
            ok,
        ),
        one(
            "uppercase scheme",
            format!("BEARER {TOKEN}").into_bytes(),
            ok,
        ),
        one("no scheme", TOKEN.as_bytes().to_vec(), no),
        one(
            "Basic with the token",
            format!("Basic {}", STANDARD.encode(format!("admin:{TOKEN}"))).into_bytes(),
            no,
        ),
        one("Basic raw", format!("Basic {TOKEN}").into_bytes(), no),
        one(
            "token and more",
            format!("Bearer {TOKEN} {TOKEN}").into_bytes(),
            no,
        ),
        one("token wrong case", bearer(&TOKEN.to_uppercase()), no),
        one("token truncated", bearer(&TOKEN[..TOKEN.len() - 1]), no),
        one(
            "token's hash",
            bearer(&hex::encode(Sha256::digest(TOKEN.as_bytes()))),
            no,
        ),
        one("huge token", bearer(&"A".repeat(16 * 1024)), no),
        one(
            "huge JWT-looking token",
            bearer(&format!(
                "{}.{}.{}",
                "e".repeat(8000),
                "e".repeat(8000),
                "e"
            )),
            no,
        ),
        one("non-ASCII bytes", b"Bearer \xff\xfe\x80abc".to_vec(), no),
        one("tab separated", format!("Bearer\t{TOKEN}").into_bytes(), no),
        AuthShape {
            name: "two Authorization headers",
            values: vec![bearer(TOKEN), bearer("other")],
            expect: no,
        },
        one("admin JWT (HS256)", bearer(&hs256(&admin_claims())), ok),
        one("admin JWT, role in a list", bearer(&hs256(&role_list)), ok),
        one("alg none", bearer(&format!("{none_header}.{payload}.")), no),
        one(
            "alg none with a signature",
            bearer(&format!("{none_header}.{payload}.c2lnbmF0dXJl")),
            no,
        ),
        one(
            "HS/RS confusion: RS256 header over an HMAC",
            bearer(&forged(
                &json!({"alg": "RS256", "typ": "JWT"}),
                &admin_claims(),
            )),
            no,
        ),
        one(
            "ES256 header over an HMAC",
            bearer(&forged(
                &json!({"alg": "ES256", "typ": "JWT", "kid": "k1"}),
                &admin_claims(),
            )),
            no,
        ),
        one(
            "HS512 with the secret",
            bearer(&signed(
                Header::new(Algorithm::HS512),
                &admin_claims(),
                JWT_SECRET.as_bytes(),
            )),
            no,
        ),
        one(
            "HS256 with another secret",
            bearer(&signed(
                Header::new(Algorithm::HS256),
                &admin_claims(),
                b"guessed-secret-guessed-secret-guessed",
            )),
            no,
        ),
        one("expired", bearer(&hs256(&expired)), no),
        one(
            "not yet valid",
            bearer(&hs256(&with("nbf", json!(now() + 3600)))),
            no,
        ),
        one(
            "wrong audience",
            bearer(&hs256(&with("aud", json!("anon")))),
            no,
        ),
        one("no audience", bearer(&hs256(&without("aud"))), no),
        one("no sub", bearer(&hs256(&without("sub"))), no),
        one("empty sub", bearer(&hs256(&with("sub", json!("")))), no),
        one("no exp", bearer(&hs256(&without("exp"))), no),
        one(
            "exp as a string",
            bearer(&hs256(&with("exp", json!("tomorrow")))),
            no,
        ),
        one(
            "jku header",
            bearer(&signed(jku, &admin_claims(), JWT_SECRET.as_bytes())),
            no,
        ),
        one(
            "role only in user_metadata",
            bearer(&hs256(&user_metadata_role)),
            forbidden,
        ),
        one(
            "role in another case",
            bearer(&hs256(&role_case)),
            forbidden,
        ),
        one(
            "not an admin",
            bearer(&hs256(&with("app_metadata", json!({"role": "viewer"})))),
            forbidden,
        ),
        one(
            "admin with an odd sub",
            bearer(&hs256(&with(
                "sub",
                json!("adm\u{0}in\u{202e}\r\nX-Injected: 1 \u{301}"),
            ))),
            ok,
        ),
        one("three dots", bearer("a.b.c"), no),
        one("empty segments", bearer(".."), no),
        one("JSON segments", bearer("e30.e30.e30"), no),
    ]
}

// ---------------------------------------------------------------------------------------
// Requests.

#[derive(Debug, Clone)]
enum AuthChoice {
    Shape(usize),
    /// `Bearer` and a made-up token.
    Made(String),
}

#[derive(Debug, Clone)]
enum PathValue {
    /// The n-th run or client seen so far (a fresh UUID or slug when there is none).
    Existing(usize),
    /// Percent-encoded as a path segment.
    Text(String),
    /// Put into the URL as it is (already encoded, or meant to be odd).
    Raw(&'static str),
}

#[derive(Debug, Clone)]
enum Query {
    None,
    Pairs(Vec<(String, String)>),
    Raw(String),
}

#[derive(Debug, Clone)]
enum Body {
    Absent,
    Json(Value),
    Raw(Vec<u8>),
    /// A JSON object of about this many bytes (the limit is 64 KiB).
    Oversized {
        bytes: usize,
        chunked: bool,
    },
}

#[derive(Debug, Clone)]
struct Case {
    op: usize,
    auth: AuthChoice,
    path: Vec<PathValue>,
    query: Query,
    headers: Vec<(String, Vec<u8>)>,
    body: Body,
    content_type: Option<&'static str>,
}

/// Strings meant to break something: injections, traversal, odd Unicode, long ones.
const HOSTILE: &[&str] = &[
    "'; DROP TABLE saga_runs; --",
    "acme' OR '1'='1",
    "acme\" OR 1=1 --",
    "%' OR 1=1 --",
    "acme%",
    "ac_e",
    "%:acme:%",
    "provision:acme:0",
    "\\x27",
    "../../etc/passwd",
    "..\\..\\windows\\win.ini",
    "..",
    ".",
    "....//....//",
    "/etc/passwd",
    "acme\r\nX-Injected: 1",
    "acme\r\n\r\nHTTP/1.1 200 OK",
    "acme\nSet-Cookie: a=b",
    "acme\u{0}dental",
    "\u{0}",
    "%00",
    "acme%00",
    "%0d%0a",
    "\u{202e}acme-dental",
    "acme\u{200f}",
    "a\u{301}cme",
    "ac\u{200b}me",
    "\u{feff}acme",
    "ａｃｍｅ",
    "ACME-DENTAL",
    "  acme-dental  ",
    "acme-dental\t",
    "acme--dental",
    "-acme",
    "acme-",
    "İstanbul",
    "straße",
    "🦀🦀🦀",
    "\u{10ffff}\u{fffd}",
    "{{7*7}}",
    "${jndi:ldap://127.0.0.1:9/a}",
    "<script>alert(1)</script>",
    "%s%n%x%d",
    "-1",
    "0",
    "99999999999999999999999",
    "NaN",
    "1e309",
    "null",
    "true",
    "",
    " ",
];

/// Already-encoded or deliberately odd path segments.
const RAW_SEGMENTS: &[&str] = &[
    "%FF",
    "%C0%AF",
    "%ED%A0%80",
    "%00",
    "acme%00dental",
    "..%2F..%2Fetc%2Fpasswd",
    "%2e%2e",
    "%2E",
    "a%2Fb",
    "%0D%0AX-Injected:%201",
    "%E2%80%AE",
    "%",
    "%G1",
    "%25",
    "a;b=c",
    "a@b",
    "~",
];

fn long_string() -> impl Strategy<Value = String> {
    prop_oneof![
        (41usize..200).prop_map(|n| "a".repeat(n)),
        (1_000usize..20_000).prop_map(|n| "x".repeat(n)),
        (100usize..3_000).prop_map(|n| "é\u{301}".repeat(n)),
        (10usize..500).prop_map(|n| "\u{202e}\u{0}".repeat(n)),
    ]
}

fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(HOSTILE).prop_map(str::to_owned),
        2 => any::<String>(),
        1 => long_string(),
        2 => "[a-zA-Z0-9 ._%'\"\\\\/:;-]{0,50}",
    ]
}

fn slug() -> impl Strategy<Value = String> {
    // A small alphabet so that clients repeat: the same client twice, with other fields.
    "[a-c][a-c0-9-]{1,4}[a-c0-9]"
}

fn good_string(name: &str) -> BoxedStrategy<String> {
    match name {
        "clientId" => slug().boxed(),
        "clientName" => "[A-Z][a-z]{2,10}( [A-Z][a-z]{1,8})?".boxed(),
        "orgEmail" => "[a-z]{1,8}@[a-c]{2,5}\\.example".boxed(),
        "tier" => proptest::sample::select(vec![
            "starter",
            "professional",
            "enterprise",
            "core",
            "growth",
            "scale",
            "GROWTH",
            " starter ",
        ])
        .prop_map(str::to_owned)
        .boxed(),
        "reason" => "[a-z ]{1,30}".boxed(),
        _ => "[a-z0-9-]{1,20}".boxed(),
    }
}

/// Arbitrary JSON, nested a few levels, with odd keys and strings.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        hostile().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(hostile(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn branding() -> BoxedStrategy<Value> {
    let key = proptest::sample::select(vec![
        "primary_color",
        "primaryColor",
        "secondary_color",
        "company_name",
        "tagline",
        "logo_url",
        "logoUrl",
        "font",
    ]);
    let value = prop_oneof![
        "#[0-9A-Fa-f]{6}".prop_map(Value::String),
        "https://[a-c]{2,6}\\.example/logo\\.png".prop_map(Value::String),
        hostile().prop_map(Value::String),
        any_json(),
    ];
    proptest::collection::btree_map(key, value, 0..5)
        .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))
        .boxed()
}

fn modules() -> BoxedStrategy<Value> {
    let key = proptest::sample::select(vec![
        "crm",
        "email",
        "social",
        "content_studio",
        "contentStudio",
        "accommodation",
        "ai_agents",
        "fax",
    ]);
    let value = prop_oneof![
        4 => any::<bool>().prop_map(Value::Bool),
        1 => any_json(),
    ];
    proptest::collection::btree_map(key, value, 0..6)
        .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))
        .boxed()
}

/// A value for the body property `name`: mostly what the field takes, sometimes not.
fn property_value(name: &str) -> BoxedStrategy<Value> {
    let good: BoxedStrategy<Value> = match name {
        "branding" => branding(),
        "modules" => modules(),
        "metadata" | "integrations" => prop_oneof![
            3 => proptest::collection::btree_map("[a-zA-Z]{1,8}", any_json(), 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            1 => any_json(),
        ]
        .boxed(),
        _ => good_string(name).prop_map(Value::String).boxed(),
    };
    prop_oneof![
        6 => good,
        2 => hostile().prop_map(Value::String),
        1 => any_json(),
    ]
    .boxed()
}

fn json_body(schema: Option<&Value>) -> BoxedStrategy<Value> {
    let mut names: Vec<String> = schema
        .and_then(|s| s["properties"].as_object())
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    // Bodies the document does not describe (the commands) are objects too; abandon's reason.
    names.push("reason".into());
    let required: BTreeSet<String> = schema
        .and_then(|s| s["required"].as_array())
        .map(|r| {
            r.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let fields: Vec<BoxedStrategy<Option<(String, Value)>>> = names
        .into_iter()
        .map(|name| {
            let present = if required.contains(&name) { 0.92 } else { 0.4 };
            proptest::option::weighted(present, property_value(&name))
                .prop_map(move |v| v.map(|v| (name.clone(), v)))
                .boxed()
        })
        .collect();
    let unknown = proptest::collection::vec((hostile(), any_json()), 0..2);
    (fields, unknown, 0u8..10)
        .prop_map(|(fields, unknown, roll)| {
            let mut map: serde_json::Map<String, Value> = fields.into_iter().flatten().collect();
            // Mostly without unknown fields, so that the rules behind the shape get reached.
            if roll == 0 {
                map.extend(unknown);
            }
            Value::Object(map)
        })
        .boxed()
}

/// A body every rule accepts (for a client route), so that runs exist and the requests
/// after them meet real runs, repeats and conflicts.
fn valid_body(schema: Option<&Value>) -> BoxedStrategy<Value> {
    let client_route = schema.is_some_and(|s| s["properties"].get("clientId").is_some());
    if !client_route {
        return proptest::option::of(good_string("reason"))
            .prop_map(|reason| match reason {
                Some(r) => json!({ "reason": r }),
                None => json!({}),
            })
            .boxed();
    }
    let colour = "#[0-9A-F]{6}";
    (
        slug(),
        good_string("clientName"),
        good_string("orgEmail"),
        good_string("tier"),
        proptest::option::of((colour, "[A-Za-z ]{1,20}")),
        proptest::option::of((any::<bool>(), any::<bool>())),
        proptest::option::of(any::<u16>()),
    )
        .prop_map(|(id, name, email, tier, branding, modules, crm)| {
            let mut body = json!({
                "clientId": id, "clientName": name, "orgEmail": email, "tier": tier,
            });
            if let Some((colour, tagline)) = branding {
                body["branding"] = json!({"primary_color": colour, "tagline": tagline});
            }
            if let Some((crm, email)) = modules {
                body["modules"] = json!({"crm": crm, "email": email});
            }
            if let Some(crm) = crm {
                body["metadata"] = json!({ "crmId": crm });
            }
            body
        })
        .boxed()
}

const MALFORMED: &[&str] = &[
    "{not json",
    "{\"clientId\": ",
    "{\"clientId\": \"acme\",}",
    "[1,2]",
    "\"a string\"",
    "42",
    "null",
    "true",
    "{}{}",
    "{\"clientId\": \"\\ud800\"}",
    "{\"clientId\": \"\\udc00\\ud800\"}",
    "{\"clientId\": \"\\ud83e\\udd80\", \"tier\": \"growth\"}",
    "{\"clientId\": \"\\u0000\"}",
    "{\"\\u0000\": 1}",
    "{\"clientId\": \"acme\", \"clientId\": \"other\"}",
    "\u{feff}{\"clientId\": \"acme\"}",
    "{\"metadata\": {\"a\": 1e999999}}",
    "{\"metadata\": {\"a\": -0}}",
    "{'clientId': 'acme'}",
    "{\"clientId\": \"acme\"}\n{\"clientId\": \"b\"}",
    "\u{0}",
    "{\"reason\": \"\\u0000\\u202e\"}",
];

fn raw_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => proptest::sample::select(MALFORMED).prop_map(|s| s.as_bytes().to_vec()),
        2 => proptest::collection::vec(any::<u8>(), 0..300),
        1 => (1usize..5_000).prop_map(|n| "[".repeat(n).into_bytes()),
        1 => (1usize..2_000).prop_map(|n| {
            let mut s = "{\"metadata\":".to_owned();
            s.push_str(&"{\"a\":".repeat(n));
            s.push('1');
            s.push_str(&"}".repeat(n));
            s.push('}');
            s.into_bytes()
        }),
        1 => (any_json(), 1usize..40).prop_map(|(v, cut)| {
            let text = v.to_string().into_bytes();
            let keep = text.len().saturating_sub(cut);
            text[..keep].to_vec()
        }),
        1 => ((0u8..=255), proptest::collection::vec(any::<u8>(), 1..50)).prop_map(|(pick, tail)| {
            // Valid JSON with invalid UTF-8 inside a string.
            let mut bytes = b"{\"clientName\": \"".to_vec();
            bytes.push(0x80 | (pick & 0x3f));
            bytes.extend(tail.into_iter().filter(|b| *b != b'"' && *b != b'\\'));
            bytes.extend(b"\"}");
            bytes
        }),
    ]
}

fn body(op: &Operation) -> BoxedStrategy<Body> {
    let takes_body = op.method == "post" || op.method == "delete";
    let oversized = (
        prop_oneof![
            Just(64 * 1024),
            (64 * 1024 + 1..200 * 1024usize),
            Just(1024 * 1024)
        ],
        any::<bool>(),
    )
        .prop_map(|(bytes, chunked)| Body::Oversized { bytes, chunked });
    if takes_body {
        prop_oneof![
            4 => valid_body(op.body.as_ref()).prop_map(Body::Json),
            8 => json_body(op.body.as_ref()).prop_map(Body::Json),
            2 => Just(Body::Absent),
            3 => raw_body().prop_map(Body::Raw),
            1 => oversized,
        ]
        .boxed()
    } else {
        prop_oneof![
            12 => Just(Body::Absent),
            1 => raw_body().prop_map(Body::Raw),
            1 => oversized,
        ]
        .boxed()
    }
}

fn path_value(name: &str) -> BoxedStrategy<PathValue> {
    let good = match name {
        "clientId" => slug().prop_map(PathValue::Text).boxed(),
        _ => any::<u128>()
            .prop_map(|n| PathValue::Text(Uuid::from_u128(n).to_string()))
            .boxed(),
    };
    prop_oneof![
        5 => any::<usize>().prop_map(PathValue::Existing),
        3 => good,
        3 => hostile().prop_map(PathValue::Text),
        2 => proptest::sample::select(RAW_SEGMENTS).prop_map(PathValue::Raw),
    ]
    .boxed()
}

fn query_value(name: &str) -> BoxedStrategy<String> {
    let good: BoxedStrategy<String> = match name {
        "status" => proptest::sample::select(vec![
            "queued",
            "running",
            "paused",
            "succeeded",
            "needs_attention",
            "compensated",
            "RUNNING",
        ])
        .prop_map(str::to_owned)
        .boxed(),
        "saga" => proptest::sample::select(vec!["provision", "deprovision", "Provision"])
            .prop_map(str::to_owned)
            .boxed(),
        "limit" => prop_oneof![
            (1u32..=200).prop_map(|n| n.to_string()),
            proptest::sample::select(vec!["0", "201", "-1", "1e2", " 5", "4294967296", "5.0"])
                .prop_map(str::to_owned),
        ]
        .boxed(),
        "cursor" => any::<u128>()
            .prop_map(|n| Uuid::from_u128(n).to_string())
            .boxed(),
        other => good_string(other),
    };
    prop_oneof![4 => good, 2 => hostile()].boxed()
}

fn query(op: &Operation) -> BoxedStrategy<Query> {
    let names: Vec<String> = op
        .params
        .iter()
        .filter(|p| p.location == Location::Query)
        .map(|p| p.name.clone())
        .collect();
    let pairs: Vec<BoxedStrategy<Option<(String, String)>>> = names
        .iter()
        .map(|name| {
            let name = name.clone();
            proptest::option::weighted(0.4, query_value(&name))
                .prop_map(move |v| v.map(|v| (name.clone(), v)))
                .boxed()
        })
        .collect();
    let extra_name: BoxedStrategy<String> = if names.is_empty() {
        hostile().boxed()
    } else {
        // A documented name again (a repeat) or one the operation does not take.
        prop_oneof![proptest::sample::select(names.clone()), hostile()].boxed()
    };
    let extra = proptest::collection::vec((extra_name, hostile()), 0..2);
    prop_oneof![
        6 => (pairs, extra, 0u8..6).prop_map(|(pairs, extra, roll)| {
            let mut pairs: Vec<(String, String)> = pairs.into_iter().flatten().collect();
            if roll == 0 {
                pairs.extend(extra);
            }
            Query::Pairs(pairs)
        }),
        2 => Just(Query::None),
        1 => prop_oneof![
            proptest::sample::select(vec![
                "limit=%FF", "clientId=%00", "clientId=%", "=x", "&&&", "limit", "limit=1&limit=2",
                "clientId=a%0d%0ab", "cursor=%ED%A0%80", "status[]=running", "a=1;b=2",
            ])
            .prop_map(str::to_owned),
            "[ -~]{0,40}",
        ]
        .prop_map(Query::Raw),
    ]
    .boxed()
}

fn headers(op: &Operation) -> BoxedStrategy<Vec<(String, Vec<u8>)>> {
    let names: Vec<String> = op
        .params
        .iter()
        .filter(|p| p.location == Location::Header)
        .map(|p| p.name.clone())
        .collect();
    let value = prop_oneof![
        (0i64..50).prop_map(|n| n.to_string().into_bytes()),
        proptest::sample::select(vec![
            "-1",
            "abc",
            "99999999999999999999",
            " 3 ",
            "1.5",
            "",
            "0x10",
            "+4",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        Just(b"\xff\xfe".to_vec()),
    ];
    if names.is_empty() {
        return Just(Vec::new()).boxed();
    }
    proptest::collection::vec((proptest::sample::select(names), value), 0..2).boxed()
}

fn auth(shapes: usize, admin_jwt: usize) -> impl Strategy<Value = AuthChoice> {
    prop_oneof![
        // Mostly the admin, so requests reach the handlers.
        12 => Just(AuthChoice::Shape(0)),
        1 => Just(AuthChoice::Shape(admin_jwt)),
        4 => (0..shapes).prop_map(AuthChoice::Shape),
        1 => "[!-~]{0,80}".prop_map(AuthChoice::Made),
    ]
}

fn case(ops: Arc<Vec<Operation>>, shapes: usize, admin_jwt: usize) -> impl Strategy<Value = Case> {
    (0..ops.len()).prop_flat_map(move |i| {
        let op = &ops[i];
        let path: Vec<BoxedStrategy<PathValue>> = op
            .params
            .iter()
            .filter(|p| p.location == Location::Path)
            .map(|p| path_value(&p.name))
            .collect();
        (
            Just(i),
            auth(shapes, admin_jwt),
            path,
            query(op),
            headers(op),
            body(op),
            proptest::sample::select(vec![
                Some("application/json"),
                Some("application/json"),
                Some("application/json; charset=utf-8"),
                Some("text/plain"),
                Some("application/x-www-form-urlencoded"),
                None,
            ]),
        )
            .prop_map(
                |(op, auth, path, query, headers, body, content_type)| Case {
                    op,
                    auth,
                    path,
                    query,
                    headers,
                    body,
                    content_type,
                },
            )
    })
}

// ---------------------------------------------------------------------------------------
// Running a case.

/// What the runs seen so far are: path parameters point at them.
#[derive(Default)]
struct Seen {
    runs: Vec<Uuid>,
    clients: Vec<String>,
    /// Every run a 2xx answer named.
    answered_runs: BTreeSet<Uuid>,
    statuses: BTreeMap<u16, u64>,
    per_operation: BTreeMap<String, u64>,
    requests: u64,
    /// Chunked bodies over the limit whose connection the server closed mid-write.
    closed_on_oversized: u64,
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn oversized_body(bytes: usize) -> Vec<u8> {
    let prefix = r#"{"clientId":"big-one","clientName":"Big","orgEmail":"a@big.example","tier":"core","metadata":{"blob":""#;
    let suffix = r#""}}"#;
    let fill = bytes.saturating_sub(prefix.len() + suffix.len());
    let mut body = Vec::with_capacity(bytes);
    body.extend_from_slice(prefix.as_bytes());
    body.resize(prefix.len() + fill, b'x');
    body.extend_from_slice(suffix.as_bytes());
    body
}

struct Sent {
    url: String,
    /// The route the URL still names after the client normalised it (`..` segments).
    rerouted: bool,
    credentials: Vec<Vec<u8>>,
    expect: Option<Expect>,
}

fn request(
    target: &Target,
    op: &Operation,
    shapes: &[AuthShape],
    case: &Case,
    seen: &Seen,
) -> (reqwest::RequestBuilder, Sent) {
    let mut path_values = case.path.iter();
    let mut path = String::new();
    for segment in op.path.split('/').skip(1) {
        path.push('/');
        if segment.starts_with('{') {
            let name = segment.trim_matches(|c| c == '{' || c == '}');
            let value = path_values.next().expect("one value per path parameter");
            path.push_str(&match value {
                PathValue::Existing(n) if name == "clientId" => match seen.clients.len() {
                    0 => format!("fresh-{n}"),
                    len => seen.clients[n % len].clone(),
                },
                PathValue::Existing(n) => match seen.runs.len() {
                    0 => Uuid::now_v7().to_string(),
                    len => seen.runs[n % len].to_string(),
                },
                PathValue::Text(text) => encode(text),
                PathValue::Raw(raw) => (*raw).to_owned(),
            });
        } else {
            path.push_str(segment);
        }
    }
    let mut url = format!("{}{path}", target.base);
    match &case.query {
        Query::None => {}
        Query::Pairs(pairs) if pairs.is_empty() => {}
        Query::Pairs(pairs) => {
            let q: Vec<String> = pairs
                .iter()
                .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
                .collect();
            url.push('?');
            url.push_str(&q.join("&"));
        }
        Query::Raw(raw) => {
            url.push('?');
            url.push_str(raw);
        }
    }
    let parsed = reqwest::Url::parse(&url).expect("the fuzzer builds parseable URLs");
    let template: Vec<&str> = op.path.split('/').collect();
    let sent: Vec<&str> = parsed.path().split('/').collect();
    let rerouted = template.len() != sent.len()
        || template.iter().zip(&sent).any(|(t, s)| {
            if t.starts_with('{') {
                s.is_empty()
            } else {
                t != s
            }
        });
    let method = reqwest::Method::from_bytes(op.method.to_uppercase().as_bytes()).unwrap();
    let mut builder = target.http.request(method, parsed.clone());
    let (credentials, expect) = match &case.auth {
        AuthChoice::Shape(i) => {
            let shape = &shapes[*i % shapes.len()];
            (shape.values.clone(), Some(shape.expect))
        }
        AuthChoice::Made(token) => (vec![format!("Bearer {token}").into_bytes()], None),
    };
    for value in &credentials {
        builder = builder.header(
            reqwest::header::AUTHORIZATION,
            reqwest::header::HeaderValue::from_bytes(value).expect("a sendable header value"),
        );
    }
    for (name, value) in &case.headers {
        builder = builder.header(
            name.as_str(),
            reqwest::header::HeaderValue::from_bytes(value).expect("a sendable header value"),
        );
    }
    if let Some(ct) = case.content_type {
        builder = builder.header(reqwest::header::CONTENT_TYPE, ct);
    }
    builder = match &case.body {
        Body::Absent => builder,
        Body::Json(v) => builder.body(v.to_string()),
        Body::Raw(bytes) => builder.body(bytes.clone()),
        Body::Oversized {
            bytes,
            chunked: false,
        } => builder.body(oversized_body(*bytes)),
        Body::Oversized {
            bytes,
            chunked: true,
        } => {
            let chunks: Vec<Result<Vec<u8>, std::io::Error>> = oversized_body(*bytes)
                .chunks(8 * 1024)
                .map(|c| Ok(c.to_vec()))
                .collect();
            builder.body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        }
    };
    (
        builder,
        Sent {
            url: parsed.to_string(),
            rerouted,
            credentials,
            expect,
        },
    )
}

struct Schemas {
    /// The error body of `/v1` and of refused credentials.
    error: jsonschema::Validator,
    /// Per operation and status: the documented body's validator.
    documented: Vec<BTreeMap<u16, jsonschema::Validator>>,
}

impl Schemas {
    fn new(doc: &Value, ops: &[Operation]) -> Self {
        let error = validator(doc, &json!({"$ref": "#/components/schemas/ErrorBody"}));
        let documented = ops
            .iter()
            .map(|op| {
                op.responses
                    .iter()
                    .filter_map(|(status, schema)| {
                        schema.as_ref().map(|s| (*status, validator(doc, s)))
                    })
                    .collect()
            })
            .collect();
        Self { error, documented }
    }
}

fn explain(validator: &jsonschema::Validator, body: &Value) -> Option<String> {
    let errors: Vec<String> = validator
        .iter_errors(body)
        .take(5)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    (!errors.is_empty()).then(|| errors.join("; "))
}

async fn run_case(
    target: &Target,
    ops: &[Operation],
    shapes: &[AuthShape],
    schemas: &Schemas,
    case: &Case,
    seen: &Mutex<Seen>,
) -> Result<(), String> {
    let op = &ops[case.op];
    let (builder, sent) = {
        let seen = seen.lock().unwrap();
        request(target, op, shapes, case, &seen)
    };
    let newest_before = target.newest_run().await;
    let what = format!("{} as {}", op.name(), sent.url);
    let response = match builder.send().await {
        Ok(response) => response,
        Err(e)
            if matches!(case.body, Body::Oversized { chunked: true, .. })
                && format!("{e:?}").contains("BodyWrite") =>
        {
            // The server refused a chunked body over the limit and closed the connection
            // before the client had written it all, as HTTP/1.1 lets it; this client then
            // reports the write, not the answer. What is left to check: still up, and
            // nothing was created.
            let health = target
                .http
                .get(format!("{}/healthz", target.base))
                .send()
                .await
                .map_err(|e| format!("{what}: the server is gone after a refused body ({e})"))?;
            if health.status().as_u16() != 200 {
                return Err(format!("{what}: /healthz answers {}", health.status()));
            }
            if target.newest_run().await != newest_before {
                return Err(format!("{what}: a refused body created a run"));
            }
            let mut seen = seen.lock().unwrap();
            seen.requests += 1;
            seen.closed_on_oversized += 1;
            *seen.per_operation.entry(op.name()).or_default() += 1;
            return Ok(());
        }
        Err(e) => return Err(format!("{what}: no answer ({e:?}); did the server crash?")),
    };
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let is_stream = headers
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    // An event stream of a run no worker drives never ends: its headers are the answer.
    let text = if is_stream {
        drop(response);
        String::new()
    } else {
        response
            .text()
            .await
            .map_err(|e| format!("{what}: the body broke off ({e})"))?
    };
    let what = format!(
        "{what} -> {status}: {}",
        text.chars().take(600).collect::<String>()
    );
    {
        let mut seen = seen.lock().unwrap();
        seen.requests += 1;
        *seen.statuses.entry(status).or_default() += 1;
        *seen.per_operation.entry(op.name()).or_default() += 1;
    }

    if status >= 500 {
        return Err(format!("server error: {what}"));
    }
    // Secrets and the credentials sent stay out of everything answered.
    let header_text: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())))
        .collect();
    for secret in &target.secrets {
        if text.contains(secret.as_str()) || header_text.contains(secret.as_str()) {
            return Err(format!("a secret leaked: {what}\n{header_text}"));
        }
    }
    for credential in &sent.credentials {
        let credential = String::from_utf8_lossy(credential);
        let token = credential
            .split_once(' ')
            .map_or(&*credential, |(_, t)| t)
            .trim();
        if token.len() >= 16 && (text.contains(token) || header_text.contains(token)) {
            return Err(format!("the credential sent came back: {what}"));
        }
    }

    let body: Option<Value> = serde_json::from_str(&text).ok();
    if sent.rerouted {
        // The URL names another route (or none) once `..` is resolved: only the generic
        // properties apply.
        if status >= 400 {
            let body = body
                .as_ref()
                .ok_or_else(|| format!("4xx body is not JSON: {what}"))?;
            if let Some(e) = explain(&schemas.error, body) {
                return Err(format!("4xx body is not the error shape ({e}): {what}"));
            }
        }
    } else {
        if !op.responses.contains_key(&status) {
            return Err(format!(
                "status {status} is not documented for {} (documented: {:?}): {what}",
                op.name(),
                op.responses.keys().collect::<Vec<_>>()
            ));
        }
        if op.authenticated {
            match sent.expect {
                Some(Expect::Admitted) if status == 401 || status == 403 => {
                    return Err(format!("a valid credential was refused: {what}"));
                }
                Some(Expect::Refused(expected)) if status != expected => {
                    return Err(format!(
                        "a bad credential got {status}, not {expected}: {what}"
                    ));
                }
                None if status != 401 => {
                    return Err(format!("a made-up token got {status}, not 401: {what}"));
                }
                _ => {}
            }
            if status == 401 && !headers.contains_key(reqwest::header::WWW_AUTHENTICATE) {
                return Err(format!("401 without WWW-Authenticate: {what}"));
            }
        }
        if status >= 400 {
            let body = body
                .as_ref()
                .ok_or_else(|| format!("4xx body is not JSON: {what}"))?;
            let validator = schemas.documented[case.op]
                .get(&status)
                .filter(|_| !matches!(status, 401 | 403 | 429))
                .unwrap_or(&schemas.error);
            if let Some(e) = explain(validator, body) {
                return Err(format!(
                    "4xx body is not the documented shape ({e}): {what}"
                ));
            }
        } else if let (Some(body), Some(validator)) =
            (body.as_ref(), schemas.documented[case.op].get(&status))
            && let Some(e) = explain(validator, body)
        {
            return Err(format!(
                "{status} body is not the documented shape ({e}): {what}"
            ));
        }
    }

    let newest_after = target.newest_run().await;
    if status >= 300 && newest_after != newest_before {
        return Err(format!(
            "a rejected request created run {newest_after:?}: {what}"
        ));
    }
    if (200..300).contains(&status)
        && let Some(body) = &body
    {
        let id = body
            .get("id")
            .or_else(|| body.get("runId"))
            .and_then(Value::as_str)
            .and_then(|s| Uuid::parse_str(s).ok());
        let mut seen = seen.lock().unwrap();
        if let Some(id) = id {
            seen.answered_runs.insert(id);
            if !seen.runs.contains(&id) {
                seen.runs.push(id);
            }
        }
        if let Some(client) = body.get("clientId").and_then(Value::as_str)
            && !seen.clients.iter().any(|c| c == client)
        {
            seen.clients.push(client.to_owned());
        }
    }
    Ok(())
}

#[test]
fn every_documented_operation_holds_its_promises_under_fuzzed_requests() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let Some(mut target) = runtime.block_on(Target::start()) else {
        return;
    };
    let doc: Value = runtime.block_on(async {
        let response = target
            .http
            .get(format!("{}/openapi.json", target.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        response.json().await.unwrap()
    });
    let ops = Arc::new(operations(&doc));
    assert!(
        ops.len() >= 17,
        "the document lists {} operations",
        ops.len()
    );
    let shapes = auth_shapes();
    assert!(shapes.len() > 40, "the README promises more than 40 shapes");
    let admin_jwt = shapes
        .iter()
        .position(|s| s.name == "admin JWT (HS256)")
        .unwrap();
    let schemas = Schemas::new(&doc, &ops);
    let seen = Mutex::new(Seen::default());
    let cases = fuzz_report::cases(CI_CASES);
    let started = Instant::now();
    let mut runner = TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        max_shrink_iters: 256,
        ..ProptestConfig::default()
    });
    let result = runner.run(&case(ops.clone(), shapes.len(), admin_jwt), |case| {
        runtime
            .block_on(run_case(&target, &ops, &shapes, &schemas, &case, &seen))
            .map_err(TestCaseError::fail)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let seconds = started.elapsed().as_secs_f64();

    // Every credential shape met a real route at least once.
    let mut seen = seen.into_inner().unwrap();
    runtime.block_on(async {
        for shape in &shapes {
            let case = Case {
                op: ops
                    .iter()
                    .position(|o| o.method == "get" && o.path == "/v1/provisionings")
                    .unwrap(),
                auth: AuthChoice::Shape(shapes.iter().position(|s| s.name == shape.name).unwrap()),
                path: vec![],
                query: Query::None,
                headers: vec![],
                body: Body::Absent,
                content_type: None,
            };
            let seen_lock = Mutex::new(std::mem::take(&mut seen));
            let outcome = run_case(&target, &ops, &shapes, &schemas, &case, &seen_lock).await;
            seen = seen_lock.into_inner().unwrap();
            outcome.unwrap_or_else(|e| panic!("{}: {e}", shape.name));
        }
        // Still up, and every run in the journal was answered with a 2xx naming it.
        let health = target
            .http
            .get(format!("{}/healthz", target.base))
            .send()
            .await
            .unwrap();
        assert_eq!(health.status().as_u16(), 200);
        let runs = target.all_runs().await;
        let unanswered: Vec<&Uuid> = runs
            .iter()
            .filter(|id| !seen.answered_runs.contains(id))
            .collect();
        assert!(
            unanswered.is_empty(),
            "runs no 2xx answer named: {unanswered:?}"
        );
        for op in ops.iter() {
            assert!(
                seen.per_operation.get(&op.name()).copied().unwrap_or(0) > 0,
                "{} was never exercised",
                op.name()
            );
        }
        target.server.abort();
        if let Some(database) = target.database.take() {
            database.drop_database().await.unwrap();
        }
    });
    let line = json!({
        "fuzz": "api",
        "cases": cases,
        "requests": seen.requests,
        "operations": ops.len(),
        "auth_shapes": shapes.len(),
        "runs_created": seen.answered_runs.len(),
        "statuses": seen.statuses,
        "closed_on_oversized_chunked_body": seen.closed_on_oversized,
        "per_operation": seen.per_operation,
        "seconds": (seconds * 10.0).round() / 10.0,
    });
    fuzz_report::write(&line);
}

/// The failing cases the fuzzing found, each run through the same checks as a regular test,
/// with what the fix promises on top.
#[test]
fn what_the_fuzzing_found_stays_fixed() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let Some(mut target) = runtime.block_on(Target::start()) else {
        return;
    };
    runtime.block_on(async {
        let doc: Value = target
            .http
            .get(format!("{}/openapi.json", target.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let ops = operations(&doc);
        let shapes = auth_shapes();
        let schemas = Schemas::new(&doc, &ops);
        let seen = Mutex::new(Seen::default());
        let op = |method: &str, path: &str| {
            ops.iter()
                .position(|o| o.method == method && o.path == path)
                .unwrap_or_else(|| panic!("{method} {path} is documented"))
        };
        let case = |op: usize, path: Vec<PathValue>, body: Body| Case {
            op,
            auth: AuthChoice::Shape(0),
            path,
            query: Query::None,
            headers: vec![],
            body,
            content_type: Some("application/json"),
        };
        let not_json = || Body::Raw(b"{not json".to_vec());
        let found = [
            // The old pipeline's 400 carries its message as `details`, which the document
            // called an object.
            case(op("post", "/api/provisioning"), vec![], not_json()),
            // A path parameter that is not UTF-8 once decoded got axum's plain-text 400.
            case(
                op("get", "/v1/clients/{clientId}"),
                vec![PathValue::Raw("%FF")],
                Body::Absent,
            ),
            case(
                op("delete", "/v1/clients/{clientId}"),
                vec![PathValue::Raw("%C0%AF")],
                Body::Absent,
            ),
            case(
                op("get", "/v1/provisionings/{id}"),
                vec![PathValue::Raw("%FF")],
                Body::Absent,
            ),
            case(
                op("get", "/v1/provisionings/{id}/events"),
                vec![PathValue::Raw("%ED%A0%80")],
                Body::Absent,
            ),
            case(
                op("post", "/v1/provisionings/{id}/cancel"),
                vec![PathValue::Raw("%FF")],
                Body::Absent,
            ),
            // A teardown's malformed or oversized body, and a command's oversized one, got
            // statuses the document did not list (400, 413).
            case(
                op("delete", "/v1/clients/{clientId}"),
                vec![PathValue::Text("fresh-client".into())],
                not_json(),
            ),
            case(
                op("delete", "/v1/clients/{clientId}"),
                vec![PathValue::Text("fresh-client".into())],
                Body::Oversized {
                    bytes: 70 * 1024,
                    chunked: false,
                },
            ),
            case(
                op("post", "/v1/provisionings/{id}/pause"),
                vec![PathValue::Existing(0)],
                Body::Oversized {
                    bytes: 70 * 1024,
                    chunked: false,
                },
            ),
            // `.` as a run id names /v1/provisionings/resume, a route without POST: axum's
            // 405 had no body.
            case(
                op("post", "/v1/provisionings/{id}/resume"),
                vec![PathValue::Text(".".into())],
                Body::Json(json!({})),
            ),
        ];
        for (i, case) in found.iter().enumerate() {
            run_case(&target, &ops, &shapes, &schemas, case, &seen)
                .await
                .unwrap_or_else(|e| panic!("case {i}: {e}"));
        }
        let statuses = seen.lock().unwrap().statuses.clone();
        assert_eq!(statuses.get(&500), None);

        let url = |path: &str| format!("{}{path}", target.base);
        let get = |path: String| target.http.get(url(&path)).bearer_auth(TOKEN).send();
        // Undecodable path parameters: refused as bad values of that parameter, named.
        for (path, status, field) in [
            ("/v1/clients/%FF", 422, "clientId"),
            ("/v1/provisionings/%FF", 404, "id"),
            ("/v1/provisionings/%FF/events", 404, "id"),
        ] {
            let answer = get(path.to_owned()).await.unwrap();
            assert_eq!(answer.status().as_u16(), status, "{path}");
            let body: Value = answer.json().await.unwrap();
            assert_eq!(body["fields"][0]["field"], field, "{path}: {body}");
            assert!(
                body["fields"][0]["message"]
                    .as_str()
                    .unwrap()
                    .contains("UTF-8"),
                "{path}: {body}"
            );
        }
        // A method a route does not take: 405 in the error shape, with Allow kept.
        for (method, path) in [
            (reqwest::Method::POST, "/v1/provisionings/resume"),
            (reqwest::Method::PUT, "/v1/provisionings"),
            (reqwest::Method::POST, "/healthz"),
            (reqwest::Method::DELETE, "/openapi.json"),
        ] {
            let answer = target
                .http
                .request(method.clone(), url(path))
                .bearer_auth(TOKEN)
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status().as_u16(), 405, "{method} {path}");
            assert!(
                answer.headers().contains_key(reqwest::header::ALLOW),
                "{method} {path}: {:?}",
                answer.headers()
            );
            let body: Value = answer.json().await.unwrap();
            assert_eq!(body["error"], "method_not_allowed", "{method} {path}");
            assert!(explain(&schemas.error, &body).is_none(), "{body}");
        }
        target.server.abort();
        if let Some(database) = target.database.take() {
            database.drop_database().await.unwrap();
        }
    });
}
