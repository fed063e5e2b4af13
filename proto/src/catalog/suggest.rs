//! "Did you mean" hints: the closest known name to a misspelt key,
//! parameter or id, when it is close enough to be the likely intent.

/// ` (did you mean `X`?)` for the candidate nearest to `unknown`, if one is
/// within a third of its length (at least 1) in edit distance.
pub fn did_you_mean<'a>(
    unknown: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let limit = (unknown.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(unknown, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| format!(" (did you mean `{c}`?)"))
}

/// The names serde lists in an "unknown field `x`, expected one of `a`,
/// `b`" (or "expected `a` or `b`") message.
pub fn expected_in(message: &str) -> Vec<&str> {
    let Some((_, rest)) = message.split_once("expected") else {
        return Vec::new();
    };
    rest.split('`').skip(1).step_by(2).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_names_are_suggested_and_far_ones_not() {
        assert_eq!(
            did_you_mean("intervl", ["id", "interval", "timeout"]).as_deref(),
            Some(" (did you mean `interval`?)")
        );
        assert_eq!(
            did_you_mean("tiemout", ["interval", "timeout"]).as_deref(),
            Some(" (did you mean `timeout`?)")
        );
        assert_eq!(did_you_mean("colour", ["interval", "timeout"]), None);
        assert_eq!(did_you_mean("x", Vec::<&str>::new()), None);
    }

    #[test]
    fn serde_expected_lists_are_read() {
        assert_eq!(
            expected_in("unknown field `intervl`, expected one of `id`, `interval`"),
            ["id", "interval"]
        );
        assert_eq!(
            expected_in("unknown field `a`, expected `b` or `c`"),
            ["b", "c"]
        );
        assert!(expected_in("invalid type").is_empty());
    }
}
