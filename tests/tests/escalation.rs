//! Escalation pages end to end: a coordinator binary with a real
//! Alertmanager, and a test agent (a tonic client speaking the agent proto)
//! that reports a `deny` expectation that came back allowed (failure class
//! ESCALATION). The page reaches Alertmanager at once, without waiting for
//! the 15 s SLO evaluation or any burn-rate math; a resend of the same result
//! is not counted again in the per-probe metrics.
use std::time::{Duration, Instant};

use authpulse_proto::v1::{FailureClass, ProbeResult, Timings};
use authpulse_tests::fake_agent::FakeAgent;
use authpulse_tests::fleet::{CoordinatorFixture, metric};
use authpulse_tests::peers::Alertmanager;
use authpulse_tests::{TempDir, wait_for};
use serde_json::Value;

const AGENT: &str = "esc-agent";
const REGION: &str = "local";
const SLO: &str = "authz-deny";
/// Well below the 15 s evaluation interval.
const FAST: Duration = Duration::from_secs(10);
const WAIT: Duration = Duration::from_secs(30);

const CATALOG: &str = "probes:\n  - id: admin-cannot-delete\n    kind: http\n    url: http://127.0.0.1:9/\n    interval: 60s\n    timeout: 1s\n\
slos:\n  - id: authz-deny\n    probes: [admin-cannot-delete]\n    objective: 99\n    window: 1h\n";

/// The test agent: one stream, hello done, assignment received.
struct Agent(FakeAgent);

impl Agent {
    async fn connect(url: &str) -> Agent {
        let mut agent = FakeAgent::connect(url).await.expect("stream opens");
        agent.hello(AGENT, REGION).await.expect("hello answered");
        Agent(agent)
    }

    /// Sends a batch and returns the ack answering it.
    async fn batch(&mut self, results: Vec<ProbeResult>) -> u64 {
        self.0
            .batch(results, 0)
            .await
            .expect("batch acked")
            .acked_seq
    }
}

fn result(seq: u64, class: FailureClass, step_class: Option<FailureClass>) -> ProbeResult {
    let mut r = authpulse_tests::results::probe_result(AGENT, REGION, seq, "admin-cannot-delete")
        .started(authpulse_tests::results::now_ms() - 500)
        .timings(Timings {
            total_us: 20_000,
            ..Default::default()
        });
    if class != FailureClass::Unspecified || step_class.is_some() {
        r = r.failed(class, "expected deny, got allow");
    }
    if let Some(c) = step_class {
        r = r.failed_step("cannot-delete", "permission", c, "");
    }
    r.build()
}

fn is_escalation(a: &Value) -> bool {
    a["labels"]["slo"] == SLO && a["labels"]["rule"] == "escalation"
}

async fn metrics(client: &reqwest::Client, coord: &CoordinatorFixture) -> String {
    authpulse_tests::get_text(client, format!("{}/metrics", coord.api)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalation_result_pages_at_once_through_alertmanager() {
    let dir = TempDir::new("ap-escalation");
    let am = Alertmanager::start(dir.path()).await;
    let alerting = format!("alerting:\n  alertmanager: [{}]\n", am.url);
    let coord = CoordinatorFixture::start_with(&dir, CATALOG, &alerting).await;
    let client = reqwest::Client::new();
    let mut agent = Agent::connect(&coord.grpc_url()).await;

    // A good result and an ordinary failure: no page.
    assert_eq!(
        agent
            .batch(vec![
                result(1, FailureClass::Unspecified, None),
                result(2, FailureClass::HttpStatus, None),
            ])
            .await,
        2
    );

    // The `deny` step came back allowed: a page within seconds.
    let sent = Instant::now();
    assert_eq!(
        agent
            .batch(vec![result(
                3,
                FailureClass::PermissionMismatch,
                Some(FailureClass::Escalation)
            )])
            .await,
        3
    );
    let alert = wait_for(FAST, "the escalation page in Alertmanager", || async {
        am.alerts(&client).await?.into_iter().find(is_escalation)
    })
    .await;
    assert!(sent.elapsed() < FAST, "paged after {:?}", sent.elapsed());
    assert_eq!(alert["labels"]["severity"], "page", "{alert}");
    assert_eq!(
        alert["labels"]["alertname"], "AuthpulseEscalation",
        "{alert}"
    );
    assert_eq!(alert["status"]["state"], "active", "{alert}");
    assert!(
        alert["annotations"]["summary"]
            .as_str()
            .is_some_and(|s| s.contains("privilege escalation")),
        "{alert}"
    );

    // Also a top-level escalation class and a resend of seq 3: still one
    // page, and the per-probe counters count each stored result once.
    assert_eq!(
        agent
            .batch(vec![
                result(
                    3,
                    FailureClass::PermissionMismatch,
                    Some(FailureClass::Escalation)
                ),
                result(4, FailureClass::Escalation, None),
            ])
            .await,
        4
    );
    let firing: Value = wait_for(WAIT, "the escalation in /api/v1/alerts", || async {
        let v: Value = client
            .get(format!("{}/api/v1/alerts", coord.api))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        v["alerts"]
            .as_array()?
            .iter()
            .find(|a| a["slo"] == SLO && a["rule"] == "escalation")
            .cloned()
    })
    .await;
    assert_eq!(firing["severity"], "page", "{firing}");
    let alerts = am.alerts(&client).await.expect("alerts");
    assert_eq!(
        alerts.iter().filter(|a| is_escalation(a)).count(),
        1,
        "{alerts:?}"
    );
    // No burn-rate page was needed for it.
    assert!(
        !alerts
            .iter()
            .any(|a| a["labels"]["alertname"] == "AuthpulseSLOBurn"),
        "{alerts:?}"
    );

    let text = metrics(&client, &coord).await;
    assert_eq!(
        metric(&text, "authpulse_probe_results_total"),
        4.0,
        "{text}"
    );
    assert_eq!(
        metric(&text, "authpulse_probe_results_good_total"),
        1.0,
        "{text}"
    );
    assert!(
        text.contains(
            "authpulse_probe_results_total{probe=\"admin-cannot-delete\",region=\"local\"} 4"
        ),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "authpulse_slo_escalation_alert_firing{{slo=\"{SLO}\"}} 1"
        )),
        "{text}"
    );

    // A new stream that resends everything (as after a reconnect): nothing
    // is counted twice.
    drop(agent);
    let mut again = Agent::connect(&coord.grpc_url()).await;
    again
        .batch(vec![
            result(2, FailureClass::HttpStatus, None),
            result(4, FailureClass::Escalation, None),
            result(5, FailureClass::Unspecified, None),
        ])
        .await;
    let text = metrics(&client, &coord).await;
    assert_eq!(
        metric(&text, "authpulse_probe_results_total"),
        5.0,
        "{text}"
    );
    assert_eq!(
        metric(&text, "authpulse_probe_results_good_total"),
        2.0,
        "{text}"
    );
}
