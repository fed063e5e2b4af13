//! Requests to OAuth endpoints: the authenticated form POST
//! ([`post_form`]), the token request and its answer ([`token_request`],
//! [`TokenResponse`]), RFC 7662 introspection ([`introspect`]) and the
//! mapping of error answers to failure classes ([`error_from_response`]).
use authpulse_proto::catalog::TlsSpec;
use authpulse_proto::v1::FailureClass;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, header};
use serde_json::{Map, Value as Json};
use url::Url;

use super::{ClientAuth, OAuthError};
use crate::http::{Request, Response, Session, Timings};
use crate::probes::snippet;
use crate::secrets::Redactor;

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
}
