//! The agent protocol against a real coordinator over 127.0.0.1: idempotent
//! storage, contiguous acks, rejections that end one stream but not the
//! server, assignments by region and on catalog change.
mod common;

use std::time::{Duration, Instant};

use authpulse_proto::catalog::probe_from_json;
use authpulse_proto::v1::agent_message::Msg as AgentMsg;
use authpulse_proto::v1::{AgentMessage, Heartbeat};
use common::*;
use tonic::Code;

async fn stored(h: &Harness, probe: &str) -> u64 {
    let (_, total) = h
        .running
        .store()
        .slo_counts(&[probe.to_string()], 0, None)
        .await
        .expect("counts");
    total
}

#[tokio::test]
async fn idempotent_ingest_and_contiguous_acks() {
    let h = start_default().await;
    let addr = h.running.grpc_addr();
    let (mut a, ack, _) = AgentConn::hello(addr, "agent-1", "eu-west").await;
    assert_eq!(ack, 0, "a new agent starts from 0");

    // The same batch twice: stored once, acked the same.
    let twice = seqs("agent-1", "eu-west", "discovery", &[1, 2]);
    assert_eq!(a.batch(twice.clone(), 0).await, 2);
    assert_eq!(a.batch(twice, 0).await, 2);
    assert_eq!(stored(&h, "discovery").await, 2);

    // A gap holds the ack back until it fills.
    assert_eq!(
        a.batch(seqs("agent-1", "eu-west", "discovery", &[4]), 0)
            .await,
        2
    );
    assert_eq!(
        a.batch(seqs("agent-1", "eu-west", "discovery", &[3]), 0)
            .await,
        4
    );
    assert_eq!(stored(&h, "discovery").await, 4);

    // Heartbeats are accepted silently.
    a.send(AgentMessage {
        msg: Some(AgentMsg::Heartbeat(Heartbeat {
            sent_unix_ms: now_ms(),
            unacked: 0,
            ..Default::default()
        })),
    })
    .await;

    // A restarted agent learns where to continue from the first ack.
    drop(a);
    let (_a, ack, _) = AgentConn::hello(addr, "agent-1", "eu-west").await;
    assert_eq!(ack, 4);

    let metrics = authpulse_coordinator::metrics_handle().render();
    assert!(
        metrics.contains("authpulse_coordinator_results_duplicate_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains("authpulse_coordinator_results_ingested_total{region=\"eu-west\"}"),
        "{metrics}"
    );
    h.running.shutdown().await;
}

#[tokio::test]
async fn low_watermark_settles_what_the_agent_dropped() {
    let h = start_default().await;
    let (mut a, ack, _) = AgentConn::hello(h.running.grpc_addr(), "agent-2", "us-east").await;
    assert_eq!(ack, 0);
    // Seqs 1..=9 were dropped by the agent's bounded spool.
    assert_eq!(
        a.batch(seqs("agent-2", "us-east", "discovery", &[10, 11]), 10)
            .await,
        11
    );
    // A watermark can't settle seqs the agent never sent: alone, it moves
    // nothing past the highest seq seen (a forged u64::MAX neither)...
    assert_eq!(a.batch(vec![], 15).await, 11);
    assert_eq!(a.batch(vec![], u64::MAX).await, 11);
    // ...and with the result that carries it, it settles the dropped 12..14.
    assert_eq!(
        a.batch(seqs("agent-2", "us-east", "discovery", &[15]), 15)
            .await,
        15
    );
    assert_eq!(
        h.running.store().acked_seq("agent-2").await.expect("ack"),
        15,
        "the ack is persisted"
    );
    h.running.shutdown().await;
}

#[tokio::test]
async fn violations_are_rejected_and_the_server_keeps_serving() {
    let h = start_default().await;
    let addr = h.running.grpc_addr();

    // No hello first.
    let mut c = AgentConn::open(addr).await;
    c.send(batch(seqs("x", "eu-west", "discovery", &[1]), 0))
        .await;
    let (reason, status) = c.expect_reject().await;
    assert!(reason.contains("first message must be Hello"), "{reason}");
    assert_eq!(status.code(), Code::InvalidArgument);

    // Invalid agent id.
    let mut c = AgentConn::open(addr).await;
    c.send(hello("Not_Valid", "eu-west")).await;
    let (reason, status) = c.expect_reject().await;
    assert!(reason.contains("invalid agent_id"), "{reason}");
    assert_eq!(status.code(), Code::InvalidArgument);

    // A result for another region.
    let (mut c, _, _) = AgentConn::hello(addr, "agent-3", "eu-west").await;
    c.send(batch(
        vec![result("agent-3", "us-east", 1, "discovery", true)],
        0,
    ))
    .await;
    let (reason, status) = c.expect_reject().await;
    assert_eq!(
        reason,
        r#"result for region "us-east" from an agent of region "eu-west""#
    );
    assert_eq!(status.code(), Code::PermissionDenied);

    // A result naming another agent.
    let (mut c, _, _) = AgentConn::hello(addr, "agent-3", "eu-west").await;
    c.send(batch(
        vec![result("agent-9", "eu-west", 1, "discovery", true)],
        0,
    ))
    .await;
    let (reason, status) = c.expect_reject().await;
    assert!(
        reason.contains("result for agent \"agent-9\" from agent \"agent-3\""),
        "{reason}"
    );
    assert_eq!(status.code(), Code::PermissionDenied);

    // Seq 0.
    let (mut c, _, _) = AgentConn::hello(addr, "agent-3", "eu-west").await;
    c.send(batch(
        vec![result("agent-3", "eu-west", 0, "discovery", true)],
        0,
    ))
    .await;
    let (reason, status) = c.expect_reject().await;
    assert!(reason.contains("seq 0"), "{reason}");
    assert_eq!(status.code(), Code::InvalidArgument);

    // Nothing of the rejected batches was stored, and a good stream works.
    assert_eq!(stored(&h, "discovery").await, 0);
    let (mut c, _, _) = AgentConn::hello(addr, "agent-3", "eu-west").await;
    assert_eq!(
        c.batch(seqs("agent-3", "eu-west", "discovery", &[1]), 0)
            .await,
        1
    );

    let metrics = authpulse_coordinator::metrics_handle().render();
    assert!(
        metrics
            .contains("authpulse_coordinator_rejected_streams_total{reason=\"region_mismatch\"}"),
        "{metrics}"
    );
    h.running.shutdown().await;
}

#[tokio::test]
async fn oversized_message_ends_only_that_stream() {
    let h = start_default().await;
    let addr = h.running.grpc_addr();
    let (mut c, _, _) = AgentConn::hello(addr, "agent-big", "eu-west").await;
    let mut big = result("agent-big", "eu-west", 1, "discovery", false);
    big.detail = "x".repeat(9 * 1024 * 1024);
    c.send(batch(vec![big], 0)).await;
    // The server's decoder refuses it; the stream ends with that status.
    let status = c
        .next()
        .await
        .expect_err("an oversized message ends the stream");
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert_eq!(stored(&h, "discovery").await, 0);

    let (mut c, ack, _) = AgentConn::hello(addr, "agent-big", "eu-west").await;
    assert_eq!(ack, 0);
    assert_eq!(
        c.batch(seqs("agent-big", "eu-west", "discovery", &[1]), 0)
            .await,
        1
    );
    h.running.shutdown().await;
}

#[tokio::test]
async fn assignment_follows_region() {
    let h = start_default().await;
    let addr = h.running.grpc_addr();
    let ids = |a: &authpulse_proto::v1::Assignment| {
        a.probes.iter().map(|p| p.id.clone()).collect::<Vec<_>>()
    };

    let (_eu, _, eu) = AgentConn::hello(addr, "agent-eu", "eu-west").await;
    assert_eq!(ids(&eu), ["discovery", "eu-health"]);
    let (_us, _, us) = AgentConn::hello(addr, "agent-us", "us-east").await;
    assert_eq!(ids(&us), ["discovery", "us-health"]);
    let (_ap, _, ap) = AgentConn::hello(addr, "agent-ap", "ap-south").await;
    assert_eq!(ids(&ap), ["discovery"]);

    assert_eq!(eu.version, h.running.catalog_version());
    let d = &eu.probes[0];
    assert_eq!(
        (d.kind.as_str(), d.interval_ms, d.timeout_ms),
        ("oidc_discovery", 30_000, 5_000)
    );
    let parsed = probe_from_json(&d.spec_json).expect("spec_json is a valid probe");
    assert_eq!(parsed.id, "discovery");
    assert_eq!(eu.probes[1].kind, "http");
    h.running.shutdown().await;
}

#[tokio::test]
async fn catalog_change_is_pushed_and_bad_reload_is_refused() {
    let h = start_default().await;
    let (mut eu, _, first) = AgentConn::hello(h.running.grpc_addr(), "agent-eu", "eu-west").await;

    // Reloading the same files changes nothing.
    h.running.reload_catalog().await.expect("reload");
    assert_eq!(h.running.catalog_version(), first.version);

    let extra = "  - id: eu-extra\n    kind: http\n    regions: [eu-west]\n    url: https://idp.example.com/x\n";
    let changed = CATALOG.replace("slos:\n", &format!("{extra}slos:\n"));
    std::fs::write(&h.catalog_path, changed).expect("write");
    h.running.reload_catalog().await.expect("reload");
    let pushed = eu.expect_assignment().await;
    assert!(pushed.version > first.version);
    assert!(pushed.probes.iter().any(|p| p.id == "eu-extra"));

    std::fs::write(&h.catalog_path, "probes:\n  - id: Broken\n").expect("write");
    let errs = h
        .running
        .reload_catalog()
        .await
        .expect_err("invalid catalog");
    assert!(!errs.0.is_empty());
    assert_eq!(
        h.running.catalog_version(),
        pushed.version,
        "the running catalog stays"
    );
    assert!(h.running.catalog().probe("eu-extra").is_some());
    h.running.shutdown().await;
}

#[tokio::test]
async fn newer_stream_of_the_same_agent_wins() {
    let h = start_default().await;
    let addr = h.running.grpc_addr();
    let (mut old, _, _) = AgentConn::hello(addr, "agent-dup", "eu-west").await;
    assert_eq!(
        old.batch(seqs("agent-dup", "eu-west", "discovery", &[1, 2]), 0)
            .await,
        2
    );

    let (mut new, ack, _) = AgentConn::hello(addr, "agent-dup", "eu-west").await;
    assert_eq!(ack, 2, "the newer stream sees what the older stored");
    let status = old.next().await.expect_err("older stream ends");
    assert_eq!(status.code(), Code::Aborted);
    assert_eq!(
        new.batch(seqs("agent-dup", "eu-west", "discovery", &[3]), 0)
            .await,
        3
    );

    let agents = h.running.store().agents().await.expect("agents");
    let a = agents
        .iter()
        .find(|a| a.info.agent_id == "agent-dup")
        .expect("agent row");
    assert!(a.connected);
    h.running.shutdown().await;
}

#[tokio::test]
async fn disconnect_is_recorded() {
    let h = start_default().await;
    let (a, _, _) = AgentConn::hello(h.running.grpc_addr(), "agent-gone", "eu-west").await;
    drop(a);
    let deadline = Instant::now() + WAIT;
    loop {
        let agents = h.running.store().agents().await.expect("agents");
        let row = agents
            .iter()
            .find(|a| a.info.agent_id == "agent-gone")
            .expect("agent row");
        if !row.connected {
            assert_eq!(row.info.labels.get("host").map(String::as_str), Some("ci"));
            break;
        }
        assert!(Instant::now() < deadline, "agent still marked connected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    h.running.shutdown().await;
}

#[tokio::test]
async fn shutdown_ends_streams_with_unavailable() {
    let h = start_default().await;
    let (mut a, _, _) = AgentConn::hello(h.running.grpc_addr(), "agent-s", "eu-west").await;
    let started = Instant::now();
    let shutdown = tokio::spawn(h.running.shutdown());
    let end = a.next().await;
    match end {
        Err(status) => assert_eq!(status.code(), Code::Unavailable, "{status:?}"),
        Ok(other) => panic!("expected UNAVAILABLE, got {other:?}"),
    }
    tokio::time::timeout(WAIT, shutdown)
        .await
        .expect("shutdown finishes in time")
        .expect("shutdown task");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "graceful shutdown took {:?}",
        started.elapsed()
    );
    // Keep the temp dir alive until the store is closed.
    drop(h.dir);
}
