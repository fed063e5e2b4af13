//! `aws_iam_permission`: one real SigV4-signed AWS call (IAM's own
//! simulator is not what production enforces, and emulators lack it) whose
//! result must be `expect: allow` or `expect: deny`. Step `call`. A 2xx (or
//! an error code listed in `allowed_errors`, i.e. the call got past
//! authorization) is "allowed"; AccessDenied and kin are "denied".
//! Denied when allow was expected is `permission_mismatch`; allowed when
//! deny was expected is `escalation`. Credentials refused outright are
//! `auth_rejected`; throttling, 5xx and unlisted error codes `http_status`
//! (no decision could be made). Output: `decision` (`allow`/`deny`).
use authpulse_proto::catalog::{AwsIamPermissionSpec, AwsProtocol, IamDecision};
use authpulse_proto::v1::FailureClass;
use http::Method;
use serde_json::Value as Json;

use super::{Failure, Probe, ProbeOutcome, RunContext, StepOutcome, config_failure, ms};
use crate::aws::{self, AwsError, Credentials, ErrorKind};
use crate::http::{Request, Timings};

impl Probe for AwsIamPermissionSpec {
    async fn run(&self, ctx: &mut RunContext<'_>) -> ProbeOutcome {
        const KIND: &str = "aws_iam_permission";
        let Some((service, operation)) = self.service_and_operation() else {
            return config_failure(
                ctx,
                KIND,
                format!("action `{}`: write service:Operation", self.action),
            );
        };
        let creds = match Credentials::resolve(
            &self.access_key_id,
            &self.secret_access_key,
            self.session_token.as_ref(),
            ctx,
        ) {
            Ok(c) => c,
            Err(f) => return config_failure(ctx, KIND, f.message),
        };
        let mut req = match build(self, &service, &operation) {
            Ok(r) => r,
            Err(f) => return config_failure(ctx, KIND, f.message),
        };
        if let Err(f) = aws::sign(&mut req, &creds, &service, &self.region) {
            return config_failure(ctx, KIND, f.message);
        }
        let call = format!("{service}:{operation}");
        let target = aws::authority(&req.url);
        let outcome = match ctx.session.send(req).await {
            Err(e) => step(
                Some(Failure::new(e.class, e.message.clone())),
                e.timings,
                String::new(),
            ),
            Ok(resp) => {
                let decided = if resp.status.is_success() {
                    Ok((IamDecision::Allow, format!("{}", resp.status)))
                } else {
                    let err = AwsError::parse(&resp);
                    match err.kind() {
                        ErrorKind::AccessDenied => Ok((IamDecision::Deny, err.describe())),
                        _ if self.allowed_errors.iter().any(|c| c == &err.code) => Ok((
                            IamDecision::Allow,
                            format!("{} (listed in allowed_errors)", err.describe()),
                        )),
                        ErrorKind::AuthRejected => Err(Failure::new(
                            FailureClass::AuthRejected,
                            format!(
                                "{call} at {target}: credentials refused: {}",
                                err.describe()
                            ),
                        )),
                        _ => Err(Failure::new(
                            FailureClass::HttpStatus,
                            format!(
                                "{call} at {target}: no allow/deny decision: {}",
                                err.describe()
                            ),
                        )),
                    }
                };
                match decided {
                    Err(f) => step(Some(f), resp.timings, String::new()),
                    Ok((decision, why)) => {
                        ctx.output(
                            "decision",
                            match decision {
                                IamDecision::Allow => "allow",
                                IamDecision::Deny => "deny",
                            },
                        );
                        judge(self.expect, decision, &call, &why, resp.timings)
                    }
                }
            }
        };
        ProbeOutcome::from_steps(vec![outcome], ctx.started.elapsed())
    }
}

fn step(failure: Option<Failure>, timings: Timings, detail: String) -> StepOutcome {
    StepOutcome {
        name: "call".into(),
        kind: "aws_iam_permission".into(),
        failure,
        timings,
        detail,
    }
}

/// The expectation against what AWS decided.
fn judge(expect: IamDecision, got: IamDecision, call: &str, why: &str, t: Timings) -> StepOutcome {
    let took = ms(t.total);
    match (expect, got) {
        (IamDecision::Allow, IamDecision::Allow) => step(
            None,
            t,
            format!("{call} allowed as expected ({why}) in {took}"),
        ),
        (IamDecision::Deny, IamDecision::Deny) => step(
            None,
            t,
            format!("{call} denied as expected ({why}) in {took}"),
        ),
        (IamDecision::Allow, IamDecision::Deny) => step(
            Some(Failure::new(
                FailureClass::PermissionMismatch,
                format!("{call} was denied but must be allowed: {why}"),
            )),
            t,
            String::new(),
        ),
        (IamDecision::Deny, IamDecision::Allow) => step(
            Some(Failure::new(
                FailureClass::Escalation,
                format!("{call} was ALLOWED but must be denied ({why})"),
            )),
            t,
            String::new(),
        ),
    }
}

/// A parameter value as a form/query string: strings as they are,
/// anything else in its JSON spelling.
fn param_text(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The unsigned request for the configured call and protocol.
fn build<'a>(
    spec: &'a AwsIamPermissionSpec,
    service: &str,
    operation: &str,
) -> Result<Request<'a>, Failure> {
    let mut url = aws::endpoint(spec.endpoint.as_deref(), service, &spec.region)?;
    let config = |m: String| Failure::new(FailureClass::Config, m);
    match spec.effective_protocol() {
        AwsProtocol::Query => {
            let version = spec.effective_api_version().ok_or_else(|| {
                config(format!(
                    "the Query API version of `{service}` is not known: set api_version"
                ))
            })?;
            let params: Vec<(String, String)> = spec
                .params
                .iter()
                .map(|(k, v)| (k.clone(), param_text(v)))
                .collect();
            Ok(aws::query_request(
                url, operation, &version, &params, &spec.tls,
            ))
        }
        AwsProtocol::Json => {
            let target = spec
                .target
                .as_deref()
                .ok_or_else(|| config("the JSON protocol needs `target`".into()))?;
            aws::json_request(
                url,
                target,
                &spec.json_version,
                &Json::Object(spec.params.clone()),
                &spec.tls,
            )
        }
        AwsProtocol::Rest => {
            let method = Method::from_bytes(spec.method.to_ascii_uppercase().as_bytes())
                .map_err(|e| config(format!("method `{}`: {e}", spec.method)))?;
            let base = url.path().trim_end_matches('/').to_string();
            let (path, query) = match spec.path.split_once('?') {
                Some((p, q)) => (p, Some(q)),
                None => (spec.path.as_str(), None),
            };
            url.set_path(&format!("{base}{path}"));
            url.set_query(query);
            if !spec.params.is_empty() {
                let mut pairs = url.query_pairs_mut();
                for (k, v) in &spec.params {
                    pairs.append_pair(k, &param_text(v));
                }
            }
            Ok(Request {
                method,
                url,
                headers: http::HeaderMap::new(),
                body: None,
                follow_redirects: false,
                tls: &spec.tls,
            })
        }
    }
}
