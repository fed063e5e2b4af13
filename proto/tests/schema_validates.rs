//! The JSON Schema (`authpulse docs --schema`) accepts every example catalog
//! in the repository and rejects what the loader rejects for the reasons a
//! schema can see: unknown keys, unknown kinds, durations that are not
//! strings. Each document is read the way the loader reads it
//! ([`file_to_json`]) and checked by both.
use std::path::PathBuf;

use authpulse_proto::catalog::{file_to_json, json_schema, load_str};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("proto/ has a parent")
        .to_path_buf()
}

fn validator() -> jsonschema::Validator {
    jsonschema::validator_for(&json_schema()).expect("the schema compiles")
}

/// The schema's complaints about one catalog text, empty when it is valid.
fn schema_errors(v: &jsonschema::Validator, name: &str, text: &str) -> Vec<String> {
    let doc = file_to_json(name, text).unwrap_or_else(|e| panic!("{name}: not parseable: {e}"));
    v.iter_errors(&doc)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

/// Every catalog the repository ships, with a name for messages.
fn example_catalogs() -> Vec<(String, String)> {
    let root = repo_root();
    let mut out = Vec::new();
    let mut examples: Vec<PathBuf> = std::fs::read_dir(root.join("deploy/examples"))
        .expect("deploy/examples")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "toml"))
        .collect();
    examples.sort();
    for p in examples {
        let text = std::fs::read_to_string(&p).expect("read example");
        out.push((p.display().to_string(), text));
    }
    // The Kubernetes ConfigMap carries a catalog as a string.
    let k8s = std::fs::read_to_string(root.join("deploy/k8s/base/coordinator/catalog.yaml"))
        .expect("k8s");
    let docs = yaml_rust2::YamlLoader::load_from_str(&k8s).expect("k8s yaml");
    let embedded = docs[0]["data"]["catalog.yaml"]
        .as_str()
        .expect("ConfigMap data catalog.yaml");
    out.push((
        "deploy/k8s/base/coordinator/catalog.yaml#catalog.yaml".into(),
        embedded.into(),
    ));
    // The probe examples of the catalog README (as tests/tests/cli.rs reads them).
    let readme = std::fs::read_to_string(root.join("proto/README.md")).expect("README");
    for (i, block) in readme.split("```yaml\n").skip(1).enumerate() {
        let block = block.split("```").next().unwrap_or("");
        let first = block.lines().next().unwrap_or("");
        let text = if first.starts_with("probes:") || first.starts_with("slos:") {
            block.to_string()
        } else if first.starts_with("  - id: ") && block.contains("kind:") {
            format!("probes:\n{block}")
        } else if first.starts_with("- id: ") && block.contains("kind:") {
            format!("probes:\n{}", indent(block))
        } else {
            continue;
        };
        out.push((format!("proto/README.md yaml block {i}.yaml"), text));
    }
    out
}

fn indent(block: &str) -> String {
    block.lines().map(|l| format!("  {l}\n")).collect()
}

#[test]
fn every_example_catalog_is_valid_against_the_schema() {
    let v = validator();
    let examples = example_catalogs();
    assert!(
        examples.len() >= 10,
        "only {} examples found",
        examples.len()
    );
    let mut probe_kinds = std::collections::BTreeSet::new();
    for (name, text) in &examples {
        let file = if name.ends_with(".yaml") {
            name.clone()
        } else {
            format!("{name}.yaml")
        };
        let errors = schema_errors(&v, &file, text);
        assert!(
            errors.is_empty(),
            "{name} does not validate against the schema:\n{}\n\n{text}",
            errors.join("\n")
        );
        // The README's fragments may name probes defined elsewhere; only
        // whole files must load on their own.
        if !name.starts_with("proto/README.md") {
            let catalog = load_str(&file, text).unwrap_or_else(|e| panic!("{name}: {e}"));
            probe_kinds.extend(catalog.probes.iter().map(|p| p.kind()));
        }
    }
    assert!(probe_kinds.contains("journey"), "{probe_kinds:?}");
}

#[test]
fn example_files_point_editors_at_the_schema() {
    let root = repo_root();
    for entry in std::fs::read_dir(root.join("deploy/examples")).expect("examples") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("read");
        let first = text.lines().next().unwrap_or("");
        let target = first
            .strip_prefix("# yaml-language-server: $schema=")
            .unwrap_or_else(|| panic!("{}: first line is `{first}`", path.display()));
        let schema = path.parent().expect("dir").join(target);
        assert!(
            schema.canonicalize().ok()
                == root.join("proto/catalog.schema.json").canonicalize().ok(),
            "{}: $schema={target} is not proto/catalog.schema.json",
            path.display()
        );
    }
}

#[test]
fn toml_catalogs_are_described_too() {
    let text = r#"
[[probes]]
id = "idp-discovery"
kind = "oidc_discovery"
issuer = "https://idp.example.com"
interval = "30s"

[[slos]]
id = "idp"
probes = ["idp-discovery"]
objective = 99.9
window = "28d"
"#;
    let v = validator();
    assert_eq!(schema_errors(&v, "c.toml", text), Vec::<String>::new());
    load_str("c.toml", text).expect("the loader accepts it");
    let bad = text.replace("interval = \"30s\"", "interval = 30");
    assert!(!schema_errors(&v, "c.toml", &bad).is_empty());
    assert!(load_str("c.toml", &bad).is_err());
}

const BASE: &str = "probes:\n  - id: p\n    kind: http\n    url: https://idp.example.com/health\n";

/// Catalogs the loader rejects, with a fragment the schema's complaint
/// must contain.
const INVALID: &[(&str, &str, &str)] = &[
    (
        "unknown probe key",
        "probes:\n  - id: p\n    kind: http\n    url: https://h.example.com\n    intervl: 30s\n",
        "intervl",
    ),
    (
        "unknown key in a nested mapping",
        "probes:\n  - id: p\n    kind: http\n    url: https://h.example.com\n    expect: { stauts: [200] }\n",
        "stauts",
    ),
    (
        "a key of another kind",
        "probes:\n  - id: p\n    kind: http\n    url: https://h.example.com\n    issuer: https://h.example.com\n",
        "issuer",
    ),
    (
        "unknown kind",
        "probes:\n  - id: p\n    kind: htp\n    url: https://h.example.com\n",
        "htp",
    ),
    (
        "missing kind",
        "probes:\n  - id: p\n    url: https://h.example.com\n",
        "kind",
    ),
    (
        "missing required key",
        "probes:\n  - id: p\n    kind: oidc_discovery\n",
        "issuer",
    ),
    (
        "duration as a number",
        "probes:\n  - id: p\n    kind: http\n    url: https://h.example.com\n    interval: 30\n",
        "30",
    ),
    (
        "duration without a unit",
        "probes:\n  - id: p\n    kind: http\n    url: https://h.example.com\n    timeout: \"10 parsecs\"\n",
        "parsecs",
    ),
    (
        "invalid id",
        "probes:\n  - id: Not_An_Id\n    kind: http\n    url: https://h.example.com\n",
        "Not_An_Id",
    ),
    ("unknown top-level key", "probes: []\nslo: []\n", "slo"),
    (
        "unknown enum value",
        "probes:\n  - id: p\n    kind: dns\n    name: idp.example.com\n    record_type: AAAAA\n",
        "AAAAA",
    ),
    (
        "unknown key in a journey step",
        "probes:\n  - id: j\n    kind: journey\n    steps:\n      - name: a\n        kind: http\n        url: https://h.example.com\n        alwayz: true\n",
        "alwayz",
    ),
    (
        "a journey inside a journey",
        "probes:\n  - id: j\n    kind: journey\n    steps:\n      - name: a\n        kind: journey\n        steps: []\n",
        "journey",
    ),
    (
        "unknown failure class",
        "probes:\n  - id: j\n    kind: journey\n    steps:\n      - name: a\n        kind: tcp\n        address: h.example.com:443\n        expect: { failure: nope }\n",
        "nope",
    ),
    (
        "unknown SLO key",
        "slos:\n  - id: s\n    probes: [p]\n    objective: 99.9\n    window: 28d\n    budget: occurrences\n",
        "budget",
    ),
    (
        "a gate condition that does not exist",
        "gates:\n  - id: g\n    slos: [s]\n    block_when: [page_alarm]\n",
        "page_alarm",
    ),
];

#[test]
fn the_schema_rejects_what_the_loader_rejects() {
    let v = validator();
    assert_eq!(schema_errors(&v, "c.yaml", BASE), Vec::<String>::new());
    load_str("c.yaml", BASE).expect("the base is valid");
    for (what, text, fragment) in INVALID {
        let errors = schema_errors(&v, "c.yaml", text);
        assert!(!errors.is_empty(), "{what}: the schema accepts\n{text}");
        assert!(
            errors.iter().any(|e| e.contains(fragment)),
            "{what}: no complaint mentions `{fragment}`: {errors:?}"
        );
        assert!(
            load_str("c.yaml", text).is_err(),
            "{what}: the loader accepts\n{text}"
        );
    }
}

#[test]
fn journey_steps_take_expect_failure_beside_the_kinds_own_expect() {
    let v = validator();
    let text = "probes:\n  - id: j\n    kind: journey\n    steps:\n      - name: a\n        kind: http\n        url: https://h.example.com\n        expect: { status: [401], failure: auth_rejected }\n      - name: b\n        kind: tcp\n        address: h.example.com:443\n        expect: { failure: connect }\n      - name: c\n        kind: password\n        issuer: https://h.example.com\n        client_id: app\n        username: u\n        password: { secret: pw }\n        expect: { failure: auth_rejected }\n        always: true\n";
    assert_eq!(schema_errors(&v, "c.yaml", text), Vec::<String>::new());
    load_str("c.yaml", text).expect("the loader accepts it");
}

#[test]
fn serde_aliases_are_in_the_schema() {
    let v = validator();
    for scope in ["one_level", "subtree", "one", "sub", "base"] {
        let text = format!(
            "probes:\n  - id: l\n    kind: ldap\n    url: ldaps://dc.example.com\n    bind_dn: uid=p,dc=x\n    password: {{ secret: pw }}\n    search: {{ base: \"dc=x\", scope: {scope} }}\n"
        );
        assert_eq!(
            schema_errors(&v, "c.yaml", &text),
            Vec::<String>::new(),
            "{scope}"
        );
        load_str("c.yaml", &text).unwrap_or_else(|e| panic!("{scope}: {e}"));
    }
}
