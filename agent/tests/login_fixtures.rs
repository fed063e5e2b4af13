//! The engine's page reading on HTML saved from the real IdPs
//! (agent/tests/fixtures/login/<idp>/): classification, the button chosen,
//! the IdP's message, and the data a submission carries.
use authpulse_agent::login::buttons::{self, Choice};
use authpulse_agent::login::form;
use authpulse_agent::login::page::{self, Class, Hints, Page, Parsed, ReadOptions};

fn read(idp: &str, name: &str) -> Parsed {
    let path = format!(
        "{}/tests/fixtures/login/{idp}/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let body = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let page = Page {
        url: url::Url::parse("http://127.0.0.1:8000/account/login/?next=/x").expect("url"),
        status: http::StatusCode::OK,
        body,
    };
    page::read(
        &page,
        &ReadOptions {
            form_selector: None,
            consent_button: None,
            steps: &[],
        },
    )
}

fn class(p: &Parsed) -> Class {
    page::classify(p, Hints::default())
}

fn chosen(p: &Parsed) -> String {
    let all: Vec<usize> = (0..p.buttons.len()).collect();
    let target = |b: &form::Button| {
        p.forms
            .get(b.form)
            .and_then(|f| p.form_target(f, Some(b)))
            .map(|u| u.path().to_string())
    };
    match buttons::choose(&p.buttons, &p.forms, &all, target, true) {
        Choice::Click(i) => p.buttons[i].label(),
        Choice::Unclear(l) => format!("unclear: {l:?}"),
    }
}

#[test]
fn django_oidc_provider_pages() {
    let login = read("django-oidc-provider", "login.html");
    assert!(
        matches!(class(&login), Class::Password { ref user, ref pass, .. }
            if user.as_deref() == Some("auth-username") && pass == "auth-password"),
        "{:?}",
        class(&login)
    );
    let wrong = read("django-oidc-provider", "login-wrong-password.html");
    assert_eq!(
        wrong.message_since(Some(&login)).as_deref(),
        Some(
            "Please enter a correct username and password. Note that both fields may be case-sensitive."
        )
    );
    let totp = read("django-oidc-provider", "totp.html");
    assert!(
        matches!(class(&totp), Class::Otp { ref field, .. } if field == "token-otp_token"),
        "{:?}",
        class(&totp)
    );
    // Back (wizard_goto_step) comes before Next: Next is clicked.
    let f = &totp.forms[0];
    let target = |_: &form::Button| None;
    match buttons::choose(&totp.buttons, &totp.forms, &f.buttons, target, false) {
        Choice::Click(i) => assert_eq!(totp.buttons[i].label(), "Next"),
        other => panic!("{other:?}"),
    }
    let consent = read("django-oidc-provider", "consent.html");
    assert_eq!(class(&consent), Class::Buttons);
    assert_eq!(chosen(&consent), "Authorize");
    // The data a click on Authorize sends: hidden fields and allow=Authorize,
    // not Decline.
    let b = consent
        .buttons
        .iter()
        .find(|b| b.label() == "Authorize")
        .expect("button");
    let sub = form::submit(
        &consent.forms[b.form],
        Some(b),
        &[],
        &consent.base,
        &consent.url,
    )
    .expect("submit");
    assert_eq!(sub.url.path(), "/openid/authorize");
    assert!(sub.pairs.contains(&("allow".into(), "Authorize".into())));
    assert!(
        sub.pairs
            .iter()
            .any(|(n, v)| n == "client_id" && v == "probe-web")
    );
    assert!(!sub.pairs.iter().any(|(_, v)| v == "Decline"));
    let error = read("django-oidc-provider", "error-redirect-uri.html");
    assert_eq!(class(&error), Class::DeadEnd);
    assert!(
        error.error_text().contains("mismatching redirection URI"),
        "{}",
        error.error_text()
    );
}

#[test]
fn django_allauth_pages() {
    let login = read("django-allauth", "login.html");
    assert!(
        matches!(class(&login), Class::Password { .. }),
        "{:?}",
        class(&login)
    );
    let wrong = read("django-allauth", "login-wrong-password.html");
    assert_eq!(
        wrong.message_since(Some(&login)).as_deref(),
        Some("The username and/or password you specified are not correct.")
    );
    let totp = read("django-allauth", "totp.html");
    assert!(matches!(class(&totp), Class::Otp { ref field, .. } if field == "code"));
    // Cancel belongs to the logout form (form="logout-from-stage").
    let cancel = totp
        .buttons
        .iter()
        .find(|b| b.label() == "Cancel")
        .expect("cancel");
    assert_eq!(totp.forms[cancel.form].id, "logout-from-stage");
    let trust = read("django-allauth", "trust.html");
    assert_eq!(
        class(&trust),
        Class::Buttons,
        "the logout form is not an auto-post"
    );
    assert_eq!(chosen(&trust), "Trust for 2 weeks");
    let consent = read("django-allauth", "consent.html");
    assert_eq!(chosen(&consent), "Authorize");
    let b = consent
        .buttons
        .iter()
        .find(|b| b.label() == "Authorize")
        .expect("button");
    let sub = form::submit(
        &consent.forms[b.form],
        Some(b),
        &[],
        &consent.base,
        &consent.url,
    )
    .expect("submit");
    assert!(sub.pairs.contains(&("action".into(), "grant".into())));
    assert!(
        sub.pairs.contains(&("scopes".into(), "openid".into())),
        "checked box sent"
    );
    let error = read("django-allauth", "error-redirect-uri.html");
    assert!(
        error.error_text().contains("Mismatching redirect URI."),
        "{}",
        error.error_text()
    );
}

#[test]
fn browser_like_submission() {
    let html = r#"<html><head><base href="http://idp.example/base/"></head><body>
<form id="f" action="" method="post" enctype="multipart/form-data">
  <input type="hidden" name="csrf" value="t1">
  <input type="checkbox" name="remember" checked>
  <input type="checkbox" name="spam" value="yes">
  <input type="radio" name="r" value="a"><input type="radio" name="r" value="b" checked>
  <select name="s"><option value="1">one</option><option value="2">two</option></select>
  <select name="t"><option>x</option><option selected>y</option></select>
  <textarea name="note">hi</textarea>
  <input name="off" value="z" disabled>
  <button name="go" value="1" formaction="next" formmethod="get">Next</button>
  <button name="alt" value="2">Other</button>
</form>
<input form="f" name="outside" value="o">
</body></html>"#;
    let page = Page {
        url: url::Url::parse("http://idp.example/login?x=1").expect("url"),
        status: http::StatusCode::OK,
        body: html.into(),
    };
    let p = page::read(
        &page,
        &ReadOptions {
            form_selector: None,
            consent_button: None,
            steps: &[],
        },
    );
    let f = &p.forms[0];
    let other = &p.buttons[1];
    let sub = form::submit(f, Some(other), &[], &p.base, &p.url).expect("submit");
    // Empty action: the page's own URL (not <base>); multipart.
    assert_eq!(sub.url.as_str(), "http://idp.example/login?x=1");
    assert!(sub.enctype.starts_with("multipart/form-data; boundary="));
    let names: Vec<(&str, &str)> = sub
        .pairs
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("csrf", "t1"),
            ("remember", "on"),
            ("r", "b"),
            ("s", "1"),
            ("t", "y"),
            ("note", "hi"),
            ("alt", "2"),
            ("outside", "o")
        ]
    );
    let body = String::from_utf8(sub.body.expect("body").1).expect("utf8");
    assert!(
        body.contains("Content-Disposition: form-data; name=\"alt\"\r\n\r\n2\r\n"),
        "{body}"
    );
    // formaction (relative to <base>) and formmethod=get on the clicked button.
    let next = &p.buttons[0];
    let sub = form::submit(
        f,
        Some(next),
        &[("note".into(), "typed".into())],
        &p.base,
        &p.url,
    )
    .expect("submit");
    assert_eq!(sub.method, http::Method::GET);
    assert_eq!(sub.url.path(), "/base/next");
    assert!(
        sub.url
            .query()
            .is_some_and(|q| q.contains("go=1") && q.contains("note=typed"))
    );
}
