//! How an SLO's numbers become a Statuspage component status: the
//! statuses themselves ([`ComponentStatus`], best to worst, with the page
//! indicator each leads to) and the rules of [`slo_condition`] (alert
//! conditions, budget left, the last 5 minutes, and whether the data can
//! be trusted to make a component better).
use crate::alerting::{self, Severity};
use crate::slo::{self, SloState, SloStatus};

/// Below this share of error budget left a component is degraded.
pub const DEGRADED_BUDGET: f64 = 0.25;

/// Below this SLI over the last 5 minutes (most runs fail) a component is
/// in a major outage before the page alert's long window agrees.
pub const MAJOR_OUTAGE_SLI_5M: f64 = 0.5;

/// Statuspage component statuses, best to worst.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ComponentStatus {
    Operational,
    DegradedPerformance,
    PartialOutage,
    MajorOutage,
}

impl ComponentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ComponentStatus::Operational => "operational",
            ComponentStatus::DegradedPerformance => "degraded_performance",
            ComponentStatus::PartialOutage => "partial_outage",
            ComponentStatus::MajorOutage => "major_outage",
        }
    }

    pub fn parse(s: &str) -> Option<ComponentStatus> {
        [
            ComponentStatus::Operational,
            ComponentStatus::DegradedPerformance,
            ComponentStatus::PartialOutage,
            ComponentStatus::MajorOutage,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }

    /// The page indicator (and incident impact) this status stands for.
    pub fn indicator(self) -> &'static str {
        match self {
            ComponentStatus::Operational => "none",
            ComponentStatus::DegradedPerformance => "minor",
            ComponentStatus::PartialOutage => "major",
            ComponentStatus::MajorOutage => "critical",
        }
    }

    pub(super) fn words(self) -> &'static str {
        match self {
            ComponentStatus::Operational => "operational",
            ComponentStatus::DegradedPerformance => "degraded performance",
            ComponentStatus::PartialOutage => "partial outage",
            ComponentStatus::MajorOutage => "major outage",
        }
    }
}

/// Statuspage's description of a page indicator.
pub fn indicator_description(indicator: &str) -> &'static str {
    match indicator {
        "minor" => "Partially Degraded Service",
        "major" => "Partial System Outage",
        "critical" => "Major System Outage",
        _ => "All Systems Operational",
    }
}

/// How one SLO stands for the status page (worst rule that holds):
/// - `major_outage`: its page alert condition holds (fast burn over 1h and
///   5m, or 6h and 30m), an escalation alert fires for it, or over the last
///   5 minutes fewer than half of the runs were good;
/// - `partial_outage`: one region burns at page speed over the last hour
///   while the SLO as a whole does not (one region down, or a quorum not met);
/// - `degraded_performance`: its ticket alert condition holds (slow burn),
///   or less than 25 % of its error budget is left (incl. exhausted);
/// - `operational` otherwise.
///
/// Conditions are judged from the burn rates whatever the SLO's `alerting`
/// opt-outs say: those silence notifications, not the page.
pub fn slo_condition(status: &SloStatus, escalating: bool) -> ComponentStatus {
    let alerts = alerting::alerts_for(status);
    if escalating || alerts.iter().any(|a| a.severity == Severity::Page) {
        return ComponentStatus::MajorOutage;
    }
    if sli_5m(status).is_some_and(|v| v < MAJOR_OUTAGE_SLI_5M) {
        return ComponentStatus::MajorOutage;
    }
    let page_factor = alerting::RULES
        .iter()
        .find(|r| r.severity == Severity::Page)
        .map(|r| alerting::factor(r.factor_30d, status.window));
    if let Some(f) = page_factor
        && status
            .regions
            .iter()
            .any(|r| r.burn_rate_1h.is_some_and(|b| b >= f))
    {
        return ComponentStatus::PartialOutage;
    }
    if alerts.iter().any(|a| a.severity == Severity::Ticket)
        || (status.total > 0 && status.error_budget_remaining < DEGRADED_BUDGET)
    {
        return ComponentStatus::DegradedPerformance;
    }
    ComponentStatus::Operational
}

/// Good share over the last 5 minutes, from the 5m burn rate.
fn sli_5m(s: &SloStatus) -> Option<f64> {
    s.burn_rates
        .iter()
        .find(|(w, _)| *w == "5m")
        .and_then(|(_, r)| *r)
        .map(|r| 1.0 - r * slo::allowed_bad_fraction(s.objective))
}

/// Whether an SLO's numbers may make a component better: with no data or
/// too little of it, no news is not good news.
pub(super) fn trusted(s: &SloStatus) -> bool {
    matches!(s.state, SloState::Ok | SloState::Exhausted)
}
