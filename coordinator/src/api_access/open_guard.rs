//! The open API's defence against the operator's own browser: with no
//! tokens configured, [`ApiAccess::open_guard`] refuses requests whose
//! `Host` or `Origin` names no loopback or allowed host (DNS rebinding,
//! cross-site pages) and mutations without a JSON content type or the
//! [`REQUEST_MARKER`] header; [`ApiAccess::with_allowed_hosts`] sets the
//! names it accepts.
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{ApiAccess, Needs, needs};

impl ApiAccess {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
