//! Agent configuration: a YAML or TOML file (`--config`) read with the
//! `config` crate, overridable by `AUTHPULSE_AGENT__<KEY>` environment
//! variables. Unknown keys are errors so that a typo can't silently fall back
//! to a default.
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// `[a-z0-9-]`; must be unique in the fleet.
    pub agent_id: String,
    pub region: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// gRPC address of the coordinator, e.g. `http://127.0.0.1:7070`.
    pub coordinator: String,
    /// Plain-text gRPC. Required until mTLS lands; logged as a warning.
    #[serde(default)]
    pub insecure: bool,
    /// `/metrics`, `/healthz`, `/readyz`; absent = no HTTP listener.
    #[serde(default = "default_listen")]
    pub listen: Option<SocketAddr>,
    #[serde(default)]
    pub secrets_dir: Option<PathBuf>,
    /// Probe runs in flight at once.
    #[serde(default = "default_concurrency")]
    pub max_concurrency: usize,
    /// Results kept in memory while the coordinator is unreachable; the
    /// oldest are dropped (and counted) past this.
    #[serde(default = "default_buffer")]
    pub max_buffered_results: usize,
}

fn default_listen() -> Option<SocketAddr> {
    Some(SocketAddr::from(([127, 0, 0, 1], 9464)))
}
fn default_concurrency() -> usize {
    64
}
fn default_buffer() -> usize {
    100_000
}

impl AgentConfig {
    pub fn load(path: &Path) -> anyhow::Result<AgentConfig> {
        let cfg = config::Config::builder()
            .add_source(config::File::from(path))
            .add_source(config::Environment::with_prefix("AUTHPULSE_AGENT").separator("__"))
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
            self.max_buffered_results > 0,
            "max_buffered_results must be at least 1"
        );
        anyhow::ensure!(
            self.insecure,
            "mTLS to the coordinator is not implemented yet: set `insecure: true` to use plain-text gRPC"
        );
        Ok(())
    }
}
