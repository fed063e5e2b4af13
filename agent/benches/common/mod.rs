//! What the agent benches share: the smoke switch, the result-row format the
//! runner (`tests/bench/run`) collects, and per-process CPU time and peak
//! RSS from /proc. Each bench includes it with `mod common;`, so a helper a
//! given bench doesn't call is not dead code to worry about.
#![allow(dead_code)]

use std::fmt::Display;
use std::process::Command;

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
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces).
    let rest: Vec<u64> = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // utime, stime are fields 14-15 (index 11-12 here).
    let ticks = rest.get(10).copied().unwrap_or(0) + rest.get(11).copied().unwrap_or(0);
    ticks as f64 / clock_ticks()
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Peak resident set size (VmHWM) in KiB, from /proc/<pid>/status.
pub fn peak_rss_kib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(f64::NAN)
}

/// Nearest-rank percentile of sorted samples (`q` in 0..=1).
pub fn percentile<T: Copy>(sorted: &[T], q: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    Some(sorted[i])
}
