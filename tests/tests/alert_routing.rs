//! Alerts routed by ownership, end to end: two teams' SLOs fail (their
//! probes hit closed ports), a real Alertmanager's routing tree sends each
//! team's page to its receiver by the `owner` label authpulse attaches
//! (with the catalog labels and the `runbook_url` annotation), PagerDuty
//! events (a capture endpoint) carry the routing key of the team's route or
//! the default one, `group` = owner and the runbook link, and `/metrics`
//! has `authpulse_slo_info` with the owner for joins.
use std::time::Duration;

use authpulse_tests::capture::CaptureServer;
use authpulse_tests::fleet::{AgentFixture, CoordinatorFixture, free_port};
use authpulse_tests::peers::Alertmanager;
use authpulse_tests::{TempDir, wait_for};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(45);

fn catalog(closed: u16) -> String {
    format!(
        r#"probes:
  - id: login
    kind: tcp
    address: 127.0.0.1:{closed}
    interval: 1s
    timeout: 500ms
    owner: team-identity
    runbook_url: https://runbooks.example/login
  - id: payments
    kind: tcp
    address: 127.0.0.1:{closed}
    interval: 1s
    timeout: 500ms
slos:
  - id: login-availability
    probes: [login]
    objective: 99
    window: 1h
    labels: {{ tier: gold, service: sso }}
  - id: payments-availability
    probes: [payments]
    objective: 99
    window: 1h
    owner: team-payments
"#
    )
}

const AM_CONFIG: &str = r#"route:
  receiver: blackhole
  group_by: [slo]
  routes:
    - matchers: ['owner="team-identity"']
      receiver: identity-oncall
    - matchers: ['owner="team-payments"']
      receiver: payments-oncall
receivers:
  - name: blackhole
  - name: identity-oncall
  - name: payments-oncall
"#;

/// The page alert of `slo` in Alertmanager.
fn page<'a>(alerts: &'a [Value], slo: &str) -> Option<&'a Value> {
    alerts
        .iter()
        .find(|a| a["labels"]["slo"] == slo && a["labels"]["severity"] == "page")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_reach_each_team_by_owner_labels_and_routes() {
    let dir = TempDir::new("ap-routing");
    let am = Alertmanager::start_with_config(dir.path(), AM_CONFIG).await;
    let pd = CaptureServer::start(|_| 202).await;
    let identity_key = dir.path().join("pd-identity");
    std::fs::write(&identity_key, "IDENTITYKEY\n").expect("key");
    let default_key = dir.path().join("pd-default");
    std::fs::write(&default_key, "DEFAULTKEY\n").expect("key");
    let alerting = format!(
        "alerting:\n  alertmanager: [{}]\n  pagerduty:\n    url: {}\n    routing_key_file: {}\n    \
         routes:\n      - match: {{ owner: team-identity, tier: gold }}\n        routing_key_file: {}\n",
        am.url,
        pd.url("/v2/enqueue"),
        default_key.display(),
        identity_key.display()
    );
    let coord = CoordinatorFixture::start_with(&dir, &catalog(free_port()), &alerting).await;
    let _agent = AgentFixture::start(&dir, "routing-agent", &coord.grpc_url(), "").await;
    let client = reqwest::Client::new();

    // Alertmanager's routing tree chose each team's receiver by `owner`.
    let alerts = wait_for(WAIT, "both pages in Alertmanager", || async {
        let alerts = am.alerts(&client).await?;
        (page(&alerts, "login-availability").is_some()
            && page(&alerts, "payments-availability").is_some())
        .then_some(alerts)
    })
    .await;
    let login = page(&alerts, "login-availability").expect("login page");
    assert_eq!(
        login["receivers"][0]["name"], "identity-oncall",
        "{login:#}"
    );
    // The owner comes from the probe (the SLO sets none); labels from the SLO.
    assert_eq!(login["labels"]["owner"], "team-identity", "{login:#}");
    assert_eq!(login["labels"]["tier"], "gold", "{login:#}");
    assert_eq!(login["labels"]["service"], "sso", "{login:#}");
    assert_eq!(
        login["labels"]["alertname"], "AuthpulseSLOBurn",
        "{login:#}"
    );
    assert_eq!(
        login["annotations"]["runbook_url"], "https://runbooks.example/login",
        "{login:#}"
    );
    let payments = page(&alerts, "payments-availability").expect("payments page");
    assert_eq!(
        payments["receivers"][0]["name"], "payments-oncall",
        "{payments:#}"
    );
    assert!(
        payments["annotations"]["runbook_url"].is_null(),
        "{payments:#}"
    );

    // PagerDuty: the identity route's key for login, the default for payments.
    let triggers = wait_for(WAIT, "both PagerDuty page triggers", || async {
        let t: Vec<Value> = pd
            .requests()
            .iter()
            .map(|r| r.json())
            .filter(|b| b["event_action"] == "trigger" && b["payload"]["severity"] == "critical")
            .collect();
        let has = |slo: &str| t.iter().any(|b| b["payload"]["component"] == slo);
        (has("login-availability") && has("payments-availability")).then_some(t)
    })
    .await;
    let by = |slo: &str| {
        triggers
            .iter()
            .find(|b| b["payload"]["component"] == slo)
            .cloned()
            .expect("trigger")
    };
    let login = by("login-availability");
    assert_eq!(login["routing_key"], "IDENTITYKEY", "{login:#}");
    assert_eq!(login["payload"]["group"], "team-identity", "{login:#}");
    assert_eq!(login["links"][0]["href"], "https://runbooks.example/login");
    assert_eq!(login["payload"]["custom_details"]["labels"]["tier"], "gold");
    let payments = by("payments-availability");
    assert_eq!(payments["routing_key"], "DEFAULTKEY", "{payments:#}");
    assert_eq!(
        payments["payload"]["group"], "team-payments",
        "{payments:#}"
    );

    // The info series joins ownership onto the SLO series.
    let text = authpulse_tests::get_text(&client, format!("{}/metrics", coord.api)).await;
    let info = text
        .lines()
        .find(|l| l.starts_with("authpulse_slo_info{") && l.contains("slo=\"login-availability\""))
        .unwrap_or_else(|| panic!("no slo_info:\n{text}"));
    assert!(
        info.contains("owner=\"team-identity\"") && info.contains("tier=\"gold\""),
        "{info}"
    );
    assert!(info.ends_with(" 1"), "{info}");
}
