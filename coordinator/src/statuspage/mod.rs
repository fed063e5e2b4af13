//! The public status feed: an Atlassian-Statuspage-compatible API
//! (`/api/v2/summary.json`, `status.json`, `components.json`,
//! `incidents.json`, `incidents/unresolved.json`), an Atom history
//! (`/history.atom`) and shields.io badges per SLO (`/badge/{slo}.json`,
//! `/badge/{slo}.svg`), and the catalog's scheduled maintenances
//! (`/api/v2/scheduled-maintenances*.json`; components covered by one in
//! progress show `under_maintenance`). Components are the catalog's `components:` (or one
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
//! `api.rs` (the v2 JSON API), `maintenance.rs`, `atom.rs` (the feed),
//! `badges.rs`.
mod api;
mod atom;
mod badges;
mod incidents;
mod maintenance;
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

/// The page's name in the feeds unless `status_page.name` sets another.
pub const PAGE_NAME: &str = "authpulse";

/// `status_page:` in the coordinator config: how the public feed names
/// itself and where it says it lives.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusPageConfig {
    /// The page's name in the Statuspage API and the Atom feed.
    #[serde(default = "default_page_name")]
    pub name: String,
    /// The page's public base URL (links, `page.url`, shortlinks); default:
    /// the scheme and host the caller used (`X-Forwarded-Proto/Host` or `Host`).
    #[serde(default)]
    pub url: Option<String>,
}

fn default_page_name() -> String {
    PAGE_NAME.to_string()
}

impl Default for StatusPageConfig {
    fn default() -> Self {
        StatusPageConfig {
            name: default_page_name(),
            url: None,
        }
    }
}

impl StatusPageConfig {
    /// A name of 1–100 characters without control characters; an http(s) URL.
    pub fn check(&self) -> Result<(), String> {
        let n = self.name.trim();
        if n.is_empty() || n.chars().count() > 100 || n.chars().any(char::is_control) {
            return Err("status_page.name: 1 to 100 characters, no control characters".into());
        }
        if let Some(u) = &self.url {
            match url::Url::parse(u) {
                Ok(p) if matches!(p.scheme(), "http" | "https") && p.host().is_some() => {}
                _ => return Err(format!("status_page.url: `{u}` is not an http(s) URL")),
            }
        }
        Ok(())
    }
}

/// How the page presents itself to one request: its name and base URL.
#[derive(Clone, Debug)]
pub struct Site {
    pub name: String,
    /// Without a trailing slash.
    pub base: String,
}

impl Site {
    pub fn of(config: &StatusPageConfig, headers: &axum::http::HeaderMap) -> Site {
        Site {
            name: config.name.trim().to_string(),
            base: config.url.as_deref().map_or_else(
                || base_url(headers),
                |u| u.trim_end_matches('/').to_string(),
            ),
        }
    }
}

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
        .route("/api/v2/scheduled-maintenances.json", get(maintenance::all))
        .route(
            "/api/v2/scheduled-maintenances/upcoming.json",
            get(maintenance::upcoming),
        )
        .route(
            "/api/v2/scheduled-maintenances/active.json",
            get(maintenance::active),
        )
        .route("/history.atom", get(atom::history))
        .route("/badge/{file}", get(badges::badge))
}
