//! Where log lines go and in what shape. Lines go to stderr (stdout is a command's output):
//! human-readable by default, one JSON object per line with `PROVISIONER_LOG_FORMAT=json`.
//! `PROVISIONER_LOG` filters them (`tracing` directives, default `warn`, or `info` for the
//! long-running `serve` and `worker`).
//!
//! The engine runs each run inside a `run` span carrying `run_id`, and each step attempt in a
//! `step` span inside it, so every line logged while a run is driven names its run: in JSON
//! under `spans` (outermost first) and `span` (innermost).

use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, thiserror::Error)]
#[error("PROVISIONER_LOG_FORMAT is {0:?}; it takes `json` or `text`")]
pub struct BadFormat(String);

impl Format {
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Self, BadFormat> {
        match env("PROVISIONER_LOG_FORMAT").as_deref().map(str::trim) {
            None | Some("" | "text") => Ok(Format::Text),
            Some("json") => Ok(Format::Json),
            Some(other) => Err(BadFormat(other.to_owned())),
        }
    }
}

/// Installs the process's subscriber. `default_level` applies when `PROVISIONER_LOG` is unset.
/// An unusable `PROVISIONER_LOG_FORMAT` is reported, and text is used, rather than losing the
/// logs of a service that was otherwise configured correctly.
pub fn init(default_level: &str) {
    let env = |name: &str| std::env::var(name).ok();
    let filter = EnvFilter::try_from_env("PROVISIONER_LOG")
        .unwrap_or_else(|_| EnvFilter::new(default_level));
    let (format, problem) = match Format::from_env(&env) {
        Ok(format) => (format, None),
        Err(e) => (Format::Text, Some(e)),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Log lines are written around the progress bars, never through them.
        .with_writer(crate::progress::LogWriter);
    match format {
        // Colours only for a person at a terminal, never in a pipe or a log file.
        Format::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        Format::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .init(),
    }
    if let Some(problem) = problem {
        tracing::warn!("{problem}; logging as text");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_format_is_text_json_or_a_clear_error() {
        let with = |value: Option<&'static str>| {
            move |name: &str| {
                (name == "PROVISIONER_LOG_FORMAT")
                    .then_some(value)
                    .flatten()
                    .map(str::to_owned)
            }
        };
        assert_eq!(Format::from_env(&with(None)).unwrap(), Format::Text);
        assert_eq!(Format::from_env(&with(Some("json"))).unwrap(), Format::Json);
        assert_eq!(Format::from_env(&with(Some("text"))).unwrap(), Format::Text);
        let e = Format::from_env(&with(Some("yaml")))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("PROVISIONER_LOG_FORMAT") && e.contains("json"),
            "{e}"
        );
    }
}
