//! Deploy gates end to end with the real binaries: an agent probes a real
//! OpenID provider (oidc-provider) for a coordinator process; the gate
//! passes, fails when the provider is stopped (HTTP 503, Flagger POST,
//! Argo's `always200`, `authpulse gate` exit 1), passes again when it
//! recovers (`authpulse gate --wait` exits 0), fails closed when the agent
//! dies and its data goes stale (or passes with `on_stale: pass`), and the
//! coordinator's audit log holds every decision and verifies with
//! `authpulse audit verify`. An unreachable coordinator is exit 2.
use std::time::Duration;

use authpulse_tests::fleet::{AgentFixture, CoordinatorFixture};
use authpulse_tests::peers::OidcPeer;
use authpulse_tests::{TempDir, wait_for};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);
const SLO: &str = "idp-availability";

fn catalog(issuer: &str) -> String {
    format!(
        r#"
probes:
  - id: idp-discovery
    kind: oidc_discovery
    issuer: {issuer}
    interval: 1s
    timeout: 800ms
slos:
  - id: {SLO}
    probes: [idp-discovery]
    objective: 99
    window: 1h
gates:
  - id: deploy
    slos: [{SLO}]
    block_when: [{{ sli_below: {{ window: 1m, value: 0.9 }} }}]
  - id: strict
    slos: [{SLO}]
    block_when: [page_alert, {{ budget_below: 0.5 }}]
  - id: fresh
    slos: [{SLO}]
    block_when: [{{ escalation_within: 1m }}]
    stale_after: 3s
  - id: lenient
    slos: [{SLO}]
    block_when: [{{ escalation_within: 1m }}]
    stale_after: 3s
    on_stale: pass
"#
    )
}

/// `authpulse <args>`: (exit code, stdout, stderr).
async fn authpulse(args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(authpulse_tests::bin("authpulse"))
        .args(args)
        .env_remove("AUTHPULSE_TOKEN")
        .env_remove("AUTHPULSE_COORDINATOR_URL")
        .output()
        .await
        .expect("run authpulse");
    (
        out.status.code().expect("exit code"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// GET the gate: (status, body).
async fn gate(client: &reqwest::Client, api: &str, id: &str, query: &str) -> Option<(u16, Value)> {
    let r = client
        .get(format!("{api}/api/v1/gates/{id}{query}"))
        .send()
        .await
        .ok()?;
    let status = r.status().as_u16();
    Some((status, r.json().await.ok()?))
}

/// Waits until the gate answers `status` and returns the body.
async fn gate_becomes(client: &reqwest::Client, api: &str, id: &str, status: u16) -> Value {
    wait_for(WAIT, &format!("gate {id} to answer {status}"), || async {
        gate(client, api, id, "")
            .await
            .filter(|(s, _)| *s == status)
            .map(|(_, v)| v)
    })
    .await
}

fn reasons(v: &Value) -> Vec<String> {
    v["reasons"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gate_follows_the_idp_through_an_outage_and_recovery() {
    let dir = TempDir::new("ap-gates");
    let mut peer = OidcPeer::start().await;
    let mut coord = CoordinatorFixture::start(&dir, &catalog(&peer.issuer)).await;
    let mut agent = AgentFixture::start(&dir, "gates-agent", &coord.grpc_url(), "").await;
    let client = reqwest::Client::new();
    let api = coord.api.clone();

    // Healthy: every gate passes, the CLI exits 0.
    let v = gate_becomes(&client, &api, "deploy", 200).await;
    assert_eq!(v["decision"], "pass");
    assert_eq!(v["slos"][0]["id"], SLO);
    assert_eq!(v["slos"][0]["checks"][0]["condition"], "sli_below");
    gate_becomes(&client, &api, "strict", 200).await;
    let (code, out, err) = authpulse(&["gate", "deploy", "--coordinator", &api]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("gate deploy: PASS"), "{out}");

    // Flagger's webhook payload, as its canary analysis POSTs it.
    let flagger = json!({
        "name": "podinfo", "namespace": "test", "phase": "Progressing",
        "checksum": "85d557f47b", "metadata": { "rollout": "v2" }
    });
    let r = client
        .post(format!("{api}/api/v1/gates/deploy"))
        .json(&flagger)
        .send()
        .await
        .expect("flagger post");
    assert_eq!(r.status().as_u16(), 200);

    // The IdP goes down: the gate fails with the SLO and the number.
    peer.stop().await;
    let v = gate_becomes(&client, &api, "deploy", 503).await;
    assert_eq!(v["decision"], "fail");
    let r = reasons(&v);
    assert_eq!(r.len(), 1, "{r:?}");
    assert!(
        r[0].starts_with(&format!("{SLO}: SLI over the last 1m ")) && r[0].ends_with(" < 0.9"),
        "{r:?}"
    );
    let v = gate_becomes(&client, &api, "strict", 503).await;
    let r = reasons(&v);
    assert!(
        r.iter().any(|x| x.starts_with(&format!(
            "{SLO}: page-level burn-rate alert (1h/5m): burn rate "
        ))),
        "{r:?}"
    );
    assert!(
        r.iter().any(
            |x| x.starts_with(&format!("{SLO}: error budget remaining ")) && x.ends_with(" < 0.5")
        ),
        "{r:?}"
    );

    // The same decision for every kind of caller.
    let (code, out, err) = authpulse(&["gate", "deploy", "--coordinator", &api]).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.starts_with("gate deploy: FAIL"), "{out}");
    assert!(
        out.contains(&format!("  - {SLO}: SLI over the last 1m ")),
        "{out}"
    );
    let (status, v) = gate(&client, &api, "deploy", "?always200=true")
        .await
        .expect("always200");
    assert_eq!((status, v["decision"].as_str()), (200, Some("fail")));
    let r = client
        .post(format!("{api}/api/v1/gates/deploy"))
        .json(&json!({ "name": "podinfo", "namespace": "test", "phase": "Progressing", "checksum": "85d557f47b" }))
        .send()
        .await
        .expect("flagger post");
    assert_eq!(r.status().as_u16(), 503);

    // It recovers: a pipeline step waiting on the gate goes on.
    peer.restart().await;
    let (code, out, err) = authpulse(&[
        "gate",
        "deploy",
        "--coordinator",
        &api,
        "--wait",
        "4m",
        "--poll-interval",
        "2s",
    ])
    .await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.starts_with("gate deploy: PASS"), "{out}");
    assert!(
        err.contains("waiting: gate deploy: FAIL"),
        "it waited: {err}"
    );

    // The agent dies: its data goes stale; fail-closed unless on_stale: pass.
    gate_becomes(&client, &api, "fresh", 200).await;
    agent.kill().await;
    let v = gate_becomes(&client, &api, "fresh", 503).await;
    let r = reasons(&v);
    assert_eq!(r.len(), 1, "{r:?}");
    assert!(
        r[0].starts_with(&format!("{SLO}: stale: newest result is ")),
        "{r:?}"
    );
    assert!(
        r[0].ends_with(" > stale_after 3s (on_stale: fail)"),
        "{r:?}"
    );
    let (status, v) = gate(&client, &api, "lenient", "").await.expect("lenient");
    assert_eq!(status, 200, "{v:#}");
    assert!(
        v["notes"][0]
            .as_str()
            .is_some_and(|n| n.ends_with("(on_stale: pass)")),
        "{v:#}"
    );

    // Every decision is in the audit log, which verifies.
    let log = dir.path().join("coordinator-data").join("audit.jsonl");
    let (code, out, err) = authpulse(&["audit", "verify", log.to_str().expect("utf-8")]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("ok: "), "{out}");
    let entries: Vec<Value> = std::fs::read_to_string(&log)
        .expect("audit log")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    let decisions: Vec<&Value> = entries
        .iter()
        .filter(|e| e["kind"] == "gate_decision")
        .collect();
    assert!(decisions.len() >= 8, "{}", decisions.len());
    let posted: Vec<&&Value> = decisions
        .iter()
        .filter(|e| e["fields"]["method"] == "POST")
        .collect();
    assert_eq!(posted.len(), 2);
    assert_eq!(posted[0]["fields"]["webhook"], flagger);
    assert_eq!(posted[0]["fields"]["decision"], "pass");
    assert_eq!(posted[1]["fields"]["decision"], "fail");
    assert!(
        decisions.iter().any(|e| e["fields"]["user_agent"]
            .as_str()
            .is_some_and(|ua| ua.starts_with("authpulse-cli/"))),
        "the CLI's requests are recorded as such"
    );

    // The coordinator is gone: unknown, exit 2.
    coord.kill().await;
    let (code, _, err) = authpulse(&["gate", "deploy", "--coordinator", &api]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("coordinator unreachable"), "{err}");
}
