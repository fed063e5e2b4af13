//! The SAML kinds through the real binaries, like any other kind: the
//! operator's `authpulse probe` logs in to each real SAML IdP
//! (SimpleSAMLphp, djangosaml2idp) and validates the assertion; an agent
//! probing SimpleSAMLphp for a coordinator feeds an SLO and a deploy gate
//! that pass while the IdP works and fail when it stops; the IdP signing
//! certificate's days to expiry appear in the agent's `/metrics`.
use std::process::Command;
use std::time::Duration;

use authpulse_tests::fleet::{AgentFixture, CoordinatorFixture};
use authpulse_tests::saml_idp::{Options, SamlIdp, Which};
use authpulse_tests::{TempDir, bin, wait_for};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

/// A `saml_login` probe `id` for `idp` at `interval` (alice's password is
/// the secret `saml_pw`; the timeout is the interval), asking for the username as NameID.
fn saml_login(id: &str, idp: &SamlIdp, interval: &str) -> String {
    format!(
        "  - id: {id}\n    kind: saml_login\n    interval: {interval}\n    timeout: {interval}\n    \
         idp_metadata_url: {}\n    sp_entity_id: {}\n    acs_url: {}\n    username: alice\n    \
         password: {{ secret: saml_pw }}\n    \
         name_id_format: urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified\n    \
         expect:\n      name_id: \"^alice$\"\n      attributes:\n        mail: alice@example.test\n",
        idp.metadata_url, idp.sp_entity_id, idp.acs_url
    )
}

fn secrets(dir: &TempDir) -> std::path::PathBuf {
    let d = dir.path().join("secrets");
    std::fs::create_dir_all(&d).expect("secrets dir");
    std::fs::write(d.join("saml_pw"), "alice-pw").expect("secret");
    d
}

/// `authpulse probe --catalog C sso --json` against each IdP: exit 0, the
/// validated identity in the outputs; the wrong password exits 1 with
/// `auth_rejected`.
#[test]
fn authpulse_probe_logs_in_to_each_saml_idp() {
    for which in [Which::SimpleSamlPhp, Which::DjangoSaml2Idp] {
        let opts = match which {
            Which::SimpleSamlPhp => Options::default(),
            // djangosaml2idp signs nothing unless told.
            Which::DjangoSaml2Idp => Options {
                sign_assertion: Some(true),
                ..Options::default()
            },
        };
        let idp = SamlIdp::start(which, &opts);
        let dir = TempDir::new("ap-saml-cli");
        let secrets_dir = secrets(&dir);
        std::fs::write(secrets_dir.join("wrong_pw"), "not-alice-pw-5520").expect("secret");
        let cat = dir.path().join("c.yaml");
        let text = format!("probes:\n{}", saml_login("sso", &idp, "20s"));
        let wrong = text
            .replace("id: sso", "id: wrong")
            .replace("secret: saml_pw", "secret: wrong_pw");
        std::fs::write(&cat, format!("{text}{}", &wrong["probes:\n".len()..])).expect("catalog");
        let run = |id: &str| {
            let out = Command::new(bin("authpulse"))
                .args(["probe", "--catalog"])
                .arg(&cat)
                .arg(id)
                .arg("--json")
                .arg("--secrets-dir")
                .arg(&secrets_dir)
                .output()
                .expect("run authpulse");
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            let v: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
                panic!(
                    "{which:?} {id}: {e}: {stdout}{}\n{}",
                    String::from_utf8_lossy(&out.stderr),
                    idp.log()
                )
            });
            (out.status.code(), v)
        };

        let (code, v) = run("sso");
        assert_eq!(code, Some(0), "{which:?}: {v:#}\n{}", idp.log());
        assert_eq!(v["outcome"], "success", "{v:#}");
        let names: Vec<&str> = v["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .filter_map(|s| s["name"].as_str())
            .collect();
        assert_eq!(names, ["metadata", "sso", "login", "assertion"], "{v:#}");
        let text = v.to_string();
        assert!(text.contains("NameID alice"), "{which:?}: {v:#}");
        assert!(!text.contains("alice-pw"), "the password leaked: {v:#}");

        let (code, v) = run("wrong");
        assert_eq!(code, Some(1), "{which:?}: {v:#}");
        assert_eq!(v["failure_class"], "auth_rejected", "{which:?}: {v:#}");
        assert!(!v.to_string().contains("not-alice-pw"), "{v:#}");
    }
}

/// The `use="signing"` series of the SAML certificate gauge for `probe`.
fn days_left(metrics: &str, probe: &str) -> Option<f64> {
    let want =
        format!("authpulse_agent_saml_certificate_days_left{{probe=\"{probe}\",use=\"signing\"}}");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(want.as_str()))
        .and_then(|v| v.trim().parse().ok())
}

/// A coordinator with an SLO and a gate on a `saml_login` probe, and a
/// `saml_metadata` probe, fed by a real agent probing SimpleSAMLphp.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slos_gates_and_metrics_read_the_saml_kinds() {
    let dir = TempDir::new("ap-saml-fleet");
    let idp = SamlIdp::start(Which::SimpleSamlPhp, &Options::default());
    let catalog = format!(
        "probes:\n{}  - id: meta\n    kind: saml_metadata\n    interval: 2s\n    timeout: 2s\n    \
         url: {}\n    entity_id: {}\n    min_cert_days: 30\n\
slos:\n  - id: app-sign-in\n    probes: [sso]\n    objective: 99\n    window: 1h\n\
gates:\n  - id: deploy\n    slos: [app-sign-in]\n    \
         block_when: [{{ sli_below: {{ window: 1m, value: 0.9 }} }}]\n",
        saml_login("sso", &idp, "2s"),
        idp.metadata_url,
        idp.entity_id
    );
    let coord = CoordinatorFixture::start(&dir, &catalog).await;
    let secrets_dir = secrets(&dir);
    let agent = AgentFixture::start(
        &dir,
        "saml-agent",
        &coord.grpc_url(),
        &format!("secrets_dir: {}\n", secrets_dir.display()),
    )
    .await;
    let client = reqwest::Client::new();
    let api = coord.api.clone();
    let gate = |want: u16| {
        let client = client.clone();
        let api = api.clone();
        async move {
            let r = client
                .get(format!("{api}/api/v1/gates/deploy"))
                .send()
                .await
                .ok()?;
            (r.status().as_u16() == want).then_some(())?;
            r.json::<Value>().await.ok()
        }
    };

    // Logins succeed: the SLO counts them, the gate passes.
    let v = wait_for(WAIT, "the gate to pass on SAML logins", || gate(200)).await;
    assert_eq!(v["decision"], "pass", "{v:#}");
    assert_eq!(v["slos"][0]["id"], "app-sign-in", "{v:#}");
    let slos: Value = client
        .get(format!("{api}/api/v1/slos"))
        .send()
        .await
        .expect("slos")
        .json()
        .await
        .expect("json");
    let slo = slos["slos"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["id"] == "app-sign-in"))
        .unwrap_or_else(|| panic!("{slos:#}"))
        .clone();
    // The SLO counts the SAML logins as good events.
    assert!(slo["good"].as_u64() >= Some(1), "{slo:#}");
    assert_eq!(slo["good"], slo["total"], "{slo:#}");

    // The metadata probe's certificate gauge: the IdP's certificate runs
    // from yesterday for a year.
    let days = wait_for(WAIT, "the certificate gauge", || async {
        days_left(&agent.metrics(&client).await?, "meta")
    })
    .await;
    assert!((363.0..365.0).contains(&days), "{days}");

    // The IdP stops: logins fail, the SLO's recent SLI drops, the gate fails.
    let log = idp.log();
    drop(idp);
    let v = wait_for(WAIT, "the gate to fail with the IdP down", || gate(503)).await;
    assert_eq!(v["decision"], "fail", "{v:#}\n{log}");
    let reasons = v["reasons"].to_string();
    assert!(reasons.contains("app-sign-in"), "{reasons}");
    let probes: Value = client
        .get(format!("{api}/api/v1/probes"))
        .send()
        .await
        .expect("probes")
        .json()
        .await
        .expect("json");
    let sso = probes["probes"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["probe_id"] == "sso"))
        .unwrap_or_else(|| panic!("{probes:#}"));
    assert_eq!(sso["outcome"], "failure", "{sso:#}");
    assert_eq!(sso["failure_class"], "connect", "{sso:#}");
}
