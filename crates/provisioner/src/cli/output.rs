//! What commands print: the resource record for people (stderr) or as JSON (stdout).

use saga::{RunStatus, RunView};

use super::CliError;
use crate::record::ResourceRecord;

/// Prints the outcome and turns a run that did not succeed into exit code 1.
pub fn report(view: &RunView, json: bool) -> Result<(), CliError> {
    report_record(&ResourceRecord::from_run(view), json)
}

/// As [`report`], from the record alone (what a server sends back).
pub fn report_record(record: &ResourceRecord, json: bool) -> Result<(), CliError> {
    if json {
        print_json(record)?;
    } else {
        eprint!("{}", human(record));
    }
    match record.status {
        RunStatus::Succeeded => Ok(()),
        other => Err(CliError::run_failed(format!(
            "run {} ended {other}{}",
            record.run_id,
            record
                .still_exists
                .as_ref()
                .map(|s| format!(
                    "; resources of these steps may still exist: {}",
                    s.join(", ")
                ))
                .unwrap_or_default()
        ))),
    }
}

/// The record as one JSON line on stdout: the command's output with `--json`.
pub fn print_json(record: &ResourceRecord) -> Result<(), CliError> {
    let line = serde_json::to_string(record).map_err(|e| CliError::internal(e.to_string()))?;
    #[allow(clippy::print_stdout)] // the record is the command's output
    {
        println!("{line}");
    }
    Ok(())
}

/// The record as a person reads it.
pub fn human(record: &ResourceRecord) -> String {
    let mut out = format!(
        "run {} ({}): {}\n",
        record.run_id, record.saga, record.status
    );
    let adopted = |a: bool| if a { " (adopted)" } else { "" };
    if let Some(s) = &record.supabase {
        out += &format!(
            "  supabase   {} {} in {}{}\n",
            s.name,
            s.project_ref,
            s.region,
            adopted(s.adopted)
        );
    }
    if let Some(d) = &record.database {
        let version = match &d.version {
            Some(version) => format!("{version} ({})", &d.checksum[..12.min(d.checksum.len())]),
            None => d.checksum[..12.min(d.checksum.len())].to_owned(),
        };
        out += &format!(
            "  schema     version {version}{}\n",
            if d.already_applied {
                " (already applied)".to_owned()
            } else if d.applied_now.is_empty() {
                String::new()
            } else {
                format!(" (applied now: {})", d.applied_now.join(", "))
            }
        );
        for c in &d.checks {
            out += &format!(
                "    {} {} ({} relations)\n",
                if c.passed { "ok  " } else { "FAIL" },
                c.description,
                c.relations_examined
            );
        }
    }
    if let Some(g) = &record.github {
        out += &format!("  github     {}{}\n", g.html_url, adopted(g.adopted));
    }
    if let Some(v) = &record.vercel {
        out += &format!(
            "  vercel     {} → {}{}\n",
            v.deployment_url,
            v.app_url,
            adopted(v.adopted)
        );
        if let Some(status) = v.answered {
            out += &format!("    answers over HTTP ({status})\n");
        }
    }
    if let Some(d) = &record.domain {
        match (&d.domain, &d.skipped) {
            (Some(domain), _) => {
                let state = match (d.verified, d.misconfigured) {
                    (true, false) => "verified, DNS points at Vercel",
                    (true, true) => "verified, DNS not pointed yet",
                    (false, _) => "not verified yet",
                };
                out += &format!("  domain     {domain} ({state}){}\n", adopted(d.adopted));
                for r in &d.dns_records {
                    out += &format!(
                        "    create DNS {} {} → {} ({})\n",
                        r.record_type, r.name, r.value, r.reason
                    );
                }
            }
            (None, Some(why)) => out += &format!("  domain     none: {why}\n"),
            (None, None) => {}
        }
    }
    if let Some(a) = &record.auth_urls {
        out += &format!(
            "  auth URLs  site {}, allowed {}{}\n",
            a.site_url,
            a.allowed.join(" "),
            if a.changed { "" } else { " (already set)" }
        );
    }
    if let Some(n) = &record.n8n {
        out += &format!(
            "  n8n        {} (workflow {}){}\n",
            n.webhook_url,
            n.workflow_id,
            adopted(n.adopted)
        );
    }
    for m in &record.modules {
        out += &format!(
            "  module     {}: {} (workflow {}){}\n",
            m.module,
            m.workflow.webhook_url,
            m.workflow.workflow_id,
            adopted(m.workflow.adopted)
        );
    }
    for r in &record.removed {
        out += &format!("  removed    {r}\n");
    }
    if let Some(f) = &record.failure {
        out += &format!("  failure    {f}\n");
    }
    if let Some(s) = &record.still_exists {
        out += &format!("  still exists (steps): {}\n", s.join(", "));
    }
    out
}
