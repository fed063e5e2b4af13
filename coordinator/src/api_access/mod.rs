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
//! This module holds the scopes, the bearer tokens and the endpoint
//! classes; the open-mode guard is in `open_guard.rs`, the JWT verifier and
//! its JWKS cache in `oidc.rs`.
mod oidc;
mod open_guard;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sha2::{Digest, Sha256};

pub use oidc::OidcConfig;
use oidc::OidcVerifier;
pub use open_guard::REQUEST_MARKER;

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
    /// The running catalog, for gates marked `public: true` (set once the
    /// catalog is loaded; until then no gate is public).
    catalog:
        std::sync::OnceLock<tokio::sync::watch::Receiver<std::sync::Arc<crate::CatalogSnapshot>>>,
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

impl ApiAccess {
    /// Follows the running catalog for its public gates.
    pub fn watch_catalog(
        &self,
        catalog: tokio::sync::watch::Receiver<std::sync::Arc<crate::CatalogSnapshot>>,
    ) {
        let _ = self.catalog.set(catalog);
    }

    /// `/api/v1/gates/ID` of a gate with `public: true` in the running catalog.
    fn public_gate(&self, path: &str) -> bool {
        let Some(id) = path.strip_prefix("/api/v1/gates/") else {
            return false;
        };
        let Some(catalog) = self.catalog.get() else {
            return false;
        };
        let snapshot = catalog.borrow();
        snapshot
            .catalog
            .gates
            .iter()
            .any(|g| g.public && g.id == id)
    }
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
                // Loopback only: local development and standalone; said, not warned.
                tracing::info!(%listen, "no API tokens configured: the HTTP API is open to local callers (loopback only)");
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
            catalog: std::sync::OnceLock::new(),
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
            catalog: std::sync::OnceLock::new(),
        }
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
        if self.open || (scope == Scope::Gate && self.public_gate(path)) {
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
