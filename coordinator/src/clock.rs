//! Time as the coordinator stores and shows it: milliseconds since the Unix
//! epoch in every `*_ms` column, RFC 3339 with milliseconds in every JSON
//! answer, feed and notification. One place, so a time from a peer is
//! clamped the same way everywhere.
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds in a minute: the resolution of the stored minute counts.
pub const MINUTE_MS: i64 = 60_000;

/// Milliseconds since the Unix epoch, the unit of every `*_ms` column.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The minute (unix ms / 60000, floored) a timestamp falls in.
pub fn minute_of(ms: i64) -> i64 {
    ms.div_euclid(MINUTE_MS)
}

/// The last millisecond RFC 3339 can show (9999-12-31T23:59:59.999Z);
/// humantime panics past it.
const MAX_RFC3339_MS: i64 = 253_402_300_799_999;

/// RFC 3339 UTC with milliseconds; never panics: times before 1970 are shown
/// as the epoch, times past year 9999 as its last millisecond (a stored time
/// can come from a peer).
pub fn rfc3339_ms(ms: i64) -> String {
    let ms = ms.clamp(0, MAX_RFC3339_MS);
    let t = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(t).to_string()
}

/// Now, as [`rfc3339_ms`] shows it.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_out_of_range_are_clamped_not_panicking() {
        assert_eq!(rfc3339_ms(-5), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(i64::MAX), "9999-12-31T23:59:59.999Z");
        assert_eq!(rfc3339_ms(1_000), "1970-01-01T00:00:01.000Z");
        assert!(now_rfc3339().ends_with('Z'));
    }
}
