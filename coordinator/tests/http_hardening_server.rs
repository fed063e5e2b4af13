//! The HTTP server's own limits, against the real listener: a client that
//! sends half a request line is disconnected after `header_read_timeout`
//! while others are served; connections over `max_connections` get a 503
//! and are closed, and the server takes new ones once old ones end;
//! bodies over 64 KiB are refused with a JSON 413 on every route.
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use authpulse_coordinator::config::HttpConfig;
use authpulse_coordinator::{CoordinatorConfig, Running, start};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CATALOG: &str = "probes:\n  - { id: login, kind: http, url: \"https://idp.example/\" }\n\
slos:\n  - { id: login, probes: [login], objective: 99, window: 1d }\n\
gates:\n  - { id: deploy, slos: [login], block_when: [page_alert] }\n";

async fn coordinator(http: HttpConfig) -> (tempfile::TempDir, Running) {
    let dir = tempfile::tempdir().expect("tempdir");
    let catalog = dir.path().join("catalog.yaml");
    std::fs::write(&catalog, CATALOG).expect("catalog");
    let running = start(CoordinatorConfig {
        grpc_listen: "127.0.0.1:0".parse().expect("addr"),
        http_listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.path().join("data"),
        catalog: vec![catalog],
        insecure: true,
        http,
        ..CoordinatorConfig::default()
    })
    .await
    .expect("coordinator starts");
    (dir, running)
}

/// Reads until the peer closes (EOF or reset) or `limit` passes; returns
/// the bytes read and whether it closed.
async fn read_until_closed(s: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (got, true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (got, false),
        }
    }
}

async fn healthz(addr: SocketAddr) -> Option<u16> {
    let r = reqwest::Client::new()
        .get(format!("http://{addr}/healthz"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    Some(r.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_request_head_is_closed_after_the_header_timeout() {
    let (_dir, c) = coordinator(HttpConfig {
        header_read_timeout: Duration::from_secs(1),
        ..HttpConfig::default()
    })
    .await;
    let addr = c.http_addr();
    let mut slow = TcpStream::connect(addr).await.expect("connect");
    slow.write_all(b"GET /healthz HT").await.expect("write");
    let sent = Instant::now();
    // Meanwhile everyone else is served.
    assert_eq!(healthz(addr).await, Some(200));
    let (got, closed) = read_until_closed(&mut slow, Duration::from_secs(10)).await;
    let after = sent.elapsed();
    assert!(closed, "a half request line kept the connection open");
    assert!(
        after >= Duration::from_millis(900),
        "closed before the timeout: {after:?}"
    );
    assert!(after < Duration::from_secs(5), "closed late: {after:?}");
    // Whatever hyper says on the way out, it is not a 200.
    assert!(!String::from_utf8_lossy(&got).contains(" 200 "), "{got:?}");
    assert_eq!(healthz(addr).await, Some(200));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_are_refused_until_others_end() {
    let (_dir, c) = coordinator(HttpConfig {
        // Long: the idle connections below must hold their slots.
        header_read_timeout: Duration::from_secs(60),
        max_connections: 2,
        ..HttpConfig::default()
    })
    .await;
    let addr = c.http_addr();
    let mut first = TcpStream::connect(addr).await.expect("connect");
    let _second = TcpStream::connect(addr).await.expect("connect");
    // Accepted in order: the third finds both slots taken.
    let mut third = TcpStream::connect(addr).await.expect("connect");
    let (got, closed) = read_until_closed(&mut third, Duration::from_secs(10)).await;
    assert!(closed, "the third connection was kept");
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("HTTP/1.1 503") && text.contains("too many open HTTP connections"),
        "{text}"
    );
    // The held ones still work: a request on the first is answered.
    first
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n")
        .await
        .expect("write");
    let (got, _) = read_until_closed(&mut first, Duration::from_secs(10)).await;
    assert!(
        String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"),
        "{got:?}"
    );
    // Its slot is free again (the server closed it): new callers get in.
    let deadline = Instant::now() + Duration::from_secs(10);
    while healthz(addr).await != Some(200) {
        assert!(Instant::now() < deadline, "no slot freed up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_64_kib_are_refused_with_json() {
    let (_dir, c) = coordinator(HttpConfig::default()).await;
    let addr = c.http_addr();
    let client = reqwest::Client::new();
    let big = format!("{{\"name\": \"{}\"}}", "x".repeat(100 * 1024));
    for (method, path) in [
        (reqwest::Method::POST, "/api/v1/gates/deploy"),
        (reqwest::Method::POST, "/api/v1/alerts/login/page/silence"),
        (reqwest::Method::PUT, "/api/v1/admin/log-level"),
    ] {
        let r = client
            .request(method, format!("http://{addr}{path}"))
            .header("content-type", "application/json")
            .body(big.clone())
            .send()
            .await
            .expect("answer");
        assert_eq!(r.status().as_u16(), 413, "{path}");
        let v: serde_json::Value = r.json().await.expect("JSON error");
        assert_eq!(v["error"], "request body larger than 64 KiB", "{path}");
    }
    c.shutdown().await;
}
