//! A private moto server (`AUTHPULSE_TEST_MOTO`, default
//! target/test-venv/bin/moto_server): IAM, STS and Cognito emulated on one
//! free loopback port. Tests create users, keys, roles and pools with a
//! short boto3 script ([`Moto::setup`], run by `AUTHPULSE_TEST_PYTHON`,
//! pointed at this server only), then may turn on moto's IAM enforcement
//! ([`Moto::enforce_auth`]) so signatures and policies are checked. Killed
//! on drop.
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::TempDir;

/// The account moto puts everything in.
pub const ACCOUNT: &str = "123456789012";

pub struct Moto {
    _child: Child,
    dir: TempDir,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
}

fn venv_bin(env: &str, name: &str) -> PathBuf {
    std::env::var_os(env)
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::repo_root().join("target/test-venv/bin").join(name))
}

/// Python run before every setup script: `client(name, region=…)` gives a
/// boto3 client for this server with throwaway setup credentials.
const PRELUDE: &str = r#"
import json, sys
import boto3
ENDPOINT = sys.argv[1]
def client(name, region="us-east-1", key="AKIAIOSFODNN7EXAMPLE", secret="setup-secret"):
    return boto3.client(name, endpoint_url=ENDPOINT, region_name=region,
                        aws_access_key_id=key, aws_secret_access_key=secret)
"#;

impl Moto {
    pub async fn start() -> Moto {
        let bin = venv_bin("AUTHPULSE_TEST_MOTO", "moto_server");
        assert!(
            bin.exists(),
            "moto is not installed at {}: run tests/run (it builds target/test-venv)",
            bin.display()
        );
        let dir = TempDir::new("authpulse-moto");
        let port = crate::fleet::free_port();
        let url = format!("http://127.0.0.1:{port}");
        let log_path = dir.path().join("moto.log");
        let log = std::fs::File::create(&log_path).expect("moto log");
        let mut child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("NO_PROXY", "127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client");
        let probe = format!("{url}/moto-api/data.json");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = client.get(&probe).send().await
                && r.status().is_success()
            {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "moto exited ({status}) before serving; log:\n{}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "moto did not serve {probe} within 60s; log:\n{}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Moto {
            _child: child,
            dir,
            url,
        }
    }

    /// Runs `script` (Python, after [`PRELUDE`]) against this server and
    /// parses the last line it prints as JSON.
    pub async fn setup(&self, script: &str) -> serde_json::Value {
        let python = venv_bin("AUTHPULSE_TEST_PYTHON", "python");
        let out = Command::new(&python)
            .arg("-c")
            .arg(format!("{PRELUDE}\n{script}"))
            .arg(&self.url)
            .env("NO_PROXY", "127.0.0.1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .output()
            .await
            .unwrap_or_else(|e| panic!("run {}: {e}", python.display()));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "moto setup script failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let last = stdout.lines().last().unwrap_or_default();
        serde_json::from_str(last)
            .unwrap_or_else(|e| panic!("setup script printed no JSON ({e}): {stdout}"))
    }

    /// From now on moto checks signatures against its IAM users' keys and
    /// evaluates their policies on every call (`POST /moto-api/reset-auth`).
    pub async fn enforce_auth(&self) {
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client");
        let r = client
            .post(format!("{}/moto-api/reset-auth", self.url))
            .header("content-type", "text/plain")
            .body("0")
            .send()
            .await
            .expect("reset-auth");
        assert!(r.status().is_success(), "reset-auth: {}", r.status());
    }

    /// moto's stderr so far, for assertion messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("moto.log")).unwrap_or_default()
    }
}
