//! Unit tests of the status page on a SQLite store: components keep their
//! last status without trustworthy data, the rules of `slo_condition`,
//! incidents through their life, the JSON and Atom renderings, badges.
use std::time::Duration;

use authpulse_proto::catalog::{Catalog, Sli};
use axum::http::{HeaderMap, HeaderValue};

use super::atom::urn_uuid;
use super::incidents::{num, short_id};
use super::page::sync_page;
use super::*;
use crate::alerting::{self, Firing};
use crate::slo::{BURN_WINDOWS, SloState, SloStatus};
use crate::store::Store;

/// A 30d 99 % SLO's status with `burns` per [`BURN_WINDOWS`] entry.
fn status(id: &str, state: SloState, burns: [Option<f64>; 7]) -> SloStatus {
    SloStatus {
        id: id.into(),
        description: None,
        objective: 99.0,
        window: Duration::from_secs(30 * 86_400),
        window_label: "30d".into(),
        window_start_ms: 0,
        sli: Sli::Availability,
        slice: None,
        good: 990,
        total: 1000,
        bad: 10,
        sli_value: Some(0.99),
        error_budget_remaining: 0.9,
        error_budget_events: 10.0,
        burn_rate_1h: burns[2],
        burn_rates: BURN_WINDOWS
            .iter()
            .zip(burns)
            .map(|((l, _), b)| (*l, b))
            .collect(),
        time_to_exhaustion: None,
        coverage: Some(1.0),
        state,
        regions: Vec::new(),
    }
}

const PAGE: [Option<f64>; 7] = [Some(20.0), None, Some(20.0), None, None, None, None];
const CALM: [Option<f64>; 7] = [Some(0.0); 7];

fn catalog() -> Catalog {
    let text = "probes:\n  - { id: a, kind: http, url: \"https://x.example\" }\n\
         slos:\n  - { id: s, probes: [a], objective: 99, window: 30d }\n\
         \x20 - { id: internal, probes: [a], objective: 99, window: 30d }\n\
         components:\n  - { id: c, name: Checks, slos: [s] }\n";
    authpulse_proto::catalog::load_str("c.yaml", text).expect("catalog")
}

async fn shown(
    store: &Store,
    catalog: &Catalog,
    s: SloStatus,
    firing: &[Firing],
    now: i64,
) -> ComponentStatus {
    let statuses = vec![s, status("internal", SloState::Ok, CALM)];
    let page = sync_page(store, catalog, &statuses, firing, now, true)
        .await
        .expect("sync");
    assert_eq!(page.components.len(), 1);
    page.components[0].status
}

#[tokio::test]
async fn without_trustworthy_data_a_component_keeps_its_last_status() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).await.expect("store");
    let catalog = catalog();
    use ComponentStatus::*;
    let insufficient = SloState::InsufficientData;
    assert_eq!(
        shown(&store, &catalog, status("s", SloState::Ok, PAGE), &[], 1).await,
        MajorOutage
    );
    // Too little data and nothing alarming in it: still major (kept).
    assert_eq!(
        shown(&store, &catalog, status("s", insufficient, CALM), &[], 2).await,
        MajorOutage
    );
    assert_eq!(
        shown(
            &store,
            &catalog,
            status("s", SloState::NoData, [None; 7]),
            &[],
            3
        )
        .await,
        MajorOutage
    );
    // Enough data again: operational, and updated_at says when.
    assert_eq!(
        shown(&store, &catalog, status("s", SloState::Ok, CALM), &[], 4).await,
        Operational
    );
    let kept = store.status_components().await.expect("states");
    assert_eq!((kept[0].created_ms, kept[0].updated_ms), (1, 4));
    // Too little data that is alarming still makes it worse.
    assert_eq!(
        shown(&store, &catalog, status("s", insufficient, PAGE), &[], 5).await,
        MajorOutage
    );
    // Most runs of the last 5 minutes failing: major before the page.
    let mut s = status("s", SloState::Ok, CALM);
    s.burn_rates[0].1 = Some(60.0);
    assert_eq!(shown(&store, &catalog, s, &[], 6).await, MajorOutage);
    // One region at page speed over 1h: partial.
    let mut s = status("s", SloState::Ok, CALM);
    s.regions.push(crate::slo::RegionStatus {
        region: "eu".into(),
        good: 80,
        total: 100,
        sli_value: Some(0.8),
        error_budget_remaining: 0.5,
        burn_rate_1h: Some(20.0),
    });
    assert_eq!(shown(&store, &catalog, s, &[], 7).await, PartialOutage);
    // Budget below 25 %: degraded.
    let mut s = status("s", SloState::Ok, CALM);
    s.error_budget_remaining = 0.2;
    assert_eq!(
        shown(&store, &catalog, s, &[], 8).await,
        DegradedPerformance
    );
}

#[tokio::test]
async fn escalations_open_critical_incidents_and_internal_slos_none() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).await.expect("store");
    let catalog = catalog();
    let firing = |slo: &str| Firing {
        alert: alerting::escalation_alert(slo),
        started_ms: 10,
        last_sent_ms: 10,
    };
    let calm = status("s", SloState::Ok, CALM);
    let both = [firing("s"), firing("internal")];
    assert_eq!(
        shown(&store, &catalog, calm.clone(), &both, 20).await,
        ComponentStatus::MajorOutage
    );
    let open = store.open_incidents().await.expect("open");
    assert_eq!(open.len(), 1, "only the SLO on the page: {open:?}");
    let i = &open[0];
    assert_eq!((i.slo.as_str(), i.impact.as_str()), ("s", "critical"));
    assert_eq!(i.name, "Checks: unexpected authorization results");
    assert_eq!((i.started_ms, i.created_ms), (10, 20));
    assert_eq!(i.severities, ["escalation"]);
    assert!(
        i.updates[0]
            .body
            .contains("an authorization check returned an unexpected result")
    );
    // Same alerts again: nothing new.
    shown(&store, &catalog, calm.clone(), &both, 21).await;
    assert_eq!(
        store.open_incidents().await.expect("open")[0].updates.len(),
        1
    );
    // Cleared: resolved once.
    assert_eq!(
        shown(&store, &catalog, calm.clone(), &[], 30).await,
        ComponentStatus::Operational
    );
    shown(&store, &catalog, calm, &[], 31).await;
    assert!(store.open_incidents().await.expect("open").is_empty());
    let all = store.recent_incidents(10).await.expect("all");
    assert_eq!(all.len(), 1);
    assert_eq!(
        (all[0].status.as_str(), all[0].resolved_ms),
        ("resolved", Some(30))
    );
    let statuses: Vec<&str> = all[0].updates.iter().map(|u| u.status.as_str()).collect();
    assert_eq!(statuses, ["resolved", "investigating"]);
    assert_eq!(all[0].updates[0].affected[0].old_status, "major_outage");
    assert_eq!(all[0].updates[0].affected[0].new_status, "operational");
}

#[test]
fn percent_never_rounds_up_to_100() {
    assert_eq!(percent(1.0), "100%");
    assert_eq!(percent(0.99996), "99.99%");
    assert_eq!(percent(0.9995), "99.95%");
    assert_eq!(percent(0.5), "50.00%");
    assert_eq!(percent(0.0), "0.00%");
}

#[test]
fn ids_are_stable_and_uuid_shaped() {
    assert_eq!(short_id(&["a", "b"]), short_id(&["a", "b"]));
    assert_ne!(short_id(&["a", "b"]), short_id(&["ab", ""]));
    let u = urn_uuid(&["x"]);
    let hex = u.trim_start_matches("urn:uuid:");
    let parts: Vec<&str> = hex.split('-').collect();
    assert_eq!(
        parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
        [8, 4, 4, 4, 12]
    );
    assert!(parts[2].starts_with('8'), "version 8: {u}");
    assert!("89ab".contains(&parts[3][..1]), "RFC variant: {u}");
}

#[test]
fn escaping_and_base_urls() {
    assert_eq!(xml_escape("a<b>&\"c'\u{1}"), "a&lt;b&gt;&amp;&quot;c&apos;");
    let mut h = HeaderMap::new();
    h.insert("host", HeaderValue::from_static("status.example:8080"));
    assert_eq!(base_url(&h), "http://status.example:8080");
    h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
    h.insert("x-forwarded-host", HeaderValue::from_static("evil\"<x>"));
    assert_eq!(base_url(&h), "https://status.example:8080");
    assert_eq!(base_url(&HeaderMap::new()), "http://localhost");
}

#[test]
fn statuses_order_and_indicators() {
    use ComponentStatus::*;
    assert!(Operational < DegradedPerformance && PartialOutage < MajorOutage);
    let got: Vec<&str> = [Operational, DegradedPerformance, PartialOutage, MajorOutage]
        .map(ComponentStatus::indicator)
        .to_vec();
    assert_eq!(got, ["none", "minor", "major", "critical"]);
    assert_eq!(
        ComponentStatus::parse("partial_outage"),
        Some(PartialOutage)
    );
    assert_eq!(ComponentStatus::parse("unknown"), None);
    assert_eq!(num(14.4), "14.4");
    assert_eq!(num(3.0), "3");
    assert_eq!(num(0.235), "0.235");
    assert_eq!(num(0.004), "0.004");
    assert_eq!(num(3.0 / 720.0), "0.00417");
    assert_eq!(num(0.0), "0");
}
