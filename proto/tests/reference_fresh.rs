//! The committed catalog schema and reference are what the spec types
//! generate today. `UPDATE_REFERENCE=1 cargo test -p authpulse-proto --test
//! reference_fresh` rewrites them.
use std::path::PathBuf;

use authpulse_proto::catalog::{REFERENCE_PATH, SCHEMA_PATH, json_schema_text, reference_markdown};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("proto/ has a parent")
        .to_path_buf()
}

fn check(path: &str, generated: &str, command: &str) {
    let file = repo_root().join(path);
    if std::env::var_os("UPDATE_REFERENCE").is_some_and(|v| v == "1") {
        std::fs::write(&file, generated).expect("write the generated file");
        return;
    }
    let committed = std::fs::read_to_string(&file).unwrap_or_default();
    if committed != generated {
        let line = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .map_or_else(
                || committed.lines().count().min(generated.lines().count()) + 1,
                |i| i + 1,
            );
        panic!(
            "{path} is stale (it differs from what the spec types generate, first at line \
             {line}). Regenerate it with\n\n    {command}\n\nor \
             `UPDATE_REFERENCE=1 cargo test -p authpulse-proto --test reference_fresh`, \
             and commit the result."
        );
    }
}

#[test]
fn the_committed_schema_is_fresh() {
    check(
        SCHEMA_PATH,
        &json_schema_text(),
        "cargo run -p authpulse-cli -- docs --schema > proto/catalog.schema.json",
    );
}

#[test]
fn the_committed_reference_is_fresh() {
    check(
        REFERENCE_PATH,
        &reference_markdown(),
        "cargo run -p authpulse-cli -- docs --reference > proto/CATALOG.md",
    );
}

#[test]
fn the_reference_covers_every_kind_and_key() {
    let md = reference_markdown();
    for kind in authpulse_proto::catalog::KINDS {
        assert!(
            md.contains(&format!("\n## `{kind}`\n")),
            "no section for {kind}"
        );
    }
    // Every key of every kind's entry in the schema has a row (common keys
    // once, in "Every probe").
    let schema = authpulse_proto::catalog::json_schema();
    let defs = schema["definitions"].as_object().expect("definitions");
    for (name, def) in defs {
        let Some(props) = def.get("properties").and_then(|p| p.as_object()) else {
            continue;
        };
        for key in props.keys() {
            assert!(
                md.contains(&format!("| `{key}` |")) || key == "kind" || key == "failure",
                "{name}.{key} has no row in the reference"
            );
        }
        // Every key is documented.
        if name.ends_with("Probe") || name.ends_with("Step") || name == "ProbeCommon" {
            for (key, prop) in props {
                let described = prop.get("description").is_some()
                    || prop
                        .pointer("/allOf/0/$ref")
                        .or_else(|| prop.get("$ref"))
                        .and_then(|r| r.as_str())
                        .and_then(|r| r.rsplit('/').next())
                        .and_then(|d| defs.get(d))
                        .is_some_and(|d| d.get("description").is_some());
                assert!(described, "{name}.{key} has no doc comment");
            }
        }
    }
}
