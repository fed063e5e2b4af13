//! SLO evaluation cost from the per-minute aggregates: a temp store filled
//! with 28 days of `minute_counts` rows for `PROBES` probes (availability and
//! one latency threshold each) and their `hour_counts`, reopened so the
//! store builds its in-memory roll-ups (timed: the start with ~4 M minute
//! rows, target 1 s), then 100, 1,000 and 10,000 SLOs (1-3 probes, 28d window, 7 burn
//! windows) evaluated with `slo::evaluate`. Reference: the
//! old raw-results query (`Store::slo_counts_since`) for 100 SLOs over a
//! smaller raw sample. Run: `cargo bench -p authpulse-coordinator --bench slo`;
//! `AUTHPULSE_BENCH_SMOKE=1` fills one day instead of 28 and evaluates 100
//! and 1,000 SLOs.
use std::time::{Duration, Instant};

use authpulse_coordinator::slo;
use authpulse_coordinator::store::{self, Store};
use authpulse_proto::catalog::{Catalog, Sli, SloAlerting, SloDef, Window};

const PROBES: usize = 50;
const RAW_PROBES: usize = 10;
const THRESHOLD_US: u64 = 300_000;

/// Peak resident set so far, in KiB (`VmHWM` of /proc/self/status).
fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn slos(n: usize, probes: usize) -> Vec<SloDef> {
    (0..n)
        .map(|i| {
            let k = 1 + i % 3;
            SloDef {
                id: format!("slo-{i}"),
                description: None,
                probes: (0..k)
                    .map(|j| format!("p{}", (i * 7 + j * 13) % probes))
                    .collect(),
                objective: 99.9,
                window: Window::Rolling(Duration::from_secs(28 * 86_400)),
                sli: if i % 2 == 0 {
                    Sli::Availability
                } else {
                    Sli::Latency {
                        threshold: Duration::from_micros(THRESHOLD_US),
                    }
                },
                budgeting: Default::default(),
                coverage: Default::default(),
                quorum: None,
                alerting: SloAlerting::default(),
                owner: None,
                runbook_url: None,
                labels: Default::default(),
                source: None,
            }
        })
        .collect()
}

fn catalog(slos: Vec<SloDef>) -> Catalog {
    Catalog {
        slos,
        ..Default::default()
    }
}

async fn sql(pool: &sqlx::SqlitePool, q: &'static str, a: i64, b: i64) {
    sqlx::query(q)
        .bind(a)
        .bind(b)
        .execute(pool)
        .await
        .expect("fill");
}

fn row(name: &str, value: String, unit: &str, comparison: String) {
    println!("{name}: {value} {unit} ({comparison})");
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let smoke = std::env::var("AUTHPULSE_BENCH_SMOKE").is_ok_and(|v| v == "1");
    let (days, sizes): (i64, &[usize]) = if smoke {
        (1, &[100, 1_000])
    } else {
        (28, &[100, 1_000, 10_000])
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).await.expect("open");
    let now = store::now_ms();
    let now_min = store::minute_of(now);
    let minutes = days * 1440;
    let pool = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        dir.path().join(store::DB_FILE).display()
    ))
    .await
    .expect("pool");
    let t = Instant::now();
    // One row per probe, minute and threshold: 60 results a minute, a few bad.
    sql(
        &pool,
        "WITH RECURSIVE m(x) AS (SELECT ?1 - ?2 UNION ALL SELECT x + 1 FROM m WHERE x < ?1),
              p(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM p WHERE i < 49),
              th(t) AS (VALUES (0), (300000))
         INSERT INTO minute_counts (probe_id, region, minute, threshold_us, good, total)
         SELECT 'p' || i, 'eu-west', x, t, 60 - ((x + i + t) % 3), 60 FROM p, m, th",
        now_min,
        minutes,
    )
    .await;
    // Their hourly sums, as ingest keeps them in `hour_counts` (the store
    // opens from those and the minute ring).
    sqlx::query(
        "INSERT INTO hour_counts (probe_id, region, hour, threshold_us, good, total)
         SELECT probe_id, region, minute / 60 AS h, threshold_us, SUM(good), SUM(total)
         FROM minute_counts GROUP BY probe_id, region, h, threshold_us",
    )
    .execute(&pool)
    .await
    .expect("hours");
    let rows = PROBES as i64 * (minutes + 1) * 2;
    println!(
        "filled {rows} minute rows ({PROBES} probes x {days}d x 2 thresholds) in {:.1?}",
        t.elapsed()
    );

    // Reference: SQLite reading every minute row once (what any roll-up at
    // open must at least do), on the same file.
    let t = Instant::now();
    let (scanned,): (i64,) = sqlx::query_as("SELECT SUM(total) FROM minute_counts")
        .fetch_one(&pool)
        .await
        .expect("scan");
    let scan = t.elapsed();
    assert!(scanned > 0);
    // Reopen: the store rolls the minute rows up in memory at open.
    store.close().await;
    let hwm_before_open = vm_hwm_kib();
    let t = Instant::now();
    let store = Store::open(dir.path()).await.expect("reopen");
    let open = t.elapsed();
    println!(
        "reopened (roll-ups built) in {open:.1?}; peak RSS grew {} KiB ({} series)",
        vm_hwm_kib().saturating_sub(hwm_before_open),
        PROBES * 2
    );
    row(
        &format!("slo store open with {rows} minute rows"),
        format!("{:.0}", ms(open)),
        "ms",
        format!(
            "{:.2}x a bare SQLite scan of the table ({:.0} ms); {:.2}x of target 1000 ms",
            open.as_secs_f64() / scan.as_secs_f64().max(1e-9),
            ms(scan),
            ms(open) / 1000.0
        ),
    );
    // The ring's older hours are read in the background after open; the
    // evaluations below run with the ring complete.
    while !store.rollup_ring_complete().await {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let filled = t.elapsed();
    row(
        "slo store minute ring complete after open",
        format!("{:.0}", ms(filled)),
        "ms",
        format!(
            "background, answers exact meanwhile; {:.2}x the open",
            filled.as_secs_f64() / open.as_secs_f64().max(1e-9)
        ),
    );
    let mut per_100 = Duration::ZERO;
    for &n in sizes {
        let cat = catalog(slos(n, PROBES));
        // Warm up (page cache, statement cache), then take the best of 5.
        let _ = slo::evaluate(&store, &cat, now).await.expect("evaluate");
        let before = vm_hwm_kib();
        let mut best = Duration::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            let out = slo::evaluate(&store, &cat, now).await.expect("evaluate");
            best = best.min(t.elapsed());
            assert_eq!(out.len(), n);
            assert!(out.iter().all(|s| s.total > 0));
        }
        let delta = vm_hwm_kib().saturating_sub(before);
        if n == 100 {
            per_100 = best;
        }
        let scaling = if n == 100 {
            "reference for the larger catalogs".to_string()
        } else {
            format!(
                "{:.2}x linear from 100 SLOs; {:.0} SLOs/s; peak RSS +{:.2} KiB/SLO",
                best.as_secs_f64() / (per_100.as_secs_f64() * n as f64 / 100.0),
                n as f64 / best.as_secs_f64(),
                delta as f64 / n as f64
            )
        };
        row(
            &format!("slo evaluate {n} SLOs"),
            format!("{:.2}", ms(best)),
            "ms",
            scaling,
        );
    }

    // Reference: the raw-results query, 100 SLOs over RAW_PROBES probes with
    // one raw result per probe and minute for 28 days.
    let raw_dir = tempfile::tempdir().expect("tempdir");
    let raw = Store::open(raw_dir.path()).await.expect("open");
    let raw_pool = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        raw_dir.path().join(store::DB_FILE).display()
    ))
    .await
    .expect("pool");
    let t = Instant::now();
    sql(
        &raw_pool,
        "WITH RECURSIVE m(x) AS (SELECT ?1 - ?2 UNION ALL SELECT x + 1 FROM m WHERE x < ?1),
              p(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM p WHERE i < 9)
         INSERT INTO results (agent_id, seq, probe_id, region, started_ms, duration_us, outcome,
            failure_class, total_us, steps_json, detail, assignment_version, received_ms)
         SELECT 'a' || i, x, 'p' || i, 'eu-west', x * 60000, 1000,
            CASE WHEN (x + i) % 50 = 0 THEN 2 ELSE 1 END, 0, 100000 + (x % 400000), '[]', '', 1, 0
         FROM p, m",
        now_min,
        minutes,
    )
    .await;
    let raw_rows = RAW_PROBES as i64 * (minutes + 1);
    println!(
        "raw reference: {raw_rows} raw results ({RAW_PROBES} probes x {days}d x 1/min) filled in {:.1?}",
        t.elapsed()
    );
    let defs = slos(100, RAW_PROBES);
    let mut best = Duration::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        for d in &defs {
            let Window::Rolling(w) = d.window else {
                continue;
            };
            let since: Vec<i64> = std::iter::once(w)
                .chain(slo::BURN_WINDOWS.iter().map(|(_, w)| *w))
                .map(|w| now - w.as_millis() as i64)
                .collect();
            let th = match d.sli {
                Sli::Latency { threshold } => Some(threshold.as_micros() as u64),
                Sli::Availability => None,
            };
            let c = raw
                .slo_counts_since(&d.probes, &since, th)
                .await
                .expect("raw counts");
            assert!(c[0].1 > 0);
        }
        best = best.min(t.elapsed());
    }
    let minute_100 = {
        let cat = catalog(defs.clone());
        let mut b = Duration::MAX;
        for _ in 0..3 {
            let t = Instant::now();
            let _ = slo::evaluate(&store, &cat, now).await.expect("evaluate");
            b = b.min(t.elapsed());
        }
        b
    };
    row(
        "slo raw-results query 100 SLOs",
        format!("{:.2}", ms(best)),
        "ms",
        format!("reference; {RAW_PROBES} probes of raw results"),
    );
    row(
        "slo evaluate same 100 SLOs from minute rows",
        format!("{:.2}", ms(minute_100)),
        "ms",
        format!(
            "{:.4}x raw-results query",
            minute_100.as_secs_f64() / best.as_secs_f64()
        ),
    );
    store.close().await;
    raw.close().await;
}
