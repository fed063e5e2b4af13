//! The coordinator's read endpoints under load: a real coordinator (the
//! library's `start`, SQLite in a temp dir, HTTP on 127.0.0.1) with a
//! catalog of `PROBES` probes, `SLOS` SLOs (availability and latency) and a
//! deploy gate over three of them with every kind of condition, and a day of
//! stored results (one per probe and minute, stored with
//! `Store::insert_batch` like ingest does, so the per-minute aggregates are
//! real). Then `wrk -t2 -c64 -d10s --latency` against, in turn:
//!
//! - `/healthz` (the reference: the HTTP stack, routing and access policy
//!   with no work behind them),
//! - `/api/v1/gates/deploy` (a full gate decision per request: SLO
//!   evaluation, newest results, escalation lookup, audit-log append),
//! - `/api/v2/summary.json` (the status feed: every SLO, incident sync),
//! - `/api/v1/slos` (every SLO with budgets and burn rates).
//!
//! Rows: requests/s and p99 latency of each, with the ratio to `/healthz`;
//! the gate's p99 also against its target of 5 ms, and once more with one
//! connection (`wrk -t1 -c1`): at 64 connections the coordinator is
//! saturated and p99 is mostly queueing, while a deploy pipeline asks one
//! request at a time. wrk and the coordinator share the machine's cores, as
//! they would on a small host.
//!
//! Needs `wrk` (Debian package `wrk`; `AUTHPULSE_BENCH_WRK` overrides the
//! path). Run: `cargo bench -p authpulse-coordinator --bench endpoints`;
//! `AUTHPULSE_BENCH_SMOKE=1` runs 1 s per endpoint over an hour of results.
use std::process::Command;

use authpulse_coordinator::store::now_ms;
use authpulse_coordinator::{CoordinatorConfig, start};
use authpulse_proto::v1::{ProbeResult, Timings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PROBES: usize = 20;
const SLOS: usize = 10;
const REGION: &str = "eu-west";
const GATE: &str = "deploy";
const GATE_P99_TARGET_MS: f64 = 5.0;

fn catalog() -> String {
    let mut y = String::from("probes:\n");
    for p in 0..PROBES {
        y += &format!(
            "  - id: probe-{p:02}\n    kind: http\n    regions: [{REGION}]\n    url: https://idp.example.com/p/{p}\n    interval: 60s\n"
        );
    }
    y += "slos:\n";
    for s in 0..SLOS {
        let sli = if s % 2 == 0 {
            "availability"
        } else {
            "{ latency: { threshold: 500ms } }"
        };
        y += &format!(
            "  - id: slo-{s:02}\n    probes: [probe-{:02}, probe-{:02}]\n    objective: 99\n    window: 28d\n    sli: {sli}\n",
            2 * s,
            2 * s + 1
        );
    }
    y += &format!(
        "gates:\n  - id: {GATE}\n    slos: [slo-00, slo-01, slo-02]\n    block_when:\n      - page_alert\n      - ticket_alert\n      - {{ budget_below: 0.2 }}\n      - {{ escalation_within: 30m }}\n      - {{ sli_below: {{ window: 15m, value: 0.9 }} }}\n"
    );
    y
}

/// Result `seq` of the bench agent: probe `seq % PROBES`, `minutes_ago`
/// before now, latency 100-400 ms; failed if `!ok`.
fn result(seq: u64, minutes_ago: i64, ok: bool) -> ProbeResult {
    let total_us = 100_000 + (seq * 7919) % 300_000;
    let probe = format!("probe-{:02}", seq % PROBES as u64);
    authpulse_tests::results::probe_result("bench-agent", REGION, seq, &probe)
        .started(now_ms() - minutes_ago * 60_000 - 1_000)
        .timings(Timings {
            dns_us: Some(1_000),
            connect_us: Some(2_000),
            tls_us: Some(5_000),
            ttfb_us: Some(total_us / 2),
            total_us,
        })
        .ok(ok)
        .build()
}

/// Status line and body of one GET.
async fn get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .expect("request");
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await.expect("response");
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}

/// What wrk measured for one URL.
struct Load {
    requests_per_sec: f64,
    p99_ms: f64,
}

/// wrk's `Latency` figures: `850.00us`, `3.21ms`, `1.02s`.
fn wrk_ms(v: &str) -> Option<f64> {
    let (num, scale) = if let Some(n) = v.strip_suffix("us") {
        (n, 1e-3)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1e3)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|n| n * scale)
}

fn parse_wrk(out: &str) -> Result<Load, String> {
    let rps = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .ok_or("no Requests/sec line")?;
    let p99 = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))
        .and_then(|v| wrk_ms(v.trim()))
        .ok_or("no 99% latency line")?;
    if let Some(bad) = out.lines().find(|l| {
        l.contains("Non-2xx or 3xx responses") || l.trim_start().starts_with("Socket errors")
    }) {
        return Err(format!("wrk saw failures: {}", bad.trim()));
    }
    Ok(Load {
        requests_per_sec: rps,
        p99_ms: p99,
    })
}

/// `wrk -t<threads> -c<connections> -d<seconds>s --latency <url>`.
fn wrk(url: &str, threads: u32, connections: u32, seconds: u64) -> Load {
    let bin = std::env::var("AUTHPULSE_BENCH_WRK").unwrap_or_else(|_| "wrk".into());
    let out = Command::new(&bin)
        .args([
            &format!("-t{threads}"),
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "--latency",
            url,
        ])
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {bin} ({e}): apt-get install -y --no-install-recommends wrk")
        });
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "wrk {url} failed: {text}");
    parse_wrk(&text).unwrap_or_else(|e| panic!("wrk {url}: {e}\n{text}"))
}

fn row(name: &str, value: String, unit: &str, comparison: String) {
    println!("{name}: {value} {unit} ({comparison})");
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let smoke = std::env::var("AUTHPULSE_BENCH_SMOKE").is_ok_and(|v| v == "1");
    let (hours, seconds) = if smoke { (1, 1) } else { (24, 10) };
    // Not /tmp, which may be a tmpfs: the audit log's writes are real cost.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let catalog_path = dir.path().join("catalog.yaml");
    std::fs::write(&catalog_path, catalog()).expect("write catalog");
    let config = CoordinatorConfig {
        grpc_listen: "127.0.0.1:0".parse().expect("addr"),
        http_listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.path().join("data"),
        catalog: vec![catalog_path],
        insecure: true,
        ..CoordinatorConfig::default()
    };
    let running = start(config).await.expect("coordinator starts");
    let addr = running.http_addr();

    // One result per probe and minute for `hours`, oldest first, newest
    // a second ago (so the gate's SLOs are fresh, not stale). Every probe
    // fails one minute in 400 (0.25 %, well inside the 99 % objectives), so
    // the gate passes and wrk sees only 200s.
    let minutes = hours * 60;
    let mut seq = 1u64;
    for minute in (0..minutes).rev() {
        let ok = minute % 400 != 399;
        let batch: Vec<ProbeResult> = (0..PROBES)
            .map(|_| {
                seq += 1;
                result(seq - 1, minute, ok)
            })
            .collect();
        running
            .store()
            .insert_batch("bench-agent", &batch)
            .await
            .expect("insert results");
    }
    println!(
        "endpoints bench with {PROBES} probes, {SLOS} SLOs, gate {GATE} over 3 SLOs and {} stored results over {hours} h; wrk -t2 -c64 -d{seconds}s{}",
        seq - 1,
        if smoke { ", smoke" } else { "" }
    );

    let paths = [
        "/healthz",
        "/api/v1/gates/deploy",
        "/api/v2/summary.json",
        "/api/v1/slos",
    ];
    // Every endpoint answers 200 (the gate passes on this data) before the
    // load starts: wrk would count anything else as failures.
    for path in paths {
        let (status, body) = get(addr, path).await;
        assert!(
            status.contains(" 200 "),
            "{path} answered {status}: {}",
            body.chars().take(2000).collect::<String>()
        );
    }
    let mut reference: Option<Load> = None;
    for path in paths {
        let url = format!("http://{addr}{path}");
        let load = tokio::task::spawn_blocking(move || wrk(&url, 2, 64, seconds))
            .await
            .expect("wrk task");
        match &reference {
            None => {
                row(
                    &format!("endpoint {path} throughput"),
                    format!("{:.0}", load.requests_per_sec),
                    "req/s",
                    "reference".into(),
                );
                row(
                    &format!("endpoint {path} p99"),
                    format!("{:.2}", load.p99_ms),
                    "ms",
                    "reference".into(),
                );
                reference = Some(load);
            }
            Some(r) => {
                row(
                    &format!("endpoint {path} throughput"),
                    format!("{:.0}", load.requests_per_sec),
                    "req/s",
                    format!(
                        "{:.3}x /healthz",
                        load.requests_per_sec / r.requests_per_sec
                    ),
                );
                let target = if path.starts_with("/api/v1/gates/") {
                    format!(
                        "; {:.2}x of target {GATE_P99_TARGET_MS} ms",
                        load.p99_ms / GATE_P99_TARGET_MS
                    )
                } else {
                    String::new()
                };
                row(
                    &format!("endpoint {path} p99"),
                    format!("{:.2}", load.p99_ms),
                    "ms",
                    format!("{:.1}x /healthz{target}", load.p99_ms / r.p99_ms),
                );
            }
        }
    }
    // 64 connections saturate the coordinator, so the p99 above is mostly
    // queueing (64 / throughput). A deploy pipeline asks one at a time:
    let url = format!("http://{addr}/api/v1/gates/{GATE}");
    let single = tokio::task::spawn_blocking(move || wrk(&url, 1, 1, seconds))
        .await
        .expect("wrk task");
    row(
        &format!("endpoint /api/v1/gates/{GATE} p99 at 1 connection"),
        format!("{:.2}", single.p99_ms),
        "ms",
        format!(
            "{:.2}x of target {GATE_P99_TARGET_MS} ms; {:.0} req/s",
            single.p99_ms / GATE_P99_TARGET_MS,
            single.requests_per_sec
        ),
    );
    running.shutdown().await;
}
