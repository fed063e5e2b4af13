//! The public status feed: an Atlassian-Statuspage-compatible API
//! (`/api/v2/summary.json`, `status.json`, `components.json`,
//! `incidents.json`, `incidents/unresolved.json`), an Atom history
//! (`/history.atom`) and shields.io badges per SLO (`/badge/{slo}.json`,
//! `/badge/{slo}.svg`). Components are the catalog's `components:` (or one
//! per SLO); a component's status follows its SLOs (rules on
//! [`slo_condition`]) and is kept in the store, so a component whose SLOs
//! lack trustworthy data keeps its last known status. Incidents are opened,
//! updated and resolved from the firing alerts by [`sync_incidents`], which
//! the SLO evaluation loop calls and every request here calls too (so the
//! feed is current between evaluations); they live in the store and survive
//! restarts. Everything here is public and read-only for callers.
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use authpulse_proto::catalog::{Catalog, Sli};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use sha2::Digest;

use crate::alerting::{self, AlertStore, Firing, Severity};
use crate::api::{ApiState, rfc3339_ms};
use crate::slo::{self, SloState, SloStatus};
use crate::store::{Store, StoreError, now_ms};

/// The page's name in the feeds.
pub const PAGE_NAME: &str = "authpulse";

/// All times are served in UTC.
pub const TIME_ZONE: &str = "Etc/UTC";

/// Below this share of error budget left a component is degraded.
pub const DEGRADED_BUDGET: f64 = 0.25;

/// Below this SLI over the last 5 minutes (most runs fail) a component is
/// in a major outage before the page alert's long window agrees.
pub const MAJOR_OUTAGE_SLI_5M: f64 = 0.5;

/// Incidents listed by `/api/v2/incidents.json` and `/history.atom`
/// (Statuspage also shows the 50 most recent).
pub const INCIDENT_LIMIT: u32 = 50;

/// Statuspage component statuses, best to worst.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ComponentStatus {
    Operational,
    DegradedPerformance,
    PartialOutage,
    MajorOutage,
}

impl ComponentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ComponentStatus::Operational => "operational",
            ComponentStatus::DegradedPerformance => "degraded_performance",
            ComponentStatus::PartialOutage => "partial_outage",
            ComponentStatus::MajorOutage => "major_outage",
        }
    }

    pub fn parse(s: &str) -> Option<ComponentStatus> {
        [
            ComponentStatus::Operational,
            ComponentStatus::DegradedPerformance,
            ComponentStatus::PartialOutage,
            ComponentStatus::MajorOutage,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }

    /// The page indicator (and incident impact) this status stands for.
    pub fn indicator(self) -> &'static str {
        match self {
            ComponentStatus::Operational => "none",
            ComponentStatus::DegradedPerformance => "minor",
            ComponentStatus::PartialOutage => "major",
            ComponentStatus::MajorOutage => "critical",
        }
    }

    fn words(self) -> &'static str {
        match self {
            ComponentStatus::Operational => "operational",
            ComponentStatus::DegradedPerformance => "degraded performance",
            ComponentStatus::PartialOutage => "partial outage",
            ComponentStatus::MajorOutage => "major outage",
        }
    }
}

/// Statuspage's description of a page indicator.
pub fn indicator_description(indicator: &str) -> &'static str {
    match indicator {
        "minor" => "Partially Degraded Service",
        "major" => "Partial System Outage",
        "critical" => "Major System Outage",
        _ => "All Systems Operational",
    }
}

// The stored shapes of components and incidents are the store's row types.
pub use crate::store::{AffectedComponent, ComponentRef, ComponentState, Incident, IncidentUpdate};

/// How one SLO stands for the status page (worst rule that holds):
/// - `major_outage`: its page alert condition holds (fast burn over 1h and
///   5m, or 6h and 30m), an escalation alert fires for it, or over the last
///   5 minutes fewer than half of the runs were good;
/// - `partial_outage`: one region burns at page speed over the last hour
///   while the SLO as a whole does not (one region down, or a quorum not met);
/// - `degraded_performance`: its ticket alert condition holds (slow burn),
///   or less than 25 % of its error budget is left (incl. exhausted);
/// - `operational` otherwise.
///
/// Conditions are judged from the burn rates whatever the SLO's `alerting`
/// opt-outs say: those silence notifications, not the page.
pub fn slo_condition(status: &SloStatus, escalating: bool) -> ComponentStatus {
    let alerts = alerting::alerts_for(status);
    if escalating || alerts.iter().any(|a| a.severity == Severity::Page) {
        return ComponentStatus::MajorOutage;
    }
    if sli_5m(status).is_some_and(|v| v < MAJOR_OUTAGE_SLI_5M) {
        return ComponentStatus::MajorOutage;
    }
    let page_factor = alerting::RULES
        .iter()
        .find(|r| r.severity == Severity::Page)
        .map(|r| alerting::factor(r.factor_30d, status.window));
    if let Some(f) = page_factor
        && status
            .regions
            .iter()
            .any(|r| r.burn_rate_1h.is_some_and(|b| b >= f))
    {
        return ComponentStatus::PartialOutage;
    }
    if alerts.iter().any(|a| a.severity == Severity::Ticket)
        || (status.total > 0 && status.error_budget_remaining < DEGRADED_BUDGET)
    {
        return ComponentStatus::DegradedPerformance;
    }
    ComponentStatus::Operational
}

/// Good share over the last 5 minutes, from the 5m burn rate.
fn sli_5m(s: &SloStatus) -> Option<f64> {
    s.burn_rates
        .iter()
        .find(|(w, _)| *w == "5m")
        .and_then(|(_, r)| *r)
        .map(|r| 1.0 - r * slo::allowed_bad_fraction(s.objective))
}

/// Whether an SLO's numbers may make a component better: with no data or
/// too little of it, no news is not good news.
fn trusted(s: &SloStatus) -> bool {
    matches!(s.state, SloState::Ok | SloState::Exhausted)
}

/// A component as the catalog defines it (or as made up for an SLO).
#[derive(Clone, Debug, PartialEq)]
struct ComponentSpec {
    id: String,
    name: String,
    description: Option<String>,
    slos: Vec<String>,
}

/// The catalog's components; without any, one per SLO (named by its id,
/// described by its description).
fn component_specs(catalog: &Catalog) -> Vec<ComponentSpec> {
    if catalog.components.is_empty() {
        return catalog
            .slos
            .iter()
            .map(|s| ComponentSpec {
                id: s.id.clone(),
                name: s.id.clone(),
                description: s.description.clone(),
                slos: vec![s.id.clone()],
            })
            .collect();
    }
    catalog
        .components
        .iter()
        .map(|c| ComponentSpec {
            id: c.id.clone(),
            name: c.name.clone(),
            description: c.description.clone(),
            slos: c.slos.clone(),
        })
        .collect()
}

/// A component as served.
#[derive(Clone, Debug, PartialEq)]
pub struct ComponentView {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    /// 1-based, catalog order.
    pub position: usize,
    pub slos: Vec<String>,
    pub status: ComponentStatus,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// The page after a sync.
#[derive(Clone, Debug, PartialEq)]
pub struct PageState {
    pub id: String,
    pub components: Vec<ComponentView>,
    /// The latest change of a component or an incident.
    pub updated_ms: i64,
}

impl PageState {
    /// The worst component status (operational for an empty page).
    pub fn worst(&self) -> ComponentStatus {
        self.components
            .iter()
            .map(|c| c.status)
            .max()
            .unwrap_or(ComponentStatus::Operational)
    }
}

/// Syncs run one at a time (the evaluation loop and requests), so two of
/// them never open the same incident twice or lose a status change.
static SYNC: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The firing burn-rate and escalation alerts, as committed to the store.
pub async fn firing_alerts(store: &Store) -> Result<Vec<Firing>, StoreError> {
    let mut firing = store.firing_alerts().await?;
    firing.extend(store.escalation_alerts().await?.into_iter().map(|(f, _)| f));
    Ok(firing)
}

/// What the SLO evaluation loop calls right after the alerter stepped:
/// reads the firing alerts from the store and runs [`sync_incidents`].
pub async fn sync(
    store: &Store,
    catalog: &Catalog,
    statuses: &[SloStatus],
    now_ms: i64,
) -> Result<(), StoreError> {
    let firing = firing_alerts(store).await?;
    sync_incidents(store, catalog, statuses, &firing, now_ms).await
}

/// Brings the stored page in line with `statuses` and the `firing` alerts
/// (burn-rate and escalation): component statuses, and incidents opened
/// for SLOs on the page whose alerts started firing, updated when the kinds
/// of firing alerts change, resolved when none is left.
pub async fn sync_incidents(
    store: &Store,
    catalog: &Catalog,
    statuses: &[SloStatus],
    firing: &[Firing],
    now_ms: i64,
) -> Result<(), StoreError> {
    sync_page(store, catalog, statuses, firing, now_ms, true)
        .await
        .map(|_| ())
}

async fn sync_page(
    store: &Store,
    catalog: &Catalog,
    statuses: &[SloStatus],
    firing: &[Firing],
    now_ms: i64,
    write: bool,
) -> Result<PageState, StoreError> {
    let _one_at_a_time = SYNC.lock().await;
    let page_id = store.statuspage_id().await?;
    let by_id: HashMap<&str, &SloStatus> = statuses.iter().map(|s| (s.id.as_str(), s)).collect();
    let escalating: BTreeSet<&str> = firing
        .iter()
        .filter(|f| f.alert.is_escalation())
        .map(|f| f.alert.slo.as_str())
        .collect();
    let known: HashMap<String, ComponentState> = store
        .status_components()
        .await?
        .into_iter()
        .map(|c| (c.id.clone(), c))
        .collect();

    let mut changed = Vec::new();
    let mut components = Vec::new();
    for (i, spec) in component_specs(catalog).into_iter().enumerate() {
        let mut computed = ComponentStatus::Operational;
        let mut any_trusted = false;
        for id in &spec.slos {
            if let Some(s) = by_id.get(id.as_str()) {
                computed = computed.max(slo_condition(s, escalating.contains(id.as_str())));
                any_trusted |= trusted(s);
            }
        }
        let last = known.get(&spec.id);
        let last_status = last.and_then(|c| ComponentStatus::parse(&c.status));
        // Without trustworthy data a component can get worse on the
        // evidence there is, but not better: it keeps its last status.
        let status = if any_trusted {
            computed
        } else {
            computed.max(last_status.unwrap_or(ComponentStatus::Operational))
        };
        let state = match last {
            Some(c) if last_status == Some(status) => c.clone(),
            _ => {
                let s = ComponentState {
                    id: spec.id.clone(),
                    status: status.as_str().to_string(),
                    created_ms: last.map_or(now_ms, |c| c.created_ms),
                    updated_ms: now_ms,
                };
                changed.push(s.clone());
                s
            }
        };
        components.push(ComponentView {
            id: spec.id,
            name: spec.name,
            description: spec.description,
            position: i + 1,
            slos: spec.slos,
            status,
            created_ms: state.created_ms,
            updated_ms: state.updated_ms,
        });
    }
    if write && !changed.is_empty() {
        store.save_status_components(&changed).await?;
    }
    let before: HashMap<&str, ComponentStatus> = known
        .values()
        .filter_map(|c| Some((c.id.as_str(), ComponentStatus::parse(&c.status)?)))
        .collect();
    let ctx = IncidentContext {
        page_id: &page_id,
        catalog,
        components: &components,
        before: &before,
        now_ms,
    };
    if write {
        sync_open_incidents(store, &ctx, firing).await?;
    }
    let updated_ms = components
        .iter()
        .map(|c| c.updated_ms)
        .chain(store.incidents_updated_ms().await?)
        .max()
        .unwrap_or(now_ms);
    Ok(PageState {
        id: page_id,
        components,
        updated_ms,
    })
}

/// What incident bookkeeping needs to know about the page.
struct IncidentContext<'a> {
    page_id: &'a str,
    catalog: &'a Catalog,
    components: &'a [ComponentView],
    /// Component statuses before this sync.
    before: &'a HashMap<&'a str, ComponentStatus>,
    now_ms: i64,
}

impl IncidentContext<'_> {
    /// The components that show `slo`.
    fn components_of(&self, slo: &str) -> Vec<&ComponentView> {
        self.components
            .iter()
            .filter(|c| c.slos.iter().any(|s| s == slo))
            .collect()
    }

    fn affected(&self, refs: &[ComponentRef]) -> Vec<AffectedComponent> {
        refs.iter()
            .map(|r| {
                let now = self
                    .components
                    .iter()
                    .find(|c| c.id == r.id)
                    .map_or(ComponentStatus::Operational, |c| c.status);
                let old = self
                    .before
                    .get(r.id.as_str())
                    .copied()
                    .unwrap_or(ComponentStatus::Operational);
                AffectedComponent {
                    code: r.id.clone(),
                    name: r.name.clone(),
                    old_status: old.as_str().to_string(),
                    new_status: now.as_str().to_string(),
                }
            })
            .collect()
    }

    /// "elevated error rate", "elevated latency" or, for escalations only,
    /// "unexpected authorization results".
    fn what(&self, slo: &str, kinds: &[String]) -> &'static str {
        if kinds.iter().all(|k| k == "escalation") {
            return "unexpected authorization results";
        }
        match self
            .catalog
            .slos
            .iter()
            .find(|s| s.id == slo)
            .map(|s| &s.sli)
        {
            Some(Sli::Latency { .. }) => "elevated latency",
            _ => "elevated error rate",
        }
    }
}

/// The alert kind: `escalation`, `page` or `ticket`.
fn kind(f: &Firing) -> &'static str {
    if f.alert.is_escalation() {
        "escalation"
    } else {
        f.alert.severity.as_str()
    }
}

/// Incident impact from the firing alert kinds (the page indicator a page
/// alert leads to: its component is in a major outage).
fn impact(kinds: &[String]) -> ComponentStatus {
    if kinds.iter().any(|k| k == "page" || k == "escalation") {
        ComponentStatus::MajorOutage
    } else {
        ComponentStatus::DegradedPerformance
    }
}

fn impact_rank(impact: &str) -> u8 {
    match impact {
        "critical" => 3,
        "major" => 2,
        "minor" => 1,
        _ => 0,
    }
}

/// A trailing-zero-free number, two decimals, three significant digits
/// below 1: `14.4`, `3.36`, `20`, `0.004`.
fn num(v: f64) -> String {
    let decimals = if v.abs() >= 1.0 || v == 0.0 || !v.is_finite() {
        2
    } else {
        ((-v.abs().log10()).ceil() as usize + 2).min(9)
    };
    let s = format!("{v:.decimals$}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// One firing alert in words.
fn alert_words(f: &Firing) -> String {
    let a = &f.alert;
    if a.is_escalation() {
        return "an authorization check returned an unexpected result".into();
    }
    let (long, short) = a.rule.split_once('/').unwrap_or((a.rule, ""));
    let speed = match a.severity {
        Severity::Page => "fast burn",
        Severity::Ticket => "slow burn",
    };
    format!(
        "{speed}: the error budget is spent {}× the sustainable rate over {long} and {}× over {short} (alerting at {}×)",
        num(a.burn_long),
        num(a.burn_short),
        num(a.factor)
    )
}

fn names(refs: &[ComponentRef]) -> String {
    refs.iter()
        .map(|r| r.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A 12-hex-character id from `parts` (Statuspage ids are short opaque strings).
fn short_id(parts: &[&str]) -> String {
    let mut h = sha2::Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize())[..12].to_string()
}

async fn sync_open_incidents(
    store: &Store,
    ctx: &IncidentContext<'_>,
    firing: &[Firing],
) -> Result<(), StoreError> {
    let now = ctx.now_ms;
    // Only SLOs on the page raise incidents: one left out of every
    // component is internal.
    let mut by_slo: BTreeMap<&str, Vec<&Firing>> = BTreeMap::new();
    for f in firing {
        if !ctx.components_of(&f.alert.slo).is_empty() {
            by_slo.entry(f.alert.slo.as_str()).or_default().push(f);
        }
    }
    let mut open: HashMap<String, Incident> = store
        .open_incidents()
        .await?
        .into_iter()
        .map(|i| (i.slo.clone(), i))
        .collect();
    for (slo, alerts) in &by_slo {
        let kinds: Vec<String> = alerts
            .iter()
            .map(|f| kind(f).to_string())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let details = alerts
            .iter()
            .map(|f| alert_words(f))
            .collect::<Vec<_>>()
            .join("; ");
        let refs: Vec<ComponentRef> = ctx
            .components_of(slo)
            .iter()
            .map(|c| ComponentRef {
                id: c.id.clone(),
                name: c.name.clone(),
            })
            .collect();
        let what = ctx.what(slo, &kinds);
        match open.remove(*slo) {
            None => {
                let started_ms = alerts.iter().map(|f| f.started_ms).min().unwrap_or(now);
                let id = short_id(&[ctx.page_id, slo, &started_ms.to_string(), &now.to_string()]);
                let incident = Incident {
                    id: id.clone(),
                    slo: slo.to_string(),
                    name: format!("{}: {what}", names(&refs)),
                    status: "investigating".into(),
                    impact: impact(&kinds).indicator().into(),
                    severities: kinds,
                    components: refs.clone(),
                    started_ms,
                    created_ms: now,
                    updated_ms: now,
                    monitoring_ms: None,
                    resolved_ms: None,
                    updates: Vec::new(),
                };
                let update = IncidentUpdate {
                    id: short_id(&[&id, "1", &now.to_string()]),
                    incident_id: id,
                    status: "investigating".into(),
                    body: format!(
                        "Investigating {what} on {}. Detected automatically by SLO {slo}: {details}.",
                        names(&refs)
                    ),
                    created_ms: now,
                    affected: ctx.affected(&refs),
                };
                tracing::warn!(
                    incident = %incident.id, slo = %slo, impact = %incident.impact,
                    "status page incident opened"
                );
                store.open_incident(&incident, &update).await?;
            }
            Some(mut incident) if incident.severities != kinds => {
                let new_impact = impact(&kinds).indicator();
                if impact_rank(new_impact) > impact_rank(&incident.impact) {
                    incident.impact = new_impact.into();
                }
                incident.severities = kinds;
                incident.components = refs.clone();
                incident.updated_ms = now;
                let n = incident.updates.len() + 1;
                let update = IncidentUpdate {
                    id: short_id(&[&incident.id, &n.to_string(), &now.to_string()]),
                    incident_id: incident.id.clone(),
                    status: "investigating".into(),
                    body: format!(
                        "Still investigating {what} on {}. The alerts of SLO {slo} changed; now firing: {details}.",
                        names(&refs)
                    ),
                    created_ms: now,
                    affected: ctx.affected(&refs),
                };
                tracing::info!(incident = %incident.id, slo = %slo, "status page incident updated");
                store.update_incident(&incident, &update).await?;
            }
            Some(_) => {}
        }
    }
    // What is still open has no firing alert left (or its SLO left the page).
    for (slo, mut incident) in open {
        let what = ctx.what(&slo, &incident.severities);
        let why = if firing.iter().any(|f| f.alert.slo == slo) {
            format!("SLO {slo} is no longer shown on this page")
        } else {
            format!("every alert of SLO {slo} has cleared")
        };
        incident.status = "resolved".into();
        incident.updated_ms = now;
        incident.resolved_ms = Some(now);
        let n = incident.updates.len() + 1;
        let update = IncidentUpdate {
            id: short_id(&[&incident.id, &n.to_string(), &now.to_string()]),
            incident_id: incident.id.clone(),
            status: "resolved".into(),
            body: format!(
                "Resolved: {what} on {} is over; {why}.",
                names(&incident.components)
            ),
            created_ms: now,
            affected: ctx.affected(&incident.components),
        };
        tracing::info!(incident = %incident.id, slo = %slo, "status page incident resolved");
        store.update_incident(&incident, &update).await?;
    }
    Ok(())
}

// ---------------------------------------------------------------- HTTP

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/v2/summary.json", get(summary))
        .route("/api/v2/status.json", get(status))
        .route("/api/v2/components.json", get(components))
        .route("/api/v2/incidents.json", get(incidents))
        .route("/api/v2/incidents/{file}", get(incident_file))
        .route("/history.atom", get(history))
        .route("/badge/{file}", get(badge))
}

/// A failed store call: the details are logged by the storage guard; the
/// public answer is 500 `{"error": "storage unavailable"}` (or `storage
/// error`), nothing about the database.
struct Failed(crate::http_server::StorageError);

impl From<crate::http_server::StorageError> for Failed {
    fn from(e: crate::http_server::StorageError) -> Self {
        Failed(e)
    }
}

impl IntoResponse for Failed {
    fn into_response(self) -> Response {
        error(StatusCode::INTERNAL_SERVER_ERROR, &self.0.to_string())
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// JSON anyone may read, also from a status widget on another origin.
fn public_json(v: Value) -> Response {
    let mut r = Json(v).into_response();
    r.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    r
}

/// `scheme://host` as the client reached us (links in the feeds), from
/// `X-Forwarded-Proto`/`X-Forwarded-Host` or `Host`; anything that is not
/// a plain host name is ignored.
pub fn base_url(headers: &HeaderMap) -> String {
    let plain = |v: &&str| {
        !v.is_empty()
            && v.len() <= 255
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
    };
    let get = |name: &str| headers.get(name).and_then(|h| h.to_str().ok());
    let host = get("x-forwarded-host")
        .filter(plain)
        .or_else(|| get("host").filter(plain))
        .unwrap_or("localhost");
    let scheme = get("x-forwarded-proto")
        .filter(|p| *p == "https" || *p == "http")
        .unwrap_or("http");
    format!("{scheme}://{host}")
}

/// Evaluates the SLOs and syncs the page. Callers run it inside the
/// storage guard with the rest of their store work.
async fn current(st: &ApiState) -> Result<(PageState, std::sync::Arc<Catalog>), StoreError> {
    let catalog = st.catalog.borrow().catalog.clone();
    let now = now_ms();
    let statuses = slo::evaluate(&st.store, &catalog, now).await?;
    let firing = firing_alerts(&st.store).await?;
    // A follower shows what it computes but leaves storing component
    // changes and incidents to the leader's evaluation loop, so replicas
    // never race to open the same incident.
    let write = *st.leader.borrow();
    let page = sync_page(&st.store, &catalog, &statuses, &firing, now, write).await?;
    Ok((page, catalog))
}

pub fn page_json(page: &PageState, base: &str) -> Value {
    json!({
        "id": page.id,
        "name": PAGE_NAME,
        "url": base,
        "time_zone": TIME_ZONE,
        "updated_at": rfc3339_ms(page.updated_ms),
    })
}

pub fn status_json(page: &PageState) -> Value {
    let indicator = page.worst().indicator();
    json!({
        "indicator": indicator,
        "description": indicator_description(indicator),
    })
}

/// The calendar date (UTC) of `ms`.
fn date(ms: i64) -> String {
    rfc3339_ms(ms).chars().take(10).collect()
}

pub fn component_json(c: &ComponentView, page_id: &str) -> Value {
    json!({
        "id": c.id,
        "name": c.name,
        "status": c.status.as_str(),
        "created_at": rfc3339_ms(c.created_ms),
        "updated_at": rfc3339_ms(c.updated_ms),
        "position": c.position,
        "description": c.description,
        "showcase": true,
        "start_date": date(c.created_ms),
        "group_id": null,
        "page_id": page_id,
        "group": false,
        "only_show_if_degraded": false,
    })
}

fn components_json(page: &PageState) -> Vec<Value> {
    page.components
        .iter()
        .map(|c| component_json(c, &page.id))
        .collect()
}

fn shortlink(base: &str, id: &str) -> String {
    format!("{base}/api/v2/incidents/{id}.json")
}

pub fn incident_json(i: &Incident, page: &PageState, base: &str) -> Value {
    let updates: Vec<Value> = i
        .updates
        .iter()
        .map(|u| {
            json!({
                "id": u.id,
                "status": u.status,
                "body": u.body,
                "incident_id": i.id,
                "created_at": rfc3339_ms(u.created_ms),
                "updated_at": rfc3339_ms(u.created_ms),
                "display_at": rfc3339_ms(u.created_ms),
                "affected_components": u.affected,
                "deliver_notifications": true,
                "custom_tweet": null,
                "tweet_id": null,
            })
        })
        .collect();
    // Components as they are now; one gone from the catalog is left out.
    let components: Vec<Value> = i
        .components
        .iter()
        .filter_map(|r| page.components.iter().find(|c| c.id == r.id))
        .map(|c| component_json(c, &page.id))
        .collect();
    json!({
        "id": i.id,
        "name": i.name,
        "status": i.status,
        "created_at": rfc3339_ms(i.created_ms),
        "updated_at": rfc3339_ms(i.updated_ms),
        "monitoring_at": i.monitoring_ms.map(rfc3339_ms),
        "resolved_at": i.resolved_ms.map(rfc3339_ms),
        "impact": i.impact,
        "shortlink": shortlink(base, &i.id),
        "started_at": rfc3339_ms(i.started_ms),
        "page_id": page.id,
        "incident_updates": updates,
        "components": components,
    })
}

fn incidents_json(incidents: &[Incident], page: &PageState, base: &str) -> Vec<Value> {
    incidents
        .iter()
        .map(|i| incident_json(i, page, base))
        .collect()
}

/// The page and the open incidents (newest first), under the storage guard.
async fn page_and_open(st: &ApiState) -> Result<(PageState, Vec<Incident>), Failed> {
    Ok(st
        .storage
        .run("status page", async {
            let (page, _) = current(st).await?;
            let mut open = st.store.open_incidents().await?;
            open.reverse();
            Ok((page, open))
        })
        .await?)
}

/// The page and the recent incidents, under the storage guard.
async fn page_and_recent(st: &ApiState) -> Result<(PageState, Vec<Incident>), Failed> {
    Ok(st
        .storage
        .run("status page", async {
            let (page, _) = current(st).await?;
            Ok((page, st.store.recent_incidents(INCIDENT_LIMIT).await?))
        })
        .await?)
}

/// The page alone, under the storage guard.
async fn page_only(st: &ApiState) -> Result<PageState, Failed> {
    Ok(st
        .storage
        .run("status page", async { Ok(current(st).await?.0) })
        .await?)
}

async fn summary(State(st): State<ApiState>, headers: HeaderMap) -> Result<Response, Failed> {
    let (page, open) = page_and_open(&st).await?;
    let base = base_url(&headers);
    Ok(public_json(json!({
        "page": page_json(&page, &base),
        "components": components_json(&page),
        "incidents": incidents_json(&open, &page, &base),
        "scheduled_maintenances": [],
        "status": status_json(&page),
    })))
}

async fn status(State(st): State<ApiState>, headers: HeaderMap) -> Result<Response, Failed> {
    let page = page_only(&st).await?;
    Ok(public_json(json!({
        "page": page_json(&page, &base_url(&headers)),
        "status": status_json(&page),
    })))
}

async fn components(State(st): State<ApiState>, headers: HeaderMap) -> Result<Response, Failed> {
    let page = page_only(&st).await?;
    Ok(public_json(json!({
        "page": page_json(&page, &base_url(&headers)),
        "components": components_json(&page),
    })))
}

async fn incidents(State(st): State<ApiState>, headers: HeaderMap) -> Result<Response, Failed> {
    let (page, recent) = page_and_recent(&st).await?;
    let base = base_url(&headers);
    Ok(public_json(json!({
        "page": page_json(&page, &base),
        "incidents": incidents_json(&recent, &page, &base),
    })))
}

/// `unresolved.json` (Statuspage's unresolved incidents) or `<id>.json`
/// (one incident: the target of its `shortlink`).
async fn incident_file(
    State(st): State<ApiState>,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Failed> {
    let Some(name) = file.strip_suffix(".json") else {
        return Ok(error(StatusCode::NOT_FOUND, "not found"));
    };
    let base = base_url(&headers);
    if name == "unresolved" {
        let (page, open) = page_and_open(&st).await?;
        return Ok(public_json(json!({
            "page": page_json(&page, &base),
            "incidents": incidents_json(&open, &page, &base),
        })));
    }
    let (page, incident) = st
        .storage
        .run("status page", async {
            let (page, _) = current(&st).await?;
            Ok((page, st.store.incident(name).await?))
        })
        .await?;
    match incident {
        Some(i) => Ok(public_json(json!({
            "page": page_json(&page, &base),
            "incident": incident_json(&i, &page, &base),
        }))),
        None => Ok(error(
            StatusCode::NOT_FOUND,
            &format!("no incident `{name}`"),
        )),
    }
}

// ---------------------------------------------------------------- Atom

/// Text safe inside XML elements and attribute values.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Control characters are not allowed in XML 1.0.
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\r' | '\t') => {}
            c => out.push(c),
        }
    }
    out
}

/// A stable `urn:uuid:` (RFC 9562 version 8, from a hash) for Atom ids:
/// permanent, whatever host name the feed is fetched under.
fn urn_uuid(parts: &[&str]) -> String {
    let mut h = sha2::Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    let mut b: [u8; 16] = [0; 16];
    b.copy_from_slice(&h.finalize()[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let x = hex::encode(b);
    format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        &x[..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..]
    )
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// The RFC 4287 feed: one entry per incident update, newest first.
pub fn atom_feed(page: &PageState, incidents: &[Incident], base: &str) -> String {
    let mut entries: Vec<(&Incident, &IncidentUpdate)> = incidents
        .iter()
        .flat_map(|i| i.updates.iter().map(move |u| (i, u)))
        .collect();
    entries.sort_by(|a, b| {
        b.1.created_ms
            .cmp(&a.1.created_ms)
            .then_with(|| b.1.id.cmp(&a.1.id))
    });
    let updated = entries
        .first()
        .map_or(page.updated_ms, |(_, u)| u.created_ms.max(page.updated_ms));
    let mut x = String::new();
    let _ = write!(
        x,
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
         <feed xmlns=\"http://www.w3.org/2005/Atom\" xml:lang=\"en\">\n\
         \x20 <id>{}</id>\n\
         \x20 <title>{} status history</title>\n\
         \x20 <updated>{}</updated>\n\
         \x20 <link rel=\"self\" type=\"application/atom+xml\" href=\"{}\"/>\n\
         \x20 <link rel=\"alternate\" type=\"application/json\" href=\"{}\"/>\n\
         \x20 <author><name>{}</name></author>\n\
         \x20 <generator>authpulse</generator>\n",
        urn_uuid(&["page", &page.id]),
        xml_escape(PAGE_NAME),
        rfc3339_ms(updated),
        xml_escape(&format!("{base}/history.atom")),
        xml_escape(&format!("{base}/api/v2/summary.json")),
        xml_escape(PAGE_NAME),
    );
    for (i, u) in entries {
        let affected = u
            .affected
            .iter()
            .map(|a| {
                let status = ComponentStatus::parse(&a.new_status)
                    .map_or_else(|| a.new_status.clone(), |c| c.words().to_string());
                format!("{}: {status}", a.name)
            })
            .collect::<Vec<_>>()
            .join(", ");
        let content = if affected.is_empty() {
            u.body.clone()
        } else {
            format!("{}\n\nComponents: {affected}", u.body)
        };
        let _ = write!(
            x,
            "  <entry>\n\
             \x20   <id>{}</id>\n\
             \x20   <title>{}</title>\n\
             \x20   <updated>{}</updated>\n\
             \x20   <published>{}</published>\n\
             \x20   <link rel=\"alternate\" type=\"application/json\" href=\"{}\"/>\n\
             \x20   <category term=\"{}\" label=\"impact\"/>\n\
             \x20   <summary type=\"text\">{}</summary>\n\
             \x20   <content type=\"text\">{}</content>\n\
             \x20 </entry>\n",
            urn_uuid(&["update", &page.id, &i.id, &u.id]),
            xml_escape(&format!("{} — {}", i.name, capitalized(&u.status))),
            rfc3339_ms(u.created_ms),
            rfc3339_ms(u.created_ms),
            xml_escape(&shortlink(base, &i.id)),
            xml_escape(&i.impact),
            xml_escape(&u.body),
            xml_escape(&content),
        );
    }
    x.push_str("</feed>\n");
    x
}

async fn history(State(st): State<ApiState>, headers: HeaderMap) -> Result<Response, Failed> {
    let (page, recent) = page_and_recent(&st).await?;
    let base = base_url(&headers);
    let body = atom_feed(&page, &recent, &base);
    Ok((
        [
            (header::CONTENT_TYPE, "application/atom+xml; charset=utf-8"),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        ],
        body,
    )
        .into_response())
}

// ---------------------------------------------------------------- badges

/// A badge: shields.io named color and its hex for the SVG.
#[derive(Clone, Debug, PartialEq)]
pub struct Badge {
    pub label: String,
    pub message: String,
    pub color: &'static str,
}

impl Badge {
    /// The shields.io endpoint schema.
    pub fn to_json(&self) -> Value {
        json!({
            "schemaVersion": 1,
            "label": self.label,
            "message": self.message,
            "color": self.color,
        })
    }

    fn hex(&self) -> &'static str {
        match self.color {
            "brightgreen" => "#4c1",
            "yellow" => "#dfb317",
            "orange" => "#fe7d37",
            "red" => "#e05d44",
            _ => "#9f9f9f",
        }
    }
}

/// The SLI over the SLO window as a percentage, cut (not rounded) to two
/// decimals so 99.996 % never shows as 100 %.
pub fn percent(sli: f64) -> String {
    if sli >= 1.0 {
        return "100%".into();
    }
    let cut = ((sli * 10_000.0) + 1e-6).floor() / 100.0;
    format!("{cut:.2}%")
}

/// An SLO's badge: the SLI over its window; the color says how it stands:
/// red = major outage (see [`slo_condition`]), orange = partial outage or
/// budget exhausted, yellow = degraded, green = fine, grey = no data or too
/// little of it (`insufficient_data`) while otherwise fine.
pub fn badge_for(status: &SloStatus, escalating: bool) -> Badge {
    let label = status.id.clone();
    let Some(sli) = status
        .sli_value
        .filter(|_| status.state != SloState::NoData)
    else {
        return Badge {
            label,
            message: "no data".into(),
            color: "lightgrey",
        };
    };
    let color = match slo_condition(status, escalating) {
        ComponentStatus::MajorOutage => "red",
        ComponentStatus::PartialOutage => "orange",
        _ if status.state == SloState::Exhausted => "orange",
        ComponentStatus::DegradedPerformance => "yellow",
        ComponentStatus::Operational if status.state == SloState::InsufficientData => "lightgrey",
        ComponentStatus::Operational => "brightgreen",
    };
    Badge {
        label,
        message: percent(sli),
        color,
    }
}

/// Approximate advance of `c` in Verdana 11px (what shields.io badges use;
/// the viewer's font may differ a little, the padding absorbs it).
fn char_width(c: char) -> f64 {
    match c {
        'i' | 'l' | 'j' | '.' | ',' | ':' | ';' | '\'' | '!' | '|' | 'I' => 3.6,
        ' ' => 3.9,
        'f' | 't' | 'r' | '-' | '(' | ')' => 4.6,
        'm' => 10.7,
        'w' => 8.9,
        'M' | 'W' => 10.0,
        '%' => 11.9,
        '0'..='9' => 7.0,
        c if c.is_ascii_uppercase() => 7.5,
        _ => 6.7,
    }
}

fn text_width(s: &str) -> f64 {
    s.chars().map(char_width).sum()
}

/// A flat two-part badge drawn here (no external font or CDN): grey label,
/// colored message, each text with a 1px shadow like shields.io's.
pub fn badge_svg(b: &Badge) -> String {
    let lw = (text_width(&b.label) + 12.0).round();
    let mw = (text_width(&b.message) + 12.0).round();
    let w = lw + mw;
    let (label, message) = (xml_escape(&b.label), xml_escape(&b.message));
    let color = b.hex();
    let text = |x: f64, t: &str| {
        format!(
            r##"<text x="{x}" y="15" fill="#010101" fill-opacity=".3">{t}</text><text x="{x}" y="14">{t}</text>"##
        )
    };
    [
        format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="20" role="img" aria-label="{label}: {message}">"#
        ),
        format!("<title>{label}: {message}</title>"),
        r##"<linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient>"##.to_string(),
        format!(r##"<clipPath id="r"><rect width="{w}" height="20" rx="3" fill="#fff"/></clipPath>"##),
        format!(
            r##"<g clip-path="url(#r)"><rect width="{lw}" height="20" fill="#555"/><rect x="{lw}" width="{mw}" height="20" fill="{color}"/><rect width="{w}" height="20" fill="url(#s)"/></g>"##
        ),
        r##"<g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" text-rendering="geometricPrecision" font-size="11">"##.to_string(),
        text(lw / 2.0, &label),
        text(lw + mw / 2.0, &message),
        "</g></svg>".to_string(),
    ]
    .concat()
}

/// `/badge/{slo}.json` (shields.io endpoint) or `/badge/{slo}.svg`.
async fn badge(State(st): State<ApiState>, Path(file): Path<String>) -> Result<Response, Failed> {
    let (slo_id, svg) = match (file.strip_suffix(".json"), file.strip_suffix(".svg")) {
        (Some(id), _) => (id, false),
        (_, Some(id)) => (id, true),
        _ => {
            return Ok(error(
                StatusCode::NOT_FOUND,
                "badges are /badge/<slo>.json (shields.io endpoint) or /badge/<slo>.svg",
            ));
        }
    };
    let catalog = st.catalog.borrow().catalog.clone();
    let Some(def) = catalog.slos.iter().find(|s| s.id == slo_id) else {
        return Ok(error(
            StatusCode::NOT_FOUND,
            &format!("no SLO `{slo_id}` in the catalog"),
        ));
    };
    let (status, escalating) = st
        .storage
        .run("badge", async {
            let status = slo::evaluate_one(&st.store, &catalog, def, now_ms()).await?;
            let escalating = st
                .store
                .escalation_alerts()
                .await?
                .iter()
                .any(|(f, _)| f.alert.slo == slo_id);
            Ok((status, escalating))
        })
        .await?;
    let b = badge_for(&status, escalating);
    if !svg {
        return Ok(public_json(b.to_json()));
    }
    Ok((
        [
            (header::CONTENT_TYPE, "image/svg+xml; charset=utf-8"),
            // Image proxies (GitHub's camo) keep badges as long as allowed.
            (header::CACHE_CONTROL, "no-cache, max-age=0"),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        ],
        badge_svg(&b),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::Duration;

    use crate::slo::BURN_WINDOWS;

    /// A 30d 99 % SLO's status with `burns` per [`BURN_WINDOWS`] entry.
    fn status(id: &str, state: SloState, burns: [Option<f64>; 7]) -> SloStatus {
        SloStatus {
            id: id.into(),
            description: None,
            objective: 99.0,
            window: Duration::from_secs(30 * 86_400),
            window_label: "30d".into(),
            window_start_ms: 0,
            sli: Sli::Availability,
            slice: None,
            good: 990,
            total: 1000,
            bad: 10,
            sli_value: Some(0.99),
            error_budget_remaining: 0.9,
            error_budget_events: 10.0,
            burn_rate_1h: burns[2],
            burn_rates: BURN_WINDOWS
                .iter()
                .zip(burns)
                .map(|((l, _), b)| (*l, b))
                .collect(),
            time_to_exhaustion: None,
            coverage: Some(1.0),
            state,
            regions: Vec::new(),
        }
    }

    const PAGE: [Option<f64>; 7] = [Some(20.0), None, Some(20.0), None, None, None, None];
    const CALM: [Option<f64>; 7] = [Some(0.0); 7];

    fn catalog() -> Catalog {
        let text = "probes:\n  - { id: a, kind: http, url: \"https://x.example\" }\n\
             slos:\n  - { id: s, probes: [a], objective: 99, window: 30d }\n\
             \x20 - { id: internal, probes: [a], objective: 99, window: 30d }\n\
             components:\n  - { id: c, name: Checks, slos: [s] }\n";
        authpulse_proto::catalog::load_str("c.yaml", text).expect("catalog")
    }

    async fn shown(
        store: &Store,
        catalog: &Catalog,
        s: SloStatus,
        firing: &[Firing],
        now: i64,
    ) -> ComponentStatus {
        let statuses = vec![s, status("internal", SloState::Ok, CALM)];
        let page = sync_page(store, catalog, &statuses, firing, now, true)
            .await
            .expect("sync");
        assert_eq!(page.components.len(), 1);
        page.components[0].status
    }

    #[tokio::test]
    async fn without_trustworthy_data_a_component_keeps_its_last_status() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).await.expect("store");
        let catalog = catalog();
        use ComponentStatus::*;
        let insufficient = SloState::InsufficientData;
        assert_eq!(
            shown(&store, &catalog, status("s", SloState::Ok, PAGE), &[], 1).await,
            MajorOutage
        );
        // Too little data and nothing alarming in it: still major (kept).
        assert_eq!(
            shown(&store, &catalog, status("s", insufficient, CALM), &[], 2).await,
            MajorOutage
        );
        assert_eq!(
            shown(
                &store,
                &catalog,
                status("s", SloState::NoData, [None; 7]),
                &[],
                3
            )
            .await,
            MajorOutage
        );
        // Enough data again: operational, and updated_at says when.
        assert_eq!(
            shown(&store, &catalog, status("s", SloState::Ok, CALM), &[], 4).await,
            Operational
        );
        let kept = store.status_components().await.expect("states");
        assert_eq!((kept[0].created_ms, kept[0].updated_ms), (1, 4));
        // Too little data that is alarming still makes it worse.
        assert_eq!(
            shown(&store, &catalog, status("s", insufficient, PAGE), &[], 5).await,
            MajorOutage
        );
        // Most runs of the last 5 minutes failing: major before the page.
        let mut s = status("s", SloState::Ok, CALM);
        s.burn_rates[0].1 = Some(60.0);
        assert_eq!(shown(&store, &catalog, s, &[], 6).await, MajorOutage);
        // One region at page speed over 1h: partial.
        let mut s = status("s", SloState::Ok, CALM);
        s.regions.push(crate::slo::RegionStatus {
            region: "eu".into(),
            good: 80,
            total: 100,
            sli_value: Some(0.8),
            error_budget_remaining: 0.5,
            burn_rate_1h: Some(20.0),
        });
        assert_eq!(shown(&store, &catalog, s, &[], 7).await, PartialOutage);
        // Budget below 25 %: degraded.
        let mut s = status("s", SloState::Ok, CALM);
        s.error_budget_remaining = 0.2;
        assert_eq!(
            shown(&store, &catalog, s, &[], 8).await,
            DegradedPerformance
        );
    }

    #[tokio::test]
    async fn escalations_open_critical_incidents_and_internal_slos_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).await.expect("store");
        let catalog = catalog();
        let firing = |slo: &str| Firing {
            alert: alerting::escalation_alert(slo),
            started_ms: 10,
            last_sent_ms: 10,
        };
        let calm = status("s", SloState::Ok, CALM);
        let both = [firing("s"), firing("internal")];
        assert_eq!(
            shown(&store, &catalog, calm.clone(), &both, 20).await,
            ComponentStatus::MajorOutage
        );
        let open = store.open_incidents().await.expect("open");
        assert_eq!(open.len(), 1, "only the SLO on the page: {open:?}");
        let i = &open[0];
        assert_eq!((i.slo.as_str(), i.impact.as_str()), ("s", "critical"));
        assert_eq!(i.name, "Checks: unexpected authorization results");
        assert_eq!((i.started_ms, i.created_ms), (10, 20));
        assert_eq!(i.severities, ["escalation"]);
        assert!(
            i.updates[0]
                .body
                .contains("an authorization check returned an unexpected result")
        );
        // Same alerts again: nothing new.
        shown(&store, &catalog, calm.clone(), &both, 21).await;
        assert_eq!(
            store.open_incidents().await.expect("open")[0].updates.len(),
            1
        );
        // Cleared: resolved once.
        assert_eq!(
            shown(&store, &catalog, calm.clone(), &[], 30).await,
            ComponentStatus::Operational
        );
        shown(&store, &catalog, calm, &[], 31).await;
        assert!(store.open_incidents().await.expect("open").is_empty());
        let all = store.recent_incidents(10).await.expect("all");
        assert_eq!(all.len(), 1);
        assert_eq!(
            (all[0].status.as_str(), all[0].resolved_ms),
            ("resolved", Some(30))
        );
        let statuses: Vec<&str> = all[0].updates.iter().map(|u| u.status.as_str()).collect();
        assert_eq!(statuses, ["resolved", "investigating"]);
        assert_eq!(all[0].updates[0].affected[0].old_status, "major_outage");
        assert_eq!(all[0].updates[0].affected[0].new_status, "operational");
    }

    #[test]
    fn percent_never_rounds_up_to_100() {
        assert_eq!(percent(1.0), "100%");
        assert_eq!(percent(0.99996), "99.99%");
        assert_eq!(percent(0.9995), "99.95%");
        assert_eq!(percent(0.5), "50.00%");
        assert_eq!(percent(0.0), "0.00%");
    }

    #[test]
    fn ids_are_stable_and_uuid_shaped() {
        assert_eq!(short_id(&["a", "b"]), short_id(&["a", "b"]));
        assert_ne!(short_id(&["a", "b"]), short_id(&["ab", ""]));
        let u = urn_uuid(&["x"]);
        let hex = u.trim_start_matches("urn:uuid:");
        let parts: Vec<&str> = hex.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('8'), "version 8: {u}");
        assert!("89ab".contains(&parts[3][..1]), "RFC variant: {u}");
    }

    #[test]
    fn escaping_and_base_urls() {
        assert_eq!(xml_escape("a<b>&\"c'\u{1}"), "a&lt;b&gt;&amp;&quot;c&apos;");
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("status.example:8080"));
        assert_eq!(base_url(&h), "http://status.example:8080");
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        h.insert("x-forwarded-host", HeaderValue::from_static("evil\"<x>"));
        assert_eq!(base_url(&h), "https://status.example:8080");
        assert_eq!(base_url(&HeaderMap::new()), "http://localhost");
    }

    #[test]
    fn statuses_order_and_indicators() {
        use ComponentStatus::*;
        assert!(Operational < DegradedPerformance && PartialOutage < MajorOutage);
        let got: Vec<&str> = [Operational, DegradedPerformance, PartialOutage, MajorOutage]
            .map(ComponentStatus::indicator)
            .to_vec();
        assert_eq!(got, ["none", "minor", "major", "critical"]);
        assert_eq!(
            ComponentStatus::parse("partial_outage"),
            Some(PartialOutage)
        );
        assert_eq!(ComponentStatus::parse("unknown"), None);
        assert_eq!(num(14.4), "14.4");
        assert_eq!(num(3.0), "3");
        assert_eq!(num(0.235), "0.235");
        assert_eq!(num(0.004), "0.004");
        assert_eq!(num(3.0 / 720.0), "0.00417");
        assert_eq!(num(0.0), "0");
    }
}
