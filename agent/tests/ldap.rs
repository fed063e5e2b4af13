//! The `ldap` kind against a private OpenLDAP slapd (tests/src/slapd.rs):
//! binds, searches, group membership over both the memberOf overlay and
//! the group entry, ldaps and StartTLS with a trusted and an untrusted CA,
//! and the transport failures (refused, silent server).
use std::time::Duration;

use authpulse_agent::http::NetContext;
use authpulse_agent::probes::{self, ProbeOutcome};
use authpulse_agent::secrets::SecretStore;
use authpulse_proto::catalog;
use authpulse_proto::v1::FailureClass;
use authpulse_tests::TempDir;
use authpulse_tests::slapd::{self, Slapd};
use authpulse_tests::tls::TlsFixture;

/// Runs the one probe in `yaml` with the secret `ldap_pw` = `password`.
async fn run(yaml: &str, password: &str) -> ProbeOutcome {
    authpulse_tests::crypto();
    let secrets = TempDir::new("ldap-secrets");
    std::fs::write(secrets.path().join("ldap_pw"), password).expect("secret");
    let cat =
        catalog::load_str("t.yaml", &format!("probes:\n{yaml}")).unwrap_or_else(|e| panic!("{e}"));
    let net = NetContext::new().expect("net");
    let store = SecretStore::new(Some(secrets.path().to_path_buf()));
    let o = probes::run(&cat.probes[0], &net, &store, &Default::default()).await;
    // Shown for failing tests (and with --nocapture): what an SRE would read.
    eprintln!("outcome: {}", o.detail);
    o
}

fn probe(url: &str, extra: &str) -> String {
    format!(
        "  - id: l\n    kind: ldap\n    timeout: 5s\n    url: {url}\n    bind_dn: \"{}\"\n    password: {{ secret: ldap_pw }}\n{extra}",
        slapd::USER_DN
    )
}

fn class(o: &ProbeOutcome) -> Option<FailureClass> {
    o.failure.as_ref().map(|f| f.class)
}

fn step_names(o: &ProbeOutcome) -> Vec<&str> {
    o.steps.iter().map(|s| s.name.as_str()).collect()
}

#[tokio::test]
async fn bind_ok_with_timed_steps() {
    let ldap = Slapd::start().await;
    let o = run(&probe(&ldap.url, ""), slapd::USER_PW).await;
    assert!(o.success(), "{o:?}\n{}", ldap.log());
    assert_eq!(step_names(&o), ["connect", "bind"]);
    assert!(o.steps[0].timings.connect.is_some());
    assert_eq!(o.timings.dns, None, "an address needs no lookup");
    assert_eq!(o.timings.tls, None, "plain ldap:// has no TLS");
    assert!(o.steps[1].timings.ttfb.is_some());
    assert!(
        o.steps[1]
            .detail
            .starts_with(&format!("bound as {}", slapd::USER_DN)),
        "{}",
        o.steps[1].detail
    );
}

#[tokio::test]
async fn wrong_password_is_auth_rejected_and_redacted() {
    let ldap = Slapd::start().await;
    let wrong = "not-the-password-42";
    let o = run(&probe(&ldap.url, ""), wrong).await;
    assert_eq!(class(&o), Some(FailureClass::AuthRejected), "{o:?}");
    assert!(o.detail.contains("invalidCredentials (49)"), "{}", o.detail);
    assert!(o.detail.contains(slapd::USER_DN), "{}", o.detail);
    assert!(!format!("{o:?}").contains(wrong));
}

#[tokio::test]
async fn membership_via_memberof_and_via_group_entry() {
    let ldap = Slapd::start().await;
    for mode in ["auto", "attribute", "group"] {
        let o = run(
            &probe(
                &ldap.url,
                &format!(
                    "    member_of: \"{}\"\n    membership: {mode}\n",
                    slapd::GROUP_DN
                ),
            ),
            slapd::USER_PW,
        )
        .await;
        assert!(o.success(), "{mode}: {o:?}");
        assert_eq!(step_names(&o), ["connect", "bind", "member_of"], "{mode}");
        let via = if mode == "group" {
            "(group entry)"
        } else {
            "(memberOf)"
        };
        assert!(
            o.steps[2].detail.contains(via),
            "{mode}: {}",
            o.steps[2].detail
        );
    }
}

#[tokio::test]
async fn not_a_member_is_assertion() {
    let ldap = Slapd::start().await;
    let o = run(
        &probe(
            &ldap.url,
            &format!("    member_of: \"{}\"\n", slapd::OTHER_GROUP_DN),
        ),
        slapd::USER_PW,
    )
    .await;
    assert_eq!(class(&o), Some(FailureClass::Assertion), "{o:?}");
    assert!(o.detail.contains("is not a member of"), "{}", o.detail);
    // The SRE sees which groups the user is in.
    assert!(o.detail.contains(slapd::GROUP_DN), "{}", o.detail);

    let o = run(
        &probe(
            &ldap.url,
            "    member_of: \"cn=ghosts,ou=groups,dc=example,dc=org\"\n    membership: group\n",
        ),
        slapd::USER_PW,
    )
    .await;
    assert_eq!(class(&o), Some(FailureClass::Assertion), "{o:?}");
    assert!(o.detail.contains("does not exist"), "{}", o.detail);
}

#[tokio::test]
async fn search_expectations() {
    let ldap = Slapd::start().await;
    let search = |filter: &str, min: usize, attrs: &str| {
        format!(
            "    search:\n      base: \"ou=people,dc=example,dc=org\"\n      filter: \"{filter}\"\n      min_entries: {min}\n      attributes: [{attrs}]\n"
        )
    };
    // Both users, each with a cn.
    let o = run(
        &probe(&ldap.url, &search("(objectClass=inetOrgPerson)", 2, "cn")),
        slapd::USER_PW,
    )
    .await;
    assert!(o.success(), "{o:?}");
    assert_eq!(step_names(&o), ["connect", "bind", "search"]);
    assert!(
        o.steps[2].detail.starts_with("2 entries"),
        "{}",
        o.steps[2].detail
    );

    let o = run(
        &probe(&ldap.url, &search("(uid=nobody)", 1, "")),
        slapd::USER_PW,
    )
    .await;
    assert_eq!(class(&o), Some(FailureClass::Assertion), "{o:?}");
    assert!(
        o.detail.contains("returned 0 entries, expected at least 1"),
        "{}",
        o.detail
    );

    // Only the probe user has a mail address.
    let o = run(
        &probe(&ldap.url, &search("(objectClass=inetOrgPerson)", 2, "mail")),
        slapd::USER_PW,
    )
    .await;
    assert_eq!(class(&o), Some(FailureClass::Assertion), "{o:?}");
    assert!(
        o.detail
            .contains("uid=other,ou=people,dc=example,dc=org has no `mail`"),
        "{}",
        o.detail
    );

    // A base that doesn't exist is the server's error, named.
    let o = run(
        &probe(
            &ldap.url,
            "    search:\n      base: \"ou=nowhere,dc=example,dc=org\"\n",
        ),
        slapd::USER_PW,
    )
    .await;
    assert_eq!(class(&o), Some(FailureClass::Protocol), "{o:?}");
    assert!(o.detail.contains("noSuchObject (32)"), "{}", o.detail);
}

#[tokio::test]
async fn ldaps_and_starttls_with_the_test_ca() {
    let ldap = Slapd::start().await;
    let ca = ldap.write_ca();
    let tls = format!("    tls:\n      ca_file: {}\n", ca.display());
    let o = run(&probe(&ldap.ldaps_url, &tls), slapd::USER_PW).await;
    assert!(o.success(), "ldaps: {o:?}\n{}", ldap.log());
    assert_eq!(step_names(&o), ["connect", "tls", "bind"]);
    assert!(o.timings.tls.is_some());
    assert!(
        o.steps[1].detail.starts_with("TLS handshake"),
        "{}",
        o.steps[1].detail
    );

    let o = run(
        &probe(&ldap.url, &format!("    starttls: true\n{tls}")),
        slapd::USER_PW,
    )
    .await;
    assert!(o.success(), "StartTLS: {o:?}\n{}", ldap.log());
    assert_eq!(step_names(&o), ["connect", "tls", "bind"]);
    assert!(
        o.steps[1].detail.starts_with("StartTLS"),
        "{}",
        o.steps[1].detail
    );
}

#[tokio::test]
async fn untrusted_ca_is_tls() {
    let ldap = Slapd::start().await;
    let dir = TempDir::new("ldap-other-ca");
    let other = TlsFixture::new().write_ca(dir.path());
    let tls = format!("    tls:\n      ca_file: {}\n", other.display());
    for (url, extra) in [
        (ldap.ldaps_url.as_str(), tls.clone()),
        (ldap.url.as_str(), format!("    starttls: true\n{tls}")),
    ] {
        let o = run(&probe(url, &extra), slapd::USER_PW).await;
        assert_eq!(class(&o), Some(FailureClass::Tls), "{url}: {o:?}");
        assert_eq!(step_names(&o), ["connect", "tls"]);
        assert!(
            o.detail.contains("UnknownIssuer") || o.detail.contains("unknown issuer"),
            "{url}: {}",
            o.detail
        );
    }
    // insecure_skip_verify trusts anything.
    let o = run(
        &probe(
            &ldap.ldaps_url,
            "    tls:\n      insecure_skip_verify: true\n",
        ),
        slapd::USER_PW,
    )
    .await;
    assert!(o.success(), "{o:?}");
}

#[tokio::test]
async fn refused_is_connect_and_silent_server_is_timeout() {
    let port = authpulse_tests::fleet::free_port();
    let o = run(
        &probe(&format!("ldap://127.0.0.1:{port}"), ""),
        slapd::USER_PW,
    )
    .await;
    assert_eq!(class(&o), Some(FailureClass::Connect), "{o:?}");
    assert!(o.detail.contains("connect to 127.0.0.1:"), "{}", o.detail);

    // Accepts, never answers: the bind must give up at the deadline.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let started = std::time::Instant::now();
    let o = run(
        &probe(&format!("ldap://{addr}"), "").replace("timeout: 5s", "timeout: 1s"),
        slapd::USER_PW,
    )
    .await;
    assert_eq!(class(&o), Some(FailureClass::Timeout), "{o:?}");
    assert!(o.detail.contains("timed out binding"), "{}", o.detail);
    assert!(started.elapsed() < Duration::from_secs(3));
    hold.abort();
}
