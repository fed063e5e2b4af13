//! Timeslices, region quorum, per-region SLIs, data coverage and calendar
//! windows: the engine against a brute-force reference over a seeded random
//! multi-region stream at a fixed clock, plus the scenarios the SLO issue
//! names (one region failing alone does not burn a quorum SLO, two of three
//! do; an agent that goes quiet lowers coverage and flags
//! `insufficient_data` without burning budget; a calendar month resets at
//! local midnight across a DST change).
mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use authpulse_coordinator::slo::{self, BURN_WINDOWS, SloState};
use authpulse_proto::catalog::{CalendarUnit, Window};
use common::*;
use rand::{RngExt, SeedableRng};

const MIN: i64 = 60_000;

struct Row {
    probe: &'static str,
    region: &'static str,
    ok: bool,
    started_ms: i64,
}

/// Per-agent sequence numbers continue across calls (the store ignores a
/// repeated (agent, seq) as a resend).
static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

async fn insert(h: &Harness, rows: &[Row]) {
    let mut by_region: BTreeMap<&str, Vec<_>> = BTreeMap::new();
    for r in rows {
        by_region.entry(r.region).or_default().push(result_at(
            &format!("agent-{}", r.region),
            r.region,
            SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            r.probe,
            r.ok,
            r.started_ms,
            1000,
        ));
    }
    for (region, results) in by_region {
        for chunk in results.chunks(500) {
            h.running
                .store()
                .insert_batch(&format!("agent-{region}"), chunk)
                .await
                .expect("insert");
        }
    }
}

/// What the reference needs to know about one SLO.
struct Def {
    probes: &'static [&'static str],
    /// Slice length in minutes and target for timeslices; `None` = occurrences.
    slices: Option<(i64, f64)>,
    quorum: Option<usize>,
}

type Units = (u64, u64);
type PerRegion = BTreeMap<&'static str, Units>;

/// Brute force: group raw rows by slice and region, judge, count.
fn reference(rows: &[Row], d: &Def, since_ms: i64) -> (Units, PerRegion) {
    let k = d.slices.map(|(k, _)| k).unwrap_or(1);
    let first_slice = (since_ms.div_euclid(MIN)).div_euclid(k);
    let mut slices: BTreeMap<i64, BTreeMap<&'static str, (u64, u64)>> = BTreeMap::new();
    for r in rows.iter().filter(|r| d.probes.contains(&r.probe)) {
        let slice = r.started_ms.div_euclid(MIN).div_euclid(k);
        if slice < first_slice {
            continue;
        }
        let e = slices
            .entry(slice)
            .or_default()
            .entry(r.region)
            .or_default();
        e.0 += u64::from(r.ok);
        e.1 += 1;
    }
    let bad = |g: u64, t: u64| match d.slices {
        Some((_, target)) => (g as f64) < target * t as f64,
        None => g < t,
    };
    let mut global = (0, 0);
    let mut regions: BTreeMap<&'static str, (u64, u64)> = BTreeMap::new();
    for per_region in slices.values() {
        let g: u64 = per_region.values().map(|c| c.0).sum();
        let t: u64 = per_region.values().map(|c| c.1).sum();
        let bad_regions = per_region.values().filter(|(g, t)| bad(*g, *t)).count();
        let (ug, ut) = match (d.slices, d.quorum) {
            (Some(_), None) => (u64::from(!bad(g, t)), 1),
            (Some(_), Some(n)) => (u64::from(bad_regions < n), 1),
            (None, Some(n)) if bad_regions >= n => (g, t),
            (None, Some(_)) => (t, t),
            (None, None) => (g, t),
        };
        global.0 += ug;
        global.1 += ut;
        for (region, (rg, rt)) in per_region {
            let e = regions.entry(region).or_default();
            match d.slices {
                Some(_) => {
                    e.0 += u64::from(!bad(*rg, *rt));
                    e.1 += 1;
                }
                None => {
                    e.0 += rg;
                    e.1 += rt;
                }
            }
        }
    }
    (global, regions)
}

const CATALOG: &str = r#"
probes:
  - { id: p-a, kind: http, url: "https://a.example/" }
  - { id: p-b, kind: http, url: "https://b.example/" }
slos:
  - id: slices-1m
    probes: [p-a, p-b]
    objective: 99
    window: 2d
    budgeting: { timeslices: { slice: 1m, target: 0.75 } }
  - id: slices-5m-quorum
    probes: [p-a]
    objective: 95
    window: 1d
    budgeting: { timeslices: { slice: 5m, target: 0.9 } }
    quorum: 2
  - id: events-quorum
    probes: [p-a, p-b]
    objective: 99.5
    window: 2d
    quorum: 2
  - id: events-plain
    probes: [p-b]
    objective: 99
    window: 2d
"#;

#[tokio::test]
async fn slices_quorum_and_regions_match_a_brute_force_reference() {
    let h = start_with(CATALOG).await;
    let now = now_ms();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x51_1ce5);
    let regions = ["eu-west", "us-east", "ap-south"];
    let mut rows = Vec::new();
    // Dense enough that minutes hold several runs, failing in bursts so
    // that some minutes see one region bad, some two, some three.
    for minute in 0..(3 * 24 * 60) {
        let burst: Vec<bool> = regions
            .iter()
            .map(|_| rng.random_range(0..100) < 15)
            .collect();
        for (ri, region) in regions.iter().enumerate() {
            if rng.random_range(0..10) == 0 {
                continue; // missing data in some minutes
            }
            for _ in 0..rng.random_range(1..4) {
                rows.push(Row {
                    probe: if rng.random_range(0..2) == 0 {
                        "p-a"
                    } else {
                        "p-b"
                    },
                    region,
                    ok: !(burst[ri] && rng.random_range(0..3) > 0),
                    started_ms: now - minute * MIN - rng.random_range(0..MIN),
                });
            }
        }
    }
    insert(&h, &rows).await;
    let defs = [
        Def {
            probes: &["p-a", "p-b"],
            slices: Some((1, 0.75)),
            quorum: None,
        },
        Def {
            probes: &["p-a"],
            slices: Some((5, 0.9)),
            quorum: Some(2),
        },
        Def {
            probes: &["p-a", "p-b"],
            slices: None,
            quorum: Some(2),
        },
        Def {
            probes: &["p-b"],
            slices: None,
            quorum: None,
        },
    ];
    let catalog = h.running.catalog();
    let statuses = slo::evaluate(h.running.store(), &catalog, now)
        .await
        .expect("evaluate");
    for ((status, def), d) in statuses.iter().zip(&catalog.slos).zip(&defs) {
        let (global, per_region) = reference(&rows, d, status.window_start_ms);
        assert_eq!((status.good, status.total), global, "{}", def.id);
        assert!(
            status.total > 100,
            "{}: the stream covers the window",
            def.id
        );
        assert!(status.bad > 0, "{}: the stream has bad units", def.id);
        let got: BTreeMap<&str, (u64, u64)> = status
            .regions
            .iter()
            .map(|r| (r.region.as_str(), (r.good, r.total)))
            .collect();
        assert_eq!(got, per_region, "{} per region", def.id);
        let allowed = 1.0 - def.objective / 100.0;
        for ((label, w), (_, got)) in BURN_WINDOWS.iter().zip(&status.burn_rates) {
            let ((g, t), _) = reference(&rows, d, now - w.as_millis() as i64);
            let want = (t > 0).then(|| (t - g) as f64 / t as f64 / allowed);
            match (got, want) {
                (Some(a), Some(b)) => {
                    assert!((a - b).abs() < 1e-12, "{} {label}: {a} vs {b}", def.id)
                }
                (a, b) => assert_eq!(*a, b, "{} {label}", def.id),
            }
        }
        match d.slices {
            // Timeslices: the budget is a share of every slice of the window.
            Some((k, _)) => {
                let window_slices = (status.window.as_secs() / (k as u64 * 60)) as f64;
                let want = 1.0 - status.bad as f64 / (window_slices * allowed);
                assert!(
                    (status.error_budget_remaining - want).abs() < 1e-12,
                    "{}",
                    def.id
                );
            }
            None => {
                let want = 1.0 - (status.bad as f64 / status.total as f64) / allowed;
                assert!(
                    (status.error_budget_remaining - want).abs() < 1e-12,
                    "{}",
                    def.id
                );
            }
        }
    }
}

const QUORUM: &str = r#"
probes:
  - { id: login, kind: http, url: "https://idp.example/" }
slos:
  - id: login-quorum
    probes: [login]
    objective: 99
    window: 1d
    quorum: 2
  - id: login-any
    probes: [login]
    objective: 99
    window: 1d
"#;

/// Every region runs `login` once a minute for `minutes`; `failing` regions
/// fail in the last `bad_minutes` of them.
fn fleet_rows(now: i64, minutes: i64, bad_minutes: i64, failing: &[&'static str]) -> Vec<Row> {
    let mut rows = Vec::new();
    for m in 0..minutes {
        for region in ["eu-west", "us-east", "ap-south"] {
            rows.push(Row {
                probe: "login",
                region,
                ok: !(m < bad_minutes && failing.contains(&region)),
                started_ms: now - m * MIN - 30_000,
            });
        }
    }
    rows
}

#[tokio::test]
async fn one_region_failing_alone_does_not_burn_a_quorum_slo_two_of_three_do() {
    let now = now_ms();
    // One region down for 20 minutes: a regional blip.
    let h = start_with(QUORUM).await;
    insert(&h, &fleet_rows(now, 120, 20, &["us-east"])).await;
    let s = slo::evaluate(h.running.store(), &h.running.catalog(), now)
        .await
        .expect("evaluate");
    let (quorum, any) = (&s[0], &s[1]);
    assert_eq!(quorum.bad, 0, "one region alone burns nothing: {quorum:?}");
    assert_eq!(quorum.error_budget_remaining, 1.0);
    assert_eq!(quorum.burn_rate_1h, Some(0.0));
    assert_eq!(any.bad, 20, "without quorum every failed run counts");
    assert!(any.burn_rate_1h.expect("data") > 1.0);
    let us = quorum
        .regions
        .iter()
        .find(|r| r.region == "us-east")
        .expect("region");
    assert_eq!(
        (us.good, us.total),
        (100, 120),
        "the region's own SLI still shows it"
    );
    drop(h);

    // Two of three regions down: an outage.
    let h = start_with(QUORUM).await;
    insert(&h, &fleet_rows(now, 120, 20, &["us-east", "eu-west"])).await;
    let s = slo::evaluate(h.running.store(), &h.running.catalog(), now)
        .await
        .expect("evaluate");
    assert_eq!(s[0].bad, 40, "both regions' failed runs count: {:?}", s[0]);
    assert!(s[0].error_budget_remaining < 0.0);
    assert!(s[0].burn_rate_1h.expect("data") > 14.4);
    assert_eq!(s[0].state, SloState::Exhausted);
}

const COVERAGE: &str = r#"
probes:
  - { id: login, kind: http, url: "https://idp.example/", interval: 60s }
slos:
  - id: login
    probes: [login]
    objective: 99
    window: 1d
    coverage: { window: 30m, min: 0.9 }
"#;

#[tokio::test]
async fn an_agent_that_goes_quiet_lowers_coverage_without_burning_budget() {
    let now = now_ms();
    let h = start_with(COVERAGE).await;
    // Two regions all good for 3 hours; us-east's agent then goes down for
    // the last 40 minutes.
    let rows: Vec<Row> = fleet_rows(now, 180, 0, &[])
        .into_iter()
        .filter(|r| r.region != "ap-south")
        .filter(|r| !(r.region == "us-east" && r.started_ms > now - 40 * MIN))
        .collect();
    insert(&h, &rows).await;
    let s = &slo::evaluate(h.running.store(), &h.running.catalog(), now)
        .await
        .expect("evaluate")[0];
    assert_eq!(s.bad, 0, "missing data is not failure");
    assert_eq!(s.error_budget_remaining, 1.0);
    let c = s.coverage.expect("coverage with history");
    assert!((0.45..=0.55).contains(&c), "one of two regions silent: {c}");
    assert_eq!(s.state, SloState::InsufficientData);

    // Both reporting: full coverage, state ok.
    let h = start_with(COVERAGE).await;
    let rows: Vec<Row> = fleet_rows(now, 180, 0, &[])
        .into_iter()
        .filter(|r| r.region != "ap-south")
        .collect();
    insert(&h, &rows).await;
    let s = &slo::evaluate(h.running.store(), &h.running.catalog(), now)
        .await
        .expect("evaluate")[0];
    assert!(s.coverage.expect("coverage") >= 0.96, "{:?}", s.coverage);
    assert_eq!(s.state, SloState::Ok);

    // No history before the coverage window (a fresh install): not judged.
    let h = start_with(COVERAGE).await;
    insert(&h, &fleet_rows(now, 10, 0, &[])).await;
    let s = &slo::evaluate(h.running.store(), &h.running.catalog(), now)
        .await
        .expect("evaluate")[0];
    assert_eq!(s.coverage, None);
    assert_eq!(s.state, SloState::Ok);
}

fn ms(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .expect("time")
        .timestamp_millis()
}

#[test]
fn calendar_months_start_at_local_midnight_across_dst() {
    let berlin: chrono_tz::Tz = "Europe/Berlin".parse().expect("tz");
    // March 2026 in Berlin: starts 1 March 00:00 CET (UTC+1); DST begins on
    // 29 March, so April starts at 00:00 CEST (UTC+2) and the month is one
    // hour short of 31 days.
    let (start, end) =
        slo::calendar_period(CalendarUnit::Month, berlin, ms("2026-03-31T21:59:59Z"));
    assert_eq!(start, ms("2026-02-28T23:00:00Z"));
    assert_eq!(end, ms("2026-03-31T22:00:00Z"));
    assert_eq!(end - start, (31 * 24 - 1) * 3_600_000);
    // One second later it is April in Berlin (still March in UTC).
    let (start, _) = slo::calendar_period(CalendarUnit::Month, berlin, ms("2026-03-31T22:00:00Z"));
    assert_eq!(start, ms("2026-03-31T22:00:00Z"));
    // October: DST ends on the 25th, the month is an hour long.
    let (start, end) =
        slo::calendar_period(CalendarUnit::Month, berlin, ms("2026-10-15T12:00:00Z"));
    assert_eq!(end - start, (31 * 24 + 1) * 3_600_000);
    // ISO weeks start on Monday: Sunday 29 March 2026 belongs to the week of the 23rd.
    let (start, end) = slo::calendar_period(CalendarUnit::Week, berlin, ms("2026-03-29T12:00:00Z"));
    assert_eq!(start, ms("2026-03-22T23:00:00Z"));
    assert_eq!(end, ms("2026-03-29T22:00:00Z"));
    // New York: the day of the spring change has 23 hours.
    let ny: chrono_tz::Tz = "America/New_York".parse().expect("tz");
    let (start, end) = slo::calendar_period(CalendarUnit::Day, ny, ms("2026-03-08T15:00:00Z"));
    assert_eq!(end - start, 23 * 3_600_000);
    let (_, len, label) = slo::window_at(
        &Window::Calendar(authpulse_proto::catalog::CalendarWindow {
            calendar: CalendarUnit::Month,
            time_zone: Some("Europe/Berlin".into()),
        }),
        ms("2026-03-15T00:00:00Z"),
    );
    assert_eq!(len, Duration::from_secs((31 * 24 - 1) * 3600));
    assert_eq!(label, "month Europe/Berlin");
}

const CALENDAR: &str = r#"
probes:
  - { id: login, kind: http, url: "https://idp.example/" }
slos:
  - id: monthly
    probes: [login]
    objective: 99
    window: { calendar: month, time_zone: Europe/Berlin }
"#;

#[tokio::test]
async fn the_budget_resets_at_the_month_boundary_in_the_time_zone() {
    let h = start_with(CALENDAR).await;
    // The latest start of a month in Berlin at least an hour ago (minute
    // aggregates of older months are pruned).
    let berlin: chrono_tz::Tz = "Europe/Berlin".parse().expect("tz");
    let now = now_ms();
    let (mut boundary, _) = slo::calendar_period(CalendarUnit::Month, berlin, now);
    if now - boundary < 3_600_000 {
        boundary = slo::calendar_period(CalendarUnit::Month, berlin, boundary - 1).0;
    }
    let mut rows = Vec::new();
    // The last two hours of the previous month burn a lot; the new one starts clean.
    for m in 1..=120 {
        rows.push(Row {
            probe: "login",
            region: "eu-west",
            ok: m % 2 == 0,
            started_ms: boundary - m * MIN,
        });
    }
    insert(&h, &rows).await;
    // Evaluated just before the boundary (windows have no end: "now" is
    // always the newest data, so the later rows come after this check).
    let catalog = h.running.catalog();
    let before = &slo::evaluate(h.running.store(), &catalog, boundary - 1)
        .await
        .expect("evaluate")[0];
    assert_eq!((before.good, before.total), (60, 120));
    assert!(before.error_budget_remaining < 0.0);
    let rows: Vec<Row> = (0..30)
        .map(|m| Row {
            probe: "login",
            region: "eu-west",
            ok: true,
            started_ms: boundary + m * MIN,
        })
        .collect();
    insert(&h, &rows).await;
    let after = &slo::evaluate(h.running.store(), &catalog, boundary + 30 * MIN)
        .await
        .expect("evaluate")[0];
    assert_eq!(after.window_start_ms, boundary);
    assert_eq!(
        (after.good, after.total),
        (30, 30),
        "last month's failures are not in this month's budget"
    );
    assert_eq!(after.error_budget_remaining, 1.0);
    // Burn windows are rolling: the last hour still sees last month's failures.
    assert!(after.burn_rate_1h.expect("data") > 0.0);
}

const STEPS: &str = r#"
probes:
  - id: offboard
    kind: journey
    steps:
      - { name: login, kind: http, url: "https://idp.example/login" }
      - { name: check, kind: http, url: "https://api.example/me" }
slos:
  - id: login-step-up
    probes: [offboard/login]
    objective: 99
    window: 1d
  - id: login-step-fast
    probes: [offboard/login]
    objective: 99
    window: 1d
    sli: { latency: { threshold: 200ms } }
  - id: journey
    probes: [offboard]
    objective: 99
    window: 1d
"#;

/// A journey run whose `login` step took `login_ms` and succeeded or not;
/// `check` always fails, so the run fails whenever it is reached.
fn journey_run(
    seq: u64,
    started_ms: i64,
    login_ok: bool,
    login_ms: u64,
) -> authpulse_proto::v1::ProbeResult {
    use authpulse_proto::v1::{Outcome, StepResult, Timings};
    let step = |name: &str, ok: bool, us: u64| StepResult {
        name: name.into(),
        kind: "http".into(),
        outcome: if ok {
            Outcome::Success
        } else {
            Outcome::Failure
        } as i32,
        timings: Some(Timings {
            total_us: us,
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut r = result_at(
        "agent-eu",
        "eu-west",
        seq,
        "offboard",
        false,
        started_ms,
        login_ms * 1000 + 5000,
    );
    r.steps = vec![
        step("login", login_ok, login_ms * 1000),
        step("check", false, 5000),
    ];
    r
}

#[tokio::test]
async fn a_journey_step_has_its_own_availability_and_latency_sli_backfilled_too() {
    let now = now_ms();
    // First without the step SLOs: their rows must be backfilled from the
    // steps stored with each result when the catalog starts naming them.
    let h = start_with(
        "probes:\n  - id: offboard\n    kind: journey\n    steps:\n      - { name: login, kind: http, url: \"https://idp.example/login\" }\n      - { name: check, kind: http, url: \"https://api.example/me\" }\n",
    )
    .await;
    let early: Vec<_> = (0..10)
        .map(|i| journey_run(i + 1, now - (30 - i as i64) * MIN, i % 5 != 0, 100 + 30 * i))
        .collect();
    h.running
        .store()
        .insert_batch("agent-eu", &early)
        .await
        .expect("insert");
    std::fs::write(&h.catalog_path, STEPS).expect("catalog");
    h.running.reload_catalog().await.expect("reload");
    let late: Vec<_> = (10..20)
        .map(|i| {
            journey_run(
                i + 1,
                now - (30 - i as i64) * MIN,
                i % 5 != 0,
                100 + 30 * (i - 10),
            )
        })
        .collect();
    h.running
        .store()
        .insert_batch("agent-eu", &late)
        .await
        .expect("insert");
    let s = slo::evaluate(h.running.store(), &h.running.catalog(), now)
        .await
        .expect("evaluate");
    // login failed in runs 0, 5, 10, 15.
    assert_eq!((s[0].good, s[0].total), (16, 20), "step availability");
    // login ok and <= 200 ms: durations 100..370 by 30 → 100,130,160,190
    // per ten runs, minus the failed ones (run 0 and 10 at 100 ms).
    assert_eq!((s[1].good, s[1].total), (6, 20), "step latency");
    // The journey as a whole failed every time (`check` fails).
    assert_eq!((s[2].good, s[2].total), (0, 20));
}

#[test]
fn naming_a_step_that_does_not_exist_is_a_catalog_error() {
    let bad = STEPS.replace(
        "probes: [offboard/login]\n    objective: 99\n    window: 1d\n  - id: login-step-fast",
        "probes: [offboard/logon]\n    objective: 99\n    window: 1d\n  - id: login-step-fast",
    );
    let err = authpulse_proto::catalog::load_str("c.yaml", &bad)
        .expect_err("invalid")
        .to_string();
    assert!(
        err.contains("journey `offboard` has no step `logon` (steps: login, check)"),
        "{err}"
    );
    let not_journey = "probes:\n  - { id: p, kind: http, url: \"https://x.example/\" }\nslos:\n  - { id: s, probes: [p/request], objective: 99, window: 1d }\n";
    let err = authpulse_proto::catalog::load_str("c.yaml", not_journey)
        .expect_err("invalid")
        .to_string();
    assert!(
        err.contains("only the steps of a journey can be named"),
        "{err}"
    );
}
