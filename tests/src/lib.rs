//! Test harness shared by every crate's integration tests: starting and
//! stopping real peers (the oidc-provider OpenID provider), the fault server
//! for what real peers can't do on demand (slow answers, resets, 5xx), a TLS
//! fixture, paths to the built binaries, and condition waits instead of sleeps.
pub mod capture;
pub mod decision_server;
pub mod deploy_check;
pub mod dns_server;
pub mod fake_agent;
pub mod fault;
pub mod feed_check;
pub mod fleet;
pub mod idp;
pub mod line_server;
pub mod moto;
pub mod mtls;
pub mod peers;
pub mod postgres;
pub mod proc_stats;
pub mod process;
pub mod proxy;
pub mod results;
pub mod saml_idp;
pub mod scim_peer;
pub mod slapd;
pub mod tls;

use std::path::PathBuf;
use std::time::Duration;

/// The workspace root (tests/ is one level below it).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Path to a binary of this workspace built by `cargo build --bins` (tests/run
/// does that before running tests).
pub fn bin(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    let path = target.join("debug").join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first (tests/run does)",
        path.display()
    );
    path
}

/// How long a real peer (node, slapd, PostgreSQL, Prometheus, ...) may take to
/// start serving. Generous because CI machines are slower than a laptop and a
/// cold start loads a whole runtime from disk (oidc-provider once took over
/// 30 s there while the suite's other tests were busy); a peer that never
/// starts still fails with its own log.
pub const PEER_START: Duration = Duration::from_secs(120);

/// Polls `check` until it returns `Some`, or panics after `timeout` naming `what`.
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!("{prefix}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Installs the one rustls crypto provider (aws-lc-rs) for this test process.
pub fn crypto() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// GET `url` and return the body text; panics with the URL on any failure.
pub async fn get_text(
    client: &reqwest::Client,
    url: impl reqwest::IntoUrl + std::fmt::Display,
) -> String {
    let shown = url.to_string();
    client
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {shown}: {e}"))
        .text()
        .await
        .unwrap_or_else(|e| panic!("GET {shown}: body: {e}"))
}

/// GET `url` and return the status code; panics with the URL if unreachable.
pub async fn get_status(
    client: &reqwest::Client,
    url: impl reqwest::IntoUrl + std::fmt::Display,
) -> u16 {
    let shown = url.to_string();
    client
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {shown}: {e}"))
        .status()
        .as_u16()
}
