//! Logs on stderr — JSON for machines, or human-readable (colored on a
//! terminal) for people: [`LogFormat`], `--log-format` or
//! `AUTHPULSE_LOG_FORMAT`, by default text on a terminal and JSON otherwise
//! — whose filter can be changed while the process runs ([`LogControl`],
//! served as `/api/v1/admin/log-level` by the coordinator and `/log-level`
//! by the agent; `AUTHPULSE_LOG` sets the first one), with third-party
//! loggers that print credentials capped whatever the filter says.
use std::sync::{Mutex, OnceLock, PoisonError};

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, reload};

/// Third-party targets that log credentials at debug/trace (aws-sigv4
/// prints the signing identity, access key id included): capped at `info`
/// whatever filter is set, at start or at run time, since secrets must never
/// reach a log. The cap is a separate filter layer that is never reloaded,
/// so no directive (not even a more specific one like
/// `aws_sigv4::http_request=trace`) can lift it.
const CREDENTIAL_LOGGERS: &[(&str, LevelFilter)] = &[
    ("aws_sigv4", LevelFilter::INFO),
    ("aws_smithy_runtime_api", LevelFilter::INFO),
];

/// The filter when `AUTHPULSE_LOG` is unset (or invalid).
pub const DEFAULT_FILTER: &str = "info";

/// Longest filter accepted at run time: a filter is a handful of directives,
/// not a document.
const MAX_FILTER_LEN: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum LogFilterError {
    #[error("the filter is empty (give e.g. `info` or `debug,hyper=info`)")]
    Empty,
    #[error("the filter is longer than {MAX_FILTER_LEN} bytes")]
    TooLong,
    #[error("invalid filter `{filter}`: {reason}")]
    Invalid { filter: String, reason: String },
    #[error("cannot swap the log filter: {0}")]
    Reload(String),
}

/// Parses a tracing filter (`debug,hyper=info`, `authpulse_agent=trace`)
/// strictly: unlike `EnvFilter::new`, an invalid directive is an error
/// rather than silently dropped. Spaces around commas are allowed.
pub fn parse_filter(raw: &str) -> Result<(String, EnvFilter), LogFilterError> {
    if raw.len() > MAX_FILTER_LEN {
        return Err(LogFilterError::TooLong);
    }
    let text = raw
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect::<Vec<_>>()
        .join(",");
    if text.is_empty() {
        return Err(LogFilterError::Empty);
    }
    EnvFilter::builder()
        .parse(&text)
        .map(|f| (text.clone(), f))
        .map_err(|e| LogFilterError::Invalid {
            filter: text,
            reason: e.to_string(),
        })
}

/// The process's log filter, changeable while it runs.
pub struct LogControl {
    handle: reload::Handle<EnvFilter, Registry>,
    /// The filter as last set, normalised (EnvFilter's own Display reorders
    /// directives, which would surprise whoever set them).
    current: Mutex<String>,
}

impl LogControl {
    /// The filter in force.
    pub fn filter(&self) -> String {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Sets a new filter and returns the previous one. An invalid filter is
    /// refused and the running one stays.
    pub fn set(&self, raw: &str) -> Result<String, LogFilterError> {
        let (text, filter) = parse_filter(raw)?;
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        self.handle
            .reload(filter)
            .map_err(|e| LogFilterError::Reload(e.to_string()))?;
        Ok(std::mem::replace(&mut *current, text))
    }

    /// The caps that apply on top of any filter, as `target=level`.
    pub fn capped() -> Vec<String> {
        CREDENTIAL_LOGGERS
            .iter()
            .map(|(target, level)| format!("{target}={}", level.to_string().to_lowercase()))
            .collect()
    }
}

static LOG_CONTROL: OnceLock<LogControl> = OnceLock::new();

/// The handle [`init_logging`] installed; `None` in a process that did not
/// call it (library tests), where there is no filter of ours to change.
pub fn log_control() -> Option<&'static LogControl> {
    LOG_CONTROL.get()
}

/// The non-reloadable cap layer: everything passes except the credential
/// loggers above their cap.
fn credential_caps() -> Targets {
    Targets::new()
        .with_default(LevelFilter::TRACE)
        .with_targets(CREDENTIAL_LOGGERS.iter().copied())
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Text when stderr is a terminal, JSON otherwise (a file, a pipe, a
    /// container runtime collecting logs).
    Auto,
    /// One JSON object per line, with the span fields.
    Json,
    /// Human-readable lines; colored when stderr is a terminal.
    Text,
}

/// The names `--log-format` and `AUTHPULSE_LOG_FORMAT` take.
pub const LOG_FORMATS: &[&str] = &["auto", "json", "text"];

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<LogFormat, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(LogFormat::Auto),
            "json" => Ok(LogFormat::Json),
            "text" => Ok(LogFormat::Text),
            other => Err(format!(
                "unknown log format `{other}` (one of: {})",
                LOG_FORMATS.join(", ")
            )),
        }
    }
}

impl LogFormat {
    /// JSON or text, `Auto` decided by whether stderr is a terminal.
    fn resolve(self) -> (bool, bool) {
        use std::io::IsTerminal;
        let tty = std::io::stderr().is_terminal();
        let json = match self {
            LogFormat::Json => true,
            LogFormat::Text => false,
            LogFormat::Auto => !tty,
        };
        (json, tty)
    }
}

/// The parser of every binary's `--log-format` (`auto`, `json`, `text`,
/// listed in `--help` and shell completions).
pub fn log_format_parser() -> impl clap::builder::TypedValueParser<Value = LogFormat> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(LOG_FORMATS).try_map(|s| s.parse::<LogFormat>())
}

/// [`init_logging_as`] with the format from `AUTHPULSE_LOG_FORMAT`
/// (default `auto`).
pub fn init_logging() {
    init_logging_as(None);
}

/// Installs logging on stderr: `format` (`None`: `AUTHPULSE_LOG_FORMAT`,
/// default `auto`), filter from `AUTHPULSE_LOG` (default `info`; an invalid
/// one is reported and `info` used), reloadable through [`log_control`].
/// Every JSON line carries the fields of the spans it was logged in (`span`,
/// `spans`), e.g. `probe`, `region` and `agent_id` of a probe run; text
/// lines show them inline. Does nothing if a global subscriber is already
/// installed.
pub fn init_logging_as(format: Option<LogFormat>) {
    let env_format = std::env::var("AUTHPULSE_LOG_FORMAT").ok();
    let (format, format_problem) = match (format, env_format.as_deref().map(str::parse)) {
        (Some(f), _) => (f, None),
        (None, Some(Ok(f))) => (f, None),
        (None, Some(Err(e))) => (LogFormat::Auto, Some(e)),
        (None, None) => (LogFormat::Auto, None),
    };
    let (json, tty) = format.resolve();
    let from_env = std::env::var("AUTHPULSE_LOG").ok();
    let (start, problem) = match from_env.as_deref().map(parse_filter) {
        None | Some(Err(LogFilterError::Empty)) => (None, None),
        Some(Ok(parsed)) => (Some(parsed), None),
        Some(Err(e)) => (None, Some(e)),
    };
    let (text, filter) = match start {
        Some(parsed) => parsed,
        None => (DEFAULT_FILTER.to_string(), EnvFilter::new(DEFAULT_FILTER)),
    };
    let (filter, handle) = reload::Layer::new(filter);
    let json_layer = json.then(|| {
        tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_writer(std::io::stderr)
    });
    let text_layer = (!json).then(|| {
        tracing_subscriber::fmt::layer()
            .compact()
            .with_ansi(tty)
            .with_writer(std::io::stderr)
    });
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(credential_caps())
        .with(json_layer)
        .with(text_layer)
        .try_init();
    if installed.is_err() {
        return;
    }
    let _ = LOG_CONTROL.set(LogControl {
        handle,
        current: Mutex::new(text),
    });
    if let Some(e) = problem {
        tracing::warn!(error = %e, "AUTHPULSE_LOG is not a valid filter; logging at `{DEFAULT_FILTER}`");
    }
    if let Some(e) = format_problem {
        tracing::warn!(error = %e, "AUTHPULSE_LOG_FORMAT is not a log format; using `auto`");
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// Collects what the fmt layer writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner))
                .into_owned()
        }
    }

    #[test]
    fn filters_are_parsed_strictly() {
        assert_eq!(
            parse_filter(" debug , hyper=info ").expect("valid").0,
            "debug,hyper=info"
        );
        assert!(matches!(parse_filter(" , "), Err(LogFilterError::Empty)));
        let e = parse_filter("debug,hyper=loud").expect_err("bad level");
        assert!(e.to_string().contains("hyper=loud"), "{e}");
        assert!(matches!(
            parse_filter(&"a".repeat(MAX_FILTER_LEN + 1)),
            Err(LogFilterError::TooLong)
        ));
    }

    /// The same layers as `init_logging`, on a local subscriber: a filter
    /// set at run time takes effect, and `trace` (even aimed at the crate's
    /// own module) never lifts the cap on the credential loggers.
    #[test]
    fn reloaded_trace_keeps_credential_loggers_capped() {
        let out = Captured::default();
        let (filter, handle) = reload::Layer::new(EnvFilter::new("info"));
        let control = LogControl {
            handle,
            current: Mutex::new("info".into()),
        };
        let subscriber = tracing_subscriber::registry()
            .with(filter)
            .with(credential_caps())
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(out.clone()),
            );
        tracing::subscriber::with_default(subscriber, || {
            tracing::debug!(target: "authpulse_agent::scheduler", "debug-before");
            assert_eq!(
                control
                    .set("trace,aws_sigv4::http_request=trace")
                    .expect("valid"),
                "info"
            );
            assert_eq!(control.filter(), "trace,aws_sigv4::http_request=trace");
            tracing::debug!(target: "authpulse_agent::scheduler", "debug-after");
            tracing::trace!(target: "aws_sigv4::http_request::sign", "AKIA-sigv4-trace");
            tracing::debug!(target: "aws_smithy_runtime_api::client", "AKIA-smithy-debug");
            tracing::info!(target: "aws_sigv4::http_request::sign", "sigv4-info");
            assert!(control.set("debug,hyper=loud").is_err());
            assert_eq!(control.filter(), "trace,aws_sigv4::http_request=trace");
        });
        let text = out.text();
        assert!(!text.contains("debug-before"), "{text}");
        assert!(text.contains("debug-after"), "{text}");
        assert!(text.contains("sigv4-info"), "the cap is info: {text}");
        assert!(!text.contains("AKIA"), "{text}");
    }
}
