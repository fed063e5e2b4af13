//! Multi-window, multi-burn-rate alerts (SRE workbook, chapter 5) on top of
//! [`crate::slo::evaluate`]: the same evaluation that feeds the SLO gauges
//! decides, every [`crate::slo::GAUGE_INTERVAL`], which alerts hold. An
//! [`AlertBook`] turns that into fire / re-send / resolve events (one alert
//! per SLO and severity), persisted in the store so a restart neither pages
//! again nor forgets to resolve, and [`notify`] delivers them to
//! Alertmanager, PagerDuty and a webhook without blocking evaluation.
//!
//! A little over 800 lines: the alert state machine (rules, firing,
//! silences, escalations) is one concept; delivery is in `notify`.
mod maintenance_hold;
pub mod notify;
pub mod routing;
mod stored;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use authpulse_proto::catalog::Catalog;
use serde::{Deserialize, Serialize};

use crate::slo::SloStatus;
use crate::store::{Store, StoreError};
pub(crate) use stored::AlertStore;

/// Alertmanager forgets an alert that is not re-sent; while firing, it is
/// re-sent this often (PagerDuty and the webhook get it once).
pub const RESEND_INTERVAL_MS: i64 = 60_000;

const THIRTY_DAYS_SECS: f64 = 30.0 * 86_400.0;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Page,
    Ticket,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Page => "page",
            Severity::Ticket => "ticket",
        }
    }
}

impl std::str::FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "page" => Ok(Severity::Page),
            "ticket" => Ok(Severity::Ticket),
            other => Err(format!("unknown alert severity `{other}`")),
        }
    }
}

/// One rule: the burn rate over both windows must reach the factor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rule {
    pub severity: Severity,
    /// Labels of [`crate::slo::BURN_WINDOWS`].
    pub long: &'static str,
    pub short: &'static str,
    /// `long/short`, as reported in alerts.
    pub label: &'static str,
    /// The factor for a 30-day SLO window; other windows scale it.
    pub factor_30d: f64,
}

/// The workbook's four rules, most urgent first.
pub const RULES: [Rule; 4] = [
    Rule {
        severity: Severity::Page,
        long: "1h",
        short: "5m",
        label: "1h/5m",
        factor_30d: 14.4,
    },
    Rule {
        severity: Severity::Page,
        long: "6h",
        short: "30m",
        label: "6h/30m",
        factor_30d: 6.0,
    },
    Rule {
        severity: Severity::Ticket,
        long: "1d",
        short: "2h",
        label: "1d/2h",
        factor_30d: 3.0,
    },
    Rule {
        severity: Severity::Ticket,
        long: "3d",
        short: "6h",
        label: "3d/6h",
        factor_30d: 1.0,
    },
];

/// The rule label as the `'static` string of [`RULES`] (for stored alerts).
pub fn rule_label(label: &str) -> Option<&'static str> {
    if label == ESCALATION_RULE {
        return Some(ESCALATION_RULE);
    }
    RULES.iter().find(|r| r.label == label).map(|r| r.label)
}

/// The rule of escalation alerts: a result (or a step of it) of a probe an
/// SLO names came back with failure class `escalation` (a `deny` expectation
/// that was allowed). Pages at once, without burn-rate math.
pub const ESCALATION_RULE: &str = "escalation";

/// An escalation alert resolves once no escalation result for the SLO's
/// probes was stored for this long.
pub const ESCALATION_HOLD_MS: i64 = 5 * 60_000;

/// The page an escalation raises for `slo` (no burn rates, factor 0).
pub fn escalation_alert(slo: &str) -> Alert {
    Alert {
        slo: slo.to_string(),
        severity: Severity::Page,
        rule: ESCALATION_RULE,
        burn_long: 0.0,
        burn_short: 0.0,
        factor: 0.0,
    }
}

/// Whether `probe` (a result's probe id) is one `slo_probes` names, either
/// itself or through one of its steps (`probe/step`).
fn names_probe(slo_probes: &[String], probe: &str) -> bool {
    slo_probes
        .iter()
        .any(|p| p == probe || p.split_once('/').is_some_and(|(id, _)| id == probe))
}

/// The factor for an SLO `window`: the same share of the budget spent as
/// `factor_30d` spends of a 30-day budget (`F30 × window / 30d`).
pub fn factor(factor_30d: f64, window: Duration) -> f64 {
    factor_30d * (window.as_secs_f64() / THIRTY_DAYS_SECS)
}

/// An alert whose condition holds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Alert {
    pub slo: String,
    pub severity: Severity,
    /// Which rule matched, e.g. `1h/5m`.
    pub rule: &'static str,
    pub burn_long: f64,
    pub burn_short: f64,
    pub factor: f64,
}

impl Alert {
    /// An escalation alert rather than a burn-rate one.
    pub fn is_escalation(&self) -> bool {
        self.rule == ESCALATION_RULE
    }

    /// The rule's two windows with their burn rates, e.g. `{"1h": 20.0, "5m": 31.5}`.
    pub fn burn_rates(&self) -> BTreeMap<&'static str, f64> {
        if self.is_escalation() {
            return BTreeMap::new();
        }
        let (long, short) = self.rule.split_once('/').unwrap_or((self.rule, ""));
        let long = RULES
            .iter()
            .find(|r| r.long == long)
            .map_or("long", |r| r.long);
        let short = RULES
            .iter()
            .find(|r| r.short == short)
            .map_or("short", |r| r.short);
        BTreeMap::from([(long, self.burn_long), (short, self.burn_short)])
    }
}

/// The alerts `status` raises: at most one per severity (the first matching
/// rule of [`RULES`]). A window without data never matches.
pub fn alerts_for(status: &SloStatus) -> Vec<Alert> {
    let burn = |label: &str| {
        status
            .burn_rates
            .iter()
            .find(|(l, _)| *l == label)
            .and_then(|(_, r)| *r)
    };
    let mut out: Vec<Alert> = Vec::new();
    for rule in &RULES {
        if out.iter().any(|a| a.severity == rule.severity) {
            continue;
        }
        let f = factor(rule.factor_30d, status.window);
        if let (Some(long), Some(short)) = (burn(rule.long), burn(rule.short))
            && long >= f
            && short >= f
        {
            out.push(Alert {
                slo: status.id.clone(),
                severity: rule.severity,
                rule: rule.label,
                burn_long: long,
                burn_short: short,
                factor: f,
            });
        }
    }
    out
}

/// [`alerts_for`] every status, minus what the catalog opted out of.
pub fn active_alerts(catalog: &Catalog, statuses: &[SloStatus]) -> Vec<Alert> {
    statuses
        .iter()
        .flat_map(alerts_for)
        .filter(|a| {
            catalog
                .slos
                .iter()
                .find(|s| s.id == a.slo)
                .is_some_and(|s| match a.severity {
                    Severity::Page => s.alerting.page,
                    Severity::Ticket => s.alerting.ticket,
                })
        })
        .collect()
}

/// A firing alert: the latest values of its condition, when it started and
/// when it was last sent.
#[derive(Clone, Debug, PartialEq)]
pub struct Firing {
    pub alert: Alert,
    pub started_ms: i64,
    pub last_sent_ms: i64,
}

/// What notifiers are told.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// Newly firing.
    Fire(Firing),
    /// Still firing, re-sent for Alertmanager.
    Resend(Firing),
    /// The condition no longer holds.
    Resolve { firing: Firing, ended_ms: i64 },
}

impl Event {
    pub fn firing(&self) -> &Firing {
        match self {
            Event::Fire(f) | Event::Resend(f) | Event::Resolve { firing: f, .. } => f,
        }
    }
}

/// The dedupe/resolve state machine: one entry per (SLO, severity) while firing.
#[derive(Clone, Debug, Default)]
pub struct AlertBook {
    firing: BTreeMap<(String, Severity), Firing>,
}

impl AlertBook {
    pub fn new(firing: Vec<Firing>) -> AlertBook {
        AlertBook {
            firing: firing
                .into_iter()
                .map(|f| ((f.alert.slo.clone(), f.alert.severity), f))
                .collect(),
        }
    }

    pub fn firing(&self) -> impl Iterator<Item = &Firing> {
        self.firing.values()
    }

    /// Given the alerts whose condition holds at `now_ms`: fires the new
    /// ones, re-sends those last sent [`RESEND_INTERVAL_MS`] ago or more,
    /// and resolves the firing ones that are no longer in `active`.
    pub fn step(&mut self, active: Vec<Alert>, now_ms: i64) -> Vec<Event> {
        let mut events = Vec::new();
        let mut holding = BTreeSet::new();
        for alert in active {
            let key = (alert.slo.clone(), alert.severity);
            if !holding.insert(key.clone()) {
                continue;
            }
            match self.firing.get_mut(&key) {
                None => {
                    let f = Firing {
                        alert,
                        started_ms: now_ms,
                        last_sent_ms: now_ms,
                    };
                    events.push(Event::Fire(f.clone()));
                    self.firing.insert(key, f);
                }
                Some(f) => {
                    f.alert = alert;
                    if now_ms.saturating_sub(f.last_sent_ms) >= RESEND_INTERVAL_MS {
                        f.last_sent_ms = now_ms;
                        events.push(Event::Resend(f.clone()));
                    }
                }
            }
        }
        let cleared: Vec<_> = self
            .firing
            .keys()
            .filter(|k| !holding.contains(*k))
            .cloned()
            .collect();
        for key in cleared {
            if let Some(firing) = self.firing.remove(&key) {
                events.push(Event::Resolve {
                    firing,
                    ended_ms: now_ms,
                });
            }
        }
        events
    }
}

/// Where alerts go: the `alerting` section of the coordinator config. Every
/// part is optional; without any, alerts are still evaluated and shown at
/// `/api/v1/alerts` and in `authpulse_slo_alert_firing`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertingConfig {
    /// Alertmanager base URLs (alerts are posted to `<url>/api/v2/alerts`).
    #[serde(default)]
    pub alertmanager: Vec<String>,
    #[serde(default)]
    pub pagerduty: Option<PagerDutyConfig>,
    #[serde(default)]
    pub webhook: Option<WebhookConfig>,
    /// This coordinator's HTTP base URL as receivers should link to it
    /// (Alertmanager's generatorURL); default `http://<http_listen>`.
    #[serde(default)]
    pub external_url: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagerDutyConfig {
    /// File holding the Events v2 integration (routing) key for alerts no
    /// route matches; without it, those alerts are not sent to PagerDuty.
    #[serde(default)]
    pub routing_key_file: Option<PathBuf>,
    /// Per-team services: the first route whose `match` labels (and
    /// `owner`) all equal the SLO's picks the routing key.
    #[serde(default)]
    pub routes: Vec<routing::PagerDutyRoute>,
    /// The Events v2 enqueue URL.
    #[serde(default = "notify::default_pagerduty_url")]
    pub url: String,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
    /// File holding the secret for `X-Authpulse-Signature` (HMAC-SHA256 of
    /// the body); no signature without it.
    #[serde(default)]
    pub hmac_secret_file: Option<PathBuf>,
}

/// Registers the alerting metrics' descriptions (HELP lines).
pub fn describe_metrics() {
    metrics::describe_gauge!(
        routing::SLO_INFO,
        "1 per SLO with its owner and catalog labels, for joins on `slo`; a label set a catalog change replaced is 0"
    );
    metrics::describe_gauge!(
        "authpulse_slo_alert_firing",
        "1 while the burn-rate alert of `severity` (page, ticket) fires for `slo`, else 0"
    );
    metrics::describe_gauge!(
        "authpulse_slo_escalation_alert_firing",
        "1 while the escalation page fires for `slo` (a probe it names returned failure class escalation in the last 5 minutes), else 0"
    );
    metrics::describe_counter!(
        "authpulse_coordinator_notifications_total",
        "Alert notification attempts by `notifier` and `result` (sent, retried, failed)"
    );
}

fn set_gauge(alert: &Alert, value: f64) {
    if alert.is_escalation() {
        metrics::gauge!("authpulse_slo_escalation_alert_firing", "slo" => alert.slo.clone())
            .set(value);
        return;
    }
    metrics::gauge!(
        "authpulse_slo_alert_firing",
        "slo" => alert.slo.clone(),
        "severity" => alert.severity.as_str()
    )
    .set(value);
}

/// The alert state of a running coordinator and its notifiers.
pub struct Alerter {
    book: AlertBook,
    /// Escalation pages: a separate book, so burn-rate evaluation never
    /// resolves them and they never replace a burn-rate page of the same SLO.
    escalations: AlertBook,
    /// When an escalation result was last stored, per SLO.
    escalation_seen: BTreeMap<String, i64>,
    /// Notifications held back by scheduled maintenances.
    maintenance_hold: maintenance_hold::MaintenanceHold,
    store: Store,
    notifiers: notify::Dispatch,
}

impl Alerter {
    /// Loads the firing alerts from the store, reads the notifier secrets
    /// and starts one delivery task per notifier.
    pub async fn start(
        store: Store,
        config: &AlertingConfig,
        generator_url: String,
    ) -> anyhow::Result<Alerter> {
        let notifiers = notify::Dispatch::start(config, generator_url)?;
        let mut alerter = Alerter {
            book: AlertBook::new(Vec::new()),
            escalations: AlertBook::new(Vec::new()),
            escalation_seen: BTreeMap::new(),
            maintenance_hold: Default::default(),
            store,
            notifiers,
        };
        alerter.reload().await?;
        Ok(alerter)
    }

    /// On a replica that does not lead: mirrors the leader's alert state
    /// from the store, gauges included (an alert resolved by the leader
    /// drops to 0 here too), and sends nothing.
    pub async fn follow(&mut self) -> Result<(), StoreError> {
        let key = |a: &Alert| (a.slo.clone(), a.severity.as_str(), a.is_escalation());
        let before: Vec<Alert> = self
            .book
            .firing()
            .chain(self.escalations.firing())
            .map(|f| f.alert.clone())
            .collect();
        self.reload().await?;
        let now: std::collections::HashSet<_> = self
            .book
            .firing()
            .chain(self.escalations.firing())
            .map(|f| key(&f.alert))
            .collect();
        for a in before.iter().filter(|a| !now.contains(&key(a))) {
            set_gauge(a, 0.0);
        }
        Ok(())
    }

    /// Replaces the in-memory alert state with the stored one: at start,
    /// and when this replica becomes leader (the previous leader's alerts
    /// are then neither sent again nor forgotten).
    pub async fn reload(&mut self) -> Result<(), StoreError> {
        self.book = AlertBook::new(self.store.firing_alerts().await?);
        self.escalation_seen.clear();
        let mut firing = Vec::new();
        for (f, seen_ms) in self.store.escalation_alerts().await? {
            self.escalation_seen.insert(f.alert.slo.clone(), seen_ms);
            firing.push(f);
        }
        self.escalations = AlertBook::new(firing);
        for f in self.book.firing().chain(self.escalations.firing()) {
            set_gauge(&f.alert, 1.0);
        }
        Ok(())
    }

    /// Newly stored results of `probes` came back with failure class
    /// escalation: pages every SLO naming one of them (unless the SLO opted
    /// out of paging) at once.
    pub async fn escalation_seen(
        &mut self,
        catalog: &Catalog,
        probes: &BTreeSet<String>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut sighted = BTreeSet::new();
        for slo in &catalog.slos {
            if probes.iter().any(|p| names_probe(&slo.probes, p)) {
                tracing::warn!(slo = %slo.id, probes = ?probes, "privilege escalation result stored");
                self.escalation_seen.insert(slo.id.clone(), now_ms);
                sighted.insert(slo.id.clone());
            }
        }
        self.step_escalations(catalog, now_ms).await?;
        // Keep the stored sighting current, so a restart resolves on time.
        for f in self.escalations.firing() {
            if sighted.contains(&f.alert.slo) {
                self.store.save_escalation_alert(f, now_ms).await?;
            }
        }
        Ok(())
    }

    /// Fires, re-sends and resolves escalation pages: one holds while an
    /// escalation was seen within [`ESCALATION_HOLD_MS`].
    async fn step_escalations(&mut self, catalog: &Catalog, now_ms: i64) -> Result<(), StoreError> {
        self.escalation_seen
            .retain(|_, seen| now_ms.saturating_sub(*seen) < ESCALATION_HOLD_MS);
        let active: Vec<Alert> = self
            .escalation_seen
            .keys()
            .filter(|id| catalog.slos.iter().any(|s| &s.id == *id && s.alerting.page))
            .map(|id| escalation_alert(id))
            .collect();
        let events = self.escalations.step(active, now_ms);
        for event in events {
            let f = event.firing();
            let slo = &f.alert.slo;
            match &event {
                Event::Fire(_) | Event::Resend(_) => {
                    if matches!(event, Event::Fire(_)) {
                        tracing::warn!(slo = %slo, "SLO escalation alert firing");
                        set_gauge(&f.alert, 1.0);
                    }
                    let seen = self.escalation_seen.get(slo).copied().unwrap_or(now_ms);
                    self.store.save_escalation_alert(f, seen).await?;
                }
                Event::Resolve { .. } => {
                    tracing::info!(slo = %slo, "SLO escalation alert resolved");
                    self.store.delete_escalation_alert(slo).await?;
                    set_gauge(&f.alert, 0.0);
                }
            }
            self.notifiers
                .send(&event, routing::Routing::of(catalog, &f.alert.slo));
        }
        Ok(())
    }

    /// (SLO, severity) pairs whose notifications are held back: silenced or
    /// acknowledged by an admin. A store error holds nothing back.
    async fn held(&self, now_ms: i64) -> BTreeSet<(String, String)> {
        match self.store.silences(now_ms).await {
            Ok(s) => s.into_iter().map(|s| (s.slo, s.severity)).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read silences; notifying");
                BTreeSet::new()
            }
        }
    }

    /// One evaluation: steps the state machine, persists, notifies.
    pub async fn evaluate(
        &mut self,
        catalog: &Catalog,
        statuses: &[SloStatus],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let events = self.book.step(active_alerts(catalog, statuses), now_ms);
        let held = self.held(now_ms).await;
        // Scheduled maintenances with `alerts: suppress` hold back their
        // SLOs' burn-rate notifications (escalations are never held).
        let maintenance = catalog.slos_in_maintenance(now_ms);
        for event in events {
            let f = event.firing();
            match &event {
                Event::Fire(_) => {
                    tracing::warn!(slo = %f.alert.slo, severity = f.alert.severity.as_str(),
                        rule = f.alert.rule, burn_long = f.alert.burn_long,
                        burn_short = f.alert.burn_short, factor = f.alert.factor,
                        "SLO burn-rate alert firing");
                    self.store.save_alert(f).await?;
                    set_gauge(&f.alert, 1.0);
                }
                Event::Resend(_) => self.store.save_alert(f).await?,
                Event::Resolve { .. } => {
                    tracing::info!(slo = %f.alert.slo, severity = f.alert.severity.as_str(),
                        "SLO burn-rate alert resolved");
                    self.store
                        .delete_alert(&f.alert.slo, f.alert.severity.as_str())
                        .await?;
                    self.store
                        .clear_ack(&f.alert.slo, f.alert.severity.as_str())
                        .await?;
                    set_gauge(&f.alert, 0.0);
                }
            }
            let verdict = self.maintenance_hold.verdict(&event, &maintenance);
            if verdict == maintenance_hold::Verdict::NeverNotified {
                tracing::info!(slo = %f.alert.slo, severity = f.alert.severity.as_str(),
                    "alert resolved during a scheduled maintenance; it was never notified");
            } else if let maintenance_hold::Verdict::Held(m) = verdict {
                tracing::info!(slo = %f.alert.slo, severity = f.alert.severity.as_str(),
                    maintenance = %m.id, "notification held back: scheduled maintenance in progress");
            } else if !held.contains(&(f.alert.slo.clone(), f.alert.severity.as_str().to_string()))
                || matches!(event, Event::Resolve { .. })
            {
                self.notifiers
                    .send(&event, routing::Routing::of(catalog, &f.alert.slo));
            } else {
                tracing::info!(slo = %f.alert.slo, severity = f.alert.severity.as_str(),
                    "notification held back: alert silenced or acknowledged");
            }
        }
        // Maintenances that ended: what still fires is notified now.
        let ended = self
            .maintenance_hold
            .released(self.book.firing(), &maintenance);
        for f in ended {
            tracing::warn!(slo = %f.alert.slo, severity = f.alert.severity.as_str(),
                "scheduled maintenance over and the alert still fires: notifying");
            let routing = routing::Routing::of(catalog, &f.alert.slo);
            self.notifiers.send(&Event::Fire(f), routing);
        }
        self.step_escalations(catalog, now_ms).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use authpulse_proto::catalog::Sli;

    const DAY: u64 = 86_400;

    fn status(id: &str, window_days: u64, burns: [Option<f64>; 7]) -> SloStatus {
        SloStatus {
            id: id.into(),
            description: None,
            objective: 99.9,
            window: Duration::from_secs(window_days * DAY),
            window_label: format!("{window_days}d"),
            window_start_ms: 0,
            sli: Sli::Availability,
            slice: None,
            good: 0,
            total: 0,
            bad: 0,
            sli_value: None,
            error_budget_remaining: 1.0,
            error_budget_events: 0.0,
            burn_rate_1h: burns[2],
            burn_rates: crate::slo::BURN_WINDOWS
                .iter()
                .zip(burns)
                .map(|((l, _), b)| (*l, b))
                .collect(),
            time_to_exhaustion: None,
            coverage: None,
            state: crate::slo::SloState::NoData,
            regions: Vec::new(),
        }
    }

    #[test]
    fn escalations_match_probes_and_steps_and_dedupe() {
        let probes = vec!["login".to_string(), "authz/cannot-delete".to_string()];
        assert!(names_probe(&probes, "login"));
        assert!(names_probe(&probes, "authz"));
        assert!(!names_probe(&probes, "auth"));
        let mut book = AlertBook::default();
        let fired = book.step(vec![escalation_alert("s")], 0);
        assert!(matches!(fired.as_slice(), [Event::Fire(_)]));
        assert!(book.step(vec![escalation_alert("s")], 1_000).is_empty());
        assert!(matches!(
            book.step(vec![], 2_000).as_slice(),
            [Event::Resolve { .. }]
        ));
        assert_eq!(rule_label(ESCALATION_RULE), Some(ESCALATION_RULE));
        assert!(escalation_alert("s").burn_rates().is_empty());
    }

    #[test]
    fn factors_scale_with_the_window() {
        let d30 = Duration::from_secs(30 * DAY);
        let d7 = Duration::from_secs(7 * DAY);
        let got: Vec<f64> = RULES.iter().map(|r| factor(r.factor_30d, d30)).collect();
        assert_eq!(got, vec![14.4, 6.0, 3.0, 1.0]);
        let got: Vec<f64> = RULES.iter().map(|r| factor(r.factor_30d, d7)).collect();
        for (g, want) in got.iter().zip([3.36, 1.4, 0.7, 7.0 / 30.0]) {
            assert!((g - want).abs() < 1e-12, "{g} vs {want}");
        }
        // A 1h SLO: 14.4 / 720 = 0.02.
        let h1 = factor(14.4, Duration::from_secs(3600));
        assert!((h1 - 0.02).abs() < 1e-15, "{h1}");
    }

    #[test]
    fn thirty_day_rules_with_exact_numbers() {
        //                     5m          30m   1h          2h   6h   1d   3d
        let s = status(
            "s",
            30,
            [Some(14.4), None, Some(14.4), None, None, None, None],
        );
        assert_eq!(
            alerts_for(&s),
            vec![Alert {
                slo: "s".into(),
                severity: Severity::Page,
                rule: "1h/5m",
                burn_long: 14.4,
                burn_short: 14.4,
                factor: 14.4,
            }]
        );
        // Both windows must reach the factor.
        let s = status(
            "s",
            30,
            [Some(14.3), None, Some(50.0), None, None, None, None],
        );
        assert!(alerts_for(&s).is_empty());
        // 6h/30m at 6x pages; 1d/2h at 3x tickets; one alert per severity.
        let s = status(
            "s",
            30,
            [
                Some(1.0),
                Some(6.0),
                Some(7.0),
                Some(3.0),
                Some(6.5),
                Some(3.2),
                Some(0.5),
            ],
        );
        let got = alerts_for(&s);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!((got[0].severity, got[0].rule), (Severity::Page, "6h/30m"));
        assert_eq!((got[0].burn_long, got[0].burn_short), (6.5, 6.0));
        assert_eq!((got[1].severity, got[1].rule), (Severity::Ticket, "1d/2h"));
        assert_eq!(got[1].factor, 3.0);
        // 3d/6h at exactly 1x.
        let s = status(
            "s",
            30,
            [None, None, None, Some(0.9), Some(1.0), Some(0.9), Some(1.0)],
        );
        let got = alerts_for(&s);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!((got[0].rule, got[0].factor), ("3d/6h", 1.0));
        assert_eq!(
            got[0].burn_rates(),
            BTreeMap::from([("3d", 1.0), ("6h", 1.0)])
        );
        // No data never alerts.
        assert!(alerts_for(&status("s", 30, [None; 7])).is_empty());
    }

    #[test]
    fn seven_day_rules_with_exact_numbers() {
        // 3.36x over 1h and 5m pages a 7d SLO (just below does not).
        let s = status(
            "w",
            7,
            [Some(3.37), None, Some(3.4), None, None, None, None],
        );
        let got = alerts_for(&s);
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].rule, got[0].severity), ("1h/5m", Severity::Page));
        assert!((got[0].factor - 3.36).abs() < 1e-12);
        let s = status(
            "w",
            7,
            [Some(3.35), None, Some(3.4), None, None, None, None],
        );
        assert!(alerts_for(&s).is_empty());
        // 0.7x over 1d and 2h tickets.
        let s = status(
            "w",
            7,
            [None, None, None, Some(0.71), None, Some(0.71), None],
        );
        let got = alerts_for(&s);
        assert_eq!((got[0].rule, got[0].severity), ("1d/2h", Severity::Ticket));
        assert!((got[0].factor - 0.7).abs() < 1e-12);
    }

    fn alert(slo: &str, severity: Severity, burn: f64) -> Alert {
        Alert {
            slo: slo.into(),
            severity,
            rule: "1h/5m",
            burn_long: burn,
            burn_short: burn,
            factor: 14.4,
        }
    }

    #[test]
    fn fires_once_resends_every_minute_resolves_once() {
        let mut book = AlertBook::default();
        let a = alert("s", Severity::Page, 20.0);
        let ev = book.step(vec![a.clone()], 1_000);
        assert!(
            matches!(&ev[..], [Event::Fire(f)] if f.started_ms == 1_000),
            "{ev:?}"
        );
        // Still firing: nothing new within the minute.
        assert!(
            book.step(vec![alert("s", Severity::Page, 30.0)], 16_000)
                .is_empty()
        );
        assert!(book.step(vec![a.clone()], 60_999).is_empty());
        // A minute after the last send: re-sent with the latest values.
        let ev = book.step(vec![alert("s", Severity::Page, 25.0)], 61_000);
        match &ev[..] {
            [Event::Resend(f)] => {
                assert_eq!((f.started_ms, f.last_sent_ms), (1_000, 61_000));
                assert_eq!(f.alert.burn_long, 25.0);
            }
            other => panic!("{other:?}"),
        }
        // A ticket for the same SLO is a separate alert.
        let t = alert("s", Severity::Ticket, 4.0);
        let ev = book.step(vec![a.clone(), t.clone()], 62_000);
        assert!(matches!(&ev[..], [Event::Fire(f)] if f.alert.severity == Severity::Ticket));
        // The page clears: resolved once, the ticket keeps firing.
        let ev = book.step(vec![t.clone()], 70_000);
        match &ev[..] {
            [Event::Resolve { firing, ended_ms }] => {
                assert_eq!(firing.alert.severity, Severity::Page);
                assert_eq!(*ended_ms, 70_000);
            }
            other => panic!("{other:?}"),
        }
        assert!(book.step(vec![t], 71_000).is_empty());
        assert_eq!(book.firing().count(), 1);
        // Restored from storage: no new fire, resolve still happens.
        let mut restored = AlertBook::new(book.firing().cloned().collect());
        assert!(
            restored
                .step(vec![alert("s", Severity::Ticket, 4.0)], 72_000)
                .is_empty()
        );
        let ev = restored.step(Vec::new(), 73_000);
        assert!(matches!(&ev[..], [Event::Resolve { .. }]), "{ev:?}");
        assert_eq!(restored.firing().count(), 0);
    }

    #[test]
    fn opted_out_severities_are_dropped() {
        let text = "probes:\n  - id: a\n    kind: http\n    url: https://x.example\nslos:\n  - id: s\n    probes: [a]\n    objective: 99\n    window: 30d\n    alerting: { page: false }\n";
        let catalog = authpulse_proto::catalog::load_str("c.yaml", text).expect("catalog");
        let s = status(
            "s",
            30,
            [
                Some(20.0),
                None,
                Some(20.0),
                Some(5.0),
                None,
                Some(5.0),
                None,
            ],
        );
        assert_eq!(alerts_for(&s).len(), 2);
        let got = active_alerts(&catalog, &[s]);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].severity, Severity::Ticket);
    }
}
