//! Agent cost per probe against Prometheus blackbox_exporter, the tool the
//! `http` probe is meant to replace. Both probe the same local HTTPS
//! endpoint (rustls, rcgen certificate, verification skipped on both
//! sides) at the same fixed rate, each probe on new connections.
//!
//! - authpulse: `probes::run` on that schedule, in this process. CPU is this
//!   process's user + system time over the window; the HTTPS target runs in
//!   a child process (this binary re-executed with `AUTHPULSE_BENCH_SERVER`)
//!   so its cost is not counted.
//! - blackbox_exporter (the reference): a plain process with its own config,
//!   driven by a loop calling `/probe?target=...&module=http_2xx` as
//!   Prometheus would. CPU is that process's user + system time only, so the
//!   driver loop is excluded.
//!
//! Rows: CPU seconds per 1,000 probes and peak RSS (VmHWM) of each, and the
//! ratio authpulse/blackbox. Target: authpulse <= 0.5x blackbox CPU.
//!
//! Needs `/usr/bin/prometheus-blackbox-exporter` (Debian package
//! `prometheus-blackbox-exporter`; `AUTHPULSE_BENCH_BLACKBOX` overrides).
//! Run: `cargo bench -p authpulse-agent --bench vs_blackbox`
//! (`AUTHPULSE_BENCH_SMOKE=1` runs 2 s instead of 20 s, as a smoke test).
mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::time::Duration;

use authpulse_agent::http::NetContext;
use authpulse_agent::probes::{self, ProbeMemory};
use authpulse_agent::secrets::SecretStore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const RATE_PER_SEC: u64 = 100;
const SERVER_ENV: &str = "AUTHPULSE_BENCH_SERVER";

/// The HTTPS target, run in a child process: prints `PORT <n>` and answers
/// every request with 200 `ok`, one request per connection.
async fn target_server() {
    let tls = authpulse_tests::tls::TlsFixture::new();
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.server_config.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    println!("PORT {port}");
    std::io::stdout().flush().expect("flush");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let Ok(mut stream) = acceptor.accept(stream).await else {
                return;
            };
            let mut buf = Vec::with_capacity(1024);
            let mut chunk = [0u8; 1024];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let _ = stream
                .write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                )
                .await;
            let _ = stream.shutdown().await;
        });
    }
}

fn start_target() -> (Child, u16) {
    let mut child = Command::new(std::env::current_exe().expect("current exe"))
        .env(SERVER_ENV, "1")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start target server");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read port");
    let port = line
        .trim()
        .strip_prefix("PORT ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("target server said {line:?}"));
    (child, port)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// One `GET` over a fresh connection; returns the whole response.
async fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Starts `run` every 1/RATE s for `window` without waiting for earlier
/// ones, then waits for all; returns how many succeeded. Finished runs are
/// reaped as it goes: a held task handle keeps the finished future's memory,
/// which would show up as the agent's RSS.
async fn at_fixed_rate<F, Fut>(window: Duration, run: F) -> usize
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool> + 'static,
{
    let total = (window.as_secs_f64() * RATE_PER_SEC as f64) as usize;
    let mut tick = tokio::time::interval(Duration::from_secs(1) / RATE_PER_SEC as u32);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut running = tokio::task::JoinSet::new();
    let mut ok = 0;
    for _ in 0..total {
        tick.tick().await;
        running.spawn_local(run());
        while let Some(done) = running.try_join_next() {
            ok += usize::from(done.unwrap_or(false));
        }
    }
    while let Some(done) = running.join_next().await {
        ok += usize::from(done.unwrap_or(false));
    }
    ok
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if std::env::var_os(SERVER_ENV).is_some() {
        rt.block_on(target_server());
        return;
    }
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, bench());
}

async fn bench() {
    let window = Duration::from_secs(if common::smoke() { 2 } else { 20 });
    let blackbox_bin = std::env::var("AUTHPULSE_BENCH_BLACKBOX")
        .unwrap_or_else(|_| "/usr/bin/prometheus-blackbox-exporter".to_string());
    assert!(
        std::path::Path::new(&blackbox_bin).exists(),
        "{blackbox_bin} missing: apt-get install -y --no-install-recommends prometheus-blackbox-exporter"
    );
    authpulse_tests::crypto();
    let (mut target, port) = start_target();
    let target_url = format!("https://127.0.0.1:{port}/");
    let me = std::process::id();

    // authpulse, in this process.
    let catalog = authpulse_proto::catalog::load_str(
        "bench.yaml",
        &format!(
            "probes:\n  - id: target\n    kind: http\n    url: {target_url}\n    timeout: 5s\n    tls: {{ insecure_skip_verify: true }}\n"
        ),
    )
    .expect("catalog");
    let def = Rc::new(catalog.probes[0].clone());
    let net = Rc::new(NetContext::new().expect("net"));
    let secrets = Rc::new(SecretStore::new(None));
    let memory = Rc::new(ProbeMemory::default());
    let one_probe = || {
        let (def, net, secrets, memory) =
            (def.clone(), net.clone(), secrets.clone(), memory.clone());
        async move {
            let o = probes::run(&def, &net, &secrets, &memory).await;
            if !o.success() {
                eprintln!("authpulse probe failed: {}", o.detail);
            }
            o.success()
        }
    };
    for _ in 0..20 {
        assert!(one_probe().await, "authpulse warm-up probe failed");
    }
    let before = common::cpu_secs(me);
    let ours_ok = at_fixed_rate(window, one_probe).await;
    let ours_cpu = common::cpu_secs(me) - before;
    let ours_rss = common::peak_rss_kib(me) / 1024.0;

    // blackbox_exporter, its own process.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("blackbox.yml");
    std::fs::write(
        &config,
        "modules:\n  http_2xx:\n    prober: http\n    timeout: 5s\n    http:\n      preferred_ip_protocol: ip4\n      tls_config:\n        insecure_skip_verify: true\n",
    )
    .expect("blackbox config");
    let bb_port = free_port();
    let mut blackbox = Command::new(&blackbox_bin)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{bb_port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start blackbox_exporter");
    let bb_pid = blackbox.id();
    let probe_path = format!("/probe?target=https%3A%2F%2F127.0.0.1%3A{port}%2F&module=http_2xx");
    let bb_probe = || {
        let path = probe_path.clone();
        async move {
            match http_get(bb_port, &path).await {
                Ok(body) if body.contains("\nprobe_success 1") => true,
                Ok(body) => {
                    eprintln!(
                        "blackbox probe failed: {}",
                        body.lines().last().unwrap_or("")
                    );
                    false
                }
                Err(e) => {
                    eprintln!("blackbox request failed: {e}");
                    false
                }
            }
        }
    };
    // Ready when a probe through it succeeds (polling, bounded).
    let ready_by = tokio::time::Instant::now() + Duration::from_secs(10);
    while !http_get(bb_port, &probe_path)
        .await
        .is_ok_and(|body| body.contains("\nprobe_success 1"))
    {
        assert!(
            tokio::time::Instant::now() < ready_by,
            "blackbox_exporter not ready on 127.0.0.1:{bb_port}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..20 {
        assert!(bb_probe().await, "blackbox warm-up probe failed");
    }
    let before = common::cpu_secs(bb_pid);
    let theirs_ok = at_fixed_rate(window, bb_probe).await;
    let theirs_cpu = common::cpu_secs(bb_pid) - before;
    let theirs_rss = common::peak_rss_kib(bb_pid) / 1024.0;

    let _ = blackbox.kill();
    let _ = blackbox.wait();
    let _ = target.kill();
    let _ = target.wait();

    let per_1k = |cpu: f64, n: usize| cpu / n.max(1) as f64 * 1000.0;
    let (ours_k, theirs_k) = (per_1k(ours_cpu, ours_ok), per_1k(theirs_cpu, theirs_ok));
    let probes_total = (window.as_secs_f64() * RATE_PER_SEC as f64) as usize;
    println!(
        "vs_blackbox: {RATE_PER_SEC} https probes/s for {} s against a local rustls server; \
         authpulse {ours_ok}/{probes_total} ok, blackbox {theirs_ok}/{probes_total} ok",
        window.as_secs()
    );
    common::row(
        "authpulse https probe CPU",
        format!("{ours_k:.3}"),
        "s/1000 probes",
        format!("{:.3}x blackbox_exporter", ours_k / theirs_k),
    );
    common::row(
        "authpulse https probe peak RSS",
        format!("{ours_rss:.1}"),
        "MiB",
        format!("{:.3}x blackbox_exporter", ours_rss / theirs_rss),
    );
    common::row(
        "blackbox_exporter https probe CPU",
        format!("{theirs_k:.3}"),
        "s/1000 probes",
        "reference",
    );
    common::row(
        "blackbox_exporter https probe peak RSS",
        format!("{theirs_rss:.1}"),
        "MiB",
        "reference",
    );
    assert!(
        ours_ok == probes_total && theirs_ok == probes_total,
        "probes failed: authpulse {ours_ok}/{probes_total}, blackbox {theirs_ok}/{probes_total}"
    );
}
