//! `authpulse rules` and the rule files deploy/ ships: the per-SLO groups
//! of deploy/prometheus/rules.yml are what the command writes for the
//! quickstart catalog, rules.test-slos.yml what it writes for
//! rules.test-catalog.yaml (the SLOs rules.test.yml exercises: 28d, 30d, a
//! calendar month), and `promtool check rules` / `promtool test rules`
//! accept them, with a unit test per window length.
//! `UPDATE_RULES=1 cargo test -p authpulse-tests --test slo_rules` rewrites
//! the two files (then copy rules.yml's groups into deploy/k8s/monitoring.yaml,
//! which deploy_artifacts compares).
use std::process::Command;

use authpulse_tests::deploy_check::{promtool, run};
use authpulse_tests::{TempDir, bin, repo_root};

const QUICKSTART: &str = "deploy/examples/quickstart.yaml";
const RULES: &str = "deploy/prometheus/rules.yml";
const TEST_CATALOG: &str = "deploy/prometheus/rules.test-catalog.yaml";
const TEST_RULES: &str = "deploy/prometheus/rules.test-slos.yml";

fn update() -> bool {
    std::env::var_os("UPDATE_RULES").is_some_and(|v| v == "1")
}

/// `authpulse <args>` in the repository root: (success, stdout, stderr).
fn authpulse(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin("authpulse"))
        .args(args)
        .current_dir(repo_root())
        .output()
        .expect("run authpulse");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_same(path: &str, committed: &str, generated: &str, command: &str) {
    if committed == generated {
        return;
    }
    let line = committed
        .lines()
        .zip(generated.lines())
        .position(|(a, b)| a != b)
        .map_or_else(
            || committed.lines().count().min(generated.lines().count()) + 1,
            |i| i + 1,
        );
    panic!(
        "{path} is stale (it differs from what `authpulse rules` writes, first at line {line}). \
         Regenerate it with\n\n    {command}\n\nor `UPDATE_RULES=1 cargo test -p authpulse-tests \
         --test slo_rules`, and commit the result."
    );
}

#[test]
fn rules_yml_holds_the_quickstart_catalogs_generated_groups() {
    let root = repo_root();
    let committed = std::fs::read_to_string(root.join(RULES)).expect("rules.yml");
    let command = format!("authpulse rules --catalog {QUICKSTART} --into {RULES}");
    if update() {
        let (ok, out, err) = authpulse(&["rules", "--catalog", QUICKSTART, "--into", RULES]);
        assert!(ok, "{command}:\n{out}{err}");
        return;
    }
    // The command on a copy: only the block between the markers may change.
    let dir = TempDir::new("ap-slo-rules");
    let copy = dir.path().join("rules.yml");
    std::fs::write(&copy, &committed).expect("copy");
    let (ok, out, err) = authpulse(&[
        "rules",
        "--catalog",
        QUICKSTART,
        "--into",
        copy.to_str().expect("utf8"),
    ]);
    assert!(ok, "{command}:\n{out}{err}");
    assert!(out.contains("(2 SLO(s))"), "{out}");
    let generated = std::fs::read_to_string(&copy).expect("read");
    assert_same(RULES, &committed, &generated, &command);
    // The operational groups are still there around the generated ones.
    for group in [
        "authpulse-recording",
        "authpulse-slo-public-idp-discovery",
        "authpulse-slo-google-jwks-latency",
        "authpulse-probes",
        "authpulse-coordinator",
        "authpulse-agents",
    ] {
        assert!(
            committed.contains(&format!("  - name: {group}\n"))
                || committed.contains(&format!("  - name: \"{group}\"\n")),
            "rules.yml lacks the group {group}"
        );
    }
}

#[test]
fn the_test_slo_rules_are_what_authpulse_rules_writes() {
    let root = repo_root();
    let command = format!("authpulse rules --catalog {TEST_CATALOG} --output {TEST_RULES}");
    let (ok, generated, err) = authpulse(&["rules", "--catalog", TEST_CATALOG]);
    assert!(ok, "{command}:\n{err}");
    if update() {
        std::fs::write(root.join(TEST_RULES), &generated).expect("write");
        return;
    }
    let committed = std::fs::read_to_string(root.join(TEST_RULES)).unwrap_or_default();
    assert_same(TEST_RULES, &committed, &generated, &command);
}

#[test]
fn promtool_accepts_the_rules_and_their_unit_tests_pass() {
    let root = repo_root();
    let promtool = promtool();
    let path = |p: &str| root.join(p).display().to_string();
    let (ok, out, err) = run(
        &promtool,
        &["check", "rules", &path(RULES), &path(TEST_RULES)],
    );
    assert!(ok, "promtool check rules:\n{out}{err}");
    let (ok, out, err) = run(
        &promtool,
        &["test", "rules", &path("deploy/prometheus/rules.test.yml")],
    );
    assert!(
        ok && out.contains("SUCCESS"),
        "promtool test rules:\n{out}{err}"
    );
    // The unit tests cover a 7d, a 28d, a 30d and a calendar-month SLO.
    let tests = std::fs::read_to_string(root.join("deploy/prometheus/rules.test.yml"))
        .expect("rules.test.yml");
    for slo in [
        "public-idp-discovery",
        "login-28d",
        "login-30d",
        "login-month",
    ] {
        assert!(
            tests.contains(&format!("slo: {slo}, severity: page")),
            "no firing page test for {slo}"
        );
    }
}

#[test]
fn any_catalog_gives_a_rule_file_promtool_accepts() {
    // Every window shape and opt-out, owners, labels and runbooks together.
    let dir = TempDir::new("ap-slo-rules-any");
    let catalog = dir.path().join("catalog.yaml");
    std::fs::write(
        &catalog,
        "probes:\n  - { id: a, kind: http, url: \"https://a.example/\", owner: \"team \\\"a\\\"\" }\n\
         \x20 - { id: b, kind: http, url: \"https://b.example/\", runbook_url: \"https://r.example/b?x=1&y=2\" }\n\
         slos:\n\
         \x20 - { id: one-hour, probes: [a], objective: 99, window: 1h }\n\
         \x20 - { id: day, probes: [a, b], objective: 99.99, window: { calendar: day, time_zone: America/New_York } }\n\
         \x20 - { id: week, probes: [b], objective: 95, window: { calendar: week }, labels: { team: x, cost_centre: \"4711\" } }\n\
         \x20 - { id: silent, probes: [b], objective: 90, window: 90d, alerting: { page: false, ticket: false } }\n",
    )
    .expect("catalog");
    let out = dir.path().join("rules.yml");
    let (ok, stdout, err) = authpulse(&[
        "rules",
        catalog.to_str().expect("utf8"),
        "--output",
        out.to_str().expect("utf8"),
    ]);
    assert!(ok, "{stdout}{err}");
    assert!(stdout.contains("(4 SLO(s))"), "{stdout}");
    let (ok, text, err) = run(
        &promtool(),
        &["check", "rules", out.to_str().expect("utf8")],
    );
    assert!(ok, "promtool check rules:\n{text}{err}");
    let rules = std::fs::read_to_string(&out).expect("read");
    // The SLO without alerts still gets its group (its comments say why),
    // with no rules.
    assert!(
        rules.contains("  - name: \"authpulse-slo-silent\"\n    rules: []\n"),
        "{rules}"
    );
    // An invalid catalog is exit 1 with the problems, nothing written.
    std::fs::write(
        &catalog,
        "slos:\n  - { id: x, probes: [nope], objective: 99, window: 1h }\n",
    )
    .expect("catalog");
    let (ok, stdout, err) = authpulse(&["rules", catalog.to_str().expect("utf8")]);
    assert!(!ok && stdout.is_empty(), "{stdout}");
    assert!(err.contains("nope"), "{err}");
    // --into a file without the markers: exit 1, the file unchanged.
    let plain = dir.path().join("plain.yml");
    std::fs::write(&plain, "groups: []\n").expect("plain");
    std::fs::write(&catalog, "probes: []\n").expect("catalog");
    let (ok, _, err) = authpulse(&[
        "rules",
        catalog.to_str().expect("utf8"),
        "--into",
        plain.to_str().expect("utf8"),
    ]);
    assert!(!ok && err.contains("BEGIN generated"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&plain).expect("read"),
        "groups: []\n"
    );
}
