//! Admission of probe results: what an authenticated agent may report.
//!
//! An mTLS certificate proves who is talking, not that what it says is true
//! or sane. Before a result is stored it must fit the stream it came on: the
//! probe (and, for a journey, each step) is assigned to the agent's region in
//! the running catalog or the one before it (a reload can overtake results in
//! flight); it started within `[now - raw_retention, now + max_result_skew]`
//! by the coordinator's clock; its duration and timings fit the probe's
//! timeout plus slack; its enums are ones this build knows; its strings and
//! step list are bounded. A result that does not fit is refused with a code
//! (a bounded metric label) and a reason, and never stored. Because only
//! assigned probes pass, the series an agent can create (roll-ups, metric
//! labels) are bounded by the catalog, not by what the agent invents.
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use authpulse_proto::catalog::{Catalog, KindSpec};
use authpulse_proto::v1::{FailureClass, Outcome, ProbeResult, StepResult, Timings};

/// Longest result detail accepted (the agent cuts details far shorter).
pub const MAX_DETAIL_BYTES: usize = 16 * 1024;
/// Longest step detail accepted.
pub const MAX_STEP_DETAIL_BYTES: usize = 4 * 1024;
/// Most steps one result may carry.
pub const MAX_STEPS: usize = 64;
/// Longest step name and kind.
const MAX_STEP_NAME: usize = 128;

/// Extra time a run may take beyond its timeout (the agent's timeout fires
/// on a loaded machine a little late, and the run then has to wind down).
const SLACK: Duration = Duration::from_secs(10);

/// Why a result was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// Bounded label: metric label, audit key, wire `RefusedResult.code`.
    pub code: &'static str,
    pub reason: String,
}

impl Refusal {
    fn new(code: &'static str, reason: String) -> Refusal {
        Refusal { code, reason }
    }
}

/// Every refusal code, for metric descriptions and documentation.
pub const CODES: &[&str] = &[
    "unassigned_probe",
    "unknown_step",
    "too_many_steps",
    "future_timestamp",
    "expired_timestamp",
    "duration_out_of_range",
    "unknown_enum",
    "inconsistent_outcome",
    "oversized_string",
];

/// What a probe may report, derived from its catalog entry.
#[derive(Debug)]
struct ProbeRule {
    /// Longest duration (and any timing) in microseconds.
    max_us: u64,
    /// For a journey: step name → step kind. `None` for other kinds, whose
    /// steps are the kind's own phases.
    steps: Option<HashMap<String, &'static str>>,
}

/// The probes one region's agents may report in one catalog version.
#[derive(Debug)]
pub struct RegionRules {
    pub version: u64,
    probes: HashMap<String, ProbeRule>,
}

impl RegionRules {
    pub fn new(catalog: &Catalog, version: u64, region: &str) -> RegionRules {
        let probes = catalog
            .probes_for_region(region)
            .map(|p| {
                let max = p.timeout.saturating_add(SLACK);
                let rule = ProbeRule {
                    max_us: u64::try_from(max.as_micros()).unwrap_or(u64::MAX),
                    steps: match &p.spec {
                        KindSpec::Journey(j) => Some(
                            j.steps
                                .iter()
                                .map(|s| (s.name.clone(), s.spec.kind()))
                                .collect(),
                        ),
                        _ => None,
                    },
                };
                (p.id.clone(), rule)
            })
            .collect();
        RegionRules { version, probes }
    }
}

/// Time limits of admission.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    /// Coordinator's receive time, ms since the epoch.
    pub now_ms: i64,
    /// Oldest accepted start: results older than raw retention would be
    /// pruned at once and can only rewrite history.
    pub max_age: Duration,
    /// How far ahead of the coordinator's clock a start may lie.
    pub max_future: Duration,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Checks one result against the rules of the catalog versions the agent
/// may be reporting from (current first). `Ok` = store it.
pub fn admit(r: &ProbeResult, rules: &[Arc<RegionRules>], w: Window) -> Result<(), Refusal> {
    let Some(rule) = rules.iter().find_map(|v| v.probes.get(&r.probe_id)) else {
        let versions: Vec<String> = rules.iter().map(|v| v.version.to_string()).collect();
        return Err(Refusal::new(
            "unassigned_probe",
            format!(
                "probe {} is not assigned to this agent's region (catalog version {})",
                quoted(&r.probe_id),
                versions.join(" or ")
            ),
        ));
    };
    let earliest = w.now_ms.saturating_sub(ms(w.max_age));
    let latest = w.now_ms.saturating_add(ms(w.max_future));
    if r.started_unix_ms > latest {
        return Err(Refusal::new(
            "future_timestamp",
            format!(
                "started {} ms ahead of the coordinator's clock (at most {} ms accepted: fleet.max_result_skew)",
                r.started_unix_ms.saturating_sub(w.now_ms),
                ms(w.max_future)
            ),
        ));
    }
    if r.started_unix_ms < earliest {
        return Err(Refusal::new(
            "expired_timestamp",
            format!(
                "started {} ms before the coordinator's clock, older than raw_retention",
                w.now_ms.saturating_sub(r.started_unix_ms)
            ),
        ));
    }
    check_duration("duration", r.duration_us, rule.max_us)?;
    check_timings(r.timings.as_ref(), rule.max_us)?;
    let outcome = known_outcome(r.outcome)?;
    let class = known_class(r.failure_class)?;
    // A success can't carry a failure class (an escalation hidden in a
    // success would page but count as good). A failure without a class is
    // merely vague: it counts as bad, which is safe.
    if outcome == Outcome::Success && class != FailureClass::Unspecified {
        return Err(Refusal::new(
            "inconsistent_outcome",
            format!(
                "outcome {} with failure class {}",
                outcome.as_str_name(),
                class.as_str_name()
            ),
        ));
    }
    if r.detail.len() > MAX_DETAIL_BYTES {
        return Err(Refusal::new(
            "oversized_string",
            format!(
                "detail of {} bytes (at most {MAX_DETAIL_BYTES})",
                r.detail.len()
            ),
        ));
    }
    if r.steps.len() > MAX_STEPS {
        return Err(Refusal::new(
            "too_many_steps",
            format!("{} steps (at most {MAX_STEPS})", r.steps.len()),
        ));
    }
    for s in &r.steps {
        check_step(s, rule)?;
    }
    Ok(())
}

fn check_step(s: &StepResult, rule: &ProbeRule) -> Result<(), Refusal> {
    if s.name.len() > MAX_STEP_NAME || s.kind.len() > MAX_STEP_NAME {
        return Err(Refusal::new(
            "oversized_string",
            format!("a step name or kind over {MAX_STEP_NAME} bytes"),
        ));
    }
    if s.detail.len() > MAX_STEP_DETAIL_BYTES {
        return Err(Refusal::new(
            "oversized_string",
            format!(
                "step {} detail of {} bytes (at most {MAX_STEP_DETAIL_BYTES})",
                quoted(&s.name),
                s.detail.len()
            ),
        ));
    }
    if let Some(steps) = &rule.steps {
        match steps.get(&s.name) {
            Some(kind) if *kind == s.kind => {}
            Some(kind) => {
                return Err(Refusal::new(
                    "unknown_step",
                    format!(
                        "step {} reported as kind {}, the catalog says {kind}",
                        quoted(&s.name),
                        quoted(&s.kind)
                    ),
                ));
            }
            None => {
                return Err(Refusal::new(
                    "unknown_step",
                    format!("the journey has no step {}", quoted(&s.name)),
                ));
            }
        }
    }
    known_outcome(s.outcome)?;
    known_class(s.failure_class)?;
    check_timings(s.timings.as_ref(), rule.max_us)
}

fn check_duration(what: &str, us: u64, max_us: u64) -> Result<(), Refusal> {
    if us > max_us {
        return Err(Refusal::new(
            "duration_out_of_range",
            format!("{what} {us} µs exceeds the probe's timeout plus slack ({max_us} µs)"),
        ));
    }
    Ok(())
}

fn check_timings(t: Option<&Timings>, max_us: u64) -> Result<(), Refusal> {
    let Some(t) = t else { return Ok(()) };
    check_duration("total", t.total_us, max_us)?;
    for (what, v) in [
        ("dns", t.dns_us),
        ("connect", t.connect_us),
        ("tls", t.tls_us),
        ("ttfb", t.ttfb_us),
    ] {
        if let Some(v) = v {
            check_duration(what, v, max_us)?;
        }
    }
    Ok(())
}

fn known_outcome(v: i32) -> Result<Outcome, Refusal> {
    match Outcome::try_from(v) {
        Ok(o @ (Outcome::Success | Outcome::Failure)) => Ok(o),
        _ => Err(Refusal::new(
            "unknown_enum",
            format!("outcome {v} is neither success nor failure"),
        )),
    }
}

fn known_class(v: i32) -> Result<FailureClass, Refusal> {
    FailureClass::try_from(v)
        .map_err(|_| Refusal::new("unknown_enum", format!("failure class {v} is unknown")))
}

/// Peer-supplied text quoted in reasons and logs: bounded and escaped.
pub fn quoted(s: &str) -> String {
    let cut: String = s.chars().take(80).collect();
    if cut.len() < s.len() {
        format!("{cut:?}…")
    } else {
        format!("{cut:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use authpulse_proto::catalog;

    fn rules(yaml: &str, region: &str) -> Arc<RegionRules> {
        let c = catalog::load_str("t.yaml", yaml).expect("catalog");
        Arc::new(RegionRules::new(&c, 7, region))
    }

    const CATALOG: &str = "probes:
  - id: us-only
    kind: tcp
    regions: [us]
    address: 127.0.0.1:1
    timeout: 5s
  - id: j
    kind: journey
    timeout: 10s
    steps:
      - name: reach
        kind: tcp
        address: 127.0.0.1:1
";

    const NOW: i64 = 1_800_000_000_000;

    fn window() -> Window {
        Window {
            now_ms: NOW,
            max_age: Duration::from_secs(7 * 86_400),
            max_future: Duration::from_secs(120),
        }
    }

    fn good(probe: &str) -> ProbeResult {
        authpulse_tests::results::probe_result("a", "us", 1, probe)
            .started(NOW - 1_000)
            .timings(Timings {
                total_us: 2_000,
                ..Default::default()
            })
            .assignment_version(0)
            .build()
    }

    fn code(r: &ProbeResult, region: &str) -> Option<&'static str> {
        admit(r, &[rules(CATALOG, region)], window())
            .err()
            .map(|e| e.code)
    }

    #[test]
    fn assigned_probes_only() {
        assert_eq!(code(&good("us-only"), "us"), None);
        assert_eq!(code(&good("us-only"), "eu"), Some("unassigned_probe"));
        assert_eq!(code(&good("made-up"), "us"), Some("unassigned_probe"));
        // The previous catalog version still counts during a reload.
        let old = rules(CATALOG, "us");
        let new = rules("probes: []\n", "us");
        assert!(admit(&good("us-only"), &[new, old], window()).is_ok());
    }

    #[test]
    fn timestamps_in_window() {
        let mut r = good("us-only");
        r.started_unix_ms = NOW + 80 * 365 * 86_400_000;
        assert_eq!(code(&r, "us"), Some("future_timestamp"));
        r.started_unix_ms = i64::MAX;
        assert_eq!(code(&r, "us"), Some("future_timestamp"));
        r.started_unix_ms = NOW + 119_000;
        assert_eq!(code(&r, "us"), None);
        r.started_unix_ms = NOW - 8 * 86_400_000;
        assert_eq!(code(&r, "us"), Some("expired_timestamp"));
        r.started_unix_ms = i64::MIN;
        assert_eq!(code(&r, "us"), Some("expired_timestamp"));
    }

    #[test]
    fn durations_and_enums() {
        let mut r = good("us-only");
        r.duration_us = u64::MAX;
        assert_eq!(code(&r, "us"), Some("duration_out_of_range"));
        r.duration_us = 14_000_000; // 5 s timeout + 10 s slack
        assert_eq!(code(&r, "us"), None);
        r.timings = Some(Timings {
            ttfb_us: Some(u64::MAX),
            ..Default::default()
        });
        assert_eq!(code(&r, "us"), Some("duration_out_of_range"));
        let mut r = good("us-only");
        r.outcome = 99;
        assert_eq!(code(&r, "us"), Some("unknown_enum"));
        r.outcome = 0;
        assert_eq!(code(&r, "us"), Some("unknown_enum"));
        let mut r = good("us-only");
        r.failure_class = 99;
        assert_eq!(code(&r, "us"), Some("unknown_enum"));
        r.failure_class = FailureClass::Escalation as i32;
        assert_eq!(code(&r, "us"), Some("inconsistent_outcome"));
        r.outcome = Outcome::Failure as i32;
        assert_eq!(code(&r, "us"), None);
    }

    #[test]
    fn journey_steps_and_sizes() {
        let mut r = good("j");
        r.steps.push(StepResult {
            name: "reach".into(),
            kind: "tcp".into(),
            outcome: Outcome::Success as i32,
            ..Default::default()
        });
        assert_eq!(code(&r, "eu"), None);
        r.steps[0].kind = "http".into();
        assert_eq!(code(&r, "eu"), Some("unknown_step"));
        r.steps[0].kind = "tcp".into();
        r.steps[0].name = "other".into();
        assert_eq!(code(&r, "eu"), Some("unknown_step"));
        let mut r = good("j");
        r.detail = "x".repeat(MAX_DETAIL_BYTES + 1);
        assert_eq!(code(&r, "eu"), Some("oversized_string"));
        let mut r = good("us-only");
        r.steps = vec![StepResult::default(); MAX_STEPS + 1];
        assert_eq!(code(&r, "us"), Some("too_many_steps"));
    }
}
