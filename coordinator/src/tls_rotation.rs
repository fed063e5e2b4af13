//! The coordinator's agent-facing certificate follows its files: when
//! `tls.cert`, `tls.key` or `tls.client_ca` change on disk (cert-manager
//! renewing a Secret, an operator replacing the files), new handshakes get
//! the new certificate and trust anchors without a restart, and agent
//! streams already open are left alone. Files are polled (following
//! symlinks, as Kubernetes Secret volumes swap them) like the catalog. A
//! set that doesn't load — a key written before its certificate, a broken
//! PEM — is refused with the reason and the running certificate stays; the
//! next change is tried again.
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use crate::agent_tls::AgentTlsAcceptor;

/// How often the files are looked at.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

const RELOADS: &str = "authpulse_coordinator_tls_reloads_total";
const NOT_AFTER: &str = "authpulse_coordinator_tls_certificate_not_after_seconds";

pub fn describe_metrics() {
    metrics::describe_counter!(
        RELOADS,
        "Reloads of the agent-facing TLS certificate, key and client CA after their files changed, by result (applied, refused)"
    );
    metrics::describe_gauge!(
        NOT_AFTER,
        "notAfter of the certificate the coordinator serves to agents, seconds since the epoch"
    );
}

pub(crate) fn export_not_after(not_after: Option<i64>) {
    describe_metrics();
    if let Some(t) = not_after {
        metrics::gauge!(NOT_AFTER).set(t as f64);
    }
}

type Signature = Vec<Option<(SystemTime, u64)>>;

fn signature(files: &[PathBuf]) -> Signature {
    files
        .iter()
        .map(|f| {
            let m = std::fs::metadata(f).ok()?;
            Some((m.modified().ok()?, m.len()))
        })
        .collect()
}

/// Polls the acceptor's files until `stop`, reloading when they change.
pub async fn watch(acceptor: Arc<AgentTlsAcceptor>, stop: CancellationToken) {
    let f = acceptor.files();
    let files = vec![f.cert.clone(), f.key.clone(), f.client_ca.clone()];
    let mut last = signature(&files);
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = signature(&files);
        if now == last {
            continue;
        }
        // Remembered even when refused: a broken set is reported once, and
        // tried again when the files change again.
        last = now;
        match acceptor.reload() {
            Ok(not_after) => {
                metrics::counter!(RELOADS, "result" => "applied").increment(1);
                export_not_after(not_after);
                tracing::info!(
                    not_after = not_after.unwrap_or_default(),
                    "agent TLS certificate files changed: new connections use the new certificate and client CA"
                );
            }
            Err(e) => {
                metrics::counter!(RELOADS, "result" => "refused").increment(1);
                tracing::error!(
                    error = format!("{e:#}"),
                    "agent TLS files changed but don't load; still serving the previous certificate"
                );
            }
        }
    }
}
