//! Waiting for the signals that stop a process (SIGTERM, Ctrl-C), installed
//! before the process announces readiness.

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
