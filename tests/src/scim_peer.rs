//! A private `scim2-server` (`AUTHPULSE_TEST_SCIM_SERVER`, default
//! target/test-venv/bin/scim2-server): SCIM 2.0 Users and Groups held in
//! memory, on a free loopback port, requiring a static bearer token. Helpers
//! seed and list users directly, so tests can plant "orphans" and check
//! what a probe left behind. Killed on drop.
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::TempDir;

pub struct ScimPeer {
    _child: Child,
    dir: TempDir,
    /// `http://127.0.0.1:<port>/v2`.
    pub base_url: String,
    pub token: String,
    client: reqwest::Client,
}

impl ScimPeer {
    pub async fn start(token: &str) -> ScimPeer {
        let bin = std::env::var_os("AUTHPULSE_TEST_SCIM_SERVER")
            .map(PathBuf::from)
            .unwrap_or_else(|| crate::repo_root().join("target/test-venv/bin/scim2-server"));
        assert!(
            bin.exists(),
            "scim2-server is not installed at {}: run tests/run (it builds target/test-venv)",
            bin.display()
        );
        let dir = TempDir::new("authpulse-scim");
        let port = crate::fleet::free_port();
        let log_path = dir.path().join("scim.log");
        let log = std::fs::File::create(&log_path).expect("scim log");
        let mut child = Command::new(&bin)
            .args(["--hostname", "127.0.0.1", "--port", &port.to_string()])
            .args(["--bearer-token", token])
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client");
        let base_url = format!("http://127.0.0.1:{port}/v2");
        let ready = format!("{base_url}/ServiceProviderConfig");
        let deadline = tokio::time::Instant::now() + crate::PEER_START;
        loop {
            if let Ok(r) = client.get(&ready).bearer_auth(token).send().await
                && r.status().is_success()
            {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "scim2-server exited ({status}) before serving; log:\n{}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "scim2-server did not serve {ready} within {:?}; log:\n{}",
                crate::PEER_START,
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        ScimPeer {
            _child: child,
            dir,
            base_url,
            token: token.to_string(),
            client,
        }
    }

    /// Creates a user directly; returns its id.
    pub async fn create_user(&self, user_name: &str) -> String {
        let r = self
            .client
            .post(format!("{}/Users", self.base_url))
            .bearer_auth(&self.token)
            .header("content-type", "application/scim+json")
            .body(
                serde_json::json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                    "userName": user_name,
                })
                .to_string(),
            )
            .send()
            .await
            .expect("create user");
        assert_eq!(r.status().as_u16(), 201, "create {user_name}");
        let v: serde_json::Value = r.json().await.expect("json");
        v["id"].as_str().expect("id").to_string()
    }

    /// The userName of every user the server holds.
    pub async fn user_names(&self) -> Vec<String> {
        let v: serde_json::Value = self
            .client
            .get(format!("{}/Users?count=1000", self.base_url))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("list users")
            .json()
            .await
            .expect("json");
        let mut names: Vec<String> = v["Resources"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|u| u["userName"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// The server's log so far, for assertion messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("scim.log")).unwrap_or_default()
    }
}
