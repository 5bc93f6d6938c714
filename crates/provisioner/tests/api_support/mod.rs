//! The API over real HTTP: the sandbox world's app behind `api::server_router` (what
//! `provisioner serve` answers) on a loopback port,
//! with one admin API token, and a client that reads responses and event streams.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use provisioner::api::auth::Authenticator;
use provisioner::api::health::Readiness;
use provisioner::api::{ApiOptions, ApiState};
use provisioner::config::{ApiSettings, ApiTokenSettings};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::support::{self, World};

pub const TOKEN: &str = "ptk_test-admin-token-0123456789abcdef";
pub const TOKEN_NAME: &str = "ci-admin";

pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
    pub app: Arc<provisioner::app::App>,
    pub sandbox: sandbox::Sandbox,
    pub secrets: Vec<String>,
    _dir: tempfile::TempDir,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Api {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub fn auth_settings() -> ApiSettings {
    ApiSettings {
        tokens: vec![ApiTokenSettings {
            name: TOKEN_NAME.into(),
            sha256: hex::encode(Sha256::digest(TOKEN.as_bytes())),
            revoked: false,
        }],
        ..ApiSettings::default()
    }
}

/// The sandbox world with its journal on a fresh PostgreSQL database instead of SQLite;
/// `None` when PostgreSQL tests may skip. Drop the database when done.
pub async fn postgres_world() -> Option<(World, saga::testkit::postgres::FreshDatabase)> {
    let database = saga::testkit::postgres::fresh_database().await.unwrap()?;
    let url = support::admin_url().await?;
    let sandbox = sandbox::Sandbox::start(sandbox::SandboxConfig::for_tests(url))
        .await
        .expect("sandbox starts");
    let dir = tempfile::tempdir().unwrap();
    let (_, encoded) = saga::SealingKey::generate();
    let secret_key = secrecy::SecretString::from(encoded);
    let config = support::config_for(&sandbox, support::quick_settings());
    let journal = provisioner::app::open_journal(Some(&database.url))
        .await
        .expect("the PostgreSQL journal opens");
    let app = provisioner::app::App::start(&config, journal, &secret_key, support::fast_options())
        .await
        .expect("app starts");
    let world = World {
        sandbox,
        app,
        config,
        secret_key,
        dir,
    };
    Some((world, database))
}

pub async fn serve(world: World, options: ApiOptions) -> Api {
    serve_with(world, options, auth_settings(), &|_| None).await
}

pub async fn serve_with(
    world: World,
    options: ApiOptions,
    settings: ApiSettings,
    env: &dyn Fn(&str) -> Option<String>,
) -> Api {
    let World {
        sandbox,
        app,
        secret_key,
        dir,
        ..
    } = world;
    use secrecy::ExposeSecret;
    let mut secrets: Vec<String> = support::env_map(&sandbox)
        .into_iter()
        .filter(|(k, _)| k.contains("TOKEN") || k.contains("KEY"))
        .map(|(_, v)| v)
        .collect();
    secrets.push(secret_key.expose_secret().to_owned());
    secrets.push(TOKEN.to_owned());
    let app = Arc::new(app);
    let auth = Arc::new(Authenticator::from_config(&settings, env).expect("auth config"));
    // What `provisioner serve` answers: the API and the service routes beside it.
    let readiness = Readiness::new(app.engine.clone(), true);
    let metrics = provisioner::api::metrics::install().expect("metrics recorder");
    let router = provisioner::api::server_router(
        ApiState::new(app.clone(), auth, options),
        readiness,
        metrics,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    Api {
        base,
        http: reqwest::Client::new(),
        app,
        sandbox,
        secrets,
        _dir: dir,
        server,
    }
}

/// A response's status and JSON body (Null when the body is not JSON).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub text: String,
    pub headers: reqwest::header::HeaderMap,
}

impl Api {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        let response = request.send().await.expect("request is answered");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        self.assert_no_secret(&text);
        Answer {
            status,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
            text,
            headers,
        }
    }

    pub fn assert_no_secret(&self, text: &str) {
        for secret in &self.secrets {
            assert!(
                !text.contains(secret.as_str()),
                "a secret leaked into a response: {text}"
            );
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(self.http.get(self.url(path)).bearer_auth(TOKEN))
            .await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Answer {
        self.send(self.http.post(self.url(path)).bearer_auth(TOKEN).json(body))
            .await
    }

    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> Answer {
        self.send(
            self.http
                .post(self.url(path))
                .bearer_auth(TOKEN)
                .header("content-type", "application/json")
                .body(body),
        )
        .await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        self.send(self.http.delete(self.url(path)).bearer_auth(TOKEN))
            .await
    }

    /// Reads the run's event stream from after `last_event_id`, until it ends or `limit`
    /// events have come (then the connection is dropped). Returns the events' ids and
    /// bodies, and whether the stream ended by itself.
    pub async fn events(
        &self,
        run_id: &str,
        last_event_id: Option<i64>,
        limit: Option<usize>,
    ) -> (Vec<(i64, String, Value)>, bool) {
        let mut request = self
            .http
            .get(self.url(&format!("/v1/provisionings/{run_id}/events")))
            .bearer_auth(TOKEN);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id.to_string());
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        let mut body = response.bytes_stream();
        let mut buffer = String::new();
        let mut events = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let chunk = tokio::time::timeout_at(deadline, body.next())
                .await
                .expect("the stream ends in time");
            let Some(chunk) = chunk else {
                return (events, true);
            };
            let chunk = String::from_utf8(chunk.unwrap().to_vec()).unwrap();
            self.assert_no_secret(&chunk);
            buffer.push_str(&chunk);
            while let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                let (mut id, mut kind, mut data) = (None, String::new(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().parse::<i64>().unwrap());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        kind = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim());
                    }
                }
                if let Some(id) = id {
                    events.push((id, kind, serde_json::from_str(&data).unwrap()));
                    if limit.is_some_and(|l| events.len() >= l) {
                        return (events, false);
                    }
                }
            }
        }
    }
}

pub fn body(slug: &str) -> Value {
    serde_json::json!({
        "clientId": slug,
        "clientName": format!("Client {slug}"),
        "orgEmail": format!("ops@{slug}.example"),
        "tier": "growth",
    })
}
