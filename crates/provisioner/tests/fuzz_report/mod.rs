//! The fuzz suites' case counts, for the chaos report: one JSON line on stdout (seen with
//! `--no-capture`), and appended to the file `PROVISIONER_FUZZ_REPORT` names when it is set.
#![allow(dead_code, clippy::print_stdout, clippy::expect_used)]

use std::io::Write;

pub const REPORT_VAR: &str = "PROVISIONER_FUZZ_REPORT";

/// How many cases a suite runs: `PROVISIONER_FUZZ_CASES` when set (the long run), else
/// `ci` (what `scripts/test` runs).
pub fn cases(ci: u32) -> u32 {
    match std::env::var("PROVISIONER_FUZZ_CASES") {
        Ok(v) if !v.trim().is_empty() => v.trim().parse().unwrap_or_else(|_| {
            panic!("PROVISIONER_FUZZ_CASES={v:?} is not a whole number of cases")
        }),
        _ => ci,
    }
}

pub fn write(line: &serde_json::Value) {
    println!("{line}");
    if let Ok(path) = std::env::var(REPORT_VAR)
        && !path.trim().is_empty()
    {
        append(std::path::Path::new(&path), line);
    }
}

/// Appends `line` to the report file at `path`, creating it.
pub fn append(path: &std::path::Path, line: &serde_json::Value) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("{REPORT_VAR}={}: cannot be opened ({e})", path.display()));
    writeln!(file, "{line}").expect("the fuzz report is written");
}
