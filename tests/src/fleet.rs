//! Fixtures for fleet tests: a coordinator and agents as real processes with
//! config files in a temp dir, Prometheus text parsing, and the agents API.
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::TempDir;
use crate::process::Process;

/// Sum of every series of `name` (any labels) in Prometheus text; 0 if absent.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// How a test coordinator runs beyond the defaults (plaintext gRPC on a
/// fixed free port, HTTP on any port, data in `coordinator-data/`).
#[derive(Clone, Debug, Default)]
pub struct CoordinatorOptions {
    /// YAML appended to the config (API tokens, fleet settings …).
    pub extra: String,
    /// mTLS for agents (e.g. `Pki::coordinator_tls_yaml`) instead of `insecure: true`.
    pub tls_yaml: Option<String>,
    /// Environment of the process (e.g. `AUTHPULSE_LOG`).
    pub env: Vec<(String, String)>,
}

/// The one coordinator launcher of the end-to-end tests: the real binary
/// on a config it writes, restartable on the same database and ports.
pub struct CoordinatorFixture {
    pub config: PathBuf,
    pub catalog: PathBuf,
    pub grpc_port: u16,
    pub process: Option<Process>,
    pub api: String,
    env: Vec<(String, String)>,
    log_dir: PathBuf,
}

impl CoordinatorFixture {
    /// Writes configs (insecure, loopback, fixed gRPC port) and starts it.
    pub async fn start(dir: &TempDir, catalog_yaml: &str) -> CoordinatorFixture {
        CoordinatorFixture::start_with(dir, catalog_yaml, "").await
    }

    /// Like [`start`](Self::start), with `extra` YAML appended to the config.
    pub async fn start_with(dir: &TempDir, catalog_yaml: &str, extra: &str) -> CoordinatorFixture {
        let opts = CoordinatorOptions {
            extra: extra.to_string(),
            ..CoordinatorOptions::default()
        };
        CoordinatorFixture::start_opts(dir, catalog_yaml, opts).await
    }

    /// Like [`start`](Self::start), with every option.
    pub async fn start_opts(
        dir: &TempDir,
        catalog_yaml: &str,
        opts: CoordinatorOptions,
    ) -> CoordinatorFixture {
        let catalog = dir.path().join("catalog.yaml");
        std::fs::write(&catalog, catalog_yaml).expect("catalog");
        let grpc_port = free_port();
        let config = dir.path().join("coordinator.yaml");
        let transport = opts
            .tls_yaml
            .unwrap_or_else(|| "insecure: true\n".to_string());
        std::fs::write(
            &config,
            format!(
                "grpc_listen: 127.0.0.1:{grpc_port}\nhttp_listen: 127.0.0.1:0\ndata_dir: {}\ncatalog: [{}]\n{transport}{}",
                dir.path().join("coordinator-data").display(),
                catalog.display(),
                opts.extra
            ),
        )
        .expect("config");
        let mut c = CoordinatorFixture {
            config,
            catalog,
            grpc_port,
            process: None,
            api: String::new(),
            env: opts.env,
            log_dir: dir.path().to_path_buf(),
        };
        c.restart().await;
        c
    }

    /// Starts (again) on the same config, database and ports.
    pub async fn restart(&mut self) {
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let mut p = Process::start(
            "authpulse-coordinator",
            &["--config", self.config.to_str().expect("utf8")],
            &env,
            &self.log_dir,
        )
        .await;
        self.api = format!("http://{}", p.line_after("listening on http://").await);
        self.process = Some(p);
    }

    /// The running process (panics after [`kill`](Self::kill)).
    pub fn process(&mut self) -> &mut Process {
        self.process.as_mut().expect("the coordinator runs")
    }

    /// The gRPC address agents connect to.
    pub fn grpc_addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.grpc_port))
    }

    /// SIGKILL: a crash.
    pub async fn kill(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill().await;
        }
    }

    pub fn grpc_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc_port)
    }

    pub fn log(&self) -> String {
        self.process
            .as_ref()
            .map(|p| p.log_text())
            .unwrap_or_default()
    }

    pub async fn agents(&self, client: &reqwest::Client) -> Option<Vec<Value>> {
        let v: Value = client
            .get(format!("{}/api/v1/agents", self.api))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        v["agents"].as_array().cloned()
    }

    pub async fn agent(&self, client: &reqwest::Client, id: &str) -> Option<Value> {
        self.agents(client)
            .await?
            .into_iter()
            .find(|a| a["agent_id"] == id)
    }
}

pub struct AgentFixture {
    pub id: String,
    pub config: PathBuf,
    pub data_dir: PathBuf,
    pub process: Option<Process>,
    pub http: String,
    log_dir: PathBuf,
}

impl AgentFixture {
    pub async fn start(
        dir: &TempDir,
        id: &str,
        coordinator_url: &str,
        extra: &str,
    ) -> AgentFixture {
        let data_dir = dir.path().join(format!("agent-{id}"));
        let config = dir.path().join(format!("agent-{id}.yaml"));
        std::fs::write(
            &config,
            format!(
                "agent_id: {id}\nregion: local\ncoordinator: {coordinator_url}\ninsecure: true\n\
                 listen: 127.0.0.1:0\ndata_dir: {}\n{extra}",
                data_dir.display()
            ),
        )
        .expect("agent config");
        let mut a = AgentFixture {
            id: id.to_string(),
            config,
            data_dir,
            process: None,
            http: String::new(),
            log_dir: dir.path().to_path_buf(),
        };
        a.restart().await;
        a
    }

    pub async fn restart(&mut self) {
        let mut p = Process::start(
            "authpulse-agent",
            &["--config", self.config.to_str().expect("utf8")],
            &[],
            &self.log_dir,
        )
        .await;
        self.http = format!("http://{}", p.line_after("listening on http://").await);
        self.process = Some(p);
    }

    pub async fn kill(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill().await;
        }
    }

    pub fn log(&self) -> String {
        self.process
            .as_ref()
            .map(|p| p.log_text())
            .unwrap_or_default()
    }

    pub async fn metrics(&self, client: &reqwest::Client) -> Option<String> {
        client
            .get(format!("{}/metrics", self.http))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()
    }

    pub async fn metric(&self, client: &reqwest::Client, name: &str) -> Option<f64> {
        Some(metric(&self.metrics(client).await?, name))
    }

    pub fn spool_dir(&self) -> PathBuf {
        self.data_dir.join("spool")
    }
}

/// A catalog of `n` http probes against `url` at 1 s.
pub fn busy_catalog(url: &str, n: usize) -> String {
    let mut s = String::from("probes:\n");
    for i in 0..n {
        s.push_str(&format!(
            "  - id: p{i}\n    kind: http\n    url: {url}\n    interval: 1s\n    timeout: 500ms\n"
        ));
    }
    s
}

pub const EMPTY_CATALOG: &str = "probes: []\n";

/// Writes a file so that a watcher polling metadata sees the change even
/// within one mtime tick (the length changes too).
pub fn rewrite(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

pub const WAIT: Duration = Duration::from_secs(90);
