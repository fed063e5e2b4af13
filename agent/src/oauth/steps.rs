//! Probe helpers: the step shapes every OAuth kind shares. Where a probe's
//! endpoints come from ([`Endpoints`]), the token request and JWT
//! validation as steps ([`token_step`], [`validate_step`],
//! [`validate_user_tokens`]), the token outputs for later journey steps
//! ([`publish_tokens`]) and the [`crate::client_config!`] macro.
use std::time::Duration;

use authpulse_proto::catalog::TlsSpec;
use authpulse_proto::v1::FailureClass;
use serde_json::Value as Json;
use url::Url;

use super::{
    ClientAuth, DISCOVERY_TTL, Metadata, OAuthError, TokenResponse, discover_cached,
    forget_discovery, token_request,
};
use crate::http::Timings;
use crate::probes::{Failure, ProbeOutcome, RunContext, StepOutcome};

/// Builds [`ClientConfig`] from any spec with the flat client fields.
#[macro_export]
macro_rules! client_config {
    ($spec:expr) => {
        $crate::oauth::ClientConfig {
            client_id: &$spec.client_id,
            method: $spec.client_auth,
            client_secret: $spec.client_secret.as_ref(),
            private_key: $spec.private_key.as_ref(),
            private_key_alg: $spec.private_key_alg.as_deref(),
            key_id: $spec.key_id.as_deref(),
        }
    };
}

/// A step of an OAuth probe from a result: `Ok((timings, detail))` or the error.
pub fn step(kind: &str, name: &str, result: Result<(Timings, String), OAuthError>) -> StepOutcome {
    let (failure, timings, detail) = match result {
        Ok((t, d)) => (None, t, d),
        Err(e) => (
            Some(Failure::new(e.class, e.message)),
            e.timings,
            String::new(),
        ),
    };
    StepOutcome {
        name: name.to_string(),
        kind: kind.to_string(),
        failure,
        timings,
        detail,
    }
}

/// The run's outcome from its steps so far.
pub fn finish(ctx: &RunContext<'_>, steps: Vec<StepOutcome>) -> ProbeOutcome {
    ProbeOutcome::from_steps(steps, ctx.started.elapsed())
}

/// Where a probe's endpoints come from: given explicitly, or found by
/// discovery of `issuer` (run at most once per run, as a step named
/// `discovery`, only when an endpoint is actually needed from it).
pub struct Endpoints<'a> {
    kind: &'static str,
    issuer: Option<&'a str>,
    tls: &'a TlsSpec,
    metadata: Option<Metadata>,
    cached: bool,
}

impl<'a> Endpoints<'a> {
    pub fn new(kind: &'static str, issuer: Option<&'a str>, tls: &'a TlsSpec) -> Endpoints<'a> {
        Endpoints {
            kind,
            issuer,
            tls,
            metadata: None,
            cached: false,
        }
    }

    /// The URL for `field` (e.g. `token_endpoint`): `explicit` when set,
    /// else from discovery. On failure the failing step is pushed onto
    /// `steps` and `None` returned.
    pub async fn url(
        &mut self,
        ctx: &mut RunContext<'_>,
        steps: &mut Vec<StepOutcome>,
        explicit: Option<&str>,
        field: &str,
    ) -> Option<Url> {
        if let Some(raw) = explicit {
            return match Url::parse(raw) {
                Ok(u) => Some(u),
                Err(e) => {
                    steps.push(step(
                        self.kind,
                        self.kind,
                        Err(OAuthError::new(
                            FailureClass::Config,
                            format!("`{field}` `{raw}` is not a URL: {e}"),
                        )),
                    ));
                    None
                }
            };
        }
        let Some(issuer) = self.issuer else {
            steps.push(step(
                self.kind,
                self.kind,
                Err(OAuthError::new(
                    FailureClass::Config,
                    format!("set `issuer` (for discovery) or `{field}`"),
                )),
            ));
            return None;
        };
        if self.metadata.is_none() {
            match discover_cached(ctx, issuer, self.tls).await {
                Ok((m, timings, cached)) => {
                    let detail = if cached {
                        format!(
                            "{issuer}: metadata reused (refetched every {})",
                            humantime::format_duration(DISCOVERY_TTL)
                        )
                    } else {
                        format!("{issuer}: metadata fetched")
                    };
                    steps.push(step(self.kind, "discovery", Ok((timings, detail))));
                    self.metadata = Some(m);
                    self.cached = cached;
                }
                Err(e) => {
                    steps.push(step(self.kind, "discovery", Err(e)));
                    return None;
                }
            }
        }
        let m = self.metadata.as_ref()?;
        match m.url(field) {
            Some(u) => Some(u),
            None => {
                steps.push(step(
                    self.kind,
                    "discovery",
                    Err(OAuthError::new(
                        FailureClass::Protocol,
                        format!("{issuer}: discovery document has no usable `{field}`"),
                    )),
                ));
                None
            }
        }
    }

    /// Call after a request to a discovered endpoint failed for a reason
    /// other than rejected credentials: the next run fetches the metadata
    /// again instead of trusting the cached copy.
    pub fn request_failed(&self, ctx: &RunContext<'_>, class: FailureClass) {
        if self.cached && class != FailureClass::AuthRejected {
            forget_discovery(ctx);
        }
    }
}

/// Validates a JWT as the step `name` against the JWKS at `jwks_uri` (or
/// the issuer's, by discovery). The step's detail names alg, kid and the
/// remaining lifetime; `None` when it failed (the failing step is pushed).
pub async fn validate_step(
    ctx: &mut RunContext<'_>,
    endpoints: &mut Endpoints<'_>,
    steps: &mut Vec<StepOutcome>,
    name: &str,
    jwks_uri: Option<&str>,
    token: &str,
    rules: &crate::jwt::Expectations,
) -> Option<crate::jwt::Validated> {
    let jwks = endpoints.url(ctx, steps, jwks_uri, "jwks_uri").await?;
    let result = crate::jwt::validate(
        &mut ctx.session,
        &ctx.memory.jwks,
        &jwks,
        endpoints.tls,
        token,
        rules,
    )
    .await;
    match result {
        Ok((v, timings)) => {
            let mut detail = v.alg.clone();
            if let Some(kid) = &v.kid {
                detail.push_str(&format!(" kid {kid}"));
            }
            if let Some(sub) = v.claims.get("sub").and_then(Json::as_str) {
                detail.push_str(&format!(", sub {sub}"));
            }
            detail.push_str(&format!(
                ", expires in {}",
                crate::jwt::lifetime(v.remaining)
            ));
            steps.push(step(endpoints.kind, name, Ok((timings, detail))));
            Some(v)
        }
        Err(e) => {
            steps.push(step(endpoints.kind, name, Err(e)));
            None
        }
    }
}

/// The token request as the step `token`: the request, the shape checks of
/// [`check_token_response`], the outputs of [`publish_tokens`]. `None` when
/// it failed (the failing step is pushed).
pub async fn token_step(
    ctx: &mut RunContext<'_>,
    endpoints: &Endpoints<'_>,
    steps: &mut Vec<StepOutcome>,
    token_endpoint: &Url,
    auth: &ClientAuth,
    params: &[(&str, &str)],
) -> Option<TokenResponse> {
    let result = token_request(
        &mut ctx.session,
        token_endpoint,
        auth,
        params,
        endpoints.tls,
        &ctx.redactor,
    )
    .await
    .and_then(|(t, timings)| match check_token_response(&t) {
        Ok(detail) => Ok((t, timings, detail)),
        Err(e) => Err(e.at(timings)),
    });
    match result {
        Ok((t, timings, detail)) => {
            let detail = format!("{detail} ({} as {})", auth.method_name(), auth.client_id());
            steps.push(step(endpoints.kind, "token", Ok((timings, detail))));
            publish_tokens(ctx, &t);
            Some(t)
        }
        Err(e) => {
            endpoints.request_failed(ctx, e.class);
            steps.push(step(endpoints.kind, "token", Err(e)));
            None
        }
    }
}

/// After a grant for a user (`password`, `refresh`): validates the ID token
/// when there is one (audience = the client, `at_hash` against the access
/// token when the ID token carries one), else a JWT access token, as the
/// step `validate`, and publishes its `claims`. Opaque tokens without an ID
/// token add no step.
#[allow(clippy::too_many_arguments)]
pub async fn validate_user_tokens(
    ctx: &mut RunContext<'_>,
    endpoints: &mut Endpoints<'_>,
    steps: &mut Vec<StepOutcome>,
    tokens: &TokenResponse,
    client_id: &str,
    jwks_uri: Option<&str>,
    algorithms: &[String],
    clock_skew: Duration,
) {
    let mut rules = crate::jwt::Expectations {
        issuer: endpoints.issuer.map(str::to_string),
        algorithms: algorithms.to_vec(),
        clock_skew,
        ..Default::default()
    };
    let token = match &tokens.id_token {
        Some(id) => {
            rules.audience = Some(client_id.to_string());
            rules.required_claims = vec!["sub".into(), "iat".into()];
            if let Ok((_, claims)) = crate::jwt::decode_unverified(id)
                && claims.contains_key("at_hash")
            {
                rules.access_token = Some(tokens.access_token.clone());
            }
            id
        }
        None if crate::jwt::decode_unverified(&tokens.access_token).is_ok() => &tokens.access_token,
        None => return,
    };
    if let Some(v) = validate_step(ctx, endpoints, steps, "validate", jwks_uri, token, &rules).await
    {
        ctx.output("claims", Json::Object(v.claims));
    }
}

/// Publishes a token response for later journey steps: `access_token`,
/// `refresh_token`, `id_token` as secret outputs; `token_type`,
/// `expires_in`, `scope` as plain ones.
pub fn publish_tokens(ctx: &mut RunContext<'_>, t: &TokenResponse) {
    ctx.secret_output("access_token", &t.access_token);
    if let Some(rt) = &t.refresh_token {
        ctx.secret_output("refresh_token", rt);
    }
    if let Some(id) = &t.id_token {
        ctx.secret_output("id_token", id);
    }
    ctx.output("token_type", t.token_type.clone());
    if let Some(e) = t.expires_in {
        ctx.output("expires_in", e);
    }
    if let Some(s) = &t.scope {
        ctx.output("scope", s.clone());
    }
}

/// Sanity of a token response every grant shares: a usable `token_type`,
/// a positive lifetime. The detail names type, lifetime and scope.
pub fn check_token_response(t: &TokenResponse) -> Result<String, OAuthError> {
    if !t.token_type.eq_ignore_ascii_case("bearer") && !t.token_type.eq_ignore_ascii_case("dpop") {
        return Err(OAuthError::new(
            FailureClass::Protocol,
            format!("token_type `{}` is neither Bearer nor DPoP", t.token_type),
        ));
    }
    if t.access_token.is_empty() {
        return Err(OAuthError::new(
            FailureClass::Protocol,
            "empty access_token",
        ));
    }
    if t.expires_in == Some(0) {
        return Err(OAuthError::new(
            FailureClass::Protocol,
            "expires_in is 0: the token is expired on arrival",
        ));
    }
    let mut detail = t.token_type.clone();
    match t.expires_in {
        Some(e) => detail.push_str(&format!(
            ", expires in {}",
            humantime::format_duration(Duration::from_secs(e))
        )),
        None => detail.push_str(", no expires_in"),
    }
    if let Some(s) = &t.scope {
        detail.push_str(&format!(", scope `{s}`"));
    }
    let extra: Vec<&str> = [
        t.refresh_token.as_ref().map(|_| "refresh_token"),
        t.id_token.as_ref().map(|_| "id_token"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !extra.is_empty() {
        detail.push_str(&format!(", with {}", extra.join(" and ")));
    }
    Ok(detail)
}
