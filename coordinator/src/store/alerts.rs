//! Alert state: the firing burn-rate alerts (`alerts`), the firing
//! escalation alerts (kept in `meta` under `escalation_alert:<slo>`), and
//! silences and acknowledgements (`alert_silences`). Rows only: what an
//! alert means, and how rules and severities are named, is the business
//! of the alerting module, which converts these rows.
use sqlx::Row;

use super::{Result, Store};

/// One firing burn-rate alert as stored (`alerts`, one row per SLO and
/// severity). The alerting module turns it into its `Firing`.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertRow {
    pub slo: String,
    /// `page`, `ticket`.
    pub severity: String,
    /// The rule that matched, e.g. `1h/5m`.
    pub rule: String,
    pub burn_long: f64,
    pub burn_short: f64,
    pub factor: f64,
    pub started_ms: i64,
    pub last_sent_ms: i64,
}

/// One firing escalation alert: when it started, when it was last sent and
/// when an escalation was last seen for its SLO.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EscalationAlertRow {
    pub slo: String,
    pub started_ms: i64,
    pub last_sent_ms: i64,
    pub last_seen_ms: i64,
}

/// A silence (`until_ms` set) or acknowledgement of one alert.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Silence {
    pub slo: String,
    /// `page`, `ticket`.
    pub severity: String,
    pub until_ms: Option<i64>,
    pub created_by: String,
    pub reason: String,
    pub created_ms: i64,
}

impl Store {
    /// The firing alerts, ordered by SLO and severity.
    pub async fn alert_rows(&self) -> Result<Vec<AlertRow>> {
        let rows = sqlx::query(
            "SELECT slo, severity, rule, burn_long, burn_short, factor, started_ms, last_sent_ms
             FROM alerts ORDER BY slo, severity",
        )
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(AlertRow {
                    slo: row.try_get("slo")?,
                    severity: row.try_get("severity")?,
                    rule: row.try_get("rule")?,
                    burn_long: row.try_get("burn_long")?,
                    burn_short: row.try_get("burn_short")?,
                    factor: row.try_get("factor")?,
                    started_ms: row.try_get("started_ms")?,
                    last_sent_ms: row.try_get("last_sent_ms")?,
                })
            })
            .collect()
    }

    /// Inserts or updates a firing alert.
    pub async fn save_alert_row(&self, a: &AlertRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO alerts (slo, severity, rule, burn_long, burn_short, factor, started_ms, last_sent_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (slo, severity) DO UPDATE SET rule = excluded.rule,
               burn_long = excluded.burn_long, burn_short = excluded.burn_short,
               factor = excluded.factor, started_ms = excluded.started_ms,
               last_sent_ms = excluded.last_sent_ms",
        )
        .bind(&a.slo)
        .bind(&a.severity)
        .bind(&a.rule)
        .bind(a.burn_long)
        .bind(a.burn_short)
        .bind(a.factor)
        .bind(a.started_ms)
        .bind(a.last_sent_ms)
        .execute(&self.write)
        .await?;
        self.bump();
        Ok(())
    }

    /// Forgets a resolved alert (`severity` as stored: `page`, `ticket`).
    pub async fn delete_alert(&self, slo: &str, severity: &str) -> Result<()> {
        sqlx::query("DELETE FROM alerts WHERE slo = $1 AND severity = $2")
            .bind(slo)
            .bind(severity)
            .execute(&self.write)
            .await?;
        self.bump();
        Ok(())
    }

    /// Records a silence (`until_ms` set) or an acknowledgement (`None`).
    pub async fn put_silence(&self, s: &Silence) -> Result<()> {
        sqlx::query(
            "INSERT INTO alert_silences (slo, severity, kind, until_ms, created_by, reason, created_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (slo, severity, kind) DO UPDATE SET until_ms = excluded.until_ms,
                created_by = excluded.created_by, reason = excluded.reason, created_ms = excluded.created_ms",
        )
        .bind(&s.slo)
        .bind(&s.severity)
        .bind(if s.until_ms.is_some() { "silence" } else { "ack" })
        .bind(s.until_ms)
        .bind(&s.created_by)
        .bind(&s.reason)
        .bind(s.created_ms)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Silences still in force at `now_ms` and every acknowledgement.
    pub async fn silences(&self, now_ms: i64) -> Result<Vec<Silence>> {
        let rows = sqlx::query(
            "SELECT slo, severity, until_ms, created_by, reason, created_ms FROM alert_silences
             WHERE until_ms IS NULL OR until_ms > $1",
        )
        .bind(now_ms)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Silence {
                    slo: r.try_get("slo")?,
                    severity: r.try_get("severity")?,
                    until_ms: r.try_get("until_ms")?,
                    created_by: r.try_get("created_by")?,
                    reason: r.try_get("reason")?,
                    created_ms: r.try_get("created_ms")?,
                })
            })
            .collect()
    }

    /// An alert resolved: its acknowledgement ends with it.
    pub async fn clear_ack(&self, slo: &str, severity: &str) -> Result<()> {
        sqlx::query("DELETE FROM alert_silences WHERE slo = $1 AND severity = $2 AND kind = 'ack'")
            .bind(slo)
            .bind(severity)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// The firing escalation alerts, ordered by SLO, kept in `meta` under
    /// `escalation_alert:<slo>` (no table of their own).
    pub async fn escalation_alert_rows(&self) -> Result<Vec<EscalationAlertRow>> {
        let rows = sqlx::query(
            "SELECT key, value FROM meta WHERE key LIKE 'escalation_alert:%' ORDER BY key",
        )
        .fetch_all(&self.read)
        .await?;
        let mut out = Vec::new();
        for row in &rows {
            let key: String = row.try_get("key")?;
            let value: String = row.try_get("value")?;
            let slo = key.trim_start_matches("escalation_alert:");
            // `[started_ms, last_sent_ms, last_seen_ms]`.
            let (started_ms, last_sent_ms, last_seen_ms): (i64, i64, i64) =
                serde_json::from_str(&value)?;
            out.push(EscalationAlertRow {
                slo: slo.to_string(),
                started_ms,
                last_sent_ms,
                last_seen_ms,
            });
        }
        Ok(out)
    }

    /// Inserts or updates a firing escalation alert.
    pub async fn save_escalation_alert_row(&self, e: &EscalationAlertRow) -> Result<()> {
        let value = serde_json::to_string(&(e.started_ms, e.last_sent_ms, e.last_seen_ms))?;
        sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
            .bind(format!("escalation_alert:{}", e.slo))
            .bind(value)
            .execute(&self.write)
            .await?;
        self.bump();
        Ok(())
    }

    /// Forgets a resolved escalation alert.
    pub async fn delete_escalation_alert(&self, slo: &str) -> Result<()> {
        sqlx::query("DELETE FROM meta WHERE key = $1")
            .bind(format!("escalation_alert:{slo}"))
            .execute(&self.write)
            .await?;
        self.bump();
        Ok(())
    }
}
