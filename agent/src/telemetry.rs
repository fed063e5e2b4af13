//! The agent's own observability: Prometheus metrics (names below) and the
//! `/metrics`, `/healthz`, `/readyz` listener, which also serves `GET`/`PUT
//! /log-level` (the log filter at run time). That listener has no
//! authentication, so `/log-level` answers loopback peers only: whoever can
//! run `curl` on the agent's host may change it, nobody else.
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde_json::json;

pub const RUNS: &str = "authpulse_agent_probe_runs_total";
pub const FAILURES: &str = "authpulse_agent_probe_failures_total";
pub const DURATION: &str = "authpulse_agent_probe_duration_seconds";
pub const PHASE: &str = "authpulse_agent_probe_phase_seconds";
pub const SKIPPED: &str = "authpulse_agent_probe_runs_skipped_total";
pub const PROBES_ASSIGNED: &str = "authpulse_agent_probes_assigned";
pub const ASSIGNMENT_VERSION: &str = "authpulse_agent_assignment_version";
pub const CONNECTED: &str = "authpulse_agent_coordinator_connected";
pub const UNACKED: &str = "authpulse_agent_results_unacked";
pub const LAST_SEQ: &str = "authpulse_agent_spool_last_seq";
pub const PRODUCED: &str = "authpulse_agent_results_produced_total";
pub const SENT: &str = "authpulse_agent_results_sent_total";
pub const ACKED: &str = "authpulse_agent_results_acked_total";
pub const LOST: &str = "authpulse_agent_results_lost_total";
pub const CONNECT_ERRORS: &str = "authpulse_agent_coordinator_connect_errors_total";
/// Results the coordinator acknowledged without storing them, by `code`.
pub const REFUSED: &str = "authpulse_agent_results_refused_total";
/// 1 while the coordinator refuses this agent permanently (a `Reject` of
/// kind permanent, or numbering that can't continue); 0 once a stream is
/// accepted.
pub const COORDINATOR_REJECTED: &str = "authpulse_agent_coordinator_rejected";
/// Synthetic users left by earlier `scim` runs and deleted, by probe.
pub const SCIM_ORPHANS_DELETED: &str = "authpulse_agent_scim_orphans_deleted_total";
/// Days until the earliest SAML IdP certificate of each use expires (from
/// `saml_metadata`), by probe and use (`signing`, `encryption`).
pub const SAML_CERT_DAYS_LEFT: &str = crate::probes::saml_metadata::DAYS_LEFT;
/// Unix time of the earliest `notAfter` among the certificates the servers
/// presented during the probe's last run that completed a TLS handshake
/// (`tls`, and every HTTPS kind), by probe: what blackbox_exporter calls
/// `probe_ssl_earliest_cert_expiry`.
pub const CERT_EXPIRY: &str = "authpulse_agent_certificate_expiry_seconds";

/// Latency buckets for probe runs: identity calls span ~1 ms to the timeout.
pub const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Installs the process-wide recorder. Call once per process; the standalone
/// mode passes the coordinator's handle instead.
pub fn install_recorder() -> anyhow::Result<PrometheusHandle> {
    let handle = builder()?.install_recorder()?;
    // Histograms buffer samples until upkeep drains them; without scrapes
    // they would grow without bound.
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    describe();
    Ok(handle)
}

/// The exporter as the agent configures it (buckets per metric); tests
/// build their local recorders from it too.
pub fn builder() -> anyhow::Result<PrometheusBuilder> {
    Ok(PrometheusBuilder::new()
        // An fsync on a good disk takes tens of microseconds.
        .set_buckets_for_metric(
            Matcher::Full(crate::spool::FSYNC_SECONDS.into()),
            &[
                0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0,
            ],
        )?
        .set_buckets_for_metric(
            Matcher::Full(crate::spool::RESULTS_PER_FSYNC.into()),
            crate::spool::RESULTS_PER_FSYNC_BUCKETS,
        )?
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)?)
}

pub fn describe() {
    metrics::describe_counter!(RUNS, "Probe runs by probe, kind and outcome.");
    metrics::describe_counter!(
        FAILURES,
        "Failed probe runs by probe, kind and failure class."
    );
    metrics::describe_histogram!(DURATION, metrics::Unit::Seconds, "Probe run duration.");
    metrics::describe_histogram!(
        PHASE,
        metrics::Unit::Seconds,
        "Probe phase duration (dns, connect, tls, ttfb) by kind and phase."
    );
    metrics::describe_counter!(
        SKIPPED,
        "Scheduled runs skipped because the previous one overran."
    );
    metrics::describe_gauge!(PROBES_ASSIGNED, "Probes in the current assignment.");
    metrics::describe_gauge!(ASSIGNMENT_VERSION, "Version of the current assignment.");
    metrics::describe_gauge!(CONNECTED, "1 while the stream to the coordinator is up.");
    metrics::describe_gauge!(
        UNACKED,
        "Results held until the coordinator acknowledges them."
    );
    metrics::describe_gauge!(
        LAST_SEQ,
        "Highest sequence number handed out (persisted in the spool)."
    );
    metrics::describe_counter!(
        PRODUCED,
        "Results written to the spool (every finished probe run)."
    );
    metrics::describe_counter!(SENT, "Results sent to the coordinator (resends included).");
    metrics::describe_counter!(ACKED, "Results acknowledged by the coordinator.");
    metrics::describe_counter!(
        LOST,
        "Results lost because the spool could not be written (disk full, I/O error)."
    );
    metrics::describe_counter!(CONNECT_ERRORS, "Failed attempts to reach the coordinator.");
    metrics::describe_counter!(
        REFUSED,
        "Results the coordinator acknowledged but refused to store (not assigned, out of range, ...), by code; not resent."
    );
    metrics::describe_gauge!(
        COORDINATOR_REJECTED,
        "1 while the coordinator refuses this agent until an operator acts (results stay spooled, retried every 5 minutes)."
    );
    metrics::describe_counter!(
        SCIM_ORPHANS_DELETED,
        "Orphaned synthetic users (left by earlier scim runs) deleted, by probe."
    );
    metrics::describe_gauge!(
        SAML_CERT_DAYS_LEFT,
        "Days until the earliest SAML IdP certificate of each use expires (negative: expired), by probe and use, from saml_metadata."
    );
    metrics::describe_gauge!(
        CERT_EXPIRY,
        metrics::Unit::Seconds,
        "Unix time of the earliest notAfter among the certificates the servers presented in the probe's last run that completed a TLS handshake, by probe."
    );
    // The same series the coordinator exports; set here too so an agent
    // scraped on its own says what it is.
    metrics::describe_gauge!(
        authpulse_proto::build_info::METRIC,
        authpulse_proto::build_info::HELP
    );
    metrics::gauge!(
        authpulse_proto::build_info::METRIC,
        "version" => authpulse_proto::build_info::VERSION,
        "revision" => authpulse_proto::build_info::revision()
    )
    .set(1.0);
}

#[derive(Clone)]
struct Health {
    metrics: PrometheusHandle,
    ready: Arc<AtomicBool>,
}

/// Serves until the listener fails; `ready` flips once an assignment is applied.
pub async fn serve(
    listen: SocketAddr,
    metrics: PrometheusHandle,
    ready: Arc<AtomicBool>,
) -> anyhow::Result<SocketAddr> {
    let app = Router::new()
        .route(
            "/metrics",
            get(|State(h): State<Health>| async move { render_streamed(h.metrics) }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/log-level", get(get_log_level).put(put_log_level))
        .route(
            "/readyz",
            get(|State(h): State<Health>| async move {
                if h.ready.load(Ordering::Relaxed) {
                    (StatusCode::OK, "ready")
                } else {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "no assignment from the coordinator yet",
                    )
                }
            }),
        )
        .with_state(Health { metrics, ready });
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "agent HTTP listener stopped");
        }
    });
    Ok(addr)
}

/// Bytes per chunk of a streamed `/metrics` page, and chunks in flight.
const RENDER_CHUNK: usize = 64 * 1024;
const RENDER_CHUNKS_IN_FLIGHT: usize = 4;

/// `/metrics` as a stream of 64 KiB chunks: `PrometheusHandle::render`
/// builds the whole page in one `String` (megabytes at 10,000 probes, grown
/// by doubling, so up to twice that while it grows), and that peak stays in
/// the agent's RSS after the scrape. Streamed, the page costs at most
/// [`RENDER_CHUNKS_IN_FLIGHT`] chunks at once. The render is synchronous and
/// waits when the client reads slowly, so it runs on a blocking thread; a
/// client that goes away ends it.
fn render_streamed(handle: PrometheusHandle) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(RENDER_CHUNKS_IN_FLIGHT);
    tokio::task::spawn_blocking(move || {
        let mut out = ChunkWriter {
            buf: Vec::with_capacity(RENDER_CHUNK),
            tx,
        };
        let rendered = handle.render_to_write(&mut out).and_then(|()| out.send());
        if let Err(e) = rendered {
            // Nobody left to tell when the client hung up; otherwise the
            // client sees a truncated body (the status was already sent).
            tracing::debug!(error = %e, "/metrics render stopped");
        }
    });
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        axum::body::Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)),
    )
        .into_response()
}

/// An `io::Write` that hands full chunks to the response body.
struct ChunkWriter {
    buf: Vec<u8>,
    tx: tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
}

impl ChunkWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(RENDER_CHUNK));
        self.tx
            .blocking_send(Ok(Bytes::from(chunk)))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client gone"))
    }
}

impl std::io::Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= RENDER_CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

fn json_error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "error": message }))).into_response()
}

/// `/log-level` is for the agent's own host: the listener has no
/// authentication, and a filter change can flood the log.
fn refuse_remote(peer: SocketAddr) -> Option<Response> {
    if peer.ip().to_canonical().is_loopback() {
        return None;
    }
    Some(json_error(
        StatusCode::FORBIDDEN,
        "/log-level is served to loopback peers only (the agent listener has no authentication)",
    ))
}

/// A shared log-level error as this listener's JSON error.
fn log_level_error(e: &authpulse_process::log_level::LogLevelError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    json_error(status, &e.to_string())
}

/// `GET /log-level`: `{"filter": "...", "capped": ["aws_sigv4=info", ...]}`.
async fn get_log_level(ConnectInfo(peer): ConnectInfo<SocketAddr>) -> Response {
    if let Some(refused) = refuse_remote(peer) {
        return refused;
    }
    match authpulse_process::log_level::current() {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => log_level_error(&e),
    }
}

/// `PUT /log-level` with `{"filter": "debug,hyper=info"}`: 200 with the new
/// and previous filter, 400 with the parse error (the running filter stays).
async fn put_log_level(ConnectInfo(peer): ConnectInfo<SocketAddr>, body: Bytes) -> Response {
    if let Some(refused) = refuse_remote(peer) {
        return refused;
    }
    match authpulse_process::log_level::apply(&body) {
        Ok(change) => {
            tracing::warn!(filter = %change.filter, previous = %change.previous, %peer, "log filter changed at run time");
            axum::Json(change.to_json()).into_response()
        }
        Err(e) => log_level_error(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A page of many 64 KiB chunks arrives whole: the streamed body has
    /// the lines `render` gives (in its own order: the exporter iterates
    /// hash maps).
    #[tokio::test]
    async fn metrics_page_streams_whole() {
        let recorder = builder().expect("builder").build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            for i in 0..5_000 {
                metrics::counter!(RUNS, "probe" => format!("probe-{i:05}"), "kind" => "http", "outcome" => "success")
                    .increment(i);
            }
        });
        let sorted = |page: &str| {
            let mut lines: Vec<String> = page.lines().map(str::to_string).collect();
            lines.sort();
            lines
        };
        let expected = sorted(&handle.render());
        assert!(expected.iter().map(String::len).sum::<usize>() > 4 * RENDER_CHUNK);
        let addr = serve(
            "127.0.0.1:0".parse().expect("addr"),
            handle,
            Arc::new(AtomicBool::new(true)),
        )
        .await
        .expect("serve");
        let r = reqwest::get(format!("http://{addr}/metrics"))
            .await
            .expect("GET /metrics");
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()["content-type"],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        let body = r.text().await.expect("body");
        assert_eq!(sorted(&body), expected);
    }

    #[tokio::test]
    async fn log_level_refuses_non_loopback_peers() {
        let remote: SocketAddr = "192.0.2.7:40000".parse().expect("addr");
        let mapped: SocketAddr = "[::ffff:192.0.2.7]:40000".parse().expect("addr");
        for peer in [remote, mapped] {
            let r = get_log_level(ConnectInfo(peer)).await;
            assert_eq!(r.status(), StatusCode::FORBIDDEN);
            let r = put_log_level(
                ConnectInfo(peer),
                Bytes::from_static(br#"{"filter":"trace"}"#),
            )
            .await;
            assert_eq!(r.status(), StatusCode::FORBIDDEN);
        }
        for local in ["127.0.0.1:1", "[::1]:1", "[::ffff:127.0.0.1]:1"] {
            let peer: SocketAddr = local.parse().expect("addr");
            assert!(refuse_remote(peer).is_none(), "{local}");
        }
    }
}
