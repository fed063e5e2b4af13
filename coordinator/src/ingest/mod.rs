//! The agent-facing gRPC service: one bidirectional stream per agent.
//!
//! A stream starts with the agent's `Hello`; the coordinator answers with an
//! `Ack` carrying the stored acknowledged seq first (a restarted agent learns
//! from it where its numbering continues), then the `Assignment` for the
//! agent's region. Result batches are stored idempotently, the batches of
//! all streams that arrive together in one transaction (`group_commit`),
//! and only after the commit does the ack advance, to the highest
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
use std::time::Duration;

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

mod acks;
mod group_commit;
mod hello;
mod session;

pub use acks::AckTracker;
use acks::MAX_ACK;
pub use group_commit::{GroupCommit, MAX_GROUP_RESULTS};
use hello::first_hello;
use session::{RefusalAudit, Session};

/// Largest message accepted from an agent. Larger ones are refused by tonic
/// with `OUT_OF_RANGE`, ending only that stream.
pub const MAX_MESSAGE_BYTES: usize = 8 * 1024 * 1024;

/// A connection that doesn't say who it is within this time is dropped.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(30);

/// HTTP/2 streams one agent connection may have open at once.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 4;

/// Results all streams together may have sent and not yet seen acked: each
/// stream is told its share in every ack (`max_unacked_results`). At the
/// SQLite writer's ~100k results/s this is ~0.15 s of work queued, so an
/// ack's latency stays a few commits however many agents stream; one agent
/// alone may still keep [`IN_FLIGHT_PER_STREAM_MAX`] in flight.
pub const IN_FLIGHT_RESULTS: u64 = 16_000;
/// Bounds of one stream's share of [`IN_FLIGHT_RESULTS`]: the larger is the
/// agent's own limit (there is no point offering more); the smaller keeps
/// a full batch of a busy agent possible with thousands connected.
pub const IN_FLIGHT_PER_STREAM_MAX: u64 = 5_000;
pub const IN_FLIGHT_PER_STREAM_MIN: u64 = 100;

/// Streams that have not yet said Hello, across all connections; more are
/// refused at once (each costs a task and a Hello timeout).
const MAX_PENDING_HELLOS: usize = 1024;

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
        "Time to store one group of result batches (one transaction)"
    );
    group_commit::describe_metrics();
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
                spec_json: p.to_wire_json(),
            })
            .collect(),
    }
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
    /// Stores the batches of all streams, several per transaction.
    commit: GroupCommit,
    /// Agents with a live stream (what the connected gauge shows).
    live_streams: AtomicU64,
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
        self.update_gauge(&sessions);
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
        self.update_gauge(&sessions);
    }

    fn update_gauge(&self, sessions: &HashMap<String, Slot>) {
        let n = sessions.values().filter(|s| s.current.is_some()).count();
        self.live_streams.store(n as u64, Ordering::Relaxed);
        metrics::gauge!("authpulse_coordinator_agents_connected").set(n as f64);
    }

    /// This stream's share of [`IN_FLIGHT_RESULTS`], told in every ack.
    fn in_flight_share(&self) -> u64 {
        in_flight_share(self.live_streams.load(Ordering::Relaxed))
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
                commit: GroupCommit::start(store.clone()),
                live_streams: AtomicU64::new(0),
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
/// One stream's share of [`IN_FLIGHT_RESULTS`] with `streams` connected.
pub fn in_flight_share(streams: u64) -> u64 {
    (IN_FLIGHT_RESULTS / streams.max(1)).clamp(IN_FLIGHT_PER_STREAM_MIN, IN_FLIGHT_PER_STREAM_MAX)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_in_flight_budget_is_shared_and_bounded() {
        assert_eq!(in_flight_share(0), IN_FLIGHT_PER_STREAM_MAX);
        assert_eq!(in_flight_share(1), IN_FLIGHT_PER_STREAM_MAX);
        assert_eq!(in_flight_share(100), 160);
        assert_eq!(in_flight_share(10_000), IN_FLIGHT_PER_STREAM_MIN);
        // Whatever the count, the streams together stay near the budget
        // until the per-stream floor takes over.
        for n in [4u64, 10, 37, 100, 160] {
            assert!(n * in_flight_share(n) <= IN_FLIGHT_RESULTS, "{n}");
        }
    }
}
