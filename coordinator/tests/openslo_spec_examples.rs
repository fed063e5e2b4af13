//! The OpenSLO importer on the shapes of the OpenSLO specification's own
//! examples (its README and its `examples/` directory), rewritten with our
//! names and values and an `authpulse` metric source (the fixtures in
//! tests/openslo/, each saying which example it follows). Each one either
//! converts exactly — checked field by field on the catalog the output loads
//! as, next to the probes it names — or is refused with the field and reason.
use std::collections::BTreeMap;
use std::time::Duration;

use authpulse_coordinator::openslo::{convert, to_yaml};
use authpulse_proto::catalog::{
    Budgeting, CalendarUnit, CalendarWindow, Catalog, Sli, SloAlerting, SloDef, Window,
};

const PROBES: &[&str] = &[
    "corp-login",
    "corp-token",
    "corp-refresh",
    "ldap-lookup",
    "portal-home",
    "idp-health",
    "admin-login",
];

fn fixture(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/openslo")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Converts the fixture and loads the output as a catalog with the probes.
fn converted(name: &str) -> Catalog {
    let slos = convert(&fixture(name)).unwrap_or_else(|errors| {
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        panic!("{name} should convert:\n{}", text.join("\n"))
    });
    let mut text = String::from("probes:\n");
    for p in PROBES {
        text.push_str(&format!(
            "  - {{ id: {p}, kind: http, url: \"https://idp.example/{p}\" }}\n"
        ));
    }
    text.push_str(&to_yaml(&slos, name));
    authpulse_proto::catalog::load_str("converted.yaml", &text)
        .unwrap_or_else(|e| panic!("{name}: the output is not a valid catalog: {e}\n{text}"))
}

/// The refusals of the fixture, one line each (`path: reason`).
fn refused(name: &str) -> Vec<String> {
    match convert(&fixture(name)) {
        Ok(slos) => panic!("{name} should be refused, converted to {slos:?}"),
        Err(errors) => errors.iter().map(|e| e.message.clone()).collect(),
    }
}

fn has(errors: &[String], path: &str, reason: &str) {
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with(&format!("{path}: ")) && e.contains(reason)),
        "no refusal of `{path}` mentioning {reason:?} in:\n{}",
        errors.join("\n")
    );
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

const NO_ALERTS: SloAlerting = SloAlerting {
    page: false,
    ticket: false,
};

fn assert_slo(
    s: &SloDef,
    id: &str,
    probes: &[&str],
    objective: f64,
    window: Window,
    sli: Sli,
    budgeting: Budgeting,
) {
    assert_eq!(s.id, id);
    assert_eq!(s.probes, probes, "{id}");
    assert_eq!(s.objective, objective, "{id}");
    assert_eq!(s.window, window, "{id}");
    assert_eq!(s.sli, sli, "{id}");
    assert_eq!(s.budgeting, budgeting, "{id}");
}

#[test]
fn inline_indicator_without_window_or_budgeting_method_is_refused() {
    let errors = refused("inline-indicator.yaml");
    has(&errors, "spec.timeWindow", "no default");
    has(&errors, "spec.budgetingMethod", "required");
    assert_eq!(errors.len(), 2, "{errors:?}");
}

#[test]
fn inline_indicator_with_a_window_and_method_converts_exactly() {
    let text = fixture("inline-indicator.yaml").replace(
        "  objectives:\n",
        "  timeWindow: [{ duration: 1w, isRolling: true }]\n  budgetingMethod: Occurrences\n  objectives:\n",
    );
    let slos = convert(&text).expect("converts");
    let cat = authpulse_proto::catalog::load_str(
        "c.yaml",
        &format!(
            "probes:\n  - {{ id: corp-login, kind: http, url: \"https://idp.example/\" }}\n{}",
            to_yaml(&slos, "inline")
        ),
    )
    .expect("valid catalog");
    let [s] = cat.slos.as_slice() else {
        panic!("one SLO: {:?}", cat.slos)
    };
    assert_slo(
        s,
        "signin-slo",
        &["corp-login"],
        97.0,
        Window::Rolling(Duration::from_secs(7 * 86_400)),
        Sli::Availability,
        Budgeting::Occurrences,
    );
    assert_eq!(s.labels, labels(&[("service", "signin")]));
    assert_eq!(s.alerting, NO_ALERTS, "no alertPolicies: no alerts");
    // The display names are carried as comments, not dropped silently.
    let out = to_yaml(&slos, "inline");
    assert!(out.contains("# displayName: Sign-in SLO"), "{out}");
    assert!(
        out.contains("# objective displayName: Sign-in total errors"),
        "{out}"
    );
}

#[test]
fn two_objectives_become_two_slos_named_after_their_display_names() {
    let cat = converted("two-objectives.yaml");
    let [a, b] = cat.slos.as_slice() else {
        panic!("two SLOs: {:?}", cat.slos)
    };
    let w = Window::Rolling(Duration::from_secs(28 * 86_400));
    let probes = ["corp-token", "corp-refresh"];
    assert_slo(
        a,
        "token-slo-team-goal",
        &probes,
        97.0,
        w.clone(),
        Sli::Availability,
        Budgeting::Occurrences,
    );
    assert_slo(
        b,
        "token-slo-contract",
        &probes,
        99.95,
        w,
        Sli::Availability,
        Budgeting::Occurrences,
    );
}

#[test]
fn a_data_source_with_connection_details_is_refused() {
    let errors = refused("data-source-connection.yaml");
    has(
        &errors,
        "DataSource `remote-probes`.spec.connectionDetails",
        "no connection details",
    );
    // Without them, the reference resolves and the SLO converts.
    let text = fixture("data-source-connection.yaml").replace(
        "  connectionDetails:\n    endpoint: https://authpulse.other.example\n    token: not-a-real-token\n",
        "",
    );
    let slos = convert(&text).expect("converts");
    assert_eq!(slos[0].probes, ["corp-login"]);
    assert_eq!(slos[0].objective, "99.9");
}

#[test]
fn a_latency_threshold_objective_with_lt_converts_to_the_last_microsecond_below() {
    let cat = converted("occurrences-threshold.yaml");
    let [s] = cat.slos.as_slice() else {
        panic!("one SLO: {:?}", cat.slos)
    };
    // `lt 500` ms over whole-microsecond run times = at most 499.999 ms.
    assert_slo(
        s,
        "directory-search",
        &["ldap-lookup"],
        99.0,
        Window::Rolling(Duration::from_secs(14 * 86_400)),
        Sli::Latency {
            threshold: Duration::from_micros(499_999),
        },
        Budgeting::Occurrences,
    );
    assert_eq!(
        s.description.as_deref(),
        Some("A directory lookup answers in under half a second")
    );
    assert_eq!(s.labels, labels(&[("service", "directory")]));
    assert_eq!(s.alerting, NO_ALERTS);
    // lte is authpulse's own comparison: the value itself.
    let lte = fixture("occurrences-threshold.yaml").replace("op: lt", "op: lte");
    let c = convert(&lte).expect("converts");
    assert_eq!(
        c[0].sli,
        Sli::Latency {
            threshold: Duration::from_millis(500)
        }
    );
    // Seconds, with a fraction, exactly (0.8 s is not 799.999 ms).
    let secs = fixture("occurrences-threshold.yaml")
        .replace("unit: ms", "unit: s")
        .replace("op: lt", "op: lte")
        .replace("value: 500", "value: 0.8");
    let c = convert(&secs).expect("converts");
    assert_eq!(
        c[0].sli,
        Sli::Latency {
            threshold: Duration::from_millis(800)
        }
    );
}

#[test]
fn latency_thresholds_that_mean_something_else_are_refused() {
    let base = fixture("occurrences-threshold.yaml");
    // Slow runs good: not a latency SLI authpulse has.
    for op in ["gt", "gte"] {
        let errors = refused_text(&base.replace("op: lt", &format!("op: {op}")));
        has(&errors, "spec.objectives[0].op", "makes slow runs good");
    }
    // A bare number without a unit: which unit is the value in?
    let errors = refused_text(&base.replace("            unit: ms\n", ""));
    has(
        &errors,
        "spec.indicator.spec.thresholdMetric.metricSource.spec.unit",
        "say `ms` or `s`",
    );
    // No op/value on a thresholdMetric: nothing to compare.
    let errors = refused_text(&base.replace("      op: lt\n      value: 500\n", ""));
    has(&errors, "spec.objectives[0]", "needs op and value");
}

fn refused_text(text: &str) -> Vec<String> {
    match convert(text) {
        Ok(slos) => panic!("should be refused, converted to {slos:?}"),
        Err(errors) => errors.iter().map(|e| e.message.clone()).collect(),
    }
}

#[test]
fn ratio_timeslices_and_op_on_a_ratio_metric_are_refused() {
    let errors = refused("ratio-timeslices.yaml");
    has(&errors, "spec.budgetingMethod", "RatioTimeslices averages");
    has(&errors, "spec.objectives[0].op", "ratioMetric");
}

#[test]
fn a_one_minute_calendar_window_at_noon_is_refused_as_written() {
    let errors = refused("timeslices-calendar.yaml");
    has(
        &errors,
        "spec.timeWindow[0].duration",
        "one day (1d), one ISO week (1w) or one month (1M)",
    );
    has(&errors, "spec.objectives[0].op", "ratioMetric");
}

#[test]
fn a_calendar_month_from_the_first_at_midnight_converts_per_objective() {
    let cat = converted("timeslices-calendar-month.yaml");
    let [internal, contract] = cat.slos.as_slice() else {
        panic!("two SLOs: {:?}", cat.slos)
    };
    let month = Window::Calendar(CalendarWindow {
        calendar: CalendarUnit::Month,
        time_zone: Some("Europe/Paris".into()),
    });
    let slices = Budgeting::Timeslices {
        slice: Duration::from_secs(60),
        target: 0.98,
    };
    assert_slo(
        internal,
        "idp-uptime-internal-target",
        &["idp-health"],
        99.7,
        month.clone(),
        Sli::Availability,
        slices.clone(),
    );
    assert_slo(
        contract,
        "idp-uptime-contract",
        &["idp-health"],
        99.0,
        month,
        Sli::Availability,
        slices,
    );
    // The same month starting at noon, or on the 2nd, is not an authpulse month.
    let text = fixture("timeslices-calendar-month.yaml");
    let errors = refused_text(&text.replace("2023-03-01 00:00:00", "2023-03-01 12:00:00"));
    has(
        &errors,
        "spec.timeWindow[0].calendar.startTime",
        "not local midnight",
    );
    let errors = refused_text(&text.replace("2023-03-01 00:00:00", "2023-03-02 00:00:00"));
    has(
        &errors,
        "spec.timeWindow[0].calendar.startTime",
        "not the 1st",
    );
    // Without a time zone the boundaries are unknown.
    let errors = refused_text(&text.replace("        timeZone: Europe/Paris\n", ""));
    has(
        &errors,
        "spec.timeWindow[0].calendar.timeZone",
        "no default time zone",
    );
}

#[test]
fn a_week_starting_on_saturday_noon_is_refused_and_on_monday_midnight_converts() {
    let errors = refused("low-traffic-week.yaml");
    has(
        &errors,
        "spec.timeWindow[0].calendar.startTime",
        "not local midnight",
    );
    has(&errors, "spec.objectives[0].op", "ratioMetric");
    // 2023-04-03 is a Monday.
    let text = fixture("low-traffic-week.yaml")
        .replace("2023-04-01 12:00:00", "2023-04-03 00:00:00")
        .replace("      op: gt\n", "");
    let slos = convert(&text).expect("converts");
    assert_eq!(
        slos[0].window,
        Window::Calendar(CalendarWindow {
            calendar: CalendarUnit::Week,
            time_zone: Some("Asia/Tokyo".into()),
        })
    );
    assert_eq!(slos[0].objective, "99.95");
    // A Saturday midnight is still not a week boundary.
    let text = fixture("low-traffic-week.yaml")
        .replace("2023-04-01 12:00:00", "2023-04-01 00:00:00")
        .replace("      op: gt\n", "");
    has(
        &refused_text(&text),
        "spec.timeWindow[0].calendar.startTime",
        "starting on Monday",
    );
}

#[test]
fn an_alert_policy_is_refused() {
    let errors = refused("alert-policy.yaml");
    has(&errors, "spec.alertPolicies", "no authpulse equivalent");
    assert_eq!(errors.len(), 1, "{errors:?}");
}

#[test]
fn issue_16_threshold_with_a_numeric_slice_converts_exactly() {
    let cat = converted("threshold-timeslices.yaml");
    let [s] = cat.slos.as_slice() else {
        panic!("one SLO: {:?}", cat.slos)
    };
    // Was: an availability SLI with 1-minute slices.
    assert_slo(
        s,
        "login-fast",
        &["corp-login"],
        99.0,
        Window::Calendar(CalendarWindow {
            calendar: CalendarUnit::Month,
            time_zone: Some("Europe/Berlin".into()),
        }),
        Sli::Latency {
            threshold: Duration::from_millis(800),
        },
        Budgeting::Timeslices {
            slice: Duration::from_secs(5 * 60),
            target: 0.95,
        },
    );
    assert_eq!(
        s.labels,
        labels(&[
            ("service", "signin"),
            ("team", "identity"),
            ("tier", "gold")
        ])
    );
    // Was: startTime ignored. Mid-month it is refused.
    let text = fixture("threshold-timeslices.yaml").replace("2024-01-01", "2024-01-15");
    has(
        &refused_text(&text),
        "spec.timeWindow[0].calendar.startTime",
        "not the 1st",
    );
    // A fractional number of minutes is not a slice authpulse has.
    let text =
        fixture("threshold-timeslices.yaml").replace("timeSliceWindow: 5", "timeSliceWindow: 2.5");
    has(
        &refused_text(&text),
        "spec.objectives[0].timeSliceWindow",
        "whole number of minutes",
    );
}

#[test]
fn composite_objectives_are_refused() {
    let errors = refused("composite.yaml");
    has(&errors, "spec.objectives[0].indicatorRef", "composite");
    has(&errors, "spec.objectives[0].compositeWeight", "composite");
}

#[test]
fn unknown_fields_anywhere_are_refused_not_ignored() {
    let text = fixture("two-objectives.yaml")
        .replace(
            "  service: tokens\n",
            "  service: tokens\n  serviceLevel: gold\n",
        )
        .replace(
            "    - displayName: Contract\n",
            "    - displayName: Contract\n      targetPercentile: 99\n",
        );
    let errors = refused_text(&text);
    has(&errors, "spec.serviceLevel", "not a field");
    has(
        &errors,
        "spec.objectives[1].targetPercentile",
        "not a field",
    );
}
