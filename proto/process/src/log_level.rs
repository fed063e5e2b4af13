//! The log-level request both HTTP servers answer (`PUT /log-level` on the
//! agent, `PUT /api/v1/admin/log-level` on the coordinator): one body format,
//! one size cap, one answer shape. The servers keep only what differs between
//! them: who may ask (loopback peers; an admin caller) and the audit line.
use serde_json::{Value, json};

use crate::logging::{LogControl, LogFilterError, log_control};

/// Longest filter accepted in a request body, in characters: a filter is a
/// handful of directives, not a document.
pub const MAX_FILTER_CHARS: usize = 1000;

/// Why a log-level request was not applied; [`LogLevelError::status`] is the
/// HTTP status to answer with.
#[derive(Debug, thiserror::Error)]
pub enum LogLevelError {
    #[error("this process does not run the reloadable log filter")]
    NoControl,
    #[error("expected a JSON body {{\"filter\": \"...\"}}")]
    Body,
    #[error("filter longer than {MAX_FILTER_CHARS} characters")]
    TooLong,
    #[error(transparent)]
    Filter(#[from] LogFilterError),
}

impl LogLevelError {
    /// 503 when the process has no filter of ours to change (a library
    /// embedded in tests), else 400: the request was at fault.
    pub fn status(&self) -> u16 {
        match self {
            LogLevelError::NoControl => 503,
            _ => 400,
        }
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    filter: String,
}

/// Reads `{"filter": "..."}` (any content type: `curl -d` sends a form type).
pub fn parse_body(body: &[u8]) -> Result<String, LogLevelError> {
    let body: Body = serde_json::from_slice(body).map_err(|_| LogLevelError::Body)?;
    if body.filter.chars().count() > MAX_FILTER_CHARS {
        return Err(LogLevelError::TooLong);
    }
    Ok(body.filter)
}

/// The answer to `GET`: the filter in force and the caps on top of any filter.
pub fn current() -> Result<Value, LogLevelError> {
    let control = log_control().ok_or(LogLevelError::NoControl)?;
    Ok(json!({ "filter": control.filter(), "capped": LogControl::capped() }))
}

/// What a successful change did, for the answer and the audit line.
#[derive(Debug, Clone)]
pub struct Change {
    pub filter: String,
    pub previous: String,
}

impl Change {
    /// The answer to a successful `PUT`.
    pub fn to_json(&self) -> Value {
        json!({
            "filter": self.filter,
            "previous": self.previous,
            "capped": LogControl::capped(),
        })
    }
}

/// Applies a `PUT` body: parses it and swaps the filter; on any error the
/// running filter stays.
pub fn apply(body: &[u8]) -> Result<Change, LogLevelError> {
    log_control().ok_or(LogLevelError::NoControl)?;
    set(&parse_body(body)?)
}

/// Swaps the filter for an already parsed request (for a server that audits
/// the filter asked for).
pub fn set(filter: &str) -> Result<Change, LogLevelError> {
    let control = log_control().ok_or(LogLevelError::NoControl)?;
    let previous = control.set(filter)?;
    Ok(Change {
        filter: control.filter(),
        previous,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_read_strictly() {
        assert_eq!(
            parse_body(br#"{"filter":"debug"}"#).expect("valid"),
            "debug"
        );
        for bad in [
            &b""[..],
            b"filter=debug",
            br#"{"filter":7}"#,
            br#"{"filter":"debug","extra":1}"#,
            br#"{}"#,
        ] {
            assert!(
                matches!(parse_body(bad), Err(LogLevelError::Body)),
                "{bad:?}"
            );
        }
        let long = format!(r#"{{"filter":"{}"}}"#, "a".repeat(MAX_FILTER_CHARS + 1));
        assert!(matches!(
            parse_body(long.as_bytes()),
            Err(LogLevelError::TooLong)
        ));
    }

    #[test]
    fn without_the_reloadable_filter_requests_answer_503() {
        // Library tests never call init_logging.
        let e = apply(br#"{"filter":"debug"}"#).expect_err("no control");
        assert_eq!(e.status(), 503);
        assert_eq!(current().expect_err("no control").status(), 503);
    }
}
