//! What the agent benches share: the smoke switch, the result-row format the
//! runner (`tests/bench/run`) collects, and per-process CPU time and peak
//! RSS from /proc. Each bench includes it with `mod common;`, so a helper a
//! given bench doesn't call is not dead code to worry about.
#![allow(dead_code)]

use std::fmt::Display;

/// `AUTHPULSE_BENCH_SMOKE=1`: the same code path, seconds long, so the test
/// suite can prove every bench still builds and runs.
pub fn smoke() -> bool {
    std::env::var("AUTHPULSE_BENCH_SMOKE").is_ok_and(|v| v == "1")
}

/// One result row, `name: value unit (comparison)`: the line shape
/// `tests/bench/run` greps into the RESULTS.md table. `comparison` is the
/// ratio against the reference or target, with what that is.
pub fn row(name: &str, value: impl Display, unit: &str, comparison: impl Display) {
    println!("{name}: {value} {unit} ({comparison})");
}

/// user + system seconds of a process, from /proc/<pid>/stat.
pub fn cpu_secs(pid: u32) -> f64 {
    authpulse_tests::proc_stats::cpu_secs(pid)
}

/// Peak resident set size (VmHWM) in KiB, from /proc/<pid>/status.
pub fn peak_rss_kib(pid: u32) -> f64 {
    authpulse_tests::proc_stats::status_kib(pid, "VmHWM")
}

/// Nearest-rank percentile of sorted samples (`q` in 0..=1).
pub fn percentile<T: Copy>(sorted: &[T], q: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    Some(sorted[i])
}
