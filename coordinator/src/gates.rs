//! Deploy gates: whether a pipeline may proceed, judged from the SLOs a
//! catalog gate names. A gate fails when any of its `block_when` conditions
//! holds for any of its SLOs, or when an SLO is stale (no data, newest
//! result older than `stale_after`, or `insufficient_data`) and the gate is
//! `on_stale: fail` (the default: fail-closed). Every failure reason names
//! the SLO and the number that failed.
//!
//! HTTP: `GET /api/v1/gates/{id}` answers 200 (pass) or 503 (fail) with the
//! decision as JSON — the status code is what Flagger webhooks read, and
//! `POST` with Flagger's payload works the same; `?always200=true` answers
//! 200 either way for Argo Rollouts web metrics (which count non-2xx as
//! errors) reading `$.decision`. Every decision served is written to the
//! audit log before the response leaves; if that write fails, or the
//! store doesn't answer within `http.storage_timeout`, the answer is 500
//! `unknown`, never an unrecorded decision and never a hung request.
//! Webhook payloads are recorded bounded ([`webhook_fields`]). `GET /api/v1/gates` lists
//! every gate's current decision for dashboards (not audited: it is a view,
//! not a decision a pipeline acts on).
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use authpulse_proto::catalog::{
    BlockWhen, Catalog, GateDef, MaintenanceGates, OnStale, SloDef, Window,
};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde_json::{Value, json};

use crate::alerting::{self, Severity};
use crate::api::ApiState;
use crate::api_access::Caller;
use crate::clock::rfc3339_ms;
use crate::slo::{self, SloState, SloStatus};
use crate::store::{Store, StoreError, now_ms};

/// How far back the bare `escalation` condition looks: the hold of an
/// escalation page ([`alerting::ESCALATION_HOLD_MS`]).
pub const ESCALATION_LOOKBACK: Duration =
    Duration::from_millis(alerting::ESCALATION_HOLD_MS as u64);

/// The most of a webhook payload (Flagger's) an audit entry keeps, in bytes
/// of JSON: past it, the record (or its `metadata`) becomes
/// `{"truncated": true, "bytes": N, "prefix": "…"}`, so a caller can't
/// bloat the log.
pub const MAX_WEBHOOK_RECORD: usize = 4096;

/// Characters of a cut record's JSON kept in its `prefix`.
const TRUNCATED_PREFIX_CHARS: usize = 512;

/// Flagger's string fields and other keys' names are cut to this many characters.
const MAX_WEBHOOK_STRING: usize = 256;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/gates", get(list))
        .route("/api/v1/gates/{id}", get(get_gate).post(post_gate))
}

/// One condition judged for one SLO.
#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    /// The condition's catalog name, e.g. `budget_below`.
    pub condition: &'static str,
    pub blocks: bool,
    /// The number compared, when there is one (a ratio, a burn rate, an age
    /// in seconds).
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    /// Human text: why it blocks, or what was seen.
    pub detail: String,
}

/// One SLO as the gate saw it.
#[derive(Clone, Debug, PartialEq)]
pub struct GateSlo {
    pub id: String,
    pub status: Option<SloStatus>,
    /// Start of the newest result of any of the SLO's probes.
    pub newest_result_ms: Option<i64>,
    /// Why the SLO is stale, if it is.
    pub stale: Option<String>,
    pub checks: Vec<Check>,
}

/// A gate's decision at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct GateDecision {
    pub gate: GateDef,
    pub evaluated_ms: i64,
    /// Empty = pass. Each names the SLO and the number that failed.
    pub reasons: Vec<String>,
    /// Stale SLOs that did not fail the gate (`on_stale: pass`).
    pub notes: Vec<String>,
    pub slos: Vec<GateSlo>,
}

impl GateDecision {
    pub fn pass(&self) -> bool {
        self.reasons.is_empty()
    }

    /// `pass` or `fail`.
    pub fn decision(&self) -> &'static str {
        if self.pass() { "pass" } else { "fail" }
    }

    /// The JSON served at `/api/v1/gates/{id}`.
    pub fn to_json(&self) -> Value {
        let g = &self.gate;
        json!({
            "gate": g.id,
            "decision": self.decision(),
            "evaluated_at": rfc3339_ms(self.evaluated_ms),
            "reasons": self.reasons,
            "notes": self.notes,
            "description": g.description,
            "block_when": g.block_when,
            "on_stale": match g.on_stale { OnStale::Fail => "fail", OnStale::Pass => "pass" },
            "stale_after_seconds": g.stale_after.as_secs_f64(),
            "slos": self.slos.iter().map(|s| slo_json(s, self.evaluated_ms)).collect::<Vec<_>>(),
        })
    }
}

fn slo_json(s: &GateSlo, now: i64) -> Value {
    let st = s.status.as_ref();
    json!({
        "id": s.id,
        "state": st.map(|st| st.state.as_str()),
        "objective": st.map(|st| st.objective),
        "sli_value": st.and_then(|st| st.sli_value),
        "error_budget_remaining": st.map(|st| st.error_budget_remaining),
        "burn_rates": st.map(|st| st.burn_rates.iter().map(|(w, r)| (w.to_string(), json!(r))).collect::<serde_json::Map<_, _>>()),
        "coverage": st.and_then(|st| st.coverage),
        "newest_result_at": s.newest_result_ms.map(rfc3339_ms),
        "newest_result_age_seconds": s.newest_result_ms.map(|t| (now - t).max(0) as f64 / 1000.0),
        "stale": s.stale.is_some(),
        "stale_reason": s.stale,
        "checks": s.checks.iter().map(|c| json!({
            "condition": c.condition,
            "blocks": c.blocks,
            "value": c.value,
            "threshold": c.threshold,
            "detail": c.detail,
        })).collect::<Vec<_>>(),
    })
}

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
    flight: tokio::sync::Mutex<HashMap<(String, u64), (u64, Arc<Decided>)>>,
}

/// A decision with its JSON rendered once: requests that reuse it serve
/// these bytes instead of building and serializing the same tree again
/// (that was most of a gate request's CPU in the `endpoints` bench).
#[derive(Debug)]
pub struct Decided {
    pub decision: GateDecision,
    /// [`GateDecision::to_json`], serialized: an object, so `{` comes first.
    body: String,
    /// `reasons` as JSON, for the audit record.
    reasons: Value,
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

/// Evaluates `gate` at `now_ms` from the store.
pub async fn evaluate(
    store: &Store,
    catalog: &Catalog,
    gate: &GateDef,
    now_ms: i64,
) -> Result<GateDecision, StoreError> {
    let defs: Vec<&SloDef> = gate
        .slos
        .iter()
        .filter_map(|id| catalog.slos.iter().find(|s| &s.id == id))
        .collect();
    // Each `sli_below` window is the SLO evaluated over that rolling window
    // (same SLI, budgeting and quorum); all in one evaluation with the SLOs.
    let mut windows: Vec<Duration> = gate
        .block_when
        .iter()
        .filter_map(|c| match c {
            BlockWhen::SliBelow(s) => Some(s.window),
            _ => None,
        })
        .collect();
    windows.sort();
    windows.dedup();
    let mut slos: Vec<SloDef> = defs.iter().map(|d| (*d).clone()).collect();
    for w in &windows {
        slos.extend(defs.iter().map(|d| SloDef {
            window: Window::Rolling(*w),
            ..(*d).clone()
        }));
    }
    let eval = Catalog {
        probes: catalog.probes.clone(),
        slos,
        ..Default::default()
    };
    let statuses = slo::evaluate(store, &eval, now_ms).await?;
    let (own, windowed) = statuses.split_at(defs.len().min(statuses.len()));
    let windowed: HashMap<(Duration, &str), &SloStatus> = windows
        .iter()
        .flat_map(|w| std::iter::repeat_n(*w, defs.len()))
        .zip(windowed)
        .map(|(w, s)| ((w, s.id.as_str()), s))
        .collect();

    let latest = store.latest_per_probe_region().await?;
    let wants_escalation = gate
        .block_when
        .iter()
        .filter_map(|c| match c {
            BlockWhen::Escalation => Some(ESCALATION_LOOKBACK),
            BlockWhen::EscalationWithin(d) => Some(*d),
            _ => None,
        })
        .max();

    let mut out = GateDecision {
        gate: gate.clone(),
        evaluated_ms: now_ms,
        reasons: Vec::new(),
        notes: Vec::new(),
        slos: Vec::new(),
    };
    let in_maintenance = catalog.slos_in_maintenance(now_ms);
    for id in &gate.slos {
        let Some(def) = defs.iter().find(|d| &d.id == id) else {
            // Validation rules this out; a gate must still never pass on it.
            out.reasons
                .push(format!("{id}: no such SLO in the running catalog"));
            continue;
        };
        let status = own.iter().find(|s| &s.id == id).cloned();
        let probe_ids: Vec<String> = def.probes.iter().map(|p| probe_of(p).to_string()).collect();
        let newest = latest
            .iter()
            .filter(|r| probe_ids.contains(&r.probe_id))
            // Judged on the coordinator's receive time: an agent's clock
            // (or a forged start time) can't keep a gate fresh.
            .map(|r| r.received_ms)
            .max();
        let stale = stale_reason(def, gate, status.as_ref(), newest, now_ms);
        let escalation = match wants_escalation {
            Some(back) => last_escalation(store, &probe_ids, now_ms - ms(back)).await?,
            None => None,
        };
        let checks: Vec<Check> = gate
            .block_when
            .iter()
            .map(|c| check(c, status.as_ref(), &windowed, id, escalation, now_ms))
            .collect();
        let maintenance = in_maintenance.get(id.as_str());
        let judged = match maintenance {
            Some(m) if m.gates == MaintenanceGates::Block => {
                out.reasons.push(format!(
                    "{id}: scheduled maintenance `{}` in progress until {} (gates: block)",
                    m.id, m.ends
                ));
                true
            }
            Some(m) if m.gates == MaintenanceGates::Ignore => {
                out.notes.push(format!(
                    "{id}: not judged: scheduled maintenance `{}` in progress until {} (gates: ignore)",
                    m.id, m.ends
                ));
                false
            }
            _ => true,
        };
        if judged {
            if let Some(why) = &stale {
                match gate.on_stale {
                    OnStale::Fail => out.reasons.push(format!("{id}: {why} (on_stale: fail)")),
                    OnStale::Pass => out.notes.push(format!("{id}: {why} (on_stale: pass)")),
                }
            }
            for c in checks.iter().filter(|c| c.blocks) {
                out.reasons.push(format!("{id}: {}", c.detail));
            }
        }
        out.slos.push(GateSlo {
            id: id.clone(),
            status,
            newest_result_ms: newest,
            stale,
            checks,
        });
    }
    Ok(out)
}

/// `probe` of a `probe/step` series name.
fn probe_of(series: &str) -> &str {
    series.split_once('/').map_or(series, |(p, _)| p)
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// `2m 5s`: an age or a duration rounded to whole seconds.
fn human(d: Duration) -> String {
    let secs = d.as_secs_f64().round() as u64;
    humantime::format_duration(Duration::from_secs(secs.max(if d.is_zero() {
        0
    } else {
        1
    })))
    .to_string()
}

fn stale_reason(
    def: &SloDef,
    gate: &GateDef,
    status: Option<&SloStatus>,
    newest: Option<i64>,
    now_ms: i64,
) -> Option<String> {
    let Some(newest) = newest else {
        return Some("stale: no results for its probes".into());
    };
    let age = Duration::from_millis(u64::try_from(now_ms - newest).unwrap_or(0));
    if age > gate.stale_after {
        return Some(format!(
            "stale: newest result is {} old > stale_after {}",
            human(age),
            human(gate.stale_after)
        ));
    }
    match status.map(|s| (s.state, s.coverage)) {
        None | Some((SloState::NoData, _)) => Some("stale: no data in the SLO window".into()),
        Some((SloState::InsufficientData, cov)) => Some(format!(
            "stale: insufficient data, coverage {} < {}",
            cov.map_or("unknown".into(), num),
            num(def.coverage.min)
        )),
        _ => None,
    }
}

/// A number for people: up to 4 decimals, trailing zeros dropped.
fn num(x: f64) -> String {
    num_at(x, 4)
}

fn num_at(x: f64, decimals: usize) -> String {
    let s = format!("{x:.decimals$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    if s == "-0" { "0".into() } else { s }
}

/// `value` and `threshold` with enough decimals that a strict comparison
/// between them reads true (0.98996 < 0.99, not "0.99 < 0.99").
fn num_pair(value: f64, threshold: f64) -> (String, String) {
    for d in 4..=8 {
        let (a, b) = (num_at(value, d), num_at(threshold, d));
        if a != b || value == threshold {
            return (a, b);
        }
    }
    (value.to_string(), threshold.to_string())
}

fn condition_name(c: &BlockWhen) -> &'static str {
    match c {
        BlockWhen::PageAlert => "page_alert",
        BlockWhen::TicketAlert => "ticket_alert",
        BlockWhen::BudgetExhausted => "budget_exhausted",
        BlockWhen::Escalation => "escalation",
        BlockWhen::BudgetBelow(_) => "budget_below",
        BlockWhen::EscalationWithin(_) => "escalation_within",
        BlockWhen::SliBelow(_) => "sli_below",
    }
}

fn check(
    cond: &BlockWhen,
    status: Option<&SloStatus>,
    windowed: &HashMap<(Duration, &str), &SloStatus>,
    slo: &str,
    escalation: Option<i64>,
    now_ms: i64,
) -> Check {
    let condition = condition_name(cond);
    let mut c = Check {
        condition,
        blocks: false,
        value: None,
        threshold: None,
        detail: String::new(),
    };
    let Some(st) = status else {
        c.detail = "no SLO status".into();
        return c;
    };
    match cond {
        BlockWhen::PageAlert | BlockWhen::TicketAlert => {
            let severity = if matches!(cond, BlockWhen::PageAlert) {
                Severity::Page
            } else {
                Severity::Ticket
            };
            // The burn-rate rule itself, not the notification: an SLO that
            // opted out of paging still blocks a gate that asks for it.
            match alerting::alerts_for(st)
                .into_iter()
                .find(|a| a.severity == severity)
            {
                Some(a) => {
                    let (long, short) = a.rule.split_once('/').unwrap_or((a.rule, ""));
                    c.blocks = true;
                    c.value = Some(a.burn_long);
                    c.threshold = Some(a.factor);
                    c.detail = format!(
                        "{}-level burn-rate alert ({}): burn rate {} over {long} and {} over {short}, both ≥ {}",
                        severity.as_str(),
                        a.rule,
                        num(a.burn_long),
                        num(a.burn_short),
                        num(a.factor)
                    );
                }
                None => {
                    let rule = alerting::RULES.iter().find(|r| r.severity == severity);
                    let burn = rule.and_then(|r| {
                        st.burn_rates
                            .iter()
                            .find(|(w, _)| *w == r.long)
                            .and_then(|(_, b)| *b)
                    });
                    c.value = burn;
                    c.threshold = rule.map(|r| alerting::factor(r.factor_30d, st.window));
                    c.detail = format!("no {}-level burn-rate alert", severity.as_str());
                }
            }
        }
        BlockWhen::BudgetExhausted => {
            c.value = Some(st.error_budget_remaining);
            c.threshold = Some(0.0);
            c.blocks = st.total > 0 && st.error_budget_remaining <= 0.0;
            c.detail = if c.blocks {
                format!(
                    "error budget exhausted: remaining {} ≤ 0",
                    num(st.error_budget_remaining)
                )
            } else {
                format!("error budget remaining {}", num(st.error_budget_remaining))
            };
        }
        BlockWhen::BudgetBelow(x) => {
            let r = st.error_budget_remaining;
            c.value = Some(r);
            c.threshold = Some(*x);
            c.blocks = st.total > 0 && r < *x;
            let (a, b) = num_pair(r, *x);
            c.detail = if c.blocks {
                format!("error budget remaining {a} < {b}")
            } else {
                format!("error budget remaining {a} ≥ {b}")
            };
        }
        BlockWhen::Escalation | BlockWhen::EscalationWithin(_) => {
            let within = match cond {
                BlockWhen::EscalationWithin(d) => *d,
                _ => ESCALATION_LOOKBACK,
            };
            c.threshold = Some(within.as_secs_f64());
            let age = escalation
                .map(|t| Duration::from_millis(u64::try_from(now_ms - t).unwrap_or(0)))
                .filter(|age| *age <= within);
            match age {
                Some(age) => {
                    c.blocks = true;
                    c.value = Some(age.as_secs_f64());
                    c.detail = format!(
                        "escalation (an action that must be denied was allowed) {} ago, within {}",
                        human(age),
                        human(within)
                    );
                }
                None => c.detail = format!("no escalation within {}", human(within)),
            }
        }
        BlockWhen::SliBelow(s) => {
            let w = slo::short(s.window);
            c.threshold = Some(s.value);
            match windowed.get(&(s.window, slo)).and_then(|st| st.sli_value) {
                Some(v) => {
                    c.value = Some(v);
                    c.blocks = v < s.value;
                    let (a, b) = num_pair(v, s.value);
                    let op = if c.blocks { "<" } else { "≥" };
                    c.detail = format!("SLI over the last {w} {a} {op} {b}");
                }
                None => c.detail = format!("no results in the last {w}"),
            }
        }
    }
    c
}

/// Receive time of the newest result of `probes` received since `since_ms`
/// whose class (or a step's) is `escalation`: an escalation that arrives
/// late (from an agent's spool) blocks for the window after it arrived,
/// as it pages then.
///
/// A step reference (`journey/step`) is looked up by its journey's id.
async fn last_escalation(
    store: &Store,
    probes: &[String],
    since_ms: i64,
) -> Result<Option<i64>, StoreError> {
    let ids: Vec<String> = probes
        .iter()
        .map(|p| {
            p.split_once('/')
                .map_or(p.as_str(), |(id, _)| id)
                .to_string()
        })
        .collect();
    store.last_escalation_received_since(&ids, since_ms).await
}

/// A JSON answer that no cache keeps (a decision is only true now).
/// [`respond`] for a body already serialized.
fn respond_json_text(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn respond(status: StatusCode, body: Value) -> Response {
    let mut r = (status, Json(body)).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// `?always200`, `?always200=true|1`: answer 200 whatever the decision.
fn always200(q: &HashMap<String, String>) -> Result<bool, String> {
    match q.get("always200").map(String::as_str) {
        None | Some("false" | "0") => Ok(false),
        Some("" | "true" | "1") => Ok(true),
        Some(other) => Err(format!("always200=`{other}`: use true or false")),
    }
}

/// Every gate's current decision (a view for dashboards; not audited).
async fn list(State(st): State<ApiState>) -> Response {
    let snapshot = st.catalog.borrow().clone();
    let now = now_ms();
    let mut gates = Vec::new();
    for gate in &snapshot.catalog.gates {
        let evaluated = st
            .storage
            .run(
                "gate list",
                evaluate(&st.store, &snapshot.catalog, gate, now),
            )
            .await;
        match evaluated {
            Ok(d) => gates.push(d.to_json()),
            // Logged by the guard; no internals in the answer.
            Err(e) => gates.push(json!({
                "gate": gate.id,
                "decision": "unknown",
                "error": e.to_string(),
            })),
        }
    }
    let mut r = Json(json!({ "generated_at": rfc3339_ms(now), "gates": gates })).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

async fn get_gate(
    State(st): State<ApiState>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    who: Option<Extension<Caller>>,
    headers: HeaderMap,
) -> Response {
    serve(st, id, q, &headers, caller(who), "GET", None).await
}

/// The token name the request was authorised as (see `api_access`).
fn caller(who: Option<Extension<Caller>>) -> Option<String> {
    who.and_then(|Extension(c)| c.0)
}

/// Flagger webhooks POST `{name, namespace, phase, checksum, metadata}`;
/// any JSON object (or an empty body) is accepted and recorded.
async fn post_gate(
    State(st): State<ApiState>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    who: Option<Extension<Caller>>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            let mut r = crate::api::body_refused(&e);
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            return r;
        }
    };
    let payload = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(m)) => Some(webhook_fields(&m)),
            Ok(_) => {
                return respond(
                    StatusCode::BAD_REQUEST,
                    json!({ "error": "the body must be a JSON object (Flagger's webhook payload) or empty" }),
                );
            }
            Err(e) => {
                return respond(
                    StatusCode::BAD_REQUEST,
                    json!({ "error": format!("the body is not JSON: {e}") }),
                );
            }
        }
    };
    serve(st, id, q, &headers, caller(who), "POST", payload).await
}

/// The Flagger fields worth keeping: who is rolling out what, in which
/// phase; at most [`MAX_WEBHOOK_RECORD`] bytes of JSON whatever was sent.
pub fn webhook_fields(m: &serde_json::Map<String, Value>) -> Value {
    let cut = |s: &str| s.chars().take(MAX_WEBHOOK_STRING).collect::<String>();
    let mut out = serde_json::Map::new();
    for k in ["name", "namespace", "phase", "checksum"] {
        if let Some(v) = m.get(k) {
            let v = match v {
                Value::String(s) => Value::String(cut(s)),
                Value::Number(_) | Value::Bool(_) | Value::Null => v.clone(),
                other => Value::String(cut(&other.to_string())),
            };
            out.insert(k.into(), v);
        }
    }
    if let Some(meta) = m.get("metadata") {
        out.insert("metadata".into(), capped(meta, MAX_WEBHOOK_RECORD / 2));
    }
    // Names only, cut: a key can be as long as the body.
    let other: Vec<String> = m
        .keys()
        .filter(|k| !["name", "namespace", "phase", "checksum", "metadata"].contains(&k.as_str()))
        .take(20)
        .map(|k| cut(k))
        .collect();
    if !other.is_empty() {
        out.insert("other_keys".into(), json!(other));
    }
    capped(&Value::Object(out), MAX_WEBHOOK_RECORD)
}

/// `v` itself if its JSON is at most `max` bytes, else a marker with the
/// size and the start of the text.
fn capped(v: &Value, max: usize) -> Value {
    let text = v.to_string();
    if text.len() <= max {
        return v.clone();
    }
    json!({
        "truncated": true,
        "bytes": text.len(),
        "prefix": text.chars().take(TRUNCATED_PREFIX_CHARS).collect::<String>(),
    })
}

async fn serve(
    st: ApiState,
    id: String,
    q: HashMap<String, String>,
    headers: &HeaderMap,
    caller: Option<String>,
    method: &'static str,
    webhook: Option<Value>,
) -> Response {
    let always200 = match always200(&q) {
        Ok(b) => b,
        Err(e) => return respond(StatusCode::BAD_REQUEST, json!({ "error": e })),
    };
    let snapshot = st.catalog.borrow().clone();
    let Some(gate) = snapshot.catalog.gates.iter().find(|g| g.id == id) else {
        let known: Vec<&str> = snapshot
            .catalog
            .gates
            .iter()
            .map(|g| g.id.as_str())
            .collect();
        return respond(
            StatusCode::NOT_FOUND,
            json!({ "error": format!("no gate `{id}` in the catalog"), "gates": known }),
        );
    };
    // Under the storage deadline: with the database gone the pipeline gets
    // `unknown` in time, not a hung request.
    let evaluated = st
        .storage
        .run(
            "gate",
            st.gate_decisions
                .decide(&st.store, &snapshot.catalog, snapshot.version, gate),
        )
        .await;
    let mut fields = json!({
        "gate": id,
        "method": method,
        "always200": always200,
        "catalog_version": snapshot.version,
        "by": caller,
    });
    if let Some(ua) = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
    {
        fields["user_agent"] = json!(ua.chars().take(200).collect::<String>());
    }
    if let Some(w) = webhook {
        fields["webhook"] = w;
    }
    let decision = match &evaluated {
        Ok(d) => {
            fields["decision"] = json!(d.decision.decision());
            fields["reasons"] = d.reasons.clone();
            d.decision.decision()
        }
        Err(e) => {
            // The guard logged the details; the answer and the record say
            // only what kind of failure it was.
            fields["decision"] = json!("unknown");
            fields["error"] = json!(e.to_string());
            "unknown"
        }
    };
    // No decision leaves without its audit record.
    let seq = match st.audit.append_durable("gate_decision", fields).await {
        Ok(seq) => seq,
        Err(e) => {
            tracing::error!(gate = %id, error = %e, "cannot record the gate decision; answering unknown");
            return respond(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({ "gate": id, "decision": "unknown", "error": "the decision could not be written to the audit log" }),
            );
        }
    };
    metrics::counter!("authpulse_coordinator_gate_decisions_total",
        "gate" => id.clone(),
        "decision" => decision)
    .increment(1);
    match evaluated {
        Ok(d) => {
            let status = if d.decision.pass() || always200 {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            respond_json_text(status, d.body_with_audit_seq(seq))
        }
        Err(e) => respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({ "gate": id, "decision": "unknown", "error": e.to_string(), "audit_seq": seq }),
        ),
    }
}
