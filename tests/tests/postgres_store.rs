//! The store on PostgreSQL behaves exactly like the store on SQLite: the
//! same operations on both give the same answers (no engine-specific
//! behaviour reaches callers), and two stores on one PostgreSQL database —
//! two coordinator replicas — see each other's writes: roll-ups refresh to
//! equal numbers, concurrent batches into the same minute add up exactly,
//! and only one holds the leader lock at a time.
use std::collections::{BTreeMap, HashMap};

use authpulse_coordinator::store::{Backend, Database, Silence, Store, minute_of, now_ms};
use authpulse_proto::v1::{FailureClass, Outcome, ProbeResult, StepResult, Timings};
use authpulse_tests::TempDir;
use authpulse_tests::postgres::PgDatabase;

const REGIONS: [&str; 2] = ["eu-west", "us-east"];

fn step(name: &str, ok: bool, class: FailureClass, total_us: u64) -> StepResult {
    StepResult {
        name: name.into(),
        kind: "http".into(),
        outcome: if ok {
            Outcome::Success
        } else {
            Outcome::Failure
        } as i32,
        failure_class: class as i32,
        timings: Some(Timings {
            total_us,
            ..Default::default()
        }),
        detail: format!("{name} detail"),
    }
}

/// A deterministic mix: two probes and a journey, two regions, failures,
/// an escalation inside a journey step, a spread of latencies and minutes.
fn results(agent: &str, first_seq: u64, n: u64, base_ms: i64) -> Vec<ProbeResult> {
    (0..n)
        .map(|i| {
            let seq = first_seq + i;
            let probe = ["login", "token", "journey"][(seq % 3) as usize];
            let ok = !seq.is_multiple_of(7);
            let total_us = 1_000 + (seq * 7_919) % 400_000;
            let steps = if probe == "journey" {
                vec![
                    step("login", ok, FailureClass::Unspecified, total_us / 2),
                    step(
                        "delete",
                        !seq.is_multiple_of(11),
                        if seq.is_multiple_of(11) {
                            FailureClass::Escalation
                        } else {
                            FailureClass::Unspecified
                        },
                        total_us / 3,
                    ),
                ]
            } else {
                Vec::new()
            };
            ProbeResult {
                agent_id: agent.into(),
                seq,
                probe_id: probe.into(),
                region: REGIONS[(seq % 2) as usize].into(),
                started_unix_ms: base_ms + (seq as i64) * 17_000,
                duration_us: total_us,
                outcome: if ok {
                    Outcome::Success
                } else {
                    Outcome::Failure
                } as i32,
                failure_class: if ok {
                    FailureClass::Unspecified
                } else {
                    FailureClass::Timeout
                } as i32,
                timings: Some(Timings {
                    dns_us: Some(100 + seq % 50),
                    connect_us: seq.is_multiple_of(2).then_some(300),
                    tls_us: None,
                    ttfb_us: Some(total_us / 2),
                    total_us,
                }),
                steps,
                detail: if ok {
                    String::new()
                } else {
                    format!("timed out ({seq})")
                },
                assignment_version: 3,
            }
        })
        .collect()
}

/// Everything a caller can read back, with `received_ms` (wall clock at
/// insert) blanked.
async fn snapshot(store: &Store, base_ms: i64) -> serde_json::Value {
    let ids: Vec<String> = [
        "login",
        "token",
        "journey",
        "journey/delete",
        "journey/login",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let since = [base_ms, base_ms + 600_000, base_ms + 3_600_000];
    let since_min: Vec<i64> = since.iter().map(|s| minute_of(*s)).collect();
    let mut latest = store.latest_per_probe_region().await.expect("latest");
    let mut recent = store.recent_results(base_ms, 5).await.expect("recent");
    for r in latest.iter_mut().chain(recent.iter_mut()) {
        r.received_ms = 0;
    }
    let sums: BTreeMap<String, Vec<(u64, u64)>> = store
        .minute_sums(&ids, &since_min)
        .await
        .expect("minute sums")
        .into_iter()
        .map(|((p, t, r), v)| (format!("{p}|{t}|{r}"), v))
        .collect();
    let now_minute = minute_of(now_ms());
    let rollup: BTreeMap<String, Vec<(u64, u64)>> = store
        .rollup_sums(&ids, &since_min, now_minute)
        .await
        .expect("rollup sums")
        .into_iter()
        .map(|((p, t, r), v)| (format!("{p}|{t}|{r}"), v))
        .collect();
    let mut rows = store.minute_rows(&ids, since_min[0]).await.expect("rows");
    rows.sort_by(|a, b| {
        (&a.probe_id, &a.region, a.minute, a.threshold_us).cmp(&(
            &b.probe_id,
            &b.region,
            b.minute,
            b.threshold_us,
        ))
    });
    let mut sketches = BTreeMap::new();
    for p in ["login", "token", "journey"] {
        for (region, s) in store
            .latency_sketches(p, since_min[0])
            .await
            .expect("sketches")
        {
            sketches.insert(
                format!("{p}|{region}"),
                (s.count(), s.quantile(0.5), s.quantile(0.99), s.max_us()),
            );
        }
    }
    let escalation = FailureClass::Escalation as i32;
    serde_json::json!({
        "latest": format!("{latest:?}"),
        "recent": format!("{recent:?}"),
        "slo_counts": store.slo_counts(&ids[..2], since[0], None).await.expect("counts"),
        "slo_counts_latency": store.slo_counts(&ids[..2], since[0], Some(200_000)).await.expect("counts"),
        "slo_counts_since": store.slo_counts_since(&ids[..3], &since, Some(150_000)).await.expect("since"),
        "minute_counts_since": store.minute_counts_since(&ids[..1], &since, None).await.expect("mcs"),
        "minute_sums": sums,
        "rollup_sums": rollup,
        "minute_rows": format!("{rows:?}"),
        "sketches": format!("{sketches:?}"),
        "escalation_last": store
            .last_failure_class_since(&["journey".to_string()], escalation, base_ms)
            .await
            .expect("last class"),
        "escalation_probes": store.probes_with_class_since(escalation, base_ms).await.expect("probes"),
        "stored_seqs": store.stored_seqs("a1", &[1, 2, 3, 999, 40]).await.expect("seqs"),
        "highest": store.highest_stored_seq("a1").await.expect("highest"),
    })
}

/// Drives both stores through the same operations, comparing as it goes.
async fn exercise(store: &Store, base_ms: i64) -> Vec<serde_json::Value> {
    let mut seen = Vec::new();
    store
        .upsert_agent(&authpulse_coordinator::store::AgentInfo {
            agent_id: "a1".into(),
            region: "eu-west".into(),
            version: "1.2.3".into(),
            labels: BTreeMap::from([("zone".to_string(), "b".to_string())]),
        })
        .await
        .expect("agent");
    // Thresholds first for the probes, a journey step backfilled later.
    let mut th = HashMap::new();
    th.insert("login".to_string(), vec![150_000, 250_000]);
    th.insert("journey/delete".to_string(), vec![0]);
    assert_eq!(
        store.set_latency_thresholds(th.clone()).await.expect("th"),
        3
    );

    let batch = results("a1", 1, 120, base_ms);
    let stats = store.insert_batch("a1", &batch).await.expect("insert");
    assert_eq!((stats.inserted, stats.duplicates), (120, 0));
    // A resend overlapping the first batch, with a seq twice in it.
    let mut resend = results("a1", 100, 60, base_ms);
    resend.push(resend[5].clone());
    let stats = store.insert_batch("a1", &resend).await.expect("resend");
    assert_eq!((stats.inserted, stats.duplicates), (39, 22));
    store.set_acked_seq("a1", 159).await.expect("ack");
    store
        .set_acked_seq("a1", 12)
        .await
        .expect("ack never moves back");
    assert_eq!(store.acked_seq("a1").await.expect("acked"), 159);
    seen.push(snapshot(store, base_ms).await);

    // A new step threshold is backfilled from the stored steps.
    th.insert("journey/login".to_string(), vec![0, 100_000]);
    assert_eq!(store.set_latency_thresholds(th).await.expect("th"), 2);
    seen.push(snapshot(store, base_ms).await);

    store
        .record_health(
            "a1",
            &authpulse_coordinator::fleet::AgentHealth {
                clock_skew_ms: -42,
                spool_depth: 7,
                spool_bytes: 4096,
                dropped_total: 1,
            },
        )
        .await
        .expect("health");
    store.set_connected("a1", false).await.expect("connected");
    let agents = store.agents().await.expect("agents");
    assert_eq!(agents.len(), 1);
    let a = &agents[0];
    assert_eq!(
        (
            a.acked_seq,
            a.stored_total,
            a.connected,
            a.health.clock_skew_ms
        ),
        (159, 159, false, -42)
    );
    seen.push(serde_json::json!([
        a.info.agent_id,
        a.info.labels,
        a.health.spool_bytes,
        a.health.dropped_total
    ]));

    // Catalog versions: unchanged text keeps its version.
    let v1 = store.catalog_version("catalog A").await.expect("v");
    let v2 = store.catalog_version("catalog A").await.expect("v");
    let v3 = store.catalog_version("catalog B").await.expect("v");
    seen.push(serde_json::json!([v1, v2, v3]));

    // Silences and statuspage id.
    store
        .put_silence(&Silence {
            slo: "login-availability".into(),
            severity: "page".into(),
            until_ms: Some(base_ms + 10_000_000),
            created_by: "ops".into(),
            reason: "maintenance".into(),
            created_ms: base_ms,
        })
        .await
        .expect("silence");
    let silences = store.silences(base_ms).await.expect("silences");
    seen.push(serde_json::json!(format!("{silences:?}")));
    let id = store.statuspage_id().await.expect("id");
    assert_eq!(store.statuspage_id().await.expect("id again"), id);
    assert_eq!(id.len(), 12);

    // Prune keeps the newer half.
    let cut = base_ms + 60 * 17_000;
    let pruned = store.prune(cut).await.expect("prune");
    seen.push(serde_json::json!(pruned));
    seen.push(snapshot(store, base_ms).await);
    seen
}

#[tokio::test]
async fn postgres_answers_exactly_like_sqlite() {
    let dir = TempDir::new("authpulse-pg-parity");
    let sqlite = Store::open(dir.path()).await.expect("sqlite");
    let pg = PgDatabase::create().await;
    let postgres = Store::connect(&Database::parse(&pg.url).expect("url"))
        .await
        .expect("postgres");
    assert_eq!(sqlite.backend(), Backend::Sqlite);
    assert_eq!(postgres.backend(), Backend::Postgres);
    // Within the minute ring and the minute retention.
    let base_ms = (minute_of(now_ms()) - 300) * 60_000;
    let a = exercise(&sqlite, base_ms).await;
    let b = exercise(&postgres, base_ms).await;
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert_eq!(x, y, "step {i} differs between SQLite and PostgreSQL");
    }
    // Sanity: the comparison compared something real.
    let first = &a[0];
    assert_ne!(first["slo_counts"], serde_json::json!([0, 0]));
    assert!(
        first["escalation_probes"]
            .as_array()
            .is_some_and(|v| v == &vec![serde_json::json!("journey")]),
        "{}",
        first["escalation_probes"]
    );
    // Reopening PostgreSQL (a restart) keeps everything and the schema.
    let again = Store::connect(&Database::parse(&pg.url).expect("url"))
        .await
        .expect("reopen");
    assert_eq!(
        snapshot(&again, base_ms).await,
        snapshot(&postgres, base_ms).await
    );
}

#[tokio::test]
async fn replicas_on_one_database_agree_and_elect_one_leader() {
    let pg = PgDatabase::create().await;
    let db = Database::parse(&pg.url).expect("url");
    // Started together: the migration runs once, under its lock.
    let (a, b) = tokio::join!(Store::connect(&db), Store::connect(&db));
    let (a, b) = (a.expect("replica a"), b.expect("replica b"));
    let base_ms = (minute_of(now_ms()) - 30) * 60_000;
    let ids = vec![
        "login".to_string(),
        "token".to_string(),
        "journey".to_string(),
    ];
    let since = vec![minute_of(base_ms), minute_of(base_ms) + 10];
    let now_minute = minute_of(now_ms());

    // Concurrent batches from two agents into the same minutes, one per replica.
    let (batch_a, batch_b) = (
        results("agent-a", 1, 200, base_ms),
        results("agent-b", 1, 200, base_ms),
    );
    let (ra, rb) = tokio::join!(
        a.insert_batch("agent-a", &batch_a),
        b.insert_batch("agent-b", &batch_b),
    );
    assert_eq!(ra.expect("a").inserted, 200);
    assert_eq!(rb.expect("b").inserted, 200);
    // Each replica's roll-ups know only its own batch until they refresh.
    assert!(a.refresh_rollup().await.expect("refresh a") > 0);
    assert!(b.refresh_rollup().await.expect("refresh b") > 0);
    let sums_a = a.rollup_sums(&ids, &since, now_minute).await.expect("a");
    let sums_b = b.rollup_sums(&ids, &since, now_minute).await.expect("b");
    let table = a.minute_sums(&ids, &since).await.expect("table");
    assert_eq!(sums_a, table, "replica a's roll-ups equal the shared table");
    assert_eq!(sums_b, table, "replica b's roll-ups equal the shared table");
    let total: u64 = table
        .iter()
        .filter(|((_, t, _), _)| *t == 0)
        .map(|(_, v)| v[0].1)
        .sum();
    assert_eq!(total, 400, "both batches counted exactly once");
    // Sketches merged from both replicas: every run counted.
    let mut runs = 0;
    for p in &ids {
        for s in a.latency_sketches(p, since[0]).await.expect("sk").values() {
            runs += s.count();
        }
    }
    assert_eq!(runs, 400);
    // A second refresh re-reads the overlap without counting twice.
    b.refresh_rollup().await.expect("refresh again");
    assert_eq!(
        b.rollup_sums(&ids, &since, now_minute).await.expect("b"),
        table
    );

    // One leader at a time; the lock moves when the holder lets go.
    let held = a.try_leader_lock().await.expect("try a").expect("a leads");
    assert!(b.try_leader_lock().await.expect("try b").is_none());
    held.release().await;
    let b_lock = b
        .try_leader_lock()
        .await
        .expect("try b")
        .expect("b leads now");
    assert!(a.try_leader_lock().await.expect("try a").is_none());
    drop(b_lock);
}
