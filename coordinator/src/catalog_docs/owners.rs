//! Ownership in the runbook: who owns each probe, SLO and gate, where its
//! runbook is, its labels, and an index from each owner to what they own,
//! so the person paged can find their items and the next hop.
use std::collections::BTreeMap;

use authpulse_proto::catalog::Catalog;

use super::{Doc, code, gate_link, probe_link, slo_link, text};

/// Rows `owner`, `runbook` and `labels` of an item's table (the ones set).
/// `inherited` notes an SLO owner or runbook taken from its probes.
pub(super) fn rows(
    doc: &mut Doc,
    owner: Option<(&str, bool)>,
    runbook: Option<(&str, bool)>,
    labels: &BTreeMap<String, String>,
) {
    let from_probes = |inherited: bool| if inherited { " (from its probes)" } else { "" };
    if let Some((o, inherited)) = owner {
        doc.row(&[
            "owner".into(),
            format!("{}{}", text(o), from_probes(inherited)),
        ]);
    }
    if let Some((u, inherited)) = runbook {
        doc.row(&[
            "runbook".into(),
            format!("{}{}", link(u), from_probes(inherited)),
        ]);
    }
    if !labels.is_empty() {
        let l: Vec<String> = labels
            .iter()
            .map(|(k, v)| code(&format!("{k}={v}")))
            .collect();
        doc.row(&["labels".into(), l.join(", ")]);
    }
}

/// A Markdown link to a validated http(s) URL, safe inside a table cell.
pub(super) fn link(url: &str) -> String {
    let safe = url
        .replace('|', "%7C")
        .replace('>', "%3E")
        .replace(' ', "%20");
    format!("[{}](<{safe}>)", text(&safe))
}

/// `## Owners`: each owner with their probes, SLOs (their own owner or
/// their probes' shared one) and gates; then what has no owner.
pub(super) fn owners(doc: &mut Doc, catalog: &Catalog) {
    doc.line("## Owners");
    doc.blank();
    #[derive(Default)]
    struct Owned {
        probes: Vec<String>,
        slos: Vec<String>,
        gates: Vec<String>,
    }
    let mut by: BTreeMap<Option<&str>, Owned> = BTreeMap::new();
    for p in &catalog.probes {
        by.entry(p.owner.as_deref())
            .or_default()
            .probes
            .push(probe_link(&p.id));
    }
    for s in &catalog.slos {
        by.entry(catalog.slo_owner(s))
            .or_default()
            .slos
            .push(slo_link(&s.id));
    }
    for g in &catalog.gates {
        by.entry(g.owner.as_deref())
            .or_default()
            .gates
            .push(gate_link(&g.id));
    }
    if by.keys().all(Option::is_none) {
        doc.line("No owners are set: give probes, SLOs and gates `owner` (and `runbook_url`) so alerts route to a team.");
        doc.blank();
        return;
    }
    doc.table_head(&["owner", "probes", "SLOs", "gates"]);
    // Owners in name order, then the unowned.
    let mut entries: Vec<(Option<&str>, Owned)> = by.into_iter().collect();
    entries.sort_by_key(|(o, _)| (o.is_none(), *o));
    for (owner, owned) in entries {
        let list = |v: Vec<String>| {
            if v.is_empty() {
                "—".to_string()
            } else {
                v.join(", ")
            }
        };
        doc.row(&[
            owner.map_or_else(|| "*(no owner)*".to_string(), text),
            list(owned.probes),
            list(owned.slos),
            list(owned.gates),
        ]);
    }
    doc.blank();
}
