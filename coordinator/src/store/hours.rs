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
use std::collections::BTreeMap;

use sqlx::{AnyConnection, Row};

use super::{Backend, Result, Store, clamp, now_ms, push_placeholders, unsigned};

/// Minutes per hour.
const HOUR: i64 = 60;

/// `minute` floored to its hour in SQL, also for negative minutes (as
/// `div_euclid` in the roll-ups; SQL's `/` truncates towards zero).
const HOUR_OF_MINUTE: &str = "(minute - (((minute % 60) + 60) % 60)) / 60";

/// Adds a batch's minute deltas to `hour_counts`, summed by hour first:
/// one multi-row upsert per 200 hours, in key order (series, region, hour,
/// threshold), so concurrent replicas lock the rows in the same order.
/// `rows` are (series, region, minute, threshold µs, good, total), exactly
/// what was added to `minute_counts` in the same transaction.
pub(super) async fn upsert_hour_counts<'a>(
    conn: &mut AnyConnection,
    backend: Backend,
    rows: impl IntoIterator<Item = (&'a str, &'a str, i64, u64, i64, i64)>,
    updated_ms: i64,
) -> Result<()> {
    // Rows per statement: far below both engines' parameter limits.
    const CHUNK: usize = 200;
    let mut hours: BTreeMap<(&str, &str, i64, u64), (i64, i64)> = BTreeMap::new();
    for (series, region, minute, threshold, good, total) in rows {
        let e = hours
            .entry((series, region, minute.div_euclid(HOUR), threshold))
            .or_default();
        e.0 += good;
        e.1 += total;
    }
    let hours: Vec<_> = hours.into_iter().collect();
    for chunk in hours.chunks(CHUNK) {
        let mut sql = String::from(
            "INSERT INTO hour_counts (probe_id, region, hour, threshold_us, good, total, updated_ms) VALUES ",
        );
        push_placeholders(&mut sql, backend, chunk.len(), 7);
        sql.push_str(
            " ON CONFLICT (probe_id, hour, threshold_us, region) DO UPDATE SET
                good = hour_counts.good + excluded.good,
                total = hour_counts.total + excluded.total,
                updated_ms = excluded.updated_ms",
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for ((series, region, hour, threshold), (good, total)) in chunk {
            q = q
                .bind(*series)
                .bind(*region)
                .bind(*hour)
                .bind(clamp(*threshold))
                .bind(*good)
                .bind(*total)
                .bind(updated_ms);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
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

impl Store {
    /// Builds the roll-ups from `hour_counts` (hours and days) and the
    /// `minute_counts` rows the minute ring keeps, in one statement (one
    /// snapshot: on PostgreSQL other replicas write meanwhile, and hours
    /// and ring must agree). The minute rows are read per probe that has an
    /// hour row in the ring's span, by the primary key's prefix (probe,
    /// minute), not by a scan of every stored minute.
    pub(super) async fn load_rollup(&self) -> Result<crate::rollup::Rollup> {
        let started = std::time::Instant::now();
        let mut r = crate::rollup::Rollup::default();
        let ring_from = now_ms().div_euclid(60_000) - crate::rollup::MINUTE_SLOTS + 1;
        // SQLite takes CROSS JOIN as the loop order: the few probes outside,
        // the key look-up inside.
        let mut rows = sqlx::query(
            "SELECT probe_id, region, threshold_us, hour, CAST(NULL AS BIGINT) AS minute,
                    good, total
             FROM hour_counts
             UNION ALL
             SELECT m.probe_id, m.region, m.threshold_us, NULL, m.minute, m.good, m.total
             FROM (SELECT DISTINCT probe_id FROM hour_counts WHERE hour >= $2) p
                CROSS JOIN minute_counts m
             WHERE m.probe_id = p.probe_id AND m.minute >= $1",
        )
        .bind(ring_from)
        .bind(ring_from.div_euclid(HOUR))
        .fetch(&self.read);
        let (mut hours, mut minutes) = (0u64, 0u64);
        while let Some(row) = futures_util::TryStreamExt::try_next(&mut rows).await? {
            let probe = row.try_get::<&str, _>(0)?;
            let region = row.try_get::<&str, _>(1)?;
            let threshold = unsigned(row.try_get(2)?);
            let (good, total) = (unsigned(row.try_get(5)?), unsigned(row.try_get(6)?));
            match row.try_get::<Option<i64>, _>(4)? {
                Some(minute) => {
                    r.add_ring_minute(probe, region, minute, threshold, good, total);
                    minutes += 1;
                }
                None => {
                    let hour = row.try_get(3)?;
                    r.add_hour(probe, region, hour, threshold, good, total);
                    hours += 1;
                }
            }
        }
        tracing::info!(
            hour_rows = hours,
            minute_rows = minutes,
            series = r.series_count(),
            ms = started.elapsed().as_millis() as u64,
            "minute aggregates rolled up"
        );
        Ok(r)
    }
}
