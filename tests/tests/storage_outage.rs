//! Fail fast when storage is gone: a coordinator on the real PostgreSQL,
//! reached through a TCP proxy that partitions the network: forwarding
//! stops, open connections hang, new ones are accepted and never answered
//! (a host that went away, not one that refuses: the case where every
//! request used to wait on the pool's 30 s acquire timeout). While
//! partitioned, the gate answers 500 `{"decision":"unknown"}` and `/readyz`
//! 503 within ~2 s, nothing answers with database internals, and the
//! metrics say storage is down; once healed it recovers by itself, says so
//! in its log, and the gate passes again.
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use authpulse_tests::capture::CaptureServer;
use authpulse_tests::fleet::{AgentFixture, CoordinatorFixture, metric};
use authpulse_tests::postgres::PgDatabase;
use authpulse_tests::{TempDir, wait_for};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A loopback TCP proxy whose link can be partitioned: while it is, bytes
/// stop flowing both ways and connections stay open but silent; when it
/// heals, the connections that lived through it are closed (as a real
/// peer would have reset them) and new ones forward again.
struct PartitionProxy {
    addr: SocketAddr,
    partitioned: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl PartitionProxy {
    async fn start(target: SocketAddr) -> PartitionProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("addr");
        let (partitioned, _) = watch::channel(false);
        let state = Arc::new(partitioned.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let mut rx = state.subscribe();
                tokio::spawn(async move {
                    // Accepted during a partition: silent until it heals,
                    // then closed.
                    if *rx.borrow_and_update() {
                        let _held = client;
                        let _ = rx.wait_for(|p| !*p).await;
                        return;
                    }
                    let Ok(upstream) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (mut client, mut upstream) = (client, upstream);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => return,
                        _ = rx.wait_for(|p| *p) => {}
                    }
                    // Partitioned: hold both ends, forward nothing.
                    let _ = rx.wait_for(|p| !*p).await;
                });
            }
        });
        PartitionProxy {
            addr,
            partitioned,
            task,
        }
    }

    fn partition(&self) {
        self.partitioned.send_replace(true);
    }

    fn heal(&self) {
        self.partitioned.send_replace(false);
    }
}

impl Drop for PartitionProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const WAIT: Duration = Duration::from_secs(60);
/// What a pipeline may expect: the storage deadline (1.5 s) and some slack.
const FAST: Duration = Duration::from_millis(2_500);

/// (status, body, how long it took).
async fn timed(client: &reqwest::Client, url: &str) -> (u16, String, Duration) {
    let started = Instant::now();
    let r = client
        .get(url)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = r.status().as_u16();
    let body = r.text().await.unwrap_or_default();
    (status, body, started.elapsed())
}

async fn storage_up(client: &reqwest::Client, c: &CoordinatorFixture) -> Option<f64> {
    let m = client
        .get(format!("{}/metrics", c.api))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    m.contains("authpulse_coordinator_storage_up")
        .then(|| metric(&m, "authpulse_coordinator_storage_up"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gate_answers_unknown_within_two_seconds_while_postgres_is_unreachable() {
    let pg = PgDatabase::create().await;
    // postgres://user@host:port/db: the proxy goes between host:port and us.
    let (scheme_user, rest) = pg.url.split_once('@').expect("user@host in the URL");
    let (authority, db) = rest.split_once('/').expect("a database in the URL");
    let target: SocketAddr = authority.parse().expect("PostgreSQL at an IP:port");
    let proxy = PartitionProxy::start(target).await;
    let via_proxy = format!("{scheme_user}@127.0.0.1:{}/{db}", proxy.addr.port());

    let up = CaptureServer::start(|_| 200).await;
    let catalog = format!(
        "probes:\n  - {{ id: up, kind: http, url: \"{}\", interval: 1s, timeout: 800ms }}\n\
         slos:\n  - {{ id: up-availability, probes: [up], objective: 99, window: 1h }}\n\
         gates:\n  - {{ id: deploy, slos: [up-availability], block_when: [budget_exhausted], stale_after: 1m }}\n",
        up.url("/health")
    );
    let dir = TempDir::new("ap-storage-outage");
    let c =
        CoordinatorFixture::start_with(&dir, &catalog, &format!("database: {via_proxy}\n")).await;
    let _agent = AgentFixture::start(&dir, "so-a1", &c.grpc_url(), "").await;
    let client = reqwest::Client::new();
    let gate = format!("{}/api/v1/gates/deploy", c.api);
    wait_for(WAIT, "the gate to pass on fresh results", || async {
        let (status, _, _) = timed(&client, &gate).await;
        (status == 200).then_some(())
    })
    .await;
    assert_eq!(storage_up(&client, &c).await, Some(1.0));

    proxy.partition();
    // Every answer is fast, and soon (decisions are reused for up to 1 s)
    // it is `unknown`.
    let cut_at = Instant::now();
    let unknown: Value = loop {
        let (status, body, took) = timed(&client, &gate).await;
        assert!(
            took < FAST,
            "the gate took {took:?} with storage unreachable"
        );
        if status == 500 {
            break serde_json::from_str(&body).expect("JSON");
        }
        assert!(
            cut_at.elapsed() < Duration::from_secs(20),
            "still no unknown: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(unknown["decision"], "unknown", "{unknown}");
    assert_eq!(unknown["gate"], "deploy");
    assert_eq!(unknown["error"], "storage unavailable", "{}", c.log());
    for _ in 0..3 {
        let (status, body, took) = timed(&client, &gate).await;
        assert!(took < FAST, "the gate took {took:?}");
        assert_eq!(status, 500, "{body}");
        let (status, body, took) = timed(&client, &format!("{}/readyz", c.api)).await;
        assert!(took < FAST, "/readyz took {took:?}");
        assert_eq!(
            (status, body.as_str()),
            (503, "not ready: storage unavailable")
        );
    }
    // Other request paths: fast, and never the database's own words.
    for path in [
        "/api/v1/probes",
        "/api/v1/agents",
        "/api/v1/alerts",
        "/api/v1/gates",
        "/api/v2/summary.json",
        "/badge/up-availability.json",
    ] {
        let (status, body, took) = timed(&client, &format!("{}{path}", c.api)).await;
        assert!(took < FAST, "{path} took {took:?}");
        let lower = body.to_lowercase();
        for word in ["postgres", "connection", "sqlx", "database", "pool"] {
            assert!(
                !lower.contains(word),
                "{path} ({status}) leaks `{word}`: {body}"
            );
        }
        if status == 500 {
            assert_eq!(body, r#"{"error":"storage unavailable"}"#, "{path}");
        }
    }
    assert_eq!(storage_up(&client, &c).await, Some(0.0));

    proxy.heal();
    wait_for(WAIT, "the gate to pass again", || async {
        let (status, body, _) = timed(&client, &gate).await;
        (status == 200 && body.contains("\"decision\":\"pass\"")).then_some(())
    })
    .await;
    wait_for(WAIT, "/readyz ready again", || async {
        let (status, _, _) = timed(&client, &format!("{}/readyz", c.api)).await;
        (status == 200).then_some(())
    })
    .await;
    assert_eq!(storage_up(&client, &c).await, Some(1.0));
    let log = c.log();
    assert!(log.contains("storage unavailable"), "{log}");
    assert!(log.contains("storage answers again"), "{log}");
}
