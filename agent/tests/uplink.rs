//! The agent's uplink against a scripted coordinator (a tonic `AgentService`
//! in this process, on loopback): results the coordinator refuses are
//! counted and settled, not resent; a permanent `Reject` is not retried in a
//! loop while a transient one is; numbering that would pass i64::MAX is
//! refused with the results kept; batches never claim a `low_watermark`
//! above what they carry. The agent is the real one (`Agent::start`) with a
//! spool prepared on disk, so no probe has to run.
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use authpulse_agent::spool::{SEQ_MAX, Spool, SpoolConfig};
use authpulse_agent::{Agent, AgentConfig};
use authpulse_proto::v1::agent_message::Msg as AgentMsg;
use authpulse_proto::v1::agent_service_server::{AgentService, AgentServiceServer};
use authpulse_proto::v1::coordinator_message::Msg as CoordMsg;
use authpulse_proto::v1::{
    Ack, AgentMessage, CoordinatorMessage, Outcome, ProbeResult, RefusedResult, Reject, RejectKind,
    ResultBatch,
};
use authpulse_tests::wait_for;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};

/// Metrics are process-wide: the tests take turns.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn metrics() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .install_recorder()
                .expect("recorder")
        })
        .clone()
}

/// The value of a series in the Prometheus text, e.g. `name{code="x"}`.
fn value(series: &str) -> Option<f64> {
    metrics()
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[derive(Clone, Copy)]
enum Script {
    /// Ack every batch, refusing the even seqs (code `code`).
    RefuseEven { code: &'static str },
    /// Answer the hello with a `Reject` of this kind.
    Reject(RejectKind),
    /// Claim to hold results of this agent up to this seq.
    Holds(u64),
    /// Tell the agent `max_unacked_results` = this; ack every batch.
    Limit(u64),
}

#[derive(Clone)]
struct Fake {
    script: Script,
    connects: Arc<AtomicUsize>,
    batches: Arc<Mutex<Vec<ResultBatch>>>,
    /// Per batch received: its last seq minus what had been acked before.
    in_flight: Arc<Mutex<Vec<u64>>>,
}

fn msg(m: CoordMsg) -> Result<CoordinatorMessage, Status> {
    Ok(CoordinatorMessage { msg: Some(m) })
}

#[tonic::async_trait]
impl AgentService for Fake {
    type ConnectStream = ReceiverStream<Result<CoordinatorMessage, Status>>;

    async fn connect(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        self.connects.fetch_add(1, Ordering::SeqCst);
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let fake = self.clone();
        tokio::spawn(async move {
            let mut acked = 0u64;
            while let Ok(Some(m)) = inbound.message().await {
                let reply = match (m.msg, fake.script) {
                    (Some(AgentMsg::Hello(_)), Script::Reject(kind)) => {
                        let _ = tx
                            .send(msg(CoordMsg::Reject(Reject {
                                reason: "agent id refused by the test".into(),
                                kind: kind as i32,
                            })))
                            .await;
                        return;
                    }
                    (Some(AgentMsg::Hello(_)), Script::Holds(h)) => Ack {
                        acked_seq: 0,
                        highest_stored_seq: h,
                        ..Default::default()
                    },
                    (Some(AgentMsg::Hello(_)), Script::Limit(n)) => Ack {
                        max_unacked_results: n,
                        ..Default::default()
                    },
                    (Some(AgentMsg::Hello(_)), _) => Ack::default(),
                    (Some(AgentMsg::Results(batch)), Script::Limit(n)) => {
                        let last = batch.results.iter().map(|r| r.seq).max().unwrap_or(0);
                        if let Ok(mut f) = fake.in_flight.lock() {
                            f.push(last.saturating_sub(acked));
                        }
                        if let Ok(mut b) = fake.batches.lock() {
                            b.push(batch);
                        }
                        acked = acked.max(last);
                        Ack {
                            acked_seq: last,
                            highest_stored_seq: last,
                            max_unacked_results: n,
                            ..Default::default()
                        }
                    }
                    (Some(AgentMsg::Results(batch)), Script::RefuseEven { code }) => {
                        let last = batch.results.iter().map(|r| r.seq).max().unwrap_or(0);
                        let refused = batch
                            .results
                            .iter()
                            .filter(|r| r.seq % 2 == 0)
                            .map(|r| RefusedResult {
                                seq: r.seq,
                                probe_id: r.probe_id.clone(),
                                code: code.into(),
                                reason: "not assigned to this region".into(),
                            })
                            .collect();
                        if let Ok(mut b) = fake.batches.lock() {
                            b.push(batch);
                        }
                        Ack {
                            acked_seq: last,
                            highest_stored_seq: last,
                            refused,
                            ..Default::default()
                        }
                    }
                    (Some(AgentMsg::Results(batch)), _) => {
                        if let Ok(mut b) = fake.batches.lock() {
                            b.push(batch);
                        }
                        continue;
                    }
                    _ => continue,
                };
                if tx.send(msg(CoordMsg::Ack(reply))).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

async fn serve(script: Script) -> (SocketAddr, Fake) {
    let fake = Fake {
        script,
        connects: Arc::default(),
        batches: Arc::default(),
        in_flight: Arc::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let service = AgentServiceServer::new(fake.clone());
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(TcpListenerStream::new(listener))
            .await;
    });
    (addr, fake)
}

/// A spool holding `n` results (seqs 1..=n) that never met a coordinator.
fn spool_with(data_dir: &Path, n: u64) {
    let (mut spool, _) = Spool::open(SpoolConfig::new(data_dir.join("spool"))).expect("spool");
    let mut results: Vec<ProbeResult> = (1..=n)
        .map(|i| ProbeResult {
            agent_id: "uplink-test".into(),
            probe_id: format!("probe-{i}"),
            region: "eu".into(),
            started_unix_ms: 1_700_000_000_000,
            outcome: Outcome::Success as i32,
            ..Default::default()
        })
        .collect();
    spool.append(&mut results).expect("append");
}

/// Reopens the spool after the agent stopped: (acked, next seq, held seqs).
fn spool_state(data_dir: &Path) -> (u64, u64, Vec<u64>) {
    let (mut spool, _) = Spool::open(SpoolConfig::new(data_dir.join("spool"))).expect("spool");
    let held = spool
        .read_from(0, usize::MAX)
        .expect("read")
        .iter()
        .map(|r| r.seq)
        .collect();
    (spool.acked(), spool.next_seq(), held)
}

async fn start_agent(addr: SocketAddr, data_dir: &Path) -> Agent {
    let cfg: AgentConfig = serde_json::from_value(serde_json::json!({
        "agent_id": "uplink-test",
        "region": "eu",
        "coordinator": format!("http://{addr}"),
        "insecure": true,
        "listen": null,
        "data_dir": data_dir,
    }))
    .expect("config");
    Agent::start(cfg, metrics()).await.expect("agent")
}

const REJECTED: &str = "authpulse_agent_coordinator_rejected";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_results_are_counted_settled_and_not_resent() {
    let _turn = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    spool_with(&data, 6);
    let code = "test_refused_even";
    let (addr, fake) = serve(Script::RefuseEven { code }).await;
    let agent = start_agent(addr, &data).await;
    let refused = format!("authpulse_agent_results_refused_total{{code=\"{code}\"}}");
    wait_for(
        Duration::from_secs(20),
        "3 refused, nothing unacked",
        || {
            let refused = value(&refused);
            async move {
                (refused == Some(3.0) && value("authpulse_agent_results_unacked") == Some(0.0))
                    .then_some(())
            }
        },
    )
    .await;
    agent.shutdown().await;

    let batches = fake.batches.lock().expect("batches").clone();
    let mut sent: Vec<u64> = batches
        .iter()
        .flat_map(|b| b.results.iter().map(|r| r.seq))
        .collect();
    sent.sort_unstable();
    assert_eq!(sent, vec![1, 2, 3, 4, 5, 6], "each result sent once");
    for b in &batches {
        let last = b.results.iter().map(|r| r.seq).max().unwrap_or(0);
        assert!(
            b.low_watermark <= last + 1,
            "{} > {last} + 1",
            b.low_watermark
        );
    }
    // The ack settled the refused ones with the rest: nothing is held for
    // the next stream to resend.
    assert_eq!(spool_state(&data), (6, 7, vec![]));
    assert_eq!(value(REJECTED), Some(0.0), "the stream was accepted");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&data)
        .expect("data dir")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "data_dir is owner-only");
}

/// The coordinator's `max_unacked_results` bounds what the agent has in
/// flight (the coordinator shares a budget among its streams to keep ack
/// latency bounded): 50 spooled results go out at most 7 unacked at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_coordinators_in_flight_limit_is_honoured() {
    let _turn = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    spool_with(&data, 50);
    let (addr, fake) = serve(Script::Limit(7)).await;
    let agent = start_agent(addr, &data).await;
    let batches = fake.batches.clone();
    wait_for(Duration::from_secs(20), "all 50 results sent", || {
        let n: usize = batches
            .lock()
            .map(|b| b.iter().map(|b| b.results.len()).sum())
            .unwrap_or(0);
        async move { (n == 50).then_some(()) }
    })
    .await;
    agent.shutdown().await;
    let in_flight = fake.in_flight.lock().expect("in flight").clone();
    assert!(
        in_flight.iter().all(|n| *n <= 7),
        "unacked results per batch sent: {in_flight:?}"
    );
    assert!(in_flight.len() >= 50 / 7, "{in_flight:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_reject_is_not_retried_and_a_transient_one_is() {
    let _turn = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");

    let data = dir.path().join("permanent");
    spool_with(&data, 3);
    let (addr, fake) = serve(Script::Reject(RejectKind::Permanent)).await;
    let agent = start_agent(addr, &data).await;
    wait_for(Duration::from_secs(20), "the refusal taken in", || {
        let c = fake.connects.load(Ordering::SeqCst);
        async move { (c == 1 && value(REJECTED) == Some(1.0)).then_some(()) }
    })
    .await;
    // The transient case below reconnects well within this window.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(fake.connects.load(Ordering::SeqCst), 1, "no second attempt");
    assert_eq!(value(REJECTED), Some(1.0));
    agent.shutdown().await;
    let (acked, next, held) = spool_state(&data);
    assert_eq!((acked, next, held), (0, 4, vec![1, 2, 3]), "results kept");

    let data = dir.path().join("transient");
    let (addr, fake) = serve(Script::Reject(RejectKind::Transient)).await;
    let agent = start_agent(addr, &data).await;
    wait_for(
        Duration::from_secs(3),
        "a reconnect after a transient reject",
        || {
            let c = fake.connects.load(Ordering::SeqCst);
            async move { (c >= 2).then_some(()) }
        },
    )
    .await;
    assert_eq!(value(REJECTED), Some(0.0), "transient is not a refusal");
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renumbering_to_near_the_largest_seq_is_refused() {
    let _turn = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    for (i, holds) in [SEQ_MAX - 1, SEQ_MAX, u64::MAX].into_iter().enumerate() {
        let data = dir.path().join(format!("case-{i}"));
        spool_with(&data, 5);
        let (addr, fake) = serve(Script::Holds(holds)).await;
        let agent = start_agent(addr, &data).await;
        wait_for(Duration::from_secs(20), "the agent refusing", || async {
            (value(REJECTED) == Some(1.0)).then_some(())
        })
        .await;
        agent.shutdown().await;
        assert!(
            fake.batches.lock().expect("batches").is_empty(),
            "{holds}: nothing sent"
        );
        assert_eq!(fake.connects.load(Ordering::SeqCst), 1, "{holds}");
        // Not renumbered, not acked: the same five results, as they were.
        assert_eq!(spool_state(&data), (0, 6, vec![1, 2, 3, 4, 5]), "{holds}");
        // Reset for the next case (a new agent starts at 0 anyway).
        metrics::gauge!(REJECTED).set(0.0);
    }
}
