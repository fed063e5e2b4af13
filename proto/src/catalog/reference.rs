//! The catalog reference (`authpulse docs --reference`, committed as
//! `proto/CATALOG.md`): Markdown rendered from [`super::json_schema`], so
//! every key, type, default and description comes from the spec types and
//! their doc comments. One section per probe kind, then journey steps,
//! SLOs, gates, components, and the value types they use.
use std::collections::BTreeSet;
use std::fmt::Write;

use serde_json::{Map, Value as Json};

use super::{COMMON_KEYS, KINDS, STEP_KEYS, STEP_RENAMED_KEYS};

/// Where the committed reference lives, relative to the repository root.
pub const REFERENCE_PATH: &str = "proto/CATALOG.md";

/// Definitions that get a section of their own (not listed under "Types").
const SECTION_DEFS: &[&str] = &[
    "Probe",
    "ProbeCommon",
    "Step",
    "SloDef",
    "GateDef",
    "ComponentDef",
];

struct Renderer<'a> {
    defs: &'a Map<String, Json>,
    out: String,
    /// Types linked from a table, in order of first use.
    queue: Vec<String>,
    rendered: BTreeSet<String>,
}

/// The catalog reference as Markdown.
pub fn reference_markdown() -> String {
    let schema = super::json_schema();
    let empty = Map::new();
    let defs = schema
        .get("definitions")
        .and_then(Json::as_object)
        .unwrap_or(&empty);
    let mut r = Renderer {
        defs,
        out: String::new(),
        queue: Vec::new(),
        rendered: BTreeSet::new(),
    };
    r.render(&schema);
    r.out
}

/// One line of prose: doc comments are wrapped at ~80 columns; a blank
/// line (a new paragraph) becomes a space too, for table cells.
fn prose(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn cell(text: &str) -> String {
    prose(text).replace('|', "\\|")
}

/// A heading's anchor as GitHub makes it for a heading that is one code
/// span: lower case, without the backticks.
fn anchor(name: &str) -> String {
    name.to_ascii_lowercase()
}

/// A value in YAML flow style, as a catalog would write it.
fn flow(v: &Json) -> String {
    match v {
        Json::Null => "null".into(),
        Json::Bool(b) => b.to_string(),
        Json::Number(n) => n.to_string(),
        Json::String(s) => {
            if s.is_empty() || s.contains([':', '{', '}', '[', ']', ',', '#']) {
                format!("{s:?}")
            } else {
                s.clone()
            }
        }
        Json::Array(items) => {
            let items: Vec<String> = items.iter().map(flow).collect();
            format!("[{}]", items.join(", "))
        }
        Json::Object(m) if m.is_empty() => "{}".into(),
        Json::Object(m) => {
            let items: Vec<String> = m.iter().map(|(k, v)| format!("{k}: {}", flow(v))).collect();
            format!("{{ {} }}", items.join(", "))
        }
    }
}

fn ref_name(schema: &Json) -> Option<&str> {
    schema
        .get("$ref")
        .and_then(Json::as_str)
        .and_then(|r| r.rsplit('/').next())
}

/// The schema itself, or the one an `allOf: [x]` wrapper (a `$ref` with
/// siblings, in draft-07) holds.
fn unwrap_all_of(schema: &Json) -> &Json {
    match schema.get("allOf").and_then(Json::as_array) {
        Some(list) if list.len() == 1 => &list[0],
        _ => schema,
    }
}

fn is_null(schema: &Json) -> bool {
    schema.get("type").and_then(Json::as_str) == Some("null")
}

/// The alternatives of a `oneOf`/`anyOf`, without `null`.
fn alternatives(schema: &Json) -> Option<Vec<&Json>> {
    let list = schema
        .get("oneOf")
        .or_else(|| schema.get("anyOf"))
        .and_then(Json::as_array)?;
    Some(list.iter().filter(|s| !is_null(s)).collect())
}

/// The values of a plain string enum (`enum`, or `oneOf` of constants).
fn enum_values(schema: &Json) -> Option<Vec<String>> {
    if let Some(values) = schema.get("enum").and_then(Json::as_array) {
        return Some(values.iter().map(flow).collect());
    }
    if let Some(c) = schema.get("const") {
        return Some(vec![flow(c)]);
    }
    let alts = alternatives(schema)?;
    let mut out = Vec::new();
    for a in alts {
        out.extend(enum_values(a)?);
    }
    Some(out)
}

fn code_list(values: &[String]) -> String {
    let quoted: Vec<String> = values.iter().map(|v| format!("`{v}`")).collect();
    match quoted.as_slice() {
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
        [] => String::new(),
    }
}

impl Renderer<'_> {
    fn def(&self, name: &str) -> Option<&Json> {
        self.defs.get(name)
    }

    fn link(&mut self, name: &str) -> String {
        if !SECTION_DEFS.contains(&name) && !self.queue.iter().any(|q| q == name) {
            self.queue.push(name.to_string());
        }
        format!("[`{name}`](#{})", anchor(name))
    }

    /// The type column: a primitive, a link to a type, a list or map of one.
    fn type_of(&mut self, schema: &Json) -> String {
        let schema = unwrap_all_of(schema);
        if let Some(name) = ref_name(schema) {
            let target = self.def(name).cloned().unwrap_or_default();
            // Plain string enums read best inline; their section (if the
            // values have descriptions) is linked too.
            if let Some(values) = enum_values(&target) {
                let described = alternatives(&target)
                    .is_some_and(|alts| alts.iter().any(|a| a.get("description").is_some()));
                let list = code_list(&values);
                return if described {
                    format!("{list} ({})", self.link(name))
                } else {
                    list
                };
            }
            return self.link(name);
        }
        if let Some(values) = enum_values(schema)
            && schema.get("type").and_then(Json::as_str) != Some("array")
        {
            return code_list(&values);
        }
        if let Some(alts) = alternatives(schema) {
            let parts: Vec<String> = alts.into_iter().map(|a| self.form(a)).collect();
            return parts.join(" or ");
        }
        let types: Vec<&str> = match schema.get("type") {
            Some(Json::String(t)) => vec![t.as_str()],
            Some(Json::Array(ts)) => ts
                .iter()
                .filter_map(Json::as_str)
                .filter(|t| *t != "null")
                .collect(),
            _ => Vec::new(),
        };
        let parts: Vec<String> = types
            .iter()
            .map(|t| match *t {
                "array" => match schema.get("items") {
                    Some(items) => format!("list of {}", self.type_of(items)),
                    None => "list".into(),
                },
                "object" => match schema.get("additionalProperties") {
                    Some(Json::Bool(false)) | None if schema.get("properties").is_some() => {
                        self.inline_object(schema)
                    }
                    Some(v @ Json::Object(_)) if !v.as_object().is_some_and(Map::is_empty) => {
                        format!("map of string → {}", self.type_of(v))
                    }
                    _ => "mapping".into(),
                },
                other => other.to_string(),
            })
            .collect();
        if parts.is_empty() {
            "any".into()
        } else {
            parts.join(" or ")
        }
    }

    /// One alternative of a union, as it is written: a constant, a one-key
    /// mapping, or a type.
    fn form(&mut self, schema: &Json) -> String {
        if let Some(c) = schema.get("const") {
            return format!("`{}`", flow(c));
        }
        if let Some(values) = schema.get("enum").and_then(Json::as_array) {
            let values: Vec<String> = values.iter().map(flow).collect();
            return code_list(&values);
        }
        self.type_of(schema)
    }

    /// `{ key: type, … }` for an object written inline in a union.
    fn inline_object(&mut self, schema: &Json) -> String {
        let props = schema
            .get("properties")
            .and_then(Json::as_object)
            .cloned()
            .unwrap_or_default();
        let parts: Vec<String> = props
            .iter()
            .map(|(k, v)| format!("`{k}`: {}", self.type_of(v)))
            .collect();
        format!("{{ {} }}", parts.join(", "))
    }

    fn description_of(&self, prop: &Json) -> String {
        if let Some(d) = prop.get("description").and_then(Json::as_str) {
            return prose(d);
        }
        let inner = unwrap_all_of(prop);
        ref_name(inner)
            .and_then(|n| self.def(n))
            .and_then(|d| d.get("description"))
            .and_then(Json::as_str)
            .map(prose)
            .unwrap_or_default()
    }

    /// A table of an object's keys: required ones first, then the rest, each
    /// alphabetically.
    fn key_table(&mut self, schema: &Json, skip: &[&str]) {
        let props = schema
            .get("properties")
            .and_then(Json::as_object)
            .cloned()
            .unwrap_or_default();
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Json::as_array)
            .map(|r| r.iter().filter_map(Json::as_str).collect())
            .unwrap_or_default();
        let mut keys: Vec<(&String, &Json)> = props
            .iter()
            .filter(|(k, _)| !skip.contains(&k.as_str()))
            .collect();
        keys.sort_by_key(|(k, _)| (!required.contains(&k.as_str()), k.as_str()));
        if keys.is_empty() {
            return;
        }
        self.out
            .push_str("| key | type | required | default | description |\n");
        self.out.push_str("|---|---|---|---|---|\n");
        for (key, prop) in keys {
            let ty = self.type_of(prop);
            let req = if required.contains(&key.as_str()) {
                "yes"
            } else {
                ""
            };
            let default = match prop.get("default") {
                None | Some(Json::Null) => "—".to_string(),
                Some(v) => format!("`{}`", flow(v)),
            };
            let default = if req == "yes" { String::new() } else { default };
            let _ = writeln!(
                self.out,
                "| `{key}` | {} | {req} | {} | {} |",
                cell(&ty),
                cell(&default),
                cell(&self.description_of(prop))
            );
        }
        self.out.push('\n');
    }

    fn paragraph(&mut self, schema: &Json) {
        if let Some(d) = schema.get("description").and_then(Json::as_str) {
            let _ = writeln!(self.out, "{}\n", prose(d));
        }
    }

    /// A kind's description without the `` `kind`: `` it starts with in
    /// the source (the section's heading says it).
    fn kind_paragraph(&mut self, kind: &str, schema: &Json) {
        if let Some(d) = schema.get("description").and_then(Json::as_str) {
            let d = prose(d);
            let d = d.strip_prefix(&format!("`{kind}`: ")).unwrap_or(&d);
            let mut chars = d.chars();
            let d: String = match chars.next() {
                Some(c) => c.to_uppercase().chain(chars).collect(),
                None => String::new(),
            };
            let _ = writeln!(self.out, "{d}\n");
        }
    }

    fn render(&mut self, root: &Json) {
        self.out.push_str(
            "# authpulse catalog reference\n\n\
             <!-- Generated from the spec types in proto/src/catalog/ and their doc comments by\n\
             `authpulse docs --reference`; do not edit. Regenerate with\n\
             `cargo run -p authpulse-cli -- docs --reference > proto/CATALOG.md`. -->\n\n\
             Every key of a catalog file: its type, whether it is required, its default and what it\n\
             means. Concepts, examples, outputs and failure classes of each kind are in\n\
             [README.md](README.md). The same content as a JSON Schema, for editors and CI:\n\
             [catalog.schema.json](catalog.schema.json) (`authpulse docs --schema`). Point an editor\n\
             at it with a first line such as\n\n\
             ```yaml\n\
             # yaml-language-server: $schema=../../proto/catalog.schema.json\n\
             ```\n\n\
             (a path relative to the catalog file). A key not listed is an error everywhere. Durations\n\
             are strings such as `30s` or `1h 30m` ([`Duration`](#duration)); credentials are written\n\
             `{ secret: NAME }` ([`StringOrSecret`](#stringorsecret)).\n\n",
        );
        self.contents();
        self.out.push_str("## Catalog file\n\n");
        self.paragraph(root);
        self.key_table(root, &[]);

        self.out.push_str("## Every probe\n\n");
        let common = self.def("ProbeCommon").cloned().unwrap_or_default();
        self.paragraph(&common);
        let _ = writeln!(
            self.out,
            "Plus `kind`, one of {}, which selects the other keys (each in its own section \
             below).\n",
            code_list(&KINDS.iter().map(|k| k.to_string()).collect::<Vec<_>>())
        );
        self.key_table(&common, &[]);

        for kind in KINDS {
            let Some(def) = self.probe_def(kind) else {
                continue;
            };
            let _ = writeln!(self.out, "## `{kind}`\n");
            self.kind_paragraph(kind, &def);
            let is_step = self.def("Step").is_some_and(|s| {
                s.pointer("/properties/kind/enum")
                    .and_then(Json::as_array)
                    .is_some_and(|kinds| kinds.iter().any(|k| k == *kind))
            });
            let steps = if !is_step {
                ""
            } else {
                " In a [journey step](#journey-steps), the same keys follow `name` and `always`."
            };
            let _ = writeln!(
                self.out,
                "Plus the [keys every probe has](#every-probe).{steps}\n"
            );
            let mut skip: Vec<&str> = COMMON_KEYS.to_vec();
            skip.push("kind");
            self.key_table(&def, &skip);
        }

        self.out.push_str("## Journey steps\n\n");
        let step = self.def("Step").cloned().unwrap_or_default();
        self.paragraph(&step);
        if let Some(def) = self.def("HttpStep").cloned() {
            let only: Vec<&str> = STEP_KEYS.to_vec();
            let mut envelope = def.clone();
            if let Some(props) = envelope.get_mut("properties").and_then(Json::as_object_mut) {
                props.retain(|k, _| only.contains(&k.as_str()));
            }
            self.key_table(&envelope, &[]);
        }
        self.out.push_str(
            "Then `kind` and that kind's keys. `expect: { failure: CLASS }` asserts that the step \
             fails with that class (for `http` it may sit beside the kind's own `expect` keys):\n\n",
        );
        // Keys a step spells differently, because the step takes the name.
        let mut renamed = String::new();
        for (kind, key, step_key) in STEP_RENAMED_KEYS {
            let _ = writeln!(
                renamed,
                "| `{step_key}` | `{kind}` steps | the `{kind}` kind's `{key}` (a step's `{key}` is its own) |"
            );
        }
        if !renamed.is_empty() {
            let _ = writeln!(
                self.out,
                "A key a step takes for itself has another name in a step of that kind:\n\n\
                 | key | where | stands for |\n|---|---|---|\n{renamed}"
            );
        }
        let failure = self
            .def("TcpStep")
            .and_then(|d| d.pointer("/properties/expect/anyOf/1/properties/failure"))
            .cloned()
            .unwrap_or_default();
        let ty = cell(&self.type_of(&failure));
        let description = cell(&self.description_of(&failure));
        let _ = writeln!(
            self.out,
            "| key | type | description |\n|---|---|---|\n| `expect.failure` | {ty} | {description} |\n"
        );

        for (title, name) in [
            ("SLOs (`slos`)", "SloDef"),
            ("Gates (`gates`)", "GateDef"),
            ("Components (`components`)", "ComponentDef"),
            ("Scheduled maintenances (`maintenances`)", "MaintenanceDef"),
            ("Modules (`modules`)", "ModuleDef"),
            ("Module parameters (`modules[].params.NAME`)", "ParamDef"),
            ("Uses of modules (`uses`)", "UseDef"),
        ] {
            let _ = writeln!(self.out, "## {title}\n");
            let def = self.def(name).cloned().unwrap_or_default();
            self.paragraph(&def);
            self.key_table(&def, &[]);
        }

        self.out.push_str("## Types\n\n");
        self.out
            .push_str("The value types the tables above link to.\n\n");
        let mut i = 0;
        // Rendering a type may link further types: they join the queue.
        while i < self.queue.len() {
            let name = self.queue[i].clone();
            i += 1;
            if self.rendered.insert(name.clone()) {
                self.type_section(&name);
            }
        }
        while self.out.ends_with("\n\n") {
            self.out.pop();
        }
    }

    fn contents(&mut self) {
        let kinds: Vec<String> = KINDS.iter().map(|k| format!("[`{k}`](#{k})")).collect();
        let _ = writeln!(
            self.out,
            "- [Catalog file](#catalog-file)\n\
             - [Every probe](#every-probe)\n\
             - Probe kinds: {}\n\
             - [Journey steps](#journey-steps)\n\
             - [SLOs](#slos-slos), [gates](#gates-gates), [components](#components-components)\n\
             - [Types](#types)\n",
            kinds.join(" · ")
        );
    }

    fn probe_def(&self, kind: &str) -> Option<Json> {
        let probe = self.def("Probe")?;
        let branches = probe.get("allOf")?.as_array()?;
        let branch = branches.iter().find(|b| {
            b.pointer("/if/properties/kind/const")
                .and_then(Json::as_str)
                == Some(kind)
        })?;
        let name = ref_name(branch.get("then")?)?;
        self.def(name).cloned()
    }

    fn type_section(&mut self, name: &str) {
        let Some(def) = self.def(name).cloned() else {
            return;
        };
        let _ = writeln!(self.out, "### `{name}`\n");
        self.paragraph(&def);
        if def.get("properties").is_some() {
            self.key_table(&def, &[]);
        } else if let Some(alts) = alternatives(&def) {
            for alt in alts {
                let form = self.form(alt);
                let d = self.description_of(alt);
                if d.is_empty() {
                    let _ = writeln!(self.out, "- {form}");
                } else {
                    let _ = writeln!(self.out, "- {form}: {d}");
                }
            }
            self.out.push('\n');
        } else if let Some(values) = enum_values(&def) {
            let _ = writeln!(self.out, "One of {}.\n", code_list(&values));
        } else {
            let ty = self.type_of(&def);
            let _ = writeln!(self.out, "Type: {ty}.\n");
        }
        if let Some(examples) = def.get("examples").and_then(Json::as_array) {
            let ex: Vec<String> = examples.iter().map(|e| format!("`{}`", flow(e))).collect();
            let _ = writeln!(self.out, "Examples: {}.\n", ex.join(", "));
        }
    }
}
