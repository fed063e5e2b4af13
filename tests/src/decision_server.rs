//! A stand-in authorization engine for the `permission` probe. No real OPA,
//! OpenFGA or SpiceDB can be installed on the test machines, so this one
//! server speaks each engine's documented HTTP request and response shape
//! and is strict about the request (method, path, content type, body keys,
//! bearer token), answering malformed requests with the 4xx the real engine
//! would. Decisions come from one list of granted (subject, action, object)
//! triples:
//!
//! - OPA data API: `POST /v1/data/app/authz/allow` with `{"input": {user,
//!   action, resource}}` → `{"result": bool}`; `POST /v1/data/app/authz` →
//!   `{"result": {"allow": bool, "reasons": [...]}}`; any other document is
//!   undefined → `{}`.
//! - OpenFGA: `POST /stores/<store>/check` with `{"tuple_key": {user,
//!   relation, object}, "authorization_model_id"?}` → `{"allowed": bool,
//!   "resolution": ""}`.
//! - SpiceDB HTTP API: `POST /v1/permissions/check` with a bearer preshared
//!   key, `{resource: {objectType, objectId}, permission, subject: {object:
//!   {objectType, objectId}, optionalRelation?}, consistency?}` →
//!   `{"checkedAt": {"token": …}, "permissionship": "PERMISSIONSHIP_…"}`.
//! - Generic: `POST /decide` with `{subject, action, resource}` →
//!   `{"decision": {"effect": "PERMIT" | "DENY"}}`.
//!
//! [`DecisionServer::set_fault`] makes every answer a given status and body
//! instead (a 5xx, a malformed decision).
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde_json::{Value as Json, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

pub const OPENFGA_STORE: &str = "01HSTORE0000000000000000AP";
pub const OPENFGA_MODEL: &str = "01HMODEL0000000000000000AP";
pub const SPICEDB_KEY: &str = "spicedb-preshared-key";

#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Json,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

struct State {
    grants: Vec<(String, String, String)>,
    fault: Option<(u16, String)>,
    seen: Vec<Seen>,
}

pub struct DecisionServer {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl DecisionServer {
    /// `grants`: (subject, action or relation, object) triples that are allowed.
    pub async fn start(grants: &[(&str, &str, &str)]) -> DecisionServer {
        let state = Arc::new(Mutex::new(State {
            grants: grants
                .iter()
                .map(|(s, a, o)| (s.to_string(), a.to_string(), o.to_string()))
                .collect(),
            fault: None,
            seen: Vec::new(),
        }));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(serve(tcp, shared.clone()));
            }
        });
        DecisionServer { addr, state, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// From now on every request gets `status` and `body`.
    pub fn set_fault(&self, status: u16, body: &str) {
        self.state.lock().expect("lock").fault = Some((status, body.to_string()));
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.state.lock().expect("lock").seen.clone()
    }
}

impl Drop for DecisionServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut tcp: tokio::net::TcpStream, state: Arc<Mutex<State>>) {
    loop {
        let mut data = Vec::new();
        let mut buf = [0u8; 8192];
        let header_end = loop {
            if let Some(p) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => data.extend_from_slice(&buf[..n]),
            }
        };
        let head = String::from_utf8_lossy(&data[..header_end]).to_string();
        let mut lines = head.lines();
        let mut request_line = lines.next().unwrap_or("").split(' ');
        let method = request_line.next().unwrap_or("").to_string();
        let path = request_line.next().unwrap_or("").to_string();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| {
                let (k, v) = l.split_once(':')?;
                Some((k.trim().to_ascii_lowercase(), v.trim().to_string()))
            })
            .collect();
        let len: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        while data.len() < header_end + len {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => data.extend_from_slice(&buf[..n]),
            }
        }
        let raw_body = data[header_end..header_end + len].to_vec();
        let body: Json = serde_json::from_slice(&raw_body).unwrap_or(Json::Null);
        let seen = Seen {
            method,
            path,
            headers,
            body,
        };
        let (status, reply) = {
            let mut st = state.lock().expect("lock");
            st.seen.push(seen.clone());
            match &st.fault {
                Some((status, body)) => (*status, body.clone()),
                None => {
                    let (status, doc) = answer(&seen, &raw_body, &st.grants);
                    (status, doc.to_string())
                }
            }
        };
        let out = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{reply}",
            reply.len()
        );
        if tcp.write_all(out.as_bytes()).await.is_err() {
            return;
        }
    }
}

fn bad(status: u16, code: &str, message: String) -> (u16, Json) {
    (status, json!({ "code": code, "message": message }))
}

/// Only these keys, and these required ones, in a JSON object.
fn keys(v: &Json, allowed: &[&str], required: &[&str]) -> Result<(), String> {
    let Some(o) = v.as_object() else {
        return Err(format!("expected a JSON object, got {v}"));
    };
    if let Some(k) = o.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(format!("unknown field `{k}`"));
    }
    if let Some(k) = required.iter().find(|k| !o.contains_key(**k)) {
        return Err(format!("missing field `{k}`"));
    }
    Ok(())
}

fn text<'a>(v: &'a Json, key: &str) -> Result<&'a str, String> {
    v.get(key)
        .and_then(Json::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| format!("`{key}` must be a non-empty string"))
}

fn answer(req: &Seen, raw_body: &[u8], grants: &[(String, String, String)]) -> (u16, Json) {
    let granted =
        |s: &str, a: &str, o: &str| grants.iter().any(|g| g.0 == s && g.1 == a && g.2 == o);
    if req.method != "POST" {
        return bad(
            405,
            "method_not_allowed",
            format!("{} not allowed", req.method),
        );
    }
    if !req
        .header("content-type")
        .is_some_and(|c| c.starts_with("application/json"))
    {
        return bad(
            415,
            "unsupported_media_type",
            "expected application/json".into(),
        );
    }
    if serde_json::from_slice::<Json>(raw_body).is_err() {
        return bad(400, "invalid_parameter", "body is not JSON".into());
    }
    let body = &req.body;
    let path = req.path.as_str();

    if let Some(doc) = path.strip_prefix("/v1/data/") {
        // OPA: the only accepted key is `input`.
        if let Err(m) = keys(body, &["input"], &[]) {
            return bad(400, "invalid_parameter", m);
        }
        let input = body.get("input").cloned().unwrap_or(Json::Null);
        let decide = || -> Result<bool, String> {
            Ok(granted(
                text(&input, "user")?,
                text(&input, "action")?,
                text(&input, "resource")?,
            ))
        };
        return match doc {
            "app/authz/allow" => match decide() {
                Ok(a) => (200, json!({ "result": a })),
                // A rule whose input lacks fields is undefined in Rego.
                Err(_) => (200, json!({})),
            },
            "app/authz" => match decide() {
                Ok(a) => (
                    200,
                    json!({ "result": { "allow": a, "reasons": if a { json!([]) } else { json!(["no grant"]) } } }),
                ),
                Err(_) => (200, json!({})),
            },
            _ => (200, json!({})),
        };
    }

    if let Some(rest) = path.strip_prefix("/stores/") {
        let Some(store) = rest.strip_suffix("/check") else {
            return bad(404, "undefined_endpoint", format!("no route {path}"));
        };
        if store != OPENFGA_STORE {
            return bad(
                404,
                "store_id_not_found",
                format!("store {store} not found"),
            );
        }
        if let Err(m) = keys(
            body,
            &[
                "tuple_key",
                "authorization_model_id",
                "contextual_tuples",
                "context",
                "consistency",
                "trace",
            ],
            &["tuple_key"],
        ) {
            return bad(400, "validation_error", m);
        }
        if let Some(model) = body.get("authorization_model_id")
            && model != OPENFGA_MODEL
        {
            return bad(
                400,
                "authorization_model_not_found",
                format!("authorization model {model} not found"),
            );
        }
        let tk = &body["tuple_key"];
        if let Err(m) = keys(
            tk,
            &["user", "relation", "object"],
            &["user", "relation", "object"],
        ) {
            return bad(400, "validation_error", format!("tuple_key: {m}"));
        }
        return match (text(tk, "user"), text(tk, "relation"), text(tk, "object")) {
            (Ok(u), Ok(r), Ok(o)) => (
                200,
                json!({ "allowed": granted(u, r, o), "resolution": "" }),
            ),
            _ => bad(
                400,
                "validation_error",
                "tuple_key fields must be strings".into(),
            ),
        };
    }

    if path == "/v1/permissions/check" {
        if req.header("authorization") != Some(&format!("Bearer {SPICEDB_KEY}")) {
            return (
                401,
                json!({ "code": 16, "message": "invalid preshared key: invalid token", "details": [] }),
            );
        }
        if let Err(m) = keys(
            body,
            &[
                "resource",
                "permission",
                "subject",
                "consistency",
                "context",
                "withTracing",
            ],
            &["resource", "permission", "subject"],
        ) {
            return (400, json!({ "code": 3, "message": m, "details": [] }));
        }
        let objref = |v: &Json| -> Result<String, String> {
            keys(v, &["objectType", "objectId"], &["objectType", "objectId"])?;
            Ok(format!(
                "{}:{}",
                text(v, "objectType")?,
                text(v, "objectId")?
            ))
        };
        let parsed = (|| -> Result<(String, String, String), String> {
            let resource = objref(&body["resource"])?;
            let permission = text(body, "permission")?.to_string();
            let subject = &body["subject"];
            keys(subject, &["object", "optionalRelation"], &["object"])?;
            let mut s = objref(&subject["object"])?;
            if let Some(rel) = subject.get("optionalRelation").and_then(Json::as_str)
                && !rel.is_empty()
            {
                s = format!("{s}#{rel}");
            }
            if let Some(c) = body.get("consistency") {
                keys(
                    c,
                    &[
                        "minimizeLatency",
                        "fullyConsistent",
                        "atLeastAsFresh",
                        "atExactSnapshot",
                    ],
                    &[],
                )?;
                if c.as_object().map_or(0, |o| o.len()) != 1 {
                    return Err("consistency: exactly one requirement".into());
                }
            }
            Ok((s, permission, resource))
        })();
        return match parsed {
            Ok((s, p, r)) => {
                let ship = if granted(&s, &p, &r) {
                    "PERMISSIONSHIP_HAS_PERMISSION"
                } else {
                    "PERMISSIONSHIP_NO_PERMISSION"
                };
                (
                    200,
                    json!({ "checkedAt": { "token": "GhUKEzE3NjQzMzYwMDAwMDAwMDAwMDA=" }, "permissionship": ship }),
                )
            }
            Err(m) => (400, json!({ "code": 3, "message": m, "details": [] })),
        };
    }

    if path == "/decide" {
        if let Err(m) = keys(
            body,
            &["subject", "action", "resource"],
            &["subject", "action", "resource"],
        ) {
            return bad(400, "bad_request", m);
        }
        return match (
            text(body, "subject"),
            text(body, "action"),
            text(body, "resource"),
        ) {
            (Ok(s), Ok(a), Ok(r)) => {
                let effect = if granted(s, a, r) { "PERMIT" } else { "DENY" };
                (200, json!({ "decision": { "effect": effect } }))
            }
            _ => bad(400, "bad_request", "fields must be strings".into()),
        };
    }
    bad(404, "not_found", format!("no route {path}"))
}
