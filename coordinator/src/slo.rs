//! SLO evaluation: how each catalog SLO stands right now. The math (SLI,
//! error budget remaining, burn rate) is pure functions over counts so it can
//! be tested with exact numbers; the counts come from the store. This
//! version supports what catalog validation lets through: rolling windows,
//! occurrence budgeting, availability or latency SLIs, all regions pooled.
use std::time::Duration;

use authpulse_proto::catalog::{Catalog, Sli, SloDef, Window};

use crate::store::{Store, StoreError};

/// The short window burn rate is reported over.
pub const BURN_WINDOW: Duration = Duration::from_secs(3600);

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
    /// Over [`BURN_WINDOW`]; `None` without data in that window.
    pub burn_rate_1h: Option<f64>,
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
    let since = now_ms.saturating_sub(duration_ms(window));
    let (good, total) = store.slo_counts(&slo.probes, since, threshold).await?;
    let since_1h = now_ms.saturating_sub(duration_ms(BURN_WINDOW));
    let (good_1h, total_1h) = store.slo_counts(&slo.probes, since_1h, threshold).await?;
    Ok(Some(SloStatus {
        id: slo.id.clone(),
        description: slo.description.clone(),
        objective: slo.objective,
        window,
        sli: slo.sli.clone(),
        good,
        total,
        bad: total.saturating_sub(good),
        sli_value: sli_value(good, total),
        error_budget_remaining: error_budget_remaining(good, total, slo.objective),
        burn_rate_1h: burn_rate(good_1h, total_1h, slo.objective),
    }))
}

/// Evaluates every SLO of the catalog, in catalog order.
pub async fn evaluate(
    store: &Store,
    catalog: &Catalog,
    now_ms: i64,
) -> Result<Vec<SloStatus>, StoreError> {
    let mut out = Vec::with_capacity(catalog.slos.len());
    for slo in &catalog.slos {
        match evaluate_one(store, slo, now_ms).await? {
            Some(s) => out.push(s),
            None => tracing::warn!(slo = %slo.id, "SLO window kind not supported, skipped"),
        }
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
        metrics::gauge!("authpulse_slo_burn_rate", "slo" => slo, "window" => "1h")
            .set(s.burn_rate_1h.unwrap_or(f64::NAN));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
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
