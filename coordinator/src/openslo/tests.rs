//! Unit tests of the importer's rules; the spec's own examples are in
//! coordinator/tests/openslo_spec_examples.rs.
use super::*;
use proptest::prelude::*;

fn slo(objective: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: openslo/v1\nkind: SLO\nmetadata: {{ name: login }}\nspec:\n  indicator:\n    metadata: {{ name: ok }}\n    spec:\n      ratioMetric:\n        good: {{ metricSource: {{ type: authpulse, spec: {{ probes: [corp-login] }} }} }}\n        total: {{ metricSource: {{ type: authpulse, spec: {{ probes: [corp-login] }} }} }}\n  timeWindow: [{{ duration: 28d, isRolling: true }}]\n  budgetingMethod: Occurrences\n  objectives: [{{ {objective} }}]\n{extra_spec}"
    )
}

fn messages(text: &str) -> Vec<String> {
    match convert(text) {
        Ok(c) => panic!("converted: {c:?}"),
        Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
    }
}

#[test]
fn output_loads_as_a_catalog_with_comments_for_what_has_no_field() {
    let text = slo(
        "displayName: Core, target: 0.999",
        "  description: Users can log in\n",
    )
    .replace(
        "metadata: { name: login }",
        "metadata: { name: login, displayName: Login, annotations: { owner.example/link: x } }",
    );
    let c = convert(&text).expect("converts");
    let yaml = to_yaml(&c, "slo.yaml");
    assert!(yaml.contains("  # displayName: Login\n"), "{yaml}");
    assert!(
        yaml.contains("  # annotation `owner.example/link`: `x`\n"),
        "{yaml}"
    );
    assert!(
        yaml.contains("    alerting: { page: false, ticket: false }\n"),
        "{yaml}"
    );
    let cat = authpulse_proto::catalog::load_str(
        "c.yaml",
        &format!(
            "probes:\n  - {{ id: corp-login, kind: http, url: \"https://idp.example/\" }}\n{yaml}"
        ),
    )
    .expect("valid catalog");
    assert_eq!(cat.slos[0].objective, 99.9);
    assert_eq!(cat.slos[0].description.as_deref(), Some("Users can log in"));
}

#[test]
fn bad_over_total_is_the_same_availability_and_raw_is_refused() {
    let bad = slo("target: 0.99", "").replace("good:", "bad:");
    let c = convert(&bad).expect("converts");
    assert_eq!(c[0].sli, Sli::Availability);
    let raw = slo("target: 0.99", "").replace(
        "        good: { metricSource: { type: authpulse, spec: { probes: [corp-login] } } }\n        total: { metricSource: { type: authpulse, spec: { probes: [corp-login] } } }\n",
        "        rawType: success\n        raw: { metricSource: { type: authpulse, spec: { probes: [corp-login] } } }\n",
    );
    let errors = messages(&raw);
    assert!(
        errors
            .iter()
            .any(|e| e.contains("spec.indicator.spec.ratioMetric.raw: a precomputed ratio")),
        "{errors:?}"
    );
}

#[test]
fn a_latency_threshold_on_the_good_source_is_a_latency_sli() {
    let text = slo("target: 0.99", "").replacen(
        "spec: { probes: [corp-login] }",
        "spec: { probes: [corp-login], latency_threshold: 750ms }",
        1,
    );
    let c = convert(&text).expect("converts");
    assert_eq!(
        c[0].sli,
        Sli::Latency {
            threshold: Duration::from_millis(750)
        }
    );
    // On total it would change what a run is: refused.
    let text = slo("target: 0.99", "").replace(
        "total: { metricSource: { type: authpulse, spec: { probes: [corp-login] } } }",
        "total: { metricSource: { type: authpulse, spec: { probes: [corp-login], latency_threshold: 750ms } } }",
    );
    let errors = messages(&text);
    assert!(
        errors
            .iter()
            .any(|e| e.contains("total.metricSource.spec.latency_threshold")),
        "{errors:?}"
    );
}

#[test]
fn other_sources_and_different_probe_sets_are_refused() {
    let text = slo("target: 0.99", "").replacen(
        "type: authpulse, spec: { probes: [corp-login] }",
        "type: Prometheus, spec: { query: up }",
        1,
    );
    let errors = messages(&text);
    assert!(
        errors
            .iter()
            .any(|e| e.contains("only `authpulse` sources name probes")),
        "{errors:?}"
    );
    let text = slo("target: 0.99", "").replacen("probes: [corp-login]", "probes: [corp-mfa]", 1);
    let errors = messages(&text);
    assert!(
        errors
            .iter()
            .any(|e| e.contains("both must count the runs of the same probes")),
        "{errors:?}"
    );
}

#[test]
fn targets_outside_authpulse_objectives_and_both_forms_are_refused() {
    for (objective, reason) in [
        ("target: 1", "(0, 1)"),
        ("target: 0", "(0, 1)"),
        ("targetPercent: 100", "(0, 100)"),
        ("target: 0.9, targetPercent: 90", "not both"),
        ("displayName: x", "is missing"),
        ("target: \"0.99\"", "(0, 1)"),
    ] {
        let errors = messages(&slo(objective, ""));
        assert!(
            errors.iter().any(|e| e.contains(reason)),
            "{objective}: {errors:?}"
        );
    }
}

#[test]
fn rolling_months_labels_and_service_conflicts() {
    let text = slo("target: 0.99", "").replace("duration: 28d", "duration: 1M");
    let errors = messages(&text);
    assert!(
        errors
            .iter()
            .any(|e| e.contains("a rolling `1M` has no fixed length")),
        "{errors:?}"
    );
    let text = slo("target: 0.99", "  service: idp\n").replace(
        "metadata: { name: login }",
        "metadata: { name: login, labels: { service: other, team: [a, b], cost-centre: x, severity: high } }",
    );
    let errors = messages(&text).join("\n");
    for want in [
        "metadata.labels.team: 2 values",
        "metadata.labels.cost-centre: is not a Prometheus label name",
        "metadata.labels.severity: is a label authpulse sets itself",
        "spec.service: `idp` but metadata.labels.service is `other`",
    ] {
        assert!(errors.contains(want), "{want}:\n{errors}");
    }
}

#[test]
fn documents_that_are_not_slos() {
    let errors = messages("apiVersion: openslo/v2alpha\nkind: SLO\nmetadata: { name: x }\n");
    assert!(errors[0].contains("not openslo/v1"), "{errors:?}");
    let errors =
        messages("apiVersion: openslo/v1\nkind: Service\nmetadata: { name: x }\nspec: {}\n");
    assert!(errors[0].contains("no `kind: SLO` document"), "{errors:?}");
    let errors = messages("apiVersion: openslo/v1\nkind: Budget\nmetadata: { name: x }\n");
    assert!(errors[0].contains("not an OpenSLO v1 kind"), "{errors:?}");
    let errors = messages(": : :\n- [");
    assert!(errors[0].contains("not YAML"), "{errors:?}");
}

proptest! {
    /// Any target written with up to 10 decimals becomes the objective with
    /// the point moved two places, digit for digit.
    #[test]
    fn targets_move_the_point_exactly(digits in "[0-9]{1,10}") {
        prop_assume!(!digits.trim_matches('0').is_empty());
        let target = format!("0.{digits}");
        let c = convert(&slo(&format!("target: {target}"), "")).expect("converts");
        let want = Decimal::parse(&target).expect("decimal").shift(2).plain();
        prop_assert_eq!(&c[0].objective, &want);
        // And the printed number reads back as the same float as target × 100
        // computed in decimal.
        let printed: f64 = c[0].objective.parse().expect("number");
        prop_assert_eq!(printed, want.parse::<f64>().expect("number"));
    }

    /// A threshold `lt`/`lte` V ms: a run of d µs is good by the converted
    /// SLI exactly when d op V×1000 holds.
    #[test]
    fn threshold_conversion_agrees_with_the_comparison(
        v_thousandths in 1u64..2_000_000, lt: bool, d in 0u64..2_100_000
    ) {
        let value = format!("{}.{:03}", v_thousandths / 1000, v_thousandths % 1000);
        let op = if lt { "lt" } else { "lte" };
        let text = format!(
            "apiVersion: openslo/v1\nkind: SLO\nmetadata: {{ name: t }}\nspec:\n  indicator:\n    spec:\n      thresholdMetric: {{ metricSource: {{ type: authpulse, spec: {{ probes: [p], unit: ms }} }} }}\n  timeWindow: [{{ duration: 1d, isRolling: true }}]\n  budgetingMethod: Occurrences\n  objectives: [{{ op: {op}, value: {value}, target: 0.9 }}]\n"
        );
        match convert(&text) {
            Ok(c) => {
                let Sli::Latency { threshold } = c[0].sli else {
                    return Err(TestCaseError::fail("not a latency SLI"));
                };
                let good_by_sli = u128::from(d) <= threshold.as_micros();
                // V ms in µs is v_thousandths exactly.
                let good_by_op = if lt { d < v_thousandths } else { d <= v_thousandths };
                prop_assert_eq!(good_by_sli, good_by_op);
            }
            // Only `lt` below 1 µs leaves nothing good.
            Err(e) => prop_assert!(lt && v_thousandths == 1, "{e:?}"),
        }
    }

    /// Arbitrary text never panics the importer.
    #[test]
    fn never_panics(s in "[a-zA-Z0-9:{}\\[\\], .\n-]{0,200}") {
        let _ = convert(&s);
    }
}
