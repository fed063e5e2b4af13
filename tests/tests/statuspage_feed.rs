//! The status feed end to end with the real binaries: an agent probes a real
//! OpenID provider; while it is up the page is operational and the badge
//! green; when it goes down the coordinator's page alert opens an incident
//! on the "Login" component; when the alerts clear (paging opted out in the
//! catalog, hot reload) the incident resolves. The Atom history is then read
//! by a real feed parser (Python `feedparser`) and checked against RFC 4287,
//! the SVG badge by an XML parser, the badge JSON against the shields.io
//! endpoint schema.
use authpulse_tests::feed_check::{parse_atom, parse_svg};
use authpulse_tests::fleet::{AgentFixture, CoordinatorFixture, WAIT, rewrite};
use authpulse_tests::peers::OidcPeer;
use authpulse_tests::{TempDir, wait_for};
use serde_json::Value;

fn catalog(issuer: &str, alerting: &str) -> String {
    format!(
        "probes:\n  - id: idp-discovery\n    kind: oidc_discovery\n    issuer: {issuer}\n    interval: 1s\n    timeout: 800ms\n\
         slos:\n  - id: idp-availability\n    probes: [idp-discovery]\n    objective: 99\n    window: 1h\n{alerting}\
         components:\n  - id: login\n    name: Login\n    description: Sign-in with the corporate IdP\n    slos: [idp-availability]\n"
    )
}

async fn get_json(client: &reqwest::Client, url: String) -> Option<Value> {
    let r = client.get(&url).send().await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json().await.ok()
}

fn login(summary: &Value) -> Option<&Value> {
    summary["components"]
        .as_array()?
        .iter()
        .find(|c| c["id"] == "login")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_opens_and_resolves_an_incident_in_the_atom_history() {
    let dir = TempDir::new("ap-statusfeed");
    let mut peer = OidcPeer::start().await;
    let coord = CoordinatorFixture::start(&dir, &catalog(&peer.issuer, "")).await;
    let _agent = AgentFixture::start(&dir, "feed-agent", &coord.grpc_url(), "").await;
    let client = reqwest::Client::new();
    let api = coord.api.clone();

    // Up: operational, green badge, no incident.
    let summary = wait_for(WAIT, "an operational Login with data", || async {
        let b = get_json(&client, format!("{api}/badge/idp-availability.json")).await?;
        (b["message"] == "100%").then_some(())?;
        let s = get_json(&client, format!("{api}/api/v2/summary.json")).await?;
        (login(&s)?["status"] == "operational").then_some(s)
    })
    .await;
    assert_eq!(summary["status"]["indicator"], "none", "{summary}");
    assert_eq!(summary["incidents"], serde_json::json!([]));
    assert_eq!(
        login(&summary).expect("login")["description"],
        "Sign-in with the corporate IdP"
    );

    let badge: Value = get_json(&client, format!("{api}/badge/idp-availability.json"))
        .await
        .expect("badge");
    assert_eq!(
        badge,
        serde_json::json!({"schemaVersion": 1, "label": "idp-availability", "message": "100%", "color": "brightgreen"})
    );
    let svg = client
        .get(format!("{api}/badge/idp-availability.svg"))
        .send()
        .await
        .expect("svg badge");
    assert_eq!(svg.status(), 200);
    assert_eq!(
        svg.headers()["content-type"],
        "image/svg+xml; charset=utf-8"
    );
    let svg = svg.text().await.expect("svg text");
    let parsed = parse_svg(dir.path(), "badge.svg", &svg);
    assert_eq!(parsed["tag"], "{http://www.w3.org/2000/svg}svg", "{parsed}");
    assert_eq!(parsed["height"], "20");
    assert_eq!(parsed["title"], "idp-availability: 100%");
    let texts = parsed["texts"].as_array().expect("texts");
    assert!(
        texts.contains(&Value::from("idp-availability")) && texts.contains(&Value::from("100%")),
        "{parsed}"
    );
    for missing in ["/badge/nope.json", "/badge/nope.svg"] {
        let r = client
            .get(format!("{api}{missing}"))
            .send()
            .await
            .expect("404");
        assert_eq!(r.status(), 404, "{missing}");
        let body: Value = r.json().await.expect("JSON error body");
        assert!(
            body["error"].as_str().is_some_and(|e| e.contains("nope")),
            "{body}"
        );
    }

    // Down: the page alert opens an incident on Login.
    peer.stop().await;
    let incident = wait_for(WAIT, "an incident for Login", || async {
        let s = get_json(&client, format!("{api}/api/v2/summary.json")).await?;
        s["incidents"]
            .as_array()?
            .iter()
            .find(|i| i["components"][0]["id"] == "login")
            .cloned()
    })
    .await;
    assert_eq!(incident["name"], "Login: elevated error rate", "{incident}");
    assert_eq!(incident["status"], "investigating");
    assert_eq!(incident["impact"], "critical");
    assert_eq!(incident["components"][0]["status"], "major_outage");
    let status = get_json(&client, format!("{api}/api/v2/status.json"))
        .await
        .expect("status");
    assert_eq!(status["status"]["indicator"], "critical", "{status}");
    assert_eq!(status["status"]["description"], "Major System Outage");

    // Alerts cleared (back up, paging and tickets opted out): resolved.
    peer.restart().await;
    rewrite(
        &coord.catalog,
        &catalog(
            &peer.issuer,
            "    alerting: { page: false, ticket: false }\n",
        ),
    );
    let resolved = wait_for(WAIT, "the Login incident to resolve", || async {
        let v = get_json(&client, format!("{api}/api/v2/incidents.json")).await?;
        v["incidents"]
            .as_array()?
            .iter()
            .find(|i| i["id"] == incident["id"] && i["status"] == "resolved")
            .cloned()
    })
    .await;
    assert!(resolved["resolved_at"].is_string(), "{resolved}");
    let updates = resolved["incident_updates"].as_array().expect("updates");
    assert_eq!(updates[0]["status"], "resolved");
    assert_eq!(updates.last().expect("first")["status"], "investigating");

    // The history as a feed reader sees it.
    let r = client
        .get(format!("{api}/history.atom"))
        .send()
        .await
        .expect("history.atom");
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "application/atom+xml; charset=utf-8"
    );
    let atom = r.text().await.expect("atom text");
    let feed = parse_atom(dir.path(), "history.atom", &atom);
    assert_eq!(feed["bozo"], 0, "not well-formed: {feed}\n{atom}");
    assert_eq!(feed["version"], "atom10", "{feed}");
    assert_eq!(feed["problems"], serde_json::json!([]), "{atom}");
    assert!(
        feed["feed"]["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("urn:uuid:")),
        "{feed}"
    );
    assert_eq!(feed["feed"]["title"], "authpulse status history");
    assert_eq!(feed["feed"]["updated_parsed"], true);
    assert!(
        feed["feed"]["links"]
            .as_array()
            .expect("links")
            .iter()
            .any(|l| l["rel"] == "self" && l["href"] == format!("{api}/history.atom")),
        "{feed}"
    );
    let entries = feed["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), updates.len(), "one entry per update: {feed}");
    for e in entries {
        assert!(
            e["id"]
                .as_str()
                .is_some_and(|id| id.starts_with("urn:uuid:")),
            "{e}"
        );
        assert_eq!(e["updated_parsed"], true, "{e}");
        assert_eq!(e["published_parsed"], true, "{e}");
        assert!(
            e["title"]
                .as_str()
                .is_some_and(|t| t.starts_with("Login: elevated error rate — ")),
            "{e}"
        );
        assert!(
            e["content"][0]
                .as_str()
                .is_some_and(|c| c.contains("idp-availability") && c.contains("Login: ")),
            "{e}"
        );
        assert_eq!(e["tags"], serde_json::json!(["critical"]), "{e}");
        let link = format!(
            "{api}/api/v2/incidents/{}.json",
            incident["id"].as_str().expect("id")
        );
        assert_eq!(
            e["links"],
            serde_json::json!([{"rel": "alternate", "type": "application/json", "href": link}]),
            "{e}"
        );
    }
    // Newest first: the resolution, then the first report.
    assert_eq!(entries[0]["title"], "Login: elevated error rate — Resolved");
    assert_eq!(
        entries.last().expect("first")["title"],
        "Login: elevated error rate — Investigating"
    );

    let badge: Value = get_json(&client, format!("{api}/badge/idp-availability.json"))
        .await
        .expect("badge");
    assert_eq!(badge["schemaVersion"], 1);
    assert!(
        badge["message"]
            .as_str()
            .is_some_and(|m| m.ends_with('%') && m != "100%"),
        "failures count against the SLI: {badge}"
    );
}
