//! Agent configuration: a YAML or TOML file (`--config`) read with the
//! `config` crate, overridable by `AUTHPULSE_AGENT__<KEY>` environment
//! variables. Unknown keys are errors so that a typo can't silently fall back
//! to a default.
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// `[a-z0-9-]`; must be unique in the fleet.
    pub agent_id: String,
    pub region: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// gRPC URL of the coordinator, e.g. `https://coordinator.internal:7070`,
    /// or a list of them (several coordinators sharing one database): the
    /// agent stays with the one that answered last and tries the next in the
    /// list when it can't reach it. A single string may also separate URLs
    /// with commas (handy in `AUTHPULSE_AGENT__COORDINATOR`).
    pub coordinator: Coordinators,
    /// mTLS to the coordinator: `https://` URLs only.
    #[serde(default)]
    pub tls: Option<AgentTlsConfig>,
    /// Plain-text gRPC without a client certificate (`http://` URLs only),
    /// for trusted networks and tests; logged as a warning. Exactly one of
    /// `tls` and `insecure` must be set.
    #[serde(default)]
    pub insecure: bool,
    /// `/metrics`, `/healthz`, `/readyz`; absent = no HTTP listener.
    #[serde(default = "default_listen")]
    pub listen: Option<SocketAddr>,
    /// The spool and the last assignment live here; created if missing.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    #[serde(default)]
    pub secrets_dir: Option<PathBuf>,
    /// Probe runs in flight at once.
    #[serde(default = "default_concurrency")]
    pub max_concurrency: usize,
    /// Disk the result spool may use (`<data_dir>/spool`) while the
    /// coordinator is unreachable; past it the oldest results are dropped and
    /// counted in `authpulse_agent_spool_dropped_total`. Default 256 MiB
    /// (roughly 600k results).
    #[serde(default = "default_spool_max_bytes")]
    pub spool_max_bytes: u64,
    /// Set in code only (`authpulse standalone`): reach a coordinator in the
    /// same process without a socket; `coordinator`, `tls` and `insecure`
    /// are then not used.
    #[serde(skip)]
    pub in_process: Option<crate::in_process::InProcessConnector>,
}

/// PEM files for mTLS to the coordinator. Relative paths are relative to
/// the working directory of the process. They are read again at every
/// reconnect, so renewed certificates are picked up without a restart.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentTlsConfig {
    /// This agent's client certificate; its URI SAN must be
    /// `spiffe://authpulse/region/<region>/agent/<agent_id>` for this agent's
    /// `region` and `agent_id` (`authpulse certs agent` makes one).
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// The CA that signed the coordinator's server certificate.
    pub ca: PathBuf,
    /// The name the coordinator's certificate must carry; default: the host
    /// of each coordinator URL.
    #[serde(default)]
    pub server_name: Option<String>,
}

/// The coordinator URLs, and (shared between clones of the config) which of
/// them answered last. `Display` shows that one.
#[derive(Clone, Debug, Deserialize)]
#[serde(from = "OneOrMany")]
pub struct Coordinators {
    urls: Vec<String>,
    current: Arc<AtomicUsize>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl From<OneOrMany> for Coordinators {
    fn from(v: OneOrMany) -> Self {
        let urls: Vec<String> = match v {
            OneOrMany::One(s) => s.split(',').map(str::to_string).collect(),
            OneOrMany::Many(v) => v,
        };
        Coordinators::new(urls)
    }
}

impl Coordinators {
    pub fn new(urls: impl IntoIterator<Item = String>) -> Coordinators {
        Coordinators {
            urls: urls
                .into_iter()
                .map(|u| u.trim().to_string())
                .filter(|u| !u.is_empty())
                .collect(),
            current: Arc::new(AtomicUsize::new(0)),
        }
    }

    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// Index of the coordinator that answered last (0 at first).
    pub fn current(&self) -> usize {
        self.current.load(Ordering::Relaxed) % self.urls.len().max(1)
    }

    pub(crate) fn set_current(&self, index: usize) {
        self.current.store(index, Ordering::Relaxed);
    }
}

impl From<String> for Coordinators {
    fn from(url: String) -> Self {
        Coordinators::new([url])
    }
}

impl From<&str> for Coordinators {
    fn from(url: &str) -> Self {
        Coordinators::new([url.to_string()])
    }
}

impl PartialEq for Coordinators {
    fn eq(&self, other: &Self) -> bool {
        self.urls == other.urls
    }
}

impl std::fmt::Display for Coordinators {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.urls.get(self.current()) {
            Some(url) => f.write_str(url),
            None => f.write_str("(none)"),
        }
    }
}

fn default_listen() -> Option<SocketAddr> {
    Some(SocketAddr::from(([127, 0, 0, 1], 9464)))
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("./authpulse-agent-data")
}
fn default_concurrency() -> usize {
    64
}
fn default_spool_max_bytes() -> u64 {
    crate::spool::DEFAULT_MAX_BYTES
}

impl AgentConfig {
    /// Reads `path` plus `AUTHPULSE_AGENT__*` overrides; `insecure` is the
    /// `--insecure` flag (plaintext gRPC, forced on top of the file).
    pub fn load(path: &Path, insecure: bool) -> anyhow::Result<AgentConfig> {
        let cfg = config::Config::builder()
            .add_source(config::File::from(path))
            .add_source(config::Environment::with_prefix("AUTHPULSE_AGENT").separator("__"))
            .set_override_option("insecure", insecure.then_some(true))
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .build()
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let cfg: AgentConfig = cfg
            .try_deserialize()
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        cfg.check()?;
        Ok(cfg)
    }

    pub fn check(&self) -> anyhow::Result<()> {
        let ok = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        };
        anyhow::ensure!(
            ok(&self.agent_id),
            "agent_id `{}` must be [a-z0-9-]",
            self.agent_id
        );
        anyhow::ensure!(
            ok(&self.region),
            "region `{}` must be [a-z0-9-]",
            self.region
        );
        anyhow::ensure!(
            self.max_concurrency > 0,
            "max_concurrency must be at least 1"
        );
        anyhow::ensure!(
            self.spool_max_bytes >= 64 * 1024,
            "spool_max_bytes must be at least 64 KiB"
        );
        // URLs against tls/insecure, and the TLS files (errors name the file).
        crate::coordinator_tls::check(self)?;
        Ok(())
    }
}
