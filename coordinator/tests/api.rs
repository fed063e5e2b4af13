//! The HTTP API's JSON shapes and numbers, against a real store: the router
//! alone through `tower::ServiceExt::oneshot`, and the bound server fed by a
//! real agent stream.
mod common;

use std::sync::Arc;

use authpulse_coordinator::CatalogSnapshot;
use authpulse_coordinator::api::{ApiState, router};
use authpulse_coordinator::store::Store;
use authpulse_proto::catalog::load_str;
use authpulse_proto::v1::{FailureClass, Outcome, StepResult, Timings};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

async fn oneshot(state: &ApiState, path: &str) -> (StatusCode, String, Option<String>) {
    let response = router(state.clone())
        .oneshot(Request::get(path).body(Body::empty()).expect("request"))
        .await
        .expect("router answers");
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (
        status,
        String::from_utf8(body.to_vec()).expect("utf-8"),
        content_type,
    )
}

#[tokio::test]
async fn health_readiness_metrics_and_404() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).await.expect("store");
    let (tx, rx) = tokio::sync::watch::channel(Arc::new(CatalogSnapshot::default()));
    let state = ApiState {
        store,
        catalog: rx,
        metrics: authpulse_coordinator::metrics_handle(),
        fleet: Default::default(),
        audit: Default::default(),
        access: Arc::new(authpulse_coordinator::api_access::ApiAccess::open()),
        reloader: None,
        leader: tokio::sync::watch::channel(true).1,
        gate_decisions: Default::default(),
        slo_cache: Default::default(),
        feed_cache: Default::default(),
        storage: Default::default(),
        status_page: Default::default(),
    };

    let (status, body, _) = oneshot(&state, "/healthz").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));

    let (status, body, _) = oneshot(&state, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("no catalog loaded"), "{body}");

    let catalog = load_str("c.yaml", CATALOG).expect("catalog");
    tx.send_replace(Arc::new(CatalogSnapshot {
        catalog: Arc::new(catalog),
        version: 1,
        loaded: true,
    }));
    let (status, body, _) = oneshot(&state, "/readyz").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ready"));

    let (status, body, content_type) = oneshot(&state, "/no/such/thing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(content_type.as_deref(), Some("application/json"));
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("json"),
        json!({"error": "not found"})
    );

    metrics::counter!("authpulse_test_marker_total").increment(1);
    let (status, body, content_type) = oneshot(&state, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        content_type
            .expect("content type")
            .starts_with("text/plain")
    );
    assert!(body.contains("authpulse_test_marker_total 1"), "{body}");

    // SLOs with no data: no SLI, whole budget, no burn rate.
    let (status, body, _) = oneshot(&state, "/api/v1/slos").await;
    assert_eq!(status, StatusCode::OK);
    let v: Value = serde_json::from_str(&body).expect("json");
    let slo = &v["slos"][0];
    assert_eq!(slo["id"], "discovery-availability");
    assert_eq!(slo["total"], 0);
    assert_eq!(slo["sli_value"], Value::Null);
    assert_eq!(slo["error_budget_remaining"], 1.0);
    assert_eq!(slo["burn_rate_1h"], Value::Null);
}

#[tokio::test]
async fn slo_numbers() {
    let h = start_default().await;
    let store = h.running.store();
    let now = now_ms();
    let ten_min_ago = now - 10 * 60 * 1000;
    // discovery: 999 good, 1 bad, all in the last hour.
    let results: Vec<_> = (1..=1000u64)
        .map(|seq| {
            result_at(
                "seed",
                "eu-west",
                seq,
                "discovery",
                seq != 500,
                ten_min_ago,
                50_000,
            )
        })
        .collect();
    store.insert_batch("seed", &results).await.expect("insert");
    // health-latency (800 ms, 1h window, 99 %): fast ok (good), slow ok (bad),
    // fast failure (bad), and one outside the window (ignored).
    let latency = vec![
        result_at(
            "seed",
            "eu-west",
            1001,
            "eu-health",
            true,
            ten_min_ago,
            100_000,
        ),
        result_at(
            "seed",
            "eu-west",
            1002,
            "us-health",
            true,
            ten_min_ago,
            900_000,
        ),
        result_at(
            "seed",
            "eu-west",
            1003,
            "eu-health",
            false,
            ten_min_ago,
            100_000,
        ),
        result_at(
            "seed",
            "eu-west",
            1004,
            "eu-health",
            true,
            now - 2 * 3600 * 1000,
            100_000,
        ),
    ];
    store.insert_batch("seed", &latency).await.expect("insert");

    let v = http_json(h.running.http_addr(), "/api/v1/slos").await;
    let generated = v["generated_at"].as_str().expect("generated_at");
    assert!(
        generated.ends_with('Z') && generated.contains('T'),
        "{generated}"
    );

    let d = &v["slos"][0];
    assert_eq!(d["id"], "discovery-availability");
    assert_eq!(d["description"], "Discovery document and JWKS are served");
    assert_eq!(d["objective"], 99.9);
    assert_eq!(d["window_seconds"], 28 * 86_400);
    assert_eq!(d["sli"], "availability");
    assert_eq!(
        (d["good"].as_u64(), d["total"].as_u64(), d["bad"].as_u64()),
        (Some(999), Some(1000), Some(1))
    );
    let f = |x: &Value| x.as_f64().expect("number");
    assert!((f(&d["sli_value"]) - 0.999).abs() < 1e-9);
    assert!(f(&d["error_budget_remaining"]).abs() < 1e-9);
    assert!((f(&d["burn_rate_1h"]) - 1.0).abs() < 1e-9);

    let l = &v["slos"][1];
    assert_eq!(l["id"], "health-latency");
    assert_eq!(l["description"], Value::Null);
    assert_eq!(l["sli"], json!({"latency": {"threshold_ms": 800.0}}));
    assert_eq!(l["window_seconds"], 3600);
    assert_eq!(
        (l["good"].as_u64(), l["total"].as_u64(), l["bad"].as_u64()),
        (Some(1), Some(3), Some(2))
    );
    // 2/3 bad against a 1 % allowance.
    assert!((f(&l["error_budget_remaining"]) - (1.0 - (2.0 / 3.0) / 0.01)).abs() < 1e-9);
    assert!((f(&l["burn_rate_1h"]) - (2.0 / 3.0) / 0.01).abs() < 1e-9);
    h.running.shutdown().await;
}

#[tokio::test]
async fn probes_and_agents_from_a_real_stream() {
    let h = start_default().await;
    let (mut agent, _, _) = AgentConn::hello(h.running.grpc_addr(), "agent-api", "eu-west").await;
    let now = now_ms();
    let older = result_at(
        "agent-api",
        "eu-west",
        1,
        "discovery",
        true,
        now - 60_000,
        40_000,
    );
    let mut newest = result_at(
        "agent-api",
        "eu-west",
        2,
        "discovery",
        false,
        now - 1_000,
        2_500_500,
    );
    newest.steps = vec![StepResult {
        name: "fetch".into(),
        kind: "http".into(),
        outcome: Outcome::Failure as i32,
        failure_class: FailureClass::Timeout as i32,
        timings: Some(Timings {
            dns_us: None,
            connect_us: Some(1_000),
            tls_us: Some(2_250),
            ttfb_us: None,
            total_us: 2_500_000,
        }),
        detail: "no answer in 2.5s".into(),
    }];
    let other_probe = result_at(
        "agent-api",
        "eu-west",
        3,
        "eu-health",
        true,
        now - 5_000,
        90_000,
    );
    assert_eq!(agent.batch(vec![older, newest, other_probe], 0).await, 3);

    let v = http_json(h.running.http_addr(), "/api/v1/probes").await;
    let probes = v["probes"].as_array().expect("probes");
    assert_eq!(probes.len(), 2, "one entry per probe and region: {v}");
    let d = &probes[0];
    let expected = json!({
        "probe_id": "discovery",
        "kind": "oidc_discovery",
        "region": "eu-west",
        "agent_id": "agent-api",
        "seq": 2,
        "started_at": authpulse_coordinator::clock::rfc3339_ms(now - 1_000),
        "outcome": "failure",
        "failure_class": "http_status",
        "timings": {"dns_ms": 1.5, "connect_ms": 2.0, "tls_ms": null, "ttfb_ms": 100.0, "total_ms": 2500.5},
        "steps": [{
            "name": "fetch",
            "kind": "http",
            "outcome": "failure",
            "failure_class": "timeout",
            "timings": {"dns_ms": null, "connect_ms": 1.0, "tls_ms": 2.25, "ttfb_ms": null, "total_ms": 2500.0},
            "detail": "no answer in 2.5s",
        }],
        "detail": "HTTP 503",
    });
    assert_eq!(d, &expected);
    assert_eq!(probes[1]["probe_id"], "eu-health");
    assert_eq!(probes[1]["outcome"], "success");
    assert_eq!(probes[1]["failure_class"], Value::Null);
    assert_eq!(probes[1]["steps"], json!([]));

    let v = http_json(h.running.http_addr(), "/api/v1/agents").await;
    let a = &v["agents"][0];
    assert_eq!(a["agent_id"], "agent-api");
    assert_eq!(a["region"], "eu-west");
    assert_eq!(a["version"], "test");
    assert_eq!(a["labels"], json!({"host": "ci"}));
    assert_eq!(a["acked_seq"], 3);
    assert_eq!(a["connected"], true);
    assert!(a["first_seen"].as_str().is_some_and(|s| s.ends_with('Z')));
    assert!(a["last_seen"].as_str().is_some_and(|s| s.ends_with('Z')));

    let (status, body) = http_get(h.running.http_addr(), "/readyz").await;
    assert_eq!((status, body.as_str()), (200, "ready"));
    let (status, body) = http_get(h.running.http_addr(), "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        body.contains("authpulse_coordinator_agents_connected"),
        "{body}"
    );
    assert!(
        body.contains("authpulse_coordinator_ingest_commit_seconds_bucket"),
        "{body}"
    );
    h.running.shutdown().await;
}

#[tokio::test]
async fn latency_percentiles_merge_minutes_and_regions_and_bad_windows_are_refused() {
    let h = start_default().await;
    let probe = h.running.catalog().probes[0].id.clone();
    let now = now_ms();
    // eu-west: 1..=100 ms over ten minutes; us-east: 1..=50 s worth of slow runs.
    let eu: Vec<_> = (1..=100u64)
        .map(|i| {
            result_at(
                "a-eu",
                "eu-west",
                i,
                &probe,
                true,
                now - (i as i64 % 10) * 60_000 - 1000,
                i * 1000,
            )
        })
        .collect();
    let us: Vec<_> = (1..=50u64)
        .map(|i| {
            result_at(
                "a-us",
                "us-east",
                i,
                &probe,
                true,
                now - 2000,
                1_000_000 + i * 1000,
            )
        })
        .collect();
    // In two batches each, so minutes are merged in the store too.
    for (agent, rs) in [("a-eu", &eu), ("a-us", &us)] {
        let (first, second) = rs.split_at(rs.len() / 2);
        h.running
            .store()
            .insert_batch(agent, first)
            .await
            .expect("insert");
        h.running
            .store()
            .insert_batch(agent, second)
            .await
            .expect("insert");
    }
    let addr = h.running.http_addr();
    let v = http_json(addr, &format!("/api/v1/probes/{probe}/latency?window=30m")).await;
    assert_eq!(v["window"], "30m");
    let eu = v["regions"]
        .as_array()
        .expect("regions")
        .iter()
        .find(|r| r["region"] == "eu-west")
        .expect("eu");
    assert_eq!(eu["count"], 100);
    let p50 = eu["p50_ms"].as_f64().expect("p50");
    assert!(
        (p50 - 50.0).abs() <= 0.5 + 1e-9,
        "p50 {p50} within 1 % of 50 ms"
    );
    let p99 = eu["p99_ms"].as_f64().expect("p99");
    assert!((p99 - 99.0).abs() <= 0.99 + 1e-9, "p99 {p99}");
    assert_eq!(eu["max_ms"], 100.0);
    assert_eq!(v["all"]["count"], 150);
    assert_eq!(v["all"]["max_ms"], 1050.0);
    // Two thirds of all runs are eu-west's fast ones.
    assert!(v["all"]["p50_ms"].as_f64().expect("p50") < 100.0);

    let (code, body) = http_get(
        addr,
        &format!("/api/v1/probes/{probe}/latency?window=forever"),
    )
    .await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("not a duration"), "{body}");
    let (code, body) = http_get(addr, &format!("/api/v1/probes/{probe}/latency?window=30d")).await;
    assert_eq!(code, 400);
    assert!(body.contains("between 1m and 7d"), "{body}");
    let (code, body) = http_get(addr, "/api/v1/probes/nope/latency").await;
    assert_eq!(code, 404);
    assert!(body.contains("no probe `nope`"), "{body}");
    // Still serving after the refusals.
    let (code, _) = http_get(addr, "/healthz").await;
    assert_eq!(code, 200);
}

/// The read endpoints share one SLO evaluation while nothing is stored (for
/// at most a second), and a result stored shows in the very next answer.
#[tokio::test]
async fn slo_reads_share_an_evaluation_until_a_result_is_stored() {
    let h = start_default().await;
    let store = h.running.store();
    let addr = h.running.http_addr();
    let at = now_ms() - 60_000;
    let first = vec![result_at(
        "seed",
        "eu-west",
        1,
        "discovery",
        true,
        at,
        50_000,
    )];
    store.insert_batch("seed", &first).await.expect("insert");

    let totals = |v: &Value| {
        (
            v["slos"][0]["good"].as_u64(),
            v["slos"][0]["total"].as_u64(),
        )
    };
    let v = http_json(addr, "/api/v1/slos").await;
    assert_eq!(totals(&v), (Some(1), Some(1)), "{v}");
    // Back to back with nothing stored between, the second read shares the
    // first one's evaluation. Retried: the coordinator's own evaluation loop
    // may store alert or component state between two reads.
    let cached = |metrics: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with("authpulse_coordinator_slo_evaluations_total{cached=\"true\"}"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0.0)
    };
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let before = cached(&http_get(addr, "/metrics").await.1);
        http_json(addr, "/api/v1/slos").await;
        let summary = http_json(addr, "/api/v2/summary.json").await;
        assert!(summary["components"].is_array(), "{summary}");
        if cached(&http_get(addr, "/metrics").await.1) > before {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no read shared an evaluation"
        );
    }

    // A stored failure invalidates at once: no stale answer for a second.
    let second = vec![result_at(
        "seed",
        "eu-west",
        2,
        "discovery",
        false,
        at,
        50_000,
    )];
    store.insert_batch("seed", &second).await.expect("insert");
    let v = http_json(addr, "/api/v1/slos").await;
    assert_eq!(totals(&v), (Some(1), Some(2)), "{v}");
    h.running.shutdown().await;
}
