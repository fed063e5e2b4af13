//! The coordinator re-reads its agent-facing TLS files when they change (as
//! cert-manager rotates a Secret), with the real binary: an agent stream
//! opened before the rotation keeps streaming and getting acks; after it,
//! new connections are served with the new certificate and trust only the
//! new client CA; a broken set (a key that doesn't fit) is refused with the
//! reason while the previous certificate keeps serving; metrics count the
//! reloads.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use authpulse_proto::v1::ResultBatch;
use authpulse_proto::v1::agent_message::Msg as AgentMsg;
use authpulse_proto::v1::coordinator_message::Msg as CoordMsg;
use authpulse_tests::fake_agent::FakeAgent;
use authpulse_tests::fleet::{CoordinatorFixture, CoordinatorOptions, metric};
use authpulse_tests::mtls::{CertFiles, Pki, open_stream};
use authpulse_tests::{TempDir, wait_for};

const WAIT: Duration = Duration::from_secs(30);
const CATALOG: &str = "probes:\n  - id: eu-health\n    kind: http\n    regions: [eu-west]\n    url: http://127.0.0.1:9/health\n    interval: 30s\n";

/// The files the coordinator serves from, replaced the way a Secret
/// volume is: new content beside, then renamed over.
struct Live {
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
}

impl Live {
    fn put(path: &Path, from: &Path) {
        let tmp = path.with_extension("tmp");
        std::fs::copy(from, &tmp).expect("copy");
        std::fs::rename(&tmp, path).expect("rename");
    }

    fn install(&self, pki: &Pki) {
        Live::put(&self.ca, &pki.ca);
        Live::put(&self.key, &pki.server_key);
        Live::put(&self.cert, &pki.server_cert);
    }
}

/// Connects and says hello as `agent_id` in eu-west.
async fn hello(
    grpc: SocketAddr,
    ca: &Path,
    id: &CertFiles,
    agent_id: &str,
) -> Result<FakeAgent, String> {
    let mut s = open_stream(grpc, ca, Some(id)).await?;
    s.hello(agent_id, "eu-west").await?;
    Ok(s)
}

/// Sends results `seq..seq+2` and expects their ack.
async fn stream_and_ack(s: &mut FakeAgent, agent_id: &str, seq: u64) {
    let results = (seq..seq + 2)
        .map(|n| {
            authpulse_tests::results::probe_result(agent_id, "eu-west", n, "eu-health")
                .started(authpulse_tests::results::now_ms())
                .assignment_version(0)
                .build()
        })
        .collect();
    s.send(AgentMsg::Results(ResultBatch {
        results,
        low_watermark: seq,
    }))
    .await
    .expect("send");
    match s.next().await {
        Ok(CoordMsg::Ack(a)) => assert_eq!(a.acked_seq, seq + 1),
        other => panic!("expected an ack, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_certificates_serve_new_connections_and_open_streams_stay() {
    authpulse_tests::crypto();
    let dir = TempDir::new("ap-tls-rotation");
    let old = Pki::new(dir.path(), "old");
    let new = Pki::new(dir.path(), "new");
    let live = Live {
        cert: dir.path().join("tls.crt"),
        key: dir.path().join("tls.key"),
        ca: dir.path().join("ca.crt"),
    };
    live.install(&old);
    let tls_yaml = format!(
        "tls:\n  cert: {}\n  key: {}\n  client_ca: {}\n",
        live.cert.display(),
        live.key.display(),
        live.ca.display()
    );
    let fixture = CoordinatorFixture::start_opts(
        &dir,
        CATALOG,
        CoordinatorOptions {
            tls_yaml: Some(tls_yaml),
            ..CoordinatorOptions::default()
        },
    )
    .await;
    let grpc = fixture.grpc_addr();
    let old_agent = old.agent("eu-1", "eu-west");
    let new_agent = new.agent("eu-2", "eu-west");

    let mut before = hello(grpc, &old.ca, &old_agent, "eu-1")
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", fixture.log()));
    stream_and_ack(&mut before, "eu-1", 1).await;
    assert!(
        hello(grpc, &new.ca, &new_agent, "eu-2").await.is_err(),
        "new CA trusted before the rotation"
    );

    // Rotate to the new CA and certificate.
    live.install(&new);
    wait_for(WAIT, "a connection with the new certificates", || async {
        hello(grpc, &new.ca, &new_agent, "eu-2").await.ok()
    })
    .await;
    // The stream opened before the rotation goes on.
    stream_and_ack(&mut before, "eu-1", 3).await;
    // The old client CA is no longer trusted for new connections.
    assert!(hello(grpc, &old.ca, &old_agent, "eu-1").await.is_err());

    // A broken rotation (the old key with the new certificate) is refused
    // and the new certificate keeps serving.
    Live::put(&live.key, &old.server_key);
    wait_for(WAIT, "the refused reload in the log", || async {
        fixture
            .log()
            .contains("agent TLS files changed but don't load")
            .then_some(())
    })
    .await;
    assert!(
        fixture.log().contains("does not fit tls.cert"),
        "{}",
        fixture.log()
    );
    hello(grpc, &new.ca, &new_agent, "eu-2")
        .await
        .expect("still served after a refused reload");

    let client = reqwest::Client::new();
    let text = authpulse_tests::get_text(&client, format!("{}/metrics", fixture.api)).await;
    // (A poll may also catch the first rotation half-written: refused, then applied.)
    assert!(
        series(
            &text,
            "authpulse_coordinator_tls_reloads_total{result=\"applied\"}"
        ) >= 1.0,
        "{text}"
    );
    assert!(
        series(
            &text,
            "authpulse_coordinator_tls_reloads_total{result=\"refused\"}"
        ) >= 1.0,
        "{text}"
    );
    assert!(
        metric(
            &text,
            "authpulse_coordinator_tls_certificate_not_after_seconds"
        ) > 1.0e9,
        "{text}"
    );
}

/// The value of one exact series line (name and labels), 0 if absent.
fn series(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}
