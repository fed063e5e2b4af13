//! The vertical slice, end to end with the real binaries as separate
//! processes: an agent probes a real OpenID provider (oidc-provider), the
//! coordinator stores results and computes the SLO; the provider goes down
//! (connect failures, falling SLO) and comes back (recovery); the coordinator
//! restarts on the same database and ingest continues without duplicates.
use std::time::Duration;

use authpulse_tests::fleet::CoordinatorFixture;
use authpulse_tests::peers::OidcPeer;
use authpulse_tests::process::Process;
use authpulse_tests::{TempDir, wait_for};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

async fn get_json(client: &reqwest::Client, url: &str) -> Option<Value> {
    client.get(url).send().await.ok()?.json().await.ok()
}

fn probe_row<'a>(probes: &'a Value, id: &str) -> Option<&'a Value> {
    probes["probes"]
        .as_array()?
        .iter()
        .find(|p| p["probe_id"] == id)
}

fn slo<'a>(slos: &'a Value, id: &str) -> Option<&'a Value> {
    slos["slos"].as_array()?.iter().find(|s| s["id"] == id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_probes_real_idp_and_coordinator_tracks_slo() {
    let mut peer = OidcPeer::start().await;
    let dir = TempDir::new("ap-e2e");
    let catalog = format!(
        "probes:\n  - id: idp-discovery\n    kind: oidc_discovery\n    issuer: {}\n    interval: 1s\n    timeout: 800ms\n\
         slos:\n  - id: idp-availability\n    probes: [idp-discovery]\n    objective: 99\n    window: 1h\n",
        peer.issuer
    );
    // A fixed gRPC port, so a restarted coordinator is found at the same address.
    let mut coordinator = CoordinatorFixture::start(&dir, &catalog).await;
    let grpc_port = coordinator.grpc_port;
    let api = coordinator.api.clone();

    let agent_cfg = dir.path().join("agent.yaml");
    std::fs::write(
        &agent_cfg,
        // data_dir in the test's own directory: a spool left by an earlier run
        // would otherwise continue its numbering here.
        format!(
            "agent_id: e2e-agent\nregion: local\ncoordinator: http://127.0.0.1:{grpc_port}\ninsecure: true\nlisten: 127.0.0.1:0\ndata_dir: {}\n",
            dir.path().join("agent-data").display()
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
    let agent_http = format!("http://{}", agent.line_after("listening on http://").await);
    let client = reqwest::Client::new();

    // 1. Healthy: results stored with real phase timings, SLO all good.
    let row = wait_for(WAIT, "a successful stored result", || async {
        let probes = get_json(&client, &format!("{api}/api/v1/probes")).await?;
        let row = probe_row(&probes, "idp-discovery")?.clone();
        (row["outcome"] == "success").then_some(row)
    })
    .await;
    assert_eq!(row["region"], "local");
    assert_eq!(row["agent_id"], "e2e-agent");
    let t = &row["timings"];
    assert!(
        t["connect_ms"].as_f64().is_some_and(|v| v > 0.0),
        "connect timing: {row}"
    );
    assert!(
        t["ttfb_ms"].as_f64().is_some_and(|v| v > 0.0),
        "ttfb timing: {row}"
    );
    assert!(t["total_ms"].as_f64().expect("total") >= t["ttfb_ms"].as_f64().expect("ttfb"));
    assert!(
        t["dns_ms"].is_null() && t["tls_ms"].is_null(),
        "no DNS/TLS to 127.0.0.1 over http: {row}"
    );
    assert_eq!(row["steps"].as_array().map(|s| s.len()), Some(2), "{row}");

    let healthy = wait_for(WAIT, "three good results in the SLO", || async {
        let slos = get_json(&client, &format!("{api}/api/v1/slos")).await?;
        let s = slo(&slos, "idp-availability")?.clone();
        (s["total"].as_u64()? >= 3).then_some(s)
    })
    .await;
    assert_eq!(
        healthy["good"], healthy["total"],
        "all good while the IdP is up: {healthy}"
    );
    assert_eq!(healthy["sli_value"].as_f64(), Some(1.0));
    assert_eq!(healthy["error_budget_remaining"].as_f64(), Some(1.0));

    // 2. The IdP goes away: connect failures, the SLO falls.
    peer.stop().await;
    wait_for(WAIT, "a connect failure stored", || async {
        let probes = get_json(&client, &format!("{api}/api/v1/probes")).await?;
        let row = probe_row(&probes, "idp-discovery")?;
        (row["outcome"] == "failure" && row["failure_class"] == "connect").then_some(())
    })
    .await;
    let falling = wait_for(WAIT, "the SLO to count failures", || async {
        let slos = get_json(&client, &format!("{api}/api/v1/slos")).await?;
        let s = slo(&slos, "idp-availability")?.clone();
        (s["bad"].as_u64()? >= 2).then_some(s)
    })
    .await;
    let sli = falling["sli_value"].as_f64().expect("sli");
    assert!(sli < 1.0, "{falling}");
    assert!(
        falling["error_budget_remaining"].as_f64().expect("budget") < 1.0,
        "{falling}"
    );
    assert!(
        falling["burn_rate_1h"].as_f64().expect("burn") > 1.0,
        "failing now burns fast: {falling}"
    );

    // 3. It comes back: successes again, good count grows.
    peer.restart().await;
    let good_before = falling["good"].as_u64().expect("good");
    wait_for(WAIT, "recovery after the IdP restarts", || async {
        let probes = get_json(&client, &format!("{api}/api/v1/probes")).await?;
        let row = probe_row(&probes, "idp-discovery")?;
        let slos = get_json(&client, &format!("{api}/api/v1/slos")).await?;
        let good = slo(&slos, "idp-availability")?["good"].as_u64()?;
        (row["outcome"] == "success" && good > good_before).then_some(())
    })
    .await;

    // 4. Both binaries expose their metrics.
    let agent_metrics = authpulse_tests::get_text(&client, format!("{agent_http}/metrics")).await;
    assert!(
        agent_metrics.contains("authpulse_agent_probe_runs_total{"),
        "{agent_metrics}"
    );
    assert!(
        agent_metrics.contains("class=\"connect\""),
        "failures by class: {agent_metrics}"
    );
    assert!(
        agent_metrics.contains("authpulse_agent_probe_duration_seconds_bucket"),
        "histogram: {agent_metrics}"
    );
    let coord_metrics = authpulse_tests::get_text(&client, format!("{api}/metrics")).await;
    assert!(
        coord_metrics.contains("authpulse_coordinator_results_ingested_total"),
        "{coord_metrics}"
    );
    assert_eq!(
        authpulse_tests::get_status(&client, format!("{api}/healthz")).await,
        200
    );
    assert_eq!(
        authpulse_tests::get_status(&client, format!("{agent_http}/healthz")).await,
        200
    );
    assert_eq!(
        authpulse_tests::get_status(&client, format!("{agent_http}/readyz")).await,
        200
    );

    // 5. Coordinator crash and restart on the same database: the agent
    // reconnects, keeps numbering after what is stored, and nothing is doubled.
    let before = get_json(&client, &format!("{api}/api/v1/slos"))
        .await
        .expect("slos");
    let total_before = slo(&before, "idp-availability")
        .and_then(|s| s["total"].as_u64())
        .expect("total");
    coordinator.kill().await;
    coordinator.restart().await;
    let api2 = coordinator.api.clone();
    wait_for(WAIT, "results after the coordinator restart", || async {
        let slos = get_json(&client, &format!("{api2}/api/v1/slos")).await?;
        let total = slo(&slos, "idp-availability")?["total"].as_u64()?;
        (total >= total_before + 3).then_some(())
    })
    .await;
    let agents = get_json(&client, &format!("{api2}/api/v1/agents"))
        .await
        .expect("agents");
    let me = agents["agents"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["agent_id"] == "e2e-agent"))
        .cloned()
        .expect("agent listed");
    let slos = get_json(&client, &format!("{api2}/api/v1/slos"))
        .await
        .expect("slos");
    let total = slo(&slos, "idp-availability")
        .and_then(|s| s["total"].as_u64())
        .expect("total");
    // Every stored result has a distinct seq 1..=acked: total stored == highest acked (± in-flight).
    let acked = me["acked_seq"].as_u64().expect("acked_seq");
    assert!(
        acked <= total && total <= acked + 5,
        "stored {total} vs acked {acked}: duplicates or gaps ({me})"
    );
    assert_eq!(
        agent.terminate().await,
        Some(0),
        "agent exits cleanly on SIGTERM; log:\n{}",
        agent.log_text()
    );
}

/// A secret referenced by a probe never leaves the agent: not in stored
/// results, the APIs, either side's metrics or logs, or the database file,
/// even when the probed server echoes it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_leave_the_agent() {
    use authpulse_tests::fault::{FaultServer, Reply};
    use authpulse_tests::fleet::{AgentFixture, CoordinatorFixture, metric};
    let secret = "tok-7c1d9e55-never-leaves-the-agent";
    let server =
        FaultServer::start(move |_| Reply::status(401, &format!("invalid token: Bearer {secret}")))
            .await;
    let dir = TempDir::new("ap-e2e-secret");
    let secrets = dir.path().join("secrets");
    std::fs::create_dir_all(&secrets).expect("dir");
    std::fs::write(secrets.join("api_token"), format!("Bearer {secret}\n")).expect("secret");
    let catalog = format!(
        "probes:\n  - id: api\n    kind: http\n    url: {}\n    interval: 1s\n    timeout: 800ms\n    headers:\n      Authorization: {{ secret: api_token }}\n",
        server.url("/")
    );
    let coord = CoordinatorFixture::start(&dir, &catalog).await;
    let agent = AgentFixture::start(
        &dir,
        "s1",
        &coord.grpc_url(),
        &format!("secrets_dir: {}\n", secrets.display()),
    )
    .await;
    let client = reqwest::Client::new();
    let probes = wait_for(WAIT, "a stored 401 result", || async {
        let probes = get_json(&client, &format!("{}/api/v1/probes", coord.api)).await?;
        let row = probe_row(&probes, "api")?;
        (row["failure_class"] == "http_status").then_some(probes)
    })
    .await;
    assert!(server.requests() > 0);
    let detail = probe_row(&probes, "api").expect("row")["detail"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        detail.contains("[redacted]"),
        "the echoed secret is scrubbed: {detail}"
    );
    let agent_metrics = agent.metrics(&client).await.expect("agent metrics");
    assert!(metric(&agent_metrics, "authpulse_agent_probe_runs_total") > 0.0);
    let mut seen = vec![
        ("/api/v1/probes".to_string(), probes.to_string()),
        ("agent /metrics".into(), agent_metrics),
        ("agent log".into(), agent.log()),
        ("coordinator log".into(), coord.log()),
    ];
    for path in ["/api/v1/agents", "/api/v1/slos", "/metrics"] {
        let text = authpulse_tests::get_text(&client, format!("{}{path}", coord.api)).await;
        seen.push((format!("coordinator {path}"), text));
    }
    for entry in std::fs::read_dir(dir.path().join("coordinator-data")).expect("data dir") {
        let path = entry.expect("entry").path();
        let bytes = std::fs::read(&path).expect("read db file");
        seen.push((
            path.display().to_string(),
            String::from_utf8_lossy(&bytes).into_owned(),
        ));
    }
    for (what, text) in &seen {
        assert!(!text.contains(secret), "the secret leaked into {what}");
    }
}
