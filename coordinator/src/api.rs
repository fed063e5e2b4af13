//! The coordinator's HTTP surface for people and tools: SLO standings, the
//! latest result of every probe in every region, the agents, Prometheus
//! `/metrics`, and health/readiness probes. Everything is computed from the
//! store per request, so what it shows is what is committed. JSON field
//! names here are an API contract (dashboards, the `authpulse` CLI, tests).
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use authpulse_proto::catalog::Sli;
use authpulse_proto::v1::{FailureClass, Outcome};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::CatalogSnapshot;
use crate::alerting::AlertStore;
use crate::clock::rfc3339_ms;
use crate::http_server::StorageError;
use crate::slo::SloStatus;
use crate::store::{AgentRow, Store, StoredResult, StoredStep, StoredTimings, now_ms};

/// Histogram buckets in seconds, from a fast cached response (1 ms) to a
/// slow browserless login journey (60 s).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

static METRICS: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide Prometheus recorder, installed on first call. A process
/// has one global `metrics` recorder; the standalone mode runs agent and
/// coordinator in one process, so both must go through this helper.
pub fn metrics_handle() -> PrometheusHandle {
    METRICS
        .get_or_init(|| {
            let builder = match PrometheusBuilder::new().set_buckets(LATENCY_BUCKETS) {
                Ok(b) => b,
                // Only fails for an empty list, which the constant is not.
                Err(_) => PrometheusBuilder::new(),
            };
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if let Err(e) = metrics::set_global_recorder(recorder) {
                tracing::warn!(error = %e, "another metrics recorder is already installed; /metrics will be empty");
            }
            // Histograms buffer samples until upkeep drains them; without a
            // scrape for a long time they would grow without bound.
            let upkeep = handle.clone();
            let spawned = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(Duration::from_secs(5));
                        upkeep.run_upkeep();
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "cannot start metrics upkeep thread");
            }
            handle
        })
        .clone()
}

/// What the handlers need. Clone is cheap.
#[derive(Clone)]
pub struct ApiState {
    pub store: Store,
    pub catalog: watch::Receiver<Arc<CatalogSnapshot>>,
    pub metrics: PrometheusHandle,
    pub fleet: crate::fleet::FleetConfig,
    pub audit: crate::audit::AuditLog,
    /// Who may call what (see [`crate::api_access`]).
    pub access: Arc<crate::api_access::ApiAccess>,
    /// For `POST /api/v1/admin/reload`; `None` where there is no catalog file.
    pub reloader: Option<Arc<crate::catalog_watch::CatalogReloader>>,
    /// Whether this replica leads (see [`crate::leadership`]): only the
    /// leader writes status-page state when serving the page.
    pub leader: watch::Receiver<bool>,
    /// Gate decisions shared by concurrent requests (see [`crate::gates::DecisionCache`]).
    pub gate_decisions: Arc<crate::gates::DecisionCache>,
    /// SLO statuses shared by the read endpoints (see [`crate::slo_cache`]).
    pub slo_cache: Arc<crate::slo_cache::SloCache>,
    /// The status feed built from the latest shared evaluation (see
    /// [`crate::statuspage::FeedCache`]).
    pub feed_cache: Arc<crate::statuspage::FeedCache>,
    /// The deadline on each request's store work (see [`crate::http_server::StorageGuard`]).
    pub storage: Arc<crate::http_server::StorageGuard>,
    /// The status feed's name and public URL.
    pub status_page: Arc<crate::statuspage::StatusPageConfig>,
}

/// Request bodies larger than this are refused (413) on every route: the
/// biggest legitimate one is a Flagger payload of a few hundred bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Longest silence/acknowledgement `reason` (characters).
pub const MAX_REASON_CHARS: usize = 1000;

pub fn router(state: ApiState) -> Router {
    let access = state.access.clone();
    Router::new()
        .route("/api/v1/admin/reload", post(admin_reload))
        .route(
            "/api/v1/admin/log-level",
            get(admin_log_level).put(admin_set_log_level),
        )
        .route(
            "/api/v1/alerts/{slo}/{severity}/silence",
            post(admin_silence),
        )
        .route("/api/v1/alerts/{slo}/{severity}/ack", post(admin_ack))
        .merge(crate::gates::routes())
        .merge(crate::statuspage::routes())
        .merge(crate::dashboard::routes())
        .route("/api/v1/slos", get(slos))
        .route("/api/v1/probes", get(probes))
        .route("/api/v1/probes/{id}/latency", get(latency))
        .route("/api/v1/agents", get(agents))
        .route("/api/v1/alerts", get(alerts))
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not found") })
        .method_not_allowed_fallback(|| async {
            error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        })
        .with_state(state)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(|req, next| {
            crate::http_server::refuse_oversized(MAX_BODY_BYTES, req, next)
        }))
        // Outermost: every route, the fallbacks included, passes the policy.
        .layer(axum::middleware::from_fn_with_state(
            access,
            crate::api_access::enforce,
        ))
}

fn caller(c: &Option<axum::Extension<crate::api_access::Caller>>) -> String {
    c.as_ref()
        .and_then(|axum::Extension(c)| c.0.clone())
        .unwrap_or_else(|| "anonymous (open API)".into())
}

/// Re-reads the catalog files, like SIGHUP; an invalid catalog is refused
/// with its errors (422) and the running one stays.
async fn admin_reload(
    State(st): State<ApiState>,
    who: Option<axum::Extension<crate::api_access::Caller>>,
) -> Response {
    let who = caller(&who);
    let Some(reloader) = &st.reloader else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no catalog files to reload",
        );
    };
    let before = st.catalog.borrow().version;
    match reloader.reload().await {
        Ok(()) => {
            let after = st.catalog.borrow().version;
            st.audit.append(
                "admin",
                json!({ "action": "reload", "by": who, "result": "ok", "version": after }),
            );
            Json(json!({ "result": "reloaded", "version": after, "changed": after != before }))
                .into_response()
        }
        Err(errs) => {
            st.audit.append(
                "admin",
                json!({ "action": "reload", "by": who, "result": "refused", "problems": errs.0.len() }),
            );
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({
                    "error": "the catalog is invalid; the running catalog stays",
                    "problems": errs.0.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
                })),
            )
                .into_response()
        }
    }
}

/// A shared log-level error as this API's JSON error.
fn log_level_error(e: &authpulse_process::log_level::LogLevelError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    error(status, &e.to_string())
}

/// `GET /api/v1/admin/log-level`: the filter in force and the caps that
/// apply on top of any filter.
async fn admin_log_level() -> Response {
    match authpulse_process::log_level::current() {
        Ok(v) => Json(v).into_response(),
        Err(e) => log_level_error(&e),
    }
}

/// `PUT /api/v1/admin/log-level` `{"filter": "debug,hyper=info"}`: swaps the
/// filter at once (400 with the parse error for a bad one; the running
/// filter stays). Audited either way: who turned on debug logging matters
/// when the disk fills up.
async fn admin_set_log_level(
    State(st): State<ApiState>,
    who: Option<axum::Extension<crate::api_access::Caller>>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    use authpulse_process::log_level::LogLevelError;
    let who = caller(&who);
    let body = match body {
        Ok(b) => b,
        Err(e) => return body_refused(&e),
    };
    // A body that is not a request is refused unaudited, as any bad body.
    let asked = match authpulse_process::log_level::parse_body(&body) {
        Ok(filter) => filter,
        Err(e) => return log_level_error(&e),
    };
    match authpulse_process::log_level::set(&asked) {
        Ok(change) => {
            st.audit.append(
                "log_level",
                json!({ "by": who, "result": "ok", "filter": change.filter, "previous": change.previous }),
            );
            tracing::warn!(filter = %change.filter, previous = %change.previous, by = %who, "log filter changed at run time");
            Json(change.to_json()).into_response()
        }
        Err(e @ LogLevelError::NoControl) => log_level_error(&e),
        Err(e) => {
            // Cut: a refused filter must not bloat the audit log.
            let asked: String = asked.chars().take(256).collect();
            st.audit.append(
                "log_level",
                json!({ "by": who, "result": "refused", "filter": asked, "error": e.to_string() }),
            );
            log_level_error(&e)
        }
    }
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SilenceBody {
    /// e.g. `2h` (silence only).
    duration: Option<String>,
    #[serde(default)]
    reason: String,
}

/// The body of a silence or acknowledgement: empty, or a JSON object with
/// a `reason` of at most [`MAX_REASON_CHARS`]. Parsed here (not by the
/// `Json` extractor) so every refusal is a JSON error.
fn silence_body(
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<SilenceBody, Box<Response>> {
    let body = body.map_err(|e| Box::new(body_refused(&e)))?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(SilenceBody::default());
    }
    let b: SilenceBody = serde_json::from_slice(&body).map_err(|e| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            &format!("the body must be a JSON object {{\"duration\", \"reason\"}}: {e}"),
        ))
    })?;
    if b.reason.chars().count() > MAX_REASON_CHARS {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            &format!("reason longer than {MAX_REASON_CHARS} characters"),
        )));
    }
    Ok(b)
}

/// A body over [`MAX_BODY_BYTES`] (or one that could not be read), as JSON.
pub(crate) fn body_refused(e: &axum::extract::rejection::BytesRejection) -> Response {
    let status = e.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return error(
            status,
            &format!("request body larger than {} KiB", MAX_BODY_BYTES / 1024),
        );
    }
    error(status, "the request body could not be read")
}

/// Checks `{slo}/{severity}` against the catalog.
fn alert_target(st: &ApiState, slo: &str, severity: &str) -> Result<(), Box<Response>> {
    if !matches!(severity, "page" | "ticket") {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            &format!("severity `{severity}` must be `page` or `ticket`"),
        )));
    }
    if !st.catalog.borrow().catalog.slos.iter().any(|s| s.id == slo) {
        return Err(Box::new(error(
            StatusCode::NOT_FOUND,
            &format!("no SLO `{slo}` in the catalog"),
        )));
    }
    Ok(())
}

/// Holds back fire and re-send notifications of one alert for `duration`
/// (1m to 7d). Escalation pages are never silenced.
async fn admin_silence(
    State(st): State<ApiState>,
    Path((slo, severity)): Path<(String, String)>,
    who: Option<axum::Extension<crate::api_access::Caller>>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, StorageError> {
    let body = match silence_body(body) {
        Ok(b) => b,
        Err(r) => return Ok(*r),
    };
    if let Err(r) = alert_target(&st, &slo, &severity) {
        return Ok(*r);
    }
    let Some(raw) = body.duration else {
        return Ok(error(
            StatusCode::BAD_REQUEST,
            "give `duration`, e.g. {\"duration\": \"2h\"}",
        ));
    };
    let d = match humantime::parse_duration(&raw) {
        Ok(d) if d >= Duration::from_secs(60) && d <= Duration::from_secs(7 * 86_400) => d,
        _ => {
            return Ok(error(
                StatusCode::BAD_REQUEST,
                &format!("duration `{raw}` must be between 1m and 7d"),
            ));
        }
    };
    let now = now_ms();
    let until = now + d.as_millis() as i64;
    let who = caller(&who);
    let silence = crate::store::Silence {
        slo: slo.clone(),
        severity: severity.clone(),
        until_ms: Some(until),
        created_by: who.clone(),
        reason: body.reason.clone(),
        created_ms: now,
    };
    st.storage
        .run("silence", st.store.put_silence(&silence))
        .await?;
    st.audit.append(
        "admin",
        json!({ "action": "silence", "by": who, "slo": slo, "severity": severity,
                "until": rfc3339_ms(until), "reason": body.reason }),
    );
    Ok(Json(json!({ "result": "silenced", "slo": slo, "severity": severity, "until": rfc3339_ms(until) }))
        .into_response())
}

/// Acknowledges one alert: re-sends stop until it resolves.
async fn admin_ack(
    State(st): State<ApiState>,
    Path((slo, severity)): Path<(String, String)>,
    who: Option<axum::Extension<crate::api_access::Caller>>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, StorageError> {
    let body = match silence_body(body) {
        Ok(b) => b,
        Err(r) => return Ok(*r),
    };
    if let Err(r) = alert_target(&st, &slo, &severity) {
        return Ok(*r);
    }
    let who = caller(&who);
    let ack = crate::store::Silence {
        slo: slo.clone(),
        severity: severity.clone(),
        until_ms: None,
        created_by: who.clone(),
        reason: body.reason.clone(),
        created_ms: now_ms(),
    };
    st.storage.run("ack", st.store.put_silence(&ack)).await?;
    st.audit.append(
        "admin",
        json!({ "action": "ack", "by": who, "slo": slo, "severity": severity, "reason": body.reason }),
    );
    Ok(Json(json!({ "result": "acknowledged", "slo": slo, "severity": severity })).into_response())
}

/// The coordinator's one JSON error answer.
fn error(status: StatusCode, message: &str) -> Response {
    crate::http_server::json_error(status, message)
}

/// Lower-case snake name of a failure class (`dns`, `http_status`, …);
/// `None` for unspecified (success) and values this build doesn't know.
pub fn failure_class_name(v: i32) -> Option<&'static str> {
    match FailureClass::try_from(v).ok()? {
        FailureClass::Unspecified => None,
        c => Some(authpulse_proto::failure_class_name(c)),
    }
}

/// `success`, `failure`, or `unspecified` (an agent that didn't say).
pub fn outcome_name(v: i32) -> &'static str {
    match Outcome::try_from(v) {
        Ok(Outcome::Success) => "success",
        Ok(Outcome::Failure) => "failure",
        _ => "unspecified",
    }
}

fn us_to_ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn timings_json(t: &StoredTimings) -> Value {
    json!({
        "dns_ms": t.dns_us.map(us_to_ms),
        "connect_ms": t.connect_us.map(us_to_ms),
        "tls_ms": t.tls_us.map(us_to_ms),
        "ttfb_ms": t.ttfb_us.map(us_to_ms),
        "total_ms": us_to_ms(t.total_us),
    })
}

fn step_json(s: &StoredStep) -> Value {
    json!({
        "name": s.name,
        "kind": s.kind,
        "outcome": outcome_name(s.outcome),
        "failure_class": failure_class_name(s.failure_class),
        "timings": timings_json(&s.timings),
        "detail": s.detail,
    })
}

/// One entry of `/api/v1/probes`; `kind` comes from the running catalog
/// (`null` for a probe no longer in it).
pub fn result_json(r: &StoredResult, kind: Option<&str>) -> Value {
    json!({
        "probe_id": r.probe_id,
        "kind": kind,
        "region": r.region,
        "agent_id": r.agent_id,
        "seq": r.seq,
        "started_at": rfc3339_ms(r.started_ms),
        "outcome": outcome_name(r.outcome),
        "failure_class": failure_class_name(r.failure_class),
        "timings": timings_json(&r.timings),
        "steps": r.steps.iter().map(step_json).collect::<Vec<_>>(),
        "detail": r.detail,
    })
}

/// One entry of `/api/v1/slos`.
pub fn slo_json(s: &SloStatus) -> Value {
    let sli = match &s.sli {
        Sli::Availability => json!("availability"),
        Sli::Latency { threshold } => {
            json!({ "latency": { "threshold_ms": threshold.as_secs_f64() * 1000.0 } })
        }
    };
    json!({
        "id": s.id,
        "description": s.description,
        "objective": s.objective,
        "window": s.window_label,
        "window_seconds": s.window.as_secs(),
        "window_start": rfc3339_ms(s.window_start_ms),
        "sli": sli,
        "budgeting": match s.slice {
            Some(slice) => json!({ "timeslices": { "slice_seconds": slice.as_secs() } }),
            None => json!("occurrences"),
        },
        "state": s.state.as_str(),
        "coverage": s.coverage,
        "good": s.good,
        "total": s.total,
        "bad": s.bad,
        "sli_value": s.sli_value,
        "error_budget_remaining": s.error_budget_remaining,
        "error_budget": budget_json(s),
        "regions": s.regions.iter().map(|r| json!({
            "region": r.region,
            "good": r.good,
            "total": r.total,
            "sli_value": r.sli_value,
            "error_budget_remaining": r.error_budget_remaining,
            "burn_rate_1h": r.burn_rate_1h,
        })).collect::<Vec<_>>(),
        "burn_rate_1h": s.burn_rate_1h,
        "burn_rates": s.burn_rates.iter().map(|(w, r)| (w.to_string(), json!(r))).collect::<serde_json::Map<String, Value>>(),
        "time_to_exhaustion_seconds": s.time_to_exhaustion.map(|d| d.as_secs()),
    })
}

/// The budget in its units: events for occurrences; slices and minutes for
/// timeslices.
fn budget_json(s: &SloStatus) -> Value {
    let remaining = s.error_budget_events - s.bad as f64;
    match s.slice {
        None => json!({
            "unit": "events",
            "total_events": s.error_budget_events,
            "consumed_events": s.bad,
            "remaining_events": remaining,
        }),
        Some(slice) => {
            let minutes = slice.as_secs_f64() / 60.0;
            json!({
                "unit": "slices",
                "total_slices": s.error_budget_events,
                "consumed_slices": s.bad,
                "remaining_slices": remaining,
                "total_minutes": s.error_budget_events * minutes,
                "consumed_minutes": s.bad as f64 * minutes,
                "remaining_minutes": remaining * minutes,
            })
        }
    }
}

/// Longest window `/api/v1/probes/{id}/latency` merges (sketches are kept
/// as long as minute aggregates, but a request should stay cheap).
const MAX_LATENCY_WINDOW: Duration = Duration::from_secs(7 * 86_400);

#[derive(serde::Deserialize)]
struct LatencyQuery {
    window: Option<String>,
}

fn percentiles(s: &crate::latency_sketch::LatencySketch) -> Value {
    let ms = |q: f64| s.quantile(q).map(|us| (us / 10.0).round() / 100.0);
    json!({
        "count": s.count(),
        "p50_ms": ms(0.5),
        "p90_ms": ms(0.9),
        "p95_ms": ms(0.95),
        "p99_ms": ms(0.99),
        "max_ms": s.max_us() as f64 / 1000.0,
    })
}

/// Latency percentiles of one probe over `window` (default 1h, at most 7d),
/// from the per-minute sketches: overall and per region, within 1 %.
async fn latency(
    State(st): State<ApiState>,
    Path(id): Path<String>,
    Query(q): Query<LatencyQuery>,
) -> Result<Response, StorageError> {
    let raw = q.window.unwrap_or_else(|| "1h".into());
    let window = match humantime::parse_duration(&raw) {
        Ok(w) if w >= Duration::from_secs(60) && w <= MAX_LATENCY_WINDOW => w,
        Ok(_) => {
            return Ok(error(
                StatusCode::BAD_REQUEST,
                &format!("window `{raw}` must be between 1m and 7d"),
            ));
        }
        Err(e) => {
            return Ok(error(
                StatusCode::BAD_REQUEST,
                &format!("window `{raw}` is not a duration (e.g. 15m, 1h, 1d): {e}"),
            ));
        }
    };
    if st.catalog.borrow().catalog.probe(&id).is_none() {
        return Ok(error(
            StatusCode::NOT_FOUND,
            &format!("no probe `{id}` in the catalog"),
        ));
    }
    let since = crate::store::minute_of(now_ms() - window.as_millis() as i64);
    let regions = st
        .storage
        .run("latency", st.store.latency_sketches(&id, since))
        .await?;
    let mut all = crate::latency_sketch::LatencySketch::default();
    for s in regions.values() {
        all.merge(s);
    }
    Ok(Json(json!({
        "probe_id": id,
        "window": crate::slo::short(window),
        "all": percentiles(&all),
        "regions": regions.iter().map(|(r, s)| {
            let mut v = percentiles(s);
            v["region"] = json!(r);
            v
        }).collect::<Vec<_>>(),
    }))
    .into_response())
}

fn agent_json(a: &AgentRow, fleet: &crate::fleet::FleetConfig, now: i64) -> Value {
    json!({
        "status": fleet.state(a, now).as_str(),
        "assignment_version": a.assignment_version,
        "clock_skew_ms": a.health.clock_skew_ms,
        "clock_skew_ok": fleet.skew_ok(a),
        "spool_depth": a.health.spool_depth,
        "spool_bytes": a.health.spool_bytes,
        "dropped_total": a.health.dropped_total,
        "stored_total": a.stored_total,
        "agent_id": a.info.agent_id,
        "region": a.info.region,
        "version": a.info.version,
        "labels": a.info.labels,
        "acked_seq": a.acked_seq,
        "first_seen": rfc3339_ms(a.first_seen_ms),
        "last_seen": rfc3339_ms(a.last_seen_ms),
        "connected": a.connected,
    })
}

/// `GET /api/v1/slos`: every SLO as of the shared evaluation (at most a
/// second old, never older than the last stored result), rendered once per
/// evaluation.
async fn slos(State(st): State<ApiState>) -> Result<Response, StorageError> {
    let snapshot = st.catalog.borrow().clone();
    let evaluation = st
        .storage
        .run(
            "slos",
            st.slo_cache
                .statuses(&st.store, &snapshot.catalog, snapshot.version),
        )
        .await?;
    let body = evaluation.slos_body.get_or_init(|| {
        let v = json!({
            "generated_at": rfc3339_ms(evaluation.evaluated_ms),
            "slos": evaluation.statuses.iter().map(slo_json).collect::<Vec<_>>(),
        });
        axum::body::Bytes::from(serde_json::to_vec(&v).unwrap_or_default())
    });
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        )],
        body.clone(),
    )
        .into_response())
}

async fn probes(State(st): State<ApiState>) -> Result<Json<Value>, StorageError> {
    let snapshot = st.catalog.borrow().clone();
    let latest = st
        .storage
        .run("probes", st.store.latest_per_probe_region())
        .await?;
    let probes: Vec<Value> = latest
        .iter()
        .map(|r| result_json(r, snapshot.catalog.probe(&r.probe_id).map(|p| p.kind())))
        .collect();
    Ok(Json(json!({ "probes": probes })))
}

async fn agents(State(st): State<ApiState>) -> Result<Json<Value>, StorageError> {
    let agents = st.storage.run("agents", st.store.agents()).await?;
    Ok(Json(
        json!({ "agents": agents.iter().map(|a| agent_json(a, &st.fleet, now_ms())).collect::<Vec<_>>() }),
    ))
}

/// The firing burn-rate and escalation alerts, as committed to the store.
async fn alerts(State(st): State<ApiState>) -> Result<Json<Value>, StorageError> {
    let (firing, silences) = st
        .storage
        .run("alerts", async {
            let mut firing = st.store.firing_alerts().await?;
            firing.extend(
                st.store
                    .escalation_alerts()
                    .await?
                    .into_iter()
                    .map(|(f, _)| f),
            );
            Ok((firing, st.store.silences(now_ms()).await?))
        })
        .await?;
    let alerts: Vec<Value> = firing
        .iter()
        .map(|f| {
            let held = silences
                .iter()
                .filter(|s| s.slo == f.alert.slo && s.severity == f.alert.severity.as_str())
                .map(|s| {
                    json!({
                        "kind": if s.until_ms.is_some() { "silence" } else { "ack" },
                        "until": s.until_ms.map(rfc3339_ms),
                        "by": s.created_by,
                        "reason": s.reason,
                    })
                })
                .collect::<Vec<_>>();
            json!({
                "held": held,
                "slo": f.alert.slo,
                "severity": f.alert.severity.as_str(),
                "rule": f.alert.rule,
                "burn_rates": f.alert.burn_rates(),
                "factor": f.alert.factor,
                "started_at": rfc3339_ms(f.started_ms),
                "last_sent_at": rfc3339_ms(f.last_sent_ms),
            })
        })
        .collect();
    Ok(Json(json!({ "alerts": alerts })))
}

async fn metrics_text(State(st): State<ApiState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        st.metrics.render(),
    )
        .into_response()
}

async fn readyz(State(st): State<ApiState>) -> Response {
    // Within the storage deadline: a readiness probe with a short timeout
    // must get "not ready", not a timeout (details are in the log).
    if let Err(e) = st.storage.run("readyz", st.store.ping()).await {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}")).into_response();
    }
    if !st.catalog.borrow().loaded {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no catalog loaded (the `catalog` setting lists no files)",
        )
            .into_response();
    }
    (StatusCode::OK, "ready").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_never_panic() {
        assert_eq!(rfc3339_ms(i64::MAX), "9999-12-31T23:59:59.999Z");
        assert_eq!(rfc3339_ms(i64::MIN), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_000), "1970-01-01T00:00:01.000Z");
    }

    #[test]
    fn names_and_times() {
        assert_eq!(
            failure_class_name(FailureClass::HttpStatus as i32),
            Some("http_status")
        );
        assert_eq!(
            failure_class_name(FailureClass::PermissionMismatch as i32),
            Some("permission_mismatch")
        );
        assert_eq!(failure_class_name(0), None);
        assert_eq!(failure_class_name(999), None);
        assert_eq!(outcome_name(1), "success");
        assert_eq!(outcome_name(2), "failure");
        assert_eq!(rfc3339_ms(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339_ms(-5), "1970-01-01T00:00:00.000Z");
    }
}
