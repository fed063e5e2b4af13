//! authpulse agent: runs the probes the coordinator assigns (see `scheduler`,
//! `probes`), measures them phase by phase (`http`), keeps secrets local
//! (`secrets`) and streams results to the coordinator (`uplink`).
pub mod aws;
pub mod cert_expiry;
pub mod config;
pub mod coordinator_tls;
pub mod http;
pub mod in_process;
pub mod jwt;
pub mod last_assignment;
pub mod login;
pub mod oauth;
pub mod private_fs;
pub mod probes;
pub mod redact;
pub mod saml;
pub mod scheduler;
pub mod secrets;
pub mod spool;
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
    authpulse_proto::failure_class_name(c)
}

/// Opens the spool, reporting anything recovery had to skip.
fn open_spool(cfg: &AgentConfig) -> anyhow::Result<spool::Spool> {
    spool::describe();
    // Present from the start, so alerts on their rate see a zero, not nothing.
    metrics::counter!(spool::DROPPED_TOTAL).increment(0);
    metrics::counter!(spool::TORN_BYTES_TOTAL).increment(0);
    metrics::counter!(telemetry::PRODUCED).increment(0);
    let mut sc = spool::SpoolConfig::new(cfg.data_dir.join("spool"));
    sc.max_bytes = cfg.spool_max_bytes;
    sc.segment_bytes = sc.segment_bytes.min(cfg.spool_max_bytes / 4);
    let (spool, report) = spool::Spool::open(sc)
        .map_err(|e| anyhow::anyhow!("cannot open the spool in {}: {e}", cfg.data_dir.display()))?;
    if report.torn_bytes_skipped > 0 || !report.corrupt_segments.is_empty() {
        tracing::warn!(
            skipped_bytes = report.torn_bytes_skipped,
            details = ?report.corrupt_segments,
            "spool recovery skipped damaged data (torn write or corruption)"
        );
    }
    tracing::info!(
        results = report.records,
        bytes = report.bytes,
        next_seq = spool.next_seq(),
        "spool opened"
    );
    Ok(spool)
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
        if cfg.insecure && cfg.in_process.is_none() {
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
            region: cfg.region.clone(),
            net: http::NetContext::new()?,
            secrets: secrets::SecretStore::new(cfg.secrets_dir.clone()),
            memory: probes::ProbeMemory::default(),
            permits: Semaphore::new(cfg.max_concurrency),
            results: results_tx,
            version: AtomicU64::new(0),
        });
        // Owner-only: results, and an assignment that may hold inline credentials.
        private_fs::create_dir(&cfg.data_dir).map_err(|e| {
            anyhow::anyhow!("cannot create data_dir {}: {e}", cfg.data_dir.display())
        })?;
        let mut scheduler = scheduler::Scheduler::new(shared);
        let last = last_assignment::LastAssignment::new(&cfg.data_dir);
        if let Some((version, probes)) = last.load() {
            // Keep probing what we were told until the coordinator answers.
            tracing::info!(
                version,
                probes = probes.len(),
                "resuming the last assignment from disk"
            );
            scheduler.apply(version, probes);
            ready.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let scheduler = Arc::new(Mutex::new(scheduler));
        let (shutdown, shutdown_rx) = watch::channel(false);
        let spool = open_spool(&cfg)?;
        let uplink = uplink::Uplink::new(cfg, scheduler, ready, last, spool);
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
