//! A private OpenLDAP `slapd` (`AUTHPULSE_TEST_SLAPD`, default
//! /usr/sbin/slapd) for LDAP probe tests: its own slapd.conf (mdb, suffix
//! dc=example,dc=org, the memberof overlay), a temporary data directory,
//! a TLS certificate from a throwaway CA (rcgen), plain and ldaps listeners
//! on free loopback ports, and a small directory loaded with `ldapadd` once
//! it accepts connections: a probe user in one group, another user in
//! another group. Killed on drop.
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, SanType};
use tokio::process::{Child, Command};

use crate::TempDir;

pub const SUFFIX: &str = "dc=example,dc=org";
pub const ADMIN_DN: &str = "cn=admin,dc=example,dc=org";
pub const ADMIN_PW: &str = "admin-pw-123";
/// The synthetic user probes bind as.
pub const USER_DN: &str = "uid=probe,ou=people,dc=example,dc=org";
pub const USER_PW: &str = "probe-pw-123";
/// A group with [`USER_DN`] as a member.
pub const GROUP_DN: &str = "cn=sre,ou=groups,dc=example,dc=org";
/// A group without [`USER_DN`].
pub const OTHER_GROUP_DN: &str = "cn=admins,ou=groups,dc=example,dc=org";

pub struct Slapd {
    _child: Child,
    dir: TempDir,
    /// `ldap://127.0.0.1:<port>` (StartTLS available).
    pub url: String,
    /// `ldaps://127.0.0.1:<port>`.
    pub ldaps_url: String,
    /// PEM of the CA that signed the server certificate.
    pub ca_pem: String,
}

fn tool(env: &str, default: &str) -> String {
    std::env::var(env).unwrap_or_else(|_| default.to_string())
}

impl Slapd {
    pub async fn start() -> Slapd {
        let slapd = tool("AUTHPULSE_TEST_SLAPD", "/usr/sbin/slapd");
        assert!(
            std::path::Path::new(&slapd).exists(),
            "OpenLDAP slapd is not installed at {slapd}: install the `slapd` package (tests/run does)"
        );
        let ldapadd = if std::path::Path::new("/usr/bin/ldapadd").exists() {
            "/usr/bin/ldapadd".to_string()
        } else {
            "ldapadd".to_string()
        };
        let dir = TempDir::new("authpulse-slapd");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).expect("slapd data dir");

        let (ca_pem, cert_pem, key_pem) = server_cert();
        let cert = dir.path().join("server.pem");
        let key = dir.path().join("server.key");
        std::fs::write(&cert, cert_pem).expect("write cert");
        std::fs::write(&key, key_pem).expect("write key");

        let conf = dir.path().join("slapd.conf");
        std::fs::write(
            &conf,
            format!(
                "include /etc/ldap/schema/core.schema\n\
                 include /etc/ldap/schema/cosine.schema\n\
                 include /etc/ldap/schema/inetorgperson.schema\n\
                 include /etc/ldap/schema/nis.schema\n\
                 pidfile {pid}\n\
                 argsfile {args}\n\
                 modulepath /usr/lib/ldap\n\
                 moduleload back_mdb\n\
                 moduleload memberof\n\
                 TLSCertificateFile {cert}\n\
                 TLSCertificateKeyFile {key}\n\
                 database mdb\n\
                 suffix \"{SUFFIX}\"\n\
                 rootdn \"{ADMIN_DN}\"\n\
                 rootpw {ADMIN_PW}\n\
                 directory {data}\n\
                 maxsize 10485760\n\
                 overlay memberof\n",
                pid = dir.path().join("slapd.pid").display(),
                args = dir.path().join("slapd.args").display(),
                cert = cert.display(),
                key = key.display(),
                data = data.display(),
            ),
        )
        .expect("write slapd.conf");

        // Ports come from binding :0 and closing, so another test may take one
        // before slapd binds it: slapd then exits at once. Such a start is
        // retried on new ports; `-d 32768` logs only what slapd always logs
        // (a failed bind among it) and keeps it in the foreground.
        let log_path = dir.path().join("slapd.log");
        let mut failures = Vec::new();
        let (child, url, ldaps_url) = loop {
            let port = crate::fleet::free_port();
            let tls_port = crate::fleet::free_port();
            let url = format!("ldap://127.0.0.1:{port}");
            let ldaps_url = format!("ldaps://127.0.0.1:{tls_port}");
            let log = std::fs::File::create(&log_path).expect("slapd log");
            let mut child = Command::new(&slapd)
                .arg("-d")
                .arg("32768")
                .arg("-h")
                .arg(format!("{url}/ {ldaps_url}/"))
                .arg("-f")
                .arg(&conf)
                .stdout(Stdio::null())
                .stderr(Stdio::from(log))
                .kill_on_drop(true)
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {slapd}: {e}"));
            let addr = format!("127.0.0.1:{port}");
            let tls_addr = format!("127.0.0.1:{tls_port}");
            let deadline = tokio::time::Instant::now() + crate::PEER_START;
            let exited = loop {
                // Both listeners: slapd binds them one after the other and
                // exits when the second port was taken meanwhile, so the
                // first one alone accepting is not "ready" (seen in a full
                // run: ldapadd then found nobody).
                if tokio::net::TcpStream::connect(&addr).await.is_ok()
                    && tokio::net::TcpStream::connect(&tls_addr).await.is_ok()
                {
                    if let Ok(Some(status)) = child.try_wait() {
                        break Some(status);
                    }
                    break None;
                }
                if let Ok(Some(status)) = child.try_wait() {
                    break Some(status);
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "slapd did not listen on {addr} within {:?}; log:\n{}",
                    crate::PEER_START,
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            let Some(status) = exited else {
                break (child, url, ldaps_url);
            };
            failures.push(format!(
                "slapd exited ({status}) before listening on {port}/{tls_port}; log:\n{}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            ));
            assert!(failures.len() < 3, "{}", failures.join("\n"));
        };

        let ldif = dir.path().join("data.ldif");
        std::fs::write(&ldif, LDIF).expect("write ldif");
        let out = Command::new(&ldapadd)
            .args(["-x", "-H", &url, "-D", ADMIN_DN, "-w", ADMIN_PW, "-f"])
            .arg(&ldif)
            .output()
            .await
            .unwrap_or_else(|e| panic!("run {ldapadd}: {e}"));
        assert!(
            out.status.success(),
            "ldapadd failed: {}\n{}; slapd log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
        Slapd {
            _child: child,
            dir,
            url,
            ldaps_url,
            ca_pem,
        }
    }

    /// Writes the server's CA to a file a probe can name in `tls.ca_file`.
    pub fn write_ca(&self) -> PathBuf {
        let path = self.dir.path().join("ca.pem");
        std::fs::write(&path, &self.ca_pem).expect("write ca");
        path
    }

    /// slapd's stderr so far, for assertion messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("slapd.log")).unwrap_or_default()
    }
}

/// (CA PEM, server certificate PEM, server key PEM) for 127.0.0.1/localhost.
fn server_cert() -> (String, String, String) {
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "authpulse slapd test CA");
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
    let issuer = Issuer::from_params(&ca_params, &ca_key);
    let key = KeyPair::generate().expect("server key");
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
    params
        .subject_alt_names
        .push(SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])));
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &issuer).expect("server cert");
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}

const LDIF: &str = "\
dn: dc=example,dc=org
objectClass: dcObject
objectClass: organization
o: Example
dc: example

dn: ou=people,dc=example,dc=org
objectClass: organizationalUnit
ou: people

dn: ou=groups,dc=example,dc=org
objectClass: organizationalUnit
ou: groups

dn: uid=probe,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: probe
cn: Probe User
sn: User
mail: probe@example.org
userPassword: probe-pw-123

dn: uid=other,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: other
cn: Other User
sn: User
userPassword: other-pw-123

dn: cn=sre,ou=groups,dc=example,dc=org
objectClass: groupOfNames
cn: sre
member: uid=probe,ou=people,dc=example,dc=org

dn: cn=admins,ou=groups,dc=example,dc=org
objectClass: groupOfNames
cn: admins
member: uid=other,ou=people,dc=example,dc=org
";
