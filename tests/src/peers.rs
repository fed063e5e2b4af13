//! Real peers as child processes. Each test starts its own instance on a free
//! loopback port (so tests run in parallel and may stop and restart theirs);
//! the child is killed when the handle drops.
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub struct OidcPeer {
    child: Option<Child>,
    /// Holds the peer's stderr log, quoted when it fails to start.
    _log_dir: Option<crate::TempDir>,
    pub port: u16,
    /// The issuer, `http://127.0.0.1:<port>`.
    pub issuer: String,
}

fn peer_dir() -> PathBuf {
    crate::repo_root().join("tests/peers/oidc")
}

impl OidcPeer {
    /// The peer `tests/run` started for the whole suite (`AUTHPULSE_TEST_OIDC_ISSUER`),
    /// for tests that only read from it; falls back to a private one when the
    /// suite runs without tests/run. Must not be stopped.
    pub async fn shared() -> OidcPeer {
        match std::env::var("AUTHPULSE_TEST_OIDC_ISSUER") {
            Ok(issuer) => {
                let port = issuer
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.parse().ok())
                    .expect("port in issuer");
                OidcPeer {
                    child: None,
                    _log_dir: None,
                    port,
                    issuer,
                }
            }
            Err(_) => OidcPeer::start().await,
        }
    }

    /// Starts a private oidc-provider on a free port (tests that stop it use this).
    pub async fn start() -> OidcPeer {
        OidcPeer::start_on(0).await
    }

    /// Starts oidc-provider on `port` (0 = any), waiting for its "listening on" line.
    pub async fn start_on(port: u16) -> OidcPeer {
        OidcPeer::start_with_env(port, &[]).await
    }

    /// Like [`OidcPeer::start_on`] with extra environment variables for the
    /// peer (e.g. `OIDC_PEER_PKJWT_PUBLIC_KEYS`, see server.mjs). `restart`
    /// does not keep them.
    pub async fn start_with_env(port: u16, env: &[(&str, &str)]) -> OidcPeer {
        let dir = peer_dir();
        assert!(
            dir.join("node_modules/oidc-provider").exists(),
            "oidc-provider is not installed: run tests/run (or `npm ci` in {})",
            dir.display()
        );
        let node = std::env::var("AUTHPULSE_TEST_NODE").unwrap_or_else(|_| "node".into());
        let log_dir = crate::TempDir::new("authpulse-oidc-peer");
        let log_path = log_dir.path().join("stderr.log");
        let log = std::fs::File::create(&log_path).expect("peer log");
        let mut child = Command::new(node)
            .arg(dir.join("server.mjs"))
            .arg("--port")
            .arg(port.to_string())
            .current_dir(&dir)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .expect("spawn node");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let log_text = || std::fs::read_to_string(&log_path).unwrap_or_default();
        let line = match tokio::time::timeout(crate::PEER_START, lines.next_line()).await {
            Ok(Ok(Some(line))) => line,
            Ok(Ok(None)) => panic!(
                "oidc-provider exited before listening; stderr:\n{}",
                log_text()
            ),
            Ok(Err(e)) => panic!(
                "reading oidc-provider's stdout: {e}; stderr:\n{}",
                log_text()
            ),
            Err(_) => panic!(
                "oidc-provider did not start within {:?}; stderr:\n{}",
                crate::PEER_START,
                log_text()
            ),
        };
        let issuer = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line from peer: {line}"))
            .trim()
            .to_string();
        let port = issuer
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port in issuer");
        // Drain stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        OidcPeer {
            child: Some(child),
            _log_dir: Some(log_dir),
            port,
            issuer,
        }
    }

    /// Stops the peer and waits until its port refuses connections.
    pub async fn stop(&mut self) {
        assert!(
            self.child.is_some(),
            "stopping a shared or already stopped peer: use OidcPeer::start() in tests that stop it"
        );
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
            let _ = child.wait().await;
        }
        let addr = format!("127.0.0.1:{}", self.port);
        crate::wait_for(Duration::from_secs(10), "peer port to close", || {
            let addr = addr.clone();
            async move {
                tokio::net::TcpStream::connect(addr)
                    .await
                    .is_err()
                    .then_some(())
            }
        })
        .await;
    }

    /// Starts it again on the same port (stopping it first if running).
    pub async fn restart(&mut self) {
        if self.child.is_some() {
            self.stop().await;
        }
        *self = OidcPeer::start_on(self.port).await;
    }
}

/// A real Prometheus Alertmanager (`AUTHPULSE_TEST_ALERTMANAGER`, which
/// tests/run sets after installing the Debian package) on a free loopback
/// port, without clustering, with its storage in `dir`.
pub struct Alertmanager {
    _child: Child,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
}

impl Alertmanager {
    pub async fn start(dir: &std::path::Path) -> Alertmanager {
        Alertmanager::start_with_config(
            dir,
            "route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n",
        )
        .await
    }

    /// With its own `alertmanager.yml` (a routing tree, receivers).
    pub async fn start_with_config(dir: &std::path::Path, config_yaml: &str) -> Alertmanager {
        let bin = std::env::var("AUTHPULSE_TEST_ALERTMANAGER")
            .unwrap_or_else(|_| "/usr/bin/prometheus-alertmanager".into());
        assert!(
            std::path::Path::new(&bin).exists(),
            "Alertmanager is not installed at {bin}: run tests/run (it installs prometheus-alertmanager)"
        );
        let config = dir.join("alertmanager.yml");
        std::fs::write(&config, config_yaml).expect("alertmanager config");
        let port = crate::fleet::free_port();
        let log = std::fs::File::create(dir.join("alertmanager.log")).expect("log");
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", dir.join("am-data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .expect("spawn alertmanager");
        let url = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let ready = format!("{url}/-/ready");
        crate::wait_for(crate::PEER_START, "alertmanager to be ready", || {
            let (client, ready) = (client.clone(), ready.clone());
            async move {
                let r = client.get(ready).send().await.ok()?;
                r.status().is_success().then_some(())
            }
        })
        .await;
        Alertmanager { _child: child, url }
    }

    /// `GET /api/v2/alerts` (active alerts), `None` when unreachable.
    pub async fn alerts(&self, client: &reqwest::Client) -> Option<Vec<serde_json::Value>> {
        let v: serde_json::Value = client
            .get(format!("{}/api/v2/alerts", self.url))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        v.as_array().cloned()
    }
}

/// A real Prometheus server (`AUTHPULSE_TEST_PROMETHEUS`, which tests/run sets
/// after installing the Debian package) on a free loopback port, scraping
/// `targets` (`host:port`, path `/metrics`) every second, with its TSDB in `dir`.
pub struct Prometheus {
    _child: Child,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
}

impl Prometheus {
    pub async fn start(dir: &std::path::Path, targets: &[&str]) -> Prometheus {
        let bin = std::env::var("AUTHPULSE_TEST_PROMETHEUS")
            .unwrap_or_else(|_| "/usr/bin/prometheus".into());
        assert!(
            std::path::Path::new(&bin).exists(),
            "Prometheus is not installed at {bin}: run tests/run (it installs prometheus)"
        );
        let config = dir.join("prometheus.yml");
        let list = targets
            .iter()
            .map(|t| format!("'{t}'"))
            .collect::<Vec<_>>()
            .join(", ");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: authpulse\n    static_configs:\n      - targets: [{list}]\n"
            ),
        )
        .expect("prometheus config");
        Prometheus::run(&bin, &config, dir, "prometheus").await
    }

    /// Starts `bin` on `config` (storage and log under `dir`, named after
    /// `name`) on a free loopback port and waits until it is ready.
    pub async fn run(
        bin: impl AsRef<std::ffi::OsStr>,
        config: &std::path::Path,
        dir: &std::path::Path,
        name: &str,
    ) -> Prometheus {
        let port = crate::fleet::free_port();
        let log = std::fs::File::create(dir.join(format!("{name}.log"))).expect("log");
        let child = Command::new(bin.as_ref())
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join(format!("{name}-data")).display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .expect("spawn prometheus");
        let url = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let ready = format!("{url}/-/ready");
        crate::wait_for(crate::PEER_START, "prometheus to be ready", || {
            let (client, ready) = (client.clone(), ready.clone());
            async move {
                let r = client.get(ready).send().await.ok()?;
                r.status().is_success().then_some(())
            }
        })
        .await;
        Prometheus { _child: child, url }
    }

    /// An instant query (`/api/v1/query`): the value of a single-sample
    /// vector or scalar result, `None` when unreachable or empty.
    pub async fn query_value(&self, client: &reqwest::Client, promql: &str) -> Option<f64> {
        let url = reqwest::Url::parse_with_params(
            &format!("{}/api/v1/query", self.url),
            &[("query", promql)],
        )
        .ok()?;
        let v: serde_json::Value = client.get(url).send().await.ok()?.json().await.ok()?;
        if v["status"] != "success" {
            return None;
        }
        let data = &v["data"];
        let value = match data["resultType"].as_str()? {
            "scalar" => &data["result"][1],
            "vector" => &data["result"].as_array()?.first()?["value"][1],
            _ => return None,
        };
        value.as_str()?.parse().ok()
    }
}
