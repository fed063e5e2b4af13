//! The agent's side of the `Connect` stream: hello, results up in batches,
//! heartbeats; assignments and acks down. Every result is in the on-disk
//! [`Spool`] (with its sequence number) before it is sent, and leaves it only
//! when an ack covers it; after a reconnect everything unacknowledged is
//! re-sent in order. The coordinator stores on (agent id, seq), so re-sending
//! never doubles anything, and a coordinator or agent crash loses nothing.
//!
//! Spool calls are short synchronous file I/O (one fsync per appended
//! batch); they run on this task through `block_in_place` so the runtime's
//! other tasks keep going.
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use authpulse_proto::catalog;
use authpulse_proto::v1::{
    AgentMessage, Heartbeat, Hello, Outcome, ProbeResult, ResultBatch, StepResult, agent_message,
    agent_service_client::AgentServiceClient, coordinator_message,
};
use tokio::sync::{Mutex, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use crate::config::AgentConfig;
use crate::http::Timings;
use crate::last_assignment::LastAssignment;
use crate::scheduler::{CompletedRun, Scheduler};
use crate::spool::Spool;
use crate::telemetry as t;

const BATCH_MAX: usize = 500;
/// Results appended to the spool in one fsync at most.
const APPEND_MAX: usize = 512;
/// Results sent but not yet acknowledged, at most: bounds what sits in
/// buffers when the coordinator is slow (backpressure reaches the spool,
/// which is on disk and bounded).
const IN_FLIGHT_MAX: u64 = 10 * BATCH_MAX as u64;
const FLUSH_EVERY: Duration = Duration::from_millis(100);
const HEARTBEAT_EVERY: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

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
    /// The first ack of the current stream: what the coordinator had stored
    /// before this stream sent anything.
    stream_base_ack: u64,
    /// Anything of this spool's life was ever sent (renumbering is then unsafe).
    sent_ever: bool,
    /// Set when a stream came up, so the reconnect backoff starts small again.
    was_connected: bool,
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
            stream_base_ack: 0,
            sent_ever: false,
            was_connected: false,
        }
    }

    pub async fn run(
        mut self,
        mut results: mpsc::Receiver<CompletedRun>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        self.update_gauges();
        let mut backoff = Duration::from_millis(250);
        loop {
            match self.session(&mut results, &mut shutdown).await {
                Ok(()) => return,
                Err(e) => {
                    metrics::gauge!(t::CONNECTED).set(0.0);
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "coordinator stream down");
                }
            }
            if std::mem::take(&mut self.was_connected) {
                backoff = Duration::from_millis(250);
            }
            // Keep spooling results while waiting to reconnect.
            let wait = tokio::time::sleep(jitter(backoff));
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    _ = &mut wait => break,
                    r = results.recv() => match r {
                        Some(run) => self.spool_runs(run, &mut results),
                        None => return,
                    },
                    _ = shutdown.changed() => return,
                }
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// One stream's life. Ok(()) = shutdown requested.
    async fn session(
        &mut self,
        results: &mut mpsc::Receiver<CompletedRun>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
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
        tracing::info!("connected to coordinator");
        self.was_connected = true;
        metrics::gauge!(t::CONNECTED).set(1.0);
        let mut flush = tokio::time::interval(FLUSH_EVERY);
        let mut heartbeat = tokio::time::interval(HEARTBEAT_EVERY);
        loop {
            tokio::select! {
                msg = inbound.message() => match msg? {
                    None => anyhow::bail!("coordinator closed the stream"),
                    Some(m) => match m.msg {
                        Some(coordinator_message::Msg::Ack(ack)) => self.on_ack(ack.acked_seq, ack.highest_stored_seq)?,
                        Some(coordinator_message::Msg::Assignment(a)) => self.on_assignment(a).await,
                        Some(coordinator_message::Msg::Reject(r)) => anyhow::bail!("rejected by coordinator: {}", r.reason),
                        None => {}
                    },
                },
                r = results.recv() => match r {
                    Some(run) => self.spool_runs(run, results),
                    None => return Ok(()),
                },
                _ = flush.tick() => self.flush(&tx).await?,
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
                    self.flush(&tx).await.ok();
                    return Ok(());
                }
            }
        }
    }

    /// Appends `first` and whatever else is already waiting, in one fsync.
    fn spool_runs(&mut self, first: CompletedRun, more: &mut mpsc::Receiver<CompletedRun>) {
        let mut batch = vec![to_wire(&self.cfg, first)];
        while batch.len() < APPEND_MAX {
            match more.try_recv() {
                Ok(run) => batch.push(to_wire(&self.cfg, run)),
                Err(_) => break,
            }
        }
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
        self.update_gauges();
    }

    fn update_gauges(&self) {
        metrics::gauge!(t::UNACKED).set(self.spool.depth() as f64);
        metrics::gauge!(t::LAST_SEQ).set(self.spool.next_seq().saturating_sub(1) as f64);
    }

    fn on_ack(&mut self, acked: u64, highest_stored: u64) -> anyhow::Result<()> {
        if !self.acked_on_stream {
            self.acked_on_stream = true;
            self.stream_base_ack = acked;
            self.reconcile(highest_stored)?;
            // Before this stream sent anything, its ack is exactly what the
            // coordinator stored: drops at or below it weren't losses.
            let spool = &mut self.spool;
            blocking(|| spool.ack(acked))?;
            self.spool.settle_drops(acked, acked + 1);
        } else if acked > self.spool.acked() {
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
            anyhow::bail!(
                "coordinator has seq {highest_stored} for this agent but the spool only reached {ours}; \
                 is another agent using agent_id {}?",
                self.cfg.agent_id
            );
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
        while self.sent_upto < self.spool.next_seq().saturating_sub(1)
            && self.sent_upto.saturating_sub(self.spool.acked()) < IN_FLIGHT_MAX
        {
            let from = self.sent_upto + 1;
            let spool = &mut self.spool;
            let batch = blocking(|| spool.read_from(from, BATCH_MAX))?;
            let Some(last) = batch.last().map(|r| r.seq) else {
                break;
            };
            let n = batch.len() as u64;
            tx.send(AgentMessage {
                msg: Some(agent_message::Msg::Results(ResultBatch {
                    results: batch,
                    low_watermark: self.spool.low_watermark(),
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
