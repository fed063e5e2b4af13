//! Agents as the coordinator knows them (`agents`): what each said in its
//! hello, its acknowledged seq (what a reconnecting agent continues from),
//! its health reports, the assignment version it was sent, connection state
//! and last sign of life. Written by ingest, read by the fleet view and the
//! API.
use std::collections::BTreeMap;

use sqlx::Row;

use super::{Result, Store, clamp, now_ms, unsigned};

/// What an agent says about itself in its hello.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentInfo {
    pub agent_id: String,
    pub region: String,
    pub version: String,
    pub labels: BTreeMap<String, String>,
}

/// What the coordinator last learned about an agent's health.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AgentHealth {
    /// Agent clock minus coordinator clock, milliseconds.
    pub clock_skew_ms: i64,
    pub spool_depth: u64,
    pub spool_bytes: u64,
    pub dropped_total: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentRow {
    pub info: AgentInfo,
    pub acked_seq: u64,
    /// Results stored for this agent since it was first seen (duplicates excluded).
    pub stored_total: u64,
    /// The assignment version last sent to (or reported by) the agent.
    pub assignment_version: u64,
    pub health: AgentHealth,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    pub connected: bool,
}

impl Store {
    /// The highest contiguous seq acknowledged to this agent (0 = none or unknown agent).
    pub async fn acked_seq(&self, agent_id: &str) -> Result<u64> {
        let v: Option<i64> = sqlx::query_scalar("SELECT acked_seq FROM agents WHERE agent_id = $1")
            .bind(agent_id)
            .fetch_optional(&self.read)
            .await?;
        Ok(v.map(unsigned).unwrap_or(0))
    }

    /// Records a new ack. Never moves it backwards: a late write from a
    /// superseded stream must not undo a newer stream's progress.
    /// Also counts as a sign of life (updates last_seen).
    pub async fn set_acked_seq(&self, agent_id: &str, acked_seq: u64) -> Result<()> {
        sqlx::query(
            "UPDATE agents SET acked_seq = CASE WHEN acked_seq > $1 THEN acked_seq ELSE $1 END,
                last_seen_ms = $2 WHERE agent_id = $3",
        )
        .bind(clamp(acked_seq))
        .bind(now_ms())
        .bind(agent_id)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Inserts or refreshes an agent from its hello and marks it connected.
    /// The stored ack is kept: it is what the agent continues from.
    pub async fn upsert_agent(&self, info: &AgentInfo) -> Result<()> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO agents (agent_id, region, version, labels_json, acked_seq, first_seen_ms, last_seen_ms, connected)
             VALUES ($1, $2, $3, $4, 0, $5, $6, 1)
             ON CONFLICT (agent_id) DO UPDATE SET
                region = excluded.region, version = excluded.version, labels_json = excluded.labels_json,
                last_seen_ms = excluded.last_seen_ms, connected = 1",
        )
        .bind(&info.agent_id)
        .bind(&info.region)
        .bind(&info.version)
        .bind(serde_json::to_string(&info.labels)?)
        .bind(now)
        .bind(now)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Records what an agent said about itself (hello, heartbeat); also a sign of life.
    pub async fn record_health(&self, agent_id: &str, h: &AgentHealth) -> Result<()> {
        sqlx::query(
            "UPDATE agents SET clock_skew_ms = $1, spool_depth = $2, spool_bytes = $3, dropped_total = $4,
                last_seen_ms = $5 WHERE agent_id = $6",
        )
        .bind(h.clock_skew_ms)
        .bind(clamp(h.spool_depth))
        .bind(clamp(h.spool_bytes))
        .bind(clamp(h.dropped_total))
        .bind(now_ms())
        .bind(agent_id)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    pub async fn set_assignment_version(&self, agent_id: &str, version: u64) -> Result<()> {
        sqlx::query("UPDATE agents SET assignment_version = $1 WHERE agent_id = $2")
            .bind(clamp(version))
            .bind(agent_id)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Updates last_seen (heartbeats, batches).
    pub async fn touch_agent(&self, agent_id: &str) -> Result<()> {
        sqlx::query("UPDATE agents SET last_seen_ms = $1 WHERE agent_id = $2")
            .bind(now_ms())
            .bind(agent_id)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    pub async fn set_connected(&self, agent_id: &str, connected: bool) -> Result<()> {
        sqlx::query("UPDATE agents SET connected = $1, last_seen_ms = $2 WHERE agent_id = $3")
            .bind(i64::from(connected))
            .bind(now_ms())
            .bind(agent_id)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// At start no stream exists yet, whatever a crashed predecessor left behind.
    pub async fn mark_all_disconnected(&self) -> Result<()> {
        sqlx::query("UPDATE agents SET connected = 0 WHERE connected != 0")
            .execute(&self.write)
            .await?;
        Ok(())
    }

    pub async fn agents(&self) -> Result<Vec<AgentRow>> {
        let rows = sqlx::query(
            "SELECT agent_id, region, version, labels_json, acked_seq, first_seen_ms, last_seen_ms, connected,
                    assignment_version, clock_skew_ms, spool_depth, spool_bytes, dropped_total, stored_total
             FROM agents ORDER BY agent_id",
        )
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|row| {
                let labels: String = row.try_get("labels_json")?;
                Ok(AgentRow {
                    info: AgentInfo {
                        agent_id: row.try_get("agent_id")?,
                        region: row.try_get("region")?,
                        version: row.try_get("version")?,
                        labels: serde_json::from_str(&labels)?,
                    },
                    acked_seq: unsigned(row.try_get("acked_seq")?),
                    assignment_version: unsigned(row.try_get("assignment_version")?),
                    stored_total: unsigned(row.try_get("stored_total")?),
                    health: AgentHealth {
                        clock_skew_ms: row.try_get("clock_skew_ms")?,
                        spool_depth: unsigned(row.try_get("spool_depth")?),
                        spool_bytes: unsigned(row.try_get("spool_bytes")?),
                        dropped_total: unsigned(row.try_get("dropped_total")?),
                    },
                    first_seen_ms: row.try_get("first_seen_ms")?,
                    last_seen_ms: row.try_get("last_seen_ms")?,
                    connected: row.try_get::<i64, _>("connected")? != 0,
                })
            })
            .collect()
    }
}
