//! The Statuspage v2 API (`/api/v2/summary.json`, `status.json`,
//! `components.json`, `incidents.json`, `incidents/unresolved.json`,
//! `incidents/<id>.json`): public, read-only JSON in Statuspage's shapes.
//! Store work runs under the storage guard: a failure answers 500 with a
//! generic message (`storage unavailable`, `storage error`) and the details
//! go to the log, never to the caller.
use std::collections::BTreeSet;
use std::sync::Arc;

use authpulse_proto::catalog::Catalog;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::page::{ComponentView, PageState, firing_alerts, sync_page};
use super::rules::indicator_description;
use super::{INCIDENT_LIMIT, Incident, Site, TIME_ZONE};
use crate::api::ApiState;
use crate::clock::rfc3339_ms;
use crate::slo_cache::Evaluation;
use crate::store::{StoreError, now_ms};

/// A failed store call (the details are logged by the storage guard; the
/// public answer is 500 with `storage unavailable` or `storage error`).
pub(super) type Failed = crate::http_server::StorageError;

/// The coordinator's one JSON error answer.
pub(super) fn error(status: StatusCode, message: &str) -> Response {
    crate::http_server::json_error(status, message)
}

/// JSON anyone may read, also from a status widget on another origin.
pub(super) fn public_json(v: Value) -> Response {
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
    let snapshot = st.catalog.borrow().clone();
    let evaluation = st
        .slo_cache
        .statuses(&st.store, &snapshot.catalog, snapshot.version)
        .await?;
    let page = page_from(st, &snapshot.catalog, &evaluation).await?;
    Ok((page, snapshot.catalog.clone()))
}

/// The page as of `evaluation`, synced to the store.
async fn page_from(
    st: &ApiState,
    catalog: &Catalog,
    evaluation: &Evaluation,
) -> Result<PageState, StoreError> {
    let firing = firing_alerts(&st.store).await?;
    // A follower shows what it computes but leaves storing component
    // changes and incidents to the leader's evaluation loop, so replicas
    // never race to open the same incident.
    let write = *st.leader.borrow();
    sync_page(
        &st.store,
        catalog,
        &evaluation.statuses,
        &firing,
        now_ms(),
        write,
    )
    .await
}

/// What the feed endpoints show: the page with its open and recent
/// incidents, read once per shared SLO evaluation (see
/// [`crate::slo_cache`]), so a status widget polled by many browsers costs
/// one set of store reads a second. Incident and component writes change
/// the store's generation, so a local change shows at once.
pub struct Feed {
    pub(super) page: PageState,
    pub(super) open: Vec<Incident>,
    pub(super) recent: Vec<Incident>,
    /// `summary.json` bodies rendered from this feed, by (base URL, the
    /// maintenances' statuses): what a status widget polls, served as
    /// bytes until the next evaluation.
    summaries: std::sync::Mutex<Vec<(SummaryKey, axum::body::Bytes)>>,
}

/// What a rendered summary depends on besides the feed.
type SummaryKey = (String, Vec<&'static str>);

/// Distinct base URLs whose summary is kept per feed (callers reach the
/// page under a handful of names; more are rendered per request).
const SUMMARY_BASES: usize = 8;

/// The feed of the latest evaluation, built by the first request after it.
#[derive(Default)]
pub struct FeedCache {
    last: tokio::sync::Mutex<Option<(Arc<Evaluation>, Arc<Feed>)>>,
}

impl FeedCache {
    async fn get(&self, st: &ApiState) -> Result<Arc<Feed>, StoreError> {
        let snapshot = st.catalog.borrow().clone();
        let evaluation = st
            .slo_cache
            .statuses(&st.store, &snapshot.catalog, snapshot.version)
            .await?;
        let mut last = self.last.lock().await;
        if let Some((e, feed)) = last.as_ref()
            && Arc::ptr_eq(e, &evaluation)
        {
            return Ok(feed.clone());
        }
        let page = page_from(st, &snapshot.catalog, &evaluation).await?;
        let mut open = st.store.open_incidents().await?;
        open.reverse();
        let recent = st.store.recent_incidents(INCIDENT_LIMIT).await?;
        let feed = Arc::new(Feed {
            page,
            open,
            recent,
            summaries: Default::default(),
        });
        *last = Some((evaluation, feed.clone()));
        Ok(feed)
    }
}

pub fn page_json(page: &PageState, site: &Site) -> Value {
    json!({
        "id": page.id,
        "name": site.name,
        "url": site.base,
        "time_zone": TIME_ZONE,
        "updated_at": rfc3339_ms(page.updated_ms),
    })
}

/// The page's status. Components under maintenance don't count; when
/// nothing else is wrong and one is under maintenance, the indicator is
/// `maintenance` ("Service Under Maintenance", as Statuspage says).
pub fn status_json(page: &PageState, under_maintenance: &BTreeSet<String>) -> Value {
    let indicator = page
        .components
        .iter()
        .filter(|c| !under_maintenance.contains(&c.id))
        .map(|c| c.status)
        .max()
        .unwrap_or(super::ComponentStatus::Operational)
        .indicator();
    if indicator == "none"
        && page
            .components
            .iter()
            .any(|c| under_maintenance.contains(&c.id))
    {
        return json!({
            "indicator": "maintenance",
            "description": "Service Under Maintenance",
        });
    }
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

fn components_json(page: &PageState, under_maintenance: &BTreeSet<String>) -> Vec<Value> {
    page.components
        .iter()
        .map(|c| {
            let mut v = component_json(c, &page.id);
            if under_maintenance.contains(&c.id) {
                v["status"] = json!("under_maintenance");
            }
            v
        })
        .collect()
}

/// Components a maintenance in progress covers, per the running catalog.
fn maintenance_now(st: &ApiState) -> BTreeSet<String> {
    super::maintenance::under_maintenance(&st.catalog.borrow().catalog, now_ms())
}

pub(super) fn shortlink(base: &str, id: &str) -> String {
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

/// The shared feed (page, open incidents newest first, recent incidents),
/// under the storage guard.
pub(super) async fn feed(st: &ApiState) -> Result<Arc<Feed>, Failed> {
    st.storage.run("status page", st.feed_cache.get(st)).await
}

pub(super) async fn summary(
    State(st): State<ApiState>,
    headers: HeaderMap,
) -> Result<Response, Failed> {
    let f = feed(&st).await?;
    let (page, open) = (&f.page, &f.open);
    let site = Site::of(&st.status_page, &headers);
    let base = site.base.as_str();
    let catalog = st.catalog.borrow().catalog.clone();
    let now = now_ms();
    let key: SummaryKey = (
        site.base.clone(),
        catalog
            .maintenances
            .iter()
            .map(|m| m.status_at(now))
            .collect(),
    );
    let lock = |f: &Feed| {
        f.summaries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, b)| b.clone())
    };
    if let Some(body) = lock(&f) {
        return Ok(public_bytes(body));
    }
    let under = super::maintenance::under_maintenance(&catalog, now);
    let body = json!({
        "page": page_json(page, &site),
        "components": components_json(page, &under),
        "incidents": incidents_json(open, page, base),
        "scheduled_maintenances": super::maintenance::list(
            &catalog,
            page,
            now,
            &["scheduled", "in_progress"],
        ),
        "status": status_json(page, &under),
    });
    let body = axum::body::Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
    let mut cached = f
        .summaries
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if cached.len() < SUMMARY_BASES {
        cached.push((key, body.clone()));
    }
    Ok(public_bytes(body))
}

/// Pre-rendered JSON, with the same headers as [`public_json`].
fn public_bytes(body: axum::body::Bytes) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            ),
        ],
        body,
    )
        .into_response()
}

pub(super) async fn status(
    State(st): State<ApiState>,
    headers: HeaderMap,
) -> Result<Response, Failed> {
    let f = feed(&st).await?;
    let page = &f.page;
    Ok(public_json(json!({
        "page": page_json(page, &Site::of(&st.status_page, &headers)),
        "status": status_json(page, &maintenance_now(&st)),
    })))
}

pub(super) async fn components(
    State(st): State<ApiState>,
    headers: HeaderMap,
) -> Result<Response, Failed> {
    let f = feed(&st).await?;
    let page = &f.page;
    Ok(public_json(json!({
        "page": page_json(page, &Site::of(&st.status_page, &headers)),
        "components": components_json(page, &maintenance_now(&st)),
    })))
}

pub(super) async fn incidents(
    State(st): State<ApiState>,
    headers: HeaderMap,
) -> Result<Response, Failed> {
    let f = feed(&st).await?;
    let (page, recent) = (&f.page, &f.recent);
    let site = Site::of(&st.status_page, &headers);
    let base = site.base.as_str();
    Ok(public_json(json!({
        "page": page_json(page, &site),
        "incidents": incidents_json(recent, page, base),
    })))
}

/// `unresolved.json` (Statuspage's unresolved incidents) or `<id>.json`
/// (one incident: the target of its `shortlink`).
pub(super) async fn incident_file(
    State(st): State<ApiState>,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Failed> {
    let Some(name) = file.strip_suffix(".json") else {
        return Ok(error(StatusCode::NOT_FOUND, "not found"));
    };
    let site = Site::of(&st.status_page, &headers);
    let base = site.base.as_str();
    if name == "unresolved" {
        let f = feed(&st).await?;
        let (page, open) = (&f.page, &f.open);
        return Ok(public_json(json!({
            "page": page_json(page, &site),
            "incidents": incidents_json(open, page, base),
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
            "page": page_json(&page, &site),
            "incident": incident_json(&i, &page, base),
        }))),
        None => Ok(error(
            StatusCode::NOT_FOUND,
            &format!("no incident `{name}`"),
        )),
    }
}
