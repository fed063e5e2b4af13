//! The open (token-less, loopback) API against what a web page in the
//! operator's browser can do: simple cross-site POSTs (no body, or
//! `text/plain`), foreign `Origin`s, and DNS rebinding (a foreign `Host`)
//! are refused with a JSON reason, while what real consumers send
//! (Flagger's JSON POST, GETs, the dashboard's same-origin reads) works.
//! And what reaches the audit log through the API is bounded: a 1.9 MB
//! webhook key or silence reason is refused or cut, the log stays small.
use std::time::Duration;

use authpulse_coordinator::{CoordinatorConfig, Running, start};
use serde_json::{Value, json};

const CATALOG: &str = "probes:\n  - { id: login, kind: http, url: \"https://idp.example/\" }\n\
slos:\n  - { id: login, probes: [login], objective: 99, window: 1d }\n\
gates:\n  - { id: deploy, slos: [login], block_when: [page_alert], on_stale: pass }\n";

async fn coordinator() -> (tempfile::TempDir, Running) {
    let dir = tempfile::tempdir().expect("tempdir");
    let catalog = dir.path().join("catalog.yaml");
    std::fs::write(&catalog, CATALOG).expect("catalog");
    let running = start(CoordinatorConfig {
        grpc_listen: "127.0.0.1:0".parse().expect("addr"),
        http_listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.path().join("data"),
        catalog: vec![catalog],
        insecure: true,
        ..CoordinatorConfig::default()
    })
    .await
    .expect("coordinator starts");
    (dir, running)
}

/// (status, JSON body or Null).
async fn send(req: reqwest::RequestBuilder) -> (u16, Value) {
    let r = req
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("answer");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_api_refuses_what_a_web_page_could_send() {
    let (_dir, c) = coordinator().await;
    let base = format!("http://{}", c.http_addr());
    let same_origin = base.clone();
    let client = reqwest::Client::new();
    let reload = format!("{base}/api/v1/admin/reload");

    // A cross-site form POST: no body or text/plain, no preflight.
    for body in ["", "x=1"] {
        let (status, v) = send(
            client
                .post(&reload)
                .header("content-type", "text/plain")
                .body(body),
        )
        .await;
        assert_eq!(status, 415, "{v}");
        assert!(
            v["error"]
                .as_str()
                .is_some_and(|e| e.contains("Content-Type: application/json")),
            "{v}"
        );
    }
    let (status, _) = send(client.post(&reload)).await;
    assert_eq!(status, 415, "no content type at all");
    let (status, _) = send(
        client
            .put(format!("{base}/api/v1/admin/log-level"))
            .body("{\"filter\":\"debug\"}"),
    )
    .await;
    assert_eq!(status, 415, "curl -d's form type");
    let (status, _) = send(
        client
            .post(format!("{base}/api/v1/alerts/login/page/ack"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("reason=x"),
    )
    .await;
    assert_eq!(status, 415);

    // JSON, but from another origin (fetch with CORS sends Origin).
    let (status, v) = send(
        client
            .post(&reload)
            .header("origin", "http://evil.example")
            .json(&json!({})),
    )
    .await;
    assert_eq!(status, 403, "{v}");
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("cross-origin"))
    );
    // A loopback origin on another port is another origin too.
    let (status, _) = send(
        client
            .post(&reload)
            .header("origin", "http://127.0.0.1:1")
            .header("x-authpulse-request", "1"),
    )
    .await;
    assert_eq!(status, 403);

    // DNS rebinding: the page's own name, pointed at 127.0.0.1.
    let (status, v) = send(
        client
            .get(format!("{base}/api/v1/slos"))
            .header("host", "rebind.evil.example:8080"),
    )
    .await;
    assert_eq!(status, 403, "{v}");
    assert!(v["error"].as_str().is_some_and(|e| e.contains("loopback")));
    let (status, _) = send(
        client
            .get(format!("{base}/api/v1/gates/deploy"))
            .header("host", "rebind.evil.example"),
    )
    .await;
    assert_eq!(
        status, 403,
        "a gate decision (audited) is not drivable either"
    );

    // What real callers send still works.
    let (status, v) = send(
        client
            .post(&reload)
            .header("origin", &same_origin)
            .header("x-authpulse-request", "1"),
    )
    .await;
    assert_eq!((status, &v["result"]), (200, &json!("reloaded")), "{v}");
    let (status, v) = send(client.post(&reload).json(&json!({}))).await;
    assert_eq!(status, 200, "{v}");
    let flagger = json!({"name": "podinfo", "namespace": "test", "phase": "Progressing",
                         "checksum": "abc", "metadata": {"k": "v"}});
    let (status, v) = send(
        client
            .post(format!("{base}/api/v1/gates/deploy"))
            .json(&flagger),
    )
    .await;
    assert_eq!((status, v["decision"].as_str()), (200, Some("pass")), "{v}");
    for host in ["localhost:9", "127.0.0.1", "[::1]:8080", "LOCALHOST"] {
        let (status, _) = send(
            client
                .get(format!("{base}/api/v1/slos"))
                .header("host", host),
        )
        .await;
        assert_eq!(status, 200, "Host {host}");
    }
    // Public endpoints are for everyone, whatever the Host.
    for path in ["/healthz", "/api/v2/summary.json", "/badge/login.json"] {
        let (status, _) = send(
            client
                .get(format!("{base}{path}"))
                .header("host", "status.example.com")
                .header("origin", "https://widget.example"),
        )
        .await;
        assert_eq!(status, 200, "{path}");
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_strings_never_reach_the_audit_log() {
    let (dir, c) = coordinator().await;
    let base = format!("http://{}", c.http_addr());
    let client = reqwest::Client::new();
    let gate = format!("{base}/api/v1/gates/deploy");

    // 1.9 MB JSON key (as in the report): over the body limit.
    let huge = format!("{{\"{}\": 1}}", "k".repeat(1_900_000));
    let (status, _) = send(
        client
            .post(&gate)
            .header("content-type", "application/json")
            .body(huge),
    )
    .await;
    assert_eq!(status, 413);
    // Under the limit but far over the record cap: a 40 KB key and 15 KB
    // of metadata are cut to markers.
    let body = json!({
        "name": "n".repeat(5_000),
        "metadata": {"blob": "m".repeat(15_000)},
        "k".repeat(40_000): 1,
    });
    let (status, v) = send(client.post(&gate).json(&body)).await;
    assert_eq!(status, 200, "{v}");
    let seq = v["audit_seq"].as_u64().expect("audited");

    // Silences: a reason over 1,000 characters is refused, not cut.
    let silence = format!("{base}/api/v1/alerts/login/page/silence");
    let (status, v) = send(
        client
            .post(&silence)
            .json(&json!({"duration": "1h", "reason": "r".repeat(1_001)})),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(v["error"], "reason longer than 1000 characters");
    let (status, _) = send(
        client
            .post(&silence)
            .header("content-type", "application/json")
            .body(format!(
                "{{\"duration\":\"1h\",\"reason\":\"{}\"}}",
                "r".repeat(1_900_000)
            )),
    )
    .await;
    assert_eq!(status, 413);
    let (status, v) = send(
        client
            .post(format!("{base}/api/v1/alerts/login/page/ack"))
            .json(&json!({"reason": "a".repeat(1_001)})),
    )
    .await;
    assert_eq!(
        (status, &v["error"]),
        (400, &json!("reason longer than 1000 characters"))
    );
    let (status, v) = send(
        client
            .post(&silence)
            .json(&json!({"duration": "1h", "reason": "r".repeat(1_000)})),
    )
    .await;
    assert_eq!(status, 200, "{v}");

    c.shutdown().await;
    let log = dir.path().join("data").join("audit.jsonl");
    let text = std::fs::read_to_string(&log).expect("audit log");
    assert!(
        text.len() < 16 * 1024,
        "audit log grew to {} bytes",
        text.len()
    );
    let entry: Value = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("json"))
        .find(|e| e["seq"] == seq)
        .expect("the gate decision");
    let w = &entry["fields"]["webhook"];
    assert_eq!(w["name"].as_str().map(|s| s.chars().count()), Some(256));
    assert_eq!(w["metadata"]["truncated"], true);
    assert!(w["metadata"]["bytes"].as_u64() > Some(15_000));
    assert!(
        w["metadata"]["prefix"]
            .as_str()
            .is_some_and(|p| p.starts_with("{\"blob\":\"mmm") && p.len() <= 512)
    );
    let other = w["other_keys"].as_array().expect("other keys");
    assert_eq!(other[0].as_str().map(str::len), Some(256));
    authpulse_coordinator::audit::verify(&log).expect("the log verifies");
}
