//! `introspect`: asks the authorization server whether a token is active
//! (RFC 7662), usually as a journey step after a token step
//! (`token: "{{ steps.login.access_token }}"`). Expects `active: true` by
//! default (an inactive fresh token is `token_invalid`); with
//! `expect_active: false` it asserts a token is dead (after logout or
//! revocation; still active is `assertion`). Steps: `discovery` (when the
//! endpoint comes from the issuer's metadata) and `introspect`. Publishes
//! `active`, `sub`, `scope`, `client_id`, `exp` (when present) and the
//! whole answer as `claims`.
use authpulse_proto::catalog::IntrospectSpec;
use authpulse_proto::v1::FailureClass;
use serde_json::{Map, Value as Json};

use super::{Probe, ProbeOutcome, RunContext, config_failure};
use crate::oauth::{self, ClientAuth, Endpoints, OAuthError, finish, step};

const KIND: &str = "introspect";

impl Probe for IntrospectSpec {
    async fn run(&self, ctx: &mut RunContext<'_>) -> ProbeOutcome {
        let auth =
            match ClientAuth::resolve(&crate::client_config!(self), ctx.secrets, &ctx.redactor) {
                Ok(a) => a,
                Err(e) => return config_failure(ctx, KIND, e.message),
            };
        let token = self.token.trim();
        if token.is_empty() {
            return config_failure(ctx, KIND, "`token` is empty");
        }
        ctx.redactor.remember(token);
        let mut steps = Vec::new();
        let mut endpoints = Endpoints::new(KIND, self.issuer.as_deref(), &self.tls);
        let Some(endpoint) = endpoints
            .url(
                ctx,
                &mut steps,
                self.introspection_endpoint.as_deref(),
                "introspection_endpoint",
            )
            .await
        else {
            return finish(ctx, steps);
        };

        let result = oauth::introspect(
            &mut ctx.session,
            &endpoint,
            &auth,
            token,
            self.token_type_hint.as_deref(),
            &self.tls,
            &ctx.redactor,
        )
        .await;
        let (answer, timings) = match result {
            Ok(r) => r,
            Err(e) => {
                endpoints.request_failed(ctx, e.class);
                steps.push(step(KIND, "introspect", Err(e)));
                return finish(ctx, steps);
            }
        };
        publish(ctx, &answer);
        let active = answer.get("active") == Some(&Json::Bool(true));
        let summary = summary(&answer);
        let outcome = match (self.expect_active, active) {
            (true, true) | (false, false) => Ok((timings, summary)),
            (true, false) => Err(OAuthError {
                class: FailureClass::TokenInvalid,
                message: format!("{endpoint} says the token is not active"),
                timings,
            }),
            (false, true) => Err(OAuthError {
                class: FailureClass::Assertion,
                message: format!("token is still active ({summary}), expected inactive"),
                timings,
            }),
        };
        steps.push(step(KIND, "introspect", outcome));
        finish(ctx, steps)
    }
}

fn publish(ctx: &mut RunContext<'_>, answer: &Map<String, Json>) {
    for key in ["active", "sub", "scope", "client_id", "exp"] {
        if let Some(v) = answer.get(key) {
            ctx.output(key, v.clone());
        }
    }
    ctx.output("claims", Json::Object(answer.clone()));
}

/// `active, sub alice, client app, scope "a b", expires in 59m`.
pub(crate) fn summary(answer: &Map<String, Json>) -> String {
    let active = answer.get("active") == Some(&Json::Bool(true));
    let mut parts = vec![if active { "active" } else { "inactive" }.to_string()];
    if let Some(sub) = answer.get("sub").and_then(Json::as_str) {
        parts.push(format!("sub {sub}"));
    }
    if let Some(c) = answer.get("client_id").and_then(Json::as_str) {
        parts.push(format!("client {c}"));
    }
    if let Some(s) = answer.get("scope").and_then(Json::as_str) {
        parts.push(format!("scope `{s}`"));
    }
    if let Some(exp) = answer.get("exp").and_then(Json::as_u64) {
        let left = exp.saturating_sub(oauth::unix_now());
        parts.push(format!(
            "expires in {}",
            crate::jwt::lifetime(std::time::Duration::from_secs(left))
        ));
    }
    parts.join(", ")
}
