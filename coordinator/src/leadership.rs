//! Which coordinator replica turns SLO evaluations into alerts and
//! status-page incidents. Every replica ingests, evaluates and answers
//! queries; exactly one — the leader — sends notifications and writes alert
//! and incident state, so a page goes out once however many replicas run.
//! With PostgreSQL the leader is whoever holds a session-level advisory
//! lock on a connection of its own: when the holder dies its connection
//! closes and the lock is free at once; the others try every
//! [`POLL_INTERVAL`], so leadership moves within about a second. The holder
//! checks its connection on every poll and steps down when it fails. With
//! SQLite there is one coordinator and it always leads.
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::store::{Backend, LeaderLock, Store};

/// How often a follower tries the lock and the leader checks its connection.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// A leader whose lock connection doesn't answer within this steps down.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

pub fn describe_metrics() {
    metrics::describe_gauge!(
        "authpulse_coordinator_leader",
        "1 on the replica that sends alerts and writes incidents (holds the leader lock), else 0"
    );
    metrics::describe_counter!(
        "authpulse_coordinator_leader_changes_total",
        "Times this replica became leader or stepped down"
    );
    metrics::describe_counter!(
        "authpulse_coordinator_alert_evaluations_total",
        "SLO evaluations this replica turned into alert and incident updates (as leader)"
    );
}

/// Starts the election; the receiver says whether this replica leads now.
pub fn start(store: Store, stop: CancellationToken) -> watch::Receiver<bool> {
    let local = store.backend() == Backend::Sqlite;
    let (tx, rx) = watch::channel(local);
    metrics::gauge!("authpulse_coordinator_leader").set(if local { 1.0 } else { 0.0 });
    if !local {
        tokio::spawn(elect(store, tx, stop));
    }
    rx
}

async fn elect(store: Store, tx: watch::Sender<bool>, stop: CancellationToken) {
    let mut lock: Option<LeaderLock> = None;
    loop {
        match lock.as_mut() {
            None => match store.try_leader_lock().await {
                Ok(Some(l)) => {
                    lock = Some(l);
                    tracing::info!("this coordinator is now the leader (alerts, incidents)");
                    set(&tx, true);
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "cannot try the leader lock"),
            },
            Some(l) => {
                let alive = matches!(
                    tokio::time::timeout(CHECK_TIMEOUT, l.check()).await,
                    Ok(Ok(()))
                );
                if !alive {
                    tracing::warn!("the leader lock's database connection failed; stepping down");
                    lock = None;
                    set(&tx, false);
                }
            }
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(POLL_INTERVAL) => {}
        }
    }
    if let Some(l) = lock {
        // Released now rather than when the process exits, so a survivor
        // takes over during a graceful shutdown's drain.
        set(&tx, false);
        l.release().await;
        tracing::info!("leader lock released");
    }
}

fn set(tx: &watch::Sender<bool>, leader: bool) {
    tx.send_replace(leader);
    metrics::gauge!("authpulse_coordinator_leader").set(if leader { 1.0 } else { 0.0 });
    metrics::counter!("authpulse_coordinator_leader_changes_total").increment(1);
}
