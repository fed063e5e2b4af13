//! OpenSLO v1 import: converts `kind: SLO` documents whose indicator reads
//! authpulse probes into catalog `slos:` entries (YAML text), so teams that
//! keep SLOs in OpenSLO don't write them twice. The rule is exactness: every
//! field of an SLO either has an authpulse equivalent with the same meaning
//! or the document is refused with the field's path and the reason. Nothing
//! is approximated, defaulted where the spec gives no default, or dropped —
//! except descriptive text authpulse has no field for (`displayName`,
//! annotations, the indicator's name and description), which is carried as
//! `#` comments over the entry, where it changes no number, alert or gate.
//!
//! Field by field (the submodules say the details):
//!
//! - `metadata.name` → `id`; `metadata.labels` → `labels` (a value or a
//!   one-element list; Prometheus label names, none authpulse sets itself);
//!   `spec.service` → the label `service`; `spec.description` → `description`.
//! - `spec.indicator`/`indicatorRef` → `probes` and `sli` ([`indicator`]).
//! - `spec.timeWindow` → `window`; `spec.budgetingMethod` and the
//!   objective's `timeSliceTarget`/`timeSliceWindow` → `budgeting` ([`window`]).
//! - `objectives[]`: `target` (moved two places) or `targetPercent` →
//!   `objective`; `op`/`value` on a `thresholdMetric` → the latency
//!   threshold (`lte`/`lt` only, see [`objective_sli`]); several objectives
//!   (allowed on a `ratioMetric`) become one SLO each, since each has its own
//!   budget: `<name>-<displayName as an id>` when every objective has a
//!   distinct display name, else `<name>-1`, `<name>-2`, … Composite
//!   objectives (`indicator`, `indicatorRef`, `compositeWeight`) are refused.
//! - `alertPolicies`: an SLO without one asks for no alerts, so the entry
//!   says `alerting: { page: false, ticket: false }`; a policy (conditions,
//!   thresholds, lookback windows, notification targets) has no authpulse
//!   equivalent and is refused: authpulse's burn-rate alerts have fixed
//!   windows and factors.
mod decimal;
mod fields;
mod indicator;
mod window;

use std::collections::BTreeMap;
use std::time::Duration;

use authpulse_proto::catalog::ownership::{MAX_LABELS, RESERVED_LABELS, valid_label_name};
use authpulse_proto::catalog::{Budgeting, CalendarUnit, Sli, SloAlerting, Window};
use yaml_rust2::Yaml;

use decimal::Decimal;
use fields::{Map, Problems, decimal, show};
use indicator::{Indicator, Library, Measure};

#[derive(Debug, thiserror::Error)]
#[error("document {doc} (`{name}`): {message}")]
pub struct ImportError {
    pub doc: usize,
    pub name: String,
    pub message: String,
}

/// One converted SLO, ready to print.
#[derive(Clone, Debug, PartialEq)]
pub struct Converted {
    pub id: String,
    pub description: Option<String>,
    pub probes: Vec<String>,
    /// Percent, as exact decimal text (`99.95`).
    pub objective: String,
    pub window: Window,
    pub sli: Sli,
    pub budgeting: Budgeting,
    pub labels: BTreeMap<String, String>,
    pub alerting: SloAlerting,
    /// Where it came from and what was carried as text only: printed as
    /// comments over the entry.
    pub notes: Vec<String>,
}

/// Kinds of OpenSLO v1 that are not SLOs: read for references (`SLI`,
/// `DataSource`) or skipped, since on their own they define no SLO.
const OTHER_KINDS: &[&str] = &[
    "SLI",
    "DataSource",
    "Service",
    "AlertPolicy",
    "AlertCondition",
    "AlertNotificationTarget",
];

/// Converts every `kind: SLO` document of `text`. Errors are collected: one
/// per field that can't be represented, in document order.
pub fn convert(text: &str) -> Result<Vec<Converted>, Vec<ImportError>> {
    let docs = yaml_rust2::YamlLoader::load_from_str(text).map_err(|e| {
        vec![ImportError {
            doc: 0,
            name: String::new(),
            message: format!("not YAML: {e}"),
        }]
    })?;
    let name_of = |d: &Yaml| d["metadata"]["name"].as_str().unwrap_or("").to_string();
    let mut lib = Library::default();
    for d in &docs {
        match d["kind"].as_str() {
            Some("SLI") => lib.slis.insert(name_of(d), d),
            Some("DataSource") => lib.sources.insert(name_of(d), d),
            _ => None,
        };
    }
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (i, doc) in docs.iter().enumerate() {
        let error = |message: String| ImportError {
            doc: i + 1,
            name: name_of(doc),
            message,
        };
        if matches!(doc, Yaml::Null) {
            continue;
        }
        if doc["apiVersion"].as_str() != Some("openslo/v1") {
            errors.push(error(format!(
                "apiVersion: {} is not openslo/v1",
                show(&doc["apiVersion"])
            )));
            continue;
        }
        match doc["kind"].as_str() {
            Some("SLO") => {}
            Some(k) if OTHER_KINDS.contains(&k) => continue,
            _ => {
                errors.push(error(format!(
                    "kind: {} is not an OpenSLO v1 kind",
                    show(&doc["kind"])
                )));
                continue;
            }
        }
        let mut p = Problems::default();
        let converted = slo(doc, &lib, &mut p);
        match converted {
            Some(c) if p.is_empty() => out.extend(c),
            // Every refusal records its field; this is a backstop.
            _ if p.is_empty() => errors.push(error("could not be read as an SLO".into())),
            _ => errors.extend(
                p.0.into_iter()
                    .map(|pr| error(format!("{}: {}", pr.path, pr.message))),
            ),
        }
    }
    if out.is_empty() && errors.is_empty() {
        errors.push(ImportError {
            doc: 0,
            name: String::new(),
            message: "no `kind: SLO` document".into(),
        });
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// The SLO (or SLOs, one per objective) of one document.
fn slo(doc: &Yaml, lib: &Library<'_>, p: &mut Problems) -> Option<Vec<Converted>> {
    let top = Map::of(doc, "", p)?;
    top.check_keys(&["apiVersion", "kind", "metadata", "spec"], &[], p);
    let Some(meta) = top.map("metadata", p) else {
        p.refuse(&top.at("metadata"), "is missing");
        return None;
    };
    meta.check_keys(&["name", "displayName", "labels", "annotations"], &[], p);
    let mut notes = Vec::new();
    let name = meta.str("name", p);
    if name.is_none() {
        p.refuse(&meta.at("name"), "is missing");
    }
    if let Some(n) = name
        && !valid_id(n)
    {
        p.refuse(
            &meta.at("name"),
            format!(
                "`{n}` is not an authpulse id ([a-z0-9-], at most 63, no leading or trailing -)"
            ),
        );
    }
    notes.push(format!("from OpenSLO SLO `{}`", name.unwrap_or("")));
    if let Some(d) = meta.str("displayName", p) {
        notes.push(format!("displayName: {d}"));
    }
    if let Some(Yaml::Hash(h)) = meta.get("annotations") {
        for (k, v) in h {
            notes.push(format!("annotation {}: {}", show(k), show(v)));
        }
    }
    let mut labels = labels(&meta, p);

    let Some(spec) = top.map("spec", p) else {
        p.refuse(&top.at("spec"), "is missing");
        return None;
    };
    spec.check_keys(
        &[
            "description",
            "service",
            "indicator",
            "indicatorRef",
            "timeWindow",
            "budgetingMethod",
            "objectives",
        ],
        &[(
            "alertPolicies",
            "OpenSLO alert policies (conditions with thresholds and lookback windows, notification targets) have no authpulse equivalent: its burn-rate alerts have fixed windows and factors (coordinator/README.md#alerts); remove alertPolicies and set `alerting` in the catalog",
        )],
        p,
    );
    let description = spec.str("description", p).map(str::to_string);
    if let Some(service) = spec.str("service", p) {
        match labels.get("service") {
            Some(v) if v != service => p.refuse(
                &spec.at("service"),
                format!("`{service}` but metadata.labels.service is `{v}`: both would be the label `service`"),
            ),
            _ => {
                labels.insert("service".into(), service.to_string());
            }
        }
    }
    if labels.len() > MAX_LABELS {
        p.refuse(
            &meta.at("labels"),
            format!(
                "{} labels (with service); authpulse takes at most {MAX_LABELS}",
                labels.len()
            ),
        );
    }
    let indicator = indicator::indicator(&spec, lib, p);
    let window = window::window(&spec, p);
    let method = window::method(&spec, p);
    let objectives = match spec.get("objectives") {
        Some(Yaml::Array(a)) if !a.is_empty() => a.as_slice(),
        _ => {
            p.refuse(&spec.at("objectives"), "must be a non-empty list");
            return None;
        }
    };
    // Every objective's fields are checked before anything can stop the
    // conversion, so a composite objective is named as such.
    let maps: Vec<Option<Map<'_>>> = objectives
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let obj = Map::of(o, &format!("{}[{i}]", spec.at("objectives")), p)?;
            obj.check_keys(
                &[
                    "displayName",
                    "op",
                    "value",
                    "target",
                    "targetPercent",
                    "timeSliceTarget",
                    "timeSliceWindow",
                ],
                &[
                    ("indicator", COMPOSITE),
                    ("indicatorRef", COMPOSITE),
                    ("compositeWeight", COMPOSITE),
                ],
                p,
            );
            Some(obj)
        })
        .collect();
    if let Some(i) = &indicator
        && matches!(i.measure, Measure::Threshold { .. })
        && objectives.len() > 1
    {
        p.refuse(
            &spec.at("objectives"),
            format!(
                "has {} objectives; OpenSLO v1 allows one with a thresholdMetric",
                objectives.len()
            ),
        );
        return None;
    }
    if let Some(i) = &indicator {
        notes.extend(i.notes.iter().cloned());
    }
    if spec.get("alertPolicies").is_none_or(fields::is_empty) {
        notes.push(
            "no alertPolicies: the burn-rate alerts are off (set true to turn them on)".into(),
        );
    }
    let ids = objective_ids(name.unwrap_or("slo"), objectives, &spec.at("objectives"), p)?;
    // Each objective is checked even when the SLO's other fields failed,
    // so one run lists everything to change.
    let mut out = Vec::new();
    for (i, (obj, id)) in maps.into_iter().zip(ids).enumerate() {
        let Some(obj) = obj else {
            continue;
        };
        let mut notes = notes.clone();
        if objectives.len() > 1 {
            notes.push(format!("objective {} of {}", i + 1, objectives.len()));
        }
        if let Some(d) = obj.str("displayName", p) {
            notes.push(format!("objective displayName: {d}"));
        }
        let objective = target(&obj, p);
        let sli = indicator
            .as_ref()
            .and_then(|ind| objective_sli(ind, &obj, &mut notes, p));
        let budgeting = window::budgeting(method, &obj, p);
        if let (Some(objective), Some(sli), Some(budgeting), Some(window), Some(ind)) =
            (objective, sli, budgeting, &window, &indicator)
        {
            out.push(Converted {
                id,
                description: description.clone(),
                probes: ind.probes.clone(),
                objective,
                window: window.clone(),
                sli,
                budgeting,
                labels: labels.clone(),
                alerting: SloAlerting {
                    page: false,
                    ticket: false,
                },
                notes,
            });
        }
    }
    Some(out)
}

const COMPOSITE: &str = "composite SLOs (an objective with its own indicator or weight) can't be represented: authpulse has no composite budget; write one SLO per indicator";

/// The authpulse id rule: `[a-z0-9-]`, 1 to 63, no `-` at either end.
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 63
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-')
        && !id.ends_with('-')
}

/// `metadata.labels` as catalog labels.
fn labels(meta: &Map<'_>, p: &mut Problems) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Some(m) = meta.map("labels", p) else {
        return out;
    };
    for key in m.keys() {
        let path = m.at(&key);
        let value = match m.get(&key) {
            Some(Yaml::String(s)) => Some(s.clone()),
            Some(Yaml::Array(a)) => match a.as_slice() {
                [Yaml::String(s)] => Some(s.clone()),
                _ => {
                    p.refuse(
                        &path,
                        format!("{} values: an authpulse label has one", a.len()),
                    );
                    None
                }
            },
            other => {
                p.refuse(
                    &path,
                    format!("{} is not a string", other.map_or("null".into(), show)),
                );
                None
            }
        };
        if !valid_label_name(&key) {
            p.refuse(
                &path,
                "is not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*), which authpulse labels must be",
            );
        } else if RESERVED_LABELS.contains(&key.as_str()) {
            p.refuse(&path, "is a label authpulse sets itself");
        } else if let Some(v) = value {
            out.insert(key, v);
        }
    }
    out
}

/// The ids of the SLOs the objectives become: the name itself for one.
fn objective_ids(
    name: &str,
    objectives: &[Yaml],
    path: &str,
    p: &mut Problems,
) -> Option<Vec<String>> {
    if objectives.len() == 1 {
        return Some(vec![name.to_string()]);
    }
    let slugs: Vec<String> = objectives
        .iter()
        .map(|o| slug(o["displayName"].as_str().unwrap_or("")))
        .collect();
    let distinct: std::collections::BTreeSet<&String> = slugs.iter().collect();
    let named = slugs.iter().all(|s| !s.is_empty()) && distinct.len() == slugs.len();
    let ids: Vec<String> = if named {
        slugs.iter().map(|s| format!("{name}-{s}")).collect()
    } else {
        (1..=objectives.len())
            .map(|n| format!("{name}-{n}"))
            .collect()
    };
    match ids.iter().find(|id| !valid_id(id)) {
        Some(bad) => {
            p.refuse(
                path,
                format!("each objective becomes an SLO, and `{bad}` is not a valid id (at most 63 characters)"),
            );
            None
        }
        None => Some(ids),
    }
}

/// A display name as an id part: lower case, runs of anything else as `-`.
fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

/// `target` or `targetPercent` as the objective in percent (exact text).
fn target(obj: &Map<'_>, p: &mut Problems) -> Option<String> {
    let (key, scale, max) = match (obj.get("target"), obj.get("targetPercent")) {
        (Some(_), Some(_)) => {
            p.refuse(
                &obj.at("targetPercent"),
                "give target or targetPercent, not both",
            );
            return None;
        }
        (Some(_), None) => ("target", 2, 1),
        (None, Some(_)) => ("targetPercent", 0, 100),
        (None, None) => {
            p.refuse(&obj.at("target"), "is missing (target or targetPercent)");
            return None;
        }
    };
    let v = obj.get(key)?;
    match decimal(v) {
        Some(t) if t > Decimal::int(0) && t < Decimal::int(max) => Some(t.shift(scale).plain()),
        _ => {
            p.refuse(
                &obj.at(key),
                format!(
                    "{} is not a number in (0, {max}): authpulse objectives are strictly between 0 and 100 %",
                    show(v)
                ),
            );
            None
        }
    }
}

/// The catalog SLI of one objective over `indicator`.
///
/// A ratioMetric has no `op`/`value` in OpenSLO v1 (they compare a
/// thresholdMetric's values), so they are refused there. On a thresholdMetric
/// a run is good when it succeeded and `duration op value`: `lte V` is
/// authpulse's "at most V" exactly; runs are timed in whole microseconds, so
/// `lt V` is "at most the last whole microsecond below V", also exact, and
/// `lte` on a fraction of a microsecond rounds down for the same reason.
/// `gt`/`gte` ask for slow runs to be good, which authpulse can't express.
fn objective_sli(
    indicator: &Indicator,
    obj: &Map<'_>,
    notes: &mut Vec<String>,
    p: &mut Problems,
) -> Option<Sli> {
    match &indicator.measure {
        Measure::Ratio { latency } => {
            for key in ["op", "value"] {
                if obj.get(key).is_some() {
                    p.refuse(
                        &obj.at(key),
                        "op and value compare a thresholdMetric's values; this indicator is a ratioMetric, where OpenSLO v1 gives them no meaning (remove them)",
                    );
                }
            }
            Some(match latency {
                Some(threshold) => Sli::Latency {
                    threshold: *threshold,
                },
                None => Sli::Availability,
            })
        }
        Measure::Threshold { unit, to_micros } => {
            let op = obj.str("op", p);
            let value = obj.get("value");
            let (Some(op), Some(value)) = (op, value) else {
                p.refuse(&obj.path, "a thresholdMetric objective needs op and value");
                return None;
            };
            let Some(v) = decimal(value).filter(|v| !v.is_negative()) else {
                p.refuse(
                    &obj.at("value"),
                    format!("{} is not a duration in {unit} (a number ≥ 0)", show(value)),
                );
                return None;
            };
            let micros = v.shift(*to_micros);
            let threshold = match op {
                "lte" => micros.floor(),
                "lt" => micros.ceil().map(|c| c - 1),
                "gt" | "gte" => {
                    p.refuse(
                        &obj.at("op"),
                        format!("`{op}` makes slow runs good; authpulse's latency SLI counts a run good when it is at most the threshold (lte or lt)"),
                    );
                    return None;
                }
                other => {
                    p.refuse(
                        &obj.at("op"),
                        format!("`{other}` is not lte, lt, gte or gt"),
                    );
                    return None;
                }
            };
            let Some(us) = threshold
                .and_then(|t| u64::try_from(t).ok())
                .filter(|t| *t >= 1)
            else {
                p.refuse(
                    &obj.at("value"),
                    format!("{} {unit} leaves no run time that can be good (runs are timed in whole microseconds)", v.plain()),
                );
                return None;
            };
            let threshold = Duration::from_micros(us);
            notes.push(format!(
                "op: {op}, value: {} ({unit}): good = successful and {} {} {unit} = at most {} (runs are timed in whole microseconds)",
                v.plain(),
                if op == "lte" { "at most" } else { "faster than" },
                v.plain(),
                duration_text(threshold)
            ));
            Some(Sli::Latency { threshold })
        }
    }
}

/// A threshold as catalog text: `800ms`, or `499999us` when not whole ms.
fn duration_text(d: Duration) -> String {
    let us = d.as_micros();
    if us.is_multiple_of(1000) {
        format!("{}ms", us / 1000)
    } else {
        format!("{us}us")
    }
}

/// The catalog text for converted SLOs (JSON strings are valid YAML scalars).
pub fn to_yaml(slos: &[Converted], source: &str) -> String {
    let q = |s: &str| serde_json::Value::String(s.to_string()).to_string();
    let one_line = |s: &str| -> String {
        s.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect()
    };
    let mut out = format!(
        "# converted from {} by `authpulse import-openslo`\nslos:\n",
        one_line(source)
    );
    for s in slos {
        for n in &s.notes {
            out.push_str(&format!("  # {}\n", one_line(n)));
        }
        out.push_str(&format!("  - id: {}\n", q(&s.id)));
        if let Some(d) = &s.description {
            out.push_str(&format!("    description: {}\n", q(d)));
        }
        let probes: Vec<String> = s.probes.iter().map(|p| q(p)).collect();
        out.push_str(&format!("    probes: [{}]\n", probes.join(", ")));
        out.push_str(&format!("    objective: {}\n", s.objective));
        let window = match &s.window {
            Window::Rolling(d) => crate::slo::short(*d),
            Window::Calendar(c) => {
                let unit = match c.calendar {
                    CalendarUnit::Day => "day",
                    CalendarUnit::Week => "week",
                    CalendarUnit::Month => "month",
                };
                match &c.time_zone {
                    Some(tz) => format!("{{ calendar: {unit}, time_zone: {} }}", q(tz)),
                    None => format!("{{ calendar: {unit} }}"),
                }
            }
        };
        out.push_str(&format!("    window: {window}\n"));
        let sli = match &s.sli {
            Sli::Availability => "availability".to_string(),
            Sli::Latency { threshold } => {
                format!(
                    "{{ latency: {{ threshold: {} }} }}",
                    duration_text(*threshold)
                )
            }
        };
        out.push_str(&format!("    sli: {sli}\n"));
        let budgeting = match &s.budgeting {
            Budgeting::Occurrences => "occurrences".to_string(),
            Budgeting::Timeslices { slice, target } => format!(
                "{{ timeslices: {{ slice: {}, target: {target} }} }}",
                crate::slo::short(*slice)
            ),
        };
        out.push_str(&format!("    budgeting: {budgeting}\n"));
        if !s.labels.is_empty() {
            let labels: Vec<String> = s
                .labels
                .iter()
                .map(|(k, v)| format!("{k}: {}", q(v)))
                .collect();
            out.push_str(&format!("    labels: {{ {} }}\n", labels.join(", ")));
        }
        if s.alerting != SloAlerting::default() {
            out.push_str(&format!(
                "    alerting: {{ page: {}, ticket: {} }}\n",
                s.alerting.page, s.alerting.ticket
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests;
