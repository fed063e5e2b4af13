//! `authpulse standalone`: a coordinator and an in-process agent in one
//! process on embedded defaults (SQLite, the example catalog).
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

pub(crate) async fn standalone(
    catalog: Vec<PathBuf>,
    data_dir: PathBuf,
    listen: SocketAddr,
    region: String,
    secrets_dir: Option<PathBuf>,
    insecure_open_api: bool,
) -> anyhow::Result<ExitCode> {
    crate::init_logging();
    let agent_data_dir = data_dir.join("agent");
    let config = authpulse_coordinator::config::CoordinatorConfig {
        http_listen: listen,
        data_dir,
        catalog,
        api: authpulse_coordinator::api_access::ApiConfig {
            insecure_open: insecure_open_api,
            ..Default::default()
        },
        ..Default::default()
    };
    // The agent is in this process and reaches the coordinator over
    // in-memory connections: no gRPC port, so no other local process can
    // pose as the agent (or as anything else) to the coordinator.
    let (coordinator, connections) = authpulse_coordinator::start_in_process(config).await?;
    let agent_config = authpulse_agent::AgentConfig {
        agent_id: "standalone".into(),
        region,
        labels: Default::default(),
        coordinator: authpulse_agent::config::Coordinators::new(Vec::new()),
        tls: None,
        insecure: false,
        listen: None,
        data_dir: agent_data_dir,
        secrets_dir,
        max_concurrency: 64,
        spool_max_bytes: authpulse_agent::spool::DEFAULT_MAX_BYTES,
        in_process: Some(authpulse_agent::in_process::InProcessConnector::new(
            connections,
        )),
    };
    let agent =
        authpulse_agent::Agent::start(agent_config, authpulse_coordinator::metrics_handle())
            .await?;
    // Handlers first, then the announcement (a signal right after it must
    // find them in place).
    let mut stop = authpulse_process::ShutdownSignal::install();
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    println!("listening on http://{}", coordinator.http_addr());
    loop {
        tokio::select! {
            _ = stop.recv() => break,
            _ = hup.recv() => {
                if let Err(e) = coordinator.reload_catalog().await {
                    tracing::error!(errors = %e, "catalog reload refused; keeping the running catalog");
                }
            }
        }
    }
    agent.shutdown().await;
    coordinator.shutdown().await;
    Ok(ExitCode::SUCCESS)
}
