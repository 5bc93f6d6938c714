//! The progress display on a real terminal (tmux) and off one: on a terminal each step is one
//! line redrawn in place, with log lines written above the bars and never through them; with
//! stderr not a terminal, plain lines, one per transition, without escape codes. The real
//! binary against a sandbox started in this process.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use saga::SealingKey;
use sandbox::Sandbox;

/// tmux on its own socket, so the test neither sees nor touches anyone else's sessions, and
/// with its own configuration: a history long enough for everything a run writes (tmux keeps
/// 2000 lines by default, fewer than a debug-logged run prints), so the capture is the whole
/// output and not its last screens.
struct Tmux {
    socket: PathBuf,
    config: PathBuf,
}

impl Tmux {
    /// `None` when tmux is missing and the test may skip.
    fn new(dir: &Path) -> Option<Self> {
        let found = Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            assert!(
                std::env::var_os("PROVISIONER_TEST_REQUIRE_TMUX").is_none(),
                "tmux is required (PROVISIONER_TEST_REQUIRE_TMUX) but not installed"
            );
            println!("skipping: tmux is not installed");
            return None;
        }
        let config = dir.join("tmux.conf");
        std::fs::write(&config, "set-option -g history-limit 200000\n").unwrap();
        Some(Self {
            socket: dir.join("tmux.sock"),
            config,
        })
    }

    fn tmux(&self, args: &[&str]) -> String {
        let output = Command::new("tmux")
            .arg("-f")
            .arg(&self.config)
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Runs `script` in a new 160×48 window named `name`; it prints `EXIT=<code>` at the end.
    fn start(&self, name: &str, script: &Path) {
        let command = format!("sh {}; echo EXIT=$?; sleep 600", script.display());
        self.tmux(&[
            "new-session",
            "-d",
            "-s",
            name,
            "-x",
            "160",
            "-y",
            "48",
            &command,
        ]);
    }

    /// The whole window, history included, once `EXIT=` shows. Wrapped lines are not joined:
    /// a bar fills the width exactly, and joining would glue the next line onto it.
    async fn finished(&self, name: &str) -> (String, i32) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let screen = self.tmux(&["capture-pane", "-p", "-S", "-", "-t", name]);
            if let Some(code) = screen
                .lines()
                .find_map(|l| l.trim().strip_prefix("EXIT="))
                .and_then(|c| c.parse().ok())
            {
                return (screen, code);
            }
            assert!(Instant::now() < deadline, "{name} did not end:\n{screen}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("kill-server")
            .output();
    }
}

struct Setup {
    sandbox: Sandbox,
    dir: tempfile::TempDir,
    config: PathBuf,
    key: String,
}

impl Setup {
    async fn start() -> Option<Self> {
        let url = support::admin_url().await?;
        let sandbox = support::sandbox_with(&url, |_| {}).await;
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("provisioner.toml");
        std::fs::write(
            &config,
            format!(
                "[journal]\nurl = \"sqlite:{}\"\n",
                dir.path().join("journal.sqlite").display()
            ),
        )
        .unwrap();
        let (_, key) = SealingKey::generate();
        Some(Self {
            sandbox,
            dir,
            config,
            key,
        })
    }

    fn env(&self) -> Vec<(String, String)> {
        let mut env = self.sandbox.env_exports();
        env.push((
            "PROVISIONER_CONFIG".into(),
            self.config.display().to_string(),
        ));
        env.push(("PROVISIONER_SECRET_KEY".into(), self.key.clone()));
        env
    }

    /// A shell script running the binary with this setup's environment.
    fn script(&self, name: &str, env: &[(&str, &str)], args: &[&str], redirect: &str) -> PathBuf {
        let quote = |v: &str| format!("'{}'", v.replace('\'', r"'\''"));
        let mut text = String::new();
        for (k, v) in self.env() {
            text += &format!("export {k}={}\n", quote(&v));
        }
        for (k, v) in env {
            text += &format!("export {k}={}\n", quote(v));
        }
        text += &format!(
            "{} {} {redirect}\n",
            quote(env!("CARGO_BIN_EXE_provisioner")),
            args.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ")
        );
        let path = self.dir.path().join(format!("{name}.sh"));
        std::fs::write(&path, text).unwrap();
        path
    }

    fn provision_args(slug: &str) -> Vec<String> {
        [
            "provision",
            "--client-id",
            slug,
            "--name",
            &format!("Client {slug}"),
            "--email",
            &format!("ops@{slug}.example"),
            "--tier",
            "growth",
        ]
        .map(String::from)
        .to_vec()
    }

    async fn run(&self, args: &[String]) -> std::process::Output {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_provisioner"))
            .args(args)
            .envs(self.env())
            .env_remove("PROVISIONER_LOG")
            .stdin(Stdio::null())
            .output()
            .await
            .unwrap()
    }
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// Where a log line's head (`2026-12-01T09:35:51.199014Z DEBUG`) starts, if the line has one.
fn timestamp_at(line: &str) -> Option<usize> {
    let bytes = line.as_bytes();
    (0..bytes.len().saturating_sub(20)).find(|&i| {
        let b = &bytes[i..i + 20];
        let dated = b[..4].iter().all(u8::is_ascii_digit)
            && b[4] == b'-'
            && b[7] == b'-'
            && b[10] == b'T'
            && b[13] == b':'
            && b[16] == b':';
        dated
            && line[i..]
                .split_whitespace()
                .nth(1)
                .is_some_and(|level| ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&level))
            && line[i..]
                .split_whitespace()
                .next()
                .is_some_and(|t| t.ends_with('Z'))
    })
}

/// What an ungarbled terminal shows: each step's final line once and no frame of a bar left
/// behind (a step still `running`), every log line starting at its own line, and the end.
fn assert_drawn_cleanly(screen: &str, end: &str) {
    for step in support::PROVISION_STEPS {
        let finals: Vec<&str> = screen
            .lines()
            .filter(|l| l.trim_start().starts_with(&format!("{step} ")))
            .collect();
        assert_eq!(finals.len(), 1, "{step} drawn once:\n{screen}");
        assert!(finals[0].contains(" done in "), "{step}:\n{screen}");
    }
    assert!(
        !screen.contains("running (attempt"),
        "a stale frame:\n{screen}"
    );
    for line in screen.lines() {
        if let Some(at) = timestamp_at(line) {
            assert_eq!(
                at, 0,
                "a log line cut into another line: {line:?}\n{screen}"
            );
        }
    }
    assert!(screen.contains(end), "{end:?} missing:\n{screen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bars_and_logs_share_a_terminal_without_garbling() {
    let Some(setup) = Setup::start().await else {
        return;
    };
    let Some(tmux) = Tmux::new(setup.dir.path()) else {
        return;
    };
    let slug = support::unique_slug("tty");
    let args = Setup::provision_args(&slug);
    // Debug logs from every crate: many lines written while the bars move.
    let script = setup.script(
        "provision",
        &[("PROVISIONER_LOG", "debug")],
        &strs(&args),
        "",
    );
    tmux.start("provision", &script);
    let (screen, code) = tmux.finished("provision").await;
    assert_eq!(code, 0, "{screen}");
    assert_drawn_cleanly(&screen, "run succeeded");
    let logs = screen
        .lines()
        .filter(|l| timestamp_at(l) == Some(0))
        .count();
    assert!(
        logs > 10,
        "the logs were meant to interleave with the bars:\n{screen}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_draws_a_run_another_process_drives() {
    let Some(setup) = Setup::start().await else {
        return;
    };
    let Some(tmux) = Tmux::new(setup.dir.path()) else {
        return;
    };
    let slug = support::unique_slug("ttywatch");
    let mut detach = Setup::provision_args(&slug);
    detach.push("--detach".into());
    let started = setup.run(&detach).await;
    assert_eq!(started.status.code(), Some(0));
    let run = String::from_utf8_lossy(&started.stdout).trim().to_owned();

    let script = setup.script("watch", &[], &["watch", &run], "");
    tmux.start("watch", &script);
    // Let the watcher draw the waiting run before anything moves.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let driver = setup.run(&Setup::provision_args(&slug)).await;
    assert_eq!(
        driver.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&driver.stderr)
    );
    let (screen, code) = tmux.finished("watch").await;
    assert_eq!(code, 0, "{screen}");
    assert!(screen.contains(&format!("watching run {run}")), "{screen}");
    assert_drawn_cleanly(&screen, "run succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn off_a_terminal_the_display_is_plain_lines() {
    let Some(setup) = Setup::start().await else {
        return;
    };
    let Some(tmux) = Tmux::new(setup.dir.path()) else {
        return;
    };
    let slug = support::unique_slug("plain");
    let log = setup.dir.path().join("stderr.log");
    let redirect = format!("2>'{}'", log.display());
    let script = setup.script(
        "plain",
        &[],
        &strs(&Setup::provision_args(&slug)),
        &redirect,
    );
    // stdout stays the terminal; only stderr, where progress goes, decides.
    tmux.start("plain", &script);
    let (screen, code) = tmux.finished("plain").await;
    assert_eq!(code, 0, "{screen}");
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(
        !stderr.contains('\u{1b}'),
        "escape codes in a file: {stderr:?}"
    );
    for step in support::PROVISION_STEPS {
        let lines: Vec<&str> = stderr
            .lines()
            .filter(|l| l.trim_start().starts_with(&format!("{step} ")))
            .collect();
        assert!(
            lines.len() >= 2 && lines[0].contains("running (attempt 1)"),
            "{step}: a line per transition:\n{stderr}"
        );
        assert!(
            lines.last().unwrap().contains(" done in "),
            "{step}:\n{stderr}"
        );
    }
    assert!(stderr.contains("run succeeded"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batch_bars_and_logs_share_a_terminal_without_garbling() {
    let Some(setup) = Setup::start().await else {
        return;
    };
    let Some(tmux) = Tmux::new(setup.dir.path()) else {
        return;
    };
    let manifests = setup.dir.path().join("clients");
    std::fs::create_dir_all(&manifests).unwrap();
    let slugs: Vec<String> = (0..3)
        .map(|i| support::unique_slug(&format!("ttybatch{i}")))
        .collect();
    for slug in &slugs {
        let manifest = serde_json::json!({
            "clientId": slug,
            "clientName": format!("Client {slug}"),
            "orgEmail": format!("ops@{slug}.example"),
            "tier": "growth",
        });
        std::fs::write(manifests.join(format!("{slug}.json")), manifest.to_string()).unwrap();
    }
    let dir = manifests.display().to_string();
    // Debug logs from every crate while three clients' bars and the overall bar move.
    let script = setup.script(
        "batch",
        &[("PROVISIONER_LOG", "debug")],
        &["batch", &dir, "--concurrency", "2"],
        "",
    );
    tmux.start("batch", &script);
    let (screen, code) = tmux.finished("batch").await;
    assert_eq!(code, 0, "{screen}");
    for slug in &slugs {
        let settled = screen
            .lines()
            .filter(|l| l.contains(&format!("] {slug} succeeded")))
            .count();
        assert_eq!(settled, 1, "{slug}'s settled line, once:\n{screen}");
    }
    assert!(
        screen.lines().any(|l| l.contains("3/3 clients settled")),
        "the overall bar's last frame:\n{screen}"
    );
    let mut logs = 0;
    for line in screen.lines() {
        if let Some(at) = timestamp_at(line) {
            assert_eq!(
                at, 0,
                "a log line cut into another line: {line:?}\n{screen}"
            );
            logs += 1;
        }
    }
    assert!(logs > 10, "the logs were meant to interleave:\n{screen}");
    // No frame of a client's spinner left behind (a settled client's bar is cleared).
    for slug in &slugs {
        assert!(
            !screen.lines().any(|l| timestamp_at(l).is_none()
                && l.contains(slug.as_str())
                && l.contains(" running")),
            "a stale frame of {slug}:\n{screen}"
        );
    }
}
