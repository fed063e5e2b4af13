//! authpulse agent: runs the probes the coordinator assigns (see `scheduler`,
//! `probes`), measures them phase by phase (`http`), keeps secrets local
//! (`secrets`) and streams results to the coordinator (`uplink`).
pub mod config;
pub mod http;
pub mod probes;
pub mod scheduler;
pub mod secrets;
pub mod telemetry;
pub mod uplink;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};

use authpulse_proto::v1::FailureClass;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::{Mutex, Semaphore, mpsc, watch};
use tokio::task::JoinHandle;

pub use config::AgentConfig;

/// Lower-case name of a failure class as used in metrics, JSON and docs.
pub fn class_name(c: FailureClass) -> &'static str {
    match c {
        FailureClass::Unspecified => "unspecified",
        FailureClass::Dns => "dns",
        FailureClass::Connect => "connect",
        FailureClass::Tls => "tls",
        FailureClass::Timeout => "timeout",
        FailureClass::HttpStatus => "http_status",
        FailureClass::Protocol => "protocol",
        FailureClass::AuthRejected => "auth_rejected",
        FailureClass::TokenInvalid => "token_invalid",
        FailureClass::Assertion => "assertion",
        FailureClass::PermissionMismatch => "permission_mismatch",
        FailureClass::Escalation => "escalation",
        FailureClass::Config => "config",
        FailureClass::Internal => "internal",
    }
}

/// A running agent.
pub struct Agent {
    pub http_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    uplink: JoinHandle<()>,
}

impl Agent {
    /// Starts probing and streaming. `metrics` is the process's Prometheus
    /// handle (install one with [`telemetry::install_recorder`]).
    pub async fn start(cfg: AgentConfig, metrics: PrometheusHandle) -> anyhow::Result<Agent> {
        cfg.check()?;
        if cfg.insecure {
            tracing::warn!(coordinator = %cfg.coordinator, "plain-text gRPC to the coordinator (insecure: true)");
        }
        telemetry::describe();
        let ready = Arc::new(AtomicBool::new(false));
        let http_addr = match cfg.listen {
            Some(listen) => Some(telemetry::serve(listen, metrics, ready.clone()).await?),
            None => None,
        };
        let (results_tx, results_rx) = mpsc::channel(1024);
        let shared = Arc::new(scheduler::Shared {
            agent_id: cfg.agent_id.clone(),
            net: http::NetContext::new()?,
            secrets: secrets::SecretStore::new(cfg.secrets_dir.clone()),
            permits: Semaphore::new(cfg.max_concurrency),
            results: results_tx,
            version: AtomicU64::new(0),
        });
        let scheduler = Arc::new(Mutex::new(scheduler::Scheduler::new(shared)));
        let (shutdown, shutdown_rx) = watch::channel(false);
        let uplink = uplink::Uplink::new(cfg, scheduler, ready);
        let uplink = tokio::spawn(uplink.run(results_rx, shutdown_rx));
        Ok(Agent {
            http_addr,
            shutdown,
            uplink,
        })
    }

    /// Stops probing and hands buffered results to the coordinator if connected.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.uplink.await;
    }
}
