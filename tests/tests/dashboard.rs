//! The dashboard in a real browser: the coordinator binary with a catalog of
//! six SLOs (rolling, calendar, latency, timeslices with a region quorum,
//! one without data) and a deploy gate; two test agents (tonic clients
//! speaking the agent proto) report a week of results from two regions, with
//! an outage in one. Headless Chromium (Debian package `chromium`) is driven
//! over the DevTools protocol by tests/python/dashboard_driver.py (the venv's
//! `websockets`). Checked: no console errors, exceptions or failed loads;
//! every SLO of the catalog listed with its state and firing alert; the
//! grid, agents and the failing gate with its reason shown; every
//! SLO page draws the burn-down and SLI charts; and with API tokens
//! configured the page asks for one, refuses a wrong one, keeps the right
//! one for the tab. Screenshots land in target/test-artifacts/dashboard/.
use std::path::{Path, PathBuf};
use std::time::Duration;

use authpulse_proto::v1::{FailureClass, ProbeResult, Timings};
use authpulse_tests::fake_agent::FakeAgent;
use authpulse_tests::fleet::CoordinatorFixture;
use authpulse_tests::results::now_ms;
use authpulse_tests::{TempDir, repo_root, wait_for};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

const CATALOG: &str = r#"
probes:
  - id: idp-discovery
    kind: oidc_discovery
    issuer: https://idp.example.com
    interval: 5m
  - id: token-issuance
    kind: client_credentials
    issuer: https://idp.example.com
    client_id: reporting-job
    client_secret: { secret: reporting_job_secret }
    interval: 5m
  - id: login-page
    kind: http
    url: https://login.example.com/
    interval: 5m
  - id: directory-bind
    kind: ldap
    url: ldaps://ldap.example.com
    bind_dn: cn=probe,dc=example,dc=com
    password: { secret: ldap_probe }
    regions: [eu-west]
    interval: 5m
  - id: saml-metadata
    kind: http
    url: https://idp.example.com/saml/metadata
    interval: 5m
slos:
  - id: discovery-availability
    description: Discovery document and JWKS are served
    probes: [idp-discovery]
    objective: 99.9
    window: 28d
  - id: token-issuance
    description: Machine clients get access tokens
    probes: [token-issuance]
    objective: 99.5
    window: 7d
  - id: login-latency
    description: The login page answers within 800 ms
    probes: [login-page]
    objective: 99
    window: { calendar: month, time_zone: Europe/Berlin }
    sli: { latency: { threshold: 800ms } }
  - id: login-minutes
    description: 5-minute slices under 800 ms; bad only when both regions are slow
    probes: [login-page]
    objective: 99.5
    window: 1d
    sli: { latency: { threshold: 800ms } }
    budgeting: { timeslices: { slice: 5m, target: 0.9 } }
    quorum: 2
  - id: directory-availability
    description: LDAP bind as the probe user
    probes: [directory-bind]
    objective: 99.9
    window: 28d
  - id: saml-metadata
    description: New probe, no agent runs it yet
    probes: [saml-metadata]
    objective: 99
    window: 7d
gates:
  - id: deploy-login
    description: Hold login deploys while sign-in is burning budget
    slos: [login-latency, token-issuance]
    block_when: [page_alert, budget_exhausted, { budget_below: 0.5 }]
    stale_after: 15m
"#;

const SLOS: [&str; 6] = [
    "discovery-availability",
    "token-issuance",
    "login-latency",
    "login-minutes",
    "directory-availability",
    "saml-metadata",
];

/// What the token-issuance outage looks like to an SRE.
const OUTAGE_DETAIL: &str =
    "POST https://idp.example.com/oauth2/token: HTTP 503 (upstream connect error)";

const STEP: i64 = 5 * 60_000;
const HISTORY: i64 = 7 * 86_400_000;

/// A test agent with its own sequence numbers, on the shared fake agent.
struct Agent {
    id: String,
    region: String,
    seq: u64,
    stream: FakeAgent,
}

impl Agent {
    async fn connect(url: &str, id: &str, region: &str) -> Agent {
        let mut stream = FakeAgent::connect(url).await.expect("stream opens");
        stream.hello(id, region).await.expect("hello answered");
        Agent {
            id: id.into(),
            region: region.into(),
            seq: 0,
            stream,
        }
    }

    fn result(
        &mut self,
        probe: &str,
        started: i64,
        total_ms: u64,
        fail: Option<(FailureClass, &str)>,
    ) -> ProbeResult {
        self.seq += 1;
        let total_us = total_ms * 1000;
        let r = authpulse_tests::results::probe_result(&self.id, &self.region, self.seq, probe)
            .started(started)
            .timings(Timings {
                dns_us: Some(1_200),
                connect_us: Some(9_000),
                tls_us: Some(21_000),
                ttfb_us: Some(total_us / 2),
                total_us,
            });
        match fail {
            Some((c, d)) => r
                .failed(c, d)
                .failed_step("token", "client_credentials", c, d),
            None => r,
        }
        .build()
    }

    /// Sends `results` in batches; each must be acked (stored) in full.
    async fn send_all(&mut self, results: Vec<ProbeResult>) {
        for chunk in results.chunks(2000) {
            let last = chunk.last().map(|r| r.seq).unwrap_or(0);
            let ack = self.stream.batch(chunk.to_vec(), 0).await.expect("acked");
            assert_eq!(ack.acked_seq, last, "batch stored");
        }
    }
}

/// A week of runs every 5 minutes: an 80-minute token outage in us-east a
/// day ago, slow login pages in both regions for half an hour (bad slices
/// for the quorum SLO: its budget is gone) and later in us-east alone (not
/// bad globally), an LDAP blip, and a failing latest run of token issuance
/// in us-east.
fn history(agent: &mut Agent, now: i64) -> Vec<ProbeResult> {
    let us = agent.region == "us-east";
    let mut out = Vec::new();
    let first = now - HISTORY;
    let mut t = first - first.rem_euclid(STEP);
    while t <= now - 1000 {
        let age = now - t;
        let jitter = ((t / STEP) % 7) as u64;
        out.push(agent.result("idp-discovery", t, 40 + jitter * 3, None));
        let token_outage = us && (age > 26 * 3_600_000 && age <= 26 * 3_600_000 + 80 * 60_000);
        // The newest run of the loop.
        let latest_token = us && t + STEP > now - 1000;
        out.push(agent.result(
            "token-issuance",
            t,
            if token_outage {
                2_000
            } else {
                120 + jitter * 9
            },
            (token_outage || latest_token).then_some((FailureClass::HttpStatus, OUTAGE_DETAIL)),
        ));
        // Slow everywhere (bad slices globally), then slow in us-east only
        // (below the quorum: costs nothing globally).
        let slow = (age > 5 * 3_600_000 && age <= 5 * 3_600_000 + 30 * 60_000)
            || (us && age > 3 * 3_600_000 && age <= 3 * 3_600_000 + 30 * 60_000);
        out.push(agent.result(
            "login-page",
            t,
            if slow { 1_400 } else { 180 + jitter * 20 },
            None,
        ));
        if !us {
            let blip = age > 50 * 3_600_000 && age <= 50 * 3_600_000 + 10 * 60_000;
            out.push(agent.result(
                "directory-bind",
                t,
                25,
                blip.then_some((
                    FailureClass::Timeout,
                    "bind as cn=probe,dc=example,dc=com: no answer within 10s",
                )),
            ));
        }
        t += STEP;
    }
    out
}

fn chromium() -> PathBuf {
    let path = std::env::var_os("AUTHPULSE_TEST_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        path.exists(),
        "{} is missing: install the Debian package `chromium` (tests/run does), \
         or point AUTHPULSE_TEST_CHROMIUM at a Chromium binary",
        path.display()
    );
    path
}

fn python() -> PathBuf {
    let python = std::env::var_os("AUTHPULSE_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/test-venv/bin/python"));
    assert!(
        python.exists(),
        "{} is missing: run tests/run, which creates the Python venv target/test-venv \
         with `websockets` from tests/python/requirements.txt",
        python.display()
    );
    python
}

fn artifacts(name: &str) -> PathBuf {
    let dir = repo_root()
        .join("target/test-artifacts/dashboard")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("artifact dir");
    dir
}

/// Runs the driver; returns its JSON report.
async fn drive(base: &str, out: &Path, extra: &[String]) -> Value {
    let script = repo_root().join("tests/python/dashboard_driver.py");
    let mut cmd = tokio::process::Command::new(python());
    cmd.arg(&script)
        .arg("--chromium")
        .arg(chromium())
        .arg("--base")
        .arg(format!("{base}/"))
        .arg("--out")
        .arg(out)
        .args(extra)
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(240), cmd.output())
        .await
        .expect("the browser driver finishes")
        .expect("run the browser driver");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "dashboard_driver.py failed ({}): {stderr}\nchromium log: {}",
        output.status,
        std::fs::read_to_string(out.join("chromium.log")).unwrap_or_default()
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "driver output is not JSON ({e}): {}\n{stderr}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

fn visit<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["visits"]
        .as_array()
        .and_then(|v| v.iter().find(|x| x["name"] == name))
        .unwrap_or_else(|| panic!("no visit {name} in {report:#}"))
}

fn html(visit: &Value) -> String {
    std::fs::read_to_string(visit["html"].as_str().expect("html path")).expect("read dumped DOM")
}

/// The dumped DOM of a visit that finished rendering.
fn rendered(report: &Value, name: &str) -> String {
    let v = visit(report, name);
    assert_eq!(v["ready"], "true", "{name} did not render: {v:#}");
    let png = std::fs::read(v["png"].as_str().expect("png path")).expect("screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{name}: screenshot is not a real PNG ({} bytes)",
        png.len()
    );
    html(v)
}

/// The markup of the first element opening with `open` (up to its `</svg>`).
fn svg_with_class<'a>(html: &'a str, class: &str) -> &'a str {
    let open = format!("<svg class=\"chart {class}\"");
    let start = html
        .find(&open)
        .unwrap_or_else(|| panic!("no {open} in the page"));
    let end = html[start..]
        .find("</svg>")
        .map(|e| start + e)
        .expect("closed svg");
    &html[start..end]
}

fn console_problems(report: &Value, allowed: impl Fn(&Value) -> bool) -> Vec<Value> {
    report["console"]
        .as_array()
        .expect("console list")
        .iter()
        .filter(|e| matches!(e["level"].as_str(), Some("error" | "warning" | "assert")))
        .filter(|e| !allowed(e))
        .cloned()
        .collect()
}

async fn feed(coord: &CoordinatorFixture) -> Vec<Agent> {
    let now = now_ms();
    let mut agents = Vec::new();
    for (id, region) in [("agent-eu-1", "eu-west"), ("agent-us-1", "us-east")] {
        let mut a = Agent::connect(&coord.grpc_url(), id, region).await;
        let results = history(&mut a, now);
        a.send_all(results).await;
        agents.push(a);
    }
    agents
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_renders_every_slo_and_its_charts_without_console_errors() {
    let dir = TempDir::new("ap-dashboard");
    let coord = CoordinatorFixture::start(&dir, CATALOG).await;
    let _agents = feed(&coord).await;
    // The token outage's fast burn pages within one SLO evaluation (15 s).
    let client = reqwest::Client::new();
    let alerts = format!("{}/api/v1/alerts", coord.api);
    wait_for(WAIT, "a page alert for token-issuance", || async {
        let v: Value = client.get(&alerts).send().await.ok()?.json().await.ok()?;
        v["alerts"]
            .as_array()?
            .iter()
            .any(|a| a["slo"] == "token-issuance" && a["severity"] == "page")
            .then_some(())
    })
    .await;
    let out = artifacts("open");

    let mut args = vec!["--visit".to_string(), "overview=#/=overview".to_string()];
    for id in SLOS {
        args.push("--visit".into());
        args.push(format!("slo-{id}=#/slo/{id}=slo:{id}"));
    }
    let report = drive(&coord.api, &out, &args).await;

    let problems = console_problems(&report, |_| false);
    assert!(
        problems.is_empty(),
        "console errors/warnings: {problems:#?}"
    );

    let page = rendered(&report, "overview");
    for id in SLOS {
        assert!(
            page.contains(&format!("data-slo-id=\"{id}\"")),
            "SLO {id} missing from the overview"
        );
    }
    // States per SLO row.
    let row = |id: &str| {
        let r = &page[page
            .find(&format!("data-slo-id=\"{id}\""))
            .expect("SLO row")..];
        r[..r.find("</tr>").expect("row end")].to_string()
    };
    assert!(row("discovery-availability").contains("class=\"badge ok\""));
    assert!(
        row("token-issuance").contains("class=\"badge page\""),
        "the firing page alert next to the state: {}",
        row("token-issuance")
    );
    assert!(page.contains("<h2>Firing alerts</h2>"), "alerts section");
    assert!(
        row("login-minutes").contains("class=\"badge exhausted\""),
        "both regions slow for 30 min spend the 1d budget: {}",
        row("login-minutes")
    );
    assert!(
        row("token-issuance").contains("class=\"bar warn\""),
        "a budget bar below half: {}",
        row("token-issuance")
    );
    assert!(
        page.contains("class=\"badge no_data\""),
        "saml-metadata has no data yet"
    );
    // Region × probe grid, with the failure in the tooltip.
    for probe in [
        "idp-discovery",
        "token-issuance",
        "login-page",
        "directory-bind",
    ] {
        assert!(
            page.contains(&format!("data-probe-id=\"{probe}\"")),
            "grid row {probe}"
        );
    }
    assert!(page.contains("data-region=\"us-east\""), "us-east column");
    assert!(
        page.contains(OUTAGE_DETAIL),
        "the failing run's detail in a tooltip"
    );
    assert!(page.contains("http_status"), "the failure class shown");
    // directory-bind runs only in eu-west: the us-east cell says so.
    assert!(page.contains("directory-bind does not run in us-east"));
    // Agents with health, and the gate.
    for agent in ["agent-eu-1", "agent-us-1"] {
        assert!(
            page.contains(&format!("data-agent-id=\"{agent}\"")),
            "agent {agent}"
        );
    }
    assert!(page.contains("class=\"badge up\""), "agents are up");
    // The gate fails on token-issuance's budget (about 15 % left < 50 %), and
    // says so with the number.
    let gate = &page[page
        .find("data-gate-id=\"deploy-login\"")
        .expect("the gate row")..];
    let gate = &gate[..gate.find("</tr>").expect("row end")];
    assert!(gate.contains("class=\"badge fail\""), "gate fails: {gate}");
    assert!(
        gate.contains("<li>token-issuance: "),
        "reason names the SLO: {gate}"
    );

    for id in SLOS {
        let slo = rendered(&report, &format!("slo-{id}"));
        assert!(slo.contains(&format!("data-slo-id=\"{id}\"")), "{id} page");
        let burn = svg_with_class(&slo, "burn");
        assert!(
            burn.contains("<path class=\"line\" d=\"M"),
            "{id}: burn-down line drawn: {burn}"
        );
        assert!(burn.contains("class=\"ideal\""), "{id}: even-spend line");
        let sli = svg_with_class(&slo, "sli");
        assert!(sli.contains("<rect"), "{id}: SLI bars: {sli}");
    }
    // The outage shows: token issuance has bad buckets and a spent budget.
    let token = rendered(&report, "slo-token-issuance");
    assert!(
        svg_with_class(&token, "sli").contains("class=\"bad\""),
        "token-issuance: a bucket below objective"
    );
    // Every visit's screenshot is kept as an artifact.
    for id in SLOS {
        assert!(out.join(format!("slo-{id}.png")).exists());
    }
    assert!(out.join("overview.png").exists());
}

/// With API tokens configured the JSON needs `read`: the page (public)
/// asks for a token, shows the refusal of a wrong one, works with the right
/// one, and keeps it for the tab (a reload does not ask again). In dark mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_asks_for_a_token_when_the_api_needs_one() {
    let dir = TempDir::new("ap-dashboard-token");
    let token_file = dir.path().join("dashboard.token");
    std::fs::write(&token_file, "dash-read-token-0123456789\n").expect("token file");
    let api = format!(
        "api:\n  tokens:\n    - name: dashboard\n      token_file: {}\n      scopes: [read]\n",
        token_file.display()
    );
    let coord = CoordinatorFixture::start_with(&dir, CATALOG, &api).await;
    let _agents = feed(&coord).await;
    let out = artifacts("token");

    let report = drive(
        &coord.api,
        &out,
        &[
            "--token".into(),
            "not-the-token".into(),
            "--token".into(),
            "dash-read-token-0123456789".into(),
            "--reload".into(),
            "--dark".into(),
            "--visit".into(),
            "overview=#/=overview".into(),
        ],
    )
    .await;

    let asked = report["auth_states"].as_array().expect("auth states");
    assert_eq!(asked.len(), 2, "asked twice (none, then wrong): {report:#}");
    assert!(
        asked[0]["auth"]
            .as_str()
            .is_some_and(|m| m.contains("requires a bearer token")),
        "first prompt explains why: {report:#}"
    );
    assert!(
        asked[1]["auth"]
            .as_str()
            .is_some_and(|m| m.contains("refused") && m.contains("unknown token")),
        "the wrong token's refusal is shown: {report:#}"
    );
    let page = rendered(&report, "overview");
    for id in SLOS {
        assert!(
            page.contains(&format!("data-slo-id=\"{id}\"")),
            "SLO {id} shown with the token"
        );
    }
    let v = visit(&report, "overview");
    assert_eq!(
        v["token_stored"], "dash-read-token-0123456789",
        "token kept in sessionStorage"
    );
    assert_eq!(
        report["after_reload"]["ready"], "true",
        "a reload uses the stored token: {report:#}"
    );
    // The refusals are the only thing the browser may complain about.
    let problems = console_problems(&report, |e| {
        e["kind"] == "log"
            && e["source"] == "network"
            && e["text"].as_str().is_some_and(|t| t.contains("401"))
    });
    assert!(problems.is_empty(), "console errors: {problems:#?}");
    // The secret is never in the page (it lives in sessionStorage only).
    assert!(!page.contains("dash-read-token-0123456789"));
}
