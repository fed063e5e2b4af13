//! Gate decisions reused across requests: one evaluation per gate per
//! second (or per store change), shared by concurrent requests, with the
//! JSON rendered once. Every request that reuses a decision is still
//! audited by the HTTP layer.
use std::collections::HashMap;
use std::sync::Arc;

use authpulse_proto::catalog::{Catalog, GateDef};
use serde_json::{Value, json};

use super::{GateDecision, evaluate};
use crate::store::{Store, StoreError, now_ms};

/// How long a gate decision is reused: SLO data moves by the minute, and a
/// deploy pipeline polling in a loop (or many at once) then costs one
/// evaluation per gate per second instead of one per request.
pub const DECISION_REUSE_MS: i64 = 1_000;

/// Recent decisions per (gate, catalog version), reused while nothing that
/// could change them was stored (see [`Store::generation`]) and for at most
/// [`DECISION_REUSE_MS`], so concurrent and rapid requests share one
/// evaluation. Every request is still audited.
#[derive(Default)]
pub struct DecisionCache {
    /// Held while evaluating: requests that miss wait for the one
    /// evaluation instead of all evaluating at once.
    flight: tokio::sync::Mutex<HashMap<CacheKey, (u64, Arc<Decided>)>>,
}

/// (gate id, catalog version).
type CacheKey = (String, u64);

/// A decision with its JSON rendered once: requests that reuse it serve
/// these bytes instead of building and serializing the same tree again
/// (that was most of a gate request's CPU in the `endpoints` bench).
#[derive(Debug)]
pub struct Decided {
    pub decision: GateDecision,
    /// [`GateDecision::to_json`], serialized: an object, so `{` comes first.
    body: String,
    /// `reasons` as JSON, for the audit record.
    pub reasons: Value,
}

impl Decided {
    fn new(decision: GateDecision) -> Decided {
        let body = decision.to_json().to_string();
        let reasons = json!(decision.reasons);
        Decided {
            decision,
            body,
            reasons,
        }
    }

    /// The served body: the decision with `audit_seq` (`null` without an
    /// audit log) as its first key.
    pub fn body_with_audit_seq(&self, seq: Option<u64>) -> String {
        let seq = seq.map_or_else(|| "null".to_string(), |s| s.to_string());
        let rest = self.body.strip_prefix('{').unwrap_or("}");
        let sep = if rest.starts_with('}') { "" } else { "," };
        format!("{{\"audit_seq\":{seq}{sep}{rest}")
    }
}

impl DecisionCache {
    /// The decision for `gate` no older than [`DECISION_REUSE_MS`].
    pub async fn decide(
        &self,
        store: &Store,
        catalog: &Catalog,
        version: u64,
        gate: &GateDef,
    ) -> Result<Arc<Decided>, StoreError> {
        let mut cached = self.flight.lock().await;
        let key = (gate.id.clone(), version);
        let now = now_ms();
        // Read before evaluating: a write committed meanwhile invalidates.
        let generation = store.generation();
        if let Some((g, d)) = cached.get(&key)
            && *g == generation
            && (0..DECISION_REUSE_MS).contains(&(now - d.decision.evaluated_ms))
        {
            return Ok(d.clone());
        }
        let d = Arc::new(Decided::new(evaluate(store, catalog, gate, now).await?));
        // Older catalog versions' entries go: the catalog changed.
        cached.retain(|(_, v), _| *v == version);
        cached.insert(key, (generation, d.clone()));
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The spliced text is the decision's JSON plus `audit_seq`, as the
    /// tree the handler used to build and serialize per request.
    #[test]
    fn the_served_body_is_the_decision_with_its_audit_seq() {
        let catalog = authpulse_proto::catalog::load_str(
            "t.yaml",
            "probes:\n  - id: p\n    kind: http\n    url: https://idp.example.com/\nslos:\n  - id: s\n    probes: [p]\n    objective: 99\n    window: 1h\ngates:\n  - id: deploy\n    slos: [s]\n    block_when: [page_alert]\n",
        )
        .expect("catalog");
        let decision = GateDecision {
            gate: catalog.gates[0].clone(),
            evaluated_ms: 1_764_000_000_123,
            reasons: vec!["s: budget \"0.1\" below 0.2 ✗".into()],
            notes: vec![],
            slos: vec![],
        };
        let decided = Decided::new(decision.clone());
        for seq in [Some(7), None] {
            let served: Value =
                serde_json::from_str(&decided.body_with_audit_seq(seq)).expect("valid JSON");
            let mut expected = decision.to_json();
            expected["audit_seq"] = json!(seq);
            assert_eq!(served, expected);
        }
        assert_eq!(decided.reasons, json!(decision.reasons));
    }
}
