//! The SLI of an OpenSLO SLO (inline `indicator` or a `kind: SLI` document
//! named by `indicatorRef`) and its metric sources, as authpulse probes.
//!
//! An `authpulse` metric source (`type: authpulse`, or `metricSourceRef` to
//! a `kind: DataSource` of that type, which has no connection details)
//! names probes or journey steps: `spec: { probes: [a, b] }` (or
//! `probe: a`). What it measures depends on where it sits:
//!
//! - `ratioMetric.total`: every run of those probes.
//! - `ratioMetric.good`: the successful runs; with
//!   `latency_threshold: 800ms`, the successful runs no slower than that
//!   (authpulse's latency SLI). `ratioMetric.bad` is its complement, so
//!   `bad/total` is the same SLI. Good (or bad) and total must name the
//!   same probes. `counter` changes nothing: runs are events, not samples.
//! - `thresholdMetric`: one value per run, its total duration (a journey
//!   step: the step's own) in `unit` (`ms` or `s`, required: the
//!   objective's `value` is a bare number); an unsuccessful run is never
//!   good, whatever its duration. The objective's `op`/`value` then decide
//!   (see `objective_sli` in the parent module).
//!
//! `ratioMetric.raw`/`rawType` (a precomputed ratio) and any other source
//! type are refused: authpulse computes its SLIs from runs it stored.
use std::collections::BTreeMap;
use std::time::Duration;

use yaml_rust2::Yaml;

use super::fields::{Map, Problems, is_empty, show};

/// What the indicator measures.
#[derive(Clone, Debug, PartialEq)]
pub enum Measure {
    /// Good runs / runs; `Some` = good runs are also within this latency.
    Ratio { latency: Option<Duration> },
    /// Each run's duration in `unit`; a value in that unit becomes
    /// microseconds by moving the point `to_micros` digits (3 for ms, 6 for s).
    Threshold { unit: &'static str, to_micros: i32 },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Indicator {
    pub probes: Vec<String>,
    pub measure: Measure,
    /// Descriptive fields kept as comments in the output.
    pub notes: Vec<String>,
}

/// The `kind: SLI` and `kind: DataSource` documents of the file, by name.
#[derive(Default)]
pub struct Library<'a> {
    pub slis: BTreeMap<String, &'a Yaml>,
    pub sources: BTreeMap<String, &'a Yaml>,
}

/// The indicator of an SLO `spec`.
pub fn indicator(spec: &Map<'_>, lib: &Library<'_>, p: &mut Problems) -> Option<Indicator> {
    match (spec.get("indicator"), spec.str("indicatorRef", p)) {
        (Some(_), Some(_)) => {
            p.refuse(
                &spec.at("indicatorRef"),
                "give either indicator or indicatorRef, not both",
            );
            None
        }
        (Some(inline), None) => {
            let m = Map::of(inline, &spec.at("indicator"), p)?;
            m.check_keys(&["metadata", "spec"], &[], p);
            sli(&m, lib, p)
        }
        (None, Some(name)) => {
            let Some(doc) = lib.slis.get(name) else {
                p.refuse(
                    &spec.at("indicatorRef"),
                    format!("no `kind: SLI` document named `{name}` in this file"),
                );
                return None;
            };
            let m = Map::of(doc, &format!("SLI `{name}`"), p)?;
            m.check_keys(&["apiVersion", "kind", "metadata", "spec"], &[], p);
            sli(&m, lib, p)
        }
        (None, None) => {
            p.refuse(&spec.path, "needs an indicator or an indicatorRef");
            None
        }
    }
}

/// An SLI object: `metadata` (descriptive) and `spec`.
fn sli(m: &Map<'_>, lib: &Library<'_>, p: &mut Problems) -> Option<Indicator> {
    let mut notes = Vec::new();
    if let Some(meta) = m.map("metadata", p) {
        meta.check_keys(&["name", "displayName", "labels", "annotations"], &[], p);
        for key in ["name", "displayName"] {
            if let Some(v) = meta.str(key, p) {
                notes.push(format!("indicator {key}: {v}"));
            }
        }
        describe_extra(&meta, "labels", &mut notes);
        describe_extra(&meta, "annotations", &mut notes);
    }
    let spec = m.map("spec", p)?;
    spec.check_keys(&["description", "ratioMetric", "thresholdMetric"], &[], p);
    if let Some(d) = spec.str("description", p) {
        notes.push(format!("indicator description: {d}"));
    }
    let (measure, probes) = match (spec.map("ratioMetric", p), spec.map("thresholdMetric", p)) {
        (Some(_), Some(_)) => {
            p.refuse(&spec.path, "has both ratioMetric and thresholdMetric");
            return None;
        }
        (Some(ratio), None) => ratio_metric(&ratio, lib, p)?,
        (None, Some(threshold)) => threshold_metric(&threshold, lib, p)?,
        (None, None) => {
            p.refuse(&spec.path, "needs a ratioMetric or a thresholdMetric");
            return None;
        }
    };
    Some(Indicator {
        probes,
        measure,
        notes,
    })
}

/// Labels or annotations of an SLI: descriptive only (authpulse SLIs have
/// none), kept as comments.
fn describe_extra(meta: &Map<'_>, key: &str, notes: &mut Vec<String>) {
    if let Some(Yaml::Hash(h)) = meta.get(key) {
        for (k, v) in h {
            if let Yaml::String(k) = k {
                notes.push(format!("indicator {key}: {k}: {}", show(v)));
            }
        }
    }
}

fn ratio_metric(
    ratio: &Map<'_>,
    lib: &Library<'_>,
    p: &mut Problems,
) -> Option<(Measure, Vec<String>)> {
    const RAW: &str = "a precomputed ratio (raw) can't be represented: authpulse computes its SLIs from the runs it stored";
    ratio.check_keys(
        &["counter", "good", "bad", "total"],
        &[("raw", RAW), ("rawType", RAW)],
        p,
    );
    if let Some(c) = ratio.get("counter")
        && !matches!(c, Yaml::Boolean(_))
    {
        p.refuse(&ratio.at("counter"), "must be true or false");
    }
    let numerator = match (ratio.get("good"), ratio.get("bad")) {
        (Some(_), Some(_)) => {
            p.refuse(&ratio.at("bad"), "give good or bad, not both");
            return None;
        }
        (Some(_), None) => "good",
        (None, Some(_)) => "bad",
        (None, None) => {
            p.refuse(&ratio.path, "needs good (or bad) and total");
            return None;
        }
    };
    let num = metric(
        ratio,
        numerator,
        lib,
        &["probes", "probe", "latency_threshold"],
        p,
    );
    let total = metric(ratio, "total", lib, &["probes", "probe"], p);
    if !ratio.has("total") {
        p.refuse(&ratio.at("total"), "is missing");
    }
    let (num, total) = (num?, total?);
    if num.probes != total.probes {
        p.refuse(
            &ratio.at(numerator),
            format!(
                "names probes {:?} but total names {:?}: both must count the runs of the same probes",
                num.probes, total.probes
            ),
        );
        return None;
    }
    Some((
        Measure::Ratio {
            latency: num.latency,
        },
        num.probes,
    ))
}

fn threshold_metric(
    threshold: &Map<'_>,
    lib: &Library<'_>,
    p: &mut Problems,
) -> Option<(Measure, Vec<String>)> {
    threshold.check_keys(&["metricSource"], &[], p);
    let source = source_of(threshold, lib, &["probes", "probe", "unit"], p)?;
    let Some(unit) = source.unit else {
        p.refuse(
            &format!("{}.unit", source.spec_path),
            "is missing: the objective's value is a bare number; say `ms` or `s`",
        );
        return None;
    };
    let to_micros = if unit == "ms" { 3 } else { 6 };
    Some((Measure::Threshold { unit, to_micros }, source.probes))
}

/// A resolved authpulse metric source.
struct Source {
    probes: Vec<String>,
    latency: Option<Duration>,
    unit: Option<&'static str>,
    spec_path: String,
}

/// `parent.<key>.metricSource`.
fn metric(
    parent: &Map<'_>,
    key: &str,
    lib: &Library<'_>,
    allowed: &[&str],
    p: &mut Problems,
) -> Option<Source> {
    let m = parent.map(key, p)?;
    m.check_keys(&["metricSource"], &[], p);
    source_of(&m, lib, allowed, p)
}

fn source_of(
    holder: &Map<'_>,
    lib: &Library<'_>,
    allowed: &[&str],
    p: &mut Problems,
) -> Option<Source> {
    let Some(ms) = holder.map("metricSource", p) else {
        p.refuse(&holder.at("metricSource"), "is missing");
        return None;
    };
    ms.check_keys(&["type", "metricSourceRef", "spec"], &[], p);
    let authpulse = |t: &str| t.eq_ignore_ascii_case("authpulse");
    let declared = ms.str("type", p);
    if let Some(name) = ms.str("metricSourceRef", p) {
        match lib.sources.get(name).map(|d| data_source_type(d, name, p)) {
            None => {
                p.refuse(
                    &ms.at("metricSourceRef"),
                    format!("no `kind: DataSource` document named `{name}` in this file"),
                );
                return None;
            }
            Some(Some(t)) if authpulse(&t) => {}
            Some(Some(t)) => {
                p.refuse(
                    &ms.at("metricSourceRef"),
                    format!(
                        "DataSource `{name}` has type `{t}`: only `authpulse` sources name probes"
                    ),
                );
                return None;
            }
            Some(None) => return None,
        }
    } else if !declared.is_some_and(authpulse) {
        p.refuse(
            &ms.at("type"),
            format!(
                "is {}: only `authpulse` sources name probes",
                declared.map_or("missing".to_string(), |t| format!("`{t}`"))
            ),
        );
        return None;
    }
    if let Some(t) = declared
        && !authpulse(t)
    {
        p.refuse(
            &ms.at("type"),
            format!("`{t}`: only `authpulse` sources name probes"),
        );
        return None;
    }
    let Some(spec) = ms.map("spec", p) else {
        p.refuse(&ms.at("spec"), "is missing: it names the probes");
        return None;
    };
    for k in spec.keys() {
        if !allowed.contains(&k.as_str()) {
            p.refuse(
                &spec.at(&k),
                format!(
                    "is not a key of an authpulse source here (here: {})",
                    allowed.join(", ")
                ),
            );
        }
    }
    let probes: Vec<String> = match (spec.get("probes"), spec.get("probe")) {
        (Some(Yaml::Array(a)), None) => {
            let names: Vec<String> = a
                .iter()
                .filter_map(|v| v.as_str().map(String::from))
                .filter(|s| !s.is_empty())
                .collect();
            if names.len() != a.len() || names.is_empty() {
                p.refuse(&spec.at("probes"), "must be a non-empty list of probe ids");
                return None;
            }
            names
        }
        (Some(Yaml::String(s)), None) | (None, Some(Yaml::String(s))) if !s.is_empty() => {
            vec![s.clone()]
        }
        (Some(_), Some(_)) => {
            p.refuse(&spec.at("probe"), "give probes or probe, not both");
            return None;
        }
        _ => {
            p.refuse(
                &spec.at("probes"),
                "is missing: which probes does it count?",
            );
            return None;
        }
    };
    let latency = match spec.str("latency_threshold", p) {
        None => None,
        Some(t) => match humantime::parse_duration(t) {
            Ok(d) if !d.is_zero() && d.subsec_nanos().is_multiple_of(1000) => Some(d),
            Ok(_) => {
                p.refuse(
                    &spec.at("latency_threshold"),
                    format!("`{t}`: runs are timed in whole microseconds, above zero"),
                );
                return None;
            }
            Err(e) => {
                p.refuse(&spec.at("latency_threshold"), format!("`{t}`: {e}"));
                return None;
            }
        },
    };
    let unit = match spec.str("unit", p) {
        None => None,
        Some("ms") => Some("ms"),
        Some("s") => Some("s"),
        Some(other) => {
            p.refuse(&spec.at("unit"), format!("`{other}`: ms or s"));
            return None;
        }
    };
    Some(Source {
        probes,
        latency,
        unit,
        spec_path: spec.path.clone(),
    })
}

/// The `spec.type` of a DataSource document, refusing connection details
/// (an authpulse source has none to honour).
fn data_source_type(doc: &Yaml, name: &str, p: &mut Problems) -> Option<String> {
    let path = format!("DataSource `{name}`");
    let m = Map::of(doc, &path, p)?;
    let spec = m.map("spec", p)?;
    spec.check_keys(&["type", "description", "connectionDetails"], &[], p);
    if spec.get("connectionDetails").is_some_and(|c| !is_empty(c)) {
        p.refuse(
            &spec.at("connectionDetails"),
            "an authpulse source has no connection details to honour",
        );
    }
    let t = spec.str("type", p)?;
    Some(t.to_string())
}
