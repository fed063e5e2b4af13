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
use std::time::Duration;

use authpulse_proto::catalog::{
    BlockWhen, Catalog, GateDef, MaintenanceGates, OnStale, SloDef, Window,
};
use serde_json::{Value, json};

use crate::alerting::{self, Severity};
use crate::clock::rfc3339_ms;
use crate::slo::{self, SloState, SloStatus};
use crate::store::{Store, StoreError};

mod cache;
mod http;

pub use cache::{DECISION_REUSE_MS, Decided, DecisionCache};
pub use http::{MAX_WEBHOOK_RECORD, routes, webhook_fields};

/// How far back the bare `escalation` condition looks: the hold of an
/// escalation page ([`alerting::ESCALATION_HOLD_MS`]).
pub const ESCALATION_LOOKBACK: Duration =
    Duration::from_millis(alerting::ESCALATION_HOLD_MS as u64);

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
