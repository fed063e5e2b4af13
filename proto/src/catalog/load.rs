//! Reading catalog files: the `config` crate parses YAML or TOML into values,
//! serde turns them into typed definitions (unknown keys are errors), and
//! validation checks what types can't. Every error is tied to file, line,
//! the item's id and the key path, and all errors are reported at once.
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_json::{Map, Value as Json};

use super::source_map::{Seg, SourceMap, render_path};
use super::validate::{ItemRef, Section, validate};
use super::{
    COMMON_KEYS, Catalog, ComponentDef, GateDef, JourneySpec, KINDS, KindSpec, ProbeCommon,
    ProbeDef, STEP_KEYS, STEP_RENAMED_KEYS, SloDef, SourceLoc, StepDef,
};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatalogError {
    pub file: PathBuf,
    pub line: Option<usize>,
    /// The id of the probe, SLO or gate the error is about.
    pub item: Option<String>,
    /// Key path inside the file, e.g. `probes[2].interval`.
    pub path: String,
    pub message: String,
}

impl fmt::Display for CatalogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(f, ": ")?;
        if let Some(item) = &self.item {
            write!(f, "`{item}`: ")?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        write!(f, "{}", self.message)
    }
}

/// All problems found in a set of catalog files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatalogErrors(pub Vec<CatalogError>);

impl fmt::Display for CatalogErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for CatalogErrors {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Toml,
}

impl Format {
    fn of(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()? {
            "yaml" | "yml" => Some(Format::Yaml),
            "toml" => Some(Format::Toml),
            _ => None,
        }
    }
}

/// One parsed file, before merging.
struct FileItems {
    file: PathBuf,
    map: SourceMap,
    probes: Vec<(usize, ProbeDef)>,
    slos: Vec<(usize, SloDef)>,
    gates: Vec<(usize, GateDef)>,
    components: Vec<(usize, ComponentDef)>,
}

/// Load, merge and validate catalog files. Ids must be unique across files.
pub fn load_files<P: AsRef<Path>>(paths: &[P]) -> Result<Catalog, CatalogErrors> {
    let mut errors = Vec::new();
    let mut files = Vec::new();
    for path in paths {
        let path = path.as_ref();
        let Some(format) = Format::of(path) else {
            errors.push(file_error(
                path,
                "unknown file type: use .yaml, .yml or .toml",
            ));
            continue;
        };
        match std::fs::read_to_string(path) {
            Ok(text) => files.push(parse_file(path, &text, format, &mut errors)),
            Err(e) => errors.push(file_error(path, &format!("cannot read: {e}"))),
        }
    }
    finish(files, errors)
}

/// Load one catalog from text; `name` stands in for the file name in errors.
pub fn load_str(name: &str, text: &str) -> Result<Catalog, CatalogErrors> {
    let path = Path::new(name);
    let format = Format::of(path).unwrap_or(Format::Yaml);
    let mut errors = Vec::new();
    let file = parse_file(path, text, format, &mut errors);
    finish(vec![file], errors)
}

/// A catalog file's document as the loader reads it (YAML or TOML, by the
/// extension of `name`), before any typing: what the JSON Schema
/// ([`super::json_schema`]) describes.
pub fn file_to_json(name: &str, text: &str) -> Result<Json, String> {
    let cfg_format = match Format::of(Path::new(name)).unwrap_or(Format::Yaml) {
        Format::Yaml => config::FileFormat::Yaml,
        Format::Toml => config::FileFormat::Toml,
    };
    config::Config::builder()
        .add_source(config::File::from_str(text, cfg_format))
        .build()
        .and_then(|c| c.try_deserialize::<Json>())
        .map_err(|e| e.to_string())
}

/// Parse the wire form of a probe (see [`ProbeDef::to_json`]).
pub fn probe_from_json(json: &str) -> Result<ProbeDef, String> {
    let value: Json =
        serde_json::from_str(json).map_err(|e| format!("probe spec is not JSON: {e}"))?;
    let probe =
        parse_probe(value).map_err(|(path, msg)| format!("{}: {msg}", render_path(&path)))?;
    let mut catalog = Catalog::default();
    catalog.probes.push(probe);
    let errs = validate(&catalog);
    if let Some((_, path, msg)) = errs.into_iter().next() {
        return Err(format!("{}: {msg}", render_path(&path)));
    }
    catalog
        .probes
        .pop()
        .ok_or_else(|| "probe vanished".to_string())
}

fn file_error(path: &Path, message: &str) -> CatalogError {
    CatalogError {
        file: path.to_path_buf(),
        line: None,
        item: None,
        path: String::new(),
        message: message.to_string(),
    }
}

fn parse_file(
    path: &Path,
    text: &str,
    format: Format,
    errors: &mut Vec<CatalogError>,
) -> FileItems {
    let (cfg_format, map) = match format {
        Format::Yaml => (config::FileFormat::Yaml, SourceMap::yaml(text)),
        Format::Toml => (config::FileFormat::Toml, SourceMap::toml(text)),
    };
    let mut items = FileItems {
        file: path.to_path_buf(),
        map,
        probes: Vec::new(),
        slos: Vec::new(),
        gates: Vec::new(),
        components: Vec::new(),
    };
    let root = config::Config::builder()
        .add_source(config::File::from_str(text, cfg_format))
        .build()
        .and_then(|c| c.try_deserialize::<Json>());
    let root = match root {
        Ok(Json::Object(m)) => m,
        Ok(Json::Null) => Map::new(),
        Ok(_) => {
            errors.push(file_error(
                path,
                "the top level must be a mapping with `probes`, `slos`, `gates`, `components`",
            ));
            return items;
        }
        Err(e) => {
            let message = e.to_string();
            let line = syntax_error_line(&message);
            errors.push(CatalogError {
                line,
                ..file_error(path, &format!("syntax error: {message}"))
            });
            return items;
        }
    };
    let err_at = |errors: &mut Vec<CatalogError>,
                  map: &SourceMap,
                  item: Option<String>,
                  p: Vec<Seg>,
                  msg: String| {
        errors.push(CatalogError {
            file: path.to_path_buf(),
            line: map.line(&p),
            item,
            path: render_path(&p),
            message: msg,
        });
    };
    for (key, value) in root {
        let section = match key.as_str() {
            "probes" => Section::Probes,
            "slos" => Section::Slos,
            "gates" => Section::Gates,
            "components" => Section::Components,
            _ => {
                let msg = format!(
                    "unknown key `{key}`, expected one of `probes`, `slos`, `gates`, `components`"
                );
                err_at(errors, &items.map, None, vec![Seg::Key(key)], msg);
                continue;
            }
        };
        let list = match value {
            Json::Array(list) => list,
            Json::Null => Vec::new(),
            _ => {
                err_at(
                    errors,
                    &items.map,
                    None,
                    vec![Seg::Key(key)],
                    "must be a list".into(),
                );
                continue;
            }
        };
        for (i, entry) in list.into_iter().enumerate() {
            let base = vec![Seg::Key(key.clone()), Seg::Index(i)];
            let id = entry.get("id").and_then(Json::as_str).map(str::to_string);
            let loc = SourceLoc {
                file: path.to_path_buf(),
                line: items.map.line(&base),
            };
            let parsed = match section {
                Section::Probes => parse_probe(entry).map(|mut p| {
                    p.source = Some(loc);
                    items.probes.push((i, p));
                }),
                Section::Slos => typed::<SloDef>(entry).map(|mut s| {
                    s.source = Some(loc);
                    items.slos.push((i, s));
                }),
                Section::Gates => typed::<GateDef>(entry).map(|mut g| {
                    g.source = Some(loc);
                    items.gates.push((i, g));
                }),
                Section::Components => typed::<ComponentDef>(entry).map(|mut c| {
                    c.source = Some(loc);
                    items.components.push((i, c));
                }),
            };
            if let Err((rel, msg)) = parsed {
                let full: Vec<Seg> = base.iter().cloned().chain(rel).collect();
                err_at(errors, &items.map, id, full, msg);
            }
        }
    }
    items
}

/// Splits a probe entry into the common envelope and its kind's body, so
/// both can reject unknown keys (serde's `flatten` can't combine with that).
fn parse_probe(entry: Json) -> Result<ProbeDef, (Vec<Seg>, String)> {
    let Json::Object(fields) = entry else {
        return Err((vec![], "a probe must be a mapping".into()));
    };
    let (common, mut body): (Map<String, Json>, Map<String, Json>) = fields
        .into_iter()
        .partition(|(k, _)| COMMON_KEYS.contains(&k.as_str()));
    if !common.contains_key("id") {
        return Err((vec![], "missing `id`".into()));
    }
    let common: ProbeCommon = typed(Json::Object(common))?;
    let kind = match body.remove("kind") {
        Some(Json::String(k)) => k,
        Some(_) => {
            return Err((
                vec![Seg::Key("kind".into())],
                "`kind` must be a string".into(),
            ));
        }
        None => {
            return Err((
                vec![],
                format!("missing `kind` (one of: {})", KINDS.join(", ")),
            ));
        }
    };
    let spec = parse_kind(&kind, body)?;
    Ok(ProbeDef {
        common,
        spec,
        source: None,
    })
}

/// A kind body with its `kind` tag (a journey step after its templates were
/// filled in), parsed by the same code as the catalog.
pub fn kind_from_json(value: Json) -> Result<KindSpec, String> {
    let Json::Object(mut body) = value else {
        return Err("a probe body must be an object".into());
    };
    let kind = match body.remove("kind") {
        Some(Json::String(k)) => k,
        _ => return Err("missing `kind`".into()),
    };
    parse_kind(&kind, body).map_err(|(path, m)| {
        if path.is_empty() {
            m
        } else {
            format!("{}: {m}", render_path(&path))
        }
    })
}

fn unknown_kind(kind: &str) -> (Vec<Seg>, String) {
    (
        vec![Seg::Key("kind".into())],
        format!("unknown probe kind `{kind}` (one of: {})", KINDS.join(", ")),
    )
}

/// A kind's body (the entry without envelope keys and `kind`).
fn parse_kind(kind: &str, body: Map<String, Json>) -> Result<KindSpec, (Vec<Seg>, String)> {
    if kind == "journey" {
        return parse_journey(body).map(KindSpec::Journey);
    }
    KindSpec::leaf_from_body(kind, Json::Object(body)).unwrap_or_else(|| Err(unknown_kind(kind)))
}

fn parse_journey(mut body: Map<String, Json>) -> Result<JourneySpec, (Vec<Seg>, String)> {
    let steps = match body.remove("steps") {
        Some(Json::Array(steps)) => steps,
        Some(_) => {
            return Err((
                vec![Seg::Key("steps".into())],
                "`steps` must be a list".into(),
            ));
        }
        None => return Err((vec![], "a journey needs `steps`".into())),
    };
    if let Some(k) = body.keys().next() {
        return Err((
            vec![Seg::Key(k.clone())],
            format!("unknown field `{k}`, expected `steps`"),
        ));
    }
    if steps.is_empty() {
        return Err((
            vec![Seg::Key("steps".into())],
            "a journey needs at least one step".into(),
        ));
    }
    let mut out = Vec::with_capacity(steps.len());
    for (i, step) in steps.into_iter().enumerate() {
        let at = |mut path: Vec<Seg>| {
            let mut p = vec![Seg::Key("steps".into()), Seg::Index(i)];
            p.append(&mut path);
            p
        };
        out.push(parse_step(step).map_err(|(path, m)| (at(path), m))?);
    }
    Ok(JourneySpec { steps: out })
}

fn parse_step(step: Json) -> Result<StepDef, (Vec<Seg>, String)> {
    let Json::Object(fields) = step else {
        return Err((vec![], "a step must be a mapping".into()));
    };
    let (envelope, mut body): (Map<String, Json>, Map<String, Json>) = fields
        .into_iter()
        .partition(|(k, _)| STEP_KEYS.contains(&k.as_str()));
    let name = match envelope.get("name") {
        Some(Json::String(n)) => n.clone(),
        Some(_) => {
            return Err((
                vec![Seg::Key("name".into())],
                "`name` must be a string".into(),
            ));
        }
        None => return Err((vec![], "missing `name`".into())),
    };
    let always = match envelope.get("always") {
        None => false,
        Some(Json::Bool(b)) => *b,
        Some(_) => {
            return Err((
                vec![Seg::Key("always".into())],
                "`always` must be true or false".into(),
            ));
        }
    };
    // `expect: { failure: CLASS }` belongs to the step; other `expect` keys
    // (an http status, a permission decision) stay with the kind.
    let mut expect_failure = None;
    if let Some(Json::Object(e)) = body.get_mut("expect")
        && let Some(f) = e.remove("failure")
    {
        let path = vec![Seg::Key("expect".into()), Seg::Key("failure".into())];
        let Json::String(class) = f else {
            return Err((
                path,
                "must be a failure class name, e.g. auth_rejected".into(),
            ));
        };
        if crate::failure_class_from_name(&class).is_none() {
            return Err((
                path,
                format!(
                    "unknown failure class `{class}` (one of: {})",
                    crate::failure_class_names().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        expect_failure = Some(class);
        if e.is_empty() {
            body.remove("expect");
        }
    }
    let kind = match body.remove("kind") {
        Some(Json::String(k)) => k,
        Some(_) => {
            return Err((
                vec![Seg::Key("kind".into())],
                "`kind` must be a string".into(),
            ));
        }
        None => {
            return Err((
                vec![],
                format!("missing `kind` (one of: {})", KINDS.join(", ")),
            ));
        }
    };
    if kind == "journey" {
        return Err((
            vec![Seg::Key("kind".into())],
            "a journey step can't be a journey".into(),
        ));
    }
    if let Some(k) = body.keys().find(|k| COMMON_KEYS.contains(&k.as_str())) {
        return Err((
            vec![Seg::Key(k.clone())],
            format!("`{k}` is set on the journey, not on a step"),
        ));
    }
    // A key the step takes for itself has another spelling in a step.
    for (k, key, step_key) in STEP_RENAMED_KEYS {
        if *k != kind {
            continue;
        }
        match body.remove(*step_key) {
            Some(v) => {
                body.insert((*key).to_string(), v);
            }
            None => {
                return Err((
                    vec![],
                    format!(
                        "missing `{step_key}` (a `{kind}` step's `{key}`: `{key}` is the step's own)"
                    ),
                ));
            }
        }
    }
    let spec = parse_kind(&kind, body).map_err(|(mut path, m)| {
        // Errors about the renamed key point at the key as written.
        if let Some(Seg::Key(first)) = path.first_mut()
            && let Some((_, _, step_key)) = STEP_RENAMED_KEYS
                .iter()
                .find(|(k, key, _)| *k == kind && first == key)
        {
            *first = (*step_key).to_string();
        }
        (path, m)
    })?;
    Ok(StepDef {
        name,
        always,
        expect_failure,
        spec,
    })
}

/// Deserialize with the failing key path preserved.
pub(crate) fn typed<T: DeserializeOwned>(value: Json) -> Result<T, (Vec<Seg>, String)> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let mut path: Vec<Seg> = e
            .path()
            .iter()
            .filter_map(|s| match s {
                serde_path_to_error::Segment::Seq { index } => Some(Seg::Index(*index)),
                serde_path_to_error::Segment::Map { key } => Some(Seg::Key(key.clone())),
                serde_path_to_error::Segment::Enum { .. }
                | serde_path_to_error::Segment::Unknown => None,
            })
            .collect();
        let message = e.into_inner().to_string();
        // serde reports an unknown key at its parent; point at the key itself.
        if let Some(name) = message
            .strip_prefix("unknown field `")
            .and_then(|rest| rest.split('`').next())
            && path.last() != Some(&Seg::Key(name.to_string()))
        {
            path.push(Seg::Key(name.to_string()));
        }
        (path, message)
    })
}

fn syntax_error_line(message: &str) -> Option<usize> {
    let re = regex::Regex::new(r"line (\d+)").ok()?;
    re.captures(message)?.get(1)?.as_str().parse().ok()
}

fn finish(files: Vec<FileItems>, mut errors: Vec<CatalogError>) -> Result<Catalog, CatalogErrors> {
    let mut catalog = Catalog::default();
    // Where each merged item came from: (file index, index in that file's list).
    let mut origins: Vec<(Section, usize, usize)> = Vec::new();
    for (fi, file) in files.iter().enumerate() {
        for (i, p) in &file.probes {
            catalog.probes.push(p.clone());
            origins.push((Section::Probes, fi, *i));
        }
        for (i, s) in &file.slos {
            catalog.slos.push(s.clone());
            origins.push((Section::Slos, fi, *i));
        }
        for (i, g) in &file.gates {
            catalog.gates.push(g.clone());
            origins.push((Section::Gates, fi, *i));
        }
        for (i, c) in &file.components {
            catalog.components.push(c.clone());
            origins.push((Section::Components, fi, *i));
        }
    }
    let origin = |r: ItemRef| {
        origins
            .iter()
            .filter(|(s, _, _)| *s == r.section)
            .nth(r.index)
            .map(|(_, fi, i)| (&files[*fi], *i))
    };
    for (item, rel, message) in validate(&catalog) {
        let Some((file, i)) = origin(item) else {
            continue;
        };
        let path: Vec<Seg> = [Seg::Key(item.section.key().into()), Seg::Index(i)]
            .into_iter()
            .chain(rel)
            .collect();
        errors.push(CatalogError {
            file: file.file.clone(),
            line: file.map.line(&path),
            item: item_id(&catalog, item),
            path: render_path(&path),
            message,
        });
    }
    if errors.is_empty() {
        Ok(catalog)
    } else {
        Err(CatalogErrors(errors))
    }
}

fn item_id(catalog: &Catalog, item: ItemRef) -> Option<String> {
    match item.section {
        Section::Probes => catalog.probes.get(item.index).map(|p| p.id.clone()),
        Section::Slos => catalog.slos.get(item.index).map(|s| s.id.clone()),
        Section::Gates => catalog.gates.get(item.index).map(|g| g.id.clone()),
        Section::Components => catalog.components.get(item.index).map(|c| c.id.clone()),
    }
}
