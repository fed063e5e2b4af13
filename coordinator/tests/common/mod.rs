//! Shared harness: a real coordinator (SQLite file in a temp dir, ports
//! picked by the OS) and a real tonic client speaking the agent protocol.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use authpulse_coordinator::{CoordinatorConfig, Running, start};
use authpulse_proto::v1::agent_message::Msg as AgentMsg;
use authpulse_proto::v1::coordinator_message::Msg as CoordMsg;
use authpulse_proto::v1::{AgentMessage, Assignment, Hello, ProbeResult, ResultBatch, Timings};
use authpulse_tests::fake_agent::FakeAgent;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const CATALOG: &str = r#"
probes:
  - id: discovery
    kind: oidc_discovery
    issuer: https://idp.example.com
    interval: 30s
    timeout: 5s
  - id: eu-health
    kind: http
    regions: [eu-west]
    url: https://idp.example.com/health
  - id: us-health
    kind: http
    regions: [us-east]
    url: https://idp.example.com/health
slos:
  - id: discovery-availability
    description: Discovery document and JWKS are served
    probes: [discovery]
    objective: 99.9
    window: 28d
  - id: health-latency
    probes: [eu-health, us-health]
    objective: 99
    window: 1h
    sli: { latency: { threshold: 800ms } }
"#;

/// How long any single wait in a test may take.
pub const WAIT: Duration = Duration::from_secs(10);

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub catalog_path: PathBuf,
    pub running: Running,
}

pub async fn start_with(catalog: &str) -> Harness {
    start_with_fleet(catalog, Default::default()).await
}

pub async fn start_with_fleet(
    catalog: &str,
    fleet: authpulse_coordinator::fleet::FleetConfig,
) -> Harness {
    let dir = tempfile::tempdir().expect("tempdir");
    let catalog_path = dir.path().join("catalog.yaml");
    std::fs::write(&catalog_path, catalog).expect("write catalog");
    let config = CoordinatorConfig {
        grpc_listen: "127.0.0.1:0".parse().expect("addr"),
        http_listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.path().join("data"),
        catalog: vec![catalog_path.clone()],
        insecure: true,
        fleet,
        ..CoordinatorConfig::default()
    };
    let running = start(config).await.expect("coordinator starts");
    Harness {
        dir,
        catalog_path,
        running,
    }
}

pub async fn start_default() -> Harness {
    start_with(CATALOG).await
}

/// One agent stream.
/// One agent stream for the coordinator's tests: the shared test agent
/// (`authpulse_tests::fake_agent`) with panicking helpers.
pub struct AgentConn(FakeAgent);

impl AgentConn {
    pub async fn open(addr: SocketAddr) -> AgentConn {
        AgentConn(
            FakeAgent::connect(&format!("http://{addr}"))
                .await
                .expect("stream opens"),
        )
    }

    pub async fn hello(
        addr: SocketAddr,
        agent: &str,
        region: &str,
    ) -> (AgentConn, u64, Assignment) {
        let mut conn = AgentConn::open(addr).await;
        conn.send(hello(agent, region)).await;
        let ack = conn.expect_ack().await;
        let assignment = conn.expect_assignment().await;
        (conn, ack, assignment)
    }

    pub async fn send(&self, msg: AgentMessage) {
        self.0.send_message(msg).await.expect("request stream open");
    }

    pub async fn next(&mut self) -> Result<Option<CoordMsg>, tonic::Status> {
        self.0.next_message().await
    }

    pub async fn expect_ack(&mut self) -> u64 {
        match self.next().await {
            Ok(Some(CoordMsg::Ack(a))) => a.acked_seq,
            other => panic!("expected an ack, got {other:?}"),
        }
    }

    pub async fn expect_assignment(&mut self) -> Assignment {
        match self.next().await {
            Ok(Some(CoordMsg::Assignment(a))) => a,
            other => panic!("expected an assignment, got {other:?}"),
        }
    }

    /// A `Reject` followed by the ending status.
    pub async fn expect_reject(&mut self) -> (String, tonic::Status) {
        let reason = match self.next().await {
            Ok(Some(CoordMsg::Reject(r))) => r.reason,
            other => panic!("expected a reject, got {other:?}"),
        };
        let status = match self.next().await {
            Err(status) => status,
            other => panic!("expected the stream to end with a status, got {other:?}"),
        };
        (reason, status)
    }

    /// Sends a batch and returns the ack that answers it.
    pub async fn batch(&mut self, results: Vec<ProbeResult>, low_watermark: u64) -> u64 {
        self.send(batch(results, low_watermark)).await;
        self.expect_ack().await
    }
}

pub fn hello(agent: &str, region: &str) -> AgentMessage {
    AgentMessage {
        msg: Some(AgentMsg::Hello(Hello {
            agent_id: agent.into(),
            region: region.into(),
            version: "test".into(),
            labels: [("host".to_string(), "ci".to_string())].into(),
            assignment_version: 0,
            ..Default::default()
        })),
    }
}

pub fn batch(results: Vec<ProbeResult>, low_watermark: u64) -> AgentMessage {
    AgentMessage {
        msg: Some(AgentMsg::Results(ResultBatch {
            results,
            low_watermark,
        })),
    }
}

pub fn now_ms() -> i64 {
    authpulse_coordinator::store::now_ms()
}

pub fn result(agent: &str, region: &str, seq: u64, probe: &str, ok: bool) -> ProbeResult {
    result_at(agent, region, seq, probe, ok, now_ms() - 1000, 120_000)
}

pub fn result_at(
    agent: &str,
    region: &str,
    seq: u64,
    probe: &str,
    ok: bool,
    started_ms: i64,
    total_us: u64,
) -> ProbeResult {
    authpulse_tests::results::probe_result(agent, region, seq, probe)
        .started(started_ms)
        .timings(Timings {
            dns_us: Some(1_500),
            connect_us: Some(2_000),
            tls_us: None,
            ttfb_us: Some(100_000),
            total_us,
        })
        .ok(ok)
        .build()
}

pub fn seqs(agent: &str, region: &str, probe: &str, seqs: &[u64]) -> Vec<ProbeResult> {
    seqs.iter()
        .map(|s| result(agent, region, *s, probe, true))
        .collect()
}

/// A plain HTTP/1.1 GET against the running server: (status, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect http");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut raw))
        .await
        .expect("http answers in time")
        .expect("read");
    let text = String::from_utf8(raw).expect("utf-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("http response");
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "test client can't read chunked bodies"
    );
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    (status, body.to_string())
}

pub async fn http_json(addr: SocketAddr, path: &str) -> serde_json::Value {
    let (status, body) = http_get(addr, path).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).expect("JSON body")
}
