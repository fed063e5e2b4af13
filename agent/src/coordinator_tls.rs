//! The gRPC channel to the coordinator: plaintext (`insecure: true`,
//! `http://` URLs) or mTLS (`tls: { cert, key, ca }`, `https://` URLs), over
//! one or more coordinator URLs — or, for an agent embedded next to its
//! coordinator, the socket-less `in_process` transport.
//!
//! With mTLS the agent presents `tls.cert` (whose URI SAN
//! `spiffe://authpulse/region/<region>/agent/<agent-id>` must name this
//! agent, see `authpulse_proto::identity`) and trusts only `tls.ca` for the
//! coordinator's certificate, checked against the URL's host or
//! `tls.server_name`. The files are read at startup ([`check`]: errors name
//! the file) and again at every reconnect, so renewed certificates are used
//! without a restart.
//!
//! Several URLs: [`connect`] starts with the coordinator that answered last
//! and tries the others in order (wrapping around) when it can't connect.
//! A coordinator that refuses our certificate is only told on the first
//! request (TLS 1.3), so the error the agent logs is vague by nature; the
//! coordinator logs the precise reason.
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use authpulse_proto::identity::AgentIdentity;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::config::{AgentConfig, AgentTlsConfig};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The PEM material for one connection attempt, checked.
pub struct ClientTls {
    ca_pem: Vec<u8>,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    /// What the certificate names.
    pub identity: AgentIdentity,
}

fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {what} {}", path.display()))
}

fn certs(pem: &[u8], path: &Path, what: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{what} {} is not valid PEM", path.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "{what} {} holds no certificate (expected PEM `BEGIN CERTIFICATE`)",
        path.display()
    );
    Ok(certs)
}

/// Reads and checks `tls.cert`, `tls.key` and `tls.ca`: each parses, the key
/// fits the certificate, the certificate names an agent, the CA is usable.
pub fn load(tls: &AgentTlsConfig) -> anyhow::Result<ClientTls> {
    let cert_pem = read(&tls.cert, "tls.cert")?;
    let chain = certs(&cert_pem, &tls.cert, "tls.cert")?;
    let key_pem = read(&tls.key, "tls.key")?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).with_context(|| {
        format!(
            "tls.key {} holds no private key (expected PEM `BEGIN PRIVATE KEY`, \
             `BEGIN RSA PRIVATE KEY` or `BEGIN EC PRIVATE KEY`)",
            tls.key.display()
        )
    })?;
    let identity = AgentIdentity::from_cert_der(&chain[0]).with_context(|| {
        format!(
            "tls.cert {} is not an authpulse agent certificate (make one with `authpulse certs agent`)",
            tls.cert.display()
        )
    })?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    rustls::sign::CertifiedKey::from_der(chain, key, &provider).with_context(|| {
        format!(
            "tls.key {} does not fit tls.cert {}",
            tls.key.display(),
            tls.cert.display()
        )
    })?;
    let ca_pem = read(&tls.ca, "tls.ca")?;
    let mut roots = rustls::RootCertStore::empty();
    for (i, ca) in certs(&ca_pem, &tls.ca, "tls.ca")?.into_iter().enumerate() {
        roots.add(ca).with_context(|| {
            format!(
                "tls.ca {}: certificate #{} is not a usable CA certificate",
                tls.ca.display(),
                i + 1
            )
        })?;
    }
    Ok(ClientTls {
        ca_pem,
        cert_pem,
        key_pem,
        identity,
    })
}

/// Startup checks: at least one URL; exactly one of `tls` and `insecure`;
/// `https://` with `tls`, `http://` without; the TLS files load and the
/// certificate names this agent.
pub fn check(cfg: &AgentConfig) -> anyhow::Result<()> {
    if cfg.in_process.is_some() {
        // No network between the two: URLs and TLS have nothing to describe.
        anyhow::ensure!(
            cfg.tls.is_none(),
            "an in-process coordinator connection takes no `tls`"
        );
        return Ok(());
    }
    let urls = cfg.coordinator.urls();
    anyhow::ensure!(
        !urls.is_empty(),
        "coordinator: give the coordinator's gRPC URL (or a list of them)"
    );
    match (&cfg.tls, cfg.insecure) {
        (None, false) => anyhow::bail!(
            "the connection to the coordinator needs either `tls: {{ cert, key, ca }}` (mTLS with \
             this agent's client certificate; `authpulse certs agent` makes one) or \
             `insecure: true` (plaintext, trusted networks only)"
        ),
        (Some(_), true) => anyhow::bail!(
            "`tls` and `insecure: true` are both set; choose one (remove `insecure` to use mTLS)"
        ),
        _ => {}
    }
    for url in urls {
        let parsed =
            url::Url::parse(url).with_context(|| format!("coordinator URL `{url}` is invalid"))?;
        anyhow::ensure!(
            parsed.host().is_some(),
            "coordinator URL `{url}` has no host"
        );
        match (parsed.scheme(), cfg.tls.is_some()) {
            ("https", true) | ("http", false) => {}
            ("http", true) => {
                anyhow::bail!("coordinator URL `{url}` is plaintext but `tls` is set: use https://")
            }
            ("https", false) => anyhow::bail!(
                "coordinator URL `{url}` is https:// but `tls` is not set: configure \
                 `tls: {{ cert, key, ca }}` (or use http:// with `insecure: true`)"
            ),
            (other, _) => {
                anyhow::bail!("coordinator URL `{url}`: scheme `{other}` is not http or https")
            }
        }
    }
    if let Some(tls) = &cfg.tls {
        let loaded = load(tls)?;
        let expected = AgentIdentity {
            agent_id: cfg.agent_id.clone(),
            region: cfg.region.clone(),
        };
        anyhow::ensure!(
            loaded.identity == expected,
            "tls.cert {} names {} but this agent is configured as {}; the coordinator would \
             refuse it",
            tls.cert.display(),
            loaded.identity,
            expected
        );
    }
    Ok(())
}

/// The host of `url` as a TLS server name (IP addresses without brackets).
fn host_of(url: &str) -> anyhow::Result<String> {
    let parsed =
        url::Url::parse(url).with_context(|| format!("coordinator URL `{url}` is invalid"))?;
    match parsed.host() {
        Some(url::Host::Domain(d)) => Ok(d.to_string()),
        Some(url::Host::Ipv4(ip)) => Ok(ip.to_string()),
        Some(url::Host::Ipv6(ip)) => Ok(ip.to_string()),
        None => anyhow::bail!("coordinator URL `{url}` has no host"),
    }
}

/// The tonic endpoint for one coordinator URL.
pub fn endpoint(
    url: &str,
    tls_config: Option<&AgentTlsConfig>,
    tls: Option<&ClientTls>,
) -> anyhow::Result<Endpoint> {
    let mut endpoint = Endpoint::from_shared(url.to_string())
        .with_context(|| format!("coordinator URL `{url}` is invalid"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(10));
    if let Some(tls) = tls {
        let server_name = match tls_config.and_then(|c| c.server_name.clone()) {
            Some(name) => name,
            None => host_of(url)?,
        };
        let config = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&tls.ca_pem))
            .identity(Identity::from_pem(&tls.cert_pem, &tls.key_pem))
            .domain_name(server_name)
            .timeout(TLS_HANDSHAKE_TIMEOUT);
        endpoint = endpoint
            .tls_config(config)
            .with_context(|| format!("TLS setup for {url}"))?;
    }
    Ok(endpoint)
}

/// Connects to the coordinator that answered last, else to the next ones in
/// turn; remembers which one answered. (In process: over the connector.)
pub async fn connect(cfg: &AgentConfig) -> anyhow::Result<Channel> {
    if let Some(in_process) = &cfg.in_process {
        return in_process.channel().await;
    }
    let tls = cfg.tls.as_ref().map(load).transpose()?;
    let coordinators = &cfg.coordinator;
    let urls = coordinators.urls();
    anyhow::ensure!(!urls.is_empty(), "no coordinator URL configured");
    let start = coordinators.current();
    let mut failures = Vec::new();
    for i in 0..urls.len() {
        let index = (start + i) % urls.len();
        let url = &urls[index];
        let endpoint = endpoint(url, cfg.tls.as_ref(), tls.as_ref())?;
        match endpoint.connect().await {
            Ok(channel) => {
                if index != start {
                    tracing::info!(coordinator = %url, "switched to another coordinator");
                }
                coordinators.set_current(index);
                return Ok(channel);
            }
            Err(e) => {
                let why = crate::http::error_chain(&e);
                if urls.len() > 1 {
                    tracing::warn!(coordinator = %url, error = %why, "coordinator unreachable; trying the next");
                }
                failures.push(format!("{url}: {why}"));
            }
        }
    }
    match failures.as_slice() {
        [one] => anyhow::bail!("{one}"),
        all => anyhow::bail!("no coordinator reachable ({})", all.join("; ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Coordinators;

    fn config(coordinator: &[&str], tls: Option<&Path>, insecure: bool) -> AgentConfig {
        let mut v = serde_json::json!({
            "agent_id": "a-1",
            "region": "eu",
            "coordinator": coordinator,
            "insecure": insecure,
        });
        if let Some(dir) = tls {
            v["tls"] = serde_json::json!({
                "cert": dir.join("a.pem"),
                "key": dir.join("a.key"),
                "ca": dir.join("ca.pem"),
            });
        }
        serde_json::from_value(v).expect("config shape")
    }

    #[test]
    fn one_or_many_urls() {
        let one: Coordinators = serde_json::from_str("\"http://a:1\"").expect("one");
        assert_eq!(one.urls(), ["http://a:1"]);
        let comma: Coordinators = serde_json::from_str("\"http://a:1, http://b:2\"").expect("csv");
        assert_eq!(comma.urls(), ["http://a:1", "http://b:2"]);
        let many: Coordinators =
            serde_json::from_str("[\"http://a:1\", \"http://b:2\"]").expect("list");
        assert_eq!(many.urls(), ["http://a:1", "http://b:2"]);
        assert_eq!(many.to_string(), "http://a:1");
        many.clone().set_current(1);
        assert_eq!(
            many.to_string(),
            "http://b:2",
            "clones share the current one"
        );
    }

    #[test]
    fn transport_rules() {
        let err = |c: AgentConfig| check(&c).expect_err("invalid").to_string();
        let dir = Some(Path::new("/nonexistent"));
        assert!(err(config(&["http://a:1"], None, false)).contains("insecure: true"));
        assert!(err(config(&["https://a:1"], dir, true)).contains("both set"));
        assert!(err(config(&["http://a:1"], dir, false)).contains("use https://"));
        assert!(err(config(&["https://a:1"], None, true)).contains("`tls` is not set"));
        assert!(err(config(&[], None, true)).contains("coordinator"));
        check(&config(&["http://a:1", "http://b:2"], None, true)).expect("insecure, http URLs");
        let missing = err(config(&["https://a:1"], dir, false));
        assert!(
            missing.contains("tls.cert") && missing.contains("/nonexistent/a.pem"),
            "{missing}"
        );
    }

    #[test]
    fn server_name_defaults_to_the_url_host() {
        assert_eq!(
            host_of("https://coord.example:7070").expect("host"),
            "coord.example"
        );
        assert_eq!(
            host_of("https://127.0.0.1:7070").expect("host"),
            "127.0.0.1"
        );
        assert_eq!(host_of("https://[::1]:7070").expect("host"), "::1");
    }
}
