//! `password`: the resource owner password credentials grant (ROPC, RFC
//! 6749 §4.3): the client sends a user's name and password to the token
//! endpoint. Deprecated by OAuth 2.1 but still how many legacy apps and
//! some IdP health checks log in. Steps: `discovery` (when an endpoint
//! comes from the issuer's metadata), `token`, and `validate` (the ID token,
//! or a JWT access token). Publishes `access_token`, `refresh_token`,
//! `id_token` (secrets), `token_type`, `expires_in`, `scope` and `claims`.
use authpulse_proto::catalog::PasswordSpec;

use super::{Probe, ProbeOutcome, RunContext, config_failure};
use crate::oauth::{self, ClientAuth, Endpoints, finish};

const KIND: &str = "password";

impl Probe for PasswordSpec {
    async fn run(&self, ctx: &mut RunContext<'_>) -> ProbeOutcome {
        let auth =
            match ClientAuth::resolve(&crate::client_config!(self), ctx.secrets, &ctx.redactor) {
                Ok(a) => a,
                Err(e) => return config_failure(ctx, KIND, e.message),
            };
        let password = match crate::secrets::resolve(&self.password, ctx.secrets, &ctx.redactor) {
            Ok(p) => p,
            Err(e) => return config_failure(ctx, KIND, e.to_string()),
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

        let scope = oauth::scope_param(&self.scope);
        let mut params = vec![
            ("grant_type", "password"),
            ("username", self.username.as_str()),
            ("password", password.as_str()),
        ];
        if let Some(s) = &scope {
            params.push(("scope", s));
        }
        let Some(tokens) =
            oauth::token_step(ctx, &endpoints, &mut steps, &token_endpoint, &auth, &params).await
        else {
            return finish(ctx, steps);
        };

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
