//! `journey`: ordered steps of any other kind, sharing one HTTP session
//! (connections and cookies) and passing values forward through templates.
//! A step is the kind's own body plus `name`, `always` (run even after an
//! earlier step failed: cleanup, revoke) and `expect: { failure: CLASS }`
//! (the step must fail with that class, e.g. a login after offboarding).
use serde::Serialize;
use serde::ser::SerializeMap;

use super::super::KindSpec;

#[derive(Clone, Debug, PartialEq)]
pub struct JourneySpec {
    pub steps: Vec<StepDef>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct StepDef {
    pub name: String,
    pub always: bool,
    /// Failure class name the step must fail with.
    pub expect_failure: Option<String>,
    pub spec: KindSpec,
}

/// Keys a step has besides its kind's body.
pub(crate) const STEP_KEYS: &[&str] = &["name", "always"];

/// Kind keys that a step spells differently because the step itself takes
/// the name: (kind, the kind's key, the key in a step). A `dns` step names
/// the record to look up with `query`, since `name` is the step's.
pub(crate) const STEP_RENAMED_KEYS: &[(&str, &str, &str)] = &[("dns", "name", "query")];

impl Serialize for StepDef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut body = match serde_json::to_value(&self.spec) {
            Ok(serde_json::Value::Object(m)) => m,
            _ => serde_json::Map::new(),
        };
        if let Some(class) = &self.expect_failure {
            let failure = serde_json::Value::String(class.clone());
            match body.get_mut("expect") {
                Some(serde_json::Value::Object(e)) => {
                    e.insert("failure".into(), failure);
                }
                _ => {
                    body.insert("expect".into(), serde_json::json!({ "failure": failure }));
                }
            }
        }
        // The kind's keys the step takes for itself, as a step spells them.
        let kind = body
            .get("kind")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_string();
        for (k, key, step_key) in STEP_RENAMED_KEYS {
            if *k == kind
                && let Some(v) = body.remove(*key)
            {
                body.insert((*step_key).to_string(), v);
            }
        }
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("name", &self.name)?;
        if self.always {
            map.serialize_entry("always", &true)?;
        }
        for (k, v) in &body {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl Serialize for JourneySpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(1))?;
        map.serialize_entry("steps", &self.steps)?;
        map.end()
    }
}
