//! `jwt_validate`: validates any JWT, usually one an earlier journey step
//! published (`token: "{{ steps.login.id_token }}"`): signature via the
//! issuer's JWKS (found by discovery, or `jwks_uri`), alg allow-list,
//! `iss`, `aud`, `exp`/`nbf` with clock skew, required claims, and
//! optionally `nonce` and `at_hash`. Failures are `token_invalid` with the
//! exact reason; `min_remaining_lifetime` turns a token that expires too
//! soon into `assertion`. Steps: `discovery` (without `jwks_uri`) and
//! `validate`, whose detail reports the remaining lifetime. Publishes
//! `claims`, `alg`, `kid` and `remaining_lifetime_seconds`.
use authpulse_proto::catalog::JwtValidateSpec;
use authpulse_proto::v1::FailureClass;
use serde_json::Value as Json;

use super::{Failure, Probe, ProbeOutcome, RunContext};
use crate::jwt::{self, Expectations};
use crate::oauth::{self, Endpoints, finish, step};

const KIND: &str = "jwt_validate";

impl Probe for JwtValidateSpec {
    async fn run(&self, ctx: &mut RunContext<'_>) -> ProbeOutcome {
        let token = self.token.trim();
        if !token.is_empty() {
            // A JWT is a bearer credential: keep it out of every detail.
            ctx.redactor.remember(token);
        }
        let mut steps = Vec::new();
        if token.is_empty() {
            steps.push(step(
                KIND,
                "validate",
                Err(oauth::OAuthError::new(
                    FailureClass::TokenInvalid,
                    "empty token",
                )),
            ));
            return finish(ctx, steps);
        }
        let mut endpoints = Endpoints::new(KIND, self.issuer.as_deref(), &self.tls);
        let rules = Expectations {
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
            algorithms: self.algorithms.clone(),
            clock_skew: self.clock_skew,
            required_claims: self.required_claims.clone(),
            nonce: self.nonce.clone(),
            access_token: self.access_token.clone(),
        };
        let Some(v) = oauth::validate_step(
            ctx,
            &mut endpoints,
            &mut steps,
            "validate",
            self.jwks_uri.as_deref(),
            token,
            &rules,
        )
        .await
        else {
            return finish(ctx, steps);
        };
        ctx.output("alg", v.alg.clone());
        if let Some(kid) = &v.kid {
            ctx.output("kid", kid.clone());
        }
        ctx.output("remaining_lifetime_seconds", v.remaining.as_secs());
        ctx.output("claims", Json::Object(v.claims));

        if let Some(min) = self.min_remaining_lifetime
            && v.remaining < min
            && let Some(last) = steps.last_mut()
        {
            last.failure = Some(Failure::new(
                FailureClass::Assertion,
                format!(
                    "token expires in {}, below min_remaining_lifetime {}",
                    jwt::lifetime(v.remaining),
                    humantime::format_duration(min)
                ),
            ));
        }
        finish(ctx, steps)
    }
}
