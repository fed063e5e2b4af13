//! The agent's uplink against a scripted coordinator (a tonic `AgentService`
//! in this process, on loopback): results the coordinator refuses are
//! counted and settled, not resent; a permanent `Reject` is not retried in a
//! loop while a transient one is; numbering that would pass i64::MAX is
//! refused with the results kept; batches never claim a `low_watermark`
//! above what they carry. The agent is the real one (`Agent::start`) with a
//! spool prepared on disk, so no probe has to run.
//!
//! Group commit is tested on the real [`Uplink`] fed finished runs through
//! its channel, as the scheduler does: runs finishing within one window
//! share one fsync, nothing is sent before it is durable, and an open
//! window is committed within its bound and at shutdown.
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use authpulse_agent::http::{NetContext, Timings};
use authpulse_agent::last_assignment::LastAssignment;
use authpulse_agent::probes::{ProbeMemory, ProbeOutcome};
use authpulse_agent::scheduler::{CompletedRun, Scheduler, Shared};
use authpulse_agent::secrets::SecretStore;
use authpulse_agent::spool::{SEQ_MAX, Spool, SpoolConfig};
use authpulse_agent::uplink::{COMMIT_WINDOW, Uplink};
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
use tokio::sync::{Semaphore, mpsc, watch};
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
    /// Ack every batch, noting how many results the agent had made durable
    /// when it arrived.
    AckAll,
}

#[derive(Clone)]
struct Fake {
    script: Script,
    connects: Arc<AtomicUsize>,
    batches: Arc<Mutex<Vec<ResultBatch>>>,
    /// Per batch received: its last seq minus what had been acked before.
    in_flight: Arc<Mutex<Vec<u64>>>,
    /// `AckAll`: per batch, `authpulse_agent_results_produced_total` (bumped
    /// only once a spool append is fsynced) when it arrived.
    produced_at_arrival: Arc<Mutex<Vec<f64>>>,
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
                    (Some(AgentMsg::Results(batch)), Script::AckAll) => {
                        let produced = value(PRODUCED).unwrap_or(0.0);
                        let last = batch.results.iter().map(|r| r.seq).max().unwrap_or(0);
                        if let (Ok(mut b), Ok(mut p)) =
                            (fake.batches.lock(), fake.produced_at_arrival.lock())
                        {
                            b.push(batch);
                            p.push(produced);
                        }
                        Ack {
                            acked_seq: last,
                            highest_stored_seq: last,
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
        produced_at_arrival: Arc::default(),
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

fn config(addr: SocketAddr, data_dir: &Path) -> AgentConfig {
    serde_json::from_value(serde_json::json!({
        "agent_id": "uplink-test",
        "region": "eu",
        "coordinator": format!("http://{addr}"),
        "insecure": true,
        "listen": null,
        "data_dir": data_dir,
    }))
    .expect("config")
}

async fn start_agent(addr: SocketAddr, data_dir: &Path) -> Agent {
    Agent::start(config(addr, data_dir), metrics())
        .await
        .expect("agent")
}

const REJECTED: &str = "authpulse_agent_coordinator_rejected";
const PRODUCED: &str = "authpulse_agent_results_produced_total";
/// Spool fdatasyncs of appended batches (a summary with the test recorder).
const FSYNCS: &str = "authpulse_agent_spool_fsync_seconds_count";

/// An uplink as `Agent::start` runs it, but fed by the test: send finished
/// runs on the returned channel, stop it with the watch.
struct TestUplink {
    runs: mpsc::Sender<CompletedRun>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl TestUplink {
    fn start(addr: SocketAddr, data_dir: &Path) -> TestUplink {
        let _ = metrics();
        let cfg = config(addr, data_dir);
        let (runs, rx) = mpsc::channel(1024);
        let shared = Arc::new(Shared {
            agent_id: cfg.agent_id.clone(),
            region: cfg.region.clone(),
            net: NetContext::new().expect("net"),
            secrets: SecretStore::new(None),
            memory: ProbeMemory::default(),
            permits: Semaphore::new(1),
            results: runs.clone(),
            version: AtomicU64::new(0),
        });
        let scheduler = Arc::new(tokio::sync::Mutex::new(Scheduler::new(shared)));
        let (spool, _) = Spool::open(SpoolConfig::new(data_dir.join("spool"))).expect("spool");
        let uplink = Uplink::new(
            cfg,
            scheduler,
            Arc::new(AtomicBool::new(false)),
            LastAssignment::new(data_dir),
            spool,
        );
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(uplink.run(rx, stop_rx));
        TestUplink { runs, stop, task }
    }

    async fn finish(&self, i: usize) {
        let run = CompletedRun {
            probe_id: format!("probe-{i}"),
            kind: "http",
            started_unix_ms: 1_700_000_000_000,
            assignment_version: 1,
            outcome: ProbeOutcome {
                failure: None,
                timings: Timings::default(),
                steps: Vec::new(),
                detail: String::new(),
            },
        };
        self.runs.send(run).await.expect("uplink running");
    }

    async fn shutdown(self) {
        let _ = self.stop.send(true);
        self.task.await.expect("uplink task");
    }
}

/// A loopback address nothing listens on: the coordinator is away.
async fn nobody_listening() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    listener.local_addr().expect("addr")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_finishing_within_one_window_share_one_fsync_and_are_sent_once_durable() {
    let _turn = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (addr, fake) = serve(Script::AckAll).await;
    let uplink = TestUplink::start(addr, &data);
    wait_for(Duration::from_secs(20), "the uplink connected", || {
        let c = fake.connects.load(Ordering::SeqCst);
        async move { (c >= 1).then_some(()) }
    })
    .await;
    let (fsyncs_before, produced_before) =
        (value(FSYNCS).unwrap_or(0.0), value(PRODUCED).unwrap_or(0.0));
    // 200 runs ending in 10 waves 8 ms apart (~80 ms): appended as they
    // came, they took about an fsync per wave; in windows, one or two (the
    // burst may straddle a flush), three on a slow machine.
    const RUNS: usize = 200;
    for wave in 0..10 {
        for i in 0..20 {
            uplink.finish(wave * 20 + i).await;
        }
        tokio::time::sleep(Duration::from_millis(8)).await;
    }
    wait_for(
        Duration::from_secs(20),
        "all results at the coordinator, acked",
        || {
            let n: usize = fake
                .batches
                .lock()
                .map(|b| b.iter().map(|b| b.results.len()).sum())
                .unwrap_or(0);
            let unacked = value("authpulse_agent_results_unacked");
            async move { (n == RUNS && unacked == Some(0.0)).then_some(()) }
        },
    )
    .await;
    let fsyncs = value(FSYNCS).unwrap_or(0.0) - fsyncs_before;
    assert!(
        (1.0..=3.0).contains(&fsyncs),
        "{RUNS} runs within ~80 ms took {fsyncs} fsyncs"
    );
    let batches = fake.batches.lock().expect("batches").clone();
    let produced_at = fake.produced_at_arrival.lock().expect("produced").clone();
    let mut sent: Vec<u64> = Vec::new();
    for (b, produced) in batches.iter().zip(&produced_at) {
        let last = b.results.iter().map(|r| r.seq).max().unwrap_or(0);
        // A fresh spool numbers from 1: seq n is durable once n results are.
        assert!(
            last as f64 <= produced - produced_before,
            "seq {last} sent when only {} results were durable",
            produced - produced_before
        );
        sent.extend(b.results.iter().map(|r| r.seq));
    }
    sent.sort_unstable();
    assert_eq!(
        sent,
        (1..=RUNS as u64).collect::<Vec<_>>(),
        "each sent once"
    );
    uplink.shutdown().await;
    assert_eq!(spool_state(&data), (RUNS as u64, RUNS as u64 + 1, vec![]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_window_is_committed_within_its_bound_and_at_shutdown() {
    let _turn = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    // No coordinator: the uplink commits from its reconnect loop.
    let uplink = TestUplink::start(nobody_listening().await, &data);
    let produced_before = value(PRODUCED).unwrap_or(0.0);
    let sent_at = tokio::time::Instant::now();
    for i in 0..5 {
        uplink.finish(i).await;
    }
    wait_for(Duration::from_secs(5), "the window committed", || async {
        (value(PRODUCED).unwrap_or(0.0) - produced_before == 5.0).then_some(())
    })
    .await;
    // wait_for looks every 100 ms; a window that waited for a reconnect
    // (backoff up to 30 s) would be far later.
    let took = sent_at.elapsed();
    assert!(
        took <= COMMIT_WINDOW + Duration::from_secs(1),
        "committed after {took:?}"
    );
    // A window still open at shutdown is committed, not dropped.
    for i in 5..8 {
        uplink.finish(i).await;
    }
    uplink.shutdown().await;
    assert_eq!(spool_state(&data), (0, 9, (1..=8).collect::<Vec<_>>()));
}

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
