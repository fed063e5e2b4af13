//! The catalog as one YAML document, after every file is merged and every
//! module use expanded: what `authpulse validate --print` shows, and itself
//! a valid catalog file (loading it gives the same catalog).
use serde_json::{Map, Value as Json};
use yaml_rust2::{Yaml, YamlEmitter};

use super::Catalog;

/// The expanded catalog as JSON, sections in file order, empty ones left out.
pub fn to_json(catalog: &Catalog) -> Json {
    let mut root = Map::new();
    let mut section = |name: &str, items: Vec<Json>| {
        if !items.is_empty() {
            root.insert(name.to_string(), Json::Array(items));
        }
    };
    section(
        "probes",
        catalog
            .probes
            .iter()
            .map(|p| Json::Object(p.to_map()))
            .collect(),
    );
    let values = |v: Result<Json, serde_json::Error>| v.unwrap_or(Json::Null);
    section(
        "slos",
        catalog
            .slos
            .iter()
            .map(|s| values(serde_json::to_value(s)))
            .collect(),
    );
    section(
        "gates",
        catalog
            .gates
            .iter()
            .map(|g| values(serde_json::to_value(g)))
            .collect(),
    );
    section(
        "components",
        catalog
            .components
            .iter()
            .map(|c| values(serde_json::to_value(c)))
            .collect(),
    );
    section(
        "maintenances",
        catalog
            .maintenances
            .iter()
            .map(|m| values(serde_json::to_value(m)))
            .collect(),
    );
    Json::Object(root)
}

/// The expanded catalog as a YAML document.
pub fn to_yaml(catalog: &Catalog) -> String {
    let mut out = String::new();
    let mut emitter = YamlEmitter::new(&mut out);
    // Writing to a String cannot fail.
    let _ = emitter.dump(&yaml(to_json(catalog)));
    out.push('\n');
    out
}

fn yaml(v: Json) -> Yaml {
    match v {
        Json::Null => Yaml::Null,
        Json::Bool(b) => Yaml::Boolean(b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Yaml::Integer(i),
            None => Yaml::Real(n.to_string()),
        },
        Json::String(s) => Yaml::String(s),
        Json::Array(a) => Yaml::Array(a.into_iter().map(yaml).collect()),
        Json::Object(o) => Yaml::Hash(
            o.into_iter()
                .map(|(k, v)| (Yaml::String(k), yaml(v)))
                .collect(),
        ),
    }
}
