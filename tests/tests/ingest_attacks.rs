//! One authenticated agent must not be able to pass a gate, crash it or
//! exhaust the coordinator (issue "Trust nothing an agent sends"). Each test
//! replays an attack against the real `authpulse-coordinator` binary with an
//! independent gRPC client, and checks it is refused while the service stays
//! correct: results for another region's probe, made-up probes, forged
//! times and values, hostile Hellos, stream floods, a late escalation.
use std::time::Duration;

use authpulse_proto::v1::agent_message::Msg as AgentMsg;
use authpulse_proto::v1::coordinator_message::Msg as CoordMsg;
use authpulse_proto::v1::{FailureClass, Heartbeat, Hello, Outcome, RejectKind, Timings};
use authpulse_tests::fake_agent::{FakeAgent, now_ms, result};
use authpulse_tests::fleet::{CoordinatorFixture, metric};
use authpulse_tests::{TempDir, wait_for};
use serde_json::Value;

const CATALOG: &str = "probes:
  - id: us-login
    kind: http
    regions: [us-east]
    url: http://127.0.0.1:9/
    interval: 1m
    timeout: 2s
  - id: eu-login
    kind: http
    regions: [eu-west]
    url: http://127.0.0.1:9/
    interval: 1m
    timeout: 2s
slos:
  - id: us-login-availability
    probes: [us-login]
    objective: 99
    window: 1h
gates:
  - id: deploy
    slos: [us-login-availability]
    block_when: [{ sli_below: { window: 15m, value: 0.9 } }]
    stale_after: 10m
  - id: no-escalation
    slos: [us-login-availability]
    block_when: [escalation]
    stale_after: 1h
";

async fn get(client: &reqwest::Client, url: String) -> (u16, String) {
    let r = client.get(&url).send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.text().await.unwrap_or_default())
}

async fn gate(c: &CoordinatorFixture, client: &reqwest::Client, id: &str) -> (u16, Value) {
    let (status, body) = get(client, format!("{}/api/v1/gates/{id}", c.api)).await;
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

async fn metrics(c: &CoordinatorFixture, client: &reqwest::Client) -> String {
    get(client, format!("{}/metrics", c.api)).await.1
}

#[tokio::test]
async fn a_foreign_region_cannot_dilute_an_outage_into_a_pass() {
    let dir = TempDir::new("attack-dilute");
    let c = CoordinatorFixture::start(&dir, CATALOG).await;
    let client = reqwest::Client::new();

    // The real us agent sees the outage.
    let mut us = FakeAgent::connect(&c.grpc_url()).await.expect("us");
    us.hello("us-1", "us-east").await.expect("us hello");
    let now = now_ms();
    let failures = (1..=20)
        .map(|s| result("us-1", "us-east", s, "us-login", false, now - 1_000))
        .collect();
    let ack = us.batch(failures, 0).await.expect("us batch");
    assert_eq!((ack.acked_seq, ack.refused.len()), (20, 0), "{ack:?}");
    let (status, v) = gate(&c, &client, "deploy").await;
    assert_eq!(
        (status, v["decision"].as_str()),
        (503, Some("fail")),
        "{v:#}"
    );

    // A certified eu agent floods successes for the us-only probe, and
    // results for probes that don't exist.
    let mut eu = FakeAgent::connect(&c.grpc_url()).await.expect("eu");
    eu.hello("eu-1", "eu-west").await.expect("eu hello");
    let mut seq = 0;
    for _ in 0..5 {
        let batch: Vec<_> = (0..100)
            .map(|_| {
                seq += 1;
                result("eu-1", "eu-west", seq, "us-login", true, now - 500)
            })
            .collect();
        let ack = eu.batch(batch, 0).await.expect("eu batch");
        // Settled (never resent) but refused, each with its reason.
        assert_eq!(ack.acked_seq, seq);
        assert_eq!(ack.refused.len(), 100);
        assert!(
            ack.refused.iter().all(|r| r.code == "unassigned_probe"),
            "{:?}",
            ack.refused[0]
        );
        assert!(
            ack.refused[0]
                .reason
                .contains("not assigned to this agent's region"),
            "{}",
            ack.refused[0].reason
        );
    }
    seq += 1;
    let ack = eu
        .batch(
            vec![result("eu-1", "eu-west", seq, "made-up-probe", true, now)],
            0,
        )
        .await
        .expect("made-up");
    assert_eq!(ack.refused.len(), 1);
    // Its own probe is still accepted from the same stream.
    seq += 1;
    let ack = eu
        .batch(
            vec![result("eu-1", "eu-west", seq, "eu-login", true, now)],
            0,
        )
        .await
        .expect("own probe");
    assert_eq!((ack.acked_seq, ack.refused.len()), (seq, 0));

    // The gate still blocks, the SLO counts only the us failures.
    let (status, v) = gate(&c, &client, "deploy").await;
    assert_eq!(
        (status, v["decision"].as_str()),
        (503, Some("fail")),
        "{v:#}"
    );
    let (_, probes) = get(&client, format!("{}/api/v1/probes", c.api)).await;
    assert!(!probes.contains("made-up-probe"), "{probes}");
    let m = metrics(&c, &client).await;
    assert_eq!(
        metric(&m, "authpulse_coordinator_results_refused_total"),
        501.0,
        "{m}"
    );
    // Only the admitted results are counted per probe: 20 us, 1 eu.
    assert_eq!(metric(&m, "authpulse_probe_results_total"), 21.0, "{m}");
    // Refusals are audited, summed (one entry per stream and minute).
    let audit = std::fs::read_to_string(dir.path().join("coordinator-data/audit.jsonl"))
        .expect("audit log");
    let entries = audit.matches("\"results_refused\"").count();
    assert_eq!(entries, 1, "{audit}");
    assert!(audit.contains("\"unassigned_probe\":100"), "{audit}");
}

#[tokio::test]
async fn forged_times_and_values_are_refused_and_every_endpoint_keeps_answering() {
    let dir = TempDir::new("attack-values");
    let c = CoordinatorFixture::start(&dir, CATALOG).await;
    let client = reqwest::Client::new();
    let mut us = FakeAgent::connect(&c.grpc_url()).await.expect("us");
    us.hello("us-1", "us-east").await.expect("hello");
    let now = now_ms();

    let far_future = result(
        "us-1",
        "us-east",
        1,
        "us-login",
        true,
        now + 80 * 365 * 86_400_000,
    );
    let mut maxed = result("us-1", "us-east", 2, "us-login", true, i64::MAX);
    maxed.duration_us = u64::MAX;
    maxed.outcome = 99;
    maxed.timings = Some(Timings {
        total_us: u64::MAX,
        dns_us: Some(u64::MAX),
        ..Default::default()
    });
    let mut huge = result("us-1", "us-east", 3, "us-login", false, now);
    huge.duration_us = u64::MAX;
    let mut odd = result("us-1", "us-east", 4, "us-login", true, now);
    odd.outcome = 99;
    let mut class = result("us-1", "us-east", 5, "us-login", true, now);
    class.failure_class = 99;
    let ancient = result("us-1", "us-east", 6, "us-login", true, 0);
    let ack = us
        .batch(vec![far_future, maxed, huge, odd, class, ancient], 0)
        .await
        .expect("batch");
    let codes: Vec<&str> = ack.refused.iter().map(|r| r.code.as_str()).collect();
    assert_eq!(
        codes,
        [
            "future_timestamp",
            "future_timestamp",
            "duration_out_of_range",
            "unknown_enum",
            "unknown_enum",
            "expired_timestamp"
        ]
    );
    assert_eq!(ack.acked_seq, 6);

    // A real result afterwards is stored and is the newest.
    let ack = us
        .batch(vec![result("us-1", "us-east", 7, "us-login", true, now)], 0)
        .await
        .expect("real");
    assert_eq!((ack.acked_seq, ack.refused.len()), (7, 0));
    let (_, probes) = get(&client, format!("{}/api/v1/probes", c.api)).await;
    assert!(
        !probes.contains("2106-") && !probes.contains("9999-"),
        "{probes}"
    );

    for path in [
        "/api/v1/probes",
        "/api/v1/gates",
        "/api/v1/gates/deploy",
        "/api/v1/slos",
        "/api/v1/agents",
        "/api/v1/alerts",
        "/api/v1/ui/grid",
        "/api/v1/ui/gates",
        "/api/v2/summary.json",
        "/history.atom",
        "/metrics",
    ] {
        let (status, body) = get(&client, format!("{}{path}", c.api)).await;
        assert!(status == 200 || status == 503, "{path}: {status} {body}");
    }
    assert!(!c.log().contains("panicked"), "{}", c.log());
}

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[tokio::test]
async fn hostile_hellos_and_stream_floods_stay_bounded() {
    let dir = TempDir::new("attack-bounds");
    let c = CoordinatorFixture::start(&dir, CATALOG).await;
    let client = reqwest::Client::new();
    let pid = c.process.as_ref().and_then(|p| p.pid()).expect("pid");
    let audit_path = dir.path().join("coordinator-data/audit.jsonl");

    // A 7 MiB version string: refused as a whole, never recorded.
    let mut big = FakeAgent::connect(&c.grpc_url()).await.expect("connect");
    let err = big
        .hello_with(Hello {
            agent_id: "big".into(),
            region: "us-east".into(),
            version: "v".repeat(7 << 20),
            ..Default::default()
        })
        .await
        .expect_err("7 MiB version");
    assert!(err.contains("invalid version"), "{err}");
    let mut labels = FakeAgent::connect(&c.grpc_url()).await.expect("connect");
    let err = labels
        .hello_with(Hello {
            agent_id: "labels".into(),
            region: "us-east".into(),
            version: "1".into(),
            labels: (0..1000).map(|i| (format!("k{i}"), "v".into())).collect(),
            ..Default::default()
        })
        .await
        .expect_err("1000 labels");
    assert!(err.contains("labels"), "{err}");

    // 120 streams on one connection that never say Hello: each refused,
    // audited at most 10 times a minute, all counted.
    let channel = FakeAgent::channel(&c.grpc_url()).await.expect("channel");
    for _ in 0..120 {
        let mut s = FakeAgent::open(channel.clone()).await.expect("stream");
        s.send(AgentMsg::Heartbeat(Heartbeat::default()))
            .await
            .expect("send");
        match s.next().await {
            Ok(CoordMsg::Reject(r)) => {
                assert!(r.reason.contains("must be Hello"), "{}", r.reason);
                assert_eq!(r.kind, RejectKind::Transient as i32);
            }
            other => panic!("expected a reject, got {other:?}"),
        }
    }
    let m = metrics(&c, &client).await;
    assert!(
        metric(&m, "authpulse_coordinator_rejected_streams_total") >= 122.0,
        "{m}"
    );
    let audit = std::fs::read_to_string(&audit_path).expect("audit");
    let rejected = audit.matches("\"agent_rejected\"").count();
    assert!(rejected <= 12, "{rejected} agent_rejected entries");
    assert!(
        audit.len() < 64 * 1024,
        "audit log grew to {} bytes",
        audit.len()
    );

    // More than a few concurrent streams on one connection wait: the 5th
    // stream opens only once an earlier one has ended.
    let mut open = Vec::new();
    for _ in 0..4 {
        open.push(FakeAgent::open(channel.clone()).await.expect("stream"));
    }
    let fifth = tokio::time::timeout(
        Duration::from_millis(1500),
        FakeAgent::open(channel.clone()),
    );
    assert!(fifth.await.is_err(), "a 5th concurrent stream was accepted");
    drop(open);

    // 2,000 made-up probe ids from a certified agent: refused, no series,
    // memory flat.
    let mut a = FakeAgent::connect(&c.grpc_url()).await.expect("agent");
    a.hello("us-1", "us-east").await.expect("hello");
    let before = rss_kb(pid);
    let now = now_ms();
    for chunk in 0..20u64 {
        let batch = (0..100u64)
            .map(|i| {
                let seq = chunk * 100 + i + 1;
                result("us-1", "us-east", seq, &format!("made-up-{seq}"), true, now)
            })
            .collect();
        let ack = a.batch(batch, 0).await.expect("batch");
        assert_eq!(ack.refused.len(), 100);
    }
    let after = rss_kb(pid);
    assert!(
        after < before + 20 * 1024,
        "RSS grew from {before} kB to {after} kB"
    );
    let (_, probes) = get(&client, format!("{}/api/v1/probes", c.api)).await;
    assert!(!probes.contains("made-up"), "{probes}");
}

#[tokio::test]
async fn a_late_escalation_blocks_the_gate_when_it_arrives() {
    let dir = TempDir::new("attack-escalation");
    let c = CoordinatorFixture::start(&dir, CATALOG).await;
    let client = reqwest::Client::new();
    let mut us = FakeAgent::connect(&c.grpc_url()).await.expect("us");
    us.hello("us-1", "us-east").await.expect("hello");
    let now = now_ms();
    let ok = (1..=5)
        .map(|s| result("us-1", "us-east", s, "us-login", true, now - 1_000))
        .collect();
    us.batch(ok, 0).await.expect("batch");
    let (status, v) = gate(&c, &client, "no-escalation").await;
    assert_eq!(
        (status, v["decision"].as_str()),
        (200, Some("pass")),
        "{v:#}"
    );

    // An escalation that ran 20 minutes ago (spooled through an outage)
    // arrives now: it blocks for the 5 minutes after it arrived.
    let mut late = result("us-1", "us-east", 6, "us-login", false, now - 20 * 60_000);
    late.outcome = Outcome::Failure as i32;
    late.failure_class = FailureClass::Escalation as i32;
    let ack = us.batch(vec![late], 0).await.expect("late");
    assert_eq!((ack.acked_seq, ack.refused.len()), (6, 0));
    let v = wait_for(Duration::from_secs(10), "the gate to block", || async {
        let (status, v) = gate(&c, &client, "no-escalation").await;
        (status == 503).then_some(v)
    })
    .await;
    let reasons = v["reasons"].to_string();
    assert!(reasons.contains("escalation"), "{reasons}");
}

#[tokio::test]
async fn a_disconnected_agent_is_down_only_after_agent_down_after() {
    let dir = TempDir::new("attack-down");
    let c = CoordinatorFixture::start_with(&dir, CATALOG, "fleet:\n  agent_down_after: 2s\n").await;
    let client = reqwest::Client::new();
    let mut a = FakeAgent::connect(&c.grpc_url()).await.expect("agent");
    a.hello("us-1", "us-east").await.expect("hello");
    wait_for(Duration::from_secs(10), "the agent to be up", || async {
        let a = c.agent(&client, "us-1").await?;
        (a["status"] == "up").then_some(())
    })
    .await;
    drop(a);
    // Gracefully gone: still up right after (a restart is not an outage)...
    let seen = wait_for(
        Duration::from_secs(10),
        "the disconnect to be recorded",
        || async {
            let a = c.agent(&client, "us-1").await?;
            (a["connected"] == false).then_some(a)
        },
    )
    .await;
    assert_eq!(seen["status"], "up", "{seen}");
    // ...and down once silent for longer than agent_down_after.
    wait_for(Duration::from_secs(10), "the agent to be down", || async {
        let a = c.agent(&client, "us-1").await?;
        (a["status"] == "down").then_some(())
    })
    .await;
}
