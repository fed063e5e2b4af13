//! Ownership of catalog items: `owner`, `runbook_url` and free `labels` on
//! probes, SLOs and gates. They route alerts (Alertmanager labels and
//! annotations, PagerDuty routing keys) and make `authpulse docs` a runbook,
//! so they are checked like the rest: label names Prometheus and
//! Alertmanager accept, none that authpulse sets itself, bounded sizes.
use std::collections::BTreeMap;

use super::kinds::{Issues, check_url};
use super::source_map::Seg;
use super::{Catalog, SloDef};

/// Label names authpulse sets on its own series and alerts; a catalog label
/// of the same name would be overwritten or would split series.
pub const RESERVED_LABELS: &[&str] = &[
    "alertname",
    "severity",
    "slo",
    "rule",
    "probe",
    "kind",
    "region",
    "agent_id",
    "gate",
    "owner",
    "runbook_url",
    "job",
    "instance",
    "le",
    "quantile",
    "window",
    "outcome",
    "class",
];

/// At most this many labels per item: each can become an alert label.
pub const MAX_LABELS: usize = 16;
const MAX_VALUE: usize = 256;
const MAX_OWNER: usize = 128;

/// A Prometheus label name: `[a-zA-Z_][a-zA-Z0-9_]*`, not `__`-prefixed
/// (reserved for Prometheus' internal use).
pub fn valid_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.starts_with("__")
}

/// Problems with one item's ownership keys, as paths relative to the item.
pub fn check(
    owner: Option<&str>,
    runbook_url: Option<&str>,
    labels: &BTreeMap<String, String>,
) -> Issues {
    let mut out: Issues = Vec::new();
    let key = |k: &str| Seg::Key(k.to_string());
    if let Some(o) = owner {
        if o.trim().is_empty() {
            out.push((vec![key("owner")], "must not be empty".into()));
        } else if o.len() > MAX_OWNER || o.chars().any(char::is_control) {
            out.push((
                vec![key("owner")],
                format!("at most {MAX_OWNER} characters, no control characters"),
            ));
        }
    }
    if let Some(u) = runbook_url {
        check_url(&mut out, vec![key("runbook_url")], u);
    }
    if labels.len() > MAX_LABELS {
        out.push((
            vec![key("labels")],
            format!("{} labels; at most {MAX_LABELS}", labels.len()),
        ));
    }
    for (name, value) in labels {
        let at = vec![key("labels"), key(name)];
        if !valid_label_name(name) {
            out.push((
                at,
                format!(
                    "invalid label name `{name}`: use [a-zA-Z_][a-zA-Z0-9_]*, not starting with __"
                ),
            ));
        } else if RESERVED_LABELS.contains(&name.as_str()) {
            out.push((
                at,
                format!("`{name}` is set by authpulse itself; choose another label name"),
            ));
        } else if value.len() > MAX_VALUE || value.chars().any(char::is_control) {
            out.push((
                at,
                format!("the value must be at most {MAX_VALUE} bytes without control characters"),
            ));
        }
    }
    out
}

impl Catalog {
    /// The SLO's owner: its own, else the one all its probes share.
    pub fn slo_owner<'a>(&'a self, slo: &'a SloDef) -> Option<&'a str> {
        slo.owner
            .as_deref()
            .or_else(|| self.shared(slo, |p| p.owner.as_deref()))
    }

    /// The SLO's runbook: its own, else the one all its probes share.
    pub fn slo_runbook_url<'a>(&'a self, slo: &'a SloDef) -> Option<&'a str> {
        slo.runbook_url
            .as_deref()
            .or_else(|| self.shared(slo, |p| p.runbook_url.as_deref()))
    }

    /// The value `f` gives for every probe of the SLO, if it is the same
    /// for all of them (a journey step counts as its journey).
    fn shared<'a>(
        &'a self,
        slo: &SloDef,
        f: impl Fn(&'a super::ProbeDef) -> Option<&'a str>,
    ) -> Option<&'a str> {
        let mut values = slo.probes.iter().map(|r| {
            let id = r.split_once('/').map_or(r.as_str(), |(j, _)| j);
            self.probe(id).and_then(&f)
        });
        let first = values.next()??;
        values.all(|v| v == Some(first)).then_some(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_names_follow_prometheus() {
        for ok in ["team", "_x", "a1_b", "Service"] {
            assert!(valid_label_name(ok), "{ok}");
        }
        for bad in ["", "1a", "a-b", "__name", "a.b", "é"] {
            assert!(!valid_label_name(bad), "{bad}");
        }
    }

    #[test]
    fn reserved_and_oversized_labels_are_refused() {
        let labels: BTreeMap<String, String> =
            [("slo".to_string(), "x".to_string())].into_iter().collect();
        assert!(check(None, None, &labels)[0].1.contains("set by authpulse"));
        let labels: BTreeMap<String, String> = (0..17)
            .map(|i| (format!("l{i}"), "v".to_string()))
            .collect();
        assert!(check(None, None, &labels)[0].1.contains("at most 16"));
        assert!(
            check(Some(" "), None, &BTreeMap::new())[0]
                .1
                .contains("empty")
        );
        assert!(
            check(None, Some("ftp://x"), &BTreeMap::new())[0]
                .1
                .contains("scheme")
        );
        assert!(
            check(
                Some("team-identity"),
                Some("https://wiki/r"),
                &BTreeMap::new()
            )
            .is_empty()
        );
    }
}
