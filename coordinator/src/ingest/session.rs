//! One accepted stream: the stored ack and the assignment first, then
//! batches (admission, idempotent storage, the ack after commit),
//! heartbeats and pushed catalog changes until the stream ends.

use super::*;

/// Per-stream state after the hello.
pub(super) struct Session {
    pub(super) inner: Arc<Inner>,
    pub(super) agent_id: String,
    pub(super) region: String,
    pub(super) id: u64,
    pub(super) token: CancellationToken,
    pub(super) acks: AckTracker,
    /// The highest seq stored when the stream started: results above it
    /// that the ack tracker hasn't seen are certainly new.
    pub(super) stored_floor: u64,
    /// The highest seq stored or sent on this stream: an agent's
    /// `low_watermark` can't settle anything above it.
    pub(super) highest_seen: u64,
    /// Admission rules of the catalog versions results may come from.
    pub(super) rules: Vec<Arc<RegionRules>>,
    pub(super) refusals: RefusalAudit,
    pub(super) tx: Outbox,
}

/// Refused results waiting to be summed into the next audit entry.
#[derive(Default)]
pub(super) struct RefusalAudit {
    pub(super) last_ms: i64,
    pub(super) by_code: BTreeMap<&'static str, u64>,
    pub(super) example: Option<String>,
}

impl Session {
    pub(super) async fn run(
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
                max_unacked_results: self.inner.in_flight_share(),
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
                    max_unacked_results: self.inner.in_flight_share(),
                    ..Default::default()
                }),
            )
            .await;
        }
        // The ack this batch earns is recorded in the transaction that
        // stores the batch (shared with other streams' batches) and sent
        // only after that commit. If the commit fails the stream ends, and
        // this session's tracker with it.
        let (stats, results) = self
            .inner
            .commit
            .store(&self.agent_id, results, Some(acked), now_ms())
            .await;
        let stats = stats.map_err(|e| storage_failed("storing results", e))?;
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
                max_unacked_results: self.inner.in_flight_share(),
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
