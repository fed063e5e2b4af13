//! The per-probe counters in `/metrics` cross-checked by a real Prometheus:
//! an agent probes a fault server that answers every 4th request with 500,
//! Prometheus scrapes the coordinator every second, and the bad fraction it
//! computes from `authpulse_probe_results_good_total` and
//! `authpulse_probe_results_total` matches the coordinator's own SLO
//! (`/api/v1/slos`: bad / total) within one result.
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use authpulse_tests::fault::{FaultServer, Reply};
use authpulse_tests::fleet::{AgentFixture, CoordinatorFixture};
use authpulse_tests::peers::Prometheus;
use authpulse_tests::{TempDir, wait_for};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(40);
const SLO: &str = "fault-availability";
/// Results to collect before comparing (two probes at 1 s: ~15 s).
const RESULTS: u64 = 30;

fn catalog(url: &str) -> String {
    let mut s = String::from("probes:\n");
    for id in ["fault-a", "fault-b"] {
        s.push_str(&format!(
            "  - id: {id}\n    kind: http\n    url: {url}\n    interval: 1s\n    timeout: 800ms\n"
        ));
    }
    s.push_str(&format!(
        "slos:\n  - id: {SLO}\n    probes: [fault-a, fault-b]\n    objective: 90\n    window: 1h\n    alerting: {{ page: false, ticket: false }}\n"
    ));
    s
}

/// (bad, total) of the SLO from the coordinator.
async fn coordinator_counts(client: &reqwest::Client, api: &str) -> Option<(u64, u64)> {
    let v: Value = client
        .get(format!("{api}/api/v1/slos"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let slo = v["slos"].as_array()?.iter().find(|s| s["id"] == SLO)?;
    Some((slo["bad"].as_u64()?, slo["total"].as_u64()?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_bad_fraction_matches_the_coordinator() {
    let dir = TempDir::new("ap-prometheus");
    let n = Arc::new(AtomicUsize::new(0));
    let counter = n.clone();
    let fault = FaultServer::start(move |_| {
        if counter.fetch_add(1, Ordering::SeqCst) % 4 == 3 {
            Reply::status(500, "injected")
        } else {
            Reply::status(200, "ok")
        }
    })
    .await;
    let coord = CoordinatorFixture::start(&dir, &catalog(&fault.url("/health"))).await;
    let target = coord
        .api
        .strip_prefix("http://")
        .expect("http api")
        .to_string();
    let prom = Prometheus::start(dir.path(), &[&target]).await;
    let _agent = AgentFixture::start(&dir, "prom-agent", &coord.grpc_url(), "").await;
    let client = reqwest::Client::new();

    wait_for(WAIT, "enough results with failures among them", || async {
        let (bad, total) = coordinator_counts(&client, &coord.api).await?;
        (total >= RESULTS && bad > 0).then_some(())
    })
    .await;

    // The two reads are not simultaneous: poll until they agree within one result.
    let promql = "1 - sum(authpulse_probe_results_good_total) / sum(authpulse_probe_results_total)";
    let (prom_bad, coord_bad, total) = wait_for(WAIT, "Prometheus to agree", || async {
        let prom_total = prom
            .query_value(&client, "sum(authpulse_probe_results_total)")
            .await?;
        let prom_bad = prom.query_value(&client, promql).await?;
        let (bad, total) = coordinator_counts(&client, &coord.api).await?;
        let coord_bad = bad as f64 / total as f64;
        let within_one = (prom_bad - coord_bad).abs() <= 1.0 / total as f64;
        let same_size = (prom_total - total as f64).abs() <= 1.0;
        (within_one && same_size).then_some((prom_bad, coord_bad, total))
    })
    .await;
    // Every 4th request fails: the fraction is near 1/4 (per-probe timing
    // decides exactly which results see the 500s).
    assert!(
        (0.1..=0.4).contains(&prom_bad),
        "Prometheus bad fraction {prom_bad} (coordinator {coord_bad} of {total})"
    );
    // The burn-rate form documented in the README evaluates too.
    let burn = prom
        .query_value(
            &client,
            "(1 - sum(rate(authpulse_probe_results_good_total{probe=~\"fault-.*\"}[1h])) \
             / sum(rate(authpulse_probe_results_total{probe=~\"fault-.*\"}[1h]))) / (1 - 0.90)",
        )
        .await;
    assert!(burn.is_some_and(f64::is_finite), "burn rate {burn:?}");
}
