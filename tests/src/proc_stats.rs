//! A process's CPU time and memory from /proc, for the benches of both
//! crates: `pid` is a process id or `"self"`. Unreadable fields read as 0
//! (CPU) or NaN (memory), so a bench prints an obviously wrong row rather
//! than panicking mid-measurement.
use std::fmt::Display;
use std::sync::OnceLock;

/// The numeric fields of /proc/<pid>/stat after the command name (which may
/// contain spaces): index 0 is field 3 (`state` reads as 0).
pub fn stat_fields(pid: impl Display) -> Vec<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(')')
        .map(|(_, r)| r)
        .unwrap_or("")
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect()
}

/// Clock ticks per second (`getconf CLK_TCK`, asked once; calling sysconf
/// would need unsafe code, which the workspace forbids).
pub fn clock_ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// Seconds of the stat fields `first` and `first + 1` (one clock tick, 10 ms,
/// of resolution: fine over a window of seconds).
fn tick_pair(pid: impl Display, first: usize) -> f64 {
    let f = stat_fields(pid);
    let at = |i: usize| f.get(i).copied().unwrap_or(0);
    (at(first) + at(first + 1)) as f64 / clock_ticks()
}

/// User + system CPU seconds of the process (all threads).
pub fn cpu_secs(pid: impl Display) -> f64 {
    // utime, stime are fields 14-15 (index 11-12 here).
    tick_pair(pid, 11)
}

/// User + system CPU seconds of the process's waited-for children.
pub fn children_cpu_secs(pid: impl Display) -> f64 {
    // cutime, cstime are fields 16-17.
    tick_pair(pid, 13)
}

/// A `kB` field of /proc/<pid>/status (`VmHWM`, `VmRSS`) in KiB; NaN if absent.
pub fn status_kib(pid: impl Display, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(f64::NAN)
}
