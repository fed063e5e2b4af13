//! Scheduled maintenances end to end with the real binaries: declared in
//! the catalog, served at Statuspage's `scheduled-maintenances` endpoints
//! (all, upcoming, active; in `summary.json`), components covered by one in
//! progress `under_maintenance` and the page indicator `maintenance`; a
//! gate over a `gates: block` maintenance fails with it, one over
//! `gates: ignore` is not judged on it; `alerts: suppress` holds the page
//! back from the webhook while the work lasts and sends it once the
//! maintenance is over (catalog hot reload) if it still fires. The status
//! page's name and URL come from the coordinator config.
use std::time::Duration;

use authpulse_tests::capture::CaptureServer;
use authpulse_tests::fleet::{AgentFixture, CoordinatorFixture, free_port, rewrite};
use authpulse_tests::{TempDir, wait_for};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(45);

fn rfc3339(offset_secs: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let t = now + offset_secs;
    // Civil date from days since the epoch (proleptic Gregorian).
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Two teams' probes, both failing (a closed port); `login_ends` is when
/// the login maintenance ends (seconds from now).
fn catalog(closed: u16, login_ends: i64) -> String {
    format!(
        r#"probes:
  - {{ id: login, kind: tcp, address: "127.0.0.1:{closed}", interval: 1s, timeout: 500ms }}
  - {{ id: payments, kind: tcp, address: "127.0.0.1:{closed}", interval: 1s, timeout: 500ms }}
slos:
  - {{ id: login-availability, probes: [login], objective: 99, window: 1h }}
  - {{ id: payments-availability, probes: [payments], objective: 99, window: 1h }}
components:
  - {{ id: login, name: Login, slos: [login-availability] }}
  - {{ id: payments, name: Payments, slos: [payments-availability] }}
gates:
  - {{ id: login-deploy, slos: [login-availability], block_when: [{{ sli_below: {{ window: 1m, value: 0.5 }} }}] }}
  - {{ id: payments-deploy, slos: [payments-availability], block_when: [{{ sli_below: {{ window: 1m, value: 0.5 }} }}] }}
maintenances:
  - id: idp-upgrade
    name: IdP upgrade
    starts: "{started}"
    ends: "{login_end}"
    components: [login]
    message: Upgrading the IdP; sign-in may fail.
    gates: block
  - id: payments-db
    name: Payments database migration
    starts: "{started}"
    ends: "{in_hour}"
    components: [payments]
    gates: ignore
    alerts: notify
  - id: next-week
    name: Certificate rotation
    starts: "{next_week}"
    ends: "{next_week_end}"
    components: [login]
  - id: last-week
    name: Old work
    starts: "{last_week}"
    ends: "{last_week_end}"
    components: [payments]
"#,
        started = rfc3339(-3600),
        login_end = rfc3339(login_ends),
        in_hour = rfc3339(3600),
        next_week = rfc3339(7 * 86_400),
        next_week_end = rfc3339(7 * 86_400 + 3600),
        last_week = rfc3339(-7 * 86_400),
        last_week_end = rfc3339(-7 * 86_400 + 3600),
    )
}

async fn get(client: &reqwest::Client, url: String) -> (u16, Value) {
    let r = client.get(&url).send().await.expect("GET");
    let status = r.status().as_u16();
    (status, r.json().await.expect("json"))
}

fn ids(v: &Value) -> Vec<(String, String)> {
    v["scheduled_maintenances"]
        .as_array()
        .expect("list")
        .iter()
        .map(|m| {
            (
                m["id"].as_str().unwrap_or_default().to_string(),
                m["status"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenances_show_hold_alerts_and_steer_gates() {
    let dir = TempDir::new("ap-maint");
    let hook = CaptureServer::start(|_| 200).await;
    let closed = free_port();
    let extra = format!(
        "alerting:\n  webhook:\n    url: {}\nstatus_page:\n  name: Acme IAM\n  url: https://status.acme.example/\n",
        hook.url("/hook")
    );
    let mut coord = CoordinatorFixture::start_with(&dir, &catalog(closed, 3600), &extra).await;
    let _agent = AgentFixture::start(&dir, "maint-agent", &coord.grpc_url(), "").await;
    let client = reqwest::Client::new();
    let api = coord.api.clone();

    // The Statuspage endpoints.
    let (status, all) = get(&client, format!("{api}/api/v2/scheduled-maintenances.json")).await;
    assert_eq!(status, 200);
    assert_eq!(
        ids(&all),
        [
            ("last-week".to_string(), "completed".to_string()),
            ("idp-upgrade".into(), "in_progress".into()),
            ("payments-db".into(), "in_progress".into()),
            ("next-week".into(), "scheduled".into()),
        ]
    );
    assert_eq!(all["page"]["name"], "Acme IAM");
    assert_eq!(all["page"]["url"], "https://status.acme.example");
    let upgrade = &all["scheduled_maintenances"][1];
    assert_eq!(upgrade["impact"], "maintenance");
    assert_eq!(upgrade["components"][0]["id"], "login");
    assert_eq!(
        upgrade["incident_updates"][0]["body"],
        "Upgrading the IdP; sign-in may fail."
    );
    assert!(upgrade["scheduled_until"].as_str().is_some(), "{upgrade}");
    let (_, upcoming) = get(
        &client,
        format!("{api}/api/v2/scheduled-maintenances/upcoming.json"),
    )
    .await;
    assert_eq!(
        ids(&upcoming),
        [("next-week".to_string(), "scheduled".to_string())]
    );
    let (_, active) = get(
        &client,
        format!("{api}/api/v2/scheduled-maintenances/active.json"),
    )
    .await;
    assert_eq!(ids(&active).len(), 2);
    let (_, summary) = get(&client, format!("{api}/api/v2/summary.json")).await;
    assert_eq!(
        ids(&summary).len(),
        3,
        "upcoming and in progress: {summary:#}"
    );
    for c in summary["components"].as_array().expect("components") {
        assert_eq!(c["status"], "under_maintenance", "{c}");
    }
    assert_eq!(summary["status"]["indicator"], "maintenance", "{summary:#}");

    // Gates: `block` fails with the maintenance, `ignore` passes with a note
    // although its SLO is failing.
    let login = wait_for(WAIT, "login-deploy to fail", || async {
        let (s, v) = get(&client, format!("{api}/api/v1/gates/login-deploy")).await;
        (s == 503).then_some(v)
    })
    .await;
    assert!(
        login["reasons"]
            .to_string()
            .contains("scheduled maintenance `idp-upgrade` in progress"),
        "{login:#}"
    );
    let (s, payments) = get(&client, format!("{api}/api/v1/gates/payments-deploy")).await;
    assert_eq!(s, 200, "{payments:#}");
    assert!(
        payments["notes"].to_string().contains("not judged"),
        "{payments:#}"
    );

    // Alerts: payments (alerts: notify) reaches the webhook; login's page
    // is held back while the maintenance lasts.
    wait_for(WAIT, "the payments page at the webhook", || async {
        hook.requests()
            .iter()
            .any(|r| r.json()["slo"] == "payments-availability")
            .then_some(())
    })
    .await;
    wait_for(WAIT, "the login page held back", || async {
        coord
            .log()
            .contains("notification held back: scheduled maintenance in progress")
            .then_some(())
    })
    .await;
    assert!(
        !hook
            .requests()
            .iter()
            .any(|r| r.json()["slo"] == "login-availability"),
        "a page was sent during the maintenance"
    );

    // The maintenance ends early (catalog change): the page still fires
    // and is sent now; the gate judges the SLO again.
    rewrite(&coord.catalog, &catalog(closed, -60));
    let page = wait_for(WAIT, "the login page after the maintenance", || async {
        hook.requests()
            .iter()
            .map(|r| r.json())
            .find(|b| b["slo"] == "login-availability" && b["status"] == "firing")
    })
    .await;
    assert_eq!(page["severity"], "page");
    let (s, login) = get(&client, format!("{api}/api/v1/gates/login-deploy")).await;
    assert_eq!(s, 503);
    assert!(
        !login["reasons"].to_string().contains("maintenance"),
        "{login:#}"
    );
    let (_, summary) = get(&client, format!("{api}/api/v2/summary.json")).await;
    let login_component = summary["components"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["id"] == "login"))
        .cloned()
        .expect("login");
    assert_ne!(login_component["status"], "under_maintenance");
    coord.process().terminate().await;
}
