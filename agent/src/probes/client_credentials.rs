//! `client_credentials`: the client gets a token for itself (RFC 6749
//! §4.4), authenticating with `client_secret_basic`, `client_secret_post`
//! or `private_key_jwt`. Steps: `discovery` (only when an endpoint comes
//! from the issuer's metadata; reused for a few minutes), `token` (the
//! request; checks `token_type` and `expires_in`), and `validate` when the
//! access token is a JWT (signature via the JWKS, `iss`, `aud`, `exp`).
//! Publishes `access_token` (secret), `token_type`, `expires_in`, `scope`
//! and, for a JWT, `claims`.
use authpulse_proto::catalog::ClientCredentialsSpec;
use authpulse_proto::v1::FailureClass;
use serde_json::Value as Json;

use super::{Probe, ProbeOutcome, RunContext, config_failure};
use crate::jwt::{self, Expectations};
use crate::oauth::{self, ClientAuth, Endpoints, OAuthError, finish, step};

const KIND: &str = "client_credentials";

impl Probe for ClientCredentialsSpec {
    async fn run(&self, ctx: &mut RunContext<'_>) -> ProbeOutcome {
        let auth =
            match ClientAuth::resolve(&crate::client_config!(self), ctx.secrets, &ctx.redactor) {
                Ok(a) => a,
                Err(e) => return config_failure(ctx, KIND, e.message),
            };
        let mut steps = Vec::new();
        let mut endpoints = Endpoints::new(KIND, self.issuer.as_deref(), &self.tls);
        let Some(token_endpoint) = endpoints
            .url(
                ctx,
                &mut steps,
                self.token_endpoint.as_deref(),
                "token_endpoint",
            )
            .await
        else {
            return finish(ctx, steps);
        };

        // The token request.
        let scope = oauth::scope_param(&self.scope);
        let mut params = vec![("grant_type", "client_credentials")];
        if let Some(s) = &scope {
            params.push(("scope", s));
        }
        if let Some(r) = &self.resource {
            params.push(("resource", r));
        }
        if let Some(a) = &self.audience {
            params.push(("audience", a));
        }
        let Some(tokens) =
            oauth::token_step(ctx, &endpoints, &mut steps, &token_endpoint, &auth, &params).await
        else {
            return finish(ctx, steps);
        };

        // A JWT access token is checked like a resource server would; an
        // opaque one only by the shape checks above.
        if jwt::decode_unverified(&tokens.access_token).is_err() {
            if self.require_jwt {
                steps.push(step(
                    KIND,
                    "validate",
                    Err(OAuthError::new(
                        FailureClass::TokenInvalid,
                        "the access token is opaque, not a JWT (require_jwt is set)",
                    )),
                ));
            }
            return finish(ctx, steps);
        }
        let rules = Expectations {
            issuer: self.issuer.clone(),
            audience: self
                .expected_audience
                .clone()
                .or_else(|| self.resource.clone())
                .or_else(|| self.audience.clone()),
            algorithms: self.algorithms.clone(),
            clock_skew: self.clock_skew,
            required_claims: self.required_claims.clone(),
            nonce: None,
            access_token: None,
        };
        if let Some(v) = oauth::validate_step(
            ctx,
            &mut endpoints,
            &mut steps,
            "validate",
            self.jwks_uri.as_deref(),
            &tokens.access_token,
            &rules,
        )
        .await
        {
            ctx.output("claims", Json::Object(v.claims));
        }
        finish(ctx, steps)
    }
}
