//! Secrets never leave the agent: every probe kind that takes a credential
//! runs against its real peer with known secret values (some accepted, some
//! deliberately wrong so error paths run too), the agent logging at `trace`,
//! results flowing to a coordinator. Then every output is searched for every
//! secret value: both processes' logs (stdout and stderr), the API's JSON,
//! both `/metrics`, the coordinator's database files and the agent's spool.
//! JWTs issued at run time must not appear either. (`tcp`, `tls` and `dns`
//! take no credentials, so they are not in this catalog.)
use std::time::Duration;

use authpulse_tests::decision_server::{DecisionServer, SPICEDB_KEY};
use authpulse_tests::fleet::{CoordinatorFixture, CoordinatorOptions};
use authpulse_tests::moto::Moto;
use authpulse_tests::peers::OidcPeer;
use authpulse_tests::process::Process;
use authpulse_tests::saml_idp::{self, Options as SamlOptions, SamlIdp, Which};
use authpulse_tests::scim_peer::ScimPeer;
use authpulse_tests::slapd::{self, Slapd};
use authpulse_tests::{TempDir, wait_for};
use serde_json::Value;

const CC_SECRET: &str = "canary-cc-5f3e1d";
const ALICE_PW: &str = "canary-alice-a7c2b9";
const WRONG_LOGIN_PW: &str = "canary-wrong-login-8c1e";
const LDAP_WRONG_PW: &str = "canary-ldap-wrong-3b9d";
const SCIM_TOKEN: &str = "canary-scim-token-9e1d";
const HTTP_HEADER: &str = "canary-http-header-41aa";
const COGNITO_PW: &str = "Canary-cog-pw-77!";
/// SimpleSAMLphp's test user password is fixed by its config.
const SAML_PW: &str = "alice-pw";
const SAML_WRONG_PW: &str = "canary-saml-wrong-61fd";

fn catalog(
    issuer: &str,
    ldap: &str,
    moto: &str,
    (pool, pool_client): (&str, &str),
    scim: &str,
    engine: &str,
    saml: &SamlIdp,
) -> String {
    format!(
        r#"probes:
  - id: cc
    kind: client_credentials
    interval: 3s
    timeout: 3s
    issuer: {issuer}
    client_id: probe-cc
    client_secret: {{ secret: cc_secret }}
    scope: [api:read]
  - id: login
    kind: authorization_code
    interval: 4s
    timeout: 4s
    issuer: {issuer}
    client_id: probe-web
    client_secret: {{ secret: web_secret }}
    redirect_uri: https://probe.invalid/cb
    username: alice
    password: {{ secret: alice_pw }}
  - id: login-wrong
    kind: authorization_code
    interval: 4s
    timeout: 4s
    issuer: {issuer}
    client_id: probe-web
    client_secret: {{ secret: web_secret }}
    redirect_uri: https://probe.invalid/cb
    username: alice
    password: {{ secret: wrong_login_pw }}
  - id: tokens
    kind: journey
    interval: 4s
    timeout: 4s
    steps:
      - name: login
        kind: password
        issuer: {issuer}
        client_id: probe-ropc
        client_secret: {{ secret: ropc_secret }}
        username: alice
        password: {{ secret: alice_pw }}
        scope: [openid, offline_access, profile]
      - name: idtoken
        kind: jwt_validate
        token: "{{{{ steps.login.id_token }}}}"
        issuer: {issuer}
        audience: probe-ropc
      - name: refreshed
        kind: refresh
        issuer: {issuer}
        client_id: probe-ropc
        client_secret: {{ secret: ropc_secret }}
        refresh_token: "{{{{ steps.login.refresh_token }}}}"
      - name: me
        kind: userinfo
        issuer: {issuer}
        token: "{{{{ steps.refreshed.access_token }}}}"
      - name: check
        kind: introspect
        issuer: {issuer}
        client_id: probe-ropc
        client_secret: {{ secret: ropc_secret }}
        token: "{{{{ steps.refreshed.access_token }}}}"
      - name: logout
        kind: revoke
        issuer: {issuer}
        client_id: probe-ropc
        client_secret: {{ secret: ropc_secret }}
        token: "{{{{ steps.refreshed.access_token }}}}"
        always: true
      - name: echo
        kind: http
        url: "{engine}/echo"
        headers: {{ Authorization: "Bearer {{{{ steps.login.access_token }}}}" }}
        expect: {{ status: [405] }}
  - id: ldap-ok
    kind: ldap
    interval: 3s
    timeout: 3s
    url: {ldap}
    bind_dn: "{user_dn}"
    password: {{ secret: ldap_pw }}
  - id: ldap-wrong
    kind: ldap
    interval: 3s
    timeout: 3s
    url: {ldap}
    bind_dn: "{user_dn}"
    password: {{ secret: ldap_wrong_pw }}
  - id: sts
    kind: aws_sts
    interval: 3s
    timeout: 3s
    region: eu-west-1
    endpoint: {moto}
    access_key_id: {{ secret: aws_key }}
    secret_access_key: {{ secret: aws_secret }}
  - id: iam
    kind: aws_iam_permission
    interval: 3s
    timeout: 3s
    endpoint: {moto}
    access_key_id: {{ secret: aws_key }}
    secret_access_key: {{ secret: aws_secret }}
    action: "iam:ListUsers"
    expect: allow
  - id: cognito
    kind: aws_cognito
    interval: 3s
    timeout: 3s
    endpoint: {moto}
    user_pool_id: {pool}
    client_id: {pool_client}
    username: probe
    password: {{ secret: cognito_pw }}
  - id: scim
    kind: scim
    interval: 4s
    timeout: 4s
    base_url: {scim}
    token: {{ secret: scim_token }}
  - id: spicedb
    kind: permission
    interval: 3s
    timeout: 3s
    engine: spicedb
    url: {engine}
    token: {{ secret: spicedb_key }}
    resource: document:plan
    permission: view
    subject: user:alice
    expect: deny
  - id: header
    kind: http
    interval: 3s
    timeout: 3s
    url: "{engine}/private"
    headers: {{ X-Api-Key: {{ secret: http_header }} }}
    expect: {{ status: [200] }}
  - id: saml
    kind: saml_login
    interval: 4s
    timeout: 4s
    idp_metadata_url: {saml_md}
    sp_entity_id: {saml_sp}
    acs_url: {saml_acs}
    sp_key: {{ secret: sp_key }}
    sign_request: true
    username: alice
    password: {{ secret: saml_pw }}
  - id: saml-wrong
    kind: saml_login
    interval: 4s
    timeout: 4s
    idp_metadata_url: {saml_md}
    sp_entity_id: {saml_sp}
    acs_url: {saml_acs}
    sp_key: {{ secret: sp_key }}
    sign_request: true
    username: alice
    password: {{ secret: saml_wrong_pw }}
"#,
        user_dn = slapd::USER_DN,
        saml_md = saml.metadata_url,
        saml_sp = saml.sp_entity_id,
        saml_acs = saml.acs_url,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_or_token_appears_in_any_output() {
    let dir = TempDir::new("ap-leak");
    let peer = OidcPeer::start_with_env(
        0,
        &[
            ("OIDC_PEER_CC_SECRET", CC_SECRET),
            ("OIDC_PEER_USER_PASSWORD", ALICE_PW),
        ],
    )
    .await;
    let ldap = Slapd::start().await;
    let moto = Moto::start().await;
    let aws = moto
        .setup(&format!(
            r#"
iam = client("iam")
iam.create_user(UserName="probe")
k = iam.create_access_key(UserName="probe")["AccessKey"]
iam.put_user_policy(UserName="probe", PolicyName="probe", PolicyDocument=json.dumps({{
    "Version": "2012-10-17",
    "Statement": [{{"Effect": "Allow", "Resource": "*",
                   "Action": ["sts:GetCallerIdentity", "iam:ListUsers"]}}]}}))
c = client("cognito-idp", region="eu-west-1")
pool = c.create_user_pool(PoolName="probes")["UserPool"]["Id"]
cl = c.create_user_pool_client(UserPoolId=pool, ClientName="app",
                               ExplicitAuthFlows=["USER_PASSWORD_AUTH"])["UserPoolClient"]
c.admin_create_user(UserPoolId=pool, Username="probe", TemporaryPassword="Temp-pw-123!",
                    MessageAction="SUPPRESS")
c.admin_set_user_password(UserPoolId=pool, Username="probe", Password="{COGNITO_PW}",
                          Permanent=True)
print(json.dumps({{"key": k["AccessKeyId"], "secret": k["SecretAccessKey"],
                  "pool": pool, "client": cl["ClientId"]}}))
"#
        ))
        .await;
    moto.enforce_auth().await;
    let s = |k: &str| aws[k].as_str().expect(k).to_string();
    let (aws_key, aws_secret) = (s("key"), s("secret"));
    let scim = ScimPeer::start(SCIM_TOKEN).await;
    let engine = DecisionServer::start(&[("alice", "read", "doc:plan")]).await;
    // SAML: the probe signs its AuthnRequests (required) and decrypts the
    // assertion with its SP key.
    let (sp_cert, sp_key) = saml_idp::sp_cert();
    let saml = SamlIdp::start(
        Which::SimpleSamlPhp,
        &SamlOptions {
            sp_cert: Some(sp_cert),
            encrypt_assertion: true,
            validate_authnrequest: Some(true),
            ..SamlOptions::default()
        },
    );

    let secrets_dir = dir.path().join("secrets");
    std::fs::create_dir_all(&secrets_dir).expect("secrets dir");
    let secrets: Vec<(&str, String)> = vec![
        ("cc_secret", CC_SECRET.into()),
        ("web_secret", "probe-web-secret".into()),
        ("ropc_secret", "probe-ropc-secret".into()),
        ("alice_pw", ALICE_PW.into()),
        ("wrong_login_pw", WRONG_LOGIN_PW.into()),
        ("ldap_pw", slapd::USER_PW.into()),
        ("ldap_wrong_pw", LDAP_WRONG_PW.into()),
        ("aws_key", aws_key.clone()),
        ("aws_secret", aws_secret.clone()),
        ("cognito_pw", COGNITO_PW.into()),
        ("scim_token", SCIM_TOKEN.into()),
        ("spicedb_key", SPICEDB_KEY.into()),
        ("http_header", HTTP_HEADER.into()),
        ("saml_pw", SAML_PW.into()),
        ("saml_wrong_pw", SAML_WRONG_PW.into()),
        ("sp_key", sp_key.clone()),
    ];
    for (name, value) in &secrets {
        std::fs::write(secrets_dir.join(name), value).expect("secret file");
    }
    let catalog_text = catalog(
        &peer.issuer,
        &ldap.url,
        &moto.url,
        (&s("pool"), &s("client")),
        &scim.base_url,
        &engine.url(),
        &saml,
    );
    let ids = [
        "cc",
        "login",
        "login-wrong",
        "tokens",
        "ldap-ok",
        "ldap-wrong",
        "sts",
        "iam",
        "cognito",
        "scim",
        "spicedb",
        "header",
        "saml",
        "saml-wrong",
    ];

    let env = vec![("AUTHPULSE_LOG".to_string(), "trace".to_string())];
    let mut fixture = CoordinatorFixture::start_opts(
        &dir,
        &catalog_text,
        CoordinatorOptions {
            env,
            ..CoordinatorOptions::default()
        },
    )
    .await;
    let grpc = fixture.grpc_port;
    let coord_dir = dir.path().join("coordinator-data");
    let api = fixture.api.clone();
    let mut coordinator = fixture.process.take().expect("running");
    let agent_dir = dir.path().join("agent-data");
    let agent_cfg = dir.path().join("agent.yaml");
    std::fs::write(
        &agent_cfg,
        format!(
            "agent_id: leak-test\nregion: local\ncoordinator: http://127.0.0.1:{grpc}\ninsecure: true\nlisten: 127.0.0.1:0\ndata_dir: {}\nsecrets_dir: {}\n",
            agent_dir.display(),
            secrets_dir.display()
        ),
    )
    .expect("agent config");
    let mut agent = Process::start(
        "authpulse-agent",
        &["--config", agent_cfg.to_str().expect("utf8")],
        &[("AUTHPULSE_LOG", "trace")],
        dir.path(),
    )
    .await;
    let agent_http = format!("http://{}", agent.line_after("listening on http://").await);

    // Every probe has run and its result reached the coordinator, twice
    // (so the second runs use the caches: JWKS, discovery).
    let client = reqwest::Client::new();
    let probes: Value = wait_for(
        Duration::from_secs(90),
        "two results of every probe",
        || {
            let client = client.clone();
            let api = api.clone();
            async move {
                let v: Value = client
                    .get(format!("{api}/api/v1/probes"))
                    .send()
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()?;
                let seen = v["probes"].as_array()?;
                let all = ids.iter().all(|id| {
                    seen.iter()
                        .any(|p| p["probe_id"] == *id && p["started_at"].as_str().is_some())
                });
                let stored = client
                    .get(format!("{api}/api/v1/agents"))
                    .send()
                    .await
                    .ok()?
                    .json::<Value>()
                    .await
                    .ok()?["agents"][0]["stored_total"]
                    .as_u64()?;
                (all && stored >= 2 * ids.len() as u64).then_some(v)
            }
        },
    )
    .await;
    // The run really exercised success and failure paths.
    let outcome = |id: &str| {
        probes["probes"]
            .as_array()
            .and_then(|a| a.iter().find(|p| p["probe_id"] == id))
            .map(|p| (p["outcome"].clone(), p["failure_class"].clone()))
            .unwrap_or_default()
    };
    for id in [
        "cc", "login", "tokens", "ldap-ok", "sts", "iam", "cognito", "scim", "spicedb", "saml",
    ] {
        assert_eq!(outcome(id).0, "success", "{id}: {probes:#}");
    }
    assert_eq!(outcome("login-wrong").1, "auth_rejected", "{probes:#}");
    assert_eq!(outcome("ldap-wrong").1, "auth_rejected", "{probes:#}");
    assert_eq!(outcome("header").1, "http_status", "{probes:#}");
    assert_eq!(outcome("saml-wrong").1, "auth_rejected", "{probes:#}");

    // Everything that left the agent, or that a person or tool can read.
    let get = |path: String| {
        let client = client.clone();
        async move {
            client
                .get(path)
                .send()
                .await
                .expect("GET")
                .text()
                .await
                .expect("body")
        }
    };
    let mut outputs: Vec<(String, Vec<u8>)> = vec![
        (
            "api probes".into(),
            get(format!("{api}/api/v1/probes")).await.into_bytes(),
        ),
        (
            "api slos".into(),
            get(format!("{api}/api/v1/slos")).await.into_bytes(),
        ),
        (
            "api agents".into(),
            get(format!("{api}/api/v1/agents")).await.into_bytes(),
        ),
        (
            "coordinator metrics".into(),
            get(format!("{api}/metrics")).await.into_bytes(),
        ),
        (
            "agent metrics".into(),
            get(format!("{agent_http}/metrics")).await.into_bytes(),
        ),
    ];
    agent.terminate().await;
    coordinator.terminate().await;
    outputs.push((
        "agent stdout".into(),
        agent.drain_stdout().join("\n").into_bytes(),
    ));
    outputs.push((
        "coordinator stdout".into(),
        coordinator.drain_stdout().join("\n").into_bytes(),
    ));
    outputs.push(("agent log".into(), agent.log_text().into_bytes()));
    outputs.push((
        "coordinator log".into(),
        coordinator.log_text().into_bytes(),
    ));
    assert!(
        agent.log_text().contains("TRACE"),
        "the agent logged at trace level"
    );
    for root in [&coord_dir, &agent_dir] {
        files_under(root, &mut outputs);
    }
    assert!(
        outputs.iter().any(|(n, _)| n.ends_with("authpulse.db")),
        "the database was searched"
    );
    let mut secrets: Vec<(String, String)> = secrets
        .into_iter()
        .map(|(n, v)| (n.to_string(), v))
        .collect();
    // Any one full line of the SP key's PEM body, not only the whole file.
    for (i, line) in sp_key
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= 40)
        .enumerate()
    {
        secrets.push((format!("sp_key line {i}"), line.to_string()));
    }
    let mut leaks = find(&outputs, &secrets);
    for (where_, bytes) in &outputs {
        // A JWT (header.payload) issued during the run.
        let text = String::from_utf8_lossy(bytes);
        if let Some(i) = text.find("eyJ")
            && text[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
                .count()
                > 40
        {
            leaks.push(format!(
                "a JWT in {where_}: {}…",
                &text[i..(i + 40).min(text.len())]
            ));
        }
    }
    assert!(leaks.is_empty(), "leaks:\n{}", leaks.join("\n"));
}

/// Every file under `root`, named by path, into `outputs`.
fn files_under(root: &std::path::Path, outputs: &mut Vec<(String, Vec<u8>)>) {
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                outputs.push((p.display().to_string(), std::fs::read(&p).expect("file")));
            }
        }
    }
}

/// Each `(name, value)` found in an output, with some context (the value
/// itself masked) to find the culprit.
fn find(outputs: &[(String, Vec<u8>)], needles: &[(String, String)]) -> Vec<String> {
    let mut leaks = Vec::new();
    for (where_, bytes) in outputs {
        for (name, value) in needles {
            if let Some(i) = bytes
                .windows(value.len())
                .position(|w| w == value.as_bytes())
            {
                let from = i.saturating_sub(120);
                let to = (i + value.len() + 60).min(bytes.len());
                let around =
                    String::from_utf8_lossy(&bytes[from..to]).replace(value.as_str(), "<SECRET>");
                leaks.push(format!("secret `{name}` in {where_}: …{around}…"));
            }
        }
    }
    leaks
}

/// The echo test's secret: quotes, a slash, a plus, spaces and an
/// ampersand, so its JSON, URL and base64 forms all differ from it.
const ECHO_KEY: &str = "Echo-canary \"q/u+o t&x\" 4b1f-77c2";

/// Percent-encoding with RFC 3986 unreserved characters kept; `space`
/// is what a space becomes (`+` in form bodies, `%20` in query strings).
fn percent(s: &str, space: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b' ' => space.to_string(),
            b if b.is_ascii_alphanumeric() || b"-._~".contains(&b) => (b as char).to_string(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

/// Standard base64 with padding (RFC 4648 §4).
fn base64(data: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// URL-safe base64 without padding (RFC 4648 §5).
fn base64_url(data: &[u8]) -> String {
    base64(data)
        .trim_end_matches('=')
        .replace('+', "-")
        .replace('/', "_")
}

/// What the echo server answers (always 500) for a path, given the key it
/// received in `X-Api-Key`.
fn echo_body(path: &str, key: &str) -> String {
    match path {
        "/json" => format!(
            r#"{{"error":"invalid_key","key":{}}}"#,
            serde_json::to_string(key).expect("json")
        ),
        "/form" => format!("error=invalid_key&key={}&retry=0", percent(key, "+")),
        "/query" => format!("rejected GET /cb?key={}&state=1", percent(key, "%20")),
        "/base64" => format!(
            "Authorization: Basic {} / token {}",
            base64(format!("probe:{key}").as_bytes()),
            base64_url(key.as_bytes())
        ),
        // The key straddles where a detail is cut (200 characters).
        "/cut" => format!("{}{key} (end)", "x".repeat(190)),
        // The server cut its own echo short.
        "/self-cut" => format!("invalid key {}", key.get(..14).unwrap_or(key)),
        _ => "no such echo".into(),
    }
}

/// An HTTP/1.1 server on loopback that answers every request with 500 and
/// [`echo_body`] for its path and `X-Api-Key` header.
async fn echo_server() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                let key = head
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("x-api-key")
                            .then(|| value.trim().to_string())
                    })
                    .unwrap_or_default();
                let body = echo_body(&path, &key);
                let reply = format!(
                    "HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(reply.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}")
}

/// A server that echoes the secret it was sent — JSON-escaped, URL-encoded
/// (form and query), base64 (alone and inside an HTTP Basic credential),
/// straddling the 200-character cut, and cut short by the server itself —
/// through real binaries: no form of it, nor its first 10 characters,
/// reaches the API, the logs, the metrics, the database or the spool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_echoed_in_any_encoding_is_redacted_everywhere() {
    let dir = TempDir::new("ap-leak-echo");
    let echo = echo_server().await;
    let secrets_dir = dir.path().join("secrets");
    std::fs::create_dir_all(&secrets_dir).expect("secrets dir");
    std::fs::write(secrets_dir.join("echo_key"), ECHO_KEY).expect("secret file");
    let paths = ["json", "form", "query", "base64", "cut", "self-cut"];
    let mut catalog = String::from("probes:\n");
    for p in paths {
        catalog.push_str(&format!(
            "  - id: echo-{p}\n    kind: http\n    interval: 2s\n    timeout: 2s\n    \
             url: {echo}/{p}\n    headers: {{ X-Api-Key: {{ secret: echo_key }} }}\n    \
             expect: {{ status: [200] }}\n"
        ));
    }
    let catalog_text = catalog;

    let trace = [("AUTHPULSE_LOG", "trace")];
    let env = vec![("AUTHPULSE_LOG".to_string(), "trace".to_string())];
    let mut fixture = CoordinatorFixture::start_opts(
        &dir,
        &catalog_text,
        CoordinatorOptions {
            env,
            ..CoordinatorOptions::default()
        },
    )
    .await;
    let grpc = fixture.grpc_port;
    let coord_dir = dir.path().join("coordinator-data");
    let api = fixture.api.clone();
    let mut coordinator = fixture.process.take().expect("running");
    let agent_dir = dir.path().join("agent-data");
    let agent_cfg = dir.path().join("agent.yaml");
    std::fs::write(
        &agent_cfg,
        format!(
            "agent_id: leak-echo\nregion: local\ncoordinator: http://127.0.0.1:{grpc}\ninsecure: true\nlisten: 127.0.0.1:0\ndata_dir: {}\nsecrets_dir: {}\n",
            agent_dir.display(),
            secrets_dir.display()
        ),
    )
    .expect("agent config");
    let mut agent = Process::start(
        "authpulse-agent",
        &["--config", agent_cfg.to_str().expect("utf8")],
        &trace,
        dir.path(),
    )
    .await;
    let agent_http = format!("http://{}", agent.line_after("listening on http://").await);

    let client = reqwest::Client::new();
    let probes: Value = wait_for(
        Duration::from_secs(60),
        "a result of every echo probe",
        || {
            let client = client.clone();
            let api = api.clone();
            async move {
                let v: Value = client
                    .get(format!("{api}/api/v1/probes"))
                    .send()
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()?;
                let seen = v["probes"].as_array()?;
                paths
                    .iter()
                    .all(|p| {
                        seen.iter().any(|r| {
                            r["probe_id"] == format!("echo-{p}") && r["detail"].as_str().is_some()
                        })
                    })
                    .then_some(v)
            }
        },
    )
    .await;
    // The echoes really arrived: each detail quotes the body, the secret
    // replaced (the self-cut one has only a prefix, which is removed).
    for p in paths {
        let r = probes["probes"]
            .as_array()
            .and_then(|a| a.iter().find(|r| r["probe_id"] == format!("echo-{p}")))
            .expect("result");
        let detail = r["detail"].as_str().unwrap_or_default();
        assert_eq!(r["failure_class"], "http_status", "{p}: {r}");
        if p == "self-cut" {
            assert!(detail.trim_end().ends_with("invalid key"), "{p}: {detail}");
        } else {
            assert!(detail.contains("[redacted]"), "{p}: {detail}");
        }
    }

    let get = |path: String| {
        let client = client.clone();
        async move {
            client
                .get(path)
                .send()
                .await
                .expect("GET")
                .bytes()
                .await
                .expect("body")
                .to_vec()
        }
    };
    let mut outputs: Vec<(String, Vec<u8>)> = vec![
        (
            "api probes".into(),
            get(format!("{api}/api/v1/probes")).await,
        ),
        (
            "api agents".into(),
            get(format!("{api}/api/v1/agents")).await,
        ),
        (
            "coordinator metrics".into(),
            get(format!("{api}/metrics")).await,
        ),
        (
            "agent metrics".into(),
            get(format!("{agent_http}/metrics")).await,
        ),
    ];
    agent.terminate().await;
    coordinator.terminate().await;
    outputs.push((
        "agent stdout".into(),
        agent.drain_stdout().join("\n").into_bytes(),
    ));
    outputs.push(("agent log".into(), agent.log_text().into_bytes()));
    outputs.push((
        "coordinator log".into(),
        coordinator.log_text().into_bytes(),
    ));
    files_under(&coord_dir, &mut outputs);
    files_under(&agent_dir, &mut outputs);

    let json = serde_json::to_string(ECHO_KEY).expect("json");
    let basic = base64(format!("probe:{ECHO_KEY}").as_bytes());
    let needles: Vec<(String, String)> = [
        ("as is", ECHO_KEY.to_string()),
        ("JSON-escaped", json[1..json.len() - 1].to_string()),
        ("form-encoded", percent(ECHO_KEY, "+")),
        ("query-encoded", percent(ECHO_KEY, "%20")),
        ("base64", base64(ECHO_KEY.as_bytes())),
        ("base64url", base64_url(ECHO_KEY.as_bytes())),
        (
            "in a Basic credential",
            basic[basic.len() - 16..].to_string(),
        ),
        ("its first 10 characters", ECHO_KEY[..10].to_string()),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_string(), v))
    .collect();
    let leaks = find(&outputs, &needles);
    assert!(leaks.is_empty(), "leaks:\n{}", leaks.join("\n"));
}
