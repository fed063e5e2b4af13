//! Incidents from alerts: one opened when an alert of an SLO on the page
//! starts firing, updated when the kinds of firing alerts change, resolved
//! when none is left, each change an update with words a person reads
//! (which alerts, which components, how fast the budget burns). Stored in
//! the store's incident tables; ids are short and stable.
use std::collections::{BTreeMap, BTreeSet, HashMap};

use authpulse_proto::catalog::{Catalog, Sli};
use sha2::Digest;

use super::page::ComponentView;
use super::rules::ComponentStatus;
use super::{AffectedComponent, ComponentRef, Incident, IncidentUpdate};
use crate::alerting::{Firing, Severity};
use crate::store::{Store, StoreError};

/// What incident bookkeeping needs to know about the page.
pub(super) struct IncidentContext<'a> {
    pub(super) page_id: &'a str,
    pub(super) catalog: &'a Catalog,
    pub(super) components: &'a [ComponentView],
    /// Component statuses before this sync.
    pub(super) before: &'a HashMap<&'a str, ComponentStatus>,
    pub(super) now_ms: i64,
}

impl IncidentContext<'_> {
    /// The components that show `slo`.
    fn components_of(&self, slo: &str) -> Vec<&ComponentView> {
        self.components
            .iter()
            .filter(|c| c.slos.iter().any(|s| s == slo))
            .collect()
    }

    fn affected(&self, refs: &[ComponentRef]) -> Vec<AffectedComponent> {
        refs.iter()
            .map(|r| {
                let now = self
                    .components
                    .iter()
                    .find(|c| c.id == r.id)
                    .map_or(ComponentStatus::Operational, |c| c.status);
                let old = self
                    .before
                    .get(r.id.as_str())
                    .copied()
                    .unwrap_or(ComponentStatus::Operational);
                AffectedComponent {
                    code: r.id.clone(),
                    name: r.name.clone(),
                    old_status: old.as_str().to_string(),
                    new_status: now.as_str().to_string(),
                }
            })
            .collect()
    }

    /// "elevated error rate", "elevated latency" or, for escalations only,
    /// "unexpected authorization results".
    fn what(&self, slo: &str, kinds: &[String]) -> &'static str {
        if kinds.iter().all(|k| k == "escalation") {
            return "unexpected authorization results";
        }
        match self
            .catalog
            .slos
            .iter()
            .find(|s| s.id == slo)
            .map(|s| &s.sli)
        {
            Some(Sli::Latency { .. }) => "elevated latency",
            _ => "elevated error rate",
        }
    }
}

/// The alert kind: `escalation`, `page` or `ticket`.
fn kind(f: &Firing) -> &'static str {
    if f.alert.is_escalation() {
        "escalation"
    } else {
        f.alert.severity.as_str()
    }
}

/// Incident impact from the firing alert kinds (the page indicator a page
/// alert leads to: its component is in a major outage).
fn impact(kinds: &[String]) -> ComponentStatus {
    if kinds.iter().any(|k| k == "page" || k == "escalation") {
        ComponentStatus::MajorOutage
    } else {
        ComponentStatus::DegradedPerformance
    }
}

fn impact_rank(impact: &str) -> u8 {
    match impact {
        "critical" => 3,
        "major" => 2,
        "minor" => 1,
        _ => 0,
    }
}

/// A trailing-zero-free number, two decimals, three significant digits
/// below 1: `14.4`, `3.36`, `20`, `0.004`.
pub(super) fn num(v: f64) -> String {
    let decimals = if v.abs() >= 1.0 || v == 0.0 || !v.is_finite() {
        2
    } else {
        ((-v.abs().log10()).ceil() as usize + 2).min(9)
    };
    let s = format!("{v:.decimals$}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// One firing alert in words.
fn alert_words(f: &Firing) -> String {
    let a = &f.alert;
    if a.is_escalation() {
        return "an authorization check returned an unexpected result".into();
    }
    let (long, short) = a.rule.split_once('/').unwrap_or((a.rule, ""));
    let speed = match a.severity {
        Severity::Page => "fast burn",
        Severity::Ticket => "slow burn",
    };
    format!(
        "{speed}: the error budget is spent {}× the sustainable rate over {long} and {}× over {short} (alerting at {}×)",
        num(a.burn_long),
        num(a.burn_short),
        num(a.factor)
    )
}

fn names(refs: &[ComponentRef]) -> String {
    refs.iter()
        .map(|r| r.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A 12-hex-character id from `parts` (Statuspage ids are short opaque strings).
pub(super) fn short_id(parts: &[&str]) -> String {
    let mut h = sha2::Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize())[..12].to_string()
}

pub(super) async fn sync_open_incidents(
    store: &Store,
    ctx: &IncidentContext<'_>,
    firing: &[Firing],
) -> Result<(), StoreError> {
    let now = ctx.now_ms;
    // Only SLOs on the page raise incidents: one left out of every
    // component is internal.
    let mut by_slo: BTreeMap<&str, Vec<&Firing>> = BTreeMap::new();
    for f in firing {
        if !ctx.components_of(&f.alert.slo).is_empty() {
            by_slo.entry(f.alert.slo.as_str()).or_default().push(f);
        }
    }
    let mut open: HashMap<String, Incident> = store
        .open_incidents()
        .await?
        .into_iter()
        .map(|i| (i.slo.clone(), i))
        .collect();
    for (slo, alerts) in &by_slo {
        let kinds: Vec<String> = alerts
            .iter()
            .map(|f| kind(f).to_string())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let details = alerts
            .iter()
            .map(|f| alert_words(f))
            .collect::<Vec<_>>()
            .join("; ");
        let refs: Vec<ComponentRef> = ctx
            .components_of(slo)
            .iter()
            .map(|c| ComponentRef {
                id: c.id.clone(),
                name: c.name.clone(),
            })
            .collect();
        let what = ctx.what(slo, &kinds);
        match open.remove(*slo) {
            None => {
                let started_ms = alerts.iter().map(|f| f.started_ms).min().unwrap_or(now);
                let id = short_id(&[ctx.page_id, slo, &started_ms.to_string(), &now.to_string()]);
                let incident = Incident {
                    id: id.clone(),
                    slo: slo.to_string(),
                    name: format!("{}: {what}", names(&refs)),
                    status: "investigating".into(),
                    impact: impact(&kinds).indicator().into(),
                    severities: kinds,
                    components: refs.clone(),
                    started_ms,
                    created_ms: now,
                    updated_ms: now,
                    monitoring_ms: None,
                    resolved_ms: None,
                    updates: Vec::new(),
                };
                let update = IncidentUpdate {
                    id: short_id(&[&id, "1", &now.to_string()]),
                    incident_id: id,
                    status: "investigating".into(),
                    body: format!(
                        "Investigating {what} on {}. Detected automatically by SLO {slo}: {details}.",
                        names(&refs)
                    ),
                    created_ms: now,
                    affected: ctx.affected(&refs),
                };
                tracing::warn!(
                    incident = %incident.id, slo = %slo, impact = %incident.impact,
                    "status page incident opened"
                );
                store.open_incident(&incident, &update).await?;
            }
            Some(mut incident) if incident.severities != kinds => {
                let new_impact = impact(&kinds).indicator();
                if impact_rank(new_impact) > impact_rank(&incident.impact) {
                    incident.impact = new_impact.into();
                }
                incident.severities = kinds;
                incident.components = refs.clone();
                incident.updated_ms = now;
                let n = incident.updates.len() + 1;
                let update = IncidentUpdate {
                    id: short_id(&[&incident.id, &n.to_string(), &now.to_string()]),
                    incident_id: incident.id.clone(),
                    status: "investigating".into(),
                    body: format!(
                        "Still investigating {what} on {}. The alerts of SLO {slo} changed; now firing: {details}.",
                        names(&refs)
                    ),
                    created_ms: now,
                    affected: ctx.affected(&refs),
                };
                tracing::info!(incident = %incident.id, slo = %slo, "status page incident updated");
                store.update_incident(&incident, &update).await?;
            }
            Some(_) => {}
        }
    }
    // What is still open has no firing alert left (or its SLO left the page).
    for (slo, mut incident) in open {
        let what = ctx.what(&slo, &incident.severities);
        let why = if firing.iter().any(|f| f.alert.slo == slo) {
            format!("SLO {slo} is no longer shown on this page")
        } else {
            format!("every alert of SLO {slo} has cleared")
        };
        incident.status = "resolved".into();
        incident.updated_ms = now;
        incident.resolved_ms = Some(now);
        let n = incident.updates.len() + 1;
        let update = IncidentUpdate {
            id: short_id(&[&incident.id, &n.to_string(), &now.to_string()]),
            incident_id: incident.id.clone(),
            status: "resolved".into(),
            body: format!(
                "Resolved: {what} on {} is over; {why}.",
                names(&incident.components)
            ),
            created_ms: now,
            affected: ctx.affected(&incident.components),
        };
        tracing::info!(incident = %incident.id, slo = %slo, "status page incident resolved");
        store.update_incident(&incident, &update).await?;
    }
    Ok(())
}
