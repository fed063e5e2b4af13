//! `permission` against a local decision server (tests/src/decision_server.rs).
//! No real OPA, OpenFGA or SpiceDB can be installed on the test machines, so
//! that server implements each engine's documented HTTP request/response
//! shape and checks our requests strictly (unknown or missing body keys,
//! content type, bearer key → the engine's 4xx), and these tests also assert
//! the exact request each engine received.
use std::time::Duration;

use authpulse_agent::http::NetContext;
use authpulse_agent::probes::{self, ProbeOutcome};
use authpulse_agent::secrets::SecretStore;
use authpulse_proto::catalog;
use authpulse_proto::v1::FailureClass;
use authpulse_tests::TempDir;
use authpulse_tests::decision_server::{DecisionServer, OPENFGA_MODEL, OPENFGA_STORE, SPICEDB_KEY};
use authpulse_tests::fault::{FaultServer, Reply};
use serde_json::json;

async fn run_with(yaml: &str, secrets: &SecretStore) -> ProbeOutcome {
    authpulse_tests::crypto();
    let cat =
        catalog::load_str("t.yaml", &format!("probes:\n{yaml}")).unwrap_or_else(|e| panic!("{e}"));
    let net = NetContext::new().expect("net");
    probes::run(&cat.probes[0], &net, secrets, &Default::default()).await
}

async fn run_yaml(yaml: &str) -> ProbeOutcome {
    run_with(yaml, &SecretStore::new(None)).await
}

fn class(o: &ProbeOutcome) -> Option<FailureClass> {
    o.failure.as_ref().map(|f| f.class)
}

const GRANTS: &[(&str, &str, &str)] = &[
    ("alice", "read", "doc:plan"),
    ("user:alice", "reader", "document:plan"),
    ("user:alice", "view", "document:plan"),
    ("group:eng#member", "view", "document:plan"),
];

fn opa(server: &DecisionServer, path: &str, action: &str, expect: &str) -> String {
    format!(
        "  - id: p\n    kind: permission\n    engine: opa\n    url: {}\n    path: {path}\n    input: {{ user: alice, action: {action}, resource: 'doc:plan' }}\n    expect: {expect}\n",
        server.url()
    )
}

#[tokio::test]
async fn opa_allow_and_deny_as_expected() {
    let server = DecisionServer::start(GRANTS).await;
    // Boolean result, path in slash form.
    let o = run_yaml(&opa(&server, "app/authz/allow", "read", "allow")).await;
    assert!(o.success(), "{o:?}");
    assert!(o.detail.contains("allow as expected"), "{}", o.detail);
    let seen = &server.requests()[0];
    assert_eq!(seen.path, "/v1/data/app/authz/allow");
    assert_eq!(
        seen.body,
        json!({"input": {"user": "alice", "action": "read", "resource": "doc:plan"}})
    );
    // Object result with `allow`, path in dotted form.
    let o = run_yaml(&opa(&server, "app.authz", "delete", "deny")).await;
    assert!(o.success(), "{o:?}");
    assert_eq!(server.requests()[1].path, "/v1/data/app/authz");
    // The full data API URL works without `path` (the DESIGN example).
    let o = run_yaml(&format!(
        "  - id: p\n    kind: permission\n    engine: opa\n    url: {}/v1/data/app/authz/allow\n    input: {{ user: alice, action: read, resource: 'doc:plan' }}\n    expect: allow\n",
        server.url()
    ))
    .await;
    assert!(o.success(), "{o:?}");
    assert!(o.timings.ttfb.is_some());
}

#[tokio::test]
async fn opa_allowed_when_deny_expected_is_an_escalation() {
    let server = DecisionServer::start(GRANTS).await;
    let o = run_yaml(&opa(&server, "app/authz/allow", "read", "deny")).await;
    assert_eq!(class(&o), Some(FailureClass::Escalation), "{o:?}");
    assert!(
        o.detail.contains("PRIVILEGE ESCALATION")
            && o.detail.contains("expected deny, but opa ALLOWED")
            && o.detail.contains(r#""action":"read""#),
        "{}",
        o.detail
    );
}

#[tokio::test]
async fn opa_denied_when_allow_expected_is_a_permission_mismatch() {
    let server = DecisionServer::start(GRANTS).await;
    let o = run_yaml(&opa(&server, "app.authz", "write", "allow")).await;
    assert_eq!(class(&o), Some(FailureClass::PermissionMismatch), "{o:?}");
    assert!(
        o.detail.contains("expected allow, got deny") && o.detail.contains("/v1/data/app/authz"),
        "{}",
        o.detail
    );
}

#[tokio::test]
async fn opa_undefined_or_malformed_decision_is_protocol() {
    let server = DecisionServer::start(GRANTS).await;
    let undefined = run_yaml(&opa(&server, "app/authz/nope", "read", "allow")).await;
    assert_eq!(
        class(&undefined),
        Some(FailureClass::Protocol),
        "{undefined:?}"
    );
    assert!(
        undefined
            .detail
            .contains("no `result`: the document is undefined"),
        "{}",
        undefined.detail
    );
    server.set_fault(200, r#"{"result": "maybe"}"#);
    let odd = run_yaml(&opa(&server, "app/authz/allow", "read", "allow")).await;
    assert_eq!(class(&odd), Some(FailureClass::Protocol), "{odd:?}");
    assert!(
        odd.detail.contains(r#"`result` is "maybe""#),
        "{}",
        odd.detail
    );
    server.set_fault(200, "<html>login required</html>");
    let html = run_yaml(&opa(&server, "app/authz/allow", "read", "allow")).await;
    assert_eq!(class(&html), Some(FailureClass::Protocol), "{html:?}");
    assert!(
        html.detail.contains("not JSON") && html.detail.contains("login required"),
        "{}",
        html.detail
    );
}

#[tokio::test]
async fn engine_5xx_is_http_status_and_slow_engine_times_out() {
    let server = DecisionServer::start(GRANTS).await;
    server.set_fault(
        503,
        r#"{"code":"internal_error","message":"bundle not activated"}"#,
    );
    let o = run_yaml(&opa(&server, "app/authz/allow", "read", "allow")).await;
    assert_eq!(class(&o), Some(FailureClass::HttpStatus), "{o:?}");
    assert!(
        o.detail.contains("503") && o.detail.contains("bundle not activated"),
        "{}",
        o.detail
    );

    let slow =
        FaultServer::start(|_| Reply::json(r#"{"result": true}"#).delayed(Duration::from_secs(5)))
            .await;
    let o = run_yaml(&format!(
        "  - id: p\n    kind: permission\n    engine: opa\n    url: {}\n    path: app/allow\n    expect: allow\n    timeout: 300ms\n    interval: 1s\n",
        slow.url("")
    ))
    .await;
    assert_eq!(class(&o), Some(FailureClass::Timeout), "{o:?}");
    assert!(o.timings.total < Duration::from_secs(2));
}

fn openfga(server: &DecisionServer, extra: &str, relation: &str, expect: &str) -> String {
    format!(
        "  - id: p\n    kind: permission\n    engine: openfga\n    url: {}\n    store_id: {OPENFGA_STORE}\n    user: 'user:alice'\n    relation: {relation}\n    object: 'document:plan'\n    expect: {expect}\n{extra}",
        server.url()
    )
}

#[tokio::test]
async fn openfga_check() {
    let server = DecisionServer::start(GRANTS).await;
    let model = format!("    authorization_model_id: {OPENFGA_MODEL}\n");
    let o = run_yaml(&openfga(&server, &model, "reader", "allow")).await;
    assert!(o.success(), "{o:?}");
    let seen = &server.requests()[0];
    assert_eq!(seen.path, format!("/stores/{OPENFGA_STORE}/check"));
    assert_eq!(
        seen.body,
        json!({
            "tuple_key": {"user": "user:alice", "relation": "reader", "object": "document:plan"},
            "authorization_model_id": OPENFGA_MODEL
        })
    );
    let o = run_yaml(&openfga(&server, "", "writer", "deny")).await;
    assert!(o.success(), "{o:?}");
    let o = run_yaml(&openfga(&server, "", "writer", "allow")).await;
    assert_eq!(class(&o), Some(FailureClass::PermissionMismatch), "{o:?}");
    assert!(
        o.detail
            .contains("openfga denied user:alice writer document:plan"),
        "{}",
        o.detail
    );
    // An unknown model is the engine's 400, reported with its message.
    let o = run_yaml(&openfga(
        &server,
        "    authorization_model_id: 01HOTHERMODEL\n",
        "reader",
        "allow",
    ))
    .await;
    assert_eq!(class(&o), Some(FailureClass::HttpStatus), "{o:?}");
    assert!(
        o.detail.contains("authorization_model_not_found"),
        "{}",
        o.detail
    );
}

fn spicedb(server: &DecisionServer, subject: &str, permission: &str, expect: &str) -> String {
    format!(
        "  - id: p\n    kind: permission\n    engine: spicedb\n    url: {}\n    token: {{ secret: spicedb_key }}\n    resource: 'document:plan'\n    permission: {permission}\n    subject: '{subject}'\n    expect: {expect}\n",
        server.url()
    )
}

#[tokio::test]
async fn spicedb_check_with_preshared_key() {
    let dir = TempDir::new("ap-spicedb");
    std::fs::write(dir.path().join("spicedb_key"), SPICEDB_KEY).expect("secret");
    let secrets = SecretStore::new(Some(dir.path().to_path_buf()));
    let server = DecisionServer::start(GRANTS).await;

    let o = run_with(&spicedb(&server, "user:alice", "view", "allow"), &secrets).await;
    assert!(o.success(), "{o:?}");
    let seen = &server.requests()[0];
    assert_eq!(seen.path, "/v1/permissions/check");
    assert_eq!(
        seen.header("authorization"),
        Some(format!("Bearer {SPICEDB_KEY}").as_str())
    );
    assert_eq!(
        seen.body,
        json!({
            "resource": {"objectType": "document", "objectId": "plan"},
            "permission": "view",
            "subject": {"object": {"objectType": "user", "objectId": "alice"}, "optionalRelation": ""}
        })
    );
    // A subject set, fully consistent.
    let o = run_with(
        &format!(
            "{}    fully_consistent: true\n",
            spicedb(&server, "group:eng#member", "view", "allow")
        ),
        &secrets,
    )
    .await;
    assert!(o.success(), "{o:?}");
    let seen = &server.requests()[1];
    assert_eq!(seen.body["subject"]["optionalRelation"], "member");
    assert_eq!(seen.body["consistency"], json!({"fullyConsistent": true}));

    let o = run_with(&spicedb(&server, "user:bob", "view", "deny"), &secrets).await;
    assert!(o.success(), "{o:?}");
    let o = run_with(&spicedb(&server, "user:alice", "view", "deny"), &secrets).await;
    assert_eq!(class(&o), Some(FailureClass::Escalation), "{o:?}");
    assert!(
        o.detail
            .contains("spicedb ALLOWED user:alice view document:plan"),
        "{}",
        o.detail
    );

    // A wrong key: the engine's 401, and the key never shows.
    let wrong = TempDir::new("ap-spicedb-wrong");
    std::fs::write(wrong.path().join("spicedb_key"), "not-the-key-7731").expect("secret");
    server.set_fault(
        401,
        r#"{"code":16,"message":"invalid preshared key: not-the-key-7731"}"#,
    );
    let o = run_with(
        &spicedb(&server, "user:alice", "view", "allow"),
        &SecretStore::new(Some(wrong.path().to_path_buf())),
    )
    .await;
    assert_eq!(class(&o), Some(FailureClass::HttpStatus), "{o:?}");
    let everything = format!("{o:?}");
    assert!(!everything.contains("not-the-key-7731"), "{everything}");
    assert!(o.detail.contains("[redacted]"), "{}", o.detail);
}

#[tokio::test]
async fn generic_decision_endpoint() {
    let server = DecisionServer::start(GRANTS).await;
    let probe = |action: &str, expect: &str| {
        format!(
            "  - id: p\n    kind: permission\n    engine: generic\n    url: {}/decide\n    body: {{ subject: alice, action: {action}, resource: 'doc:plan' }}\n    decision: $.decision.effect\n    allow_values: [PERMIT]\n    headers:\n      X-Tenant: probe\n    expect: {expect}\n",
            server.url()
        )
    };
    let o = run_yaml(&probe("read", "allow")).await;
    assert!(o.success(), "{o:?}");
    let seen = &server.requests()[0];
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.header("x-tenant"), Some("probe"));
    let o = run_yaml(&probe("delete", "deny")).await;
    assert!(o.success(), "{o:?}");
    let o = run_yaml(&probe("delete", "allow")).await;
    assert_eq!(class(&o), Some(FailureClass::PermissionMismatch), "{o:?}");
    server.set_fault(200, r#"{"verdict": "PERMIT"}"#);
    let o = run_yaml(&probe("read", "allow")).await;
    assert_eq!(class(&o), Some(FailureClass::Protocol), "{o:?}");
    assert!(
        o.detail
            .contains("decision path $.decision.effect matches nothing"),
        "{}",
        o.detail
    );
}

#[test]
fn catalog_rejects_incomplete_or_mixed_engine_fields() {
    let errs = catalog::load_str(
        "t.yaml",
        "probes:\n  - id: a\n    kind: permission\n    engine: openfga\n    url: http://fga.example\n    user: 'user:a'\n    relation: r\n    object: 'doc:x'\n    expect: allow\n  - id: b\n    kind: permission\n    engine: opa\n    url: http://opa.example\n    path: app/allow\n    store_id: s1\n    expect: deny\n  - id: c\n    kind: permission\n    engine: generic\n    url: http://pdp.example/decide\n    expect: maybe\n",
    )
    .expect_err("rejected")
    .to_string();
    assert!(errs.contains("engine `openfga` needs `store_id`"), "{errs}");
    assert!(
        errs.contains("`store_id` is for engine `openfga`, not `opa`"),
        "{errs}"
    );
    assert!(errs.contains("maybe"), "{errs}");
}
