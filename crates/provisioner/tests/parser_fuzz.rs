//! The manifest and configuration parsers fuzzed: arbitrary bytes and near-valid inputs
//! (a valid document with keys dropped, values swapped for wrong types, odd Unicode and
//! injections, unknown keys, truncations). Properties: no panic; every error names where it
//! is (the manifest's file and line, the field, or the TOML key or line) and the rule; no
//! secret from the environment is repeated in an error.
//!
//! Case count: `PROVISIONER_FUZZ_CASES` per property (default [`CI_CASES`]); the counts are
//! printed as one JSON line and appended to the file `PROVISIONER_FUZZ_REPORT` names.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fuzz_report;

use std::collections::BTreeMap;
use std::time::Instant;

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use provisioner::client::ClientSlug;
use provisioner::config::{Config, Settings};
use provisioner::manifest::{self, ManifestError};
use serde_json::{Value, json};

/// Cases per property in the CI run.
const CI_CASES: u32 = 2_000;

fn run<S: Strategy>(
    name: &str,
    cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) -> serde_json::Value {
    let started = Instant::now();
    let mut runner = TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    if let Err(e) = runner.run(&strategy, test) {
        panic!("{name}: {e}");
    }
    json!({
        "fuzz": name,
        "cases": cases,
        "seconds": (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
    })
}

const ODD: &[&str] = &[
    "'; DROP TABLE saga_runs; --",
    "../../etc/passwd",
    "acme\r\nX-Injected: 1",
    "acme\u{0}dental",
    "\u{202e}acme",
    "a\u{301}cme",
    "\u{feff}",
    "ａｃｍｅ",
    "ACME-DENTAL",
    "İ",
    "🦀",
    "%00",
    "",
    " ",
    "\t",
    "\\",
    "\"",
    "#",
    "[",
    "=",
];

fn odd_string() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(ODD).prop_map(str::to_owned),
        3 => any::<String>(),
        1 => (100usize..5_000).prop_map(|n| "é\u{301}".repeat(n)),
        2 => "[a-zA-Z0-9 ._#@:/-]{0,30}",
    ]
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        odd_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(odd_string(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

// ---------------------------------------------------------------------------------------
// Manifests.

fn good_manifest() -> Value {
    json!({
        "clientId": "acme-dental",
        "clientName": "Acme Dental",
        "orgEmail": "ops@acme-dental.example",
        "tier": "growth",
        "branding": {"primary_color": "#0A7CFF", "secondary_color": "#FFFFFF",
                     "company_name": "Acme Dental", "tagline": "Smile",
                     "logo_url": "https://acme-dental.example/logo.png"},
        "modules": {"crm": true, "email": true, "social": false},
        "metadata": {"crmId": 42},
    })
}

/// One change to a manifest: a key dropped, a value replaced, a key added.
#[derive(Debug, Clone)]
enum Change {
    Drop(usize),
    Replace(usize, Value),
    ReplaceInner(usize, String, Value),
    Add(String, Value),
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        (0usize..7).prop_map(Change::Drop),
        (
            0usize..7,
            prop_oneof![odd_string().prop_map(Value::String), any_json()]
        )
            .prop_map(|(i, v)| Change::Replace(i, v)),
        (
            0usize..7,
            prop_oneof![
                proptest::sample::select(vec![
                    "primary_color",
                    "primaryColor",
                    "tagline",
                    "logo_url",
                    "crm",
                    "ai_agents",
                    "fax",
                ])
                .prop_map(str::to_owned),
                odd_string(),
            ],
            any_json()
        )
            .prop_map(|(i, k, v)| Change::ReplaceInner(i, k, v)),
        (odd_string(), any_json()).prop_map(|(k, v)| Change::Add(k, v)),
    ]
}

fn mutate(mut manifest: Value, changes: &[Change]) -> Value {
    let keys = manifest::KEYS;
    let map = manifest.as_object_mut().unwrap();
    for change in changes {
        match change {
            Change::Drop(i) => {
                map.remove(keys[i % keys.len()]);
            }
            Change::Replace(i, v) => {
                map.insert(keys[i % keys.len()].to_owned(), v.clone());
            }
            Change::ReplaceInner(i, k, v) => {
                if let Some(Value::Object(inner)) = map.get_mut(keys[i % keys.len()]) {
                    inner.insert(k.clone(), v.clone());
                }
            }
            Change::Add(k, v) => {
                map.insert(k.clone(), v.clone());
            }
        }
    }
    manifest
}

/// A manifest's text: near-valid JSON, sometimes cut short or with bytes spliced in.
fn manifest_text() -> impl Strategy<Value = String> {
    let near = (
        proptest::collection::vec(change(), 0..4),
        0u8..8,
        any::<usize>(),
        odd_string(),
    )
        .prop_map(|(changes, roll, at, junk)| {
            let text = mutate(good_manifest(), &changes).to_string();
            let at = text
                .char_indices()
                .map(|(i, _)| i)
                .nth(at % text.chars().count().max(1))
                .unwrap_or(0);
            match roll {
                0 => text[..at].to_owned(),
                1 => format!("{}{junk}{}", &text[..at], &text[at..]),
                _ => text,
            }
        });
    prop_oneof![
        6 => near,
        1 => any::<String>(),
        1 => any_json().prop_map(|v| v.to_string()),
    ]
}

/// Checks one manifest's verdict: a valid one is a client whose id is a slug; an invalid
/// one names, for each problem, the field (when the text is a JSON object) and the rule.
fn check_manifest(text: &str) -> Result<(), TestCaseError> {
    match manifest::parse(text) {
        Ok(client) => {
            prop_assert!(ClientSlug::parse(client.client_id.as_str()).is_ok());
            prop_assert!(!client.client_name.is_empty());
        }
        Err(problems) => {
            prop_assert!(!problems.is_empty(), "an error without a problem: {text:?}");
            let is_object = serde_json::from_str::<Value>(text).is_ok_and(|v| v.is_object());
            for (field, rule) in &problems {
                prop_assert!(
                    !rule.trim().is_empty(),
                    "a problem without a rule: {text:?}"
                );
                if is_object {
                    prop_assert!(
                        !field.is_empty(),
                        "a problem of an object names no field ({rule}): {text:?}"
                    );
                }
            }
        }
    }
    Ok(())
}

#[test]
fn manifests_never_panic_and_every_problem_names_its_field_and_rule() {
    let cases = fuzz_report::cases(CI_CASES);
    let line = run("manifest_parse", cases, manifest_text(), |text| {
        check_manifest(&text)
    });
    fuzz_report::write(&line);
}

/// A JSON Lines file's bytes: manifests a line, with blank lines, odd bytes and invalid
/// UTF-8 among them.
fn jsonl_bytes() -> impl Strategy<Value = Vec<u8>> {
    let line = prop_oneof![
        6 => manifest_text().prop_map(|t| t.replace(['\n', '\r'], " ").into_bytes()),
        1 => Just(Vec::new()),
        1 => proptest::collection::vec(any::<u8>(), 0..40)
            .prop_map(|b| b.into_iter().filter(|c| *c != b'\n').collect()),
    ];
    (
        proptest::collection::vec(line, 1..6),
        prop_oneof![Just("\n"), Just("\r\n")],
    )
        .prop_map(|(lines, end)| {
            let mut out = Vec::new();
            for l in lines {
                out.extend(l);
                out.extend(end.as_bytes());
            }
            out
        })
}

#[test]
fn manifest_files_never_panic_and_every_problem_names_its_file_and_line() {
    let cases = fuzz_report::cases(CI_CASES / 4);
    let dir = tempfile::tempdir().unwrap();
    let line = run(
        "manifest_load",
        cases,
        (jsonl_bytes(), any::<bool>()),
        |(bytes, as_dir)| {
            let root = dir.path().join(uuid::Uuid::new_v4().simple().to_string());
            let path = if as_dir {
                std::fs::create_dir(&root).unwrap();
                for (i, chunk) in bytes.split(|b| *b == b'\n').enumerate() {
                    std::fs::write(root.join(format!("client-{i:02}.json")), chunk).unwrap();
                }
                root.clone()
            } else {
                std::fs::write(&root, &bytes).unwrap();
                root.clone()
            };
            let lines = bytes.split(|b| *b == b'\n').count();
            let outcome = manifest::load(&path);
            if as_dir {
                std::fs::remove_dir_all(&root).unwrap();
            } else {
                std::fs::remove_file(&root).unwrap();
            }
            match outcome {
                Ok(manifests) => prop_assert!(!manifests.is_empty()),
                Err(ManifestError::Invalid(problems)) => {
                    prop_assert!(!problems.is_empty());
                    for p in &problems {
                        prop_assert!(!p.rule.trim().is_empty());
                        prop_assert!(p.source.file.starts_with(&root), "{p}");
                        if as_dir {
                            prop_assert!(p.source.line.is_none(), "{p}");
                        } else {
                            let line = p.source.line;
                            prop_assert!(line.is_some_and(|l| l >= 1 && l <= lines), "{p}");
                        }
                        let text = p.to_string();
                        prop_assert!(text.starts_with(&p.source.to_string()), "{text}");
                    }
                }
                Err(ManifestError::Empty { path: empty }) => prop_assert_eq!(empty, path),
                Err(e @ ManifestError::Unreadable { .. }) => {
                    let text = e.to_string();
                    prop_assert!(text.contains(&*root.to_string_lossy()), "{text}");
                }
            }
            Ok(())
        },
    );
    fuzz_report::write(&line);
}

// ---------------------------------------------------------------------------------------
// Configuration.

const GOOD_TOML: &str = r#"
[supabase]
region = "eu-central-1"
ready_timeout_secs = 300
[supabase.instance_size]
starter = "micro"
professional = "small"
enterprise = "medium"

[github]
branch_timeout_secs = 60

[vercel]
deploy_timeout_secs = 600
production_branch = "main"

[n8n]
api_version = "auto"

[rate_budgets.supabase]
requests_per_second = 2.0
burst = 10
max_concurrent = 8

[api]
jwt_audience = "authenticated"
role_claim = "app_metadata.role"
admin_role = "admin"
rate_limit_per_minute = 600
rate_limit_burst = 50
legacy_wait_secs = 25

[[api.tokens]]
name = "admin-app"
sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
"#;

/// A TOML value written out: right types, wrong types, edge numbers, odd strings.
fn toml_value() -> impl Strategy<Value = String> {
    prop_oneof![
        odd_string().prop_map(|s| toml_string(&s)),
        any::<i64>().prop_map(|n| n.to_string()),
        proptest::sample::select(vec![
            "0",
            "-1",
            "18446744073709551616",
            "nan",
            "inf",
            "-inf",
            "1e400",
            "0.0",
            "true",
            "1979-05-27T07:32:00Z",
            "[]",
            "[1, \"a\"]",
            "{}",
            "{ a = 1 }",
            "\"\"",
            "'''x'''",
            "0x10",
            "1_000",
            "+5",
        ])
        .prop_map(str::to_owned),
        any::<f64>().prop_map(|f| format!("{f:?}")),
    ]
}

fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32 & 0xFFFF)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Near-valid `provisioner.toml`: lines of the good file with values swapped, lines
/// dropped, unknown keys and tables added, or cut short.
fn toml_text() -> impl Strategy<Value = String> {
    let lines: Vec<&'static str> = GOOD_TOML.lines().collect();
    let count = lines.len();
    let edit = prop_oneof![
        (0..count, toml_value()).prop_map(|(i, v)| (i, Some(v), None)),
        (0..count).prop_map(|i| (i, None, None)),
        (
            0..count,
            prop_oneof![
                "[a-z_]{1,12}".prop_map(|k| format!("{k} = 1")),
                "[a-z_.]{1,20}".prop_map(|k| format!("[{k}]")),
                odd_string(),
                proptest::sample::select(vec![
                    "[supabase]", "[[api.tokens]]", "region = \"eu-west-1\"", "[rate_budgets.fax]",
                    "[rate_budgets.vercel]\nrequests_per_second = nan\nburst = 0\nmax_concurrent = 0",
                    "[[notify]]", "cors_origins = [\"*\", \"https://A.example/\"]",
                    "[journal]\nurl = \"mysql://user:pw@host/db\"",
                    "[vercel]\ndomain = \"ÄÖ..example\"",
                ])
                .prop_map(str::to_owned),
            ]
        )
            .prop_map(|(i, extra)| (i, None, Some(extra))),
    ];
    let near = (
        proptest::collection::vec(edit, 0..5),
        0u8..10,
        any::<usize>(),
    )
        .prop_map(move |(edits, roll, cut)| {
            let mut out: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
            for (i, value, extra) in edits {
                match (value, extra) {
                    (Some(value), _) => {
                        if let Some((key, _)) = out[i].split_once(" = ") {
                            out[i] = format!("{key} = {value}");
                        }
                    }
                    (None, Some(extra)) => out.insert(i.min(out.len()), extra),
                    (None, None) => out[i] = String::new(),
                }
            }
            let text = out.join("\n");
            if roll == 0 {
                let at = text
                    .char_indices()
                    .map(|(i, _)| i)
                    .nth(cut % text.chars().count().max(1))
                    .unwrap_or(0);
                text[..at].to_owned()
            } else {
                text
            }
        });
    prop_oneof![
        8 => near,
        1 => any::<String>(),
        1 => proptest::collection::vec(any::<u8>(), 0..200)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]
}

/// A problem names where it is: `line N, column M: ...` for syntax, or a dotted key (with
/// `[i]` indexes) before `: ` for a value.
fn names_its_place(problem: &str) -> bool {
    if let Some(rest) = problem.strip_prefix("line ") {
        return rest.contains(", column ") && rest.contains(": ");
    }
    match problem.split_once(": ") {
        Some((key, rule)) => !key.trim().is_empty() && !rule.trim().is_empty(),
        None => false,
    }
}

#[test]
fn config_files_never_panic_and_every_problem_names_its_key_or_line() {
    assert!(
        Settings::from_toml(GOOD_TOML).is_ok(),
        "the base file is valid"
    );
    let cases = fuzz_report::cases(CI_CASES);
    let line = run("config_toml", cases, toml_text(), |text| {
        match Settings::from_toml(&text) {
            Ok(settings) => prop_assert!(settings.problems().is_empty()),
            Err(e) => {
                prop_assert!(
                    !e.problems.is_empty(),
                    "an error without a problem: {text:?}"
                );
                for p in &e.problems {
                    prop_assert!(names_its_place(p), "names no key or line: {p:?}\n{text}");
                }
            }
        }
        Ok(())
    });
    fuzz_report::write(&line);
}

/// The environment's variables, with canary secrets in the tokens and in URL userinfo.
#[derive(Debug, Clone)]
struct Env {
    vars: BTreeMap<&'static str, String>,
    secrets: Vec<String>,
}

const VARS: &[&str] = &[
    "SUPABASE_MANAGEMENT_TOKEN",
    "SUPABASE_ORG_ID",
    "GITHUB_TOKEN",
    "GITHUB_ORG",
    "GITHUB_TEMPLATE_REPO",
    "VERCEL_TOKEN",
    "N8N_API_KEY",
    "N8N_HOST",
    "SUPABASE_API_URL",
    "GITHUB_API_URL",
    "VERCEL_API_URL",
    "VERCEL_DEPLOYMENT_ORIGIN",
    "SUPABASE_DB_URL_TEMPLATE",
];

const URL_VARS: &[&str] = &[
    "N8N_HOST",
    "SUPABASE_API_URL",
    "GITHUB_API_URL",
    "VERCEL_API_URL",
    "VERCEL_DEPLOYMENT_ORIGIN",
];

const TOKEN_VARS: &[&str] = &[
    "SUPABASE_MANAGEMENT_TOKEN",
    "GITHUB_TOKEN",
    "VERCEL_TOKEN",
    "N8N_API_KEY",
];

fn env() -> impl Strategy<Value = Env> {
    // A password is `Pw` and characters a URL may not hold unencoded: it must vanish whole.
    let password = "Pw[A-Z0-9/?#@:%]{4,12}";
    let url = (
        proptest::sample::select(vec!["https", "http", "ftp", ""]),
        "[a-z]{1,6}",
        password,
        "[a-z.]{1,12}",
        proptest::sample::select(vec!["", "/", "/api", ":8080", ":99999", "/a b"]),
        0u8..4,
    )
        .prop_map(|(scheme, user, password, host, tail, shape)| {
            let sep = if scheme.is_empty() { "" } else { "://" };
            let text = match shape {
                0 => format!("{scheme}{sep}{user}:{password}@{host}{tail}"),
                1 => format!("{scheme}{sep}{password}@{host}{tail}"),
                2 => format!("{scheme}{sep}{host}{tail}"),
                _ => format!("{scheme}{sep}{user}:{password}@{host}@{host}{tail}"),
            };
            (text, password)
        });
    let value = prop_oneof![
        3 => url.prop_map(|(text, password)| (text, Some(password))),
        2 => odd_string().prop_map(|s| (s, None)),
        1 => Just((String::new(), None)),
    ];
    let token = "Tk[A-Za-z0-9]{16,24}";
    (
        proptest::collection::vec(proptest::option::weighted(0.8, value), VARS.len()),
        proptest::collection::vec(token, TOKEN_VARS.len()),
    )
        .prop_map(|(values, tokens)| {
            let mut vars = BTreeMap::new();
            let mut secrets = Vec::new();
            for (name, value) in VARS.iter().zip(values) {
                if let Some((text, password)) = value {
                    // Userinfo is a secret where a URL is read; elsewhere it is just text.
                    if URL_VARS.contains(name) {
                        secrets.extend(password);
                    }
                    vars.insert(*name, text);
                }
            }
            for (name, token) in TOKEN_VARS.iter().zip(tokens) {
                secrets.push(token.clone());
                vars.insert(*name, token);
            }
            Env { vars, secrets }
        })
}

#[test]
fn the_environment_never_panics_and_no_secret_is_repeated_in_an_error() {
    // Each case validates thirteen variables, some of them long URLs: fewer cases.
    let cases = fuzz_report::cases(CI_CASES / 4);
    let line = run("config_env", cases, env(), |env| {
        let lookup = |name: &str| env.vars.get(name).cloned();
        if let Err(e) = Config::load(None, &lookup) {
            let text = e.to_string();
            for secret in &env.secrets {
                prop_assert!(
                    !text.contains(secret.as_str()),
                    "{secret:?} is repeated in: {text}\nfrom {:?}",
                    env.vars
                );
            }
            for p in &e.problems {
                prop_assert!(names_its_place(p), "names no variable: {p:?}");
            }
        }
        Ok(())
    });
    fuzz_report::write(&line);
}

// ---------------------------------------------------------------------------------------
// What the fuzzing found, kept as regression tests.

/// Found by `config_env`: a URL whose password holds `#` (or `/`, `?`) does not parse, and
/// the message about it cut the authority at that character, so the part of the password
/// before it was repeated.
#[test]
fn an_unparseable_url_never_repeats_its_password() {
    for (var, value, secret) in [
        ("N8N_HOST", "https://a:PwAA#%@.@.", "PwAA#%"),
        (
            "SUPABASE_API_URL",
            "https://user:Pw/secret@api.example:99999",
            "Pw/secret",
        ),
        ("VERCEL_DEPLOYMENT_ORIGIN", "http://u:Pw?x@host:bad", "Pw?x"),
        ("GITHUB_API_URL", "user:Pw#1@host", "Pw#1"),
    ] {
        let lookup = |name: &str| (name == var).then(|| value.to_owned());
        let text = Config::load(None, &lookup).unwrap_err().to_string();
        assert!(text.contains(var), "{var} is named: {text}");
        assert!(text.contains("[credentials removed]"), "{text}");
        assert!(!text.contains(secret), "{secret:?} repeated: {text}");
        assert!(
            !text.contains("Pw"),
            "part of the password repeated: {text}"
        );
    }
}

/// Found by `manifest_parse`: an unknown key that is empty was reported with an empty field,
/// which reads as a problem of the manifest as a whole and names nothing.
#[test]
fn an_unknown_key_is_named_even_when_empty_or_invisible() {
    for (text, field) in [
        (r#"{"": null}"#, r#""""#),
        (r#"{"  ": 1}"#, r#""  ""#),
        ("{\"tier\u{202e}\": 1}", "\"tier\\u{202e}\""),
        (r#"{"teir": "x"}"#, "teir"),
    ] {
        let problems = manifest::parse(text).unwrap_err();
        let named: Vec<&str> = problems.iter().map(|(f, _)| f.as_str()).collect();
        assert!(named.contains(&field), "{text}: {named:?}");
        assert!(named.iter().all(|f| !f.is_empty()), "{text}: {named:?}");
    }
}

/// The report file gets one JSON line per property, appended.
#[test]
fn the_fuzz_report_appends_one_json_line_per_property() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fuzz-report.jsonl");
    fuzz_report::append(&path, &json!({"fuzz": "a", "cases": 1}));
    fuzz_report::append(&path, &json!({"fuzz": "b", "cases": 2}));
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines,
        [
            json!({"fuzz": "a", "cases": 1}),
            json!({"fuzz": "b", "cases": 2})
        ]
    );
}
