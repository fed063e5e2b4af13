//! `revoke`: revokes a token (RFC 7009), usually one an earlier journey
//! step obtained, then (unless `verify: false`) introspects it with the
//! same client to prove it is really dead: a token still active after a
//! successful revocation is `assertion`, because logout that doesn't log
//! out is a security bug, not a glitch. Steps: `discovery` (when an
//! endpoint comes from the issuer's metadata), `revoke`, `introspect`.
//! Publishes `revoked: true` and, after verification, `active`.
use authpulse_proto::catalog::RevokeSpec;
use authpulse_proto::v1::FailureClass;
use serde_json::Value as Json;

use super::{Probe, ProbeOutcome, RunContext, config_failure};
use crate::oauth::{self, ClientAuth, Endpoints, OAuthError, finish, step};

const KIND: &str = "revoke";

impl Probe for RevokeSpec {
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
        let hint = self.token_type_hint.as_deref();
        let mut steps = Vec::new();
        let mut endpoints = Endpoints::new(KIND, self.issuer.as_deref(), &self.tls);
        let Some(endpoint) = endpoints
            .url(
                ctx,
                &mut steps,
                self.revocation_endpoint.as_deref(),
                "revocation_endpoint",
            )
            .await
        else {
            return finish(ctx, steps);
        };

        // RFC 7009 §2.2: 200 whether or not the token was valid, so only the
        // introspection afterwards proves anything.
        let mut params = vec![("token", token)];
        if let Some(h) = hint {
            params.push(("token_type_hint", h));
        }
        let result = oauth::post_form(
            &mut ctx.session,
            &endpoint,
            &auth,
            &params,
            &self.tls,
            &ctx.redactor,
        )
        .await
        .and_then(|resp| {
            if resp.status.is_success() {
                Ok((resp.timings, format!("{endpoint} answered {}", resp.status)))
            } else {
                Err(oauth::error_from_response("revocation endpoint", &resp))
            }
        });
        if let Err(e) = &result {
            endpoints.request_failed(ctx, e.class);
        }
        let revoked = result.is_ok();
        steps.push(step(KIND, "revoke", result));
        if !revoked {
            return finish(ctx, steps);
        }
        ctx.output("revoked", true);
        if !self.verify {
            return finish(ctx, steps);
        }

        let Some(introspection) = endpoints
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
            &introspection,
            &auth,
            token,
            hint,
            &self.tls,
            &ctx.redactor,
        )
        .await
        .and_then(|(answer, timings)| {
            let active = answer.get("active") == Some(&Json::Bool(true));
            ctx.output("active", active);
            if active {
                Err(OAuthError {
                    class: FailureClass::Assertion,
                    message: format!(
                        "token still active after revocation ({})",
                        super::introspect::summary(&answer)
                    ),
                    timings,
                })
            } else {
                Ok((timings, "inactive after revocation".to_string()))
            }
        });
        steps.push(step(KIND, "introspect", result));
        finish(ctx, steps)
    }
}
