//! The Probes section: the table of every probe and one section per probe
//! with the endpoint it talks to (derived as the agent derives it, URL
//! passwords hidden), what a check must answer, a journey's steps and what
//! depends on it (SLOs, gates).
use authpulse_proto::catalog::{Catalog, KindSpec, ProbeDef};

use super::secrets::credentials;
use super::{
    Doc, Usage, cell, code, duration, gate_link, list_or_none, probe_link, slo_link, text,
};

pub(super) fn probes(doc: &mut Doc, catalog: &Catalog, usage: &Usage) {
    doc.line("## Probes");
    doc.blank();
    if catalog.probes.is_empty() {
        doc.line("No probes.");
        doc.blank();
        return;
    }
    doc.table_head(&[
        "probe", "kind", "target", "regions", "interval", "timeout", "SLOs", "gates",
    ]);
    for p in &catalog.probes {
        doc.row(&[
            probe_link(&p.id),
            p.kind().to_string(),
            cell(&target(&p.spec)),
            regions(p),
            duration(p.interval),
            duration(p.timeout),
            list_or_none(usage.slos(&p.id).iter().map(|s| slo_link(s)).collect()),
            list_or_none(
                usage
                    .gates_of_probe(&p.id)
                    .iter()
                    .map(|g| gate_link(g))
                    .collect(),
            ),
        ]);
    }
    doc.blank();
    for p in &catalog.probes {
        probe_section(doc, p, usage);
    }
}

fn probe_section(doc: &mut Doc, p: &ProbeDef, usage: &Usage) {
    doc.line(format!("### Probe {}", code(&p.id)));
    doc.blank();
    if let Some(d) = &p.description {
        doc.line(text(d));
        doc.blank();
    }
    doc.table_head(&["field", "value"]);
    doc.row(&["kind".into(), code(p.kind())]);
    doc.row(&["target".into(), cell(&target(&p.spec))]);
    if let Some(check) = expectation(&p.spec) {
        doc.row(&["expects".into(), check]);
    }
    doc.row(&["regions".into(), regions(p)]);
    doc.row(&["interval".into(), duration(p.interval)]);
    doc.row(&["timeout".into(), duration(p.timeout)]);
    super::owners::rows(
        doc,
        p.owner.as_deref().map(|o| (o, false)),
        p.runbook_url.as_deref().map(|u| (u, false)),
        &p.labels,
    );
    let creds = credentials(&p.spec);
    if !creds.is_empty() {
        doc.row(&["credentials".into(), creds.join("<br>")]);
    }
    doc.row(&[
        "SLOs".into(),
        list_or_none(usage.slos(&p.id).iter().map(|s| slo_link(s)).collect()),
    ]);
    doc.row(&[
        "gates".into(),
        list_or_none(
            usage
                .gates_of_probe(&p.id)
                .iter()
                .map(|g| gate_link(g))
                .collect(),
        ),
    ]);
    if let Some(src) = &p.source {
        doc.row(&["defined at".into(), code(&src.to_string())]);
    }
    doc.blank();
    if let KindSpec::Journey(j) = &p.spec {
        doc.line(
            "Steps, in order, in one HTTP session; after a failed step only `always` steps run:",
        );
        doc.blank();
        doc.table_head(&["#", "step", "kind", "target", "runs", "must"]);
        for (i, step) in j.steps.iter().enumerate() {
            let must = match (&step.expect_failure, expectation(&step.spec)) {
                (Some(class), _) => format!("fail with `{class}`"),
                (None, Some(e)) => e,
                (None, None) => "succeed".to_string(),
            };
            doc.row(&[
                (i + 1).to_string(),
                code(&step.name),
                step.spec.kind().to_string(),
                cell(&target(&step.spec)),
                if step.always {
                    "always".into()
                } else {
                    "if all before succeeded".into()
                },
                must,
            ]);
        }
        doc.blank();
    }
}

fn regions(p: &ProbeDef) -> String {
    match &p.regions {
        None => "all".to_string(),
        Some(rs) => rs.iter().map(|r| code(r)).collect::<Vec<_>>().join(", "),
    }
}

/// What a check must answer, as the catalog states it.
fn expectation(spec: &KindSpec) -> Option<String> {
    spec.expectation()
}

/// The endpoint a probe talks to first, as the catalog derives it for the
/// agent.
fn target(spec: &KindSpec) -> String {
    spec.target()
}
