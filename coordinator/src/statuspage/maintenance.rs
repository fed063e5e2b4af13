//! Scheduled maintenances in the Statuspage API, from the catalog's
//! `maintenances:`: `/api/v2/scheduled-maintenances.json` (all),
//! `…/upcoming.json` (not started) and `…/active.json` (in progress), the
//! `scheduled_maintenances` of `summary.json` (upcoming and in progress),
//! and components shown `under_maintenance` while one covers them. Their
//! status follows the clock (`scheduled` → `in_progress` → `completed`);
//! nothing is stored, so every replica serves the same.
use std::collections::BTreeSet;

use authpulse_proto::catalog::{Catalog, MaintenanceDef};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{Value, json};

use super::Site;
use super::api::{Failed, component_json, feed, page_json, public_json};
use super::page::PageState;
use crate::api::ApiState;
use crate::clock::rfc3339_ms;
use crate::store::now_ms;

/// Ids of the components a maintenance in progress covers.
pub fn under_maintenance(catalog: &Catalog, now_ms: i64) -> BTreeSet<String> {
    catalog
        .maintenances
        .iter()
        .filter(|m| m.active_at(now_ms))
        .flat_map(|m| m.components.iter().cloned())
        .collect()
}

/// One maintenance in Statuspage's scheduled-maintenance shape.
pub fn maintenance_json(m: &MaintenanceDef, page: &PageState, now_ms: i64) -> Value {
    let (starts, ends) = m.window_ms().unwrap_or((0, 0));
    let status = m.status_at(now_ms);
    // The update that stands for the current status.
    let (update_ms, body) = match status {
        "scheduled" => (
            starts,
            m.message
                .clone()
                .unwrap_or_else(|| format!("{} is scheduled.", m.name)),
        ),
        "in_progress" => (
            starts,
            m.message
                .clone()
                .unwrap_or_else(|| format!("{} is in progress.", m.name)),
        ),
        _ => (
            ends,
            "The scheduled maintenance has been completed.".to_string(),
        ),
    };
    let components: Vec<Value> = page
        .components
        .iter()
        .filter(|c| m.components.contains(&c.id))
        .map(|c| component_json(c, &page.id))
        .collect();
    let affected: Vec<Value> = page
        .components
        .iter()
        .filter(|c| m.components.contains(&c.id))
        .map(|c| json!({ "code": c.id, "name": c.name, "old_status": "operational", "new_status": "under_maintenance" }))
        .collect();
    json!({
        "id": m.id,
        "name": m.name,
        "status": status,
        "created_at": rfc3339_ms(starts),
        "updated_at": rfc3339_ms(update_ms),
        "monitoring_at": null,
        "resolved_at": (status == "completed").then(|| rfc3339_ms(ends)),
        "impact": "maintenance",
        "shortlink": null,
        "started_at": rfc3339_ms(starts),
        "page_id": page.id,
        "scheduled_for": rfc3339_ms(starts),
        "scheduled_until": rfc3339_ms(ends),
        "incident_updates": [{
            "id": format!("{}-{status}", m.id),
            "status": status,
            "body": body,
            "incident_id": m.id,
            "created_at": rfc3339_ms(update_ms),
            "updated_at": rfc3339_ms(update_ms),
            "display_at": rfc3339_ms(update_ms),
            "affected_components": affected,
            "deliver_notifications": true,
            "custom_tweet": null,
            "tweet_id": null,
        }],
        "components": components,
    })
}

/// The maintenances whose status is one of `which` (all when empty),
/// soonest first.
pub fn list(catalog: &Catalog, page: &PageState, now_ms: i64, which: &[&str]) -> Vec<Value> {
    let mut ms: Vec<&MaintenanceDef> = catalog
        .maintenances
        .iter()
        .filter(|m| which.is_empty() || which.contains(&m.status_at(now_ms)))
        .collect();
    ms.sort_by_key(|m| m.window_ms().map(|(s, _)| s));
    ms.into_iter()
        .map(|m| maintenance_json(m, page, now_ms))
        .collect()
}

async fn serve(
    st: ApiState,
    headers: HeaderMap,
    which: &'static [&'static str],
) -> Result<Response, Failed> {
    let f = feed(&st).await?;
    let catalog = st.catalog.borrow().catalog.clone();
    let site = Site::of(&st.status_page, &headers);
    Ok(public_json(json!({
        "page": page_json(&f.page, &site),
        "scheduled_maintenances": list(&catalog, &f.page, now_ms(), which),
    })))
}

pub(super) async fn all(
    State(st): State<ApiState>,
    headers: HeaderMap,
) -> Result<Response, Failed> {
    serve(st, headers, &[]).await
}

pub(super) async fn upcoming(
    State(st): State<ApiState>,
    headers: HeaderMap,
) -> Result<Response, Failed> {
    serve(st, headers, &["scheduled"]).await
}

pub(super) async fn active(
    State(st): State<ApiState>,
    headers: HeaderMap,
) -> Result<Response, Failed> {
    serve(st, headers, &["in_progress"]).await
}
