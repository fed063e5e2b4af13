//! Probe kinds. Each kind is one file with one entry point of the same shape,
//! readable top to bottom like a blackbox_exporter prober: it takes its typed
//! spec and the run's context and returns a [`ProbeOutcome`]. This module owns
//! the outcome shape, the run context and the dispatch from a catalog entry.
pub mod http;
pub mod oidc_discovery;

use std::time::Duration;

use authpulse_proto::catalog::{KindSpec, ProbeDef};
use authpulse_proto::v1::FailureClass;
use tokio::time::Instant;

use crate::http::{NetContext, Session, Timings};
use crate::secrets::{Redactor, SecretStore};

/// Why a run or a step failed.
#[derive(Clone, Debug, PartialEq)]
pub struct Failure {
    pub class: FailureClass,
    pub message: String,
}

impl Failure {
    pub fn new(class: FailureClass, message: impl Into<String>) -> Failure {
        Failure {
            class,
            message: message.into(),
        }
    }
}

impl From<crate::http::HttpError> for Failure {
    fn from(e: crate::http::HttpError) -> Failure {
        Failure::new(e.class, e.message)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct StepOutcome {
    pub name: String,
    pub kind: String,
    pub failure: Option<Failure>,
    pub timings: Timings,
    pub detail: String,
}

/// What one run of a probe produced. Details are redacted before they leave
/// [`run`].
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeOutcome {
    pub failure: Option<Failure>,
    pub timings: Timings,
    pub steps: Vec<StepOutcome>,
    pub detail: String,
}

impl ProbeOutcome {
    pub fn success(&self) -> bool {
        self.failure.is_none()
    }

    /// Builds the run's outcome from its steps: the first failing step
    /// decides the class, timings add up.
    pub fn from_steps(steps: Vec<StepOutcome>, total: Duration) -> ProbeOutcome {
        let mut timings = Timings::default();
        for s in &steps {
            timings.absorb(&s.timings);
        }
        timings.total = total;
        let failure = steps.iter().find_map(|s| {
            s.failure
                .as_ref()
                .map(|f| Failure::new(f.class, format!("step `{}`: {}", s.name, f.message)))
        });
        let detail = match &failure {
            Some(f) => f.message.clone(),
            None => steps
                .iter()
                .map(|s| format!("{}: {}", s.name, s.detail))
                .collect::<Vec<_>>()
                .join("; "),
        };
        ProbeOutcome {
            failure,
            timings,
            steps,
            detail,
        }
    }

    fn failed(failure: Failure, total: Duration) -> ProbeOutcome {
        ProbeOutcome {
            detail: failure.message.clone(),
            failure: Some(failure),
            timings: Timings {
                total,
                ..Timings::default()
            },
            steps: Vec::new(),
        }
    }
}

/// Everything a probe may use during one run.
pub struct RunContext<'a> {
    pub session: Session<'a>,
    pub secrets: &'a SecretStore,
    pub redactor: Redactor,
    pub started: Instant,
}

impl RunContext<'_> {
    pub fn deadline(&self) -> Instant {
        self.session.deadline()
    }
}

/// The one signature every probe kind implements.
pub trait Probe {
    fn run(&self, ctx: &mut RunContext<'_>) -> impl Future<Output = ProbeOutcome> + Send;
}

/// Runs one probe once, bounded by its timeout, and redacts the result.
pub async fn run(probe: &ProbeDef, net: &NetContext, secrets: &SecretStore) -> ProbeOutcome {
    let started = Instant::now();
    let deadline = started + probe.timeout;
    let mut ctx = RunContext {
        session: Session::new(net, deadline),
        secrets,
        redactor: Redactor::default(),
        started,
    };
    let body = async {
        match &probe.spec {
            KindSpec::Http(spec) => spec.run(&mut ctx).await,
            KindSpec::OidcDiscovery(spec) => spec.run(&mut ctx).await,
        }
    };
    // Probes honour the deadline phase by phase; this outer bound (with a
    // little grace) catches anything that does not.
    let outcome = match tokio::time::timeout_at(deadline + Duration::from_millis(250), body).await {
        Ok(o) => o,
        Err(_) => ProbeOutcome::failed(
            Failure::new(
                FailureClass::Timeout,
                format!(
                    "timed out after {}",
                    humantime::format_duration(probe.timeout)
                ),
            ),
            started.elapsed(),
        ),
    };
    redact(outcome, &ctx.redactor)
}

fn redact(mut o: ProbeOutcome, r: &Redactor) -> ProbeOutcome {
    o.detail = r.redact(&o.detail);
    if let Some(f) = &mut o.failure {
        f.message = r.redact(&f.message);
    }
    for s in &mut o.steps {
        s.detail = r.redact(&s.detail);
        if let Some(f) = &mut s.failure {
            f.message = r.redact(&f.message);
        }
    }
    o
}

/// Short text of a response body for details: bounded, one line.
pub fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let trimmed = one_line.trim();
    if trimmed.chars().count() > 200 {
        format!("{}…", trimmed.chars().take(200).collect::<String>())
    } else {
        trimmed.to_string()
    }
}

pub fn ms(d: Duration) -> String {
    format!("{:.1}ms", d.as_secs_f64() * 1000.0)
}
