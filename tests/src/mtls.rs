//! mTLS fixtures for agent/coordinator tests: a CA with a coordinator
//! certificate and agent certificates of every kind a test needs (valid,
//! expired, wrong usage, no identity), written to PEM files. Made with rcgen
//! directly, independently of `authpulse certs`, so the tests also show that
//! certificates from another issuer work when they follow the contract
//! (URI SAN `spiffe://authpulse/region/<region>/agent/<agent-id>`, client
//! auth EKU). Also: config files and log searching for the binaries.
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

const DAY: Duration = Duration::from_secs(86_400);

/// A CA and its coordinator certificate, as files in `dir`.
pub struct Pki {
    pub dir: PathBuf,
    name: String,
    ca_params: CertificateParams,
    ca_key: KeyPair,
    /// `<name>-ca.pem`
    pub ca: PathBuf,
    /// `<name>-coordinator.pem` / `.key`: localhost and 127.0.0.1.
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

/// A certificate and key file pair.
#[derive(Clone, Debug)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// What an agent certificate looks like.
pub struct AgentCert<'a> {
    /// The URI SAN; `None` = no URI SAN at all.
    pub uri: Option<&'a str>,
    pub usage: ExtendedKeyUsagePurpose,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl AgentCert<'_> {
    pub fn valid(uri: &str) -> AgentCert<'_> {
        AgentCert {
            uri: Some(uri),
            usage: ExtendedKeyUsagePurpose::ClientAuth,
            not_before: SystemTime::now() - DAY,
            not_after: SystemTime::now() + DAY,
        }
    }
}

/// `spiffe://authpulse/region/<region>/agent/<agent_id>`.
pub fn spiffe(agent_id: &str, region: &str) -> String {
    format!("spiffe://authpulse/region/{region}/agent/{agent_id}")
}

fn write_key(path: &Path, pem: &str) {
    std::fs::write(path, pem).expect("write key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
}

impl Pki {
    /// A new CA named `name` (file prefix) with a coordinator certificate.
    pub fn new(dir: &Path, name: &str) -> Pki {
        Pki::with_subject(dir, name, &format!("authpulse test CA {name}"))
    }

    /// A new CA whose subject is `CN=<common_name>`: give it another CA's
    /// name to make an impostor.
    pub fn with_subject(dir: &Path, name: &str, common_name: &str) -> Pki {
        crate::crypto();
        let ca_key = KeyPair::generate().expect("ca key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca_params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
        let ca = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&ca, ca_cert.pem()).expect("write ca");
        let mut pki = Pki {
            dir: dir.to_path_buf(),
            name: name.to_string(),
            ca_params,
            ca_key,
            ca,
            server_cert: PathBuf::new(),
            server_key: PathBuf::new(),
        };
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::from([127, 0, 0, 1])));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let files = pki.sign("coordinator", params);
        pki.server_cert = files.cert;
        pki.server_key = files.key;
        pki
    }

    fn sign(&self, stem: &str, mut params: CertificateParams) -> CertFiles {
        let key = KeyPair::generate().expect("key");
        params.use_authority_key_identifier_extension = true;
        let issuer = Issuer::from_params(&self.ca_params, &self.ca_key);
        let cert = params.signed_by(&key, &issuer).expect("sign");
        let files = CertFiles {
            cert: self.dir.join(format!("{}-{stem}.pem", self.name)),
            key: self.dir.join(format!("{}-{stem}.key", self.name)),
        };
        std::fs::write(&files.cert, cert.pem()).expect("write cert");
        write_key(&files.key, &key.serialize_pem());
        files
    }

    /// A valid agent certificate for `agent_id` in `region`.
    pub fn agent(&self, agent_id: &str, region: &str) -> CertFiles {
        let uri = spiffe(agent_id, region);
        self.agent_with(agent_id, &AgentCert::valid(&uri))
    }

    /// An agent certificate as `spec` says, in files named after `stem`.
    pub fn agent_with(&self, stem: &str, spec: &AgentCert<'_>) -> CertFiles {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, stem);
        if let Some(uri) = spec.uri {
            params.subject_alt_names = vec![SanType::URI(uri.try_into().expect("ascii uri"))];
        }
        params.extended_key_usages = vec![spec.usage.clone()];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.not_before = spec.not_before.into();
        params.not_after = spec.not_after.into();
        self.sign(stem, params)
    }

    /// The coordinator's `tls:` block for this CA.
    pub fn coordinator_tls_yaml(&self) -> String {
        format!(
            "tls:\n  cert: {}\n  key: {}\n  client_ca: {}\n",
            self.server_cert.display(),
            self.server_key.display(),
            self.ca.display()
        )
    }

    /// An agent's `tls:` block for `files` (trusting this CA's coordinator).
    pub fn agent_tls_yaml(&self, files: &CertFiles) -> String {
        format!(
            "tls:\n  cert: {}\n  key: {}\n  ca: {}\n",
            files.cert.display(),
            files.key.display(),
            self.ca.display()
        )
    }
}

/// A free loopback port (bound and released: good enough for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// The JSON log lines (`tracing` JSON format) of `log` whose message is
/// `message`, as their `fields` objects.
pub fn log_events(log: &str, message: &str) -> Vec<serde_json::Value> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v.get("fields").cloned())
        .filter(|f| f["message"] == message)
        .collect()
}

/// An agent stream over mTLS to `grpc`, trusting `ca`, presenting
/// `identity` (none = no client certificate). Errors as text: with TLS 1.3
/// a refused certificate may show only at the first request or read.
pub async fn open_stream(
    grpc: std::net::SocketAddr,
    ca: &Path,
    identity: Option<&CertFiles>,
) -> Result<crate::fake_agent::FakeAgent, String> {
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
    let pem = |p: &Path| std::fs::read(p).expect("read pem");
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(pem(ca)))
        .domain_name("localhost");
    if let Some(id) = identity {
        tls = tls.identity(Identity::from_pem(pem(&id.cert), pem(&id.key)));
    }
    let endpoint = Endpoint::from_shared(format!("https://{grpc}"))
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(5))
        .tls_config(tls)
        .expect("tls config");
    let channel = tokio::time::timeout(Duration::from_secs(20), endpoint.connect())
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| format!("connect: {e:?}"))?;
    crate::fake_agent::FakeAgent::open(channel).await
}
