//! `permission`: asks an authorization engine one question and compares the
//! answer with `expect`. Engines: OPA's data API (`result` is a boolean or
//! an object with `allow`), OpenFGA's check (`allowed`), SpiceDB's HTTP
//! check (`permissionship`), or any JSON endpoint with a JSONPath to the
//! decision. Expected allow but denied is `permission_mismatch` (someone
//! lost access); expected deny but allowed is `escalation`, a privilege
//! escalation, which pages on its own. One step, `check`.
use authpulse_proto::catalog::{Decision, PermissionEngine, PermissionSpec, split_object_ref};
use authpulse_proto::v1::FailureClass;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use serde_json::{Value as Json, json};

use super::{Failure, Probe, ProbeOutcome, RunContext, StepOutcome, ms, snippet};
use crate::http::{Request, Timings};
use crate::secrets;

impl Probe for PermissionSpec {
    async fn run(&self, ctx: &mut RunContext<'_>) -> ProbeOutcome {
        let step = check(self, ctx).await;
        ProbeOutcome::from_steps(vec![step], ctx.started.elapsed())
    }
}

/// The engine's request, ready to send.
struct Question {
    method: Method,
    url: url::Url,
    body: Json,
    /// What was asked, for details: "user:alice reader document:plan".
    about: String,
}

async fn check(spec: &PermissionSpec, ctx: &mut RunContext<'_>) -> StepOutcome {
    let step = |failure: Option<Failure>, timings: Timings, detail: String| StepOutcome {
        name: "check".into(),
        kind: "permission".into(),
        failure,
        timings,
        detail,
    };
    let engine = spec.engine.name();
    let (question, headers) = match question(spec).and_then(|q| Ok((q, headers(spec, ctx)?))) {
        Ok(x) => x,
        Err(f) => return step(Some(f), Timings::default(), String::new()),
    };
    let request = Request {
        method: question.method.clone(),
        url: question.url.clone(),
        headers,
        body: Some(Bytes::from(question.body.to_string())),
        // A decision endpoint that redirects is misconfigured: report it.
        follow_redirects: false,
        tls: &spec.tls,
    };
    let resp = match ctx.session.send(request).await {
        Ok(r) => r,
        Err(e) => {
            return step(
                Some(Failure::new(e.class, e.message)),
                e.timings,
                String::new(),
            );
        }
    };
    let timings = resp.timings;
    let target = format!("{engine} {} {}", question.method, question.url);
    if !resp.status.is_success() {
        let f = Failure::new(
            FailureClass::HttpStatus,
            format!("{target} answered {}: {}", resp.status, snippet(&resp.body)),
        );
        return step(Some(f), timings, String::new());
    }
    let doc: Json = match serde_json::from_slice(&resp.body) {
        Ok(d) => d,
        Err(e) => {
            let f = Failure::new(
                FailureClass::Protocol,
                format!(
                    "{target}: response is not JSON ({e}): {}",
                    snippet(&resp.body)
                ),
            );
            return step(Some(f), timings, String::new());
        }
    };
    let allowed = match decision(spec, &doc) {
        Ok(a) => a,
        Err(m) => {
            let f = Failure::new(FailureClass::Protocol, format!("{target}: {m}"));
            return step(Some(f), timings, String::new());
        }
    };
    let got = if allowed {
        Decision::Allow
    } else {
        Decision::Deny
    };
    ctx.output("allowed", allowed);
    ctx.output("decision", got.name());
    ctx.output("response", doc);
    let took = ms(timings.total);
    let failure = match (spec.expect, got) {
        (Decision::Allow, Decision::Deny) => Some(Failure::new(
            FailureClass::PermissionMismatch,
            format!(
                "expected allow, got deny: {engine} denied {} ({target}, {took})",
                question.about
            ),
        )),
        (Decision::Deny, Decision::Allow) => Some(Failure::new(
            FailureClass::Escalation,
            format!(
                "PRIVILEGE ESCALATION: expected deny, but {engine} ALLOWED {} ({target}, {took})",
                question.about
            ),
        )),
        _ => None,
    };
    let detail = format!("{} as expected: {} ({took})", got.name(), question.about);
    step(failure, timings, detail)
}

fn config(m: String) -> Failure {
    Failure::new(FailureClass::Config, m)
}

fn parse_url(raw: &str) -> Result<url::Url, Failure> {
    url::Url::parse(raw).map_err(|e| config(format!("url `{raw}`: {e}")))
}

/// The engine's check URL (built by the catalog, so the runbook shows the
/// same one).
fn check_url(spec: &PermissionSpec) -> Result<url::Url, Failure> {
    let raw = spec
        .check_url()
        .ok_or_else(|| config(format!("engine `{}` needs `store_id`", spec.engine.name())))?;
    parse_url(&raw)
}

fn required<'a>(v: &'a Option<String>, field: &str, engine: &str) -> Result<&'a str, Failure> {
    v.as_deref()
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| config(format!("engine `{engine}` needs `{field}`")))
}

/// Builds each engine's documented request shape.
fn question(spec: &PermissionSpec) -> Result<Question, Failure> {
    let engine = spec.engine.name();
    match spec.engine {
        PermissionEngine::Opa => {
            let url = check_url(spec)?;
            let input = spec.input.clone().unwrap_or_else(|| json!({}));
            let about = format!("input {}", snippet(input.to_string().as_bytes()));
            Ok(Question {
                method: Method::POST,
                url,
                body: json!({ "input": input }),
                about,
            })
        }
        PermissionEngine::Openfga => {
            required(&spec.store_id, "store_id", engine)?;
            let user = required(&spec.user, "user", engine)?;
            let relation = required(&spec.relation, "relation", engine)?;
            let object = required(&spec.object, "object", engine)?;
            let mut body = json!({
                "tuple_key": { "user": user, "relation": relation, "object": object },
            });
            if let Some(model) = &spec.authorization_model_id {
                body["authorization_model_id"] = json!(model);
            }
            Ok(Question {
                method: Method::POST,
                url: check_url(spec)?,
                body,
                about: format!("{user} {relation} {object}"),
            })
        }
        PermissionEngine::Spicedb => {
            let resource = required(&spec.resource, "resource", engine)?;
            let permission = required(&spec.permission, "permission", engine)?;
            let subject = required(&spec.subject, "subject", engine)?;
            let (rtype, rid) = split_object_ref(resource)
                .ok_or_else(|| config(format!("resource `{resource}`: expected type:id")))?;
            let (stype, sid) = split_object_ref(subject)
                .ok_or_else(|| config(format!("subject `{subject}`: expected type:id")))?;
            // `group:eng#member`: a subject set.
            let (sid, srel) = sid.split_once('#').unwrap_or((sid, ""));
            let mut body = json!({
                "resource": { "objectType": rtype, "objectId": rid },
                "permission": permission,
                "subject": {
                    "object": { "objectType": stype, "objectId": sid },
                    "optionalRelation": srel,
                },
            });
            if spec.fully_consistent {
                body["consistency"] = json!({ "fullyConsistent": true });
            }
            Ok(Question {
                method: Method::POST,
                url: check_url(spec)?,
                body,
                about: format!("{subject} {permission} {resource}"),
            })
        }
        PermissionEngine::Generic => {
            let method = Method::from_bytes(spec.method.to_ascii_uppercase().as_bytes())
                .map_err(|e| config(format!("method `{}`: {e}", spec.method)))?;
            let body = spec.body.clone().unwrap_or(Json::Null);
            let about = match &body {
                Json::Null => "the request".to_string(),
                b => format!("body {}", snippet(b.to_string().as_bytes())),
            };
            Ok(Question {
                method,
                url: check_url(spec)?,
                body,
                about,
            })
        }
    }
}

fn headers(spec: &PermissionSpec, ctx: &RunContext<'_>) -> Result<HeaderMap, Failure> {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
    let resolve =
        |v| secrets::resolve(v, ctx.secrets, &ctx.redactor).map_err(|e| config(e.to_string()));
    if let Some(token) = &spec.token {
        let token = resolve(token)?;
        let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| config("token: not a valid header value".into()))?;
        value.set_sensitive(true);
        headers.insert(header::AUTHORIZATION, value);
    }
    for (name, value) in &spec.headers {
        let value = resolve(value)?;
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| config(format!("header `{name}`: {e}")))?;
        // The value may be a secret: say which header, never what.
        let mut value = HeaderValue::from_str(&value)
            .map_err(|_| config(format!("header `{name}`: invalid value")))?;
        value.set_sensitive(true);
        headers.insert(name, value);
    }
    Ok(headers)
}

/// Reads allow (true) or deny (false) from the engine's answer.
fn decision(spec: &PermissionSpec, doc: &Json) -> Result<bool, String> {
    match spec.engine {
        PermissionEngine::Opa => match doc.get("result") {
            None => Err(
                "no `result`: the document is undefined (policy not loaded, or wrong path)".into(),
            ),
            Some(Json::Bool(b)) => Ok(*b),
            Some(Json::Object(o)) => match o.get("allow") {
                Some(Json::Bool(b)) => Ok(*b),
                Some(other) => Err(format!("`result.allow` is {other}, not a boolean")),
                None => Err("`result` is an object without `allow`".into()),
            },
            Some(other) => Err(format!(
                "`result` is {}, expected a boolean or an object with `allow`",
                snippet(other.to_string().as_bytes())
            )),
        },
        PermissionEngine::Openfga => match doc.get("allowed") {
            Some(Json::Bool(b)) => Ok(*b),
            Some(other) => Err(format!("`allowed` is {other}, not a boolean")),
            None => Err(format!(
                "no `allowed` in the answer: {}",
                snippet(doc.to_string().as_bytes())
            )),
        },
        PermissionEngine::Spicedb => match doc.get("permissionship").and_then(Json::as_str) {
            Some("PERMISSIONSHIP_HAS_PERMISSION") => Ok(true),
            Some("PERMISSIONSHIP_NO_PERMISSION") => Ok(false),
            // Missing caveat context: not a grant.
            Some("PERMISSIONSHIP_CONDITIONAL_PERMISSION") => Ok(false),
            Some(other) => Err(format!("unknown permissionship `{other}`")),
            None => Err(format!(
                "no `permissionship` in the answer: {}",
                snippet(doc.to_string().as_bytes())
            )),
        },
        PermissionEngine::Generic => {
            let raw = spec.decision.as_deref().unwrap_or("$");
            let path = serde_json_path::JsonPath::parse(raw)
                .map_err(|e| format!("decision `{raw}`: {e}"))?;
            let found = path.query(doc).all();
            let Some(value) = found.first() else {
                return Err(format!(
                    "decision path {raw} matches nothing in {}",
                    snippet(doc.to_string().as_bytes())
                ));
            };
            Ok(spec.allow_values.contains(value))
        }
    }
}
