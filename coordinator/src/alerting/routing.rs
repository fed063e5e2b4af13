//! Who an alert is for: the SLO's owner, runbook and catalog labels, taken
//! from the catalog when the alert is sent (so a reload that changes an
//! owner routes the next notification to the new one), and the PagerDuty
//! routing key they select. Alertmanager gets owner and labels as alert
//! labels (its routing tree matches on them) and the runbook as the
//! `runbook_url` annotation; PagerDuty gets the routing key of the first
//! matching route, `group` = owner, and the labels in custom details.
use std::collections::BTreeMap;
use std::path::PathBuf;

use authpulse_proto::catalog::Catalog;
use serde::Deserialize;

/// The ownership of one SLO's alerts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Routing {
    pub owner: Option<String>,
    pub runbook_url: Option<String>,
    /// The SLO's catalog labels (validated: Prometheus label names, none
    /// that authpulse sets itself).
    pub labels: BTreeMap<String, String>,
}

impl Routing {
    /// The SLO's routing in `catalog` (an SLO no longer in it: none).
    pub fn of(catalog: &Catalog, slo: &str) -> Routing {
        let Some(def) = catalog.slos.iter().find(|s| s.id == slo) else {
            return Routing::default();
        };
        Routing {
            owner: catalog.slo_owner(def).map(str::to_string),
            runbook_url: catalog.slo_runbook_url(def).map(str::to_string),
            labels: def.labels.clone(),
        }
    }

    /// The labels a route matches on: the catalog labels and `owner`.
    pub fn match_labels(&self) -> BTreeMap<&str, &str> {
        let mut m: BTreeMap<&str, &str> = self
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if let Some(o) = &self.owner {
            m.insert("owner", o.as_str());
        }
        m
    }
}

/// One PagerDuty route: alerts whose labels (and `owner`) equal every
/// `match` entry go to the service of `routing_key_file`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagerDutyRoute {
    /// Label name → value, all of which must equal (`owner` is the SLO's
    /// owner); at least one.
    #[serde(rename = "match")]
    pub matchers: BTreeMap<String, String>,
    /// File holding this service's Events v2 routing key.
    pub routing_key_file: PathBuf,
}

impl PagerDutyRoute {
    pub fn matches(&self, routing: &Routing) -> bool {
        let labels = routing.match_labels();
        !self.matchers.is_empty()
            && self
                .matchers
                .iter()
                .all(|(k, v)| labels.get(k.as_str()) == Some(&v.as_str()))
    }
}

/// The info series `authpulse_slo_info{slo, owner, <catalog labels>} 1`,
/// for joining ownership onto the `authpulse_slo_*` series in PromQL
/// (`* on(slo) group_left(owner) authpulse_slo_info`). A label set that a
/// catalog change replaced drops to 0 (the exporter cannot delete series).
pub fn export_slo_info(catalog: &Catalog) {
    static LAST: std::sync::Mutex<Vec<Vec<(String, String)>>> = std::sync::Mutex::new(Vec::new());
    let now: Vec<Vec<(String, String)>> = catalog
        .slos
        .iter()
        .map(|s| {
            let r = Routing::of(catalog, &s.id);
            let mut labels = vec![
                ("slo".to_string(), s.id.clone()),
                ("owner".to_string(), r.owner.unwrap_or_default()),
            ];
            labels.extend(r.labels);
            labels
        })
        .collect();
    let mut last = LAST
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for gone in last.iter().filter(|l| !now.contains(l)) {
        metrics::gauge!(SLO_INFO, gone).set(0.0);
    }
    for labels in &now {
        metrics::gauge!(SLO_INFO, labels).set(1.0);
    }
    *last = now;
}

pub const SLO_INFO: &str = "authpulse_slo_info";

#[cfg(test)]
mod tests {
    use super::*;

    fn route(pairs: &[(&str, &str)]) -> PagerDutyRoute {
        PagerDutyRoute {
            matchers: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            routing_key_file: PathBuf::from("k"),
        }
    }

    #[test]
    fn routes_match_owner_and_labels_first_match_wins() {
        let r = Routing {
            owner: Some("team-identity".into()),
            runbook_url: None,
            labels: [("tier".to_string(), "gold".to_string())]
                .into_iter()
                .collect(),
        };
        let routes = [
            route(&[("owner", "team-payments")]),
            route(&[("owner", "team-identity"), ("tier", "silver")]),
            route(&[("tier", "gold")]),
            route(&[("owner", "team-identity")]),
        ];
        let first = |rs: &[PagerDutyRoute]| rs.iter().position(|x| x.matches(&r));
        assert_eq!(first(&routes), Some(2));
        assert_eq!(first(&routes[..2]), None);
        assert!(!route(&[]).matches(&r), "an empty match matches nothing");
    }

    #[test]
    fn routing_comes_from_the_slo_or_its_probes() {
        let c = authpulse_proto::catalog::load_str(
            "c.yaml",
            "probes:\n  - id: p\n    kind: http\n    url: https://x.example\n    owner: team-a\n    \
             runbook_url: https://wiki.example/p\nslos:\n  - id: s\n    probes: [p]\n    objective: 99\n    \
             window: 1d\n    labels: { tier: gold }\n  - id: t\n    probes: [p]\n    objective: 99\n    \
             window: 1d\n    owner: team-b\n",
        )
        .expect("valid");
        let s = Routing::of(&c, "s");
        assert_eq!(s.owner.as_deref(), Some("team-a"));
        assert_eq!(s.runbook_url.as_deref(), Some("https://wiki.example/p"));
        assert_eq!(s.labels.get("tier").map(String::as_str), Some("gold"));
        assert_eq!(Routing::of(&c, "t").owner.as_deref(), Some("team-b"));
        assert_eq!(Routing::of(&c, "gone"), Routing::default());
    }
}
