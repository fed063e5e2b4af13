//! OAuth 2.0 / OpenID Connect client plumbing shared by every token probe
//! (and by `authorization_code`'s code exchange): discovery of a provider's
//! endpoints from its issuer, client authentication at the token,
//! introspection and revocation endpoints (`client_secret_basic`,
//! `client_secret_post`, `private_key_jwt`, `none`), and the token request
//! with its error mapping. Everything goes through the run's
//! `crate::http::Session` so phase timings stay real.
//!
//! Stable API (other probe kinds build on it): [`discover`],
//! [`discover_cached`], [`ClientConfig`], [`ClientAuth::resolve`],
//! [`ClientAuth::apply`], [`post_form`], [`token_request`],
//! [`TokenResponse`], [`error_from_response`], [`introspect`],
//! [`OAuthError`], [`unix_now`]; and the probe step helpers [`Endpoints`],
//! [`token_step`], [`validate_step`], [`step`], [`finish`],
//! [`crate::client_config!`].
//!
//! Error classes of a token request: 5xx → `http_status`; an OAuth error
//! `invalid_client`, `invalid_grant`, `unauthorized_client` or
//! `access_denied` with status 400/401 → `auth_rejected`; any other OAuth
//! error → `protocol`; 401 without an OAuth error body → `auth_rejected`;
//! other non-2xx statuses without one → `http_status`; a 2xx answer that
//! is not a JSON token response → `protocol`.
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use authpulse_proto::catalog::{ClientAuthMethod, TlsSpec, Value};
use authpulse_proto::v1::FailureClass;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, header};
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Map, Value as Json};
use url::Url;

use crate::http::{HttpError, Request, Response, Session, Timings};
use crate::probes::{Failure, ProbeOutcome, RunContext, StepOutcome, snippet};
use crate::secrets::{Redactor, SecretStore};

/// A failed OAuth exchange: the class, a detail for an SRE (never a secret
/// or token) and the phases completed before it failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct OAuthError {
    pub class: FailureClass,
    pub message: String,
    pub timings: Timings,
}

impl OAuthError {
    pub fn new(class: FailureClass, message: impl Into<String>) -> OAuthError {
        OAuthError {
            class,
            message: message.into(),
            timings: Timings::default(),
        }
    }

    fn at(mut self, timings: Timings) -> OAuthError {
        self.timings = timings;
        self
    }
}

impl From<HttpError> for OAuthError {
    fn from(e: HttpError) -> OAuthError {
        OAuthError {
            class: e.class,
            message: e.message,
            timings: e.timings,
        }
    }
}

impl From<OAuthError> for Failure {
    fn from(e: OAuthError) -> Failure {
        Failure::new(e.class, e.message)
    }
}

// ---------------------------------------------------------------------------
// Discovery
// ---------------------------------------------------------------------------

/// How long [`discover_cached`] reuses a probe's last metadata document.
/// Providers change endpoints rarely; `oidc_discovery` watches for that.
pub const DISCOVERY_TTL: Duration = Duration::from_secs(300);

/// The provider metadata fields the probes use, plus the whole document.
#[derive(Clone, Debug, PartialEq)]
pub struct Metadata {
    pub issuer: String,
    pub authorization_endpoint: Option<Url>,
    pub token_endpoint: Option<Url>,
    pub jwks_uri: Option<Url>,
    pub userinfo_endpoint: Option<Url>,
    pub introspection_endpoint: Option<Url>,
    pub revocation_endpoint: Option<Url>,
    pub document: Map<String, Json>,
}

impl Metadata {
    /// Reads a discovery document, requiring `issuer` to equal
    /// `expected_issuer` exactly (OIDC Discovery §4.3). Endpoint fields that
    /// are present must be absolute URLs.
    pub fn from_document(
        document: Map<String, Json>,
        expected_issuer: &str,
    ) -> Result<Metadata, String> {
        let issuer = match document.get("issuer").and_then(Json::as_str) {
            Some(iss) if iss == expected_issuer => iss.to_string(),
            Some(iss) => {
                return Err(format!(
                    "issuer mismatch: document says {iss:?}, expected {expected_issuer:?}"
                ));
            }
            None => return Err("discovery document has no `issuer`".into()),
        };
        let url = |field: &str| -> Result<Option<Url>, String> {
            match document.get(field) {
                None | Some(Json::Null) => Ok(None),
                Some(Json::String(s)) => Url::parse(s)
                    .map(Some)
                    .map_err(|e| format!("`{field}` is not a URL ({e}): {s}")),
                Some(_) => Err(format!("`{field}` is not a string")),
            }
        };
        Ok(Metadata {
            authorization_endpoint: url("authorization_endpoint")?,
            token_endpoint: url("token_endpoint")?,
            jwks_uri: url("jwks_uri")?,
            userinfo_endpoint: url("userinfo_endpoint")?,
            introspection_endpoint: url("introspection_endpoint")?,
            revocation_endpoint: url("revocation_endpoint")?,
            issuer,
            document,
        })
    }

    /// Any URL-valued metadata field, e.g. `end_session_endpoint`.
    pub fn url(&self, field: &str) -> Option<Url> {
        self.document
            .get(field)
            .and_then(Json::as_str)
            .and_then(|s| Url::parse(s).ok())
    }
}

/// `<issuer>/.well-known/openid-configuration`.
pub fn discovery_url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

/// Fetches and checks the issuer's metadata document (always a request).
pub async fn discover(
    session: &mut Session<'_>,
    issuer: &str,
    tls: &TlsSpec,
) -> Result<(Metadata, Timings), OAuthError> {
    let raw = discovery_url(issuer);
    let url = Url::parse(&raw).map_err(|e| {
        OAuthError::new(FailureClass::Config, format!("discovery URL `{raw}`: {e}"))
    })?;
    let resp = session.send(Request::get(url, tls)).await?;
    let timings = resp.timings;
    if !resp.status.is_success() {
        return Err(OAuthError::new(
            FailureClass::HttpStatus,
            format!("{raw} answered {}: {}", resp.status, snippet(&resp.body)),
        )
        .at(timings));
    }
    let document = match serde_json::from_slice(&resp.body) {
        Ok(Json::Object(m)) => m,
        Ok(_) => {
            return Err(OAuthError::new(
                FailureClass::Protocol,
                format!("{raw}: discovery document is not a JSON object"),
            )
            .at(timings));
        }
        Err(e) => {
            return Err(OAuthError::new(
                FailureClass::Protocol,
                format!(
                    "{raw}: discovery document is not JSON ({e}): {}",
                    snippet(&resp.body)
                ),
            )
            .at(timings));
        }
    };
    let metadata = Metadata::from_document(document, issuer)
        .map_err(|m| OAuthError::new(FailureClass::Protocol, m).at(timings))?;
    Ok((metadata, timings))
}

/// Like [`discover`], but reuses the document this probe (or journey step)
/// fetched less than [`DISCOVERY_TTL`] ago; the `bool` says it was reused
/// (no request, empty timings). Call [`forget_discovery`] when an endpoint
/// from it failed so the next run looks again.
pub async fn discover_cached(
    ctx: &mut RunContext<'_>,
    issuer: &str,
    tls: &TlsSpec,
) -> Result<(Metadata, Timings, bool), OAuthError> {
    let now = unix_now();
    if let Some(Json::Object(saved)) = ctx.recall(DISCOVERY_MEMORY)
        && saved.get("issuer").and_then(Json::as_str) == Some(issuer)
        && let Some(at) = saved.get("fetched_at").and_then(Json::as_u64)
        && now.saturating_sub(at) < DISCOVERY_TTL.as_secs()
        && let Some(Json::Object(doc)) = saved.get("document")
        && let Ok(m) = Metadata::from_document(doc.clone(), issuer)
    {
        return Ok((m, Timings::default(), true));
    }
    let (m, timings) = discover(&mut ctx.session, issuer, tls).await?;
    ctx.remember(
        DISCOVERY_MEMORY,
        serde_json::json!({
            "issuer": issuer,
            "fetched_at": now,
            "document": Json::Object(m.document.clone()),
        }),
    );
    Ok((m, timings, false))
}

/// Drops the cached discovery document of this probe (or step).
pub fn forget_discovery(ctx: &RunContext<'_>) {
    ctx.remember(DISCOVERY_MEMORY, Json::Null);
}

const DISCOVERY_MEMORY: &str = "oauth.discovery";

/// Seconds since the Unix epoch (JWT NumericDate), 0 if the clock is before it.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------
// Client authentication
// ---------------------------------------------------------------------------

/// The client fields of a spec, borrowed (every token kind has the same flat
/// fields; see `authpulse_proto::catalog::ClientCredentialsSpec`).
#[derive(Clone, Copy, Debug, Default)]
pub struct ClientConfig<'a> {
    pub client_id: &'a str,
    pub method: Option<ClientAuthMethod>,
    pub client_secret: Option<&'a Value>,
    /// PEM private key for `private_key_jwt`.
    pub private_key: Option<&'a Value>,
    /// `RS256`, `ES256`, … (default: from the key type).
    pub private_key_alg: Option<&'a str>,
    pub key_id: Option<&'a str>,
}

/// A resolved client credential, ready to authenticate requests.
#[derive(Clone)]
pub enum ClientAuth {
    None {
        client_id: String,
    },
    SecretBasic {
        client_id: String,
        secret: String,
    },
    SecretPost {
        client_id: String,
        secret: String,
    },
    PrivateKeyJwt {
        client_id: String,
        key: Arc<EncodingKey>,
        alg: Algorithm,
        kid: Option<String>,
    },
}

impl std::fmt::Debug for ClientAuth {
    // Never print secrets or keys.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClientAuth({} {})", self.method_name(), self.client_id())
    }
}

/// How long a client assertion is valid: long enough for clock skew, short
/// enough to be useless if captured.
const ASSERTION_LIFETIME_SECS: u64 = 60;

impl ClientAuth {
    /// Resolves secrets (registering them for redaction) and parses the
    /// private key. The method defaults to `private_key_jwt` when a private
    /// key is given, `client_secret_basic` with a secret, else `none`.
    /// Errors are class `config`.
    pub fn resolve(
        cfg: &ClientConfig<'_>,
        secrets: &SecretStore,
        redactor: &Redactor,
    ) -> Result<ClientAuth, OAuthError> {
        let config = |m: String| OAuthError::new(FailureClass::Config, m);
        let method = cfg
            .method
            .unwrap_or(match (cfg.private_key, cfg.client_secret) {
                (Some(_), _) => ClientAuthMethod::PrivateKeyJwt,
                (None, Some(_)) => ClientAuthMethod::ClientSecretBasic,
                (None, None) => ClientAuthMethod::None,
            });
        let client_id = cfg.client_id.to_string();
        let secret = || -> Result<String, OAuthError> {
            let v = cfg.client_secret.ok_or_else(|| {
                config("`client_secret` is required by this `client_auth`".into())
            })?;
            crate::secrets::resolve(v, secrets, redactor).map_err(|e| config(e.to_string()))
        };
        Ok(match method {
            ClientAuthMethod::None => ClientAuth::None { client_id },
            ClientAuthMethod::ClientSecretBasic => ClientAuth::SecretBasic {
                client_id,
                secret: secret()?,
            },
            ClientAuthMethod::ClientSecretPost => ClientAuth::SecretPost {
                client_id,
                secret: secret()?,
            },
            ClientAuthMethod::PrivateKeyJwt => {
                let v = cfg.private_key.ok_or_else(|| {
                    config("`private_key` is required by `client_auth: private_key_jwt`".into())
                })?;
                let pem = crate::secrets::resolve(v, secrets, redactor)
                    .map_err(|e| config(e.to_string()))?;
                let (key, alg) = signing_key(pem.as_bytes(), cfg.private_key_alg)
                    .map_err(|m| config(format!("`private_key`: {m}")))?;
                ClientAuth::PrivateKeyJwt {
                    client_id,
                    key: Arc::new(key),
                    alg,
                    kid: cfg.key_id.map(str::to_string),
                }
            }
        })
    }

    pub fn client_id(&self) -> &str {
        match self {
            ClientAuth::None { client_id }
            | ClientAuth::SecretBasic { client_id, .. }
            | ClientAuth::SecretPost { client_id, .. }
            | ClientAuth::PrivateKeyJwt { client_id, .. } => client_id,
        }
    }

    /// The `token_endpoint_auth_method` name.
    pub fn method_name(&self) -> &'static str {
        match self {
            ClientAuth::None { .. } => "none",
            ClientAuth::SecretBasic { .. } => "client_secret_basic",
            ClientAuth::SecretPost { .. } => "client_secret_post",
            ClientAuth::PrivateKeyJwt { .. } => "private_key_jwt",
        }
    }

    /// Adds the client's authentication to a form POST to `endpoint`: an
    /// `Authorization` header, or form fields. A client assertion is signed
    /// for `endpoint` as audience (OIDC Core §9 names the token endpoint;
    /// providers accept the endpoint called) and registered for redaction.
    pub fn apply(
        &self,
        endpoint: &Url,
        headers: &mut HeaderMap,
        form: &mut Vec<(String, String)>,
        redactor: &Redactor,
    ) -> Result<(), OAuthError> {
        match self {
            ClientAuth::None { client_id } => {
                form.push(("client_id".into(), client_id.clone()));
            }
            ClientAuth::SecretBasic { client_id, secret } => {
                // RFC 6749 §2.3.1: both parts form-encoded before base64.
                let enc = |s: &str| {
                    url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()
                };
                let basic = STANDARD.encode(format!("{}:{}", enc(client_id), enc(secret)));
                redactor.remember(&basic);
                let mut value = HeaderValue::from_str(&format!("Basic {basic}")).map_err(|_| {
                    OAuthError::new(
                        FailureClass::Config,
                        "client credentials are not a valid header value",
                    )
                })?;
                value.set_sensitive(true);
                headers.insert(header::AUTHORIZATION, value);
            }
            ClientAuth::SecretPost { client_id, secret } => {
                form.push(("client_id".into(), client_id.clone()));
                form.push(("client_secret".into(), secret.clone()));
            }
            ClientAuth::PrivateKeyJwt {
                client_id,
                key,
                alg,
                kid,
            } => {
                let assertion =
                    client_assertion(client_id, key, *alg, kid.as_deref(), endpoint.as_str())?;
                redactor.remember(&assertion);
                form.push(("client_id".into(), client_id.clone()));
                form.push((
                    "client_assertion_type".into(),
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
                ));
                form.push(("client_assertion".into(), assertion));
            }
        }
        Ok(())
    }
}

/// Parses a PEM private key: RSA (PKCS#1 or PKCS#8) → RS256, EC (SEC1 or
/// PKCS#8) → ES256, unless `alg` names another algorithm of the key's family.
fn signing_key(pem: &[u8], alg: Option<&str>) -> Result<(EncodingKey, Algorithm), String> {
    let wanted: Option<Algorithm> = match alg {
        Some(a) => Some(a.parse().map_err(|_| format!("unknown algorithm `{a}`"))?),
        None => None,
    };
    let rsa = |a| {
        matches!(
            a,
            Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512
        )
    };
    let ec = |a| matches!(a, Algorithm::ES256 | Algorithm::ES384);
    if wanted.is_none_or(rsa)
        && let Ok(k) = EncodingKey::from_rsa_pem(pem)
    {
        return Ok((k, wanted.unwrap_or(Algorithm::RS256)));
    }
    if wanted.is_none_or(ec)
        && let Ok(k) = EncodingKey::from_ec_pem(pem)
    {
        return Ok((k, wanted.unwrap_or(Algorithm::ES256)));
    }
    Err(match wanted {
        Some(a) => format!("not a PEM private key usable with {a:?}"),
        None => "not a PEM RSA or EC private key".into(),
    })
}

/// An RFC 7523 client assertion: iss = sub = client_id, aud = endpoint,
/// a fresh jti, valid for a minute.
fn client_assertion(
    client_id: &str,
    key: &EncodingKey,
    alg: Algorithm,
    kid: Option<&str>,
    audience: &str,
) -> Result<String, OAuthError> {
    use rand::RngExt;
    let now = unix_now();
    let jti: [u8; 16] = rand::rng().random();
    let mut header = jsonwebtoken::Header::new(alg);
    header.kid = kid.map(str::to_string);
    let claims = serde_json::json!({
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "jti": hex::encode(jti),
        "iat": now,
        "exp": now + ASSERTION_LIFETIME_SECS,
    });
    jsonwebtoken::encode(&header, &claims, key).map_err(|e| {
        OAuthError::new(
            FailureClass::Config,
            format!("signing the client assertion ({alg:?}) failed: {e}"),
        )
    })
}

// ---------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------

/// POSTs a form with client authentication; no status handling (see
/// [`error_from_response`]). Sets `Accept: application/json`; does not
/// follow redirects (an OAuth endpoint that redirects a POST is broken).
pub async fn post_form(
    session: &mut Session<'_>,
    endpoint: &Url,
    auth: &ClientAuth,
    params: &[(&str, &str)],
    tls: &TlsSpec,
    redactor: &Redactor,
) -> Result<Response, OAuthError> {
    let mut headers = HeaderMap::new();
    let mut form: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    auth.apply(endpoint, &mut headers, &mut form, redactor)?;
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form.iter())
        .finish();
    let req = Request {
        method: Method::POST,
        url: endpoint.clone(),
        headers,
        body: Some(Bytes::from(body)),
        follow_redirects: false,
        tls,
    };
    Ok(session.send(req).await?)
}

/// A successful token endpoint answer (RFC 6749 §5.1).
#[derive(Clone, PartialEq)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: Option<u64>,
    pub refresh_token: Option<String>,
    pub id_token: Option<String>,
    pub scope: Option<String>,
    /// Every other member of the answer.
    pub extra: Map<String, Json>,
}

impl std::fmt::Debug for TokenResponse {
    // Tokens are credentials: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("refresh_token", &self.refresh_token.is_some())
            .field("id_token", &self.id_token.is_some())
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// A token request (`grant_type` and the grant's parameters in `params`)
/// with client authentication. The tokens in the answer are registered for
/// redaction before this returns.
pub async fn token_request(
    session: &mut Session<'_>,
    token_endpoint: &Url,
    auth: &ClientAuth,
    params: &[(&str, &str)],
    tls: &TlsSpec,
    redactor: &Redactor,
) -> Result<(TokenResponse, Timings), OAuthError> {
    let resp = post_form(session, token_endpoint, auth, params, tls, redactor).await?;
    let timings = resp.timings;
    if !resp.status.is_success() {
        return Err(error_from_response("token endpoint", &resp));
    }
    let parsed = parse_token_response(&resp.body, redactor).map_err(|m| {
        OAuthError::new(FailureClass::Protocol, format!("{token_endpoint}: {m}")).at(timings)
    })?;
    Ok((parsed, timings))
}

fn parse_token_response(body: &[u8], redactor: &Redactor) -> Result<TokenResponse, String> {
    let mut map = match serde_json::from_slice::<Json>(body) {
        Ok(Json::Object(m)) => m,
        Ok(_) => return Err("token response is not a JSON object".into()),
        Err(e) => {
            return Err(format!(
                "token response is not JSON ({e}): {}",
                snippet(body)
            ));
        }
    };
    // Register every token first, so no message below can leak one.
    for k in ["access_token", "refresh_token", "id_token"] {
        if let Some(Json::String(t)) = map.get(k) {
            redactor.remember(t);
        }
    }
    if let Some(err) = map.get("error").and_then(Json::as_str) {
        return Err(format!("2xx answer carrying error `{err}`"));
    }
    let mut take_str = |k: &str| match map.remove(k) {
        Some(Json::String(s)) => Ok(Some(s)),
        None | Some(Json::Null) => Ok(None),
        Some(_) => Err(format!("`{k}` is not a string")),
    };
    let access_token = take_str("access_token")?.ok_or("token response has no `access_token`")?;
    let token_type = take_str("token_type")?.ok_or("token response has no `token_type`")?;
    let refresh_token = take_str("refresh_token")?;
    let id_token = take_str("id_token")?;
    let scope = take_str("scope")?;
    // Some providers send expires_in as a string ("3599").
    let expires_in = match map.remove("expires_in") {
        None | Some(Json::Null) => None,
        Some(Json::Number(n)) => Some(n.as_u64().ok_or("`expires_in` is not a positive integer")?),
        Some(Json::String(s)) => Some(
            s.trim()
                .parse()
                .map_err(|_| format!("`expires_in` is not a number: {s:?}"))?,
        ),
        Some(_) => return Err("`expires_in` is not a number".into()),
    };
    Ok(TokenResponse {
        access_token,
        token_type,
        expires_in,
        refresh_token,
        id_token,
        scope,
        extra: map,
    })
}

/// RFC 7662 introspection: the answer's members, with `active` checked to
/// be a boolean. Statuses map as for the token endpoint.
pub async fn introspect(
    session: &mut Session<'_>,
    endpoint: &Url,
    auth: &ClientAuth,
    token: &str,
    token_type_hint: Option<&str>,
    tls: &TlsSpec,
    redactor: &Redactor,
) -> Result<(Map<String, Json>, Timings), OAuthError> {
    let mut params = vec![("token", token)];
    if let Some(h) = token_type_hint {
        params.push(("token_type_hint", h));
    }
    let resp = post_form(session, endpoint, auth, &params, tls, redactor).await?;
    let timings = resp.timings;
    if !resp.status.is_success() {
        return Err(error_from_response("introspection endpoint", &resp));
    }
    let answer = match serde_json::from_slice(&resp.body) {
        Ok(Json::Object(m)) => m,
        _ => {
            return Err(OAuthError::new(
                FailureClass::Protocol,
                format!(
                    "introspection endpoint {endpoint} answered {} with a non-JSON-object body: {}",
                    resp.status,
                    snippet(&resp.body)
                ),
            )
            .at(timings));
        }
    };
    if !answer.get("active").is_some_and(Json::is_boolean) {
        return Err(OAuthError::new(
            FailureClass::Protocol,
            format!("introspection endpoint {endpoint}: answer has no boolean `active`"),
        )
        .at(timings));
    }
    Ok((answer, timings))
}

/// OAuth error codes that mean "these credentials or this grant are not
/// accepted", as opposed to a malformed request.
const REJECTIONS: &[&str] = &[
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "access_denied",
];

/// Maps a non-2xx answer of an OAuth endpoint (`what`, e.g. "token
/// endpoint") to a class and a detail naming the status, the OAuth error
/// code and its description.
pub fn error_from_response(what: &str, resp: &Response) -> OAuthError {
    let status = resp.status;
    let url = &resp.url;
    let body: Option<Map<String, Json>> = match serde_json::from_slice(&resp.body) {
        Ok(Json::Object(m)) => Some(m),
        _ => None,
    };
    let code = body
        .as_ref()
        .and_then(|m| m.get("error"))
        .and_then(Json::as_str);
    let class;
    let message;
    if status.is_server_error() {
        class = FailureClass::HttpStatus;
        message = format!("{what} {url} answered {status}: {}", snippet(&resp.body));
    } else if let Some(code) = code {
        let description = body
            .as_ref()
            .and_then(|m| m.get("error_description"))
            .and_then(Json::as_str)
            .map(|d| format!(" ({})", snippet(d.as_bytes())))
            .unwrap_or_default();
        class = if REJECTIONS.contains(&code) && (status == 400 || status == 401) {
            FailureClass::AuthRejected
        } else {
            FailureClass::Protocol
        };
        message = format!(
            "{what} {url} answered {} {code}{description}",
            status.as_u16()
        );
    } else if status == 401 {
        class = FailureClass::AuthRejected;
        message = format!(
            "{what} {url} answered 401 without an OAuth error: {}",
            snippet(&resp.body)
        );
    } else {
        class = FailureClass::HttpStatus;
        message = format!("{what} {url} answered {status}: {}", snippet(&resp.body));
    }
    OAuthError::new(class, message).at(resp.timings)
}

/// `a b c` → the scope parameter.
pub fn scope_param(scopes: &[String]) -> Option<String> {
    (!scopes.is_empty()).then(|| scopes.join(" "))
}

// ---------------------------------------------------------------------------
// Probe helpers: the step shapes every OAuth kind shares.
// ---------------------------------------------------------------------------

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_response_accepts_string_expires_in_and_redacts() {
        let r = Redactor::default();
        let t = parse_token_response(
            br#"{"access_token":"abcd1234","token_type":"Bearer","expires_in":"3599","x":1}"#,
            &r,
        )
        .expect("parse");
        assert_eq!(t.expires_in, Some(3599));
        assert_eq!(t.extra.get("x"), Some(&Json::from(1)));
        assert_eq!(r.redact("tok abcd1234"), "tok [redacted]");
        assert!(parse_token_response(br#"{"token_type":"Bearer"}"#, &r).is_err());
    }

    #[test]
    fn metadata_requires_the_exact_issuer() {
        let doc = serde_json::json!({"issuer": "https://a.example/", "token_endpoint": "https://a.example/token"});
        let Json::Object(m) = doc else { unreachable!() };
        assert!(Metadata::from_document(m.clone(), "https://a.example").is_err());
        let md = Metadata::from_document(m, "https://a.example/").expect("ok");
        assert_eq!(md.token_endpoint.expect("te").path(), "/token");
    }
}
