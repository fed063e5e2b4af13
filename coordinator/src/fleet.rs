//! The fleet as the coordinator sees it: limits on what agents may do, when
//! an agent counts as down (silent longer than `agent_down_after`: its
//! region's probes become missing data, never failures), clock skew between
//! an agent and the coordinator (results are bucketed by the agent's start
//! time, so a skewed clock misplaces them), and the per-agent gauges.
use std::collections::HashSet;
use std::time::Duration;

use serde::Deserialize;
use tokio_util::sync::CancellationToken;

/// What the coordinator last learned about an agent's health: a row type of
/// the store's `agents` table, re-exported where fleet code looks for it.
pub use crate::store::AgentHealth;
use crate::store::{AgentRow, Store, now_ms};

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FleetConfig {
    /// An agent silent for longer (no heartbeat, no batch) is `down`.
    #[serde(with = "humantime_serde")]
    pub agent_down_after: Duration,
    /// Agents whose clock differs from the coordinator's by more are flagged.
    #[serde(with = "humantime_serde")]
    pub max_clock_skew: Duration,
    /// Agents with a live stream at once; more are refused (RESOURCE_EXHAUSTED).
    pub max_agents: usize,
    /// Results in one batch; a larger batch ends the stream (INVALID_ARGUMENT).
    pub max_batch_results: usize,
    /// How far ahead of the coordinator's clock a result's start time may
    /// lie; later ones are refused (`future_timestamp`), never counted.
    #[serde(with = "humantime_serde")]
    pub max_result_skew: Duration,
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            agent_down_after: Duration::from_secs(60),
            max_clock_skew: Duration::from_secs(5),
            max_agents: 10_000,
            max_batch_results: 5_000,
            max_result_skew: Duration::from_secs(120),
        }
    }
}

/// Skew of an agent clock reading `agent_ms` taken just now (0 = not sent).
pub fn skew_ms(agent_ms: i64) -> i64 {
    skew_at(agent_ms, now_ms())
}

/// Skew of an agent clock reading `agent_ms` that reached the coordinator
/// at `received_ms` (0 = not sent). Measured at receipt, not when the
/// message was processed: a Hello that waits for the agent's previous
/// stream to finish is not evidence of a skewed clock.
pub fn skew_at(agent_ms: i64, received_ms: i64) -> i64 {
    if agent_ms <= 0 {
        0
    } else {
        agent_ms.saturating_sub(received_ms)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgentState {
    Up,
    Down,
}

impl AgentState {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentState::Up => "up",
            AgentState::Down => "down",
        }
    }
}

impl FleetConfig {
    pub fn state(&self, agent: &AgentRow, now_ms: i64) -> AgentState {
        // Down after `agent_down_after` of silence, connected or not: an
        // agent restarting (a graceful disconnect) is not down at once, and
        // a half-dead connection doesn't keep it up.
        let silent = Duration::from_millis(
            u64::try_from(now_ms.saturating_sub(agent.last_seen_ms)).unwrap_or(0),
        );
        if silent <= self.agent_down_after {
            AgentState::Up
        } else {
            AgentState::Down
        }
    }

    pub fn skew_ok(&self, agent: &AgentRow) -> bool {
        agent.health.clock_skew_ms.unsigned_abs() <= self.max_clock_skew.as_millis() as u64
    }
}

pub fn describe_metrics() {
    metrics::describe_gauge!(
        "authpulse_coordinator_agents",
        "Known agents by state (up, down)"
    );
    metrics::describe_gauge!(
        "authpulse_coordinator_agent_clock_skew_seconds",
        "Agent clock minus coordinator clock, from hello and heartbeats"
    );
    metrics::describe_gauge!(
        "authpulse_coordinator_agent_spool_depth",
        "Unacknowledged results in the agent's spool"
    );
    // A gauge, not a counter: it mirrors the agent's own count, which
    // restarts when the agent loses its spool, so it is not monotonic here.
    metrics::describe_gauge!(
        "authpulse_coordinator_agent_dropped",
        "Results the agent dropped because its spool was full, as the agent last reported its cumulative count"
    );
    metrics::describe_gauge!(
        "authpulse_coordinator_agent_up",
        "1 while the agent is up, 0 when down"
    );
}

/// Every few seconds: agent gauges, and a log line when an agent changes
/// state or its clock drifts past the threshold.
pub async fn watch(store: Store, cfg: FleetConfig, stop: CancellationToken) {
    describe_metrics();
    let mut down: HashSet<String> = HashSet::new();
    let mut skewed: HashSet<String> = HashSet::new();
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let agents = match store.agents().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read agents for fleet gauges");
                continue;
            }
        };
        let now = now_ms();
        let (mut up_n, mut down_n) = (0u64, 0u64);
        for a in &agents {
            let id = a.info.agent_id.clone();
            let state = cfg.state(a, now);
            match state {
                AgentState::Up => {
                    up_n += 1;
                    if down.remove(&id) {
                        tracing::info!(agent_id = %id, region = %a.info.region, "agent is up again");
                    }
                }
                AgentState::Down => {
                    down_n += 1;
                    if down.insert(id.clone()) {
                        tracing::warn!(agent_id = %id, region = %a.info.region, last_seen_ms = a.last_seen_ms,
                            "agent is down: its probes are missing data until it returns");
                    }
                }
            }
            let ok = cfg.skew_ok(a);
            if !ok && skewed.insert(id.clone()) {
                tracing::warn!(agent_id = %id, clock_skew_ms = a.health.clock_skew_ms,
                    max_ms = cfg.max_clock_skew.as_millis() as u64,
                    "agent clock is skewed: its results are bucketed at the agent's time");
            } else if ok {
                skewed.remove(&id);
            }
            metrics::gauge!("authpulse_coordinator_agent_up", "agent_id" => id.clone())
                .set(if state == AgentState::Up { 1.0 } else { 0.0 });
            metrics::gauge!("authpulse_coordinator_agent_clock_skew_seconds", "agent_id" => id.clone())
                .set(a.health.clock_skew_ms as f64 / 1000.0);
            metrics::gauge!("authpulse_coordinator_agent_spool_depth", "agent_id" => id.clone())
                .set(a.health.spool_depth as f64);
            metrics::gauge!("authpulse_coordinator_agent_dropped", "agent_id" => id)
                .set(a.health.dropped_total as f64);
        }
        metrics::gauge!("authpulse_coordinator_agents", "state" => "up").set(up_n as f64);
        metrics::gauge!("authpulse_coordinator_agents", "state" => "down").set(down_n as f64);
    }
}
