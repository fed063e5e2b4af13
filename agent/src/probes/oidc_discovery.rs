//! `oidc_discovery`: fetches the OpenID Provider metadata, checks that its
//! `issuer` is exactly the configured one (OIDC Discovery §4.3: a mismatch
//! means tokens can't be validated) and the required endpoints are present
//! and are URLs, then fetches the JWKS and counts keys usable for verifying
//! signatures. Two steps, `discovery` and `jwks`, on one session.
//!
//! Drift (on by default): each run compares the issuer, the endpoint URLs
//! (every `*_endpoint` / `*_uri` member) and the signing key ids with what
//! this probe saw last run. A changed or removed URL fails the `discovery`
//! step with `protocol` ("token_endpoint changed from X to Y") unless
//! `allow_endpoint_changes` allows it; a new key set is information, not a
//! failure (the `jwks` detail says "signing keys rotated: +kidA -kidB" and
//! the output `keys_rotated` is true). The first run, and the first run
//! after the configured issuer or discovery URL changed, only record. The
//! baseline moves to what was seen every run, so one change fails one run.
use std::collections::{BTreeMap, BTreeSet};

use authpulse_proto::catalog::OidcDiscoverySpec;
use authpulse_proto::v1::FailureClass;
use jsonwebtoken::jwk::{Jwk, PublicKeyUse, ThumbprintHash};
use serde_json::{Map, Value as Json};

use super::{Failure, Probe, ProbeOutcome, RunContext, StepOutcome, ms, snippet};
use crate::http::{Request, Timings};

impl Probe for OidcDiscoverySpec {
    async fn run(&self, ctx: &mut RunContext<'_>) -> ProbeOutcome {
        let mut steps = Vec::new();
        let (mut discovery, found) = discovery(self, ctx).await;
        if let Some((_, doc)) = &found
            && self.drift
        {
            endpoint_drift(self, ctx, &mut discovery, doc);
        }
        steps.push(discovery);
        if let Some((jwks_uri, _)) = found {
            let (mut step, key_ids) = jwks(self, ctx, jwks_uri).await;
            if let Some(key_ids) = key_ids
                && self.drift
            {
                key_drift(self, ctx, &mut step, key_ids);
            }
            steps.push(step);
        }
        if let (None, Some(max)) = (
            steps.iter().find_map(|s| s.failure.as_ref()),
            self.max_latency,
        ) {
            let total = ctx.started.elapsed();
            if total > max {
                let mut outcome = ProbeOutcome::from_steps(steps, total);
                outcome.failure = Some(Failure::new(
                    FailureClass::Assertion,
                    format!(
                        "took {} (max_latency {})",
                        ms(total),
                        humantime::format_duration(max)
                    ),
                ));
                outcome.detail = outcome
                    .failure
                    .as_ref()
                    .map(|f| f.message.clone())
                    .unwrap_or_default();
                return outcome;
            }
        }
        ProbeOutcome::from_steps(steps, ctx.started.elapsed())
    }
}

fn step(name: &str, failure: Option<Failure>, timings: Timings, detail: String) -> StepOutcome {
    StepOutcome {
        name: name.into(),
        kind: "oidc_discovery".into(),
        failure,
        timings,
        detail,
    }
}

fn discovery_url(spec: &OidcDiscoverySpec) -> String {
    spec.document_url()
}

/// Step 1: the metadata document. Returns the JWKS URL (when step 2 should
/// run) and the document.
async fn discovery(
    spec: &OidcDiscoverySpec,
    ctx: &mut RunContext<'_>,
) -> (StepOutcome, Option<(url::Url, Map<String, Json>)>) {
    let raw = discovery_url(spec);
    let url = match url::Url::parse(&raw) {
        Ok(u) => u,
        Err(e) => {
            let f = Failure::new(FailureClass::Config, format!("discovery URL `{raw}`: {e}"));
            return (
                step("discovery", Some(f), Timings::default(), String::new()),
                None,
            );
        }
    };
    let resp = match ctx.session.send(Request::get(url, &spec.tls)).await {
        Ok(r) => r,
        Err(e) => {
            return (
                step(
                    "discovery",
                    Some(Failure::new(e.class, e.message.clone())),
                    e.timings,
                    String::new(),
                ),
                None,
            );
        }
    };
    let timings = resp.timings;
    let fail = |class, msg: String| {
        (
            step(
                "discovery",
                Some(Failure::new(class, msg)),
                timings,
                String::new(),
            ),
            None,
        )
    };
    if !resp.status.is_success() {
        return fail(
            FailureClass::HttpStatus,
            format!("{raw} answered {}: {}", resp.status, snippet(&resp.body)),
        );
    }
    let doc: Map<String, Json> = match serde_json::from_slice(&resp.body) {
        Ok(Json::Object(m)) => m,
        Ok(_) => {
            return fail(
                FailureClass::Protocol,
                "discovery document is not a JSON object".into(),
            );
        }
        Err(e) => {
            return fail(
                FailureClass::Protocol,
                format!(
                    "discovery document is not JSON ({e}): {}",
                    snippet(&resp.body)
                ),
            );
        }
    };
    match doc.get("issuer").and_then(|v| v.as_str()) {
        Some(iss) if iss == spec.issuer => {}
        Some(iss) => {
            return fail(
                FailureClass::Protocol,
                format!(
                    "issuer mismatch: document says {iss:?}, expected {:?}",
                    spec.issuer
                ),
            );
        }
        None => {
            return fail(
                FailureClass::Protocol,
                "discovery document has no `issuer`".into(),
            );
        }
    }
    // Endpoints must be https, except when the issuer itself is plain http
    // (a lab IdP on loopback).
    let allow_http = spec.issuer.starts_with("http://");
    for field in &spec.required_endpoints {
        let Some(value) = doc.get(field) else {
            return fail(
                FailureClass::Protocol,
                format!("required metadata `{field}` is missing"),
            );
        };
        if field.ends_with("_endpoint") || field.ends_with("_uri") {
            let Some(s) = value.as_str() else {
                return fail(FailureClass::Protocol, format!("`{field}` is not a string"));
            };
            match url::Url::parse(s) {
                Ok(u) if u.scheme() == "https" || (allow_http && u.scheme() == "http") => {}
                Ok(u) => {
                    return fail(
                        FailureClass::Protocol,
                        format!("`{field}` uses scheme `{}`: {s}", u.scheme()),
                    );
                }
                Err(e) => {
                    return fail(
                        FailureClass::Protocol,
                        format!("`{field}` is not a URL ({e}): {s}"),
                    );
                }
            }
        }
    }
    let jwks_uri = doc
        .get("jwks_uri")
        .and_then(|v| v.as_str())
        .map(url::Url::parse);
    let jwks_uri = match jwks_uri {
        Some(Ok(u)) => u,
        Some(Err(e)) => {
            return fail(
                FailureClass::Protocol,
                format!("`jwks_uri` is not a URL: {e}"),
            );
        }
        None => {
            return fail(
                FailureClass::Protocol,
                "discovery document has no `jwks_uri`".into(),
            );
        }
    };
    let detail = format!(
        "issuer ok, {} endpoints present",
        spec.required_endpoints.len()
    );
    (
        step("discovery", None, timings, detail),
        Some((jwks_uri, doc)),
    )
}

/// Step 2: the key set, counting keys a relying party could verify with.
/// Also returns the ids of those keys (for drift) when the step passed.
async fn jwks(
    spec: &OidcDiscoverySpec,
    ctx: &mut RunContext<'_>,
    url: url::Url,
) -> (StepOutcome, Option<BTreeSet<String>>) {
    let resp = match ctx.session.send(Request::get(url.clone(), &spec.tls)).await {
        Ok(r) => r,
        Err(e) => {
            return (
                step(
                    "jwks",
                    Some(Failure::new(e.class, e.message.clone())),
                    e.timings,
                    String::new(),
                ),
                None,
            );
        }
    };
    let timings = resp.timings;
    let fail = |class, msg: String| {
        (
            step(
                "jwks",
                Some(Failure::new(class, msg)),
                timings,
                String::new(),
            ),
            None,
        )
    };
    if !resp.status.is_success() {
        return fail(
            FailureClass::HttpStatus,
            format!("{url} answered {}: {}", resp.status, snippet(&resp.body)),
        );
    }
    // Parse key by key: one key of an unknown type must not hide the others.
    let raw: serde_json::Value = match serde_json::from_slice(&resp.body) {
        Ok(v) => v,
        Err(e) => {
            return fail(
                FailureClass::Protocol,
                format!("JWKS is not JSON ({e}): {}", snippet(&resp.body)),
            );
        }
    };
    let Some(keys) = raw.get("keys").and_then(|k| k.as_array()) else {
        return fail(FailureClass::Protocol, "JWKS has no `keys` array".into());
    };
    let mut usable = Vec::new();
    let mut key_ids = BTreeSet::new();
    let mut skipped = 0usize;
    for key in keys {
        match serde_json::from_value::<Jwk>(key.clone()) {
            Ok(jwk) if signing_key(&jwk) => {
                usable.push(describe(&jwk));
                key_ids.insert(key_id(&jwk));
            }
            _ => skipped += 1,
        }
    }
    if usable.len() < spec.min_signing_keys {
        return fail(
            FailureClass::Protocol,
            format!(
                "{} usable signing key(s), need {} ({} key(s) in the set, {skipped} unusable)",
                usable.len(),
                spec.min_signing_keys,
                keys.len()
            ),
        );
    }
    (
        step(
            "jwks",
            None,
            timings,
            format!("{} signing key(s): {}", usable.len(), usable.join(", ")),
        ),
        Some(key_ids),
    )
}

/// A key counts when it is meant for signatures (or says nothing), is not a
/// symmetric secret, and jsonwebtoken can build a verification key from it.
fn signing_key(jwk: &Jwk) -> bool {
    let for_sig = matches!(
        jwk.common.public_key_use,
        None | Some(PublicKeyUse::Signature)
    );
    let asymmetric = !matches!(
        jwk.algorithm,
        jsonwebtoken::jwk::AlgorithmParameters::OctetKey(_)
    );
    for_sig && asymmetric && jsonwebtoken::DecodingKey::from_jwk(jwk).is_ok()
}

fn describe(jwk: &Jwk) -> String {
    let alg = jwk
        .common
        .key_algorithm
        .map(|a| format!("{a:?}"))
        .unwrap_or_else(|| "alg?".into());
    match &jwk.common.key_id {
        Some(kid) => format!("{alg} kid={kid}"),
        None => alg,
    }
}

/// A key's identity for drift: its `kid`, else its RFC 7638 thumbprint.
fn key_id(jwk: &Jwk) -> String {
    match &jwk.common.key_id {
        Some(kid) => kid.clone(),
        None => match jwk.thumbprint(ThumbprintHash::SHA256) {
            Ok(t) => format!("thumbprint:{t}"),
            Err(_) => describe(jwk),
        },
    }
}

/// What the drift baseline belongs to: a changed configuration starts over.
fn drift_config(spec: &OidcDiscoverySpec) -> String {
    format!("{} {}", spec.issuer, discovery_url(spec))
}

/// The issuer and every URL-valued `*_endpoint` / `*_uri` member.
fn tracked_urls(doc: &Map<String, Json>) -> BTreeMap<String, String> {
    doc.iter()
        .filter(|(k, _)| *k == "issuer" || k.ends_with("_endpoint") || k.ends_with("_uri"))
        .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
        .collect()
}

/// Compares the document's URLs with the last run's; a changed or removed
/// one fails the step unless allowed. Records what it saw.
fn endpoint_drift(
    spec: &OidcDiscoverySpec,
    ctx: &mut RunContext<'_>,
    step: &mut StepOutcome,
    doc: &Map<String, Json>,
) {
    let config = drift_config(spec);
    super::drift::locations(
        ctx,
        &config,
        &spec.allow_endpoint_changes,
        step,
        tracked_urls(doc),
    );
}

/// Compares the signing key ids with the last run's: a rotation is
/// reported in the detail and as `keys_rotated`, never as a failure.
fn key_drift(
    spec: &OidcDiscoverySpec,
    ctx: &mut RunContext<'_>,
    step: &mut StepOutcome,
    now: BTreeSet<String>,
) {
    let config = drift_config(spec);
    if let Some(changes) = super::drift::set(ctx, "drift.keys", &config, "keys_rotated", &now) {
        step.detail = format!("{}; signing keys rotated: {changes}", step.detail);
    }
}
