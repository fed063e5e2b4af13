//! An independent gRPC implementation against the real coordinator: Python
//! `grpcio` (gRPC's C core), with stubs generated from the .proto at test
//! time, connects over mTLS with an agent certificate, sends a Hello and a
//! ResultBatch, and checks the Ack and Assignment it gets
//! (tests/python/grpc_client_test.py). The venv comes from tests/run.
use std::path::PathBuf;
use std::time::Duration;

use authpulse_tests::fleet::{CoordinatorFixture, CoordinatorOptions};
use authpulse_tests::mtls::{Pki, log_events};
use authpulse_tests::{TempDir, repo_root};

/// The venv's python: `AUTHPULSE_TEST_PYTHON` (tests/run sets it) or
/// `target/test-venv/bin/python`.
fn venv_python() -> PathBuf {
    let python = std::env::var_os("AUTHPULSE_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/test-venv/bin/python"));
    assert!(
        python.exists(),
        "{} is missing: run tests/run, which creates the Python venv target/test-venv \
         with grpcio and grpcio-tools from tests/python/requirements.txt",
        python.display()
    );
    python
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_grpcio_client_streams_over_mtls() {
    let python = venv_python();
    let dir = TempDir::new("ap-py-grpc");
    let pki = Pki::new(dir.path(), "main");
    let agent = pki.agent("py-agent", "eu-west");
    let mut fixture = CoordinatorFixture::start_opts(
        &dir,
        "probes:\n  - id: eu-health\n    kind: http\n    regions: [eu-west]\n    url: http://127.0.0.1:9/health\n    interval: 30s\n",
        CoordinatorOptions {
            tls_yaml: Some(pki.coordinator_tls_yaml()),
            ..CoordinatorOptions::default()
        },
    )
    .await;
    let http = fixture.api.trim_start_matches("http://").to_string();
    let grpc = fixture.grpc_addr().to_string();
    let coordinator = fixture.process();

    let script = repo_root().join("tests/python/grpc_client_test.py");
    let run = tokio::process::Command::new(&python)
        .arg(&script)
        .args(["--target", &grpc])
        .arg("--ca")
        .arg(&pki.ca)
        .arg("--cert")
        .arg(&agent.cert)
        .arg("--key")
        .arg(&agent.key)
        .args(["--agent-id", "py-agent", "--region", "eu-west"])
        .args(["--expect-probe", "eu-health"])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the Python client finishes within 120s")
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{} {} failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}\ncoordinator log:\n{}",
        python.display(),
        script.display(),
        out.status,
        coordinator.log_text()
    );
    assert!(stdout.starts_with("ok: "), "{stdout}");

    // The coordinator saw the certificate's identity and stored the results.
    let log = coordinator.log_text();
    assert!(
        log_events(&log, "agent connected")
            .iter()
            .any(|f| f["agent_id"] == "py-agent" && f["region"] == "eu-west"),
        "{log}"
    );
    let agents: serde_json::Value = reqwest::get(format!("http://{http}/api/v1/agents"))
        .await
        .expect("agents")
        .json()
        .await
        .expect("json");
    let me = agents["agents"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["agent_id"] == "py-agent"))
        .cloned()
        .unwrap_or_else(|| panic!("py-agent listed: {agents}"));
    assert_eq!(me["acked_seq"], 3, "{me}");
    assert_eq!(me["version"], "python-grpcio", "{me}");
}
