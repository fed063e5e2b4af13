//! Coordinator under a whole fleet: N = 2,000 simulated agents, each on its
//! own gRPC connection (as real agents are: one TCP connection and one
//! `Connect` stream per agent id), each producing one result per second, for
//! 60 s after the ramp-up. Reports the coordinator's CPU (cores), peak and
//! current RSS, the results acked within the window per second against the
//! offered rate, and the ack latency p50/p99 (a result sent -> the first ack
//! covering it), against the targets: CPU ≤ 1 core, RSS ≤ 300 MB, ack p99
//! ≤ 1 s. At the end it checks that every sent result was acked, none was
//! refused, and the store holds exactly the sent count; the bench fails
//! otherwise.
//!
//! Each simulated agent behaves like `agent/src/uplink.rs` on the wire: Hello
//! (new agent id, so its seqs start at 1), the ack and assignment, then
//! results with increasing seqs; whatever is ready when it may send goes out
//! as one batch of at most `BATCH_MAX` results, with at most `WINDOW`
//! batches unacknowledged (the rest waits and is batched together), each
//! batch's low watermark being the oldest unacked seq; a heartbeat every
//! 10 s. Agent `i` of N produces its results at `t0 + i/N s + k s`, so
//! arrivals are spread evenly over each second instead of all agents firing
//! in phase (a real agent's 100 ms flush tick adds a fixed delay per agent,
//! which changes nothing for the coordinator). At one result per second a
//! batch is one result unless the coordinator falls behind.
//!
//! The load generator is its own process: this binary re-executed with
//! `AUTHPULSE_BENCH_FLEET_LOAD="<grpc addr> <N> <seconds>"`, so the CPU and
//! memory measured from /proc/self are the coordinator's (plus this bench's
//! line reading). It connects the agents `CONNECTS_AT_ONCE` at a time, prints
//! `ready` when all are connected (the window starts), `window` when it
//! ends, then, once the last acks are in, one `load ...` line. Run that way
//! by hand it drives any plaintext coordinator (`insecure: true`). N = 2,000
//! needs 2,000 sockets in each process: the bench checks the open-files limit
//! first (`tests/bench/run` raises it to the hard limit).
//!
//! Run: `cargo bench -p authpulse-coordinator --bench fleet`;
//! `AUTHPULSE_BENCH_SMOKE=1`: N = 200 for 5 s.
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use authpulse_coordinator::store::{Store, now_ms};
use authpulse_proto::v1::agent_message::Msg as AgentMsg;
use authpulse_proto::v1::coordinator_message::Msg as CoordMsg;
use authpulse_proto::v1::{AgentMessage, Heartbeat, ResultBatch};
use common::{PROBES, WAIT, ms, own_cpu_secs, own_status_kib, percentile, result};
use tokio::sync::{Barrier, Semaphore, watch};
use tokio::time::Instant;
use tokio_stream::StreamExt;

mod common;

const LOAD_ENV: &str = "AUTHPULSE_BENCH_FLEET_LOAD";
/// Each agent's result rate: one per second.
const PERIOD: Duration = Duration::from_secs(1);
/// The real agent's largest batch (agent/src/uplink.rs `BATCH_MAX`).
const BATCH_MAX: u64 = 500;
/// Batches sent and not yet acked per stream, at most. The real agent
/// bounds results in flight instead; at one result per second a few
/// batches in flight only happen when the coordinator is behind, and then
/// what waits goes out as one bigger batch, as the agent's does.
const WINDOW: usize = 4;
/// The real agent's heartbeat interval; the coordinator records agent
/// health on each, so they are part of the load.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(10);
/// Connection attempts at once during the ramp-up: agents reconnecting after
/// a coordinator restart are spread by their backoff jitter, and 2,000
/// simultaneous SYNs would only measure the listen backlog.
const CONNECTS_AT_ONCE: usize = 64;
/// Longest ramp-up before the bench gives up.
const RAMP_LIMIT: Duration = Duration::from_secs(300);
const TARGET_CORES: f64 = 1.0;
const TARGET_RSS_MB: f64 = 300.0;
const TARGET_ACK_P99: Duration = Duration::from_secs(1);

/// What one simulated agent saw.
#[derive(Default)]
struct AgentRun {
    sent: u64,
    acked: u64,
    /// Results whose first covering ack came before the window's end.
    acked_in_window: u64,
    refused: u64,
    batches: u64,
    /// Most results produced but not yet sendable (window full) at once.
    max_backlog: u64,
    /// Per result: sent -> first ack covering it, in µs.
    latencies_us: Vec<u32>,
    /// Per result: produced -> first ack covering it, in µs; more than the
    /// above only when the window was full and the result had to wait.
    from_produced_us: Vec<u32>,
}

/// One agent: connects (holding a ramp-up permit), waits for the common
/// start, then produces one result per `PERIOD` at `phase` into it until
/// `duration` is over, and waits for the acks of everything it sent.
async fn agent(
    addr: SocketAddr,
    id: String,
    phase: f64,
    duration: Duration,
    connects: Arc<Semaphore>,
    ready: Arc<Barrier>,
    mut start: watch::Receiver<Option<Instant>>,
) -> AgentRun {
    let (tx, mut stream, stated) = {
        let _permit = connects.acquire().await.expect("ramp-up semaphore open");
        common::open_stream(addr, &id, WINDOW + 4).await
    };
    // The coordinator's `max_unacked_results`, honoured as a real agent does.
    let mut limit = if stated > 0 { stated } else { u64::MAX };
    ready.wait().await;
    let t0 = (*start
        .wait_for(Option::is_some)
        .await
        .expect("start time sent"))
    .expect("start time set");
    let end = t0 + duration;
    let first_result = t0 + PERIOD.mul_f64(phase);
    let mut next_result = first_result;
    let mut next_heartbeat = t0 + HEARTBEAT_EVERY.mul_f64(phase);
    let mut produced = 0u64;
    let mut sent_upto = 0u64;
    let mut acked = 0u64;
    // (seq, when it was sent), oldest first.
    let mut in_flight: VecDeque<(u64, Instant)> = VecDeque::new();
    // The last seq of each unacked batch.
    let mut batches: VecDeque<u64> = VecDeque::new();
    let mut run = AgentRun::default();
    loop {
        // What is ready goes out at once, within the window.
        while sent_upto < produced && batches.len() < WINDOW && sent_upto - acked < limit {
            let first = sent_upto + 1;
            let last = produced
                .min(sent_upto + BATCH_MAX)
                .min(acked.saturating_add(limit));
            // Each run took up to ~350 ms (`result`'s durations) and started
            // a second ago; the coordinator checks starts against its clock.
            let started = now_ms() - 1_000;
            let results = (first..=last).map(|s| result(&id, s, started)).collect();
            let msg = AgentMessage {
                msg: Some(AgentMsg::Results(ResultBatch {
                    results,
                    // The agent holds nothing below its oldest unacked seq.
                    low_watermark: acked + 1,
                })),
            };
            tx.send(msg).await.expect("request stream open");
            let now = Instant::now();
            in_flight.extend((first..=last).map(|s| (s, now)));
            batches.push_back(last);
            run.sent += last - first + 1;
            run.batches += 1;
            sent_upto = last;
        }
        run.max_backlog = run.max_backlog.max(produced - sent_upto);
        let producing = next_result < end;
        if !producing && sent_upto == produced && acked == sent_upto {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(next_result), if producing => {
                produced += 1;
                next_result += PERIOD;
            }
            _ = tokio::time::sleep_until(next_heartbeat), if next_heartbeat < end => {
                let hb = AgentMessage {
                    msg: Some(AgentMsg::Heartbeat(Heartbeat {
                        sent_unix_ms: now_ms(),
                        unacked: produced - acked,
                        ..Default::default()
                    })),
                };
                tx.send(hb).await.expect("request stream open");
                next_heartbeat += HEARTBEAT_EVERY;
            }
            msg = tokio::time::timeout(WAIT, stream.next()) => {
                let msg = msg
                    .unwrap_or_else(|_| panic!("{id}: no ack within {WAIT:?} (acked {acked}, sent {sent_upto})"))
                    .unwrap_or_else(|| panic!("{id}: the coordinator closed the stream"))
                    .unwrap_or_else(|e| panic!("{id}: stream failed: {e}"));
                match msg.msg {
                    Some(CoordMsg::Ack(ack)) => {
                        run.refused += ack.refused.len() as u64;
                        if ack.max_unacked_results > 0 {
                            limit = ack.max_unacked_results;
                        }
                        assert!(
                            ack.acked_seq <= sent_upto,
                            "{id}: acked seq {} was never sent (sent up to {sent_upto})",
                            ack.acked_seq
                        );
                        if ack.acked_seq > acked {
                            acked = ack.acked_seq;
                            let now = Instant::now();
                            while let Some(&(seq, sent)) = in_flight.front() {
                                if seq > acked {
                                    break;
                                }
                                in_flight.pop_front();
                                let us = (now - sent).as_micros();
                                run.latencies_us.push(u32::try_from(us).unwrap_or(u32::MAX));
                                // Result `seq` was produced on its slot.
                                let produced_at = first_result + PERIOD.mul_f64((seq - 1) as f64);
                                let us = (now - produced_at).as_micros();
                                run.from_produced_us.push(u32::try_from(us).unwrap_or(u32::MAX));
                                if now <= end {
                                    run.acked_in_window += 1;
                                }
                            }
                            while batches.front().is_some_and(|&last| last <= acked) {
                                batches.pop_front();
                            }
                        }
                    }
                    Some(CoordMsg::Reject(r)) => panic!("{id}: rejected: {}", r.reason),
                    _ => {}
                }
            }
        }
    }
    run.acked = acked;
    drop(tx);
    run
}

/// Load generator mode: N agents against `addr` for `duration`; prints
/// `ready ...`, `window`, then `load sent=<n> acked=<n> ...` (see `Load`).
async fn load(addr: SocketAddr, n: usize, duration: Duration) {
    let connects = Arc::new(Semaphore::new(CONNECTS_AT_ONCE));
    // Every agent plus this task: all connected before the clock starts.
    let ready = Arc::new(Barrier::new(n + 1));
    let (start_tx, start_rx) = watch::channel(None);
    let ramp_start = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            tokio::spawn(agent(
                addr,
                format!("fleet-agent-{i:05}"),
                i as f64 / n as f64,
                duration,
                connects.clone(),
                ready.clone(),
                start_rx.clone(),
            ))
        })
        .collect();
    // An agent whose connection failed panicked and never reaches the
    // barrier: fail instead of waiting forever.
    tokio::time::timeout(RAMP_LIMIT, ready.wait())
        .await
        .unwrap_or_else(|_| panic!("not all {n} agents connected within {RAMP_LIMIT:?}"));
    let ramp = ramp_start.elapsed();
    let t0 = Instant::now();
    let cpu0 = own_cpu_secs();
    start_tx.send(Some(t0)).expect("agents wait for the start");
    println!("ready ramp_ms={}", ramp.as_millis());
    tokio::time::sleep_until(t0 + duration).await;
    let gen_cores = (own_cpu_secs() - cpu0) / t0.elapsed().as_secs_f64();
    println!("window");
    let mut total = AgentRun::default();
    for t in tasks {
        let run = t.await.expect("agent task");
        total.sent += run.sent;
        total.acked += run.acked;
        total.acked_in_window += run.acked_in_window;
        total.refused += run.refused;
        total.batches += run.batches;
        total.max_backlog = total.max_backlog.max(run.max_backlog);
        total.latencies_us.extend(run.latencies_us);
        total.from_produced_us.extend(run.from_produced_us);
    }
    let sorted = |us: &[u32]| {
        let mut d: Vec<Duration> = us
            .iter()
            .map(|&us| Duration::from_micros(u64::from(us)))
            .collect();
        d.sort_unstable();
        d
    };
    let latencies = sorted(&total.latencies_us);
    let from_produced = sorted(&total.from_produced_us);
    println!(
        "load sent={} acked={} acked_in_window={} refused={} batches={} max_backlog={} \
         p50_us={} p99_us={} max_us={} produced_p99_us={} ramp_ms={} gen_cores={gen_cores:.3}",
        total.sent,
        total.acked,
        total.acked_in_window,
        total.refused,
        total.batches,
        total.max_backlog,
        percentile(&latencies, 0.50).as_micros(),
        percentile(&latencies, 0.99).as_micros(),
        latencies.last().copied().unwrap_or_default().as_micros(),
        percentile(&from_produced, 0.99).as_micros(),
        ramp.as_millis(),
    );
}

/// The load generator's `load` line.
struct Load {
    sent: u64,
    acked: u64,
    acked_in_window: u64,
    refused: u64,
    batches: u64,
    max_backlog: u64,
    p50: Duration,
    p99: Duration,
    max: Duration,
    produced_p99: Duration,
    ramp: Duration,
    gen_cores: f64,
}

fn parse_load(line: &str) -> Option<Load> {
    let rest = line.strip_prefix("load ")?;
    let field = |name: &str| {
        rest.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse::<f64>().ok())
    };
    let us = |name: &str| field(name).map(|v| Duration::from_micros(v as u64));
    Some(Load {
        sent: field("sent")? as u64,
        acked: field("acked")? as u64,
        acked_in_window: field("acked_in_window")? as u64,
        refused: field("refused")? as u64,
        batches: field("batches")? as u64,
        max_backlog: field("max_backlog")? as u64,
        p50: us("p50_us")?,
        p99: us("p99_us")?,
        max: us("max_us")?,
        produced_p99: us("produced_p99_us")?,
        ramp: Duration::from_millis(field("ramp_ms")? as u64),
        gen_cores: field("gen_cores")?,
    })
}

/// What the coordinator side measured, with the load generator's line.
struct Measured {
    load: Load,
    /// Coordinator CPU over the window, in cores.
    cores: f64,
    window: Duration,
    /// VmHWM at the end (MB), VmRSS at the window's end (MB).
    peak_rss_mb: f64,
    rss_mb: f64,
    stored: u64,
}

fn kib_to_mb(kib: f64) -> f64 {
    kib * 1024.0 / 1e6
}

async fn fleet(n: usize, duration: Duration) -> Measured {
    let dir = tempfile::tempdir().expect("tempdir");
    let running = common::start_coordinator(dir.path(), None).await;
    let (mut child, mut lines) = common::spawn_load(
        LOAD_ENV,
        format!("{} {n} {}", running.grpc_addr(), duration.as_secs_f64()),
    );
    // The window is timed here, by when the lines arrive, so CPU time and
    // wall time come from the same clock reads.
    let mut window_start = None;
    let mut window = None;
    let mut load = None;
    while let Some(line) = lines.next_line().await.expect("read load generator") {
        if line.starts_with("ready") {
            window_start = Some((Instant::now(), own_cpu_secs()));
        } else if line == "window" {
            let (w0, cpu0) = window_start.expect("`ready` before `window`");
            let wall = w0.elapsed();
            let cpu = own_cpu_secs() - cpu0;
            window = Some((wall, cpu, own_status_kib("VmRSS")));
        } else if let Some(l) = parse_load(&line) {
            load = Some(l);
        }
    }
    let status = child.wait().await.expect("load generator exits");
    assert!(
        status.success(),
        "load generator for N={n} failed: {status}"
    );
    let load = load.unwrap_or_else(|| panic!("load generator for N={n} printed no `load` line"));
    let (wall, cpu, rss_kib) = window.expect("load generator printed `window`");
    // Every result's probe is one of PROBES, none is older than the window:
    // the count over them since the epoch is every stored result.
    let probes = PROBES.map(String::from);
    let (_, stored) = running
        .store()
        .slo_counts(&probes, 0, None)
        .await
        .expect("count stored results");
    let peak_rss_mb = kib_to_mb(own_status_kib("VmHWM"));
    running.shutdown().await;
    Measured {
        load,
        cores: cpu / wall.as_secs_f64(),
        window: wall,
        peak_rss_mb,
        rss_mb: kib_to_mb(rss_kib),
        stored,
    }
}

/// Reference: one-result batches/s that `Store::insert_batch` of a fresh
/// SQLite store takes from a single writer, each its own transaction, as
/// ingest commits them now. Offered load above it can only queue.
async fn raw_single_result_rate(duration: Duration) -> f64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).await.expect("open store");
    let agent = "raw-agent";
    let mut seq = 1u64;
    let t0 = Instant::now();
    while t0.elapsed() < duration {
        let batch = [result(agent, seq, now_ms() - 1_000)];
        store.insert_batch(agent, &batch).await.expect("insert");
        seq += 1;
    }
    (seq - 1) as f64 / t0.elapsed().as_secs_f64()
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if let Some((addr, n, duration)) = common::load_spec(LOAD_ENV) {
        rt.block_on(load(addr, n, duration));
        return;
    }
    rt.block_on(bench());
}

async fn bench() {
    let smoke = std::env::var("AUTHPULSE_BENCH_SMOKE").is_ok_and(|v| v == "1");
    let (n, duration) = if smoke {
        (200, Duration::from_secs(5))
    } else {
        (2_000, Duration::from_secs(60))
    };
    common::check_open_files(n as u64);
    println!(
        "fleet bench: agents {n}, one connection each, 1 result/s each spread over the second, \
         batches of up to {BATCH_MAX}, window {WINDOW} batches, heartbeat every {HEARTBEAT_EVERY:?}, \
         {duration:?} after the ramp-up{}",
        if smoke { ", smoke" } else { "" }
    );
    let m = fleet(n, duration).await;
    let l = &m.load;
    println!(
        "fleet ramp-up: {n} streams connected in {:.1} s; window {:.1} s; {} batches, largest backlog {} results; load generator {:.2} cores",
        l.ramp.as_secs_f64(),
        m.window.as_secs_f64(),
        l.batches,
        l.max_backlog,
        l.gen_cores
    );
    let name = format!("fleet {n} streams");
    println!(
        "{name} coordinator CPU: {:.2} cores ({:.2}x of target {TARGET_CORES} core)",
        m.cores,
        m.cores / TARGET_CORES
    );
    println!(
        "{name} coordinator RSS: {:.1} MB ({:.2}x of target {TARGET_RSS_MB} MB; peak VmHWM, VmRSS {:.1} MB at the window's end)",
        m.peak_rss_mb,
        m.peak_rss_mb / TARGET_RSS_MB,
        m.rss_mb
    );
    println!(
        "{name} ack p99: {:.1} ms ({:.2}x of target {:.0} ms; p50 {:.1} ms, max {:.1} ms; \
         p99 from production {:.1} ms)",
        ms(l.p99),
        l.p99.as_secs_f64() / TARGET_ACK_P99.as_secs_f64(),
        ms(TARGET_ACK_P99),
        ms(l.p50),
        ms(l.max),
        ms(l.produced_p99)
    );
    let offered = n as f64 / PERIOD.as_secs_f64();
    let rate = l.acked_in_window as f64 / duration.as_secs_f64();
    println!(
        "{name} results acked: {rate:.0} results/s ({:.2}x offered {offered:.0}/s; acked within the window)",
        rate / offered
    );
    // After the fleet, so its store is not in the coordinator's peak RSS.
    let raw = raw_single_result_rate(if smoke {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(5)
    })
    .await;
    println!(
        "fleet raw store insert, 1 result per batch: {raw:.0} batches/s (reference; single writer, \
         {:.2}x the {offered:.0} batches/s the fleet offers)",
        raw / offered
    );
    println!(
        "fleet check: sent {}, acked {}, refused {}, stored {}",
        l.sent, l.acked, l.refused, m.stored
    );
    assert!(
        l.acked == l.sent && l.refused == 0 && m.stored == l.sent && l.sent > 0,
        "fleet check failed: every sent result must be acked and stored exactly once \
         (sent {}, acked {}, refused {}, stored {})",
        l.sent,
        l.acked,
        l.refused,
        m.stored
    );
}
