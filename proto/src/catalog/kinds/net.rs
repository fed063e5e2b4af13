//! `tcp`, `tls` and `dns`: the plumbing checks an IdP outage often starts with.
use serde::{Deserialize, Serialize};

use super::Validate;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpSpec {
    /// `host:port`.
    pub address: String,
}

impl Validate for TcpSpec {}

/// A TLS handshake and certificate checks (named `TlsCheckSpec` because
/// [`super::TlsSpec`] is the TLS client settings other kinds embed).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsCheckSpec {
    /// `host:port`.
    pub address: String,
}

impl Validate for TlsCheckSpec {}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsSpec {
    pub name: String,
}

impl Validate for DnsSpec {}
