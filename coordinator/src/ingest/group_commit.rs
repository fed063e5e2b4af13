//! Group commit of result batches across agent streams. Every stream hands
//! its batch to one committer task and waits; the committer takes every
//! batch that is waiting (up to [`MAX_GROUP_RESULTS`] results) and stores
//! them in one transaction ([`Store::insert_batches`]), then answers each
//! stream. A stream's ack still goes out only after the transaction that
//! holds its results committed, so the zero-loss and exactly-once rules are
//! unchanged; what changes is that K streams share one commit (one WAL
//! append and one set of roll-up upserts) instead of queueing K of them
//! behind the single SQLite writer. Under light load a group is one batch
//! and nothing waits for company: the committer never delays a commit to
//! make a group larger.
//!
//! SQLite has one writer, so one committer; PostgreSQL gets a few, each
//! taking the next group while the others' statements run in the server
//! (the groups take their row locks in key order, so they queue rather
//! than deadlock). If a group's transaction fails, its batches are retried
//! one by one, so a batch the database refuses ends only its own stream.
use std::time::Instant;

use authpulse_proto::v1::ProbeResult;
use std::sync::Arc;

use tokio::sync::{Mutex, mpsc, oneshot};

use crate::store::{Backend, BatchWrite, InsertStats, Store};

/// Results per transaction at most: large enough to amortise the commit,
/// small enough that one group's latency stays in the tens of milliseconds.
pub const MAX_GROUP_RESULTS: usize = 10_000;

/// A batch waiting for its commit; the results come back with the answer.
struct Job {
    agent_id: String,
    results: Vec<ProbeResult>,
    acked_seq: Option<u64>,
    received_ms: i64,
    done: oneshot::Sender<(Result<InsertStats, String>, Vec<ProbeResult>)>,
}

/// The handle streams submit batches through. Cloning shares the committer.
#[derive(Clone)]
pub struct GroupCommit {
    jobs: mpsc::Sender<Job>,
}

/// Registers the committer's metric descriptions.
pub fn describe_metrics() {
    metrics::describe_histogram!(
        "authpulse_coordinator_ingest_group_batches",
        "Result batches stored per ingest transaction (group commit across agent streams)"
    );
}

impl GroupCommit {
    /// Starts the committers on `store`; they end when every handle is
    /// dropped.
    pub fn start(store: Store) -> GroupCommit {
        // One job per stream at most is waiting (a stream awaits its answer
        // before reading its next batch), so this bound is never the limit
        // in practice; it only keeps a bug from growing memory.
        let (jobs, rx) = mpsc::channel(16_384);
        let rx = Arc::new(Mutex::new(rx));
        let committers = match store.backend() {
            Backend::Sqlite => 1,
            Backend::Postgres => 4,
        };
        for _ in 0..committers {
            tokio::spawn(run(store.clone(), rx.clone()));
        }
        GroupCommit { jobs }
    }

    /// Stores `results` (with the agent's new ack) in the next group and
    /// returns the counts and the results once their transaction committed.
    pub async fn store(
        &self,
        agent_id: &str,
        results: Vec<ProbeResult>,
        acked_seq: Option<u64>,
        received_ms: i64,
    ) -> (Result<InsertStats, String>, Vec<ProbeResult>) {
        let (done, answer) = oneshot::channel();
        let job = Job {
            agent_id: agent_id.to_owned(),
            results,
            acked_seq,
            received_ms,
            done,
        };
        if let Err(mpsc::error::SendError(job)) = self.jobs.send(job).await {
            return (Err("the ingest committer stopped".into()), job.results);
        }
        answer
            .await
            .unwrap_or_else(|_| (Err("the ingest committer stopped".into()), Vec::new()))
    }
}

async fn run(store: Store, rx: Arc<Mutex<mpsc::Receiver<Job>>>) {
    loop {
        // The receiver is held only while a group is taken, not while it
        // commits: another committer takes the next one meanwhile.
        let group = {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else {
                return;
            };
            let mut size = first.results.len();
            let mut group = vec![first];
            while size < MAX_GROUP_RESULTS {
                match rx.try_recv() {
                    Ok(job) => {
                        size += job.results.len();
                        group.push(job);
                    }
                    Err(_) => break,
                }
            }
            group
        };
        commit(&store, group).await;
    }
}

async fn commit(store: &Store, group: Vec<Job>) {
    // An invalid batch is answered alone and never joins the transaction.
    let mut valid = Vec::with_capacity(group.len());
    for job in group {
        match Store::check_batch(&job.results) {
            Ok(()) => valid.push(job),
            Err(e) => {
                let _ = job.done.send((Err(e.to_string()), job.results));
            }
        }
    }
    if valid.is_empty() {
        return;
    }
    let started = Instant::now();
    let result = {
        let writes: Vec<BatchWrite<'_>> = valid.iter().map(write_of).collect();
        store.insert_batches(&writes).await
    };
    match result {
        Ok(stats) => {
            metrics::histogram!("authpulse_coordinator_ingest_commit_seconds")
                .record(started.elapsed().as_secs_f64());
            metrics::histogram!("authpulse_coordinator_ingest_group_batches")
                .record(valid.len() as f64);
            for (job, st) in valid.into_iter().zip(stats) {
                let _ = job.done.send((Ok(st), job.results));
            }
        }
        Err(e) if valid.len() == 1 => {
            for job in valid {
                let _ = job.done.send((Err(e.to_string()), job.results));
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, batches = valid.len(),
                "storing a group of result batches failed; storing them one by one");
            for job in valid {
                let started = Instant::now();
                let one = store.insert_batches(&[write_of(&job)]).await;
                if one.is_ok() {
                    metrics::histogram!("authpulse_coordinator_ingest_commit_seconds")
                        .record(started.elapsed().as_secs_f64());
                    metrics::histogram!("authpulse_coordinator_ingest_group_batches").record(1.0);
                }
                let answer = one
                    .map(|s| s.first().copied().unwrap_or_default())
                    .map_err(|e| e.to_string());
                let _ = job.done.send((answer, job.results));
            }
        }
    }
}

fn write_of(job: &Job) -> BatchWrite<'_> {
    BatchWrite {
        agent_id: &job.agent_id,
        results: &job.results,
        acked_seq: job.acked_seq,
        received_ms: job.received_ms,
    }
}
