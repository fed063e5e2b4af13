//! The Deploy gates and Components sections: every gate with its SLOs, the
//! probes it reads, its staleness rule and its conditions in words, and the
//! status-page components with the SLOs each takes its status from.
use authpulse_proto::catalog::{BlockWhen, Catalog, GateDef, OnStale};

use super::{
    Doc, code, duration, gate_link, list_or_none, num, probe_link, probe_of, push_unique, slo_link,
    text,
};
use crate::alerting::{RULES, Severity};

pub(super) fn gates(doc: &mut Doc, catalog: &Catalog) {
    doc.line("## Deploy gates");
    doc.blank();
    if catalog.gates.is_empty() {
        doc.line("No deploy gates.");
        doc.blank();
        return;
    }
    doc.line(
        "A pipeline asks `GET /api/v1/gates/{id}` (or `authpulse gate ID`): 200 pass, 503 fail \
         with the reasons. Any condition holding for any of the gate's SLOs fails it.",
    );
    doc.blank();
    doc.table_head(&["gate", "SLOs", "blocks when", "on_stale", "stale_after"]);
    for g in &catalog.gates {
        doc.row(&[
            gate_link(&g.id),
            g.slos
                .iter()
                .map(|s| slo_link(s))
                .collect::<Vec<_>>()
                .join(", "),
            g.block_when
                .iter()
                .map(condition_name)
                .collect::<Vec<_>>()
                .join(", "),
            on_stale(g.on_stale).to_string(),
            duration(g.stale_after),
        ]);
    }
    doc.blank();
    for g in &catalog.gates {
        gate_section(doc, catalog, g);
    }
}

fn gate_section(doc: &mut Doc, catalog: &Catalog, g: &GateDef) {
    doc.line(format!("### Gate {}", code(&g.id)));
    doc.blank();
    if let Some(d) = &g.description {
        doc.line(text(d));
        doc.blank();
    }
    let mut probes: Vec<String> = Vec::new();
    for slo in catalog.slos.iter().filter(|s| g.slos.contains(&s.id)) {
        for p in &slo.probes {
            push_unique(&mut probes, probe_of(p));
        }
    }
    doc.table_head(&["field", "value"]);
    super::owners::rows(
        doc,
        g.owner.as_deref().map(|o| (o, false)),
        g.runbook_url.as_deref().map(|u| (u, false)),
        &g.labels,
    );
    doc.row(&[
        "SLOs".into(),
        g.slos
            .iter()
            .map(|s| slo_link(s))
            .collect::<Vec<_>>()
            .join(", "),
    ]);
    doc.row(&[
        "probes read".into(),
        list_or_none(probes.iter().map(|p| probe_link(p)).collect()),
    ]);
    if g.public {
        doc.row(&[
            "public".into(),
            "yes: its decision answers without a token (for webhook callers such as Flagger)"
                .into(),
        ]);
    }
    doc.row(&["stale_after".into(), duration(g.stale_after)]);
    doc.row(&[
        "on_stale".into(),
        match g.on_stale {
            OnStale::Fail => format!(
                "`fail`: an SLO without results, with its newest result older than {}, or \
                 without enough data (`no_data`, `insufficient_data`) fails the gate",
                duration(g.stale_after)
            ),
            OnStale::Pass => "`pass`: a stale SLO is listed in the notes and does not fail \
                 the gate by itself; its conditions are still judged on the data there is"
                .to_string(),
        },
    ]);
    if let Some(src) = &g.source {
        doc.row(&["defined at".into(), code(&src.to_string())]);
    }
    doc.blank();
    doc.table_head(&["condition", "blocks when (for any of its SLOs)"]);
    for c in &g.block_when {
        doc.row(&[code(&condition_name(c)), condition_text(c)]);
    }
    doc.blank();
}

fn on_stale(s: OnStale) -> &'static str {
    match s {
        OnStale::Fail => "fail",
        OnStale::Pass => "pass",
    }
}

/// A condition as written in the catalog.
fn condition_name(c: &BlockWhen) -> String {
    match c {
        BlockWhen::PageAlert => "page_alert".into(),
        BlockWhen::TicketAlert => "ticket_alert".into(),
        BlockWhen::BudgetExhausted => "budget_exhausted".into(),
        BlockWhen::Escalation => "escalation".into(),
        BlockWhen::BudgetBelow(x) => format!("budget_below: {}", num(*x, 4)),
        BlockWhen::EscalationWithin(d) => format!("escalation_within: {}", duration(*d)),
        BlockWhen::SliBelow(s) => format!(
            "sli_below: {{ window: {}, value: {} }}",
            duration(s.window),
            num(s.value, 6)
        ),
    }
}

fn condition_text(c: &BlockWhen) -> String {
    let rules = |severity: Severity| {
        RULES
            .iter()
            .filter(|r| r.severity == severity)
            .map(|r| r.label)
            .collect::<Vec<_>>()
            .join(" or ")
    };
    match c {
        BlockWhen::PageAlert => format!(
            "a page-level burn-rate rule holds ({}; factors in the SLO's alert table), \
             whatever its `alerting` opt-outs",
            rules(Severity::Page)
        ),
        BlockWhen::TicketAlert => format!(
            "a ticket-level burn-rate rule holds ({}; factors in the SLO's alert table)",
            rules(Severity::Ticket)
        ),
        BlockWhen::BudgetExhausted => "the error budget is used up (remaining ≤ 0)".into(),
        BlockWhen::Escalation => format!(
            "a result of its probes had failure class `escalation` (an action that must be \
             denied was allowed) in the last {}",
            duration(crate::gates::ESCALATION_LOOKBACK)
        ),
        BlockWhen::BudgetBelow(x) => format!(
            "less than {} % of the error budget is left",
            num(x * 100.0, 4)
        ),
        BlockWhen::EscalationWithin(d) => format!(
            "a result of its probes had failure class `escalation` in the last {}",
            duration(*d)
        ),
        BlockWhen::SliBelow(s) => format!(
            "the SLI over the last {} (minute-aligned) is below {} %",
            duration(s.window),
            num(s.value * 100.0, 4)
        ),
    }
}

pub(super) fn components(doc: &mut Doc, catalog: &Catalog) {
    doc.line("## Components");
    doc.blank();
    if catalog.components.is_empty() {
        doc.line(
            "None declared: the status page shows one component per SLO (id and name = the \
             SLO id).",
        );
        doc.blank();
        return;
    }
    doc.line("Status-page components, in page order; each takes the worst status of its SLOs.");
    doc.blank();
    doc.table_head(&["component", "name", "SLOs", "description"]);
    for c in &catalog.components {
        doc.row(&[
            code(&c.id),
            text(&c.name),
            c.slos
                .iter()
                .map(|s| slo_link(s))
                .collect::<Vec<_>>()
                .join(", "),
            c.description
                .as_deref()
                .map(text)
                .unwrap_or_else(|| "—".into()),
        ]);
    }
    let named: Vec<&str> = catalog
        .components
        .iter()
        .flat_map(|c| c.slos.iter().map(String::as_str))
        .collect();
    let internal: Vec<String> = catalog
        .slos
        .iter()
        .filter(|s| !named.contains(&s.id.as_str()))
        .map(|s| slo_link(&s.id))
        .collect();
    if !internal.is_empty() {
        doc.blank();
        doc.line(format!(
            "Internal SLOs (on no component, open no incident): {}.",
            internal.join(", ")
        ));
    }
    doc.blank();
}
