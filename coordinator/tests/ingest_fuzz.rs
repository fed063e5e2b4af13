//! Property test of the ingest trust boundary: random Hellos and random
//! `ProbeResult`s (valid, borderline and hostile: any seq, any time, any
//! enum value, huge durations, made-up probes and steps, long strings) go
//! through the real gRPC service, then every read endpoint is asked. No
//! stream may hang or panic the server, every answer is an ack or a reject,
//! nothing stored breaks admission's rules, and no endpoint answers 5xx or
//! a body that isn't JSON. Series stay bounded by the catalog.
mod common;

use std::collections::BTreeSet;

use authpulse_proto::v1::agent_message::Msg as AgentMsg;
use authpulse_proto::v1::coordinator_message::Msg as CoordMsg;
use authpulse_proto::v1::{AgentMessage, Hello, ProbeResult, ResultBatch, StepResult, Timings};
use common::{AgentConn, Harness, http_get, now_ms, start_default};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

const PROBES: &[&str] = &["discovery", "eu-health", "us-health"];

fn probe_id() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(PROBES).prop_map(str::to_string),
        1 => "[a-z0-9-]{1,40}",
        1 => ".{0,300}",
    ]
}

fn started(now: i64) -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => (now - 3_600_000)..(now + 60_000),
        1 => any::<i64>(),
        1 => Just(i64::MAX),
        1 => Just(i64::MIN),
        1 => (now + 1_000_000)..(now + 10_000_000_000),
    ]
}

fn micros() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => 0u64..5_000_000,
        1 => any::<u64>(),
        1 => Just(u64::MAX),
    ]
}

fn enum_value() -> impl Strategy<Value = i32> {
    prop_oneof![4 => 0i32..14, 1 => any::<i32>()]
}

fn timings() -> impl Strategy<Value = Option<Timings>> {
    proptest::option::of(
        (
            proptest::option::of(micros()),
            proptest::option::of(micros()),
            micros(),
        )
            .prop_map(|(dns_us, ttfb_us, total_us)| Timings {
                dns_us,
                ttfb_us,
                total_us,
                ..Default::default()
            }),
    )
}

fn step() -> impl Strategy<Value = StepResult> {
    (
        ".{0,40}",
        ".{0,20}",
        enum_value(),
        enum_value(),
        timings(),
        ".{0,100}",
    )
        .prop_map(
            |(name, kind, outcome, failure_class, timings, detail)| StepResult {
                name,
                kind,
                outcome,
                failure_class,
                timings,
                detail,
            },
        )
}

fn result(now: i64) -> impl Strategy<Value = ProbeResult> {
    (
        probe_id(),
        started(now),
        micros(),
        enum_value(),
        enum_value(),
        timings(),
        prop_oneof![4 => proptest::collection::vec(step(), 0..4), 1 => proptest::collection::vec(step(), 60..80)],
        prop_oneof![4 => ".{0,200}", 1 => "x{17000}"],
    )
        .prop_map(
            |(probe_id, started_unix_ms, duration_us, outcome, failure_class, timings, steps, detail)| {
                ProbeResult {
                    probe_id,
                    started_unix_ms,
                    duration_us,
                    outcome,
                    failure_class,
                    timings,
                    steps,
                    detail,
                    ..Default::default()
                }
            },
        )
}

/// A Hello: mostly well-formed, sometimes with hostile fields.
fn hello() -> impl Strategy<Value = (String, String, u32)> {
    (
        prop_oneof![6 => Just("eu-west".to_string()), 3 => Just("us-east".to_string()), 1 => ".{0,80}"],
        prop_oneof![6 => "[0-9.]{1,10}", 1 => ".{0,100}", 1 => Just("v".repeat(100_000))],
        prop_oneof![6 => Just(0u32), 1 => 1u32..100],
    )
}

#[derive(Debug, Clone)]
struct Case {
    region: String,
    version: String,
    labels: u32,
    results: Vec<ProbeResult>,
    /// Renumber the results 1.. (a valid stream) or keep random seqs.
    renumber: bool,
    low_watermark: u64,
}

fn case(now: i64) -> impl Strategy<Value = Case> {
    (
        hello(),
        proptest::collection::vec(result(now), 1..30),
        prop_oneof![8 => Just(true), 1 => Just(false)],
        prop_oneof![4 => Just(0u64), 1 => any::<u64>()],
    )
        .prop_map(
            |((region, version, labels), results, renumber, low_watermark)| Case {
                region,
                version,
                labels,
                results,
                renumber,
                low_watermark,
            },
        )
}

/// Sends one case on a fresh stream of agent `agent_id`; returns the seqs
/// the coordinator stored (acked and not refused) or `None` when the
/// stream was rejected.
async fn drive(h: &Harness, agent_id: &str, mut c: Case) -> Result<Option<BTreeSet<u64>>, String> {
    let mut conn = AgentConn::open(h.running.grpc_addr()).await;
    conn.send(AgentMessage {
        msg: Some(AgentMsg::Hello(Hello {
            agent_id: agent_id.into(),
            region: c.region.clone(),
            version: c.version.clone(),
            labels: (0..c.labels)
                .map(|i| (format!("k{i}"), "v".into()))
                .collect(),
            sent_unix_ms: now_ms(),
            ..Default::default()
        })),
    })
    .await;
    match conn.next().await {
        Ok(Some(CoordMsg::Ack(_))) => {}
        Ok(Some(CoordMsg::Reject(_))) | Err(_) | Ok(None) => return Ok(None),
        Ok(Some(other)) => return Err(format!("unexpected first answer {other:?}")),
    }
    let mut sent = BTreeSet::new();
    for (i, r) in c.results.iter_mut().enumerate() {
        r.agent_id = agent_id.into();
        r.region = c.region.clone();
        if c.renumber {
            r.seq = i as u64 + 1;
        }
        sent.insert(r.seq);
    }
    conn.send(AgentMessage {
        msg: Some(AgentMsg::Results(ResultBatch {
            results: c.results.clone(),
            low_watermark: c.low_watermark,
        })),
    })
    .await;
    loop {
        match conn.next().await {
            Ok(Some(CoordMsg::Assignment(_))) => continue,
            Ok(Some(CoordMsg::Ack(ack))) => {
                let refused: BTreeSet<u64> = ack.refused.iter().map(|r| r.seq).collect();
                if !refused.is_subset(&sent) {
                    return Err(format!("refused seqs {refused:?} were never sent"));
                }
                if let Some(top) = sent.iter().next_back()
                    && ack.acked_seq > *top
                {
                    return Err(format!(
                        "ack {} past the highest seq sent {top}",
                        ack.acked_seq
                    ));
                }
                return Ok(Some(sent.difference(&refused).copied().collect()));
            }
            Ok(Some(CoordMsg::Reject(_))) | Err(_) => return Ok(None),
            Ok(None) => return Err("stream ended without an answer".into()),
        }
    }
}

const ENDPOINTS: &[&str] = &[
    "/api/v1/probes",
    "/api/v1/slos",
    "/api/v1/agents",
    "/api/v1/alerts",
    "/api/v1/gates",
    "/api/v1/probes/eu-health/latency",
    "/api/v1/ui/grid",
    "/api/v1/ui/gates",
    "/api/v2/summary.json",
    "/api/v2/components.json",
    "/api/v2/incidents.json",
];

#[test]
fn random_results_and_hellos_never_break_ingest_or_readers() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let h = rt.block_on(start_default());
    let now = now_ms();
    let mut runner = TestRunner::new(Config {
        cases: 40,
        failure_persistence: None,
        ..Config::default()
    });
    let n = std::sync::atomic::AtomicU32::new(0);
    let outcome = runner.run(&case(now), |c| {
        let agent_id = format!(
            "fuzz-{}",
            n.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let stored = rt
            .block_on(drive(&h, &agent_id, c))
            .map_err(TestCaseError::fail)?;
        let results = rt.block_on(h.running.store().recent_results(i64::MIN, 1_000));
        let mut results = results.map_err(|e| TestCaseError::fail(e.to_string()))?;
        results.retain(|r| r.agent_id == agent_id);
        for r in &results {
            // What got in obeys admission.
            prop_assert!(PROBES.contains(&r.probe_id.as_str()), "{}", r.probe_id);
            prop_assert!(r.started_ms <= now_ms() + 120_000, "{}", r.started_ms);
            prop_assert!(r.duration_us <= 15_000_000, "{}", r.duration_us);
            prop_assert!(r.outcome == 1 || r.outcome == 2, "{}", r.outcome);
        }
        let got: BTreeSet<u64> = results.iter().map(|r| r.seq).collect();
        if let Some(stored) = stored {
            prop_assert_eq!(got, stored);
        }
        for path in ENDPOINTS {
            let (status, body) = rt.block_on(http_get(h.running.http_addr(), path));
            prop_assert!(status == 200 || status == 503, "{path}: {status} {body}");
            prop_assert!(
                serde_json::from_str::<serde_json::Value>(&body).is_ok(),
                "{path}: not JSON: {body}"
            );
        }
        Ok(())
    });
    if let Err(e) = outcome {
        panic!("{e}");
    }
    // Series are bounded by the catalog, whatever was sent.
    let probes = rt.block_on(common::http_json(h.running.http_addr(), "/api/v1/probes"));
    for p in probes["probes"].as_array().into_iter().flatten() {
        let id = p["probe_id"].as_str().unwrap_or_default();
        assert!(PROBES.contains(&id), "unexpected series {p}");
    }
    rt.block_on(h.running.shutdown());
}
