//! The status page's state: the last status shown
//! per component (`status_components`), incidents (`incidents`, at most one
//! unresolved per SLO) with their updates (`incident_updates`, the entries
//! of the Atom feed), and the page's stable id (in `meta`). The row types
//! are defined here; the status page decides what goes in them.
use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Result, Store};

/// A component's stored status (`status_components`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ComponentState {
    pub id: String,
    pub status: String,
    pub created_ms: i64,
    /// When the status last changed.
    pub updated_ms: i64,
}

/// A component as an incident remembers it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentRef {
    pub id: String,
    pub name: String,
}

/// Statuspage's `affected_components` entry of an incident update.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AffectedComponent {
    pub code: String,
    pub name: String,
    pub old_status: String,
    pub new_status: String,
}

/// One incident: opened when an alert of an SLO on the page starts firing,
/// resolved when the SLO has no firing alert left.
#[derive(Clone, Debug, PartialEq)]
pub struct Incident {
    pub id: String,
    pub slo: String,
    pub name: String,
    /// `investigating` or `resolved` (the automation never claims to have
    /// identified a cause).
    pub status: String,
    /// `minor` (ticket alerts only) or `critical` (a page or escalation
    /// alert); never lowered while open.
    pub impact: String,
    /// The firing alert kinds the last update described: `escalation`,
    /// `page`, `ticket`.
    pub severities: Vec<String>,
    pub components: Vec<ComponentRef>,
    /// When the earliest of its alerts started firing.
    pub started_ms: i64,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub monitoring_ms: Option<i64>,
    pub resolved_ms: Option<i64>,
    /// Newest first.
    pub updates: Vec<IncidentUpdate>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct IncidentUpdate {
    pub id: String,
    pub incident_id: String,
    pub status: String,
    pub body: String,
    pub created_ms: i64,
    pub affected: Vec<AffectedComponent>,
}

/// The status page's state: component statuses, incidents with their
/// updates, the page id.
impl Store {
    /// The last status shown per component.
    pub async fn status_components(&self) -> Result<Vec<ComponentState>> {
        let rows = sqlx::query("SELECT id, status, created_ms, updated_ms FROM status_components")
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(ComponentState {
                    id: r.try_get("id")?,
                    status: r.try_get("status")?,
                    created_ms: r.try_get("created_ms")?,
                    updated_ms: r.try_get("updated_ms")?,
                })
            })
            .collect()
    }

    /// Inserts or replaces component statuses, all in one transaction.
    pub async fn save_status_components(&self, states: &[ComponentState]) -> Result<()> {
        let mut tx = self.write.begin().await?;
        for s in states {
            sqlx::query(
                "INSERT INTO status_components (id, status, created_ms, updated_ms) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (id) DO UPDATE SET status = excluded.status,
                   created_ms = excluded.created_ms, updated_ms = excluded.updated_ms",
            )
            .bind(&s.id)
            .bind(&s.status)
            .bind(s.created_ms)
            .bind(s.updated_ms)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        // What the status feed shows changed.
        self.bump();
        Ok(())
    }

    /// Stores a new incident with its first update (one transaction). Fails
    /// if its SLO already has an unresolved incident.
    pub async fn open_incident(&self, incident: &Incident, first: &IncidentUpdate) -> Result<()> {
        self.write_incident(incident, first, true).await
    }

    /// Stores an incident's new state with the update that explains it (one
    /// transaction); resolving is an update with status `resolved` and
    /// `resolved_ms` set.
    pub async fn update_incident(
        &self,
        incident: &Incident,
        update: &IncidentUpdate,
    ) -> Result<()> {
        self.write_incident(incident, update, false).await
    }

    async fn write_incident(&self, i: &Incident, u: &IncidentUpdate, new: bool) -> Result<()> {
        let mut tx = self.write.begin().await?;
        let sql = if new {
            "INSERT INTO incidents (id, slo, name, status, impact, severities_json, components_json,
                started_ms, created_ms, updated_ms, monitoring_ms, resolved_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        } else {
            "UPDATE incidents SET slo = $2, name = $3, status = $4, impact = $5,
                severities_json = $6, components_json = $7, started_ms = $8, created_ms = $9,
                updated_ms = $10, monitoring_ms = $11, resolved_ms = $12
             WHERE id = $1"
        };
        sqlx::query(sql)
            .bind(&i.id)
            .bind(&i.slo)
            .bind(&i.name)
            .bind(&i.status)
            .bind(&i.impact)
            .bind(serde_json::to_string(&i.severities)?)
            .bind(serde_json::to_string(&i.components)?)
            .bind(i.started_ms)
            .bind(i.created_ms)
            .bind(i.updated_ms)
            .bind(i.monitoring_ms)
            .bind(i.resolved_ms)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO incident_updates (id, incident_id, status, body, created_ms, affected_json)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&u.id)
        .bind(&i.id)
        .bind(&u.status)
        .bind(&u.body)
        .bind(u.created_ms)
        .bind(serde_json::to_string(&u.affected)?)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.bump();
        Ok(())
    }

    /// The unresolved incidents, oldest first, with their updates.
    pub async fn open_incidents(&self) -> Result<Vec<Incident>> {
        let rows = sqlx::query(
            "SELECT * FROM incidents WHERE resolved_ms IS NULL ORDER BY created_ms, id",
        )
        .fetch_all(&self.read)
        .await?;
        self.incidents_from_rows(&rows).await
    }

    /// The `limit` most recently created incidents, newest first, with
    /// their updates.
    pub async fn recent_incidents(&self, limit: u32) -> Result<Vec<Incident>> {
        let rows =
            sqlx::query("SELECT * FROM incidents ORDER BY created_ms DESC, id DESC LIMIT $1")
                .bind(i64::from(limit))
                .fetch_all(&self.read)
                .await?;
        self.incidents_from_rows(&rows).await
    }

    /// When any incident last changed (opened, updated, resolved).
    pub async fn incidents_updated_ms(&self) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar("SELECT MAX(updated_ms) FROM incidents")
            .fetch_one(&self.read)
            .await?)
    }

    /// One incident by id, with its updates.
    pub async fn incident(&self, id: &str) -> Result<Option<Incident>> {
        let rows = sqlx::query("SELECT * FROM incidents WHERE id = $1")
            .bind(id)
            .fetch_all(&self.read)
            .await?;
        Ok(self.incidents_from_rows(&rows).await?.pop())
    }

    /// Incidents from `incidents` rows, each with its updates newest first.
    async fn incidents_from_rows(&self, rows: &[AnyRow]) -> Result<Vec<Incident>> {
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let severities: String = r.try_get("severities_json")?;
            let components: String = r.try_get("components_json")?;
            out.push(Incident {
                id: r.try_get("id")?,
                slo: r.try_get("slo")?,
                name: r.try_get("name")?,
                status: r.try_get("status")?,
                impact: r.try_get("impact")?,
                severities: serde_json::from_str(&severities)?,
                components: serde_json::from_str(&components)?,
                started_ms: r.try_get("started_ms")?,
                created_ms: r.try_get("created_ms")?,
                updated_ms: r.try_get("updated_ms")?,
                monitoring_ms: r.try_get("monitoring_ms")?,
                resolved_ms: r.try_get("resolved_ms")?,
                updates: Vec::new(),
            });
        }
        if out.is_empty() {
            return Ok(out);
        }
        let ids: Vec<&str> = out.iter().map(|i| i.id.as_str()).collect();
        let sql = format!(
            "SELECT id, incident_id, status, body, created_ms, affected_json FROM incident_updates
             WHERE incident_id IN {}
             ORDER BY created_ms DESC, rowid DESC",
            self.text_list(1)
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(serde_json::to_string(&ids)?)
            .fetch_all(&self.read)
            .await?;
        let mut updates: HashMap<String, Vec<IncidentUpdate>> = HashMap::new();
        for r in &rows {
            let affected: String = r.try_get("affected_json")?;
            let u = IncidentUpdate {
                id: r.try_get("id")?,
                incident_id: r.try_get("incident_id")?,
                status: r.try_get("status")?,
                body: r.try_get("body")?,
                created_ms: r.try_get("created_ms")?,
                affected: serde_json::from_str(&affected)?,
            };
            updates.entry(u.incident_id.clone()).or_default().push(u);
        }
        for i in &mut out {
            i.updates = updates.remove(&i.id).unwrap_or_default();
        }
        Ok(out)
    }

    /// This installation's status page id (12 hex characters), made up on
    /// first use and kept in `meta`, so feed and incident ids stay stable.
    pub async fn statuspage_id(&self) -> Result<String> {
        use sha2::Digest;
        let known: Option<String> =
            sqlx::query_scalar("SELECT value FROM meta WHERE key = 'statuspage_id'")
                .fetch_optional(&self.read)
                .await?;
        if let Some(id) = known {
            return Ok(id);
        }
        let seed = format!(
            "{}:{}:{}",
            self.location,
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
            std::process::id()
        );
        let fresh = hex::encode(sha2::Sha256::digest(seed.as_bytes()));
        sqlx::query("INSERT INTO meta (key, value) VALUES ('statuspage_id', $1) ON CONFLICT (key) DO NOTHING")
            .bind(&fresh[..12])
            .execute(&self.write)
            .await?;
        let id: String = sqlx::query_scalar("SELECT value FROM meta WHERE key = 'statuspage_id'")
            .fetch_one(&self.write)
            .await?;
        Ok(id)
    }
}
