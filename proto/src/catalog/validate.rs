//! Checks types can't express: id syntax and uniqueness, cross references
//! (SLO → probe, gate → SLO, component → SLO), timing sanity, URLs, regexes and JSONPaths.
use std::collections::HashMap;
use std::time::Duration;

use super::kinds::{Issues, Validate, check_regex, check_tls, check_url};
use super::ownership;
use super::source_map::Seg;
use super::{
    Budgeting, Catalog, HttpSpec, JourneySpec, KindSpec, OidcDiscoverySpec, Window, template,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    Probes,
    Slos,
    Gates,
    Components,
    Maintenances,
}

impl Section {
    pub const ALL: [Section; 5] = [
        Section::Probes,
        Section::Slos,
        Section::Gates,
        Section::Components,
        Section::Maintenances,
    ];

    pub fn key(self) -> &'static str {
        match self {
            Section::Probes => "probes",
            Section::Slos => "slos",
            Section::Gates => "gates",
            Section::Components => "components",
            Section::Maintenances => "maintenances",
        }
    }
}

/// An item by its position in the merged catalog.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ItemRef {
    pub section: Section,
    pub index: usize,
}

pub type Problem = (ItemRef, Vec<Seg>, String);

const MIN_INTERVAL: Duration = Duration::from_secs(1);

fn key(k: &str) -> Seg {
    Seg::Key(k.to_string())
}

/// `[a-z0-9-]`, 1..=63 characters, starting and ending alphanumeric.
pub fn valid_id(id: &str) -> bool {
    let ok_chars = id
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    ok_chars && (1..=63).contains(&id.len()) && !id.starts_with('-') && !id.ends_with('-')
}

pub fn validate(catalog: &Catalog) -> Vec<Problem> {
    let mut out: Vec<Problem> = Vec::new();
    let mut push = |section, index, path: Vec<Seg>, msg: String| {
        out.push((ItemRef { section, index }, path, msg));
    };

    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, p) in catalog.probes.iter().enumerate() {
        let s = Section::Probes;
        if !valid_id(&p.id) {
            push(
                s,
                i,
                vec![key("id")],
                format!(
                    "invalid id `{}`: use [a-z0-9-], at most 63 characters",
                    p.id
                ),
            );
        }
        if let Some(first) = seen.insert(&p.id, i) {
            let at = catalog.probes[first]
                .source
                .as_ref()
                .map(|l| format!(" (first defined at {l})"))
                .unwrap_or_default();
            push(
                s,
                i,
                vec![key("id")],
                format!("duplicate probe id `{}`{at}", p.id),
            );
        }
        if p.interval < MIN_INTERVAL {
            push(
                s,
                i,
                vec![key("interval")],
                format!("interval {} is below the minimum of 1s", fmt(p.interval)),
            );
        }
        if p.timeout.is_zero() {
            push(
                s,
                i,
                vec![key("timeout")],
                "timeout must be greater than 0".into(),
            );
        } else if p.interval < p.timeout {
            push(
                s,
                i,
                vec![key("interval")],
                format!(
                    "interval {} is below timeout {}: a run could still be going when the next starts",
                    fmt(p.interval),
                    fmt(p.timeout)
                ),
            );
        }
        if let Some(regions) = &p.regions {
            if regions.is_empty() {
                push(
                    s,
                    i,
                    vec![key("regions")],
                    "empty list: omit `regions` to run everywhere".into(),
                );
            }
            for (ri, r) in regions.iter().enumerate() {
                if !valid_id(r) {
                    push(
                        s,
                        i,
                        vec![key("regions"), Seg::Index(ri)],
                        format!("invalid region name `{r}`"),
                    );
                }
            }
        }
        for (path, msg) in validate_kind(&p.spec) {
            push(s, i, path, msg);
        }
        for (path, msg) in ownership::check(p.owner.as_deref(), p.runbook_url.as_deref(), &p.labels)
        {
            push(s, i, path, msg);
        }
    }

    let mut seen_slo: HashMap<&str, usize> = HashMap::new();
    for (i, slo) in catalog.slos.iter().enumerate() {
        let s = Section::Slos;
        for (path, msg) in ownership::check(
            slo.owner.as_deref(),
            slo.runbook_url.as_deref(),
            &slo.labels,
        ) {
            push(s, i, path, msg);
        }
        if !valid_id(&slo.id) {
            push(
                s,
                i,
                vec![key("id")],
                format!(
                    "invalid id `{}`: use [a-z0-9-], at most 63 characters",
                    slo.id
                ),
            );
        }
        if seen_slo.insert(&slo.id, i).is_some() {
            push(
                s,
                i,
                vec![key("id")],
                format!("duplicate SLO id `{}`", slo.id),
            );
        }
        if slo.probes.is_empty() {
            push(
                s,
                i,
                vec![key("probes")],
                "an SLO needs at least one probe".into(),
            );
        }
        for (pi, probe) in slo.probes.iter().enumerate() {
            // `probe/step` names one step of a journey.
            if let Some((id, step)) = probe.split_once('/') {
                let msg = match catalog.probe(id).map(|p| &p.spec) {
                    None => Some(format!("unknown probe `{id}`")),
                    Some(super::KindSpec::Journey(j)) => (!j.steps.iter().any(|s| s.name == step))
                        .then(|| {
                            let names: Vec<&str> =
                                j.steps.iter().map(|s| s.name.as_str()).collect();
                            format!(
                                "journey `{id}` has no step `{step}` (steps: {})",
                                names.join(", ")
                            )
                        }),
                    Some(_) => Some(format!(
                        "`{probe}`: only the steps of a journey can be named (`{id}` is not a journey)"
                    )),
                };
                if let Some(msg) = msg {
                    push(s, i, vec![key("probes"), Seg::Index(pi)], msg);
                }
            } else if catalog.probe(probe).is_none() {
                push(
                    s,
                    i,
                    vec![key("probes"), Seg::Index(pi)],
                    format!("unknown probe `{probe}`"),
                );
            }
        }
        if !(slo.objective > 0.0 && slo.objective < 100.0) {
            push(
                s,
                i,
                vec![key("objective")],
                format!(
                    "objective {} must be a percentage strictly between 0 and 100",
                    slo.objective
                ),
            );
        }
        match &slo.window {
            Window::Rolling(d) if *d < Duration::from_secs(60) => {
                push(
                    s,
                    i,
                    vec![key("window")],
                    format!("window {} is shorter than 1m", fmt(*d)),
                );
            }
            Window::Rolling(_) => {}
            Window::Calendar(c) => {
                if let Some(tz) = &c.time_zone
                    && tz.parse::<chrono_tz::Tz>().is_err()
                {
                    push(
                        s,
                        i,
                        vec![key("window"), key("time_zone")],
                        format!(
                            "unknown IANA time zone `{tz}` (e.g. Europe/Berlin, America/New_York, UTC)"
                        ),
                    );
                }
            }
        }
        if let super::Sli::Latency { threshold } = &slo.sli
            && threshold.is_zero()
        {
            push(
                s,
                i,
                vec![key("sli")],
                "latency threshold must be greater than 0".into(),
            );
        }
        if let Budgeting::Timeslices { slice, target } = slo.budgeting {
            if slice.is_zero() || slice.as_secs() % 60 != 0 || slice.subsec_nanos() != 0 {
                push(
                    s,
                    i,
                    vec![key("budgeting"), key("timeslices"), key("slice")],
                    format!(
                        "slice {} must be a whole number of minutes (aggregates are per minute)",
                        fmt(slice)
                    ),
                );
            }
            if !(target > 0.0 && target <= 1.0) {
                push(
                    s,
                    i,
                    vec![key("budgeting"), key("timeslices"), key("target")],
                    format!("target {target} must be a ratio in (0, 1], e.g. 0.95"),
                );
            }
        }
        if slo.quorum == Some(0) {
            push(
                s,
                i,
                vec![key("quorum")],
                "quorum must be at least 1 (the number of regions that must see a slice bad)"
                    .into(),
            );
        }
        if !(slo.coverage.min >= 0.0 && slo.coverage.min <= 1.0) {
            push(
                s,
                i,
                vec![key("coverage"), key("min")],
                format!("{} must be a ratio in [0, 1]", slo.coverage.min),
            );
        }
        if slo.coverage.window < Duration::from_secs(120) {
            push(
                s,
                i,
                vec![key("coverage"), key("window")],
                format!(
                    "coverage window {} is shorter than 2m",
                    fmt(slo.coverage.window)
                ),
            );
        }
    }

    let mut seen_maintenance: HashMap<&str, usize> = HashMap::new();
    for (i, m) in catalog.maintenances.iter().enumerate() {
        let s = Section::Maintenances;
        if !valid_id(&m.id) {
            push(
                s,
                i,
                vec![key("id")],
                format!(
                    "invalid id `{}`: use [a-z0-9-], at most 63 characters",
                    m.id
                ),
            );
        }
        if seen_maintenance.insert(&m.id, i).is_some() {
            push(
                s,
                i,
                vec![key("id")],
                format!("duplicate maintenance id `{}`", m.id),
            );
        }
        for (path, msg) in super::maintenance::check(m, catalog) {
            push(s, i, path, msg);
        }
    }

    // Status-page components: their ids are public URLs' path segments.
    let mut seen_component: HashMap<&str, usize> = HashMap::new();
    for (i, c) in catalog.components.iter().enumerate() {
        let s = Section::Components;
        if !valid_id(&c.id) {
            push(
                s,
                i,
                vec![key("id")],
                format!(
                    "invalid id `{}`: use [a-z0-9-], at most 63 characters",
                    c.id
                ),
            );
        }
        if seen_component.insert(&c.id, i).is_some() {
            push(
                s,
                i,
                vec![key("id")],
                format!("duplicate component id `{}`", c.id),
            );
        }
        if c.name.trim().is_empty() {
            push(
                s,
                i,
                vec![key("name")],
                "a component needs a name (shown on the status page)".into(),
            );
        }
        if c.slos.is_empty() {
            push(
                s,
                i,
                vec![key("slos")],
                "a component needs at least one SLO".into(),
            );
        }
        for (si, slo) in c.slos.iter().enumerate() {
            if !catalog.slos.iter().any(|x| &x.id == slo) {
                push(
                    s,
                    i,
                    vec![key("slos"), Seg::Index(si)],
                    format!("unknown SLO `{slo}`"),
                );
            }
        }
    }

    let mut seen_gate: HashMap<&str, usize> = HashMap::new();
    for (i, gate) in catalog.gates.iter().enumerate() {
        let s = Section::Gates;
        for (path, msg) in ownership::check(
            gate.owner.as_deref(),
            gate.runbook_url.as_deref(),
            &gate.labels,
        ) {
            push(s, i, path, msg);
        }
        if seen_gate.insert(&gate.id, i).is_some() {
            push(
                s,
                i,
                vec![key("id")],
                format!("duplicate gate id `{}`", gate.id),
            );
        }
        for (path, msg) in validate_gate(catalog, gate) {
            push(s, i, path, msg);
        }
    }
    out
}

/// Longest `sli_below` window: minute aggregates are always kept this long
/// (the longest burn window), whatever the SLO windows.
const MAX_SLI_BELOW_WINDOW: Duration = Duration::from_secs(3 * 86_400);

/// A gate's own checks: id, SLO references, conditions and their numbers,
/// and a `stale_after` longer than the intervals of the probes it watches.
fn validate_gate(catalog: &Catalog, gate: &super::GateDef) -> Issues {
    let mut out: Issues = Vec::new();
    if !valid_id(&gate.id) {
        out.push((
            vec![key("id")],
            format!(
                "invalid id `{}`: use [a-z0-9-], at most 63 characters",
                gate.id
            ),
        ));
    }
    if gate.slos.is_empty() {
        out.push((vec![key("slos")], "a gate needs at least one SLO".into()));
    }
    for (si, slo) in gate.slos.iter().enumerate() {
        if !catalog.slos.iter().any(|x| &x.id == slo) {
            out.push((
                vec![key("slos"), Seg::Index(si)],
                format!("unknown SLO `{slo}`"),
            ));
        }
    }
    if gate.block_when.is_empty() {
        out.push((
            vec![key("block_when")],
            "a gate needs at least one condition, e.g. `block_when: [page_alert, budget_exhausted]`"
                .into(),
        ));
    }
    for (ci, cond) in gate.block_when.iter().enumerate() {
        let at = |k: &str| vec![key("block_when"), Seg::Index(ci), key(k)];
        match cond {
            super::BlockWhen::BudgetBelow(x) if !(0.0..=1.0).contains(x) => out.push((
                at("budget_below"),
                format!("{x} must be a ratio of the budget in [0, 1], e.g. 0.2 for 20 % left"),
            )),
            super::BlockWhen::EscalationWithin(d) if d.is_zero() => out.push((
                at("escalation_within"),
                "must be greater than 0, e.g. 30m".into(),
            )),
            super::BlockWhen::SliBelow(s) => {
                let w = s.window;
                if w < Duration::from_secs(60)
                    || w > MAX_SLI_BELOW_WINDOW
                    || w.as_secs() % 60 != 0
                    || w.subsec_nanos() != 0
                {
                    let mut p = at("sli_below");
                    p.push(key("window"));
                    out.push((
                        p,
                        format!(
                            "window {} must be whole minutes between 1m and 3d (SLIs come from \
                             per-minute aggregates; use budget_below for longer spans)",
                            fmt(w)
                        ),
                    ));
                }
                if !(s.value > 0.0 && s.value <= 1.0) {
                    let hint = if s.value > 1.0 && s.value <= 100.0 {
                        format!(" (did you mean {}?)", s.value / 100.0)
                    } else {
                        String::new()
                    };
                    let mut p = at("sli_below");
                    p.push(key("value"));
                    out.push((
                        p,
                        format!(
                            "{} must be a ratio in (0, 1], e.g. 0.99 for 99 %{hint}",
                            s.value
                        ),
                    ));
                }
            }
            _ => {}
        }
    }
    if gate.stale_after < MIN_INTERVAL {
        out.push((
            vec![key("stale_after")],
            format!("stale_after {} is below 1s", fmt(gate.stale_after)),
        ));
    } else {
        // A gate that goes stale between two runs of its probes would fail
        // (or pass) on nothing but timing.
        let slowest = gate
            .slos
            .iter()
            .filter_map(|id| catalog.slos.iter().find(|s| &s.id == id))
            .flat_map(|s| s.probes.iter())
            .filter_map(|p| catalog.probe(p.split_once('/').map_or(p.as_str(), |(id, _)| id)))
            .max_by_key(|p| p.interval);
        if let Some(p) = slowest
            && gate.stale_after <= p.interval
        {
            out.push((
                vec![key("stale_after")],
                format!(
                    "stale_after {} is not longer than the interval {} of probe `{}`: the gate \
                     would see stale data between runs",
                    fmt(gate.stale_after),
                    fmt(p.interval),
                    p.id
                ),
            ));
        }
    }
    out
}

fn fmt(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// A probe body's checks: the kind's own, templates (only in journey steps,
/// only naming earlier steps), and each step of a journey.
fn validate_kind(spec: &KindSpec) -> Issues {
    match spec {
        KindSpec::Journey(j) => validate_journey(j),
        other => {
            let mut out = other.validate_body();
            if let Ok(json) = serde_json::to_value(other) {
                for (path, s) in template::strings(&json) {
                    if s.contains("{{ steps.") || s.contains("{{steps.") || s.contains("{{ env.") {
                        out.push((
                            path,
                            "templates (`{{ steps.… }}`) work only in the steps of a journey"
                                .into(),
                        ));
                    }
                }
            }
            out
        }
    }
}

fn valid_step_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn validate_journey(j: &JourneySpec) -> Issues {
    let mut out = Vec::new();
    let mut earlier: Vec<&str> = Vec::new();
    for (i, step) in j.steps.iter().enumerate() {
        let at = |mut path: Vec<Seg>| {
            let mut p = vec![key("steps"), Seg::Index(i)];
            p.append(&mut path);
            p
        };
        if !valid_step_name(&step.name) {
            out.push((
                at(vec![key("name")]),
                format!(
                    "invalid step name `{}`: use [a-z0-9_-], at most 63 characters",
                    step.name
                ),
            ));
        }
        if earlier.contains(&step.name.as_str()) {
            out.push((
                at(vec![key("name")]),
                format!("duplicate step name `{}`", step.name),
            ));
        }
        for (path, msg) in step.spec.validate_body() {
            out.push((at(path), msg));
        }
        if let Ok(json) = serde_json::to_value(&step.spec) {
            for (path, s) in template::strings(&json) {
                match template::references(s) {
                    Err(e) => out.push((at(path), e)),
                    Ok(refs) => {
                        for r in refs {
                            if r.step == step.name {
                                out.push((
                                    at(path.clone()),
                                    format!("`{{{{ {r} }}}}`: a step can't read its own outputs"),
                                ));
                            } else if !earlier.contains(&r.step.as_str()) {
                                let later = j.steps.iter().any(|s| s.name == r.step);
                                out.push((
                                    at(path.clone()),
                                    if later {
                                        format!(
                                            "`{{{{ {r} }}}}`: step `{}` runs after this one",
                                            r.step
                                        )
                                    } else {
                                        format!(
                                            "`{{{{ {r} }}}}`: no step named `{}` in this journey",
                                            r.step
                                        )
                                    },
                                ));
                            }
                        }
                    }
                }
            }
        }
        earlier.push(&step.name);
    }
    out
}

impl Validate for HttpSpec {
    fn validate(&self) -> Issues {
        let h = self;
        let mut out = Vec::new();
        check_url(&mut out, vec![key("url")], &h.url);
        if h.method.is_empty() || !h.method.bytes().all(|b| b.is_ascii_uppercase()) {
            out.push((
                vec![key("method")],
                format!(
                    "`{}` is not an HTTP method (use upper case, e.g. GET)",
                    h.method
                ),
            ));
        }
        check_tls(&mut out, &h.tls);
        let e = &h.expect;
        if let Some(codes) = &e.status {
            for (i, c) in codes.iter().enumerate() {
                if !(100..=599).contains(c) {
                    out.push((
                        vec![key("expect"), key("status"), Seg::Index(i)],
                        format!("{c} is not an HTTP status"),
                    ));
                }
            }
        }
        if let Some(re) = &e.body_matches {
            check_regex(&mut out, vec![key("expect"), key("body_matches")], re);
        }
        for (name, re) in &e.headers {
            check_regex(&mut out, vec![key("expect"), key("headers"), key(name)], re);
        }
        for (i, j) in e.json.iter().enumerate() {
            let base = vec![key("expect"), key("json"), Seg::Index(i)];
            if let Err(err) = serde_json_path::JsonPath::parse(&j.path) {
                let mut p = base.clone();
                p.push(key("path"));
                out.push((p, format!("invalid JSONPath `{}`: {err}", j.path)));
            }
            if let Some(re) = &j.matches {
                let mut p = base.clone();
                p.push(key("matches"));
                check_regex(&mut out, p, re);
            }
        }
        out
    }
}

impl Validate for OidcDiscoverySpec {
    fn validate(&self) -> Issues {
        let o = self;
        let mut out = Vec::new();
        check_url(&mut out, vec![key("issuer")], &o.issuer);
        if let Some(u) = &o.discovery_url {
            check_url(&mut out, vec![key("discovery_url")], u);
        }
        if o.min_signing_keys == 0 {
            out.push((vec![key("min_signing_keys")], "must be at least 1".into()));
        }
        if let super::AllowedChanges::Fields(fields) = &o.allow_endpoint_changes {
            for (i, f) in fields.iter().enumerate() {
                if f != "issuer" && !f.ends_with("_endpoint") && !f.ends_with("_uri") {
                    out.push((
                        vec![key("allow_endpoint_changes"), Seg::Index(i)],
                        format!("`{f}` is not a metadata URL field (issuer, *_endpoint, *_uri)"),
                    ));
                }
            }
        }
        check_tls(&mut out, &o.tls);
        out
    }
}
