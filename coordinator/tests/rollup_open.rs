//! The roll-ups a store builds at open (hours and days from the persisted
//! `hour_counts`, the ring from the recent minute rows, on SQLite mostly
//! filled in the background) answer exactly what the table answers, while
//! the ring fills and after, and `hour_counts` never drifts from the minute rows:
//! - minute rows spread over six days (older than the ring, inside it, a
//!   few in the future, several regions and latency thresholds) written
//!   before `hour_counts` existed: the migration fills it, and after it
//!   `rollup_sums` equals `minute_sums` for windows starting on and off
//!   hour and day boundaries;
//! - a database from before the migrator (schema 5) gets it too;
//! - random batches through the store, two agents' per transaction as
//!   group commit writes them (resends, duplicate seqs, journey steps, late
//!   and future results), a threshold backfill and pruning on
//!   and off hour boundaries keep `hour_counts` equal to the minute rows
//!   summed by hour, and a reopen equal to the table, on SQLite and on
//!   PostgreSQL.
use authpulse_coordinator::store::{self, BatchWrite, Database, LatencyThresholds, Store};
use authpulse_proto::v1::{Outcome, ProbeResult, StepResult, Timings};
use authpulse_tests::postgres::PgDatabase;
use authpulse_tests::results::probe_result;
use sqlx::Row;

/// (series, region, hour, threshold, good, total).
type HourRow = (String, String, i64, i64, i64, i64);

/// The minute rows summed by hour, and `hour_counts`, both sorted.
async fn hours_both_ways(url: &str) -> (Vec<HourRow>, Vec<HourRow>) {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url).await.expect("pool");
    let read = |sql: &'static str| {
        let pool = pool.clone();
        async move {
            let rows = sqlx::query(sql).fetch_all(&pool).await.expect("hours");
            let mut v: Vec<HourRow> = rows
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
                .collect();
            v.sort();
            v
        }
    };
    let from_minutes = read(
        "SELECT probe_id, region, (minute - (((minute % 60) + 60) % 60)) / 60 AS h,
            threshold_us, CAST(SUM(good) AS BIGINT), CAST(SUM(total) AS BIGINT)
         FROM minute_counts GROUP BY probe_id, region, h, threshold_us",
    )
    .await;
    let stored =
        read("SELECT probe_id, region, hour, threshold_us, good, total FROM hour_counts").await;
    pool.close().await;
    (from_minutes, stored)
}

async fn assert_hours_match(url: &str, context: &str) {
    let (from_minutes, stored) = hours_both_ways(url).await;
    assert!(!from_minutes.is_empty(), "{context}: no minute rows");
    assert_eq!(stored, from_minutes, "{context}: hour_counts drifted");
}

/// `rollup_sums` (the roll-ups) equals `minute_sums` (the table) for
/// `probes` and every start in `since`: right after open (on SQLite the
/// minute ring is still being filled in the background) and once the ring
/// is complete.
async fn assert_rollup_equals_table(s: &Store, probes: &[String], since: &[i64], now_min: i64) {
    compare_rollup_and_table(s, probes, since, now_min).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !s.rollup_ring_complete().await {
        assert!(std::time::Instant::now() < deadline, "ring never filled");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    compare_rollup_and_table(s, probes, since, now_min).await;
}

async fn compare_rollup_and_table(s: &Store, probes: &[String], since: &[i64], now_min: i64) {
    let from_table = s.minute_sums(probes, since).await.expect("table");
    let from_rollup = s.rollup_sums(probes, since, now_min).await.expect("rollup");
    assert!(!from_table.is_empty());
    for (key, want) in &from_table {
        assert_eq!(from_rollup.get(key), Some(want), "{key:?}");
    }
    assert_eq!(from_rollup.len(), from_table.len());
}

/// Window starts on and off hour and day boundaries, old and recent.
fn starts(now_min: i64) -> Vec<i64> {
    vec![
        now_min - 6 * 1440 - 10,  // before everything
        now_min - 5 * 1440 - 37,  // days back, off the hour
        now_min - 4 * 1440,       // older than the ring
        now_min - 3 * 1440 - 200, // just before the ring
        now_min - 3 * 1440,       // inside the ring
        now_min - 61,
        now_min - 5,
        now_min + 3, // only future minutes
    ]
}

/// Makes the store's database look as before migration 8 (no
/// `hour_counts`, the migration not recorded), so the next open runs it.
async fn undo_migration_8(url: &str) {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url).await.expect("pool");
    for sql in [
        "DROP TABLE hour_counts",
        "DELETE FROM _sqlx_migrations WHERE version = 8",
    ] {
        sqlx::query(sql).execute(&pool).await.expect(sql);
    }
    pool.close().await;
}

#[tokio::test]
async fn rollups_built_at_open_equal_the_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).await.expect("open");
    let now_min = store::now_ms().div_euclid(60_000);
    let url = format!("sqlite://{}", dir.path().join(store::DB_FILE).display());
    let pool = sqlx::SqlitePool::connect(&url).await.expect("pool");
    // Six days back to five minutes ahead, skipping some minutes; values
    // vary per row so a misplaced sum shows.
    sqlx::query(
        "WITH RECURSIVE m(x) AS (SELECT ?1 - 6 * 1440 UNION ALL SELECT x + 1 FROM m WHERE x < ?1 + 5),
              p(i) AS (VALUES (0), (1)),
              r(g) AS (VALUES ('eu-west'), ('us-east')),
              th(t) AS (VALUES (0), (250000))
         INSERT INTO minute_counts (probe_id, region, minute, threshold_us, good, total)
         SELECT 'p' || i, g, x, t, (x * 7 + i * 3 + t) % 11, 10 + (x + i) % 5
         FROM p, m, r, th WHERE (x * 13 + i) % 17 != 0",
    )
    .bind(now_min)
    .execute(&pool)
    .await
    .expect("fill");
    pool.close().await;
    store.close().await;
    // Rows written behind the store's back: as if they were there before
    // `hour_counts` existed, which the migration then fills.
    undo_migration_8(&url).await;
    let store = Store::open(dir.path()).await.expect("reopen");
    assert_hours_match(&url, "migrated").await;
    let probes = vec!["p0".to_string(), "p1".to_string()];
    let since = starts(now_min);
    assert_eq!(
        store
            .minute_sums(&probes, &since)
            .await
            .expect("table")
            .len(),
        8,
        "2 probes x 2 regions x 2 thresholds"
    );
    assert_rollup_equals_table(&store, &probes, &since, now_min).await;
}

#[tokio::test]
async fn a_database_from_before_the_migrator_gets_hour_counts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(store::DB_FILE);
    let url = format!("sqlite://{}", path.display());
    let now_min = store::now_ms().div_euclid(60_000);
    {
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(options).await.expect("pool");
        sqlx::raw_sql(include_str!("fixtures/legacy/sqlite-v5.sql"))
            .execute(&pool)
            .await
            .expect("schema 5");
        // Schema 5's minute rows (no `updated_ms`) over four days.
        sqlx::query(
            "WITH RECURSIVE m(x) AS (SELECT ?1 - 4 * 1440 UNION ALL SELECT x + 7 FROM m WHERE x < ?1)
             INSERT INTO minute_counts (probe_id, region, minute, threshold_us, good, total)
             SELECT 'p', 'eu-west', x, 0, x % 3, 3 FROM m",
        )
        .bind(now_min)
        .execute(&pool)
        .await
        .expect("fill");
        sqlx::query("INSERT INTO schema_version (version) VALUES (5)")
            .execute(&pool)
            .await
            .expect("version");
        pool.close().await;
    }
    let s = Store::open(dir.path()).await.expect("open schema 5");
    assert_hours_match(&url, "bridged from schema 5").await;
    let since = [now_min - 4 * 1440 - 1, now_min - 3 * 1440 - 7, now_min - 90];
    assert_rollup_equals_table(&s, &["p".to_string()], &since, now_min).await;
}

/// A deterministic pseudo-random sequence (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One random result: a probe of three (`j` with a `login` step), one of
/// two regions, started up to six days ago or a few minutes ahead.
fn random_result(rng: &mut Rng, agent: &str, seq: u64, now_ms: i64) -> ProbeResult {
    let probe = ["p0", "p1", "j"][rng.below(3) as usize];
    let region = ["eu-west", "us-east"][rng.below(2) as usize];
    let back_ms = match rng.below(10) {
        0 => -(rng.below(4 * 60_000) as i64), // the future
        1..=3 => rng.below(6 * 86_400_000) as i64,
        _ => rng.below(6 * 3_600_000) as i64,
    };
    let mut r = probe_result(agent, region, seq, probe)
        .started(now_ms - back_ms)
        .total_us(50_000 + rng.below(400_000))
        .ok(rng.below(5) != 0)
        .build();
    if probe == "j" {
        let ok = rng.below(4) != 0;
        r.steps.push(StepResult {
            name: "login".into(),
            kind: "http".into(),
            outcome: if ok {
                Outcome::Success
            } else {
                Outcome::Failure
            } as i32,
            timings: Some(Timings {
                total_us: 20_000 + rng.below(200_000),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    r
}

fn thresholds(entries: &[(&str, &[u64])]) -> LatencyThresholds {
    entries
        .iter()
        .map(|(series, ths)| (series.to_string(), ths.to_vec()))
        .collect()
}

/// Every writer of `minute_counts` keeps `hour_counts` its sum by hour;
/// `url` reads the same database as `database`.
async fn hour_counts_follow_every_write(database: Database, url: &str) {
    let s = Store::connect(&database).await.expect("open");
    s.set_latency_thresholds(thresholds(&[
        ("p0", &[250_000]),
        ("j", &[300_000]),
        ("j/login", &[0, 100_000]),
    ]))
    .await
    .expect("thresholds");
    let now_ms = store::now_ms();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut sent: Vec<ProbeResult> = Vec::new();
    let mut seqs = [0u64; 2];
    for group in 0..20 {
        // Both agents' batches in one transaction (as ingest's group
        // commit writes them): their minute deltas merge before the hours.
        let mut batches: Vec<Vec<ProbeResult>> = Vec::new();
        for (a, agent) in ["a1", "a2"].iter().enumerate() {
            let mut results = Vec::new();
            for _ in 0..30 {
                seqs[a] += 1;
                results.push(random_result(&mut rng, agent, seqs[a], now_ms));
            }
            // Resends of this agent's earlier results, and one seq twice in
            // the batch: stored once, counted once.
            let earlier: Vec<&ProbeResult> = sent.iter().filter(|r| r.agent_id == *agent).collect();
            for _ in 0..earlier.len().min(8) {
                results.push(earlier[rng.below(earlier.len() as u64) as usize].clone());
            }
            results.push(results[0].clone());
            batches.push(results);
        }
        let writes: Vec<BatchWrite<'_>> = ["a1", "a2"]
            .iter()
            .zip(&batches)
            .map(|(agent, results)| BatchWrite {
                agent_id: agent,
                results,
                acked_seq: None,
                received_ms: now_ms,
            })
            .collect();
        let stats = s.insert_batches(&writes).await.expect("insert");
        assert!(
            stats.iter().all(|st| st.inserted == 30),
            "group {group}: {stats:?}"
        );
        for results in batches {
            sent.extend(results.into_iter().take(30));
        }
        if group % 5 == 4 {
            assert_hours_match(url, &format!("after group {group}")).await;
        }
    }
    // New thresholds: their minute rows are backfilled from the results.
    let backfilled = s
        .set_latency_thresholds(thresholds(&[
            ("p0", &[250_000, 400_000]),
            ("p1", &[150_000]),
            ("j", &[300_000]),
            ("j/login", &[0, 100_000, 200_000]),
        ]))
        .await
        .expect("backfill");
    assert_eq!(backfilled, 3);
    assert_hours_match(url, "after the threshold backfill").await;

    let now_min = store::minute_of(now_ms);
    let probes: Vec<String> = ["p0", "p1", "j", "j/login"]
        .iter()
        .map(|p| p.to_string())
        .collect();
    assert_rollup_equals_table(&s, &probes, &starts(now_min), now_min).await;
    s.close().await;
    let s = Store::connect(&database).await.expect("reopen");
    assert_rollup_equals_table(&s, &probes, &starts(now_min), now_min).await;

    // Pruning: a cutoff inside an hour (the hour is recomputed from the
    // minutes left), then one on an hour boundary.
    let cutoff_min = now_min - 4 * 1440 - 17;
    let cutoff_min = cutoff_min - cutoff_min.rem_euclid(60) + 17;
    s.set_minute_retention(std::time::Duration::from_secs(
        u64::try_from((now_min - cutoff_min) * 60).expect("positive"),
    ));
    assert!(s.prune_minutes(now_min * 60_000).await.expect("prune") > 0);
    assert_hours_match(url, "after pruning inside an hour").await;
    let (_, stored) = hours_both_ways(url).await;
    assert!(stored.iter().all(|h| h.2 >= cutoff_min.div_euclid(60)));
    s.set_minute_retention(std::time::Duration::from_secs(
        u64::try_from((now_min - (cutoff_min - 17 + 120)) * 60).expect("positive"),
    ));
    assert!(s.prune_minutes(now_min * 60_000).await.expect("prune") > 0);
    assert_hours_match(url, "after pruning on an hour").await;
    s.close().await;
    let s = Store::connect(&database).await.expect("reopen");
    assert_rollup_equals_table(&s, &probes, &starts(now_min), now_min).await;
    s.close().await;
}

#[tokio::test]
async fn sqlite_hour_counts_follow_every_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(store::DB_FILE);
    let url = format!("sqlite://{}", path.display());
    hour_counts_follow_every_write(Database::Sqlite(path), &url).await;
}

#[tokio::test]
async fn postgres_hour_counts_follow_every_write() {
    let db = PgDatabase::create().await;
    hour_counts_follow_every_write(Database::parse(&db.url).expect("url"), &db.url).await;
}

#[tokio::test]
async fn postgres_migration_fills_hour_counts() {
    let db = PgDatabase::create().await;
    let database = Database::parse(&db.url).expect("url");
    let s = Store::connect(&database).await.expect("open");
    let now_ms = store::now_ms();
    let mut rng = Rng(7);
    let results: Vec<ProbeResult> = (1..=300)
        .map(|seq| random_result(&mut rng, "a1", seq, now_ms))
        .collect();
    s.insert_batch("a1", &results).await.expect("insert");
    s.close().await;
    undo_migration_8(&db.url).await;
    let s = Store::connect(&database).await.expect("migrate");
    assert_hours_match(&db.url, "migrated").await;
    let now_min = store::minute_of(now_ms);
    let probes = vec!["p0".to_string(), "p1".to_string(), "j".to_string()];
    assert_rollup_equals_table(&s, &probes, &starts(now_min), now_min).await;
    s.close().await;
}
