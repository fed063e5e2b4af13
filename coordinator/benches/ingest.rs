//! Coordinator ingest throughput: a real coordinator (SQLite in a temp dir,
//! plaintext gRPC on 127.0.0.1) fed by K agent streams (K = 1, 10, 100,
//! 1,000, each its own agent id and connection) over the generated tonic
//! client. Each agent says Hello, then sends `BATCH`-result batches with
//! increasing seqs as fast as acks allow, with at most `WINDOW` batches in
//! flight and no more results than the coordinator's `max_unacked_results`
//! (as a real agent does), for a fixed time. Reports durable results/s (acked results over
//! the time to the last ack) and the p99 ack latency (batch sent -> first ack
//! covering its last seq). Reference: the raw rate of `Store::insert_batch`
//! of a fresh store with the same batch size and a single writer.
//!
//! The load generator is its own process: this binary re-executed with
//! `AUTHPULSE_BENCH_INGEST_LOAD="<grpc addr> <K> <seconds>"`, so its CPU is
//! not the coordinator's. Run that way by hand it drives any plaintext
//! coordinator (`insecure: true`) and prints one `load ...` line.
//! K = 1,000 needs 1,000 sockets in each process: the bench checks the
//! open-files limit first (`tests/bench/run` raises it to the hard limit).
//!
//! Run: `cargo bench -p authpulse-coordinator --bench ingest`;
//! `AUTHPULSE_BENCH_SMOKE=1`: K = 1 and 10 for 1 s.
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use authpulse_coordinator::store::{Store, now_ms};
use authpulse_proto::v1::agent_message::Msg as AgentMsg;
use authpulse_proto::v1::coordinator_message::Msg as CoordMsg;
use authpulse_proto::v1::{AgentMessage, ProbeResult, ResultBatch};
use common::{WAIT, ms, percentile, result};
use tokio::sync::Barrier;

mod common;

const BATCH: usize = 100;
const WINDOW: usize = 8;
const LOAD_ENV: &str = "AUTHPULSE_BENCH_INGEST_LOAD";

/// Results `first..first + BATCH` of `agent`.
fn batch_results(agent: &str, first: u64) -> Vec<ProbeResult> {
    let started = now_ms() - 1_000;
    (first..first + BATCH as u64)
        .map(|s| result(agent, s, started))
        .collect()
}

/// The bare SQLite reference: the same result rows inserted straight into
/// the store's `results` table (same schema and indexes, same pragmas as
/// the store: WAL, synchronous NORMAL, temp_store MEMORY) as multi-row INSERTs, 1,000 rows per
/// transaction, with no roll-ups, pointers or acks. What the store adds on
/// top of this is its own cost.
async fn bare_sqlite_rate(duration: Duration) -> f64 {
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
    const ROWS_PER_TX: usize = 1_000;
    const CHUNK: usize = 500;
    let dir = tempfile::tempdir().expect("tempdir");
    drop(Store::open(dir.path()).await.expect("create the schema"));
    let options = SqliteConnectOptions::new()
        .filename(dir.path().join(authpulse_coordinator::store::DB_FILE))
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .pragma("temp_store", "MEMORY");
    let mut conn = sqlx::ConnectOptions::connect(&options)
        .await
        .expect("open the database");
    let mut sql = String::from(
        "INSERT INTO results (agent_id, seq, probe_id, region, started_ms, duration_us, outcome,
            failure_class, dns_us, connect_us, tls_us, ttfb_us, total_us, steps_json, detail,
            assignment_version, received_ms) VALUES ",
    );
    for i in 0..CHUNK {
        sql.push_str(if i == 0 { "(" } else { ", (" });
        sql.push_str(&["?"; 17].join(", "));
        sql.push(')');
    }
    let agent = "bare-agent";
    let mut seq = 1u64;
    let t0 = Instant::now();
    while t0.elapsed() < duration {
        let mut tx = sqlx::Connection::begin(&mut conn).await.expect("begin");
        for _ in 0..ROWS_PER_TX / CHUNK {
            let mut results = Vec::with_capacity(CHUNK);
            for _ in 0..CHUNK / BATCH {
                results.extend(batch_results(agent, seq));
                seq += BATCH as u64;
            }
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
            for r in &results {
                let t = r.timings.unwrap_or_default();
                // The bench's results have no steps, which the store writes as `[]`.
                debug_assert!(r.steps.is_empty());
                let steps = "[]";
                q = q
                    .bind(agent)
                    .bind(r.seq as i64)
                    .bind(r.probe_id.clone())
                    .bind(r.region.clone())
                    .bind(r.started_unix_ms)
                    .bind(r.duration_us as i64)
                    .bind(r.outcome)
                    .bind(r.failure_class)
                    .bind(t.dns_us.map(|v| v as i64))
                    .bind(t.connect_us.map(|v| v as i64))
                    .bind(t.tls_us.map(|v| v as i64))
                    .bind(t.ttfb_us.map(|v| v as i64))
                    .bind(t.total_us as i64)
                    .bind(steps)
                    .bind(r.detail.clone())
                    .bind(r.assignment_version as i64)
                    .bind(now_ms());
            }
            q.execute(&mut *tx).await.expect("insert");
        }
        tx.commit().await.expect("commit");
    }
    (seq - 1) as f64 / t0.elapsed().as_secs_f64()
}

/// Raw `Store::insert_batch` rate of a fresh store (SQLite in a temp dir,
/// or the PostgreSQL database `postgres`), single writer.
async fn raw_rate(duration: Duration, postgres: Option<&str>) -> f64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = match postgres {
        None => Store::open(dir.path()).await.expect("open store"),
        Some(url) => Store::connect(
            &authpulse_coordinator::store::Database::parse(url).expect("database url"),
        )
        .await
        .expect("open the PostgreSQL store"),
    };
    let agent = "raw-agent";
    let mut seq = 1u64;
    let mut stored = 0u64;
    let t0 = Instant::now();
    while t0.elapsed() < duration {
        let results = batch_results(agent, seq);
        seq += BATCH as u64;
        let stats = store.insert_batch(agent, &results).await.expect("insert");
        stored += stats.inserted;
    }
    stored as f64 / t0.elapsed().as_secs_f64()
}

struct AgentRun {
    acked: u64,
    latencies: Vec<Duration>,
    last_ack: Instant,
}

async fn agent(
    addr: SocketAddr,
    agent_id: String,
    duration: Duration,
    ready: Arc<Barrier>,
) -> AgentRun {
    // Results in flight at most, as the coordinator's acks say (an agent
    // honours `max_unacked_results`; one batch may always be in flight).
    let (tx, mut stream, stated) = common::open_stream(addr, &agent_id, WINDOW * 2).await;
    let mut limit = (WINDOW * BATCH) as u64;
    if stated > 0 {
        limit = limit.min(stated);
    }
    ready.wait().await;
    let t0 = Instant::now();
    let deadline = t0 + duration;
    let mut next_seq = 1u64;
    // (last seq of the batch, when it was sent)
    let mut in_flight: VecDeque<(u64, Instant)> = VecDeque::new();
    let mut run = AgentRun {
        acked: 0,
        latencies: Vec::new(),
        last_ack: t0,
    };
    loop {
        while in_flight.len() < WINDOW
            && (in_flight.is_empty() || (in_flight.len() + 1) as u64 * BATCH as u64 <= limit)
            && Instant::now() < deadline
        {
            let results = batch_results(&agent_id, next_seq);
            next_seq += BATCH as u64;
            let msg = AgentMessage {
                msg: Some(AgentMsg::Results(ResultBatch {
                    results,
                    low_watermark: 0,
                })),
            };
            in_flight.push_back((next_seq - 1, Instant::now()));
            tx.send(msg).await.expect("request stream open");
        }
        if in_flight.is_empty() {
            break;
        }
        let msg = tokio::time::timeout(WAIT, stream.message())
            .await
            .expect("ack in time")
            .expect("stream ok")
            .expect("stream open");
        if let Some(CoordMsg::Ack(ack)) = msg.msg {
            if ack.max_unacked_results > 0 {
                limit = ack.max_unacked_results.min((WINDOW * BATCH) as u64);
            }
            let now = Instant::now();
            while let Some(&(last, sent)) = in_flight.front() {
                if last > ack.acked_seq {
                    break;
                }
                in_flight.pop_front();
                run.latencies.push(now - sent);
                run.acked += BATCH as u64;
                run.last_ack = now;
            }
        }
    }
    drop(tx);
    run
}

/// What the load generator measured.
struct Row {
    rate: f64,
    p50: Duration,
    p99: Duration,
    batches: usize,
}

/// Load generator mode: K agents against `addr` for `duration`; prints
/// `load rate=<results/s> p50_us=<n> p99_us=<n> batches=<n>`.
async fn load(addr: SocketAddr, k: usize, duration: Duration) {
    // Every agent plus this task: all handshakes done before the clock starts.
    let ready = Arc::new(Barrier::new(k + 1));
    let tasks: Vec<_> = (0..k)
        .map(|i| {
            tokio::spawn(agent(
                addr,
                format!("bench-agent-{i:04}"),
                duration,
                ready.clone(),
            ))
        })
        .collect();
    ready.wait().await;
    let t0 = Instant::now();
    let mut acked = 0u64;
    let mut last = t0;
    let mut latencies = Vec::new();
    for t in tasks {
        let run = t.await.expect("agent task");
        acked += run.acked;
        last = last.max(run.last_ack);
        latencies.extend(run.latencies);
    }
    latencies.sort_unstable();
    let pct = |p: f64| percentile(&latencies, p);
    println!(
        "load rate={} p50_us={} p99_us={} batches={}",
        acked as f64 / (last - t0).as_secs_f64().max(1e-9),
        pct(0.50).as_micros(),
        pct(0.99).as_micros(),
        latencies.len()
    );
}

fn parse_load(line: &str) -> Option<Row> {
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse::<f64>().ok())
    };
    Some(Row {
        rate: field("rate")?,
        p50: Duration::from_micros(field("p50_us")? as u64),
        p99: Duration::from_micros(field("p99_us")? as u64),
        batches: field("batches")? as usize,
    })
}

async fn ingest(k: usize, duration: Duration, postgres: Option<String>) -> Row {
    let dir = tempfile::tempdir().expect("tempdir");
    let running = common::start_coordinator(dir.path(), postgres).await;
    let (mut child, mut lines) = common::spawn_load(
        LOAD_ENV,
        format!("{} {k} {}", running.grpc_addr(), duration.as_secs_f64()),
    );
    let mut row = None;
    while let Some(line) = lines.next_line().await.expect("read load generator") {
        row = row.or_else(|| parse_load(&line));
    }
    let status = child.wait().await.expect("load generator exits");
    assert!(
        status.success(),
        "load generator for K={k} failed: {status}"
    );
    running.shutdown().await;
    row.unwrap_or_else(|| panic!("load generator for K={k} printed no `load` line"))
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if let Some((addr, k, duration)) = common::load_spec(LOAD_ENV) {
        rt.block_on(load(addr, k, duration));
        return;
    }
    rt.block_on(bench());
}

async fn bench() {
    let smoke = std::env::var("AUTHPULSE_BENCH_SMOKE").is_ok_and(|v| v == "1");
    let (ks, duration): (&[usize], Duration) = if smoke {
        (&[1, 10], Duration::from_secs(1))
    } else {
        (&[1, 10, 100, 1_000], Duration::from_secs(10))
    };
    let max_k = ks.iter().copied().max().unwrap_or(1) as u64;
    // Each side holds one socket per agent, plus the database and spare.
    common::check_open_files(max_k);
    println!(
        "ingest bench: batches of {BATCH} results, window {WINDOW} batches/stream, {duration:?} per K{}",
        if smoke { " (smoke)" } else { "" }
    );
    let bare = bare_sqlite_rate(duration).await;
    println!(
        "ingest bare SQLite insert: {bare:.0} results/s (reference; the same rows into `results` only, 1000 per transaction)"
    );
    let raw = raw_rate(duration, None).await;
    println!(
        "ingest raw store insert: {raw:.0} results/s ({:.2}x bare SQLite insert; single writer, batch {BATCH})",
        raw / bare
    );
    for &k in ks {
        let row = ingest(k, duration, None).await;
        println!(
            "ingest K={k}: {:.0} results/s ({:.2}x bare SQLite insert, {:.2}x raw store insert)",
            row.rate,
            row.rate / bare,
            row.rate / raw
        );
        println!(
            "ingest K={k} ack p99: {:.1} ms (p50 {:.1} ms, {} batches)",
            ms(row.p99),
            ms(row.p50),
            row.batches
        );
    }

    // The same on PostgreSQL (issue 7: several coordinators share one):
    // tests/run's server when AUTHPULSE_TEST_POSTGRES_URL is set, else a
    // private one from Debian's package; a fresh database per measurement.
    let pg_ks: &[usize] = if smoke { &[10] } else { &[10, 100] };
    let db = authpulse_tests::postgres::PgDatabase::create().await;
    let pg_raw = raw_rate(duration, Some(&db.url)).await;
    println!(
        "ingest postgres raw store insert: {pg_raw:.0} results/s ({:.2}x SQLite raw store insert)",
        pg_raw / raw
    );
    for &k in pg_ks {
        let db = authpulse_tests::postgres::PgDatabase::create().await;
        let row = ingest(k, duration, Some(db.url.clone())).await;
        println!(
            "ingest postgres K={k}: {:.0} results/s ({:.2}x PostgreSQL raw insert, {:.2}x SQLite raw insert)",
            row.rate,
            row.rate / pg_raw,
            row.rate / raw
        );
        println!(
            "ingest postgres K={k} ack p99: {:.1} ms (p50 {:.1} ms, {} batches)",
            ms(row.p99),
            ms(row.p50),
            row.batches
        );
    }
}
