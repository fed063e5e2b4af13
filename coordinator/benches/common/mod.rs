//! What the coordinator benches that drive a real coordinator over gRPC
//! share (`ingest`, `fleet`): the catalog whose probes the simulated agents
//! report, the wire messages an agent sends, starting an in-process
//! coordinator (SQLite in a temp dir or a given PostgreSQL database,
//! plaintext gRPC on 127.0.0.1), opening one agent's stream up to its
//! assignment, re-executing the bench as a separate load-generator process,
//! and this process's CPU time and memory from /proc. Each bench includes it
//! with `mod common;`, so a helper a given bench doesn't call is not dead
//! code to worry about.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use authpulse_coordinator::{CoordinatorConfig, Running, start};
use authpulse_proto::v1::agent_message::Msg as AgentMsg;
use authpulse_proto::v1::agent_service_client::AgentServiceClient;
use authpulse_proto::v1::coordinator_message::Msg as CoordMsg;
use authpulse_proto::v1::{AgentMessage, CoordinatorMessage, Hello, ProbeResult};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

pub const REGION: &str = "eu-west";
pub const PROBES: [&str; 3] = ["login", "token", "health"];
/// Longest wait for any single coordinator answer.
pub const WAIT: Duration = Duration::from_secs(30);

/// Every probe assigned to [`REGION`]: the coordinator refuses results of
/// probes not assigned to the agent's region.
pub const CATALOG: &str = r#"
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

/// Result `seq` of `agent`: the probe cycles through [`PROBES`], the
/// duration varies with the seq, every 50th fails.
pub fn result(agent: &str, seq: u64, started_ms: i64) -> ProbeResult {
    let probe = PROBES[(seq % PROBES.len() as u64) as usize];
    authpulse_tests::results::probe_result(agent, REGION, seq, probe)
        .started(started_ms)
        .total_us(50_000 + (seq % 997) * 300)
        .ok(!seq.is_multiple_of(50))
        .build()
}

pub fn hello(agent: &str) -> AgentMessage {
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

/// The soft open-files limit of this process, from /proc/self/limits.
pub fn open_files_limit() -> Option<u64> {
    std::fs::read_to_string("/proc/self/limits")
        .ok()?
        .lines()
        .find(|l| l.starts_with("Max open files"))?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()
}

/// Fails the bench up front when `streams` agent connections (one socket
/// each in both processes) plus the database and spare don't fit the
/// open-files limit: better than connection errors halfway through.
pub fn check_open_files(streams: u64) {
    let needed = streams + 256;
    let limit = open_files_limit().unwrap_or(u64::MAX);
    assert!(
        limit >= needed,
        "K={streams} needs {needed} open files, the limit is {limit}: raise it (ulimit -n {needed}; tests/bench/run does)"
    );
}

/// A coordinator with [`CATALOG`], its data in `dir` (or in the PostgreSQL
/// database `postgres`), plaintext gRPC and HTTP on free loopback ports.
pub async fn start_coordinator(dir: &Path, postgres: Option<String>) -> Running {
    let catalog_path = dir.join("catalog.yaml");
    std::fs::write(&catalog_path, CATALOG).expect("write catalog");
    let config = CoordinatorConfig {
        grpc_listen: "127.0.0.1:0".parse().expect("addr"),
        http_listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.join("data"),
        catalog: vec![catalog_path],
        insecure: true,
        database: postgres,
        ..CoordinatorConfig::default()
    };
    start(config).await.expect("coordinator starts")
}

/// One agent's stream on its own connection, after the handshake (the
/// stored ack, then the assignment): the sender of the agent's messages
/// (`capacity` of them buffered), the coordinator's messages, and the
/// handshake ack's `max_unacked_results` (0: none stated).
pub async fn open_stream(
    addr: SocketAddr,
    agent_id: &str,
    capacity: usize,
) -> (
    mpsc::Sender<AgentMessage>,
    tonic::Streaming<CoordinatorMessage>,
    u64,
) {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut client = AgentServiceClient::new(channel);
    let (tx, rx) = mpsc::channel(capacity);
    tx.send(hello(agent_id)).await.expect("send hello");
    let mut stream = client
        .connect(ReceiverStream::new(rx))
        .await
        .expect("stream opens")
        .into_inner();
    // The handshake: the stored ack (0 for a new agent), then the assignment.
    let mut limit = 0;
    loop {
        let msg = tokio::time::timeout(WAIT, stream.message())
            .await
            .expect("hello answered in time")
            .expect("stream ok")
            .expect("stream open");
        match msg.msg {
            Some(CoordMsg::Assignment(_)) => break,
            Some(CoordMsg::Ack(ack)) => limit = ack.max_unacked_results,
            _ => {}
        }
    }
    (tx, stream, limit)
}

/// This bench binary again, as a separate load-generator process (so its
/// CPU and memory are not the coordinator's), with `env=spec`; its stdout
/// line by line.
pub fn spawn_load(env: &str, spec: String) -> (Child, Lines<BufReader<ChildStdout>>) {
    let mut child = tokio::process::Command::new(std::env::current_exe().expect("current exe"))
        .env(env, spec)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the load generator");
    let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    (child, lines)
}

/// Nearest-rank percentile of sorted samples (`q` in 0..=1); zero if none.
pub fn percentile(sorted: &[Duration], q: f64) -> Duration {
    sorted
        .get(((sorted.len() as f64 * q).ceil() as usize).saturating_sub(1))
        .copied()
        .unwrap_or_default()
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

/// The load generator's spec from `env`, `"<grpc addr> <agents> <seconds>"`
/// (set by [`spawn_load`]); `None` when this process is the bench itself.
pub fn load_spec(env: &str) -> Option<(SocketAddr, usize, Duration)> {
    let spec = std::env::var(env).ok()?;
    let mut parts = spec.split_whitespace();
    let (Some(addr), Some(n), Some(secs)) = (
        parts.next().and_then(|a| a.parse().ok()),
        parts.next().and_then(|n| n.parse().ok()),
        parts.next().and_then(|s| s.parse().ok()),
    ) else {
        panic!("{env} must be \"<grpc addr> <agents> <seconds>\", got {spec:?}");
    };
    Some((addr, n, Duration::from_secs_f64(secs)))
}

/// User + system CPU seconds of this whole process (all threads).
pub fn own_cpu_secs() -> f64 {
    authpulse_tests::proc_stats::cpu_secs("self")
}

/// A `kB` field of /proc/self/status (`VmHWM`, `VmRSS`) in KiB; NaN if absent.
pub fn own_status_kib(field: &str) -> f64 {
    authpulse_tests::proc_stats::status_kib("self", field)
}
