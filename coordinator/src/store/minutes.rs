//! Per-minute SLO aggregates: `minute_counts` (good/total per probe or
//! journey step, region, minute and latency threshold), `minute_sketches`
//! (mergeable latency sketches) and `minute_thresholds` (which latency
//! thresholds are maintained, so a new one is backfilled from the raw
//! results once). Also the in-memory roll-ups built from `minute_counts`
//! ([`crate::rollup`]): loaded at open (from the hourly sums, `hours.rs`),
//! kept current by every insert, and refreshed from other replicas' writes
//! on PostgreSQL. The rows themselves are written by the batch insert in
//! `results.rs`; whatever rewrites or deletes them here also fixes
//! `hour_counts` in the same transaction.
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sqlx::Row;

use super::{Backend, LOCK_THRESHOLDS, Result, Store, clamp, hours, minute_of, now_ms, unsigned};

pub use crate::clock::MINUTE_MS;

/// otherwise: the longest SLO window the catalog allows plus a day.
pub const DEFAULT_MINUTE_RETENTION: Duration = Duration::from_secs(32 * 86_400);

/// How far back [`Store::refresh_rollup`] re-reads before its last read:
/// a transaction stamps `updated_ms` when it writes and becomes visible
/// when it commits, and replicas' clocks differ a little.
pub(super) const REFRESH_OVERLAP_MS: i64 = 60_000;

/// Latency thresholds in microseconds per probe id.
pub type LatencyThresholds = HashMap<String, Vec<u64>>;

/// Per `(probe_id, threshold_us, region)` the (good, total) sums of
/// [`Store::minute_sums`], one per requested start minute.
pub type MinuteSums = HashMap<(String, u64, String), Vec<(u64, u64)>>;

/// (series, region, minute, threshold µs) of a batch's minute deltas.
pub(super) type MinuteKey<'a> = (Cow<'a, str>, &'a str, i64, u64);

/// One `minute_counts` row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MinuteRow {
    pub probe_id: String,
    pub region: String,
    pub minute: i64,
    pub threshold_us: u64,
    pub good: u64,
    pub total: u64,
}

impl Store {
    /// Brings the in-memory roll-ups up to date with `minute_counts` rows
    /// other coordinators wrote (PostgreSQL; a no-op on SQLite, where this
    /// process is the only writer). Rows changed since the last refresh
    /// (with an overlap) are applied as absolute values, so reading one
    /// twice is harmless. A changed row older than the minute ring (a
    /// threshold backfill, very late data) rebuilds the roll-ups whole.
    /// Returns how many rows were read.
    pub async fn refresh_rollup(&self) -> Result<u64> {
        if self.backend == Backend::Sqlite {
            return Ok(0);
        }
        let mut rollup = self.rollup.lock().await;
        let from = self.refreshed_from_ms.load(Ordering::Relaxed);
        let next_from = now_ms() - REFRESH_OVERLAP_MS;
        let rows = sqlx::query(
            "SELECT probe_id, region, minute, threshold_us, good, total FROM minute_counts
             WHERE updated_ms >= $1",
        )
        .bind(from)
        .fetch_all(&self.read)
        .await?;
        let now_minute = minute_of(now_ms());
        let mut rebuild = false;
        for row in &rows {
            let applied = rollup.set(
                &row.try_get::<String, _>("probe_id")?,
                &row.try_get::<String, _>("region")?,
                row.try_get("minute")?,
                unsigned(row.try_get("threshold_us")?),
                unsigned(row.try_get("good")?),
                unsigned(row.try_get("total")?),
                now_minute,
            );
            if !applied {
                rebuild = true;
            }
        }
        if rebuild {
            *rollup = self.load_rollup().await?;
        }
        self.refreshed_from_ms.store(next_from, Ordering::Relaxed);
        if !rows.is_empty() {
            self.bump();
        }
        metrics::counter!("authpulse_coordinator_rollup_refresh_rows_total")
            .increment(rows.len() as u64);
        Ok(rows.len() as u64)
    }

    /// Per series of `probe_ids`, the sums over minutes `>= since_minutes[i]`
    /// from the in-memory roll-ups (same result as [`Store::minute_sums`]).
    pub async fn rollup_sums(
        &self,
        probe_ids: &[String],
        since_minutes: &[i64],
        now_minute: i64,
    ) -> Result<MinuteSums> {
        let needed = self
            .rollup
            .lock()
            .await
            .edges_needed(since_minutes, now_minute);
        // A window older than the minute ring: its first partial hour from
        // the table (at most 59 minutes per series).
        let mut edges = HashMap::new();
        for start in needed {
            let end = (start.div_euclid(60) + 1) * 60;
            let sql = format!(
                "SELECT probe_id, threshold_us, region, CAST(SUM(good) AS BIGINT) AS g,
                    CAST(SUM(total) AS BIGINT) AS t FROM minute_counts
                 WHERE probe_id IN {} AND minute >= $2 AND minute < $3
                 GROUP BY probe_id, threshold_us, region",
                self.text_list(1)
            );
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(serde_json::to_string(probe_ids)?)
                .bind(start)
                .bind(end)
                .fetch_all(&self.read)
                .await?;
            let mut m = HashMap::new();
            for row in &rows {
                m.insert(
                    (
                        row.try_get::<String, _>("probe_id")?,
                        unsigned(row.try_get("threshold_us")?),
                        row.try_get::<String, _>("region")?,
                    ),
                    (unsigned(row.try_get("g")?), unsigned(row.try_get("t")?)),
                );
            }
            edges.insert(start, m);
        }
        Ok(self
            .rollup
            .lock()
            .await
            .sums(probe_ids, since_minutes, now_minute, &edges))
    }

    /// Deletes `minute_counts` rows older than the minute retention
    /// ([`set_minute_retention`](Self::set_minute_retention)) before `now_ms`;
    /// returns how many.
    pub async fn prune_minutes(&self, now_ms: i64) -> Result<u64> {
        let keep = self.minute_retention_ms.load(Ordering::Relaxed);
        let cutoff = minute_of(now_ms.saturating_sub(keep));
        // One transaction: `hour_counts` never disagrees with the minutes.
        let mut tx = self.write.begin().await?;
        let n = sqlx::query("DELETE FROM minute_counts WHERE minute < $1")
            .bind(cutoff)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        hours::prune_hour_counts(&mut tx, cutoff).await?;
        tx.commit().await?;
        sqlx::query("DELETE FROM minute_sketches WHERE minute < $1")
            .bind(cutoff)
            .execute(&self.write)
            .await?;
        self.rollup.lock().await.prune(cutoff);
        Ok(n)
    }

    /// How long `minute_counts` rows are kept: the longest SLO window plus a
    /// day (set by the coordinator from the catalog).
    pub fn set_minute_retention(&self, keep: Duration) {
        self.minute_retention_ms.store(
            i64::try_from(keep.as_millis()).unwrap_or(i64::MAX),
            Ordering::Relaxed,
        );
    }

    /// The latency thresholds `minute_counts` is currently maintained for.
    pub fn latency_thresholds(&self) -> Arc<LatencyThresholds> {
        match self.thresholds.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Sets the latency thresholds (µs, per probe) `minute_counts` keeps
    /// rows for; the coordinator calls it at start and on every catalog
    /// reload. A threshold not maintained before (persisted in
    /// `minute_thresholds`, so a restart is not a change) is backfilled from
    /// the raw results still retained, in the same transaction: its numbers
    /// are exact within raw retention. A dropped threshold stops being
    /// maintained; its rows age out. Zero (availability) is ignored.
    /// Returns how many (probe, threshold) pairs were backfilled.
    pub async fn set_latency_thresholds(&self, map: LatencyThresholds) -> Result<u64> {
        let mut map = map;
        for (series, v) in map.iter_mut() {
            // Probes always have availability rows; a `probe/step` series
            // keeps 0 as its step availability.
            let is_step = series.contains('/');
            v.retain(|t| *t > 0 || is_step);
            v.sort_unstable();
            v.dedup();
        }
        map.retain(|_, v| !v.is_empty());
        let wanted: BTreeSet<(String, u64)> = map
            .iter()
            .flat_map(|(p, ts)| ts.iter().map(move |t| (p.clone(), *t)))
            .collect();
        // The write connection serializes this against insert_batch; the
        // roll-up lock (taken first, as there) keeps the reload below exact.
        let mut rollup = self.rollup.lock().await;
        let mut tx = self.write.begin().await?;
        // Replicas starting together: one backfills, the others then see
        // the threshold tracked.
        self.xact_lock(&mut tx, LOCK_THRESHOLDS).await?;
        let rows = sqlx::query("SELECT probe_id, threshold_us FROM minute_thresholds")
            .fetch_all(&mut *tx)
            .await?;
        let mut tracked = BTreeSet::new();
        for row in &rows {
            tracked.insert((
                row.try_get::<String, _>("probe_id")?,
                unsigned(row.try_get("threshold_us")?),
            ));
        }
        for (probe, th) in tracked.difference(&wanted) {
            sqlx::query("DELETE FROM minute_thresholds WHERE probe_id = $1 AND threshold_us = $2")
                .bind(probe)
                .bind(clamp(*th))
                .execute(&mut *tx)
                .await?;
        }
        let mut backfilled = 0;
        for (probe, th) in wanted.difference(&tracked) {
            // Rows left from an earlier period with this threshold have a
            // gap; rebuild them whole from what raw retention still has.
            sqlx::query("DELETE FROM minute_counts WHERE probe_id = $1 AND threshold_us = $2")
                .bind(probe)
                .bind(clamp(*th))
                .execute(&mut *tx)
                .await?;
            match probe.split_once('/') {
                None => {
                    sqlx::query(
                        "INSERT INTO minute_counts (probe_id, region, minute, threshold_us, good, total, updated_ms)
                         SELECT probe_id, region,
                            (started_ms - (((started_ms % 60000) + 60000) % 60000)) / 60000 AS m, $1,
                            SUM(CASE WHEN outcome = 1 AND total_us <= $1 THEN 1 ELSE 0 END), COUNT(*), $3
                         FROM results WHERE probe_id = $2 GROUP BY probe_id, region, m",
                    )
                    .bind(clamp(*th))
                    .bind(probe)
                    .bind(now_ms())
                    .execute(&mut *tx)
                    .await?;
                }
                Some((probe_id, step)) => {
                    // A journey step: from the steps kept with each result.
                    let (outcome, total_us, name, steps) = match self.backend {
                        Backend::Sqlite => (
                            "json_extract(s.value, '$.outcome')",
                            "json_extract(s.value, '$.timings.total_us')",
                            "json_extract(s.value, '$.name')",
                            "json_each(r.steps_json) s",
                        ),
                        Backend::Postgres => (
                            "CAST(s.value ->> 'outcome' AS BIGINT)",
                            "CAST(s.value -> 'timings' ->> 'total_us' AS BIGINT)",
                            "(s.value ->> 'name')",
                            "json_array_elements(CAST(r.steps_json AS json)) AS s(value)",
                        ),
                    };
                    let sql = format!(
                        "INSERT INTO minute_counts (probe_id, region, minute, threshold_us, good, total, updated_ms)
                         SELECT $4, r.region,
                            (r.started_ms - (((r.started_ms % 60000) + 60000) % 60000)) / 60000 AS m, $1,
                            SUM(CASE WHEN {outcome} = 1 AND ($1 = 0 OR {total_us} <= $1)
                                 THEN 1 ELSE 0 END),
                            COUNT(*), $5
                         FROM results r CROSS JOIN {steps}
                         WHERE r.probe_id = $2 AND {name} = $3
                         GROUP BY r.region, m"
                    );
                    sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(clamp(*th))
                        .bind(probe_id)
                        .bind(step)
                        .bind(probe)
                        .bind(now_ms())
                        .execute(&mut *tx)
                        .await?;
                }
            }
            hours::rebuild_hour_counts(&mut tx, probe, *th).await?;
            sqlx::query("INSERT INTO minute_thresholds (probe_id, threshold_us) VALUES ($1, $2)")
                .bind(probe)
                .bind(clamp(*th))
                .execute(&mut *tx)
                .await?;
            backfilled += 1;
        }
        {
            let mut g = match self.thresholds.write() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            *g = Arc::new(map);
        }
        tx.commit().await?;
        if backfilled > 0 {
            *rollup = self.load_rollup().await?;
            self.spawn_ring_fill();
        }
        self.bump();
        Ok(backfilled)
    }

    /// `(good, total)` from `minute_counts` over `probe_ids` (all regions),
    /// per entry of `since_ms`: every minute at or after the minute
    /// containing it (windows are minute-aligned; the partial first minute
    /// counts whole). `None` = availability.
    pub async fn minute_counts_since(
        &self,
        probe_ids: &[String],
        since_ms: &[i64],
        latency_threshold_us: Option<u64>,
    ) -> Result<Vec<(u64, u64)>> {
        let since: Vec<i64> = since_ms.iter().map(|s| minute_of(*s)).collect();
        let sums = self.minute_sums(probe_ids, &since).await?;
        let th = latency_threshold_us.unwrap_or(0);
        let mut out = vec![(0u64, 0u64); since.len()];
        for ((p, t, _), v) in &sums {
            if *t == th && probe_ids.contains(p) {
                for (o, (g, t)) in out.iter_mut().zip(v) {
                    o.0 += g;
                    o.1 += t;
                }
            }
        }
        Ok(out)
    }

    /// The latency sketch of `probe_id` per region over minutes `>= since_minute`.
    pub async fn latency_sketches(
        &self,
        probe_id: &str,
        since_minute: i64,
    ) -> Result<BTreeMap<String, crate::latency_sketch::LatencySketch>> {
        let rows = sqlx::query(
            "SELECT region, sketch FROM minute_sketches WHERE probe_id = $1 AND minute >= $2",
        )
        .bind(probe_id)
        .bind(since_minute)
        .fetch_all(&self.read)
        .await?;
        let mut out: BTreeMap<String, crate::latency_sketch::LatencySketch> = BTreeMap::new();
        for row in &rows {
            let blob: Vec<u8> = row.try_get("sketch")?;
            let Some(s) = crate::latency_sketch::LatencySketch::decode(&blob) else {
                continue;
            };
            out.entry(row.try_get("region")?).or_default().merge(&s);
        }
        Ok(out)
    }

    /// Every `minute_counts` row of `probe_ids` at or after `since_minute`
    /// (for SLOs that judge each minute: timeslices, region quorum).
    pub async fn minute_rows(
        &self,
        probe_ids: &[String],
        since_minute: i64,
    ) -> Result<Vec<MinuteRow>> {
        let sql = format!(
            "SELECT probe_id, region, minute, threshold_us, good, total FROM minute_counts
             WHERE probe_id IN {} AND minute >= $2",
            self.text_list(1)
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(serde_json::to_string(probe_ids)?)
            .bind(since_minute)
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(MinuteRow {
                    probe_id: row.try_get("probe_id")?,
                    region: row.try_get("region")?,
                    minute: row.try_get("minute")?,
                    threshold_us: unsigned(row.try_get("threshold_us")?),
                    good: unsigned(row.try_get("good")?),
                    total: unsigned(row.try_get("total")?),
                })
            })
            .collect()
    }

    /// One grouped pass over `minute_counts` for many SLOs at once: per
    /// `(probe_id, threshold_us, region)` of `probe_ids`, the (good, total)
    /// sums over minutes `>= since_minutes[i]`, for every `i`.
    pub async fn minute_sums(
        &self,
        probe_ids: &[String],
        since_minutes: &[i64],
    ) -> Result<MinuteSums> {
        let Some(&oldest) = since_minutes.iter().min() else {
            return Ok(MinuteSums::new());
        };
        // Nested windows: sum each band between consecutive start minutes
        // once (one CASE per row instead of two SUMs per window), then add
        // the bands up in Rust.
        let mut starts: Vec<i64> = since_minutes.to_vec();
        starts.sort_unstable();
        starts.dedup();
        let mut band = String::from("CASE");
        for i in (1..starts.len()).rev() {
            let p = i + 2;
            band.push_str(&format!(" WHEN minute >= ${p} THEN {i}"));
        }
        band.push_str(" ELSE 0 END");
        if starts.len() == 1 {
            band = String::from("0");
        }
        let sql = format!(
            "SELECT probe_id, threshold_us, region, {band} AS band, CAST(SUM(good) AS BIGINT) AS g,
                CAST(SUM(total) AS BIGINT) AS t
             FROM minute_counts
             WHERE probe_id IN {ids} AND minute >= $2
             GROUP BY probe_id, threshold_us, region, band",
            ids = self.text_list(1)
        );
        // Safe: built only from integer placeholders, never from input.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(serde_json::to_string(probe_ids)?)
            .bind(oldest);
        for s in starts.iter().skip(1) {
            q = q.bind(*s);
        }
        let rows = q.fetch_all(&self.read).await?;
        // Per key, (good, total) per band.
        let mut bands: HashMap<(String, u64, String), Vec<(u64, u64)>> = HashMap::new();
        for row in &rows {
            let key = (
                row.try_get::<String, _>("probe_id")?,
                unsigned(row.try_get("threshold_us")?),
                row.try_get::<String, _>("region")?,
            );
            let b = usize::try_from(row.try_get::<i64, _>("band")?).unwrap_or(0);
            let v = bands
                .entry(key)
                .or_insert_with(|| vec![(0, 0); starts.len()]);
            if let Some(slot) = v.get_mut(b) {
                slot.0 += unsigned(row.try_get("g")?);
                slot.1 += unsigned(row.try_get("t")?);
            }
        }
        Ok(bands
            .into_iter()
            .map(|(key, v)| {
                // Suffix sums: band i and every later (newer) band.
                let mut acc = vec![(0u64, 0u64); v.len()];
                let mut run = (0u64, 0u64);
                for i in (0..v.len()).rev() {
                    run.0 += v[i].0;
                    run.1 += v[i].1;
                    acc[i] = run;
                }
                let per_since = since_minutes
                    .iter()
                    .map(|s| {
                        let i = starts.partition_point(|x| x < s);
                        acc.get(i).copied().unwrap_or((0, 0))
                    })
                    .collect();
                (key, per_since)
            })
            .collect())
    }
}
