//! Raw probe results: the idempotent batch insert on `(agent_id, seq)` that
//! ingest calls (results, the `latest` pointers, escalations, and the
//! per-minute counts and sketches of newly stored results, in one
//! transaction), and everything read back from `results`: the newest run
//! per probe and region, the dashboard's recent runs, SLO counts over raw
//! results, stored seqs, failure-class and escalation look-ups, and the
//! age-based prune. The row shapes ([`StoredResult`], [`StoredStep`],
//! [`StoredTimings`]) are what the API serves from.
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use authpulse_proto::v1::{ProbeResult, StepResult, Timings};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::minutes::MinuteKey;
use super::{
    Backend, Result, Store, StoreError, clamp, minute_of, now_ms, push_placeholders, unsigned,
};

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
    /// Stores a batch in one transaction; results already stored (same agent
    /// and seq) are counted as duplicates and left untouched. Rows go in as
    /// multi-row statements (results, then one `latest` upsert per probe and
    /// region, one `minute_counts` upsert per series and minute), in key
    /// order, so concurrent replicas lock rows in the same order.
    pub async fn insert_batch(
        &self,
        agent_id: &str,
        results: &[ProbeResult],
    ) -> Result<InsertStats> {
        self.insert_batch_acked(agent_id, results, None).await
    }

    /// [`insert_batch`](Self::insert_batch) that also records the agent's
    /// new ack (never moving it back) and last-seen time in the same
    /// transaction: ingest then commits once per batch, and the ack can
    /// never be recorded without the results it covers.
    pub async fn insert_batch_acked(
        &self,
        agent_id: &str,
        results: &[ProbeResult],
        acked_seq: Option<u64>,
    ) -> Result<InsertStats> {
        self.insert_batch_received(agent_id, results, acked_seq, now_ms())
            .await
    }

    /// [`insert_batch_acked`](Self::insert_batch_acked) as if the batch had
    /// arrived at `received` (ms since the epoch): staleness and escalation
    /// windows are judged on it. Ingest passes the current time; tests and
    /// imports may pass another.
    pub async fn insert_batch_received(
        &self,
        agent_id: &str,
        results: &[ProbeResult],
        acked_seq: Option<u64>,
        received: i64,
    ) -> Result<InsertStats> {
        // Rows per multi-row INSERT: far below both engines' parameter limits.
        const CHUNK: usize = 200;
        // Checked first: nothing of an invalid batch is written.
        let mut seqs = Vec::with_capacity(results.len());
        let mut prepared = Vec::with_capacity(results.len());
        for r in results {
            let seq = i64::try_from(r.seq)
                .ok()
                .filter(|s| *s > 0)
                .ok_or_else(|| StoreError::Invalid(format!("seq {} out of range", r.seq)))?;
            seqs.push(seq);
            let steps: Vec<StoredStep> = r.steps.iter().map(StoredStep::from).collect();
            let steps_json = serde_json::to_string(&steps)?;
            prepared.push((StoredTimings::from(r.timings.as_ref()), steps, steps_json));
        }
        let mut stats = InsertStats::default();
        let mut rollup = self.rollup.lock().await;
        let mut tx = self.write.begin().await?;
        // Read while holding the write connection: thresholds only change
        // under it too, so a batch and a threshold backfill never interleave.
        let thresholds = self.latency_thresholds();

        let mut inserted: std::collections::HashSet<i64> = std::collections::HashSet::new();
        let indices: Vec<usize> = (0..results.len()).collect();
        for chunk in indices.chunks(CHUNK) {
            let mut sql = String::from(
                "INSERT INTO results (agent_id, seq, probe_id, region, started_ms, duration_us, outcome,
                    failure_class, dns_us, connect_us, tls_us, ttfb_us, total_us, steps_json, detail,
                    assignment_version, received_ms) VALUES ",
            );
            push_placeholders(&mut sql, self.backend, chunk.len(), 17);
            sql.push_str(" ON CONFLICT (agent_id, seq) DO NOTHING RETURNING seq");
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for &i in chunk {
                let (r, (t, _, steps_json)) = (&results[i], &prepared[i]);
                q = q
                    .bind(agent_id)
                    .bind(seqs[i])
                    .bind(&r.probe_id)
                    .bind(&r.region)
                    .bind(r.started_unix_ms)
                    .bind(clamp(r.duration_us))
                    .bind(r.outcome)
                    .bind(r.failure_class)
                    .bind(t.dns_us.map(clamp))
                    .bind(t.connect_us.map(clamp))
                    .bind(t.tls_us.map(clamp))
                    .bind(t.ttfb_us.map(clamp))
                    .bind(clamp(t.total_us))
                    .bind(steps_json.as_str())
                    .bind(&r.detail)
                    .bind(clamp(r.assignment_version))
                    .bind(received);
            }
            for row in q.fetch_all(&mut *tx).await? {
                inserted.insert(row.try_get::<i64, _>(0)?);
            }
        }

        // (probe, region, minute, threshold) -> (good, total) of this batch.
        // Series ids are probe ids, or `probe/step` for the journey steps
        // an SLO names.
        let mut minutes: BTreeMap<MinuteKey<'_>, (i64, i64)> = BTreeMap::new();
        let mut sketches: BTreeMap<(&str, &str, i64), crate::latency_sketch::LatencySketch> =
            BTreeMap::new();
        // (probe, region) -> (started, seq) of the newest result.
        let mut latest: BTreeMap<(&str, &str), (i64, i64)> = BTreeMap::new();
        // Indices of newly stored results that carry an escalation.
        let mut escalated: Vec<usize> = Vec::new();
        let escalation = authpulse_proto::v1::FailureClass::Escalation as i32;
        for (i, r) in results.iter().enumerate() {
            // `remove`: a seq sent twice in one batch is stored once.
            if !inserted.remove(&seqs[i]) {
                stats.duplicates += 1;
                continue;
            }
            stats.inserted += 1;
            let (t, steps, _) = &prepared[i];
            if r.failure_class == escalation || steps.iter().any(|s| s.failure_class == escalation)
            {
                escalated.push(i);
            }
            let ok = r.outcome == authpulse_proto::v1::Outcome::Success as i32;
            let minute = minute_of(r.started_unix_ms);
            let key = (r.probe_id.as_str(), r.region.as_str(), minute);
            sketches.entry(key).or_default().add(t.total_us);
            let e = minutes
                .entry((Cow::Borrowed(key.0), key.1, key.2, 0))
                .or_default();
            e.0 += i64::from(ok);
            e.1 += 1;
            for &th in thresholds.get(&r.probe_id).into_iter().flatten() {
                let e = minutes
                    .entry((Cow::Borrowed(key.0), key.1, key.2, th))
                    .or_default();
                e.0 += i64::from(ok && t.total_us <= th);
                e.1 += 1;
            }
            for step in steps {
                let series = format!("{}/{}", r.probe_id, step.name);
                let step_ok = step.outcome == authpulse_proto::v1::Outcome::Success as i32;
                // Step series are kept only for the steps SLOs name; 0 is
                // the step's availability.
                for &th in thresholds.get(&series).into_iter().flatten() {
                    let e = minutes
                        .entry((Cow::Owned(series.clone()), key.1, key.2, th))
                        .or_default();
                    e.0 += i64::from(step_ok && (th == 0 || step.timings.total_us <= th));
                    e.1 += 1;
                }
            }
            // `>=`: of two results started in the same millisecond the one
            // stored last is shown.
            let newest = latest.entry((key.0, key.1)).or_insert((i64::MIN, 0));
            if r.started_unix_ms >= newest.0 {
                *newest = (r.started_unix_ms, seqs[i]);
            }
        }

        let latest: Vec<_> = latest.into_iter().collect();
        for chunk in latest.chunks(CHUNK) {
            let mut sql = String::from(
                "INSERT INTO latest (probe_id, region, agent_id, seq, started_ms) VALUES ",
            );
            push_placeholders(&mut sql, self.backend, chunk.len(), 5);
            sql.push_str(
                " ON CONFLICT (probe_id, region) DO UPDATE SET
                    agent_id = excluded.agent_id, seq = excluded.seq, started_ms = excluded.started_ms
                 WHERE excluded.started_ms >= latest.started_ms",
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for ((probe, region), (started, seq)) in chunk {
                q = q
                    .bind(*probe)
                    .bind(*region)
                    .bind(agent_id)
                    .bind(*seq)
                    .bind(*started);
            }
            q.execute(&mut *tx).await?;
        }

        if !escalated.is_empty() {
            let mut sql = String::from(
                "INSERT INTO escalations (agent_id, seq, probe_id, started_ms, received_ms) VALUES ",
            );
            push_placeholders(&mut sql, self.backend, escalated.len(), 5);
            sql.push_str(" ON CONFLICT (agent_id, seq) DO NOTHING");
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for &i in &escalated {
                q = q
                    .bind(agent_id)
                    .bind(seqs[i])
                    .bind(&results[i].probe_id)
                    .bind(results[i].started_unix_ms)
                    .bind(received);
            }
            q.execute(&mut *tx).await?;
        }

        let minute_rows: Vec<_> = minutes.iter().collect();
        for chunk in minute_rows.chunks(CHUNK) {
            let mut sql = String::from(
                "INSERT INTO minute_counts (probe_id, region, minute, threshold_us, good, total, updated_ms) VALUES ",
            );
            push_placeholders(&mut sql, self.backend, chunk.len(), 7);
            sql.push_str(
                " ON CONFLICT (probe_id, minute, threshold_us, region) DO UPDATE SET
                    good = minute_counts.good + excluded.good,
                    total = minute_counts.total + excluded.total,
                    updated_ms = excluded.updated_ms",
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for ((probe, region, minute, th), (good, total)) in chunk {
                q = q
                    .bind(probe.as_ref())
                    .bind(*region)
                    .bind(*minute)
                    .bind(clamp(*th))
                    .bind(*good)
                    .bind(*total)
                    .bind(received);
            }
            q.execute(&mut *tx).await?;
        }
        super::hours::upsert_hour_counts(
            &mut tx,
            self.backend,
            minutes
                .iter()
                .map(|((s, r, m, th), (g, t))| (s.as_ref(), *r, *m, *th, *g, *t)),
            received,
        )
        .await?;

        // Sketches merge in Rust: insert ours if the minute has none yet,
        // else lock the stored one (PostgreSQL: other replicas merge into
        // it too), merge and write back.
        let lock = match self.backend {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE",
        };
        for ((probe, region, minute), sketch) in &sketches {
            let fresh = sqlx::query(
                "INSERT INTO minute_sketches (probe_id, region, minute, sketch) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (probe_id, minute, region) DO NOTHING",
            )
            .bind(*probe)
            .bind(*region)
            .bind(*minute)
            .bind(sketch.encode())
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if fresh {
                continue;
            }
            let sql = format!(
                "SELECT sketch FROM minute_sketches WHERE probe_id = $1 AND minute = $2 AND region = $3{lock}"
            );
            let existing: Option<Vec<u8>> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .bind(*probe)
                .bind(*minute)
                .bind(*region)
                .fetch_optional(&mut *tx)
                .await?;
            let mut merged = sketch.clone();
            if let Some(old) =
                existing.and_then(|b| crate::latency_sketch::LatencySketch::decode(&b))
            {
                merged.merge(&old);
            }
            sqlx::query(
                "UPDATE minute_sketches SET sketch = $4 WHERE probe_id = $1 AND minute = $2 AND region = $3",
            )
            .bind(*probe)
            .bind(*minute)
            .bind(*region)
            .bind(merged.encode())
            .execute(&mut *tx)
            .await?;
        }
        // In the same transaction, so the count is exact across crashes.
        if let Some(acked) = acked_seq {
            sqlx::query(
                "UPDATE agents SET stored_total = stored_total + $1,
                    acked_seq = CASE WHEN acked_seq > $2 THEN acked_seq ELSE $2 END,
                    last_seen_ms = $3 WHERE agent_id = $4",
            )
            .bind(clamp(stats.inserted))
            .bind(clamp(acked))
            .bind(received)
            .bind(agent_id)
            .execute(&mut *tx)
            .await?;
        } else if stats.inserted > 0 {
            sqlx::query("UPDATE agents SET stored_total = stored_total + $1 WHERE agent_id = $2")
                .bind(clamp(stats.inserted))
                .bind(agent_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        self.bump();
        for ((probe, region, minute, th), (good, total)) in &minutes {
            rollup.add(
                probe,
                region,
                *minute,
                *th,
                unsigned(*good),
                unsigned(*total),
            );
        }
        Ok(stats)
    }

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
