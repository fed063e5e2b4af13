//! The JSON Schema of a catalog file, built from the spec types' doc
//! comments and serde attributes (`#[derive(JsonSchema)]`), for editors
//! (`# yaml-language-server: $schema=…`) and for the generated reference.
//!
//! The loader reads a probe entry in two parts (the common keys, then the
//! body its `kind` selects, both rejecting unknown keys), which serde alone
//! can't describe. The schema says the same thing the editor-friendly way:
//! one flat object per kind (common keys, `kind` as a constant, the body's
//! keys, `additionalProperties: false`), chosen by `kind` with `if`/`then`.
//! Journey steps get the same treatment with the step keys instead of the
//! common ones. Draft-07, the draft editors support best.
use std::borrow::Cow;

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde_json::{Map, Value as Json, json};

use super::{
    ComponentDef, GateDef, JourneySpec, KINDS, KindSpec, ProbeCommon, ProbeDef, STEP_KEYS,
    STEP_RENAMED_KEYS, SloDef, StepDef,
};

/// Where the committed schema lives, relative to the repository root.
pub const SCHEMA_PATH: &str = "proto/catalog.schema.json";

/// Probe, SLO, gate, component and region ids (see `validate::valid_id`).
pub const ID_PATTERN: &str = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$";

/// Units humantime accepts, longest spelling first.
const DURATION_UNITS: &str = "nanos|nsec|ns|usec|us|µs|millis|msec|ms|seconds|second|secs|sec|s|\
minutes|minute|mins|min|m|hours|hour|hrs|hr|h|days|day|d|weeks|week|wks|wk|w|months|month|M|\
years|year|yrs|yr|y";

/// A duration as catalog files write it: stands in for `Duration` fields
/// read with `humantime_serde`.
pub struct HumanDuration;

impl JsonSchema for HumanDuration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let pattern = format!(r"^\s*([0-9]+(\.[0-9]+)?\s*({DURATION_UNITS})\s*)+$");
        json_schema!({
            "type": "string",
            "description": "A duration: numbers with units, e.g. `500ms`, `30s`, `1m`, `1h 30m`, \
                `28d`. Units: `ms`, `s`, `m` (minutes), `h`, `d`, `w`, `M` (months of 30.44 days), \
                `y`, and their long forms (`sec`, `min`, `hours`, …). Written as a string: a bare \
                number is an error.",
            "pattern": pattern,
            "examples": ["30s", "1m", "1h 30m"],
        })
    }
}

/// The shape of one catalog file (YAML or TOML). Every section is optional;
/// several files are merged and ids must be unique across them.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields, title = "authpulse catalog")]
#[allow(dead_code)] // Only its schema is used: the loader reads files section by section.
pub struct CatalogFile {
    /// Synthetic probes: what agents run, and how often.
    probes: Option<Vec<ProbeDef>>,
    /// Service level objectives computed from the probes' results.
    slos: Option<Vec<SloDef>>,
    /// Deploy gates that pipelines ask before they proceed.
    gates: Option<Vec<GateDef>>,
    /// Status-page components; none = one component per SLO.
    components: Option<Vec<ComponentDef>>,
    /// Scheduled maintenances of status-page components.
    maintenances: Option<Vec<super::MaintenanceDef>>,
    /// Reusable, parameterised sets of probes, SLOs, gates and components.
    modules: Option<Vec<ModuleDef>>,
    /// Instances of modules, each with its parameter values.
    uses: Option<Vec<UseDef>>,
}

/// A module: probes, SLOs, gates and components written once with
/// `{{ params.NAME }}` references, instantiated by `uses` entries (from any
/// file of the catalog). Its items are checked after expansion, exactly like
/// written ones; their ids must come out unique, so put a parameter in them
/// (`id: "{{ params.env }}-login"`). A value that is only a reference takes
/// the parameter's value as is (a list of regions, a number); inside longer
/// text it takes its text. Other templates (`{{ steps.x.y }}`) stay as they
/// are. `authpulse validate --print` shows the expansion.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
#[allow(dead_code)]
pub struct ModuleDef {
    /// The module's id (`[a-z0-9-]`): what `uses[].module` names.
    #[schemars(regex(pattern = ID_PATTERN))]
    id: String,
    /// Free text.
    description: Option<String>,
    /// Parameter names (`[a-z_][a-z0-9_]*`), each `{}` (required) or
    /// `{ default: VALUE, description: TEXT }`.
    params: Option<std::collections::BTreeMap<String, ParamDef>>,
    /// Probes, as in `probes`, with parameter references.
    probes: Option<Vec<Map<String, Json>>>,
    /// SLOs, as in `slos`, with parameter references.
    slos: Option<Vec<Map<String, Json>>>,
    /// Gates, as in `gates`, with parameter references.
    gates: Option<Vec<Map<String, Json>>>,
    /// Components, as in `components`, with parameter references.
    components: Option<Vec<Map<String, Json>>>,
    /// Maintenances, as in `maintenances`, with parameter references.
    maintenances: Option<Vec<Map<String, Json>>>,
}

/// One module parameter.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
#[allow(dead_code)]
pub struct ParamDef {
    /// The value when a use gives none; absent: every use must give one.
    default: Option<Json>,
    /// Free text.
    description: Option<String>,
}

/// One instance of a module.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
#[allow(dead_code)]
pub struct UseDef {
    /// The id of the module to instantiate.
    module: String,
    /// Parameter values; every parameter without a default needs one.
    with: Option<Map<String, Json>>,
    /// Free text.
    description: Option<String>,
}

fn schema(value: Json) -> Schema {
    match value {
        Json::Object(m) => m.into(),
        _ => Schema::default(),
    }
}

fn def_ref(g: &SchemaGenerator, name: &str) -> Json {
    let path = g.settings().definitions_path.trim_start_matches('#');
    let path = path.trim_end_matches('/');
    json!({ "$ref": format!("#{path}/{name}") })
}

fn object_parts(schema: &Schema) -> (Map<String, Json>, Vec<Json>, Option<Json>) {
    let props = schema
        .get("properties")
        .and_then(Json::as_object)
        .cloned()
        .unwrap_or_default();
    let required = schema
        .get("required")
        .and_then(Json::as_array)
        .cloned()
        .unwrap_or_default();
    let description = schema.get("description").cloned();
    (props, required, description)
}

/// `{ kind: <name> }` plus the envelope's and the body's keys as one closed object.
fn flat_entry(
    kind: &str,
    envelope: &Schema,
    body: &Schema,
    adjust: impl FnOnce(&mut Map<String, Json>, &mut Vec<Json>),
) -> Json {
    let (env_props, env_required, _) = object_parts(envelope);
    let (body_props, body_required, description) = object_parts(body);
    let mut props = Map::new();
    let mut required = Vec::new();
    for (k, v) in env_props {
        props.insert(k.clone(), v);
        if env_required.contains(&Json::String(k.clone())) {
            required.push(Json::String(k));
        }
        if props.len() == 1 {
            props.insert(
                "kind".into(),
                json!({ "description": "The probe kind.", "type": "string", "const": kind }),
            );
            required.push(Json::String("kind".into()));
        }
    }
    for (k, v) in body_props {
        props.insert(k, v);
    }
    required.extend(body_required);
    adjust(&mut props, &mut required);
    let mut out = json!({
        "type": "object",
        "title": kind,
        "properties": props,
        "required": required,
        "additionalProperties": false,
    });
    if let Some(d) = description {
        out["description"] = d;
    }
    out
}

/// Picks the object schema for an entry by its `kind`: an unknown kind is
/// reported by the `enum`, the keys of a known one by its definition.
fn by_kind(g: &mut SchemaGenerator, entries: Vec<(&str, String, Json)>, kinds: &[&str]) -> Json {
    let mut branches = Vec::new();
    for (kind, def_name, schema) in entries {
        g.definitions_mut().insert(def_name.clone(), schema);
        branches.push(json!({
            "if": { "properties": { "kind": { "const": kind } }, "required": ["kind"] },
            "then": def_ref(g, &def_name),
        }));
    }
    json!({
        "type": "object",
        "properties": {
            "kind": { "description": "The probe kind: selects the other keys.", "enum": kinds }
        },
        "required": ["kind"],
        "allOf": branches,
    })
}

impl JsonSchema for ProbeDef {
    fn schema_name() -> Cow<'static, str> {
        "Probe".into()
    }

    fn json_schema(g: &mut SchemaGenerator) -> Schema {
        // Registered as a definition of its own for the reference's
        // "every probe" table; each kind's entry inlines its keys.
        g.subschema_for::<ProbeCommon>();
        let common = ProbeCommon::json_schema(g);
        let mut bodies = KindSpec::leaf_schemas(g);
        bodies.push(("journey", "Journey", JourneySpec::json_schema(g)));
        let entries = bodies
            .into_iter()
            .map(|(kind, variant, body)| {
                let schema = flat_entry(kind, &common, &body, |_, _| {});
                (kind, format!("{variant}Probe"), schema)
            })
            .collect();
        let mut out = by_kind(g, entries, KINDS);
        out["required"] = json!(["id", "kind"]);
        out["description"] = json!(
            "One probe: the keys every probe has (`id`, `interval`, …), `kind`, and that kind's keys."
        );
        schema(out)
    }
}

/// `expect: { failure: CLASS }` of a journey step.
fn step_expect() -> Json {
    let classes: Vec<&str> = crate::failure_class_names()
        .filter(|c| *c != "unspecified")
        .collect();
    json!({
        "type": "object",
        "properties": {
            "failure": {
                "description": "The step must fail with this failure class (e.g. `auth_rejected` \
                    for a login after offboarding). Failing with another class keeps that class; \
                    succeeding is `escalation` when `auth_rejected` was expected, else `assertion`.",
                "enum": classes,
            }
        },
        "required": ["failure"],
        "additionalProperties": false,
    })
}

/// A step's `expect` joins `failure` with the kind's own `expect`: added as
/// a key when that is a mapping, an alternative when it is optional, and
/// not at all when the kind requires its own `expect` (the loader would
/// then miss it).
fn step_expect_property(
    props: &mut Map<String, Json>,
    required: &[Json],
    defs: &Map<String, Json>,
) {
    let failure = step_expect();
    let own = props.get("expect").cloned();
    let joined = match own {
        None => {
            let mut failure = failure;
            failure["description"] =
                json!("`{ failure: CLASS }`: the step must fail with that class.");
            failure
        }
        Some(_) if required.contains(&json!("expect")) => return,
        Some(own) => {
            let target = own
                .get("$ref")
                .and_then(Json::as_str)
                .and_then(|r| r.rsplit('/').next())
                .and_then(|name| defs.get(name));
            match target {
                Some(def) if def.get("properties").is_some() => {
                    let mut def = def.clone();
                    def["properties"]["failure"] = failure["properties"]["failure"].clone();
                    if let Some(d) = own.get("description") {
                        def["description"] = d.clone();
                    }
                    def
                }
                _ => {
                    let description = own.get("description").cloned();
                    let mut own = own;
                    if let Some(o) = own.as_object_mut() {
                        o.remove("description");
                    }
                    let mut any = json!({ "anyOf": [own, failure] });
                    if let Some(d) = description {
                        any["description"] = d;
                    }
                    any
                }
            }
        }
    };
    props.insert("expect".into(), joined);
}

impl JsonSchema for JourneySpec {
    fn schema_name() -> Cow<'static, str> {
        "JourneySpec".into()
    }

    fn json_schema(g: &mut SchemaGenerator) -> Schema {
        let step = g.subschema_for::<StepDef>();
        json_schema!({
            "type": "object",
            "description": "`journey`: ordered steps of any other kind in one run, sharing one HTTP \
                session (connections and cookies) and the run's timeout; later steps read earlier \
                steps' outputs through templates (`{{ steps.<step>.<output> }}`).",
            "properties": {
                "steps": {
                    "description": "The steps, run in order. After a failed step the rest are \
                        skipped, except those with `always: true`.",
                    "type": "array",
                    "items": step,
                    "minItems": 1,
                }
            },
            "required": ["steps"],
        })
    }
}

/// The keys a step has besides its kind's (`name`, `always`), as an
/// envelope for [`flat_entry`].
fn step_envelope() -> Schema {
    json_schema!({
        "type": "object",
        "properties": {
            "name": {
                "description": "The step's name in results, templates \
                    (`{{ steps.<name>.<output> }}`) and SLOs (`<journey>/<name>`): `[a-z0-9_-]`, \
                    at most 63 characters, unique in the journey.",
                "type": "string",
                "pattern": "^[a-z0-9_-]{1,63}$",
            },
            "always": {
                "description": "Run even when an earlier step failed (cleanup, revoke); other \
                    steps are skipped after a failure.",
                "type": "boolean",
                "default": false,
            },
        },
        "required": ["name"],
    })
}

impl JsonSchema for StepDef {
    fn schema_name() -> Cow<'static, str> {
        "Step".into()
    }

    fn json_schema(g: &mut SchemaGenerator) -> Schema {
        let envelope = step_envelope();
        let mut bodies = KindSpec::leaf_schemas(g);
        // A key the step takes for itself is spelled another way in a step
        // (`dns`: `query` for the record's `name`).
        for (kind, _, body) in &mut bodies {
            for (k, key, step_key) in STEP_RENAMED_KEYS {
                if k != kind {
                    continue;
                }
                if let Some(Json::Object(props)) = body.get_mut("properties")
                    && let Some(v) = props.remove(*key)
                {
                    props.insert((*step_key).to_string(), v);
                }
                if let Some(Json::Array(required)) = body.get_mut("required") {
                    for r in required.iter_mut() {
                        if r.as_str() == Some(*key) {
                            *r = json!(step_key);
                        }
                    }
                }
            }
        }
        let defs = g.definitions().clone();
        // A kind whose body still needs a key the step itself takes can't
        // be a step: the loader gives the key to the step.
        let (bodies, shadowed): (Vec<_>, Vec<_>) = bodies.into_iter().partition(|(_, _, body)| {
            let (_, required, _) = object_parts(body);
            !required
                .iter()
                .any(|k| k.as_str().is_some_and(|k| STEP_KEYS.contains(&k)))
        });
        let shadowed: Vec<&str> = shadowed.iter().map(|(kind, _, _)| *kind).collect();
        let entries: Vec<(&str, String, Json)> = bodies
            .into_iter()
            .map(|(kind, variant, body)| {
                let schema = flat_entry(kind, &envelope, &body, |props, required| {
                    step_expect_property(props, required, &defs);
                });
                (kind, format!("{variant}Step"), schema)
            })
            .collect();
        let leaf_kinds: Vec<&str> = KINDS
            .iter()
            .copied()
            .filter(|k| *k != "journey" && !shadowed.contains(k))
            .collect();
        let mut out = by_kind(g, entries, &leaf_kinds);
        out["required"] = json!(["name", "kind"]);
        let not: Vec<String> = std::iter::once("journey")
            .chain(shadowed.iter().copied())
            .map(|k| format!("`{k}`"))
            .collect();
        out["description"] = json!(format!(
            "One journey step: `name`, `always`, `kind` (any but {}) and that kind's keys; \
             `expect: {{ failure: CLASS }}` asserts the step fails.",
            not.join(" or ")
        ));
        schema(out)
    }
}

/// The generator settings the committed schema is made with.
fn generator() -> SchemaGenerator {
    SchemaSettings::draft07().into_generator()
}

/// Doc comments are wrapped in the source; descriptions read better in an
/// editor's hover as paragraphs.
fn unwrap_descriptions(v: &mut Json) {
    match v {
        Json::Object(m) => {
            for (k, item) in m.iter_mut() {
                match item {
                    Json::String(s) if k == "description" => {
                        let paragraphs: Vec<String> = s
                            .split("\n\n")
                            .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
                            .collect();
                        *s = paragraphs.join("\n\n");
                    }
                    other => unwrap_descriptions(other),
                }
            }
        }
        Json::Array(items) => items.iter_mut().for_each(unwrap_descriptions),
        _ => {}
    }
}

/// [`json_schema`] as the committed file holds it: pretty-printed, with a
/// final newline.
pub fn json_schema_text() -> String {
    let text = serde_json::to_string_pretty(&json_schema()).unwrap_or_default();
    format!("{text}\n")
}

/// The catalog file's JSON Schema (draft-07).
pub fn json_schema() -> Json {
    let mut schema = generator().into_root_schema_for::<CatalogFile>().to_value();
    unwrap_descriptions(&mut schema);
    schema
}
