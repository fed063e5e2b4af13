//! The agent's side of the `Connect` stream: hello, results up in batches,
//! heartbeats; assignments and acks down. Results stay buffered until an ack
//! covers them and are re-sent after a reconnect; the coordinator stores on
//! (agent id, seq) so re-sending never doubles anything. Sequence numbers are
//! handed out only once the coordinator has said where it stands (its first
//! ack), so a restarted agent continues the numbering instead of colliding.
use std::collections::VecDeque;
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
use crate::scheduler::{CompletedRun, Scheduler};
use crate::telemetry as t;

const BATCH_MAX: usize = 500;
const FLUSH_EVERY: Duration = Duration::from_millis(200);
const HEARTBEAT_EVERY: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

struct Pending {
    seq: Option<u64>,
    result: ProbeResult,
}

pub struct Uplink {
    cfg: AgentConfig,
    scheduler: Arc<Mutex<Scheduler>>,
    ready: Arc<AtomicBool>,
    queue: VecDeque<Pending>,
    /// Entries before this index were sent on the current stream.
    unsent_from: usize,
    /// Next sequence number to hand out; 0 until the coordinator's first ack.
    next_seq: u64,
    /// Set when a stream came up, so the reconnect backoff starts small again.
    was_connected: bool,
}

impl Uplink {
    pub fn new(
        cfg: AgentConfig,
        scheduler: Arc<Mutex<Scheduler>>,
        ready: Arc<AtomicBool>,
    ) -> Uplink {
        Uplink {
            cfg,
            scheduler,
            ready,
            queue: VecDeque::new(),
            unsent_from: 0,
            next_seq: 0,
            was_connected: false,
        }
    }

    pub async fn run(
        mut self,
        mut results: mpsc::Receiver<CompletedRun>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut backoff = Duration::from_millis(250);
        loop {
            match self.session(&mut results, &mut shutdown).await {
                Ok(()) => return,
                Err(e) => {
                    metrics::gauge!(t::CONNECTED).set(0.0);
                    tracing::warn!(error = %e, coordinator = %self.cfg.coordinator, retry_in_ms = backoff.as_millis() as u64, "coordinator stream down");
                }
            }
            self.unsent_from = 0;
            if std::mem::take(&mut self.was_connected) {
                backoff = Duration::from_millis(250);
            }
            // Keep collecting results while waiting to reconnect.
            let wait = tokio::time::sleep(jitter(backoff));
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    _ = &mut wait => break,
                    r = results.recv() => match r {
                        Some(run) => self.push(run),
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
        let endpoint = tonic::transport::Endpoint::from_shared(self.cfg.coordinator.clone())?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(20))
            .keep_alive_timeout(Duration::from_secs(10));
        let channel = match endpoint.connect().await {
            Ok(c) => c,
            Err(e) => {
                metrics::counter!(t::CONNECT_ERRORS).increment(1);
                anyhow::bail!("connect: {}", crate::http::error_chain(&e));
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
                spool_depth: self.queue.len() as u64,
            })),
        })
        .await?;
        let mut client =
            AgentServiceClient::new(channel).max_decoding_message_size(16 * 1024 * 1024);
        let mut inbound = client.connect(ReceiverStream::new(rx)).await?.into_inner();
        tracing::info!(coordinator = %self.cfg.coordinator, "connected to coordinator");
        self.was_connected = true;
        metrics::gauge!(t::CONNECTED).set(1.0);
        let mut flush = tokio::time::interval(FLUSH_EVERY);
        let mut heartbeat = tokio::time::interval(HEARTBEAT_EVERY);
        loop {
            tokio::select! {
                msg = inbound.message() => match msg? {
                    None => anyhow::bail!("coordinator closed the stream"),
                    Some(m) => match m.msg {
                        Some(coordinator_message::Msg::Ack(ack)) => self.on_ack(ack.acked_seq),
                        Some(coordinator_message::Msg::Assignment(a)) => self.on_assignment(a).await,
                        Some(coordinator_message::Msg::Reject(r)) => anyhow::bail!("rejected by coordinator: {}", r.reason),
                        None => {}
                    },
                },
                r = results.recv() => match r {
                    Some(run) => self.push(run),
                    None => return Ok(()),
                },
                _ = flush.tick() => self.flush(&tx).await?,
                _ = heartbeat.tick() => {
                    tx.send(AgentMessage { msg: Some(agent_message::Msg::Heartbeat(Heartbeat {
                        sent_unix_ms: now_ms(),
                        unacked: self.queue.len() as u64,
                        ..Default::default()
                    })) }).await?;
                }
                _ = shutdown.changed() => {
                    // Last chance to hand over what is buffered.
                    self.flush(&tx).await.ok();
                    return Ok(());
                }
            }
        }
    }

    fn push(&mut self, run: CompletedRun) {
        if self.queue.len() >= self.cfg.max_buffered_results {
            self.queue.pop_front();
            self.unsent_from = self.unsent_from.saturating_sub(1);
            metrics::counter!(t::DROPPED).increment(1);
        }
        self.queue.push_back(Pending {
            seq: None,
            result: to_wire(&self.cfg, run),
        });
        metrics::gauge!(t::UNACKED).set(self.queue.len() as f64);
    }

    fn on_ack(&mut self, acked: u64) {
        if self.next_seq == 0 {
            // First ack on this agent's life: continue after what is stored.
            self.next_seq = acked + 1;
        }
        let mut popped = 0usize;
        while self
            .queue
            .front()
            .and_then(|p| p.seq)
            .is_some_and(|s| s <= acked)
        {
            self.queue.pop_front();
            popped += 1;
        }
        self.unsent_from = self.unsent_from.saturating_sub(popped);
        metrics::counter!(t::ACKED).increment(popped as u64);
        metrics::gauge!(t::UNACKED).set(self.queue.len() as f64);
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

    async fn flush(&mut self, tx: &mpsc::Sender<AgentMessage>) -> anyhow::Result<()> {
        if self.next_seq == 0 {
            return Ok(()); // no ack yet: numbering unknown
        }
        while self.unsent_from < self.queue.len() {
            let end = (self.unsent_from + BATCH_MAX).min(self.queue.len());
            let mut batch = Vec::with_capacity(end - self.unsent_from);
            for p in self.queue.range_mut(self.unsent_from..end) {
                let seq = *p.seq.get_or_insert_with(|| {
                    let s = self.next_seq;
                    self.next_seq += 1;
                    s
                });
                p.result.seq = seq;
                batch.push(p.result.clone());
            }
            let low_watermark = self
                .queue
                .front()
                .and_then(|p| p.seq)
                .unwrap_or(self.next_seq);
            let n = batch.len();
            tx.send(AgentMessage {
                msg: Some(agent_message::Msg::Results(ResultBatch {
                    results: batch,
                    low_watermark,
                })),
            })
            .await?;
            self.unsent_from = end;
            metrics::counter!(t::SENT).increment(n as u64);
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
