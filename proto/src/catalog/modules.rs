//! Catalog modules: a parameterised set of probes, SLOs, gates and
//! components defined once (`modules:`) and instantiated with values
//! (`uses:`), per environment, region set, tenant or IdP. Expansion is
//! textual and happens before typing, so an instantiated item is parsed and
//! validated exactly like a written one; its errors point at the module line
//! and name the use. `{{ params.NAME }}` is replaced in string values: a
//! string that is only the reference takes the value as it is (a list of
//! regions, a number), a longer string takes its text. Other `{{ … }}`
//! templates (journey steps' `{{ steps.x.y }}`) are left for run time.
use std::collections::BTreeMap;
use std::sync::OnceLock;

use regex::Regex;
use serde_json::{Map, Value as Json};

use super::source_map::Seg;
use super::suggest::did_you_mean;
use super::validate::valid_id;

/// At most this many items from all uses of all modules together.
pub const MAX_EXPANDED: usize = 20_000;

/// The sections a module may hold (the catalog's, without nesting).
pub const SECTIONS: &[&str] = &["probes", "slos", "gates", "components", "maintenances"];

const MODULE_KEYS: &[&str] = &[
    "id",
    "description",
    "params",
    "probes",
    "slos",
    "gates",
    "components",
    "maintenances",
];
const USE_KEYS: &[&str] = &["module", "with", "description"];
const PARAM_KEYS: &[&str] = &["default", "description"];

/// A problem at a path relative to the module or use entry.
pub type Problem = (Vec<Seg>, String);

fn key(k: &str) -> Seg {
    Seg::Key(k.to_string())
}

/// One declared parameter.
#[derive(Clone, Debug)]
pub struct Param {
    pub default: Option<Json>,
}

/// A module as written, its items still JSON.
#[derive(Clone, Debug)]
pub struct Module {
    pub id: String,
    pub params: BTreeMap<String, Param>,
    /// (section, its entries), in [`SECTIONS`] order.
    pub sections: Vec<(&'static str, Vec<Json>)>,
}

/// A parameter name: `[a-z_][a-z0-9_]*`.
fn valid_param(name: &str) -> bool {
    let mut b = name.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_lowercase() || c == b'_')
        && b.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
}

fn unknown_keys(obj: &Map<String, Json>, allowed: &[&str], what: &str) -> Vec<Problem> {
    obj.keys()
        .filter(|k| !allowed.contains(&k.as_str()))
        .map(|k| {
            let hint = did_you_mean(k, allowed.iter().copied()).unwrap_or_default();
            (
                vec![key(k)],
                format!(
                    "unknown key `{k}` in a {what}{hint}; expected one of {}",
                    allowed
                        .iter()
                        .map(|a| format!("`{a}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })
        .collect()
}

/// Reads a `modules:` entry.
pub fn parse_module(entry: Json) -> Result<Module, Vec<Problem>> {
    let Json::Object(mut obj) = entry else {
        return Err(vec![(vec![], "a module must be a mapping".into())]);
    };
    let mut problems = unknown_keys(&obj, MODULE_KEYS, "module");
    let id = match obj.remove("id") {
        Some(Json::String(id)) if valid_id(&id) => id,
        Some(Json::String(id)) => {
            problems.push((
                vec![key("id")],
                format!("invalid module id `{id}`: use [a-z0-9-], at most 63 characters"),
            ));
            id
        }
        _ => {
            problems.push((vec![], "missing `id` (the name uses refer to)".into()));
            String::new()
        }
    };
    let mut params = BTreeMap::new();
    match obj.remove("params") {
        None | Some(Json::Null) => {}
        Some(Json::Object(ps)) => {
            for (name, decl) in ps {
                let at = vec![key("params"), key(&name)];
                if !valid_param(&name) {
                    problems.push((
                        at.clone(),
                        format!("invalid parameter name `{name}`: use [a-z_][a-z0-9_]*"),
                    ));
                }
                let default = match decl {
                    Json::Null => None,
                    Json::Object(mut d) => {
                        for (rel, m) in unknown_keys(&d, PARAM_KEYS, "parameter") {
                            problems.push((at.iter().cloned().chain(rel).collect(), m));
                        }
                        d.remove("default")
                    }
                    _ => {
                        problems.push((
                            at,
                            "a parameter is a mapping: `{}` (required) or `{ default: VALUE, description: TEXT }`".into(),
                        ));
                        None
                    }
                };
                params.insert(name, Param { default });
            }
        }
        Some(_) => problems.push((
            vec![key("params")],
            "must be a mapping of parameter names".into(),
        )),
    }
    let mut sections = Vec::new();
    for s in SECTIONS {
        match obj.remove(*s) {
            None | Some(Json::Null) => {}
            Some(Json::Array(list)) => sections.push((*s, list)),
            Some(_) => problems.push((vec![key(s)], "must be a list".into())),
        }
    }
    if sections.iter().all(|(_, l)| l.is_empty()) && problems.is_empty() {
        problems.push((
            vec![],
            "an empty module: give it probes, slos, gates or components".into(),
        ));
    }
    if problems.is_empty() {
        Ok(Module {
            id,
            params,
            sections,
        })
    } else {
        Err(problems)
    }
}

/// A `uses:` entry: the module's id and the values given.
#[derive(Clone, Debug)]
pub struct Use {
    pub module: String,
    pub with: Map<String, Json>,
}

pub fn parse_use(entry: Json) -> Result<Use, Vec<Problem>> {
    let Json::Object(mut obj) = entry else {
        return Err(vec![(
            vec![],
            "a use must be a mapping: `{ module: ID, with: { … } }`".into(),
        )]);
    };
    let mut problems = unknown_keys(&obj, USE_KEYS, "use");
    let module = match obj.remove("module") {
        Some(Json::String(m)) => m,
        _ => {
            problems.push((
                vec![],
                "missing `module` (the id of the module to instantiate)".into(),
            ));
            String::new()
        }
    };
    let with = match obj.remove("with") {
        None | Some(Json::Null) => Map::new(),
        Some(Json::Object(w)) => w,
        Some(_) => {
            problems.push((
                vec![key("with")],
                "must be a mapping of parameter values".into(),
            ));
            Map::new()
        }
    };
    if problems.is_empty() {
        Ok(Use { module, with })
    } else {
        Err(problems)
    }
}

/// The values a use gives the module's parameters (defaults filled in), or
/// the problems, relative to the use entry.
pub fn bind(module: &Module, u: &Use) -> Result<Map<String, Json>, Vec<Problem>> {
    let mut problems = Vec::new();
    for name in u.with.keys() {
        if !module.params.contains_key(name) {
            let hint =
                did_you_mean(name, module.params.keys().map(String::as_str)).unwrap_or_default();
            problems.push((
                vec![key("with"), key(name)],
                format!("module `{}` has no parameter `{name}`{hint}", module.id),
            ));
        }
    }
    let mut values = Map::new();
    for (name, p) in &module.params {
        match u.with.get(name).or(p.default.as_ref()) {
            Some(v) => {
                values.insert(name.clone(), v.clone());
            }
            None => problems.push((
                vec![key("with")],
                format!(
                    "missing parameter `{name}` of module `{}` (it has no default)",
                    module.id
                ),
            )),
        }
    }
    if problems.is_empty() {
        Ok(values)
    } else {
        Err(problems)
    }
}

fn reference() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"\{\{\s*params\.([A-Za-z0-9_]+)\s*\}\}").expect("static pattern"))
}

/// `value` with every `{{ params.NAME }}` replaced; a problem names the
/// path (relative to `value`) of the string that could not be filled.
pub fn substitute(value: Json, params: &Map<String, Json>) -> Result<Json, Problem> {
    let mut path = Vec::new();
    fill(value, params, &mut path)
}

fn fill(value: Json, params: &Map<String, Json>, path: &mut Vec<Seg>) -> Result<Json, Problem> {
    match value {
        Json::String(s) => fill_string(s, params).map_err(|m| (path.clone(), m)),
        Json::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, v) in items.into_iter().enumerate() {
                path.push(Seg::Index(i));
                out.push(fill(v, params, path)?);
                path.pop();
            }
            Ok(Json::Array(out))
        }
        Json::Object(obj) => {
            let mut out = Map::new();
            for (k, v) in obj {
                path.push(key(&k));
                let filled = fill(v, params, path)?;
                path.pop();
                out.insert(k, filled);
            }
            Ok(Json::Object(out))
        }
        other => Ok(other),
    }
}

fn fill_string(s: String, params: &Map<String, Json>) -> Result<Json, String> {
    let re = reference();
    if !re.is_match(&s) {
        return Ok(Json::String(s));
    }
    let lookup = |name: &str| {
        params.get(name).ok_or_else(|| {
            let hint = did_you_mean(name, params.keys().map(String::as_str)).unwrap_or_default();
            format!("`{{{{ params.{name} }}}}`: the module has no parameter `{name}`{hint}")
        })
    };
    // Only a reference: the value keeps its type.
    if let Some(c) = re.captures(s.trim())
        && c.get(0).is_some_and(|m| m.as_str() == s.trim())
    {
        return lookup(&c[1]).cloned();
    }
    let mut out = String::with_capacity(s.len());
    let mut last = 0;
    for c in re.captures_iter(&s) {
        let (Some(whole), Some(name)) = (c.get(0), c.get(1)) else {
            continue;
        };
        out.push_str(&s[last..whole.start()]);
        match lookup(name.as_str())? {
            Json::String(v) => out.push_str(v),
            v @ (Json::Number(_) | Json::Bool(_)) => out.push_str(&v.to_string()),
            _ => {
                return Err(format!(
                    "parameter `{}` is a list or mapping: it can only stand alone in a value, not inside text",
                    name.as_str()
                ));
            }
        }
        last = whole.end();
    }
    out.push_str(&s[last..]);
    Ok(Json::String(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params() -> Map<String, Json> {
        json!({ "env": "staging", "regions": ["eu", "us"], "n": 3 })
            .as_object()
            .cloned()
            .unwrap_or_default()
    }

    #[test]
    fn references_are_filled_by_type() {
        let v = json!({
            "id": "{{ params.env }}-discovery",
            "regions": "{{params.regions}}",
            "n": "{{ params.n }}",
            "text": "n={{ params.n }} env={{ params.env }}",
            "token": "{{ steps.login.access_token }}",
        });
        let got = substitute(v, &params()).expect("filled");
        assert_eq!(got["id"], "staging-discovery");
        assert_eq!(got["regions"], json!(["eu", "us"]));
        assert_eq!(got["n"], 3);
        assert_eq!(got["text"], "n=3 env=staging");
        assert_eq!(got["token"], "{{ steps.login.access_token }}");
    }

    #[test]
    fn unknown_and_misplaced_references_are_errors_with_their_path() {
        let (path, msg) =
            substitute(json!({"a": [{"b": "{{ params.evn }}"}]}), &params()).expect_err("unknown");
        assert_eq!(path, vec![key("a"), Seg::Index(0), key("b")]);
        assert!(
            msg.contains("no parameter `evn`") && msg.contains("did you mean `env`"),
            "{msg}"
        );
        let (_, msg) = substitute(json!("x {{ params.regions }}"), &params()).expect_err("list");
        assert!(msg.contains("only stand alone"), "{msg}");
    }

    #[test]
    fn binding_reports_unknown_and_missing_parameters() {
        let m = parse_module(json!({
            "id": "idp",
            "params": { "env": {}, "issuer": null, "regions": { "default": ["eu"] } },
            "probes": [{ "id": "x" }],
        }))
        .expect("module");
        let u = parse_use(json!({ "module": "idp", "with": { "env": "prod", "isuer": "x" } }))
            .expect("use");
        let problems = bind(&m, &u).expect_err("problems");
        let text: Vec<&str> = problems.iter().map(|(_, m)| m.as_str()).collect();
        assert!(
            text.iter()
                .any(|m| m.contains("no parameter `isuer`") && m.contains("`issuer`")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|m| m.contains("missing parameter `issuer`")),
            "{text:?}"
        );
        let u =
            parse_use(json!({ "module": "idp", "with": { "env": "prod", "issuer": "https://i" } }))
                .expect("use");
        let values = bind(&m, &u).expect("bound");
        assert_eq!(values["regions"], json!(["eu"]));
    }
}
