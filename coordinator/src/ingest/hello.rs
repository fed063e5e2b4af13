//! The first message of a stream: a `Hello` that names the agent and its
//! region, within a timeout, with every field bounded (it is recorded,
//! audited and listed).

use super::*;

/// Longest accepted agent id; regions follow the catalog's id rule (63).
const MAX_AGENT_ID_LEN: usize = 128;
const MAX_REGION_LEN: usize = 63;
/// Caps on the rest of a Hello (it is recorded, audited and listed).
const MAX_VERSION_LEN: usize = 64;
const MAX_LABELS: usize = 32;
const MAX_LABEL_KEY_LEN: usize = 63;
const MAX_LABEL_VALUE_LEN: usize = 256;

/// `[a-z0-9-]`, non-empty, at most `max` bytes.
fn valid_name(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Waits for the first message, which must be a valid hello.
pub(super) async fn first_hello(
    inner: &Inner,
    incoming: &mut Streaming<AgentMessage>,
) -> Result<(Hello, i64), End> {
    let first = tokio::select! {
        _ = inner.shutdown.cancelled() => return Err(End::Status(Status::unavailable("coordinator shutting down"))),
        r = tokio::time::timeout(HELLO_TIMEOUT, incoming.message()) => r,
    };
    let msg = match first {
        Err(_) => {
            return Err(End::reject(
                "no_hello",
                Code::InvalidArgument,
                format!("no Hello within {}s", HELLO_TIMEOUT.as_secs()),
            ));
        }
        Ok(Ok(Some(m))) => (m, now_ms()),
        Ok(Ok(None)) => return Err(End::Closed),
        Ok(Err(status)) => {
            tracing::warn!(error = %status, "agent stream failed before hello");
            return Err(End::Status(status));
        }
    };
    let (msg, received_ms) = msg;
    let hello = match msg.msg {
        Some(AgentMsg::Hello(h)) => h,
        other => {
            let got = match other {
                Some(AgentMsg::Results(_)) => "results",
                Some(AgentMsg::Heartbeat(_)) => "a heartbeat",
                _ => "an empty or unknown message",
            };
            return Err(End::reject(
                "no_hello",
                Code::InvalidArgument,
                format!("the first message must be Hello, got {got}"),
            ));
        }
    };
    if !valid_name(&hello.agent_id, MAX_AGENT_ID_LEN) {
        return Err(End::reject(
            "invalid_hello",
            Code::InvalidArgument,
            format!(
                "invalid agent_id {}: use 1-{MAX_AGENT_ID_LEN} characters of [a-z0-9-]",
                quoted(&hello.agent_id)
            ),
        ));
    }
    if !valid_name(&hello.region, MAX_REGION_LEN) {
        return Err(End::reject(
            "invalid_hello",
            Code::InvalidArgument,
            format!(
                "invalid region {}: use 1-{MAX_REGION_LEN} characters of [a-z0-9-]",
                quoted(&hello.region)
            ),
        ));
    }
    if let Some(why) = hello_fields_invalid(&hello) {
        return Err(End::reject("invalid_hello", Code::InvalidArgument, why));
    }
    Ok((hello, received_ms))
}

/// What is wrong with a Hello's version or labels, if anything: they are
/// stored, audited and listed, so they are bounded like everything else.
fn hello_fields_invalid(hello: &Hello) -> Option<String> {
    if hello.version.len() > MAX_VERSION_LEN || hello.version.chars().any(char::is_control) {
        return Some(format!(
            "invalid version {}: at most {MAX_VERSION_LEN} bytes, no control characters",
            quoted(&hello.version)
        ));
    }
    if hello.labels.len() > MAX_LABELS {
        return Some(format!(
            "{} labels (at most {MAX_LABELS})",
            hello.labels.len()
        ));
    }
    for (k, v) in &hello.labels {
        let key_ok = !k.is_empty()
            && k.len() <= MAX_LABEL_KEY_LEN
            && k.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
            });
        if !key_ok {
            return Some(format!(
                "invalid label key {}: 1-{MAX_LABEL_KEY_LEN} characters of [a-z0-9_.-]",
                quoted(k)
            ));
        }
        if v.len() > MAX_LABEL_VALUE_LEN || v.chars().any(char::is_control) {
            return Some(format!(
                "label {k}: value {} over {MAX_LABEL_VALUE_LEN} bytes or with control characters",
                quoted(v)
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_name("eu-west-1", 63));
        assert!(!valid_name("", 63));
        assert!(!valid_name("EU", 63));
        assert!(!valid_name("a_b", 63));
        assert!(!valid_name(&"a".repeat(64), 63));
        assert_eq!(quoted("x\ny"), "\"x\\ny\"");
    }
}
