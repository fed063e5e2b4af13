//! Burn-rate alerts end to end: an agent probes a real OpenID provider, the
//! provider goes down, the coordinator pages through a real Alertmanager,
//! PagerDuty (Events v2, via a local capture endpoint that fails once to
//! prove the retry) and a signed webhook; opting the SLO out of paging in
//! the catalog (hot reload) resolves the page everywhere.
use std::time::Duration;

use authpulse_tests::capture::{CaptureServer, Captured};
use authpulse_tests::fleet::{AgentFixture, CoordinatorFixture, metric, rewrite};
use authpulse_tests::peers::{Alertmanager, OidcPeer};
use authpulse_tests::{TempDir, wait_for};
use hmac::{KeyInit, Mac};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(45);
const SLO: &str = "idp-availability";
const SECRET: &str = "webhook-secret-1";

fn catalog(issuer: &str, alerting: &str) -> String {
    format!(
        "probes:\n  - id: idp-discovery\n    kind: oidc_discovery\n    issuer: {issuer}\n    interval: 1s\n    timeout: 800ms\n\
         slos:\n  - id: {SLO}\n    probes: [idp-discovery]\n    objective: 99\n    window: 1h\n{alerting}"
    )
}

fn is_page(a: &Value) -> bool {
    a["labels"]["slo"] == SLO && a["labels"]["severity"] == "page"
}

/// Page bodies (PagerDuty) with `action`.
fn pd_pages(reqs: &[Captured], action: &str) -> Vec<Value> {
    reqs.iter()
        .map(Captured::json)
        .filter(|b| {
            b["dedup_key"] == format!("authpulse/{SLO}/page") && b["event_action"] == action
        })
        .collect()
}

/// The webhook's page notifications with `status`, each checked for a valid signature.
fn webhook_pages(reqs: &[Captured], status: &str) -> Vec<Value> {
    reqs.iter()
        .filter(|r| {
            let b = r.json();
            b["slo"] == SLO && b["severity"] == "page" && b["status"] == status
        })
        .map(|r| {
            let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(SECRET.as_bytes())
                .expect("key");
            mac.update(&r.body);
            let want = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
            assert_eq!(r.header("x-authpulse-signature"), Some(want.as_str()));
            r.json()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_fires_and_resolves_in_alertmanager_pagerduty_and_webhook() {
    let dir = TempDir::new("ap-alerts");
    let mut peer = OidcPeer::start().await;
    let am = Alertmanager::start(dir.path()).await;
    // PagerDuty answers the first event with 500: it must be retried.
    let pd = CaptureServer::start(|i| if i == 0 { 500 } else { 202 }).await;
    let hook = CaptureServer::start(|_| 200).await;
    let key_file = dir.path().join("pd-key");
    std::fs::write(&key_file, "R0UTINGKEY\n").expect("key");
    let secret_file = dir.path().join("hook-secret");
    std::fs::write(&secret_file, SECRET).expect("secret");

    let alerting = format!(
        "alerting:\n  alertmanager: [{}]\n  pagerduty:\n    routing_key_file: {}\n    url: {}\n  webhook:\n    url: {}\n    hmac_secret_file: {}\n",
        am.url,
        key_file.display(),
        pd.url("/v2/enqueue"),
        hook.url("/hook"),
        secret_file.display()
    );
    let coord = CoordinatorFixture::start_with(&dir, &catalog(&peer.issuer, ""), &alerting).await;
    let _agent = AgentFixture::start(&dir, "alerts-agent", &coord.grpc_url(), "").await;
    let client = reqwest::Client::new();

    // Healthy first: a success stored.
    wait_for(WAIT, "a successful result", || async {
        let v: Value = client
            .get(format!("{}/api/v1/probes", coord.api))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        v["probes"]
            .as_array()?
            .iter()
            .any(|p| p["outcome"] == "success")
            .then_some(())
    })
    .await;

    // Down: a 1h SLO at 99 % pages at 14.4 × 1h/30d = 0.02x over 1h and 5m.
    peer.stop().await;
    let alert = wait_for(WAIT, "the page alert in Alertmanager", || async {
        am.alerts(&client).await?.into_iter().find(is_page)
    })
    .await;
    assert_eq!(alert["labels"]["alertname"], "AuthpulseSLOBurn");
    assert_eq!(alert["status"]["state"], "active", "{alert}");
    assert!(
        alert["annotations"]["description"]
            .as_str()
            .is_some_and(|d| d.contains("over 1h") && d.contains("over 5m")),
        "{alert}"
    );
    assert!(
        alert["generatorURL"]
            .as_str()
            .is_some_and(|u| u.starts_with(&coord.api)),
        "{alert}"
    );

    let firing: Value = client
        .get(format!("{}/api/v1/alerts", coord.api))
        .send()
        .await
        .expect("alerts api")
        .json()
        .await
        .expect("json");
    let page = firing["alerts"]
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|a| a["slo"] == SLO && a["severity"] == "page")
        })
        .unwrap_or_else(|| panic!("page in /api/v1/alerts: {firing}"));
    assert_eq!(page["rule"], "1h/5m");
    assert!(page["burn_rates"]["1h"].as_f64().expect("1h burn") >= 0.02);
    let text = authpulse_tests::get_text(&client, format!("{}/metrics", coord.api)).await;
    assert!(
        text.contains(&format!(
            "authpulse_slo_alert_firing{{slo=\"{SLO}\",severity=\"page\"}} 1"
        )),
        "{text}"
    );

    // PagerDuty: the first attempt got 500, the same event was retried.
    let trigger = wait_for(WAIT, "the PagerDuty trigger", || async {
        pd_pages(&pd.requests(), "trigger").into_iter().nth(1)
    })
    .await;
    let reqs = pd.requests();
    assert_eq!(reqs[0].body, reqs[1].body, "request 1 retries request 0");
    assert!(reqs.iter().all(|r| r.path == "/v2/enqueue"));
    assert_eq!(trigger["routing_key"], "R0UTINGKEY");
    assert_eq!(trigger["payload"]["source"], "authpulse");
    assert_eq!(trigger["payload"]["severity"], "critical");
    assert!(
        trigger["payload"]["summary"]
            .as_str()
            .is_some_and(|s| s.contains(SLO))
    );
    assert!(trigger["payload"]["custom_details"]["burn_rates"]["1h"].is_number());

    let fired = wait_for(WAIT, "the signed webhook (firing)", || async {
        webhook_pages(&hook.requests(), "firing").into_iter().next()
    })
    .await;
    assert_eq!(fired["rule"], "1h/5m");
    assert!(fired["burn_rates"]["5m"].is_number(), "{fired}");

    // Back up, and paging opted out in the catalog (hot reload): resolved.
    peer.restart().await;
    rewrite(
        &coord.catalog,
        &catalog(&peer.issuer, "    alerting: { page: false }\n"),
    );
    wait_for(WAIT, "the page alert to leave Alertmanager", || async {
        let alerts = am.alerts(&client).await?;
        (!alerts.iter().any(is_page)).then_some(())
    })
    .await;
    let resolve = wait_for(WAIT, "the PagerDuty resolve", || async {
        pd_pages(&pd.requests(), "resolve").into_iter().next()
    })
    .await;
    assert_eq!(resolve["dedup_key"], trigger["dedup_key"]);
    assert_eq!(resolve["routing_key"], "R0UTINGKEY");
    assert_eq!(
        pd_pages(&pd.requests(), "resolve").len(),
        1,
        "resolved once"
    );
    let resolved = wait_for(WAIT, "the signed webhook (resolved)", || async {
        webhook_pages(&hook.requests(), "resolved")
            .into_iter()
            .next()
    })
    .await;
    assert!(resolved["ended_at"].is_string(), "{resolved}");
    assert_eq!(
        webhook_pages(&hook.requests(), "firing").len(),
        1,
        "fired once"
    );

    let firing: Value = client
        .get(format!("{}/api/v1/alerts", coord.api))
        .send()
        .await
        .expect("alerts api")
        .json()
        .await
        .expect("json");
    assert!(
        !firing["alerts"]
            .as_array()
            .expect("alerts")
            .iter()
            .any(|a| a["slo"] == SLO && a["severity"] == "page"),
        "{firing}"
    );
    let text = authpulse_tests::get_text(&client, format!("{}/metrics", coord.api)).await;
    assert!(metric(&text, "authpulse_coordinator_notifications_total") > 0.0);
    // The routing key and the HMAC secret never reach the log.
    let log = coord.log();
    assert!(
        !log.contains("R0UTINGKEY") && !log.contains(SECRET),
        "{log}"
    );
}
