//! People's access to the coordinator API with JWTs from a real OpenID
//! provider (oidc-provider): the coordinator verifies them against the
//! issuer's JWKS (issuer, audience, expiry) and maps the `groups` claim to
//! scopes. The peer puts `groups: ["deployers"]` in probe-cc's JWT access
//! tokens and `["viewers"]` in probe-cc-post's.
use authpulse_tests::TempDir;
use authpulse_tests::fleet::CoordinatorFixture;
use authpulse_tests::peers::OidcPeer;

async fn jwt(
    client: &reqwest::Client,
    issuer: &str,
    id: &str,
    secret: &str,
    basic: bool,
) -> String {
    let mut form = vec![
        ("grant_type", "client_credentials"),
        ("resource", "urn:authpulse:api"),
        ("scope", "api:read"),
    ];
    let mut req = client.post(format!("{issuer}/token"));
    if basic {
        req = req.basic_auth(id, Some(secret));
    } else {
        form.push(("client_id", id));
        form.push(("client_secret", secret));
    }
    // Form encoding by hand (values are plain; `:` escaped).
    let body = form
        .iter()
        .map(|(k, v)| format!("{k}={}", v.replace(':', "%3A")))
        .collect::<Vec<_>>()
        .join("&");
    let v: serde_json::Value = req
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("token request")
        .json()
        .await
        .expect("token JSON");
    let t = v["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("token: {v}"));
    assert_eq!(t.matches('.').count(), 2, "a JWT access token: {v}");
    t.to_string()
}

async fn status(client: &reqwest::Client, url: &str, token: &str) -> (u16, String) {
    let r = client
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .expect("request");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_claims_of_real_oidc_tokens_map_to_scopes() {
    let peer = OidcPeer::start().await;
    let dir = TempDir::new("ap-api-oidc");
    let catalog = "probes:\n  - { id: login, kind: http, url: \"https://idp.example/\" }\nslos:\n  - { id: login, probes: [login], objective: 99, window: 1d }\n";
    let extra = format!(
        "api:\n  oidc:\n    issuer: {}\n    audience: urn:authpulse:api\n    group_scopes:\n      deployers: [gate]\n      viewers: [read]\n",
        peer.issuer
    );
    let c = CoordinatorFixture::start_with(&dir, catalog, &extra).await;
    let client = reqwest::Client::new();
    let deployer = jwt(&client, &peer.issuer, "probe-cc", "probe-cc-secret", true).await;
    let viewer = jwt(
        &client,
        &peer.issuer,
        "probe-cc-post",
        "probe-cc-post-secret",
        false,
    )
    .await;
    let slos = format!("{}/api/v1/slos", c.api);
    let gate = format!("{}/api/v1/gates/no-such-gate", c.api);

    let (code, body) = status(&client, &slos, &viewer).await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = status(&client, &slos, &deployer).await;
    assert_eq!(code, 403, "{body}");
    assert!(
        body.contains("oidc:probe-cc") && body.contains("lacks scope `read`"),
        "{body}"
    );
    // The deployer passes the gate check (then the gate itself is unknown).
    let (code, body) = status(&client, &gate, &deployer).await;
    assert!(code != 401 && code != 403, "{code} {body}");
    let (code, _) = status(&client, &gate, &viewer).await;
    assert_eq!(code, 403);
    // A tampered token, and an opaque one, are refused.
    let mut tampered = viewer.clone();
    tampered.pop();
    tampered.push(if viewer.ends_with('A') { 'B' } else { 'A' });
    let (code, body) = status(&client, &slos, &tampered).await;
    assert_eq!(code, 401, "{body}");
    let (code, body) = status(&client, &slos, "not-a-jwt").await;
    assert_eq!(code, 401, "{body}");
    // After all that the coordinator still serves.
    let (code, _) = status(&client, &format!("{}/healthz", c.api), "").await;
    assert_eq!(code, 200);
}
