//! `authpulse-coordinator`: runs the coordinator from a config file until
//! SIGTERM or Ctrl-C; SIGHUP reloads the catalog. Logs are on stderr (text
//! on a terminal, JSON otherwise; `--log-format`); stdout carries only the `listening on` / `grpc on` lines that scripts
//! and the end-to-end tests wait for.
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use authpulse_coordinator::{CoordinatorConfig, start};
use authpulse_proto::catalog::CatalogErrors;
use clap::Parser;

const EXAMPLE: &str = "\
Example:
  authpulse-coordinator --config coordinator.yaml

  # coordinator.yaml
  grpc_listen: 0.0.0.0:7070
  http_listen: 0.0.0.0:8080
  data_dir: /var/lib/authpulse
  catalog: [/etc/authpulse/catalog.yaml]
  raw_retention: 7d
  tls:                  # mTLS: agents present certificates signed by client_ca
    cert: /etc/authpulse/coordinator.pem
    key: /etc/authpulse/coordinator.key
    client_ca: /etc/authpulse/ca.pem
  # insecure: true      # instead of tls: plaintext, agents not authenticated
  api:                  # HTTP API tokens; without any, a non-loopback http_listen is refused
    tokens:             # (unless --insecure-open-api)
      - { name: ci, token_file: /etc/authpulse/tokens/ci, scopes: [gate] }

Make a dev CA and certificates with `authpulse certs init` / `authpulse certs agent`.

Every key can be overridden from the environment, e.g.
  AUTHPULSE_COORDINATOR__HTTP_LISTEN=127.0.0.1:9000
Log level: AUTHPULSE_LOG (default info), e.g. AUTHPULSE_LOG=authpulse_coordinator=debug;
at run time: PUT /api/v1/admin/log-level {\"filter\": \"debug,hyper=info\"} (scope admin)
Signals: SIGHUP reloads the catalog, SIGTERM/Ctrl-C stop gracefully.
Exit status: 0 stopped cleanly, 1 failed to start or while running (the catalog is
invalid, a port is taken, the database is unreachable), 2 usage or config file error.";

/// Receives probe results from authpulse agents, stores them, computes SLOs
/// and serves the HTTP API, /metrics, /healthz and /readyz.
#[derive(Parser, Debug)]
#[command(name = "authpulse-coordinator", version, after_help = EXAMPLE)]
struct Args {
    /// Config file (YAML or TOML). Without it, defaults and environment overrides apply.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Plain-text gRPC, agents not authenticated (same as `insecure: true`;
    /// logged as a warning). For a trusted network only.
    #[arg(long)]
    insecure: bool,
    /// Serve the protected HTTP endpoints (SLOs, gates, admin) without API
    /// tokens on a non-loopback address. Without tokens and without this
    /// flag, such a coordinator refuses to start.
    #[arg(long)]
    insecure_open_api: bool,
    /// Log lines: text on a terminal and JSON otherwise (auto), or always one of them.
    #[arg(long, value_name = "FORMAT", env = "AUTHPULSE_LOG_FORMAT",
          value_parser = authpulse_process::log_format_parser())]
    log_format: Option<authpulse_process::LogFormat>,
}

#[tokio::main]
async fn main() -> ExitCode {
    // Before anything touches TLS: exactly one process-wide crypto provider.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let args = Args::parse();
    // Shared with the agent: JSON (or text) on stderr, credential loggers
    // capped, and a filter that `PUT /api/v1/admin/log-level` changes at run time.
    authpulse_process::init_logging_as(args.log_format);

    let config = match CoordinatorConfig::load(args.config.as_deref(), args.insecure) {
        Ok(mut c) => {
            c.api.insecure_open |= args.insecure_open_api;
            c
        }
        Err(e) => {
            eprintln!("authpulse-coordinator: {e}");
            return ExitCode::from(2);
        }
    };
    let running = match start(config).await {
        Ok(r) => r,
        Err(e) => {
            match e.downcast_ref::<CatalogErrors>() {
                // One problem per line, as `authpulse validate` prints them.
                Some(errs) => eprintln!("authpulse-coordinator: the catalog is invalid:\n{errs}"),
                None => eprintln!("authpulse-coordinator: {e:#}"),
            }
            return ExitCode::FAILURE;
        }
    };
    // Handlers before the announcement: a SIGTERM sent right after it must
    // find them in place, or the process dies without a clean shutdown.
    let signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("authpulse-coordinator: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on http://{}", running.http_addr());
        let _ = writeln!(out, "grpc on {}", running.grpc_addr());
        let _ = out.flush();
    }

    let code = signals.wait(&running).await;
    running.shutdown().await;
    code
}

struct Signals {
    hup: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            hup: signal(SignalKind::hangup())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    /// Reloads on SIGHUP until asked to stop; the exit code says whether the
    /// stop was requested (success) or a server failed.
    async fn wait(mut self, running: &authpulse_coordinator::Running) -> ExitCode {
        loop {
            tokio::select! {
                _ = self.hup.recv() => {
                    tracing::info!("SIGHUP: reloading the catalog");
                    // Errors are logged by reload_catalog; the old catalog stays.
                    let _ = running.reload_catalog().await;
                }
                _ = self.term.recv() => return ExitCode::SUCCESS,
                _ = tokio::signal::ctrl_c() => return ExitCode::SUCCESS,
                _ = running.stopped() => return ExitCode::FAILURE,
            }
        }
    }
}
