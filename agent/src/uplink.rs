//! The agent's side of the `Connect` stream: hello, results up in batches,
//! heartbeats; assignments and acks down. Every result is in the on-disk
//! [`Spool`] (with its sequence number) before it is sent, and leaves it only
//! when an ack covers it; after a reconnect everything unacknowledged is
//! re-sent in order. The coordinator stores on (agent id, seq), so re-sending
//! never doubles anything, and a coordinator or agent crash loses nothing.
//!
//! The coordinator's word is checked too: a `Reject` of kind permanent (or
//! an ack whose numbering this agent can't continue without passing
//! [`SEQ_MAX`]) is not retried in a loop but every [`PERMANENT_RETRY`],
//! loudly, while probing and spooling go on; acks are capped at what was
//! sent, and a batch's `low_watermark` at its last seq + 1. Results the
//! coordinator refused to store (`Ack.refused`) are settled by the ack:
//! logged (rate-limited) and counted, never resent.
//!
//! **Group commit.** A finished run is not appended on its own: the first
//! one after a commit opens a window of [`COMMIT_WINDOW`], and everything
//! that finishes within it is appended in one batch with one fdatasync, at
//! the window's end or at the next flush to the coordinator, whichever comes
//! first ([`APPEND_MAX`] results per fsync). While a window is open this
//! task doesn't even take results off the channel, so a run's end doesn't
//! wake it: the commit drains the channel. A window thus holds at most the
//! channel's capacity (1,024 runs); past it, finishing runs wait in their
//! probe tasks until the window ends (backpressure, at most one window
//! long; the run's permit is already released). Sending reads only from
//! the spool, so nothing is sent before it is durable; what a crash can lose
//! is the results of the open window (never sent, never numbered), see the
//! spool module doc. At 100 runs/s this is ~10 fdatasyncs a second instead
//! of ~100, and the per-result wake-ups go with them.
//!
//! Spool calls are short synchronous file I/O (one fsync per appended
//! batch); they run on this task through `block_in_place` so the runtime's
//! other tasks keep going.
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use authpulse_proto::catalog;
use authpulse_proto::v1::{
    Ack, AgentMessage, Heartbeat, Hello, Outcome, ProbeResult, RefusedResult, RejectKind,
    ResultBatch, StepResult, agent_message, agent_service_client::AgentServiceClient,
    coordinator_message,
};
use tokio::sync::{Mutex, mpsc, watch};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

use crate::config::AgentConfig;
use crate::http::Timings;
use crate::last_assignment::LastAssignment;
use crate::scheduler::{CompletedRun, Scheduler};
use crate::spool::{SEQ_MAX, Spool};
use crate::telemetry as t;

const BATCH_MAX: usize = 500;
/// Results appended to the spool in one fsync at most.
pub const APPEND_MAX: usize = 512;
/// Results sent but not yet acknowledged, at most: bounds what sits in
/// buffers when the coordinator is slow (backpressure reaches the spool,
/// which is on disk and bounded).
const IN_FLIGHT_MAX: u64 = 10 * BATCH_MAX as u64;
const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Longest a finished run waits in memory before it is appended to the
/// spool (group commit). As long as the flush interval: a result can't be
/// sent before the next flush anyway, so a shorter window would only add
/// fsyncs, not speed delivery up; and each flush commits first, so in a
/// session a window never outlives it.
pub const COMMIT_WINDOW: Duration = FLUSH_EVERY;
const HEARTBEAT_EVERY: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Wait before asking again after a permanent refusal: constant, so a
/// refused agent costs the coordinator one attempt per 5 minutes, and an
/// operator's fix is picked up within that without a restart.
pub const PERMANENT_RETRY: Duration = Duration::from_secs(300);
/// Refused results logged one by one per minute; the rest are summed up.
const REFUSED_LOG_PER_MINUTE: u32 = 20;

/// The coordinator refuses this agent until an operator acts: a permanent
/// `Reject`, or numbering that can't continue. (Text from the coordinator,
/// bounded; never a secret.)
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Refused(String);

/// Runs short blocking spool I/O without stalling a multi-thread runtime.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

pub struct Uplink {
    cfg: AgentConfig,
    scheduler: Arc<Mutex<Scheduler>>,
    ready: Arc<AtomicBool>,
    last_assignment: LastAssignment,
    spool: Spool,
    /// Highest seq sent on the current stream.
    sent_upto: u64,
    /// The coordinator has acked on this stream (numbering is settled).
    acked_on_stream: bool,
    /// Results this stream may have sent and not yet seen acked: the
    /// coordinator's `max_unacked_results` if it stated one, capped by
    /// [`IN_FLIGHT_MAX`].
    in_flight_limit: u64,
    /// The first ack of the current stream: what the coordinator had stored
    /// before this stream sent anything.
    stream_base_ack: u64,
    /// Anything of this spool's life was ever sent (renumbering is then unsafe).
    sent_ever: bool,
    /// Set when the coordinator accepted a stream (its first ack), so the
    /// reconnect backoff starts small again.
    was_connected: bool,
    refusals: RefusalLog,
    /// Runs received and not yet appended (the open group-commit window).
    /// Never sent from here: sending reads the spool.
    pending: Vec<CompletedRun>,
    /// The open window's end: set by the first result after a commit.
    commit_due: Option<Instant>,
}

impl Uplink {
    pub fn new(
        cfg: AgentConfig,
        scheduler: Arc<Mutex<Scheduler>>,
        ready: Arc<AtomicBool>,
        last_assignment: LastAssignment,
        spool: Spool,
    ) -> Uplink {
        Uplink {
            cfg,
            scheduler,
            ready,
            last_assignment,
            spool,
            sent_upto: 0,
            acked_on_stream: false,
            in_flight_limit: IN_FLIGHT_MAX,
            stream_base_ack: 0,
            sent_ever: false,
            was_connected: false,
            refusals: RefusalLog::default(),
            pending: Vec::new(),
            commit_due: None,
        }
    }

    pub async fn run(
        mut self,
        mut results: mpsc::Receiver<CompletedRun>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        self.update_gauges();
        metrics::gauge!(t::COORDINATOR_REJECTED).set(0.0);
        let mut backoff = Duration::from_millis(250);
        loop {
            let e = match self.session(&mut results, &mut shutdown).await {
                Ok(()) => return,
                Err(e) => e,
            };
            metrics::gauge!(t::CONNECTED).set(0.0);
            // No acks until the next stream: keep the last one.
            self.persist_ack(true);
            if std::mem::take(&mut self.was_connected) {
                backoff = Duration::from_millis(250);
            }
            let wait = if let Some(refused) = e.downcast_ref::<Refused>() {
                metrics::gauge!(t::COORDINATOR_REJECTED).set(1.0);
                tracing::error!(
                    reason = %refused,
                    retry_in_s = PERMANENT_RETRY.as_secs(),
                    spooled = self.spool.depth(),
                    "the coordinator refuses this agent until an operator acts; probing goes on and \
                     results stay in the spool"
                );
                PERMANENT_RETRY
            } else {
                let wait = jitter(backoff);
                tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "coordinator stream down");
                backoff = (backoff * 2).min(BACKOFF_MAX);
                wait
            };
            // Keep spooling results while waiting to reconnect.
            let wait = tokio::time::sleep(wait);
            tokio::pin!(wait);
            loop {
                let due = self.commit_due;
                tokio::select! {
                    _ = &mut wait => break,
                    r = results.recv(), if due.is_none() => match r {
                        Some(run) => self.receive(run),
                        None => {
                            self.commit(&mut results);
                            return;
                        }
                    },
                    _ = sleep_until_some(due), if due.is_some() => self.commit(&mut results),
                    _ = shutdown.changed() => {
                        self.commit(&mut results);
                        return;
                    }
                }
            }
        }
    }

    /// One stream's life. Ok(()) = shutdown requested.
    async fn session(
        &mut self,
        results: &mut mpsc::Receiver<CompletedRun>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        // Connecting may take long; the open window must not wait for it.
        self.commit(results);
        let channel = match crate::coordinator_tls::connect(&self.cfg).await {
            Ok(c) => c,
            Err(e) => {
                metrics::counter!(t::CONNECT_ERRORS).increment(1);
                anyhow::bail!("connect: {e:#}");
            }
        };
        let (tx, rx) = mpsc::channel::<AgentMessage>(16);
        let version = self.scheduler.lock().await.version();
        tx.send(AgentMessage {
            msg: Some(agent_message::Msg::Hello(Hello {
                agent_id: self.cfg.agent_id.clone(),
                region: self.cfg.region.clone(),
                version: env!("CARGO_PKG_VERSION").to_string(),
                labels: self.cfg.labels.clone().into_iter().collect(),
                assignment_version: version,
                sent_unix_ms: now_ms(),
                spool_depth: self.spool.depth(),
            })),
        })
        .await?;
        let mut client =
            AgentServiceClient::new(channel).max_decoding_message_size(16 * 1024 * 1024);
        let mut inbound = client.connect(ReceiverStream::new(rx)).await?.into_inner();
        // A new stream: everything unacknowledged is re-sent, numbering is
        // settled again by its first ack. (Not before: failed attempts during
        // an outage must not forget what the last stream had sent.)
        self.sent_upto = self.spool.acked();
        self.acked_on_stream = false;
        self.in_flight_limit = IN_FLIGHT_MAX;
        tracing::info!("connected to coordinator");
        metrics::gauge!(t::CONNECTED).set(1.0);
        let mut flush = tokio::time::interval(FLUSH_EVERY);
        let mut heartbeat = tokio::time::interval(HEARTBEAT_EVERY);
        loop {
            let due = self.commit_due;
            tokio::select! {
                msg = inbound.message() => match msg? {
                    None => anyhow::bail!("coordinator closed the stream"),
                    Some(m) => match m.msg {
                        Some(coordinator_message::Msg::Ack(ack)) => self.on_ack(ack)?,
                        Some(coordinator_message::Msg::Assignment(a)) => self.on_assignment(a).await,
                        Some(coordinator_message::Msg::Reject(r)) => {
                            let reason = bounded(&r.reason, 1000);
                            if r.kind() == RejectKind::Permanent {
                                return Err(Refused(format!("rejected: {reason}")).into());
                            }
                            anyhow::bail!("rejected by coordinator: {reason}");
                        }
                        None => {}
                    },
                },
                // While a window is open the channel is left alone: the
                // commit drains it, and a run's end wakes nobody.
                r = results.recv(), if due.is_none() => match r {
                    Some(run) => self.receive(run),
                    None => {
                        self.commit(results);
                        self.flush(&tx).await.ok();
                        return Ok(());
                    }
                },
                _ = sleep_until_some(due), if due.is_some() => self.commit(results),
                _ = flush.tick() => {
                    self.commit(results);
                    self.flush(&tx).await?;
                    self.persist_ack(false);
                }
                _ = heartbeat.tick() => {
                    tx.send(AgentMessage { msg: Some(agent_message::Msg::Heartbeat(Heartbeat {
                        sent_unix_ms: now_ms(),
                        unacked: self.spool.depth(),
                        spool_bytes: self.spool.bytes(),
                        dropped_total: self.spool.dropped_total(),
                    })) }).await?;
                }
                _ = shutdown.changed() => {
                    // Unsent results stay in the spool for the next start.
                    self.commit(results);
                    self.flush(&tx).await.ok();
                    return Ok(());
                }
            }
        }
    }

    /// A finished run arrived (only when no window is open): it opens one
    /// and waits for its commit.
    fn receive(&mut self, run: CompletedRun) {
        self.pending.push(run);
        if self.commit_due.is_none() {
            self.commit_due = Some(Instant::now() + COMMIT_WINDOW);
        }
    }

    /// Closes the window: appends what was received and whatever waits in
    /// the channel, [`APPEND_MAX`] results per fsync, until the channel is
    /// empty.
    fn commit(&mut self, more: &mut mpsc::Receiver<CompletedRun>) {
        self.commit_due = None;
        loop {
            while self.pending.len() < APPEND_MAX {
                match more.try_recv() {
                    Ok(run) => self.pending.push(run),
                    Err(_) => break,
                }
            }
            if self.pending.is_empty() {
                break;
            }
            let full = self.pending.len() >= APPEND_MAX;
            self.append_pending();
            if !full {
                break;
            }
        }
        self.update_gauges();
    }

    /// Appends `pending` in one batch (one fsync).
    fn append_pending(&mut self) {
        let cfg = &self.cfg;
        let mut batch: Vec<ProbeResult> = self
            .pending
            .drain(..)
            .map(|run| to_wire(cfg, run))
            .collect();
        let n = batch.len() as u64;
        let spool = &mut self.spool;
        match blocking(|| spool.append(&mut batch)) {
            Ok(_) => {
                metrics::counter!(t::PRODUCED).increment(n);
                // Results dropped before ever being sent are lost for sure;
                // sent ones wait for the next stream's first ack to tell.
                if self.acked_on_stream {
                    self.spool
                        .settle_drops(self.stream_base_ack, self.sent_upto + 1);
                }
            }
            Err(e) => {
                // Nothing else can keep them: count them as dropped, loudly.
                metrics::counter!(t::LOST).increment(n);
                tracing::error!(error = %e, results = n, "cannot write results to the spool; they are lost");
            }
        }
    }

    /// Writes the latest ack if the spool holds it in memory only (it
    /// persists one at most every `ACK_PERSIST_EVERY`): once that old, or
    /// with `now`. A failure costs resends after a crash, not results.
    fn persist_ack(&mut self, now: bool) {
        if !self.spool.ack_persist_due(now) {
            return;
        }
        let spool = &mut self.spool;
        if let Err(e) = blocking(|| spool.persist_ack(now)) {
            tracing::warn!(error = %e, "cannot persist the latest ack; after a crash the results it covers would be sent again");
        }
    }

    fn update_gauges(&self) {
        metrics::gauge!(t::UNACKED).set(self.spool.depth() as f64);
        metrics::gauge!(t::LAST_SEQ).set(self.spool.next_seq().saturating_sub(1) as f64);
    }

    fn on_ack(&mut self, ack: Ack) -> anyhow::Result<()> {
        let (mut acked, highest_stored) = (ack.acked_seq, ack.highest_stored_seq);
        // Settled by this ack: nothing to resend, only to tell.
        for r in &ack.refused {
            self.refusals.record(r);
        }
        if ack.max_unacked_results > 0 {
            self.in_flight_limit = ack.max_unacked_results.min(IN_FLIGHT_MAX);
        }
        if acked.max(highest_stored) > SEQ_MAX {
            return Err(Refused(format!(
                "the coordinator reports seq {} for this agent, past the largest a result can \
                 carry ({SEQ_MAX}); not continuing the numbering after it",
                acked.max(highest_stored)
            ))
            .into());
        }
        if !self.acked_on_stream {
            // (An ack above the highest stored seq is inconsistent; the
            // larger one decides.)
            self.reconcile(highest_stored.max(acked))?;
            self.acked_on_stream = true;
            self.stream_base_ack = acked;
            // The coordinator accepted this stream.
            self.was_connected = true;
            metrics::gauge!(t::COORDINATOR_REJECTED).set(0.0);
            // Before this stream sent anything, its ack is exactly what the
            // coordinator stored: drops at or below it weren't losses.
            let spool = &mut self.spool;
            blocking(|| spool.ack(acked))?;
            self.spool.settle_drops(acked, acked + 1);
        } else if acked > self.spool.acked() {
            if acked > self.sent_upto {
                // An ack for seqs never sent would take unsent results (and,
                // past `next_seq`, the numbering) with it.
                tracing::warn!(
                    acked,
                    sent_upto = self.sent_upto,
                    "coordinator acked seqs this stream never sent; counting only what was sent"
                );
                acked = self.sent_upto;
            }
            let before = self.spool.depth();
            let spool = &mut self.spool;
            blocking(|| spool.ack(acked))?;
            metrics::counter!(t::ACKED).increment(before.saturating_sub(self.spool.depth()));
        }
        self.sent_upto = self.sent_upto.max(self.spool.acked());
        self.update_gauges();
        Ok(())
    }

    /// On a stream's first ack: makes sure our numbering continues after
    /// what the coordinator already holds for this agent id.
    fn reconcile(&mut self, highest_stored: u64) -> anyhow::Result<()> {
        let ours = self.spool.next_seq().saturating_sub(1);
        // A spool that never talked to the coordinator (new or lost data
        // dir) numbered from 1; any overlap with stored seqs would be
        // silently dropped there as duplicates.
        let stale_new = !self.spool.reconciled() && highest_stored >= self.spool.low_watermark();
        // A spool behind the coordinator (restored backup, reused agent id).
        let behind = highest_stored > ours;
        if highest_stored == 0 || !(stale_new || behind) {
            return Ok(());
        }
        if self.sent_ever {
            // Renumbering now could pair one seq with two results; this
            // won't resolve by retrying.
            return Err(Refused(format!(
                "coordinator has seq {highest_stored} for this agent but the spool only reached {ours}; \
                 is another agent using agent_id {}?",
                self.cfg.agent_id
            ))
            .into());
        }
        if !self.spool.renumber_fits(highest_stored) {
            return Err(Refused(format!(
                "coordinator has seq {highest_stored} for agent_id {}: renumbering the {} held \
                 results after it would run into the largest seq a result can carry ({SEQ_MAX}); \
                 not renumbering, results stay in the spool (was another process using this \
                 agent_id? remove its results on the coordinator or give this agent a new id)",
                self.cfg.agent_id,
                self.spool.depth()
            ))
            .into());
        }
        tracing::warn!(
            spool_next = ours + 1,
            coordinator_highest = highest_stored,
            "spool is behind the coordinator (data_dir lost or reset?); renumbering held results"
        );
        let spool = &mut self.spool;
        blocking(|| spool.renumber_after(highest_stored))?;
        self.sent_upto = highest_stored;
        Ok(())
    }

    async fn on_assignment(&mut self, a: authpulse_proto::v1::Assignment) {
        let mut probes = Vec::with_capacity(a.probes.len());
        for p in &a.probes {
            match catalog::probe_from_json(&p.spec_json) {
                Ok(def) => probes.push(def),
                // A newer coordinator may send a kind this agent doesn't know.
                Err(e) => {
                    tracing::error!(probe = %p.id, kind = %p.kind, error = %e, "cannot run assigned probe")
                }
            }
        }
        let n = probes.len();
        if let Err(e) = blocking(|| self.last_assignment.save(a.version, &probes)) {
            tracing::warn!(error = %e, "cannot keep the assignment on disk; a restart without the coordinator would idle");
        }
        let (started, stopped) = self.scheduler.lock().await.apply(a.version, probes);
        self.ready.store(true, Ordering::Relaxed);
        tracing::info!(
            version = a.version,
            probes = n,
            started,
            stopped,
            "assignment applied"
        );
    }

    /// Sends spooled results after `sent_upto`, in order, within the in-flight window.
    async fn flush(&mut self, tx: &mpsc::Sender<AgentMessage>) -> anyhow::Result<()> {
        if !self.acked_on_stream {
            return Ok(()); // numbering not settled with the coordinator yet
        }
        while self.sent_upto < self.spool.next_seq().saturating_sub(1) {
            let unacked = self.sent_upto.saturating_sub(self.spool.acked());
            if unacked >= self.in_flight_limit {
                break;
            }
            // No more than the limit allows (at least one result here).
            let room = usize::try_from(self.in_flight_limit - unacked).unwrap_or(BATCH_MAX);
            let from = self.sent_upto + 1;
            let spool = &mut self.spool;
            let batch = blocking(|| spool.read_from(from, room.clamp(1, BATCH_MAX)))?;
            let Some(last) = batch.last().map(|r| r.seq) else {
                break;
            };
            let n = batch.len() as u64;
            tx.send(AgentMessage {
                msg: Some(agent_message::Msg::Results(ResultBatch {
                    results: batch,
                    low_watermark: batch_low_watermark(self.spool.low_watermark(), last),
                })),
            })
            .await?;
            self.sent_upto = last;
            self.sent_ever = true;
            metrics::counter!(t::SENT).increment(n);
        }
        Ok(())
    }
}

/// The `low_watermark` sent with a batch whose last seq is `last`: what the
/// spool still holds, but never above `last + 1`. The coordinator treats
/// everything below it as settled, so a higher value would let it ack (and
/// this agent delete) results it was never sent.
pub fn batch_low_watermark(spool_low: u64, last: u64) -> u64 {
    spool_low.min(last.saturating_add(1))
}

/// Logs refused results one by one up to [`REFUSED_LOG_PER_MINUTE`], then
/// sums the rest up once a minute; counts every one.
struct RefusalLog {
    window: tokio::time::Instant,
    logged: u32,
    suppressed: u64,
}

impl Default for RefusalLog {
    fn default() -> Self {
        RefusalLog {
            window: tokio::time::Instant::now(),
            logged: 0,
            suppressed: 0,
        }
    }
}

impl RefusalLog {
    fn record(&mut self, r: &RefusedResult) {
        let code = metric_code(&r.code);
        metrics::counter!(t::REFUSED, "code" => code.clone()).increment(1);
        let now = tokio::time::Instant::now();
        if now.duration_since(self.window) >= Duration::from_secs(60) {
            if self.suppressed > 0 {
                tracing::warn!(
                    more = self.suppressed,
                    "more results were refused by the coordinator in the last minute than logged \
                     one by one (see authpulse_agent_results_refused_total)"
                );
            }
            *self = RefusalLog {
                window: now,
                ..Default::default()
            };
        }
        if self.logged < REFUSED_LOG_PER_MINUTE {
            self.logged += 1;
            tracing::warn!(
                seq = r.seq,
                probe = %bounded(&r.probe_id, 128),
                code = %code,
                reason = %bounded(&r.reason, 300),
                "the coordinator refused to store a result; it is not resent"
            );
        } else {
            self.suppressed += 1;
        }
    }
}

/// The coordinator's refusal code as a metric label: a short
/// `[a-z0-9_]` word, anything else `other` (labels must stay few).
fn metric_code(code: &str) -> String {
    let ok = !code.is_empty()
        && code.len() <= 48
        && code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        code.to_string()
    } else {
        "other".to_string()
    }
}

/// At most `max` characters of text the coordinator sent, for a log line.
fn bounded(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &s[..end]),
        None => s.to_string(),
    }
}

/// Sleeps until `due`; with `None` (a disabled `select!` branch, never
/// polled) it would return at once.
async fn sleep_until_some(due: Option<Instant>) {
    if let Some(due) = due {
        tokio::time::sleep_until(due).await;
    }
}

fn jitter(d: Duration) -> Duration {
    use rand::RngExt;
    let ms = d.as_millis() as u64;
    Duration::from_millis(rand::rng().random_range(ms / 2..=ms.max(1)))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn wire_timings(t: &Timings) -> authpulse_proto::v1::Timings {
    let us = |d: Option<Duration>| d.map(|d| d.as_micros() as u64);
    authpulse_proto::v1::Timings {
        dns_us: us(t.dns),
        connect_us: us(t.connect),
        tls_us: us(t.tls),
        ttfb_us: us(t.ttfb),
        total_us: t.total.as_micros() as u64,
    }
}

fn outcome(failed: bool) -> i32 {
    if failed {
        Outcome::Failure as i32
    } else {
        Outcome::Success as i32
    }
}

fn to_wire(cfg: &AgentConfig, run: CompletedRun) -> ProbeResult {
    let o = run.outcome;
    ProbeResult {
        agent_id: cfg.agent_id.clone(),
        seq: 0,
        probe_id: run.probe_id,
        region: cfg.region.clone(),
        started_unix_ms: run.started_unix_ms,
        duration_us: o.timings.total.as_micros() as u64,
        outcome: outcome(o.failure.is_some()),
        failure_class: o.failure.as_ref().map(|f| f.class as i32).unwrap_or(0),
        timings: Some(wire_timings(&o.timings)),
        steps: o
            .steps
            .iter()
            .map(|s| StepResult {
                name: s.name.clone(),
                kind: s.kind.clone(),
                outcome: outcome(s.failure.is_some()),
                failure_class: s.failure.as_ref().map(|f| f.class as i32).unwrap_or(0),
                timings: Some(wire_timings(&s.timings)),
                detail: match &s.failure {
                    Some(f) => f.message.clone(),
                    None => s.detail.clone(),
                },
            })
            .collect(),
        detail: o.detail,
        assignment_version: run.assignment_version,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn low_watermark_never_passes_what_was_sent() {
        assert_eq!(batch_low_watermark(5, 10), 5);
        assert_eq!(batch_low_watermark(11, 10), 11);
        assert_eq!(batch_low_watermark(500, 10), 11);
        assert_eq!(batch_low_watermark(u64::MAX, u64::MAX), u64::MAX);
    }

    #[test]
    fn refusal_codes_become_bounded_labels() {
        assert_eq!(metric_code("future_timestamp"), "future_timestamp");
        assert_eq!(metric_code(""), "other");
        assert_eq!(metric_code("Spaces and CAPS"), "other");
        assert_eq!(metric_code(&"x".repeat(100)), "other");
        assert_eq!(bounded("abcdef", 3), "abc…");
        assert_eq!(bounded("abc", 3), "abc");
    }
}
