//! `authpulse docs --catalog` as an operator runs it (the real
//! target/debug/authpulse): the shipped examples render, the same catalog
//! gives the same bytes, a probe's row names the SLOs and gates that read it,
//! secrets appear by name only, an invalid catalog fails exactly like
//! `authpulse validate`, and `--output` writes the file. `--schema` and
//! `--reference` print the committed catalog schema and reference.
use std::process::Command;

use authpulse_tests::{TempDir, bin, repo_root};

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn authpulse(args: &[&str], envs: &[(&str, &str)]) -> Run {
    let out = Command::new(bin("authpulse"))
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .expect("run authpulse");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn write(dir: &TempDir, name: &str, text: &str) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, text).expect("write");
    p.display().to_string()
}

/// A catalog with everything a runbook shows: secrets by reference and one
/// credential inline, quorum and coverage, a calendar timeslices SLO with
/// an alerting opt-out, two gates and a component.
const RICH: &str = r#"probes:
  - id: login-password
    description: Password grant for the CLI
    kind: password
    issuer: https://idp.example.com
    client_id: cli
    client_secret: { secret: cli_client_secret }
    username: probe
    password: { secret: probe_password }
    regions: [eu-west, us-east]
    interval: 30s
    timeout: 5s
  - id: health
    kind: http
    url: https://idp.example.com/health
    headers:
      Authorization: { secret: health_token }
      X-Plain: plain-header-value-not-shown
  - id: authz-deny
    kind: permission
    engine: openfga
    url: https://fga.example.com
    store_id: 01ABC
    user: user:probe
    relation: owner
    object: doc:plan
    expect: deny
  - id: sts
    kind: aws_sts
    region: eu-west-1
    access_key_id: AKIAINLINEKEYID00001
    secret_access_key: { secret: aws_secret }
slos:
  - id: login-availability
    probes: [login-password, health]
    objective: 99.9
    window: 30d
    quorum: 2
    coverage: { window: 2h, min: 0.8 }
  - id: login-latency
    probes: [login-password]
    objective: 99
    window: { calendar: month, time_zone: Europe/Berlin }
    sli: { latency: { threshold: 800ms } }
    budgeting: { timeslices: { slice: 1m, target: 0.95 } }
    alerting: { page: false }
  - id: authz
    probes: [authz-deny]
    objective: 99.5
    window: 7d
gates:
  - id: deploy
    slos: [login-availability, authz]
    block_when: [page_alert, { budget_below: 0.2 }, { sli_below: { window: 15m, value: 0.99 } }]
  - id: canary
    slos: [login-latency]
    block_when: [ticket_alert]
    on_stale: pass
    stale_after: 10m
components:
  - id: login
    name: Login
    slos: [login-availability, login-latency]
"#;

#[test]
fn shipped_examples_render_and_are_deterministic() {
    for f in [
        "deploy/examples/quickstart.yaml",
        "deploy/examples/local.yaml",
        "deploy/examples/journey.yaml",
    ] {
        let path = repo_root().join(f);
        let path = path.to_str().expect("utf8");
        let first = authpulse(&["docs", "--catalog", path], &[]);
        assert_eq!(first.code, 0, "{f}: {}", first.stderr);
        assert!(
            first.stdout.starts_with("# authpulse catalog runbook\n"),
            "{f}: {}",
            first.stdout
        );
        assert!(first.stdout.contains("## Contents"), "{f}");
        let catalog =
            authpulse_proto::catalog::load_files(&[repo_root().join(f)]).expect("valid example");
        for p in &catalog.probes {
            assert!(
                first.stdout.contains(&format!("### Probe `{}`", p.id)),
                "{f}: no section for probe {}",
                p.id
            );
            assert!(
                first
                    .stdout
                    .contains(&format!("  - [`{}`](#probe-{})", p.id, p.id)),
                "{f}: probe {} missing from the contents",
                p.id
            );
        }
        for s in &catalog.slos {
            assert!(
                first.stdout.contains(&format!("### SLO `{}`", s.id)),
                "{f}: no section for SLO {}",
                s.id
            );
        }
        let second = authpulse(&["docs", "--catalog", path], &[]);
        assert_eq!(
            first.stdout.as_bytes(),
            second.stdout.as_bytes(),
            "{f}: two runs differ"
        );
    }
    // The journey example lists its steps with each step's endpoint.
    let journey = repo_root().join("deploy/examples/journey.yaml");
    let out = authpulse(&["docs", "--catalog", journey.to_str().expect("utf8")], &[]);
    assert!(
        out.stdout.contains(
            "| 4 | `cannot-delete` | permission | `POST https://opa.example.com/v1/data/app/authz/allow` | if all before succeeded | answer `deny`"
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("| 5 | `revoke` | revoke |") && out.stdout.contains("| always |"),
        "{}",
        out.stdout
    );
}

#[test]
fn rows_name_slos_gates_targets_and_alert_tables() {
    let dir = TempDir::new("ap-docs-rich");
    let catalog = write(&dir, "rich.yaml", RICH);
    let out = authpulse(&["docs", "--catalog", &catalog], &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let md = &out.stdout;
    let row = |start: &str| -> &str {
        md.lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no row starting {start:?} in:\n{md}"))
    };

    // The summary row of a probe two SLOs read, through which two gates read it.
    assert_eq!(
        row("| [`login-password`](#probe-login-password) |"),
        "| [`login-password`](#probe-login-password) | password \
         | `https://idp.example.com/.well-known/openid-configuration → token_endpoint` \
         | `eu-west`, `us-east` | 30s | 5s \
         | [`login-availability`](#slo-login-availability), [`login-latency`](#slo-login-latency) \
         | [`deploy`](#gate-deploy), [`canary`](#gate-canary) |"
    );
    // A probe no SLO reads says so.
    assert!(
        row("| [`sts`](#probe-sts) |").ends_with("| — | — |"),
        "{md}"
    );
    // Targets derived per kind.
    assert!(
        row("| [`authz-deny`](#probe-authz-deny) |")
            .contains("`POST https://fga.example.com/stores/01ABC/check`"),
        "{md}"
    );
    assert!(
        row("| [`sts`](#probe-sts) |").contains("`https://sts.eu-west-1.amazonaws.com`"),
        "{md}"
    );

    // SLO details: quorum, coverage, the alerter's factors, opt-outs.
    assert!(md.contains("| quorum | 2 regions:"), "{md}");
    assert!(
        md.contains(
            "| coverage | at least 80 % of the expected runs over the last 2h, else `insufficient_data` |"
        ),
        "{md}"
    );
    assert!(
        md.contains("| page | 1h | 5m | 14.4 | 2 % in 1h | yes |"),
        "30d SLO: {md}"
    );
    assert!(
        md.contains("| ticket | 3d | 6h | 0.2333 | 10 % in 3d | yes |"),
        "7d SLO: 1 × 7/30: {md}"
    );
    assert!(
        md.contains("| page | 6h | 30m | 6 | 5 % in 6h | no (`alerting` opt-out"),
        "{md}"
    );
    assert!(
        md.contains("43200 slices, a budget of 432 bad slices (7h 12m of bad time)"),
        "{md}"
    );

    // Gates: conditions, on_stale, stale_after.
    assert_eq!(
        row("| [`canary`](#gate-canary) |"),
        "| [`canary`](#gate-canary) | [`login-latency`](#slo-login-latency) | ticket_alert | pass | 10m |"
    );
    assert!(
        md.contains("| `budget_below: 0.2` | less than 20 % of the error budget is left |"),
        "{md}"
    );
    assert!(
        md.contains("| `sli_below: { window: 15m, value: 0.99 }` | the SLI over the last 15m"),
        "{md}"
    );
    // Components, and the SLO no component shows.
    assert!(md.contains("| `login` | Login |"), "{md}");
    assert!(
        md.contains("Internal SLOs (on no component, open no incident): [`authz`](#slo-authz)."),
        "{md}"
    );
}

#[test]
fn secrets_appear_by_name_never_by_value() {
    let dir = TempDir::new("ap-docs-secrets");
    let catalog = write(&dir, "rich.yaml", RICH);
    // Values the agent would resolve: docs must not read, let alone print, them.
    let out = authpulse(
        &["docs", "--catalog", &catalog],
        &[
            ("AUTHPULSE_SECRET_PROBE_PASSWORD", "hunter2-resolved-value"),
            ("AUTHPULSE_SECRET_AWS_SECRET", "aws-secret-resolved-value"),
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let md = &out.stdout;
    assert!(
        md.contains(
            "| credentials | `client_secret`: secret: `cli_client_secret`<br>`password`: secret: `probe_password` |"
        ),
        "{md}"
    );
    assert!(
        md.contains("`headers.Authorization`: secret: `health_token`"),
        "{md}"
    );
    assert!(
        md.contains("`access_key_id`: inline value, not shown"),
        "{md}"
    );
    assert!(
        md.contains(
            "| `probe_password` | `AUTHPULSE_SECRET_PROBE_PASSWORD` | [`login-password`](#probe-login-password) |"
        ),
        "{md}"
    );
    for value in [
        "hunter2-resolved-value",
        "aws-secret-resolved-value",
        "AKIAINLINEKEYID00001",
        "plain-header-value-not-shown",
    ] {
        assert!(!md.contains(value), "{value} printed:\n{md}");
    }
}

#[test]
fn an_invalid_catalog_fails_like_validate() {
    let dir = TempDir::new("ap-docs-bad");
    let bad = write(
        &dir,
        "bad.yaml",
        "probes:\n  - id: a\n    kind: http\n    url: https://x.example\n    intervall: 30s\n\
         slos:\n  - id: s\n    probes: [b]\n    objective: 99.9\n    window: 28d\n",
    );
    let docs = authpulse(&["docs", "--catalog", &bad], &[]);
    let validate = authpulse(&["validate", &bad], &[]);
    assert_eq!(docs.code, 1, "{}{}", docs.stdout, docs.stderr);
    assert_eq!(validate.code, 1);
    assert!(docs.stdout.is_empty(), "no half runbook: {}", docs.stdout);
    assert!(
        docs.stderr
            .contains("bad.yaml:5: `a`: probes[0].intervall: unknown field `intervall`"),
        "{}",
        docs.stderr
    );
    assert!(
        docs.stderr
            .contains("bad.yaml:8: `s`: slos[0].probes[0]: unknown probe `b`"),
        "{}",
        docs.stderr
    );
    assert_eq!(docs.stderr, validate.stderr);
    // A missing --output directory is an error, not a silent success.
    let good = write(&dir, "good.yaml", RICH);
    let missing = dir.path().join("no-such-dir").join("RUNBOOK.md");
    let out = authpulse(
        &[
            "docs",
            "--catalog",
            &good,
            "--output",
            missing.to_str().expect("utf8"),
        ],
        &[],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("cannot write"), "{}", out.stderr);
}

#[test]
fn output_writes_the_same_markdown_to_a_file() {
    let dir = TempDir::new("ap-docs-out");
    let probes = write(
        &dir,
        "probes.yaml",
        "probes:\n  - id: health\n    kind: http\n    url: https://idp.example.com/health\n",
    );
    let slos = write(
        &dir,
        "slos.yaml",
        "slos:\n  - id: up\n    probes: [health]\n    objective: 99\n    window: 7d\n",
    );
    let target = dir.path().join("RUNBOOK.md");
    let target_s = target.to_str().expect("utf8");
    let out = authpulse(
        &[
            "docs",
            "--catalog",
            &probes,
            "--catalog",
            &slos,
            "--output",
            target_s,
        ],
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.starts_with(&format!("wrote {target_s}")),
        "{}",
        out.stdout
    );
    let written = std::fs::read(&target).expect("RUNBOOK.md written");
    let printed = authpulse(&["docs", "--catalog", &probes, "--catalog", &slos], &[]);
    assert_eq!(written, printed.stdout.as_bytes());
    let text = String::from_utf8(written).expect("utf8");
    assert!(
        text.contains(&format!("from `{probes}`, `{slos}`: 1 probe, 1 SLO")),
        "{text}"
    );
    assert!(
        text.contains("| [`health`](#probe-health) | http | `GET https://idp.example.com/health` | all | 1m | 10s | [`up`](#slo-up) | — |"),
        "{text}"
    );
}

#[test]
fn schema_and_reference_print_the_committed_files() {
    for (flag, file) in [
        ("--schema", "proto/catalog.schema.json"),
        ("--reference", "proto/CATALOG.md"),
    ] {
        let out = authpulse(&["docs", flag], &[]);
        assert_eq!(out.code, 0, "{flag}: {}", out.stderr);
        let committed = std::fs::read_to_string(repo_root().join(file)).expect("committed file");
        assert!(
            out.stdout == committed,
            "`authpulse docs {flag}` differs from {file}: regenerate it (see proto/README.md)"
        );
    }
    let schema: serde_json::Value =
        serde_json::from_str(&authpulse(&["docs", "--schema"], &[]).stdout).expect("JSON");
    assert!(schema["definitions"]["HttpProbe"].is_object(), "{schema}");

    let dir = TempDir::new("ap-docs-schema");
    let path = dir.path().join("catalog.schema.json");
    let out = authpulse(
        &["docs", "--schema", "--output", path.to_str().expect("utf8")],
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.starts_with("wrote "), "{}", out.stdout);
    let written = std::fs::read_to_string(&path).expect("written");
    assert!(written.contains("\"$schema\": \"http://json-schema.org/draft-07/schema#\""));

    // A runbook still needs a catalog; the format documents take none.
    let out = authpulse(&["docs"], &[]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("--catalog"), "{}", out.stderr);
    let out = authpulse(&["docs", "--schema", "--catalog", "x.yaml"], &[]);
    assert_eq!(out.code, 2, "{}", out.stderr);
}

/// With ownership set (through a module, from a directory), the runbook
/// names each item's owner and runbook link, an SLO without its own owner
/// shows its probes', and the Owners index lists what each team owns.
#[test]
fn owners_and_runbook_links_make_it_a_runbook() {
    let dir = TempDir::new("ap-docs-owners");
    std::fs::create_dir_all(dir.path().join("catalog.d")).expect("dir");
    write(
        &dir,
        "catalog.d/modules.yaml",
        r#"modules:
  - id: login
    params: { env: {}, team: { default: team-identity } }
    probes:
      - id: "{{ params.env }}-login"
        kind: http
        url: "https://{{ params.env }}.idp.example/health"
        owner: "{{ params.team }}"
        runbook_url: "https://runbooks.example/login#{{ params.env }}"
    slos:
      - id: "{{ params.env }}-login"
        probes: ["{{ params.env }}-login"]
        objective: 99.9
        window: 28d
        labels: { env: "{{ params.env }}" }
"#,
    );
    write(
        &dir,
        "catalog.d/uses.yaml",
        "uses:\n  - module: login\n    with: { env: prod }\n  - module: login\n    with: { env: dev, team: team-dev }\n\
         gates:\n  - id: deploy\n    slos: [prod-login]\n    block_when: [page_alert]\n    owner: team-release\n    \
         runbook_url: https://runbooks.example/deploy-gate\n",
    );
    let catalog_dir = dir.path().join("catalog.d").display().to_string();
    let r = authpulse(&["docs", &catalog_dir], &[]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let md = r.stdout;
    assert!(md.contains("## Owners"), "{md}");
    assert!(
        md.contains("| team-identity | [`prod-login`](#probe-prod-login) | [`prod-login`](#slo-prod-login) | — |"),
        "{md}"
    );
    assert!(
        md.contains("| team-release | — | — | [`deploy`](#gate-deploy) |"),
        "{md}"
    );
    assert!(
        md.contains("| runbook | [https://runbooks.example/login#dev](<https://runbooks.example/login#dev>) (from its probes) |"),
        "{md}"
    );
    assert!(
        md.contains("| owner | team-dev (from its probes) |"),
        "{md}"
    );
    assert!(md.contains("| labels | `env=prod` |"), "{md}");

    // `validate --print` shows the same expansion as a catalog file.
    let r = authpulse(&["validate", "--catalog", &catalog_dir, "--print"], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .starts_with("ok: 2 probe(s), 2 SLO(s), 1 gate(s) in 2 file(s)"),
        "{}",
        r.stderr
    );
    assert!(
        r.stdout.contains("id: dev-login") && !r.stdout.contains("params."),
        "{}",
        r.stdout
    );
    let printed = write(&dir, "printed.yaml", &r.stdout);
    let r = authpulse(&["validate", &printed], &[]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);

    // No catalog at all is a usage error, not a crash or an empty runbook.
    let r = authpulse(&["docs"], &[]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("no catalog given"), "{}", r.stderr);
}
