//! Unit tests of the store on SQLite: idempotent ingest and the `latest`
//! pointers, SLO counts and pruning, minute counts with threshold
//! backfills, acks and catalog versions across a reopen.
use std::time::Duration;

use authpulse_proto::v1::{FailureClass, Outcome, ProbeResult, Timings};

use super::*;

fn result(seq: u64, probe: &str, started: i64, ok: bool, total_us: u64) -> ProbeResult {
    let r = authpulse_tests::results::probe_result("a1", "eu-west", seq, probe)
        .started(started)
        .timings(Timings {
            dns_us: Some(10),
            connect_us: None,
            tls_us: None,
            ttfb_us: Some(500),
            total_us,
        });
    if ok {
        r
    } else {
        r.failed(FailureClass::Timeout, "")
    }
    .build()
}

async fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).await.expect("open");
    (dir, store)
}

#[tokio::test]
async fn insert_is_idempotent_and_latest_tracks_newest() {
    let (_dir, s) = store().await;
    s.upsert_agent(&AgentInfo {
        agent_id: "a1".into(),
        region: "eu-west".into(),
        ..Default::default()
    })
    .await
    .expect("agent");
    let batch = vec![
        result(1, "p", 1000, true, 100),
        result(2, "p", 2000, false, 200),
    ];
    assert_eq!(
        s.insert_batch("a1", &batch).await.expect("insert").inserted,
        2
    );
    let again = s.insert_batch("a1", &batch).await.expect("insert");
    assert_eq!(
        again,
        InsertStats {
            inserted: 0,
            duplicates: 2
        }
    );
    // An older result arriving late does not replace the newest.
    s.insert_batch("a1", &[result(3, "p", 500, true, 1)])
        .await
        .expect("insert");
    let latest = s.latest_per_probe_region().await.expect("latest");
    assert_eq!(latest.len(), 1);
    assert_eq!(
        (latest[0].seq, latest[0].outcome),
        (2, Outcome::Failure as i32)
    );
    assert_eq!(latest[0].timings.dns_us, Some(10));
    assert_eq!(latest[0].timings.connect_us, None);
}

#[tokio::test]
async fn counts_and_prune() {
    let (_dir, s) = store().await;
    let batch = vec![
        result(1, "p", 1000, true, 100),
        result(2, "p", 2000, true, 900),
        result(3, "p", 3000, false, 100),
        result(4, "q", 3000, true, 100),
        result(5, "other", 3000, false, 100),
    ];
    s.insert_batch("a1", &batch).await.expect("insert");
    let ids = vec!["p".to_string(), "q".to_string()];
    assert_eq!(s.slo_counts(&ids, 0, None).await.expect("counts"), (3, 4));
    assert_eq!(
        s.slo_counts(&ids, 0, Some(500)).await.expect("counts"),
        (2, 4)
    );
    assert_eq!(
        s.slo_counts(&ids, 2000, None).await.expect("counts"),
        (2, 3)
    );
    assert_eq!(s.prune(2500).await.expect("prune"), 2);
    assert_eq!(s.slo_counts(&ids, 0, None).await.expect("counts"), (1, 2));
}

#[tokio::test]
async fn minute_counts_skip_duplicates_and_backfill_new_thresholds() {
    let (_dir, s) = store().await;
    let mut map = LatencyThresholds::new();
    map.insert("p".to_string(), vec![500]);
    s.set_latency_thresholds(map.clone())
        .await
        .expect("thresholds");
    // Two minutes; latencies on both sides of 500 and 300 µs.
    let batch = vec![
        result(1, "p", 60_000, true, 100),
        result(2, "p", 60_500, true, 400),
        result(3, "p", 119_999, true, 900),
        result(4, "p", 120_000, false, 100),
        result(5, "p", 125_000, true, 250),
        result(6, "q", 125_000, true, 250),
    ];
    s.insert_batch("a1", &batch).await.expect("insert");
    // Resent (a duplicate) together with one new result.
    let mut again = batch.clone();
    again.push(result(7, "p", 130_000, true, 600));
    let stats = s.insert_batch("a1", &again).await.expect("insert");
    assert_eq!((stats.inserted, stats.duplicates), (1, 6));
    let p = vec!["p".to_string()];
    let since = [0, 120_000, 179_999];
    assert_eq!(
        s.minute_counts_since(&p, &since, None)
            .await
            .expect("counts"),
        vec![(5, 6), (2, 3), (2, 3)]
    );
    assert_eq!(
        s.minute_counts_since(&p, &since, Some(500))
            .await
            .expect("counts"),
        vec![(3, 6), (1, 3), (1, 3)]
    );
    // A threshold never maintained has no rows until it is set; then it
    // is backfilled exactly from the raw results.
    assert_eq!(
        s.minute_counts_since(&p, &since, Some(300))
            .await
            .expect("counts"),
        vec![(0, 0); 3]
    );
    map.insert("p".to_string(), vec![500, 300]);
    assert_eq!(s.set_latency_thresholds(map.clone()).await.expect("set"), 1);
    // Unchanged thresholds (as after a restart) backfill nothing.
    assert_eq!(s.set_latency_thresholds(map).await.expect("set"), 0);
    let want: Vec<(u64, u64)> = since
        .iter()
        .map(|&since| {
            let mut c = (0, 0);
            for r in again.iter().filter(|r| r.probe_id == "p") {
                if r.started_unix_ms.div_euclid(MINUTE_MS) >= since.div_euclid(MINUTE_MS) {
                    c.1 += 1;
                    let total = r.timings.as_ref().map_or(0, |t| t.total_us);
                    if r.outcome == Outcome::Success as i32 && total <= 300 {
                        c.0 += 1;
                    }
                }
            }
            c
        })
        .collect();
    assert_eq!(want, vec![(2, 6), (1, 3), (1, 3)]);
    assert_eq!(
        s.minute_counts_since(&p, &since, Some(300))
            .await
            .expect("counts"),
        want
    );
    // New results keep the backfilled threshold up to date.
    s.insert_batch("a1", &[result(8, "p", 130_001, true, 299)])
        .await
        .expect("insert");
    assert_eq!(
        s.minute_counts_since(&p, &[0], Some(300))
            .await
            .expect("counts"),
        vec![(3, 7)]
    );
    // Minute rows past the minute retention are pruned.
    s.set_minute_retention(Duration::from_secs(60));
    assert_eq!(s.prune_minutes(180_000).await.expect("prune"), 3);
    assert_eq!(
        s.minute_counts_since(&p, &[0], None).await.expect("counts"),
        vec![(3, 4)]
    );
}

#[tokio::test]
async fn acks_never_go_back_and_versions_persist() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let s = Store::open(dir.path()).await.expect("open");
        s.upsert_agent(&AgentInfo {
            agent_id: "a1".into(),
            region: "r".into(),
            ..Default::default()
        })
        .await
        .expect("agent");
        s.set_acked_seq("a1", 7).await.expect("ack");
        s.set_acked_seq("a1", 3).await.expect("ack");
        assert_eq!(s.catalog_version("one").await.expect("v"), 1);
        assert_eq!(s.catalog_version("one").await.expect("v"), 1);
        assert_eq!(s.catalog_version("two").await.expect("v"), 2);
        s.close().await;
    }
    let s = Store::open(dir.path()).await.expect("reopen");
    assert_eq!(s.acked_seq("a1").await.expect("ack"), 7);
    assert_eq!(s.acked_seq("nobody").await.expect("ack"), 0);
    assert_eq!(s.catalog_version("two").await.expect("v"), 2);
    assert_eq!(s.catalog_version("one").await.expect("v"), 3);
}

/// Everything a batch insert writes, as comparable text (`updated_ms` left
/// out: it is the group's arrival time by design).
async fn dump(s: &Store) -> Vec<String> {
    let queries = [
        "SELECT agent_id || ' ' || seq || ' ' || probe_id || ' ' || started_ms || ' ' || outcome || ' ' || total_us || ' ' || steps_json || ' ' || received_ms FROM results ORDER BY agent_id, seq",
        "SELECT probe_id || ' ' || region || ' ' || agent_id || ' ' || seq || ' ' || started_ms FROM latest ORDER BY probe_id, region",
        "SELECT probe_id || ' ' || region || ' ' || minute || ' ' || threshold_us || ' ' || good || ' ' || total FROM minute_counts ORDER BY probe_id, region, minute, threshold_us",
        "SELECT agent_id || ' ' || seq || ' ' || probe_id || ' ' || received_ms FROM escalations ORDER BY agent_id, seq",
        // Registration stamps the wall clock; the batches stamp small times.
        "SELECT agent_id || ' ' || stored_total || ' ' || acked_seq || ' ' || CASE WHEN last_seen_ms < 1000000 THEN last_seen_ms ELSE -1 END FROM agents ORDER BY agent_id",
    ];
    let mut out = Vec::new();
    for q in queries {
        for row in sqlx::query(q).fetch_all(&s.read).await.expect("dump") {
            out.push(row.try_get::<String, _>(0).expect("text"));
        }
    }
    let sketches = sqlx::query(
        "SELECT probe_id, region, minute, sketch FROM minute_sketches ORDER BY probe_id, region, minute",
    )
    .fetch_all(&s.read)
    .await
    .expect("sketches");
    for row in sketches {
        let bytes: Vec<u8> = row.try_get(3).expect("sketch");
        let sketch = crate::latency_sketch::LatencySketch::decode(&bytes).expect("decodes");
        out.push(format!(
            "{} {} {} count={} {:?}",
            row.try_get::<String, _>(0).expect("probe"),
            row.try_get::<String, _>(1).expect("region"),
            row.try_get::<i64, _>(2).expect("minute"),
            sketch.count(),
            sketch.encode()
        ));
    }
    out
}

/// Group commit must be invisible: batches stored together in one
/// transaction leave exactly the rows (and per-batch counts) of the same
/// batches stored one by one, with duplicates inside a batch, across the
/// batches of a group and across groups, several agents, acks that go
/// back, escalations, step series and latency thresholds.
#[tokio::test]
async fn a_group_of_batches_stores_what_the_batches_store_one_by_one() {
    for seed in 1..=12u64 {
        let (_d1, grouped) = store().await;
        let (_d2, single) = store().await;
        group_equals_single(seed, &grouped, &single).await;
    }
}

/// The same on PostgreSQL, whose multi-row upserts and locking reads differ.
#[tokio::test]
async fn a_group_of_batches_stores_what_the_batches_store_one_by_one_on_postgres() {
    for seed in 1..=3u64 {
        let (db1, db2) = (
            authpulse_tests::postgres::PgDatabase::create().await,
            authpulse_tests::postgres::PgDatabase::create().await,
        );
        let (url1, url2) = (
            Database::parse(&db1.url).expect("url"),
            Database::parse(&db2.url).expect("url"),
        );
        let grouped = Store::connect(&url1).await.expect("open");
        let single = Store::connect(&url2).await.expect("open");
        group_equals_single(seed, &grouped, &single).await;
    }
}

async fn group_equals_single(seed: u64, grouped: &Store, single: &Store) {
    let mut thresholds = LatencyThresholds::new();
    thresholds.insert("p".into(), vec![300]);
    thresholds.insert("p/login".into(), vec![0, 200]);
    let agents = ["a1", "a2", "a3"];
    for s in [grouped, single] {
        s.set_latency_thresholds(thresholds.clone())
            .await
            .expect("thresholds");
        for a in agents {
            s.upsert_agent(&AgentInfo {
                agent_id: a.into(),
                region: "eu-west".into(),
                ..Default::default()
            })
            .await
            .expect("agent");
        }
    }
    let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut next = |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    for _ in 0..6 {
        let mut group: Vec<(&str, Vec<ProbeResult>, Option<u64>, i64)> = Vec::new();
        for _ in 0..=next(4) {
            let agent = agents[next(3) as usize];
            let results: Vec<ProbeResult> = (0..=next(12))
                .map(|_| {
                    let probe = if next(2) == 0 { "p" } else { "q" };
                    let mut r = authpulse_tests::results::probe_result(
                        agent,
                        "eu-west",
                        1 + next(40),
                        probe,
                    )
                    .started(60_000 * (1 + next(3) as i64) + next(1000) as i64)
                    .total_us(next(600))
                    .ok(next(4) != 0);
                    if next(5) == 0 {
                        r = r.failed_step("login", "http", FailureClass::Escalation, "");
                    }
                    r.build()
                })
                .collect();
            let acked = (next(3) != 0).then(|| next(40));
            group.push((agent, results, acked, 1_000 + next(100) as i64));
        }
        let writes: Vec<BatchWrite<'_>> = group
            .iter()
            .map(|(agent_id, results, acked_seq, received_ms)| BatchWrite {
                agent_id,
                results,
                acked_seq: *acked_seq,
                received_ms: *received_ms,
            })
            .collect();
        let together = grouped.insert_batches(&writes).await.expect("group");
        let mut apart = Vec::new();
        for w in &writes {
            apart.push(
                single
                    .insert_batch_received(w.agent_id, w.results, w.acked_seq, w.received_ms)
                    .await
                    .expect("batch"),
            );
        }
        assert_eq!(together, apart, "seed {seed}: per-batch counts");
    }
    assert_eq!(dump(grouped).await, dump(single).await, "seed {seed}");
}

#[tokio::test]
async fn an_invalid_batch_writes_nothing_of_its_group() {
    let (_dir, s) = store().await;
    let good = vec![result(1, "p", 60_000, true, 100)];
    let mut bad = vec![result(2, "p", 60_000, true, 100)];
    bad[0].seq = 0;
    assert!(Store::check_batch(&bad).is_err());
    assert!(Store::check_batch(&good).is_ok());
    let group = [
        BatchWrite {
            agent_id: "a1",
            results: &good,
            acked_seq: None,
            received_ms: 1,
        },
        BatchWrite {
            agent_id: "a1",
            results: &bad,
            acked_seq: None,
            received_ms: 1,
        },
    ];
    assert!(s.insert_batches(&group).await.is_err());
    assert_eq!(s.highest_stored_seq("a1").await.expect("seq"), 0);
}
