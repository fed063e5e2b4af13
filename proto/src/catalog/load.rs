//! Reading catalog files: the `config` crate parses YAML or TOML into values,
//! serde turns them into typed definitions (unknown keys are errors), and
//! validation checks what types can't. Every error is tied to file, line,
//! the item's id and the key path, and all errors are reported at once.
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_json::{Map, Value as Json};

use std::collections::HashMap;

use super::modules;
use super::source_map::{Seg, SourceMap, render_path};
use super::sources::expand_sources;
use super::suggest::{self, did_you_mean};
use super::validate::{ItemRef, Section, validate};
use super::{
    COMMON_KEYS, Catalog, ComponentDef, GateDef, KINDS, KindSpec, MaintenanceDef, ProbeCommon,
    ProbeDef, SloDef, SourceLoc,
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
    /// For an item a module made: which use of it, e.g. "module `idp`
    /// used at teams/a.yaml:12 (uses[0])".
    pub context: Option<String>,
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
        write!(f, "{}", self.message)?;
        if let Some(c) = &self.context {
            write!(f, " ({c})")?;
        }
        Ok(())
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

/// Where an item sits in its file: `probes[2]`, or `modules[0].probes[1]`
/// for one a module made, then with the use that made it.
struct At {
    base: Vec<Seg>,
    context: Option<String>,
}

/// A typed item of any section.
enum Item {
    Probe(Box<ProbeDef>),
    Slo(SloDef),
    Gate(GateDef),
    Component(ComponentDef),
    Maintenance(MaintenanceDef),
}

impl Item {
    fn set_source(&mut self, loc: SourceLoc) {
        let source = match self {
            Item::Probe(p) => &mut p.source,
            Item::Slo(s) => &mut s.source,
            Item::Gate(g) => &mut g.source,
            Item::Component(c) => &mut c.source,
            Item::Maintenance(m) => &mut m.source,
        };
        *source = Some(loc);
    }
}

/// One parsed file, before merging; its `modules` and `uses` entries are
/// still JSON until every file is read (a use may name another file's module).
struct FileItems {
    file: PathBuf,
    map: SourceMap,
    items: Vec<(Section, At, Item)>,
    modules: Vec<(usize, Json)>,
    uses: Vec<(usize, Json)>,
}

impl FileItems {
    fn error(
        &self,
        path: &[Seg],
        item: Option<String>,
        message: String,
        context: Option<String>,
    ) -> CatalogError {
        CatalogError {
            file: self.file.clone(),
            line: self.map.line(path),
            item,
            path: render_path(path),
            message,
            context,
        }
    }
}

/// Load, merge and validate a catalog from files, directories and glob
/// patterns ([`expand_sources`]). Ids must be unique across files.
pub fn load_files<P: AsRef<Path>>(sources: &[P]) -> Result<Catalog, CatalogErrors> {
    let paths = expand_sources(sources)?;
    let mut errors = Vec::new();
    let mut files = Vec::new();
    for path in &paths {
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
    expand_modules(&mut files, &mut errors);
    finish(files, errors)
}

/// Load one catalog from text; `name` stands in for the file name in errors.
pub fn load_str(name: &str, text: &str) -> Result<Catalog, CatalogErrors> {
    let path = Path::new(name);
    let format = Format::of(path).unwrap_or(Format::Yaml);
    let mut errors = Vec::new();
    let file = parse_file(path, text, format, &mut errors);
    let mut files = vec![file];
    expand_modules(&mut files, &mut errors);
    finish(files, errors)
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
        context: None,
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
        items: Vec::new(),
        modules: Vec::new(),
        uses: Vec::new(),
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
                "the top level must be a mapping with `probes`, `slos`, `gates`, `components`, `maintenances`, `modules`, `uses`",
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
            context: None,
        });
    };
    for (key, value) in root {
        let section = match key.as_str() {
            "probes" => Some(Section::Probes),
            "slos" => Some(Section::Slos),
            "gates" => Some(Section::Gates),
            "components" => Some(Section::Components),
            "maintenances" => Some(Section::Maintenances),
            "modules" | "uses" => None,
            _ => {
                let hint = did_you_mean(&key, TOP_KEYS.iter().copied()).unwrap_or_default();
                let msg = format!(
                    "unknown key `{key}`{hint}, expected one of `probes`, `slos`, `gates`, `components`, `maintenances`, `modules`, `uses`"
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
        let Some(section) = section else {
            let raw: Vec<(usize, Json)> = list.into_iter().enumerate().collect();
            if key == "modules" {
                items.modules = raw;
            } else {
                items.uses = raw;
            }
            continue;
        };
        for (i, entry) in list.into_iter().enumerate() {
            let base = vec![Seg::Key(key.clone()), Seg::Index(i)];
            let id = entry.get("id").and_then(Json::as_str).map(str::to_string);
            let loc = SourceLoc {
                file: path.to_path_buf(),
                line: items.map.line(&base),
            };
            match parse_item(section, entry) {
                Ok(mut item) => {
                    item.set_source(loc);
                    let at = At {
                        base,
                        context: None,
                    };
                    items.items.push((section, at, item));
                }
                Err((rel, msg)) => {
                    let full: Vec<Seg> = base.iter().cloned().chain(rel).collect();
                    err_at(errors, &items.map, id, full, msg);
                }
            }
        }
    }
    items
}

const TOP_KEYS: &[&str] = &[
    "probes",
    "slos",
    "gates",
    "components",
    "maintenances",
    "modules",
    "uses",
];

fn parse_item(section: Section, entry: Json) -> Result<Item, (Vec<Seg>, String)> {
    Ok(match section {
        Section::Probes => Item::Probe(Box::new(parse_probe(entry)?)),
        Section::Slos => Item::Slo(typed(entry)?),
        Section::Gates => Item::Gate(typed(entry)?),
        Section::Components => Item::Component(typed(entry)?),
        Section::Maintenances => Item::Maintenance(typed(entry)?),
    })
}

/// Instantiates every `uses:` entry of every file with the module it names
/// (from any file): the items join the module's file, at the module's lines,
/// carrying the use as their context.
fn expand_modules(files: &mut [FileItems], errors: &mut Vec<CatalogError>) {
    let seg = |k: &str| Seg::Key(k.to_string());
    let mut defined: HashMap<String, (usize, usize, modules::Module)> = HashMap::new();
    for fi in 0..files.len() {
        for (mi, raw) in std::mem::take(&mut files[fi].modules) {
            let base = [seg("modules"), Seg::Index(mi)];
            let f = &files[fi];
            match modules::parse_module(raw) {
                Ok(m) => {
                    if let Some((ofi, omi, _)) = defined.get(&m.id) {
                        let first = &files[*ofi];
                        let first_at = first.map.line(&[seg("modules"), Seg::Index(*omi)]);
                        let msg = format!(
                            "duplicate module id `{}` (first defined at {}:{})",
                            m.id,
                            first.file.display(),
                            first_at.map_or("?".into(), |l| l.to_string())
                        );
                        let at: Vec<Seg> = base.iter().cloned().chain([seg("id")]).collect();
                        errors.push(f.error(&at, None, msg, None));
                    } else {
                        defined.insert(m.id.clone(), (fi, mi, m));
                    }
                }
                Err(problems) => {
                    for (rel, msg) in problems {
                        let at: Vec<Seg> = base.iter().cloned().chain(rel).collect();
                        errors.push(f.error(&at, None, msg, None));
                    }
                }
            }
        }
    }
    let mut made: Vec<(usize, Section, At, Item)> = Vec::new();
    for fu in 0..files.len() {
        for (ui, raw) in std::mem::take(&mut files[fu].uses) {
            let f = &files[fu];
            let ubase = vec![seg("uses"), Seg::Index(ui)];
            let at = |rel: Vec<Seg>| -> Vec<Seg> { ubase.iter().cloned().chain(rel).collect() };
            let u = match modules::parse_use(raw) {
                Ok(u) => u,
                Err(problems) => {
                    for (rel, msg) in problems {
                        errors.push(f.error(&at(rel), None, msg, None));
                    }
                    continue;
                }
            };
            let Some((fm, mi, module)) = defined.get(&u.module) else {
                let hint =
                    did_you_mean(&u.module, defined.keys().map(String::as_str)).unwrap_or_default();
                let msg = format!("unknown module `{}`{hint}", u.module);
                errors.push(f.error(&at(vec![seg("module")]), None, msg, None));
                continue;
            };
            let values = match modules::bind(module, &u) {
                Ok(v) => v,
                Err(problems) => {
                    for (rel, msg) in problems {
                        errors.push(f.error(&at(rel), None, msg, None));
                    }
                    continue;
                }
            };
            let context = format!(
                "module `{}` used at {}:{} (uses[{ui}])",
                module.id,
                f.file.display(),
                f.map.line(&ubase).map_or("?".into(), |l| l.to_string())
            );
            let m_file = &files[*fm];
            for (section_key, entries) in &module.sections {
                let Some(section) = Section::ALL.into_iter().find(|s| s.key() == *section_key)
                else {
                    continue;
                };
                for (j, entry) in entries.iter().enumerate() {
                    let base = vec![
                        seg("modules"),
                        Seg::Index(*mi),
                        seg(section_key),
                        Seg::Index(j),
                    ];
                    let full =
                        |rel: Vec<Seg>| -> Vec<Seg> { base.iter().cloned().chain(rel).collect() };
                    if made.len() >= modules::MAX_EXPANDED {
                        let msg = format!(
                            "modules expand to more than {} items",
                            modules::MAX_EXPANDED
                        );
                        errors.push(m_file.error(&base, None, msg, Some(context)));
                        return;
                    }
                    let filled = match modules::substitute(entry.clone(), &values) {
                        Ok(v) => v,
                        Err((rel, msg)) => {
                            errors.push(m_file.error(&full(rel), None, msg, Some(context.clone())));
                            continue;
                        }
                    };
                    let id = filled.get("id").and_then(Json::as_str).map(str::to_string);
                    match parse_item(section, filled) {
                        Ok(mut item) => {
                            item.set_source(SourceLoc {
                                file: m_file.file.clone(),
                                line: m_file.map.line(&base),
                            });
                            let at = At {
                                base: base.clone(),
                                context: Some(context.clone()),
                            };
                            made.push((*fm, section, at, item));
                        }
                        Err((rel, msg)) => {
                            errors.push(m_file.error(&full(rel), id, msg, Some(context.clone())));
                        }
                    }
                }
            }
        }
    }
    for (fm, section, at, item) in made {
        files[fm].items.push((section, at, item));
    }
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
    let kind = take_kind(&mut body)?;
    // A misspelt common key (`intervl`) lands in the kind's body.
    let spec = parse_kind(&kind, body).map_err(|(p, m)| (p, hint_unknown(m, COMMON_KEYS)))?;
    Ok(ProbeDef {
        common,
        spec,
        source: None,
    })
}

/// Removes the `kind` tag of a probe or step entry: a string naming a kind.
pub(super) fn take_kind(body: &mut Map<String, Json>) -> Result<String, (Vec<Seg>, String)> {
    match body.remove("kind") {
        Some(Json::String(k)) => Ok(k),
        Some(_) => Err((
            vec![Seg::Key("kind".into())],
            "`kind` must be a string".into(),
        )),
        None => Err((
            vec![],
            format!("missing `kind` (one of: {})", KINDS.join(", ")),
        )),
    }
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
pub(super) fn parse_kind(
    kind: &str,
    body: Map<String, Json>,
) -> Result<KindSpec, (Vec<Seg>, String)> {
    if kind == "journey" {
        return super::steps::parse_journey(body).map(KindSpec::Journey);
    }
    KindSpec::leaf_from_body(kind, Json::Object(body)).unwrap_or_else(|| Err(unknown_kind(kind)))
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
        let message = hint_unknown(e.into_inner().to_string(), &[]);
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

/// serde's "unknown field `x`, expected …" with " (did you mean `y`?)"
/// after the name when one of the expected names, or of `extra`, is close.
fn hint_unknown(message: String, extra: &[&str]) -> String {
    let Some(rest) = message.strip_prefix("unknown field `") else {
        return message;
    };
    let Some((name, tail)) = rest.split_once('`') else {
        return message;
    };
    if tail.starts_with(" (did you mean") {
        return message;
    }
    let expected = suggest::expected_in(tail);
    match did_you_mean(name, expected.iter().copied().chain(extra.iter().copied())) {
        Some(hint) => format!("unknown field `{name}`{hint}{tail}"),
        None => message,
    }
}

fn syntax_error_line(message: &str) -> Option<usize> {
    let re = regex::Regex::new(r"line (\d+)").ok()?;
    re.captures(message)?.get(1)?.as_str().parse().ok()
}

fn finish(files: Vec<FileItems>, mut errors: Vec<CatalogError>) -> Result<Catalog, CatalogErrors> {
    let mut catalog = Catalog::default();
    // Where each merged item came from: (section, file index, its place).
    let mut origins: Vec<(Section, usize, &At)> = Vec::new();
    // Sections in order within each file, as written.
    for section in Section::ALL {
        for (fi, file) in files.iter().enumerate() {
            for (s, at, item) in &file.items {
                if *s != section {
                    continue;
                }
                match item {
                    Item::Probe(p) => catalog.probes.push((**p).clone()),
                    Item::Slo(x) => catalog.slos.push(x.clone()),
                    Item::Gate(g) => catalog.gates.push(g.clone()),
                    Item::Component(c) => catalog.components.push(c.clone()),
                    Item::Maintenance(m) => catalog.maintenances.push(m.clone()),
                }
                origins.push((section, fi, at));
            }
        }
    }
    let origin = |r: ItemRef| {
        origins
            .iter()
            .filter(|(s, _, _)| *s == r.section)
            .nth(r.index)
            .map(|(_, fi, at)| (&files[*fi], *at))
    };
    for (item, rel, message) in validate(&catalog) {
        let Some((file, at)) = origin(item) else {
            continue;
        };
        let path: Vec<Seg> = at.base.iter().cloned().chain(rel).collect();
        errors.push(file.error(&path, item_id(&catalog, item), message, at.context.clone()));
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
        Section::Maintenances => catalog.maintenances.get(item.index).map(|m| m.id.clone()),
    }
}
