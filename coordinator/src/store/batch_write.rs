//! The idempotent insert of result batches on `(agent_id, seq)`: one
//! transaction stores any number of batches, from one agent or many (ingest
//! group-commits the batches of all streams that arrive while the previous
//! transaction runs). Per transaction it writes the results, the `latest`
//! pointers, escalations, the per-minute counts (and their hourly sums,
//! `hours.rs`) and latency sketches of the newly stored results, and each
//! agent's stored total, ack and last-seen time, as a handful of multi-row
//! statements whose size does not grow with the number of batches: the
//! rows of all batches are merged per key first (each key once per
//! statement, as PostgreSQL's `ON CONFLICT DO UPDATE` requires) and written in key order, so concurrent replicas lock rows in
//! the same order. Nothing of a group is written if one of its batches is
//! invalid or a statement fails; the caller decides whether to retry the
//! batches one by one.
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};

use authpulse_proto::v1::{FailureClass, Outcome, ProbeResult};
use sqlx::Row;

use super::hours::{Counts, CountsKey, add_counts};
use super::minutes::MinuteKey;
use super::results::{StoredStep, StoredTimings};
use super::{
    Backend, InsertStats, Result, Store, StoreError, clamp, minute_of, now_ms, push_placeholders,
    unsigned,
};
use crate::latency_sketch::LatencySketch;

/// Rows per multi-row statement: far below both engines' parameter limits
/// (17 columns × 500 = 8,500; SQLite allows 32,766, PostgreSQL 65,535).
const CHUNK: usize = 500;

/// One agent's batch as ingest hands it to the store.
#[derive(Clone, Copy, Debug)]
pub struct BatchWrite<'a> {
    pub agent_id: &'a str,
    pub results: &'a [ProbeResult],
    /// The agent's new ack, recorded (never moving back) with the results,
    /// so an ack is never on disk without the results it covers.
    pub acked_seq: Option<u64>,
    /// When the batch arrived (ms since the epoch): staleness and
    /// escalation windows are judged on it.
    pub received_ms: i64,
}

/// A result checked and converted for its row.
struct Prepared<'a> {
    batch: usize,
    agent_id: &'a str,
    seq: i64,
    result: &'a ProbeResult,
    timings: StoredTimings,
    steps: Vec<StoredStep>,
    steps_json: String,
    received_ms: i64,
}

/// `(probe, region, minute)` of a latency sketch.
type SketchKey<'a> = (&'a str, &'a str, i64);

/// Per agent: results newly stored, the highest ack of its batches (if
/// any carried one), and the arrival of its last acking batch.
#[derive(Default)]
struct AgentUpdate {
    inserted: u64,
    acked: Option<i64>,
    seen_ms: i64,
}

impl Store {
    /// Stores a batch in one transaction; results already stored (same agent
    /// and seq) are counted as duplicates and left untouched.
    pub async fn insert_batch(
        &self,
        agent_id: &str,
        results: &[ProbeResult],
    ) -> Result<InsertStats> {
        self.insert_batch_acked(agent_id, results, None).await
    }

    /// [`insert_batch`](Self::insert_batch) that also records the agent's
    /// new ack (never moving it back) and last-seen time in the same
    /// transaction.
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
    /// arrived at `received` (ms since the epoch). Ingest passes the current
    /// time; tests and imports may pass another.
    pub async fn insert_batch_received(
        &self,
        agent_id: &str,
        results: &[ProbeResult],
        acked_seq: Option<u64>,
        received: i64,
    ) -> Result<InsertStats> {
        let stats = self
            .insert_batches(&[BatchWrite {
                agent_id,
                results,
                acked_seq,
                received_ms: received,
            }])
            .await?;
        Ok(stats.first().copied().unwrap_or_default())
    }

    /// Checks a batch the way [`insert_batches`](Self::insert_batches) will,
    /// without writing: a group-committing caller drops an invalid batch
    /// before it can fail the others.
    pub fn check_batch(results: &[ProbeResult]) -> Result<()> {
        results.iter().try_for_each(|r| seq_of(r).map(drop))
    }

    /// Stores `batches` in one transaction and returns, per batch, how many
    /// of its results were new and how many already stored (the first
    /// occurrence of an `(agent, seq)` in the group is the one stored).
    pub async fn insert_batches(&self, batches: &[BatchWrite<'_>]) -> Result<Vec<InsertStats>> {
        // Checked first: nothing of an invalid group is written.
        let mut rows = Vec::with_capacity(batches.iter().map(|b| b.results.len()).sum());
        for (i, b) in batches.iter().enumerate() {
            for r in b.results {
                let steps: Vec<StoredStep> = r.steps.iter().map(StoredStep::from).collect();
                rows.push(Prepared {
                    batch: i,
                    agent_id: b.agent_id,
                    seq: seq_of(r)?,
                    result: r,
                    timings: StoredTimings::from(r.timings.as_ref()),
                    steps_json: serde_json::to_string(&steps)?,
                    steps,
                    received_ms: b.received_ms,
                });
            }
        }
        let mut stats = vec![InsertStats::default(); batches.len()];
        let mut rollup = self.rollup.lock().await;
        let mut tx = self.write.begin().await?;
        // Read while holding the write connection: thresholds only change
        // under it too, so a group and a threshold backfill never interleave.
        let thresholds = self.latency_thresholds();

        // (agent, seq) the database took; everything else was stored before.
        let mut inserted: HashMap<&str, HashSet<i64>> = HashMap::new();
        for b in batches {
            inserted.entry(b.agent_id).or_default();
        }
        // Usually every row is new: insert without RETURNING (which would
        // hand every row back through the driver) inside a savepoint, and
        // only if fewer rows went in than were sent (resends, or a seq twice
        // in the group) undo that and insert again, learning which are new.
        let mut all_new = sqlx::Acquire::begin(&mut *tx).await?;
        let mut affected = 0;
        for chunk in rows.chunks(CHUNK) {
            affected += self
                .result_rows(chunk, false)
                .execute(&mut *all_new)
                .await?
                .rows_affected();
        }
        if affected == rows.len() as u64 {
            all_new.commit().await?;
            for p in &rows {
                if let Some(seqs) = inserted.get_mut(p.agent_id) {
                    seqs.insert(p.seq);
                }
            }
        } else {
            all_new.rollback().await?;
            for chunk in rows.chunks(CHUNK) {
                for row in self.result_rows(chunk, true).fetch_all(&mut *tx).await? {
                    let agent: &str = row.try_get(0)?;
                    let seq: i64 = row.try_get(1)?;
                    if let Some(seqs) = inserted.get_mut(agent) {
                        seqs.insert(seq);
                    }
                }
            }
        }

        // (series, region, minute, threshold) -> (good, total) of the group.
        // Series ids are probe ids, or `probe/step` for the journey steps an
        // SLO names.
        let mut minutes: BTreeMap<MinuteKey<'_>, (i64, i64)> = BTreeMap::new();
        let mut sketches: BTreeMap<SketchKey<'_>, LatencySketch> = BTreeMap::new();
        // (probe, region) -> (started, agent, seq) of the newest result.
        let mut latest: BTreeMap<(&str, &str), (i64, &str, i64)> = BTreeMap::new();
        // Newly stored results that carry an escalation.
        let mut escalated: Vec<&Prepared<'_>> = Vec::new();
        let mut agents: BTreeMap<&str, AgentUpdate> = BTreeMap::new();
        let escalation = FailureClass::Escalation as i32;
        let success = Outcome::Success as i32;
        for p in &rows {
            // `remove`: a seq sent twice in one group is stored once.
            let new = inserted
                .get_mut(p.agent_id)
                .is_some_and(|s| s.remove(&p.seq));
            let st = &mut stats[p.batch];
            if !new {
                st.duplicates += 1;
                continue;
            }
            st.inserted += 1;
            agents.entry(p.agent_id).or_default().inserted += 1;
            let (r, t) = (p.result, &p.timings);
            if r.failure_class == escalation
                || p.steps.iter().any(|s| s.failure_class == escalation)
            {
                escalated.push(p);
            }
            let ok = r.outcome == success;
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
            for step in &p.steps {
                let series = format!("{}/{}", r.probe_id, step.name);
                let step_ok = step.outcome == success;
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
            let newest = latest
                .entry((key.0, key.1))
                .or_insert((i64::MIN, p.agent_id, 0));
            if r.started_unix_ms >= newest.0 {
                *newest = (r.started_unix_ms, p.agent_id, p.seq);
            }
        }
        for b in batches {
            if let Some(acked) = b.acked_seq {
                let a = agents.entry(b.agent_id).or_default();
                a.acked = Some(a.acked.unwrap_or(0).max(clamp(acked)));
                a.seen_ms = b.received_ms;
            }
        }
        let received = batches.iter().map(|b| b.received_ms).max().unwrap_or(0);

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
            for ((probe, region), (started, agent, seq)) in chunk {
                q = q
                    .bind(*probe)
                    .bind(*region)
                    .bind(*agent)
                    .bind(*seq)
                    .bind(*started);
            }
            q.execute(&mut *tx).await?;
        }

        for chunk in escalated.chunks(CHUNK) {
            let mut sql = String::from(
                "INSERT INTO escalations (agent_id, seq, probe_id, started_ms, received_ms) VALUES ",
            );
            push_placeholders(&mut sql, self.backend, chunk.len(), 5);
            sql.push_str(" ON CONFLICT (agent_id, seq) DO NOTHING");
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for p in chunk {
                q = q
                    .bind(p.agent_id)
                    .bind(p.seq)
                    .bind(&p.result.probe_id)
                    .bind(p.result.started_unix_ms)
                    .bind(p.received_ms);
            }
            q.execute(&mut *tx).await?;
        }

        let minute_rows: Vec<(CountsKey<'_>, (i64, i64))> = minutes
            .iter()
            .map(|((s, r, m, th), counts)| ((s.as_ref(), *r, *m, *th), *counts))
            .collect();
        add_counts(
            &mut tx,
            self.backend,
            Counts::Minutes,
            &minute_rows,
            received,
        )
        .await?;
        super::hours::upsert_hour_counts(
            &mut tx,
            self.backend,
            minute_rows
                .iter()
                .map(|((s, r, m, th), (g, t))| (*s, *r, *m, *th, *g, *t)),
            received,
        )
        .await?;

        self.merge_sketches(&mut tx, &sketches).await?;

        // In the same transaction, so the counts are exact across crashes.
        let agent_rows: Vec<_> = agents
            .iter()
            .filter(|(_, a)| a.inserted > 0 || a.acked.is_some())
            .collect();
        for chunk in agent_rows.chunks(CHUNK) {
            // -1 in column3: no ack in this group, keep ack and last-seen.
            let mut sql = String::from(
                "UPDATE agents SET stored_total = agents.stored_total + v.column2,
                    acked_seq = CASE WHEN agents.acked_seq >= v.column3 THEN agents.acked_seq ELSE v.column3 END,
                    last_seen_ms = CASE WHEN v.column3 < 0 THEN agents.last_seen_ms ELSE v.column4 END
                 FROM (VALUES ",
            );
            push_placeholders(&mut sql, self.backend, chunk.len(), 4);
            sql.push_str(") AS v WHERE agents.agent_id = v.column1");
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (agent, a) in chunk {
                q = q
                    .bind(**agent)
                    .bind(clamp(a.inserted))
                    .bind(a.acked.unwrap_or(-1))
                    .bind(a.seen_ms);
            }
            q.execute(&mut *tx).await?;
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

    /// The multi-row INSERT of `chunk` into `results`, skipping rows already
    /// stored; with `returning`, it answers the `(agent_id, seq)` it took.
    fn result_rows<'q>(
        &self,
        chunk: &'q [Prepared<'q>],
        returning: bool,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
        let mut sql = String::from(
            "INSERT INTO results (agent_id, seq, probe_id, region, started_ms, duration_us, outcome,
                failure_class, dns_us, connect_us, tls_us, ttfb_us, total_us, steps_json, detail,
                assignment_version, received_ms) VALUES ",
        );
        push_placeholders(&mut sql, self.backend, chunk.len(), 17);
        sql.push_str(" ON CONFLICT (agent_id, seq) DO NOTHING");
        if returning {
            sql.push_str(" RETURNING agent_id, seq");
        }
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for p in chunk {
            let (r, t) = (p.result, &p.timings);
            q = q
                .bind(p.agent_id)
                .bind(p.seq)
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
                .bind(p.steps_json.as_str())
                .bind(&r.detail)
                .bind(clamp(r.assignment_version))
                .bind(p.received_ms);
        }
        q
    }

    /// Merges the group's latency sketches into `minute_sketches`: the
    /// minutes that have none yet take ours in one statement; for the rest
    /// the stored sketches are read (PostgreSQL: locked, other replicas
    /// merge into them too), merged in Rust and written back.
    async fn merge_sketches(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        sketches: &BTreeMap<SketchKey<'_>, LatencySketch>,
    ) -> Result<()> {
        let all: Vec<_> = sketches.iter().collect();
        let mut existing: Vec<(SketchKey<'_>, &LatencySketch)> = Vec::new();
        for chunk in all.chunks(CHUNK) {
            let mut sql = String::from(
                "INSERT INTO minute_sketches (probe_id, region, minute, sketch) VALUES ",
            );
            push_placeholders(&mut sql, self.backend, chunk.len(), 4);
            sql.push_str(
                " ON CONFLICT (probe_id, minute, region) DO NOTHING RETURNING probe_id, region, minute",
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for ((probe, region, minute), sketch) in chunk {
                q = q
                    .bind(*probe)
                    .bind(*region)
                    .bind(*minute)
                    .bind(sketch.encode());
            }
            let mut fresh: HashSet<(String, String, i64)> = HashSet::new();
            for row in q.fetch_all(&mut **tx).await? {
                fresh.insert((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?));
            }
            for (key, sketch) in chunk {
                if !fresh.contains(&(key.0.to_owned(), key.1.to_owned(), key.2)) {
                    existing.push((**key, *sketch));
                }
            }
        }
        let lock = match self.backend {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE",
        };
        for chunk in existing.chunks(CHUNK) {
            let mut sql = String::from(
                "SELECT probe_id, region, minute, sketch FROM minute_sketches
                 WHERE (probe_id, region, minute) IN (VALUES ",
            );
            push_placeholders(&mut sql, self.backend, chunk.len(), 3);
            // Sorted: concurrent groups lock the rows in the same order.
            sql.push_str(") ORDER BY probe_id, minute, region");
            sql.push_str(lock);
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for ((probe, region, minute), _) in chunk {
                q = q.bind(*probe).bind(*region).bind(*minute);
            }
            let mut stored: HashMap<(String, String, i64), Vec<u8>> = HashMap::new();
            for row in q.fetch_all(&mut **tx).await? {
                stored.insert(
                    (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?),
                    row.try_get(3)?,
                );
            }
            let mut sql = String::from(
                "INSERT INTO minute_sketches (probe_id, region, minute, sketch) VALUES ",
            );
            push_placeholders(&mut sql, self.backend, chunk.len(), 4);
            sql.push_str(
                " ON CONFLICT (probe_id, minute, region) DO UPDATE SET sketch = excluded.sketch",
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for ((probe, region, minute), sketch) in chunk {
                let mut merged = (*sketch).clone();
                if let Some(old) = stored
                    .get(&((*probe).to_owned(), (*region).to_owned(), *minute))
                    .and_then(|b| LatencySketch::decode(b))
                {
                    merged.merge(&old);
                }
                q = q
                    .bind(*probe)
                    .bind(*region)
                    .bind(*minute)
                    .bind(merged.encode());
            }
            q.execute(&mut **tx).await?;
        }
        Ok(())
    }
}

/// The result's seq as stored: 1 ..= i64::MAX.
fn seq_of(r: &ProbeResult) -> Result<i64> {
    i64::try_from(r.seq)
        .ok()
        .filter(|s| *s > 0)
        .ok_or_else(|| StoreError::Invalid(format!("seq {} out of range", r.seq)))
}
