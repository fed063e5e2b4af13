//! Drift between runs, shared by the metadata kinds (`oidc_discovery`,
//! `saml_metadata`): named locations whose change fails a step unless the
//! catalog allows it, and sets (signing keys, certificates) whose change is
//! only reported. Baselines live in [`super::ProbeMemory`] tagged with the
//! probe's configuration, so a changed configuration starts over; the first
//! run only records.
use std::collections::{BTreeMap, BTreeSet};

use authpulse_proto::catalog::AllowedChanges;
use authpulse_proto::v1::FailureClass;
use serde_json::{Value as Json, json};

use super::{Failure, RunContext, StepOutcome};

/// The baseline stored under `key` when it belongs to `config`.
fn baseline(ctx: &RunContext<'_>, key: &str, config: &str, field: &str) -> Option<Json> {
    match ctx.recall(key) {
        Some(b) if b.get("config").and_then(Json::as_str) == Some(config) => Some(b[field].clone()),
        _ => None,
    }
}

/// Compares `now` (name → location) with the last run's: a changed or
/// removed location fails `step` with `protocol` unless `allow` allows its
/// name; additions and allowed changes go to the detail. Sets the output
/// `endpoints_changed` and records `now`.
pub fn locations(
    ctx: &mut RunContext<'_>,
    config: &str,
    allow: &AllowedChanges,
    step: &mut StepOutcome,
    now: BTreeMap<String, String>,
) {
    let before = baseline(ctx, "drift.endpoints", config, "urls");
    ctx.remember("drift.endpoints", json!({ "config": config, "urls": &now }));
    let Some(before) = before else {
        ctx.output("endpoints_changed", false);
        return;
    };
    let before: BTreeMap<String, String> = serde_json::from_value(before).unwrap_or_default();
    let mut failing = Vec::new();
    let mut noted = Vec::new();
    let names: BTreeSet<&String> = before.keys().chain(now.keys()).collect();
    for name in names {
        let change = match (before.get(name), now.get(name)) {
            (Some(a), Some(b)) if a != b => format!("{name} changed from {a} to {b}"),
            (Some(a), None) => format!("{name} removed (was {a})"),
            (None, Some(b)) => {
                noted.push(format!("{name} added: {b}"));
                continue;
            }
            _ => continue,
        };
        if allow.allows(name) {
            noted.push(format!("{change} (allowed)"));
        } else {
            failing.push(change);
        }
    }
    ctx.output(
        "endpoints_changed",
        !failing.is_empty() || !noted.is_empty(),
    );
    if !noted.is_empty() {
        step.detail = format!("{}; {}", step.detail, noted.join("; "));
    }
    if !failing.is_empty() {
        step.failure = Some(Failure::new(FailureClass::Protocol, failing.join("; ")));
    }
}

/// Compares the set `now` with the last run's under `key`: `+added
/// -removed` when it changed (never a failure). Sets the boolean output
/// `output` and records `now`.
pub fn set(
    ctx: &mut RunContext<'_>,
    key: &str,
    config: &str,
    output: &str,
    now: &BTreeSet<String>,
) -> Option<String> {
    let before = baseline(ctx, key, config, "set");
    ctx.remember(key, json!({ "config": config, "set": now }));
    let Some(before) = before else {
        ctx.output(output, false);
        return None;
    };
    let before: BTreeSet<String> = serde_json::from_value(before).unwrap_or_default();
    let changes: Vec<String> = now
        .difference(&before)
        .map(|k| format!("+{k}"))
        .chain(before.difference(now).map(|k| format!("-{k}")))
        .collect();
    ctx.output(output, !changes.is_empty());
    (!changes.is_empty()).then(|| changes.join(" "))
}
