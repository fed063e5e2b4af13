//! `userinfo`: calls the OIDC UserInfo endpoint (OIDC Core §5.3) with a
//! bearer access token, usually from an earlier journey step. The answer
//! must be a JSON object with a `sub` (a signed `application/jwt` answer is
//! reported as unsupported); `required_claims` and `expect_sub` are
//! assertions on it. A 401/403 (the token was not accepted) is
//! `auth_rejected`. Steps: `discovery` (when the endpoint comes from the
//! issuer's metadata) and `userinfo`. Publishes `claims` and `sub`.
use authpulse_proto::catalog::UserinfoSpec;
use authpulse_proto::v1::FailureClass;
use http::{HeaderValue, header};
use serde_json::{Map, Value as Json};

use super::{Probe, ProbeOutcome, RunContext, config_failure, snippet};
use crate::http::{Request, Response};
use crate::oauth::{Endpoints, OAuthError, finish, step};

const KIND: &str = "userinfo";

impl Probe for UserinfoSpec {
    async fn run(&self, ctx: &mut RunContext<'_>) -> ProbeOutcome {
        let token = self.token.trim();
        if token.is_empty() {
            return config_failure(ctx, KIND, "`token` is empty");
        }
        ctx.redactor.remember(token);
        let Ok(mut bearer) = HeaderValue::from_str(&format!("Bearer {token}")) else {
            return config_failure(ctx, KIND, "`token` is not a valid header value");
        };
        bearer.set_sensitive(true);
        let mut steps = Vec::new();
        let mut endpoints = Endpoints::new(KIND, self.issuer.as_deref(), &self.tls);
        let Some(endpoint) = endpoints
            .url(
                ctx,
                &mut steps,
                self.userinfo_endpoint.as_deref(),
                "userinfo_endpoint",
            )
            .await
        else {
            return finish(ctx, steps);
        };

        let mut req = Request::get(endpoint.clone(), &self.tls);
        req.headers.insert(header::AUTHORIZATION, bearer);
        req.headers
            .insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        let claims = match ctx.session.send(req).await {
            Ok(resp) => read(&resp),
            Err(e) => Err(e.into()),
        };
        let (claims, timings) = match claims {
            Ok(c) => c,
            Err(e) => {
                endpoints.request_failed(ctx, e.class);
                steps.push(step(KIND, "userinfo", Err(e)));
                return finish(ctx, steps);
            }
        };
        let sub = claims
            .get("sub")
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_string();
        ctx.output("sub", sub.clone());
        ctx.output("claims", Json::Object(claims.clone()));

        let missing: Vec<&str> = self
            .required_claims
            .iter()
            .filter(|c| !claims.contains_key(c.as_str()))
            .map(String::as_str)
            .collect();
        let outcome = if !missing.is_empty() {
            Err(OAuthError {
                class: FailureClass::Assertion,
                message: format!(
                    "missing claim(s) {} (got {})",
                    missing.join(", "),
                    claims.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
                timings,
            })
        } else if let Some(want) = self.expect_sub.as_deref()
            && want != sub
        {
            Err(OAuthError {
                class: FailureClass::Assertion,
                message: format!("sub is {sub:?}, expected {want:?}"),
                timings,
            })
        } else {
            Ok((timings, format!("sub {sub}, {} claim(s)", claims.len())))
        };
        steps.push(step(KIND, "userinfo", outcome));
        finish(ctx, steps)
    }
}

/// The claims of a UserInfo answer, or the failure it means.
fn read(resp: &Response) -> Result<(Map<String, Json>, crate::http::Timings), OAuthError> {
    let timings = resp.timings;
    let fail = |class, message: String| {
        Err(OAuthError {
            class,
            message,
            timings,
        })
    };
    let url = &resp.url;
    let status = resp.status;
    if status == 401 || status == 403 {
        // RFC 6750 §3: the reason is in WWW-Authenticate.
        let why = resp
            .headers
            .get(header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .map(|v| snippet(v.as_bytes()))
            .unwrap_or_else(|| snippet(&resp.body));
        return fail(
            FailureClass::AuthRejected,
            format!("userinfo {url} answered {status}: {why}"),
        );
    }
    if !status.is_success() {
        return fail(
            FailureClass::HttpStatus,
            format!("userinfo {url} answered {status}: {}", snippet(&resp.body)),
        );
    }
    let content_type = resp
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if content_type.starts_with("application/jwt") {
        return fail(
            FailureClass::Protocol,
            format!(
                "userinfo {url} answered a signed/encrypted JWT; only JSON answers are supported"
            ),
        );
    }
    match serde_json::from_slice(&resp.body) {
        Ok(Json::Object(m)) if m.get("sub").is_some_and(Json::is_string) => Ok((m, timings)),
        Ok(Json::Object(_)) => fail(
            FailureClass::Protocol,
            format!("userinfo {url} answer has no `sub`"),
        ),
        _ => fail(
            FailureClass::Protocol,
            format!(
                "userinfo {url} answer is not a JSON object: {}",
                snippet(&resp.body)
            ),
        ),
    }
}
