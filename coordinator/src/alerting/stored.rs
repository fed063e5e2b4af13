//! Firing alerts in and out of the store. The store keeps plain rows
//! ([`AlertRow`] for burn-rate alerts, [`EscalationAlertRow`] for
//! escalation pages) and knows nothing of rules or severities; this trait
//! gives the alerting code, the status page and the API the [`Firing`]s
//! they work with, checking on the way in that a stored severity and rule
//! are ones this version knows.
use crate::store::{AlertRow, EscalationAlertRow, Store, StoreError};

use super::{Alert, Firing, escalation_alert, rule_label};

/// [`Firing`] alerts as stored: `use crate::alerting::AlertStore` and call
/// these on a [`Store`].
pub(crate) trait AlertStore {
    /// The firing burn-rate alerts, ordered by SLO and severity.
    async fn firing_alerts(&self) -> Result<Vec<Firing>, StoreError>;

    /// Inserts or updates a firing burn-rate alert.
    async fn save_alert(&self, f: &Firing) -> Result<(), StoreError>;

    /// The firing escalation alerts, each with when an escalation was last
    /// seen for its SLO.
    async fn escalation_alerts(&self) -> Result<Vec<(Firing, i64)>, StoreError>;

    /// Inserts or updates a firing escalation alert.
    async fn save_escalation_alert(&self, f: &Firing, last_seen_ms: i64) -> Result<(), StoreError>;
}

impl AlertStore for Store {
    async fn firing_alerts(&self) -> Result<Vec<Firing>, StoreError> {
        self.alert_rows()
            .await?
            .into_iter()
            .map(firing_from_row)
            .collect()
    }

    async fn save_alert(&self, f: &Firing) -> Result<(), StoreError> {
        self.save_alert_row(&AlertRow {
            slo: f.alert.slo.clone(),
            severity: f.alert.severity.as_str().to_string(),
            rule: f.alert.rule.to_string(),
            burn_long: f.alert.burn_long,
            burn_short: f.alert.burn_short,
            factor: f.alert.factor,
            started_ms: f.started_ms,
            last_sent_ms: f.last_sent_ms,
        })
        .await
    }

    async fn escalation_alerts(&self) -> Result<Vec<(Firing, i64)>, StoreError> {
        Ok(self
            .escalation_alert_rows()
            .await?
            .into_iter()
            .map(|e| {
                let firing = Firing {
                    alert: escalation_alert(&e.slo),
                    started_ms: e.started_ms,
                    last_sent_ms: e.last_sent_ms,
                };
                (firing, e.last_seen_ms)
            })
            .collect())
    }

    async fn save_escalation_alert(&self, f: &Firing, last_seen_ms: i64) -> Result<(), StoreError> {
        self.save_escalation_alert_row(&EscalationAlertRow {
            slo: f.alert.slo.clone(),
            started_ms: f.started_ms,
            last_sent_ms: f.last_sent_ms,
            last_seen_ms,
        })
        .await
    }
}

/// A stored burn-rate alert; an unknown severity or rule (written by a
/// newer version) is an error, not a guess.
fn firing_from_row(row: AlertRow) -> Result<Firing, StoreError> {
    let rule = rule_label(&row.rule)
        .ok_or_else(|| StoreError::Invalid(format!("unknown alert rule `{}`", row.rule)))?;
    Ok(Firing {
        alert: Alert {
            slo: row.slo,
            severity: row.severity.parse().map_err(StoreError::Invalid)?,
            rule,
            burn_long: row.burn_long,
            burn_short: row.burn_short,
            factor: row.factor,
        },
        started_ms: row.started_ms,
        last_sent_ms: row.last_sent_ms,
    })
}
