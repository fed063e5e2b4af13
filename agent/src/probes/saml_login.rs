//! `saml_login`: SAML 2.0 Web SSO as a person does it, without a browser,
//! with authpulse as the service provider. The IdP comes from its metadata
//! (step `metadata`, fetched each run so an outage of it shows) or from
//! explicit keys. An AuthnRequest goes to the SSO URL by the HTTP-Redirect
//! or HTTP-POST binding (signed with `sp_key` when `sign_request`), or the
//! walk starts at `idp_initiated_url` (step `sso`); the login engine walks
//! the IdP's pages (`login`, `totp`, `consent`) and stops at the
//! self-posting form aimed at `acs_url`, which is never requested. Step
//! `assertion` validates the `SAMLResponse` ([`crate::saml::response`]) and
//! then `expect`. Failure classes: bad credentials → `auth_rejected` (the
//! engine), a non-Success status → `protocol` with its codes, a bad
//! signature, certificate, audience, destination, recipient, request id or
//! time condition → `token_invalid`, an `expect` mismatch → `assertion`.
//! Outputs: `name_id`, `name_id_format`, `session_index`, `authn_context`,
//! `attributes` (name → values), `issuer`.
use authpulse_proto::catalog::{SamlBinding, SamlLoginSpec};
use authpulse_proto::v1::FailureClass;
use serde_json::json;
use url::Url;

use super::{Failure, Probe, ProbeOutcome, RunContext, StepOutcome, config_failure, ms, snippet};
use crate::http::{Request, Timings};
use crate::login::{Reached, Start};
use crate::saml::metadata::{self, Certificate, IdpMetadata};
use crate::saml::request::{self, SpKey};
use crate::saml::response::{self, Assertion, Rejection};

const KIND: &str = "saml_login";

impl Probe for SamlLoginSpec {
    async fn run(&self, ctx: &mut RunContext<'_>) -> ProbeOutcome {
        let keys = login_keys(self);
        let creds = match keys.credentials(ctx) {
            Ok(c) => c,
            Err(m) => return config_failure(ctx, KIND, m),
        };
        let sp_key = match self.sp_key.as_ref().map(|v| sp_key(v, ctx)).transpose() {
            Ok(k) => k,
            Err(m) => return config_failure(ctx, KIND, m),
        };
        let mut steps = Vec::new();
        let Some(idp) = idp(self, ctx, &mut steps).await else {
            return finish(ctx, steps);
        };

        let (start, request_id) = match start(self, &idp, sp_key.as_ref()) {
            Ok(s) => s,
            Err(m) => return config_failure(ctx, KIND, m),
        };
        let engine = match keys.config(&creds, ctx, KIND, "sso") {
            Ok(c) => c,
            Err(m) => return config_failure(ctx, KIND, m),
        };
        let acs = match Url::parse(&self.acs_url) {
            Ok(u) => u,
            Err(e) => return config_failure(ctx, KIND, format!("acs_url: {e}")),
        };
        let mut recorder = keys.recorder(&creds, &engine, ctx);
        let stop = crate::login::StopAtUrl(&acs);
        let reached =
            crate::login::walk(&engine, &stop, ctx, &mut steps, start, recorder.as_mut()).await;
        drop(recorder);
        let fields = match reached {
            None => return finish(ctx, steps),
            Some(Reached::Post { fields, .. }) => fields,
            Some(Reached::Redirect(u)) => {
                let artifact = u.query_pairs().any(|(k, _)| k == "SAMLart");
                let f = Failure::new(
                    FailureClass::Protocol,
                    if artifact {
                        "the IdP redirected to the ACS with a SAMLart (HTTP-Artifact binding), \
                         which this probe does not resolve; configure the SP for HTTP-POST"
                            .to_string()
                    } else {
                        "the IdP redirected to the ACS instead of posting a SAMLResponse to it"
                            .to_string()
                    },
                );
                steps.push(step(
                    "assertion",
                    Some(f),
                    Timings::default(),
                    String::new(),
                ));
                return finish(ctx, steps);
            }
        };
        assertion_step(
            self,
            ctx,
            &mut steps,
            &idp,
            &fields,
            request_id.as_deref(),
            sp_key.as_ref(),
        );
        finish(ctx, steps)
    }
}

fn finish(ctx: &RunContext<'_>, steps: Vec<StepOutcome>) -> ProbeOutcome {
    ProbeOutcome::from_steps(steps, ctx.started.elapsed())
}

fn step(name: &str, failure: Option<Failure>, timings: Timings, detail: String) -> StepOutcome {
    StepOutcome {
        name: name.into(),
        kind: KIND.into(),
        failure,
        timings,
        detail,
    }
}

fn sp_key(v: &authpulse_proto::catalog::Value, ctx: &RunContext<'_>) -> Result<SpKey, String> {
    let pem = crate::secrets::resolve(v, ctx.secrets, &ctx.redactor).map_err(|e| e.to_string())?;
    SpKey::from_pem(&pem)
}

/// The IdP: from its metadata (a `metadata` step when fetched), with the
/// spec's explicit keys overriding it. `None` when the step failed.
async fn idp(
    spec: &SamlLoginSpec,
    ctx: &mut RunContext<'_>,
    steps: &mut Vec<StepOutcome>,
) -> Option<IdpMetadata> {
    let from_metadata = if let Some(raw) = &spec.idp_metadata_url {
        let (s, md) = fetch_metadata(raw, spec.idp_entity_id.as_deref(), &spec.tls, ctx).await;
        steps.push(s);
        Some(md?.0)
    } else if let Some(path) = &spec.idp_metadata_file {
        let read = std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|x| metadata::read(&x, spec.idp_entity_id.as_deref()).map_err(|e| e.0));
        match read {
            Ok(md) => Some(md),
            Err(e) => {
                let f = Failure::new(
                    FailureClass::Config,
                    format!("idp_metadata_file {}: {e}", path.display()),
                );
                steps.push(step("metadata", Some(f), Timings::default(), String::new()));
                return None;
            }
        }
    } else {
        None
    };
    let mut idp = from_metadata.unwrap_or_else(|| IdpMetadata {
        entity_id: spec.idp_entity_id.clone().unwrap_or_default(),
        sso: Default::default(),
        slo: Default::default(),
        certificates: Vec::new(),
        signed: false,
        valid_until: None,
    });
    if let Some(path) = &spec.idp_certificate_file {
        let certs = std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|t| crate::saml::pem_certificates(&t))
            .and_then(|ders| {
                ders.into_iter()
                    .map(|d| Certificate::from_der(d, true, false))
                    .collect::<Result<Vec<_>, _>>()
            });
        match certs {
            Ok(c) => idp.certificates = c,
            Err(e) => {
                let f = Failure::new(
                    FailureClass::Config,
                    format!("idp_certificate_file {}: {e}", path.display()),
                );
                steps.push(step("metadata", Some(f), Timings::default(), String::new()));
                return None;
            }
        }
    }
    Some(idp)
}

/// Fetches and reads the IdP metadata: the `metadata` step (with the
/// document's text, for a signature check).
pub(crate) async fn fetch_metadata(
    raw: &str,
    entity: Option<&str>,
    tls: &authpulse_proto::catalog::TlsSpec,
    ctx: &mut RunContext<'_>,
) -> (StepOutcome, Option<(IdpMetadata, String)>) {
    let fail = |class, m: String, t: Timings| {
        (
            step("metadata", Some(Failure::new(class, m)), t, String::new()),
            None,
        )
    };
    let url = match Url::parse(raw) {
        Ok(u) => u,
        Err(e) => {
            return fail(
                FailureClass::Config,
                format!("metadata URL `{raw}`: {e}"),
                Timings::default(),
            );
        }
    };
    let resp = match ctx.session.send(Request::get(url, tls)).await {
        Ok(r) => r,
        Err(e) => return fail(e.class, e.message.clone(), e.timings),
    };
    let t = resp.timings;
    if !resp.status.is_success() {
        return fail(
            FailureClass::HttpStatus,
            format!("{raw} answered {}: {}", resp.status, snippet(&resp.body)),
            t,
        );
    }
    let text = String::from_utf8_lossy(&resp.body).into_owned();
    match metadata::read(&text, entity) {
        Ok(md) => {
            let detail = format!(
                "{} in {}: entity {}, {} certificate(s), SSO {}",
                resp.status,
                ms(t.total),
                md.entity_id,
                md.certificates.len(),
                md.sso.keys().cloned().collect::<Vec<_>>().join("/")
            );
            (step("metadata", None, t, detail), Some((md, text)))
        }
        Err(e) => fail(FailureClass::Protocol, format!("metadata at {raw}: {e}"), t),
    }
}

/// The walk's first request and the AuthnRequest ID (none when
/// IdP-initiated).
fn start(
    spec: &SamlLoginSpec,
    idp: &IdpMetadata,
    key: Option<&SpKey>,
) -> Result<(Start, Option<String>), String> {
    if let Some(raw) = &spec.idp_initiated_url {
        let url = Url::parse(raw).map_err(|e| format!("idp_initiated_url `{raw}`: {e}"))?;
        return Ok((Start::Get(url), None));
    }
    let binding = match spec.binding {
        SamlBinding::Redirect => "redirect",
        SamlBinding::Post => "post",
    };
    let raw = spec
        .idp_sso_url
        .clone()
        .or_else(|| idp.sso.get(binding).cloned())
        .ok_or_else(|| {
            format!(
                "the IdP's metadata has no SingleSignOnService for the HTTP-{} binding (it has: {}); \
                 set `binding` or `idp_sso_url`",
                if binding == "redirect" { "Redirect" } else { "POST" },
                idp.sso.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        })?;
    let sso = Url::parse(&raw).map_err(|e| format!("SSO URL `{raw}`: {e}"))?;
    let req = request::build(&request::Params {
        sp_entity_id: &spec.sp_entity_id,
        acs_url: &spec.acs_url,
        destination: sso.as_str(),
        name_id_format: spec.name_id_format.as_deref(),
        force_authn: spec.force_authn,
    });
    let signing = if spec.sign_request { key } else { None };
    let start = match spec.binding {
        SamlBinding::Redirect => Start::Get(request::redirect_url(&sso, &req.xml, None, signing)?),
        SamlBinding::Post => Start::Post {
            url: sso,
            fields: vec![("SAMLRequest".into(), request::post_value(&req, signing)?)],
        },
    };
    Ok((start, Some(req.id)))
}

/// Step `assertion`: the posted SAMLResponse, validated, then `expect`.
fn assertion_step(
    spec: &SamlLoginSpec,
    ctx: &mut RunContext<'_>,
    steps: &mut Vec<StepOutcome>,
    idp: &IdpMetadata,
    fields: &[(String, String)],
    request_id: Option<&str>,
    key: Option<&SpKey>,
) {
    let began = std::time::Instant::now();
    let timed = |began: std::time::Instant| Timings {
        total: began.elapsed(),
        ..Timings::default()
    };
    let Some((_, value)) = fields.iter().find(|(k, _)| k == "SAMLResponse") else {
        let names: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
        let f = Failure::new(
            FailureClass::Protocol,
            format!("the form posted to the ACS has no SAMLResponse (fields: {names:?})"),
        );
        steps.push(step("assertion", Some(f), timed(began), String::new()));
        return;
    };
    // A bearer assertion is a credential until it expires.
    ctx.redactor.remember(value);
    let trusted: Vec<Certificate> = idp.signing_certificates().cloned().collect();
    let expected = response::Expected {
        idp_entity_id: spec.idp_entity_id.as_deref().unwrap_or(&idp.entity_id),
        sp_entity_id: &spec.sp_entity_id,
        acs_url: &spec.acs_url,
        in_response_to: request_id,
        trusted: &trusted,
        sp_key_pem: key.map(SpKey::pem),
        require: spec.require_signature,
        clock_skew_secs: spec.clock_skew.as_secs() as i64,
        now: crate::saml::now_unix(),
    };
    let validated = response::decode(value).and_then(|xml| response::validate(&xml, &expected));
    let a = match validated {
        Ok(a) => a,
        Err(r) => {
            let f = match r {
                Rejection::Status(m) | Rejection::Malformed(m) => {
                    Failure::new(FailureClass::Protocol, m)
                }
                Rejection::Invalid(m) => Failure::new(FailureClass::TokenInvalid, m),
                Rejection::Config(m) => Failure::new(FailureClass::Config, m),
            };
            steps.push(step("assertion", Some(f), timed(began), String::new()));
            return;
        }
    };
    publish(ctx, &a);
    let failure = expect(spec, &a)
        .err()
        .map(|m| Failure::new(FailureClass::Assertion, m));
    let detail = format!(
        "NameID {} by {}; signed: {}{}, by {}; {} attribute name(s)",
        a.name_id,
        a.issuer,
        a.signed,
        if a.encrypted { ", encrypted" } else { "" },
        a.signer,
        a.attributes.len()
    );
    steps.push(step("assertion", failure, timed(began), detail));
}

fn publish(ctx: &mut RunContext<'_>, a: &Assertion) {
    ctx.output("name_id", a.name_id.clone());
    ctx.output("issuer", a.issuer.clone());
    if let Some(f) = &a.name_id_format {
        ctx.output("name_id_format", f.clone());
    }
    if let Some(s) = &a.session_index {
        ctx.output("session_index", s.clone());
    }
    if let Some(c) = &a.authn_context {
        ctx.output("authn_context", c.clone());
    }
    ctx.output("attributes", json!(a.attributes));
}

/// `expect` against the validated assertion: `Err` names the first mismatch.
fn expect(spec: &SamlLoginSpec, a: &Assertion) -> Result<(), String> {
    let e = &spec.expect;
    if let Some(re) = &e.name_id {
        let re = regex::Regex::new(re).map_err(|err| format!("expect.name_id: {err}"))?;
        if !re.is_match(&a.name_id) {
            return Err(format!(
                "NameID {:?} does not match {}",
                a.name_id,
                re.as_str()
            ));
        }
    }
    for name in &e.required_attributes {
        if !a.attributes.contains_key(name) {
            return Err(format!(
                "attribute {name:?} is missing (present: {:?})",
                a.attributes.keys().collect::<Vec<_>>()
            ));
        }
    }
    for (name, want) in &e.attributes {
        let Some(got) = a.attributes.get(name) else {
            return Err(format!(
                "attribute {name:?} is missing (present: {:?})",
                a.attributes.keys().collect::<Vec<_>>()
            ));
        };
        for v in want.values() {
            if !got.iter().any(|g| g == v) {
                return Err(format!(
                    "attribute {name:?} is {got:?}, expected it to hold {v:?}"
                ));
            }
        }
    }
    if let Some(want) = &e.authn_context
        && a.authn_context.as_deref() != Some(want.as_str())
    {
        return Err(format!(
            "AuthnContextClassRef is {:?}, expected {want:?}",
            a.authn_context.as_deref().unwrap_or("(none)")
        ));
    }
    Ok(())
}

/// The spec's login keys for the engine.
fn login_keys(spec: &SamlLoginSpec) -> crate::login::keys::Keys<'_> {
    crate::login::keys::Keys {
        username: &spec.username,
        password: &spec.password,
        totp: spec.totp.as_ref(),
        totp_digits: spec.totp_digits,
        totp_period: spec.totp_period,
        username_field: spec.username_field.as_deref(),
        password_field: spec.password_field.as_deref(),
        totp_field: spec.totp_field.as_deref(),
        form_selector: spec.form_selector.as_deref(),
        consent_button: spec.consent_button.as_deref(),
        login_steps: &spec.login_steps,
        max_pages: spec.max_pages,
        tls: &spec.tls,
    }
}
