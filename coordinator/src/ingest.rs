//! The agent-facing gRPC service: one bidirectional stream per agent.
//!
//! A stream starts with the agent's `Hello`; the coordinator answers with an
//! `Ack` carrying the stored acknowledged seq first (a restarted agent learns
//! from it where its numbering continues), then the `Assignment` for the
//! agent's region. Result batches are stored idempotently in one transaction
//! each, and only after the commit does the ack advance, to the highest
//! *contiguous* stored seq, so an ack never covers a result that is not on
//! disk. Anything a stream must not do (no hello, a hello for another agent or
//! region than its mTLS client certificate names, results for another agent
//! or region, seq 0) gets a `Reject` with the reason, then the stream ends with
//! a gRPC status; other streams are unaffected.
//!
//! One agent id has at most one live stream: when it connects again (say its
//! old TCP connection is half-dead), the newer stream wins and the older one
//! ends. A per-agent lock orders the two, so the new stream reads the ack only
//! after the old one has written its last.
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use authpulse_proto::identity::AgentIdentity;
use authpulse_proto::v1::agent_message::Msg as AgentMsg;
use authpulse_proto::v1::agent_service_server::{AgentService, AgentServiceServer};
use authpulse_proto::v1::coordinator_message::Msg as CoordMsg;
use authpulse_proto::v1::{
    Ack, AgentMessage, Assignment, CoordinatorMessage, FailureClass, Hello, Outcome,
    ProbeAssignment, ProbeResult, RefusedResult, Reject, RejectKind, ResultBatch,
};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::{Code, Request, Response, Status, Streaming};

use crate::CatalogSnapshot;
use crate::admission::{self, RegionRules, Window, quoted};
use crate::agent_tls::AgentConnectInfo;
use crate::fleet::{AgentHealth, FleetConfig, skew_at};
use crate::store::{AgentInfo, Store, now_ms};

/// Largest message accepted from an agent. Larger ones are refused by tonic
/// with `OUT_OF_RANGE`, ending only that stream.
pub const MAX_MESSAGE_BYTES: usize = 8 * 1024 * 1024;

/// A connection that doesn't say who it is within this time is dropped.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(30);

/// HTTP/2 streams one agent connection may have open at once.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 4;

/// Streams that have not yet said Hello, across all connections; more are
/// refused at once (each costs a task and a Hello timeout).
const MAX_PENDING_HELLOS: usize = 1024;

/// Longest accepted agent id; regions follow the catalog's id rule (63).
const MAX_AGENT_ID_LEN: usize = 128;
const MAX_REGION_LEN: usize = 63;
/// Caps on the rest of a Hello (it is recorded, audited and listed).
const MAX_VERSION_LEN: usize = 64;
const MAX_LABELS: usize = 32;
const MAX_LABEL_KEY_LEN: usize = 63;
const MAX_LABEL_VALUE_LEN: usize = 256;

/// Audit entries for rejected streams, per reason label and minute; the
/// rest are counted and reported in the next entry of that label.
const AUDIT_REJECTS_PER_MINUTE: u32 = 10;
/// A stream's refused results are audited at most this often, summed.
const AUDIT_REFUSALS_EVERY_MS: i64 = 60_000;

/// Registers metric descriptions (HELP lines). Call once per service.
pub fn describe_metrics() {
    metrics::describe_counter!(
        "authpulse_coordinator_results_ingested_total",
        "Probe results newly stored, by region of the reporting agent"
    );
    metrics::describe_counter!(
        "authpulse_coordinator_results_duplicate_total",
        "Probe results received again after they were already stored (agent resends)"
    );
    metrics::describe_counter!(
        "authpulse_coordinator_batches_total",
        "Result batches committed"
    );
    metrics::describe_counter!(
        "authpulse_coordinator_rejected_streams_total",
        "Agent streams ended by the coordinator for a protocol or authorization violation"
    );
    metrics::describe_counter!(
        "authpulse_coordinator_results_refused_total",
        "Probe results refused at ingest (never stored), by `code`: unassigned_probe, \
         unknown_step, too_many_steps, future_timestamp, expired_timestamp, \
         duration_out_of_range, unknown_enum, inconsistent_outcome, oversized_string"
    );
    metrics::describe_counter!(
        "authpulse_probe_results_total",
        "Probe results newly stored, by `probe` and `region` (the SLI's total events)"
    );
    metrics::describe_counter!(
        "authpulse_probe_results_good_total",
        "Probe results newly stored with outcome success (availability good events), by `probe` and `region`"
    );
    metrics::describe_gauge!(
        "authpulse_coordinator_agents_connected",
        "Agents with a live stream"
    );
    // Present from the start, not only after the first agent connects.
    metrics::gauge!("authpulse_coordinator_agents_connected").set(0.0);
    metrics::describe_histogram!(
        "authpulse_coordinator_ingest_commit_seconds",
        metrics::Unit::Seconds,
        "Time to store one result batch (one transaction)"
    );
}

/// Where the acknowledgement of one stream stands: the highest seq below
/// which everything is settled, and the seqs stored above it that are still
/// waiting for the gap below them to fill.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AckTracker {
    acked: u64,
    above: BTreeSet<u64>,
}

/// Acks are stored as SQLite integers.
const MAX_ACK: u64 = i64::MAX as u64;

impl AckTracker {
    pub fn new(acked: u64) -> AckTracker {
        AckTracker {
            acked: acked.min(MAX_ACK),
            above: BTreeSet::new(),
        }
    }

    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// Whether `seq` is known to be settled (stored or given up) already.
    pub fn settled(&self, seq: u64) -> bool {
        seq <= self.acked || self.above.contains(&seq)
    }

    /// Records that `seqs` are durably stored and that the agent holds
    /// nothing below `low_watermark` (0 = no statement), and returns the new ack.
    pub fn stored(&mut self, seqs: impl IntoIterator<Item = u64>, low_watermark: u64) -> u64 {
        self.above
            .extend(seqs.into_iter().filter(|s| *s > self.acked));
        if low_watermark > 0 {
            self.acked = self.acked.max((low_watermark - 1).min(MAX_ACK));
            self.above = self.above.split_off(&(self.acked + 1));
        }
        while self.acked < MAX_ACK && self.above.remove(&(self.acked + 1)) {
            self.acked += 1;
        }
        self.acked
    }
}

/// The assignment an agent of `region` gets from `snapshot`.
pub fn assignment_for(snapshot: &CatalogSnapshot, region: &str) -> Assignment {
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    Assignment {
        version: snapshot.version,
        probes: snapshot
            .catalog
            .probes_for_region(region)
            .map(|p| ProbeAssignment {
                id: p.id.clone(),
                kind: p.kind().to_string(),
                interval_ms: ms(p.interval),
                timeout_ms: ms(p.timeout),
                spec_json: p.to_json(),
            })
            .collect(),
    }
}

/// `[a-z0-9-]`, non-empty, at most `max` bytes.
fn valid_name(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// How a stream ends.
enum End {
    /// The agent closed the stream or the connection broke: nothing to send.
    Closed,
    /// A violation: send `Reject{reason}`, then the status.
    Reject {
        reason: String,
        /// Bounded metric label.
        label: &'static str,
        code: Code,
    },
    /// End with a status, no `Reject` (shutdown, superseded, storage trouble):
    /// the agent should reconnect.
    Status(Status),
}

impl End {
    fn reject(label: &'static str, code: Code, reason: String) -> End {
        End::Reject {
            reason,
            label,
            code,
        }
    }
}

type Outbox = mpsc::Sender<Result<CoordinatorMessage, Status>>;

async fn send(tx: &Outbox, msg: CoordMsg) -> Result<(), End> {
    tx.send(Ok(CoordinatorMessage { msg: Some(msg) }))
        .await
        .map_err(|_| End::Closed)
}

/// The live session of each agent id.
#[derive(Default)]
struct Slot {
    /// Held by the session currently serving the agent, for its whole life.
    lock: Arc<tokio::sync::Mutex<()>>,
    /// (session id, its cancellation) of the newest session.
    current: Option<(u64, CancellationToken)>,
}

struct Inner {
    store: Store,
    fleet: FleetConfig,
    catalog: watch::Receiver<Arc<CatalogSnapshot>>,
    sessions: Mutex<HashMap<String, Slot>>,
    next_session: AtomicU64,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    /// Told the probe ids of newly stored escalation results, right after commit.
    escalations: Option<mpsc::UnboundedSender<BTreeSet<String>>>,
    /// Agent registrations and rejected streams are recorded here.
    audit: crate::audit::AuditLog,
    /// Results started longer ago are refused (they would be pruned at once).
    raw_retention: Duration,
    /// The catalog versions results may come from.
    history: Mutex<CatalogHistory>,
    /// Streams waiting for their Hello.
    pending_hellos: Arc<Semaphore>,
    /// Rate limit of `agent_rejected` audit entries.
    reject_audit: Mutex<RejectAudit>,
}

/// The running catalog and the one before it: results in flight during a
/// reload were run under the previous version and still count.
#[derive(Default)]
struct CatalogHistory {
    current: Option<Arc<CatalogSnapshot>>,
    previous: Option<Arc<CatalogSnapshot>>,
}

impl CatalogHistory {
    /// Notes `now` as the running snapshot; returns (current, previous).
    fn observe(
        &mut self,
        now: Arc<CatalogSnapshot>,
    ) -> (Arc<CatalogSnapshot>, Option<Arc<CatalogSnapshot>>) {
        match &self.current {
            Some(c) if c.version == now.version => {}
            Some(_) => self.previous = self.current.replace(now.clone()),
            None => self.current = Some(now.clone()),
        }
        (now, self.previous.clone())
    }
}

/// Per reason label: (minute, entries written in it, suppressed since).
#[derive(Default)]
struct RejectAudit {
    by_label: HashMap<&'static str, (i64, u32, u64)>,
}

impl RejectAudit {
    /// `Some(suppressed)` when an entry may be written now.
    fn admit(&mut self, label: &'static str, now_ms: i64) -> Option<u64> {
        let minute = now_ms.div_euclid(60_000);
        let e = self.by_label.entry(label).or_insert((minute, 0, 0));
        if e.0 != minute {
            *e = (minute, 0, e.2);
        }
        if e.1 >= AUDIT_REJECTS_PER_MINUTE {
            e.2 += 1;
            return None;
        }
        e.1 += 1;
        Some(std::mem::take(&mut e.2))
    }
}

impl Inner {
    /// Admission rules for `region` from the running catalog and the one
    /// before it, reusing `cached` while the versions are unchanged.
    fn rules(&self, region: &str, cached: &mut Vec<Arc<RegionRules>>) {
        let snapshot = self.catalog.borrow().clone();
        let (current, previous) = self
            .history
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .observe(snapshot);
        let wanted: Vec<u64> = std::iter::once(current.version)
            .chain(previous.as_ref().map(|p| p.version))
            .collect();
        let have: Vec<u64> = cached.iter().map(|r| r.version).collect();
        if have == wanted {
            return;
        }
        let build = |s: &CatalogSnapshot| {
            // Reuse what was built for a version still wanted.
            cached
                .iter()
                .find(|r| r.version == s.version)
                .cloned()
                .unwrap_or_else(|| Arc::new(RegionRules::new(&s.catalog, s.version, region)))
        };
        let mut next = vec![build(&current)];
        if let Some(p) = &previous {
            next.push(build(p));
        }
        *cached = next;
    }

    /// Makes `session` the agent's current one, cancelling the previous.
    fn register(
        &self,
        agent_id: &str,
        session: u64,
    ) -> (Arc<tokio::sync::Mutex<()>>, CancellationToken) {
        let token = self.shutdown.child_token();
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = sessions.entry(agent_id.to_string()).or_default();
        if let Some((old, old_token)) = slot.current.replace((session, token.clone())) {
            tracing::info!(
                agent_id,
                old_session = old,
                new_session = session,
                "agent connected again; ending its older stream"
            );
            old_token.cancel();
        }
        let lock = slot.lock.clone();
        Self::update_gauge(&sessions);
        (lock, token)
    }

    fn is_current(&self, agent_id: &str, session: u64) -> bool {
        let sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        sessions
            .get(agent_id)
            .and_then(|s| s.current.as_ref())
            .is_some_and(|(id, _)| *id == session)
    }

    fn deregister(&self, agent_id: &str, session: u64) {
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        let mine = sessions
            .get(agent_id)
            .and_then(|s| s.current.as_ref())
            .is_some_and(|(id, _)| *id == session);
        // A newer session owns the slot (and may be waiting on its lock): leave it.
        if mine {
            sessions.remove(agent_id);
        }
        Self::update_gauge(&sessions);
    }

    fn update_gauge(sessions: &HashMap<String, Slot>) {
        let n = sessions.values().filter(|s| s.current.is_some()).count();
        metrics::gauge!("authpulse_coordinator_agents_connected").set(n as f64);
    }
}

/// Removes the session from the registry however the session task ends.
struct Registration {
    inner: Arc<Inner>,
    agent_id: String,
    session: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.inner.deregister(&self.agent_id, self.session);
    }
}

/// The `AgentService` implementation. Clone is cheap.
#[derive(Clone)]
pub struct IngestService {
    inner: Arc<Inner>,
}

impl IngestService {
    /// `shutdown` ends every stream (with `UNAVAILABLE`, so agents reconnect
    /// to the next instance); [`tasks`](Self::tasks) tells when they are done.
    pub fn new(
        store: Store,
        catalog: watch::Receiver<Arc<CatalogSnapshot>>,
        shutdown: CancellationToken,
    ) -> Self {
        describe_metrics();
        let initial = catalog.borrow().clone();
        IngestService {
            inner: Arc::new(Inner {
                store,
                fleet: FleetConfig::default(),
                catalog,
                sessions: Mutex::new(HashMap::new()),
                next_session: AtomicU64::new(1),
                shutdown,
                tasks: TaskTracker::new(),
                escalations: None,
                audit: crate::audit::AuditLog::default(),
                raw_retention: Duration::from_secs(7 * 86_400),
                // Seeded now: a reload before the first batch must still
                // leave this version as the previous one.
                history: Mutex::new(CatalogHistory {
                    current: Some(initial),
                    previous: None,
                }),
                pending_hellos: Arc::new(Semaphore::new(MAX_PENDING_HELLOS)),
                reject_audit: Mutex::new(RejectAudit::default()),
            }),
        }
    }

    /// Where to signal newly stored escalation results (the alerter pages at
    /// once); call before the service is cloned or served.
    pub fn with_escalations(mut self, tx: mpsc::UnboundedSender<BTreeSet<String>>) -> Self {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => inner.escalations = Some(tx),
            None => tracing::error!("escalation signal set after the service was shared; ignored"),
        }
        self
    }

    /// Where agent registrations and rejections are recorded; call before
    /// the service is cloned or served.
    pub fn with_audit(mut self, audit: crate::audit::AuditLog) -> Self {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => inner.audit = audit,
            None => tracing::error!("audit log set after the service was shared; ignored"),
        }
        self
    }

    /// Results started before `now - retention` are refused; call before
    /// the service is cloned or served.
    pub fn with_raw_retention(mut self, retention: Duration) -> Self {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => inner.raw_retention = retention,
            None => tracing::error!("raw retention set after the service was shared; ignored"),
        }
        self
    }

    /// Applies fleet limits; call before the service is cloned or served.
    pub fn with_fleet(mut self, fleet: FleetConfig) -> Self {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => inner.fleet = fleet,
            None => tracing::error!("fleet limits set after the service was shared; ignored"),
        }
        self
    }

    /// The tonic service with the message size limit applied.
    pub fn into_server(self) -> AgentServiceServer<IngestService> {
        AgentServiceServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    /// Session tasks, to wait for on shutdown.
    pub fn tasks(&self) -> TaskTracker {
        self.inner.tasks.clone()
    }

    /// Agents with a live stream.
    pub fn connected_agents(&self) -> usize {
        let sessions = self
            .inner
            .sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        sessions.values().filter(|s| s.current.is_some()).count()
    }
}

#[tonic::async_trait]
impl AgentService for IngestService {
    type ConnectStream = ReceiverStream<Result<CoordinatorMessage, Status>>;

    async fn connect(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        // Over mTLS (agent_tls) the connection carries the certificate's identity.
        let tls = request.extensions().get::<AgentConnectInfo>().cloned();
        let peer = request
            .remote_addr()
            .or(tls.as_ref().map(|t| t.remote_addr));
        let identity = tls.map(|t| t.identity);
        let incoming = request.into_inner();
        let (tx, rx) = mpsc::channel(32);
        let inner = self.inner.clone();
        self.inner
            .tasks
            .spawn(async move { run_session(inner, incoming, tx, peer, identity).await });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// Per-stream state after the hello.
struct Session {
    inner: Arc<Inner>,
    agent_id: String,
    region: String,
    id: u64,
    token: CancellationToken,
    acks: AckTracker,
    /// The highest seq stored when the stream started: results above it
    /// that the ack tracker hasn't seen are certainly new.
    stored_floor: u64,
    /// The highest seq stored or sent on this stream: an agent's
    /// `low_watermark` can't settle anything above it.
    highest_seen: u64,
    /// Admission rules of the catalog versions results may come from.
    rules: Vec<Arc<RegionRules>>,
    refusals: RefusalAudit,
    tx: Outbox,
}

/// Refused results waiting to be summed into the next audit entry.
#[derive(Default)]
struct RefusalAudit {
    last_ms: i64,
    by_code: BTreeMap<&'static str, u64>,
    example: Option<String>,
}

async fn run_session(
    inner: Arc<Inner>,
    mut incoming: Streaming<AgentMessage>,
    tx: Outbox,
    peer: Option<SocketAddr>,
    identity: Option<AgentIdentity>,
) {
    let peer = peer.map(|p| p.to_string()).unwrap_or_default();
    let hello = match inner.pending_hellos.clone().try_acquire_owned() {
        // Held only until the Hello is in.
        Ok(_waiting) => first_hello(&inner, &mut incoming).await,
        Err(_) => Err(End::reject(
            "too_many_streams",
            Code::ResourceExhausted,
            format!("{MAX_PENDING_HELLOS} streams are already waiting for their Hello"),
        )),
    };
    let end = match hello {
        Err(end) => end,
        Ok((hello, received_ms)) => match certificate_mismatch(identity.as_ref(), &hello) {
            Some(end) => end,
            None => {
                serve(
                    inner.clone(),
                    hello,
                    received_ms,
                    &mut incoming,
                    tx.clone(),
                    &peer,
                )
                .await
            }
        },
    };
    match end {
        End::Closed => {}
        End::Reject {
            reason,
            label,
            code,
        } => {
            tracing::warn!(peer, reason, label, "rejected agent stream");
            let audit = inner
                .reject_audit
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .admit(label, now_ms());
            // Rate-limited: a peer opening streams in a loop must not grow
            // the audit log without bound; the metric counts every one.
            if let Some(suppressed) = audit {
                inner.audit.append(
                    "agent_rejected",
                    serde_json::json!({
                        "peer": peer,
                        "reason": reason,
                        "label": label,
                        "certificate": identity.as_ref().map(|i| format!("{}/{}", i.region, i.agent_id)),
                        "suppressed_before": suppressed,
                    }),
                );
            }
            metrics::counter!("authpulse_coordinator_rejected_streams_total", "reason" => label)
                .increment(1);
            let _ = send(
                &tx,
                CoordMsg::Reject(Reject {
                    reason: reason.clone(),
                    kind: reject_kind(label) as i32,
                }),
            )
            .await;
            let _ = tx.send(Err(Status::new(code, reason))).await;
        }
        End::Status(status) => {
            let _ = tx.send(Err(status)).await;
        }
    }
}

/// Whether reconnecting can help: limits and timeouts pass, while a refused
/// identity, numbering or protocol use will be refused again the same way.
fn reject_kind(label: &str) -> RejectKind {
    match label {
        "too_many_agents" | "no_hello" | "too_many_streams" => RejectKind::Transient,
        _ => RejectKind::Permanent,
    }
}

/// An agent may only speak for the agent and region its client certificate
/// names (without TLS there is no certificate and nothing to check).
fn certificate_mismatch(identity: Option<&AgentIdentity>, hello: &Hello) -> Option<End> {
    let cert = identity?;
    (cert.agent_id != hello.agent_id || cert.region != hello.region).then(|| {
        End::reject(
            "identity_mismatch",
            Code::PermissionDenied,
            format!(
                "hello claims agent {} region {} but certificate names agent {} region {}",
                hello.agent_id, hello.region, cert.agent_id, cert.region
            ),
        )
    })
}

/// Waits for the first message, which must be a valid hello.
async fn first_hello(
    inner: &Inner,
    incoming: &mut Streaming<AgentMessage>,
) -> Result<(Hello, i64), End> {
    let first = tokio::select! {
        _ = inner.shutdown.cancelled() => return Err(End::Status(Status::unavailable("coordinator shutting down"))),
        r = tokio::time::timeout(HELLO_TIMEOUT, incoming.message()) => r,
    };
    let msg = match first {
        Err(_) => {
            return Err(End::reject(
                "no_hello",
                Code::InvalidArgument,
                format!("no Hello within {}s", HELLO_TIMEOUT.as_secs()),
            ));
        }
        Ok(Ok(Some(m))) => (m, now_ms()),
        Ok(Ok(None)) => return Err(End::Closed),
        Ok(Err(status)) => {
            tracing::warn!(error = %status, "agent stream failed before hello");
            return Err(End::Status(status));
        }
    };
    let (msg, received_ms) = msg;
    let hello = match msg.msg {
        Some(AgentMsg::Hello(h)) => h,
        other => {
            let got = match other {
                Some(AgentMsg::Results(_)) => "results",
                Some(AgentMsg::Heartbeat(_)) => "a heartbeat",
                _ => "an empty or unknown message",
            };
            return Err(End::reject(
                "no_hello",
                Code::InvalidArgument,
                format!("the first message must be Hello, got {got}"),
            ));
        }
    };
    if !valid_name(&hello.agent_id, MAX_AGENT_ID_LEN) {
        return Err(End::reject(
            "invalid_hello",
            Code::InvalidArgument,
            format!(
                "invalid agent_id {}: use 1-{MAX_AGENT_ID_LEN} characters of [a-z0-9-]",
                quoted(&hello.agent_id)
            ),
        ));
    }
    if !valid_name(&hello.region, MAX_REGION_LEN) {
        return Err(End::reject(
            "invalid_hello",
            Code::InvalidArgument,
            format!(
                "invalid region {}: use 1-{MAX_REGION_LEN} characters of [a-z0-9-]",
                quoted(&hello.region)
            ),
        ));
    }
    if let Some(why) = hello_fields_invalid(&hello) {
        return Err(End::reject("invalid_hello", Code::InvalidArgument, why));
    }
    Ok((hello, received_ms))
}

/// What is wrong with a Hello's version or labels, if anything: they are
/// stored, audited and listed, so they are bounded like everything else.
fn hello_fields_invalid(hello: &Hello) -> Option<String> {
    if hello.version.len() > MAX_VERSION_LEN || hello.version.chars().any(char::is_control) {
        return Some(format!(
            "invalid version {}: at most {MAX_VERSION_LEN} bytes, no control characters",
            quoted(&hello.version)
        ));
    }
    if hello.labels.len() > MAX_LABELS {
        return Some(format!(
            "{} labels (at most {MAX_LABELS})",
            hello.labels.len()
        ));
    }
    for (k, v) in &hello.labels {
        let key_ok = !k.is_empty()
            && k.len() <= MAX_LABEL_KEY_LEN
            && k.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
            });
        if !key_ok {
            return Some(format!(
                "invalid label key {}: 1-{MAX_LABEL_KEY_LEN} characters of [a-z0-9_.-]",
                quoted(k)
            ));
        }
        if v.len() > MAX_LABEL_VALUE_LEN || v.chars().any(char::is_control) {
            return Some(format!(
                "label {k}: value {} over {MAX_LABEL_VALUE_LEN} bytes or with control characters",
                quoted(v)
            ));
        }
    }
    None
}

fn storage_failed(what: &str, e: impl std::fmt::Display) -> End {
    tracing::error!(error = %e, "{what} failed");
    End::Status(Status::unavailable(format!(
        "coordinator storage unavailable ({what})"
    )))
}

/// Serves a stream whose hello was accepted, until it ends.
async fn serve(
    inner: Arc<Inner>,
    hello: Hello,
    received_ms: i64,
    incoming: &mut Streaming<AgentMessage>,
    tx: Outbox,
    peer: &str,
) -> End {
    if let Some(end) = over_agent_limit(&inner, &hello.agent_id) {
        return end;
    }
    let id = inner.next_session.fetch_add(1, Ordering::Relaxed);
    let (lock, token) = inner.register(&hello.agent_id, id);
    let _registration = Registration {
        inner: inner.clone(),
        agent_id: hello.agent_id.clone(),
        session: id,
    };
    // Wait until an older stream of this agent has finished writing.
    let _guard = tokio::select! {
        g = lock.lock_owned() => g,
        _ = token.cancelled() => return ended_by_token(&inner, &hello.agent_id),
    };
    let mut session = Session {
        inner: inner.clone(),
        agent_id: hello.agent_id.clone(),
        region: hello.region.clone(),
        id,
        token,
        acks: AckTracker::default(),
        stored_floor: 0,
        highest_seen: 0,
        rules: Vec::new(),
        refusals: RefusalAudit::default(),
        tx,
    };
    inner.audit.append(
        "agent_registered",
        serde_json::json!({
            "agent_id": hello.agent_id,
            "region": hello.region,
            "version": hello.version,
            "peer": peer,
            "session": id,
        }),
    );
    tracing::info!(
        agent_id = %hello.agent_id, region = %hello.region, version = %hello.version, peer, session = id,
        "agent connected"
    );
    let end = session.run(hello, received_ms, incoming).await;
    // Still the agent's current stream: it is now disconnected. (A newer
    // stream is waiting on our lock and marks it connected after us.)
    if inner.is_current(&session.agent_id, id)
        && let Err(e) = inner.store.set_connected(&session.agent_id, false).await
    {
        tracing::warn!(agent_id = %session.agent_id, error = %e, "cannot mark agent disconnected");
    }
    tracing::info!(agent_id = %session.agent_id, session = id, "agent stream ended");
    end
}

/// A new agent id beyond `max_agents` live streams is refused; a reconnecting
/// agent (its id already has a slot) always gets in.
fn over_agent_limit(inner: &Inner, agent_id: &str) -> Option<End> {
    let sessions = inner
        .sessions
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let live = sessions.values().filter(|s| s.current.is_some()).count();
    let known = sessions.get(agent_id).is_some_and(|s| s.current.is_some());
    (!known && live >= inner.fleet.max_agents).then(|| {
        End::reject(
            "too_many_agents",
            Code::ResourceExhausted,
            format!(
                "{live} agents are connected, the limit (fleet.max_agents) is {}",
                inner.fleet.max_agents
            ),
        )
    })
}

fn ended_by_token(inner: &Inner, agent_id: &str) -> End {
    if inner.shutdown.is_cancelled() {
        End::Status(Status::unavailable("coordinator shutting down"))
    } else {
        tracing::info!(
            agent_id,
            "stream superseded by a newer stream of the same agent"
        );
        End::Status(Status::aborted(
            "superseded by a newer stream of the same agent",
        ))
    }
}

impl Session {
    async fn run(
        &mut self,
        hello: Hello,
        received_ms: i64,
        incoming: &mut Streaming<AgentMessage>,
    ) -> End {
        // Our own receiver: `start` marks the snapshot it sends as seen, so
        // only later catalog changes are pushed, and none is missed between.
        let mut catalog = self.inner.catalog.clone();
        if let Err(end) = self.start(hello, received_ms, &mut catalog).await {
            return end;
        }
        let mut catalog_open = true;
        loop {
            tokio::select! {
                _ = self.token.cancelled() => return ended_by_token(&self.inner, &self.agent_id),
                changed = catalog.changed(), if catalog_open => {
                    if changed.is_err() {
                        catalog_open = false;
                        continue;
                    }
                    let snapshot = catalog.borrow_and_update().clone();
                    self.inner
                        .history
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .observe(snapshot.clone());
                    tracing::info!(agent_id = %self.agent_id, version = snapshot.version, "pushing new assignment");
                    if let Err(end) = self.push_assignment(&snapshot).await {
                        return end;
                    }
                }
                msg = incoming.message() => {
                    let received_ms = now_ms();
                    let msg = match msg {
                        Ok(Some(m)) => m,
                        Ok(None) => return End::Closed,
                        Err(status) => {
                            // Includes messages over the size limit (OUT_OF_RANGE):
                            // pass the status on so the agent learns why.
                            tracing::warn!(agent_id = %self.agent_id, error = %status, "agent stream failed");
                            return End::Status(status);
                        }
                    };
                    if let Err(end) = self.handle(msg, received_ms).await {
                        return end;
                    }
                }
            }
        }
    }

    /// Records the agent, then tells it the stored ack and its assignment.
    async fn start(
        &mut self,
        hello: Hello,
        received_ms: i64,
        catalog: &mut watch::Receiver<Arc<CatalogSnapshot>>,
    ) -> Result<(), End> {
        let health = AgentHealth {
            clock_skew_ms: skew_at(hello.sent_unix_ms, received_ms),
            spool_depth: hello.spool_depth,
            ..AgentHealth::default()
        };
        let info = AgentInfo {
            agent_id: hello.agent_id,
            region: hello.region,
            version: hello.version,
            labels: hello.labels.into_iter().collect(),
        };
        let store = &self.inner.store;
        store
            .upsert_agent(&info)
            .await
            .map_err(|e| storage_failed("recording the agent", e))?;
        self.record_health(&health).await;
        let acked = store
            .acked_seq(&self.agent_id)
            .await
            .map_err(|e| storage_failed("reading the ack", e))?;
        let highest = store
            .highest_stored_seq(&self.agent_id)
            .await
            .map_err(|e| storage_failed("reading the highest seq", e))?;
        self.acks = AckTracker::new(acked);
        self.stored_floor = highest;
        self.highest_seen = highest.max(acked);
        // The ack first: an agent that has no numbering of its own (or a
        // stale one) continues after the highest stored seq.
        send(
            &self.tx,
            CoordMsg::Ack(Ack {
                acked_seq: self.acks.acked(),
                highest_stored_seq: highest.max(acked),
                ..Default::default()
            }),
        )
        .await?;
        let snapshot = catalog.borrow_and_update().clone();
        self.push_assignment(&snapshot).await
    }

    async fn push_assignment(&self, snapshot: &CatalogSnapshot) -> Result<(), End> {
        send(
            &self.tx,
            CoordMsg::Assignment(assignment_for(snapshot, &self.region)),
        )
        .await?;
        if let Err(e) = self
            .inner
            .store
            .set_assignment_version(&self.agent_id, snapshot.version)
            .await
        {
            tracing::warn!(agent_id = %self.agent_id, error = %e, "cannot record the assignment version");
        }
        Ok(())
    }

    async fn record_health(&self, health: &AgentHealth) {
        if let Err(e) = self.inner.store.record_health(&self.agent_id, health).await {
            tracing::warn!(agent_id = %self.agent_id, error = %e, "cannot record agent health");
        }
    }

    async fn handle(&mut self, msg: AgentMessage, received_ms: i64) -> Result<(), End> {
        match msg.msg {
            Some(AgentMsg::Results(batch)) => self.batch(batch).await,
            Some(AgentMsg::Heartbeat(hb)) => {
                self.record_health(&AgentHealth {
                    clock_skew_ms: skew_at(hb.sent_unix_ms, received_ms),
                    spool_depth: hb.unacked,
                    spool_bytes: hb.spool_bytes,
                    dropped_total: hb.dropped_total,
                })
                .await;
                Ok(())
            }
            Some(AgentMsg::Hello(_)) => Err(End::reject(
                "duplicate_hello",
                Code::InvalidArgument,
                "Hello sent twice on one stream".to_string(),
            )),
            // A message kind from a newer agent: ignore it (wire evolution rule).
            None => {
                tracing::debug!(agent_id = %self.agent_id, "ignoring empty or unknown message");
                Ok(())
            }
        }
    }

    /// Checks every result belongs to this agent, stores the batch, advances
    /// and persists the ack, and sends it.
    async fn batch(&mut self, batch: ResultBatch) -> Result<(), End> {
        let max = self.inner.fleet.max_batch_results;
        if batch.results.len() > max {
            return Err(End::reject(
                "batch_too_large",
                Code::InvalidArgument,
                format!(
                    "batch of {} results exceeds fleet.max_batch_results {max}",
                    batch.results.len()
                ),
            ));
        }
        for r in &batch.results {
            if r.agent_id != self.agent_id {
                return Err(End::reject(
                    "agent_mismatch",
                    Code::PermissionDenied,
                    format!(
                        "result for agent {} from agent {}",
                        quoted(&r.agent_id),
                        quoted(&self.agent_id)
                    ),
                ));
            }
            if r.region != self.region {
                return Err(End::reject(
                    "region_mismatch",
                    Code::PermissionDenied,
                    format!(
                        "result for region {} from an agent of region {}",
                        quoted(&r.region),
                        quoted(&self.region)
                    ),
                ));
            }
            if r.seq == 0 || r.seq > MAX_ACK {
                return Err(End::reject(
                    "invalid_seq",
                    Code::InvalidArgument,
                    format!(
                        "result seq {} is invalid: sequences start at 1 and fit in 63 bits",
                        r.seq
                    ),
                ));
            }
        }
        metrics::counter!("authpulse_coordinator_batches_total").increment(1);
        if let Some(top) = batch.results.iter().map(|r| r.seq).max() {
            self.highest_seen = self.highest_seen.max(top);
        }
        // A watermark can only settle what this agent actually sent.
        let low_watermark = batch.low_watermark.min(self.highest_seen.saturating_add(1));
        let all_seqs: Vec<u64> = batch.results.iter().map(|r| r.seq).collect();
        let (results, refused) = self.admit(batch.results);
        // Before the ack tracker learns this batch: it tells resends apart.
        let fresh = self.fresh(&results).await?;
        // Refused results are settled too: the agent must not resend them.
        let acked = self.acks.stored(all_seqs, low_watermark);
        let store = &self.inner.store;
        if results.is_empty() {
            store
                .set_acked_seq(&self.agent_id, acked)
                .await
                .map_err(|e| storage_failed("recording the ack", e))?;
            return send(
                &self.tx,
                CoordMsg::Ack(Ack {
                    acked_seq: acked,
                    refused,
                    ..Default::default()
                }),
            )
            .await;
        }
        // The ack this batch earns is recorded in the batch's own
        // transaction (one commit per batch) and sent only after that
        // commit. If the commit fails the stream ends, and this session's
        // tracker with it.
        let started = Instant::now();
        let stats = store
            .insert_batch_acked(&self.agent_id, &results, Some(acked))
            .await
            .map_err(|e| storage_failed("storing results", e))?;
        metrics::histogram!("authpulse_coordinator_ingest_commit_seconds")
            .record(started.elapsed().as_secs_f64());
        metrics::counter!("authpulse_coordinator_results_ingested_total", "region" => self.region.clone())
            .increment(stats.inserted);
        metrics::counter!("authpulse_coordinator_results_duplicate_total")
            .increment(stats.duplicates);
        tracing::debug!(
            agent_id = %self.agent_id, inserted = stats.inserted, duplicates = stats.duplicates, session = self.id,
            "batch stored"
        );
        if fresh.len() as u64 != stats.inserted {
            tracing::warn!(agent_id = %self.agent_id, inserted = stats.inserted, counted = fresh.len(),
                "newly stored results miscounted for the per-probe metrics");
        }
        self.after_commit(&results, &fresh);
        send(
            &self.tx,
            CoordMsg::Ack(Ack {
                acked_seq: acked,
                refused,
                ..Default::default()
            }),
        )
        .await
    }

    /// Splits a batch into the results to store and the refused ones
    /// (admission), counting and auditing the refusals.
    fn admit(&mut self, results: Vec<ProbeResult>) -> (Vec<ProbeResult>, Vec<RefusedResult>) {
        self.inner.rules(&self.region, &mut self.rules);
        let window = Window {
            now_ms: now_ms(),
            max_age: self.inner.raw_retention,
            max_future: self.inner.fleet.max_result_skew,
        };
        let mut ok = Vec::with_capacity(results.len());
        let mut refused = Vec::new();
        for r in results {
            match admission::admit(&r, &self.rules, window) {
                Ok(()) => ok.push(r),
                Err(why) => {
                    metrics::counter!("authpulse_coordinator_results_refused_total", "code" => why.code)
                        .increment(1);
                    *self.refusals.by_code.entry(why.code).or_default() += 1;
                    if self.refusals.example.is_none() {
                        self.refusals.example = Some(format!("seq {}: {}", r.seq, why.reason));
                    }
                    refused.push(RefusedResult {
                        seq: r.seq,
                        probe_id: r.probe_id.chars().take(128).collect(),
                        code: why.code.to_string(),
                        reason: why.reason,
                    });
                }
            }
        }
        if !refused.is_empty() {
            self.audit_refusals(window.now_ms);
        }
        (ok, refused)
    }

    /// At most one audit entry per stream and minute, summing what was
    /// refused since the last one (the metric counts each at once).
    fn audit_refusals(&mut self, now: i64) {
        let due = now.saturating_sub(self.refusals.last_ms) >= AUDIT_REFUSALS_EVERY_MS;
        if !due || self.refusals.by_code.is_empty() {
            return;
        }
        let by_code = std::mem::take(&mut self.refusals.by_code);
        let example = self.refusals.example.take();
        self.refusals.last_ms = now;
        tracing::warn!(agent_id = %self.agent_id, ?by_code, example, "refused results from agent");
        self.inner.audit.append(
            "results_refused",
            serde_json::json!({
                "agent_id": self.agent_id,
                "region": self.region,
                "by_code": by_code,
                "example": example,
            }),
        );
    }
}

impl Session {
    /// Indexes into `results` of those this batch stores for the first time
    /// (the first of equal seqs). Seqs the ack tracker has seen are
    /// resends; seqs above what was stored at stream start and unseen are
    /// new; only the rest (stored by an earlier stream but not yet acked)
    /// are looked up. The per-agent stream lock keeps this exact.
    async fn fresh(&self, results: &[ProbeResult]) -> Result<Vec<usize>, End> {
        let mut seen = BTreeSet::new();
        let mut fresh: Vec<usize> = Vec::new();
        let mut unsure = Vec::new();
        for (i, r) in results.iter().enumerate() {
            if self.acks.settled(r.seq) || !seen.insert(r.seq) {
                continue;
            }
            if r.seq <= self.stored_floor {
                unsure.push(r.seq);
            }
            fresh.push(i);
        }
        if !unsure.is_empty() {
            let stored = self
                .inner
                .store
                .stored_seqs(&self.agent_id, &unsure)
                .await
                .map_err(|e| storage_failed("reading stored seqs", e))?;
            fresh.retain(|i| !stored.contains(&results[*i].seq));
        }
        Ok(fresh)
    }

    /// Counts the newly stored results per probe and region and signals
    /// escalations to the alerter.
    fn after_commit(&self, results: &[ProbeResult], fresh: &[usize]) {
        let mut escalated = BTreeSet::new();
        // Summed per series first: one counter lookup per probe and region
        // per batch, not two per result.
        let mut counts: BTreeMap<(&str, &str), (u64, u64)> = BTreeMap::new();
        for r in fresh.iter().map(|i| &results[*i]) {
            let c = counts
                .entry((r.probe_id.as_str(), r.region.as_str()))
                .or_default();
            c.0 += 1;
            c.1 += u64::from(r.outcome == Outcome::Success as i32);
            let escalation = FailureClass::Escalation as i32;
            if r.failure_class == escalation
                || r.steps.iter().any(|s| s.failure_class == escalation)
            {
                escalated.insert(r.probe_id.clone());
            }
        }
        for ((probe, region), (total, good)) in counts {
            let labels = [("probe", probe.to_string()), ("region", region.to_string())];
            metrics::counter!("authpulse_probe_results_total", &labels).increment(total);
            // Present with 0 from the first result on, so ratios have both series.
            metrics::counter!("authpulse_probe_results_good_total", &labels).increment(good);
        }
        if !escalated.is_empty()
            && let Some(tx) = &self.inner.escalations
        {
            let _ = tx.send(escalated);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_advances_over_contiguous_seqs_only() {
        let mut a = AckTracker::new(0);
        assert_eq!(a.stored([1, 2, 4], 0), 2);
        assert_eq!(a.stored([3], 0), 4);
        assert_eq!(a.stored([4, 3], 0), 4);
        assert_eq!(a.stored([6], 0), 4);
        assert_eq!(a.stored([5], 0), 6);
    }

    #[test]
    fn low_watermark_settles_below() {
        let mut a = AckTracker::new(0);
        assert_eq!(a.stored([10, 11], 10), 11);
        // Seqs the agent dropped (12..14) are settled by a later watermark.
        assert_eq!(a.stored([15, 17], 15), 15);
        assert_eq!(a.stored([], 17), 17);
        // A watermark below the ack changes nothing.
        assert_eq!(a.stored([], 3), 17);
    }

    #[test]
    fn ack_starts_from_stored() {
        let mut a = AckTracker::new(41);
        assert_eq!(a.stored([40, 41], 0), 41);
        assert_eq!(a.stored([42], 0), 42);
        let mut huge = AckTracker::new(0);
        assert_eq!(huge.stored([], u64::MAX), MAX_ACK);
    }

    #[test]
    fn names() {
        assert!(valid_name("eu-west-1", 63));
        assert!(!valid_name("", 63));
        assert!(!valid_name("EU", 63));
        assert!(!valid_name("a_b", 63));
        assert!(!valid_name(&"a".repeat(64), 63));
        assert_eq!(quoted("x\ny"), "\"x\\ny\"");
    }
}
