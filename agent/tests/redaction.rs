//! Redaction as a property: for random secrets, random text around them and
//! each way a server may echo a secret (as is, JSON-escaped, URL-encoded
//! with `+` or `%20`, in either hex case, base64 in all four variants, inside
//! an HTTP Basic blob), the detail the agent would send — a quote of the
//! body, redacted and cut to 200 characters — contains no encoding of the
//! secret and does not end with 8 or more of its leading characters, also
//! when the server cut its echo short (at the end of the body, or where the
//! 200-character cut falls). The
//! encodings here are computed independently of the redactor (serde_json,
//! url, base64).
use authpulse_agent::probes::snippet;
use authpulse_agent::secrets::{REDACTED, Redactor};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use proptest::prelude::*;

/// Secret characters: letters, digits, the punctuation encodings care
/// about, non-ASCII (two-, three- and four-byte UTF-8). No `[`/`]`, so no
/// encoding can be formed across the `[redacted]` marker and its neighbours.
const SECRET_CHARS: &[char] = &[
    'a', 'b', 'k', 'Q', 'Z', '0', '7', '9', ' ', '"', '\\', '/', '+', '&', '%', '=', '?', ':', '@',
    '-', '_', '.', '~', '\'', '<', 'é', '€', '😀',
];

/// Text around the echo: ordinary words and punctuation, some non-ASCII.
const TEXT_CHARS: &[char] = &[
    'x', 'y', 'e', 'r', 'o', ' ', ' ', ':', ',', '{', '}', '"', '=', '%', '+', 'é', '1',
];

fn from(chars: &'static [char], len: std::ops::Range<usize>) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(chars), len).prop_map(|v| v.into_iter().collect())
}

fn form_encoded(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn lower_hex(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '%' {
            for _ in 0..2 {
                if let Some(h) = chars.next() {
                    out.push(h.to_ascii_lowercase());
                }
            }
        }
    }
    out
}

/// Every encoding of `secret` a server might echo, computed with the
/// reference encoders.
fn encodings(secret: &str) -> Vec<String> {
    let json = serde_json::to_string(secret).expect("json");
    let form = form_encoded(secret);
    // `+` in form encoding is always a space (a literal `+` is `%2B`).
    let path = form.replace('+', "%20");
    let mut out = vec![
        secret.to_string(),
        json[1..json.len() - 1].to_string(),
        lower_hex(&form),
        lower_hex(&path),
        form,
        path,
    ];
    for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
        out.push(engine.encode(secret));
    }
    out
}

/// What the server puts in its body for encoding number `which`; the last
/// one is an HTTP Basic credential with a user name of 1 to 3 bytes.
fn echo(secret: &str, which: usize, user: &str) -> String {
    let all = encodings(secret);
    match all.get(which) {
        Some(e) => e.clone(),
        None => format!("Basic {}", STANDARD.encode(format!("{user}:{secret}"))),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn no_encoding_and_no_prefix_at_the_cut(
        secret in from(SECRET_CHARS, 4..40),
        before in from(TEXT_CHARS, 0..260),
        after in from(TEXT_CHARS, 0..60),
        which in 0usize..11,
        user in from(&['u', 's', 'r'], 1..4),
        // The server may cut its own echo short (half of the cases).
        keep in prop::option::of(0usize..60),
    ) {
        // A secret inside the marker itself would be "found" in the output.
        prop_assume!(!REDACTED.contains(secret.trim()));
        let r = Redactor::default();
        r.remember(&secret);
        let mut echoed = echo(&secret, which, &user);
        if let Some(keep) = keep {
            echoed = echoed.chars().take(keep).collect();
        }
        let body = format!("{before}{echoed}{after}");
        let detail = r.redact(&format!("token endpoint answered 500: {}", snippet(body.as_bytes())));
        let kept = detail.strip_suffix('…').unwrap_or(&detail);
        prop_assert!(kept.chars().count() <= "token endpoint answered 500: ".len() + 200);
        for form in encodings(&secret) {
            // Spaces at the edge of a quote are trimmed like any other text.
            let form = form.trim();
            if form.chars().count() < 4 || REDACTED.contains(form) {
                continue;
            }
            prop_assert!(!detail.contains(form), "{form:?} in {detail:?}");
            let chars: Vec<char> = form.chars().collect();
            for k in 8..=chars.len() {
                let prefix: String = chars[..k].iter().collect();
                prop_assert!(!kept.ends_with(&prefix), "{prefix:?} at the end of {detail:?}");
            }
        }
    }
}

#[test]
fn a_basic_credential_keeps_nothing_of_the_secret() {
    let secret = "Zm9v-bar-baz-qux-0123";
    let r = Redactor::default();
    r.remember(secret);
    for user in ["a", "ab", "abc", "probe-client"] {
        let basic = STANDARD.encode(format!("{user}:{secret}"));
        let out = r.redact(&snippet(format!("echo: Basic {basic}").as_bytes()));
        assert!(out.contains(REDACTED), "{user}: {out}");
        // At most the characters that also depend on the user name survive
        // around the marker: no 8-character run of the credential's tail.
        let tail = &basic[basic.len() - 12..];
        assert!(!out.contains(tail), "{user}: {out}");
    }
}
