//! Which button a careful person clicks. Owns the words: affirmative ones
//! (accept, allow, authorize, continue, yes, sign in, next, …, ranked) and
//! the ones that must never be clicked (log out, switch user, deny, cancel,
//! back, …), read from a button's text, value, name, id, aria-label, title
//! and classes, and from the URL it would post to (a form posting to a logout
//! endpoint is never submitted). A page whose best button is not clear ends
//! the run with the buttons listed rather than a guess.
use super::form::{Button, Form};

/// Affirmative words, best first. Multi-word entries match as a phrase.
const AFFIRMATIVE: &[&str] = &[
    "accept",
    "allow",
    "approve",
    "authorize",
    "authorise",
    "grant",
    "consent",
    "agree",
    "yes",
    "trust",
    "confirm",
    "continue",
    "proceed",
    "sign in",
    "signin",
    "log in",
    "login",
    "next",
    "verify",
    "submit",
    "ok",
];

/// Words that mark a button that leaves, refuses or goes back.
const NEVER: &[&str] = &[
    "logout",
    "log out",
    "signout",
    "sign out",
    "switch",
    "another account",
    "different account",
    "not you",
    "deny",
    "cancel",
    "back",
    "decline",
    "abort",
    "reject",
    "refuse",
    "no",
    "don t",
    "do not",
    "not now",
    "forgot",
    "reset",
    "register",
    "sign up",
    "signup",
    "delete",
];

/// Lower case, every run of non-alphanumerics one space, padded with spaces
/// so that ` word ` finds whole words.
fn words(text: &str) -> String {
    let mut out = String::from(" ");
    let mut gap = false;
    for c in text.chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            if gap {
                out.push(' ');
            }
            gap = false;
            out.push(c);
        } else {
            gap = true;
        }
    }
    out.push(' ');
    out
}

fn has_word(haystack: &str, word: &str) -> bool {
    haystack.contains(&format!(" {word} "))
}

fn describe(b: &Button) -> String {
    words(&format!(
        "{} {} {} {} {}",
        b.text, b.value, b.name, b.id, b.extra
    ))
}

/// The button (or its target) says log out, deny, cancel, back, ….
pub fn refuses(b: &Button, target: Option<&str>) -> bool {
    let text = describe(b);
    NEVER.iter().any(|w| has_word(&text, w))
        || target.is_some_and(|t| {
            let t = words(t);
            [
                "logout",
                "log out",
                "signout",
                "sign out",
                "logoff",
                "end session",
            ]
            .iter()
            .any(|w| has_word(&t, w))
        })
}

/// Rank of its best affirmative word (0 = best), if any.
pub fn affirms(b: &Button) -> Option<usize> {
    let text = describe(b);
    AFFIRMATIVE.iter().position(|w| has_word(&text, w))
}

/// Same check for a URL path (`/logout`, `/end-session`).
pub fn target_refuses(path: &str) -> bool {
    let t = words(path);
    [
        "logout",
        "log out",
        "signout",
        "sign out",
        "logoff",
        "end session",
    ]
    .iter()
    .any(|w| has_word(&t, w))
}

#[derive(Debug)]
pub enum Choice {
    /// The index of the button to click.
    Click(usize),
    /// Several buttons fit equally, or none clearly: their labels.
    Unclear(Vec<String>),
}

/// The button to click among `candidates` (indices into `buttons`).
/// `allow_plain`: a sole button without affirmative words may be clicked
/// (consent pages with one "→" button), when nothing refuses.
pub fn choose(
    buttons: &[Button],
    forms: &[Form],
    candidates: &[usize],
    target: impl Fn(&Button) -> Option<String>,
    allow_plain: bool,
) -> Choice {
    let safe: Vec<usize> = candidates
        .iter()
        .copied()
        .filter(|&i| {
            buttons
                .get(i)
                .is_some_and(|b| !refuses(b, target(b).as_deref()))
        })
        .collect();
    let ranked: Vec<(usize, usize)> = safe
        .iter()
        .filter_map(|&i| buttons.get(i).and_then(affirms).map(|r| (r, i)))
        .collect();
    if let Some(best) = ranked.iter().map(|(r, _)| *r).min() {
        let top: Vec<usize> = ranked
            .iter()
            .filter(|(r, _)| *r == best)
            .map(|(_, i)| *i)
            .collect();
        let first = top[0];
        // The same name/value in the same form twice (a button repeated at
        // the top and bottom of a page) is one choice.
        let same = top.iter().all(|&i| {
            let (a, b) = (&buttons[first], &buttons[i]);
            a.form == b.form && a.name == b.name && a.value == b.value
        });
        if same {
            return Choice::Click(first);
        }
        return Choice::Unclear(labels(buttons, candidates));
    }
    // Nothing affirmative: a lone button nobody could misread, on a page
    // without text inputs, is what a person would press.
    let plain: Vec<usize> = safe
        .iter()
        .copied()
        .filter(|&i| {
            forms
                .get(buttons[i].form)
                .is_some_and(|f| !f.fields.iter().any(|x| x.is_text_like()))
        })
        .collect();
    if allow_plain && plain.len() == 1 && safe.len() == 1 {
        return Choice::Click(plain[0]);
    }
    Choice::Unclear(labels(buttons, candidates))
}

fn labels(buttons: &[Button], candidates: &[usize]) -> Vec<String> {
    candidates
        .iter()
        .filter_map(|&i| buttons.get(i))
        .map(|b| {
            if b.name.is_empty() {
                format!("`{}`", b.label())
            } else {
                format!("`{}` ({}={})", b.label(), b.name, b.value)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn button(text: &str, name: &str, value: &str) -> Button {
        Button {
            form: 0,
            name: name.into(),
            value: value.into(),
            text: text.into(),
            id: String::new(),
            extra: String::new(),
            formaction: None,
            formmethod: None,
            formenctype: None,
            position: 0,
        }
    }

    fn pick(buttons: &[Button]) -> Choice {
        let form = Form {
            index: 0,
            id: String::new(),
            action: None,
            method: "POST".into(),
            enctype: String::new(),
            fields: Vec::new(),
            buttons: (0..buttons.len()).collect(),
            selected: true,
            in_noscript: false,
        };
        let all: Vec<usize> = (0..buttons.len()).collect();
        choose(buttons, &[form], &all, |_| None, true)
    }

    #[test]
    fn deny_switch_user_accept_clicks_accept() {
        let b = [
            button("Deny", "decision", "deny"),
            button("Switch user", "decision", "logout"),
            button("Accept", "decision", "accept"),
        ];
        assert!(matches!(pick(&b), Choice::Click(2)), "{:?}", pick(&b));
    }

    #[test]
    fn never_words_win_over_affirmative_ones() {
        for (text, value) in [
            ("Continue as someone else", "logout"),
            ("Sign out and continue", ""),
            ("Don't Trust", "skip"),
            ("Back", "auth"),
            ("No, cancel", ""),
        ] {
            let b = button(text, "action", value);
            assert!(refuses(&b, None), "{text}");
        }
        let b = button("Continue", "", "");
        assert!(refuses(&b, Some("http://idp/accounts/logout/")));
        assert!(!refuses(&b, Some("http://idp/authorize")));
    }

    #[test]
    fn equal_affirmative_buttons_in_different_forms_are_unclear() {
        let mut b = [button("Continue", "a", "1"), button("Continue", "b", "2")];
        b[1].form = 1;
        let forms: Vec<Form> = (0..2)
            .map(|i| Form {
                index: i,
                id: String::new(),
                action: None,
                method: "POST".into(),
                enctype: String::new(),
                fields: Vec::new(),
                buttons: vec![i],
                selected: true,
                in_noscript: false,
            })
            .collect();
        match choose(&b, &forms, &[0, 1], |_| None, true) {
            Choice::Unclear(l) => assert_eq!(l.len(), 2, "{l:?}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_lone_plain_button_is_clicked_two_are_not() {
        assert!(matches!(pick(&[button("→", "", "")]), Choice::Click(0)));
        assert!(matches!(
            pick(&[button("Blue", "", ""), button("Green", "", "")]),
            Choice::Unclear(_)
        ));
    }

    #[test]
    fn the_better_word_wins() {
        // "Trust for 2 weeks" (rank trust) over a generic "Submit".
        let b = [
            button("Submit", "", ""),
            button("Trust for 2 weeks", "action", "trust"),
        ];
        assert!(matches!(pick(&b), Choice::Click(1)));
    }
}
