//! Scheduled maintenances: a declared window (`starts`, `ends`, RFC 3339)
//! over status-page components, with a message. The status feed serves
//! them at Statuspage's `scheduled-maintenances` endpoints and shows the
//! components `under_maintenance` while one is in progress; `alerts` says
//! whether the components' SLO alerts are held back meanwhile, and `gates`
//! how deploy gates treat those SLOs. Bounded to 31 days, so a typo cannot
//! silence alerts for a year.
use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::kinds::Issues;
use super::source_map::Seg;
use super::{Catalog, SourceLoc, schema};

/// The longest a maintenance may last.
pub const MAX_DAYS: i64 = 31;

/// What a maintenance does to the affected SLOs' alert notifications.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MaintenanceAlerts {
    /// Hold back notifications (Alertmanager, PagerDuty, webhook) of alerts
    /// that fire during the window, as a silence would; resolutions are
    /// still sent, and `/api/v1/alerts` and the gauges still show them.
    #[default]
    Suppress,
    /// Notify as usual.
    Notify,
}

/// How deploy gates treat the affected SLOs during the window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MaintenanceGates {
    /// Judge them as usual: real failures during the work still block.
    #[default]
    Judge,
    /// Leave them out of the decision (noted in the answer): the planned
    /// disruption doesn't block deploys.
    Ignore,
    /// Block every gate reading them until the window ends (no deploys
    /// during the work).
    Block,
}

/// A scheduled maintenance of status-page components.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceDef {
    /// Unique id (`[a-z0-9-]`, at most 63 characters): the maintenance's id
    /// in the Statuspage API.
    #[schemars(regex(pattern = schema::ID_PATTERN))]
    pub id: String,
    /// The title shown on the status page; not empty.
    pub name: String,
    /// When the work starts, RFC 3339 with an offset (`2026-12-05T22:00:00Z`).
    pub starts: String,
    /// When it ends; after `starts`, at most 31 days later.
    pub ends: String,
    /// Component ids (or SLO ids, when the catalog declares no components:
    /// then each SLO is a component); at least one.
    #[schemars(length(min = 1))]
    pub components: Vec<String>,
    /// What users are told (the maintenance's update body).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `suppress` (default) or `notify`: the affected SLOs' alert
    /// notifications during the window.
    #[serde(default)]
    pub alerts: MaintenanceAlerts,
    /// `judge` (default), `ignore` or `block`: how gates treat the affected
    /// SLOs during the window.
    #[serde(default)]
    pub gates: MaintenanceGates,
    #[serde(skip)]
    pub source: Option<SourceLoc>,
}

/// Milliseconds since the epoch of an RFC 3339 time.
pub fn parse_time_ms(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_millis())
}

impl MaintenanceDef {
    /// (start, end) in ms; `None` if invalid (refused at load).
    pub fn window_ms(&self) -> Option<(i64, i64)> {
        Some((parse_time_ms(&self.starts)?, parse_time_ms(&self.ends)?))
    }

    /// `scheduled`, `in_progress` or `completed` at `now_ms` (Statuspage's words).
    pub fn status_at(&self, now_ms: i64) -> &'static str {
        match self.window_ms() {
            Some((s, _)) if now_ms < s => "scheduled",
            Some((_, e)) if now_ms < e => "in_progress",
            _ => "completed",
        }
    }

    pub fn active_at(&self, now_ms: i64) -> bool {
        self.status_at(now_ms) == "in_progress"
    }
}

impl Catalog {
    /// The SLO ids each maintenance in progress at `now_ms` covers (through
    /// its components), with the maintenance.
    pub fn slos_in_maintenance(&self, now_ms: i64) -> BTreeMap<&str, &MaintenanceDef> {
        let mut out = BTreeMap::new();
        for m in self.maintenances.iter().filter(|m| m.active_at(now_ms)) {
            for c in &m.components {
                let slos: Vec<&str> = match self.components.iter().find(|x| &x.id == c) {
                    Some(comp) => comp.slos.iter().map(String::as_str).collect(),
                    None => vec![c.as_str()],
                };
                for s in slos {
                    out.entry(s).or_insert(m);
                }
            }
        }
        out
    }
}

/// Problems with one maintenance (paths relative to it).
pub(crate) fn check(m: &MaintenanceDef, catalog: &Catalog) -> Issues {
    let mut out: Issues = Vec::new();
    let key = |k: &str| Seg::Key(k.to_string());
    if m.name.trim().is_empty() {
        out.push((vec![key("name")], "must not be empty".into()));
    }
    let starts = parse_time_ms(&m.starts);
    let ends = parse_time_ms(&m.ends);
    for (k, v, t) in [("starts", &m.starts, starts), ("ends", &m.ends, ends)] {
        if t.is_none() {
            out.push((
                vec![key(k)],
                format!("`{v}` is not an RFC 3339 time with an offset, e.g. 2026-12-05T22:00:00Z"),
            ));
        }
    }
    if let (Some(s), Some(e)) = (starts, ends) {
        if e <= s {
            out.push((vec![key("ends")], "must be after `starts`".into()));
        } else if e - s > MAX_DAYS * 86_400_000 {
            out.push((
                vec![key("ends")],
                format!("a maintenance lasts at most {MAX_DAYS} days"),
            ));
        }
    }
    if m.components.is_empty() {
        out.push((
            vec![key("components")],
            "name at least one component".into(),
        ));
    }
    for (i, c) in m.components.iter().enumerate() {
        let known = if catalog.components.is_empty() {
            catalog.slos.iter().any(|s| &s.id == c)
        } else {
            catalog.components.iter().any(|x| &x.id == c)
        };
        if !known {
            let what = if catalog.components.is_empty() {
                "SLO (the catalog declares no components, so each SLO is one)"
            } else {
                "component"
            };
            out.push((
                vec![key("components"), Seg::Index(i)],
                format!("unknown {what} `{c}`"),
            ));
        }
    }
    out
}
