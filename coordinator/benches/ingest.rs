//! Coordinator ingest throughput: a real coordinator (SQLite in a temp dir,
//! plaintext gRPC on 127.0.0.1) fed by K agent streams (K = 1, 10, 100) over
//! the generated tonic client. Each agent says Hello, then sends
//! `BATCH`-result batches with increasing seqs as fast as acks allow, with at
//! most `WINDOW` batches in flight, for a fixed time. Reports durable
//! results/s (acked results over the time to the last ack) and the p99 ack
//! latency (batch sent -> first ack covering its last seq). Reference: the
//! raw rate of `Store::insert_batch` of a fresh store with the same batch
//! size and a single writer. `AUTHPULSE_BENCH_QUICK=1`: K = 1, 10 for 1 s.
//! Run: `cargo bench -p authpulse-coordinator --bench ingest`.
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use authpulse_coordinator::store::{Store, now_ms};
use authpulse_coordinator::{CoordinatorConfig, start};
use authpulse_proto::v1::agent_message::Msg as AgentMsg;
use authpulse_proto::v1::agent_service_client::AgentServiceClient;
use authpulse_proto::v1::coordinator_message::Msg as CoordMsg;
use authpulse_proto::v1::{
    AgentMessage, FailureClass, Hello, Outcome, ProbeResult, ResultBatch, Timings,
};
use tokio::sync::{Barrier, mpsc};
use tokio_stream::wrappers::ReceiverStream;

const BATCH: usize = 100;
const WINDOW: usize = 8;
const REGION: &str = "eu-west";
const PROBES: [&str; 3] = ["login", "token", "health"];
/// Longest wait for any single coordinator answer.
const WAIT: Duration = Duration::from_secs(30);

const CATALOG: &str = r#"
probes:
  - id: login
    kind: http
    regions: [eu-west]
    url: https://idp.example.com/login
  - id: token
    kind: http
    regions: [eu-west]
    url: https://idp.example.com/token
  - id: health
    kind: http
    regions: [eu-west]
    url: https://idp.example.com/health
"#;

fn result(agent: &str, seq: u64, started_ms: i64) -> ProbeResult {
    let ok = !seq.is_multiple_of(50);
    let total_us = 50_000 + (seq % 997) * 300;
    ProbeResult {
        agent_id: agent.into(),
        seq,
        probe_id: PROBES[(seq % PROBES.len() as u64) as usize].into(),
        region: REGION.into(),
        started_unix_ms: started_ms,
        duration_us: total_us,
        outcome: if ok {
            Outcome::Success
        } else {
            Outcome::Failure
        } as i32,
        failure_class: if ok {
            FailureClass::Unspecified
        } else {
            FailureClass::HttpStatus
        } as i32,
        timings: Some(Timings {
            dns_us: Some(1_500),
            connect_us: Some(2_000),
            tls_us: None,
            ttfb_us: Some(total_us / 2),
            total_us,
        }),
        steps: vec![],
        detail: if ok { String::new() } else { "HTTP 503".into() },
        assignment_version: 1,
    }
}

/// Results `first..first + BATCH` of `agent`.
fn batch_results(agent: &str, first: u64) -> Vec<ProbeResult> {
    let started = now_ms() - 1_000;
    (first..first + BATCH as u64)
        .map(|s| result(agent, s, started))
        .collect()
}

fn hello(agent: &str) -> AgentMessage {
    AgentMessage {
        msg: Some(AgentMsg::Hello(Hello {
            agent_id: agent.into(),
            region: REGION.into(),
            version: "bench".into(),
            assignment_version: 0,
            ..Default::default()
        })),
    }
}

/// Raw `Store::insert_batch` rate of a fresh store, single writer.
async fn raw_rate(duration: Duration) -> f64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).await.expect("open store");
    let agent = "raw-agent";
    let mut seq = 1u64;
    let mut stored = 0u64;
    let t0 = Instant::now();
    while t0.elapsed() < duration {
        let results = batch_results(agent, seq);
        seq += BATCH as u64;
        let stats = store.insert_batch(agent, &results).await.expect("insert");
        stored += stats.inserted;
    }
    stored as f64 / t0.elapsed().as_secs_f64()
}

struct AgentRun {
    acked: u64,
    latencies: Vec<Duration>,
    last_ack: Instant,
}

async fn agent(
    addr: SocketAddr,
    agent_id: String,
    duration: Duration,
    ready: Arc<Barrier>,
) -> AgentRun {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut client = AgentServiceClient::new(channel);
    let (tx, rx) = mpsc::channel(WINDOW * 2);
    tx.send(hello(&agent_id)).await.expect("send hello");
    let mut stream = client
        .connect(ReceiverStream::new(rx))
        .await
        .expect("stream opens")
        .into_inner();
    // The handshake: the stored ack (0 for a new agent), then the assignment.
    loop {
        let msg = tokio::time::timeout(WAIT, stream.message())
            .await
            .expect("hello answered in time")
            .expect("stream ok")
            .expect("stream open");
        if let Some(CoordMsg::Assignment(_)) = msg.msg {
            break;
        }
    }
    ready.wait().await;
    let t0 = Instant::now();
    let deadline = t0 + duration;
    let mut next_seq = 1u64;
    // (last seq of the batch, when it was sent)
    let mut in_flight: VecDeque<(u64, Instant)> = VecDeque::new();
    let mut run = AgentRun {
        acked: 0,
        latencies: Vec::new(),
        last_ack: t0,
    };
    loop {
        while in_flight.len() < WINDOW && Instant::now() < deadline {
            let results = batch_results(&agent_id, next_seq);
            next_seq += BATCH as u64;
            let msg = AgentMessage {
                msg: Some(AgentMsg::Results(ResultBatch {
                    results,
                    low_watermark: 0,
                })),
            };
            in_flight.push_back((next_seq - 1, Instant::now()));
            tx.send(msg).await.expect("request stream open");
        }
        if in_flight.is_empty() {
            break;
        }
        let msg = tokio::time::timeout(WAIT, stream.message())
            .await
            .expect("ack in time")
            .expect("stream ok")
            .expect("stream open");
        if let Some(CoordMsg::Ack(ack)) = msg.msg {
            let now = Instant::now();
            while let Some(&(last, sent)) = in_flight.front() {
                if last > ack.acked_seq {
                    break;
                }
                in_flight.pop_front();
                run.latencies.push(now - sent);
                run.acked += BATCH as u64;
                run.last_ack = now;
            }
        }
    }
    drop(tx);
    run
}

struct Row {
    rate: f64,
    p50: Duration,
    p99: Duration,
    batches: usize,
}

async fn ingest(k: usize, duration: Duration) -> Row {
    let dir = tempfile::tempdir().expect("tempdir");
    let catalog_path = dir.path().join("catalog.yaml");
    std::fs::write(&catalog_path, CATALOG).expect("write catalog");
    let config = CoordinatorConfig {
        grpc_listen: "127.0.0.1:0".parse().expect("addr"),
        http_listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.path().join("data"),
        catalog: vec![catalog_path],
        insecure: true,
        ..CoordinatorConfig::default()
    };
    let running = start(config).await.expect("coordinator starts");
    let addr = running.grpc_addr();
    // Every agent plus this task: all handshakes done before the clock starts.
    let ready = Arc::new(Barrier::new(k + 1));
    let tasks: Vec<_> = (0..k)
        .map(|i| {
            tokio::spawn(agent(
                addr,
                format!("bench-agent-{i:03}"),
                duration,
                ready.clone(),
            ))
        })
        .collect();
    ready.wait().await;
    let t0 = Instant::now();
    let mut acked = 0u64;
    let mut last = t0;
    let mut latencies = Vec::new();
    for t in tasks {
        let run = t.await.expect("agent task");
        acked += run.acked;
        last = last.max(run.last_ack);
        latencies.extend(run.latencies);
    }
    running.shutdown().await;
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or_default()
    };
    Row {
        rate: acked as f64 / (last - t0).as_secs_f64().max(1e-9),
        p50: pct(0.50),
        p99: pct(0.99),
        batches: latencies.len(),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let quick = std::env::var("AUTHPULSE_BENCH_QUICK").is_ok_and(|v| v == "1");
    let (ks, duration): (&[usize], Duration) = if quick {
        (&[1, 10], Duration::from_secs(1))
    } else {
        (&[1, 10, 100], Duration::from_secs(10))
    };
    println!(
        "ingest bench: batches of {BATCH} results, window {WINDOW} batches/stream, {:?} per K{}",
        duration,
        if quick { " (quick)" } else { "" }
    );
    let raw = raw_rate(duration).await;
    println!("raw store insert (single writer, batch {BATCH}): {raw:.0} results/s");
    for &k in ks {
        let row = ingest(k, duration).await;
        println!(
            "ingest K={k}: {:.0} results/s ({:.2}x of raw store insert rate), p99 ack {:.1} ms (p50 {:.1} ms, {} batches)",
            row.rate,
            row.rate / raw,
            ms(row.p99),
            ms(row.p50),
            row.batches
        );
    }
}
