//! The SLOs section: the table of every SLO and one section per SLO with its
//! objective, SLI, window, budgeting, quorum and coverage, and the burn-rate
//! alert table computed from the alerter's own rules
//! ([`crate::alerting::RULES`], [`crate::alerting::factor`]).
use std::time::Duration;

use authpulse_proto::catalog::{Budgeting, CalendarUnit, Catalog, Sli, SloDef, Window};

use super::{
    Doc, Usage, code, count, duration, gate_link, list_or_none, num, probe_link, slo_link, text,
};
use crate::alerting::{RULES, Severity, factor};

pub(super) fn slos(doc: &mut Doc, catalog: &Catalog, usage: &Usage) {
    doc.line("## SLOs");
    doc.blank();
    if catalog.slos.is_empty() {
        doc.line("No SLOs.");
        doc.blank();
        return;
    }
    doc.line(
        "Burn-rate alerts follow the alerter's rules: a rule holds when the burn rate (bad \
         fraction / allowed bad fraction) over **both** its windows is at least its factor; \
         the factor keeps the budget share of the 30-day factor (`F = F30 × window / 30d`). \
         A window without data never matches.",
    );
    doc.blank();
    doc.table_head(&[
        "SLO",
        "objective",
        "SLI",
        "window",
        "budgeting",
        "probes",
        "gates",
    ]);
    for s in &catalog.slos {
        doc.row(&[
            slo_link(&s.id),
            format!("{} %", num(s.objective, 4)),
            sli(&s.sli),
            window(&s.window),
            budgeting_short(&s.budgeting),
            s.probes
                .iter()
                .map(|p| probe_link(p))
                .collect::<Vec<_>>()
                .join(", "),
            list_or_none(
                usage
                    .gates_of_slo(&s.id)
                    .iter()
                    .map(|g| gate_link(g))
                    .collect(),
            ),
        ]);
    }
    doc.blank();
    for s in &catalog.slos {
        slo_section(doc, catalog, s, usage);
    }
}

fn slo_section(doc: &mut Doc, catalog: &Catalog, s: &SloDef, usage: &Usage) {
    doc.line(format!("### SLO {}", code(&s.id)));
    doc.blank();
    if let Some(d) = &s.description {
        doc.line(text(d));
        doc.blank();
    }
    let allowed = (100.0 - s.objective) / 100.0;
    doc.table_head(&["field", "value"]);
    super::owners::rows(
        doc,
        catalog.slo_owner(s).map(|o| (o, s.owner.is_none())),
        catalog
            .slo_runbook_url(s)
            .map(|u| (u, s.runbook_url.is_none())),
        &s.labels,
    );
    doc.row(&[
        "probes".into(),
        s.probes
            .iter()
            .map(|p| probe_link(p))
            .collect::<Vec<_>>()
            .join(", "),
    ]);
    doc.row(&[
        "objective".into(),
        format!(
            "{} % (error budget: {} % bad allowed)",
            num(s.objective, 4),
            num(allowed * 100.0, 4)
        ),
    ]);
    let mut sli_text = sli_long(&s.sli);
    if matches!(s.sli, Sli::Latency { .. }) && s.probes.iter().any(|p| p.contains('/')) {
        sli_text.push_str(" (for `journey/step`: the step's own duration)");
    }
    doc.row(&["SLI".into(), sli_text]);
    doc.row(&["window".into(), window_long(&s.window)]);
    doc.row(&[
        "budgeting".into(),
        budgeting_long(&s.budgeting, &s.window, allowed),
    ]);
    if let Some(q) = s.quorum {
        doc.row(&[
            "quorum".into(),
            format!(
                "{}: a slice counts as bad globally only when at least {q} of the regions \
                 reporting in it saw it bad",
                count(q as usize, "region", "regions")
            ),
        ]);
    }
    doc.row(&[
        "coverage".into(),
        format!(
            "at least {} % of the expected runs over the last {}, else `insufficient_data`{}",
            num(s.coverage.min * 100.0, 4),
            duration(s.coverage.window),
            if s.coverage == Default::default() {
                " (default)"
            } else {
                ""
            }
        ),
    ]);
    doc.row(&[
        "alerts".into(),
        format!(
            "page {}, ticket {}",
            on_off(s.alerting.page),
            on_off(s.alerting.ticket)
        ),
    ]);
    doc.row(&[
        "gates".into(),
        list_or_none(
            usage
                .gates_of_slo(&s.id)
                .iter()
                .map(|g| gate_link(g))
                .collect(),
        ),
    ]);
    doc.row(&[
        "components".into(),
        components_of_slo(catalog, usage, &s.id),
    ]);
    if let Some(src) = &s.source {
        doc.row(&["defined at".into(), code(&src.to_string())]);
    }
    doc.blank();
    let (length, nominal) = window_length(&s.window);
    doc.line(format!(
        "Burn-rate alerts for a {length} window{}:",
        if nominal {
            " (a calendar period: the factor scales with the period's real length)"
        } else {
            ""
        }
    ));
    doc.blank();
    doc.table_head(&[
        "severity",
        "long window",
        "short window",
        "burn factor",
        "budget consumed when it fires",
        "notifies",
    ]);
    let window_duration = window_duration(&s.window);
    for rule in &RULES {
        let long = burn_window(rule.long);
        let consumed = rule.factor_30d * long.as_secs_f64() / (30.0 * 86_400.0);
        let notifies = match rule.severity {
            Severity::Page => s.alerting.page,
            Severity::Ticket => s.alerting.ticket,
        };
        doc.row(&[
            rule.severity.as_str().to_string(),
            rule.long.to_string(),
            rule.short.to_string(),
            num(factor(rule.factor_30d, window_duration), 4),
            format!("{} % in {}", num(consumed * 100.0, 2), rule.long),
            if notifies {
                "yes".to_string()
            } else {
                "no (`alerting` opt-out; gates and the status page still read it)".to_string()
            },
        ]);
    }
    doc.blank();
}

fn on_off(b: bool) -> &'static str {
    if b { "on" } else { "off" }
}

/// A burn window label of the rules (`5m`, `1h`, `1d`) as a duration.
fn burn_window(label: &str) -> Duration {
    crate::slo::BURN_WINDOWS
        .iter()
        .find(|(l, _)| *l == label)
        .map(|(_, d)| *d)
        .unwrap_or_default()
}

fn components_of_slo(catalog: &Catalog, usage: &Usage, slo: &str) -> String {
    if catalog.components.is_empty() {
        return format!("{} (implicit: one component per SLO)", code(slo));
    }
    match usage.components_of_slo.get(slo) {
        Some(c) => c.iter().map(|c| code(c)).collect::<Vec<_>>().join(", "),
        None => "— (internal: on no status-page component)".to_string(),
    }
}

fn sli(s: &Sli) -> String {
    match s {
        Sli::Availability => "availability".to_string(),
        Sli::Latency { threshold } => format!("latency ≤ {}", duration(*threshold)),
    }
}

fn sli_long(s: &Sli) -> String {
    match s {
        Sli::Availability => "availability: good = a successful run".to_string(),
        Sli::Latency { threshold } => format!(
            "latency: good = a successful run with total time ≤ {}",
            duration(*threshold)
        ),
    }
}

fn window(w: &Window) -> String {
    match w {
        Window::Rolling(d) => format!("{} rolling", duration(*d)),
        Window::Calendar(c) => format!(
            "calendar {} ({})",
            calendar_unit(c.calendar),
            c.time_zone.as_deref().unwrap_or("UTC")
        ),
    }
}

fn window_long(w: &Window) -> String {
    match w {
        Window::Rolling(d) => format!(
            "rolling {}: from the start of the minute containing now − {}",
            duration(*d),
            duration(*d)
        ),
        Window::Calendar(c) => {
            let reset = match c.calendar {
                CalendarUnit::Day => "local midnight",
                CalendarUnit::Week => "local midnight on Monday (ISO week)",
                CalendarUnit::Month => "local midnight on the 1st",
            };
            format!(
                "calendar {} in {}: the budget resets at {reset}",
                calendar_unit(c.calendar),
                c.time_zone.as_deref().unwrap_or("UTC")
            )
        }
    }
}

fn calendar_unit(u: CalendarUnit) -> &'static str {
    match u {
        CalendarUnit::Day => "day",
        CalendarUnit::Week => "week",
        CalendarUnit::Month => "month",
    }
}

/// The window length the factors are computed for: a rolling window's own;
/// for a calendar period its nominal length (a day 24h, a week 7d, a month
/// 30d), since the real one depends on the period and DST.
fn window_duration(w: &Window) -> Duration {
    match w {
        Window::Rolling(d) => *d,
        Window::Calendar(c) => Duration::from_secs(match c.calendar {
            CalendarUnit::Day => 86_400,
            CalendarUnit::Week => 7 * 86_400,
            CalendarUnit::Month => 30 * 86_400,
        }),
    }
}

/// The length named in the alert table's title, and whether it is nominal.
fn window_length(w: &Window) -> (String, bool) {
    match w {
        Window::Rolling(d) => (duration(*d), false),
        Window::Calendar(c) => match c.calendar {
            CalendarUnit::Day => ("1d".into(), true),
            CalendarUnit::Week => ("7d".into(), true),
            CalendarUnit::Month => ("30-day month".into(), true),
        },
    }
}

fn budgeting_short(b: &Budgeting) -> String {
    match b {
        Budgeting::Occurrences => "occurrences".to_string(),
        Budgeting::Timeslices { slice, target } => format!(
            "timeslices ({} slices, ≥ {} % good)",
            duration(*slice),
            num(target * 100.0, 4)
        ),
    }
}

fn budgeting_long(b: &Budgeting, w: &Window, allowed: f64) -> String {
    match b {
        Budgeting::Occurrences => format!(
            "occurrences: SLI = good runs / runs; the budget is {} % of the window's runs",
            num(allowed * 100.0, 4)
        ),
        Budgeting::Timeslices { slice, target } => {
            let slice_secs = slice.as_secs_f64().max(1.0);
            let (length, nominal) = window_length(w);
            let slices = window_duration(w).as_secs_f64() / slice_secs;
            let budget = slices * allowed;
            format!(
                "timeslices: a {} slice is good when ≥ {} % of its runs are good; SLI = good \
                 slices / slices with data; a {length} window{} has {} slices, a budget of {} \
                 bad slices ({} of bad time)",
                duration(*slice),
                num(target * 100.0, 4),
                if nominal { " (nominal)" } else { "" },
                num(slices, 0),
                num(budget, 2),
                duration(Duration::from_secs_f64((budget * slice_secs).max(0.0)))
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::catalog_docs::render;

    #[test]
    fn alert_factors_are_the_alerters() {
        let catalog = authpulse_proto::catalog::load_str(
            "c.yaml",
            "probes:\n  - id: a\n    kind: http\n    url: https://idp.example.com/health\n\
             slos:\n  - id: s\n    probes: [a]\n    objective: 99.9\n    window: 7d\n",
        )
        .expect("valid");
        let md = render(&catalog, &["c.yaml".into()]);
        // 14.4 × 7/30, 6 × 7/30, 3 × 7/30, 1 × 7/30.
        for row in [
            "| page | 1h | 5m | 3.36 | 2 % in 1h | yes |",
            "| page | 6h | 30m | 1.4 | 5 % in 6h | yes |",
            "| ticket | 1d | 2h | 0.7 | 10 % in 1d | yes |",
            "| ticket | 3d | 6h | 0.2333 | 10 % in 3d | yes |",
        ] {
            assert!(md.contains(row), "missing {row}:\n{md}");
        }
    }
}
