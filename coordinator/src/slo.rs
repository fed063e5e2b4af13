//! SLO evaluation: how each catalog SLO stands right now, globally and per
//! region. The math (SLI, error budget, burn rate) is pure functions over
//! counts so it can be tested with exact numbers; the counts come from the
//! store. Windows are rolling or calendar (month/week/day in an IANA time
//! zone, so the budget resets at local midnight across DST changes).
//! Budgeting is by occurrences (good/total runs) or timeslices (good/total
//! slices). A region quorum makes a global slice bad only when enough
//! regions saw it bad; missing data is never failure, and too little of it
//! (coverage) makes the state `insufficient_data`.
//!
//! Counts come from the store's per-minute aggregates (`minute_counts`),
//! never from the raw results, so windows are minute-aligned: a window of
//! length `w` evaluated at `now` starts at the start of the minute that
//! contains `now - w`, and that partial first minute counts whole.
//!
//! A little over 800 lines: the SLI, budget and burn-rate math is one
//! concept, kept in one file so the arithmetic reads in one place.
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use authpulse_proto::catalog::{Budgeting, CalendarUnit, Catalog, Sli, SloDef, Window};

use crate::store::{LatencyThresholds, MinuteRow, MinuteSums, Store, StoreError, minute_of};

/// The windows burn rates are reported over (the SRE workbook's alerting
/// windows), with their labels.
pub const BURN_WINDOWS: [(&str, Duration); 7] = [
    ("5m", Duration::from_secs(5 * 60)),
    ("30m", Duration::from_secs(30 * 60)),
    ("1h", Duration::from_secs(3600)),
    ("2h", Duration::from_secs(2 * 3600)),
    ("6h", Duration::from_secs(6 * 3600)),
    ("1d", Duration::from_secs(86_400)),
    ("3d", Duration::from_secs(3 * 86_400)),
];

/// Index of the 1h window in [`BURN_WINDOWS`].
const ONE_HOUR: usize = 2;

/// How often the background task refreshes the SLO gauges.
pub const GAUGE_INTERVAL: Duration = Duration::from_secs(15);

/// What an SLO's numbers mean right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SloState {
    /// No data in the window at all.
    NoData,
    /// Coverage below the SLO's minimum: the numbers are not trustworthy.
    InsufficientData,
    /// Budget left.
    Ok,
    /// Budget used up (remaining ≤ 0).
    Exhausted,
}

impl SloState {
    pub fn as_str(self) -> &'static str {
        match self {
            SloState::NoData => "no_data",
            SloState::InsufficientData => "insufficient_data",
            SloState::Ok => "ok",
            SloState::Exhausted => "exhausted",
        }
    }
}

/// One region's view of an SLO (same units as the global numbers).
#[derive(Clone, Debug, PartialEq)]
pub struct RegionStatus {
    pub region: String,
    pub good: u64,
    pub total: u64,
    pub sli_value: Option<f64>,
    pub error_budget_remaining: f64,
    pub burn_rate_1h: Option<f64>,
}

/// One SLO's current standing.
#[derive(Clone, Debug, PartialEq)]
pub struct SloStatus {
    pub id: String,
    pub description: Option<String>,
    /// Percent, e.g. 99.9.
    pub objective: f64,
    /// Length of the window (a calendar window: its whole period).
    pub window: Duration,
    /// e.g. `28d` or `month Europe/Berlin`.
    pub window_label: String,
    /// Where the window starts (ms); for calendar windows, the period start.
    pub window_start_ms: i64,
    pub sli: Sli,
    /// `Some(slice)` for timeslice budgeting: good/total/bad count slices.
    pub slice: Option<Duration>,
    pub good: u64,
    pub total: u64,
    pub bad: u64,
    /// good/total; `None` without data.
    pub sli_value: Option<f64>,
    pub error_budget_remaining: f64,
    /// Bad units (events or slices) the budget allows: for occurrences
    /// `total × (1 − objective)`, for timeslices all slices of the window
    /// × (1 − objective).
    pub error_budget_events: f64,
    /// Over the last hour; `None` without data in that window.
    pub burn_rate_1h: Option<f64>,
    /// Per [`BURN_WINDOWS`] entry, same order; `None` without data.
    pub burn_rates: Vec<(&'static str, Option<f64>)>,
    /// At the current 1h burn rate, how long until the budget is gone
    /// (zero when already gone; `None` when nothing burns or no data).
    pub time_to_exhaustion: Option<Duration>,
    /// Share of expected probe runs that reported over the coverage window;
    /// `None` before there is history to judge.
    pub coverage: Option<f64>,
    pub state: SloState,
    pub regions: Vec<RegionStatus>,
}

/// The fraction of events allowed to be bad, e.g. 0.001 for 99.9 %.
pub fn allowed_bad_fraction(objective_percent: f64) -> f64 {
    1.0 - objective_percent / 100.0
}

/// good/total, `None` when there is nothing to divide.
pub fn sli_value(good: u64, total: u64) -> Option<f64> {
    (total > 0).then(|| good as f64 / total as f64)
}

/// `1 - (bad/total) / allowed`: 1 = untouched, 0 = used up, negative = overspent.
/// With no data nothing was spent, so the budget is whole (1.0).
pub fn error_budget_remaining(good: u64, total: u64, objective_percent: f64) -> f64 {
    match bad_fraction(good, total) {
        Some(bad) => 1.0 - bad / allowed_bad_fraction(objective_percent),
        None => 1.0,
    }
}

/// How fast the budget burns: `(bad/total) / allowed`; 1 = exactly on
/// budget over the SLO window. `None` without data.
pub fn burn_rate(good: u64, total: u64, objective_percent: f64) -> Option<f64> {
    bad_fraction(good, total).map(|bad| bad / allowed_bad_fraction(objective_percent))
}

/// Time until the remaining budget is used up at `burn_rate`: a burn rate
/// of 1 spends the whole budget over one SLO window.
pub fn time_to_exhaustion(
    budget_remaining: f64,
    burn_rate: Option<f64>,
    window: Duration,
) -> Option<Duration> {
    let rate = burn_rate.filter(|r| *r > 0.0)?;
    if budget_remaining <= 0.0 {
        return Some(Duration::ZERO);
    }
    Duration::try_from_secs_f64(budget_remaining * window.as_secs_f64() / rate).ok()
}

fn bad_fraction(good: u64, total: u64) -> Option<f64> {
    (total > 0).then(|| total.saturating_sub(good) as f64 / total as f64)
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Latency threshold in microseconds for latency SLIs.
fn threshold_us(sli: &Sli) -> Option<u64> {
    match sli {
        Sli::Availability => None,
        Sli::Latency { threshold } => {
            Some(u64::try_from(threshold.as_micros()).unwrap_or(u64::MAX))
        }
    }
}

/// Extra time `minute_counts` rows are kept past the longest SLO window.
pub const MINUTE_RETENTION_SLACK: Duration = Duration::from_secs(86_400);

/// The latency thresholds (µs) per series the catalog's SLIs use: what the
/// store keeps per-minute aggregates for besides probe availability. A
/// series is a probe id or a journey step (`probe/step`, which also gets
/// its availability, threshold 0).
pub fn latency_thresholds(catalog: &Catalog) -> LatencyThresholds {
    let mut out = LatencyThresholds::new();
    for slo in &catalog.slos {
        for p in &slo.probes {
            // A journey step (`probe/step`) has series of its own; 0 is its
            // availability.
            if p.contains('/') {
                out.entry(p.clone()).or_default().push(0);
            }
            if let Some(t) = threshold_us(&slo.sli) {
                out.entry(p.clone()).or_default().push(t);
            }
        }
    }
    for v in out.values_mut() {
        v.sort_unstable();
        v.dedup();
    }
    out
}

/// How long minute aggregates must be kept: the longest SLO window (or the
/// longest burn window) plus [`MINUTE_RETENTION_SLACK`].
pub fn minute_retention(catalog: &Catalog) -> Duration {
    catalog
        .slos
        .iter()
        .map(|s| window_span(&s.window))
        .chain(BURN_WINDOWS.iter().map(|(_, w)| *w))
        .max()
        .unwrap_or_default()
        + MINUTE_RETENTION_SLACK
}

/// The longest a window can reach back.
pub fn window_span(w: &Window) -> Duration {
    match w {
        Window::Rolling(d) => *d,
        Window::Calendar(c) => match c.calendar {
            CalendarUnit::Day => Duration::from_secs(86_400 + 3600),
            CalendarUnit::Week => Duration::from_secs(7 * 86_400 + 3600),
            CalendarUnit::Month => Duration::from_secs(31 * 86_400 + 3600),
        },
    }
}

/// The window at `now_ms`: (start ms, length, label). A calendar window is
/// the current period in its time zone (UTC by default); its length is the
/// whole period (a DST month is an hour shorter or longer).
pub fn window_at(w: &Window, now_ms: i64) -> (i64, Duration, String) {
    match w {
        Window::Rolling(d) => (now_ms.saturating_sub(duration_ms(*d)), *d, short(*d)),
        Window::Calendar(c) => {
            let tz: chrono_tz::Tz = c
                .time_zone
                .as_deref()
                .and_then(|z| z.parse().ok())
                .unwrap_or(chrono_tz::UTC);
            let (start, end) = calendar_period(c.calendar, tz, now_ms);
            let unit = match c.calendar {
                CalendarUnit::Day => "day",
                CalendarUnit::Week => "week",
                CalendarUnit::Month => "month",
            };
            let label = format!("{unit} {}", tz.name());
            let len = Duration::from_millis(u64::try_from(end - start).unwrap_or(0));
            (start, len, label)
        }
    }
}

/// `28d`, `6h`, `90m`: the largest unit that divides the duration.
pub fn short(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => "0s".into(),
        _ if s.is_multiple_of(86_400) => format!("{}d", s / 86_400),
        _ if s.is_multiple_of(3600) => format!("{}h", s / 3600),
        _ if s.is_multiple_of(60) => format!("{}m", s / 60),
        _ => format!("{s}s"),
    }
}

/// Start and end (ms) of the calendar period containing `now_ms` in `tz`:
/// local midnight of the first day of the day/ISO week/month.
pub fn calendar_period(unit: CalendarUnit, tz: chrono_tz::Tz, now_ms: i64) -> (i64, i64) {
    use chrono::{Datelike, Days, Months, NaiveDate, TimeZone};
    let now = tz
        .timestamp_millis_opt(now_ms)
        .single()
        .unwrap_or_else(|| tz.timestamp_millis_opt(0).earliest().expect("epoch"));
    let today = now.date_naive();
    let first: NaiveDate = match unit {
        CalendarUnit::Day => today,
        CalendarUnit::Week => today - Days::new(u64::from(today.weekday().num_days_from_monday())),
        CalendarUnit::Month => today.with_day(1).unwrap_or(today),
    };
    let next = match unit {
        CalendarUnit::Day => first + Days::new(1),
        CalendarUnit::Week => first + Days::new(7),
        CalendarUnit::Month => first + Months::new(1),
    };
    let local_midnight = |d: NaiveDate| -> i64 {
        let naive = d.and_hms_opt(0, 0, 0).unwrap_or_default();
        // Midnight can fall into a DST gap (e.g. America/Havana): the
        // period then starts when the day's clock does.
        match tz.from_local_datetime(&naive).earliest() {
            Some(t) => t.timestamp_millis(),
            None => tz
                .from_local_datetime(&(naive + chrono::Duration::hours(1)))
                .earliest()
                .map(|t| t.timestamp_millis())
                .unwrap_or(0),
        }
    };
    (local_midnight(first), local_midnight(next))
}

/// Points the store's minute aggregates at `catalog` (thresholds to
/// maintain, backfilling new ones; how long to keep minute rows). Called at
/// start and on every catalog reload.
pub async fn sync_store(store: &Store, catalog: &Catalog) -> Result<(), StoreError> {
    store.set_minute_retention(minute_retention(catalog));
    let n = store
        .set_latency_thresholds(latency_thresholds(catalog))
        .await?;
    if n > 0 {
        tracing::info!(
            backfilled = n,
            "latency thresholds backfilled into minute aggregates"
        );
    }
    Ok(())
}

/// The start minutes an SLO needs, in this order: its window, every burn
/// window, then the coverage window.
fn since_minutes(slo: &SloDef, now_ms: i64) -> Vec<i64> {
    let (start, _, _) = window_at(&slo.window, now_ms);
    std::iter::once(start)
        .chain(
            BURN_WINDOWS
                .iter()
                .map(|(_, w)| now_ms.saturating_sub(duration_ms(*w))),
        )
        .chain(std::iter::once(
            now_ms.saturating_sub(duration_ms(slo.coverage.window)),
        ))
        .map(minute_of)
        .collect()
}

/// Index of the coverage start in [`since_minutes`].
const COVERAGE: usize = 1 + BURN_WINDOWS.len();

/// Good/total units per entry of [`since_minutes`], globally and per region.
struct Counts {
    global: Vec<(u64, u64)>,
    regions: Vec<(String, Vec<(u64, u64)>)>,
}

/// The status from counts per [`since_minutes`] entry.
fn status_from_counts(
    slo: &SloDef,
    now_ms: i64,
    counts: &Counts,
    coverage: Option<f64>,
) -> SloStatus {
    let (window_start_ms, window, window_label) = window_at(&slo.window, now_ms);
    let slice = match slo.budgeting {
        Budgeting::Timeslices { slice, .. } => Some(slice),
        Budgeting::Occurrences => None,
    };
    // Timeslices: the budget is a share of all slices of the window, so a
    // fresh SLO is not "overspent" by its first bad minute.
    let window_units = slice.map(|s| (window.as_secs() / s.as_secs().max(1)) as f64);
    let budget = |good: u64, total: u64| match window_units {
        Some(units) => {
            let allowed = units * allowed_bad_fraction(slo.objective);
            if allowed > 0.0 {
                1.0 - total.saturating_sub(good) as f64 / allowed
            } else {
                1.0
            }
        }
        None => error_budget_remaining(good, total, slo.objective),
    };
    let (good, total) = counts.global.first().copied().unwrap_or((0, 0));
    let burn_rates: Vec<(&'static str, Option<f64>)> = BURN_WINDOWS
        .iter()
        .zip(counts.global.iter().skip(1))
        .map(|((label, _), (g, t))| (*label, burn_rate(*g, *t, slo.objective)))
        .collect();
    let burn_rate_1h = burn_rates.get(ONE_HOUR).and_then(|(_, r)| *r);
    let remaining = budget(good, total);
    let regions = counts
        .regions
        .iter()
        .map(|(region, c)| {
            let (g, t) = c.first().copied().unwrap_or((0, 0));
            RegionStatus {
                region: region.clone(),
                good: g,
                total: t,
                sli_value: sli_value(g, t),
                error_budget_remaining: budget(g, t),
                burn_rate_1h: c
                    .get(1 + ONE_HOUR)
                    .and_then(|(g, t)| burn_rate(*g, *t, slo.objective)),
            }
        })
        .collect();
    let state = if total == 0 {
        SloState::NoData
    } else if coverage.is_some_and(|c| c < slo.coverage.min) {
        SloState::InsufficientData
    } else if remaining <= 0.0 {
        SloState::Exhausted
    } else {
        SloState::Ok
    };
    SloStatus {
        id: slo.id.clone(),
        description: slo.description.clone(),
        objective: slo.objective,
        window,
        window_label,
        window_start_ms,
        sli: slo.sli.clone(),
        slice,
        good,
        total,
        bad: total.saturating_sub(good),
        sli_value: sli_value(good, total),
        error_budget_remaining: remaining,
        error_budget_events: window_units.unwrap_or(total as f64)
            * allowed_bad_fraction(slo.objective),
        burn_rate_1h,
        burn_rates,
        time_to_exhaustion: time_to_exhaustion(remaining, burn_rate_1h, window),
        coverage,
        state,
        regions,
    }
}

/// SLOs that judge every slice (timeslices, or a region quorum) need the
/// per-minute rows; the others add up pre-summed bands.
fn judges_slices(slo: &SloDef) -> bool {
    matches!(slo.budgeting, Budgeting::Timeslices { .. }) || slo.quorum.is_some_and(|q| q > 1)
}

/// Counts from the per-probe, per-region band sums (occurrences without quorum).
fn counts_from_sums(
    slo: &SloDef,
    since: &[i64],
    index: &HashMap<i64, usize>,
    sums: &MinuteSums,
) -> Counts {
    let th = threshold_us(&slo.sli).unwrap_or(0);
    let mut regions: BTreeMap<&str, Vec<(u64, u64)>> = BTreeMap::new();
    for ((p, t, region), v) in sums {
        if *t != th || !slo.probes.contains(p) {
            continue;
        }
        let acc = regions
            .entry(region.as_str())
            .or_insert_with(|| vec![(0, 0); since.len()]);
        for (slot, m) in acc.iter_mut().zip(since) {
            if let Some((g, t)) = index.get(m).and_then(|i| v.get(*i)) {
                slot.0 += g;
                slot.1 += t;
            }
        }
    }
    let mut global = vec![(0u64, 0u64); since.len()];
    for v in regions.values() {
        for (g, (a, b)) in global.iter_mut().zip(v) {
            g.0 += a;
            g.1 += b;
        }
    }
    Counts {
        global,
        regions: regions
            .into_iter()
            .map(|(r, v)| (r.to_string(), v))
            .collect(),
    }
}

/// Counts from per-minute rows for SLOs that judge slices. A region's slice
/// is bad when its good ratio is below the slice target (timeslices) or
/// when it had any bad run (occurrences with a quorum). Globally:
/// - timeslices without quorum: the slice pooled over regions is judged;
/// - with quorum N: a slice is bad only when ≥ N regions that reported in
///   it saw it bad (occurrences: the slice's runs then count as they are,
///   otherwise all as good: one region's blip is not an outage).
///
/// Slices are aligned to multiples of their length since the epoch; a
/// window counts every slice starting at or after its start minute's slice.
fn counts_from_rows(slo: &SloDef, since: &[i64], rows: &[MinuteRow]) -> Counts {
    let th = threshold_us(&slo.sli).unwrap_or(0);
    let (k, target) = match slo.budgeting {
        Budgeting::Timeslices { slice, target } => {
            ((slice.as_secs() / 60).max(1) as i64, Some(target))
        }
        Budgeting::Occurrences => (1, None),
    };
    let quorum = slo.quorum.filter(|q| *q > 1).map(|q| q as usize);
    // slice -> region -> (good, total)
    let mut slices: BTreeMap<i64, BTreeMap<&str, (u64, u64)>> = BTreeMap::new();
    for r in rows {
        if r.threshold_us != th || !slo.probes.contains(&r.probe_id) {
            continue;
        }
        let e = slices
            .entry(r.minute.div_euclid(k))
            .or_default()
            .entry(r.region.as_str())
            .or_default();
        e.0 += r.good;
        e.1 += r.total;
    }
    let bad_slice = |g: u64, t: u64| match target {
        Some(target) => t > 0 && (g as f64) < target * t as f64,
        None => g < t,
    };
    let units = |g: u64, t: u64| match target {
        Some(_) => (u64::from(!bad_slice(g, t)), 1),
        None => (g, t),
    };
    let starts: Vec<i64> = since.iter().map(|m| m.div_euclid(k)).collect();
    let mut global = vec![(0u64, 0u64); since.len()];
    let mut regions: BTreeMap<&str, Vec<(u64, u64)>> = BTreeMap::new();
    let add = |acc: &mut Vec<(u64, u64)>, slice: i64, (g, t): (u64, u64)| {
        for (slot, s) in acc.iter_mut().zip(&starts) {
            if slice >= *s {
                slot.0 += g;
                slot.1 += t;
            }
        }
    };
    for (slice, per_region) in &slices {
        let (pg, pt) = per_region
            .values()
            .fold((0, 0), |a, (g, t)| (a.0 + g, a.1 + t));
        if pt == 0 {
            continue;
        }
        let g = match quorum {
            None => units(pg, pt),
            Some(n) => {
                let bad_regions = per_region
                    .values()
                    .filter(|(g, t)| bad_slice(*g, *t))
                    .count();
                match target {
                    Some(_) => (u64::from(bad_regions < n), 1),
                    None if bad_regions >= n => (pg, pt),
                    None => (pt, pt),
                }
            }
        };
        add(&mut global, *slice, g);
        for (region, (rg, rt)) in per_region {
            if *rt == 0 {
                continue;
            }
            let acc = regions
                .entry(region)
                .or_insert_with(|| vec![(0, 0); since.len()]);
            add(acc, *slice, units(*rg, *rt));
        }
    }
    Counts {
        global,
        regions: regions
            .into_iter()
            .map(|(r, v)| (r.to_string(), v))
            .collect(),
    }
}

/// Share of expected runs that reported over the coverage window, per
/// probe and region that has history before it (a region that only just
/// appeared is not expected yet; one that went quiet is). `None` when no
/// probe/region has such history.
fn coverage(
    slo: &SloDef,
    catalog: &Catalog,
    since: &[i64],
    index: &HashMap<i64, usize>,
    sums: &MinuteSums,
) -> Option<f64> {
    let cov_i = index.get(since.get(COVERAGE)?)?;
    let oldest = since.iter().min()?;
    let oldest_i = index.get(oldest)?;
    let mut expected_pairs = 0usize;
    let mut covered = 0.0;
    for p in &slo.probes {
        let probe_id = p.split_once('/').map_or(p.as_str(), |(id, _)| id);
        let Some(def) = catalog.probe(probe_id) else {
            continue;
        };
        let per_run = def.interval.as_secs_f64().max(1.0);
        let expected = (slo.coverage.window.as_secs_f64() / per_run).max(1.0);
        let mut seen: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
        for ((sp, t, region), v) in sums {
            if sp == p && *t == 0 {
                let recent = v.get(*cov_i).map(|c| c.1).unwrap_or(0);
                let all = v.get(*oldest_i).map(|c| c.1).unwrap_or(0);
                seen.insert(region.as_str(), (recent, all));
            }
        }
        let mut regions: Vec<&str> = def
            .regions
            .as_ref()
            .map(|rs| rs.iter().map(String::as_str).collect())
            .unwrap_or_default();
        for r in seen.keys() {
            if !regions.contains(r) {
                regions.push(r);
            }
        }
        for r in regions {
            let (recent, all) = seen.get(r).copied().unwrap_or((0, 0));
            if all > recent {
                expected_pairs += 1;
                covered += (recent as f64 / expected).min(1.0);
            }
        }
    }
    (expected_pairs > 0).then(|| covered / expected_pairs as f64)
}

/// Evaluates one SLO at `now_ms`.
pub async fn evaluate_one(
    store: &Store,
    catalog: &Catalog,
    slo: &SloDef,
    now_ms: i64,
) -> Result<SloStatus, StoreError> {
    let one = Catalog {
        probes: catalog.probes.clone(),
        slos: vec![slo.clone()],
        ..Catalog::default()
    };
    let mut v = evaluate(store, &one, now_ms).await?;
    Ok(v.remove(0))
}

/// Evaluates every SLO of the catalog, in catalog order.
pub async fn evaluate(
    store: &Store,
    catalog: &Catalog,
    now_ms: i64,
) -> Result<Vec<SloStatus>, StoreError> {
    // All SLOs from one grouped query over the minute aggregates: every
    // distinct start minute of every SLO at once, combined here; SLOs that
    // judge slices add one query for the per-minute rows they need.
    let mut starts = BTreeSet::new();
    let mut probes = BTreeSet::new();
    let mut slice_probes = BTreeSet::new();
    let mut slice_since = i64::MAX;
    let plans: Vec<Vec<i64>> = catalog
        .slos
        .iter()
        .map(|slo| since_minutes(slo, now_ms))
        .collect();
    for (slo, since) in catalog.slos.iter().zip(&plans) {
        starts.extend(since.iter().copied());
        probes.extend(slo.probes.iter().cloned());
        if judges_slices(slo) {
            slice_probes.extend(slo.probes.iter().cloned());
            if let Some(m) = since.iter().min() {
                let k = match slo.budgeting {
                    Budgeting::Timeslices { slice, .. } => (slice.as_secs() / 60).max(1) as i64,
                    Budgeting::Occurrences => 1,
                };
                slice_since = slice_since.min(m.div_euclid(k) * k);
            }
        }
    }
    let starts: Vec<i64> = starts.into_iter().collect();
    let probes: Vec<String> = probes.into_iter().collect();
    let sums: MinuteSums = if starts.is_empty() {
        MinuteSums::new()
    } else {
        store
            .rollup_sums(&probes, &starts, minute_of(now_ms))
            .await?
    };
    let rows: Vec<MinuteRow> = if slice_probes.is_empty() {
        Vec::new()
    } else {
        let p: Vec<String> = slice_probes.into_iter().collect();
        store.minute_rows(&p, slice_since).await?
    };
    let index: HashMap<i64, usize> = starts.iter().enumerate().map(|(i, m)| (*m, i)).collect();
    let mut out = Vec::with_capacity(catalog.slos.len());
    for (slo, since) in catalog.slos.iter().zip(&plans) {
        let counts = if judges_slices(slo) {
            counts_from_rows(slo, since, &rows)
        } else {
            counts_from_sums(slo, since, &index, &sums)
        };
        let cov = coverage(slo, catalog, since, &index, &sums);
        out.push(status_from_counts(slo, now_ms, &counts, cov));
    }
    Ok(out)
}

/// Registers the SLO gauges' descriptions (HELP lines).
pub fn describe_metrics() {
    metrics::describe_gauge!(
        "authpulse_slo_sli",
        "Good/total (runs, or slices for timeslice budgeting) over `window`: the SLO window (its length or calendar period) or a burn window; NaN without data"
    );
    metrics::describe_gauge!(
        "authpulse_slo_error_budget_remaining",
        "Share of the error budget left over the SLO window: 1 untouched, 0 used up, negative overspent"
    );
    metrics::describe_gauge!(
        "authpulse_slo_window_seconds",
        "Length of the SLO window in seconds (a calendar window: its current whole period), which scales the burn-rate alert factors"
    );
    metrics::describe_gauge!(
        "authpulse_slo_objective",
        "The SLO's objective as a ratio (0.999 for 99.9 %)"
    );
    metrics::describe_gauge!(
        "authpulse_slo_burn_rate",
        "Bad fraction over `window` divided by the allowed bad fraction (NaN without data)"
    );
    metrics::describe_gauge!(
        "authpulse_slo_coverage",
        "Share of expected probe runs that reported over the SLO's coverage window (NaN before there is history)"
    );
    metrics::describe_gauge!(
        "authpulse_slo_state",
        "1 for the SLO's current state (no_data, insufficient_data, ok, exhausted), 0 for the others"
    );
    metrics::describe_gauge!(
        "authpulse_slo_region_sli",
        "Good/total over the SLO window as seen from one region (NaN without data)"
    );
}

/// Publishes the SLO gauges. "No data" is NaN, which Prometheus alert
/// comparisons treat as false rather than as 0 % availability.
pub fn export_gauges(statuses: &[SloStatus]) {
    for s in statuses {
        let slo = s.id.clone();
        metrics::gauge!("authpulse_slo_sli", "slo" => slo.clone(), "window" => s.window_label.clone())
            .set(s.sli_value.unwrap_or(f64::NAN));
        metrics::gauge!("authpulse_slo_error_budget_remaining", "slo" => slo.clone())
            .set(s.error_budget_remaining);
        metrics::gauge!("authpulse_slo_objective", "slo" => slo.clone()).set(s.objective / 100.0);
        metrics::gauge!("authpulse_slo_window_seconds", "slo" => slo.clone())
            .set(s.window.as_secs_f64());
        metrics::gauge!("authpulse_slo_coverage", "slo" => slo.clone())
            .set(s.coverage.unwrap_or(f64::NAN));
        for state in [
            SloState::NoData,
            SloState::InsufficientData,
            SloState::Ok,
            SloState::Exhausted,
        ] {
            metrics::gauge!("authpulse_slo_state", "slo" => slo.clone(), "state" => state.as_str())
                .set(if s.state == state { 1.0 } else { 0.0 });
        }
        for (window, rate) in &s.burn_rates {
            metrics::gauge!("authpulse_slo_burn_rate", "slo" => slo.clone(), "window" => *window)
                .set(rate.unwrap_or(f64::NAN));
            // The SLI over a burn window is 1 - rate × allowed.
            let sli = rate.map(|r| 1.0 - r * allowed_bad_fraction(s.objective));
            metrics::gauge!("authpulse_slo_sli", "slo" => slo.clone(), "window" => *window)
                .set(sli.unwrap_or(f64::NAN));
        }
        for r in &s.regions {
            metrics::gauge!("authpulse_slo_region_sli", "slo" => slo.clone(), "region" => r.region.clone())
                .set(r.sli_value.unwrap_or(f64::NAN));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn time_to_exhaustion_at_the_current_burn() {
        let w = Duration::from_secs(30 * 86_400);
        // Burning at 1x with the whole budget left lasts exactly one window.
        assert_eq!(time_to_exhaustion(1.0, Some(1.0), w), Some(w));
        // Half the budget at 14.4x: 30d * 0.5 / 14.4 = 25 h.
        assert_eq!(
            time_to_exhaustion(0.5, Some(14.4), w).map(|d| d.as_secs()),
            Some(25 * 3600)
        );
        assert_eq!(time_to_exhaustion(-0.2, Some(3.0), w), Some(Duration::ZERO));
        assert_eq!(time_to_exhaustion(0.7, Some(0.0), w), None);
        assert_eq!(time_to_exhaustion(0.7, None, w), None);
    }

    #[test]
    fn budget_exactly_used_up() {
        // 99.9 % over 1000 events allows exactly 1 bad one.
        assert!(close(error_budget_remaining(999, 1000, 99.9), 0.0));
        assert!(close(burn_rate(999, 1000, 99.9).expect("data"), 1.0));
        assert!(close(sli_value(999, 1000).expect("data"), 0.999));
    }

    #[test]
    fn budget_overspent_goes_negative() {
        // 2 bad of 1000 at 99.9 %: twice the budget spent.
        assert!(close(error_budget_remaining(998, 1000, 99.9), -1.0));
        assert!(close(burn_rate(998, 1000, 99.9).expect("data"), 2.0));
        // 100 bad of 1000: 100x.
        assert!(close(burn_rate(900, 1000, 99.9).expect("data"), 100.0));
        assert!(close(error_budget_remaining(900, 1000, 99.9), -99.0));
    }

    #[test]
    fn partial_budget() {
        // 99 % allows 1 %; 5 bad of 1000 = 0.5 % = half the budget.
        assert!(close(error_budget_remaining(995, 1000, 99.0), 0.5));
        assert!(close(burn_rate(995, 1000, 99.0).expect("data"), 0.5));
        // 14.4x burn: 144 bad of 10000 at 99.9 %.
        assert!(close(
            burn_rate(10_000 - 144, 10_000, 99.9).expect("data"),
            14.4
        ));
        // All good: budget whole, no burn.
        assert!(close(error_budget_remaining(1000, 1000, 99.9), 1.0));
        assert!(close(burn_rate(1000, 1000, 99.9).expect("data"), 0.0));
    }

    #[test]
    fn no_data() {
        assert_eq!(sli_value(0, 0), None);
        assert_eq!(burn_rate(0, 0, 99.9), None);
        assert!(close(error_budget_remaining(0, 0, 99.9), 1.0));
    }
}
