//! The gate endpoints: `GET`/`POST /api/v1/gates/{id}` (a decision a
//! pipeline acts on, audited before it is answered) and `GET
//! /api/v1/gates` (every gate's decision, a view, not audited); Flagger
//! webhook payloads are kept in the record bounded.
use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde_json::{Value, json};

use super::evaluate;
use crate::api::ApiState;
use crate::api_access::Caller;
use crate::clock::rfc3339_ms;
use crate::store::now_ms;

/// The most of a webhook payload (Flagger's) an audit entry keeps, in bytes
/// of JSON: past it, the record (or its `metadata`) becomes
/// `{"truncated": true, "bytes": N, "prefix": "…"}`, so a caller can't
/// bloat the log.
pub const MAX_WEBHOOK_RECORD: usize = 4096;

/// Characters of a cut record's JSON kept in its `prefix`.
const TRUNCATED_PREFIX_CHARS: usize = 512;

/// Flagger's string fields and other keys' names are cut to this many characters.
const MAX_WEBHOOK_STRING: usize = 256;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/gates", get(list))
        .route("/api/v1/gates/{id}", get(get_gate).post(post_gate))
}

/// [`respond`] for a body already serialized.
fn respond_json_text(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// A JSON answer that no cache keeps (a decision is only true now).
fn respond(status: StatusCode, body: Value) -> Response {
    let mut r = (status, Json(body)).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// `?always200`, `?always200=true|1`: answer 200 whatever the decision.
fn always200(q: &HashMap<String, String>) -> Result<bool, String> {
    match q.get("always200").map(String::as_str) {
        None | Some("false" | "0") => Ok(false),
        Some("" | "true" | "1") => Ok(true),
        Some(other) => Err(format!("always200=`{other}`: use true or false")),
    }
}

/// Every gate's current decision (a view for dashboards; not audited).
async fn list(State(st): State<ApiState>) -> Response {
    let snapshot = st.catalog.borrow().clone();
    let now = now_ms();
    let mut gates = Vec::new();
    for gate in &snapshot.catalog.gates {
        let evaluated = st
            .storage
            .run(
                "gate list",
                evaluate(&st.store, &snapshot.catalog, gate, now),
            )
            .await;
        match evaluated {
            Ok(d) => gates.push(d.to_json()),
            // Logged by the guard; no internals in the answer.
            Err(e) => gates.push(json!({
                "gate": gate.id,
                "decision": "unknown",
                "error": e.to_string(),
            })),
        }
    }
    let mut r = Json(json!({ "generated_at": rfc3339_ms(now), "gates": gates })).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

async fn get_gate(
    State(st): State<ApiState>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    who: Option<Extension<Caller>>,
    headers: HeaderMap,
) -> Response {
    serve(st, id, q, &headers, caller(who), "GET", None).await
}

/// The token name the request was authorised as (see `api_access`).
fn caller(who: Option<Extension<Caller>>) -> Option<String> {
    who.and_then(|Extension(c)| c.0)
}

/// Flagger webhooks POST `{name, namespace, phase, checksum, metadata}`;
/// any JSON object (or an empty body) is accepted and recorded.
async fn post_gate(
    State(st): State<ApiState>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    who: Option<Extension<Caller>>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            let mut r = crate::api::body_refused(&e);
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            return r;
        }
    };
    let payload = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(m)) => Some(webhook_fields(&m)),
            Ok(_) => {
                return respond(
                    StatusCode::BAD_REQUEST,
                    json!({ "error": "the body must be a JSON object (Flagger's webhook payload) or empty" }),
                );
            }
            Err(e) => {
                return respond(
                    StatusCode::BAD_REQUEST,
                    json!({ "error": format!("the body is not JSON: {e}") }),
                );
            }
        }
    };
    serve(st, id, q, &headers, caller(who), "POST", payload).await
}

/// The Flagger fields worth keeping: who is rolling out what, in which
/// phase; at most [`MAX_WEBHOOK_RECORD`] bytes of JSON whatever was sent.
pub fn webhook_fields(m: &serde_json::Map<String, Value>) -> Value {
    let cut = |s: &str| s.chars().take(MAX_WEBHOOK_STRING).collect::<String>();
    let mut out = serde_json::Map::new();
    for k in ["name", "namespace", "phase", "checksum"] {
        if let Some(v) = m.get(k) {
            let v = match v {
                Value::String(s) => Value::String(cut(s)),
                Value::Number(_) | Value::Bool(_) | Value::Null => v.clone(),
                other => Value::String(cut(&other.to_string())),
            };
            out.insert(k.into(), v);
        }
    }
    if let Some(meta) = m.get("metadata") {
        out.insert("metadata".into(), capped(meta, MAX_WEBHOOK_RECORD / 2));
    }
    // Names only, cut: a key can be as long as the body.
    let other: Vec<String> = m
        .keys()
        .filter(|k| !["name", "namespace", "phase", "checksum", "metadata"].contains(&k.as_str()))
        .take(20)
        .map(|k| cut(k))
        .collect();
    if !other.is_empty() {
        out.insert("other_keys".into(), json!(other));
    }
    capped(&Value::Object(out), MAX_WEBHOOK_RECORD)
}

/// `v` itself if its JSON is at most `max` bytes, else a marker with the
/// size and the start of the text.
fn capped(v: &Value, max: usize) -> Value {
    let text = v.to_string();
    if text.len() <= max {
        return v.clone();
    }
    json!({
        "truncated": true,
        "bytes": text.len(),
        "prefix": text.chars().take(TRUNCATED_PREFIX_CHARS).collect::<String>(),
    })
}

async fn serve(
    st: ApiState,
    id: String,
    q: HashMap<String, String>,
    headers: &HeaderMap,
    caller: Option<String>,
    method: &'static str,
    webhook: Option<Value>,
) -> Response {
    let always200 = match always200(&q) {
        Ok(b) => b,
        Err(e) => return respond(StatusCode::BAD_REQUEST, json!({ "error": e })),
    };
    let snapshot = st.catalog.borrow().clone();
    let Some(gate) = snapshot.catalog.gates.iter().find(|g| g.id == id) else {
        let known: Vec<&str> = snapshot
            .catalog
            .gates
            .iter()
            .map(|g| g.id.as_str())
            .collect();
        return respond(
            StatusCode::NOT_FOUND,
            json!({ "error": format!("no gate `{id}` in the catalog"), "gates": known }),
        );
    };
    // Under the storage deadline: with the database gone the pipeline gets
    // `unknown` in time, not a hung request.
    let evaluated = st
        .storage
        .run(
            "gate",
            st.gate_decisions
                .decide(&st.store, &snapshot.catalog, snapshot.version, gate),
        )
        .await;
    let mut fields = json!({
        "gate": id,
        "method": method,
        "always200": always200,
        "catalog_version": snapshot.version,
        "by": caller,
    });
    if let Some(ua) = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
    {
        fields["user_agent"] = json!(ua.chars().take(200).collect::<String>());
    }
    if let Some(w) = webhook {
        fields["webhook"] = w;
    }
    let decision = match &evaluated {
        Ok(d) => {
            fields["decision"] = json!(d.decision.decision());
            fields["reasons"] = d.reasons.clone();
            d.decision.decision()
        }
        Err(e) => {
            // The guard logged the details; the answer and the record say
            // only what kind of failure it was.
            fields["decision"] = json!("unknown");
            fields["error"] = json!(e.to_string());
            "unknown"
        }
    };
    // No decision leaves without its audit record.
    let seq = match st.audit.append_durable("gate_decision", fields).await {
        Ok(seq) => seq,
        Err(e) => {
            tracing::error!(gate = %id, error = %e, "cannot record the gate decision; answering unknown");
            return respond(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({ "gate": id, "decision": "unknown", "error": "the decision could not be written to the audit log" }),
            );
        }
    };
    metrics::counter!("authpulse_coordinator_gate_decisions_total",
        "gate" => id.clone(),
        "decision" => decision)
    .increment(1);
    match evaluated {
        Ok(d) => {
            let status = if d.decision.pass() || always200 {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            respond_json_text(status, d.body_with_audit_seq(seq))
        }
        Err(e) => respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({ "gate": id, "decision": "unknown", "error": e.to_string(), "audit_seq": seq }),
        ),
    }
}
