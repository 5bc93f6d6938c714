//! `provision`, `deprovision` and `watch` with `--server`: a real `provisioner serve` process
//! over the sandbox, and the real binary pointed at it over HTTP with only PATH and
//! PROVISIONER_TOKEN in its environment (no configuration, no journal, no secret key: the
//! server does the work). The happy paths, `--detach`, the server's refusals, a dropped
//! event stream picked up again without a lost or repeated event, and the bars on a terminal.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use saga::SealingKey;
use sandbox::Sandbox;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use sha2::Digest;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};

const TOKEN: &str = "operator-token-0c7d2b9e4f1a4e6b8d3c5a7f9e1b2d4c";
/// The server's HS256 secret for user JWTs.
const JWT_SECRET: &str = "jwt-secret-for-the-server-under-test-5e2a9c1d";

/// A signed-in user's JWT whose role is not the admin role.
fn non_admin_jwt() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({
        "sub": "staff-member",
        "aud": "authenticated",
        "iat": now,
        "exp": now + 3600,
        "role": "authenticated",
        "app_metadata": {"role": "member"},
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

/// The sandbox, and a `serve` process over it with an SQLite journal of its own.
struct Served {
    sandbox: Sandbox,
    /// The server's configuration and journal, kept for the test's life.
    _dir: tempfile::TempDir,
    /// Where the client commands run: an empty directory.
    client_dir: tempfile::TempDir,
    /// Killed when the test ends.
    _serve: Child,
    url: String,
    log: PathBuf,
}

impl Served {
    async fn start(api_extra: &str) -> Option<Self> {
        let admin = support::admin_url().await?;
        let sandbox = support::sandbox_with(&admin, |_| {}).await;
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("provisioner.toml");
        std::fs::write(
            &config,
            format!(
                "[journal]\nurl = \"sqlite://{}\"\n\n[supabase]\nready_timeout_secs = 60\n\n\
                 [github]\nbranch_timeout_secs = 60\n\n[vercel]\nwait_for_ready = false\n\n\
                 [api]\n{api_extra}\n[[api.tokens]]\nname = \"operator\"\nsha256 = \"{}\"\n",
                dir.path().join("journal.sqlite").display(),
                hex::encode(sha2::Sha256::digest(TOKEN.as_bytes()))
            ),
        )
        .unwrap();
        let (_, key) = SealingKey::generate();
        let key = SecretString::from(key);
        let log = dir.path().join("serve.log");
        let mut serve = Command::new(env!("CARGO_BIN_EXE_provisioner"))
            .args(["serve", "--listen", "127.0.0.1:0", "--grace-secs", "1"])
            .envs(support::env_map(&sandbox))
            .env("PROVISIONER_CONFIG", &config)
            .env("PROVISIONER_SECRET_KEY", key.expose_secret())
            .env("SUPABASE_JWT_SECRET", JWT_SECRET)
            .env("PROVISIONER_LOG", "info")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(serve.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("serve did not start: {}", read(&log)))
            .unwrap()
            .unwrap_or_else(|| panic!("serve exited: {}", read(&log)));
        let url = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Some(Self {
            sandbox,
            _dir: dir,
            client_dir: tempfile::tempdir().unwrap(),
            _serve: serve,
            url,
            log,
        })
    }

    /// `provisioner ARGS` as an operator's shell would run it: PATH and the token only.
    async fn run_with_token(&self, token: Option<&str>, args: &[&str]) -> Ran {
        let mut command = Command::new(env!("CARGO_BIN_EXE_provisioner"));
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .current_dir(self.client_dir.path())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if let Some(token) = token {
            command.env("PROVISIONER_TOKEN", token);
        }
        let output = tokio::time::timeout(Duration::from_secs(120), command.output())
            .await
            .unwrap_or_else(|_| panic!("`provisioner {}` did not end", args.join(" ")))
            .unwrap();
        let ran = Ran {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        // Whatever happened, the token is never printed, and an error is one paragraph.
        for token in [Some(TOKEN), token].into_iter().flatten() {
            assert!(
                !ran.stdout.contains(token) && !ran.stderr.contains(token),
                "the token was printed by `{}`:\n{}\n{}",
                args.join(" "),
                ran.stdout,
                ran.stderr
            );
        }
        assert!(!ran.stderr.contains("panicked"), "{}", ran.stderr);
        assert!(ran.stderr.matches("error:").count() <= 1, "{}", ran.stderr);
        ran
    }

    async fn run(&self, args: &[&str]) -> Ran {
        self.run_with_token(Some(TOKEN), args).await
    }

    async fn expect(&self, code: i32, args: &[&str]) -> Ran {
        let ran = self.run(args).await;
        ran.assert_code(code, args);
        ran
    }

    async fn stack_names(&self, slug: &str) -> Vec<String> {
        support::stable_names(&self.sandbox.inventory().await)
            .into_iter()
            .filter(|n| n.contains(slug))
            .collect()
    }

    fn serve_log(&self) -> String {
        read(&self.log)
    }
}

struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn assert_code(&self, code: i32, args: &[&str]) {
        assert_eq!(
            self.code,
            code,
            "`provisioner {}`\nstdout: {}\nstderr: {}",
            args.join(" "),
            self.stdout,
            self.stderr
        );
    }

    fn last_json(&self) -> Value {
        let last = self.stdout.lines().last().unwrap_or_default();
        serde_json::from_str(last)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", self.stdout, self.stderr))
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn provision_args(slug: &str, name: &str, server: &str) -> Vec<String> {
    [
        "provision",
        "--client-id",
        slug,
        "--name",
        name,
        "--email",
        &format!("ops@{slug}.example"),
        "--tier",
        "growth",
        "--server",
        server,
    ]
    .map(String::from)
    .to_vec()
}

fn with<'a>(base: &'a [String], more: &[&'a str]) -> Vec<&'a str> {
    base.iter()
        .map(String::as_str)
        .chain(more.iter().copied())
        .collect()
}

/// Each step's final line exactly once, in plain lines (stderr is a pipe), and the end.
fn assert_every_step_once(stderr: &str, steps: &[&str], end: &str) {
    assert!(
        !stderr.contains('\u{1b}'),
        "escape codes off a terminal: {stderr}"
    );
    for step in steps {
        let finals = stderr
            .lines()
            .filter(|l| l.trim_start().starts_with(&format!("{step} ")) && l.contains(" done in "))
            .count();
        assert_eq!(finals, 1, "{step}'s final line, once:\n{stderr}");
        let started = stderr
            .lines()
            .filter(|l| {
                l.trim_start().starts_with(&format!("{step} ")) && l.contains("running (attempt 1)")
            })
            .count();
        assert_eq!(started, 1, "{step}'s start, once:\n{stderr}");
    }
    assert_eq!(stderr.matches(end).count(), 1, "{end:?} once:\n{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn provision_conflict_and_deprovision_through_a_server() {
    let Some(served) = Served::start("").await else {
        return;
    };
    let slug = support::unique_slug("remote");
    let name = format!("Client {slug}");
    let args = provision_args(&slug, &name, &served.url);

    let ran = served.expect(0, &with(&args, &["--json"])).await;
    let record = ran.last_json();
    assert_eq!(record["status"], "succeeded", "{record}");
    assert!(
        ran.stderr.contains(&format!("provisioning {slug} (run ")),
        "{}",
        ran.stderr
    );
    assert_every_step_once(&ran.stderr, &support::PROVISION_STEPS, "run succeeded");
    assert!(
        ran.stderr
            .contains("running (attempt 1): waiting for the project to be healthy"),
        "{}",
        ran.stderr
    );
    assert_eq!(
        served.stack_names(&slug).await,
        support::full_stack_names(&support::client(&slug))
    );
    // Recorded at the server as the token's name.
    assert!(
        ran.stderr.contains("start requested by operator"),
        "{}",
        ran.stderr
    );

    // The same parameters again: the client's run, as it is.
    let again = served
        .expect(0, &args.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    assert!(again.stderr.contains("existing"), "{}", again.stderr);
    assert_every_step_once(&again.stderr, &support::PROVISION_STEPS, "run succeeded");

    // Other parameters for the same client: 409, naming the field; exit 2.
    let other = provision_args(&slug, "Another Name", &served.url);
    let conflict = served.expect(2, &with(&other, &[])).await;
    assert!(
        conflict.stderr.contains("409")
            && conflict.stderr.contains("clientName")
            && conflict.stderr.contains("deprovision the client first"),
        "{}",
        conflict.stderr
    );

    let teardown = served
        .expect(
            0,
            &[
                "deprovision",
                "--client-id",
                &slug,
                "--server",
                &served.url,
                "--json",
            ],
        )
        .await;
    assert_eq!(teardown.last_json()["status"], "succeeded");
    assert!(
        teardown.stderr.contains(&format!("tearing down {slug}")),
        "{}",
        teardown.stderr
    );
    assert_every_step_once(&teardown.stderr, &support::TEARDOWN_STEPS, "run succeeded");
    assert!(
        served.stack_names(&slug).await.is_empty(),
        "the teardown left resources"
    );
    assert!(
        !served.serve_log().contains(TOKEN),
        "the server logged the token"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_detached_start_returns_the_run_id_and_watch_follows_it_at_the_server() {
    let Some(served) = Served::start("").await else {
        return;
    };
    let slug = support::unique_slug("rdetach");
    let args = provision_args(&slug, &format!("Client {slug}"), &served.url);
    let started = std::time::Instant::now();
    let ran = served
        .expect(0, &with(&args, &["--detach", "--json"]))
        .await;
    let detached = ran.last_json();
    assert_eq!(detached["created"], true, "{detached}");
    let run = detached["runId"].as_str().unwrap().to_owned();
    uuid::Uuid::parse_str(&run).unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "--detach waited for the run"
    );
    assert!(
        !ran.stderr.contains("done in"),
        "--detach followed the run: {}",
        ran.stderr
    );

    // The server's workers drive it; watch follows it to the end over the event stream.
    let watched = served
        .expect(0, &["watch", &run, "--server", &served.url])
        .await;
    assert!(
        watched
            .stderr
            .contains(&format!("watching run {run} (provision {slug}")),
        "{}",
        watched.stderr
    );
    assert_every_step_once(&watched.stderr, &support::PROVISION_STEPS, "run succeeded");

    // Plain --detach prints the id alone; the same client's run again is not created anew.
    let again = served.expect(0, &with(&args, &["--detach"])).await;
    assert_eq!(again.stdout.trim(), run);
    let json = served
        .expect(0, &with(&args, &["--detach", "--json"]))
        .await
        .last_json();
    assert_eq!(json["created"], false, "{json}");

    let unknown = uuid::Uuid::now_v7().to_string();
    let missing = served
        .expect(2, &["watch", &unknown, "--server", &served.url])
        .await;
    assert!(
        missing.stderr.contains("404") && missing.stderr.contains(&unknown),
        "{}",
        missing.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refusals_and_an_unreachable_server_are_one_paragraph_saying_what_to_do() {
    // One request a minute: the second is refused with 429 and Retry-After.
    let Some(served) = Served::start("rate_limit_per_minute = 1\nrate_limit_burst = 1\n").await
    else {
        return;
    };
    let slug = support::unique_slug("refused");
    let args = provision_args(&slug, &format!("Client {slug}"), &served.url);
    let args = with(&args, &["--detach"]);

    let bad = served
        .run_with_token(Some("not-the-token-at-all-7f3e"), &args)
        .await;
    bad.assert_code(2, &args);
    assert!(
        bad.stderr.contains("refused PROVISIONER_TOKEN") && bad.stderr.contains("[[api.tokens]]"),
        "{}",
        bad.stderr
    );
    let member = non_admin_jwt();
    let forbidden = served.run_with_token(Some(&member), &args).await;
    forbidden.assert_code(2, &args);
    assert!(
        forbidden.stderr.contains("will not let it do this") && forbidden.stderr.contains("admin"),
        "{}",
        forbidden.stderr
    );
    let none = served.run_with_token(None, &args).await;
    none.assert_code(2, &args);
    assert!(
        none.stderr.contains("set PROVISIONER_TOKEN"),
        "{}",
        none.stderr
    );

    let first = served.expect(0, &args).await;
    uuid::Uuid::parse_str(first.stdout.trim()).unwrap();
    let limited = served.expect(1, &args).await;
    assert!(
        limited.stderr.contains("rate limiting")
            && limited.stderr.contains("was not carried out")
            && limited.stderr.contains(" s"),
        "{}",
        limited.stderr
    );

    // Nothing listens on a port just given back.
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    let gone = format!("http://{closed}");
    let nowhere = provision_args(&slug, "Client", &gone);
    let unreachable = served.expect(1, &with(&nowhere, &[])).await;
    assert!(
        unreachable.stderr.contains("did not answer")
            && unreachable.stderr.contains("could not connect")
            && unreachable.stderr.contains("provisioner serve"),
        "{}",
        unreachable.stderr
    );
    let bad_url = provision_args(&slug, "Client", "ftp://example");
    let malformed = served.expect(2, &with(&bad_url, &[])).await;
    assert!(
        malformed.stderr.contains("--server"),
        "{}",
        malformed.stderr
    );
}

/// A TCP relay in front of the server that cuts every connection carrying an event-stream
/// request after `cut_after` bytes of the answer, for the first `cuts` such connections, and
/// keeps the `Last-Event-ID` each of those requests sent.
struct DroppingRelay {
    url: String,
    event_streams: Arc<AtomicUsize>,
    last_event_ids: Arc<Mutex<Vec<Option<i64>>>>,
}

impl DroppingRelay {
    async fn start(upstream: &str, cut_after: usize, cuts: usize) -> Self {
        let upstream = upstream.strip_prefix("http://").unwrap().to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let event_streams = Arc::new(AtomicUsize::new(0));
        let last_event_ids = Arc::new(Mutex::new(Vec::new()));
        let (streams, ids) = (event_streams.clone(), last_event_ids.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    continue;
                };
                tokio::spawn(relay(
                    client,
                    server,
                    cut_after,
                    cuts,
                    streams.clone(),
                    ids.clone(),
                ));
            }
        });
        Self {
            url,
            event_streams,
            last_event_ids,
        }
    }
}

async fn relay(
    client: TcpStream,
    server: TcpStream,
    cut_after: usize,
    cuts: usize,
    streams: Arc<AtomicUsize>,
    ids: Arc<Mutex<Vec<Option<i64>>>>,
) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    // Set once this connection carries an event-stream request that is to be cut.
    let armed = Arc::new(AtomicBool::new(false));
    let armed_up = armed.clone();
    let upward = tokio::spawn(async move {
        let mut buf = vec![0_u8; 16 * 1024];
        loop {
            let n = match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let text = String::from_utf8_lossy(&buf[..n]).to_string();
            if text.contains("/events HTTP/1.1") {
                let nth = streams.fetch_add(1, Ordering::SeqCst);
                let id = text.lines().find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("last-event-id")
                        .then(|| value.trim().parse::<i64>().ok())
                        .flatten()
                });
                ids.lock().unwrap().push(id);
                if nth < cuts {
                    armed_up.store(true, Ordering::SeqCst);
                }
            }
            if server_write.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    });
    let mut buf = vec![0_u8; 16 * 1024];
    let mut relayed_while_armed = 0_usize;
    loop {
        let n = match server_read.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut take = n;
        if armed.load(Ordering::SeqCst) {
            take = n.min(cut_after - relayed_while_armed);
            relayed_while_armed += take;
        }
        if client_write.write_all(&buf[..take]).await.is_err() {
            break;
        }
        if armed.load(Ordering::SeqCst) && relayed_while_armed >= cut_after {
            // Cut mid-stream, likely mid-event: both sides of the connection go.
            break;
        }
    }
    upward.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dropped_event_stream_is_reopened_after_the_last_event_seen() {
    let Some(served) = Served::start("").await else {
        return;
    };
    // About two events per connection before it is cut (headers take ~150 bytes).
    let relay = DroppingRelay::start(&served.url, 700, 12).await;
    let slug = support::unique_slug("rdrop");
    let args = provision_args(&slug, &format!("Client {slug}"), &relay.url);
    let ran = served.expect(0, &with(&args, &["--json"])).await;
    assert_eq!(ran.last_json()["status"], "succeeded");
    assert_every_step_once(&ran.stderr, &support::PROVISION_STEPS, "run succeeded");
    let run = ran.last_json()["runId"].as_str().unwrap().to_owned();
    let streams = relay.event_streams.load(Ordering::SeqCst);
    assert!(
        streams >= 3,
        "the stream was cut and reopened: {streams} streams"
    );
    let ids = relay.last_event_ids.lock().unwrap().clone();
    assert_eq!(
        ids[0], None,
        "the first stream starts at the beginning: {ids:?}"
    );
    assert!(
        ids[1..].iter().all(|id| id.is_some_and(|id| id > 0)),
        "each reopened stream names the last event seen: {ids:?}"
    );
    assert!(
        ids[1..].windows(2).all(|w| w[0] <= w[1]),
        "the resumption point never goes back: {ids:?}"
    );

    // Every event exactly once, in order, through the cutting relay and without it.
    let seqs = |ran: &Ran| -> Vec<i64> {
        ran.stdout
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["seq"]
                    .as_i64()
                    .unwrap()
            })
            .collect()
    };
    let direct = served
        .expect(0, &["watch", &run, "--server", &served.url, "--json"])
        .await;
    let cut = DroppingRelay::start(&served.url, 500, 40).await;
    let relayed = served
        .expect(0, &["watch", &run, "--server", &cut.url, "--json"])
        .await;
    let all = seqs(&direct);
    assert_eq!(all, (1..=all.len() as i64).collect::<Vec<_>>());
    // At least run_created, five step_started and step_succeeded, and run_succeeded.
    assert!(all.len() >= 12, "{all:?}");
    assert_eq!(seqs(&relayed), all, "{}", relayed.stderr);
    assert!(cut.event_streams.load(Ordering::SeqCst) >= 3);
}

/// tmux on its own socket and configuration (a history longer than any run's output).
struct Tmux {
    dir: PathBuf,
}

impl Tmux {
    /// `None` when tmux is missing and the test may skip.
    fn new(dir: &Path) -> Option<Self> {
        let found = std::process::Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            assert!(
                std::env::var_os("PROVISIONER_TEST_REQUIRE_TMUX").is_none(),
                "tmux is required (PROVISIONER_TEST_REQUIRE_TMUX) but not installed"
            );
            return None;
        }
        std::fs::write(
            dir.join("tmux.conf"),
            "set-option -g history-limit 200000\n",
        )
        .unwrap();
        Some(Self {
            dir: dir.to_owned(),
        })
    }

    fn tmux(&self, args: &[&str]) -> String {
        let output = std::process::Command::new("tmux")
            .arg("-f")
            .arg(self.dir.join("tmux.conf"))
            .arg("-S")
            .arg(self.dir.join("tmux.sock"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(output.status.success(), "tmux {args:?}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Runs `script` in a 160×48 window; the whole history once it printed `EXIT=<code>`.
    async fn run(&self, script: &Path) -> (String, i32) {
        let command = format!("sh {}; echo EXIT=$?; sleep 600", script.display());
        self.tmux(&[
            "new-session",
            "-d",
            "-s",
            "s",
            "-x",
            "160",
            "-y",
            "48",
            &command,
        ]);
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            let screen = self.tmux(&["capture-pane", "-p", "-S", "-", "-t", "s"]);
            if let Some(code) = screen
                .lines()
                .find_map(|l| l.trim().strip_prefix("EXIT="))
                .and_then(|c| c.parse().ok())
            {
                return (screen, code);
            }
            assert!(
                std::time::Instant::now() < deadline,
                "did not end:\n{screen}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = std::process::Command::new("tmux")
            .arg("-S")
            .arg(self.dir.join("tmux.sock"))
            .arg("kill-server")
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_a_terminal_a_run_at_the_server_is_drawn_as_bars() {
    let Some(served) = Served::start("").await else {
        return;
    };
    let Some(tmux) = Tmux::new(served.client_dir.path()) else {
        return;
    };
    let slug = support::unique_slug("rtty");
    let args = provision_args(&slug, &format!("Client {slug}"), &served.url);
    let quote = |v: &str| format!("'{}'", v.replace('\'', r"'\''"));
    // The client's own debug logs (HTTP connections, the stream) go around the bars.
    let script = served.client_dir.path().join("provision.sh");
    std::fs::write(
        &script,
        format!(
            "export PROVISIONER_TOKEN={}\nexport PROVISIONER_LOG=debug\n{} {}\n",
            quote(TOKEN),
            quote(env!("CARGO_BIN_EXE_provisioner")),
            args.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ")
        ),
    )
    .unwrap();
    let (screen, code) = tmux.run(&script).await;
    assert_eq!(code, 0, "{screen}");
    assert!(
        !screen.contains("running (attempt"),
        "a stale frame of a running step:\n{screen}"
    );
    for step in support::PROVISION_STEPS {
        let lines: Vec<&str> = screen
            .lines()
            .filter(|l| l.trim_start().starts_with(&format!("{step} ")))
            .collect();
        // One line per step, redrawn in place: bars, not one line per transition.
        assert_eq!(lines.len(), 1, "{step} drawn once:\n{screen}");
        assert!(lines[0].contains(" done in "), "{step}:\n{screen}");
    }
    assert!(screen.contains("run succeeded"), "{screen}");
    assert!(
        screen.lines().any(|l| l.contains(" DEBUG ")),
        "the client's logs were meant to interleave:\n{screen}"
    );
    assert!(!screen.contains(TOKEN), "the token was drawn:\n{screen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn run_control_through_a_server() {
    let Some(served) = Served::start("").await else {
        return;
    };
    let url = served.url.as_str();
    let start = |slug: &str| provision_args(slug, &format!("Client {slug}"), url);
    let detached = |ran: Ran| -> String {
        let run = ran.stdout.trim().to_owned();
        uuid::Uuid::parse_str(&run).unwrap();
        run
    };

    // Paused between steps, then resumed to success; a cancel of the succeeded run is 409.
    let paused = support::unique_slug("rpause");
    let run = detached(
        served
            .expect(0, &with(&start(&paused), &["--detach"]))
            .await,
    );
    let ran = served
        .expect(0, &["pause", &run, "--server", url, "--json"])
        .await;
    assert_eq!(ran.last_json()["status"], "paused", "{}", ran.stderr);
    assert!(ran.stderr.contains("run paused"), "{}", ran.stderr);
    let ran = served
        .expect(0, &["resume", &run, "--server", url, "--json"])
        .await;
    assert_eq!(ran.last_json()["status"], "succeeded", "{}", ran.stderr);
    assert!(ran.stderr.contains("run succeeded"), "{}", ran.stderr);
    let refused = served.expect(2, &["cancel", &run, "--server", url]).await;
    assert!(
        refused.stderr.contains("409") && refused.stderr.contains("succeeded"),
        "{}",
        refused.stderr
    );

    // Cancelled while it runs: everything made is undone.
    let cancelled = support::unique_slug("rcancel");
    let run = detached(
        served
            .expect(0, &with(&start(&cancelled), &["--detach"]))
            .await,
    );
    let ran = served
        .expect(0, &["cancel", &run, "--server", url, "--json"])
        .await;
    assert_eq!(ran.last_json()["status"], "compensated", "{}", ran.stderr);
    assert!(served.stack_names(&cancelled).await.is_empty());

    // Paused, then given up with a reason; abandoning needs one.
    let given_up = support::unique_slug("rabandon");
    let run = detached(
        served
            .expect(0, &with(&start(&given_up), &["--detach"]))
            .await,
    );
    served.expect(0, &["pause", &run, "--server", url]).await;
    let ran = served
        .expect(
            0,
            &[
                "abandon",
                &run,
                "--reason",
                "client withdrew",
                "--server",
                url,
                "--json",
            ],
        )
        .await;
    assert_eq!(ran.last_json()["status"], "abandoned", "{}", ran.stderr);
    let again = served
        .expect(2, &["abandon", &run, "--reason", "again", "--server", url])
        .await;
    assert!(again.stderr.contains("409"), "{}", again.stderr);
}
