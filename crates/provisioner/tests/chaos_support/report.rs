//! The chaos report: markdown rendered from the JSON lines files in the results directory.
//! Each chaos scenario appends one object to `chaos.jsonl` (the newest per scenario is
//! shown); every other `*.jsonl` there (what other suites leave, e.g. fuzz counts or
//! benchmark lines) gets a section of its own with one table row per line.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::Value;

pub const CHAOS_FILE: &str = "chaos.jsonl";
pub const REPORT_FILE: &str = "report.md";

/// Where results go: `PROVISIONER_CHAOS_RESULTS`, else `target/chaos` of the workspace.
pub fn results_dir() -> PathBuf {
    std::env::var_os("PROVISIONER_CHAOS_RESULTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../target/chaos")
                .components()
                .collect()
        })
}

/// Appends one scenario's result to `chaos.jsonl` in `dir` and writes the report anew;
/// returns the report's path.
pub fn record(dir: &Path, result: &Value) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(CHAOS_FILE))
        .unwrap();
    // One write of the whole line, so lines of scenarios finishing together never interleave.
    file.write_all(format!("{result}\n").as_bytes()).unwrap();
    drop(file);
    write(dir)
}

/// Renders the report from what `dir` holds and writes it (through a temporary file, so a
/// reader never sees half of it); returns its path.
pub fn write(dir: &Path) -> PathBuf {
    let text = render(dir);
    let path = dir.join(REPORT_FILE);
    let partial = dir.join(format!(".{REPORT_FILE}.{}", std::process::id()));
    std::fs::write(&partial, text).unwrap();
    std::fs::rename(&partial, &path).unwrap();
    path
}

fn lines_of(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(Value::is_object)
        .collect()
}

pub fn render(dir: &Path) -> String {
    let mut out = String::from("# Chaos report\n\n");
    let scenarios = lines_of(&dir.join(CHAOS_FILE));
    // The newest result of each scenario, in the order scenarios first appeared.
    let mut order: Vec<String> = Vec::new();
    let mut newest: BTreeMap<String, &Value> = BTreeMap::new();
    for line in &scenarios {
        let name = line["scenario"].as_str().unwrap_or("unnamed").to_owned();
        if !order.contains(&name) {
            order.push(name.clone());
        }
        newest.insert(name, line);
    }
    if order.is_empty() {
        out += "No chaos scenario has recorded a result yet.\n\n";
    } else {
        out += "| scenario | size | passed | wall time (s) |\n| --- | --- | --- | --- |\n";
        for name in &order {
            let line = newest[name];
            out += &format!(
                "| {name} | {} | {} | {} |\n",
                cell(&line["size"]),
                cell(&line["passed"]),
                cell(&line["wall_s"])
            );
        }
        out += "\n";
    }
    for name in &order {
        let line = newest[name];
        let title = line["title"].as_str().unwrap_or(name);
        out += &format!("## {title}\n\n");
        if let Some(object) = line.as_object() {
            for (key, value) in object {
                if matches!(key.as_str(), "scenario" | "title") {
                    continue;
                }
                out += &field(key, value);
            }
        }
        out += "\n";
    }
    let mut others: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.extension().is_some_and(|e| e == "jsonl")
                        && p.file_name().is_some_and(|n| n != CHAOS_FILE)
                })
                .collect()
        })
        .unwrap_or_default();
    others.sort();
    for path in others {
        let lines = lines_of(&path);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        out += &format!("## From {name}\n\n");
        if lines.is_empty() {
            out += "(no JSON object lines)\n\n";
        } else {
            out += &table(&lines);
            out += "\n";
        }
    }
    out
}

/// One `- key: value` item; a list of objects becomes a table under it.
fn field(key: &str, value: &Value) -> String {
    match value {
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_object) => {
            format!("- {key}:\n\n{}\n", table(items))
        }
        Value::Array(items) if !items.is_empty() => {
            let mut out = format!("- {key}:\n");
            for item in items {
                out += &format!("  - {}\n", cell(item));
            }
            out
        }
        _ => format!("- {key}: {}\n", cell(value)),
    }
}

/// A markdown table of objects, one column per key any of them has.
fn table(rows: &[Value]) -> String {
    let mut columns: Vec<String> = Vec::new();
    for row in rows {
        if let Some(object) = row.as_object() {
            for key in object.keys() {
                if !columns.contains(key) {
                    columns.push(key.clone());
                }
            }
        }
    }
    let mut out = format!("| {} |\n", columns.join(" | "));
    out += &format!("|{}\n", " --- |".repeat(columns.len()));
    for row in rows {
        let cells: Vec<String> = columns.iter().map(|c| cell(&row[c.as_str()])).collect();
        out += &format!("| {} |\n", cells.join(" | "));
    }
    out
}

/// A value as one table cell: objects as `k=v` pairs, lists comma-separated, pipes escaped.
fn cell(value: &Value) -> String {
    let text = match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| format!("{k}={}", cell(v)))
            .collect::<Vec<_>>()
            .join(", "),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    };
    text.replace('|', "\\|").replace('\n', " ")
}
