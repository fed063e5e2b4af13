//! `aws_cognito`: a user pool login as an app does it. Step `initiate_auth`
//! calls InitiateAuth with `USER_PASSWORD_AUTH` (plus SECRET_HASH for app
//! clients with a secret); step `validate` checks the returned ID and access
//! tokens against the pool's JWKS with the shared validator ([`crate::jwt`]):
//! signature, `iss` (configurable: emulators and custom domains differ from
//! the public Cognito issuer), `exp`, the ID token's `aud` and the access
//! token's `client_id` against `client_id`, and each token's `token_use`.
//! A refused password (NotAuthorizedException, UserNotFoundException…) or
//! a login that stops at a challenge (new password, MFA) is
//! `auth_rejected`; a token that fails validation is `token_invalid`.
//! Outputs: `access_token`, `id_token`, `refresh_token` (secret),
//! `expires_in`, and after validation `sub`, `username`, `claims` (the ID
//! token's claims).
use authpulse_proto::catalog::AwsCognitoSpec;
use authpulse_proto::v1::FailureClass;
use base64::Engine;
use hmac::{KeyInit, Mac};
use serde_json::{Value as Json, json};
use url::Url;

use super::{Failure, Probe, ProbeOutcome, RunContext, StepOutcome, config_failure, ms, snippet};
use crate::aws::{self, AwsError};
use crate::http::Timings;
use crate::jwt::{self, Expectations};
use crate::secrets;

const KIND: &str = "aws_cognito";
const TARGET: &str = "AWSCognitoIdentityProviderService.InitiateAuth";

/// The tokens of a completed login that get validated.
struct Tokens {
    access: String,
    id: String,
}

impl Probe for AwsCognitoSpec {
    async fn run(&self, ctx: &mut RunContext<'_>) -> ProbeOutcome {
        let Some(region) = self.region() else {
            return config_failure(
                ctx,
                KIND,
                format!(
                    "no region given and none in user_pool_id `{}`",
                    self.user_pool_id
                ),
            );
        };
        let endpoint = match aws::endpoint(self.endpoint.as_deref(), "cognito-idp", &region) {
            Ok(u) => u,
            Err(f) => return config_failure(ctx, KIND, f.message),
        };
        let password = match secrets::resolve(&self.password, ctx.secrets, &ctx.redactor) {
            Ok(p) => p,
            Err(e) => return config_failure(ctx, KIND, e.to_string()),
        };
        let client_secret = match self
            .client_secret
            .as_ref()
            .map(|s| secrets::resolve(s, ctx.secrets, &ctx.redactor))
            .transpose()
        {
            Ok(s) => s,
            Err(e) => return config_failure(ctx, KIND, e.to_string()),
        };

        let mut steps = Vec::new();
        let (login, tokens) = initiate_auth(
            self,
            ctx,
            endpoint.clone(),
            &password,
            client_secret.as_deref(),
        )
        .await;
        steps.push(login);
        if let Some(tokens) = tokens
            && self.validate_tokens
        {
            steps.push(validate(self, ctx, &endpoint, &region, &tokens).await);
        }
        ProbeOutcome::from_steps(steps, ctx.started.elapsed())
    }
}

fn step(name: &str, failure: Option<Failure>, timings: Timings, detail: String) -> StepOutcome {
    StepOutcome {
        name: name.into(),
        kind: KIND.into(),
        failure,
        timings,
        detail,
    }
}

/// `Base64(HMAC-SHA256(client secret, username + client id))`.
fn secret_hash(client_secret: &str, username: &str, client_id: &str) -> Option<String> {
    // HMAC takes keys of any length: this never fails in practice.
    let mut mac =
        <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(client_secret.as_bytes()).ok()?;
    mac.update(username.as_bytes());
    mac.update(client_id.as_bytes());
    Some(base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
}

/// Step `initiate_auth`: the password login. Public client API: unsigned.
async fn initiate_auth(
    spec: &AwsCognitoSpec,
    ctx: &mut RunContext<'_>,
    endpoint: Url,
    password: &str,
    client_secret: Option<&str>,
) -> (StepOutcome, Option<Tokens>) {
    const NAME: &str = "initiate_auth";
    let mut params = json!({"USERNAME": spec.username, "PASSWORD": password});
    if let Some(secret) = client_secret {
        let Some(hash) = secret_hash(secret, &spec.username, &spec.client_id) else {
            let f = Failure::new(
                FailureClass::Config,
                "client_secret is unusable as an HMAC key",
            );
            return (step(NAME, Some(f), Timings::default(), String::new()), None);
        };
        ctx.redactor.remember(&hash);
        params["SECRET_HASH"] = Json::String(hash);
    }
    let body = json!({
        "AuthFlow": "USER_PASSWORD_AUTH",
        "ClientId": spec.client_id,
        "AuthParameters": params,
    });
    let host = aws::authority(&endpoint);
    let req = match aws::json_request(endpoint, TARGET, "1.1", &body, &spec.tls) {
        Ok(r) => r,
        Err(f) => return (step(NAME, Some(f), Timings::default(), String::new()), None),
    };
    let resp = match ctx.session.send(req).await {
        Ok(r) => r,
        Err(e) => {
            let f = Failure::new(e.class, e.message.clone());
            return (step(NAME, Some(f), e.timings, String::new()), None);
        }
    };
    let t = resp.timings;
    let fail = |class, msg: String| {
        (
            step(NAME, Some(Failure::new(class, msg)), t, String::new()),
            None,
        )
    };
    let call = format!("InitiateAuth for {} at {host}", spec.username);
    if !resp.status.is_success() {
        let f = AwsError::parse(&resp).failure(&call);
        return (step(NAME, Some(f), t, String::new()), None);
    }
    let answer: Json = match serde_json::from_slice(&resp.body) {
        Ok(v) => v,
        Err(e) => {
            return fail(
                FailureClass::Protocol,
                format!("{call}: answer is not JSON ({e}): {}", snippet(&resp.body)),
            );
        }
    };
    if let Some(challenge) = answer.get("ChallengeName").and_then(Json::as_str) {
        return fail(
            FailureClass::AuthRejected,
            format!(
                "{call}: login stopped at challenge {challenge}; a synthetic user must sign in with its password alone"
            ),
        );
    }
    let result = &answer["AuthenticationResult"];
    let text = |k: &str| {
        result
            .get(k)
            .and_then(Json::as_str)
            .filter(|s| !s.is_empty())
    };
    let (Some(access), Some(id)) = (text("AccessToken"), text("IdToken")) else {
        return fail(
            FailureClass::Protocol,
            format!("{call}: no AuthenticationResult with AccessToken and IdToken"),
        );
    };
    ctx.secret_output("access_token", access);
    ctx.secret_output("id_token", id);
    if let Some(refresh) = text("RefreshToken") {
        ctx.secret_output("refresh_token", refresh);
    }
    let expires_in = result.get("ExpiresIn").and_then(Json::as_u64);
    if let Some(e) = expires_in {
        ctx.output("expires_in", e);
    }
    let detail = format!(
        "signed in as {}{} in {}",
        spec.username,
        expires_in
            .map(|e| format!(", tokens valid {e}s"))
            .unwrap_or_default(),
        ms(t.total)
    );
    (
        step(NAME, None, t, detail),
        Some(Tokens {
            access: access.to_string(),
            id: id.to_string(),
        }),
    )
}

/// Step `validate`: both tokens against the pool's keys and claims.
async fn validate(
    spec: &AwsCognitoSpec,
    ctx: &mut RunContext<'_>,
    endpoint: &Url,
    region: &str,
    tokens: &Tokens,
) -> StepOutcome {
    const NAME: &str = "validate";
    let issuer = spec.issuer.clone().unwrap_or_else(|| {
        format!(
            "https://cognito-idp.{region}.amazonaws.com/{}",
            spec.user_pool_id
        )
    });
    let jwks_raw = spec.jwks_url.clone().unwrap_or_else(|| {
        format!(
            "{}/{}/.well-known/jwks.json",
            endpoint.as_str().trim_end_matches('/'),
            spec.user_pool_id
        )
    });
    let mut timings = Timings::default();
    let jwks = match Url::parse(&jwks_raw) {
        Ok(u) => u,
        Err(e) => {
            let f = Failure::new(FailureClass::Config, format!("jwks_url `{jwks_raw}`: {e}"));
            return step(NAME, Some(f), timings, String::new());
        }
    };
    let started = tokio::time::Instant::now();
    let mut details = Vec::new();
    let mut id_claims = None;
    for (which, token, token_use) in [
        ("ID token", tokens.id.as_str(), "id"),
        ("access token", tokens.access.as_str(), "access"),
    ] {
        let rules = Expectations {
            issuer: Some(issuer.clone()),
            // Cognito access tokens carry `client_id`, not `aud`.
            audience: (token_use == "id").then(|| spec.client_id.clone()),
            required_claims: vec!["token_use".into(), "sub".into()],
            ..Expectations::default()
        };
        let checked = jwt::validate(
            &mut ctx.session,
            &ctx.memory.jwks,
            &jwks,
            &spec.tls,
            token,
            &rules,
        )
        .await;
        let (valid, t) = match checked {
            Ok(v) => v,
            Err(e) => {
                timings.absorb(&e.timings);
                timings.total = started.elapsed();
                let f = Failure::new(e.class, format!("{which}: {}", e.message));
                return step(NAME, Some(f), timings, String::new());
            }
        };
        timings.absorb(&t);
        let invalid = |m: String| {
            let mut t = timings;
            t.total = started.elapsed();
            step(
                NAME,
                Some(Failure::new(
                    FailureClass::TokenInvalid,
                    format!("{which}: {m}"),
                )),
                t,
                String::new(),
            )
        };
        let got_use = valid.claims.get("token_use").and_then(Json::as_str);
        if got_use != Some(token_use) {
            return invalid(format!("token_use is {got_use:?}, expected {token_use:?}"));
        }
        if token_use == "access" {
            let cid = valid.claims.get("client_id").and_then(Json::as_str);
            if cid != Some(spec.client_id.as_str()) {
                return invalid(format!(
                    "client_id is {cid:?}, expected {:?}",
                    spec.client_id
                ));
            }
        }
        details.push(format!(
            "{which} {} ok, expires in {}",
            valid.alg,
            jwt::lifetime(valid.remaining)
        ));
        if token_use == "id" {
            id_claims = Some(valid.claims);
        }
    }
    if let Some(claims) = id_claims {
        if let Some(sub) = claims.get("sub") {
            ctx.output("sub", sub.clone());
        }
        if let Some(user) = claims.get("cognito:username") {
            ctx.output("username", user.clone());
        }
        ctx.output("claims", Json::Object(claims));
    }
    timings.total = started.elapsed();
    step(NAME, None, timings, details.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_hash_matches_the_documented_construction() {
        // HMAC-SHA256("secret", "aliceclient") in base64, computed independently.
        assert_eq!(
            secret_hash("secret", "alice", "client").as_deref(),
            Some("RTsve+FQ659UKyESgvLg9GYmZEL+QjzQsW/OjL77/b0=")
        );
    }
}
