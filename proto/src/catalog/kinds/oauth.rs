//! OAuth 2.0 / OpenID Connect kinds: token grants (`client_credentials`,
//! `password`, `refresh`; `authorization_code` has its own file), token use
//! (`introspect`, `userinfo`, `revoke`) and `jwt_validate`.
//!
//! The client fields (`client_id`, `client_secret`, `client_auth`,
//! `private_key`, `private_key_alg`, `key_id`) are repeated flat in every
//! kind that talks to the token, introspection or revocation endpoint:
//! serde can't combine `flatten` with `deny_unknown_fields`, and flat keys
//! read better in a catalog.
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::super::schema::HumanDuration;
use super::super::source_map::Seg;
use super::super::{TlsSpec, Value};
use super::{Issues, Validate, check_tls, check_url, is_templated, key};

/// How a client authenticates at the token, introspection and revocation
/// endpoints (RFC 6749 §2.3, OIDC Core §9).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuthMethod {
    /// HTTP Basic with the form-encoded id and secret.
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
    /// A client assertion JWT signed with `private_key` (RFC 7523).
    PrivateKeyJwt,
    /// A public client: only `client_id` is sent.
    None,
}

/// Signature algorithms a JWT may use unless a probe narrows the list.
/// Never `none`, never HMAC: we verify against an issuer's public JWKS.
pub const DEFAULT_JWT_ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

/// Algorithms a verifier may allow: asymmetric only.
const ASYMMETRIC_ALGORITHMS: &[&str] = DEFAULT_JWT_ALGORITHMS;

pub(super) fn default_algorithms() -> Vec<String> {
    DEFAULT_JWT_ALGORITHMS
        .iter()
        .map(|s| s.to_string())
        .collect()
}
pub(super) fn default_clock_skew() -> Duration {
    Duration::from_secs(60)
}
pub(super) fn is_default_clock_skew(d: &Duration) -> bool {
    *d == default_clock_skew()
}
pub(super) fn is_default_algorithms(a: &[String]) -> bool {
    a == default_algorithms().as_slice()
}
pub(super) fn default_true() -> bool {
    true
}
pub(super) fn is_true(b: &bool) -> bool {
    *b
}

/// `client_credentials`: a token for the client itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientCredentialsSpec {
    /// Issuer for discovery (`<issuer>/.well-known/openid-configuration`, whose
    /// `issuer` must equal it exactly) and for the `iss` check of a JWT access
    /// token. Either `issuer` or `token_endpoint` is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The token endpoint; set, it skips discovery for the token request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint: Option<String>,
    /// The client id.
    pub client_id: String,
    /// The client secret, normally `{ secret: NAME }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<Value>,
    /// How the client authenticates. Default: `private_key_jwt` with
    /// `private_key`, `client_secret_basic` with `client_secret`, else `none`;
    /// needed when both are set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_auth: Option<ClientAuthMethod>,
    /// PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC) for `private_key_jwt`,
    /// normally `{ secret: NAME }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<Value>,
    /// Signature algorithm of the client assertion: RS256, RS384, RS512, PS256,
    /// PS384, PS512, ES256 or ES384. Default: RS256 for an RSA key, ES256 for
    /// an EC key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key_alg: Option<String>,
    /// `kid` header of the client assertion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// Scopes requested, sent space-separated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scope: Vec<String>,
    /// RFC 8707 resource indicator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// `audience` request parameter (Auth0, Okta custom servers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// The `aud` a JWT access token must contain. Default: `resource`, else
    /// `audience`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_audience: Option<String>,
    /// Fail (`token_invalid`) when the access token is opaque, not a JWT.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    #[schemars(!skip_serializing_if)]
    pub require_jwt: bool,
    /// JWKS for a JWT access token. Default: the issuer's `jwks_uri`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// Signature algorithms a token may use: asymmetric only (`none` and HS*
    /// are refused).
    #[serde(
        default = "default_algorithms",
        skip_serializing_if = "is_default_algorithms"
    )]
    #[schemars(!skip_serializing_if)]
    pub algorithms: Vec<String>,
    /// Leeway for `exp`, `nbf` and `iat`.
    #[serde(
        default = "default_clock_skew",
        with = "humantime_serde",
        skip_serializing_if = "is_default_clock_skew"
    )]
    #[schemars(with = "HumanDuration")]
    #[schemars(!skip_serializing_if)]
    pub clock_skew: Duration,
    /// Claims a JWT access token must have.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_claims: Vec<String>,
    /// TLS client settings.
    #[serde(default)]
    pub tls: TlsSpec,
}

impl Validate for ClientCredentialsSpec {
    fn validate(&self) -> Issues {
        let mut out = Vec::new();
        endpoint_source(
            &mut out,
            &self.issuer,
            &[("token_endpoint", &self.token_endpoint)],
        );
        opt_url(&mut out, "jwks_uri", &self.jwks_uri);
        client_fields(
            &mut out,
            &self.client_auth,
            &self.client_secret,
            &self.private_key,
            &self.private_key_alg,
        );
        algorithms(&mut out, &self.algorithms);
        check_tls(&mut out, &self.tls);
        out
    }
}

/// `password`: the resource owner password credentials grant (ROPC).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordSpec {
    /// Issuer for discovery (`<issuer>/.well-known/openid-configuration`, whose
    /// `issuer` must equal it exactly) and the expected `iss` of tokens. Either
    /// `issuer` or the explicit endpoint is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The token endpoint; set, it skips discovery for the token request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint: Option<String>,
    /// The client id.
    pub client_id: String,
    /// The client secret, normally `{ secret: NAME }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<Value>,
    /// How the client authenticates. Default: `private_key_jwt` with
    /// `private_key`, `client_secret_basic` with `client_secret`, else `none`;
    /// needed when both are set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_auth: Option<ClientAuthMethod>,
    /// PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC) for `private_key_jwt`,
    /// normally `{ secret: NAME }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<Value>,
    /// Signature algorithm of the client assertion: RS256, RS384, RS512, PS256,
    /// PS384, PS512, ES256 or ES384. Default: RS256 for an RSA key, ES256 for
    /// an EC key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key_alg: Option<String>,
    /// `kid` header of the client assertion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// The synthetic user's name.
    pub username: String,
    /// The synthetic user's password, normally `{ secret: NAME }`.
    pub password: Value,
    /// Scopes requested, sent space-separated, e.g. `[openid, offline_access]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scope: Vec<String>,
    /// JWKS the tokens are verified with. Default: the issuer's `jwks_uri`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// Signature algorithms a token may use: asymmetric only (`none` and HS*
    /// are refused).
    #[serde(
        default = "default_algorithms",
        skip_serializing_if = "is_default_algorithms"
    )]
    #[schemars(!skip_serializing_if)]
    pub algorithms: Vec<String>,
    /// Leeway for `exp`, `nbf` and `iat`.
    #[serde(
        default = "default_clock_skew",
        with = "humantime_serde",
        skip_serializing_if = "is_default_clock_skew"
    )]
    #[schemars(with = "HumanDuration")]
    #[schemars(!skip_serializing_if)]
    pub clock_skew: Duration,
    /// TLS client settings.
    #[serde(default)]
    pub tls: TlsSpec,
}

impl Validate for PasswordSpec {
    fn validate(&self) -> Issues {
        let mut out = Vec::new();
        endpoint_source(
            &mut out,
            &self.issuer,
            &[("token_endpoint", &self.token_endpoint)],
        );
        opt_url(&mut out, "jwks_uri", &self.jwks_uri);
        client_fields(
            &mut out,
            &self.client_auth,
            &self.client_secret,
            &self.private_key,
            &self.private_key_alg,
        );
        algorithms(&mut out, &self.algorithms);
        check_tls(&mut out, &self.tls);
        out
    }
}

/// `refresh`: redeems a refresh token, usually one an earlier journey step
/// published (`refresh_token: "{{ steps.login.refresh_token }}"`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshSpec {
    /// Issuer for discovery (`<issuer>/.well-known/openid-configuration`, whose
    /// `issuer` must equal it exactly) and the expected `iss` of tokens. Either
    /// `issuer` or the explicit endpoint is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The token endpoint; set, it skips discovery for the token request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint: Option<String>,
    /// The client id.
    pub client_id: String,
    /// The client secret, normally `{ secret: NAME }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<Value>,
    /// How the client authenticates. Default: `private_key_jwt` with
    /// `private_key`, `client_secret_basic` with `client_secret`, else `none`;
    /// needed when both are set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_auth: Option<ClientAuthMethod>,
    /// PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC) for `private_key_jwt`,
    /// normally `{ secret: NAME }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<Value>,
    /// Signature algorithm of the client assertion: RS256, RS384, RS512, PS256,
    /// PS384, PS512, ES256 or ES384. Default: RS256 for an RSA key, ES256 for
    /// an EC key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key_alg: Option<String>,
    /// `kid` header of the client assertion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// The refresh token: a template such as `"{{ steps.login.refresh_token
    /// }}"`, or `{ secret: NAME }`.
    pub refresh_token: Value,
    /// Scopes requested, sent space-separated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scope: Vec<String>,
    /// JWKS the tokens are verified with. Default: the issuer's `jwks_uri`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// Signature algorithms a token may use: asymmetric only (`none` and HS*
    /// are refused).
    #[serde(
        default = "default_algorithms",
        skip_serializing_if = "is_default_algorithms"
    )]
    #[schemars(!skip_serializing_if)]
    pub algorithms: Vec<String>,
    /// Leeway for `exp`, `nbf` and `iat`.
    #[serde(
        default = "default_clock_skew",
        with = "humantime_serde",
        skip_serializing_if = "is_default_clock_skew"
    )]
    #[schemars(with = "HumanDuration")]
    #[schemars(!skip_serializing_if)]
    pub clock_skew: Duration,
    /// TLS client settings.
    #[serde(default)]
    pub tls: TlsSpec,
}

impl Validate for RefreshSpec {
    fn validate(&self) -> Issues {
        let mut out = Vec::new();
        endpoint_source(
            &mut out,
            &self.issuer,
            &[("token_endpoint", &self.token_endpoint)],
        );
        opt_url(&mut out, "jwks_uri", &self.jwks_uri);
        client_fields(
            &mut out,
            &self.client_auth,
            &self.client_secret,
            &self.private_key,
            &self.private_key_alg,
        );
        algorithms(&mut out, &self.algorithms);
        check_tls(&mut out, &self.tls);
        out
    }
}

/// `introspect`: RFC 7662 token introspection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IntrospectSpec {
    /// Issuer for discovery of the introspection endpoint. Either `issuer` or
    /// `introspection_endpoint` is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The introspection endpoint; set, it skips discovery for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introspection_endpoint: Option<String>,
    /// The client id.
    pub client_id: String,
    /// The client secret, normally `{ secret: NAME }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<Value>,
    /// How the client authenticates. Default: `private_key_jwt` with
    /// `private_key`, `client_secret_basic` with `client_secret`, else `none`;
    /// needed when both are set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_auth: Option<ClientAuthMethod>,
    /// PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC) for `private_key_jwt`,
    /// normally `{ secret: NAME }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<Value>,
    /// Signature algorithm of the client assertion: RS256, RS384, RS512, PS256,
    /// PS384, PS512, ES256 or ES384. Default: RS256 for an RSA key, ES256 for
    /// an EC key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key_alg: Option<String>,
    /// `kid` header of the client assertion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// The token to introspect, usually `{{ steps.x.access_token }}`.
    pub token: String,
    /// `access_token` or `refresh_token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_type_hint: Option<String>,
    /// The token must be active (inactive is `token_invalid`); `false` asserts
    /// it is dead, after logout or revocation (still active is `assertion`).
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    #[schemars(!skip_serializing_if)]
    pub expect_active: bool,
    /// TLS client settings.
    #[serde(default)]
    pub tls: TlsSpec,
}

impl Validate for IntrospectSpec {
    fn validate(&self) -> Issues {
        let mut out = Vec::new();
        endpoint_source(
            &mut out,
            &self.issuer,
            &[("introspection_endpoint", &self.introspection_endpoint)],
        );
        client_fields(
            &mut out,
            &self.client_auth,
            &self.client_secret,
            &self.private_key,
            &self.private_key_alg,
        );
        token_type_hint(&mut out, &self.token_type_hint);
        check_tls(&mut out, &self.tls);
        out
    }
}

/// `userinfo`: the OIDC UserInfo endpoint with a bearer token.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserinfoSpec {
    /// Issuer for discovery of the UserInfo endpoint. Either `issuer` or
    /// `userinfo_endpoint` is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The UserInfo endpoint; set, it skips discovery for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userinfo_endpoint: Option<String>,
    /// An access token, usually `{{ steps.x.access_token }}`.
    pub token: String,
    /// Claims the answer must contain (else `assertion`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_claims: Vec<String>,
    /// The `sub` the answer must have (e.g. `{{ steps.login.claims.sub }}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_sub: Option<String>,
    /// TLS client settings.
    #[serde(default)]
    pub tls: TlsSpec,
}

impl Validate for UserinfoSpec {
    fn validate(&self) -> Issues {
        let mut out = Vec::new();
        endpoint_source(
            &mut out,
            &self.issuer,
            &[("userinfo_endpoint", &self.userinfo_endpoint)],
        );
        check_tls(&mut out, &self.tls);
        out
    }
}

/// `revoke`: RFC 7009 revocation, then (by default) introspection to prove
/// the token is really dead.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeSpec {
    /// Issuer for discovery of the revocation (and introspection) endpoint.
    /// Either `issuer` or the explicit endpoints are required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The revocation endpoint; set, it skips discovery for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_endpoint: Option<String>,
    /// The introspection endpoint `verify` uses; set, it skips discovery for
    /// it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introspection_endpoint: Option<String>,
    /// The client id.
    pub client_id: String,
    /// The client secret, normally `{ secret: NAME }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<Value>,
    /// How the client authenticates. Default: `private_key_jwt` with
    /// `private_key`, `client_secret_basic` with `client_secret`, else `none`;
    /// needed when both are set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_auth: Option<ClientAuthMethod>,
    /// PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC) for `private_key_jwt`,
    /// normally `{ secret: NAME }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<Value>,
    /// Signature algorithm of the client assertion: RS256, RS384, RS512, PS256,
    /// PS384, PS512, ES256 or ES384. Default: RS256 for an RSA key, ES256 for
    /// an EC key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key_alg: Option<String>,
    /// `kid` header of the client assertion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// The token to revoke, usually `"{{ steps.x.access_token }}"`.
    pub token: String,
    /// `access_token` or `refresh_token`, sent as the token type hint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_type_hint: Option<String>,
    /// Introspect the token afterwards with the same client: still active is
    /// `assertion` (a logout that doesn't log out).
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    #[schemars(!skip_serializing_if)]
    pub verify: bool,
    /// TLS client settings.
    #[serde(default)]
    pub tls: TlsSpec,
}

impl Validate for RevokeSpec {
    fn validate(&self) -> Issues {
        let mut out = Vec::new();
        endpoint_source(
            &mut out,
            &self.issuer,
            &[("revocation_endpoint", &self.revocation_endpoint)],
        );
        if self.verify {
            endpoint_source(
                &mut out,
                &self.issuer,
                &[("introspection_endpoint", &self.introspection_endpoint)],
            );
        }
        client_fields(
            &mut out,
            &self.client_auth,
            &self.client_secret,
            &self.private_key,
            &self.private_key_alg,
        );
        token_type_hint(&mut out, &self.token_type_hint);
        check_tls(&mut out, &self.tls);
        out
    }
}

/// `jwt_validate`: verifies any JWT (signature via the issuer's JWKS, alg
/// allow-list, iss/aud/exp/nbf with clock skew, required claims).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JwtValidateSpec {
    /// The JWT, usually `"{{ steps.x.id_token }}"`.
    pub token: String,
    /// Expected `iss`; also finds the JWKS through discovery unless `jwks_uri`
    /// is set. One of `issuer` and `jwks_uri` is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// JWKS the token is verified with. Default: the issuer's `jwks_uri`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// A value `aud` must contain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// Signature algorithms a token may use: asymmetric only (`none` and HS*
    /// are refused).
    #[serde(
        default = "default_algorithms",
        skip_serializing_if = "is_default_algorithms"
    )]
    #[schemars(!skip_serializing_if)]
    pub algorithms: Vec<String>,
    /// Leeway for `exp`, `nbf` and `iat`.
    #[serde(
        default = "default_clock_skew",
        with = "humantime_serde",
        skip_serializing_if = "is_default_clock_skew"
    )]
    #[schemars(with = "HumanDuration")]
    #[schemars(!skip_serializing_if)]
    pub clock_skew: Duration,
    /// Claims the token must have.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_claims: Vec<String>,
    /// A valid token that expires sooner than this fails with `assertion`.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<HumanDuration>")]
    pub min_remaining_lifetime: Option<Duration>,
    /// Expected `nonce` claim (ID tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// Access token the `at_hash` claim must match (ID tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    /// TLS client settings.
    #[serde(default)]
    pub tls: TlsSpec,
}

impl Validate for JwtValidateSpec {
    fn validate(&self) -> Issues {
        let mut out = Vec::new();
        match (&self.issuer, &self.jwks_uri) {
            (None, None) => out.push((
                vec![key("issuer")],
                "set `issuer` (the JWKS is found by discovery) or `jwks_uri`".into(),
            )),
            _ => {
                opt_url(&mut out, "issuer", &self.issuer);
                opt_url(&mut out, "jwks_uri", &self.jwks_uri);
            }
        }
        algorithms(&mut out, &self.algorithms);
        check_tls(&mut out, &self.tls);
        out
    }
}

/// `oidc_discovery.allow_endpoint_changes`: `true` (any), `false` (none) or
/// the metadata fields whose URL may change without failing the probe.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum AllowedChanges {
    /// `true`: any URL may change; `false`: none may.
    All(bool),
    /// The metadata fields whose URL may change.
    Fields(Vec<String>),
}

impl Default for AllowedChanges {
    fn default() -> AllowedChanges {
        AllowedChanges::All(false)
    }
}

impl AllowedChanges {
    pub fn allows(&self, field: &str) -> bool {
        match self {
            AllowedChanges::All(b) => *b,
            AllowedChanges::Fields(f) => f.iter().any(|x| x == field),
        }
    }

    pub fn is_none(&self) -> bool {
        matches!(self, AllowedChanges::All(false))
    }
}

/// Either an issuer (for discovery) or every explicit endpoint is needed;
/// given values must be URLs.
pub(super) fn endpoint_source(
    out: &mut Issues,
    issuer: &Option<String>,
    endpoints: &[(&str, &Option<String>)],
) {
    opt_url(out, "issuer", issuer);
    for (name, value) in endpoints {
        opt_url(out, name, value);
        if issuer.is_none() && value.is_none() {
            out.push((
                vec![key(name)],
                format!("set `issuer` (the endpoint is found by discovery) or `{name}`"),
            ));
        }
    }
}

pub(super) fn opt_url(out: &mut Issues, name: &str, value: &Option<String>) {
    if let Some(v) = value {
        check_url(out, vec![key(name)], v);
    }
}

pub(super) fn client_fields(
    out: &mut Issues,
    method: &Option<ClientAuthMethod>,
    secret: &Option<Value>,
    private_key: &Option<Value>,
    alg: &Option<String>,
) {
    match method {
        Some(ClientAuthMethod::ClientSecretBasic | ClientAuthMethod::ClientSecretPost)
            if secret.is_none() =>
        {
            out.push((
                vec![key("client_secret")],
                "required by this `client_auth`".into(),
            ));
        }
        Some(ClientAuthMethod::PrivateKeyJwt) if private_key.is_none() => {
            out.push((
                vec![key("private_key")],
                "required by `client_auth: private_key_jwt`".into(),
            ));
        }
        _ => {}
    }
    if secret.is_some() && private_key.is_some() && method.is_none() {
        out.push((
            vec![key("client_auth")],
            "both `client_secret` and `private_key` are set: say which one to use".into(),
        ));
    }
    if let Some(a) = alg
        && !matches!(
            a.as_str(),
            "RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512" | "ES256" | "ES384"
        )
    {
        out.push((
            vec![key("private_key_alg")],
            format!("`{a}` is not an RSA or EC signature algorithm (e.g. RS256, ES256)"),
        ));
    }
}

pub(super) fn algorithms(out: &mut Issues, algs: &[String]) {
    if algs.is_empty() {
        out.push((
            vec![key("algorithms")],
            "empty list: no token could pass".into(),
        ));
    }
    for (i, a) in algs.iter().enumerate() {
        let why = if a.eq_ignore_ascii_case("none") {
            Some("`none` means unsigned: never allowed".to_string())
        } else if a.to_ascii_uppercase().starts_with("HS") {
            Some(format!(
                "`{a}` is a shared-secret algorithm; tokens are verified against the issuer's public JWKS"
            ))
        } else if !ASYMMETRIC_ALGORITHMS.contains(&a.as_str()) {
            Some(format!(
                "unknown algorithm `{a}` (use one of {})",
                ASYMMETRIC_ALGORITHMS.join(", ")
            ))
        } else {
            None
        };
        if let Some(why) = why {
            out.push((vec![key("algorithms"), Seg::Index(i)], why));
        }
    }
}

pub(super) fn token_type_hint(out: &mut Issues, hint: &Option<String>) {
    if let Some(h) = hint
        && !is_templated(h)
        && !matches!(h.as_str(), "access_token" | "refresh_token")
    {
        out.push((
            vec![key("token_type_hint")],
            format!("`{h}`: use access_token or refresh_token"),
        ));
    }
}
