//! The log filter changed while the processes run: a real coordinator and a
//! real agent, both started at `info`. A debug line that is absent appears
//! after `PUT …/log-level` and stops after it is set back; a bad filter is a
//! 400 and the process keeps serving with the filter it had; the
//! coordinator's endpoint needs an admin token and is audited; `trace` set at
//! run time still never lets aws-sigv4 log (it prints the signing identity).
//! The JSON lines are parsed to check that every probe-run line carries
//! `probe`, `region` and `agent_id`, and the coordinator's ingest lines
//! `agent_id`.
use std::path::Path;
use std::time::Duration;

use authpulse_tests::capture::CaptureServer;
use authpulse_tests::fleet::{CoordinatorFixture, CoordinatorOptions};
use authpulse_tests::process::Process;
use authpulse_tests::{TempDir, wait_for};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);
const ADMIN_TOKEN: &str = "admin-token-for-log-level-test";
const READ_TOKEN: &str = "read-token-for-log-level-test";
const AGENT_ID: &str = "log-agent";
const REGION: &str = "eu-test";
/// Inline in the catalog so that a signing trace would print it.
const ACCESS_KEY_ID: &str = "AKIALOGLEVELTEST0001";

struct Pair {
    coordinator: Process,
    agent: Process,
    api: String,
    agent_http: String,
    target: CaptureServer,
    dir: TempDir,
}

/// A coordinator (API tokens: `oncall` admin, `grafana` read) and one agent,
/// both at `AUTHPULSE_LOG=info`, probing a local HTTP endpoint (`/web`, an
/// `http` probe) and signing STS calls to it (`/sts`, an `aws_sts` probe)
/// every second.
async fn start(name: &str) -> Pair {
    authpulse_tests::crypto();
    let dir = TempDir::new(name);
    let target = CaptureServer::start(|_| 200).await;
    let catalog = format!(
        "probes:\n\
         \x20 - id: web\n    kind: http\n    url: {web}\n    interval: 1s\n    timeout: 900ms\n\
         \x20 - id: sts\n    kind: aws_sts\n    endpoint: {sts}\n    region: us-east-1\n\
         \x20   access_key_id: {ACCESS_KEY_ID}\n    secret_access_key: {{ secret: log_test_aws }}\n\
         \x20   interval: 1s\n    timeout: 900ms\n",
        web = target.url("/web"),
        sts = target.url("/sts"),
    );
    let admin = write(dir.path(), "admin.token", ADMIN_TOKEN);
    let read = write(dir.path(), "read.token", READ_TOKEN);
    let mut fixture = CoordinatorFixture::start_opts(
        &dir,
        &catalog,
        CoordinatorOptions {
            extra: format!(
                "api:\n  tokens:\n\
                 \x20   - {{ name: oncall, token_file: {admin}, scopes: [admin] }}\n\
                 \x20   - {{ name: grafana, token_file: {read}, scopes: [read] }}\n"
            ),
            env: vec![("AUTHPULSE_LOG".into(), "info".into())],
            ..CoordinatorOptions::default()
        },
    )
    .await;
    let grpc_port = fixture.grpc_port;
    let api = fixture.api.clone();
    let coordinator = fixture.process.take().expect("running");
    let agent_config = write(
        dir.path(),
        "agent.yaml",
        &format!(
            "agent_id: {AGENT_ID}\nregion: {REGION}\ncoordinator: http://127.0.0.1:{grpc_port}\n\
             insecure: true\nlisten: 127.0.0.1:0\ndata_dir: {}\n",
            dir.path().join("agent-data").display()
        ),
    );
    let mut agent = Process::start(
        "authpulse-agent",
        &["--config", &agent_config],
        &[
            ("AUTHPULSE_LOG", "info"),
            (
                "AUTHPULSE_SECRET_LOG_TEST_AWS",
                "log-test-secret-access-key",
            ),
        ],
        dir.path(),
    )
    .await;
    let agent_http = format!("http://{}", agent.line_after("listening on http://").await);
    Pair {
        coordinator,
        agent,
        api,
        agent_http,
        target,
        dir,
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p.display().to_string()
}

/// The JSON log lines of a process's stderr (anything else is skipped).
fn json_lines(log: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect()
}

fn message(line: &Value) -> &str {
    line["fields"]["message"].as_str().unwrap_or_default()
}

fn count_message(log: &str, text: &str) -> usize {
    json_lines(log)
        .iter()
        .filter(|l| message(l) == text)
        .count()
}

/// Requests the probe target saw on `path` (one per probe run).
fn runs(target: &CaptureServer, path: &str) -> usize {
    target.requests().iter().filter(|r| r.path == path).count()
}

async fn wait_runs(target: &CaptureServer, path: &str, at_least: usize) {
    wait_for(WAIT, &format!("{at_least} runs on {path}"), || async move {
        (runs(target, path) >= at_least).then_some(())
    })
    .await;
}

async fn send(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = client.request(method, url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn coordinator_log_level_changes_at_run_time_for_admins_only() {
    let p = start("ap-log-level-coord").await;
    let client = reqwest::Client::new();
    let url = format!("{}/api/v1/admin/log-level", p.api);
    let get = reqwest::Method::GET;
    let put = reqwest::Method::PUT;
    let debug = json!({ "filter": "info,authpulse_coordinator=debug" });

    // Tokens are configured: no token 401, a read token 403, for both verbs.
    assert_eq!(send(&client, get.clone(), &url, None, None).await.0, 401);
    assert_eq!(
        send(&client, put.clone(), &url, None, Some(debug.clone()))
            .await
            .0,
        401
    );
    assert_eq!(
        send(&client, get.clone(), &url, Some(READ_TOKEN), None)
            .await
            .0,
        403
    );
    assert_eq!(
        send(
            &client,
            put.clone(),
            &url,
            Some(READ_TOKEN),
            Some(debug.clone())
        )
        .await
        .0,
        403
    );
    let (status, body) = send(&client, get.clone(), &url, Some(ADMIN_TOKEN), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["filter"], "info");
    assert_eq!(
        body["capped"],
        json!(["aws_sigv4=info", "aws_smithy_runtime_api=info"])
    );

    // Batches are being stored, and at `info` their debug line is absent.
    let agents = format!("{}/api/v1/agents", p.api);
    wait_for(WAIT, "the agent's results stored", || {
        let (client, agents) = (&client, &agents);
        async move {
            let (_, v) = send(client, reqwest::Method::GET, agents, Some(READ_TOKEN), None).await;
            let stored = v["agents"]
                .as_array()?
                .iter()
                .find(|a| a["agent_id"] == AGENT_ID)?["stored_total"]
                .as_u64()?;
            (stored >= 2).then_some(())
        }
    })
    .await;
    assert_eq!(
        count_message(&p.coordinator.log_text(), "batch stored"),
        0,
        "debug line at info:\n{}",
        p.coordinator.log_text()
    );

    // PUT debug for the coordinator's own crate: the line appears.
    let (status, body) = send(
        &client,
        put.clone(),
        &url,
        Some(ADMIN_TOKEN),
        Some(debug.clone()),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["filter"], "info,authpulse_coordinator=debug");
    assert_eq!(body["previous"], "info");
    let stored = wait_for(WAIT, "a `batch stored` debug line", || async {
        json_lines(&p.coordinator.log_text())
            .into_iter()
            .find(|l| message(l) == "batch stored")
    })
    .await;
    assert_eq!(stored["level"], "DEBUG");
    assert_eq!(stored["fields"]["agent_id"], AGENT_ID, "{stored}");

    // Every ingest line names the agent it is about.
    let log = p.coordinator.log_text();
    let ingest: Vec<Value> = json_lines(&log)
        .into_iter()
        .filter(|l| {
            l["target"]
                .as_str()
                .is_some_and(|t| t.starts_with("authpulse_coordinator::ingest"))
        })
        .collect();
    assert!(
        ingest.len() >= 2,
        "ingest lines (agent connected, batch stored):\n{log}"
    );
    for line in &ingest {
        assert_eq!(line["fields"]["agent_id"], AGENT_ID, "{line}");
    }

    // A bad filter: 400 with the parse error; the running filter stays.
    let (status, body) = send(
        &client,
        put.clone(),
        &url,
        Some(ADMIN_TOKEN),
        Some(json!({ "filter": "debug,hyper=loud" })),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("invalid filter `debug,hyper=loud`")),
        "{body}"
    );
    let (status, body) = send(&client, get.clone(), &url, Some(ADMIN_TOKEN), None).await;
    assert_eq!(status, 200);
    assert_eq!(body["filter"], "info,authpulse_coordinator=debug");
    assert_eq!(
        authpulse_tests::get_status(&client, format!("{}/healthz", p.api)).await,
        200
    );

    // And back to info.
    let (status, body) = send(
        &client,
        put.clone(),
        &url,
        Some(ADMIN_TOKEN),
        Some(json!({ "filter": "info" })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["previous"], "info,authpulse_coordinator=debug");

    // Audited: who changed what, the refused attempt included.
    let audit = p.dir.path().join("coordinator-data").join("audit.jsonl");
    let entries = wait_for(WAIT, "three log_level audit entries", || async {
        let text = std::fs::read_to_string(&audit).ok()?;
        let entries: Vec<Value> = json_lines(&text)
            .into_iter()
            .filter(|e| e["kind"] == "log_level")
            .collect();
        (entries.len() >= 3).then_some(entries)
    })
    .await;
    let fields: Vec<&Value> = entries.iter().map(|e| &e["fields"]).collect();
    assert_eq!(fields[0]["by"], "oncall");
    assert_eq!(fields[0]["result"], "ok");
    assert_eq!(fields[0]["filter"], "info,authpulse_coordinator=debug");
    assert_eq!(fields[0]["previous"], "info");
    assert_eq!(fields[1]["result"], "refused");
    assert_eq!(fields[1]["filter"], "debug,hyper=loud");
    assert_eq!(fields[2]["result"], "ok");
    assert_eq!(fields[2]["filter"], "info");
}

#[tokio::test]
async fn agent_log_level_changes_at_run_time_and_never_lifts_credential_caps() {
    let p = start("ap-log-level-agent").await;
    let client = reqwest::Client::new();
    let url = format!("{}/log-level", p.agent_http);
    let put = reqwest::Method::PUT;

    let (status, body) = send(&client, reqwest::Method::GET, &url, None, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["filter"], "info");

    // Runs happen; at `info` their `probe ok` debug line is absent.
    wait_runs(&p.target, "/web", 3).await;
    assert_eq!(
        count_message(&p.agent.log_text(), "probe ok"),
        0,
        "{}",
        p.agent.log_text()
    );

    // PUT debug (no token: the agent listener answers loopback peers only).
    let (status, body) = send(
        &client,
        put.clone(),
        &url,
        None,
        Some(json!({ "filter": "debug" })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["previous"], "info");
    wait_for(WAIT, "`probe ok` debug lines", || async {
        (count_message(&p.agent.log_text(), "probe ok") >= 2).then_some(())
    })
    .await;

    // Every line logged in a probe run carries the probe, the region and
    // the agent: `probe ok` (debug) and `probe failed` (info, the sts probe
    // against an endpoint that is not STS) through the run's span.
    let lines = json_lines(&p.agent.log_text());
    let probe_lines: Vec<&Value> = lines
        .iter()
        .filter(|l| matches!(message(l), "probe ok" | "probe failed"))
        .collect();
    assert!(
        probe_lines.iter().any(|l| message(l) == "probe failed"),
        "the sts probe fails against the capture server:\n{}",
        p.agent.log_text()
    );
    for line in &probe_lines {
        let span = &line["span"];
        assert_eq!(span["name"], "probe", "{line}");
        assert!(
            matches!(span["probe"].as_str(), Some("web" | "sts")),
            "{line}"
        );
        assert_eq!(span["region"], REGION, "{line}");
        assert_eq!(span["agent_id"], AGENT_ID, "{line}");
    }
    // Lines from inside a run (the probe's own code and its libraries) have
    // the run's span in their span list.
    let mut in_runs = 0;
    for line in lines.iter().filter(|l| {
        l["spans"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["name"] == "probe"))
    }) {
        let span = line["spans"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["name"] == "probe"))
            .expect("probe span");
        assert_eq!(span["region"], REGION, "{line}");
        assert_eq!(span["agent_id"], AGENT_ID, "{line}");
        in_runs += 1;
    }
    assert!(in_runs >= probe_lines.len(), "{in_runs} lines inside runs");

    // A bad filter: 400, the debug filter stays, the agent keeps serving.
    let (status, body) = send(
        &client,
        put.clone(),
        &url,
        None,
        Some(json!({ "filter": "debug,hyper=loud" })),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("hyper=loud")),
        "{body}"
    );
    let (_, body) = send(&client, reqwest::Method::GET, &url, None, None).await;
    assert_eq!(body["filter"], "debug");
    assert_eq!(
        authpulse_tests::get_status(&client, format!("{}/healthz", p.agent_http)).await,
        200
    );

    // `trace` for everything, aws-sigv4 named explicitly: trace lines flow,
    // STS calls are signed with the access key, and aws-sigv4 (whose trace
    // prints the signing identity) still logs nothing.
    let (status, _) = send(
        &client,
        put.clone(),
        &url,
        None,
        Some(json!({ "filter": "trace,aws_sigv4=trace,aws_sigv4::http_request=trace" })),
    )
    .await;
    assert_eq!(status, 200);
    let signed_before = runs(&p.target, "/sts");
    wait_runs(&p.target, "/sts", signed_before + 2).await;
    let signed = p
        .target
        .requests()
        .into_iter()
        .rfind(|r| r.path == "/sts")
        .expect("a signed STS call");
    assert!(
        signed
            .header("authorization")
            .is_some_and(|a| a.contains(&format!("Credential={ACCESS_KEY_ID}/"))),
        "{:?}",
        signed.headers
    );
    // Two sts runs have ended under `trace` (their `probe failed` lines come
    // after the change in the log): each signed its request in between.
    wait_for(WAIT, "two sts runs finished at trace", || async {
        let lines = json_lines(&p.agent.log_text());
        let switched = lines.iter().rposition(|l| {
            message(l) == "log filter changed at run time"
                && l["fields"]["filter"]
                    .as_str()
                    .is_some_and(|f| f.starts_with("trace"))
        })?;
        let after = &lines[switched..];
        let sts_done = after
            .iter()
            .filter(|l| message(l) == "probe failed" && l["span"]["probe"] == "sts")
            .count();
        let traced = after.iter().any(|l| l["level"] == "TRACE");
        (sts_done >= 2 && traced).then_some(())
    })
    .await;
    let log = p.agent.log_text();
    for line in json_lines(&log) {
        let target = line["target"].as_str().unwrap_or_default();
        assert!(
            !target.starts_with("aws_sigv4") && !target.starts_with("aws_smithy_runtime_api"),
            "a credential logger logged: {line}"
        );
    }
    assert!(
        !log.contains(ACCESS_KEY_ID),
        "the access key id reached the log"
    );
    assert!(!log.contains("log-test-secret-access-key"));

    // Back to info: after the change is logged, `probe ok` stops (one run
    // that passed the filter check just before the swap may still finish
    // writing its line).
    let (status, body) = send(
        &client,
        put.clone(),
        &url,
        None,
        Some(json!({ "filter": "info" })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let web_runs = runs(&p.target, "/web");
    wait_runs(&p.target, "/web", web_runs + 3).await;
    let lines = json_lines(&p.agent.log_text());
    let marker = lines
        .iter()
        .rposition(|l| {
            message(l) == "log filter changed at run time" && l["fields"]["filter"] == "info"
        })
        .expect("the change to info is logged");
    let late = lines[marker..]
        .iter()
        .filter(|l| message(l) == "probe ok")
        .count();
    assert!(
        late <= 1,
        "{late} `probe ok` lines after going back to info"
    );
}
