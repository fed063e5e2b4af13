//! `saml_metadata`: the IdP's SAML metadata as a service provider depends
//! on it. Step `metadata`: fetched, well-formed, the expected IdP entity,
//! an SSO endpoint, not past `validUntil`, and its signature: required and
//! verified against `metadata_certificate_file` when that is set, else
//! checked for integrity with the key it carries when the document is
//! signed (trust then comes from TLS alone, and the detail says so). Step
//! `certificates`: every signing and encryption certificate's days to
//! expiry, published as `authpulse_agent_saml_certificate_days_left{probe,
//! use}` (the earliest per use, like blackbox_exporter's earliest expiry),
//! failing with `assertion` under `min_cert_days`.
//!
//! Drift (on by default), as `oidc_discovery` does it: the entity id and
//! the SSO/SLO endpoint of each binding are compared with the last run's —
//! a change fails with `protocol` unless `allow_endpoint_changes` allows it
//! — and a changed certificate set is reported (`certificates_changed`),
//! never a failure: rotation is routine, an endpoint moving is not.
use std::collections::{BTreeMap, BTreeSet};

use authpulse_proto::catalog::SamlMetadataSpec;
use authpulse_proto::v1::FailureClass;
use serde_json::json;

use super::{Failure, Probe, ProbeOutcome, RunContext, StepOutcome, ms};
use crate::http::Timings;
use crate::saml::metadata::IdpMetadata;

const KIND: &str = "saml_metadata";
pub const DAYS_LEFT: &str = "authpulse_agent_saml_certificate_days_left";

impl Probe for SamlMetadataSpec {
    async fn run(&self, ctx: &mut RunContext<'_>) -> ProbeOutcome {
        let mut steps = Vec::new();
        let (mut s, found) =
            super::saml_login::fetch_metadata(&self.url, self.entity_id.as_deref(), &self.tls, ctx)
                .await;
        let Some((md, text)) = found else {
            steps.push(s);
            return ProbeOutcome::from_steps(steps, ctx.started.elapsed());
        };
        if let Err(f) = check_document(self, &md, &text, &mut s.detail) {
            s.failure = Some(f);
            steps.push(s);
            return ProbeOutcome::from_steps(steps, ctx.started.elapsed());
        }
        if self.drift {
            endpoint_drift(self, ctx, &mut s, &md);
        }
        steps.push(s);
        steps.push(certificates(self, ctx, &md));
        let total = ctx.started.elapsed();
        let mut outcome = ProbeOutcome::from_steps(steps, total);
        if let (true, Some(max)) = (outcome.success(), self.max_latency)
            && total > max
        {
            let m = format!(
                "took {} (max_latency {})",
                ms(total),
                humantime::format_duration(max)
            );
            outcome.detail = m.clone();
            outcome.failure = Some(Failure::new(FailureClass::Assertion, m));
        }
        outcome
    }
}

/// SSO present, `validUntil`, and the signature.
fn check_document(
    spec: &SamlMetadataSpec,
    md: &IdpMetadata,
    text: &str,
    detail: &mut String,
) -> Result<(), Failure> {
    let now = crate::saml::now_unix();
    if md.sso.is_empty() {
        return Err(Failure::new(
            FailureClass::Protocol,
            format!("the IdP {} lists no SingleSignOnService", md.entity_id),
        ));
    }
    if let Some(until) = md.valid_until
        && until <= now
    {
        return Err(Failure::new(
            FailureClass::TokenInvalid,
            format!(
                "the metadata expired: validUntil is {} days ago",
                (now - until) / 86_400
            ),
        ));
    }
    let signature = match &spec.metadata_certificate_file {
        Some(path) => {
            let certs = std::fs::read_to_string(path)
                .map_err(|e| e.to_string())
                .and_then(|t| crate::saml::pem_certificates(&t))
                .map_err(|e| {
                    Failure::new(
                        FailureClass::Config,
                        format!("metadata_certificate_file {}: {e}", path.display()),
                    )
                })?;
            if !md.signed {
                return Err(Failure::new(
                    FailureClass::TokenInvalid,
                    "the metadata is not signed, but metadata_certificate_file requires a signature",
                ));
            }
            verify(text, Some(&certs)).map_err(|m| Failure::new(FailureClass::TokenInvalid, m))?;
            "signature verified with metadata_certificate_file"
        }
        None if md.signed => {
            verify(text, None).map_err(|m| Failure::new(FailureClass::TokenInvalid, m))?;
            "signed (intact; no metadata_certificate_file to establish trust)"
        }
        None => "unsigned",
    };
    detail.push_str(&format!("; {signature}"));
    Ok(())
}

/// Verifies the metadata's signature: with `certs` only (trust), or with
/// the key the document carries (integrity). The signature must cover the
/// whole document or the element it is in.
fn verify(text: &str, certs: Option<&[Vec<u8>]>) -> Result<(), String> {
    let results = match certs {
        Some(certs) => {
            let mut last = Vec::new();
            for der in certs {
                let key = bergshamra::keys::loader::load_x509_cert_der(der)
                    .map_err(|e| format!("metadata_certificate_file: {e}"))?;
                let mut keys = bergshamra::KeysManager::new();
                keys.add_key(key);
                let ctx = bergshamra::DsigContext::new(keys);
                last = bergshamra::verify_all(&ctx, text)
                    .map_err(|e| format!("the metadata's signature can't be processed: {e}"))?;
                if last.iter().any(|r| r.is_valid()) {
                    break;
                }
            }
            last
        }
        None => {
            let ctx = bergshamra::DsigContext::new_permissive(bergshamra::KeysManager::new());
            bergshamra::verify_all(&ctx, text)
                .map_err(|e| format!("the metadata's signature can't be processed: {e}"))?
        }
    };
    let root_id = crate::saml::parse(text)
        .ok()
        .and_then(|d| d.root_element().attribute("ID").map(str::to_string));
    for r in &results {
        match r {
            bergshamra::VerifyResult::Valid { references, .. } => {
                let covers = references.iter().any(|x| {
                    x.digest_verified
                        && (x.uri.is_empty()
                            || root_id.as_deref().map(|id| format!("#{id}")) == Some(x.uri.clone()))
                });
                if covers {
                    return Ok(());
                }
            }
            bergshamra::VerifyResult::Invalid { reason } => {
                return Err(format!(
                    "the metadata's signature does not verify: {reason}"
                ));
            }
        }
    }
    Err("no valid signature covers the metadata document".into())
}

/// Step `certificates`: days to expiry per use, the gauge, the threshold,
/// and certificate drift.
fn certificates(
    spec: &SamlMetadataSpec,
    ctx: &mut RunContext<'_>,
    md: &IdpMetadata,
) -> StepOutcome {
    let now = crate::saml::now_unix();
    let mut failure = None;
    let mut parts = Vec::new();
    let mut earliest: BTreeMap<&str, f64> = BTreeMap::new();
    if !md.certificates.iter().any(|c| c.signing) {
        failure = Some(Failure::new(
            FailureClass::Protocol,
            format!("the IdP {} publishes no signing certificate", md.entity_id),
        ));
    }
    for c in &md.certificates {
        let days = c.days_left(now);
        for (on, name) in [(c.signing, "signing"), (c.encryption, "encryption")] {
            if on {
                let e = earliest.entry(name).or_insert(days);
                *e = e.min(days);
            }
        }
        parts.push(format!("{} {:.0}d", c.describe(), days.floor()));
        if failure.is_none() && days < f64::from(spec.min_cert_days) {
            let m = if days < 0.0 {
                format!("certificate {} expired {:.0} days ago", c.describe(), -days)
            } else {
                format!(
                    "certificate {} expires in {:.1} days (min_cert_days {})",
                    c.describe(),
                    days,
                    spec.min_cert_days
                )
            };
            failure = Some(Failure::new(FailureClass::Assertion, m));
        }
    }
    let probe = ctx.scope.clone();
    for (usage, days) in &earliest {
        metrics::gauge!(DAYS_LEFT, "probe" => probe.clone(), "use" => usage.to_string()).set(*days);
    }
    if let Some(d) = earliest.get("signing") {
        ctx.output("certificate_days_left", json!(d.floor()));
    }
    let mut detail = parts.join(", ");
    if spec.drift {
        let now_set: BTreeSet<String> = md
            .certificates
            .iter()
            .map(|c| c.fingerprint[..16.min(c.fingerprint.len())].to_string())
            .collect();
        let config = drift_config(spec);
        let change = super::drift::set(
            ctx,
            "drift.certificates",
            &config,
            "certificates_changed",
            &now_set,
        );
        if let Some(change) = change {
            detail = format!("{detail}; certificates rotated: {change}");
        }
    }
    StepOutcome {
        name: "certificates".into(),
        kind: KIND.into(),
        failure,
        timings: Timings::default(),
        detail,
    }
}

/// What the drift baseline belongs to: a changed configuration starts over.
fn drift_config(spec: &SamlMetadataSpec) -> String {
    format!("{} {}", spec.url, spec.entity_id.as_deref().unwrap_or(""))
}

/// The entity id and each binding's SSO and SLO location.
fn tracked(md: &IdpMetadata) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    m.insert("entity_id".to_string(), md.entity_id.clone());
    for (b, l) in &md.sso {
        m.insert(format!("sso:{b}"), l.clone());
    }
    for (b, l) in &md.slo {
        m.insert(format!("slo:{b}"), l.clone());
    }
    m
}

fn endpoint_drift(
    spec: &SamlMetadataSpec,
    ctx: &mut RunContext<'_>,
    step: &mut StepOutcome,
    md: &IdpMetadata,
) {
    let config = drift_config(spec);
    super::drift::locations(
        ctx,
        &config,
        &spec.allow_endpoint_changes,
        step,
        tracked(md),
    );
}
