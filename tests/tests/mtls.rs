//! Agent identity over mTLS, with the real binaries: the coordinator serves
//! agents whose client certificate its CA signed and that speak for the
//! agent and region the certificate names; every refusal is logged on the
//! coordinator with its reason and the coordinator keeps serving. The agent
//! binary streams results over mTLS with certificates from `authpulse certs`,
//! past a dead coordinator URL to a live one.
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use authpulse_proto::v1::agent_message::Msg as AgentMsg;
use authpulse_proto::v1::coordinator_message::Msg as CoordMsg;
use authpulse_proto::v1::{Hello, ProbeResult, ResultBatch, Timings};
use authpulse_tests::fleet::{CoordinatorFixture, CoordinatorOptions};
use authpulse_tests::mtls::{
    AgentCert, CertFiles, Pki, free_port, log_events, open_stream as open, spiffe,
};
use authpulse_tests::process::Process;
use authpulse_tests::{TempDir, bin, wait_for};
use rcgen::ExtendedKeyUsagePurpose;
use tokio::io::AsyncWriteExt;
use tonic::Code;

const WAIT: Duration = Duration::from_secs(20);
const REFUSED: &str = "agent TLS handshake refused";

const CATALOG: &str = "probes:\n  - id: eu-health\n    kind: http\n    regions: [eu-west]\n    url: http://127.0.0.1:9/health\n    interval: 30s\n";

struct Coordinator {
    process: Process,
    grpc: SocketAddr,
    http: String,
}

async fn start_coordinator(dir: &TempDir, pki: &Pki) -> Coordinator {
    authpulse_tests::crypto();
    let mut fixture = CoordinatorFixture::start_opts(
        dir,
        CATALOG,
        CoordinatorOptions {
            tls_yaml: Some(pki.coordinator_tls_yaml()),
            ..CoordinatorOptions::default()
        },
    )
    .await;
    Coordinator {
        grpc: fixture.grpc_addr(),
        http: fixture.api.trim_start_matches("http://").to_string(),
        process: fixture.process.take().expect("running"),
    }
}

fn result(agent_id: &str, region: &str, seq: u64) -> ProbeResult {
    authpulse_tests::results::probe_result(agent_id, region, seq, "eu-health")
        .started(authpulse_tests::results::now_ms())
        .timings(Timings {
            total_us: 1_000,
            ..Default::default()
        })
        .assignment_version(0)
        .build()
}

/// A valid agent connects, says hello, stores results and gets them acked.
async fn valid_agent_streams(
    c: &Coordinator,
    pki: &Pki,
    agent: &CertFiles,
    agent_id: &str,
    from_seq: u64,
) {
    let mut s = open(c.grpc, &pki.ca, Some(agent))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "valid agent {agent_id} can't connect: {e}\n{}",
                c.process.log_text()
            )
        });
    let (ack, assignment) = s
        .hello(agent_id, "eu-west")
        .await
        .unwrap_or_else(|e| panic!("valid agent {agent_id}: {e}\n{}", c.process.log_text()));
    assert_eq!(ack.acked_seq, from_seq - 1, "stored ack");
    assert!(
        assignment.probes.iter().any(|p| p.id == "eu-health"),
        "{assignment:?}"
    );
    s.send(AgentMsg::Results(ResultBatch {
        results: (from_seq..from_seq + 2)
            .map(|seq| result(agent_id, "eu-west", seq))
            .collect(),
        low_watermark: from_seq,
    }))
    .await
    .expect("send batch");
    match s.next().await {
        Ok(CoordMsg::Ack(a)) => assert_eq!(a.acked_seq, from_seq + 1, "batch acked"),
        other => panic!("expected an ack for the batch, got {other:?}"),
    }
}

/// Waits until the coordinator logged a refusal with `reason`; returns its fields.
async fn refusal(c: &Coordinator, reason: &str) -> serde_json::Value {
    let what = format!("a logged TLS refusal with reason {reason}");
    let found = tokio::time::timeout(WAIT + Duration::from_secs(5), async {
        loop {
            let log = c.process.log_text();
            if let Some(f) = log_events(&log, REFUSED)
                .into_iter()
                .find(|f| f["reason"] == reason)
            {
                return f;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    found.unwrap_or_else(|_| {
        panic!(
            "timed out waiting for {what}; log:\n{}",
            c.process.log_text()
        )
    })
}

/// Sends a TLS ClientHello, reads the server's first answer, hangs up.
async fn hello_then_hang_up(grpc: SocketAddr) {
    use tokio::io::AsyncReadExt;
    let config = rustls::ClientConfig::builder_with_provider(
        rustls::crypto::aws_lc_rs::default_provider().into(),
    )
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    let mut conn = rustls::ClientConnection::new(
        std::sync::Arc::new(config),
        "localhost".try_into().expect("name"),
    )
    .expect("client");
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).expect("client hello");
    let mut tcp = tokio::net::TcpStream::connect(grpc).await.expect("tcp");
    tcp.write_all(&hello).await.expect("send hello");
    let mut answer = [0u8; 512];
    let n = tokio::time::timeout(WAIT, tcp.read(&mut answer))
        .await
        .expect("server answers the hello")
        .expect("read");
    assert!(n > 0, "server hello");
}

/// A refused client fails on its side (vaguely), and the server says why.
async fn refused_client(
    c: &Coordinator,
    pki: &Pki,
    identity: Option<&CertFiles>,
    reason: &str,
) -> serde_json::Value {
    let outcome = match open(c.grpc, &pki.ca, identity).await {
        Err(e) => Err(e),
        Ok(mut s) => s.hello("eu-1", "eu-west").await.map(|_| ()),
    };
    assert!(
        outcome.is_err(),
        "a client refused for {reason} got through"
    );
    let fields = refusal(c, reason).await;
    assert!(
        fields["peer"]
            .as_str()
            .is_some_and(|p| p.starts_with("127.0.0.1:")),
        "the peer address is logged: {fields}"
    );
    assert!(
        fields["why"].as_str().is_some_and(|w| !w.is_empty()),
        "{fields}"
    );
    fields
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_mtls_serves_valid_agents_and_logs_every_refusal() {
    let dir = TempDir::new("ap-mtls");
    let pki = Pki::new(dir.path(), "main");
    let other = Pki::new(dir.path(), "other");
    let c = start_coordinator(&dir, &pki).await;

    // A client that connects and never starts TLS: dropped after the
    // handshake timeout while everything below is served.
    let stalled = tokio::net::TcpStream::connect(c.grpc).await.expect("tcp");

    let good = pki.agent("eu-1", "eu-west");
    valid_agent_streams(&c, &pki, &good, "eu-1", 1).await;

    // Signed by another CA.
    let foreign = other.agent("eu-1", "eu-west");
    let f = refused_client(&c, &pki, Some(&foreign), "unknown_ca").await;
    assert!(
        f["why"].as_str().expect("why").contains("tls.client_ca"),
        "{f}"
    );
    assert_eq!(f["certificate"], "agent eu-1 region eu-west", "{f}");
    // Signed by another CA that has the same name as the trusted one.
    let twin = Pki::with_subject(dir.path(), "twin", "authpulse test CA main");
    refused_client(&c, &pki, Some(&twin.agent("eu-1", "eu-west")), "unknown_ca").await;
    let twin_refusal = wait_for(WAIT, "the twin CA refusal", || async {
        log_events(&c.process.log_text(), REFUSED)
            .into_iter()
            .find(|f| f["why"].as_str().is_some_and(|w| w.contains("same name")))
    })
    .await;
    assert_eq!(twin_refusal["reason"], "unknown_ca", "{twin_refusal}");
    valid_agent_streams(&c, &pki, &good, "eu-1", 3).await;

    // The agent does not trust the coordinator's certificate: rustls says
    // so with an alert ...
    let outcome = match open(c.grpc, &other.ca, Some(&good)).await {
        Err(e) => Err(e),
        Ok(mut s) => s.hello("eu-1", "eu-west").await.map(|_| ()),
    };
    assert!(
        outcome.is_err(),
        "a client distrusting the coordinator got through"
    );
    let f = refusal(&c, "client_alert").await;
    assert!(f["why"].as_str().expect("why").contains("tls.ca"), "{f}");
    // ... other stacks (gRPC's C core) just hang up after the ClientHello.
    hello_then_hang_up(c.grpc).await;
    refusal(&c, "client_closed").await;

    // No client certificate at all.
    refused_client(&c, &pki, None, "no_cert").await;
    valid_agent_streams(&c, &pki, &good, "eu-1", 5).await;

    // Expired.
    let uri = spiffe("eu-1", "eu-west");
    let expired = pki.agent_with(
        "expired",
        &AgentCert {
            not_before: SystemTime::now() - Duration::from_secs(10 * 86_400),
            not_after: SystemTime::now() - Duration::from_secs(86_400),
            ..AgentCert::valid(&uri)
        },
    );
    let f = refused_client(&c, &pki, Some(&expired), "expired").await;
    assert!(
        f["why"].as_str().expect("why").contains("expired at"),
        "{f}"
    );
    valid_agent_streams(&c, &pki, &good, "eu-1", 7).await;

    // A server certificate used as a client certificate (wrong key usage).
    let server_as_client = CertFiles {
        cert: pki.server_cert.clone(),
        key: pki.server_key.clone(),
    };
    refused_client(&c, &pki, Some(&server_as_client), "bad_usage").await;
    let serverauth = pki.agent_with(
        "serverauth",
        &AgentCert {
            usage: ExtendedKeyUsagePurpose::ServerAuth,
            ..AgentCert::valid(&uri)
        },
    );
    refused_client(&c, &pki, Some(&serverauth), "bad_usage").await;

    // Signed by the right CA but naming no agent.
    let anonymous = pki.agent_with(
        "anonymous",
        &AgentCert {
            uri: None,
            ..AgentCert::valid(&uri)
        },
    );
    let f = refused_client(&c, &pki, Some(&anonymous), "no_identity").await;
    assert!(
        f["why"]
            .as_str()
            .expect("why")
            .contains("spiffe://authpulse/region/"),
        "{f}"
    );
    valid_agent_streams(&c, &pki, &good, "eu-1", 9).await;

    // Not TLS at all (an agent left on `insecure: true`).
    let mut plain = tokio::net::TcpStream::connect(c.grpc).await.expect("tcp");
    plain
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .expect("write");
    refusal(&c, "not_tls").await;
    drop(plain);

    // A certificate for region eu-west whose hello claims us-east.
    let eu2 = pki.agent("eu-2", "eu-west");
    let mut s = open(c.grpc, &pki.ca, Some(&eu2))
        .await
        .expect("TLS is fine");
    s.send(AgentMsg::Hello(Hello {
        agent_id: "eu-2".into(),
        region: "us-east".into(),
        ..Default::default()
    }))
    .await
    .expect("hello");
    let expected =
        "hello claims agent eu-2 region us-east but certificate names agent eu-2 region eu-west";
    match s.next().await {
        Ok(CoordMsg::Reject(r)) => assert_eq!(r.reason, expected),
        other => panic!("expected a reject, got {other:?}"),
    }
    match s.next().await {
        Err(status) => assert_eq!(status.code(), Code::PermissionDenied, "{status}"),
        other => panic!("expected PERMISSION_DENIED, got {other:?}"),
    }
    let log = c.process.log_text();
    assert!(
        log_events(&log, "rejected agent stream")
            .iter()
            .any(|f| f["reason"] == expected),
        "the coordinator logs the mismatch; log:\n{log}"
    );

    // ... and one claiming another agent id.
    let mut s = open(c.grpc, &pki.ca, Some(&eu2))
        .await
        .expect("TLS is fine");
    match s.hello("eu-1", "eu-west").await {
        Err(e) => assert!(
            e.contains("hello claims agent eu-1 region eu-west but certificate names agent eu-2 region eu-west"),
            "{e}"
        ),
        Ok(_) => panic!("eu-2's certificate was accepted for eu-1"),
    }

    // The right hello with the same certificate works; results for another
    // region are still refused on the stream.
    let mut s = open(c.grpc, &pki.ca, Some(&eu2))
        .await
        .expect("TLS is fine");
    s.hello("eu-2", "eu-west").await.expect("matching hello");
    s.send(AgentMsg::Results(ResultBatch {
        results: vec![result("eu-2", "us-east", 1)],
        low_watermark: 0,
    }))
    .await
    .expect("send");
    match s.next().await {
        Ok(CoordMsg::Reject(r)) => assert!(r.reason.contains("result for region"), "{r:?}"),
        other => panic!("expected a reject, got {other:?}"),
    }
    valid_agent_streams(&c, &pki, &good, "eu-1", 11).await;

    // The stalled client was dropped after the handshake timeout.
    let f = refusal(&c, "timeout").await;
    assert!(f["why"].as_str().expect("why").contains("10s"), "{f}");
    drop(stalled);

    // Refusals are counted by reason.
    let metrics = reqwest::get(format!("http://{}/metrics", c.http))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for reason in [
        "unknown_ca",
        "client_alert",
        "client_closed",
        "no_cert",
        "expired",
        "bad_usage",
        "no_identity",
        "not_tls",
        "timeout",
    ] {
        assert!(
            metrics.contains(&format!(
                "authpulse_coordinator_tls_rejected_total{{reason=\"{reason}\"}}"
            )),
            "{reason} counted:\n{metrics}"
        );
    }
    assert!(
        metrics
            .contains("authpulse_coordinator_rejected_streams_total{reason=\"identity_mismatch\"}"),
        "{metrics}"
    );
}

fn authpulse(args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(bin("authpulse"))
        .args(args)
        .output()
        .expect("run authpulse");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_binary_streams_over_mtls_with_certs_from_the_cli() {
    let dir = TempDir::new("ap-mtls-e2e");
    let pki = dir.path().join("pki");
    let pki_s = pki.to_str().expect("utf8");
    let (code, out) = authpulse(&["certs", "init", "--out", pki_s, "--san", "coordinator.test"]);
    assert_eq!(code, 0, "{out}");
    let ca = pki.join("ca.pem");
    let ca_key = pki.join("ca.key");
    let (code, out) = authpulse(&[
        "certs",
        "agent",
        "--out",
        pki_s,
        "--ca",
        ca.to_str().expect("utf8"),
        "--ca-key",
        ca_key.to_str().expect("utf8"),
        "--agent-id",
        "tls-agent",
        "--region",
        "eu-west",
        "--days",
        "30",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("spiffe://authpulse/region/eu-west/agent/tls-agent"),
        "{out}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for key in ["ca.key", "coordinator.key", "tls-agent.key"] {
            let mode = std::fs::metadata(pki.join(key))
                .expect(key)
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{key}");
        }
    }
    // The CA is not replaced by accident.
    let (code, out) = authpulse(&["certs", "init", "--out", pki_s]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("already exists"), "{out}");

    // Coordinator on fixed ports so the probe can target its own /healthz.
    let (grpc_port, http_port) = (free_port(), free_port());
    let catalog = dir.path().join("catalog.yaml");
    std::fs::write(
        &catalog,
        format!(
            "probes:\n  - id: coordinator-health\n    kind: http\n    url: http://127.0.0.1:{http_port}/healthz\n    interval: 1s\n    timeout: 800ms\n"
        ),
    )
    .expect("catalog");
    let config = dir.path().join("coordinator.yaml");
    std::fs::write(
        &config,
        format!(
            "grpc_listen: 127.0.0.1:{grpc_port}\nhttp_listen: 127.0.0.1:{http_port}\ndata_dir: {}\ncatalog: [{}]\n\
             tls:\n  cert: {}\n  key: {}\n  client_ca: {}\n",
            dir.path().join("data").display(),
            catalog.display(),
            pki.join("coordinator.pem").display(),
            pki.join("coordinator.key").display(),
            ca.display(),
        ),
    )
    .expect("config");
    let mut coordinator = Process::start(
        "authpulse-coordinator",
        &["--config", config.to_str().expect("utf8")],
        &[],
        dir.path(),
    )
    .await;
    coordinator.line_after("listening on http://").await;

    // The first URL is dead: the agent moves on to the second, whose host
    // name (localhost) the coordinator's certificate carries.
    let dead = free_port();
    let agent_cfg = dir.path().join("agent.yaml");
    std::fs::write(
        &agent_cfg,
        format!(
            "agent_id: tls-agent\nregion: eu-west\n\
             coordinator: [https://127.0.0.1:{dead}, https://localhost:{grpc_port}]\n\
             tls:\n  cert: {}\n  key: {}\n  ca: {}\n\
             listen: 127.0.0.1:0\ndata_dir: {}\n",
            pki.join("tls-agent.pem").display(),
            pki.join("tls-agent.key").display(),
            ca.display(),
            dir.path().join("agent-data").display(),
        ),
    )
    .expect("agent config");
    let mut agent = Process::start(
        "authpulse-agent",
        &["--config", agent_cfg.to_str().expect("utf8")],
        &[],
        dir.path(),
    )
    .await;
    agent.line_after("listening on http://").await;

    let client = reqwest::Client::new();
    let api = format!("http://127.0.0.1:{http_port}");
    let row = wait_for(
        Duration::from_secs(60),
        "a result stored over mTLS",
        || async {
            let probes: serde_json::Value = client
                .get(format!("{api}/api/v1/probes"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            probes["probes"]
                .as_array()?
                .iter()
                .find(|p| p["agent_id"] == "tls-agent" && p["outcome"] == "success")
                .cloned()
        },
    )
    .await;
    assert_eq!(row["region"], "eu-west", "{row}");
    let agent_log = agent.log_text();
    assert!(
        agent_log.contains("switched to another coordinator"),
        "the agent tried the dead URL first, then the live one; log:\n{agent_log}"
    );
    let coord_log = coordinator.log_text();
    assert!(
        log_events(&coord_log, "agent connected")
            .iter()
            .any(|f| f["agent_id"] == "tls-agent"),
        "{coord_log}"
    );
    assert!(
        log_events(&coord_log, REFUSED).is_empty(),
        "nothing refused: {coord_log}"
    );
    assert_eq!(agent.terminate().await, Some(0), "{}", agent.log_text());
}

fn run(binary: &str, args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(bin(binary))
        .args(args)
        .env("AUTHPULSE_LOG", "warn")
        .output()
        .expect("run");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn startup_errors_name_the_problem() {
    let dir = TempDir::new("ap-mtls-start");
    let pki = Pki::new(dir.path(), "main");
    let write = |name: &str, text: String| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write");
        p.display().to_string()
    };

    // Coordinator: neither tls nor insecure.
    let cfg = write(
        "c1.yaml",
        "grpc_listen: 127.0.0.1:0\nhttp_listen: 127.0.0.1:0\n".into(),
    );
    let (code, out) = run("authpulse-coordinator", &["--config", &cfg]);
    assert_ne!(code, 0);
    assert!(
        out.contains("tls: { cert, key, client_ca }") && out.contains("insecure: true"),
        "{out}"
    );

    // Coordinator: both.
    let cfg = write(
        "c2.yaml",
        format!("insecure: true\n{}", pki.coordinator_tls_yaml()),
    );
    let (code, out) = run("authpulse-coordinator", &["--config", &cfg]);
    assert_ne!(code, 0);
    assert!(out.contains("both set"), "{out}");

    // Coordinator: a missing key file is named.
    let missing = dir.path().join("nope.key");
    let cfg = write(
        "c3.yaml",
        format!(
            "grpc_listen: 127.0.0.1:0\nhttp_listen: 127.0.0.1:0\ndata_dir: {}\ntls:\n  cert: {}\n  key: {}\n  client_ca: {}\n",
            dir.path().join("data").display(),
            pki.server_cert.display(),
            missing.display(),
            pki.ca.display()
        ),
    );
    let (code, out) = run("authpulse-coordinator", &["--config", &cfg]);
    assert_ne!(code, 0);
    assert!(
        out.contains("tls.key") && out.contains(&missing.display().to_string()),
        "{out}"
    );

    // Agent: its certificate names another region than its config.
    let files = pki.agent("a-1", "us-east");
    let cfg = write(
        "a1.yaml",
        format!(
            "agent_id: a-1\nregion: eu-west\ncoordinator: https://127.0.0.1:1\nlisten: null\ndata_dir: {}\n{}",
            dir.path().join("agent-data").display(),
            pki.agent_tls_yaml(&files)
        ),
    );
    let (code, out) = run("authpulse-agent", &["--config", &cfg]);
    assert_ne!(code, 0);
    assert!(
        out.contains("names agent a-1 region us-east but this agent is configured as agent a-1 region eu-west"),
        "{out}"
    );

    // Agent: tls with an http:// URL.
    let files = pki.agent("a-1", "eu-west");
    let cfg = write(
        "a2.yaml",
        format!(
            "agent_id: a-1\nregion: eu-west\ncoordinator: http://127.0.0.1:1\nlisten: null\ndata_dir: {}\n{}",
            dir.path().join("agent-data").display(),
            pki.agent_tls_yaml(&files)
        ),
    );
    let (code, out) = run("authpulse-agent", &["--config", &cfg]);
    assert_ne!(code, 0);
    assert!(out.contains("use https://"), "{out}");
}
