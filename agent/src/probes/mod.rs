//! Probe kinds. Each kind is one file with one entry point of the same shape,
//! readable top to bottom like a blackbox_exporter prober: it takes its typed
//! spec and the run's context and returns a [`ProbeOutcome`]. This module owns
//! the outcome shape, the run context (HTTP session, secrets, redaction,
//! outputs for later journey steps, memory across runs) and the dispatch
//! from a catalog entry.
pub mod authorization_code;
pub mod aws_cognito;
pub mod aws_iam_permission;
pub mod aws_sts;
pub mod client_credentials;
pub mod dns;
pub mod drift;
pub mod http;
pub mod introspect;
pub mod journey;
pub mod jwt_validate;
pub mod ldap;
pub mod oidc_discovery;
pub mod password;
pub mod permission;
pub mod refresh;
pub mod revoke;
pub mod saml_login;
pub mod saml_metadata;
pub mod scim;
pub mod tcp;
pub mod tls;
pub mod userinfo;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Map, Value as Json};

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

/// What probes remember from one run to the next, for the agent's
/// lifetime: JWKS documents (refetched on an unknown `kid`) and small
/// per-probe values (e.g. the keys and endpoints discovery saw last time, for
/// drift). Keyed by [`RunContext::scope`].
#[derive(Default)]
pub struct ProbeMemory {
    pub jwks: crate::jwt::JwksCache,
    values: Mutex<HashMap<String, Json>>,
}

/// Everything a probe may use during one run.
pub struct RunContext<'a> {
    pub session: Session<'a>,
    pub secrets: &'a SecretStore,
    pub redactor: Redactor,
    pub started: Instant,
    pub memory: &'a ProbeMemory,
    /// `<probe id>` or `<probe id>/<step name>`: the key for [`ProbeMemory`].
    pub scope: String,
    /// Values later journey steps read as `{{ steps.<name>.<key> }}`. Never
    /// sent to the coordinator.
    pub outputs: Map<String, Json>,
    /// `authpulse probe --save-pages DIR`: interactive logins save each page
    /// there, secrets hidden ([`crate::login::save`]).
    pub save_pages: Option<std::path::PathBuf>,
}

impl RunContext<'_> {
    pub fn deadline(&self) -> Instant {
        self.session.deadline()
    }

    /// Publishes a value for later journey steps.
    pub fn output(&mut self, key: &str, value: impl Into<Json>) {
        self.outputs.insert(key.to_string(), value.into());
    }

    /// Publishes a credential obtained at run time (a token): later steps
    /// may use it, and it is redacted from every detail like a secret.
    pub fn secret_output(&mut self, key: &str, value: &str) {
        self.redactor.remember(value);
        self.outputs
            .insert(key.to_string(), Json::String(value.to_string()));
    }

    /// What this probe (or step) stored under `key` in an earlier run.
    pub fn recall(&self, key: &str) -> Option<Json> {
        let values = self.memory.values.lock().ok()?;
        values.get(&format!("{}#{key}", self.scope)).cloned()
    }

    pub fn remember(&self, key: &str, value: Json) {
        if let Ok(mut values) = self.memory.values.lock() {
            values.insert(format!("{}#{key}", self.scope), value);
        }
    }
}

/// Runs one kind's body.
pub async fn dispatch(spec: &KindSpec, ctx: &mut RunContext<'_>) -> ProbeOutcome {
    match spec {
        KindSpec::Journey(s) => s.run(ctx).await,
        other => dispatch_step(other, ctx).await,
    }
}

/// Runs any kind but `journey` (journeys call this for their steps, which
/// can't be journeys; keeping it separate keeps the futures non-recursive).
pub async fn dispatch_step(spec: &KindSpec, ctx: &mut RunContext<'_>) -> ProbeOutcome {
    match spec {
        KindSpec::Http(s) => s.run(ctx).await,
        KindSpec::Tcp(s) => s.run(ctx).await,
        KindSpec::Tls(s) => s.run(ctx).await,
        KindSpec::Dns(s) => s.run(ctx).await,
        KindSpec::OidcDiscovery(s) => s.run(ctx).await,
        KindSpec::ClientCredentials(s) => s.run(ctx).await,
        KindSpec::Password(s) => s.run(ctx).await,
        KindSpec::Refresh(s) => s.run(ctx).await,
        KindSpec::AuthorizationCode(s) => s.run(ctx).await,
        KindSpec::Introspect(s) => s.run(ctx).await,
        KindSpec::Userinfo(s) => s.run(ctx).await,
        KindSpec::Revoke(s) => s.run(ctx).await,
        KindSpec::JwtValidate(s) => s.run(ctx).await,
        KindSpec::Ldap(s) => s.run(ctx).await,
        KindSpec::AwsSts(s) => s.run(ctx).await,
        KindSpec::AwsCognito(s) => s.run(ctx).await,
        KindSpec::AwsIamPermission(s) => s.run(ctx).await,
        KindSpec::Scim(s) => s.run(ctx).await,
        KindSpec::Permission(s) => s.run(ctx).await,
        KindSpec::SamlLogin(s) => s.run(ctx).await,
        KindSpec::SamlMetadata(s) => s.run(ctx).await,
        KindSpec::Journey(_) => config_failure(ctx, "journey", "a journey step can't be a journey"),
    }
}

/// A one-step outcome, for kinds that fail before doing anything (bad
/// configuration, a missing secret).
pub fn config_failure(
    ctx: &RunContext<'_>,
    kind: &str,
    message: impl Into<String>,
) -> ProbeOutcome {
    ProbeOutcome::from_steps(
        vec![StepOutcome {
            name: kind.to_string(),
            kind: kind.to_string(),
            failure: Some(Failure::new(FailureClass::Config, message)),
            timings: Timings::default(),
            detail: String::new(),
        }],
        ctx.started.elapsed(),
    )
}

/// The one signature every probe kind implements.
pub trait Probe {
    fn run(&self, ctx: &mut RunContext<'_>) -> impl Future<Output = ProbeOutcome> + Send;
}

/// Runs one probe once, bounded by its timeout, and redacts the result.
pub async fn run(
    probe: &ProbeDef,
    net: &NetContext,
    secrets: &SecretStore,
    memory: &ProbeMemory,
) -> ProbeOutcome {
    run_saving_pages(probe, net, secrets, memory, None).await
}

/// [`run`], saving the pages of interactive logins in `save_pages`.
pub async fn run_saving_pages(
    probe: &ProbeDef,
    net: &NetContext,
    secrets: &SecretStore,
    memory: &ProbeMemory,
    save_pages: Option<std::path::PathBuf>,
) -> ProbeOutcome {
    let started = Instant::now();
    let deadline = started + probe.timeout;
    let mut ctx = RunContext {
        session: Session::new(net, deadline),
        secrets,
        redactor: Redactor::default(),
        started,
        memory,
        scope: probe.id.clone(),
        outputs: Map::new(),
        save_pages,
    };
    let body = dispatch(&probe.spec, &mut ctx);
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
    ctx.session.certificates.publish(&probe.id);
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

/// Short text of a response body for details: one line, marked so that the
/// run's redaction scrubs it first and then cuts it to 200 characters (see
/// `redact`): cutting first could leave part of a secret behind. Only for
/// detail and failure text, which always passes through [`run`]'s redaction;
/// values for later steps use [`one_line`].
pub fn snippet(body: &[u8]) -> String {
    crate::redact::quote(body)
}

/// A body as one line of at most 200 characters, unmarked and unredacted
/// (a journey output, never a detail).
pub fn one_line(body: &[u8]) -> String {
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
