//! The roll-ups a store builds at open (the database sums minutes older than
//! the ring by hour in one grouped scan) answer exactly what the table
//! answers: for minute rows spread over six days — older than the ring,
//! inside it, a few in the future, several regions and latency thresholds —
//! `rollup_sums` after a reopen equals `minute_sums` for windows starting
//! on and off hour and day boundaries.
use authpulse_coordinator::store::{self, Store};

#[tokio::test]
async fn rollups_built_at_open_equal_the_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).await.expect("open");
    let now_min = store::now_ms().div_euclid(60_000);
    let pool = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        dir.path().join(store::DB_FILE).display()
    ))
    .await
    .expect("pool");
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
    store.close().await;
    let store = Store::open(dir.path()).await.expect("reopen");
    let probes = vec!["p0".to_string(), "p1".to_string()];
    let since: Vec<i64> = vec![
        now_min - 6 * 1440 - 10,  // before everything
        now_min - 5 * 1440 - 37,  // days back, off the hour
        now_min - 4 * 1440,       // older than the ring
        now_min - 3 * 1440 - 200, // just before the ring
        now_min - 3 * 1440,       // inside the ring
        now_min - 61,
        now_min - 5,
        now_min + 3, // only future minutes
    ];
    let from_table = store.minute_sums(&probes, &since).await.expect("table");
    let from_rollup = store
        .rollup_sums(&probes, &since, now_min)
        .await
        .expect("rollup");
    assert_eq!(from_table.len(), 8, "2 probes x 2 regions x 2 thresholds");
    for (key, want) in &from_table {
        assert_eq!(from_rollup.get(key), Some(want), "{key:?}");
    }
    assert_eq!(from_rollup.len(), from_table.len());
}
