//! Discovery of a provider's endpoints from its issuer: the metadata
//! document (`<issuer>/.well-known/openid-configuration`), fetched always
//! ([`discover`]) or reused per probe for [`DISCOVERY_TTL`]
//! ([`discover_cached`], [`forget_discovery`]).
use std::time::Duration;

use authpulse_proto::catalog::TlsSpec;
use authpulse_proto::v1::FailureClass;
use serde_json::{Map, Value as Json};
use url::Url;

use super::{OAuthError, unix_now};
use crate::http::{Request, Session, Timings};
use crate::probes::{RunContext, snippet};

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

pub use authpulse_proto::catalog::discovery_url;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_requires_the_exact_issuer() {
        let doc = serde_json::json!({"issuer": "https://a.example/", "token_endpoint": "https://a.example/token"});
        let Json::Object(m) = doc else { unreachable!() };
        assert!(Metadata::from_document(m.clone(), "https://a.example").is_err());
        let md = Metadata::from_document(m, "https://a.example/").expect("ok");
        assert_eq!(md.token_endpoint.expect("te").path(), "/token");
    }
}
