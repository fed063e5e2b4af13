//! `authorization_code`: a user's login through the browser flow, without a
//! browser. Builds the authorization request (PKCE S256, `state`, `nonce`,
//! scope `openid` by default) from discovery, hands the pages to the login
//! engine ([`crate::login`]: identifier, password, one-time code, consent
//! and interstitial pages, self-posting forms, `login_steps`) and stops at
//! the redirect to `redirect_uri` (or a `form_post` aimed at it) without
//! fetching it. The callback's `state` and `iss` (RFC 9207) are checked,
//! the code is exchanged with its verifier ([`crate::oauth`]) and the ID
//! token validated ([`crate::jwt`]: signature, `iss`, `aud`, `exp`,
//! `nonce`, `at_hash`). Steps: `discovery` (when endpoints come from the
//! issuer), `authorize`, `login`, `totp`, `consent` (when those pages
//! appear), `callback`, `token`, `validate`. Publishes `access_token`,
//! `id_token`, `refresh_token` (secrets), `token_type`, `expires_in`,
//! `scope`, `claims` and `sub`.
use authpulse_proto::catalog::AuthorizationCodeSpec;
use authpulse_proto::v1::FailureClass;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngExt;
use serde_json::Value as Json;
use sha2::Digest;
use url::Url;

use super::{Failure, Probe, ProbeOutcome, RunContext, StepOutcome, config_failure};
use crate::http::Timings;
use crate::oauth::{self, ClientAuth, Endpoints, finish};

const KIND: &str = "authorization_code";

impl Probe for AuthorizationCodeSpec {
    async fn run(&self, ctx: &mut RunContext<'_>) -> ProbeOutcome {
        let auth =
            match ClientAuth::resolve(&crate::client_config!(self), ctx.secrets, &ctx.redactor) {
                Ok(a) => a,
                Err(e) => return config_failure(ctx, KIND, e.message),
            };
        let keys = login_keys(self);
        let creds = match keys.credentials(ctx) {
            Ok(c) => c,
            Err(m) => return config_failure(ctx, KIND, m),
        };
        let redirect = match Url::parse(&self.redirect_uri) {
            Ok(u) => u,
            Err(e) => {
                return config_failure(
                    ctx,
                    KIND,
                    format!("redirect_uri `{}`: {e}", self.redirect_uri),
                );
            }
        };

        let mut steps = Vec::new();
        let mut endpoints = Endpoints::new(KIND, self.issuer.as_deref(), &self.tls);
        let Some(authorization_endpoint) = endpoints
            .url(
                ctx,
                &mut steps,
                self.authorization_endpoint.as_deref(),
                "authorization_endpoint",
            )
            .await
        else {
            return finish(ctx, steps);
        };
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

        let pkce = Pkce::new();
        let authorize_url = authorize_url(self, &authorization_endpoint, &pkce);
        let engine = match keys.config(&creds, ctx, KIND, "authorize") {
            Ok(c) => c,
            Err(m) => return config_failure(ctx, KIND, m),
        };
        let mut recorder = keys.recorder(&creds, &engine, ctx);
        let stop = crate::login::StopAtUrl(&redirect);
        let reached = crate::login::walk(
            &engine,
            &stop,
            ctx,
            &mut steps,
            crate::login::Start::Get(authorize_url),
            recorder.as_mut(),
        )
        .await;
        drop(recorder);
        let callback = match reached {
            None => return finish(ctx, steps),
            Some(crate::login::Reached::Redirect(u)) => u,
            // response_mode=form_post: the same parameters, posted.
            Some(crate::login::Reached::Post { mut url, fields }) => {
                url.query_pairs_mut().clear().extend_pairs(fields);
                url
            }
        };

        let code = match check_callback(self, &callback, &pkce.state) {
            Ok((code, detail)) => {
                ctx.redactor.remember(&code);
                steps.push(step("callback", None, Timings::default(), detail));
                code
            }
            Err(f) => {
                steps.push(step("callback", Some(f), Timings::default(), String::new()));
                return finish(ctx, steps);
            }
        };

        let params = [
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", self.redirect_uri.as_str()),
            ("code_verifier", pkce.verifier.as_str()),
        ];
        let Some(tokens) =
            oauth::token_step(ctx, &endpoints, &mut steps, &token_endpoint, &auth, &params).await
        else {
            return finish(ctx, steps);
        };

        validate_id_token(self, ctx, &mut endpoints, &mut steps, &tokens, &pkce, &auth).await;
        finish(ctx, steps)
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

/// The spec's login keys for the engine.
fn login_keys(spec: &AuthorizationCodeSpec) -> crate::login::keys::Keys<'_> {
    crate::login::keys::Keys {
        username: &spec.username,
        password: &spec.password,
        totp: spec.totp.as_ref(),
        totp_digits: spec.totp_digits,
        totp_period: spec.totp_period,
        username_field: spec.username_field.as_deref(),
        password_field: spec.password_field.as_deref(),
        totp_field: spec.totp_field.as_deref(),
        form_selector: spec.form_selector.as_deref(),
        consent_button: spec.consent_button.as_deref(),
        login_steps: &spec.login_steps,
        max_pages: spec.max_pages,
        tls: &spec.tls,
    }
}

/// PKCE verifier (RFC 7636, 43 characters), `state` and `nonce`, fresh per run.
struct Pkce {
    verifier: String,
    challenge: String,
    state: String,
    nonce: String,
}

impl Pkce {
    fn new() -> Pkce {
        let mut rng = rand::rng();
        let mut random = || URL_SAFE_NO_PAD.encode(rng.random::<[u8; 32]>());
        let verifier = random();
        let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
        Pkce {
            verifier,
            challenge,
            state: random(),
            nonce: random(),
        }
    }
}

fn authorize_url(spec: &AuthorizationCodeSpec, endpoint: &Url, pkce: &Pkce) -> Url {
    let mut url = endpoint.clone();
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", &spec.client_id)
            .append_pair("redirect_uri", &spec.redirect_uri)
            .append_pair("scope", &spec.scope.join(" "))
            .append_pair("state", &pkce.state)
            .append_pair("nonce", &pkce.nonce)
            .append_pair("code_challenge", &pkce.challenge)
            .append_pair("code_challenge_method", "S256");
        if let Some(p) = &spec.prompt {
            q.append_pair("prompt", p);
        }
        for (k, v) in &spec.authorize_params {
            q.append_pair(k, v);
        }
    }
    url
}

/// The callback's `code`, after checking `error`, `state` and `iss`.
fn check_callback(
    spec: &AuthorizationCodeSpec,
    callback: &Url,
    state: &str,
) -> Result<(String, String), Failure> {
    let get = |k: &str| {
        callback
            .query_pairs()
            .find(|(name, _)| name == k)
            .map(|(_, v)| v.into_owned())
    };
    if let Some(error) = get("error") {
        let description = get("error_description")
            .map(|d| format!(" ({d})"))
            .unwrap_or_default();
        let class = if error == "access_denied" {
            FailureClass::AuthRejected
        } else {
            FailureClass::Protocol
        };
        return Err(Failure::new(
            class,
            format!("the IdP redirected back with error={error}{description}"),
        ));
    }
    let protocol = |m: String| Failure::new(FailureClass::Protocol, m);
    match get("state") {
        Some(s) if s == state => {}
        Some(_) => {
            return Err(protocol(
                "state mismatch in the callback: not the state of this login".into(),
            ));
        }
        None => return Err(protocol("the callback has no `state`".into())),
    }
    let iss = get("iss");
    if let (Some(got), Some(want)) = (&iss, &spec.issuer)
        && got != want
    {
        return Err(protocol(format!(
            "iss in the callback is {got:?}, expected {want:?} (RFC 9207: a response from another IdP)"
        )));
    }
    let code = get("code")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| protocol("the callback has neither `code` nor `error`".into()))?;
    let detail = if iss.is_some() {
        "code received; state and iss match".to_string()
    } else {
        "code received; state matches".to_string()
    };
    Ok((code, detail))
}

/// With scope `openid`: the ID token must be there and valid for this
/// login (issuer, audience = client, nonce, at_hash when present).
async fn validate_id_token(
    spec: &AuthorizationCodeSpec,
    ctx: &mut RunContext<'_>,
    endpoints: &mut Endpoints<'_>,
    steps: &mut Vec<StepOutcome>,
    tokens: &oauth::TokenResponse,
    pkce: &Pkce,
    auth: &ClientAuth,
) {
    let Some(id_token) = &tokens.id_token else {
        if spec.scope.iter().any(|s| s == "openid") {
            let f = Failure::new(
                FailureClass::Protocol,
                "scope includes openid but the token response has no id_token",
            );
            steps.push(step("validate", Some(f), Timings::default(), String::new()));
        }
        return;
    };
    let mut rules = crate::jwt::Expectations {
        issuer: spec.issuer.clone(),
        audience: Some(auth.client_id().to_string()),
        algorithms: spec.algorithms.clone(),
        clock_skew: spec.clock_skew,
        required_claims: vec!["sub".into(), "iat".into()],
        nonce: Some(pkce.nonce.clone()),
        ..Default::default()
    };
    if let Ok((_, claims)) = crate::jwt::decode_unverified(id_token)
        && claims.contains_key("at_hash")
    {
        rules.access_token = Some(tokens.access_token.clone());
    }
    if let Some(v) = oauth::validate_step(
        ctx,
        endpoints,
        steps,
        "validate",
        spec.jwks_uri.as_deref(),
        id_token,
        &rules,
    )
    .await
    {
        if let Some(sub) = v.claims.get("sub").cloned() {
            ctx.output("sub", sub);
        }
        ctx.output("claims", Json::Object(v.claims));
    }
}
