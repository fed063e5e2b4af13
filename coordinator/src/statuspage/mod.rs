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
//!
//! One concept per file: `rules.rs` (SLO to component status), `page.rs`
//! (components and the sync), `incidents.rs` (incidents from alerts),
//! `api.rs` (the v2 JSON API), `atom.rs` (the feed), `badges.rs`.
mod api;
mod atom;
mod badges;
mod incidents;
mod page;
mod rules;
#[cfg(test)]
mod tests;

pub use api::{FeedCache, base_url, component_json, incident_json, page_json, status_json};
pub use atom::{atom_feed, xml_escape};
pub use badges::{Badge, badge_for, badge_svg, percent};
pub use page::{ComponentView, PageState, firing_alerts, sync, sync_incidents};
pub use rules::{
    ComponentStatus, DEGRADED_BUDGET, MAJOR_OUTAGE_SLI_5M, indicator_description, slo_condition,
};
// The stored shapes of components and incidents are the store's row types.
pub use crate::store::{AffectedComponent, ComponentRef, ComponentState, Incident, IncidentUpdate};

use axum::Router;
use axum::routing::get;

use crate::api::ApiState;

/// The page's name in the feeds.
pub const PAGE_NAME: &str = "authpulse";

/// All times are served in UTC.
pub const TIME_ZONE: &str = "Etc/UTC";

/// Incidents listed by `/api/v2/incidents.json` and `/history.atom`
/// (Statuspage also shows the 50 most recent).
pub const INCIDENT_LIMIT: u32 = 50;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/v2/summary.json", get(api::summary))
        .route("/api/v2/status.json", get(api::status))
        .route("/api/v2/components.json", get(api::components))
        .route("/api/v2/incidents.json", get(api::incidents))
        .route("/api/v2/incidents/{file}", get(api::incident_file))
        .route("/history.atom", get(atom::history))
        .route("/badge/{file}", get(badges::badge))
}
