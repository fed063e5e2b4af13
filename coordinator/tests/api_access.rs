//! API security against a running coordinator with configured tokens: every
//! endpoint class with no token, a wrong token, a token of the wrong scope
//! and the right one; public endpoints stay public; admin actions (reload,
//! silence, acknowledge) validate their input and keep serving.
mod common;

use authpulse_coordinator::api_access::{ApiConfig, Scope, TokenConfig};
use authpulse_coordinator::{CoordinatorConfig, start};
use serde_json::{Value, json};

const CATALOG: &str = "probes:\n  - { id: login, kind: http, url: \"https://idp.example/\" }\nslos:\n  - { id: login, probes: [login], objective: 99, window: 1d }\n";

struct Api {
    base: String,
    client: reqwest::Client,
}

impl Api {
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value, Option<String>) {
        let mut req = self.client.request(
            method.parse().expect("method"),
            format!("{}{path}", self.base),
        );
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("request");
        let status = r.status().as_u16();
        let www = r
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = r.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
            www,
        )
    }
}

/// A token file `dir/<name>.token` holding `value`, with `scopes`.
fn token(dir: &std::path::Path, name: &str, value: &str, scopes: Vec<Scope>) -> TokenConfig {
    let path = dir.join(format!("{name}.token"));
    std::fs::write(&path, format!("{value}\n")).expect("token");
    TokenConfig {
        name: name.into(),
        token_file: path,
        scopes,
    }
}

/// A coordinator on `catalog` with `tokens` (public /metrics) and a client.
async fn start_with_tokens(
    dir: &std::path::Path,
    catalog: &std::path::Path,
    tokens: Vec<TokenConfig>,
) -> (authpulse_coordinator::Running, Api) {
    let config = CoordinatorConfig {
        grpc_listen: "127.0.0.1:0".parse().expect("addr"),
        http_listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.join("data"),
        catalog: vec![catalog.to_path_buf()],
        insecure: true,
        api: ApiConfig {
            tokens,
            metrics_public: true,
            insecure_open: false,
            oidc: None,
        },
        ..CoordinatorConfig::default()
    };
    let running = start(config).await.expect("starts");
    let api = Api {
        base: format!("http://{}", running.http_addr()),
        client: reqwest::Client::new(),
    };
    (running, api)
}

#[tokio::test]
async fn every_endpoint_class_with_no_wrong_and_right_tokens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let catalog = dir.path().join("catalog.yaml");
    std::fs::write(&catalog, CATALOG).expect("catalog");
    let d = dir.path();
    let tokens = vec![
        token(d, "grafana", "read-token-1", vec![Scope::Read]),
        token(d, "ci", "gate-token-2", vec![Scope::Gate]),
        token(d, "oncall", "admin-token-3", vec![Scope::Admin]),
    ];
    let (running, api) = start_with_tokens(d, &catalog, tokens).await;

    // Public: no token needed.
    for path in ["/healthz", "/metrics"] {
        let (code, _, _) = api.call("GET", path, None, None).await;
        assert_eq!(code, 200, "{path}");
    }
    // read
    let (code, body, www) = api.call("GET", "/api/v1/slos", None, None).await;
    assert_eq!(code, 401, "{body}");
    assert_eq!(body["required_scope"], "read");
    assert!(www.is_some_and(|w| w.starts_with("Bearer")));
    let (code, body, _) = api.call("GET", "/api/v1/slos", Some("nope"), None).await;
    assert_eq!((code, body["error"].as_str()), (401, Some("unknown token")));
    let (code, body, _) = api
        .call("GET", "/api/v1/slos", Some("gate-token-2"), None)
        .await;
    assert_eq!(code, 403, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("token `ci` lacks scope `read`")),
        "{body}"
    );
    let (code, body, _) = api
        .call("GET", "/api/v1/slos", Some("read-token-1"), None)
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["slos"][0]["id"], "login");
    // admin implies read
    let (code, _, _) = api
        .call("GET", "/api/v1/probes", Some("admin-token-3"), None)
        .await;
    assert_eq!(code, 200);
    // gate: a read token is not enough
    let (code, _, _) = api.call("GET", "/api/v1/gates/deploy", None, None).await;
    assert_eq!(code, 401);
    let (code, body, _) = api
        .call("GET", "/api/v1/gates/deploy", Some("read-token-1"), None)
        .await;
    assert_eq!((code, body["required_scope"].as_str()), (403, Some("gate")));
    // admin: reload
    let (code, _, _) = api
        .call("POST", "/api/v1/admin/reload", Some("gate-token-2"), None)
        .await;
    assert_eq!(code, 403);
    let (code, body, _) = api
        .call("POST", "/api/v1/admin/reload", Some("admin-token-3"), None)
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["result"], "reloaded");
    std::fs::write(&catalog, "probes:\n  - { id: login, kind: htp }\n").expect("broken catalog");
    let (code, body, _) = api
        .call("POST", "/api/v1/admin/reload", Some("admin-token-3"), None)
        .await;
    assert_eq!(code, 422, "{body}");
    assert!(
        body["problems"][0]
            .as_str()
            .is_some_and(|p| p.contains("unknown probe kind `htp`")),
        "{body}"
    );
    assert_eq!(running.catalog().slos.len(), 1, "the running catalog stays");
    // admin: silence and acknowledge, with their input checked
    let silence = "/api/v1/alerts/login/page/silence";
    let (code, _, _) = api
        .call(
            "POST",
            silence,
            Some("read-token-1"),
            Some(json!({"duration": "1h"})),
        )
        .await;
    assert_eq!(code, 403);
    let (code, body, _) = api
        .call(
            "POST",
            silence,
            Some("admin-token-3"),
            Some(json!({"duration": "forever"})),
        )
        .await;
    assert_eq!(code, 400, "{body}");
    let (code, _, _) = api
        .call(
            "POST",
            "/api/v1/alerts/nope/page/silence",
            Some("admin-token-3"),
            Some(json!({"duration": "1h"})),
        )
        .await;
    assert_eq!(code, 404);
    let (code, _, _) = api
        .call(
            "POST",
            "/api/v1/alerts/login/sev1/ack",
            Some("admin-token-3"),
            None,
        )
        .await;
    assert_eq!(code, 400);
    let (code, body, _) = api
        .call(
            "POST",
            silence,
            Some("admin-token-3"),
            Some(json!({"duration": "2h", "reason": "IdP maintenance"})),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["result"], "silenced");
    let held = running
        .store()
        .silences(authpulse_coordinator::store::now_ms())
        .await
        .expect("silences");
    assert_eq!(held.len(), 1);
    assert_eq!(
        (held[0].created_by.as_str(), held[0].reason.as_str()),
        ("oncall", "IdP maintenance")
    );
    let (code, _, _) = api
        .call(
            "POST",
            "/api/v1/alerts/login/ticket/ack",
            Some("admin-token-3"),
            Some(json!({"reason": "on it"})),
        )
        .await;
    assert_eq!(code, 200);
    // Still serving.
    let (code, _, _) = api.call("GET", "/healthz", None, None).await;
    assert_eq!(code, 200);
}

/// A gate marked `public: true` answers without a token (Flagger's webhook
/// can't send one), GET and POST; every other gate and endpoint still needs
/// its token, and a catalog reload that drops `public` closes it again.
#[tokio::test]
async fn a_public_gate_answers_without_a_token_and_only_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let catalog = dir.path().join("catalog.yaml");
    let with_gates = |public: bool| {
        format!(
            "{CATALOG}gates:\n  - {{ id: flagger, slos: [login], block_when: [page_alert], public: {public} }}\n  \
             - {{ id: deploy, slos: [login], block_when: [page_alert] }}\n"
        )
    };
    std::fs::write(&catalog, with_gates(true)).expect("catalog");
    let tokens = vec![token(dir.path(), "ci", "gate-token-2", vec![Scope::Gate])];
    let (running, api) = start_with_tokens(dir.path(), &catalog, tokens).await;
    // No data yet: the gate fails closed (503), but it answers a decision.
    let (s, v, _) = api.call("GET", "/api/v1/gates/flagger", None, None).await;
    assert_eq!(s, 503, "{v}");
    assert_eq!(v["gate"], "flagger", "{v}");
    let flagger = json!({ "name": "podinfo", "namespace": "test", "phase": "Progressing" });
    let (s, v, _) = api
        .call("POST", "/api/v1/gates/flagger", None, Some(flagger))
        .await;
    assert_eq!(s, 503, "{v}");
    for path in ["/api/v1/gates/deploy", "/api/v1/gates", "/api/v1/slos"] {
        let (s, _, _) = api.call("GET", path, None, None).await;
        assert_eq!(s, 401, "{path} without a token");
    }
    let (s, _, _) = api
        .call("GET", "/api/v1/gates/deploy", Some("gate-token-2"), None)
        .await;
    assert_eq!(s, 503);

    std::fs::write(&catalog, with_gates(false)).expect("catalog");
    running.reload_catalog().await.expect("reload");
    let (s, _, _) = api.call("GET", "/api/v1/gates/flagger", None, None).await;
    assert_eq!(s, 401, "public was dropped");
}
