//! A throwaway CA and a server certificate for `localhost`/127.0.0.1, made
//! with rcgen, for TLS tests: the CA PEM is written to a file a probe can name
//! in `tls.ca_file`.
use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, SanType};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

pub struct TlsFixture {
    pub ca_pem: String,
    pub server_config: Arc<rustls::ServerConfig>,
    /// The server certificate's `notAfter`, unix seconds.
    pub leaf_not_after: i64,
}

impl TlsFixture {
    pub fn new() -> TlsFixture {
        crate::crypto();
        let ca_key = KeyPair::generate().expect("ca key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "authpulse test CA");
        let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
        let issuer = Issuer::from_params(&ca_params, &ca_key);

        let key = KeyPair::generate().expect("server key");
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        params
            .subject_alt_names
            .push(SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &issuer).expect("server cert");

        let chain = vec![CertificateDer::from(cert.der().to_vec())];
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let mut config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key_der)
            .expect("server config");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        TlsFixture {
            ca_pem: ca_cert.pem(),
            server_config: Arc::new(config),
            leaf_not_after: params.not_after.unix_timestamp(),
        }
    }

    /// Writes the CA to `dir/ca.pem` and returns the path.
    pub fn write_ca(&self, dir: &std::path::Path) -> PathBuf {
        let path = dir.join("ca.pem");
        std::fs::write(&path, &self.ca_pem).expect("write ca");
        path
    }
}

impl TlsFixture {
    /// Like [`TlsFixture::new`] but the server certificate names only
    /// `names` (DNS names or IP addresses) and is valid from
    /// `now + valid_from_days` to `now + valid_until_days` (negative = in the
    /// past): an expired, not-yet-valid, soon-expiring or wrong-name
    /// certificate, still signed by this fixture's CA.
    pub fn with_leaf(names: &[&str], valid_from_days: i64, valid_until_days: i64) -> TlsFixture {
        crate::crypto();
        let ca_key = KeyPair::generate().expect("ca key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "authpulse test CA");
        let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
        let issuer = Issuer::from_params(&ca_params, &ca_key);

        let key = KeyPair::generate().expect("server key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        for name in names {
            params
                .subject_alt_names
                .push(match name.parse::<std::net::IpAddr>() {
                    Ok(ip) => SanType::IpAddress(ip),
                    Err(_) => SanType::DnsName((*name).try_into().expect("dns name")),
                });
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs() as i64;
        let at = |days: i64| {
            let secs = u64::try_from(now + days * 86_400).expect("after 1970");
            rcgen::date_time_ymd(1970, 1, 1) + std::time::Duration::from_secs(secs)
        };
        params.not_before = at(valid_from_days);
        params.not_after = at(valid_until_days);
        let cert = params.signed_by(&key, &issuer).expect("server cert");

        let chain = vec![CertificateDer::from(cert.der().to_vec())];
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let mut config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key_der)
            .expect("server config");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        TlsFixture {
            ca_pem: ca_cert.pem(),
            server_config: Arc::new(config),
            leaf_not_after: params.not_after.unix_timestamp(),
        }
    }
}

impl Default for TlsFixture {
    fn default() -> Self {
        TlsFixture::new()
    }
}
