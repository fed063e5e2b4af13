//! Coordinators in high availability on one real PostgreSQL: two replicas
//! with agents split between them answer SLO queries with the same
//! numbers; `kill -9` of the leader moves its agents to the survivor
//! (nothing lost, nothing doubled) and the leader lock with them, and the
//! page that was already sent is not sent again. And a graceful stop under
//! load: SIGTERM during heavy ingest loses nothing that was acknowledged.
use std::time::{Duration, Instant};

use authpulse_tests::capture::{CaptureServer, Captured};
use authpulse_tests::fleet::{AgentFixture, CoordinatorFixture, free_port, metric};
use authpulse_tests::postgres::PgDatabase;
use authpulse_tests::{TempDir, wait_for};
use serde_json::Value;
use sqlx::Connection;

const WAIT: Duration = Duration::from_secs(60);
const DOWN_SLO: &str = "down-availability";

fn catalog(up_url: &str, down_url: &str) -> String {
    let mut s = String::from("probes:\n");
    for i in 0..4 {
        s.push_str(&format!(
            "  - id: up-{i}\n    kind: http\n    url: {up_url}\n    interval: 1s\n    timeout: 800ms\n"
        ));
    }
    s.push_str(&format!(
        "  - id: down\n    kind: http\n    url: {down_url}\n    interval: 1s\n    timeout: 800ms\n\
         slos:\n  - id: up-availability\n    probes: [up-0, up-1, up-2, up-3]\n    objective: 99\n    window: 1h\n\
         \x20 - id: {DOWN_SLO}\n    probes: [down]\n    objective: 99\n    window: 1h\n"
    ));
    s
}

fn pages_fired(reqs: &[Captured]) -> usize {
    reqs.iter()
        .map(Captured::json)
        .filter(|b| b["slo"] == DOWN_SLO && b["severity"] == "page" && b["status"] == "firing")
        .count()
}

async fn metrics_of(client: &reqwest::Client, c: &CoordinatorFixture) -> Option<String> {
    client
        .get(format!("{}/metrics", c.api))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()
}

/// The numbers of `/api/v1/slos` that must agree between replicas.
async fn slo_numbers(client: &reqwest::Client, c: &CoordinatorFixture) -> Option<Vec<Value>> {
    let v: Value = client
        .get(format!("{}/api/v1/slos", c.api))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    Some(
        v["slos"]
            .as_array()?
            .iter()
            .map(|s| serde_json::json!([s["id"], s["good"], s["total"], s["regions"]]))
            .collect(),
    )
}

/// Per agent: (stored rows, highest seq, acked seq, stored_total) from the database.
async fn stored(url: &str) -> Vec<(String, i64, i64, i64, i64)> {
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT agent_id, COUNT(*), MAX(seq) FROM results GROUP BY agent_id ORDER BY agent_id",
    )
    .fetch_all(&mut conn)
    .await
    .expect("results");
    let mut out = Vec::new();
    for (agent, count, max) in rows {
        let (acked, total): (i64, i64) =
            sqlx::query_as("SELECT acked_seq, stored_total FROM agents WHERE agent_id = $1")
                .bind(&agent)
                .fetch_one(&mut conn)
                .await
                .expect("agent row");
        out.push((agent, count, max, acked, total));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_coordinators_share_postgres_and_survive_kill_9_of_the_leader() {
    let pg = PgDatabase::create().await;
    let up = CaptureServer::start(|_| 200).await;
    let hook = CaptureServer::start(|_| 200).await;
    // Nothing listens there: every run of `down` fails to connect.
    let down_url = format!("http://127.0.0.1:{}/", free_port());
    let catalog = catalog(&up.url("/health"), &down_url);
    let extra = format!(
        "database: {}\nalerting:\n  webhook:\n    url: {}\n",
        pg.url,
        hook.url("/hook")
    );
    let (dir1, dir2) = (TempDir::new("ap-ha-1"), TempDir::new("ap-ha-2"));
    let client = reqwest::Client::new();

    let mut c1 = CoordinatorFixture::start_with(&dir1, &catalog, &extra).await;
    wait_for(WAIT, "replica 1 to lead", || async {
        (metric(
            &metrics_of(&client, &c1).await?,
            "authpulse_coordinator_leader",
        ) == 1.0)
            .then_some(())
    })
    .await;
    let c2 = CoordinatorFixture::start_with(&dir2, &catalog, &extra).await;
    // Same catalog source, same assignment version on both.
    let v1 = metric(
        &metrics_of(&client, &c1).await.expect("m1"),
        "authpulse_coordinator_catalog_version",
    );
    let m2 = metrics_of(&client, &c2).await.expect("m2");
    assert_eq!(v1, metric(&m2, "authpulse_coordinator_catalog_version"));
    assert_eq!(
        metric(&m2, "authpulse_coordinator_leader"),
        0.0,
        "one leader"
    );

    let both_1 = format!("[{}, {}]", c1.grpc_url(), c2.grpc_url());
    let both_2 = format!("[{}, {}]", c2.grpc_url(), c1.grpc_url());
    let mut agents = vec![
        AgentFixture::start(&dir1, "ha-a1", &both_1, "").await,
        AgentFixture::start(&dir1, "ha-a2", &both_1, "").await,
        AgentFixture::start(&dir2, "ha-a3", &both_2, "").await,
        AgentFixture::start(&dir2, "ha-a4", &both_2, "").await,
    ];

    // The leader pages once for the failing probe.
    wait_for(WAIT, "the page for the failing probe", || async {
        (pages_fired(&hook.requests()) == 1).then_some(())
    })
    .await;
    // The follower mirrors the leader's alert state (it sends nothing itself).
    let firing_line =
        format!("authpulse_slo_alert_firing{{slo=\"{DOWN_SLO}\",severity=\"page\"}} 1");
    wait_for(WAIT, "the follower to show the page as firing", || async {
        metrics_of(&client, &c2)
            .await?
            .contains(&firing_line)
            .then_some(())
    })
    .await;
    // Both replicas ingest: each has live agent streams of its own.
    for c in [&c1, &c2] {
        wait_for(WAIT, "agents streaming to each replica", || async {
            let m = metrics_of(&client, c).await?;
            (metric(&m, "authpulse_coordinator_agents_connected") >= 2.0).then_some(())
        })
        .await;
    }

    // kill -9 the leader.
    c1.kill().await;
    let killed = Instant::now();
    wait_for(
        Duration::from_secs(15),
        "replica 2 to take the lead",
        || async {
            (metric(
                &metrics_of(&client, &c2).await?,
                "authpulse_coordinator_leader",
            ) == 1.0)
                .then_some(())
        },
    )
    .await;
    let takeover = killed.elapsed();
    // Its agents fail over to replica 2.
    wait_for(WAIT, "all four agents on replica 2", || async {
        let m = metrics_of(&client, &c2).await?;
        (metric(&m, "authpulse_coordinator_agents_connected") == 4.0).then_some(())
    })
    .await;
    // The new leader took over the firing page and evaluated twice since:
    // it must not page again.
    let evals = |m: &str| metric(m, "authpulse_coordinator_alert_evaluations_total");
    let before = evals(&metrics_of(&client, &c2).await.expect("m2"));
    wait_for(WAIT, "two evaluations by the new leader", || async {
        (evals(&metrics_of(&client, &c2).await?) >= before + 2.0).then_some(())
    })
    .await;
    assert_eq!(
        pages_fired(&hook.requests()),
        1,
        "the page was sent again after the leader moved"
    );
    let m2 = metrics_of(&client, &c2).await.expect("m2");
    assert!(
        m2.contains(&format!(
            "authpulse_slo_alert_firing{{slo=\"{DOWN_SLO}\",severity=\"page\"}} 1"
        )),
        "the new leader holds the page: {m2}"
    );

    // The killed replica comes back (as a follower) and both answer alike.
    c1.restart().await;
    wait_for(WAIT, "every agent's spool drained", || async {
        for a in &agents {
            if a.metric(&client, "authpulse_agent_spool_depth").await? != 0.0 {
                return None;
            }
        }
        Some(())
    })
    .await;
    for a in &mut agents {
        a.kill().await;
    }
    // Nothing lost (no gap up to the highest seq), nothing doubled (the
    // per-agent stored count equals the rows), acks never ahead of storage.
    let rows = stored(&pg.url).await;
    assert_eq!(rows.len(), 4, "{rows:?}");
    for (agent, count, max, acked, total) in &rows {
        assert_eq!(count, max, "{agent}: a gap in the stored seqs");
        assert!(acked <= max, "{agent}: acked {acked} beyond stored {max}");
        assert_eq!(total, count, "{agent}: stored_total counts a result twice");
    }
    let mut conn = sqlx::PgConnection::connect(&pg.url).await.expect("connect");
    let (minute_total, results): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT CAST(SUM(total) AS BIGINT) FROM minute_counts WHERE threshold_us = 0),
                (SELECT COUNT(*) FROM results)",
    )
    .fetch_one(&mut conn)
    .await
    .expect("sums");
    assert_eq!(
        minute_total, results,
        "SLO aggregates count every result once"
    );

    let numbers = wait_for(
        WAIT,
        "both replicas to report the same SLO numbers",
        || async {
            let a = slo_numbers(&client, &c1).await?;
            let b = slo_numbers(&client, &c2).await?;
            (a == b).then_some(a)
        },
    )
    .await;
    // The status page too (the follower computes it without writing).
    let component_status = |v: Value| -> Option<Vec<Value>> {
        Some(
            v["components"]
                .as_array()?
                .iter()
                .map(|c| serde_json::json!([c["name"], c["status"]]))
                .collect(),
        )
    };
    let page = wait_for(
        WAIT,
        "both replicas to show the same status page",
        || async {
            let mut views = Vec::new();
            for c in [&c1, &c2] {
                let v: Value = client
                    .get(format!("{}/api/v2/components.json", c.api))
                    .send()
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()?;
                views.push(component_status(v)?);
            }
            (views[0] == views[1]).then(|| views.remove(0))
        },
    )
    .await;
    assert!(
        page.iter().any(|c| c[1] == "major_outage"),
        "the failing probe's component is down: {page:?}"
    );
    let total: i64 = numbers.iter().filter_map(|n| n[2].as_i64()).sum();
    assert_eq!(
        total, results,
        "the SLOs count every stored result: {numbers:?}"
    );
    let m1 = metrics_of(&client, &c1).await.expect("m1");
    assert_eq!(
        metric(&m1, "authpulse_coordinator_leader"),
        0.0,
        "one leader after rejoin"
    );
    eprintln!("leader takeover after kill -9: {takeover:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_heavy_ingest_loses_nothing_acknowledged() {
    let dir = TempDir::new("ap-drain");
    let up = CaptureServer::start(|_| 200).await;
    let catalog = authpulse_tests::fleet::busy_catalog(&up.url("/"), 150);
    let mut coord = CoordinatorFixture::start(&dir, &catalog).await;
    let mut agents = Vec::new();
    for i in 0..3 {
        agents.push(AgentFixture::start(&dir, &format!("drain-{i}"), &coord.grpc_url(), "").await);
    }
    let client = reqwest::Client::new();
    wait_for(WAIT, "heavy ingest (2,000 results acked)", || async {
        let mut acked = 0.0;
        for a in &agents {
            acked += a
                .metric(&client, "authpulse_agent_results_acked_total")
                .await?;
        }
        (acked >= 2_000.0).then_some(())
    })
    .await;

    let started = Instant::now();
    let status = coord.process.as_mut().expect("running").terminate().await;
    let took = started.elapsed();
    assert_eq!(status, Some(0), "clean exit on SIGTERM");
    // Bounded: the drain gives streams 10 s at most.
    assert!(took < Duration::from_secs(15), "shutdown took {took:?}");
    let log = coord.log();
    assert!(log.contains("coordinator stopped"), "{log}");
    coord.process = None;

    // What each agent was told is acknowledged, read after the coordinator
    // is gone (the agents keep running and keep their spools).
    let mut acked_by_agent = Vec::new();
    for a in &agents {
        let acked = a
            .metric(&client, "authpulse_agent_results_acked_total")
            .await
            .expect("agent metrics");
        acked_by_agent.push((a.id.clone(), acked as i64));
    }
    for a in &mut agents {
        a.kill().await;
    }
    let store = authpulse_coordinator::store::Store::open(&dir.path().join("coordinator-data"))
        .await
        .expect("open the stopped coordinator's database");
    for (agent, acked) in acked_by_agent {
        let highest = store.highest_stored_seq(&agent).await.expect("highest") as i64;
        let seqs: Vec<u64> = (1..=highest as u64).collect();
        let present = store.stored_seqs(&agent, &seqs).await.expect("seqs").len() as i64;
        assert_eq!(present, highest, "{agent}: stored seqs have a gap");
        assert!(
            highest >= acked,
            "{agent}: {acked} results acknowledged but only {highest} stored"
        );
    }
    eprintln!("graceful shutdown under load took {took:?}");
}
