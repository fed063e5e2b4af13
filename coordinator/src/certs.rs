//! `authpulse certs`: a development CA and the certificates agents and the
//! coordinator need for mTLS, made with rcgen (ECDSA P-256).
//!
//! - `init` creates `ca.pem`/`ca.key` (a CA that may sign leaf certificates
//!   only) and `coordinator.pem`/`coordinator.key` (server authentication, SANs
//!   `localhost`, `127.0.0.1` and any extra names).
//! - `agent` signs `<agent-id>.pem`/`<agent-id>.key` with that CA: client
//!   authentication only, and the URI SAN
//!   `spiffe://authpulse/region/<region>/agent/<agent-id>` that the
//!   coordinator reads the agent's identity from ([`authpulse_proto::identity`]).
//!
//! Key files are written with mode 0600. Existing files are not overwritten
//! unless asked (`force`): replacing `ca.key` would orphan every agent
//! certificate signed with it.
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use authpulse_proto::identity::AgentIdentity;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

const DAY: Duration = Duration::from_secs(86_400);

/// Default lifetime of the dev CA.
pub const CA_DAYS: u32 = 3650;
/// Default lifetime of server and agent certificates.
pub const LEAF_DAYS: u32 = 365;

/// When a certificate is valid.
#[derive(Clone, Copy, Debug)]
pub struct Validity {
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl Validity {
    /// From an hour ago (clock skew between machines) for `days` days.
    pub fn days(days: u32) -> Validity {
        let now = SystemTime::now();
        Validity {
            not_before: now - Duration::from_secs(3600),
            not_after: now + DAY * days,
        }
    }

    fn apply(&self, params: &mut CertificateParams) {
        params.not_before = self.not_before.into();
        params.not_after = self.not_after.into();
    }
}

/// A certificate and its private key, both PEM.
#[derive(Clone, Debug)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A CA that signs coordinator and agent certificates.
pub struct DevCa {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
}

impl DevCa {
    /// A new self-signed CA, allowed to sign leaf certificates only.
    pub fn generate(validity: Validity) -> anyhow::Result<DevCa> {
        let key = KeyPair::generate().context("generating the CA key")?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "authpulse");
        // A name of its own: two dev CAs with one name make verifiers report
        // "bad signature" instead of "unknown issuer".
        let tag: String = key
            .public_key_raw()
            .iter()
            .skip(1)
            .take(4)
            .map(|b| format!("{b:02x}"))
            .collect();
        dn.push(DnType::CommonName, format!("authpulse dev CA {tag}"));
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        validity.apply(&mut params);
        let cert = params.self_signed(&key).context("signing the CA")?;
        Ok(DevCa {
            issuer: Issuer::new(params, key),
            cert_pem: cert.pem(),
        })
    }

    /// A CA from its certificate and key (as `init` wrote them).
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> anyhow::Result<DevCa> {
        let key = KeyPair::from_pem(key_pem).context("the CA key is not a PEM private key")?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)
            .context("the CA certificate is not a PEM certificate")?;
        Ok(DevCa {
            issuer,
            cert_pem: cert_pem.to_string(),
        })
    }

    /// Reads `ca.pem` and `ca.key`; errors name the file.
    pub fn load(cert: &Path, key: &Path) -> anyhow::Result<DevCa> {
        let cert_pem = std::fs::read_to_string(cert)
            .with_context(|| format!("cannot read the CA certificate {}", cert.display()))?;
        let key_pem = std::fs::read_to_string(key)
            .with_context(|| format!("cannot read the CA key {}", key.display()))?;
        DevCa::from_pem(&cert_pem, &key_pem)
            .with_context(|| format!("{} / {}", cert.display(), key.display()))
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    fn sign(&self, mut params: CertificateParams, validity: Validity) -> anyhow::Result<Issued> {
        let key = KeyPair::generate().context("generating a key")?;
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        validity.apply(&mut params);
        let cert = params
            .signed_by(&key, &self.issuer)
            .context("signing the certificate")?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// A coordinator (server) certificate for `names`: IP addresses become IP
    /// SANs, everything else DNS SANs.
    pub fn server_cert(&self, names: &[String], validity: Validity) -> anyhow::Result<Issued> {
        anyhow::ensure!(!names.is_empty(), "a server certificate needs a name");
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "authpulse coordinator");
        for name in names {
            let san = match name.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(
                    name.as_str()
                        .try_into()
                        .with_context(|| format!("invalid DNS name {name:?}"))?,
                ),
            };
            params.subject_alt_names.push(san);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params, validity)
    }

    /// An agent (client) certificate naming `identity` in its SPIFFE URI SAN.
    pub fn agent_cert(
        &self,
        identity: &AgentIdentity,
        validity: Validity,
    ) -> anyhow::Result<Issued> {
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::OrganizationalUnitName, identity.region.as_str());
        params
            .distinguished_name
            .push(DnType::CommonName, identity.agent_id.as_str());
        params.subject_alt_names = vec![SanType::URI(
            identity
                .uri()
                .try_into()
                .context("the SPIFFE URI is not ASCII")?,
        )];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params, validity)
    }
}

/// Writes `contents` to `path`; `secret` files get mode 0600. Refuses to
/// replace an existing file unless `force`.
pub fn write_file(path: &Path, contents: &str, secret: bool, force: bool) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow::anyhow!(
                "{} already exists; not replacing it (use --force to overwrite)",
                path.display()
            )
        } else {
            anyhow::anyhow!("cannot write {}: {e}", path.display())
        }
    })?;
    // An existing file keeps its mode when truncated: tighten it.
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot restrict {}", path.display()))?;
    }
    file.write_all(contents.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Writes `<out>/<name>.pem` and `<out>/<name>.key` (0600).
pub fn write_issued(
    out: &Path,
    name: &str,
    issued: &Issued,
    force: bool,
) -> anyhow::Result<(PathBuf, PathBuf)> {
    let cert = out.join(format!("{name}.pem"));
    let key = out.join(format!("{name}.key"));
    // Both checked first, so a refusal leaves nothing half-written.
    if !force {
        for p in [&cert, &key] {
            anyhow::ensure!(
                !p.exists(),
                "{} already exists; not replacing it (use --force to overwrite)",
                p.display()
            );
        }
    }
    write_file(&key, &issued.key_pem, true, force)?;
    write_file(&cert, &issued.cert_pem, false, force)?;
    Ok((cert, key))
}

/// What `init` wrote.
#[derive(Debug)]
pub struct InitOutput {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub server_names: Vec<String>,
}

/// `authpulse certs init`: a CA and a coordinator certificate for
/// `localhost`, `127.0.0.1` and `extra_names`.
pub fn init(
    out: &Path,
    extra_names: &[String],
    days: u32,
    force: bool,
) -> anyhow::Result<InitOutput> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let ca_cert = out.join("ca.pem");
    let ca_key = out.join("ca.key");
    if !force {
        for p in [&ca_cert, &ca_key] {
            anyhow::ensure!(
                !p.exists(),
                "{} already exists; not replacing the CA (every certificate it signed would stop \
                 working). Use --force to start over, or `authpulse certs agent` to add agents",
                p.display()
            );
        }
    }
    let ca = DevCa::generate(Validity::days(CA_DAYS))?;
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    for n in extra_names {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    let server = ca.server_cert(&names, Validity::days(days))?;
    let (server_cert, server_key) = write_issued(out, "coordinator", &server, force)?;
    write_file(&ca_key, &ca.key_pem(), true, force)?;
    write_file(&ca_cert, ca.cert_pem(), false, force)?;
    Ok(InitOutput {
        ca_cert,
        ca_key,
        server_cert,
        server_key,
        server_names: names,
    })
}

/// `authpulse certs agent`: `<out>/<agent-id>.pem` and `.key`, signed by the CA.
pub fn agent(
    out: &Path,
    ca_cert: &Path,
    ca_key: &Path,
    identity: &AgentIdentity,
    days: u32,
    force: bool,
) -> anyhow::Result<(PathBuf, PathBuf)> {
    let ca = DevCa::load(ca_cert, ca_key)?;
    let issued = ca.agent_cert(identity, Validity::days(days))?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    write_issued(out, &identity.agent_id, &issued, force)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    fn der(pem: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(pem.as_bytes()).expect("PEM certificate")
    }

    #[test]
    fn agent_certificate_names_the_agent() {
        let ca = DevCa::generate(Validity::days(1)).expect("ca");
        let id = AgentIdentity::new("eu-west-1a", "eu-west").expect("id");
        let issued = ca.agent_cert(&id, Validity::days(1)).expect("agent cert");
        assert_eq!(
            AgentIdentity::from_cert_der(&der(&issued.cert_pem)),
            Ok(id.clone())
        );
        // A CA read back from its PEM files signs certificates that chain to it.
        let again = DevCa::from_pem(ca.cert_pem(), &ca.key_pem()).expect("reload");
        let issued = again
            .agent_cert(&id, Validity::days(1))
            .expect("agent cert");
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der(ca.cert_pem())).expect("root");
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots.into(),
            rustls::crypto::aws_lc_rs::default_provider().into(),
        )
        .build()
        .expect("verifier");
        verifier
            .verify_client_cert(
                &der(&issued.cert_pem),
                &[],
                rustls::pki_types::UnixTime::now(),
            )
            .expect("the reloaded CA's agent certificate verifies against the original CA");
        // Server certificates carry no agent identity.
        let server = ca
            .server_cert(&["localhost".into()], Validity::days(1))
            .expect("server cert");
        assert!(AgentIdentity::from_cert_der(&der(&server.cert_pem)).is_err());
    }

    #[test]
    fn init_writes_files_with_private_keys_0600_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = init(dir.path(), &["coord.example".into()], 30, false).expect("init");
        assert_eq!(
            out.server_names,
            vec!["localhost", "127.0.0.1", "coord.example"]
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for key in [&out.ca_key, &out.server_key] {
                let mode = std::fs::metadata(key).expect("key").permissions().mode();
                assert_eq!(mode & 0o777, 0o600, "{}", key.display());
            }
        }
        let err = init(dir.path(), &[], 30, false).expect_err("exists");
        assert!(err.to_string().contains("already exists"), "{err}");

        let id = AgentIdentity::new("a-1", "r-1").expect("id");
        let (cert, key) =
            agent(dir.path(), &out.ca_cert, &out.ca_key, &id, 7, false).expect("agent");
        assert!(cert.ends_with("a-1.pem") && key.ends_with("a-1.key"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key).expect("key").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(agent(dir.path(), &out.ca_cert, &out.ca_key, &id, 7, false).is_err());
        agent(dir.path(), &out.ca_cert, &out.ca_key, &id, 7, true).expect("forced");
    }
}
