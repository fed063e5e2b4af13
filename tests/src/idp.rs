//! Real Django identity providers for the login engine tests, from
//! tests/peers/django/serve.py: `dop` (django-oidc-provider behind
//! django-two-factor-auth) and `allauth_idp` (django-allauth's OpenID
//! provider with allauth.mfa). Starting one migrates a fresh SQLite database
//! (several seconds), so each test binary starts each IdP once and shares
//! it; the child exits when this process ends and its stdin closes. The
//! Python comes from `AUTHPULSE_TEST_IDP_PYTHON` (tests/run sets it to
//! target/idp-venv, where it installs tests/peers/django/requirements.txt).
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};

pub struct DjangoIdp {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// The OpenID issuer.
    pub issuer: String,
    pub app: &'static str,
}

/// Children and their stdin pipes, kept for the life of the test binary.
static KEEP: Mutex<Vec<(Child, ChildStdin)>> = Mutex::new(Vec::new());
static DOP: OnceLock<DjangoIdp> = OnceLock::new();
static ALLAUTH: OnceLock<DjangoIdp> = OnceLock::new();

pub fn python() -> String {
    std::env::var("AUTHPULSE_TEST_IDP_PYTHON").unwrap_or_else(|_| {
        crate::repo_root()
            .join("target/idp-venv/bin/python")
            .display()
            .to_string()
    })
}

impl DjangoIdp {
    /// django-oidc-provider 0.9 (issuer `<base>/openid`) with
    /// django-two-factor-auth 1.18 as its login.
    pub fn dop() -> &'static DjangoIdp {
        DOP.get_or_init(|| DjangoIdp::start("dop", "/openid"))
    }

    /// django-allauth 65 `allauth.idp.oidc` (issuer `<base>`) with
    /// allauth.mfa TOTP and "trust this browser".
    pub fn allauth() -> &'static DjangoIdp {
        ALLAUTH.get_or_init(|| DjangoIdp::start("allauth_idp", ""))
    }

    fn start(app: &'static str, issuer_path: &str) -> DjangoIdp {
        let py = python();
        assert!(
            std::path::Path::new(&py).exists(),
            "no Python for the Django IdPs at {py}: run tests/run (it creates target/idp-venv \
             from tests/peers/django/requirements.txt) or set AUTHPULSE_TEST_IDP_PYTHON"
        );
        let logs = crate::repo_root().join("target/test-peers");
        let _ = std::fs::create_dir_all(&logs);
        let log_path = logs.join(format!("{app}-{}.log", std::process::id()));
        let log = std::fs::File::create(&log_path).expect("idp log");
        let mut child = Command::new(&py)
            .arg(crate::repo_root().join("tests/peers/django/serve.py"))
            // serve.py makes its own data directory and removes it on exit.
            .arg(app)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn the Django IdP");
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the {app} IdP has no stdin/stdout pipes");
        };
        let mut line = String::new();
        let read = BufReader::new(stdout).read_line(&mut line);
        let base = match (read, line.trim().strip_prefix("listening on ")) {
            (Ok(_), Some(base)) => base.to_string(),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the {app} IdP did not start (first line {line:?}); its log: {}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
        };
        if let Ok(mut keep) = KEEP.lock() {
            keep.push((child, stdin));
        }
        DjangoIdp {
            issuer: format!("{base}{issuer_path}"),
            base,
            app,
        }
    }
}
