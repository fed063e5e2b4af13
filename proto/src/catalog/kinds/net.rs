//! `tcp`, `tls` and `dns`: the plumbing checks an IdP outage often starts with.
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Issues, Validate, check_regex, is_templated, key};

/// `tcp`: resolve the host, connect, optionally write `send` and read until
/// the bytes received match `expect`. Steps `connect`, and `exchange` when
/// `send` or `expect` is set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TcpSpec {
    /// `host:port` (`[v6]:port` for an IPv6 literal).
    pub address: String,
    /// Text written once connected (e.g. `"PING\r\n"`: YAML double quotes
    /// for escapes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send: Option<String>,
    /// A regular expression the bytes read back (a banner, or the reply to
    /// `send`) must match; up to 64 KiB are read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<String>,
}

impl Validate for TcpSpec {
    fn validate(&self) -> Issues {
        let mut out = Issues::new();
        check_address(&mut out, &self.address);
        if let Some(re) = &self.expect {
            check_regex(&mut out, vec![key("expect")], re);
        }
        out
    }
}

/// `tls`: a TLS handshake and checks of the server certificate: the chain
/// verifies for the name, enough days are left, the SANs include the
/// expected names. Nothing is sent. Steps `connect`, `handshake`,
/// `certificate`.
// Named `TlsCheckSpec` because [`super::TlsSpec`] is the TLS client
// settings other kinds embed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsCheckSpec {
    /// `host:port`.
    pub address: String,
    /// SNI and the name the certificate must be valid for. Default: the
    /// host of `address`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// Fewer whole days than this before `notAfter` fails the check.
    #[serde(default = "default_min_days")]
    pub min_days_remaining: u32,
    /// DNS names or IP addresses the certificate's SANs must contain
    /// (names case-insensitively, IPs by value).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expect_sans: Vec<String>,
    /// Extra PEM CA bundle trusted in addition to the system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Skip chain and name verification; expiry and SANs are still checked.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    #[schemars(!skip_serializing_if)]
    pub insecure_skip_verify: bool,
}

fn default_min_days() -> u32 {
    14
}

impl Validate for TlsCheckSpec {
    fn validate(&self) -> Issues {
        let mut out = Issues::new();
        check_address(&mut out, &self.address);
        if let Some(name) = &self.server_name
            && !is_templated(name)
            && (name.is_empty() || name.contains(['/', ' ', ':']))
        {
            out.push((
                vec![key("server_name")],
                format!("`{name}` is not a valid server name"),
            ));
        }
        out
    }
}

/// A DNS record type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum DnsRecordType {
    #[default]
    A,
    Aaaa,
    Cname,
    Mx,
    Txt,
    Ns,
    Srv,
    Ptr,
    Soa,
    Caa,
}

impl DnsRecordType {
    pub fn name(self) -> &'static str {
        match self {
            DnsRecordType::A => "A",
            DnsRecordType::Aaaa => "AAAA",
            DnsRecordType::Cname => "CNAME",
            DnsRecordType::Mx => "MX",
            DnsRecordType::Txt => "TXT",
            DnsRecordType::Ns => "NS",
            DnsRecordType::Srv => "SRV",
            DnsRecordType::Ptr => "PTR",
            DnsRecordType::Soa => "SOA",
            DnsRecordType::Caa => "CAA",
        }
    }
}

/// The transport to an explicit `server`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DnsProtocol {
    #[default]
    Udp,
    Tcp,
}

/// `dns`: one query, never cached, to the system resolver (resolv.conf
/// and the hosts file) or to an explicit `server`. Only records of the
/// asked type are answers. One step, `query`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DnsSpec {
    /// The name to query. With the system resolver, its search domains and
    /// `ndots` apply; end the name with a dot to stop that. In a journey
    /// step the key is `query` (`name` is the step's).
    pub name: String,
    /// The record type asked for.
    #[serde(default)]
    pub record_type: DnsRecordType,
    /// Answers that must all be present, in text form: an address, a name
    /// (case and trailing dot ignored), `10 mail.example.com` (MX),
    /// `prio weight port target` (SRV), the joined strings (TXT, exact).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expect: Vec<String>,
    /// With `expect`: nothing else may be answered.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    #[schemars(!skip_serializing_if)]
    pub exact: bool,
    /// Ask this resolver (`ip` or `ip:port`, port 53 by default) instead of
    /// the system's; the hosts file is not consulted then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// The transport to `server` (only with `server`).
    #[serde(default, skip_serializing_if = "is_udp")]
    #[schemars(!skip_serializing_if)]
    pub protocol: DnsProtocol,
}

fn is_udp(p: &DnsProtocol) -> bool {
    *p == DnsProtocol::Udp
}

impl DnsSpec {
    /// `server` as a socket address (port 53 when not given).
    pub fn server_addr(&self) -> Option<Result<SocketAddr, String>> {
        let raw = self.server.as_deref()?;
        Some(parse_server(raw))
    }
}

fn parse_server(raw: &str) -> Result<SocketAddr, String> {
    if let Ok(sa) = raw.parse::<SocketAddr>() {
        return Ok(sa);
    }
    raw.trim_matches(['[', ']'])
        .parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| format!("`{raw}` is not an IP address or ip:port"))
}

impl Validate for DnsSpec {
    fn validate(&self) -> Issues {
        let mut out = Issues::new();
        if !is_templated(&self.name)
            && (self.name.trim().is_empty() || self.name.contains([' ', '/']))
        {
            out.push((
                vec![key("name")],
                format!("`{}` is not a DNS name", self.name),
            ));
        }
        if let Some(Err(e)) = self.server_addr() {
            out.push((vec![key("server")], e));
        }
        if self.exact && self.expect.is_empty() {
            out.push((
                vec![key("exact")],
                "`exact: true` needs a list of answers in `expect`".into(),
            ));
        }
        if self.protocol == DnsProtocol::Tcp && self.server.is_none() {
            out.push((
                vec![key("protocol")],
                "`protocol` applies to an explicit `server` only".into(),
            ));
        }
        out
    }
}

/// `host:port` split into its parts (brackets removed from an IPv6 host).
pub fn split_host_port(raw: &str) -> Result<(String, u16), String> {
    let (host, port) = raw
        .rsplit_once(':')
        .ok_or_else(|| format!("`{raw}`: expected host:port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("`{raw}`: the host is empty"));
    }
    if host.contains(':') && !raw.starts_with('[') {
        return Err(format!("`{raw}`: write an IPv6 address as [addr]:port"));
    }
    let port: u16 = port
        .parse()
        .map_err(|_| format!("`{raw}`: `{port}` is not a port number"))?;
    if port == 0 {
        return Err(format!("`{raw}`: port 0"));
    }
    Ok((host.to_string(), port))
}

fn check_address(out: &mut Issues, raw: &str) {
    if is_templated(raw) {
        return;
    }
    if let Err(e) = split_host_port(raw) {
        out.push((vec![key("address")], e));
    }
}
