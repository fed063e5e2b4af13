//! Burn-rate notifications held back by scheduled maintenances with
//! `alerts: suppress`: an alert that fires while its SLO is covered is not
//! sent; if it still fires when the window ends it is sent then, and if it
//! resolves meanwhile its resolve is not sent either (nothing was opened).
//! Escalation pages are never held. Kept in memory: after a restart or a
//! leader change, an alert held before is treated as already notified.
use std::collections::{BTreeMap, BTreeSet};

use authpulse_proto::catalog::{MaintenanceAlerts, MaintenanceDef};

use super::{Event, Firing};

/// What to do with one event.
#[derive(Debug, PartialEq)]
pub enum Verdict<'a> {
    /// Send it (subject to silences and acknowledgements).
    Send,
    /// Hold it: the maintenance covering its SLO.
    Held(&'a MaintenanceDef),
    /// A resolve of an alert that was never notified: drop it.
    NeverNotified,
}

/// (SLO, severity) of the alerts held back.
#[derive(Default)]
pub struct MaintenanceHold {
    held: BTreeSet<(String, &'static str)>,
}

fn suppressing<'a>(
    maintenance: &BTreeMap<&str, &'a MaintenanceDef>,
    slo: &str,
) -> Option<&'a MaintenanceDef> {
    maintenance
        .get(slo)
        .copied()
        .filter(|m| m.alerts == MaintenanceAlerts::Suppress)
}

impl MaintenanceHold {
    /// Decides for `event`, given the SLOs in maintenance now.
    pub fn verdict<'a>(
        &mut self,
        event: &Event,
        maintenance: &BTreeMap<&str, &'a MaintenanceDef>,
    ) -> Verdict<'a> {
        let a = &event.firing().alert;
        let key = (a.slo.clone(), a.severity.as_str());
        if let Event::Resolve { .. } = event {
            return if self.held.remove(&key) {
                Verdict::NeverNotified
            } else {
                Verdict::Send
            };
        }
        match suppressing(maintenance, &a.slo) {
            Some(m) => {
                self.held.insert(key);
                Verdict::Held(m)
            }
            None => Verdict::Send,
        }
    }

    /// The held alerts, among those `firing`, whose maintenance is over:
    /// to be notified now (and no longer held).
    pub fn released<'f>(
        &mut self,
        firing: impl Iterator<Item = &'f Firing>,
        maintenance: &BTreeMap<&str, &MaintenanceDef>,
    ) -> Vec<Firing> {
        let out: Vec<Firing> = firing
            .filter(|f| {
                self.held
                    .contains(&(f.alert.slo.clone(), f.alert.severity.as_str()))
                    && suppressing(maintenance, &f.alert.slo).is_none()
            })
            .cloned()
            .collect();
        for f in &out {
            self.held
                .remove(&(f.alert.slo.clone(), f.alert.severity.as_str()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerting::{Alert, Severity};

    fn firing(slo: &str) -> Firing {
        Firing {
            alert: Alert {
                slo: slo.into(),
                severity: Severity::Page,
                rule: "1h/5m",
                burn_long: 20.0,
                burn_short: 30.0,
                factor: 14.4,
            },
            started_ms: 0,
            last_sent_ms: 0,
        }
    }

    fn maintenance(alerts: MaintenanceAlerts) -> MaintenanceDef {
        MaintenanceDef {
            id: "work".into(),
            name: "Work".into(),
            starts: "2026-12-01T00:00:00Z".into(),
            ends: "2026-12-01T01:00:00Z".into(),
            components: vec!["login".into()],
            message: None,
            alerts,
            gates: Default::default(),
            source: None,
        }
    }

    #[test]
    fn held_alerts_are_released_when_the_window_ends_or_dropped_on_resolve() {
        let m = maintenance(MaintenanceAlerts::Suppress);
        let during: BTreeMap<&str, &MaintenanceDef> = [("login", &m)].into_iter().collect();
        let after = BTreeMap::new();
        let mut hold = MaintenanceHold::default();
        assert_eq!(
            hold.verdict(&Event::Fire(firing("login")), &during),
            Verdict::Held(&m)
        );
        assert_eq!(
            hold.verdict(&Event::Fire(firing("other")), &during),
            Verdict::Send
        );
        // Still in the window: nothing released.
        let all = [firing("login"), firing("other")];
        assert!(hold.released(all.iter(), &during).is_empty());
        // Over: the login page is released once.
        let out = hold.released(all.iter(), &after);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].alert.slo, "login");
        assert!(hold.released(all.iter(), &after).is_empty());
        // Its later resolve is sent (it was notified on release).
        let resolve = Event::Resolve {
            firing: firing("login"),
            ended_ms: 1,
        };
        assert_eq!(hold.verdict(&resolve, &after), Verdict::Send);
        // Held then resolved within the window: the resolve is dropped.
        assert_eq!(
            hold.verdict(&Event::Fire(firing("login")), &during),
            Verdict::Held(&m)
        );
        assert_eq!(hold.verdict(&resolve, &during), Verdict::NeverNotified);
        // `alerts: notify` holds nothing.
        let n = maintenance(MaintenanceAlerts::Notify);
        let notify: BTreeMap<&str, &MaintenanceDef> = [("login", &n)].into_iter().collect();
        assert_eq!(
            hold.verdict(&Event::Fire(firing("login")), &notify),
            Verdict::Send
        );
    }
}
