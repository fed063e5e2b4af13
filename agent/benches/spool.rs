//! Spool throughput: durable appends (one fdatasync per batch) for batch sizes
//! 1, 10 and 100, against a reference measured in the same run on the same
//! disk — raw `write_all` of the same bytes plus `sync_data` per batch, the
//! floor any durable log pays — then read and read+ack throughput and the
//! recovery scan on open.
//!
//! `cargo bench -p authpulse-agent --bench spool` runs it (~15 s); with
//! `AUTHPULSE_BENCH_SMOKE=1`, or under `cargo test` (no `--bench`
//! argument), it runs a few iterations only. The
//! files go to `AUTHPULSE_SPOOL_BENCH_DIR` or else cargo's target tmpdir —
//! not /tmp, which may be a tmpfs where fsync costs nothing.
mod common;

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use authpulse_agent::spool::{Spool, SpoolConfig};
use authpulse_proto::v1::ProbeResult;
use prost::Message;

/// The typical spool record, 50 probes, durations varying by a millisecond.
fn result(i: u64) -> ProbeResult {
    let mut r = authpulse_tests::results::spool_record(i % 50);
    r.started_unix_ms = 1_700_000_000_000 + i as i64;
    r.duration_us = 52_000 + i % 1000;
    r
}

/// The bytes the spool writes for a batch (record headers included), so
/// the reference writes exactly the same volume.
fn record_bytes(batch: &[ProbeResult]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, r) in batch.iter().enumerate() {
        let mut r = r.clone();
        r.seq = 1_000_000 + k as u64;
        let payload = r.encode_to_vec();
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        out.extend_from_slice(&payload);
    }
    out
}

/// Reference and spool alternate in this many slices per batch size, so a
/// slow spell of a shared disk hits both alike.
const SLICES: u32 = 20;

/// Batches run, and how long each took.
#[derive(Default)]
struct Meas {
    results: u64,
    bytes: u64,
    elapsed: Duration,
    batch_times: Vec<Duration>,
}

impl Meas {
    /// Runs `op` (one batch of `per_batch` results, `bytes` bytes) for `slice`.
    fn run(&mut self, per_batch: u64, bytes: u64, slice: Duration, mut op: impl FnMut()) {
        let start = Instant::now();
        while start.elapsed() < slice {
            let t = Instant::now();
            op();
            self.batch_times.push(t.elapsed());
            self.results += per_batch;
            self.bytes += bytes;
        }
        self.elapsed += start.elapsed();
    }
    fn per_sec(&self) -> f64 {
        self.results as f64 / self.elapsed.as_secs_f64()
    }
    fn mb_per_sec(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64() / 1e6
    }
    fn p50_ms(&mut self) -> f64 {
        self.batch_times.sort();
        self.batch_times
            .get(self.batch_times.len() / 2)
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    }
}

fn bench_dir() -> PathBuf {
    std::env::var_os("AUTHPULSE_SPOOL_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")))
}

fn main() {
    let full = !common::smoke() && std::env::args().any(|a| a == "--bench");
    let budget = if full {
        Duration::from_millis(1500)
    } else {
        Duration::from_millis(30)
    };
    let preload: u64 = if full { 100_000 } else { 2_000 };
    let base = bench_dir();
    std::fs::create_dir_all(&base).expect("bench dir");
    let tmp = tempfile::tempdir_in(&base).expect("tempdir");
    let sample = result(1).encode_to_vec().len();
    println!(
        "spool bench in {} ({} bytes per encoded result, {} ms per measurement)",
        tmp.path().display(),
        sample,
        budget.as_millis()
    );
    println!();
    println!(
        "{:<24} {:>10} {:>7} {:>9} {:>12} {:>8} {:>9} {:>9} {:>9}",
        "append, fsync per batch",
        "results/s",
        "MB/s",
        "p50 ms",
        "ref res/s",
        "ref MB/s",
        "ref p50",
        "vs ref",
        "p50 ratio"
    );
    for size in [1u64, 10, 100] {
        let batch: Vec<ProbeResult> = (0..size).map(result).collect();
        let bytes = record_bytes(&batch);
        let len = bytes.len() as u64;
        let dir = tmp.path().join(format!("append-{size}"));
        let (mut spool, _) = Spool::open(SpoolConfig::new(&dir)).expect("open spool");
        let ref_path = dir.join("reference.log");
        let mut ref_file = File::create(&ref_path).expect("create reference file");
        let mut b = batch.clone();
        let mut r = Meas::default();
        let mut s = Meas::default();
        for _ in 0..SLICES {
            r.run(size, len, budget / (2 * SLICES), || {
                ref_file.write_all(&bytes).expect("write");
                ref_file.sync_data().expect("sync_data");
            });
            s.run(size, len, budget / (2 * SLICES), || {
                spool.append(&mut b).expect("append");
            });
        }
        let (sp50, rp50) = (s.p50_ms(), r.p50_ms());
        println!(
            "{:<24} {:>10.0} {:>7.2} {:>9.3} {:>12.0} {:>8.2} {:>9.3} {:>8.2}x {:>8.2}x",
            format!("batch {size}"),
            s.per_sec(),
            s.mb_per_sec(),
            sp50,
            r.per_sec(),
            r.mb_per_sec(),
            rp50,
            s.per_sec() / r.per_sec(),
            rp50 / sp50,
        );
        common::row(
            &format!("spool append batch {size}"),
            format!("{:.0}", s.per_sec()),
            "results/s",
            format!(
                "{:.2}x raw write + fdatasync of the same bytes",
                s.per_sec() / r.per_sec()
            ),
        );
    }

    // The CPU part of an append that the reference doesn't pay: encoding
    // and checksumming (the spool's gap to the reference at large batches).
    let batch: Vec<ProbeResult> = (0..100).map(result).collect();
    let mut buf = Vec::with_capacity(64 << 10);
    let mut cpu = Meas::default();
    cpu.run(100, 0, budget / 10, || {
        buf.clear();
        for r in &batch {
            let start = buf.len();
            r.encode(&mut buf).expect("encode");
            std::hint::black_box(crc32fast::hash(&buf[start..]));
        }
    });
    println!(
        "{:<24} {:>10.0}   (no I/O; {:.1} us per 100-result batch)",
        "encode + crc32 only",
        cpu.per_sec(),
        cpu.p50_ms() * 1e3
    );

    // Read and ack: a spool holding `preload` results, drained the way the
    // uplink does it (read_from with increasing `from`, chunks of 500).
    let dir = tmp.path().join("drain");
    {
        let (mut spool, _) = Spool::open(SpoolConfig::new(&dir)).expect("open spool");
        let mut batch: Vec<ProbeResult> = (0..1000).map(result).collect();
        for _ in 0..preload / 1000 {
            spool.append(&mut batch).expect("append");
        }
    }
    let t = Instant::now();
    let (mut spool, report) = Spool::open(SpoolConfig::new(&dir)).expect("reopen spool");
    let open_time = t.elapsed();
    let bytes = spool.bytes();
    println!();
    println!(
        "{:<28} {:>12} {:>9}",
        "drain (chunks of 500)", "results/s", "MB/s"
    );
    println!(
        "{:<28} {:>12.0} {:>9.2}   ({} results, {:.1} MB, {:.1} ms)",
        "open (crc scan + index)",
        report.records as f64 / open_time.as_secs_f64(),
        bytes as f64 / open_time.as_secs_f64() / 1e6,
        report.records,
        bytes as f64 / 1e6,
        open_time.as_secs_f64() * 1e3
    );
    let t = Instant::now();
    let mut from = 0;
    let mut n = 0u64;
    loop {
        let chunk = spool.read_from(from, 500).expect("read");
        let Some(last) = chunk.last() else { break };
        from = last.seq + 1;
        n += chunk.len() as u64;
    }
    let e = t.elapsed();
    println!(
        "{:<28} {:>12.0} {:>9.2}",
        "read_from",
        n as f64 / e.as_secs_f64(),
        bytes as f64 / e.as_secs_f64() / 1e6
    );
    let t = Instant::now();
    let mut from = 0;
    let mut n = 0u64;
    loop {
        let chunk = spool.read_from(from, 500).expect("read");
        let Some(last) = chunk.last() else { break };
        from = last.seq + 1;
        n += chunk.len() as u64;
        spool.ack(last.seq).expect("ack");
    }
    let e = t.elapsed();
    println!(
        "{:<28} {:>12.0} {:>9.2}   ({} acks, each a state-file write + fdatasync)",
        "read_from + ack",
        n as f64 / e.as_secs_f64(),
        bytes as f64 / e.as_secs_f64() / 1e6,
        n.div_ceil(500)
    );
    common::row(
        "spool drain read_from + ack",
        format!("{:.0}", n as f64 / e.as_secs_f64()),
        "results/s",
        format!("chunks of 500, {} acks", n.div_ceil(500)),
    );
    assert_eq!(spool.depth(), 0);
}
