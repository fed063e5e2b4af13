//! Deploy gates against an in-process coordinator whose store holds exactly
//! the results each situation needs: every condition kind blocks with the
//! SLO and the number that failed (and only then), stale data fails closed
//! (or passes with `on_stale: pass`), the HTTP contract (200/503, 404,
//! `always200`, Flagger POSTs) with every decision in the audit log, gate
//! validation, and the `authpulse gate` CLI's exit codes.
//!
//! Over 800 lines on purpose: the gate contract (HTTP, audit, CLI) is one
//! behaviour, tested against one in-process coordinator setup.
mod common;

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use authpulse_proto::catalog::load_str;
use authpulse_proto::v1::{FailureClass, Outcome, ProbeResult, StepResult};
use common::*;
use serde_json::{Value, json};

const MIN: i64 = 60_000;

const CATALOG: &str = r#"
probes:
  - id: login
    kind: http
    url: https://idp.example.com/login
    interval: 10s
  - id: authz
    kind: http
    url: https://idp.example.com/authz
    interval: 10s
  - id: sparse
    kind: http
    url: https://idp.example.com/sparse
    interval: 10s
slos:
  - id: login-availability
    probes: [login]
    objective: 99
    window: 30d
    coverage: { min: 0 }
  - id: authz-availability
    probes: [authz]
    objective: 99
    window: 30d
    coverage: { min: 0 }
  - id: sparse-availability
    probes: [sparse]
    objective: 99
    window: 30d
gates:
  - id: page
    slos: [login-availability]
    block_when: [page_alert]
  - id: ticket
    slos: [login-availability]
    block_when: [ticket_alert]
  - id: exhausted
    slos: [login-availability]
    block_when: [budget_exhausted]
  - id: budget
    slos: [login-availability]
    block_when: [{ budget_below: 0.2 }]
  - id: escalation
    slos: [authz-availability]
    block_when: [escalation]
  - id: escalation-30m
    slos: [authz-availability]
    block_when: [{ escalation_within: 30m }]
  - id: sli
    slos: [login-availability]
    block_when: [{ sli_below: { window: 15m, value: 0.95 } }]
  - id: deploy
    description: Everything a production deploy waits for
    slos: [login-availability, authz-availability]
    block_when: [page_alert, ticket_alert, { budget_below: 0.2 }, { escalation_within: 30m }, { sli_below: { window: 15m, value: 0.99 } }]
  - id: fresh
    slos: [login-availability]
    block_when: [budget_exhausted]
  - id: lenient
    slos: [login-availability]
    block_when: [budget_exhausted]
    on_stale: pass
  - id: coverage
    slos: [sparse-availability]
    block_when: [budget_exhausted]
"#;

/// Results stored directly, each with its own seq for agent `a1`.
struct Feed<'a> {
    h: &'a Harness,
    seq: u64,
}

impl<'a> Feed<'a> {
    fn new(h: &'a Harness) -> Feed<'a> {
        Feed { h, seq: 0 }
    }

    fn next(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// `n` results of `probe` (the first `bad` of them failed), spread one
    /// second apart ending at `end_ms`.
    async fn runs(&mut self, probe: &str, n: u64, bad: u64, end_ms: i64) {
        let results: Vec<ProbeResult> = (0..n)
            .map(|i| {
                let at = end_ms - (n - 1 - i) as i64 * 1000;
                result_at("a1", "eu-west", self.next(), probe, i >= bad, at, 50_000)
            })
            .collect();
        self.store(results).await;
    }

    /// Stores `results` as if they had arrived right after the newest ran.
    async fn store(&self, results: Vec<ProbeResult>) {
        let received = results.iter().map(|r| r.started_unix_ms + 1).max();
        self.h
            .running
            .store()
            .insert_batch_received("a1", &results, None, received.unwrap_or_default())
            .await
            .expect("insert");
    }

    /// A result of `probe` with failure class escalation, in the result
    /// itself or (`in_step`) in a journey step.
    async fn escalation(&mut self, probe: &str, at_ms: i64, in_step: bool) {
        let mut r = result_at("a1", "eu-west", self.next(), probe, false, at_ms, 50_000);
        if in_step {
            r.failure_class = FailureClass::Assertion as i32;
            r.steps = vec![StepResult {
                name: "deny-admin".into(),
                kind: "permission".into(),
                outcome: Outcome::Failure as i32,
                failure_class: FailureClass::Escalation as i32,
                detail: "allowed".into(),
                ..Default::default()
            }];
        } else {
            r.failure_class = FailureClass::Escalation as i32;
        }
        self.store(vec![r]).await;
    }
}

async fn gate(h: &Harness, id: &str) -> (u16, Value) {
    let (status, body) = http_get(h.running.http_addr(), &format!("/api/v1/gates/{id}")).await;
    (status, serde_json::from_str(&body).expect("JSON body"))
}

fn reasons(v: &Value) -> Vec<String> {
    v["reasons"]
        .as_array()
        .expect("reasons")
        .iter()
        .map(|r| r.as_str().expect("string").to_string())
        .collect()
}

async fn expect_pass(h: &Harness, id: &str) -> Value {
    let (status, v) = gate(h, id).await;
    assert_eq!(
        (status, v["decision"].as_str()),
        (200, Some("pass")),
        "{id}: {v:#}"
    );
    assert_eq!(reasons(&v), Vec::<String>::new());
    v
}

/// The gate fails with exactly one reason; returns it.
async fn expect_fail(h: &Harness, id: &str) -> String {
    let (status, v) = gate(h, id).await;
    assert_eq!(
        (status, v["decision"].as_str()),
        (503, Some("fail")),
        "{id}: {v:#}"
    );
    let r = reasons(&v);
    assert_eq!(r.len(), 1, "{id}: {r:?}");
    r[0].clone()
}

#[tokio::test]
async fn healthy_slos_pass_with_their_numbers() {
    let h = start_with(CATALOG).await;
    let mut feed = Feed::new(&h);
    let now = now_ms();
    feed.runs("login", 50, 0, now - 2000).await;
    feed.runs("authz", 50, 0, now - 2000).await;
    let v = expect_pass(&h, "deploy").await;
    assert_eq!(v["gate"], "deploy");
    assert_eq!(v["description"], "Everything a production deploy waits for");
    assert_eq!(v["on_stale"], "fail");
    assert_eq!(v["stale_after_seconds"], 300.0);
    assert_eq!(
        v["block_when"],
        json!(["page_alert", "ticket_alert", {"budget_below": 0.2}, {"escalation_within": "30m"},
               {"sli_below": {"window": "15m", "value": 0.99}}])
    );
    assert!(v["evaluated_at"].as_str().is_some_and(|t| t.ends_with('Z')));
    let slos = v["slos"].as_array().expect("slos");
    assert_eq!(slos.len(), 2);
    let login = &slos[0];
    assert_eq!(login["id"], "login-availability");
    assert_eq!(login["state"], "ok");
    assert_eq!(login["sli_value"], 1.0);
    assert_eq!(login["error_budget_remaining"], 1.0);
    assert_eq!(login["burn_rates"]["1h"], 0.0);
    assert_eq!(login["stale"], false);
    assert!(login["newest_result_age_seconds"].as_f64().expect("age") < 60.0);
    let checks = login["checks"].as_array().expect("checks");
    assert_eq!(checks.len(), 5);
    assert!(checks.iter().all(|c| c["blocks"] == false), "{checks:?}");
    let sli = checks
        .iter()
        .find(|c| c["condition"] == "sli_below")
        .expect("sli check");
    assert_eq!(
        (sli["value"].as_f64(), sli["threshold"].as_f64()),
        (Some(1.0), Some(0.99))
    );
    assert_eq!(sli["detail"], "SLI over the last 15m 1 ≥ 0.99");
    // Every decision served is recorded.
    assert!(v["audit_seq"].as_u64().is_some_and(|s| s >= 1), "{v}");
}

#[tokio::test]
async fn page_alert_blocks_on_a_fast_burn_only() {
    let h = start_with(CATALOG).await;
    let mut feed = Feed::new(&h);
    let now = now_ms();
    // Half of the last 20 s failed: burn 50 over 1h and 5m (page factor 14.4).
    feed.runs("login", 20, 10, now - 1000).await;
    let reason = expect_fail(&h, "page").await;
    assert_eq!(
        reason,
        "login-availability: page-level burn-rate alert (1h/5m): burn rate 50 over 1h and 50 over 5m, both ≥ 14.4"
    );
}

#[tokio::test]
async fn ticket_alert_blocks_on_a_slow_burn_that_does_not_page() {
    let h = start_with(CATALOG).await;
    let mut feed = Feed::new(&h);
    let now = now_ms();
    // 10 failures 100 minutes ago, 10 successes in the last minute: burn 50
    // over 2h and 1d (ticket), nothing bad in the last 30 minutes (no page).
    feed.runs("login", 10, 10, now - 100 * MIN).await;
    feed.runs("login", 10, 0, now - 1000).await;
    let reason = expect_fail(&h, "ticket").await;
    assert_eq!(
        reason,
        "login-availability: ticket-level burn-rate alert (1d/2h): burn rate 50 over 1d and 50 over 2h, both ≥ 3"
    );
    expect_pass(&h, "page").await;
}

#[tokio::test]
async fn budget_conditions_name_the_remaining_budget() {
    let h = start_with(CATALOG).await;
    let mut feed = Feed::new(&h);
    let now = now_ms();
    // 9 bad of 1000 at 99 %: 0.9 % of 1 % allowed, 0.1 of the budget left.
    feed.runs("login", 9, 9, now - 3 * 3600 * 1000).await;
    feed.runs("login", 991, 0, now - 1000).await;
    let reason = expect_fail(&h, "budget").await;
    assert_eq!(
        reason,
        "login-availability: error budget remaining 0.1 < 0.2"
    );
    expect_pass(&h, "exhausted").await;

    // 21 more bad: 30 of 1021 is three times the budget.
    feed.runs("login", 21, 21, now - 3 * 3600 * 1000 + 60_000)
        .await;
    let reason = expect_fail(&h, "exhausted").await;
    assert!(
        reason.starts_with("login-availability: error budget exhausted: remaining -1.9"),
        "{reason}"
    );
    assert!(reason.ends_with(" ≤ 0"), "{reason}");
}

#[tokio::test]
async fn sli_below_judges_only_its_window() {
    let h = start_with(CATALOG).await;
    let mut feed = Feed::new(&h);
    let now = now_ms();
    // Over 30d the SLI is 0.99; over the last 15m it is 0.9 (2 of 20 bad).
    feed.runs("login", 180, 0, now - 2 * 3600 * 1000).await;
    feed.runs("login", 20, 2, now - 1000).await;
    let (status, v) = gate(&h, "sli").await;
    assert_eq!(status, 503, "{v:#}");
    assert_eq!(
        reasons(&v),
        vec!["login-availability: SLI over the last 15m 0.9 < 0.95"]
    );
    assert_eq!(v["slos"][0]["sli_value"], 0.99);
    let check = &v["slos"][0]["checks"][0];
    assert_eq!(check["condition"], "sli_below");
    assert_eq!(
        (check["value"].as_f64(), check["threshold"].as_f64()),
        (Some(0.9), Some(0.95))
    );

    // Outside the window the failures no longer count.
    let h = start_with(CATALOG).await;
    let mut feed = Feed::new(&h);
    feed.runs("login", 20, 2, now - 30 * MIN).await;
    feed.runs("login", 20, 0, now - 1000).await;
    expect_pass(&h, "sli").await;
}

#[tokio::test]
async fn escalations_block_within_their_lookback() {
    let h = start_with(CATALOG).await;
    let mut feed = Feed::new(&h);
    let now = now_ms();
    feed.runs("authz", 20, 0, now - 1000).await;
    expect_pass(&h, "escalation").await;
    expect_pass(&h, "escalation-30m").await;

    // 20 minutes ago: past the bare `escalation` (5m) but within 30m.
    feed.escalation("authz", now - 20 * MIN, false).await;
    expect_pass(&h, "escalation").await;
    let reason = expect_fail(&h, "escalation-30m").await;
    assert!(
        reason.starts_with(
            "authz-availability: escalation (an action that must be denied was allowed) 20m"
        ),
        "{reason}"
    );
    assert!(reason.ends_with(" ago, within 30m"), "{reason}");

    // Two minutes ago, found in a journey step's class.
    feed.escalation("authz", now - 2 * MIN, true).await;
    let reason = expect_fail(&h, "escalation").await;
    assert!(reason.contains(" 2m"), "{reason}");
    assert!(reason.ends_with(" ago, within 5m"), "{reason}");
}

#[tokio::test]
async fn stale_data_fails_closed_and_on_stale_pass_lets_it_through() {
    let h = start_with(CATALOG).await;
    let mut feed = Feed::new(&h);

    // No results at all.
    let reason = expect_fail(&h, "fresh").await;
    assert_eq!(
        reason,
        "login-availability: stale: no results for its probes (on_stale: fail)"
    );
    let v = expect_pass(&h, "lenient").await;
    assert_eq!(
        v["notes"],
        json!(["login-availability: stale: no results for its probes (on_stale: pass)"])
    );
    assert_eq!(v["slos"][0]["stale"], true);

    // Newest result 10 minutes old (stale_after 5m).
    let now = now_ms();
    feed.runs("login", 5, 0, now - 10 * MIN).await;
    let reason = expect_fail(&h, "fresh").await;
    assert!(
        reason.starts_with("login-availability: stale: newest result is 10m"),
        "{reason}"
    );
    assert!(
        reason.ends_with("old > stale_after 5m (on_stale: fail)"),
        "{reason}"
    );
    expect_pass(&h, "lenient").await;

    // A fresh result: no longer stale.
    feed.runs("login", 1, 0, now_ms() - 500).await;
    expect_pass(&h, "fresh").await;

    // Stale data still blocks on what it shows: an exhausted budget fails
    // even with `on_stale: pass`.
    let h = start_with(CATALOG).await;
    let mut feed = Feed::new(&h);
    feed.runs("login", 10, 5, now - 10 * MIN).await;
    let (status, v) = gate(&h, "lenient").await;
    assert_eq!(status, 503, "{v:#}");
    assert_eq!(reasons(&v).len(), 1);
    assert!(reasons(&v)[0].contains("error budget exhausted"), "{v:#}");
}

#[tokio::test]
async fn insufficient_data_is_stale() {
    let h = start_with(CATALOG).await;
    let mut feed = Feed::new(&h);
    let now = now_ms();
    // History from two hours ago, then only 3 of the 360 runs expected in
    // the last hour (interval 10s, coverage window 1h, min 0.9).
    feed.runs("sparse", 10, 0, now - 2 * 3600 * 1000).await;
    feed.runs("sparse", 3, 0, now - 1000).await;
    let reason = expect_fail(&h, "coverage").await;
    assert!(
        reason.starts_with("sparse-availability: stale: insufficient data, coverage 0.0"),
        "{reason}"
    );
    assert!(reason.ends_with(" < 0.9 (on_stale: fail)"), "{reason}");
}

#[tokio::test]
async fn a_gate_lists_every_failing_condition() {
    let h = start_with(CATALOG).await;
    let mut feed = Feed::new(&h);
    let now = now_ms();
    feed.runs("login", 20, 10, now - 1000).await;
    feed.runs("authz", 20, 0, now - 1000).await;
    feed.escalation("authz", now - 3 * MIN, false).await;
    let (status, v) = gate(&h, "deploy").await;
    assert_eq!(status, 503);
    let r = reasons(&v);
    let has = |prefix: &str| r.iter().any(|x| x.starts_with(prefix));
    assert!(
        has("login-availability: page-level burn-rate alert"),
        "{r:?}"
    );
    assert!(
        has("login-availability: ticket-level burn-rate alert"),
        "{r:?}"
    );
    assert!(
        has("login-availability: error budget remaining -49"),
        "{r:?}"
    );
    assert!(
        has("login-availability: SLI over the last 15m 0.5 < 0.99"),
        "{r:?}"
    );
    assert!(has("authz-availability: escalation"), "{r:?}");
    // authz's single escalation failure of 21 spends its budget, but not
    // fast enough to page (burn 4.76 < 14.4).
    assert!(
        has("authz-availability: error budget remaining -3.76"),
        "{r:?}"
    );
    assert!(!has("authz-availability: page-level"), "{r:?}");
    assert!(r.iter().all(|x| !x.contains("stale")), "{r:?}");
}

#[tokio::test]
async fn http_contract_404_always200_flagger_and_audit() {
    let h = start_with(CATALOG).await;
    let addr = h.running.http_addr();
    let client = reqwest::Client::new();
    let base = format!("http://{addr}/api/v1/gates");

    // Unknown gate: 404 JSON naming the gates there are.
    let (status, body) = http_get(addr, "/api/v1/gates/nope").await;
    assert_eq!(status, 404);
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["error"], "no gate `nope` in the catalog");
    assert!(
        v["gates"]
            .as_array()
            .expect("gates")
            .contains(&json!("deploy"))
    );

    // No data: fails (stale). always200 keeps the decision in the body.
    let (status, body) = http_get(addr, "/api/v1/gates/fresh?always200=true").await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["decision"], "fail");
    // What Argo Rollouts' `jsonPath: "{$.decision}"` reads.
    assert_eq!(v.pointer("/decision"), Some(&json!("fail")));
    let (status, _) = http_get(addr, "/api/v1/gates/fresh?always200=maybe").await;
    assert_eq!(status, 400);

    // Flagger: POST with its payload; the status code decides.
    let payload = json!({
        "name": "podinfo", "namespace": "test", "phase": "Progressing",
        "checksum": "85d557f47b", "metadata": { "env": "prod", "owner": "iam-team" }
    });
    let r = client
        .post(format!("{base}/fresh"))
        .header("user-agent", "flagger")
        .json(&payload)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 503);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["decision"], "fail");
    let flagger_seq = v["audit_seq"].as_u64().expect("audit seq");

    // Fresh data: passes, by GET and by POST (an empty body too).
    Feed::new(&h).runs("login", 5, 0, now_ms() - 500).await;
    let r = client
        .post(format!("{base}/fresh"))
        .json(&payload)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 200);
    // Without a body: the marker header says it is not a cross-site form.
    let r = client
        .post(format!("{base}/fresh"))
        .header("x-authpulse-request", "1")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 200);
    // The open API refuses what a web page could send cross-site: no
    // content type, or text/plain (415, not decided, not audited).
    for body in ["", "not json"] {
        let r = client
            .post(format!("{base}/fresh"))
            .body(body)
            .send()
            .await
            .expect("post");
        assert_eq!(r.status().as_u16(), 415, "body {body:?}");
    }
    let r = client
        .post(format!("{base}/fresh"))
        .header("content-type", "application/json")
        .body("not json")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 400);

    // The listing shows every gate's decision.
    let list = http_json(addr, "/api/v1/gates").await;
    let gates = list["gates"].as_array().expect("gates");
    assert_eq!(gates.len(), 11);
    let fresh = gates.iter().find(|g| g["gate"] == "fresh").expect("fresh");
    assert_eq!(fresh["decision"], "pass");

    // Each decision served is in the audit log, chained, with the payload.
    let log = h.dir.path().join("data").join("audit.jsonl");
    let verified = authpulse_coordinator::audit::verify(&log).expect("audit log verifies");
    let entries: Vec<Value> = std::fs::read_to_string(&log)
        .expect("read")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let decisions: Vec<&Value> = entries
        .iter()
        .filter(|e| e["kind"] == "gate_decision")
        .collect();
    // always200 (fail), POST (fail), POST (pass) twice; not the 404s, the
    // 400s, the 415s or the listing.
    assert_eq!(decisions.len(), 4, "{decisions:#?}");
    assert!(verified.entries >= 4);
    let flagger = entries
        .iter()
        .find(|e| e["seq"] == flagger_seq)
        .expect("the entry the response named");
    assert_eq!(flagger["kind"], "gate_decision");
    let f = &flagger["fields"];
    assert_eq!(f["gate"], "fresh");
    assert_eq!(f["decision"], "fail");
    assert_eq!(f["method"], "POST");
    assert_eq!(f["user_agent"], "flagger");
    assert_eq!(
        f["reasons"],
        json!(["login-availability: stale: no results for its probes (on_stale: fail)"])
    );
    assert_eq!(f["webhook"], payload);
    let first = decisions[0];
    assert_eq!(first["fields"]["always200"], true);
    assert_eq!(first["fields"]["method"], "GET");
    assert_eq!(decisions[2]["fields"]["decision"], "pass");
}

#[test]
fn gate_validation_names_each_problem() {
    let catalog = |gates: &str| {
        format!(
            "probes:\n  - {{ id: p, kind: http, url: \"https://x.example.com\", interval: 2m }}\n\
             slos:\n  - {{ id: s, probes: [p], objective: 99, window: 1d }}\n\
             gates:\n{gates}"
        )
    };
    let errors = |gates: &str| -> String {
        match load_str("c.yaml", &catalog(gates)) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    };
    // Every spelling loads, old and new.
    let ok = "  - id: g\n    slos: [s]\n    block_when: [page_alert, ticket_alert, budget_exhausted, escalation, \
              { budget_below: 0.2 }, { escalation_within: 30m }, { sli_below: { window: 15m, value: 0.99 } }]\n    on_stale: pass\n";
    assert_eq!(errors(ok), "");
    let c = load_str("c.yaml", &catalog(ok)).expect("valid");
    assert_eq!(c.gates[0].block_when.len(), 7);

    for (gates, want) in [
        (
            "  - { id: g, slos: [s], block_when: [page_alerts] }\n",
            "unknown variant `page_alerts`",
        ),
        (
            "  - { id: g, slos: [s] }\n",
            "a gate needs at least one condition",
        ),
        (
            "  - { id: g, slos: [], block_when: [page_alert] }\n",
            "a gate needs at least one SLO",
        ),
        (
            "  - { id: g, slos: [nope], block_when: [page_alert] }\n",
            "unknown SLO `nope`",
        ),
        (
            "  - { id: G_1, slos: [s], block_when: [page_alert] }\n",
            "invalid id `G_1`",
        ),
        (
            "  - { id: g, slos: [s], block_when: [{ budget_below: 1.5 }] }\n",
            "1.5 must be a ratio of the budget in [0, 1]",
        ),
        (
            "  - { id: g, slos: [s], block_when: [{ escalation_within: 0s }] }\n",
            "must be greater than 0",
        ),
        (
            "  - { id: g, slos: [s], block_when: [{ sli_below: { window: 30s, value: 0.9 } }] }\n",
            "window 30s must be whole minutes between 1m and 3d",
        ),
        (
            "  - { id: g, slos: [s], block_when: [{ sli_below: { window: 7d, value: 0.9 } }] }\n",
            "window 7days must be whole minutes",
        ),
        (
            "  - { id: g, slos: [s], block_when: [{ sli_below: { window: 5m, value: 99 } }] }\n",
            "(did you mean 0.99?)",
        ),
        (
            "  - { id: g, slos: [s], block_when: [{ sli_below: { window: 5m } }] }\n",
            "missing field `value`",
        ),
        (
            "  - { id: g, slos: [s], block_when: [{ sli_below: { window: 5m, value: 0.9, x: 1 } }] }\n",
            "unknown field `x`",
        ),
        (
            "  - { id: g, slos: [s], block_when: [page_alert], on_stale: maybe }\n",
            "unknown variant `maybe`",
        ),
        (
            "  - { id: g, slos: [s], block_when: [page_alert], stale_after: 1m }\n",
            "stale_after 1m is not longer than the interval 2m of probe `p`",
        ),
        (
            "  - { id: g, slos: [s], block_when: [page_alert] }\n  - { id: g, slos: [s], block_when: [page_alert] }\n",
            "duplicate gate id `g`",
        ),
    ] {
        let e = errors(gates);
        assert!(e.contains(want), "{gates}: want `{want}` in:\n{e}");
        assert!(e.contains("c.yaml:"), "errors name the file: {e}");
    }
}

/// `authpulse gate …`: (exit code, stdout, stderr).
async fn cli(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = tokio::process::Command::new(authpulse_tests::bin("authpulse"))
        .arg("gate")
        .args(args)
        .env_remove("AUTHPULSE_TOKEN")
        .env_remove("AUTHPULSE_COORDINATOR_URL")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run authpulse");
    (
        out.status.code().expect("exit code"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A local HTTP server answering every request with `status` and `body`,
/// recording the Authorization headers it saw.
async fn fake_coordinator(
    status: u16,
    body: &'static str,
) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let app = axum::Router::new().fallback(move |headers: axum::http::HeaderMap| {
        let record = record.clone();
        async move {
            let auth = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            record.lock().expect("lock").push(auth);
            (
                axum::http::StatusCode::from_u16(status).expect("status"),
                [("content-type", "application/json")],
                body,
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_exit_codes_and_wait() {
    let h = start_with(CATALOG).await;
    let url = format!("http://{}", h.running.http_addr());

    // Fail (stale): exit 1 with the reasons.
    let (code, out, _) = cli(&["fresh", "--coordinator", &url], &[]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("gate fresh: FAIL"), "{out}");
    assert!(
        out.contains("  - login-availability: stale: no results for its probes (on_stale: fail)"),
        "{out}"
    );

    // Pass: exit 0; the URL may come from the environment.
    Feed::new(&h).runs("login", 5, 0, now_ms() - 500).await;
    let (code, out, _) = cli(&["fresh"], &[("AUTHPULSE_COORDINATOR_URL", &url)]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("gate fresh: PASS"), "{out}");
    assert!(
        out.contains("login-availability: ok sli 1.0000 budget remaining 1.0000"),
        "{out}"
    );
    let (code, out, _) = cli(&["fresh", "--coordinator", &url, "--json"], &[]).await;
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).expect("--json prints the answer");
    assert_eq!(v["decision"], "pass");

    // Unknown gate: exit 2 at once, even with --wait.
    let started = std::time::Instant::now();
    let (code, _, err) = cli(&["nope", "--coordinator", &url, "--wait", "1m"], &[]).await;
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("HTTP 404: no gate `nope` in the catalog"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));

    // Unreachable: exit 2.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let (code, _, err) = cli(
        &["fresh", "--coordinator", &format!("http://{closed}")],
        &[],
    )
    .await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("coordinator unreachable"), "{err}");

    // Token refused (401/403): exit 2; the token is sent as a bearer token.
    let (addr, seen) =
        fake_coordinator(401, r#"{"error":"unknown token","required_scope":"gate"}"#).await;
    let (code, _, err) = cli(
        &["fresh", "--coordinator", &format!("http://{addr}")],
        &[("AUTHPULSE_TOKEN", "s3cret-token")],
    )
    .await;
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("HTTP 401: token refused: unknown token"),
        "{err}"
    );
    assert!(
        !err.contains("s3cret-token"),
        "the token is never printed: {err}"
    );
    assert_eq!(
        seen.lock().expect("lock").as_slice(),
        ["Bearer s3cret-token"]
    );
    let (addr, seen) = fake_coordinator(403, r#"{"error":"token `ci` lacks scope `gate`"}"#).await;
    let (code, _, err) = cli(
        &[
            "fresh",
            "--coordinator",
            &format!("http://{addr}"),
            "--token",
            "t2",
        ],
        &[],
    )
    .await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("HTTP 403"), "{err}");
    assert_eq!(seen.lock().expect("lock").as_slice(), ["Bearer t2"]);

    // Not a gate decision (bad JSON, a 200 without a decision): exit 2.
    let (addr, _) = fake_coordinator(200, "<html>proxy login</html>").await;
    let (code, _, err) = cli(&["fresh", "--coordinator", &format!("http://{addr}")], &[]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("HTTP 200: not a gate decision"), "{err}");
    let (addr, _) = fake_coordinator(200, r#"{"decision":"maybe"}"#).await;
    let (code, _, _) = cli(&["fresh", "--coordinator", &format!("http://{addr}")], &[]).await;
    assert_eq!(code, 2);

    // --wait: fails until data arrives, then passes (exit 0).
    let h2 = start_with(CATALOG).await;
    let url2 = format!("http://{}", h2.running.http_addr());
    let waiting = tokio::spawn({
        let url2 = url2.clone();
        async move {
            cli(
                &[
                    "fresh",
                    "--coordinator",
                    &url2,
                    "--wait",
                    "60s",
                    "--poll-interval",
                    "200ms",
                ],
                &[],
            )
            .await
        }
    });
    // The CLI has asked (and been told fail) at least once before recovery.
    let log = h2.dir.path().join("data").join("audit.jsonl");
    poll_until(|| std::fs::read_to_string(&log).is_ok_and(|t| t.contains("\"decision\":\"fail\"")))
        .await;
    Feed::new(&h2).runs("login", 3, 0, now_ms() - 500).await;
    let (code, out, err) = waiting.await.expect("cli task");
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.starts_with("gate fresh: PASS"), "{out}");
    assert!(
        err.contains("waiting: gate fresh: FAIL — login-availability: stale"),
        "{err}"
    );

    // --wait that runs out: the last answer's code (1: fail).
    let h3 = start_with(CATALOG).await;
    let started = std::time::Instant::now();
    let (code, out, _) = cli(
        &[
            "fresh",
            "--coordinator",
            &format!("http://{}", h3.running.http_addr()),
            "--wait",
            "1s",
            "--poll-interval",
            "300ms",
        ],
        &[],
    )
    .await;
    assert_eq!(code, 1, "{out}");
    assert!(started.elapsed() >= Duration::from_millis(600));
}

/// Polls a condition every 50 ms for up to [`WAIT`].
async fn poll_until(mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + WAIT;
    while !f() {
        assert!(std::time::Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
