//! Real third-party SAML 2.0 identity providers for the `saml_login` and
//! `saml_metadata` probe tests, from tests/peers/saml/:
//!
//! - [`Which::SimpleSamlPhp`]: SimpleSAMLphp 1.19 (Debian's package) under
//!   PHP's built-in server (`AUTHPULSE_TEST_PHP`, default `php`; the system
//!   `python3`, `AUTHPULSE_TEST_SAML_LAUNCHER_PYTHON`, runs its launcher).
//! - [`Which::DjangoSaml2Idp`]: djangosaml2idp 0.7 (Django + pysaml2 +
//!   xmlsec1) from `AUTHPULSE_TEST_SAML_IDP_PYTHON` (tests/run sets it to
//!   target/saml-idp-venv, where it installs
//!   tests/peers/saml/djangosaml2idp/requirements.txt).
//!
//! Each test starts its own IdP with its own [`Options`] (under a second, see
//! tests/peers/README.md); the child is stopped on drop. Both know users
//! `alice`/`alice-pw` (uid alice, mail alice@example.test,
//! eduPersonAffiliation member+staff, displayName "Alice Example") and
//! `bob`/`bob-pw`, and one service provider ([`Options::sp_entity_id`], ACS
//! [`Options::acs_url`], HTTP-POST). The IdP's signing certificate can be
//! replaced, and its entity id changed, while it runs (metadata drift).
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{CertificateParams, DnType, KeyPair, PKCS_RSA_SHA256};

pub const DEFAULT_SP_ENTITY_ID: &str = "https://probe.invalid/saml/sp";
pub const DEFAULT_ACS_URL: &str = "https://probe.invalid/saml/acs";

/// Which IdP implementation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which {
    /// SimpleSAMLphp 1.19.7 (Debian 12). Signs response and assertion by
    /// default; always allows IdP-initiated SSO; checks the HTTP-Redirect
    /// query signature of AuthnRequests when `validate_authnrequest`.
    SimpleSamlPhp,
    /// djangosaml2idp 0.7.2 on pysaml2 7.5. Signs nothing by default (set
    /// `sign_assertion`/`sign_response`); NameID formats unspecified (the
    /// default: the username) and persistent, not transient or emailAddress;
    /// `validate_authnrequest` rejects every HTTP-Redirect AuthnRequest
    /// (djangosaml2idp drops the query signature): only HTTP-POST ones with
    /// an enveloped signature pass.
    DjangoSaml2Idp,
}

impl Which {
    pub fn name(self) -> &'static str {
        match self {
            Which::SimpleSamlPhp => "simplesamlphp",
            Which::DjangoSaml2Idp => "djangosaml2idp",
        }
    }
}

/// How the IdP is configured; `Default` is the IdP's own defaults with a
/// fresh valid signing certificate and the default SP.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// (certificate PEM, private key PEM) the IdP signs with; RSA. `None`:
    /// a fresh one from [`signing_cert`]`(false)` (see [`SamlIdp::cert_pem`]).
    pub signing: Option<(String, String)>,
    /// The IdP's entity id; `None`: its metadata URL.
    pub entity_id: Option<String>,
    /// The one SP the IdP knows; `None`: [`DEFAULT_SP_ENTITY_ID`].
    pub sp_entity_id: Option<String>,
    /// Its HTTP-POST ACS; `None`: [`DEFAULT_ACS_URL`].
    pub acs_url: Option<String>,
    /// The SP's certificate PEM (for signed AuthnRequests and encryption).
    pub sp_cert: Option<String>,
    /// Encrypt assertions to `sp_cert`.
    pub encrypt_assertion: bool,
    /// Require signed AuthnRequests; `None`: exactly when `sp_cert` is set.
    pub validate_authnrequest: Option<bool>,
    /// Sign the `<samlp:Response>`; `None`: the IdP's default.
    pub sign_response: Option<bool>,
    /// Sign the `<saml:Assertion>`; `None`: the IdP's default.
    pub sign_assertion: Option<bool>,
    /// Offer IdP-initiated SSO (djangosaml2idp routes it only then;
    /// SimpleSAMLphp always offers it).
    pub idp_initiated: bool,
}

pub struct SamlIdp {
    pub which: Which,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// The entity id the IdP currently has.
    pub entity_id: String,
    /// SSO endpoint, HTTP-Redirect binding.
    pub sso_url: String,
    /// SSO endpoint, HTTP-POST binding.
    pub sso_post_url: String,
    pub metadata_url: String,
    /// The launcher's private configuration directory (SimpleSAMLphp: its
    /// config.php, metadata/*.php, cert/; djangosaml2idp: options.json and
    /// the cert/key). Prefer [`SamlIdp::reconfigure`] to editing it.
    pub config_dir: PathBuf,
    /// The signing certificate and key the IdP currently has.
    pub cert_pem: String,
    pub key_pem: String,
    pub sp_entity_id: String,
    pub acs_url: String,
    log_path: PathBuf,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

fn env_or(var: &str, default: impl FnOnce() -> String) -> String {
    std::env::var(var).unwrap_or_else(|_| default())
}

/// The Python that runs djangosaml2idp (target/saml-idp-venv by default).
pub fn django_python() -> String {
    env_or("AUTHPULSE_TEST_SAML_IDP_PYTHON", || {
        crate::repo_root()
            .join("target/saml-idp-venv/bin/python")
            .display()
            .to_string()
    })
}

impl SamlIdp {
    /// Starts `which` configured by `opts` and waits until it serves its
    /// metadata. Blocks (about 0.3 s for SimpleSAMLphp, 1 s for djangosaml2idp).
    pub fn start(which: Which, opts: &Options) -> SamlIdp {
        let peers = crate::repo_root().join("tests/peers/saml");
        let (program, script) = match which {
            Which::SimpleSamlPhp => (
                env_or("AUTHPULSE_TEST_SAML_LAUNCHER_PYTHON", || "python3".into()),
                peers.join("simplesamlphp/serve.py"),
            ),
            Which::DjangoSaml2Idp => {
                let py = django_python();
                assert!(
                    std::path::Path::new(&py).exists(),
                    "no Python for djangosaml2idp at {py}: run tests/run (it creates \
                     target/saml-idp-venv from tests/peers/saml/djangosaml2idp/requirements.txt) \
                     or set AUTHPULSE_TEST_SAML_IDP_PYTHON"
                );
                (py, peers.join("djangosaml2idp/serve.py"))
            }
        };
        let (cert_pem, key_pem) = opts.signing.clone().unwrap_or_else(|| signing_cert(false));
        let sp_entity_id = opts
            .sp_entity_id
            .clone()
            .unwrap_or_else(|| DEFAULT_SP_ENTITY_ID.to_string());
        let acs_url = opts
            .acs_url
            .clone()
            .unwrap_or_else(|| DEFAULT_ACS_URL.to_string());
        let mut json = serde_json::json!({
            "idp_cert": cert_pem,
            "idp_key": key_pem,
            "sp_entity_id": sp_entity_id,
            "acs_url": acs_url,
            "encrypt_assertion": opts.encrypt_assertion,
            "idp_initiated": opts.idp_initiated,
        });
        let set = |json: &mut serde_json::Value, key: &str, v: serde_json::Value| {
            json[key] = v;
        };
        if let Some(v) = &opts.entity_id {
            set(&mut json, "entity_id", v.clone().into());
        }
        if let Some(v) = &opts.sp_cert {
            set(&mut json, "sp_cert", v.clone().into());
        }
        for (key, v) in [
            ("validate_authnrequest", opts.validate_authnrequest),
            ("sign_response", opts.sign_response),
            ("sign_assertion", opts.sign_assertion),
        ] {
            if let Some(v) = v {
                set(&mut json, key, v.into());
            }
        }

        let logs = crate::repo_root().join("target/test-peers");
        let _ = std::fs::create_dir_all(&logs);
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let stem = format!("saml-{}-{}-{n}", which.name(), std::process::id());
        // The options (with the private key) go to a private temp file that
        // lives only until the launcher has read it.
        let options_path = std::env::temp_dir().join(format!("authpulse-{stem}.json"));
        std::fs::write(&options_path, json.to_string()).expect("write IdP options");
        let log_path = logs.join(format!("{stem}.log"));
        let log = std::fs::File::create(&log_path).expect("IdP log");

        let started = Instant::now();
        let mut child = Command::new(&program)
            .arg(&script)
            .arg("--options")
            .arg(&options_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {program} {}: {e}", script.display()));
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the {} IdP has no stdin/stdout pipes", which.name());
        };
        let mut stdout = BufReader::new(stdout);
        let mut first = String::new();
        let mut second = String::new();
        let _ = stdout.read_line(&mut first);
        let _ = stdout.read_line(&mut second);
        let _ = std::fs::remove_file(&options_path);
        let (Some(base), Some(dir)) = (
            first.trim().strip_prefix("listening on "),
            second.trim().strip_prefix("config dir "),
        ) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the {} IdP did not start (lines {first:?}, {second:?}); its log:\n{}",
                which.name(),
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
        };
        eprintln!(
            "saml_idp: {} at {base} in {:?} (log {})",
            which.name(),
            started.elapsed(),
            log_path.display()
        );
        let base = base.to_string();
        let (sso, sso_post, metadata) = match which {
            Which::SimpleSamlPhp => (
                format!("{base}/saml2/idp/SSOService.php"),
                format!("{base}/saml2/idp/SSOService.php"),
                format!("{base}/saml2/idp/metadata.php"),
            ),
            Which::DjangoSaml2Idp => (
                format!("{base}/idp/sso/redirect/"),
                format!("{base}/idp/sso/post/"),
                format!("{base}/idp/metadata/"),
            ),
        };
        SamlIdp {
            which,
            entity_id: opts.entity_id.clone().unwrap_or_else(|| metadata.clone()),
            sso_url: sso,
            sso_post_url: sso_post,
            metadata_url: metadata,
            config_dir: PathBuf::from(dir),
            base,
            cert_pem,
            key_pem,
            sp_entity_id,
            acs_url,
            log_path,
            child,
            stdin: Some(stdin),
            stdout,
        }
    }

    /// The URL that starts IdP-initiated SSO for `sp_entity_id` (the user
    /// logs in first if need be; the response then has no InResponseTo).
    pub fn idp_initiated_url(&self, sp_entity_id: &str) -> String {
        let (path, param) = match self.which {
            Which::SimpleSamlPhp => ("/saml2/idp/SSOService.php", "spentityid"),
            Which::DjangoSaml2Idp => ("/idp/sso/init/", "sp"),
        };
        let mut url = reqwest::Url::parse(&format!("{}{path}", self.base)).expect("base URL");
        url.query_pairs_mut().append_pair(param, sp_entity_id);
        url.to_string()
    }

    /// Changes options of the running IdP: a JSON object with the launcher's
    /// option keys (tests/peers/saml/common.py), e.g. `{"sign_assertion":
    /// false}`. Panics if the launcher refuses.
    pub fn reconfigure(&mut self, update: serde_json::Value) {
        let stdin = self.stdin.as_mut().expect("IdP stdin");
        writeln!(stdin, "{update}").expect("write to the IdP launcher");
        stdin.flush().expect("flush the IdP launcher's stdin");
        let mut answer = String::new();
        let _ = self.stdout.read_line(&mut answer);
        assert_eq!(
            answer.trim(),
            "reconfigured",
            "the {} IdP did not take {update}; its log:\n{}",
            self.which.name(),
            self.log()
        );
        if let Some(id) = update.get("entity_id").and_then(|v| v.as_str()) {
            self.entity_id = id.to_string();
        }
    }

    /// Replaces the signing certificate and key (the metadata and every
    /// response from now on use the new one).
    pub fn set_signing_cert(&mut self, cert_pem: &str, key_pem: &str) {
        self.reconfigure(serde_json::json!({ "idp_cert": cert_pem, "idp_key": key_pem }));
        self.cert_pem = cert_pem.to_string();
        self.key_pem = key_pem.to_string();
    }

    /// Changes the IdP's entity id (metadata and Issuer).
    pub fn set_entity_id(&mut self, entity_id: &str) {
        self.reconfigure(serde_json::json!({ "entity_id": entity_id }));
    }

    /// The base64 body of the current signing certificate, as it appears in
    /// `<ds:X509Certificate>`.
    pub fn cert_base64(&self) -> String {
        pem_body(&self.cert_pem)
    }

    /// The launcher's and the IdP's stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for SamlIdp {
    fn drop(&mut self) {
        // EOF on stdin: the launcher stops the IdP and removes its files.
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The base64 body of a PEM block, on one line.
pub fn pem_body(pem: &str) -> String {
    pem.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("-----"))
        .collect()
}

fn rsa_cert(cn: &str, expired: bool) -> (String, String) {
    let key = KeyPair::generate_for(&PKCS_RSA_SHA256).expect("RSA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(DnType::CommonName, cn);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock");
    let now = rcgen::date_time_ymd(1970, 1, 1) + now;
    let day = Duration::from_secs(86_400);
    if expired {
        params.not_before = now - 30 * day;
        params.not_after = now - day;
    } else {
        params.not_before = now - day;
        params.not_after = now + 365 * day;
    }
    let cert = params.self_signed(&key).expect("self-signed cert");
    (cert.pem(), key.serialize_pem())
}

/// A self-signed RSA-2048 IdP signing certificate and its key (PEM); with
/// `expired` its notAfter was yesterday (valid for 29 days before that),
/// otherwise it runs from yesterday for a year.
pub fn signing_cert(expired: bool) -> (String, String) {
    let cn = if expired {
        "authpulse test IdP (expired)"
    } else {
        "authpulse test IdP"
    };
    rsa_cert(cn, expired)
}

/// A self-signed RSA-2048 SP certificate and key (PEM): what the probe signs
/// AuthnRequests with and the IdP encrypts assertions to.
pub fn sp_cert() -> (String, String) {
    rsa_cert("authpulse probe SP", false)
}
