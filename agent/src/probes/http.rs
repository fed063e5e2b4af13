//! `http`: one request (redirects followed unless disabled), then assertions
//! on status, body, headers, JSON paths and latency. The first failing
//! assertion decides the class: `http_status` for the status, `assertion`
//! for everything else.
use authpulse_proto::catalog::HttpSpec;
use authpulse_proto::v1::FailureClass;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method};

use super::{Failure, Probe, ProbeOutcome, RunContext, StepOutcome, ms, snippet};
use crate::http::{Request, Response, Timings};
use crate::secrets;

impl Probe for HttpSpec {
    async fn run(&self, ctx: &mut RunContext<'_>) -> ProbeOutcome {
        let step = |failure: Option<Failure>, timings: Timings, detail: String| StepOutcome {
            name: "request".into(),
            kind: "http".into(),
            failure,
            timings,
            detail,
        };
        let request = match build_request(self, ctx) {
            Ok(r) => r,
            Err(f) => {
                return ProbeOutcome::from_steps(
                    vec![step(Some(f), Timings::default(), String::new())],
                    ctx.started.elapsed(),
                );
            }
        };
        let outcome = match ctx.session.send(request).await {
            Ok(resp) => {
                let failure = check(self, &resp).err();
                let detail = format!(
                    "{} from {} in {}",
                    resp.status,
                    resp.url,
                    ms(resp.timings.total)
                );
                step(failure, resp.timings, detail)
            }
            Err(e) => step(
                Some(Failure::new(e.class, e.message.clone())),
                e.timings,
                String::new(),
            ),
        };
        ProbeOutcome::from_steps(vec![outcome], ctx.started.elapsed())
    }
}

fn build_request<'a>(spec: &'a HttpSpec, ctx: &RunContext<'_>) -> Result<Request<'a>, Failure> {
    let config = |m: String| Failure::new(FailureClass::Config, m);
    let url = url::Url::parse(&spec.url).map_err(|e| config(format!("url `{}`: {e}", spec.url)))?;
    let method =
        Method::from_bytes(spec.method.as_bytes()).map_err(|e| config(format!("method: {e}")))?;
    let mut headers = HeaderMap::new();
    for (name, value) in &spec.headers {
        let value = secrets::resolve(value, ctx.secrets, &ctx.redactor)
            .map_err(|e| config(e.to_string()))?;
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| config(format!("header `{name}`: {e}")))?;
        // The value may be a secret: say which header, never what.
        let mut value = HeaderValue::from_str(&value)
            .map_err(|_| config(format!("header `{name}`: invalid value")))?;
        value.set_sensitive(true);
        headers.append(name, value);
    }
    Ok(Request {
        method,
        url,
        headers,
        body: spec.body.clone().map(Bytes::from),
        follow_redirects: spec.follow_redirects,
        tls: &spec.tls,
    })
}

fn check(spec: &HttpSpec, resp: &Response) -> Result<(), Failure> {
    let e = &spec.expect;
    let status = resp.status.as_u16();
    let status_ok = match &e.status {
        Some(codes) => codes.contains(&status),
        None => resp.status.is_success(),
    };
    if !status_ok {
        let wanted = match &e.status {
            Some(codes) => format!("{codes:?}"),
            None => "2xx".into(),
        };
        return Err(Failure::new(
            FailureClass::HttpStatus,
            format!(
                "status {} (expected {wanted}): {}",
                resp.status,
                snippet(&resp.body)
            ),
        ));
    }
    let assertion = |m: String| Failure::new(FailureClass::Assertion, m);
    let body = String::from_utf8_lossy(&resp.body);
    for needle in &e.body_contains {
        if !body.contains(needle.as_str()) {
            return Err(assertion(format!("body does not contain {needle:?}")));
        }
    }
    for needle in &e.body_not_contains {
        if body.contains(needle.as_str()) {
            return Err(assertion(format!("body contains {needle:?}")));
        }
    }
    if let Some(re) = &e.body_matches {
        let re =
            regex::Regex::new(re).map_err(|e| Failure::new(FailureClass::Config, e.to_string()))?;
        if !re.is_match(&body) {
            return Err(assertion(format!("body does not match /{re}/")));
        }
    }
    for (name, re) in &e.headers {
        let re =
            regex::Regex::new(re).map_err(|e| Failure::new(FailureClass::Config, e.to_string()))?;
        let values: Vec<&str> = resp
            .headers
            .get_all(name.as_str())
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if values.is_empty() {
            return Err(assertion(format!("header `{name}` missing")));
        }
        if !values.iter().any(|v| re.is_match(v)) {
            return Err(assertion(format!(
                "header `{name}` = {:?} does not match /{re}/",
                values[0]
            )));
        }
    }
    if !e.json.is_empty() {
        let doc: serde_json::Value = serde_json::from_slice(&resp.body).map_err(|err| {
            assertion(format!("body is not JSON ({err}): {}", snippet(&resp.body)))
        })?;
        for j in &e.json {
            json_assert(&doc, j)?;
        }
    }
    if let Some(max) = e.max_latency
        && resp.timings.total > max
    {
        return Err(assertion(format!(
            "took {} (max_latency {})",
            ms(resp.timings.total),
            humantime::format_duration(max)
        )));
    }
    Ok(())
}

/// One JSONPath assertion; shared with other kinds that check JSON bodies.
pub fn json_assert(
    doc: &serde_json::Value,
    j: &authpulse_proto::catalog::JsonAssertion,
) -> Result<(), Failure> {
    let assertion = |m: String| Failure::new(FailureClass::Assertion, m);
    let path = serde_json_path::JsonPath::parse(&j.path)
        .map_err(|e| Failure::new(FailureClass::Config, e.to_string()))?;
    let found = path.query(doc).all();
    if j.exists == Some(false) {
        return match found.first() {
            None => Ok(()),
            Some(v) => Err(assertion(format!("{} exists ({v}) but should not", j.path))),
        };
    }
    let Some(first) = found.first() else {
        return Err(assertion(format!("{} matches nothing", j.path)));
    };
    if let Some(want) = &j.equals
        && !found.contains(&want)
    {
        return Err(assertion(format!("{} is {first}, expected {want}", j.path)));
    }
    if let Some(re) = &j.matches {
        let re =
            regex::Regex::new(re).map_err(|e| Failure::new(FailureClass::Config, e.to_string()))?;
        let ok = found.iter().any(|v| match v {
            serde_json::Value::String(s) => re.is_match(s),
            other => re.is_match(&other.to_string()),
        });
        if !ok {
            return Err(assertion(format!(
                "{} is {first}, does not match /{re}/",
                j.path
            )));
        }
    }
    Ok(())
}
