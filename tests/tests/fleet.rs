//! Fleet transport under failure, with the real binaries: coordinator crash,
//! agent crash, a torn spool, a network cut longer than the spool bound, and
//! catalog hot reload. The invariant everywhere: every result an agent put in
//! its spool is stored exactly once, or counted as dropped by the bound.
use std::time::{Duration, Instant};

use authpulse_tests::fault::{FaultServer, Reply};
use authpulse_tests::fleet::{
    AgentFixture, CoordinatorFixture, EMPTY_CATALOG, WAIT, busy_catalog, metric, rewrite,
};
use authpulse_tests::proxy::CuttableProxy;
use authpulse_tests::{TempDir, wait_for};

async fn target() -> FaultServer {
    FaultServer::start(|_| Reply::status(200, "ok")).await
}

/// Stops production (empty catalog) and waits until the agent has nothing
/// unacknowledged; returns (produced, last seq) as the agent reports them.
async fn drain(c: &reqwest::Client, agent: &AgentFixture) -> (f64, f64) {
    wait_for(
        WAIT,
        &format!("agent {} to drain its spool", agent.id),
        || async {
            let m = agent.metrics(c).await?;
            let idle = metric(&m, "authpulse_agent_probes_assigned") == 0.0;
            let empty = metric(&m, "authpulse_agent_results_unacked") == 0.0;
            (idle && empty).then(|| {
                (
                    metric(&m, "authpulse_agent_results_produced_total"),
                    metric(&m, "authpulse_agent_spool_last_seq"),
                )
            })
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_kill9_with_three_busy_agents_loses_and_doubles_nothing() {
    let server = target().await;
    let dir = TempDir::new("ap-fleet-ckill");
    let mut coord = CoordinatorFixture::start(&dir, &busy_catalog(&server.url("/"), 40)).await;
    let c = reqwest::Client::new();
    let mut agents = Vec::new();
    for id in ["a1", "a2", "a3"] {
        agents.push(AgentFixture::start(&dir, id, &coord.grpc_url(), "").await);
    }
    for a in &agents {
        wait_for(WAIT, "results stored for every agent", || async {
            let row = coord.agent(&c, &a.id).await?;
            (row["stored_total"].as_u64()? >= 60).then_some(())
        })
        .await;
    }
    coord.kill().await;
    // Agents keep probing into their spools while the coordinator is gone.
    for a in &agents {
        let before = a
            .metric(&c, "authpulse_agent_results_produced_total")
            .await
            .expect("metrics");
        wait_for(
            WAIT,
            "results spooled while the coordinator is down",
            || async {
                let now = a
                    .metric(&c, "authpulse_agent_results_produced_total")
                    .await?;
                (now >= before + 80.0).then_some(())
            },
        )
        .await;
    }
    coord.restart().await;
    rewrite(&coord.catalog, EMPTY_CATALOG);
    for a in &agents {
        let (produced, last_seq) = drain(&c, a).await;
        let row = wait_for(WAIT, "coordinator to have everything", || async {
            let row = coord.agent(&c, &a.id).await?;
            (row["acked_seq"].as_f64()? >= last_seq).then_some(row)
        })
        .await;
        let stored = row["stored_total"].as_f64().expect("stored_total");
        assert_eq!(
            stored, produced,
            "agent {}: stored {stored} vs produced {produced}: {row}",
            a.id
        );
        assert_eq!(
            row["acked_seq"].as_f64(),
            Some(produced),
            "contiguous, no gaps: {row}"
        );
        assert!(produced > 200.0, "a busy stream: {produced}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_kill9_mid_stream_and_torn_spool_tail() {
    let server = target().await;
    let dir = TempDir::new("ap-fleet-akill");
    let mut coord = CoordinatorFixture::start(&dir, &busy_catalog(&server.url("/"), 40)).await;
    let c = reqwest::Client::new();
    let mut agent = AgentFixture::start(&dir, "k1", &coord.grpc_url(), "").await;
    wait_for(WAIT, "results flowing", || async {
        (coord.agent(&c, "k1").await?["stored_total"].as_u64()? >= 100).then_some(())
    })
    .await;
    // Crash mid-stream: 40 results a second are being appended and sent.
    agent.kill().await;

    // Crash again, this time with results only on disk (coordinator down),
    // then tear the tail of the newest segment.
    agent.restart().await;
    coord.kill().await;
    wait_for(
        WAIT,
        "results spooled while the coordinator is down",
        || async {
            (agent.metric(&c, "authpulse_agent_results_unacked").await? >= 50.0).then_some(())
        },
    )
    .await;
    agent.kill().await;
    let newest = std::fs::read_dir(agent.spool_dir())
        .expect("spool dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .max()
        .expect("a segment");
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&newest)
            .expect("open segment");
        // A record header promising 200 bytes, followed by only a few: a torn write.
        f.write_all(&200u32.to_le_bytes()).expect("write");
        f.write_all(&[0xde, 0xad, 0xbe, 0xef, 1, 2, 3])
            .expect("write");
    }
    coord.restart().await;
    agent.restart().await;
    let torn = wait_for(
        WAIT,
        "the restarted agent to report the torn tail",
        || async {
            let v = agent
                .metric(&c, "authpulse_agent_spool_torn_bytes_total")
                .await?;
            (v > 0.0).then_some(v)
        },
    )
    .await;
    assert_eq!(torn, 11.0, "exactly the torn bytes are skipped");
    assert!(
        agent.log().contains("spool recovery skipped damaged data"),
        "{}",
        agent.log()
    );

    rewrite(&coord.catalog, EMPTY_CATALOG);
    let (_, last_seq) = drain(&c, &agent).await;
    let row = wait_for(WAIT, "everything stored", || async {
        let row = coord.agent(&c, "k1").await?;
        (row["acked_seq"].as_f64()? >= last_seq).then_some(row)
    })
    .await;
    // Every seq the agent ever handed out (persisted in its spool across
    // both crashes) is stored exactly once: no gap, no duplicate.
    assert_eq!(row["stored_total"].as_f64(), Some(last_seq), "{row}");
    assert_eq!(row["acked_seq"].as_f64(), Some(last_seq), "{row}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_cut_longer_than_the_spool_bound_drops_exactly_the_excess() {
    let server = target().await;
    let dir = TempDir::new("ap-fleet-cut");
    let coord = CoordinatorFixture::start(&dir, &busy_catalog(&server.url("/"), 40)).await;
    let proxy = CuttableProxy::start(([127, 0, 0, 1], coord.grpc_port).into()).await;
    let c = reqwest::Client::new();
    let agent = AgentFixture::start(
        &dir,
        "n1",
        &format!("http://{}", proxy.addr),
        "spool_max_bytes: 65536\n",
    )
    .await;
    wait_for(WAIT, "results flowing through the proxy", || async {
        (coord.agent(&c, "n1").await?["stored_total"].as_u64()? >= 40).then_some(())
    })
    .await;
    proxy.cut();
    wait_for(WAIT, "the spool bound to drop results", || async {
        (agent
            .metric(&c, "authpulse_agent_spool_dropped_total")
            .await?
            >= 100.0)
            .then_some(())
    })
    .await;
    proxy.restore();
    rewrite(&coord.catalog, EMPTY_CATALOG);
    let (produced, last_seq) = drain(&c, &agent).await;
    let dropped = agent
        .metric(&c, "authpulse_agent_spool_dropped_total")
        .await
        .expect("metrics");
    let row = wait_for(WAIT, "everything that was kept is stored", || async {
        let row = coord.agent(&c, "n1").await?;
        (row["acked_seq"].as_f64()? >= last_seq).then_some(row)
    })
    .await;
    let stored = row["stored_total"].as_f64().expect("stored");
    assert_eq!(
        stored + dropped,
        produced,
        "stored {stored} + dropped {dropped} = produced {produced}"
    );
    assert_eq!(
        row["dropped_total"].as_f64(),
        Some(dropped),
        "the coordinator knows the loss: {row}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_hot_reload_reaches_agents_and_bad_catalogs_change_nothing() {
    let server = target().await;
    let dir = TempDir::new("ap-fleet-reload");
    let coord = CoordinatorFixture::start(&dir, &busy_catalog(&server.url("/"), 2)).await;
    let c = reqwest::Client::new();
    let agent = AgentFixture::start(&dir, "r1", &coord.grpc_url(), "").await;
    let v1 = wait_for(WAIT, "first assignment", || async {
        let v = agent
            .metric(&c, "authpulse_agent_assignment_version")
            .await?;
        (agent.metric(&c, "authpulse_agent_probes_assigned").await? == 2.0).then_some(v)
    })
    .await;

    // A valid change reaches the agent within a second.
    let started = Instant::now();
    rewrite(&coord.catalog, &busy_catalog(&server.url("/"), 3));
    wait_for(
        Duration::from_secs(5),
        "the new assignment on the agent",
        || async {
            (agent.metric(&c, "authpulse_agent_probes_assigned").await? == 3.0).then_some(())
        },
    )
    .await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(1500),
        "change took {took:?} to reach the agent"
    );
    let v2 = agent
        .metric(&c, "authpulse_agent_assignment_version")
        .await
        .expect("metrics");
    assert!(v2 > v1);

    // An invalid change is refused with file:line, nothing changes.
    let bad =
        busy_catalog(&server.url("/"), 3).replace("interval: 1s", "interval: 1s\n    bogus: 1");
    rewrite(&coord.catalog, &bad);
    let log = wait_for(
        Duration::from_secs(10),
        "the refusal in the coordinator log",
        || async {
            let log = coord.log();
            log.contains("catalog reload refused").then_some(log)
        },
    )
    .await;
    assert!(
        log.contains("catalog.yaml:6"),
        "file:line of the problem: {log}"
    );
    assert!(log.contains("unknown field `bogus`"), "{log}");
    assert_eq!(
        agent.metric(&c, "authpulse_agent_probes_assigned").await,
        Some(3.0)
    );
    assert_eq!(
        agent.metric(&c, "authpulse_agent_assignment_version").await,
        Some(v2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_whose_data_dir_was_lost_continues_after_stored_results() {
    let server = target().await;
    let dir = TempDir::new("ap-fleet-lost");
    let coord = CoordinatorFixture::start(&dir, &busy_catalog(&server.url("/"), 20)).await;
    let c = reqwest::Client::new();
    let mut agent = AgentFixture::start(&dir, "l1", &coord.grpc_url(), "").await;
    let before = wait_for(WAIT, "results stored", || async {
        let n = coord.agent(&c, "l1").await?["stored_total"].as_u64()?;
        (n >= 50).then_some(n)
    })
    .await;
    agent.kill().await;
    std::fs::remove_dir_all(&agent.data_dir).expect("lose the data dir");
    agent.restart().await;
    // Fresh spool numbering would start at 1 and collide with stored seqs;
    // the hello ack makes it continue after them, so new results count.
    wait_for(
        WAIT,
        "new results stored after the data dir was lost",
        || async {
            let n = coord.agent(&c, "l1").await?["stored_total"].as_u64()?;
            (n >= before + 60).then_some(())
        },
    )
    .await;
    assert!(
        agent.log().contains("renumbering held results"),
        "{}",
        agent.log()
    );
}
