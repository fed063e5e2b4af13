//! SLO statuses shared by the read endpoints (`/api/v1/slos`, the status
//! feed `/api/v2/*`, its Atom feed and badges): one evaluation of the whole
//! catalog is reused while nothing that could change it was stored (the
//! store's generation) and for at most [`REUSE_MS`], the same rule gate
//! decisions follow. A dashboard or status widget polled by many browsers
//! then costs one evaluation per second, not one per request; a result
//! stored, a roll-up refreshed or an alert saved makes the next request
//! evaluate again.
use std::sync::Arc;

use authpulse_proto::catalog::Catalog;

use crate::clock::now_ms;
use crate::slo::{self, SloStatus};

use crate::store::{Store, StoreError};

/// How long an evaluation is reused: SLO windows move by the minute, and a
/// status a second old is what any poller sees anyway.
pub const REUSE_MS: i64 = 1_000;

/// One evaluation of every SLO, with what readers render from it, once.
pub struct Evaluation {
    pub evaluated_ms: i64,
    pub statuses: Vec<SloStatus>,
    /// The `/api/v1/slos` body, rendered by the first request that needs it.
    pub slos_body: std::sync::OnceLock<axum::body::Bytes>,
}

/// The last evaluation and what it was computed from.
struct Entry {
    version: u64,
    generation: u64,
    evaluation: Arc<Evaluation>,
}

/// The last evaluation of the catalog's SLOs.
#[derive(Default)]
pub struct SloCache {
    /// Held while evaluating: concurrent misses wait for the one
    /// evaluation instead of all evaluating at once.
    flight: tokio::sync::Mutex<Option<Entry>>,
}

impl SloCache {
    /// Every SLO of `catalog` (at `version`), evaluated no longer than
    /// [`REUSE_MS`] ago and after the store's last change.
    pub async fn statuses(
        &self,
        store: &Store,
        catalog: &Catalog,
        version: u64,
    ) -> Result<Arc<Evaluation>, StoreError> {
        let mut entry = self.flight.lock().await;
        let now = now_ms();
        // Read before evaluating: a write committed meanwhile invalidates.
        let generation = store.generation();
        if let Some(e) = entry.as_ref()
            && e.version == version
            && e.generation == generation
            && (0..REUSE_MS).contains(&(now - e.evaluation.evaluated_ms))
        {
            metrics::counter!("authpulse_coordinator_slo_evaluations_total", "cached" => "true")
                .increment(1);
            return Ok(e.evaluation.clone());
        }
        let evaluation = Arc::new(Evaluation {
            evaluated_ms: now,
            statuses: slo::evaluate(store, catalog, now).await?,
            slos_body: std::sync::OnceLock::new(),
        });
        metrics::counter!("authpulse_coordinator_slo_evaluations_total", "cached" => "false")
            .increment(1);
        *entry = Some(Entry {
            version,
            generation,
            evaluation: evaluation.clone(),
        });
        Ok(evaluation)
    }
}
