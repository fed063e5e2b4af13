//! `authpulse-agent --config FILE`: the binary edge of the agent library.
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "authpulse-agent",
    version,
    about = "Runs identity probes assigned by an authpulse coordinator and streams the results.",
    after_help = "Example:\n  authpulse-agent --config /etc/authpulse/agent.yaml\n\n\
        agent.yaml:\n  agent_id: eu-west-1a\n  region: eu-west\n  coordinator: https://coordinator.internal:7070   # or a list of URLs\n  tls:\n    cert: /etc/authpulse/eu-west-1a.pem     # authpulse certs agent ...\n    key: /etc/authpulse/eu-west-1a.key\n    ca: /etc/authpulse/ca.pem               # signed the coordinator's certificate\n  listen: 127.0.0.1:9464\n  secrets_dir: /run/secrets/authpulse\n\n\
        Exit status: 0 stopped cleanly, 1 failed to start or while running, 2 usage or config file error."
)]
struct Args {
    /// Agent configuration file (YAML or TOML).
    #[arg(long, env = "AUTHPULSE_AGENT_CONFIG")]
    config: PathBuf,
    /// Plain-text gRPC to the coordinator, no client certificate (same as
    /// `insecure: true`; logged as a warning). For a trusted network only.
    #[arg(long)]
    insecure: bool,
    /// Log lines: text on a terminal and JSON otherwise (auto), or always one of them.
    #[arg(long, value_name = "FORMAT", env = "AUTHPULSE_LOG_FORMAT",
          value_parser = authpulse_process::log_format_parser())]
    log_format: Option<authpulse_process::LogFormat>,
}

/// Exit status as for every authpulse binary: 0 stopped cleanly, 1 failed
/// to start or while running, 2 a usage or config file error.
#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    authpulse_process::init_logging_as(args.log_format);
    let cfg = match authpulse_agent::AgentConfig::load(&args.config, args.insecure) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("authpulse-agent: {e:#}");
            return ExitCode::from(2);
        }
    };
    match run(cfg).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("authpulse-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cfg: authpulse_agent::AgentConfig) -> anyhow::Result<()> {
    let metrics = authpulse_agent::telemetry::install_recorder().context("metrics recorder")?;
    let mut stop = authpulse_process::ShutdownSignal::install();
    let agent = authpulse_agent::Agent::start(cfg, metrics).await?;
    if let Some(addr) = agent.http_addr {
        println!("listening on http://{addr}");
    }
    stop.recv().await;
    tracing::info!("shutting down");
    agent.shutdown().await;
    Ok(())
}
