//! The agency's client manifests: a directory of JSON files (one client each, e.g.
//! `clients/acme-dental.json`) or a JSON Lines file (one client a line). A manifest is the
//! agency's record as it is: `clientId`, `clientName`, `orgEmail`, `tier`, and optional
//! `branding`, `modules` and `metadata`, each mapped onto [`Client`] through
//! [`ClientRecord::validate`], so the rules are the API's.
//!
//! Loading is all or nothing: every manifest is read and validated, every problem is reported
//! with its file, field and rule, and a batch starts only when none is left.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::client::{Client, ClientRecord, InvalidClient};

/// The top-level keys a manifest may have. Anything else is more likely a typo
/// (`clientID`, `teir`) than something to ignore quietly.
pub const KEYS: &[&str] = &[
    "clientId",
    "clientName",
    "orgEmail",
    "tier",
    "branding",
    "modules",
    "metadata",
];

/// Where a manifest came from: a file, or a line of a JSON Lines file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Source {
    pub file: PathBuf,
    /// 1-based, for JSON Lines.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}", self.file.display()),
            None => write!(f, "{}", self.file.display()),
        }
    }
}

/// One valid manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub source: Source,
    pub client: Client,
}

/// One rule one manifest broke.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ManifestProblem {
    pub source: Source,
    /// The field as written in the manifest (`tier`, `branding.primary_color`); empty when
    /// the problem is the manifest as a whole (not JSON, not an object).
    pub field: String,
    pub rule: String,
}

impl fmt::Display for ManifestProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.source, self.rule)
        } else {
            write!(f, "{}: {}: {}", self.source, self.field, self.rule)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error(
        "cannot read manifests from {path}: {message}; give a directory of .json files or a JSON Lines file"
    )]
    Unreadable { path: PathBuf, message: String },
    #[error("{path} holds no manifest; add one .json file per client, or one JSON object a line")]
    Empty { path: PathBuf },
    #[error(
        "{} of the manifests are not valid, so nothing was started; fix these and run again:\n{}",
        count_sources(.0),
        .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n")
    )]
    Invalid(Vec<ManifestProblem>),
}

fn count_sources(problems: &[ManifestProblem]) -> usize {
    let mut sources: Vec<&Source> = problems.iter().map(|p| &p.source).collect();
    sources.dedup();
    sources.len()
}

/// Reads every manifest under `path` (a directory of `*.json` files, in name order, or a
/// JSON Lines file) and validates them all; duplicate client ids are an error.
pub fn load(path: &Path) -> Result<Vec<Manifest>, ManifestError> {
    let unreadable = |e: std::io::Error| ManifestError::Unreadable {
        path: path.to_owned(),
        message: e.to_string(),
    };
    let mut documents: Vec<(Source, String)> = Vec::new();
    if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(unreadable)?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        for file in files {
            let text = std::fs::read_to_string(&file).map_err(|e| ManifestError::Unreadable {
                path: file.clone(),
                message: e.to_string(),
            })?;
            documents.push((Source { file, line: None }, text));
        }
    } else {
        let text = std::fs::read_to_string(path).map_err(unreadable)?;
        for (i, line) in text.lines().enumerate() {
            if !line.trim().is_empty() {
                documents.push((
                    Source {
                        file: path.to_owned(),
                        line: Some(i + 1),
                    },
                    line.to_owned(),
                ));
            }
        }
    }
    if documents.is_empty() {
        return Err(ManifestError::Empty {
            path: path.to_owned(),
        });
    }
    let mut problems = Vec::new();
    let mut manifests = Vec::new();
    for (source, text) in documents {
        match parse(&text) {
            Ok(client) => manifests.push(Manifest { source, client }),
            Err(found) => problems.extend(found.into_iter().map(|(field, rule)| ManifestProblem {
                source: source.clone(),
                field,
                rule,
            })),
        }
    }
    let mut first_of: BTreeMap<&str, &Source> = BTreeMap::new();
    for manifest in &manifests {
        let slug = manifest.client.client_id.as_str();
        match first_of.get(slug) {
            Some(first) => problems.push(ManifestProblem {
                source: manifest.source.clone(),
                field: "clientId".into(),
                rule: format!(
                    "{slug:?} is also the clientId of {first}; each client may appear once in a batch"
                ),
            }),
            None => {
                first_of.insert(slug, &manifest.source);
            }
        }
    }
    if problems.is_empty() {
        Ok(manifests)
    } else {
        Err(ManifestError::Invalid(problems))
    }
}

/// An unknown key as a problem's field: as written when it is plain, quoted with escapes
/// otherwise, so that an empty key, one of spaces or one with invisible characters (RTL
/// marks, NUL) is still seen, and is never taken for "the manifest as a whole".
fn field_name(key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if plain {
        key.to_owned()
    } else {
        format!("{key:?}")
    }
}

/// One manifest's text as a client, or every (field, rule) it breaks.
pub fn parse(text: &str) -> Result<Client, Vec<(String, String)>> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        vec![(
            String::new(),
            format!("is not valid JSON ({e}); a manifest is one JSON object"),
        )]
    })?;
    let Value::Object(map) = value else {
        return Err(vec![(
            String::new(),
            "is not a JSON object; a manifest is one object with clientId, clientName, orgEmail and tier"
                .into(),
        )]);
    };
    let mut problems = Vec::new();
    for key in map.keys() {
        if !KEYS.contains(&key.as_str()) {
            problems.push((
                field_name(key),
                format!("is not a manifest field; use {}", KEYS.join(", ")),
            ));
        }
    }
    let mut text_field = |name: &str| match map.get(name) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            problems.push((name.to_owned(), format!("is {other}; write it as a string")));
            // Kept, so the field is not also reported as missing; its rule errors are dropped.
            Some(other.to_string())
        }
    };
    let (client_id, client_name, org_email, tier) = (
        text_field("clientId"),
        text_field("clientName"),
        text_field("orgEmail"),
        text_field("tier"),
    );
    let typed_wrong = problems.len();
    let record = ClientRecord {
        client_id,
        client_name,
        org_email,
        tier,
        branding: map.get("branding").cloned(),
        modules: map.get("modules").cloned(),
        metadata: map.get("metadata").cloned(),
    };
    match record.validate() {
        Ok(client) if problems.is_empty() => Ok(client),
        Ok(_) => Err(problems),
        Err(InvalidClient(errors)) => {
            let wrong_type: Vec<String> = problems[..typed_wrong]
                .iter()
                .map(|(f, _)| f.clone())
                .collect();
            // A field already reported as not a string is not reported again for its value.
            problems.extend(
                errors
                    .into_iter()
                    .filter(|e| !wrong_type.contains(&e.field))
                    .map(|e| (e.field, e.message)),
            );
            Err(problems)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, body: &str) {
        std::fs::write(dir.join(name), body).unwrap();
    }

    const GOOD: &str = r##"{"clientId": "acme-dental", "clientName": "Acme Dental",
        "orgEmail": "ops@acme-dental.example", "tier": "growth",
        "branding": {"primary_color": "#0A7CFF", "secondary_color": "#FFFFFF",
                     "company_name": "Acme Dental", "tagline": "Smile",
                     "logo_url": "https://acme-dental.example/logo.png"},
        "modules": {"crm": true, "email": true, "social": false, "content_studio": true,
                    "accommodation": false, "ai_agents": true},
        "metadata": {"crmId": 42}}"##;

    #[test]
    fn a_directory_of_agency_files_maps_onto_clients() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "acme-dental.json", GOOD);
        write(
            dir.path(),
            "bolt.json",
            r#"{"clientId": "bolt-gym", "clientName": "Bolt", "orgEmail": "a@bolt.example", "tier": "core"}"#,
        );
        write(dir.path(), "notes.txt", "not a manifest");
        let manifests = load(dir.path()).unwrap();
        assert_eq!(manifests.len(), 2);
        let acme = &manifests[0].client;
        assert_eq!(acme.client_id.as_str(), "acme-dental");
        let branding = acme.branding.clone().unwrap();
        assert_eq!(branding.primary_color.as_deref(), Some("#0A7CFF"));
        assert_eq!(branding.tagline.as_deref(), Some("Smile"));
        assert_eq!(acme.modules.clone().unwrap().content_studio, Some(true));
        assert_eq!(acme.metadata, Some(serde_json::json!({"crmId": 42})));
        assert_eq!(manifests[1].source.file, dir.path().join("bolt.json"));
    }

    #[test]
    fn every_problem_of_every_manifest_is_reported_with_file_field_and_rule() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.json", GOOD);
        write(
            dir.path(),
            "b.json",
            r##"{"clientId": "Bad_Slug", "clientName": "B", "orgEmail": "nobody", "tier": "gold",
                "branding": {"primary_color": "blue"}, "modules": {"crm": "yes"}}"##,
        );
        write(dir.path(), "c.json", "{not json");
        write(
            dir.path(),
            "d.json",
            r#"{"clientId": "acme-dental", "clientName": "Again", "orgEmail": "x@y.example", "tier": "starter"}"#,
        );
        write(
            dir.path(),
            "f.json",
            r#"{"clientId": "f-co", "clientName": "F", "orgEmail": "f@f.example", "tier": "starter", "teir": "x"}"#,
        );
        write(
            dir.path(),
            "e.json",
            r#"{"clientId": 7, "clientName": "E", "orgEmail": "e@e.example", "tier": "starter"}"#,
        );
        let Err(ManifestError::Invalid(problems)) = load(dir.path()) else {
            panic!("expected invalid manifests");
        };
        let seen: Vec<(String, &str)> = problems
            .iter()
            .map(|p| {
                (
                    p.source.file.file_name().unwrap().to_string_lossy().into(),
                    p.field.as_str(),
                )
            })
            .collect();
        let expect = |file: &str, field: &str| {
            assert!(
                seen.contains(&(file.to_owned(), field)),
                "{file} {field} missing from {seen:?}"
            )
        };
        expect("b.json", "clientId");
        expect("b.json", "orgEmail");
        expect("b.json", "tier");
        expect("b.json", "branding.primary_color");
        expect("b.json", "modules.crm");
        expect("c.json", "");
        expect("f.json", "teir");
        expect("d.json", "clientId");
        expect("e.json", "clientId");
        assert!(!seen.iter().any(|(f, _)| f == "a.json"), "{seen:?}");
        let text = ManifestError::Invalid(problems.clone()).to_string();
        assert!(
            text.starts_with("5 of the manifests are not valid"),
            "{text}"
        );
        assert!(text.contains("#RRGGBB"), "{text}");
        assert!(text.contains("is also the clientId of"), "{text}");
        // The number is reported as not a string, not also as a missing field.
        let e: Vec<_> = problems
            .iter()
            .filter(|p| p.source.file.ends_with("e.json"))
            .collect();
        assert_eq!(e.len(), 1, "{e:?}");
    }

    #[test]
    fn json_lines_report_their_line_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("clients.jsonl");
        let good = GOOD.replace('\n', " ");
        std::fs::write(&file, format!("{good}\n\n{{\"clientId\": \"x\"}}\n[1]\n")).unwrap();
        let Err(ManifestError::Invalid(problems)) = load(&file) else {
            panic!("expected invalid manifests");
        };
        let lines: Vec<_> = problems.iter().map(|p| p.source.line).collect();
        assert!(
            lines.iter().all(|l| *l == Some(3) || *l == Some(4)),
            "{lines:?}"
        );
        assert!(problems[0].to_string().contains("clients.jsonl:3: "));
    }

    #[test]
    fn an_empty_or_missing_path_says_what_to_give() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(load(dir.path()), Err(ManifestError::Empty { .. })));
        let err = load(&dir.path().join("nope")).unwrap_err().to_string();
        assert!(err.contains("directory of .json files"), "{err}");
    }
}
