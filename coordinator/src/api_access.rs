//! Who may call which HTTP endpoint. Endpoints fall into four classes by
//! path: public (health, `/metrics`, the status feed, badges, the dashboard's
//! static page), `read` (the `/api/v1` JSON the dashboard and tools read),
//! `gate` (`/api/v1/gates/…`, what pipelines call) and `admin` (reload,
//! silence, acknowledge). Callers present `Authorization: Bearer <token>`;
//! tokens come from files named in the config, each with its scopes
//! (`admin` implies the others). Secure by default: with no token
//! configured the protected endpoints are open only while the server
//! listens on loopback; on any other address the coordinator refuses to
//! start unless told `--insecure-open-api`; an open API refuses what a web
//! page in the operator's browser could send it ([`ApiAccess::open_guard`]:
//! foreign `Host`/`Origin`, mutations without a JSON content type). People
//! can instead present a JWT from the organisation's OIDC issuer: verified
//! against the issuer's JWKS (audience, expiry, not-before), its group
//! claim mapped to scopes; the JWKS is fetched outside any lock callers
//! wait on ([`OidcVerifier`]).
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sha2::{Digest, Sha256};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Read,
    Gate,
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Gate => "gate",
            Scope::Admin => "admin",
        }
    }
}

/// One API token in the coordinator config.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Who holds it (shown in logs and the audit log, never the token).
    pub name: String,
    /// File holding the token (a trailing newline is ignored).
    pub token_file: PathBuf,
    pub scopes: Vec<Scope>,
}

/// `api:` in the coordinator config.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
    /// `/metrics` without a token (Prometheus scrapers rarely send one).
    #[serde(default = "default_true")]
    pub metrics_public: bool,
    /// Serve the protected endpoints without tokens on a non-loopback
    /// address (also `--insecure-open-api`).
    #[serde(default)]
    pub insecure_open: bool,
    /// JWTs from an OIDC issuer for people.
    #[serde(default)]
    pub oidc: Option<OidcConfig>,
}

/// `api.oidc`: which JWTs are accepted and what their groups may do.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// Must equal the tokens' `iss`; the JWKS comes from its discovery
    /// document unless `jwks_uri` is given.
    pub issuer: String,
    pub audience: String,
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// Claim holding the groups (a list, or a space-separated string).
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// Group → scopes.
    pub group_scopes: std::collections::BTreeMap<String, Vec<Scope>>,
}

fn default_groups_claim() -> String {
    "groups".into()
}

/// Keys of the issuer, refetched when a token names an unknown `kid` (at
/// most every [`JWKS_MIN_REFETCH`]) and in the background once the set is
/// [`JWKS_MAX_AGE`] old. A fetch runs in its own task, outside any lock:
/// callers whose `kid` is in the cached set never wait for it, callers with
/// an unknown `kid` wait for the one fetch in flight (single flight), and a
/// fetch that fails or times out leaves the last good set in place.
struct OidcVerifier {
    cfg: OidcConfig,
    client: reqwest::Client,
    jwks: Arc<std::sync::Mutex<JwksState>>,
}

#[derive(Default)]
struct JwksState {
    /// The last set fetched successfully.
    set: Option<Arc<jsonwebtoken::jwk::JwkSet>>,
    fetched_at: Option<Instant>,
    /// When the last fetch started, successful or not (the rate limit).
    attempted_at: Option<Instant>,
    /// Turns true when the fetch in flight has finished.
    inflight: Option<tokio::sync::watch::Receiver<bool>>,
}

const JWKS_MAX_AGE: Duration = Duration::from_secs(600);
const JWKS_MIN_REFETCH: Duration = Duration::from_secs(10);
/// Discovery and JWKS together; a slower IdP counts as failed.
const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// What [`OidcVerifier::key`] does next, decided under the lock.
enum KeyStep {
    Found(Box<jsonwebtoken::jwk::Jwk>),
    Wait(tokio::sync::watch::Receiver<bool>),
    Refuse(String),
}

async fn fetch_jwks(
    cfg: &OidcConfig,
    client: &reqwest::Client,
) -> Result<jsonwebtoken::jwk::JwkSet, String> {
    let uri = match &cfg.jwks_uri {
        Some(u) => u.clone(),
        None => {
            let url = format!(
                "{}/.well-known/openid-configuration",
                cfg.issuer.trim_end_matches('/')
            );
            let doc: serde_json::Value = client
                .get(&url)
                .send()
                .await
                .and_then(|r| r.error_for_status())
                .map_err(|e| format!("OIDC discovery {url}: {}", e.without_url()))?
                .json()
                .await
                .map_err(|e| format!("OIDC discovery {url}: {e}"))?;
            doc["jwks_uri"]
                .as_str()
                .ok_or_else(|| format!("OIDC discovery {url}: no jwks_uri"))?
                .to_string()
        }
    };
    client
        .get(&uri)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| format!("JWKS {uri}: {}", e.without_url()))?
        .json()
        .await
        .map_err(|e| format!("JWKS {uri}: {e}"))
}

/// A poisoned lock only means a panic elsewhere; the cache itself is
/// always consistent (every update is one assignment).
fn lock(m: &std::sync::Mutex<JwksState>) -> std::sync::MutexGuard<'_, JwksState> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl OidcVerifier {
    /// Starts a fetch unless one is in flight; returns its completion.
    /// Called with the state locked; the fetch itself runs in a task.
    fn start_fetch(&self, st: &mut JwksState) -> tokio::sync::watch::Receiver<bool> {
        if let Some(rx) = &st.inflight {
            return rx.clone();
        }
        let (tx, rx) = tokio::sync::watch::channel(false);
        st.attempted_at = Some(Instant::now());
        st.inflight = Some(rx.clone());
        let (cfg, client, state) = (self.cfg.clone(), self.client.clone(), self.jwks.clone());
        tokio::spawn(async move {
            let fetched = tokio::time::timeout(JWKS_FETCH_TIMEOUT, fetch_jwks(&cfg, &client))
                .await
                .unwrap_or_else(|_| {
                    Err(format!(
                        "no answer within {}",
                        humantime::format_duration(JWKS_FETCH_TIMEOUT)
                    ))
                });
            {
                let mut st = lock(&state);
                match fetched {
                    Ok(set) => {
                        st.set = Some(Arc::new(set));
                        st.fetched_at = Some(Instant::now());
                    }
                    Err(e) => {
                        metrics::counter!("authpulse_coordinator_oidc_jwks_errors_total")
                            .increment(1);
                        tracing::warn!(error = %e, issuer = %cfg.issuer,
                            "fetching the OIDC signing keys failed; keeping the last good key set");
                    }
                }
                st.inflight = None;
            }
            let _ = tx.send(true);
        });
        rx
    }

    async fn key(&self, kid: Option<&str>) -> Result<jsonwebtoken::DecodingKey, String> {
        let find = |set: &jsonwebtoken::jwk::JwkSet| match kid {
            Some(k) => set.find(k).cloned(),
            None => set.keys.first().cloned(),
        };
        let mut waited = false;
        loop {
            let step = {
                let mut st = lock(&self.jwks);
                let found = st.set.as_deref().and_then(find);
                let recently = st
                    .attempted_at
                    .is_some_and(|t| t.elapsed() < JWKS_MIN_REFETCH);
                match found {
                    Some(k) => {
                        // Old: refresh in the background, answer now.
                        let old = st.fetched_at.is_none_or(|t| t.elapsed() >= JWKS_MAX_AGE);
                        if old && !recently {
                            self.start_fetch(&mut st);
                        }
                        KeyStep::Found(Box::new(k))
                    }
                    None if waited => KeyStep::Refuse(format!("unknown key id {kid:?}")),
                    None => match &st.inflight {
                        Some(rx) => KeyStep::Wait(rx.clone()),
                        None if recently => KeyStep::Refuse(format!(
                            "unknown key id {kid:?} (the issuer's keys were fetched less than {}s ago)",
                            JWKS_MIN_REFETCH.as_secs()
                        )),
                        None => KeyStep::Wait(self.start_fetch(&mut st)),
                    },
                }
            };
            match step {
                KeyStep::Found(k) => {
                    return jsonwebtoken::DecodingKey::from_jwk(&k).map_err(|e| e.to_string());
                }
                KeyStep::Refuse(why) => return Err(why),
                KeyStep::Wait(mut rx) => {
                    // A dropped sender (the task ended) counts as done.
                    let _ = tokio::time::timeout(
                        JWKS_FETCH_TIMEOUT + Duration::from_secs(1),
                        rx.wait_for(|done| *done),
                    )
                    .await;
                    waited = true;
                }
            }
        }
    }

    /// (caller, scopes) of a valid token.
    async fn verify(&self, token: &str) -> Result<(String, Vec<Scope>), String> {
        use jsonwebtoken::Algorithm as A;
        let header = jsonwebtoken::decode_header(token).map_err(|e| format!("not a JWT: {e}"))?;
        if !matches!(
            header.alg,
            A::RS256
                | A::RS384
                | A::RS512
                | A::PS256
                | A::PS384
                | A::PS512
                | A::ES256
                | A::ES384
                | A::EdDSA
        ) {
            return Err(format!("algorithm {:?} not accepted", header.alg));
        }
        let key = self.key(header.kid.as_deref()).await?;
        let mut v = jsonwebtoken::Validation::new(header.alg);
        v.set_issuer(&[self.cfg.issuer.as_str()]);
        v.set_audience(&[self.cfg.audience.as_str()]);
        // `nbf` too: Validation leaves it unchecked by default, and a token
        // valid only from tomorrow must not work today.
        v.leeway = 60;
        v.validate_nbf = true;
        let data = jsonwebtoken::decode::<serde_json::Value>(token, &key, &v)
            .map_err(|e| format!("invalid token: {e}"))?;
        let claims = data.claims;
        let groups: Vec<String> = match &claims[&self.cfg.groups_claim] {
            serde_json::Value::Array(a) => a
                .iter()
                .filter_map(|g| g.as_str().map(String::from))
                .collect(),
            serde_json::Value::String(s) => s.split_whitespace().map(String::from).collect(),
            _ => Vec::new(),
        };
        let mut scopes = Vec::new();
        for g in &groups {
            for s in self.cfg.group_scopes.get(g).into_iter().flatten() {
                if !scopes.contains(s) {
                    scopes.push(*s);
                }
            }
        }
        let who = claims["email"]
            .as_str()
            .or(claims["sub"].as_str())
            .unwrap_or("?")
            // Shown in logs and the audit log (`by`): bounded.
            .chars()
            .take(MAX_CALLER_CHARS)
            .collect::<String>();
        Ok((format!("oidc:{who}"), scopes))
    }
}

/// Longest caller name taken from a token's claims.
const MAX_CALLER_CHARS: usize = 200;

fn default_true() -> bool {
    true
}

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("api token `{name}`: cannot read {path}: {source}")]
    TokenFile {
        name: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("api token `{0}`: the token file is empty")]
    EmptyToken(String),
    #[error("api token `{0}`: no scopes (give read, gate and/or admin)")]
    NoScopes(String),
    #[error(
        "the HTTP API listens on {0} but no API tokens are configured: every protected endpoint \
         (SLOs, gates, admin) would be open to the network. Configure `api.tokens`, listen on \
         127.0.0.1, or pass --insecure-open-api"
    )]
    OpenOnNetwork(SocketAddr),
}

struct Token {
    name: String,
    digest: [u8; 32],
    scopes: Vec<Scope>,
}

/// The access policy, built once at start.
pub struct ApiAccess {
    tokens: Vec<Token>,
    oidc: Option<OidcVerifier>,
    metrics_public: bool,
    /// No tokens configured: everything is open (loopback, or insecure).
    open: bool,
    /// Open on a non-loopback address (`--insecure-open-api`).
    open_on_network: bool,
    /// Host names an open API accepts in `Host` besides loopback ones
    /// (lower case, without port).
    allowed_hosts: Vec<String>,
}

/// What a request needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Needs {
    Public,
    Scope(Scope),
}

/// The class of an endpoint, by method and path.
pub fn needs(method: &Method, path: &str, metrics_public: bool) -> Needs {
    if path == "/metrics" {
        return if metrics_public {
            Needs::Public
        } else {
            Needs::Scope(Scope::Read)
        };
    }
    if let Some(rest) = path.strip_prefix("/api/v1/") {
        // The gate listing is for people and the dashboard; one gate's
        // decision is what pipelines call.
        if rest == "gates" {
            return Needs::Scope(Scope::Read);
        }
        if rest.starts_with("gates/") {
            return Needs::Scope(Scope::Gate);
        }
        if rest.starts_with("admin") || (rest.starts_with("alerts/") && method != Method::GET) {
            return Needs::Scope(Scope::Admin);
        }
        return Needs::Scope(Scope::Read);
    }
    // Health, the status feed (/api/v2, /history.atom), badges and the
    // dashboard's static page and assets.
    Needs::Public
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Equal-length digests compared without an early exit.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl ApiAccess {
    /// Reads the token files and applies the secure-by-default rule for
    /// `listen`.
    pub fn from_config(
        cfg: &ApiConfig,
        listen: SocketAddr,
        insecure_open: bool,
    ) -> Result<ApiAccess, AccessError> {
        let mut tokens = Vec::new();
        for t in &cfg.tokens {
            let text = std::fs::read_to_string(&t.token_file).map_err(|source| {
                AccessError::TokenFile {
                    name: t.name.clone(),
                    path: t.token_file.clone(),
                    source,
                }
            })?;
            let text = text.trim();
            if text.is_empty() {
                return Err(AccessError::EmptyToken(t.name.clone()));
            }
            if t.scopes.is_empty() {
                return Err(AccessError::NoScopes(t.name.clone()));
            }
            tokens.push(Token {
                name: t.name.clone(),
                digest: digest(text),
                scopes: t.scopes.clone(),
            });
        }
        let open = tokens.is_empty() && cfg.oidc.is_none();
        if open {
            if listen.ip().is_loopback() {
                tracing::warn!(%listen, "no API tokens configured: the HTTP API is open to local callers (loopback only)");
            } else if insecure_open || cfg.insecure_open {
                tracing::warn!(%listen, "no API tokens configured and --insecure-open-api: SLO, gate and admin endpoints are open to the network");
            } else {
                return Err(AccessError::OpenOnNetwork(listen));
            }
        }
        let oidc = cfg.oidc.clone().map(|cfg| OidcVerifier {
            cfg,
            client: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
            jwks: Default::default(),
        });
        Ok(ApiAccess {
            tokens,
            oidc,
            metrics_public: cfg.metrics_public,
            open,
            open_on_network: open && !listen.ip().is_loopback(),
            allowed_hosts: Vec::new(),
        })
    }

    /// Open to everyone (tests of other endpoints, local development).
    pub fn open() -> ApiAccess {
        ApiAccess {
            tokens: Vec::new(),
            oidc: None,
            metrics_public: true,
            open: true,
            open_on_network: false,
            allowed_hosts: Vec::new(),
        }
    }

    /// Host names (besides loopback) that requests to an open API may
    /// carry in `Host` (`http.allowed_hosts`); ports are ignored.
    pub fn with_allowed_hosts(mut self, hosts: &[String]) -> ApiAccess {
        self.allowed_hosts = hosts
            .iter()
            .map(|h| host_part(&h.to_ascii_lowercase()).to_string())
            .collect();
        if self.open_on_network && self.allowed_hosts.is_empty() {
            tracing::warn!(
                "the open API accepts any Host header: set `http.allowed_hosts` to the names \
                 callers use, so a web page can't reach it through DNS rebinding"
            );
        }
        self
    }

    /// Whether `host` (lower case, no port) may be named in `Host` or
    /// `Origin` of a request to the open API.
    fn host_allowed(&self, host: &str) -> bool {
        let ip = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host)
            .parse::<std::net::IpAddr>()
            .ok();
        host == "localhost"
            || ip.is_some_and(|ip| ip.is_loopback())
            || self.allowed_hosts.iter().any(|a| a == host)
            // On the network without a list: anything (warned at start). A
            // literal IP can't be rebound to another server either.
            || (self.open_on_network && (self.allowed_hosts.is_empty() || ip.is_some()))
    }

    /// The open API's defence against the operator's own browser: a web
    /// page can send simple cross-site requests (no preflight: a form
    /// POST, `text/plain`), and DNS rebinding points a name the page
    /// controls at 127.0.0.1. So on an API without tokens, protected
    /// endpoints need a `Host` (and any `Origin`) naming this server by a
    /// loopback or allowed name, and every mutating request needs
    /// `Content-Type: application/json` or an `X-Authpulse-Request` header
    /// (both force a preflight no cross-site page gets through). Requests
    /// without `Host` are not from a browser and pass that part.
    pub fn open_guard(
        &self,
        method: &Method,
        path: &str,
        headers: &header::HeaderMap,
    ) -> Result<(), Box<Response>> {
        if !self.open {
            return Ok(());
        }
        let text = |name: header::HeaderName| {
            headers
                .get(name)
                .map(|v| v.to_str().map(str::to_ascii_lowercase).unwrap_or_default())
        };
        if needs(method, path, self.metrics_public) != Needs::Public {
            let host = text(header::HOST);
            if let Some(h) = &host
                && !self.host_allowed(host_part(h))
            {
                return Err(open_refusal(
                    StatusCode::FORBIDDEN,
                    "host",
                    "this API has no tokens and answers only requests addressed to a loopback \
                     name (localhost, 127.0.0.1, [::1]) or to `http.allowed_hosts`",
                ));
            }
            if let Some(origin) = text(header::ORIGIN) {
                let authority = origin
                    .strip_prefix("http://")
                    .or_else(|| origin.strip_prefix("https://"));
                let same = match (authority, &host) {
                    (Some(a), Some(h)) => a == h,
                    (Some(a), None) => self.host_allowed(host_part(a)),
                    (None, _) => false,
                };
                if !same || authority.is_some_and(|a| !self.host_allowed(host_part(a))) {
                    return Err(open_refusal(
                        StatusCode::FORBIDDEN,
                        "origin",
                        "cross-origin request refused: this API has no tokens and answers \
                         only pages it served itself",
                    ));
                }
            }
        }
        let mutating = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
        if mutating {
            let json = text(header::CONTENT_TYPE)
                .is_some_and(|ct| ct.split(';').next().map(str::trim) == Some("application/json"));
            if !json && !headers.contains_key(REQUEST_MARKER) {
                return Err(open_refusal(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "content_type",
                    "this API has no tokens: a POST/PUT/DELETE needs `Content-Type: \
                     application/json` (or the header `X-Authpulse-Request: 1` when there is \
                     no body)",
                ));
            }
        }
        Ok(())
    }

    /// `Ok(caller name)` or the refusal to send.
    pub async fn check(
        &self,
        method: &Method,
        path: &str,
        authorization: Option<&str>,
    ) -> Result<Option<String>, Box<Response>> {
        let Needs::Scope(scope) = needs(method, path, self.metrics_public) else {
            return Ok(None);
        };
        if self.open {
            return Ok(None);
        }
        let Some(value) = authorization else {
            return Err(refuse(
                StatusCode::UNAUTHORIZED,
                scope,
                "missing bearer token",
            ));
        };
        let Some(token) = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(str::trim)
        else {
            return Err(refuse(
                StatusCode::UNAUTHORIZED,
                scope,
                "the Authorization header must be `Bearer <token>`",
            ));
        };
        let d = digest(token);
        let (name, scopes) = match self.tokens.iter().find(|t| same(&t.digest, &d)) {
            Some(t) => (t.name.clone(), t.scopes.clone()),
            // Not a configured token: a person's JWT, if OIDC is set up.
            None => match &self.oidc {
                Some(oidc) if token.matches('.').count() == 2 => match oidc.verify(token).await {
                    Ok(v) => v,
                    Err(reason) => {
                        metrics::counter!("authpulse_coordinator_api_refused_total", "reason" => "bad_token")
                            .increment(1);
                        tracing::info!(%reason, path, "API token refused");
                        return Err(refuse(StatusCode::UNAUTHORIZED, scope, &reason));
                    }
                },
                _ => {
                    metrics::counter!("authpulse_coordinator_api_refused_total", "reason" => "bad_token")
                        .increment(1);
                    return Err(refuse(StatusCode::UNAUTHORIZED, scope, "unknown token"));
                }
            },
        };
        let t = Token {
            name,
            digest: d,
            scopes,
        };
        if t.scopes.contains(&scope) || t.scopes.contains(&Scope::Admin) {
            Ok(Some(t.name.clone()))
        } else {
            metrics::counter!("authpulse_coordinator_api_refused_total", "reason" => "scope")
                .increment(1);
            Err(refuse(
                StatusCode::FORBIDDEN,
                scope,
                &format!(
                    "token `{}` lacks scope `{}` (has: {})",
                    t.name,
                    scope.as_str(),
                    t.scopes
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ))
        }
    }
}

/// The header that marks a bodiless mutating request as not cross-site
/// (custom headers need a CORS preflight).
pub const REQUEST_MARKER: &str = "x-authpulse-request";

/// `host` of `host[:port]` / `[v6][:port]`.
fn host_part(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority
            .find(']')
            .map_or(authority, |end| &authority[..=end]);
    }
    match authority.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    }
}

fn open_refusal(status: StatusCode, reason: &'static str, message: &str) -> Box<Response> {
    metrics::counter!("authpulse_coordinator_api_refused_total", "reason" => reason).increment(1);
    tracing::info!(reason, "open API request refused");
    Box::new((status, axum::Json(serde_json::json!({ "error": message }))).into_response())
}

fn refuse(status: StatusCode, scope: Scope, message: &str) -> Box<Response> {
    if status == StatusCode::UNAUTHORIZED {
        metrics::counter!("authpulse_coordinator_api_refused_total", "reason" => "unauthenticated")
            .increment(1);
    }
    let body = serde_json::json!({ "error": message, "required_scope": scope.as_str() });
    let mut r = (status, axum::Json(body)).into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"authpulse\""),
        );
    }
    Box::new(r)
}

/// The caller a request was authorised as (`None` when open or public).
#[derive(Clone, Debug, Default)]
pub struct Caller(pub Option<String>);

/// Middleware: checks every request against the policy, records the caller.
pub async fn enforce(
    State(access): State<Arc<ApiAccess>>,
    mut req: Request,
    next: Next,
) -> Response {
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    if let Err(refusal) = access.open_guard(&method, &path, req.headers()) {
        return *refusal;
    }
    match access.check(&method, &path, auth.as_deref()).await {
        Ok(caller) => {
            req.extensions_mut().insert(Caller(caller));
            next.run(req).await
        }
        Err(refusal) => *refusal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_fall_into_classes_by_path() {
        let get = Method::GET;
        let post = Method::POST;
        assert_eq!(needs(&get, "/healthz", true), Needs::Public);
        assert_eq!(needs(&get, "/metrics", true), Needs::Public);
        assert_eq!(needs(&get, "/metrics", false), Needs::Scope(Scope::Read));
        assert_eq!(needs(&get, "/api/v2/summary.json", true), Needs::Public);
        assert_eq!(needs(&get, "/badge/login.svg", true), Needs::Public);
        assert_eq!(needs(&get, "/", true), Needs::Public);
        assert_eq!(needs(&get, "/api/v1/slos", true), Needs::Scope(Scope::Read));
        assert_eq!(
            needs(&get, "/api/v1/alerts", true),
            Needs::Scope(Scope::Read)
        );
        assert_eq!(
            needs(&get, "/api/v1/gates/deploy", true),
            Needs::Scope(Scope::Gate)
        );
        assert_eq!(
            needs(&post, "/api/v1/gates/deploy", true),
            Needs::Scope(Scope::Gate)
        );
        assert_eq!(
            needs(&post, "/api/v1/admin/reload", true),
            Needs::Scope(Scope::Admin)
        );
        // Reading the log filter is admin too: it is part of running the
        // process, not of the SLO data `read` tokens are for.
        assert_eq!(
            needs(&get, "/api/v1/admin/log-level", true),
            Needs::Scope(Scope::Admin)
        );
        assert_eq!(
            needs(&Method::PUT, "/api/v1/admin/log-level", true),
            Needs::Scope(Scope::Admin)
        );
        assert_eq!(
            needs(&post, "/api/v1/alerts/login/page/silence", true),
            Needs::Scope(Scope::Admin)
        );
    }

    fn headers(pairs: &[(&str, &str)]) -> header::HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    header::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                    header::HeaderValue::from_str(v).expect("value"),
                )
            })
            .collect()
    }

    fn guard(a: &ApiAccess, method: Method, path: &str, h: &[(&str, &str)]) -> Option<u16> {
        a.open_guard(&method, path, &headers(h))
            .err()
            .map(|r| r.status().as_u16())
    }

    #[test]
    fn host_part_strips_ports() {
        assert_eq!(host_part("localhost:8080"), "localhost");
        assert_eq!(host_part("[::1]:8080"), "[::1]");
        assert_eq!(host_part("[::1]"), "[::1]");
        assert_eq!(host_part("example.com"), "example.com");
        assert_eq!(host_part("a:b"), "a:b");
    }

    #[test]
    fn the_open_guard_by_mode() {
        let lo = ApiAccess::open();
        let json = ("content-type", "application/json; charset=utf-8");
        let api = "/api/v1/admin/reload";
        assert_eq!(
            guard(&lo, Method::POST, api, &[("host", "127.0.0.2:1"), json]),
            None
        );
        assert_eq!(
            guard(&lo, Method::POST, api, &[("host", "10.0.0.1"), json]),
            Some(403)
        );
        assert_eq!(
            guard(&lo, Method::POST, api, &[json]),
            None,
            "no Host: not a browser"
        );
        assert_eq!(
            guard(&lo, Method::POST, api, &[("host", "localhost")]),
            Some(415)
        );
        assert_eq!(
            guard(
                &lo,
                Method::DELETE,
                api,
                &[("host", "localhost"), (REQUEST_MARKER, "1")]
            ),
            None
        );
        assert_eq!(
            guard(
                &lo,
                Method::POST,
                api,
                &[("host", "localhost:1"), ("origin", "null"), json]
            ),
            Some(403)
        );
        // Allowed names, ports ignored.
        let named = ApiAccess::open().with_allowed_hosts(&["Authpulse.svc:8080".into()]);
        assert_eq!(
            guard(
                &named,
                Method::GET,
                "/api/v1/slos",
                &[("host", "authpulse.svc")]
            ),
            None
        );
        assert_eq!(
            guard(
                &named,
                Method::GET,
                "/api/v1/slos",
                &[("host", "other.svc")]
            ),
            Some(403)
        );
        // Insecure on the network: any Host without a list; with one, the
        // list and literal IPs.
        let mut net = ApiAccess::open();
        net.open_on_network = true;
        assert_eq!(
            guard(
                &net,
                Method::GET,
                "/api/v1/slos",
                &[("host", "any.example")]
            ),
            None
        );
        let net = net.with_allowed_hosts(&["authpulse.svc".into()]);
        assert_eq!(
            guard(
                &net,
                Method::GET,
                "/api/v1/slos",
                &[("host", "any.example")]
            ),
            Some(403)
        );
        assert_eq!(
            guard(
                &net,
                Method::GET,
                "/api/v1/slos",
                &[("host", "10.1.2.3:8080")]
            ),
            None
        );
        // With tokens nothing here applies.
        let mut tokens = ApiAccess::open();
        tokens.open = false;
        assert_eq!(
            guard(&tokens, Method::POST, api, &[("host", "evil.example")]),
            None
        );
    }

    #[test]
    fn no_tokens_on_a_network_address_refuses_to_start() {
        let cfg = ApiConfig::default();
        let lo: SocketAddr = "127.0.0.1:8080".parse().expect("addr");
        let any: SocketAddr = "0.0.0.0:8080".parse().expect("addr");
        assert!(ApiAccess::from_config(&cfg, lo, false).is_ok());
        let e = ApiAccess::from_config(&cfg, any, false)
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains("--insecure-open-api"), "{e}");
        assert!(ApiAccess::from_config(&cfg, any, true).is_ok());
    }
}
