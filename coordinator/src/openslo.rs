//! OpenSLO v1 import: converts `kind: SLO` documents whose indicator reads
//! authpulse probes into catalog `slos:` entries (YAML text), so teams that
//! keep SLOs in OpenSLO don't write them twice. The indicator is a
//! `ratioMetric` (or a `thresholdMetric` for latency) whose `metricSource`
//! has `type: authpulse` and a spec naming the probes:
//!
//! ```yaml
//! metricSource: { type: authpulse, spec: { probes: [corp-login], latency_threshold: 800ms } }
//! ```
//!
//! Anything we can't represent faithfully is an error naming the document
//! and the field, never a silent approximation.
use serde_json::{Map, Value as Json};

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
    /// Percent.
    pub objective: f64,
    /// Catalog window: `28d` or `{ calendar: month, time_zone: X }` (YAML flow text).
    pub window: String,
    /// `availability` or `{ latency: { threshold: X } }`.
    pub sli: String,
    /// `occurrences` or `{ timeslices: { slice: X, target: Y } }`.
    pub budgeting: String,
}

fn yaml_to_json(y: &yaml_rust2::Yaml) -> Json {
    use yaml_rust2::Yaml;
    match y {
        Yaml::Real(s) => s
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Json::Number)
            .unwrap_or_else(|| Json::String(s.clone())),
        Yaml::Integer(i) => Json::from(*i),
        Yaml::String(s) => Json::String(s.clone()),
        Yaml::Boolean(b) => Json::Bool(*b),
        Yaml::Array(a) => Json::Array(a.iter().map(yaml_to_json).collect()),
        Yaml::Hash(h) => {
            let mut m = Map::new();
            for (k, v) in h {
                let key = match k {
                    Yaml::String(s) => s.clone(),
                    Yaml::Integer(i) => i.to_string(),
                    other => format!("{other:?}"),
                };
                m.insert(key, yaml_to_json(v));
            }
            Json::Object(m)
        }
        _ => Json::Null,
    }
}

/// Converts every `kind: SLO` document of `text` (other kinds are skipped,
/// an `indicatorRef` is resolved against `kind: SLI` documents in the same
/// text). Errors are collected, one per bad document.
pub fn convert(text: &str) -> Result<Vec<Converted>, Vec<ImportError>> {
    let docs = match yaml_rust2::YamlLoader::load_from_str(text) {
        Ok(d) => d,
        Err(e) => {
            return Err(vec![ImportError {
                doc: 0,
                name: String::new(),
                message: format!("not YAML: {e}"),
            }]);
        }
    };
    let docs: Vec<Json> = docs.iter().map(yaml_to_json).collect();
    let slis: Map<String, Json> = docs
        .iter()
        .filter(|d| d["kind"] == "SLI")
        .filter_map(|d| {
            Some((
                d["metadata"]["name"].as_str()?.to_string(),
                d["spec"].clone(),
            ))
        })
        .collect();
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (i, doc) in docs.iter().enumerate() {
        if doc["kind"] != "SLO" {
            continue;
        }
        let name = doc["metadata"]["name"].as_str().unwrap_or("").to_string();
        match convert_one(doc, &slis) {
            Ok(c) => out.push(c),
            Err(message) => errors.push(ImportError {
                doc: i + 1,
                name,
                message,
            }),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn convert_one(doc: &Json, slis: &Map<String, Json>) -> Result<Converted, String> {
    match doc["apiVersion"].as_str() {
        Some("openslo/v1") => {}
        other => return Err(format!("apiVersion {other:?} is not openslo/v1")),
    }
    let id = doc["metadata"]["name"]
        .as_str()
        .ok_or("metadata.name is missing")?
        .to_string();
    let spec = &doc["spec"];
    let indicator = if let Some(r) = spec["indicatorRef"].as_str() {
        slis.get(r).cloned().ok_or_else(|| {
            format!("spec.indicatorRef `{r}`: no `kind: SLI` document with that name")
        })?
    } else {
        spec["indicator"]["spec"].clone()
    };
    let (source, total, path) = if indicator["ratioMetric"].is_object() {
        (
            &indicator["ratioMetric"]["good"]["metricSource"],
            Some(&indicator["ratioMetric"]["total"]["metricSource"]),
            "spec.indicator.spec.ratioMetric.good.metricSource",
        )
    } else if indicator["thresholdMetric"].is_object() {
        (
            &indicator["thresholdMetric"]["metricSource"],
            None,
            "spec.indicator.spec.thresholdMetric.metricSource",
        )
    } else {
        return Err("the indicator needs a ratioMetric or thresholdMetric".into());
    };
    if source["type"] != "authpulse" {
        return Err(format!(
            "{path}.type is {} (only `authpulse` sources name probes)",
            source["type"]
        ));
    }
    if let Some(total) = total
        && !total.is_null()
        && total["spec"]["probes"] != source["spec"]["probes"]
    {
        return Err("ratioMetric good and total must name the same probes".into());
    }
    let probes: Vec<String> = match &source["spec"]["probes"] {
        Json::Array(a) => a
            .iter()
            .filter_map(|p| p.as_str().map(String::from))
            .collect(),
        Json::String(s) => vec![s.clone()],
        _ => match source["spec"]["probe"].as_str() {
            Some(p) => vec![p.to_string()],
            None => return Err(format!("{path}.spec.probes is missing")),
        },
    };
    if probes.is_empty() {
        return Err(format!("{path}.spec.probes is empty"));
    }
    let sli = match source["spec"]["latency_threshold"].as_str() {
        Some(t) => {
            humantime::parse_duration(t)
                .map_err(|e| format!("{path}.spec.latency_threshold `{t}`: {e}"))?;
            format!("{{ latency: {{ threshold: {t} }} }}")
        }
        None => "availability".to_string(),
    };
    let windows = spec["timeWindow"]
        .as_array()
        .ok_or("spec.timeWindow is missing")?;
    let [w] = windows.as_slice() else {
        return Err("exactly one spec.timeWindow is supported".into());
    };
    let duration = w["duration"]
        .as_str()
        .ok_or("spec.timeWindow[0].duration is missing")?;
    let window = if w["isRolling"].as_bool().unwrap_or(false) {
        crate::slo::short(openslo_duration(duration)?)
    } else {
        let unit = match duration {
            "1M" => "month",
            "1w" | "7d" => "week",
            "1d" => "day",
            other => {
                return Err(format!(
                    "calendar timeWindow duration `{other}`: only 1M, 1w and 1d are supported"
                ));
            }
        };
        match w["calendar"]["timeZone"].as_str() {
            Some(tz) => format!("{{ calendar: {unit}, time_zone: {tz} }}"),
            None => format!("{{ calendar: {unit} }}"),
        }
    };
    let objectives = spec["objectives"]
        .as_array()
        .ok_or("spec.objectives is missing")?;
    let [o] = objectives.as_slice() else {
        return Err("exactly one objective is supported (write one SLO per objective)".into());
    };
    let target = o["target"]
        .as_f64()
        .or_else(|| o["targetPercent"].as_f64().map(|p| p / 100.0))
        .ok_or("spec.objectives[0].target is missing")?;
    let budgeting = match spec["budgetingMethod"].as_str() {
        Some("Occurrences") | None => "occurrences".to_string(),
        Some("Timeslices") => {
            let t = o["timeSliceTarget"]
                .as_f64()
                .ok_or("Timeslices needs spec.objectives[0].timeSliceTarget")?;
            let slice = o["timeSliceWindow"].as_str().unwrap_or("1m");
            openslo_duration(slice)?;
            format!("{{ timeslices: {{ slice: {slice}, target: {t} }} }}")
        }
        Some(other) => {
            return Err(format!(
                "budgetingMethod `{other}` is not supported (Occurrences or Timeslices)"
            ));
        }
    };
    Ok(Converted {
        id,
        description: spec["description"].as_str().map(String::from),
        probes,
        objective: (target * 100.0 * 1e9).round() / 1e9,
        window,
        sli,
        budgeting,
    })
}

/// OpenSLO durations: a number and one of m, h, d, w (M only for calendars).
fn openslo_duration(s: &str) -> Result<std::time::Duration, String> {
    let (n, unit) = s.split_at(s.len().saturating_sub(1));
    let n: u64 = n
        .parse()
        .map_err(|_| format!("duration `{s}` is not <number><m|h|d|w>"))?;
    let secs = match unit {
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(format!("duration `{s}`: unit must be m, h, d or w")),
    };
    Ok(std::time::Duration::from_secs(n * secs))
}

/// The catalog text for converted SLOs (JSON strings are valid YAML scalars).
pub fn to_yaml(slos: &[Converted], source: &str) -> String {
    let q = |s: &str| Json::String(s.to_string()).to_string();
    let mut out = format!("# converted from {source} by `authpulse import-openslo`\nslos:\n");
    for s in slos {
        out.push_str(&format!("  - id: {}\n", q(&s.id)));
        if let Some(d) = &s.description {
            out.push_str(&format!("    description: {}\n", q(d)));
        }
        let probes: Vec<String> = s.probes.iter().map(|p| q(p)).collect();
        out.push_str(&format!("    probes: [{}]\n", probes.join(", ")));
        out.push_str(&format!("    objective: {}\n", s.objective));
        out.push_str(&format!("    window: {}\n", s.window));
        out.push_str(&format!("    sli: {}\n", s.sli));
        out.push_str(&format!("    budgeting: {}\n", s.budgeting));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCS: &str = r#"
apiVersion: openslo/v1
kind: SLI
metadata: { name: login-latency }
spec:
  thresholdMetric:
    metricSource: { type: authpulse, spec: { probes: [corp-login], latency_threshold: 800ms } }
---
apiVersion: openslo/v1
kind: SLO
metadata: { name: login-availability }
spec:
  description: Users can log in
  service: idp
  indicator:
    metadata: { name: login-ok }
    spec:
      ratioMetric:
        counter: true
        good: { metricSource: { type: authpulse, spec: { probes: [corp-login, corp-mfa] } } }
        total: { metricSource: { type: authpulse, spec: { probes: [corp-login, corp-mfa] } } }
  timeWindow: [{ duration: 28d, isRolling: true }]
  budgetingMethod: Occurrences
  objectives: [{ target: 0.999 }]
---
apiVersion: openslo/v1
kind: SLO
metadata: { name: login-fast }
spec:
  service: idp
  indicatorRef: login-latency
  timeWindow:
    - duration: 1M
      isRolling: false
      calendar: { startTime: "2024-01-01 00:00:00", timeZone: Europe/Berlin }
  budgetingMethod: Timeslices
  objectives: [{ target: 0.99, timeSliceTarget: 0.95, timeSliceWindow: 5m }]
"#;

    #[test]
    fn converts_ratio_threshold_rolling_and_calendar_slos_into_a_valid_catalog() {
        let c = convert(DOCS).expect("converts");
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].id, "login-availability");
        assert_eq!(c[0].probes, ["corp-login", "corp-mfa"]);
        assert_eq!(c[0].objective, 99.9);
        assert_eq!(c[0].window, "28d");
        assert_eq!(c[1].sli, "{ latency: { threshold: 800ms } }");
        assert_eq!(c[1].window, "{ calendar: month, time_zone: Europe/Berlin }");
        assert_eq!(
            c[1].budgeting,
            "{ timeslices: { slice: 5m, target: 0.95 } }"
        );
        // The output loads as a catalog next to the probes it names.
        let text = format!(
            "probes:\n  - {{ id: corp-login, kind: http, url: \"https://idp.example/\" }}\n  - {{ id: corp-mfa, kind: http, url: \"https://idp.example/mfa\" }}\n{}",
            to_yaml(&c, "slo.yaml")
        );
        let cat = authpulse_proto::catalog::load_str("c.yaml", &text).expect("valid catalog");
        assert_eq!(cat.slos.len(), 2);
        assert_eq!(cat.slos[0].objective, 99.9);
    }

    #[test]
    fn unsupported_documents_are_named_with_the_field() {
        let bad = DOCS
            .replace(
                "type: authpulse, spec: { probes: [corp-login, corp-mfa] } } }\n        total",
                "type: prometheus, spec: { query: up } } }\n        total",
            )
            .replace(
                "budgetingMethod: Timeslices",
                "budgetingMethod: RatioTimeslices",
            );
        let errs = convert(&bad).expect_err("invalid");
        assert_eq!(errs.len(), 2);
        assert!(
            errs[0].to_string().contains("`login-availability`"),
            "{}",
            errs[0]
        );
        assert!(
            errs[0].to_string().contains("only `authpulse` sources"),
            "{}",
            errs[0]
        );
        assert!(
            errs[1].to_string().contains("RatioTimeslices"),
            "{}",
            errs[1]
        );
    }
}
