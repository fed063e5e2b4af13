//! The shipped journey example (deploy/examples/journey.yaml) run by the
//! real `authpulse probe` command against the real OpenID provider (login
//! form, consent, introspection, revocation) and our OPA-shaped decision
//! server: every step passes when the engine denies `delete`; when it
//! allows it, the journey fails with class `escalation`, and the `revoke`
//! step (`always: true`) still runs.
use std::process::Command;

use authpulse_tests::decision_server::DecisionServer;
use authpulse_tests::peers::OidcPeer;
use authpulse_tests::{TempDir, bin};
use serde_json::Value;

fn example(issuer: &str, opa: &str) -> String {
    let path = authpulse_tests::repo_root().join("deploy/examples/journey.yaml");
    std::fs::read_to_string(path)
        .expect("example")
        .replace("https://idp.example.com", issuer)
        .replace("https://opa.example.com", opa)
}

fn run(dir: &TempDir, catalog: &str) -> (i32, Value) {
    let path = dir.path().join("journey.yaml");
    std::fs::write(&path, catalog).expect("catalog");
    let secrets = dir.path().join("secrets");
    std::fs::create_dir_all(&secrets).expect("secrets dir");
    std::fs::write(secrets.join("corp_web_secret"), "probe-web-secret").expect("secret");
    std::fs::write(secrets.join("corp_probe_password"), "alice-password").expect("secret");
    let out = Command::new(bin("authpulse"))
        .args(["probe", "--catalog"])
        .arg(&path)
        .args(["corp-login-journey", "--json", "--secrets-dir"])
        .arg(&secrets)
        .output()
        .expect("authpulse runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "JSON outcome ({e}): {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), v)
}

fn step<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|x| x["name"] == name))
        .unwrap_or_else(|| panic!("step {name} in {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_journey_logs_in_checks_permissions_and_revokes() {
    let peer = OidcPeer::shared().await;
    let dir = TempDir::new("ap-journey");
    // The peer's dev accounts use the login name as `sub`.
    let opa = DecisionServer::start(&[("alice", "read", "doc:plan")]).await;
    let (code, v) = run(&dir, &example(&peer.issuer, &opa.url()));
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["outcome"], "success");
    let names: Vec<&str> = v["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["login", "introspect", "can-read", "cannot-delete", "revoke"]
    );
    assert!(
        step(&v, "revoke")["detail"]
            .as_str()
            .unwrap_or("")
            .contains("inactive"),
        "{v:#}"
    );
    // The engine saw the logged-in user's subject, filled in by the template.
    let seen = opa.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].body["input"]["user"], "alice");
    assert_eq!(seen[1].body["input"]["action"], "delete");

    // The engine now allows delete: a privilege escalation.
    let opa = DecisionServer::start(&[
        ("alice", "read", "doc:plan"),
        ("alice", "delete", "doc:plan"),
    ])
    .await;
    let (code, v) = run(&dir, &example(&peer.issuer, &opa.url()));
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(v["failure_class"], "escalation", "{v:#}");
    assert_eq!(step(&v, "cannot-delete")["failure_class"], "escalation");
    // Cleanup still ran and succeeded.
    assert_eq!(step(&v, "revoke")["outcome"], "success", "{v:#}");
}
