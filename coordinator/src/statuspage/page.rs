//! The page: the catalog's components (or one per SLO), their statuses
//! kept in the store, and the syncs that bring both in line with the SLO
//! statuses and the firing alerts. The evaluation loop syncs after every
//! evaluation and each feed request syncs too, one at a time; a follower
//! replica computes the page without writing it.
use std::collections::{BTreeSet, HashMap};

use authpulse_proto::catalog::Catalog;

use super::ComponentState;
use super::incidents::{IncidentContext, sync_open_incidents};
use super::rules::{ComponentStatus, slo_condition, trusted};
use crate::alerting::{AlertStore, Firing};
use crate::slo::SloStatus;
use crate::store::{Store, StoreError};

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

pub(super) async fn sync_page(
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
