//! SLO evaluation: how each catalog SLO stands right now. The math (SLI,
//! error budget remaining, burn rate) is pure functions over counts so it can
//! be tested with exact numbers; the counts come from the store. This
//! version supports what catalog validation lets through: rolling windows,
//! occurrence budgeting, availability or latency SLIs, all regions pooled.
//!
//! Counts come from the store's per-minute aggregates (`minute_counts`),
//! never from the raw results, so windows are minute-aligned: a window of
//! length `w` evaluated at `now` starts at the start of the minute that
//! contains `now - w`, and that partial first minute counts whole.
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use authpulse_proto::catalog::{Catalog, Sli, SloDef, Window};

use crate::store::{LatencyThresholds, MinuteSums, Store, StoreError, minute_of};

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

/// One SLO's current standing.
#[derive(Clone, Debug, PartialEq)]
pub struct SloStatus {
    pub id: String,
    pub description: Option<String>,
    /// Percent, e.g. 99.9.
    pub objective: f64,
    pub window: Duration,
    pub sli: Sli,
    pub good: u64,
    pub total: u64,
    pub bad: u64,
    /// good/total; `None` without data.
    pub sli_value: Option<f64>,
    pub error_budget_remaining: f64,
    /// Bad events the window may hold: total × (1 − objective).
    pub error_budget_events: f64,
    /// Over the last hour; `None` without data in that window.
    pub burn_rate_1h: Option<f64>,
    /// Per [`BURN_WINDOWS`] entry, same order; `None` without data.
    pub burn_rates: Vec<(&'static str, Option<f64>)>,
    /// At the current 1h burn rate, how long until the budget is gone
    /// (zero when already gone; `None` when nothing burns or no data).
    pub time_to_exhaustion: Option<Duration>,
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

/// The latency thresholds (µs) per probe the catalog's SLIs use: what the
/// store keeps per-minute aggregates for besides availability.
pub fn latency_thresholds(catalog: &Catalog) -> LatencyThresholds {
    let mut out = LatencyThresholds::new();
    for slo in &catalog.slos {
        if let Some(t) = threshold_us(&slo.sli) {
            for p in &slo.probes {
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
        .filter_map(|s| match s.window {
            Window::Rolling(w) => Some(w),
            _ => None,
        })
        .chain(BURN_WINDOWS.iter().map(|(_, w)| *w))
        .max()
        .unwrap_or_default()
        + MINUTE_RETENTION_SLACK
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

/// The start minutes of an SLO: its window first, then every burn window.
fn since_minutes(window: Duration, now_ms: i64) -> Vec<i64> {
    std::iter::once(window)
        .chain(BURN_WINDOWS.iter().map(|(_, w)| *w))
        .map(|w| minute_of(now_ms.saturating_sub(duration_ms(w))))
        .collect()
}

/// The status from (good, total) per [`since_minutes`] entry.
fn status_from_counts(slo: &SloDef, window: Duration, counts: &[(u64, u64)]) -> SloStatus {
    let (good, total) = counts.first().copied().unwrap_or((0, 0));
    let burn_rates: Vec<(&'static str, Option<f64>)> = BURN_WINDOWS
        .iter()
        .zip(counts.iter().skip(1))
        .map(|((label, _), (g, t))| (*label, burn_rate(*g, *t, slo.objective)))
        .collect();
    let burn_rate_1h = burn_rates.get(ONE_HOUR).and_then(|(_, r)| *r);
    let remaining = error_budget_remaining(good, total, slo.objective);
    SloStatus {
        id: slo.id.clone(),
        description: slo.description.clone(),
        objective: slo.objective,
        window,
        sli: slo.sli.clone(),
        good,
        total,
        bad: total.saturating_sub(good),
        sli_value: sli_value(good, total),
        error_budget_remaining: remaining,
        error_budget_events: total as f64 * allowed_bad_fraction(slo.objective),
        burn_rate_1h,
        burn_rates,
        time_to_exhaustion: time_to_exhaustion(remaining, burn_rate_1h, window),
    }
}

/// Evaluates one SLO at `now_ms`. `None` for window kinds this version does
/// not evaluate (validation rejects them, so this is defensive only).
pub async fn evaluate_one(
    store: &Store,
    slo: &SloDef,
    now_ms: i64,
) -> Result<Option<SloStatus>, StoreError> {
    let Window::Rolling(window) = slo.window else {
        return Ok(None);
    };
    let threshold = threshold_us(&slo.sli);
    // The start minutes go back to ms at a minute start; the store maps
    // them to the same minutes.
    let since: Vec<i64> = since_minutes(window, now_ms)
        .into_iter()
        .map(|m| m.saturating_mul(crate::store::MINUTE_MS))
        .collect();
    let counts = store
        .minute_counts_since(&slo.probes, &since, threshold)
        .await?;
    Ok(Some(status_from_counts(slo, window, &counts)))
}

/// Evaluates every SLO of the catalog, in catalog order.
pub async fn evaluate(
    store: &Store,
    catalog: &Catalog,
    now_ms: i64,
) -> Result<Vec<SloStatus>, StoreError> {
    // All SLOs from one grouped query over the minute aggregates: every
    // distinct start minute of every SLO at once, combined here.
    let mut starts = BTreeSet::new();
    let mut probes = BTreeSet::new();
    for slo in &catalog.slos {
        if let Window::Rolling(w) = slo.window {
            starts.extend(since_minutes(w, now_ms));
            probes.extend(slo.probes.iter().cloned());
        }
    }
    let starts: Vec<i64> = starts.into_iter().collect();
    let probes: Vec<String> = probes.into_iter().collect();
    let sums: MinuteSums = if starts.is_empty() {
        MinuteSums::new()
    } else {
        store.minute_sums(&probes, &starts).await?
    };
    let index: HashMap<i64, usize> = starts.iter().enumerate().map(|(i, m)| (*m, i)).collect();
    let mut out = Vec::with_capacity(catalog.slos.len());
    for slo in &catalog.slos {
        let Window::Rolling(window) = slo.window else {
            tracing::warn!(slo = %slo.id, "SLO window kind not supported, skipped");
            continue;
        };
        let th = threshold_us(&slo.sli).unwrap_or(0);
        let counts: Vec<(u64, u64)> = since_minutes(window, now_ms)
            .iter()
            .map(|m| {
                let i = index.get(m).copied().unwrap_or(usize::MAX);
                slo.probes.iter().fold((0, 0), |acc, p| {
                    match sums.get(&(p.clone(), th)).and_then(|v| v.get(i)) {
                        Some((g, t)) => (acc.0 + g, acc.1 + t),
                        None => acc,
                    }
                })
            })
            .collect();
        out.push(status_from_counts(slo, window, &counts));
    }
    Ok(out)
}

/// Registers the SLO gauges' descriptions (HELP lines).
pub fn describe_metrics() {
    metrics::describe_gauge!(
        "authpulse_slo_sli",
        "Good/total over the SLO window (NaN without data)"
    );
    metrics::describe_gauge!(
        "authpulse_slo_error_budget_remaining",
        "Share of the error budget left over the SLO window: 1 untouched, 0 used up, negative overspent"
    );
    metrics::describe_gauge!(
        "authpulse_slo_objective",
        "The SLO's objective as a ratio (0.999 for 99.9 %)"
    );
    metrics::describe_gauge!(
        "authpulse_slo_burn_rate",
        "Bad fraction over `window` divided by the allowed bad fraction (NaN without data)"
    );
}

/// Publishes the gauges `authpulse_slo_sli`, `authpulse_slo_error_budget_remaining`
/// and `authpulse_slo_burn_rate{window="1h"}`. "No data" is NaN, which
/// Prometheus alert comparisons treat as false rather than as 0 % availability.
pub fn export_gauges(statuses: &[SloStatus]) {
    for s in statuses {
        let slo = s.id.clone();
        metrics::gauge!("authpulse_slo_sli", "slo" => slo.clone())
            .set(s.sli_value.unwrap_or(f64::NAN));
        metrics::gauge!("authpulse_slo_error_budget_remaining", "slo" => slo.clone())
            .set(s.error_budget_remaining);
        metrics::gauge!("authpulse_slo_objective", "slo" => slo.clone()).set(s.objective / 100.0);
        for (window, rate) in &s.burn_rates {
            metrics::gauge!("authpulse_slo_burn_rate", "slo" => slo.clone(), "window" => *window)
                .set(rate.unwrap_or(f64::NAN));
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
