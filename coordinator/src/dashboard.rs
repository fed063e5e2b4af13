//! The web dashboard served at `/`: one static page (HTML, CSS and a small
//! hand-written JS that draws its own SVG charts), embedded in the binary so
//! it works without internet and without a build step, plus the few JSON
//! endpoints under `/api/v1/ui/` that the existing API does not answer:
//! an SLO's budget burn-down and SLI over its window, the recent runs of
//! every probe in every region, and every gate's current decision. The page reads
//! everything else from the public JSON API (`/api/v1/slos`, `/probes`,
//! `/agents`, `/alerts`, `/probes/{id}/latency`) with the operator's bearer
//! token when one is needed. The static files carry no data and are public;
//! the JSON needs the `read` scope like the rest of `/api/v1`.
use std::collections::BTreeMap;
use std::time::Duration;

use authpulse_proto::catalog::{Budgeting, Catalog, Sli, SloDef, Window};
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::api::{ApiState, failure_class_name, outcome_name};
use crate::clock::rfc3339_ms;
use crate::http_server::StorageError;
use crate::slo::{self, SloStatus};
use crate::store::{MINUTE_MS, MinuteRow, Store, StoreError, minute_of, now_ms};

const INDEX_HTML: &str = include_str!("dashboard/index.html");
const APP_JS: &str = include_str!("dashboard/app.js");
const APP_CSS: &str = include_str!("dashboard/app.css");
const FAVICON_SVG: &str = include_str!("dashboard/favicon.svg");

/// Scripts and styles only from this origin, fetches only to it, never in a
/// frame: API text (probe details, ids) can never run as code.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Every dashboard route: the public page and assets, and the JSON
/// endpoints (which need `read` like all of `/api/v1`).
pub fn routes() -> Router<ApiState> {
    Router::new().merge(page_routes()).merge(api_routes())
}

/// The page and its assets: static, no data, public.
pub fn page_routes() -> Router<ApiState> {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/ui/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/ui/app.css",
            get(|| async { asset("text/css; charset=utf-8", APP_CSS) }),
        )
        .route(
            "/ui/favicon.svg",
            get(|| async { asset("image/svg+xml", FAVICON_SVG) }),
        )
}

/// The JSON the page needs beyond the public API.
pub fn api_routes() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/ui/slos/{id}/history", get(slo_history))
        .route("/api/v1/ui/grid", get(grid))
        .route("/api/v1/ui/gates", get(gates))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Small files; revalidating every time means an upgrade shows at once.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    r
}

/// The coordinator's one JSON error answer.
fn error(status: StatusCode, message: &str) -> Response {
    crate::http_server::json_error(status, message)
}

/// About this many buckets per chart: enough to see an incident's shape,
/// few enough that one request evaluates the SLO only once per bucket edge.
const CHART_BUCKETS: i64 = 48;

/// Bucket lengths in minutes the charts snap to. From an hour up they are
/// whole hours, so the roll-ups answer every edge from memory.
const NICE_STEPS: [i64; 16] = [
    1, 2, 5, 10, 15, 30, 60, 120, 180, 240, 360, 480, 720, 1440, 2880, 10_080,
];

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// The chart bucket in minutes for a window of `span_minutes`: a nice
/// length, and a whole number of slices so no slice straddles two buckets.
pub fn step_minutes(span_minutes: i64, slice_minutes: i64) -> i64 {
    let raw = (span_minutes.max(1) + CHART_BUCKETS - 1) / CHART_BUCKETS;
    let nice = NICE_STEPS
        .iter()
        .copied()
        .find(|s| *s >= raw)
        .unwrap_or_else(|| (raw + 1439) / 1440 * 1440);
    let k = slice_minutes.max(1);
    nice / gcd(nice, k) * k
}

/// Bucket edges (minutes): the window's first minute, then every multiple
/// of `step` after it up to and including `now_minute`.
pub fn bucket_edges(start_minute: i64, now_minute: i64, step: i64) -> Vec<i64> {
    let mut edges = vec![start_minute];
    let mut m = (start_minute.div_euclid(step) + 1) * step;
    while m <= now_minute {
        edges.push(m);
        m += step;
    }
    edges
}

/// `GET /api/v1/ui/slos/{id}/history`: the burn-down of the current window
/// (budget remaining after each bucket, against the budget of the window as
/// it stands now, so the line ends at today's `error_budget_remaining`) and
/// the SLI per bucket, in the SLO's own units (runs, or slices).
async fn slo_history(
    State(st): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, StorageError> {
    let snapshot = st.catalog.borrow().clone();
    let Some(def) = snapshot.catalog.slos.iter().find(|s| s.id == id) else {
        return Ok(error(
            StatusCode::NOT_FOUND,
            &format!("no SLO `{id}` in the catalog"),
        ));
    };
    let now = now_ms();
    let (start_ms, window, _) = slo::window_at(&def.window, now);
    let step = step_minutes((window.as_secs() / 60) as i64, slice_minutes(def));
    let edges = bucket_edges(minute_of(start_ms), minute_of(now), step);
    let work = async {
        if judges_slices(def) {
            let status = slo::evaluate_one(&st.store, &snapshot.catalog, def, now).await?;
            // From the start of the slice the window starts in: that slice
            // counts whole, as in the SLO itself.
            let k = slice_minutes(def);
            let rows = st
                .store
                .minute_rows(&def.probes, minute_of(start_ms).div_euclid(k) * k)
                .await?;
            Ok((status, slice_buckets(def, &rows, &edges)))
        } else {
            evaluated_buckets(&st.store, &snapshot.catalog, def, &edges, now).await
        }
    };
    let (status, buckets) = st.storage.run("dashboard history", work).await?;
    Ok(Json(history_json(
        &status,
        &def.probes,
        &edges,
        &buckets,
        now,
        step,
    ))
    .into_response())
}

fn slice_minutes(def: &SloDef) -> i64 {
    match def.budgeting {
        Budgeting::Timeslices { slice, .. } => (slice.as_secs() / 60).max(1) as i64,
        Budgeting::Occurrences => 1,
    }
}

/// SLOs whose counts come from judging each slice (timeslices, or a region
/// quorum) rather than from adding runs up; as in [`slo`].
fn judges_slices(def: &SloDef) -> bool {
    matches!(def.budgeting, Budgeting::Timeslices { .. }) || def.quorum.is_some_and(|q| q > 1)
}

/// (good, total) per bucket by [`slo::evaluate`] itself: the SLO plus one
/// copy per later bucket edge `t` with a rolling window from `t` to now, all
/// in one evaluation (from the in-memory roll-ups); a bucket is the
/// difference of two neighbours. Exact for every SLO, but each copy passes
/// over all minute rows when the SLO judges slices, so those go through
/// [`slice_buckets`] instead. Returns the SLO's own status too.
async fn evaluated_buckets(
    store: &Store,
    catalog: &Catalog,
    def: &SloDef,
    edges: &[i64],
    now: i64,
) -> Result<(SloStatus, Vec<(u64, u64)>), StoreError> {
    let mut copies: Catalog = catalog.clone();
    copies.gates.clear();
    copies.slos = std::iter::once(def.clone())
        .chain(edges.iter().skip(1).map(|m| {
            let mut c = def.clone();
            let reach = u64::try_from(now - m * MINUTE_MS).unwrap_or(0);
            c.window = Window::Rolling(Duration::from_millis(reach));
            c
        }))
        .collect();
    let mut statuses = slo::evaluate(store, &copies, now).await?;
    // Counts from each edge to now; nothing after now.
    let from: Vec<(u64, u64)> = statuses
        .iter()
        .map(|s| (s.good, s.total))
        .chain(std::iter::once((0, 0)))
        .collect();
    let buckets = from
        .windows(2)
        .map(|w| (w[0].0.saturating_sub(w[1].0), w[0].1.saturating_sub(w[1].1)))
        .collect();
    if statuses.is_empty() {
        // evaluate answers one status per SLO; an empty answer is a bug.
        return Err(StoreError::Invalid(
            "SLO evaluation returned no status".into(),
        ));
    }
    Ok((statuses.swap_remove(0), buckets))
}

/// (good, total) per bucket for SLOs that judge slices, in one pass over
/// the window's minute rows: the same rules as `/api/v1/slos` (see the
/// README's `budgeting` and `quorum`), so the buckets add up to its counts
/// (checked against [`slo::evaluate`] in the tests below). A slice belongs
/// to the bucket its first minute falls in (the window's first, partial
/// slice to the first bucket); buckets are whole slices long.
fn slice_buckets(def: &SloDef, rows: &[MinuteRow], edges: &[i64]) -> Vec<(u64, u64)> {
    let th = match &def.sli {
        Sli::Latency { threshold } => u64::try_from(threshold.as_micros()).unwrap_or(u64::MAX),
        Sli::Availability => 0,
    };
    let k = slice_minutes(def);
    let target = match def.budgeting {
        Budgeting::Timeslices { target, .. } => Some(target),
        Budgeting::Occurrences => None,
    };
    let quorum = def.quorum.filter(|q| *q > 1).map(|q| q as usize);
    let first_slice = edges.first().map_or(i64::MIN, |m| m.div_euclid(k));
    // slice -> region -> (good, total)
    let mut slices: BTreeMap<i64, BTreeMap<&str, (u64, u64)>> = BTreeMap::new();
    for r in rows {
        let slice = r.minute.div_euclid(k);
        if r.threshold_us != th || slice < first_slice || !def.probes.contains(&r.probe_id) {
            continue;
        }
        let e = slices
            .entry(slice)
            .or_default()
            .entry(r.region.as_str())
            .or_default();
        e.0 += r.good;
        e.1 += r.total;
    }
    let bad_slice = |g: u64, t: u64| match target {
        Some(target) => t > 0 && (g as f64) < target * t as f64,
        None => g < t,
    };
    let units = |g: u64, t: u64| match target {
        Some(_) => (u64::from(!bad_slice(g, t)), 1),
        None => (g, t),
    };
    let mut out = vec![(0u64, 0u64); edges.len()];
    for (slice, per_region) in &slices {
        let (pg, pt) = per_region
            .values()
            .fold((0, 0), |a, (g, t)| (a.0 + g, a.1 + t));
        if pt == 0 {
            continue;
        }
        let (g, t) = match quorum {
            None => units(pg, pt),
            Some(n) => {
                let bad_regions = per_region
                    .values()
                    .filter(|(g, t)| bad_slice(*g, *t))
                    .count();
                match target {
                    Some(_) => (u64::from(bad_regions < n), 1),
                    None if bad_regions >= n => (pg, pt),
                    None => (pt, pt),
                }
            }
        };
        let i = edges.partition_point(|e| *e <= slice * k).saturating_sub(1);
        if let Some(b) = out.get_mut(i) {
            b.0 += g;
            b.1 += t;
        }
    }
    out
}

/// The history document from the SLO's status and its (good, total) per
/// bucket (`buckets[i]` from `edges[i]` to the next edge, the last to now).
fn history_json(
    status: &SloStatus,
    probes: &[String],
    edges: &[i64],
    buckets: &[(u64, u64)],
    now: i64,
    step_minutes: i64,
) -> Value {
    let allowed = status.error_budget_events;
    let mut spent = 0u64;
    let mut budget = vec![json!({ "t_ms": status.window_start_ms, "remaining": 1.0 })];
    let mut sli = Vec::new();
    for (i, (start, (good, total))) in edges.iter().zip(buckets).enumerate() {
        let start_ms = if i == 0 {
            status.window_start_ms
        } else {
            start * MINUTE_MS
        };
        let end_ms = edges.get(i + 1).map_or(now, |m| m * MINUTE_MS);
        sli.push(json!({
            "start_ms": start_ms,
            "end_ms": end_ms,
            "good": good,
            "total": total,
            "sli": slo::sli_value(*good, *total),
        }));
        spent += total.saturating_sub(*good);
        let remaining = if allowed > 0.0 {
            1.0 - spent as f64 / allowed
        } else {
            1.0
        };
        budget.push(json!({ "t_ms": end_ms, "remaining": remaining }));
    }
    json!({
        "id": status.id,
        "description": status.description,
        "objective": status.objective,
        "window": status.window_label,
        "window_start_ms": status.window_start_ms,
        "window_end_ms": status.window_start_ms + status.window.as_millis() as i64,
        "now_ms": now,
        "step_seconds": step_minutes * 60,
        "unit": if status.slice.is_some() { "slices" } else { "events" },
        "state": status.state.as_str(),
        "sli_value": status.sli_value,
        "error_budget_remaining": status.error_budget_remaining,
        "error_budget_total": allowed,
        "probes": probes,
        "budget": budget,
        "sli_buckets": sli,
    })
}

/// How far back the grid of recent runs looks, and how many runs per cell.
const GRID_LOOKBACK: Duration = Duration::from_secs(6 * 3600);
const GRID_RUNS: u32 = 30;

/// `GET /api/v1/ui/grid`: the catalog's probes and regions and the recent
/// runs of every (probe, region), oldest first.
async fn grid(State(st): State<ApiState>) -> Result<Json<Value>, StorageError> {
    let snapshot = st.catalog.borrow().clone();
    let now = now_ms();
    let (recent, agents) = st
        .storage
        .run("dashboard grid", async {
            let recent = st
                .store
                .recent_results(now - GRID_LOOKBACK.as_millis() as i64, GRID_RUNS)
                .await?;
            Ok((recent, st.store.agents().await?))
        })
        .await?;
    let mut regions: Vec<String> = snapshot
        .catalog
        .probes
        .iter()
        .flat_map(|p| p.regions.iter().flatten().cloned())
        .chain(recent.iter().map(|r| r.region.clone()))
        .chain(agents.iter().map(|a| a.info.region.clone()))
        .collect();
    regions.sort();
    regions.dedup();
    let mut series: Vec<Value> = Vec::new();
    let mut current: Option<(String, String)> = None;
    for r in &recent {
        let key = (r.probe_id.clone(), r.region.clone());
        if current.as_ref() != Some(&key) {
            series.push(json!({ "probe_id": r.probe_id, "region": r.region, "runs": [] }));
            current = Some(key);
        }
        if let Some(runs) = series.last_mut().and_then(|s| s["runs"].as_array_mut()) {
            runs.push(json!({
                "started_ms": r.started_ms,
                "started_at": rfc3339_ms(r.started_ms),
                "outcome": outcome_name(r.outcome),
                "failure_class": failure_class_name(r.failure_class),
                "duration_ms": r.timings.total_us as f64 / 1000.0,
                "detail": r.detail,
            }));
        }
    }
    Ok(Json(json!({
        "generated_at": rfc3339_ms(now),
        "lookback_seconds": GRID_LOOKBACK.as_secs(),
        "regions": regions,
        "probes": snapshot.catalog.probes.iter().map(|p| json!({
            "id": p.id,
            "kind": p.kind(),
            "description": p.description,
            "regions": p.regions,
            "interval_seconds": p.interval.as_secs(),
        })).collect::<Vec<_>>(),
        "series": series,
    })))
}

/// `GET /api/v1/ui/gates`: every gate's current decision, as
/// `GET /api/v1/gates/{id}` would answer it, for people looking (`read`
/// scope, not `gate`; not audited: nothing acts on it).
async fn gates(State(st): State<ApiState>) -> Json<Value> {
    let snapshot = st.catalog.borrow().clone();
    let now = now_ms();
    let mut out = Vec::new();
    for gate in &snapshot.catalog.gates {
        let evaluated = st
            .storage
            .run(
                "dashboard gates",
                crate::gates::evaluate(&st.store, &snapshot.catalog, gate, now),
            )
            .await;
        out.push(match evaluated {
            Ok(d) => d.to_json(),
            // Logged by the guard.
            Err(e) => json!({
                "gate": gate.id,
                "description": gate.description,
                "decision": "unknown",
                "error": e.to_string(),
                "slos": gate.slos.iter().map(|s| json!({ "id": s })).collect::<Vec<_>>(),
            }),
        });
    }
    Json(json!({ "generated_at": rfc3339_ms(now), "gates": out }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_snap_to_nice_lengths_and_whole_slices() {
        // 28 days in 48 buckets: 840 min raw, whole days.
        assert_eq!(step_minutes(28 * 1440, 1), 1440);
        // 7 days: 210 min raw, 4 h.
        assert_eq!(step_minutes(7 * 1440, 1), 240);
        // An hour: 2 min raw → 2 min.
        assert_eq!(step_minutes(60, 1), 2);
        // Five-minute slices: a 2-minute bucket grows to 10 minutes.
        assert_eq!(step_minutes(60, 5), 10);
        // A 7-minute slice over 28 days: 12 h rounded to whole slices.
        assert_eq!(step_minutes(28 * 1440, 7) % 7, 0);
        assert_eq!(step_minutes(28 * 1440, 7) % 60, 0);
        // A year: whole days.
        assert_eq!(step_minutes(365 * 1440, 1) % 1440, 0);
    }

    /// A day of runs every minute from three regions, with failures and
    /// slow runs that make some slices bad in one, two or all regions.
    async fn populated() -> (tempfile::TempDir, Store, Catalog, i64) {
        use authpulse_proto::v1::{FailureClass, Outcome, ProbeResult, Timings};
        let catalog = authpulse_proto::catalog::load_str(
            "t.yaml",
            r#"
probes:
  - { id: p1, kind: http, url: "http://127.0.0.1:9/", interval: 1m }
  - { id: p2, kind: http, url: "http://127.0.0.1:9/", interval: 1m }
slos:
  - { id: occ, probes: [p1, p2], objective: 99, window: 1d }
  - id: occ-quorum
    probes: [p1, p2]
    objective: 99
    window: 1d
    quorum: 2
  - id: slices
    probes: [p1]
    objective: 99
    window: 1d
    budgeting: { timeslices: { slice: 5m, target: 0.8 } }
  - id: slices-quorum-latency
    probes: [p1, p2]
    objective: 98
    window: 6h
    sli: { latency: { threshold: 300ms } }
    budgeting: { timeslices: { slice: 3m, target: 0.9 } }
    quorum: 2
"#,
        )
        .expect("catalog");
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).await.expect("open");
        slo::sync_store(&store, &catalog).await.expect("sync");
        let now = now_ms();
        for (n, region) in ["eu", "us", "ap"].iter().enumerate() {
            let agent = format!("a-{region}");
            let mut results = Vec::new();
            let mut seq = 0;
            for m in 0..(26 * 60) {
                for probe in ["p1", "p2"] {
                    seq += 1;
                    // Failures at region-dependent rhythms: some minutes
                    // fail in one region, some in two, some in all three.
                    let fail = (m % (7 + n as i64)) == 0 || (m / 60) % 5 == 2 && m % 2 == 0;
                    let slow = (m + n as i64 * 3) % 11 == 0;
                    let total_us = if slow { 450_000 } else { 120_000 };
                    results.push(ProbeResult {
                        agent_id: agent.clone(),
                        seq,
                        probe_id: probe.into(),
                        region: (*region).into(),
                        started_unix_ms: now - m * MINUTE_MS - 5_000,
                        duration_us: total_us,
                        outcome: if fail {
                            Outcome::Failure
                        } else {
                            Outcome::Success
                        } as i32,
                        failure_class: if fail {
                            FailureClass::HttpStatus
                        } else {
                            FailureClass::Unspecified
                        } as i32,
                        timings: Some(Timings {
                            total_us,
                            ..Default::default()
                        }),
                        assignment_version: 1,
                        ..Default::default()
                    });
                }
            }
            store.insert_batch(&agent, &results).await.expect("insert");
        }
        (dir, store, catalog, now)
    }

    /// The one-pass slice judging gives, bucket by bucket, what the SLO
    /// engine itself gives for windows ending now; both add up to the
    /// SLO's own counts.
    #[tokio::test]
    async fn slice_buckets_match_the_slo_engine() {
        let (_dir, store, catalog, now) = populated().await;
        for def in &catalog.slos {
            let (start_ms, window, _) = slo::window_at(&def.window, now);
            let k = slice_minutes(def);
            let step = step_minutes((window.as_secs() / 60) as i64, k);
            let edges = bucket_edges(minute_of(start_ms), minute_of(now), step);
            let (status, exact) = evaluated_buckets(&store, &catalog, def, &edges, now)
                .await
                .expect("evaluate");
            let sum = exact.iter().fold((0, 0), |a, (g, t)| (a.0 + g, a.1 + t));
            assert_eq!(sum, (status.good, status.total), "{}", def.id);
            assert!(status.total > status.good, "{}: has bad units", def.id);
            if judges_slices(def) {
                let rows = store
                    .minute_rows(&def.probes, minute_of(start_ms).div_euclid(k) * k)
                    .await
                    .expect("rows");
                assert_eq!(slice_buckets(def, &rows, &edges), exact, "{}", def.id);
            }
            let doc = history_json(&status, &def.probes, &edges, &exact, now, step);
            let last = doc["budget"]
                .as_array()
                .and_then(|b| b.last())
                .and_then(|p| p["remaining"].as_f64())
                .expect("budget points");
            assert!(
                (last - status.error_budget_remaining).abs() < 1e-9,
                "{}: burn-down ends at the SLO's remaining budget ({last} vs {})",
                def.id,
                status.error_budget_remaining
            );
            assert_eq!(
                doc["sli_buckets"].as_array().map(Vec::len),
                Some(edges.len())
            );
        }
    }

    #[test]
    fn edges_start_at_the_window_and_align_to_the_step() {
        assert_eq!(bucket_edges(101, 130, 10), vec![101, 110, 120, 130]);
        assert_eq!(bucket_edges(100, 129, 10), vec![100, 110, 120]);
        assert_eq!(bucket_edges(100, 100, 10), vec![100]);
    }
}
