//! Agent identity in client certificates (contract).
//!
//! An agent authenticates to the coordinator with an X.509 client certificate
//! whose subject alternative names hold exactly one URI of the form
//!
//! ```text
//! spiffe://authpulse/region/<region>/agent/<agent-id>
//! ```
//!
//! (a SPIFFE ID in the trust domain `authpulse`). `<region>` and
//! `<agent-id>` follow the same rules as in the agent's `Hello`: `[a-z0-9-]`,
//! at most 63 and 128 characters. Other URI SANs (not `spiffe://`) are
//! ignored; DNS and IP SANs too. The coordinator serves a stream only for the
//! agent and region its certificate names.
use std::fmt;

use x509_parser::extensions::GeneralName;

/// The trust domain part of the SPIFFE IDs authpulse issues and accepts.
pub const TRUST_DOMAIN: &str = "authpulse";

/// Longest agent id (as in `Hello.agent_id`).
pub const MAX_AGENT_ID_LEN: usize = 128;
/// Longest region name (as the catalog's ids).
pub const MAX_REGION_LEN: usize = 63;

/// Who a certificate says its holder is.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AgentIdentity {
    pub agent_id: String,
    pub region: String,
}

/// Why a certificate or URI names no usable agent identity.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("the certificate cannot be parsed: {0}")]
    Unparsable(String),
    #[error(
        "the certificate has no `spiffe://{TRUST_DOMAIN}/region/<region>/agent/<agent-id>` URI SAN"
    )]
    Missing,
    #[error("the certificate has {0} spiffe:// URI SANs; exactly one is allowed")]
    Ambiguous(usize),
    #[error(
        "URI SAN {0:?} is not of the form spiffe://{TRUST_DOMAIN}/region/<region>/agent/<agent-id>"
    )]
    Malformed(String),
    #[error("URI SAN {uri:?}: {what} {value:?} must be 1-{max} characters of [a-z0-9-]")]
    InvalidName {
        uri: String,
        what: &'static str,
        value: String,
        max: usize,
    },
}

/// `[a-z0-9-]`, non-empty, at most `max` bytes.
pub fn valid_name(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl AgentIdentity {
    /// Checks both names; the error names the first invalid one.
    pub fn new(
        agent_id: impl Into<String>,
        region: impl Into<String>,
    ) -> Result<AgentIdentity, IdentityError> {
        let id = AgentIdentity {
            agent_id: agent_id.into(),
            region: region.into(),
        };
        id.check(&id.uri())?;
        Ok(id)
    }

    /// `spiffe://authpulse/region/<region>/agent/<agent-id>`.
    pub fn uri(&self) -> String {
        format!(
            "spiffe://{TRUST_DOMAIN}/region/{}/agent/{}",
            self.region, self.agent_id
        )
    }

    /// Parses a SPIFFE URI of the authpulse form.
    pub fn from_uri(uri: &str) -> Result<AgentIdentity, IdentityError> {
        let malformed = || IdentityError::Malformed(uri.to_string());
        let path = uri
            .strip_prefix("spiffe://")
            .and_then(|rest| rest.strip_prefix(TRUST_DOMAIN))
            .and_then(|rest| rest.strip_prefix('/'))
            .ok_or_else(malformed)?;
        let parts: Vec<&str> = path.split('/').collect();
        let ["region", region, "agent", agent_id] = parts.as_slice() else {
            return Err(malformed());
        };
        let id = AgentIdentity {
            agent_id: (*agent_id).to_string(),
            region: (*region).to_string(),
        };
        id.check(uri)?;
        Ok(id)
    }

    fn check(&self, uri: &str) -> Result<(), IdentityError> {
        let invalid = |what, value: &str, max| IdentityError::InvalidName {
            uri: uri.to_string(),
            what,
            value: value.to_string(),
            max,
        };
        if !valid_name(&self.region, MAX_REGION_LEN) {
            return Err(invalid("region", &self.region, MAX_REGION_LEN));
        }
        if !valid_name(&self.agent_id, MAX_AGENT_ID_LEN) {
            return Err(invalid("agent id", &self.agent_id, MAX_AGENT_ID_LEN));
        }
        Ok(())
    }

    /// The identity named by a DER certificate's URI SANs: exactly one
    /// `spiffe://` URI, of the authpulse form.
    pub fn from_cert_der(der: &[u8]) -> Result<AgentIdentity, IdentityError> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| IdentityError::Unparsable(e.to_string()))?;
        let san = cert
            .subject_alternative_name()
            .map_err(|e| IdentityError::Unparsable(e.to_string()))?;
        let spiffe: Vec<&str> = san
            .iter()
            .flat_map(|ext| ext.value.general_names.iter())
            .filter_map(|name| match name {
                GeneralName::URI(uri) if uri.to_ascii_lowercase().starts_with("spiffe://") => {
                    Some(*uri)
                }
                _ => None,
            })
            .collect();
        match spiffe.as_slice() {
            [] => Err(IdentityError::Missing),
            [uri] => AgentIdentity::from_uri(uri),
            many => Err(IdentityError::Ambiguous(many.len())),
        }
    }
}

impl fmt::Display for AgentIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "agent {} region {}", self.agent_id, self.region)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_round_trip() {
        let id = AgentIdentity::new("eu-west-1a", "eu-west").expect("valid");
        assert_eq!(
            id.uri(),
            "spiffe://authpulse/region/eu-west/agent/eu-west-1a"
        );
        assert_eq!(AgentIdentity::from_uri(&id.uri()), Ok(id.clone()));
        assert_eq!(id.to_string(), "agent eu-west-1a region eu-west");
    }

    #[test]
    fn malformed_uris_are_refused() {
        for uri in [
            "spiffe://other/region/eu/agent/a",
            "spiffe://authpulse/agent/a/region/eu",
            "spiffe://authpulse/region/eu/agent/a/extra",
            "spiffe://authpulse/region/eu/agent/",
            "spiffe://authpulse/region//agent/a",
            "spiffe://authpulsex/region/eu/agent/a",
            "https://authpulse/region/eu/agent/a",
        ] {
            assert!(AgentIdentity::from_uri(uri).is_err(), "{uri}");
        }
        let err = AgentIdentity::from_uri("spiffe://authpulse/region/EU/agent/a")
            .expect_err("upper case");
        assert!(err.to_string().contains("region \"EU\""), "{err}");
        assert!(AgentIdentity::new("a", "r".repeat(64)).is_err());
        assert!(AgentIdentity::new("a".repeat(129), "r").is_err());
    }
}
