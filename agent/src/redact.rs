//! Keeping secret values out of the text the agent produces. A [`Redactor`]
//! collects every secret value resolved during one probe run (and every
//! credential obtained at run time) and scrubs it from detail strings: the
//! value itself and the forms a server may echo it in — JSON string escaping
//! (`\"`, `\u00e9`, ...), percent-encoding as in query strings and form bodies
//! (`%2B`, `+` or `%20` for a space, any hex case), HTML character references
//! (`&amp;`, `&#39;`), control characters shown as spaces, and base64
//! (standard and URL-safe, padded or not, also inside a longer base64 blob
//! such as an HTTP Basic `Authorization` header, at any byte alignment).
//!
//! Text quoted from a peer ([`quote`], behind `probes::snippet`) is not cut
//! when it is produced but marked; [`Redactor::redact`] scrubs it first and
//! cuts it to [`QUOTE_CHARS`] after, so a secret straddling the cut is still
//! recognised whole. The end of every quote and every cut is checked too: if
//! the text ends with the first [`MIN_PREFIX_CHARS`] or more characters of a
//! secret (in any of the forms above), they are removed.
//!
//! Limits, on purpose: values shorter than [`MIN_SECRET_CHARS`] characters
//! are not redacted — `abc` occurs in ordinary words, so scrubbing it would
//! shred every detail while protecting a credential nobody should use (the
//! agent warns once per secret name, see `secrets::resolve`). Doubly encoded
//! forms, other encodings (hex, compression) and a secret's prefix in the
//! middle of text (a server that truncates its own echo) are not recognised.
use std::sync::Mutex;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};

/// What a secret is replaced with.
pub const REDACTED: &str = "[redacted]";
/// Shorter values are not redacted (see the module doc).
pub const MIN_SECRET_CHARS: usize = 4;
/// A cut or a quote may not end with this many or more leading characters
/// of a secret (or of one of its encoded forms).
pub const MIN_PREFIX_CHARS: usize = 8;
/// Characters of a quote kept in a detail, after redaction.
pub const QUOTE_CHARS: usize = 200;
/// Bytes of a body a quote holds until redaction; far more than
/// [`QUOTE_CHARS`], so a secret that straddles the final cut is seen whole.
pub const QUOTE_SCAN_BYTES: usize = 16 * 1024;
/// Bound on a whole detail (bytes, after redaction and quote cuts,
/// ellipsis included); the coordinator refuses step details over 4 KiB.
pub const DETAIL_MAX_BYTES: usize = 4096;

/// Start and end of a quote (Unicode private use; stripped from the quoted
/// text itself so a peer can't forge them).
const OPEN: char = '\u{E000}';
const CLOSE: char = '\u{E001}';
/// Worst-case bytes one secret character takes in the text (`\uD83D\uDE00`,
/// or four `%XX`).
const MAX_BYTES_PER_CHAR: usize = 12;

/// One form of a secret to look for.
#[derive(Debug)]
struct Needle {
    chars: Vec<char>,
}

#[derive(Debug, Default)]
struct Known {
    /// Raw values remembered (for de-duplication).
    values: Vec<String>,
    /// Every form of every value, longest first so that a secret containing
    /// another is replaced whole.
    needles: Vec<Needle>,
}

/// Collects the secret values of one run and scrubs them from text. Redaction
/// is by value, so a secret echoed back by a server (in an error body, say)
/// is caught too.
#[derive(Debug, Default)]
pub struct Redactor {
    known: Mutex<Known>,
}

impl Redactor {
    pub fn remember(&self, value: &str) {
        if value.chars().count() < MIN_SECRET_CHARS {
            return;
        }
        let Ok(mut known) = self.known.lock() else {
            return;
        };
        if known.values.iter().any(|v| v == value) {
            return;
        }
        known.values.push(value.to_string());
        for form in forms(value) {
            let chars: Vec<char> = form.chars().collect();
            if !known.needles.iter().any(|n| n.chars == chars) {
                known.needles.push(Needle { chars });
            }
        }
        known
            .needles
            .sort_by_key(|n| std::cmp::Reverse(n.chars.len()));
    }

    /// `text` with every known secret replaced by [`REDACTED`], quotes cut to
    /// [`QUOTE_CHARS`] after that, and the whole bounded by
    /// [`DETAIL_MAX_BYTES`]; no cut ends with a secret's prefix.
    pub fn redact(&self, text: &str) -> String {
        let Ok(known) = self.known.lock() else {
            return REDACTED.to_string();
        };
        let needles = &known.needles;
        let mut out = String::with_capacity(text.len().min(DETAIL_MAX_BYTES));
        let mut rest = text;
        while let Some(open) = rest.find(OPEN) {
            out.push_str(&scrub(needles, &rest[..open]));
            let inner = &rest[open + OPEN.len_utf8()..];
            let (quoted, after) = match inner.find(CLOSE) {
                Some(close) => (&inner[..close], &inner[close + CLOSE.len_utf8()..]),
                None => (inner, ""),
            };
            let scrubbed = scrub(needles, quoted);
            out.push_str(&cut_chars(needles, &scrubbed, QUOTE_CHARS));
            rest = after;
        }
        out.push_str(&scrub(needles, rest));
        if out.len() > DETAIL_MAX_BYTES {
            // Room for the ellipsis within the bound.
            let mut end = DETAIL_MAX_BYTES - '…'.len_utf8();
            while !out.is_char_boundary(end) {
                end -= 1;
            }
            let kept = strip_prefix_tail(needles, &out[..end]).len();
            out.truncate(kept);
            out.push('…');
        }
        out
    }
}

/// Text quoted from a peer, as one line, marked so that [`Redactor::redact`]
/// scrubs and then cuts it. Only [`QUOTE_SCAN_BYTES`] of `body` are kept.
pub fn quote(body: &[u8]) -> String {
    let body = &body[..body.len().min(QUOTE_SCAN_BYTES)];
    let text = String::from_utf8_lossy(body);
    let one_line: String = text
        .chars()
        .map(|c| match c {
            OPEN | CLOSE => '\u{FFFD}',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect();
    format!("{OPEN}{}{CLOSE}", one_line.trim())
}

/// The forms of `value` worth looking for: the value and its base64
/// encodings (the character-level encodings are handled while matching).
fn forms(value: &str) -> Vec<String> {
    let bytes = value.as_bytes();
    let mut out = vec![value.to_string()];
    // Quotes are trimmed: a value with spaces at its edge may lose them.
    if value.trim() != value {
        out.push(value.trim().to_string());
    }
    for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
        out.push(engine.encode(bytes));
    }
    // Inside a longer blob (`base64(user:secret)`) the characters that
    // depend only on the secret's bytes, for each of the three alignments.
    for align in 0..3usize {
        let mut padded = vec![0u8; align];
        padded.extend_from_slice(bytes);
        let enc = STANDARD_NO_PAD.encode(&padded);
        let first = (8 * align).div_ceil(6);
        let last = (8 * (align + bytes.len())) / 6;
        if let Some(core) = enc.get(first..last)
            && core.len() >= MIN_PREFIX_CHARS
        {
            out.push(core.to_string());
            out.push(core.replace('+', "-").replace('/', "_"));
        }
    }
    out.retain(|f| f.chars().count() >= MIN_SECRET_CHARS);
    out
}

/// `text` with every needle occurrence replaced.
fn scrub(needles: &[Needle], text: &str) -> String {
    if needles.is_empty() {
        return text.to_string();
    }
    let t = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let (mut p, mut copied) = (0, 0);
    while p < t.len() {
        if text.is_char_boundary(p)
            && let Some(end) = needles.iter().find_map(|n| full_match(t, p, &n.chars))
        {
            out.push_str(&text[copied..p]);
            out.push_str(REDACTED);
            p = end;
            copied = end;
            continue;
        }
        p += 1;
    }
    out.push_str(&text[copied..]);
    out
}

/// At most `max` characters of `text`; when cut, no secret prefix at the
/// cut and an ellipsis after it. An uncut text's end is checked too (a peer
/// may have cut its own echo).
fn cut_chars(needles: &[Needle], text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", strip_prefix_tail(needles, &text[..end])),
        None => strip_prefix_tail(needles, text).to_string(),
    }
}

/// `text` without a trailing beginning (>= [`MIN_PREFIX_CHARS`] characters)
/// of any needle's occurrence, repeated until none is left.
fn strip_prefix_tail<'a>(needles: &[Needle], mut text: &'a str) -> &'a str {
    let longest = needles.iter().map(|n| n.chars.len()).max().unwrap_or(0);
    let span = longest * MAX_BYTES_PER_CHAR;
    loop {
        let t = text.as_bytes();
        let from = t.len().saturating_sub(span);
        let cut = (from..t.len()).find(|&p| {
            text.is_char_boundary(p) && needles.iter().any(|n| prefix_at_end(t, p, &n.chars))
        });
        match cut {
            Some(p) => text = &text[..p],
            None => return text,
        }
    }
}

/// Where an occurrence of `needle` starting at `start` ends (the longest
/// reading when encodings make it ambiguous).
fn full_match(t: &[u8], start: usize, needle: &[char]) -> Option<usize> {
    let mut states = vec![start];
    let mut next = Vec::new();
    for &c in needle {
        next.clear();
        for &s in &states {
            advance(t, s, c, &mut next);
        }
        if next.is_empty() {
            return None;
        }
        next.sort_unstable();
        next.dedup();
        std::mem::swap(&mut states, &mut next);
    }
    states.last().copied()
}

/// Whether `t[start..]`, [`MIN_PREFIX_CHARS`] characters or more, is how
/// the text of an occurrence of `needle` begins (possibly ending inside the
/// encoding of a character: `%F0%9F%9`, `\u00`). Measured in the text, so
/// the first 8 characters of an encoded form count as well.
fn prefix_at_end(t: &[u8], start: usize, needle: &[char]) -> bool {
    let rest = &t[start..];
    let span = rest.iter().filter(|&&b| (b & 0xC0) != 0x80).count();
    if span < MIN_PREFIX_CHARS {
        return false;
    }
    let mut states = vec![start];
    let mut next = Vec::new();
    for &c in needle {
        if states
            .iter()
            .any(|&s| s == t.len() || partial_encoding(&t[s..], c))
        {
            return true;
        }
        next.clear();
        for &s in &states {
            advance(t, s, c, &mut next);
        }
        if next.is_empty() {
            return false;
        }
        next.sort_unstable();
        next.dedup();
        std::mem::swap(&mut states, &mut next);
    }
    states.contains(&t.len())
}

/// Pushes the end of every way `c` can be written at `t[p..]`.
fn advance(t: &[u8], p: usize, c: char, out: &mut Vec<usize>) {
    let rest = &t[p..];
    let mut buf = [0u8; 4];
    let lit = c.encode_utf8(&mut buf).as_bytes();
    if rest.starts_with(lit) {
        out.push(p + lit.len());
    }
    let Some(&first) = rest.first() else {
        return;
    };
    let n = match first {
        b'\\' => json_escape(rest, c),
        b'%' => percent(rest, lit),
        b'&' => html_reference(rest, c),
        b'+' if c == ' ' => Some(1),
        b' ' if c.is_control() => Some(1),
        _ => None,
    };
    if let Some(n) = n {
        out.push(p + n);
    }
}

fn json_short(c: char) -> Option<&'static [u8]> {
    Some(match c {
        '"' => b"\\\"",
        '\\' => b"\\\\",
        '/' => b"\\/",
        '\u{8}' => b"\\b",
        '\u{c}' => b"\\f",
        '\n' => b"\\n",
        '\r' => b"\\r",
        '\t' => b"\\t",
        _ => return None,
    })
}

/// Length of a JSON escape of `c` at the start of `rest`.
fn json_escape(rest: &[u8], c: char) -> Option<usize> {
    if let Some(short) = json_short(c)
        && rest.starts_with(short)
    {
        return Some(short.len());
    }
    let unit = |at: usize| -> Option<u32> {
        if rest.get(at..at + 2)? != b"\\u" {
            return None;
        }
        let hex = std::str::from_utf8(rest.get(at + 2..at + 6)?).ok()?;
        u32::from_str_radix(hex, 16).ok()
    };
    let mut units = [0u16; 2];
    match c.encode_utf16(&mut units) {
        [one] => (unit(0)? == u32::from(*one)).then_some(6),
        [hi, lo] => (unit(0)? == u32::from(*hi) && unit(6)? == u32::from(*lo)).then_some(12),
        _ => None,
    }
}

/// Length of `%XX` escapes of all of `lit`'s bytes at the start of `rest`.
fn percent(rest: &[u8], lit: &[u8]) -> Option<usize> {
    for (i, &b) in lit.iter().enumerate() {
        let esc = rest.get(3 * i..3 * i + 3)?;
        let hex = std::str::from_utf8(&esc[1..]).ok()?;
        if esc[0] != b'%' || u8::from_str_radix(hex, 16).ok()? != b {
            return None;
        }
    }
    Some(3 * lit.len())
}

/// Length of an HTML character reference to `c` at the start of `rest`.
fn html_reference(rest: &[u8], c: char) -> Option<usize> {
    for (name, ch) in [
        (&b"&amp;"[..], '&'),
        (b"&lt;", '<'),
        (b"&gt;", '>'),
        (b"&quot;", '"'),
        (b"&apos;", '\''),
    ] {
        if c == ch && rest.starts_with(name) {
            return Some(name.len());
        }
    }
    let body = rest.strip_prefix(b"&#")?;
    let (radix, digits) = match body.first() {
        Some(b'x' | b'X') => (16, &body[1..]),
        _ => (10, body),
    };
    let len = digits.iter().take(9).position(|&b| b == b';')?;
    let value = u32::from_str_radix(std::str::from_utf8(&digits[..len]).ok()?, radix).ok()?;
    (value == u32::from(c)).then_some(rest.len() - digits.len() + len + 1)
}

/// Whether `rest` (non-empty, at the end of the text) is the beginning of
/// an encoding of `c`: a cut inside `%2`, `\u00`, `&am`.
fn partial_encoding(rest: &[u8], c: char) -> bool {
    if rest.is_empty() {
        return false;
    }
    let mut buf = [0u8; 4];
    let lit = c.encode_utf8(&mut buf);
    let mut candidates: Vec<String> = vec![
        lit.to_string(),
        lit.bytes().map(|b| format!("%{b:02X}")).collect(),
        c.encode_utf16(&mut [0u16; 2])
            .iter()
            .map(|u| format!("\\u{u:04x}"))
            .collect(),
        format!("&#{};", u32::from(c)),
        format!("&#x{:x};", u32::from(c)),
    ];
    if let Some(short) = json_short(c) {
        candidates.push(String::from_utf8_lossy(short).into_owned());
    }
    for (name, ch) in [
        ("&amp;", '&'),
        ("&lt;", '<'),
        ("&gt;", '>'),
        ("&quot;", '"'),
        ("&apos;", '\''),
    ] {
        if c == ch {
            candidates.push(name.to_string());
        }
    }
    candidates.iter().any(|cand| {
        cand.len() > rest.len() && cand.as_bytes()[..rest.len()].eq_ignore_ascii_case(rest)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redactor(values: &[&str]) -> Redactor {
        let r = Redactor::default();
        for v in values {
            r.remember(v);
        }
        r
    }

    #[test]
    fn exact_and_character_encodings() {
        let secret = "p@ss w/\"ord&é+1";
        let r = redactor(&[secret]);
        let json = serde_json::to_string(secret).expect("json");
        let json = &json[1..json.len() - 1];
        let ascii_json = "p@ss w\\/\\\"ord&\\u00E9+1";
        let form = "p%40ss+w%2F%22ord%26%C3%A9%2B1";
        let path = "p%40ss%20w%2f%22ord%26%c3%a9%2b1";
        let html = "p@ss w/&quot;ord&amp;&#233;&#x2B;1";
        for form in [secret, json, ascii_json, form, path, html] {
            let got = r.redact(&format!("server said <{form}>!"));
            assert_eq!(got, "server said <[redacted]>!", "{form}");
        }
    }

    #[test]
    fn base64_forms_alone_and_inside_a_blob() {
        let secret = "s3cr3t-value!";
        let r = redactor(&[secret]);
        for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
            let enc = engine.encode(secret);
            assert_eq!(r.redact(&format!("x {enc} y")), "x [redacted] y");
        }
        for user in ["a", "ab", "abc"] {
            let basic = STANDARD.encode(format!("{user}:{secret}"));
            let got = r.redact(&format!("Authorization: Basic {basic}"));
            assert!(got.contains(REDACTED), "{user}: {got}");
            // What survives is only the part that depends on the user name.
            assert!(got.len() < 40, "{got}");
        }
    }

    #[test]
    fn quotes_are_scrubbed_before_the_cut_and_leave_no_prefix_at_it() {
        let secret = "canary-0123456789-abcdef";
        let r = redactor(&[secret]);
        // The secret straddles the 200-character cut.
        let body = format!("{}{secret} and more", "x".repeat(190));
        let got = r.redact(&format!("answered 500: {}", quote(body.as_bytes())));
        assert!(got.contains(REDACTED), "{got}");
        assert!(!got.contains("canary-0"), "{got}");
        // The cut falls inside the secret, which is then not whole anymore
        // in the kept part: its prefix goes.
        let long = format!("{}{secret}", "y".repeat(195));
        let got = r.redact(&quote(long.as_bytes()));
        assert!(!got.contains("canary"), "{got}");
        // A peer that cut its own echo short.
        let got = r.redact(&quote(b"invalid secret canary-01234"));
        assert_eq!(got, "invalid secret ");
        // Inside an escape at the cut.
        // (8 characters, then the cut inside `%31`, an escaped `1`.)
        let form = format!("{}canary-0%3123456789", "z".repeat(191));
        let got = r.redact(&quote(form.as_bytes()));
        assert!(!got.contains("canary"), "{got}");
    }

    #[test]
    fn quotes_without_secrets_keep_the_old_shape() {
        let r = Redactor::default();
        assert_eq!(
            r.redact(&quote(b"  line one\nline two  ")),
            "line one line two"
        );
        let long = "a".repeat(300);
        let got = r.redact(&format!("body: {}", quote(long.as_bytes())));
        assert_eq!(got, format!("body: {}…", "a".repeat(200)));
        // Forged markers from a peer are neutralised.
        let forged = format!("a{CLOSE}{}", "b".repeat(300));
        let got = r.redact(&quote(forged.as_bytes()));
        assert_eq!(got.chars().count(), 201, "{got}");
    }

    #[test]
    fn short_values_are_not_redacted() {
        let r = redactor(&["abc"]);
        assert_eq!(r.redact("abcdef"), "abcdef");
    }

    #[test]
    fn details_are_bounded() {
        let r = redactor(&["0123456789abcdef"]);
        // The cut (at the bound less the ellipsis) leaves 10 characters of
        // the secret.
        let long = format!(
            "{}0123456789abc, and more",
            "q".repeat(DETAIL_MAX_BYTES - 13)
        );
        let got = r.redact(&long);
        assert!(got.len() <= DETAIL_MAX_BYTES, "{}", got.len());
        assert!(got.ends_with("q…"), "prefix at the cut removed: {got}");
    }
}
