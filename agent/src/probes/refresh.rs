//! `refresh`: redeems a refresh token (RFC 6749 §6), usually the one an
//! earlier journey step published (`refresh_token: "{{ steps.login.refresh_token }}"`),
//! or a long-lived one given as a secret. Steps: `discovery` (when an
//! endpoint comes from the issuer's metadata), `token`, and `validate` (the
//! ID token, or a JWT access token). Publishes `access_token`, `id_token`,
//! `refresh_token` (secrets: the rotated one, or the one redeemed when the
//! provider did not rotate it), `refresh_token_rotated`, `token_type`,
//! `expires_in`, `scope` and `claims`.
use authpulse_proto::catalog::RefreshSpec;

use super::{Probe, ProbeOutcome, RunContext, config_failure};
use crate::oauth::{self, ClientAuth, Endpoints, finish};

const KIND: &str = "refresh";

impl Probe for RefreshSpec {
    async fn run(&self, ctx: &mut RunContext<'_>) -> ProbeOutcome {
        let auth =
            match ClientAuth::resolve(&crate::client_config!(self), ctx.secrets, &ctx.redactor) {
                Ok(a) => a,
                Err(e) => return config_failure(ctx, KIND, e.message),
            };
        let refresh_token =
            match crate::secrets::resolve(&self.refresh_token, ctx.secrets, &ctx.redactor) {
                Ok(t) => t,
                Err(e) => return config_failure(ctx, KIND, e.to_string()),
            };
        // A template filled from a journey step is a credential too.
        ctx.redactor.remember(&refresh_token);
        if refresh_token.trim().is_empty() {
            return config_failure(ctx, KIND, "`refresh_token` is empty");
        }
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

        let scope = oauth::scope_param(&self.scope);
        let mut params = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.as_str()),
        ];
        if let Some(s) = &scope {
            params.push(("scope", s));
        }
        let Some(tokens) =
            oauth::token_step(ctx, &endpoints, &mut steps, &token_endpoint, &auth, &params).await
        else {
            return finish(ctx, steps);
        };
        // Later steps always find the refresh token to use next.
        let rotated = tokens
            .refresh_token
            .as_ref()
            .is_some_and(|t| *t != refresh_token);
        if tokens.refresh_token.is_none() {
            ctx.secret_output("refresh_token", &refresh_token);
        }
        ctx.output("refresh_token_rotated", rotated);

        oauth::validate_user_tokens(
            ctx,
            &mut endpoints,
            &mut steps,
            &tokens,
            auth.client_id(),
            self.jwks_uri.as_deref(),
            &self.algorithms,
            self.clock_skew,
        )
        .await;
        finish(ctx, steps)
    }
}
