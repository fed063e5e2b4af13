//! `hour_counts`: the hourly sums of `minute_counts` (same key with `hour`
//! = `minute` floored to the hour), persisted so a store opens without
//! grouping millions of minute rows: [`Store::load_rollup`] reads the hour
//! rows (tens of thousands) and only the minute rows the ring keeps (a
//! range scan per probe), and no sort.
//!
//! The table must always equal the sum of the minute rows, so everything
//! that writes or deletes `minute_counts` also writes it, in the same
//! transaction: the ingest batch ([`upsert_hour_counts`], with the batch's
//! minute deltas), a threshold backfill ([`rebuild_hour_counts`]) and the
//! minute retention ([`prune_hour_counts`]). Migration 8 fills it once from
//! the minute rows already stored (after the bridge from older databases,
//! so those are covered too). Other replicas are followed through their
//! minute rows as before ([`Store::refresh_rollup`]); the hour rows are only
//! read at open and on a rebuild.
//!
//! At open a SQLite store reads only the ring's last hours and fills the
//! rest in the background ([`Store::spawn_ring_fill`]): the minute rows are
//! most of what open reads (450 k of 520 k rows at 4 M stored), and each
//! costs microseconds through sqlx. Until then windows starting further
//! back take their first partial hour from the table, as windows older
//! than the ring always do, so answers are exact throughout.
use std::collections::BTreeMap;

use sqlx::{AnyConnection, Row};

use super::{Backend, Result, Store, clamp, now_ms, push_placeholders, unsigned};

/// Minutes per hour.
const HOUR: i64 = 60;

/// `minute` floored to its hour in SQL, also for negative minutes (as
/// `div_euclid` in the roll-ups; SQL's `/` truncates towards zero).
const HOUR_OF_MINUTE: &str = "(minute - (((minute % 60) + 60) % 60)) / 60";

/// The two tables of (good, total) counts per series, region, threshold
/// and time slot, which ingest adds to in the same way.
#[derive(Clone, Copy, Debug)]
pub(super) enum Counts {
    /// `minute_counts`, by `minute`.
    Minutes,
    /// `hour_counts`, by `hour`.
    Hours,
}

/// One counts row's key: (series, region, minute or hour, threshold µs).
pub(super) type CountsKey<'a> = (&'a str, &'a str, i64, u64);

/// Adds `rows` ((key), (good, total)) to `table` with multi-row upserts of
/// at most 500 rows, in the order given (callers pass key order, so
/// concurrent replicas lock the rows in the same order).
pub(super) async fn add_counts(
    conn: &mut AnyConnection,
    backend: Backend,
    table: Counts,
    rows: &[(CountsKey<'_>, (i64, i64))],
    updated_ms: i64,
) -> Result<()> {
    // Rows per statement: 3,500 parameters, far below both engines' limits.
    const CHUNK: usize = 500;
    let (name, slot) = match table {
        Counts::Minutes => ("minute_counts", "minute"),
        Counts::Hours => ("hour_counts", "hour"),
    };
    for chunk in rows.chunks(CHUNK) {
        let mut sql = format!(
            "INSERT INTO {name} (probe_id, region, {slot}, threshold_us, good, total, updated_ms) VALUES "
        );
        push_placeholders(&mut sql, backend, chunk.len(), 7);
        sql.push_str(&format!(
            " ON CONFLICT (probe_id, {slot}, threshold_us, region) DO UPDATE SET
                good = {name}.good + excluded.good,
                total = {name}.total + excluded.total,
                updated_ms = excluded.updated_ms"
        ));
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for ((series, region, at, threshold), (good, total)) in chunk {
            q = q
                .bind(*series)
                .bind(*region)
                .bind(*at)
                .bind(clamp(*threshold))
                .bind(*good)
                .bind(*total)
                .bind(updated_ms);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Adds a batch's minute deltas to `hour_counts`, summed by hour first, in
/// key order (series, region, hour, threshold). `rows` are (series,
/// region, minute, threshold µs, good, total), exactly what was added to
/// `minute_counts` in the same transaction.
pub(super) async fn upsert_hour_counts<'a>(
    conn: &mut AnyConnection,
    backend: Backend,
    rows: impl IntoIterator<Item = (&'a str, &'a str, i64, u64, i64, i64)>,
    updated_ms: i64,
) -> Result<()> {
    let mut hours: BTreeMap<CountsKey<'a>, (i64, i64)> = BTreeMap::new();
    for (series, region, minute, threshold, good, total) in rows {
        let e = hours
            .entry((series, region, minute.div_euclid(HOUR), threshold))
            .or_default();
        e.0 += good;
        e.1 += total;
    }
    let hours: Vec<_> = hours.into_iter().collect();
    add_counts(conn, backend, Counts::Hours, &hours, updated_ms).await
}

/// Recomputes the hour rows of one series and threshold from its minute
/// rows (after a threshold backfill rewrote them); reads only that
/// probe's minute rows (the primary key's prefix).
pub(super) async fn rebuild_hour_counts(
    conn: &mut AnyConnection,
    series: &str,
    threshold: u64,
) -> Result<()> {
    sqlx::query("DELETE FROM hour_counts WHERE probe_id = $1 AND threshold_us = $2")
        .bind(series)
        .bind(clamp(threshold))
        .execute(&mut *conn)
        .await?;
    let sql = format!(
        "INSERT INTO hour_counts (probe_id, region, hour, threshold_us, good, total, updated_ms)
         SELECT probe_id, region, {HOUR_OF_MINUTE} AS h, threshold_us,
            CAST(SUM(good) AS BIGINT), CAST(SUM(total) AS BIGINT), $3
         FROM minute_counts WHERE probe_id = $1 AND threshold_us = $2
         GROUP BY probe_id, region, h, threshold_us"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(series)
        .bind(clamp(threshold))
        .bind(now_ms())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Makes `hour_counts` match `minute_counts` after the minute rows before
/// `cutoff` (a minute) were deleted: hours before the cutoff's hour go;
/// that hour, if the cutoff splits it, is recomputed from the minutes left
/// in it (per hour row, a look-up by the minute table's key prefix), and
/// dropped where none are left.
pub(super) async fn prune_hour_counts(conn: &mut AnyConnection, cutoff: i64) -> Result<()> {
    let hour = cutoff.div_euclid(HOUR);
    sqlx::query("DELETE FROM hour_counts WHERE hour < $1")
        .bind(hour)
        .execute(&mut *conn)
        .await?;
    if cutoff.rem_euclid(HOUR) == 0 {
        return Ok(());
    }
    let remaining = |column: &str| {
        format!(
            "COALESCE((SELECT CAST(SUM(m.{column}) AS BIGINT) FROM minute_counts m
                WHERE m.probe_id = hour_counts.probe_id AND m.minute >= $2 AND m.minute < $3
                  AND m.threshold_us = hour_counts.threshold_us
                  AND m.region = hour_counts.region), 0)"
        )
    };
    let sql = format!(
        "UPDATE hour_counts SET good = {}, total = {}, updated_ms = $4 WHERE hour = $1",
        remaining("good"),
        remaining("total")
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(hour)
        .bind(cutoff)
        .bind((hour + 1) * HOUR)
        .bind(now_ms())
        .execute(&mut *conn)
        .await?;
    // Every minute row counts at least one result, so an hour with none
    // left sums to zero.
    sqlx::query("DELETE FROM hour_counts WHERE hour = $1 AND total = 0")
        .bind(hour)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Minutes of the ring a SQLite store reads at open (from the start of
/// the hour three hours back): the short burn windows are in memory at
/// once; the rest of the ring (three days, ~90 % of its rows) is filled in
/// the background ([`Store::spawn_ring_fill`]), so a start with millions of
/// minute rows stays within a second.
const RING_AT_OPEN_MINUTES: i64 = 180;

/// The ring's minute rows in `[$1, $2)`, read per probe that has an hour
/// row from `$3` on, by the primary key's prefix (probe, minute), not by a
/// scan of every stored minute. SQLite takes CROSS JOIN as the loop order:
/// the few probes outside, the key look-up inside.
const RING_ROWS: &str = "SELECT m.probe_id, m.region, m.threshold_us, m.minute, m.good, m.total
     FROM (SELECT DISTINCT probe_id FROM hour_counts WHERE hour >= $3) p
        CROSS JOIN minute_counts m
     WHERE m.probe_id = p.probe_id AND m.minute >= $1 AND m.minute < $2";

impl Store {
    /// Builds the roll-ups from `hour_counts` (hours and days) and the
    /// `minute_counts` rows of the minute ring (on SQLite only its last
    /// hours; [`Store::spawn_ring_fill`] reads the rest), in one read
    /// transaction (one snapshot: on PostgreSQL other replicas write
    /// meanwhile, and hours and ring must agree).
    pub(super) async fn load_rollup(&self) -> Result<crate::rollup::Rollup> {
        let started = std::time::Instant::now();
        let mut r = crate::rollup::Rollup::default();
        let now_minute = now_ms().div_euclid(60_000);
        let ring_from = now_minute - crate::rollup::MINUTE_SLOTS + 1;
        // PostgreSQL reads the whole ring now: filling it later from a newer
        // snapshot than the hours' could hide other replicas' writes from
        // the refresh, which works by difference with the ring.
        let floor = match self.backend {
            Backend::Sqlite => {
                ((now_minute - RING_AT_OPEN_MINUTES).div_euclid(HOUR) * HOUR).max(ring_from)
            }
            Backend::Postgres => ring_from,
        };
        let mut tx = self.read.begin().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                .execute(&mut *tx)
                .await?;
        }
        let mut hours = 0u64;
        {
            let mut rows = sqlx::query(
                "SELECT probe_id, region, threshold_us, hour, good, total FROM hour_counts",
            )
            .fetch(&mut *tx);
            while let Some(row) = futures_util::TryStreamExt::try_next(&mut rows).await? {
                r.add_hour(
                    row.try_get(0)?,
                    row.try_get(1)?,
                    row.try_get(3)?,
                    unsigned(row.try_get(2)?),
                    unsigned(row.try_get(4)?),
                    unsigned(row.try_get(5)?),
                );
                hours += 1;
            }
        }
        let mut minutes = 0u64;
        {
            let mut rows = sqlx::query(RING_ROWS)
                .bind(floor)
                .bind(i64::MAX)
                .bind(floor.div_euclid(HOUR))
                .fetch(&mut *tx);
            while let Some(row) = futures_util::TryStreamExt::try_next(&mut rows).await? {
                r.add_ring_minute(
                    row.try_get(0)?,
                    row.try_get(1)?,
                    row.try_get(3)?,
                    unsigned(row.try_get(2)?),
                    unsigned(row.try_get(4)?),
                    unsigned(row.try_get(5)?),
                );
                minutes += 1;
            }
        }
        r.set_ring_floor(floor);
        tx.rollback().await?;
        tracing::info!(
            hour_rows = hours,
            minute_rows = minutes,
            series = r.series_count(),
            ms = started.elapsed().as_millis() as u64,
            "minute aggregates rolled up"
        );
        Ok(r)
    }

    /// Fills the rest of the minute ring below what [`Store::load_rollup`]
    /// read (SQLite), an hour at a time from the newest, in a task of its
    /// own. Each hour is read and applied under the roll-up lock, which
    /// every writer of `minute_counts` holds through its commit and its
    /// roll-up update: what is read is exactly what the roll-ups count. A
    /// reload meanwhile just gets filled instead; a closed store stops it.
    pub(super) fn spawn_ring_fill(&self) {
        if self.backend != Backend::Sqlite {
            return;
        }
        let store = self.clone();
        tokio::spawn(async move {
            if let Err(e) = store.fill_ring().await {
                tracing::debug!(error = %e, "minute ring fill stopped");
            }
        });
    }

    async fn fill_ring(&self) -> Result<()> {
        let started = std::time::Instant::now();
        let mut n = 0usize;
        loop {
            let mut rollup = self.rollup.lock().await;
            let floor = rollup.ring_floor();
            let ring_from = now_ms().div_euclid(60_000) - crate::rollup::MINUTE_SLOTS + 1;
            if floor <= ring_from {
                break;
            }
            let from = (floor - HOUR).max(ring_from);
            let rows = sqlx::query(RING_ROWS)
                .bind(from)
                .bind(floor)
                .bind(from.div_euclid(HOUR))
                .fetch_all(&self.read)
                .await?;
            for row in &rows {
                rollup.fill_ring_minute(
                    row.try_get(0)?,
                    row.try_get(1)?,
                    row.try_get(3)?,
                    unsigned(row.try_get(2)?),
                    unsigned(row.try_get(4)?),
                    unsigned(row.try_get(5)?),
                );
            }
            n += rows.len();
            rollup.set_ring_floor(from);
            drop(rollup);
            // Let ingest and evaluation in between the hours.
            tokio::task::yield_now().await;
        }
        tracing::info!(
            minute_rows = n,
            ms = started.elapsed().as_millis() as u64,
            "minute ring filled"
        );
        Ok(())
    }

    /// Whether the minute ring holds every minute it spans (always on
    /// PostgreSQL; on SQLite once the background fill is done).
    pub async fn rollup_ring_complete(&self) -> bool {
        let ring_from = now_ms().div_euclid(60_000) - crate::rollup::MINUTE_SLOTS + 1;
        self.rollup.lock().await.ring_floor() <= ring_from
    }
}
