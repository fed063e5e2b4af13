//! What every authpulse binary does at its edge: JSON logs on stderr with an
//! `AUTHPULSE_LOG` filter, and waiting for the signals that stop it.
/// Third-party targets that log credentials at debug/trace (aws-sigv4
/// prints the signing identity, access key id included): capped at `info`
/// whatever `AUTHPULSE_LOG` asks for, since secrets must never reach a log.
const CREDENTIAL_LOGGERS: &[&str] = &["aws_sigv4=info", "aws_smithy_runtime_api=info"];

pub fn init_logging() {
    let mut filter = tracing_subscriber::EnvFilter::try_from_env("AUTHPULSE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    for directive in CREDENTIAL_LOGGERS {
        if let Ok(d) = directive.parse() {
            filter = filter.add_directive(d);
        }
    }
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// SIGTERM/Ctrl-C, registered when created: install it before announcing
/// readiness, or a SIGTERM sent right after the announcement kills the
/// process without a clean shutdown.
pub struct ShutdownSignal {
    term: Option<tokio::signal::unix::Signal>,
}

impl ShutdownSignal {
    pub fn install() -> ShutdownSignal {
        let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
        if let Err(e) = &term {
            tracing::warn!(error = %e, "cannot install the SIGTERM handler; only Ctrl-C stops cleanly");
        }
        ShutdownSignal { term: term.ok() }
    }

    /// Resolves on SIGTERM or Ctrl-C.
    pub async fn recv(&mut self) {
        match &mut self.term {
            Some(term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}
