//! Raw probe results as read back from `results` (the idempotent insert is
//! `batch_write.rs`): the newest run
//! per probe and region, the dashboard's recent runs, SLO counts over raw
//! results, stored seqs, failure-class and escalation look-ups, and the
//! age-based prune. The row shapes ([`StoredResult`], [`StoredStep`],
//! [`StoredTimings`]) are what the API serves from.
use std::collections::BTreeSet;

use authpulse_proto::v1::{StepResult, Timings};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Backend, Result, Store, clamp, now_ms, unsigned};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InsertStats {
    pub inserted: u64,
    pub duplicates: u64,
}

/// Phase timings in microseconds, `None` where the phase did not happen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredTimings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_us: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_us: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_us: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttfb_us: Option<u64>,
    pub total_us: u64,
}

impl From<Option<&Timings>> for StoredTimings {
    fn from(t: Option<&Timings>) -> Self {
        match t {
            Some(t) => StoredTimings {
                dns_us: t.dns_us,
                connect_us: t.connect_us,
                tls_us: t.tls_us,
                ttfb_us: t.ttfb_us,
                total_us: t.total_us,
            },
            None => StoredTimings::default(),
        }
    }
}

/// One journey step as kept in `results.steps_json`. Enum fields are the
/// proto's integer values, like the `results` columns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredStep {
    pub name: String,
    pub kind: String,
    pub outcome: i32,
    pub failure_class: i32,
    pub timings: StoredTimings,
    #[serde(default)]
    pub detail: String,
}

impl From<&StepResult> for StoredStep {
    fn from(s: &StepResult) -> Self {
        StoredStep {
            name: s.name.clone(),
            kind: s.kind.clone(),
            outcome: s.outcome,
            failure_class: s.failure_class,
            timings: s.timings.as_ref().into(),
            detail: s.detail.clone(),
        }
    }
}

/// A result as read back from the database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredResult {
    pub agent_id: String,
    pub seq: u64,
    pub probe_id: String,
    pub region: String,
    pub started_ms: i64,
    pub duration_us: u64,
    pub outcome: i32,
    pub failure_class: i32,
    pub timings: StoredTimings,
    pub steps: Vec<StoredStep>,
    pub detail: String,
    pub assignment_version: u64,
    pub received_ms: i64,
}

impl Store {
    /// The highest seq stored for this agent, contiguous or not (0 = none).
    pub async fn highest_stored_seq(&self, agent_id: &str) -> Result<u64> {
        let v: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM results WHERE agent_id = $1")
            .bind(agent_id)
            .fetch_one(&self.read)
            .await?;
        Ok(v.map(unsigned).unwrap_or(0))
    }

    /// The newest stored result of every (probe, region), ordered by probe then region.
    pub async fn latest_per_probe_region(&self) -> Result<Vec<StoredResult>> {
        let rows = sqlx::query(
            "SELECT r.* FROM latest l JOIN results r ON r.agent_id = l.agent_id AND r.seq = l.seq
             ORDER BY l.probe_id, l.region",
        )
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(result_from_row).collect()
    }

    /// The newest `per_series` results of every (probe, region) started at
    /// or after `since_ms`, oldest first within each, ordered by probe then
    /// region (the dashboard's grid of recent runs).
    pub async fn recent_results(
        &self,
        since_ms: i64,
        per_series: u32,
    ) -> Result<Vec<StoredResult>> {
        let rows = sqlx::query(
            "SELECT * FROM (
                SELECT r.*, ROW_NUMBER() OVER (
                    PARTITION BY probe_id, region ORDER BY started_ms DESC, seq DESC) AS rn
                FROM results r WHERE started_ms >= $1) AS ranked
             WHERE rn <= $2 ORDER BY probe_id, region, started_ms, seq",
        )
        .bind(since_ms)
        .bind(i64::from(per_series))
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(result_from_row).collect()
    }

    /// `(good, total)` over results of `probe_ids` (all regions) started at or
    /// after `since_ms`. Good = success, and with a threshold also
    /// `total_us <= threshold`.
    pub async fn slo_counts(
        &self,
        probe_ids: &[String],
        since_ms: i64,
        latency_threshold_us: Option<u64>,
    ) -> Result<(u64, u64)> {
        // The id list travels as one JSON parameter so the SQL text stays static.
        let ids = serde_json::to_string(probe_ids)?;
        let sql = format!(
            "SELECT
                COALESCE(SUM(CASE WHEN outcome = 1 AND ($1 IS NULL OR total_us <= $1) THEN 1 ELSE 0 END), 0) AS good,
                COUNT(*) AS total
             FROM results
             WHERE probe_id IN {} AND started_ms >= $3",
            self.text_list(2)
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(latency_threshold_us.map(clamp))
            .bind(ids)
            .bind(since_ms)
            .fetch_one(&self.read)
            .await?;
        Ok((
            unsigned(row.try_get("good")?),
            unsigned(row.try_get("total")?),
        ))
    }

    /// Like [`slo_counts`](Self::slo_counts) for several start points at once
    /// (the SLO window and every burn-rate window) in one pass over the
    /// oldest range; returns (good, total) per entry of `since_ms`.
    pub async fn slo_counts_since(
        &self,
        probe_ids: &[String],
        since_ms: &[i64],
        latency_threshold_us: Option<u64>,
    ) -> Result<Vec<(u64, u64)>> {
        let Some(&oldest) = since_ms.iter().min() else {
            return Ok(Vec::new());
        };
        let ids = serde_json::to_string(probe_ids)?;
        // One conditional sum pair per start point; the SQL is built from a
        // fixed template and only the count varies, values are bound.
        let mut sql = String::from("SELECT ");
        for i in 0..since_ms.len() {
            let p = i + 4;
            sql.push_str(&format!(
                "COALESCE(SUM(CASE WHEN started_ms >= ${p} AND outcome = 1 AND ($1 IS NULL OR total_us <= $1) THEN 1 ELSE 0 END), 0) AS g{i}, \
                 COALESCE(SUM(CASE WHEN started_ms >= ${p} THEN 1 ELSE 0 END), 0) AS t{i}, "
            ));
        }
        sql.push_str(&format!(
            "0 AS unused FROM results WHERE probe_id IN {} AND started_ms >= $3",
            self.text_list(2)
        ));
        // Safe: built only from integer placeholders, never from input.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(latency_threshold_us.map(clamp))
            .bind(ids)
            .bind(oldest);
        for since in since_ms {
            q = q.bind(*since);
        }
        let row = q.fetch_one(&self.read).await?;
        (0..since_ms.len())
            .map(|i| {
                Ok((
                    unsigned(row.try_get(format!("g{i}").as_str())?),
                    unsigned(row.try_get(format!("t{i}").as_str())?),
                ))
            })
            .collect()
    }

    /// Deletes results started before `older_than_ms`; returns how many.
    /// Works in chunks so ingest (same single writer) is never blocked for long.
    pub async fn prune(&self, older_than_ms: i64) -> Result<u64> {
        const CHUNK: i64 = 5000;
        let mut deleted = 0;
        loop {
            let row_id = match self.backend {
                Backend::Sqlite => "rowid",
                Backend::Postgres => "ctid",
            };
            let sql = format!(
                "DELETE FROM results WHERE {row_id} IN
                    (SELECT {row_id} FROM results WHERE started_ms < $1 LIMIT $2)"
            );
            let n = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(older_than_ms)
                .bind(CHUNK)
                .execute(&self.write)
                .await?
                .rows_affected();
            deleted += n;
            if n < CHUNK as u64 {
                break;
            }
            tokio::task::yield_now().await;
        }
        sqlx::query("DELETE FROM latest WHERE started_ms < $1")
            .bind(older_than_ms)
            .execute(&self.write)
            .await?;
        sqlx::query("DELETE FROM escalations WHERE received_ms < $1")
            .bind(older_than_ms)
            .execute(&self.write)
            .await?;
        self.prune_minutes(now_ms()).await?;
        self.bump();
        Ok(deleted)
    }

    /// Of `seqs`, those already stored for `agent_id` (ingest uses it to
    /// tell newly stored results from resends before a batch is inserted).
    pub async fn stored_seqs(
        &self,
        agent_id: &str,
        seqs: &[u64],
    ) -> Result<std::collections::BTreeSet<u64>> {
        let wanted: Vec<i64> = seqs.iter().map(|s| clamp(*s)).collect();
        let sql = format!(
            "SELECT seq FROM results WHERE agent_id = $1 AND seq IN {}",
            self.int_list(2)
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(agent_id)
            .bind(serde_json::to_string(&wanted)?)
            .fetch_all(&self.write)
            .await?;
        let mut out = std::collections::BTreeSet::new();
        for row in &rows {
            out.insert(unsigned(row.try_get::<i64, _>("seq")?));
        }
        Ok(out)
    }

    /// When a result of `probe_ids` (or one of its steps) last had failure
    /// class `class`, at or after `since_ms`.
    pub async fn last_failure_class_since(
        &self,
        probe_ids: &[String],
        class: i32,
        since_ms: i64,
    ) -> Result<Option<i64>> {
        let step_class = self.step_with_class(3);
        let sql = format!(
            "SELECT MAX(started_ms) FROM results
             WHERE probe_id IN {} AND started_ms >= $2
               AND (failure_class = $3 OR EXISTS ({step_class}))",
            self.text_list(1)
        );
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(serde_json::to_string(probe_ids)?)
            .bind(since_ms)
            .bind(class)
            .fetch_one(&self.read)
            .await?)
    }

    /// When the coordinator last received a result of `probe_ids` carrying an
    /// escalation, if at or after `since_ms` (its receive time, not the
    /// agent's start time: a late escalation still counts as recent).
    pub async fn last_escalation_received_since(
        &self,
        probe_ids: &[String],
        since_ms: i64,
    ) -> Result<Option<i64>> {
        let sql = format!(
            "SELECT MAX(received_ms) FROM escalations
             WHERE probe_id IN {} AND received_ms >= $2",
            self.text_list(1)
        );
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(serde_json::to_string(probe_ids)?)
            .bind(since_ms)
            .fetch_one(&self.read)
            .await?)
    }

    /// Probes with a result (or a step) of failure class `class` started at
    /// or after `since_ms`: how the leader learns of escalations another
    /// replica ingested.
    pub async fn probes_with_class_since(
        &self,
        class: i32,
        since_ms: i64,
    ) -> Result<BTreeSet<String>> {
        let step_class = self.step_with_class(1);
        let sql = format!(
            "SELECT DISTINCT probe_id FROM results
             WHERE started_ms >= $2 AND (failure_class = $1 OR EXISTS ({step_class}))"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(class)
            .bind(since_ms)
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|r| Ok(r.try_get::<String, _>("probe_id")?))
            .collect()
    }
}

fn result_from_row(row: &AnyRow) -> Result<StoredResult> {
    let opt = |name: &str| -> Result<Option<u64>> {
        Ok(row.try_get::<Option<i64>, _>(name)?.map(unsigned))
    };
    let steps: String = row.try_get("steps_json")?;
    Ok(StoredResult {
        agent_id: row.try_get("agent_id")?,
        seq: unsigned(row.try_get("seq")?),
        probe_id: row.try_get("probe_id")?,
        region: row.try_get("region")?,
        started_ms: row.try_get("started_ms")?,
        duration_us: unsigned(row.try_get("duration_us")?),
        outcome: row.try_get("outcome")?,
        failure_class: row.try_get("failure_class")?,
        timings: StoredTimings {
            dns_us: opt("dns_us")?,
            connect_us: opt("connect_us")?,
            tls_us: opt("tls_us")?,
            ttfb_us: opt("ttfb_us")?,
            total_us: unsigned(row.try_get("total_us")?),
        },
        steps: serde_json::from_str(&steps)?,
        detail: row.try_get("detail")?,
        assignment_version: unsigned(row.try_get("assignment_version")?),
        received_ms: row.try_get("received_ms")?,
    })
}
