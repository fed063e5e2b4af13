//! Catalog as code: sources that are directories and glob patterns, modules
//! instantiated per environment with errors that name both the module line
//! and the use, ownership keys, and "did you mean" for misspelt keys.
use std::path::Path;

use authpulse_proto::catalog::{self, CatalogErrors, KindSpec};

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).expect("dir");
    }
    std::fs::write(&p, text).expect("write");
    p
}

fn tempdir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "ap-cac-{tag}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    std::fs::create_dir_all(&d).expect("tempdir");
    d
}

fn probe(id: &str) -> String {
    format!("probes:\n  - id: {id}\n    kind: http\n    url: https://{id}.example\n")
}

#[test]
fn directories_and_globs_expand_sorted_skipping_hidden_and_other_files() {
    let d = tempdir("dir");
    write(&d, "teams/b.yaml", &probe("b"));
    write(&d, "teams/a.yml", &probe("a"));
    write(
        &d,
        "teams/nested/c.toml",
        "[[probes]]\nid = \"c\"\nkind = \"http\"\nurl = \"https://c.example\"\n",
    );
    write(&d, "teams/README.md", "not a catalog");
    // A ConfigMap's `..data` directory and an editor's swap file.
    write(&d, "teams/..data/a.yml", &probe("a-again"));
    write(&d, "teams/.b.yaml.swp", "garbage: [");
    let files = catalog::expand_sources(&[d.join("teams")]).expect("expanded");
    let names: Vec<String> = files
        .iter()
        .map(|f| f.strip_prefix(&d).expect("under d").display().to_string())
        .collect();
    assert_eq!(
        names,
        ["teams/a.yml", "teams/b.yaml", "teams/nested/c.toml"]
    );

    let c = catalog::load_files(&[d.join("teams")]).expect("valid");
    let ids: Vec<&str> = c.probes.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c"]);

    // A glob, and the same file named again: once.
    let pattern = format!("{}/teams/*.yaml", d.display());
    let c = catalog::load_files(&[
        pattern.clone(),
        d.join("teams/b.yaml").display().to_string(),
    ])
    .expect("valid");
    assert_eq!(c.probes.len(), 1);

    // Patterns and directories that find nothing are errors, not silence.
    let errs = catalog::load_files(&[format!("{}/teams/*.json", d.display())])
        .expect_err("matches nothing");
    assert!(errs.to_string().contains("matches no .yaml"), "{errs}");
    let empty = d.join("empty");
    std::fs::create_dir_all(&empty).expect("dir");
    let errs = catalog::load_files(&[&empty]).expect_err("empty dir");
    assert!(errs.to_string().contains("holds no .yaml"), "{errs}");
}

const MODULES: &str = r#"modules:
  - id: idp-health
    description: Discovery and login health of one IdP environment.
    params:
      env: {}
      issuer: { description: the issuer URL }
      regions: { default: [eu-west, us-east] }
      objective: { default: 99.9 }
      owner: { default: team-identity }
    probes:
      - id: "{{ params.env }}-discovery"
        kind: oidc_discovery
        issuer: "{{ params.issuer }}"
        regions: "{{ params.regions }}"
        interval: 30s
        owner: "{{ params.owner }}"
        labels: { env: "{{ params.env }}" }
    slos:
      - id: "{{ params.env }}-idp"
        probes: ["{{ params.env }}-discovery"]
        objective: "{{ params.objective }}"
        window: 28d
        runbook_url: "https://runbooks.example/idp/{{ params.env }}"
"#;

#[test]
fn a_module_instantiates_per_environment_with_typed_values() {
    let d = tempdir("mod");
    write(&d, "modules.yaml", MODULES);
    write(
        &d,
        "envs.yaml",
        "uses:\n  - module: idp-health\n    with: { env: prod, issuer: \"https://login.example\" }\n  \
         - module: idp-health\n    with:\n      env: staging\n      issuer: https://staging-login.example\n      \
         regions: [eu-west]\n      objective: 99\n      owner: team-staging\n",
    );
    let c = catalog::load_files(&[&d]).expect("valid");
    let ids: Vec<&str> = c.probes.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["prod-discovery", "staging-discovery"]);
    let staging = &c.probes[1];
    assert_eq!(
        staging.regions.as_deref(),
        Some(&["eu-west".to_string()][..])
    );
    assert_eq!(staging.owner.as_deref(), Some("team-staging"));
    assert_eq!(
        staging.labels.get("env").map(String::as_str),
        Some("staging")
    );
    let KindSpec::OidcDiscovery(spec) = &staging.spec else {
        panic!("kind")
    };
    assert_eq!(spec.issuer, "https://staging-login.example");
    assert_eq!(c.probes[0].regions.as_ref().map(Vec::len), Some(2));
    // Numbers stay numbers; the SLO inherits its probe's owner.
    assert_eq!(c.slos[0].objective, 99.9);
    assert_eq!(c.slos[1].objective, 99.0);
    assert_eq!(c.slo_owner(&c.slos[1]), Some("team-staging"));
    assert_eq!(
        c.slo_runbook_url(&c.slos[1]),
        Some("https://runbooks.example/idp/staging")
    );
    // The item's source is the module's line.
    let src = staging.source.as_ref().expect("source");
    assert!(
        src.file.ends_with("modules.yaml") && src.line == Some(11),
        "{src}"
    );
}

fn errs(text: &str) -> CatalogErrors {
    catalog::load_str("c.yaml", text).expect_err("rejected")
}

#[test]
fn module_errors_point_at_the_module_line_and_name_the_use() {
    // An invalid value from a parameter: the module's `interval` line, and
    // which use made it.
    let text = format!(
        "{}uses:\n  - module: idp-health\n    with: {{ env: prod, issuer: \"not a url\" }}\n",
        MODULES.replace("interval: 30s", "interval: 30s\n        timeout: 31s")
    );
    let e = errs(&text);
    let all = e.to_string();
    assert!(
        all.contains("c.yaml:15: `prod-discovery`: modules[0].probes[0].interval"),
        "{all}"
    );
    assert!(
        all.contains("(module `idp-health` used at c.yaml:26 (uses[0]))"),
        "{all}"
    );
    assert!(all.contains("modules[0].probes[0].issuer"), "{all}");

    // Misspelt and missing parameters, an unknown module: at the use.
    let text = format!(
        "{MODULES}uses:\n  - module: idp-health\n    with: {{ evn: prod, issuer: x }}\n  - module: idp-healht\n"
    );
    let all = errs(&text).to_string();
    assert!(all.contains("c.yaml:26: uses[0].with.evn: module `idp-health` has no parameter `evn` (did you mean `env`?)"), "{all}");
    assert!(all.contains("missing parameter `env`"), "{all}");
    assert!(
        all.contains("uses[1].module: unknown module `idp-healht` (did you mean `idp-health`?)"),
        "{all}"
    );

    // Two uses with the same values make the same ids: a duplicate.
    let text = format!(
        "{MODULES}uses:\n  - module: idp-health\n    with: {{ env: prod, issuer: \"https://a.example\" }}\n  \
         - module: idp-health\n    with: {{ env: prod, issuer: \"https://b.example\" }}\n"
    );
    let all = errs(&text).to_string();
    assert!(all.contains("duplicate probe id `prod-discovery`"), "{all}");
    assert!(all.contains("(uses[1])"), "{all}");

    // A reference to an undeclared parameter.
    let text = format!(
        "{}uses:\n  - module: idp-health\n    with: {{ env: prod, issuer: \"https://a.example\" }}\n",
        MODULES.replace(
            "labels: { env: \"{{ params.env }}\" }",
            "labels: { env: \"{{ params.stage }}\" }"
        )
    );
    let all = errs(&text).to_string();
    assert!(all.contains("modules[0].probes[0].labels.env: `{{ params.stage }}`: the module has no parameter `stage`"), "{all}");
}

#[test]
fn ownership_keys_are_checked() {
    let text = "probes:\n  - id: a\n    kind: http\n    url: https://a.example\n    owner: team-a\n    \
                runbook_url: ftp://wiki/a\nslos:\n  - id: s\n    probes: [a]\n    objective: 99\n    window: 1d\n    \
                labels: { severity: high, tier: gold, bad-name: x }\n";
    let all = errs(text).to_string();
    assert!(
        all.contains("c.yaml:6: `a`: probes[0].runbook_url"),
        "{all}"
    );
    assert!(
        all.contains("slos[0].labels.severity: `severity` is set by authpulse itself"),
        "{all}"
    );
    assert!(
        all.contains("slos[0].labels.bad-name: invalid label name"),
        "{all}"
    );
    assert!(!all.contains("tier"), "{all}");
}

#[test]
fn misspelt_keys_get_a_suggestion() {
    let text = "probes:\n  - id: a\n    kind: http\n    url: https://a.example\n    intervl: 30s\n";
    let all = errs(text).to_string();
    assert!(
        all.contains(
            "c.yaml:5: `a`: probes[0].intervl: unknown field `intervl` (did you mean `interval`?)"
        ),
        "{all}"
    );
    let text = "probes:\n  - id: a\n    kind: http\n    url: https://a.example\n    expect: { statuss: [200] }\n";
    assert!(errs(text).to_string().contains("(did you mean `status`?)"));
    let text = "slos:\n  - id: s\n    probes: [a]\n    objectiv: 99\n";
    assert!(
        errs(text)
            .to_string()
            .contains("(did you mean `objective`?)")
    );
    let text = "probs:\n  - id: a\n";
    assert!(
        errs(text)
            .to_string()
            .contains("unknown key `probs` (did you mean `probes`?)")
    );
}

#[test]
fn the_printed_expansion_loads_back_to_the_same_catalog() {
    let text = format!(
        "{MODULES}uses:\n  - module: idp-health\n    with: {{ env: prod, issuer: \"https://a.example\" }}\n\
         gates:\n  - id: deploy\n    slos: [prod-idp]\n    block_when: [page_alert, {{ sli_below: {{ window: 5m, value: 0.9 }} }}]\n    \
         owner: team-release\n"
    );
    let c = catalog::load_str("c.yaml", &text).expect("valid");
    let printed = catalog::print::to_yaml(&c);
    assert!(printed.contains("prod-discovery"), "{printed}");
    assert!(!printed.contains("params."), "{printed}");
    let again =
        catalog::load_str("printed.yaml", &printed).unwrap_or_else(|e| panic!("{e}\n{printed}"));
    let strip = |mut c: catalog::Catalog| {
        c.probes.iter_mut().for_each(|p| p.source = None);
        c.slos.iter_mut().for_each(|s| s.source = None);
        c.gates.iter_mut().for_each(|g| g.source = None);
        c
    };
    assert_eq!(strip(again), strip(c));
}

#[test]
fn maintenances_are_checked() {
    let base = "probes:\n  - id: a\n    kind: http\n    url: https://a.example\nslos:\n  - id: s\n    probes: [a]\n    objective: 99\n    window: 1d\n";
    let m = |starts: &str, ends: &str, comps: &str| {
        format!(
            "{base}maintenances:\n  - id: m\n    name: Work\n    starts: \"{starts}\"\n    ends: \"{ends}\"\n    components: [{comps}]\n"
        )
    };
    let c = catalog::load_str(
        "c.yaml",
        &m("2026-12-05T22:00:00Z", "2026-12-06T01:00:00+01:00", "s"),
    )
    .expect("valid");
    let (s, e) = c.maintenances[0].window_ms().expect("window");
    assert_eq!(e - s, 2 * 3_600_000);
    assert_eq!(c.maintenances[0].status_at(s - 1), "scheduled");
    assert_eq!(c.maintenances[0].status_at(s), "in_progress");
    assert_eq!(c.maintenances[0].status_at(e), "completed");
    assert_eq!(
        c.slos_in_maintenance(s).keys().copied().collect::<Vec<_>>(),
        ["s"]
    );
    assert!(c.slos_in_maintenance(e).is_empty());

    let all = errs(&m("tomorrow", "2026-12-06T00:00:00Z", "s")).to_string();
    assert!(
        all.contains("c.yaml:13: `m`: maintenances[0].starts: `tomorrow` is not an RFC 3339 time"),
        "{all}"
    );
    let all = errs(&m("2026-12-06T00:00:00Z", "2026-12-05T00:00:00Z", "s")).to_string();
    assert!(
        all.contains("maintenances[0].ends: must be after `starts`"),
        "{all}"
    );
    let all = errs(&m("2026-01-01T00:00:00Z", "2026-03-01T00:00:00Z", "s")).to_string();
    assert!(all.contains("at most 31 days"), "{all}");
    let all = errs(&m("2026-12-05T22:00:00Z", "2026-12-06T00:00:00Z", "login")).to_string();
    assert!(
        all.contains(
            "maintenances[0].components[0]: unknown SLO (the catalog declares no components"
        ),
        "{all}"
    );
}
