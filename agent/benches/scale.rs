//! The agent at scale: a real `authpulse-agent` process (the release binary
//! cargo built next to this bench) with 1,000 probes every 10 s and 10,000
//! probes every 60 s, all `http` against a local HTTP/1.1 server in a child
//! process (this binary re-executed with `AUTHPULSE_BENCH_SCALE_SERVER`), so
//! neither the server's nor this process's work is counted.
//!
//! The coordinator is a null sink in this process: a tonic `AgentService`
//! that answers the hello with the assignment, acks every batch at once and
//! keeps only each result's probe id, start time and outcome. So the agent's
//! whole path runs (scheduler, probes, spool with its fsyncs, uplink) and the
//! numbers are the agent's alone.
//!
//! After a warm-up (the first runs, squeezed into the first 5 s, and the
//! quiet half interval after them), over a measurement window:
//! - peak RSS: the agent's `VmHWM` (so the start-up peak counts) before the
//!   first `/metrics` scrape (probing alone) and at the end, after the two
//!   scrapes the lateness cross-check makes (what a scraped agent holds);
//!   targets (issue "performance round 2", scraped) <= 25 MB (10^6 bytes)
//!   at 1,000 probes and <= 120 MB at 10,000;
//! - CPU: the agent's user + system seconds over the window per 1,000 runs
//!   started in it, against a reference measured right after: a bare
//!   HTTP/1.1 client process (this binary with `AUTHPULSE_BENCH_SCALE_BARE`)
//!   making the same requests at the same rate, each on a new connection,
//!   and nothing else. On loopback the kernel's TCP work for both ends of a
//!   connection lands on the connecting process, so the reference shows how
//!   much of the agent's figure any prober pays;
//! - start lateness p50/p99 = actual start - scheduled slot, computed from
//!   each result's `started_unix_ms` against the schedule, which is
//!   deterministic (slot `k * interval + offset_ms(agent, probe)`, see
//!   `scheduler::offset_ms`): 1 ms resolution. Target p99 <= 5 ms. As a
//!   cross-check, the share of runs the agent's own
//!   `authpulse_agent_probe_start_lateness_seconds` histogram (read from its
//!   `/metrics` before and after the window) puts within 10 ms.
//!
//! Run: `cargo bench -p authpulse-agent --bench scale` (about 3 min);
//! `AUTHPULSE_BENCH_SMOKE=1` runs 200 and 1,000 probes every 1 s for a
//! couple of seconds each.
mod common;

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use authpulse_agent::scheduler::offset_ms;
use authpulse_proto::v1::agent_message::Msg as AgentMsg;
use authpulse_proto::v1::agent_service_server::{AgentService, AgentServiceServer};
use authpulse_proto::v1::coordinator_message::Msg as CoordMsg;
use authpulse_proto::v1::{
    Ack, AgentMessage, Assignment, CoordinatorMessage, Outcome, ProbeAssignment,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};

const SERVER_ENV: &str = "AUTHPULSE_BENCH_SCALE_SERVER";
/// Runs this binary as the reference client: `PORT RATE SECONDS`.
const BARE_ENV: &str = "AUTHPULSE_BENCH_SCALE_BARE";
const AGENT_ID: &str = "bench-scale";
const LATENESS_TARGET_MS: f64 = 5.0;

/// Peak RSS target for `probes` probes, once scraped (MB).
fn rss_target_mb(probes: usize) -> f64 {
    if probes >= 10_000 { 120.0 } else { 25.0 }
}
const LATENESS_METRIC: &str = "authpulse_agent_probe_start_lateness_seconds";
/// How long first runs are spread over (the scheduler's `FIRST_RUN_SPREAD`).
const FIRST_RUN_SPREAD: Duration = Duration::from_secs(5);

struct Case {
    probes: usize,
    interval: Duration,
    window: Duration,
}

/// What the null sink keeps of a result.
struct Seen {
    probe_id: String,
    started_ms: i64,
    ok: bool,
}

#[derive(Clone)]
struct NullSink {
    assignment: Arc<Assignment>,
    seen: mpsc::UnboundedSender<Vec<Seen>>,
}

fn ack(seq: u64) -> Result<CoordinatorMessage, Status> {
    Ok(CoordinatorMessage {
        msg: Some(CoordMsg::Ack(Ack {
            acked_seq: seq,
            highest_stored_seq: seq,
            ..Default::default()
        })),
    })
}

#[tonic::async_trait]
impl AgentService for NullSink {
    type ConnectStream = ReceiverStream<Result<CoordinatorMessage, Status>>;

    async fn connect(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(64);
        let sink = self.clone();
        tokio::spawn(async move {
            let mut acked = 0;
            while let Ok(Some(m)) = inbound.message().await {
                let reply = match m.msg {
                    // As a fresh coordinator: nothing stored, then the work.
                    Some(AgentMsg::Hello(_)) => {
                        if tx.send(ack(0)).await.is_err() {
                            return;
                        }
                        Ok(CoordinatorMessage {
                            msg: Some(CoordMsg::Assignment((*sink.assignment).clone())),
                        })
                    }
                    Some(AgentMsg::Results(batch)) => {
                        acked = batch.results.iter().map(|r| r.seq).fold(acked, u64::max);
                        let _ = sink.seen.send(
                            batch
                                .results
                                .into_iter()
                                .map(|r| Seen {
                                    ok: r.outcome == Outcome::Success as i32,
                                    probe_id: r.probe_id,
                                    started_ms: r.started_unix_ms,
                                })
                                .collect(),
                        );
                        ack(acked)
                    }
                    _ => continue,
                };
                if tx.send(reply).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// The probe target, run in a child process: prints `PORT <n>`, answers
/// every request with 200 `ok` and closes (the agent's probes open a new
/// connection each run).
async fn target_server() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    println!("PORT {port}");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(answer(stream));
    }
}

async fn answer(mut stream: TcpStream) {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let _ = stream
        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        .await;
    let _ = stream.shutdown().await;
}

/// The reference: the least any prober does per run, at the agent's rate
/// against the same server. One new connection per request, `GET` with
/// `Connection: close`, read to the end, check the status; no scheduler,
/// spool, uplink, metrics or logs. Prints `DONE <runs ok> <cpu seconds>`,
/// its own user + system time over the loop.
async fn bare_client(spec: &str) {
    let mut parts = spec
        .split_whitespace()
        .map(|p| p.parse::<f64>().expect("number"));
    let (port, rate, seconds) = (
        parts.next().expect("port") as u16,
        parts.next().expect("rate"),
        parts.next().expect("seconds"),
    );
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let cpu_before = common::cpu_secs(std::process::id());
    let mut running = tokio::task::JoinSet::new();
    let (mut n, mut ok) = (0u64, 0u64);
    while Instant::now() < end {
        tick.tick().await;
        n += 1;
        running.spawn(async move {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
            stream.set_nodelay(true).ok()?;
            let request = format!(
                "GET /p/{} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n",
                n % 1000
            );
            stream.write_all(request.as_bytes()).await.ok()?;
            let mut response = Vec::with_capacity(128);
            stream.read_to_end(&mut response).await.ok()?;
            response.starts_with(b"HTTP/1.1 200").then_some(())
        });
        while let Some(done) = running.try_join_next() {
            ok += u64::from(matches!(done, Ok(Some(()))));
        }
    }
    while let Some(done) = running.join_next().await {
        ok += u64::from(matches!(done, Ok(Some(()))));
    }
    let cpu = common::cpu_secs(std::process::id()) - cpu_before;
    println!("DONE {n} {ok} {cpu}");
}

/// The reference client's CPU per 1,000 runs at `rate` for `seconds`.
async fn bare_cpu_per_1000(port: u16, rate: f64, seconds: f64) -> f64 {
    let (mut child, done) = start_child(
        tokio::process::Command::new(std::env::current_exe().expect("current exe"))
            .env(BARE_ENV, format!("{port} {rate} {seconds}")),
        "DONE ",
    )
    .await;
    let _ = child.wait().await;
    let v: Vec<f64> = done
        .split_whitespace()
        .map(|p| p.parse().expect("number"))
        .collect();
    let (runs, ok, cpu) = (v[0], v[1], v[2]);
    assert!(
        ok >= runs * 0.99,
        "the reference client got {ok} of {runs} answers"
    );
    cpu / ok.max(1.0) * 1000.0
}

/// Starts a child process (this binary with `env` set) and reads the first
/// line it prints that starts with `prefix`; returns the child and the rest.
async fn start_child(
    cmd: &mut tokio::process::Command,
    prefix: &str,
) -> (tokio::process::Child, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start child process");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(rest) = line.strip_prefix(prefix) {
                return Some(rest.trim().to_string());
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .unwrap_or_else(|| panic!("child process never printed {prefix:?}"));
    // Keep draining its stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, found)
}

/// One `GET` on a fresh connection; the body (the agent's /metrics).
async fn http_get(addr: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect to agent");
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .expect("request");
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await.expect("response");
    String::from_utf8_lossy(&out).into_owned()
}

/// (runs within 10 ms, all runs) of the agent's lateness histogram.
fn lateness_counts(metrics: &str) -> (f64, f64) {
    let value = |prefix: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (
        value(&format!("{LATENESS_METRIC}_bucket{{le=\"0.01\"}}")),
        value(&format!("{LATENESS_METRIC}_count")),
    )
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

async fn run_case(case: &Case, target_port: u16, smoke: bool) {
    let interval_ms = case.interval.as_millis() as i64;
    let yaml: String = (0..case.probes)
        .map(|i| {
            format!(
                "  - id: p{i:05}\n    kind: http\n    url: http://127.0.0.1:{target_port}/p/{i}\n    interval: {}s\n    timeout: 1s\n",
                case.interval.as_secs()
            )
        })
        .collect();
    let catalog = authpulse_proto::catalog::load_str("scale.yaml", &format!("probes:\n{yaml}"))
        .expect("catalog");
    let assignment = Assignment {
        version: 1,
        probes: catalog
            .probes
            .iter()
            .map(|p| ProbeAssignment {
                id: p.id.clone(),
                kind: p.kind().to_string(),
                interval_ms: p.interval.as_millis() as u64,
                timeout_ms: p.timeout.as_millis() as u64,
                spec_json: p.to_wire_json(),
            })
            .collect(),
    };
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel();
    let sink = NullSink {
        assignment: Arc::new(assignment),
        seen: seen_tx,
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind sink");
    let sink_addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(AgentServiceServer::new(sink).max_decoding_message_size(64 * 1024 * 1024))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );

    // The spool's fsyncs are part of the cost: keep it off a tmpfs /tmp.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let config = dir.path().join("agent.yaml");
    std::fs::write(
        &config,
        format!(
            "agent_id: {AGENT_ID}\nregion: bench\ncoordinator: http://{sink_addr}\ninsecure: true\nlisten: 127.0.0.1:0\ndata_dir: {}\n",
            dir.path().join("data").display()
        ),
    )
    .expect("agent config");
    let (mut agent, agent_http) = start_child(
        tokio::process::Command::new(env!("CARGO_BIN_EXE_authpulse-agent"))
            .arg("--config")
            .arg(&config)
            .env("AUTHPULSE_LOG", "error"),
        "listening on http://",
    )
    .await;
    let pid = agent.id().expect("agent pid");

    // Wait for the first results (the assignment is applied), then warm up.
    let first = tokio::time::timeout(Duration::from_secs(30), seen_rx.recv())
        .await
        .ok()
        .flatten()
        .expect("the agent sends results within 30 s");
    let warmup = case.interval.min(FIRST_RUN_SPREAD)
        + case.interval / 2
        + if smoke {
            Duration::ZERO
        } else {
            Duration::from_secs(2)
        };
    let mut all = first;
    let drain_until = |rx: &mut mpsc::UnboundedReceiver<Vec<Seen>>, all: &mut Vec<Seen>| {
        while let Ok(batch) = rx.try_recv() {
            all.extend(batch);
        }
    };
    tokio::time::sleep(warmup).await;
    drain_until(&mut seen_rx, &mut all);
    all.clear();

    // Scrapes stay outside the CPU window: with 10,000 probes /metrics is
    // megabytes of per-probe series to render.
    // Peak RSS of the probing alone, before the first /metrics scrape: a
    // scrape snapshots every series and renders the page (streamed in
    // chunks, but the snapshot is a copy of every histogram), and the
    // allocator keeps that memory.
    let unscraped_rss_mb = common::peak_rss_kib(pid) * 1024.0 / 1e6;
    let metrics_before = lateness_counts(&http_get(&agent_http, "/metrics").await);
    let window_start_ms = now_ms();
    let cpu_before = common::cpu_secs(pid);
    let end = Instant::now() + case.window;
    while Instant::now() < end {
        match tokio::time::timeout_at(end, seen_rx.recv()).await {
            Ok(Some(batch)) => all.extend(batch),
            Ok(None) => panic!("null sink stopped"),
            Err(_) => break,
        }
    }
    let window_end_ms = now_ms();
    let cpu = common::cpu_secs(pid) - cpu_before;
    let metrics_after = lateness_counts(&http_get(&agent_http, "/metrics").await);
    // Runs that started in the window but were still in flight or unsent.
    tokio::time::sleep(Duration::from_millis(500)).await;
    drain_until(&mut seen_rx, &mut all);
    let rss_mb = common::peak_rss_kib(pid) * 1024.0 / 1e6;
    let _ = agent.kill().await;
    server.abort();
    let rate_asked = case.probes as f64 / case.interval.as_secs_f64();
    // A third of the window is plenty for a per-1,000 figure.
    let bare = bare_cpu_per_1000(
        target_port,
        rate_asked,
        (case.window.as_secs_f64() / 3.0).max(1.0),
    )
    .await;

    let in_window: Vec<&Seen> = all
        .iter()
        .filter(|s| (window_start_ms..window_end_ms).contains(&s.started_ms))
        .collect();
    let runs = in_window.len();
    assert!(runs > 0, "no probe runs in the measurement window");
    let ok = in_window.iter().filter(|s| s.ok).count();
    let mut off_grid = 0;
    let mut lateness: Vec<i64> = in_window
        .iter()
        .filter_map(|s| {
            let offset = offset_ms(AGENT_ID, &s.probe_id, case.interval) as i64;
            let phase = (s.started_ms - offset).rem_euclid(interval_ms);
            // Later than half an interval is not a late run but a run off
            // the schedule (a first run): say so instead of hiding it.
            if phase < interval_ms / 2 {
                Some(phase)
            } else {
                off_grid += 1;
                None
            }
        })
        .collect();
    lateness.sort_unstable();
    let p50 = common::percentile(&lateness, 0.50).unwrap_or(-1) as f64;
    let p99 = common::percentile(&lateness, 0.99).unwrap_or(-1) as f64;
    let window_s = (window_end_ms - window_start_ms) as f64 / 1000.0;
    let rate = runs as f64 / window_s;
    let (le10, count) = (
        metrics_after.0 - metrics_before.0,
        metrics_after.1 - metrics_before.1,
    );
    let n = case.probes;
    let iv = case.interval.as_secs();
    println!(
        "scale {n} probes every {iv}s: {runs} runs in {window_s:.0} s ({rate:.0}/s), {ok} ok, {off_grid} off the schedule"
    );
    common::row(
        &format!("scale {n} probes/{iv}s peak RSS before /metrics scrapes"),
        format!("{unscraped_rss_mb:.1}"),
        "MB",
        format!(
            "{:.2}x of target {} MB",
            unscraped_rss_mb / rss_target_mb(case.probes),
            rss_target_mb(case.probes)
        ),
    );
    common::row(
        &format!("scale {n} probes/{iv}s peak RSS after 2 /metrics scrapes"),
        format!("{rss_mb:.1}"),
        "MB",
        format!(
            "{:.2}x of target {} MB",
            rss_mb / rss_target_mb(case.probes),
            rss_target_mb(case.probes)
        ),
    );
    common::row(
        &format!("scale {n} probes/{iv}s CPU"),
        format!("{:.3}", cpu / runs as f64 * 1000.0),
        "s/1000 runs",
        format!(
            "{:.2}x a bare HTTP/1.1 client ({bare:.3} s), {:.1}% of one core at {rate:.0} runs/s",
            cpu / runs as f64 * 1000.0 / bare,
            cpu / window_s * 100.0
        ),
    );
    common::row(
        &format!("scale {n} probes/{iv}s bare HTTP/1.1 client CPU"),
        format!("{bare:.3}"),
        "s/1000 runs",
        "reference: new connection, GET, read, close; nothing else",
    );
    common::row(
        &format!("scale {n} probes/{iv}s start lateness p50"),
        format!("{p50:.0}"),
        "ms",
        format!(
            "{:.2}x of target {LATENESS_TARGET_MS} ms",
            p50 / LATENESS_TARGET_MS
        ),
    );
    common::row(
        &format!("scale {n} probes/{iv}s start lateness p99"),
        format!("{p99:.0}"),
        "ms",
        format!(
            "{:.2}x of target {LATENESS_TARGET_MS} ms; /metrics: {:.2}% within 10 ms",
            p99 / LATENESS_TARGET_MS,
            le10 / count.max(1.0) * 100.0
        ),
    );
    assert!(
        ok as f64 >= runs as f64 * 0.99,
        "only {ok} of {runs} probe runs succeeded against the local server"
    );
    assert_eq!(off_grid, 0, "runs started off their schedule");
    assert!(count > 0.0, "{LATENESS_METRIC} not on the agent's /metrics");
}

fn main() {
    if std::env::var_os(SERVER_ENV).is_some() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(target_server());
        return;
    }
    if let Ok(spec) = std::env::var(BARE_ENV) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(bare_client(&spec));
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(bench());
}

async fn bench() {
    let smoke = common::smoke();
    let cases = if smoke {
        vec![
            Case {
                probes: 200,
                interval: Duration::from_secs(1),
                window: Duration::from_millis(1500),
            },
            Case {
                probes: 1_000,
                interval: Duration::from_secs(1),
                window: Duration::from_millis(1500),
            },
        ]
    } else {
        vec![
            Case {
                probes: 1_000,
                interval: Duration::from_secs(10),
                window: Duration::from_secs(60),
            },
            Case {
                probes: 10_000,
                interval: Duration::from_secs(60),
                window: Duration::from_secs(60),
            },
        ]
    };
    let (_target, port) = start_child(
        tokio::process::Command::new(std::env::current_exe().expect("current exe"))
            .env(SERVER_ENV, "1"),
        "PORT ",
    )
    .await;
    let port: u16 = port.parse().expect("target port");
    for case in &cases {
        run_case(case, port, smoke).await;
    }
}
