//! Timing fidelity of the `http` probe: does the `ttfb` it reports match
//! what the server actually did? A local HTTP/1.1 server on 127.0.0.1 waits
//! a known time (50 ms, 200 ms) after reading the request head before it
//! sends the response head; the probe runs against it N times.
//!
//! Reference, measured in the same run against the same URL: curl, one
//! process per request, `time_starttransfer - time_connect` (curl's
//! starttransfer counts from the start, ours from "request written", so the
//! connect part is taken off). Rows give median and p95 of each and the
//! difference in ms; the target is within 2 ms.
//!
//! Run: `cargo bench -p authpulse-agent --bench timing`
//! (`AUTHPULSE_BENCH_SMOKE=1` runs a few iterations only, as a smoke test).
mod common;

use std::time::Duration;

use authpulse_agent::http::NetContext;
use authpulse_agent::probes::{self, ProbeMemory};
use authpulse_agent::secrets::SecretStore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Serves `GET /delay/<ms>`: reads the request head, waits `<ms>`, answers.
async fn serve(listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(handle(stream));
    }
}

async fn handle(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    // Read exactly to the end of the request head (GETs have no body); the
    // delay starts when the whole request has arrived.
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let head = String::from_utf8_lossy(&buf);
    let delay_ms: u64 = head
        .split_whitespace()
        .nth(1)
        .and_then(|path| path.strip_prefix("/delay/"))
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    let _ = stream
        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        .await;
    let _ = stream.shutdown().await;
}

/// Median and p95 (nearest rank) in ms.
fn stats(samples: &mut [f64]) -> (f64, f64) {
    samples.sort_by(f64::total_cmp);
    let rank = |q: f64| common::percentile(samples, q).unwrap_or(f64::NAN);
    (rank(0.5), rank(0.95))
}

fn curl_ttfb_ms(url: &str) -> f64 {
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{time_starttransfer} %{time_connect}",
            url,
        ])
        .output()
        .expect("curl runs");
    assert!(out.status.success(), "curl failed: {:?}", out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    let mut fields = text
        .split_whitespace()
        .map(|f| f.parse::<f64>().expect("curl time"));
    let start_transfer = fields.next().expect("time_starttransfer");
    let connect = fields.next().expect("time_connect");
    (start_transfer - connect) * 1000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n = if common::smoke() { 5 } else { 50 };
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(serve(listener));

    let delays = [50u64, 200];
    let yaml = delays
        .iter()
        .map(|d| {
            format!("  - id: delay{d}\n    kind: http\n    url: http://{addr}/delay/{d}\n    timeout: 5s\n")
        })
        .collect::<String>();
    let catalog = authpulse_proto::catalog::load_str("bench.yaml", &format!("probes:\n{yaml}"))
        .expect("catalog");
    let net = NetContext::new().expect("net");
    let secrets = SecretStore::new(None);
    let memory = ProbeMemory::default();

    println!(
        "http probe ttfb vs curl against a local server that waits before the response head ({n} requests each)"
    );
    for (def, delay) in catalog.probes.iter().zip(delays) {
        let url = format!("http://{addr}/delay/{delay}");
        // Warm up both (page cache for curl, lazy init for us).
        let _ = probes::run(def, &net, &secrets, &memory).await;
        let _ = curl_ttfb_ms(&url);

        let mut ours = Vec::with_capacity(n);
        let mut theirs = Vec::with_capacity(n);
        // Interleaved so drift in machine load hits both alike.
        for _ in 0..n {
            let o = probes::run(def, &net, &secrets, &memory).await;
            assert!(o.success(), "{}: {}", def.id, o.detail);
            let ttfb = o.timings.ttfb.expect("http probe reports ttfb");
            ours.push(ttfb.as_secs_f64() * 1000.0);
            let url = url.clone();
            theirs.push(
                tokio::task::spawn_blocking(move || curl_ttfb_ms(&url))
                    .await
                    .expect("curl task"),
            );
        }
        let (our_p50, our_p95) = stats(&mut ours);
        let (curl_p50, curl_p95) = stats(&mut theirs);
        common::row(
            &format!("http probe ttfb {delay}ms median"),
            format!("{our_p50:.3}"),
            "ms",
            format!(
                "{:.4}x curl {curl_p50:.3} ms, diff {:+.3} ms",
                our_p50 / curl_p50,
                our_p50 - curl_p50
            ),
        );
        common::row(
            &format!("http probe ttfb {delay}ms p95"),
            format!("{our_p95:.3}"),
            "ms",
            format!(
                "{:.4}x curl {curl_p95:.3} ms, diff {:+.3} ms",
                our_p95 / curl_p95,
                our_p95 - curl_p95
            ),
        );
    }
}
