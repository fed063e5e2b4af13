//! The status feed against a real in-process coordinator: results inserted
//! into its store create each SLO situation (all good, slow burn, fast burn,
//! one region down, budget spent, no data); the Statuspage v2 JSON is
//! checked field by field against the documented shapes, incidents open
//! from the alerts the coordinator's own alerter fires, survive restarts
//! and resolve when the alerts clear; badges follow the SLO's state.
mod common;

use std::path::Path;
use std::time::Duration;

use authpulse_coordinator::{CoordinatorConfig, Running, start};
use authpulse_proto::v1::ProbeResult;
use common::{http_get, http_json, now_ms, result_at};
use serde_json::Value;
use sqlx::Connection;

/// Alerts are stepped every 15 s; an incident follows at the next request.
const ALERT_WAIT: Duration = Duration::from_secs(45);

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;

const CATALOG: &str = r#"
probes:
  - { id: login, kind: http, url: "https://idp.example.com/login", interval: 36s }
  - { id: token, kind: http, url: "https://idp.example.com/token", interval: 36s }
  - { id: authz, kind: http, url: "https://idp.example.com/authz", interval: 36s }
  - { id: userinfo, kind: http, url: "https://idp.example.com/userinfo", interval: 36s }
  - { id: jwks, kind: http, url: "https://idp.example.com/jwks", interval: 36s }
  - { id: scim, kind: http, url: "https://idp.example.com/scim", interval: 36s }
slos:
  - { id: login-availability, probes: [login], objective: 99, window: 30d }
  - { id: token-availability, probes: [token], objective: 99, window: 30d }
  - { id: authz-availability, probes: [authz], objective: 99, window: 30d }
  - { id: userinfo-availability, probes: [userinfo], objective: 99, window: 30d }
  - { id: jwks-availability, probes: [jwks], objective: 99, window: 30d }
  - { id: scim-availability, probes: [scim], objective: 99, window: 30d }
components:
  - id: login
    name: Login
    description: Interactive sign-in
    slos: [login-availability]
  - { id: token-issuance, name: Token issuance, slos: [token-availability] }
  - { id: authorization, name: Authorization, slos: [authz-availability] }
  - { id: userinfo, name: User info, slos: [userinfo-availability] }
  - { id: keys, name: Signing keys, slos: [jwks-availability] }
  - { id: provisioning, name: Provisioning, slos: [scim-availability] }
"#;

async fn start_in(dir: &Path, catalog: &str) -> Running {
    let catalog_path = dir.join("catalog.yaml");
    std::fs::write(&catalog_path, catalog).expect("write catalog");
    start(CoordinatorConfig {
        grpc_listen: "127.0.0.1:0".parse().expect("addr"),
        http_listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.join("data"),
        catalog: vec![catalog_path],
        insecure: true,
        ..CoordinatorConfig::default()
    })
    .await
    .expect("coordinator starts")
}

/// Results of `probe` in `region`, seqs from `seq`, at the given times.
fn runs(
    region: &str,
    probe: &str,
    seq: &mut u64,
    times: impl IntoIterator<Item = i64>,
    ok: bool,
) -> Vec<ProbeResult> {
    times
        .into_iter()
        .map(|t| {
            *seq += 1;
            result_at("seed", region, *seq, probe, ok, t, 120_000)
        })
        .collect()
}

/// `n` start times evenly spread over [from, to).
fn spread(n: i64, from: i64, to: i64) -> impl Iterator<Item = i64> {
    (0..n).map(move |k| from + k * (to - from) / n)
}

/// Healthy history for `probe` in `region`: `old` runs 4 days ago (outside
/// every burn window, inside the 30d SLO window and before the coverage
/// window) and `recent` runs over the last 2 hours.
fn healthy(
    region: &str,
    probe: &str,
    seq: &mut u64,
    now: i64,
    old: i64,
    recent: i64,
) -> Vec<ProbeResult> {
    let mut v = runs(
        region,
        probe,
        seq,
        spread(old, now - 4 * DAY, now - 4 * DAY + HOUR),
        true,
    );
    v.extend(runs(
        region,
        probe,
        seq,
        spread(recent, now - 2 * HOUR, now - 10_000),
        true,
    ));
    v
}

fn rfc3339(v: &Value, what: &str) -> std::time::SystemTime {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("{what} must be a string: {v}"));
    humantime::parse_rfc3339(s).unwrap_or_else(|e| panic!("{what} `{s}` is not RFC 3339: {e}"))
}

fn is_str(v: &Value, what: &str) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("{what} must be a string: {v}"))
        .to_string()
}

fn one_of(v: &Value, allowed: &[&str], what: &str) -> String {
    let s = is_str(v, what);
    assert!(
        allowed.contains(&s.as_str()),
        "{what} `{s}` not in {allowed:?}"
    );
    s
}

const COMPONENT_STATUSES: &[&str] = &[
    "operational",
    "degraded_performance",
    "partial_outage",
    "major_outage",
    "under_maintenance",
];
const INDICATORS: &[&str] = &["none", "minor", "major", "critical", "maintenance"];
const INCIDENT_STATUSES: &[&str] = &[
    "investigating",
    "identified",
    "monitoring",
    "resolved",
    "postmortem",
];

/// Statuspage v2 `page`.
fn check_page(p: &Value) -> String {
    let id = is_str(&p["id"], "page.id");
    is_str(&p["name"], "page.name");
    let url = is_str(&p["url"], "page.url");
    assert!(url.starts_with("http://127.0.0.1:"), "page.url {url}");
    assert_eq!(p["time_zone"], "Etc/UTC");
    rfc3339(&p["updated_at"], "page.updated_at");
    id
}

/// Statuspage v2 `status`.
fn check_status(s: &Value) -> String {
    let indicator = one_of(&s["indicator"], INDICATORS, "status.indicator");
    let want = match indicator.as_str() {
        "none" => "All Systems Operational",
        "minor" => "Partially Degraded Service",
        "major" => "Partial System Outage",
        _ => "Major System Outage",
    };
    assert_eq!(s["description"], want);
    indicator
}

/// Statuspage v2 component.
fn check_component(c: &Value, page_id: &str) {
    is_str(&c["id"], "component.id");
    is_str(&c["name"], "component.name");
    one_of(&c["status"], COMPONENT_STATUSES, "component.status");
    let created = rfc3339(&c["created_at"], "component.created_at");
    let updated = rfc3339(&c["updated_at"], "component.updated_at");
    assert!(updated >= created, "{c}");
    assert!(c["position"].as_u64().is_some_and(|p| p >= 1), "{c}");
    assert!(
        c["description"].is_string() || c["description"].is_null(),
        "{c}"
    );
    assert_eq!(c["showcase"], true);
    assert!(c["group_id"].is_null(), "{c}");
    assert_eq!(c["page_id"], page_id);
    assert_eq!(c["group"], false);
    assert_eq!(c["only_show_if_degraded"], false);
}

/// Statuspage v2 incident with its updates and components.
fn check_incident(i: &Value, page_id: &str) {
    let id = is_str(&i["id"], "incident.id");
    is_str(&i["name"], "incident.name");
    let status = one_of(&i["status"], INCIDENT_STATUSES, "incident.status");
    rfc3339(&i["created_at"], "incident.created_at");
    rfc3339(&i["updated_at"], "incident.updated_at");
    rfc3339(&i["started_at"], "incident.started_at");
    assert!(
        i["monitoring_at"].is_null() || i["monitoring_at"].is_string(),
        "{i}"
    );
    if status == "resolved" {
        rfc3339(&i["resolved_at"], "incident.resolved_at");
    } else {
        assert!(i["resolved_at"].is_null(), "{i}");
    }
    one_of(
        &i["impact"],
        &["none", "minor", "major", "critical"],
        "incident.impact",
    );
    let shortlink = is_str(&i["shortlink"], "incident.shortlink");
    assert!(shortlink.starts_with("http://127.0.0.1:"), "{shortlink}");
    assert_eq!(i["page_id"], page_id);
    let updates = i["incident_updates"].as_array().expect("incident_updates");
    assert!(!updates.is_empty(), "{i}");
    for u in updates {
        is_str(&u["id"], "update.id");
        one_of(&u["status"], INCIDENT_STATUSES, "update.status");
        assert!(!is_str(&u["body"], "update.body").is_empty());
        assert_eq!(u["incident_id"], id.as_str());
        rfc3339(&u["created_at"], "update.created_at");
        rfc3339(&u["updated_at"], "update.updated_at");
        rfc3339(&u["display_at"], "update.display_at");
        for a in u["affected_components"]
            .as_array()
            .expect("affected_components")
        {
            is_str(&a["code"], "affected.code");
            is_str(&a["name"], "affected.name");
            one_of(&a["old_status"], COMPONENT_STATUSES, "affected.old_status");
            one_of(&a["new_status"], COMPONENT_STATUSES, "affected.new_status");
        }
    }
    // Newest first, and the incident's status is its newest update's.
    assert_eq!(updates[0]["status"], i["status"], "{i}");
    for c in i["components"].as_array().expect("components") {
        check_component(c, page_id);
    }
}

/// summary.json checked in full; returns it.
async fn summary(addr: std::net::SocketAddr) -> Value {
    let s = http_json(addr, "/api/v2/summary.json").await;
    let page_id = check_page(&s["page"]);
    check_status(&s["status"]);
    for c in s["components"].as_array().expect("components") {
        check_component(c, &page_id);
    }
    for i in s["incidents"].as_array().expect("incidents") {
        check_incident(i, &page_id);
        assert_ne!(
            i["status"], "resolved",
            "summary lists unresolved incidents only"
        );
    }
    assert_eq!(s["scheduled_maintenances"], serde_json::json!([]));
    s
}

fn component_status(s: &Value, id: &str) -> String {
    s["components"]
        .as_array()
        .expect("components")
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("component {id} in {s}"))["status"]
        .as_str()
        .expect("status")
        .to_string()
}

fn incident_for<'a>(incidents: &'a Value, component: &str) -> Option<&'a Value> {
    incidents.as_array()?.iter().find(|i| {
        i["components"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c["id"] == component))
    })
}

async fn badge(addr: std::net::SocketAddr, slo: &str) -> Value {
    let b = http_json(addr, &format!("/badge/{slo}.json")).await;
    // The shields.io endpoint schema: exactly these keys, strings, version 1.
    assert_eq!(b["schemaVersion"], 1, "{b}");
    assert!(
        b["label"].is_string() && b["message"].is_string() && b["color"].is_string(),
        "{b}"
    );
    assert_eq!(b.as_object().map(|o| o.len()), Some(4), "{b}");
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_incidents_and_badges_follow_the_slos_across_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let running = start_in(dir.path(), CATALOG).await;
    let addr = running.http_addr();
    let store = running.store().clone();
    let now = now_ms();
    let mut seq = 0u64;

    // All good: every component operational, indicator none, no incident.
    let mut seed = Vec::new();
    for p in ["login", "token", "authz", "jwks"] {
        seed.extend(healthy("eu-west", p, &mut seq, now, 2000, 200));
    }
    seed.extend(healthy("eu-west", "userinfo", &mut seq, now, 2000, 200));
    seed.extend(healthy("us-east", "userinfo", &mut seq, now, 2000, 4000));
    store.insert_batch("seed", &seed).await.expect("insert");

    let s = summary(addr).await;
    assert_eq!(s["status"]["indicator"], "none", "{s}");
    let ids: Vec<&str> = s["components"]
        .as_array()
        .expect("components")
        .iter()
        .map(|c| c["id"].as_str().expect("id"))
        .collect();
    assert_eq!(
        ids,
        [
            "login",
            "token-issuance",
            "authorization",
            "userinfo",
            "keys",
            "provisioning"
        ]
    );
    for c in s["components"].as_array().expect("components") {
        assert_eq!(c["status"], "operational", "{c}");
    }
    assert_eq!(s["components"][0]["name"], "Login");
    assert_eq!(s["components"][0]["description"], "Interactive sign-in");
    assert_eq!(s["components"][0]["position"], 1);
    assert!(s["components"][1]["description"].is_null());
    assert_eq!(s["incidents"], serde_json::json!([]));
    let b = badge(addr, "login-availability").await;
    assert_eq!(
        (b["message"].as_str(), b["color"].as_str()),
        (Some("100%"), Some("brightgreen"))
    );
    assert_eq!(b["label"], "login-availability");
    let b = badge(addr, "scim-availability").await;
    assert_eq!(
        (b["message"].as_str(), b["color"].as_str()),
        (Some("no data"), Some("lightgrey"))
    );

    // Now each SLO gets its trouble.
    let mut trouble = Vec::new();
    // Slow burn: 10 bad between 2h and 1h ago → 2h and 1d burn ≈ 4.8 ≥ 3
    // (ticket), nothing in the last hour (no page); budget still 55 %.
    trouble.extend(runs(
        "eu-west",
        "token",
        &mut seq,
        spread(10, now - 2 * HOUR + MIN, now - HOUR - MIN),
        false,
    ));
    // Fast burn: 40 bad over the last hour (1h ≈ 29 %, 5m ≈ 27 %, both
    // ≥ 14.4 × 1 %): page; most runs of the last 5 minutes still good.
    trouble.extend(runs(
        "eu-west",
        "authz",
        &mut seq,
        spread(40, now - HOUR + 1000, now - 1000),
        false,
    ));
    // One region down: eu-west burns ≈ 23 × over 1h, the SLO as a whole
    // 0.7 % (no alert).
    trouble.extend(runs(
        "eu-west",
        "userinfo",
        &mut seq,
        spread(30, now - HOUR + 1000, now - 1000),
        false,
    ));
    // Budget spent long ago (4 days: outside every burn window).
    trouble.extend(runs(
        "eu-west",
        "jwks",
        &mut seq,
        spread(50, now - 4 * DAY, now - 4 * DAY + HOUR),
        false,
    ));
    store.insert_batch("seed", &trouble).await.expect("insert");

    let s = summary(addr).await;
    assert_eq!(component_status(&s, "login"), "operational");
    assert_eq!(
        component_status(&s, "token-issuance"),
        "degraded_performance"
    );
    assert_eq!(component_status(&s, "authorization"), "major_outage");
    assert_eq!(component_status(&s, "userinfo"), "partial_outage");
    assert_eq!(component_status(&s, "keys"), "degraded_performance");
    assert_eq!(
        component_status(&s, "provisioning"),
        "operational",
        "no data: last known (none yet)"
    );
    assert_eq!(s["status"]["indicator"], "critical", "{s}");
    // A changed component says so in updated_at.
    let authz = &s["components"][2];
    assert!(
        rfc3339(&authz["updated_at"], "u") > rfc3339(&authz["created_at"], "c"),
        "{authz}"
    );

    let st = http_json(addr, "/api/v2/status.json").await;
    check_page(&st["page"]);
    assert_eq!(check_status(&st["status"]), "critical");
    assert_eq!(st["page"], s["page"]);
    let cs = http_json(addr, "/api/v2/components.json").await;
    assert_eq!(cs["components"], s["components"]);

    for (slo, color) in [
        ("authz-availability", "red"),
        ("userinfo-availability", "orange"),
        ("jwks-availability", "orange"),
        ("token-availability", "yellow"),
        ("login-availability", "brightgreen"),
    ] {
        let b = badge(addr, slo).await;
        assert_eq!(b["color"], color, "{slo}: {b}");
        assert!(
            b["message"].as_str().is_some_and(|m| m.ends_with('%')),
            "{b}"
        );
    }
    let (code, body) = http_get(addr, "/badge/nope.json").await;
    assert_eq!(code, 404, "{body}");
    assert!(
        serde_json::from_str::<Value>(&body).expect("json")["error"]
            .as_str()
            .is_some_and(|e| e.contains("nope"))
    );
    let (code, _) = http_get(addr, "/badge/nope.svg").await;
    assert_eq!(code, 404);
    let (code, _) = http_get(addr, "/badge/login-availability.png").await;
    assert_eq!(code, 404);
    let (code, svg) = http_get(addr, "/badge/authz-availability.svg").await;
    assert_eq!(code, 200);
    assert!(
        svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""),
        "{svg}"
    );
    assert!(
        svg.contains(">authz-availability<") && svg.contains("#e05d44"),
        "{svg}"
    );

    // The alerter fires page + ticket for authz and a ticket for token:
    // each opens an incident for its component; userinfo (no alert) and
    // keys (no alert) get none.
    let incidents = common_wait(
        ALERT_WAIT,
        "incidents for authorization and token issuance",
        || async {
            let v = http_json(addr, "/api/v2/incidents.json").await;
            let both = incident_for(&v["incidents"], "authorization")
                .is_some_and(|i| i["impact"] == "critical")
                && incident_for(&v["incidents"], "token-issuance").is_some();
            both.then_some(v)
        },
    )
    .await;
    let page_id = check_page(&incidents["page"]);
    for i in incidents["incidents"].as_array().expect("incidents") {
        check_incident(i, &page_id);
    }
    assert!(
        incident_for(&incidents["incidents"], "userinfo").is_none(),
        "{incidents}"
    );
    assert!(
        incident_for(&incidents["incidents"], "keys").is_none(),
        "{incidents}"
    );
    let authz = incident_for(&incidents["incidents"], "authorization")
        .expect("authz")
        .clone();
    assert_eq!(authz["status"], "investigating");
    assert_eq!(authz["name"], "Authorization: elevated error rate");
    assert_eq!(authz["components"][0]["status"], "major_outage");
    let body = authz["incident_updates"][0]["body"].as_str().expect("body");
    assert!(
        body.contains("authz-availability") && body.contains("fast burn"),
        "{body}"
    );
    assert_eq!(
        authz["incident_updates"][0]["affected_components"][0]["code"],
        "authorization"
    );
    let token = incident_for(&incidents["incidents"], "token-issuance")
        .expect("token")
        .clone();
    assert_eq!(token["impact"], "minor", "{token}");
    assert!(
        token["incident_updates"][0]["body"]
            .as_str()
            .is_some_and(|b| b.contains("slow burn"))
    );
    let s = summary(addr).await;
    assert_eq!(s["incidents"].as_array().map(Vec::len), Some(2), "{s}");
    // The shortlink serves the incident.
    let link = authz["shortlink"].as_str().expect("shortlink");
    let path = &link[link.find("/api/").expect("path")..];
    let one = http_json(addr, path).await;
    assert_eq!(one["incident"]["id"], authz["id"]);
    let unresolved = http_json(addr, "/api/v2/incidents/unresolved.json").await;
    assert_eq!(unresolved["incidents"].as_array().map(Vec::len), Some(2));

    // A restart keeps the incidents (same ids, still open) and the page id.
    running.shutdown().await;
    let running = start_in(dir.path(), CATALOG).await;
    let addr = running.http_addr();
    let store = running.store().clone();
    let v = http_json(addr, "/api/v2/incidents.json").await;
    assert_eq!(check_page(&v["page"]), page_id);
    let again = incident_for(&v["incidents"], "authorization").expect("still there");
    assert_eq!(again["id"], authz["id"]);
    assert_eq!(again["created_at"], authz["created_at"]);
    assert_eq!(again["status"], "investigating");
    assert_eq!(
        v["incidents"].as_array().map(Vec::len),
        Some(2),
        "no duplicates: {v}"
    );

    // authz recovers: 6000 good runs in the last 5 minutes bring every
    // burn window under its factor; its alerts clear, the incident resolves.
    let now = now_ms();
    let good = runs(
        "eu-west",
        "authz",
        &mut seq,
        spread(6000, now - 4 * MIN, now - 1000),
        true,
    );
    store.insert_batch("seed", &good).await.expect("insert");
    let resolved = common_wait(
        ALERT_WAIT,
        "the authorization incident to resolve",
        || async {
            let v = http_json(addr, "/api/v2/incidents.json").await;
            incident_for(&v["incidents"], "authorization")
                .filter(|i| i["status"] == "resolved")
                .cloned()
        },
    )
    .await;
    check_incident(&resolved, &page_id);
    assert_eq!(resolved["id"], authz["id"]);
    let updates = resolved["incident_updates"].as_array().expect("updates");
    assert!(updates.len() >= 2, "{resolved}");
    assert_eq!(updates[0]["status"], "resolved");
    assert!(
        updates[0]["body"]
            .as_str()
            .is_some_and(|b| b.starts_with("Resolved")),
        "{resolved}"
    );
    assert_eq!(updates.last().expect("first")["status"], "investigating");
    assert_eq!(
        resolved["components"][0]["status"], "operational",
        "{resolved}"
    );
    let s = summary(addr).await;
    assert_eq!(component_status(&s, "authorization"), "operational");
    assert!(
        incident_for(&s["incidents"], "authorization").is_none(),
        "resolved: not in summary"
    );
    assert!(
        incident_for(&s["incidents"], "token-issuance").is_some(),
        "token still burning"
    );

    // And stays resolved across another restart, no incident reopened.
    running.shutdown().await;
    let running = start_in(dir.path(), CATALOG).await;
    let v = http_json(running.http_addr(), "/api/v2/incidents.json").await;
    let authz_incidents: Vec<&Value> = v["incidents"]
        .as_array()
        .expect("incidents")
        .iter()
        .filter(|i| i["components"][0]["id"] == "authorization")
        .collect();
    assert_eq!(authz_incidents.len(), 1, "{v}");
    assert_eq!(authz_incidents[0]["status"], "resolved");
    assert_eq!(
        authz_incidents[0]["incident_updates"]
            .as_array()
            .map(Vec::len),
        Some(updates.len())
    );
    running.shutdown().await;
}

/// [`authpulse_tests`] is not a dependency here: the same condition wait.
async fn common_wait<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn without_components_every_slo_is_a_component() {
    let h = common::start_default().await;
    let addr = h.running.http_addr();
    let s = summary(addr).await;
    let cs = s["components"].as_array().expect("components");
    assert_eq!(cs.len(), 2, "{s}");
    assert_eq!(cs[0]["id"], "discovery-availability");
    assert_eq!(cs[0]["name"], "discovery-availability");
    assert_eq!(
        cs[0]["description"],
        "Discovery document and JWKS are served"
    );
    assert_eq!(cs[1]["id"], "health-latency");
    assert_eq!(cs[1]["position"], 2);
    // No data at all: operational (nothing known), indicator none.
    assert!(cs.iter().all(|c| c["status"] == "operational"), "{s}");
    assert_eq!(s["status"]["indicator"], "none");
    // Atom with no incidents yet is still a feed.
    let (code, atom) = http_get(addr, "/history.atom").await;
    assert_eq!(code, 200);
    assert!(
        atom.contains("<feed xmlns=\"http://www.w3.org/2005/Atom\"") && !atom.contains("<entry>"),
        "{atom}"
    );
    h.running.shutdown().await;
}

/// Log lines of the coordinator, for the test below.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut v) = self.0.lock() {
            v.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The feed is public: when the store fails, every feed endpoint answers
/// 500 with a generic message and nothing of the database's own words
/// (table names, engine, SQL); the details go to the log. The failure here
/// is a database that answers with errors (its tables gone), not one that
/// is unreachable (tests/tests/storage_outage.rs covers that).
#[tokio::test(flavor = "current_thread")]
async fn a_failing_store_answers_the_feed_without_internals() {
    let log = Captured::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let h = common::start_default().await;
    let addr = h.running.http_addr();
    let (code, _) = http_get(addr, "/api/v2/summary.json").await;
    assert_eq!(code, 200);

    let db = h.dir.path().join("data").join("authpulse.db");
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("open the database beside the coordinator");
    sqlx::raw_sql(
        "DROP TABLE alerts; DROP TABLE meta; DROP TABLE incident_updates;
         DROP TABLE incidents; DROP TABLE status_components;",
    )
    .execute(&mut conn)
    .await
    .expect("drop tables");
    conn.close().await.expect("close");

    for path in [
        "/api/v2/summary.json",
        "/api/v2/status.json",
        "/api/v2/components.json",
        "/api/v2/incidents.json",
        "/api/v2/incidents/unresolved.json",
        "/api/v2/incidents/abc.json",
        "/history.atom",
        "/badge/discovery-availability.json",
        "/badge/discovery-availability.svg",
    ] {
        let (code, body) = http_get(addr, path).await;
        assert_eq!(code, 500, "{path}: {body}");
        assert_eq!(body, r#"{"error":"storage error"}"#, "{path}");
        let lower = body.to_lowercase();
        for word in [
            "sqlite", "table", "no such", "database", "alerts", "meta", "sql",
        ] {
            assert!(!lower.contains(word), "{path} leaks `{word}`: {body}");
        }
    }
    let logged = String::from_utf8_lossy(&log.0.lock().expect("log").clone()).into_owned();
    assert!(logged.contains("storage request failed"), "{logged}");
    assert!(logged.contains("no such table"), "{logged}");
    h.running.shutdown().await;
}

#[test]
fn catalog_components_are_validated() {
    let base = concat!(
        "probes:\n  - { id: a, kind: http, url: \"https://x.example\" }\n",
        "slos:\n  - { id: s, probes: [a], objective: 99, window: 30d }\n",
    );
    let ok = authpulse_proto::catalog::load_str(
        "c.yaml",
        &format!(
            "{base}components:\n  - {{ id: login, name: Login, description: Sign-in, slos: [s] }}\n"
        ),
    )
    .expect("valid");
    assert_eq!(ok.components.len(), 1);
    assert_eq!(ok.components[0].name, "Login");
    assert_eq!(ok.components[0].description.as_deref(), Some("Sign-in"));
    let bad = |text: &str| -> String {
        authpulse_proto::catalog::load_str("c.yaml", &format!("{base}{text}"))
            .expect_err("invalid")
            .to_string()
    };
    let e = bad("components:\n  - { id: login, name: Login, slos: [nope] }\n");
    assert!(
        e.contains("components[0].slos[0]") && e.contains("unknown SLO `nope`"),
        "{e}"
    );
    let e = bad("components:\n  - { id: Login!, name: Login, slos: [s] }\n");
    assert!(e.contains("invalid id `Login!`"), "{e}");
    let e =
        bad("components:\n  - { id: a, name: A, slos: [s] }\n  - { id: a, name: B, slos: [s] }\n");
    assert!(e.contains("duplicate component id `a`"), "{e}");
    let e = bad("components:\n  - { id: a, name: \" \", slos: [] }\n");
    assert!(
        e.contains("needs a name") && e.contains("at least one SLO"),
        "{e}"
    );
    let e = bad("components:\n  - { id: a, name: A, slos: [s], colour: red }\n");
    assert!(e.contains("colour"), "{e}");
    let e = bad("componentz: []\n");
    assert!(e.contains("`components`"), "{e}");
}
