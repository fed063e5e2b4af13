//! deploy/ really deploys: every artifact is parsed by a real parser and the
//! shipped configs are run by the real binaries.
//!
//! - Dockerfile (no docker engine here): BuildKit's parser; the stages build
//!   and copy exactly the workspace's binaries (`cargo metadata`), the image
//!   runs as a numeric non-root user, EXPOSE matches the configs' ports; the
//!   HEALTHCHECK command run as written passes and fails as it should; the
//!   OCI labels carry the workspace's licence and version.
//! - docker-compose.yml: every mounted file exists; each coordinator and agent
//!   starts on its config as the container would see it (mounts laid out in a
//!   temp dir), sharing the test PostgreSQL (one leads) on loopback instead
//!   of the compose network; agents reach the coordinators they list and fail
//!   over; the catalog passes `authpulse validate`; `promtool check config`.
//! - deploy/k8s has a test binary of its own: tests/tests/deploy_kubernetes.rs.
//! - systemd units: `systemd-analyze verify` clean, exposure score, and the
//!   unit's reload and stop commands against a real coordinator.
//! - Prometheus rules: `promtool check rules` and `promtool test rules`.
//! - Rules and Grafana dashboard: every metric (and label) they use is
//!   exported by a real coordinator and agent driven through the events that
//!   make the metrics appear, and a real Prometheus with rules.yml raises the
//!   expected alerts from them.
//!
//! Over 800 lines on purpose: every deploy/ artifact is checked in one
//! binary that builds the container layout and starts Prometheus once.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use authpulse_tests::capture::CaptureServer;
use authpulse_tests::decision_server::DecisionServer;
use authpulse_tests::deploy_check::{
    RulesPrometheus, WAIT, assert_no_problems, check, connected_agents, exported_metrics,
    one_leader, promtool, run, start_workload, strings, systemd_analyze, validate_catalogs,
    wait_ready, workspace_bins,
};
use authpulse_tests::fault::{FaultServer, Reply};
use authpulse_tests::fleet::rewrite;
use authpulse_tests::postgres::PgDatabase;
use authpulse_tests::process::Process;
use authpulse_tests::{TempDir, bin, get_status, repo_root, wait_for};
use serde_json::{Value, json};

const EMPTY_CATALOG: &str = "probes: []\n";

fn repo() -> String {
    repo_root().display().to_string()
}

fn deploy(path: &str) -> PathBuf {
    repo_root().join("deploy").join(path)
}

#[test]
fn dockerfile_builds_every_binary_into_a_non_root_runtime_image() {
    let bins = workspace_bins();
    let mut args = vec!["dockerfile".to_string(), repo()];
    args.extend(bins.iter().cloned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let report = check(&args);
    assert_no_problems("deploy/Dockerfile", &report);
    assert_eq!(
        strings(&report["stages"]),
        ["builder", "runtime"],
        "{report}"
    );
    // The toolchain image is at least the workspace's rust-version.
    let manifest = std::fs::read_to_string(repo_root().join("Cargo.toml")).expect("Cargo.toml");
    let rust_version = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("workspace rust-version");
    let image = report["builder_image"].as_str().expect("builder image");
    let tag = image
        .trim_start_matches("rust:")
        .split('-')
        .next()
        .unwrap_or_default();
    let parse = |v: &str| -> Vec<u32> { v.split('.').filter_map(|n| n.parse().ok()).collect() };
    assert!(
        parse(tag) >= parse(rust_version),
        "builder image {image} is older than rust-version {rust_version}"
    );
    println!(
        "Dockerfile: {image} -> {}, USER {}, EXPOSE {}, binaries {}",
        report["runtime_image"], report["user"], report["exposed"], report["copied"]
    );
}

/// The `[default: …]` clap's long help shows for option `--NAME`.
fn help_default(help: &str, name: &str) -> String {
    let start = help
        .find(&format!("--{name} <"))
        .unwrap_or_else(|| panic!("--{name} in:\n{help}"));
    let rest = &help[start..];
    let block = &rest[..rest[2..].find("\n  -").map_or(rest.len(), |i| i + 2)];
    block
        .split("[default: ")
        .nth(1)
        .and_then(|d| d.split(']').next())
        .unwrap_or_else(|| panic!("no default for --{name} in:\n{block}"))
        .to_string()
}

/// The HEALTHCHECK is a real command of a binary the image ships: run as
/// written (the built binary standing in for the image's copy) with the
/// variable the README tells agent containers to set, it passes on a 2xx
/// answer and fails with the reason on a closed port; by default it asks
/// the coordinator's HTTP port, and gives up before Docker's own timeout
/// kills it. The OCI labels carry the workspace's licence and version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dockerfile_healthcheck_runs_and_labels_describe_the_image() {
    let mut args = vec!["dockerfile".to_string(), repo()];
    args.extend(workspace_bins());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let report = check(&args);
    assert_no_problems("deploy/Dockerfile", &report);

    let argv = strings(&report["healthcheck"]["cmd"]);
    let program = bin(&argv[0]);
    let help_args: Vec<&str> = argv[1..]
        .iter()
        .map(String::as_str)
        .chain(["--help"])
        .collect();
    let (ok, help, err) = run(&program, &help_args);
    assert!(ok, "{argv:?} --help: not a command of {}:\n{err}", argv[0]);
    let default_url = help_default(&help, "url");
    let http_ports: Vec<u64> = report["coordinator_http_ports"]
        .as_array()
        .expect("ports")
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    assert_eq!(http_ports.len(), 1, "{http_ports:?}");
    assert_eq!(
        default_url,
        format!("http://127.0.0.1:{}/healthz", http_ports[0]),
        "the HEALTHCHECK's default is not the coordinator's /healthz"
    );
    let own = humantime::parse_duration(&help_default(&help, "timeout")).expect("timeout");
    let docker = report["healthcheck"]["flags"]["timeout"]
        .as_str()
        .and_then(|t| humantime::parse_duration(t).ok())
        .expect("HEALTHCHECK --timeout");
    assert!(
        own < docker,
        "the check's own timeout {own:?} must be under Docker's {docker:?} to print its reason"
    );

    let healthy = FaultServer::start(|request_line: &str| {
        if request_line.starts_with("GET /healthz ") {
            Reply::status(200, "ok")
        } else {
            Reply::status(404, "not found")
        }
    })
    .await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    for (url, pass) in [
        (healthy.url("/healthz"), true),
        (format!("http://{closed}/healthz"), false),
    ] {
        let out = tokio::process::Command::new(&program)
            .args(&argv[1..])
            .env("AUTHPULSE_HEALTH_URL", &url)
            .output()
            .await
            .expect("run the HEALTHCHECK command");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(if pass { 0 } else { 1 }),
            "HEALTHCHECK {argv:?} against {url}: {stderr}"
        );
        if !pass {
            assert_eq!(stderr.lines().count(), 1, "one line of reason: {stderr}");
            assert!(
                stderr.contains(&url) && stderr.to_lowercase().contains("refused"),
                "the reason names the URL and the refusal: {stderr}"
            );
        }
    }

    let manifest = std::fs::read_to_string(repo_root().join("Cargo.toml")).expect("Cargo.toml");
    let package = |key: &str| -> String {
        manifest
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key} = \"")))
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or_else(|| panic!("workspace {key}"))
            .to_string()
    };
    let label = |k: &str| report["labels"][format!("org.opencontainers.image.{k}")].clone();
    assert_eq!(label("licenses"), package("license").as_str());
    assert_eq!(label("version"), package("version").as_str());
    assert_eq!(label("title"), "authpulse");
    assert!(label("description").as_str().is_some_and(|d| !d.is_empty()));
    // Whoever builds knows the version and commit: both are build arguments.
    for k in ["version", "revision", "source"] {
        assert!(
            report["label_args"][format!("org.opencontainers.image.{k}")].is_string(),
            "org.opencontainers.image.{k} is not set from a build ARG: {}",
            report["label_args"]
        );
    }
    println!(
        "Dockerfile: HEALTHCHECK {argv:?} (default {default_url}, {own:?} < {docker:?}) passed and failed as it should; labels {}",
        report["labels"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_services_start_on_their_configs_and_agents_fail_over() {
    let dir = TempDir::new("ap-deploy-compose");
    let out = dir.path().join("compose");
    std::fs::create_dir_all(&out).expect("out dir");
    let report = check(&["compose", &repo(), out.to_str().expect("utf8")]);
    assert_no_problems("deploy/docker-compose.yml", &report);
    validate_catalogs(&strings(&report["catalogs"]));

    let prom = report["prometheus"]["config"]
        .as_str()
        .expect("prometheus config");
    let (ok, stdout, stderr) = run(&promtool(), &["check", "config", prom]);
    assert!(
        ok,
        "promtool check config (compose prometheus.yml):\n{stdout}{stderr}"
    );

    // The coordinators on their compose config, sharing one real PostgreSQL
    // database (the test server's, with the compose password file still
    // read), loopback for the compose network, and a catalog without probes
    // so no agent sends traffic anywhere (the compose catalog was validated
    // above).
    let database = PgDatabase::create().await;
    let empty = dir.path().join("empty.yaml");
    std::fs::write(&empty, EMPTY_CATALOG).expect("catalog");
    let client = reqwest::Client::new();
    let token = std::fs::read_to_string(deploy("compose/api-token")).expect("compose api token");
    let token = token.trim();
    let mut coordinators: BTreeMap<String, (Process, String, String)> = BTreeMap::new();
    for w in report["coordinators"].as_array().expect("coordinators") {
        let service = w["service"].as_str().expect("service");
        let env = vec![
            ("AUTHPULSE_DATABASE_URL".to_string(), database.url.clone()),
            (
                "AUTHPULSE_COORDINATOR__GRPC_LISTEN".into(),
                "127.0.0.1:0".into(),
            ),
            (
                "AUTHPULSE_COORDINATOR__HTTP_LISTEN".into(),
                "127.0.0.1:0".into(),
            ),
            (
                "AUTHPULSE_COORDINATOR__CATALOG".into(),
                empty.display().to_string(),
            ),
        ];
        let (mut p, http) = start_workload(w, &env, dir.path()).await;
        let grpc = p.line_after("grpc on ").await;
        wait_ready(&client, &http, service).await;
        // The API token file the compose file mounts is the one in force.
        assert_eq!(
            get_status(&client, format!("{http}/api/v1/agents")).await,
            401,
            "{service} without a token"
        );
        coordinators.insert(service.to_string(), (p, http, grpc));
    }

    // The agents, with the compose service names in their coordinator lists
    // pointing at the running coordinators, in the same order.
    let mut agents = Vec::new();
    for w in report["agents"].as_array().expect("agents") {
        let urls: Vec<String> = strings(&w["coordinator_urls"])
            .iter()
            .map(|u| {
                let service = u
                    .trim_start_matches("http://")
                    .split(':')
                    .next()
                    .unwrap_or_default();
                format!("http://{}", coordinators[service].2)
            })
            .collect();
        let env = vec![
            (
                "AUTHPULSE_AGENT__LISTEN".to_string(),
                "127.0.0.1:0".to_string(),
            ),
            ("AUTHPULSE_AGENT__COORDINATOR".into(), urls.join(",")),
        ];
        let (p, http) = start_workload(w, &env, dir.path()).await;
        wait_ready(&client, &http, w["service"].as_str().unwrap_or("agent")).await;
        agents.push((w.clone(), p, http));
    }

    // PostgreSQL mode: the replicas elect one leader.
    let https: Vec<String> = coordinators
        .values()
        .map(|(_, http, _)| http.clone())
        .collect();
    let services: Vec<String> = coordinators.keys().cloned().collect();
    let leader = one_leader(&client, &https).await;

    // Each agent is on the first coordinator of its list, under its region.
    for (w, _, _) in &agents {
        let first = strings(&w["coordinator_urls"])[0]
            .trim_start_matches("http://")
            .split(':')
            .next()
            .unwrap_or_default()
            .to_string();
        let id = w["agent_id"].as_str().expect("agent id").to_string();
        let region = w["region"].as_str().expect("region").to_string();
        let http = coordinators[&first].1.clone();
        wait_for(WAIT, &format!("{id} connected to {first}"), || async {
            (connected_agents(&client, &http, token).await?.get(&id) == Some(&region)).then_some(())
        })
        .await;
    }

    // Stop the first coordinator of the first agent's list: the agent moves
    // to the next coordinator it lists.
    let (w, _, _) = &agents[0];
    let list = strings(&w["coordinator_urls"]);
    let service_of = |u: &str| {
        u.trim_start_matches("http://")
            .split(':')
            .next()
            .unwrap_or_default()
            .to_string()
    };
    let (first, second) = (service_of(&list[0]), service_of(&list[1]));
    let id = w["agent_id"].as_str().expect("agent id").to_string();
    let stopped = Instant::now();
    if let Some((p, _, _)) = coordinators.get_mut(&first) {
        p.terminate().await;
    }
    let http = coordinators[&second].1.clone();
    wait_for(WAIT, &format!("{id} to fail over to {second}"), || async {
        connected_agents(&client, &http, token)
            .await?
            .contains_key(&id)
            .then_some(())
    })
    .await;
    let failover = stopped.elapsed();
    // The remaining coordinator leads (it did already, or takes the lock over).
    one_leader(&client, std::slice::from_ref(&http)).await;
    println!(
        "compose: {} coordinators on one PostgreSQL ({} led), {} agents ran on their configs; \
         {id} failed over {first} -> {second} in {failover:?}, {second} leads",
        coordinators.len(),
        services[leader],
        agents.len(),
    );
}

/// The values of every `KEY=value` line of a unit file, in order.
fn unit_values(text: &str, key: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(str::to_string)
        .collect()
}

/// The coordinator's drain time, read from its source so the unit's
/// TimeoutStopSec can't silently fall below it.
fn shutdown_grace_secs() -> u64 {
    let lib = std::fs::read_to_string(repo_root().join("coordinator/src/lib.rs"))
        .expect("coordinator/src/lib.rs");
    lib.lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("const SHUTDOWN_GRACE: Duration = Duration::from_secs(")?
                .strip_suffix(");")?
                .parse()
                .ok()
        })
        .expect("SHUTDOWN_GRACE in coordinator/src/lib.rs (update this test if it moved)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_units_verify_clean_and_their_reload_and_stop_work() {
    let dir = TempDir::new("ap-deploy-systemd");
    let analyze = systemd_analyze();
    let bins = workspace_bins();
    let mut units = Vec::new();
    for name in ["authpulse-coordinator.service", "authpulse-agent.service"] {
        let text = std::fs::read_to_string(deploy(&format!("systemd/{name}"))).expect("unit");
        let exec = unit_values(&text, "ExecStart").remove(0);
        let program = exec.split_whitespace().next().expect("ExecStart program");
        let binary = program
            .strip_prefix("/usr/local/bin/")
            .unwrap_or_else(|| panic!("{name}: ExecStart {program} is not in /usr/local/bin"));
        assert!(
            bins.iter().any(|b| b == binary),
            "{name}: {binary} is not a workspace binary ({bins:?})"
        );
        // Verified against the built binary: verify checks that it exists
        // and is executable, and resolves everything else as installed.
        let local = text.replace(program, &bin(binary).display().to_string());
        let path = dir.path().join(name);
        std::fs::write(&path, local).expect("unit copy");
        units.push((name, text, path));
    }
    let paths: Vec<String> = units
        .iter()
        .map(|(_, _, p)| p.display().to_string())
        .collect();
    let mut args = vec!["verify"];
    args.extend(paths.iter().map(String::as_str));
    let (ok, out, err) = run(&analyze, &args);
    // No warning is expected at all: unknown keys, bad values and missing
    // executables all print here (verify exits 0 on some of them).
    assert!(
        ok && out.trim().is_empty() && err.trim().is_empty(),
        "systemd-analyze verify:\n{out}{err}"
    );

    let grace = shutdown_grace_secs();
    for (name, text, path) in &units {
        let (ok, out, err) = run(
            &analyze,
            &["security", "--offline=true", path.to_str().expect("utf8")],
        );
        let score: f64 = out
            .lines()
            .find_map(|l| l.split("Overall exposure level for ").nth(1))
            .and_then(|rest| rest.split(": ").nth(1))
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("systemd-analyze security {name} ({ok}):\n{out}{err}"));
        assert!(
            score <= 2.0,
            "{name}: exposure {score} (sandboxing weakened?)\n{out}"
        );
        for key in [
            "User",
            "StateDirectory",
            "ProtectSystem",
            "RestrictAddressFamilies",
            "SystemCallFilter",
        ] {
            assert!(!unit_values(text, key).is_empty(), "{name}: no {key}=");
        }
        let stop: u64 = unit_values(text, "TimeoutStopSec")
            .first()
            .and_then(|v| v.trim_end_matches('s').parse().ok())
            .unwrap_or_else(|| panic!("{name}: TimeoutStopSec in seconds"));
        assert!(
            stop > 2 * grace,
            "{name}: TimeoutStopSec={stop}s must exceed the coordinator's two {grace}s drain steps"
        );
        println!("{name}: exposure {score}, TimeoutStopSec {stop}s");
    }

    // The coordinator unit's ExecReload, with $MAINPID filled in, reloads a
    // real coordinator's catalog; SIGTERM (systemd's stop) ends it cleanly
    // well within TimeoutStopSec, with an agent connected.
    let (_, coordinator_unit, _) = &units[0];
    let reload = unit_values(coordinator_unit, "ExecReload").remove(0);
    assert!(
        reload.contains("-HUP") && reload.contains("$MAINPID"),
        "ExecReload={reload}"
    );
    let catalog = dir.path().join("catalog.yaml");
    std::fs::write(&catalog, EMPTY_CATALOG).expect("catalog");
    let config = dir.path().join("coordinator.yaml");
    std::fs::write(
        &config,
        format!(
            "grpc_listen: 127.0.0.1:0\nhttp_listen: 127.0.0.1:0\ndata_dir: {}\ncatalog: [{}]\ninsecure: true\n",
            dir.path().join("data").display(),
            catalog.display()
        ),
    )
    .expect("config");
    let mut coordinator = Process::start(
        "authpulse-coordinator",
        &["--config", config.to_str().expect("utf8")],
        &[],
        dir.path(),
    )
    .await;
    let http = format!(
        "http://{}",
        coordinator.line_after("listening on http://").await
    );
    let grpc = coordinator.line_after("grpc on ").await;
    let agent_config = dir.path().join("agent.yaml");
    std::fs::write(
        &agent_config,
        format!(
            "agent_id: unit-agent\nregion: local\ncoordinator: http://{grpc}\ninsecure: true\nlisten: 127.0.0.1:0\ndata_dir: {}\n",
            dir.path().join("agent").display()
        ),
    )
    .expect("agent config");
    let mut agent = Process::start(
        "authpulse-agent",
        &["--config", agent_config.to_str().expect("utf8")],
        &[],
        dir.path(),
    )
    .await;
    let agent_http = format!("http://{}", agent.line_after("listening on http://").await);
    let client = reqwest::Client::new();
    wait_ready(&client, &agent_http, "agent").await;

    // A changed catalog is picked up by the file watcher anyway, so the
    // reload is told apart by the log line SIGHUP writes.
    let pid = coordinator_pid(&coordinator);
    let command = reload.replace("$MAINPID", &pid.to_string());
    let mut parts = command.split_whitespace();
    let program = PathBuf::from(parts.next().expect("program"));
    let rest: Vec<&str> = parts.collect();
    let (ok, out, err) = run(&program, &rest);
    assert!(ok, "ExecReload {command}:\n{out}{err}");
    wait_for(WAIT, "the coordinator to log the SIGHUP reload", || async {
        coordinator
            .log_text()
            .contains("SIGHUP: reloading the catalog")
            .then_some(())
    })
    .await;
    assert_eq!(
        get_status(&client, format!("{http}/readyz")).await,
        200,
        "ready after the reload"
    );

    let stopping = Instant::now();
    let code = coordinator.terminate().await;
    let took = stopping.elapsed();
    assert_eq!(
        code,
        Some(0),
        "SIGTERM: clean exit; log:\n{}",
        coordinator.log_text()
    );
    assert!(
        took < Duration::from_secs(2 * grace),
        "stopping took {took:?}"
    );
    println!("coordinator with an agent connected stopped in {took:?} on SIGTERM");
    agent.terminate().await;
}

/// The pid of a started process, from the kernel (the Process fixture keeps
/// the child private): the newest authpulse-coordinator whose command line
/// names this test's config.
fn coordinator_pid(p: &Process) -> u32 {
    let log = p.log.display().to_string();
    let dir = Path::new(&log)
        .parent()
        .expect("log dir")
        .display()
        .to_string();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains("authpulse-coordinator") && cmdline.contains(&dir) {
            return pid;
        }
    }
    panic!("no authpulse-coordinator process with a config in {dir}");
}

#[test]
fn prometheus_rules_pass_promtool_check_and_unit_tests() {
    let promtool = promtool();
    let rules = deploy("prometheus/rules.yml");
    let (ok, out, err) = run(
        &promtool,
        &["check", "rules", rules.to_str().expect("utf8")],
    );
    assert!(ok, "promtool check rules:\n{out}{err}");
    let tests = deploy("prometheus/rules.test.yml");
    let (ok, out, err) = run(&promtool, &["test", "rules", tests.to_str().expect("utf8")]);
    assert!(
        ok && out.contains("SUCCESS"),
        "promtool test rules:\n{out}{err}"
    );
    // Every alert has at least one unit test that expects it to fire.
    let rules_text = std::fs::read_to_string(&rules).expect("rules");
    let tests_text = std::fs::read_to_string(&tests).expect("tests");
    let alerts: Vec<&str> = rules_text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    let untested: Vec<&&str> = alerts
        .iter()
        .filter(|a| {
            // An `alertname: X` test block followed by a non-empty exp_alerts.
            tests_text.split("- eval_time:").all(|block| {
                !(block.contains(&format!("alertname: {a}\n")) && block.contains("exp_labels"))
            })
        })
        .collect();
    assert!(
        untested.is_empty(),
        "alerts without a firing unit test: {untested:?}"
    );
    println!(
        "{} ({} alerts, each tested firing)",
        out.trim(),
        alerts.len()
    );
}

/// Metrics the rules or dashboard use that appear only after an event this
/// test can't cause on demand, with the reason.
const EVENT_ONLY: &[(&str, &str)] = &[
    (
        "authpulse_coordinator_audit_errors_total",
        "counted only when an audit log write fails (disk full, I/O error)",
    ),
    (
        "authpulse_agent_results_lost_total",
        "counted only when a result can't be written to the spool (disk full, I/O error)",
    ),
];

/// Alerts of rules.yml that the live run below must raise (pending or firing)
/// from the real binaries' metrics.
const LIVE_ALERTS: &[&str] = &[
    "AuthpulseProbeEscalation",
    "AuthpulseEscalationFiring",
    "AuthpulseSLOBurnRatePage",
    "AuthpulseCatalogReloadRefused",
    "AuthpulseAgentTLSRejected",
    "AuthpulseIngestStreamsRejected",
];

fn catalog(fault: &str, decisions: &str, extra_probe: bool) -> String {
    let mut s = format!(
        "probes:\n  - id: idp-health\n    kind: http\n    url: {fault}/health\n    interval: 1s\n    timeout: 800ms\n\
         \x20 - id: idp-token\n    kind: http\n    url: {fault}/fail\n    interval: 1s\n    timeout: 800ms\n\
         \x20 - id: intern-cannot-delete\n    kind: permission\n    engine: opa\n    url: {decisions}\n    path: app/authz/allow\n\
         \x20   input: {{ user: intern, action: delete, resource: payroll }}\n    expect: deny\n    interval: 1s\n    timeout: 800ms\n"
    );
    if extra_probe {
        s.push_str(&format!("  - id: idp-health-2\n    kind: http\n    url: {fault}/health\n    interval: 1s\n    timeout: 800ms\n"));
    }
    s.push_str(
        "slos:\n  - id: idp-availability\n    probes: [idp-health, idp-token]\n    objective: 99\n    window: 1h\n\
         \x20 - id: authz-deny\n    probes: [intern-cannot-delete]\n    objective: 99\n    window: 1h\n\
         gates:\n  - id: idp-ready\n    slos: [idp-availability]\n    block_when: [page_alert, escalation]\n",
    );
    s
}

async fn metrics(client: &reqwest::Client, http: &str) -> String {
    client
        .get(format!("{http}/metrics"))
        .send()
        .await
        .map(|r| r.text())
        .unwrap_or_else(|e| panic!("GET {http}/metrics: {e}"))
        .await
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_and_dashboard_use_what_the_binaries_export() {
    let dir = TempDir::new("ap-deploy-metrics");
    let client = reqwest::Client::new();

    // Peers: an IdP stand-in (one path fails), an authorization engine that
    // wrongly allows `intern` to delete payroll (an escalation), a webhook.
    let fault = FaultServer::start(|line: &str| {
        if line.contains("/fail") {
            Reply::status(503, "down")
        } else {
            Reply::status(200, "ok")
        }
    })
    .await;
    let decisions = DecisionServer::start(&[("intern", "delete", "payroll")]).await;
    let webhook = CaptureServer::start(|_| 200).await;

    // mTLS from `authpulse certs`: the agent, a second agent over the fleet
    // limit, and one with a certificate from another CA.
    let pki = dir.path().join("pki");
    let other = dir.path().join("other-pki");
    let authpulse = bin("authpulse");
    let p = pki.to_str().expect("utf8");
    let o = other.to_str().expect("utf8");
    for args in [
        vec!["certs", "init", "--out", p],
        vec!["certs", "init", "--out", o],
        vec![
            "certs",
            "agent",
            "--out",
            p,
            "--ca",
            &format!("{p}/ca.pem"),
            "--ca-key",
            &format!("{p}/ca.key"),
            "--agent-id",
            "live-1",
            "--region",
            "eu-west",
        ],
        vec![
            "certs",
            "agent",
            "--out",
            p,
            "--ca",
            &format!("{p}/ca.pem"),
            "--ca-key",
            &format!("{p}/ca.key"),
            "--agent-id",
            "live-2",
            "--region",
            "us-east",
        ],
        vec![
            "certs",
            "agent",
            "--out",
            o,
            "--ca",
            &format!("{o}/ca.pem"),
            "--ca-key",
            &format!("{o}/ca.key"),
            "--agent-id",
            "rogue",
            "--region",
            "eu-west",
        ],
    ] {
        let (ok, out, err) = run(&authpulse, &args);
        assert!(ok, "authpulse {args:?}:\n{out}{err}");
    }
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "live-admin-token\n").expect("token");
    let catalog_path = dir.path().join("catalog.yaml");
    std::fs::write(
        &catalog_path,
        catalog(&fault.url(""), &decisions.url(), false),
    )
    .expect("catalog");
    let config = dir.path().join("coordinator.yaml");
    std::fs::write(
        &config,
        format!(
            "grpc_listen: 127.0.0.1:0\nhttp_listen: 127.0.0.1:0\ndata_dir: {data}\ncatalog: [{catalog}]\n\
             tls: {{ cert: {p}/coordinator.pem, key: {p}/coordinator.key, client_ca: {p}/ca.pem }}\n\
             fleet: {{ max_agents: 1 }}\n\
             api:\n  tokens:\n    - {{ name: test, token_file: {token}, scopes: [admin] }}\n\
             alerting:\n  webhook: {{ url: {hook} }}\n",
            data = dir.path().join("data").display(),
            catalog = catalog_path.display(),
            token = token_file.display(),
            hook = webhook.url("/hook"),
        ),
    )
    .expect("config");
    let mut coordinator = Process::start(
        "authpulse-coordinator",
        &["--config", config.to_str().expect("utf8")],
        &[],
        dir.path(),
    )
    .await;
    let api = format!(
        "http://{}",
        coordinator.line_after("listening on http://").await
    );
    let grpc = coordinator.line_after("grpc on ").await;
    let agent_config = |id: &str, region: &str, pki: &str| {
        let path = dir.path().join(format!("{id}.yaml"));
        std::fs::write(
            &path,
            format!(
                "agent_id: {id}\nregion: {region}\ncoordinator: https://{grpc}\n\
                 tls: {{ cert: {pki}/{id}.pem, key: {pki}/{id}.key, ca: {p}/ca.pem }}\n\
                 listen: 127.0.0.1:0\ndata_dir: {}\n",
                dir.path().join(id).display()
            ),
        )
        .expect("agent config");
        path
    };
    let live = agent_config("live-1", "eu-west", p);
    let mut agent = Process::start(
        "authpulse-agent",
        &["--config", live.to_str().expect("utf8")],
        &[],
        dir.path(),
    )
    .await;
    let agent_http = format!("http://{}", agent.line_after("listening on http://").await);
    wait_ready(&client, &agent_http, "agent live-1").await;
    // A real Prometheus with rules.yml and the SLO rules `authpulse rules`
    // writes for this catalog, scraping from here on, so it sees the
    // counters below move (increase() needs two samples).
    let slo_rules = dir.path().join("slo-rules.yml");
    let (ok, out, err) = run(
        &authpulse,
        &[
            "rules",
            "--catalog",
            catalog_path.to_str().expect("utf8"),
            "--output",
            slo_rules.to_str().expect("utf8"),
        ],
    );
    assert!(ok, "authpulse rules:\n{out}{err}");
    let prom = RulesPrometheus::start(
        dir.path(),
        &[api.trim_start_matches("http://").to_string()],
        &[(
            agent_http.trim_start_matches("http://").to_string(),
            "eu-west".to_string(),
        )],
        &[slo_rules],
    )
    .await;
    let scraped = |metric: &'static str| {
        let (prom, client) = (&prom, &client);
        async move {
            prom.query(client, metric)
                .await
                .filter(|r| !r.is_empty())
                .map(|_| ())
        }
    };
    wait_for(
        WAIT,
        "Prometheus to scrape the coordinator and the agent",
        || async {
            let up = prom.query(&client, "up == 1").await?;
            (up.len() == 2).then_some(())
        },
    )
    .await;

    // Over max_agents: its stream is rejected (too_many_agents).
    let second = agent_config("live-2", "us-east", p);
    let mut over_limit = Process::start(
        "authpulse-agent",
        &["--config", second.to_str().expect("utf8")],
        &[],
        dir.path(),
    )
    .await;
    over_limit.line_after("listening on http://").await;
    // Another CA: refused at the TLS handshake (unknown_ca).
    let rogue = agent_config("rogue", "eu-west", o);
    let mut rogue_agent = Process::start(
        "authpulse-agent",
        &["--config", rogue.to_str().expect("utf8")],
        &[],
        dir.path(),
    )
    .await;
    rogue_agent.line_after("listening on http://").await;

    // A gate decision, a refused API call, two refused catalogs (Prometheus
    // sees the counter go up between them), then an applied one.
    let token = "live-admin-token";
    wait_for(WAIT, "a gate decision", || async {
        let r = client
            .get(format!("{api}/api/v1/gates/idp-ready"))
            .bearer_auth(token)
            .send()
            .await
            .ok()?;
        (r.status() == 200 || r.status() == 503).then_some(())
    })
    .await;
    assert_eq!(
        get_status(&client, format!("{api}/api/v1/slos")).await,
        401,
        "no token"
    );
    rewrite(&catalog_path, "probes: [ { id: broken } ]\n");
    wait_for(WAIT, "Prometheus to see the refused catalog", || {
        scraped("authpulse_coordinator_catalog_reloads_total{result=\"invalid\"}")
    })
    .await;
    rewrite(&catalog_path, "probes: [ { id: still-broken } ]\n");
    wait_for(WAIT, "the second refused catalog", || async {
        let r = prom
            .query(
                &client,
                "authpulse_coordinator_catalog_reloads_total{result=\"invalid\"} >= 2",
            )
            .await?;
        (!r.is_empty()).then_some(())
    })
    .await;
    rewrite(
        &catalog_path,
        &catalog(&fault.url(""), &decisions.url(), true),
    );

    // Which metrics the rules and the dashboard read (the checker with no
    // live metrics lists them), then wait until the binaries export them all.
    let listed: BTreeMap<&str, &str> = EVENT_ONLY.iter().copied().collect();
    let facts_path = dir.path().join("metrics.json");
    let write_facts = |m: &BTreeMap<String, BTreeSet<String>>| {
        std::fs::write(
            &facts_path,
            json!({ "metrics": m, "listed": listed, "agent_target_labels": ["region"] })
                .to_string(),
        )
        .expect("facts");
    };
    write_facts(&BTreeMap::new());
    let scout = check(&["promql", &repo(), facts_path.to_str().expect("utf8")]);
    let recorded: BTreeSet<String> = strings(&scout["recorded"]).into_iter().collect();
    let own = ["up", "ALERTS", "ALERTS_FOR_STATE"];
    let needed: BTreeSet<String> = strings(&scout["referenced"])
        .into_iter()
        .filter(|n| !recorded.contains(n) && !own.contains(&n.as_str()))
        .filter(|n| !listed.contains_key(n.as_str()))
        .collect();
    let exported = wait_for(
        Duration::from_secs(90),
        "every metric the rules and dashboard use",
        || async {
            let mut all = exported_metrics(&metrics(&client, &api).await);
            all.extend(exported_metrics(&metrics(&client, &agent_http).await));
            needed.iter().all(|n| all.contains_key(n)).then_some(all)
        },
    )
    .await;
    write_facts(&exported);
    let report = check(&["promql", &repo(), facts_path.to_str().expect("utf8")]);
    assert_no_problems(
        "rules.yml and grafana/authpulse.json against /metrics",
        &report,
    );

    // The rules match the series as exported: the expected alerts go active.
    let active = wait_for(
        Duration::from_secs(90),
        "the expected alerts in Prometheus",
        || async {
            let names: BTreeSet<String> = prom
                .alerts(&client)
                .await?
                .iter()
                .filter_map(|a| a["labels"]["alertname"].as_str().map(str::to_string))
                .collect();
            LIVE_ALERTS
                .iter()
                .all(|a| names.contains(*a))
                .then_some(names)
        },
    )
    .await;
    let unhealthy: Vec<String> = prom
        .rules(&client)
        .await
        .unwrap_or_default()
        .iter()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .filter(|r| r["health"] != "ok" && r["health"] != "unknown")
        .map(|r| format!("{}: {}", r["name"], r["lastError"]))
        .collect();
    assert!(
        unhealthy.is_empty(),
        "rules failing to evaluate: {unhealthy:?}"
    );
    // Recording rules over real series: the failing probe at 0, the
    // healthy one at 1.
    let by_probe = wait_for(WAIT, "availability recorded for both probes", || async {
        let by_probe: BTreeMap<String, f64> = prom
            .query(&client, "authpulse:probe_availability:ratio_rate5m")
            .await?
            .iter()
            .filter_map(|s| {
                Some((
                    s["metric"]["probe"].as_str()?.to_string(),
                    s["value"][1].as_str()?.parse().ok()?,
                ))
            })
            .collect();
        (by_probe.contains_key("idp-token") && by_probe.contains_key("idp-health"))
            .then_some(by_probe)
    })
    .await;
    assert_eq!(by_probe.get("idp-token"), Some(&0.0), "{by_probe:?}");
    assert_eq!(by_probe.get("idp-health"), Some(&1.0), "{by_probe:?}");
    println!(
        "{} expressions over {} metrics checked against /metrics; Prometheus alerts active: {active:?}",
        report["expressions"],
        report["referenced"].as_array().map_or(0, Vec::len),
    );
    drop((agent, over_limit, rogue_agent, coordinator));
}
