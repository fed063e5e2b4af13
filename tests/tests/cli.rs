//! The operator CLI as a user runs it: `validate` on good and broken
//! catalogs (one precise error each), `probe` against the real OpenID
//! provider, `standalone` serving SLO JSON and metrics, and `health` (the
//! image's HEALTHCHECK) against a serving coordinator and failing ones.
use std::process::Command;
use std::time::Duration;

use authpulse_tests::fault::{FaultServer, Reply};
use authpulse_tests::peers::OidcPeer;
use authpulse_tests::process::Process;
use authpulse_tests::{TempDir, bin, repo_root, wait_for};

fn authpulse(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin("authpulse"))
        .args(args)
        .output()
        .expect("run authpulse");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write(dir: &TempDir, name: &str, text: &str) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, text).expect("write");
    p.display().to_string()
}

#[test]
fn shipped_examples_are_valid() {
    for f in [
        "deploy/examples/quickstart.yaml",
        "deploy/examples/local.yaml",
    ] {
        let path = repo_root().join(f);
        let (code, out, err) = authpulse(&["validate", path.to_str().expect("utf8")]);
        assert_eq!(code, 0, "{f}: {out}{err}");
        assert!(out.starts_with("ok: "), "{out}");
    }
}

#[test]
fn each_broken_catalog_gets_one_precise_error() {
    let dir = TempDir::new("ap-cli-bad");
    let ok_probe = "  - id: a\n    kind: http\n    url: https://x.example\n";
    let cases: &[(&str, String, &str)] = &[
        (
            "syntax.yaml",
            format!("probes:\n{ok_probe}    expect: {{ status: [200\n"),
            "syntax error",
        ),
        (
            "unknown.yaml",
            format!("probes:\n{ok_probe}    intervall: 30s\n"),
            "unknown.yaml:5: `a`: probes[0].intervall: unknown field `intervall`",
        ),
        (
            "dup.yaml",
            format!("probes:\n{ok_probe}{ok_probe}"),
            "dup.yaml:5: `a`: probes[1].id: duplicate probe id `a`",
        ),
        (
            "slo.yaml",
            format!(
                "probes:\n{ok_probe}slos:\n  - id: s\n    probes: [b]\n    objective: 99.9\n    window: 28d\n"
            ),
            "slo.yaml:7: `s`: slos[0].probes[0]: unknown probe `b`",
        ),
        (
            "interval.yaml",
            format!("probes:\n{ok_probe}    interval: 2s\n    timeout: 5s\n"),
            "interval.yaml:5: `a`: probes[0].interval: interval 2s is below timeout 5s",
        ),
    ];
    for (name, text, expected) in cases {
        let path = write(&dir, name, text);
        let (code, out, err) = authpulse(&["validate", &path]);
        assert_eq!(code, 1, "{name} must be rejected: {out}{err}");
        assert!(
            err.contains(expected),
            "{name}: expected {expected:?} in:\n{err}"
        );
        assert!(
            err.contains(&format!("{name}:")),
            "{name}: file named: {err}"
        );
        assert!(
            err.contains("1 problem(s) found"),
            "{name}: exactly one problem: {err}"
        );
    }
}

#[tokio::test]
async fn probe_command_runs_once_against_the_real_idp() {
    let mut peer = OidcPeer::start().await;
    let dir = TempDir::new("ap-cli-probe");
    let cat = write(
        &dir,
        "c.yaml",
        &format!(
            "probes:\n  - id: idp\n    kind: oidc_discovery\n    issuer: {}\n    timeout: 3s\n",
            peer.issuer
        ),
    );
    let (code, out, err) = authpulse(&["probe", "--catalog", &cat, "idp", "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json outcome");
    assert_eq!(v["outcome"], "success");
    assert_eq!(v["steps"][1]["name"], "jwks");
    assert!(v["timings"]["connect_ms"].as_f64().is_some(), "{v}");

    peer.stop().await;
    let (code, out, _) = authpulse(&["probe", "--catalog", &cat, "idp"]);
    assert_eq!(code, 1);
    assert!(out.contains("FAILED [connect]"), "{out}");

    let (code, _, err) = authpulse(&["probe", "--catalog", &cat, "nope"]);
    assert_eq!(code, 1);
    assert!(err.contains("no probe `nope`"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_serves_slos_and_metrics() {
    let peer = OidcPeer::shared().await;
    let dir = TempDir::new("ap-cli-standalone");
    let cat = write(
        &dir,
        "c.yaml",
        &format!(
            "probes:\n  - id: idp\n    kind: oidc_discovery\n    issuer: {}\n    interval: 1s\n    timeout: 900ms\n\
             slos:\n  - id: idp-up\n    probes: [idp]\n    objective: 99.9\n    window: 1d\n",
            peer.issuer
        ),
    );
    let (mut p, api) = Process::standalone(&cat, dir.path()).await;
    let data = dir.path().join("data");
    let client = reqwest::Client::new();
    let slo = wait_for(
        Duration::from_secs(60),
        "standalone SLO with data",
        || async {
            let v: serde_json::Value = client
                .get(format!("{api}/api/v1/slos"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            let s = v["slos"]
                .as_array()?
                .iter()
                .find(|s| s["id"] == "idp-up")?
                .clone();
            (s["total"].as_u64()? >= 2).then_some(s)
        },
    )
    .await;
    assert_eq!(slo["good"], slo["total"], "{slo}");
    // Results flowed, yet the process listens on the HTTP port only: its
    // agent reaches the coordinator in memory, no gRPC port exists for
    // another local process to pose as the agent.
    let pid = p.pid().expect("running");
    let http_port: u16 = api
        .rsplit(':')
        .next()
        .and_then(|s| s.parse().ok())
        .expect("port");
    assert_eq!(listening_ports(pid), vec![http_port]);
    let log = p.log_text();
    assert!(
        !log.contains("plain-text gRPC") && !log.contains("insecure mode"),
        "no plaintext-gRPC warning for the in-process agent: {log}"
    );
    // The agent's data is owner-only.
    let mode = |path: &std::path::Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(&data.join("agent")), 0o700);
    assert_eq!(mode(&data.join("agent/assignment.json")), 0o600);
    let metrics = authpulse_tests::get_text(&client, format!("{api}/metrics")).await;
    assert!(
        metrics.contains("authpulse_agent_probe_runs_total"),
        "agent metrics in the same /metrics"
    );
    assert!(
        metrics.contains("authpulse_coordinator_results_ingested_total"),
        "coordinator metrics"
    );
    assert!(
        data.join("authpulse.db").exists(),
        "SQLite under --data-dir"
    );
    assert_eq!(
        p.terminate().await,
        Some(0),
        "clean exit on SIGTERM: {}",
        p.log_text()
    );
}

/// TCP ports process `pid` listens on (its sockets, matched by inode
/// against /proc/net/tcp and tcp6), sorted.
fn listening_ports(pid: u32) -> Vec<u16> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fds")
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let mut ports = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
            if f.len() > 9 && f[3] == "0A" && inodes.iter().any(|i| i == f[9]) {
                let port = f[1].rsplit(':').next().expect("local address");
                ports.push(u16::from_str_radix(port, 16).expect("hex port"));
            }
        }
    }
    ports.sort_unstable();
    ports.dedup();
    ports
}

#[tokio::test]
async fn insecure_must_be_asked_for_explicitly() {
    let dir = TempDir::new("ap-cli-insecure");
    let cat = write(&dir, "c.yaml", "probes: []\n");
    let cfg = write(
        &dir,
        "coordinator.yaml",
        &format!(
            "grpc_listen: 127.0.0.1:0\nhttp_listen: 127.0.0.1:0\ndata_dir: {}\ncatalog: [{cat}]\n",
            dir.path().join("data").display()
        ),
    );
    // Neither tls nor insecure: refused with a reason.
    let out = Command::new(bin("authpulse-coordinator"))
        .args(["--config", &cfg])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("insecure"), "{err}");
    // --insecure: starts, and says so in its log.
    let mut p = Process::start(
        "authpulse-coordinator",
        &["--config", &cfg, "--insecure"],
        &[],
        dir.path(),
    )
    .await;
    p.line_after("listening on http://").await;
    let log = wait_for(Duration::from_secs(10), "the insecure warning", || async {
        let log = p.log_text();
        log.contains("insecure").then_some(log)
    })
    .await;
    assert!(log.contains("WARN"), "{log}");
    assert_eq!(p.terminate().await, Some(0));
}

#[test]
fn import_openslo_prints_slos_that_validate_against_the_catalog() {
    let dir = TempDir::new("ap-openslo");
    let catalog = write(
        &dir,
        "catalog.yaml",
        "probes:\n  - { id: corp-login, kind: http, url: \"https://idp.example/\" }\n",
    );
    let doc = "apiVersion: openslo/v1\nkind: SLO\nmetadata: { name: login-availability }\nspec:\n  service: idp\n  indicator:\n    metadata: { name: ok }\n    spec:\n      ratioMetric:\n        counter: true\n        good: { metricSource: { type: authpulse, spec: { probes: [corp-login] } } }\n        total: { metricSource: { type: authpulse, spec: { probes: [corp-login] } } }\n  timeWindow: [{ duration: 28d, isRolling: true }]\n  budgetingMethod: Occurrences\n  objectives: [{ target: 0.995 }]\n";
    let openslo = write(&dir, "slo.openslo.yaml", doc);
    let (code, out, err) = authpulse(&["import-openslo", &openslo, "--catalog", &catalog]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("id: \"login-availability\"") && out.contains("objective: 99.5"),
        "{out}"
    );
    // The printed catalog is usable as it is.
    let slos = write(&dir, "slos.yaml", &out);
    let (code, _, err) = authpulse(&["validate", &catalog, &slos]);
    assert_eq!(code, 0, "{err}");
    // A probe the catalog does not have: refused, with the catalog error.
    let other = write(
        &dir,
        "other.yaml",
        &doc.replace("corp-login", "corp-logout"),
    );
    let (code, out, err) = authpulse(&["import-openslo", &other, "--catalog", &catalog]);
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert!(err.contains("unknown probe `corp-logout`"), "{err}");
    // Issue 16's document: a latency objective on a value without a unit,
    // with a bare-number slice. Once converted to an availability SLI with
    // 1-minute slices and exit 0; now refused with the field and the reason.
    let threshold = write(
        &dir,
        "threshold.openslo.yaml",
        "apiVersion: openslo/v1
kind: SLO
metadata: { name: login-fast }
spec:
  indicator:
    spec:
      thresholdMetric: { metricSource: { type: authpulse, spec: { probes: [corp-login] } } }
  timeWindow: [{ duration: 28d, isRolling: true }]
  budgetingMethod: Timeslices
  objectives: [{ op: lte, value: 800, target: 0.99, timeSliceTarget: 0.95, timeSliceWindow: 5 }]
",
    );
    let (code, out, err) = authpulse(&["import-openslo", &threshold, "--catalog", &catalog]);
    assert_eq!(code, 1, "{out}");
    assert!(out.is_empty());
    assert!(
        err.contains(
            "(`login-fast`): spec.indicator.spec.thresholdMetric.metricSource.spec.unit: is missing"
        ),
        "{err}"
    );
    // With the unit it converts to exactly that: 800 ms, 5-minute slices.
    let fixed = write(
        &dir,
        "threshold-ms.openslo.yaml",
        &std::fs::read_to_string(&threshold)
            .expect("read")
            .replace("probes: [corp-login] }", "probes: [corp-login], unit: ms }"),
    );
    let (code, out, err) = authpulse(&["import-openslo", &fixed, "--catalog", &catalog]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("sli: { latency: { threshold: 800ms } }")
            && out.contains("budgeting: { timeslices: { slice: 5m, target: 0.95 } }"),
        "{out}"
    );
}

/// Every probe example in the READMEs (a block that is a `probes:` list or
/// list entries with an `id` and a `kind`) is a valid catalog.
#[test]
fn readme_probe_examples_are_valid() {
    let readme: String = [
        "README.md",
        "proto/README.md",
        "coordinator/README.md",
        "deploy/README.md",
    ]
    .iter()
    .map(|f| std::fs::read_to_string(authpulse_tests::repo_root().join(f)).expect("README"))
    .collect();
    let dir = TempDir::new("ap-readme");
    let mut checked = 0;
    for (i, block) in readme.split("```yaml\n").skip(1).enumerate() {
        let block = block.split("```").next().unwrap_or("");
        let first = block.lines().next().unwrap_or("");
        let text = if first.starts_with("probes:") {
            block.to_string()
        } else if first.starts_with("  - id: ") && block.contains("kind:") {
            format!("probes:\n{block}")
        } else {
            continue;
        };
        let path = write(&dir, &format!("block-{i}.yaml"), &text);
        let (code, out, err) = authpulse(&["validate", &path]);
        assert_eq!(
            code, 0,
            "README yaml block {i} is invalid:\n{text}\n{out}{err}"
        );
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} README examples found");
}

#[test]
fn an_open_api_on_a_network_address_refuses_to_start() {
    let dir = TempDir::new("ap-cli-open-api");
    let cat = write(&dir, "c.yaml", "probes: []\n");
    // No API tokens and a non-loopback HTTP address: refused before binding
    // anything, naming the way out.
    let cfg = write(
        &dir,
        "coordinator.yaml",
        &format!(
            "grpc_listen: 127.0.0.1:0\nhttp_listen: 0.0.0.0:0\ndata_dir: {}\ncatalog: [{cat}]\ninsecure: true\n",
            dir.path().join("data").display()
        ),
    );
    let out = Command::new(bin("authpulse-coordinator"))
        .args(["--config", &cfg])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no API tokens are configured") && err.contains("--insecure-open-api"),
        "{err}"
    );
}

/// `authpulse probe --save-pages DIR` through the identifier-first pages of
/// the real oidc-provider: the login succeeds, every page and form sent is in
/// DIR with secrets replaced by `<secret NAME>` and no secret byte anywhere;
/// `AUTHPULSE_LOG=debug` turns on debug lines on stderr, the default does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_saves_login_pages_without_secrets_and_honours_authpulse_log() {
    const PASSWORD: &str = "alice-password";
    const CLIENT_SECRET: &str = "probe-web-secret";
    let peer = OidcPeer::shared().await;
    let dir = TempDir::new("ap-cli-pages");
    let cat = write(
        &dir,
        "c.yaml",
        &format!(
            "probes:\n  - id: login\n    kind: authorization_code\n    issuer: {}\n    client_id: probe-idf\n    \
             client_secret: {{ secret: web_secret }}\n    redirect_uri: https://probe.invalid/cb\n    \
             username: alice\n    password: {{ secret: alice_pw }}\n    timeout: 10s\n",
            peer.issuer
        ),
    );
    let pages = dir.path().join("pages");
    let run = |log: Option<&str>, save: bool| {
        let mut cmd = Command::new(bin("authpulse"));
        cmd.args(["probe", "--catalog", &cat, "login", "--json"])
            .env("AUTHPULSE_SECRET_WEB_SECRET", CLIENT_SECRET)
            .env("AUTHPULSE_SECRET_ALICE_PW", PASSWORD)
            .env_remove("AUTHPULSE_LOG");
        if save {
            cmd.arg("--save-pages").arg(&pages);
        }
        if let Some(filter) = log {
            cmd.env("AUTHPULSE_LOG", filter);
        }
        let out = cmd.output().expect("run authpulse");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let (code, out, err) = run(Some("debug"), true);
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json outcome");
    assert_eq!(v["outcome"], "success", "{v}");
    assert!(
        err.contains("\"level\":\"DEBUG\""),
        "AUTHPULSE_LOG=debug: {err}"
    );
    for text in [&out, &err] {
        assert!(
            !text.contains(PASSWORD) && !text.contains(CLIENT_SECRET),
            "{text}"
        );
    }

    // The pages: the username page, the password page, the consent page, and
    // what was sent on each.
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&pages)
        .expect("pages dir")
        .map(|e| {
            let path = e.expect("entry").path();
            (
                path.file_name()
                    .expect("name")
                    .to_string_lossy()
                    .into_owned(),
                std::fs::read(&path).expect("read"),
            )
        })
        .collect();
    files.sort();
    let html = files.iter().filter(|(n, _)| n.ends_with(".html")).count();
    assert!(html >= 3, "username, password and consent pages: {files:?}");
    let all: Vec<u8> = files.iter().flat_map(|(_, b)| b.clone()).collect();
    let text = String::from_utf8_lossy(&all);
    for secret in [PASSWORD, CLIENT_SECRET] {
        assert!(
            !all.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{secret} in the saved pages"
        );
    }
    assert!(
        text.contains("<secret alice_pw>"),
        "the password field shows its reference: {text}"
    );
    assert!(text.contains("alice"), "the username is not a secret");

    // Without AUTHPULSE_LOG: info, no debug lines.
    let (code, out, err) = run(None, false);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        !err.contains("\"level\":\"DEBUG\""),
        "default filter is info: {err}"
    );
}

/// `authpulse health` as the image's HEALTHCHECK runs it: (exit code, stdout, stderr).
async fn health(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = tokio::process::Command::new(bin("authpulse"))
        .arg("health")
        .args(args)
        // Only what the case sets: not a value from the test's own environment.
        .env_remove("AUTHPULSE_HEALTH_URL")
        .envs(env.iter().copied())
        .output()
        .await
        .expect("run authpulse health");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_passes_on_a_serving_coordinator_and_fails_with_one_reason_otherwise() {
    let dir = TempDir::new("ap-cli-health");
    let cat = write(&dir, "c.yaml", "probes: []\n");
    let (_coordinator, api) = Process::standalone(&cat, dir.path()).await;
    let healthz = format!("{api}/healthz");
    let (code, out, err) = health(&["--url", &healthz], &[]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&healthz) && out.contains("200"), "{out}");
    // The variable an agent container sets instead of --url.
    let (code, out, err) = health(&[], &[("AUTHPULSE_HEALTH_URL", &healthz)]).await;
    assert_eq!(code, 0, "AUTHPULSE_HEALTH_URL: {out}{err}");

    // Each failure: exit 1 and one line naming the URL and why.
    let refused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}/healthz", l.local_addr().expect("addr"))
    };
    let faults = FaultServer::start(|request_line: &str| {
        if request_line.starts_with("GET /hang") {
            Reply::Hang
        } else {
            Reply::status(503, "draining")
        }
    })
    .await;
    for (url, timeout, why) in [
        (refused.as_str(), "3s", "refused"),
        (&faults.url("/healthz"), "3s", "HTTP 503"),
        (&faults.url("/hang"), "300ms", "no answer within 300ms"),
        (&format!("{api}/nonexistent"), "3s", "HTTP 404"),
        ("not a url", "3s", "not a URL"),
    ] {
        let (code, out, err) = health(&["--url", url, "--timeout", timeout], &[]).await;
        assert_eq!(code, 1, "{url}: {out}{err}");
        assert!(out.is_empty(), "{url}: {out}");
        assert_eq!(err.lines().count(), 1, "{url}: one line: {err}");
        assert!(
            err.starts_with(&format!("unhealthy: {url}: "))
                && err.to_lowercase().contains(&why.to_lowercase()),
            "{url}: expected {why:?} in {err}"
        );
    }
}
