//! Fleet limits and health over a real coordinator on 127.0.0.1: the agent
//! limit, the batch size limit, the hello ack that rescues an agent whose
//! spool was lost, and the health an agent reports (skew, spool depth).
mod common;

use authpulse_coordinator::fleet::FleetConfig;
use authpulse_proto::v1::agent_message::Msg as AgentMsg;
use authpulse_proto::v1::coordinator_message::Msg as CoordMsg;
use authpulse_proto::v1::{AgentMessage, Heartbeat, Hello};
use common::*;
use tonic::Code;

fn fleet(max_agents: usize, max_batch_results: usize) -> FleetConfig {
    FleetConfig {
        max_agents,
        max_batch_results,
        ..FleetConfig::default()
    }
}

#[tokio::test]
async fn agents_beyond_the_limit_are_refused_with_a_reason() {
    let h = start_with_fleet(CATALOG, fleet(2, 100)).await;
    let addr = h.running.grpc_addr();
    let (_a, _, _) = AgentConn::hello(addr, "a1", "eu-west").await;
    let (_b, _, _) = AgentConn::hello(addr, "a2", "eu-west").await;
    let mut c = AgentConn::open(addr).await;
    c.send(hello("a3", "eu-west")).await;
    let (reason, status) = c.expect_reject().await;
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(reason.contains("limit (fleet.max_agents) is 2"), "{reason}");
    // A known agent reconnecting is not a new one: it still gets in.
    let (_a_again, _, _) = AgentConn::hello(addr, "a1", "eu-west").await;
}

#[tokio::test]
async fn oversized_batches_end_that_stream_only() {
    let h = start_with_fleet(CATALOG, fleet(10, 3)).await;
    let addr = h.running.grpc_addr();
    let (mut a, _, _) = AgentConn::hello(addr, "big", "eu-west").await;
    a.send(batch(seqs("big", "eu-west", "discovery", &[1, 2, 3, 4]), 0))
        .await;
    let (reason, status) = a.expect_reject().await;
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        reason.contains("batch of 4 results exceeds fleet.max_batch_results 3"),
        "{reason}"
    );
    let (mut b, _, _) = AgentConn::hello(addr, "small", "eu-west").await;
    assert_eq!(
        b.batch(seqs("small", "eu-west", "discovery", &[1, 2, 3]), 0)
            .await,
        3
    );
}

#[tokio::test]
async fn hello_ack_tells_an_agent_where_stored_results_end() {
    let h = start_default().await;
    let addr = h.running.grpc_addr();
    let (mut a, _, _) = AgentConn::hello(addr, "lost", "eu-west").await;
    // 1..=3 contiguous, 7 above a gap: acked 3, but 7 is taken.
    assert_eq!(
        a.batch(seqs("lost", "eu-west", "discovery", &[1, 2, 3, 7]), 0)
            .await,
        3
    );
    drop(a);
    let mut again = AgentConn::open(addr).await;
    again.send(hello("lost", "eu-west")).await;
    match again.next().await {
        Ok(Some(CoordMsg::Ack(ack))) => {
            assert_eq!(ack.acked_seq, 3);
            assert_eq!(
                ack.highest_stored_seq, 7,
                "an agent with a lost spool must continue after 7"
            );
        }
        other => panic!("expected the hello ack, got {other:?}"),
    }
}

#[tokio::test]
async fn agent_health_is_recorded_and_skew_flagged() {
    let h = start_default().await;
    let addr = h.running.grpc_addr();
    let mut a = AgentConn::open(addr).await;
    // An agent clock one minute ahead.
    a.send(AgentMessage {
        msg: Some(AgentMsg::Hello(Hello {
            agent_id: "skewed".into(),
            region: "eu-west".into(),
            version: "test".into(),
            sent_unix_ms: now_ms() + 60_000,
            spool_depth: 12,
            ..Default::default()
        })),
    })
    .await;
    a.expect_ack().await;
    let assignment = a.expect_assignment().await;
    a.send(AgentMessage {
        msg: Some(AgentMsg::Heartbeat(Heartbeat {
            sent_unix_ms: now_ms() + 60_000,
            unacked: 40,
            spool_bytes: 20_000,
            dropped_total: 5,
        })),
    })
    .await;
    // The heartbeat has no answer; poll the API until it shows.
    let http = h.running.http_addr();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let row = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "heartbeat never showed in the agents API"
        );
        let v = http_json(http, "/api/v1/agents").await;
        let row = v["agents"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["agent_id"] == "skewed").cloned());
        if let Some(row) = row.filter(|r| r["spool_depth"] == 40) {
            break row;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(row["status"], "up");
    assert_eq!(row["clock_skew_ok"], false, "{row}");
    let skew = row["clock_skew_ms"].as_i64().expect("skew");
    assert!((59_000..=60_500).contains(&skew), "skew {skew}");
    assert_eq!(row["spool_bytes"], 20_000);
    assert_eq!(row["dropped_total"], 5);
    assert_eq!(row["assignment_version"].as_u64(), Some(assignment.version));
}
