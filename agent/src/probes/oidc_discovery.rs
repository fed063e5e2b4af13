//! `oidc_discovery`: fetches the OpenID Provider metadata, checks that its
//! `issuer` is exactly the configured one (OIDC Discovery §4.3: a mismatch
//! means tokens can't be validated) and the required endpoints are present
//! and are URLs, then fetches the JWKS and counts keys usable for verifying
//! signatures. Two steps, `discovery` and `jwks`, on one session.
use authpulse_proto::catalog::OidcDiscoverySpec;
use authpulse_proto::v1::FailureClass;
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};

use super::{Failure, Probe, ProbeOutcome, RunContext, StepOutcome, ms, snippet};
use crate::http::{Request, Timings};

impl Probe for OidcDiscoverySpec {
    async fn run(&self, ctx: &mut RunContext<'_>) -> ProbeOutcome {
        let mut steps = Vec::new();
        let (discovery, jwks_uri) = discovery(self, ctx).await;
        steps.push(discovery);
        if let Some(jwks_uri) = jwks_uri {
            steps.push(jwks(self, ctx, jwks_uri).await);
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
    spec.discovery_url.clone().unwrap_or_else(|| {
        format!(
            "{}/.well-known/openid-configuration",
            spec.issuer.trim_end_matches('/')
        )
    })
}

/// Step 1: the metadata document. Returns the JWKS URL when step 2 should run.
async fn discovery(
    spec: &OidcDiscoverySpec,
    ctx: &mut RunContext<'_>,
) -> (StepOutcome, Option<url::Url>) {
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
    let doc: serde_json::Value = match serde_json::from_slice(&resp.body) {
        Ok(serde_json::Value::Object(m)) => serde_json::Value::Object(m),
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
        Some(Ok(u)) => Some(u),
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
    (step("discovery", None, timings, detail), jwks_uri)
}

/// Step 2: the key set, counting keys a relying party could verify with.
async fn jwks(spec: &OidcDiscoverySpec, ctx: &mut RunContext<'_>, url: url::Url) -> StepOutcome {
    let resp = match ctx.session.send(Request::get(url.clone(), &spec.tls)).await {
        Ok(r) => r,
        Err(e) => {
            return step(
                "jwks",
                Some(Failure::new(e.class, e.message.clone())),
                e.timings,
                String::new(),
            );
        }
    };
    let timings = resp.timings;
    let fail = |class, msg: String| {
        step(
            "jwks",
            Some(Failure::new(class, msg)),
            timings,
            String::new(),
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
    let mut skipped = 0usize;
    for key in keys {
        match serde_json::from_value::<Jwk>(key.clone()) {
            Ok(jwk) if signing_key(&jwk) => usable.push(describe(&jwk)),
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
    step(
        "jwks",
        None,
        timings,
        format!("{} signing key(s): {}", usable.len(), usable.join(", ")),
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
