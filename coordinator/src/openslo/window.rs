//! `spec.timeWindow` and `spec.budgetingMethod` (with the objectives'
//! `timeSliceTarget`/`timeSliceWindow`) as catalog `window` and `budgeting`.
//!
//! Windows: a rolling window of `m`, `h`, `d` or `w` is the same rolling
//! window (authpulse's is minute-aligned, and these are whole minutes); `M`,
//! `Q` and `Y` are refused for rolling windows, which have no fixed month.
//! A calendar window of `1d`, `1w`/`7d` or `1M` is authpulse's calendar day,
//! ISO week or month in `calendar.timeZone`, whose periods start at local
//! midnight (of Monday, of the 1st). `calendar.startTime` anchors the
//! periods, so it is represented exactly when it falls on such a boundary
//! (any midnight for days, a Monday midnight for weeks, the 1st at midnight
//! for months) and refused otherwise; every other calendar length (`2w`,
//! `1Q`, `1Y`, `1m`) is refused. `timeZone` is required with a calendar:
//! the spec gives no default, and guessing UTC would move every boundary.
use std::time::Duration;

use authpulse_proto::catalog::{Budgeting, CalendarUnit, CalendarWindow, Window};
use yaml_rust2::Yaml;

use super::decimal::Decimal;
use super::fields::{Map, Problems, decimal, show};

/// A duration-shorthand: a positive integer and one of m h d w M Q Y.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shorthand {
    pub n: u64,
    pub unit: char,
}

impl Shorthand {
    pub fn parse(s: &str) -> Option<Shorthand> {
        let unit = s.chars().last()?;
        let n = &s[..s.len() - unit.len_utf8()];
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let n: u64 = n.parse().ok()?;
        (n > 0 && "mhdwMQY".contains(unit)).then_some(Shorthand { n, unit })
    }

    /// The fixed length of `m`, `h`, `d` and `w`; months, quarters and years
    /// have none.
    pub fn fixed(&self) -> Option<Duration> {
        let secs = match self.unit {
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => return None,
        };
        self.n.checked_mul(secs).map(Duration::from_secs)
    }
}

impl std::fmt::Display for Shorthand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.n, self.unit)
    }
}

/// `spec.timeWindow` (a list of exactly one item) as a catalog window.
pub fn window(spec: &Map<'_>, p: &mut Problems) -> Option<Window> {
    let path = spec.at("timeWindow");
    let items = match spec.get("timeWindow") {
        None => {
            p.refuse(
                &path,
                "is missing: authpulse SLOs need a window and OpenSLO gives no default",
            );
            return None;
        }
        Some(Yaml::Array(a)) => a,
        Some(_) => {
            p.refuse(&path, "must be a list with one item");
            return None;
        }
    };
    let [item] = items.as_slice() else {
        p.refuse(
            &path,
            format!("has {} items; OpenSLO v1 allows exactly one", items.len()),
        );
        return None;
    };
    let w = Map::of(item, &format!("{path}[0]"), p)?;
    w.check_keys(&["duration", "isRolling", "calendar"], &[], p);
    let duration_path = w.at("duration");
    let Some(text) = w.str("duration", p) else {
        if !w.has("duration") {
            p.refuse(&duration_path, "is missing");
        }
        return None;
    };
    let Some(d) = Shorthand::parse(text) else {
        p.refuse(
            &duration_path,
            format!("`{text}` is not a duration-shorthand (a positive integer and m, h, d, w, M, Q or Y)"),
        );
        return None;
    };
    let calendar = w.get("calendar");
    let rolling = match w.get("isRolling") {
        Some(Yaml::Boolean(b)) => *b,
        Some(other) => {
            p.refuse(
                &w.at("isRolling"),
                format!("must be true or false, not {}", show(other)),
            );
            return None;
        }
        // The spec: "if omitted assumed false if calendar is present".
        None if calendar.is_some() => false,
        None => {
            p.refuse(
                &w.at("isRolling"),
                "is missing and there is no calendar: say whether the window rolls",
            );
            return None;
        }
    };
    if rolling {
        if calendar.is_some() {
            p.refuse(
                &w.at("calendar"),
                "a rolling window (isRolling: true) has no calendar",
            );
            return None;
        }
        let Some(length) = d.fixed() else {
            p.refuse(
                &duration_path,
                format!("a rolling `{d}` has no fixed length; write it in m, h, d or w (e.g. 30d)"),
            );
            return None;
        };
        return Some(Window::Rolling(length));
    }
    let Some(cal) = w.map("calendar", p) else {
        p.refuse(
            &w.at("calendar"),
            "is missing: a calendar-aligned window (isRolling: false) needs calendar.timeZone",
        );
        return None;
    };
    cal.check_keys(&["startTime", "timeZone"], &[], p);
    let unit = match (d.n, d.unit) {
        (1, 'd') => CalendarUnit::Day,
        (1, 'w') | (7, 'd') => CalendarUnit::Week,
        (1, 'M') => CalendarUnit::Month,
        _ => {
            p.refuse(
                &duration_path,
                format!(
                    "a calendar window of `{d}`: authpulse calendar windows are one day (1d), one ISO week (1w) or one month (1M)"
                ),
            );
            return None;
        }
    };
    let Some(tz_name) = cal.str("timeZone", p) else {
        if !cal.has("timeZone") {
            p.refuse(
                &cal.at("timeZone"),
                "is missing: OpenSLO gives no default time zone; write `UTC` to mean UTC",
            );
        }
        return None;
    };
    let Ok(tz) = tz_name.parse::<chrono_tz::Tz>() else {
        p.refuse(
            &cal.at("timeZone"),
            format!("`{tz_name}` is not an IANA time zone (e.g. Europe/Berlin, UTC)"),
        );
        return None;
    };
    if let Some(start) = cal.str("startTime", p) {
        check_start(start, unit, tz, &cal.at("startTime"), p)?;
    }
    Some(Window::Calendar(CalendarWindow {
        calendar: unit,
        time_zone: Some(tz_name.to_string()),
    }))
}

/// A `startTime` is representable when it is a period boundary of `unit`.
fn check_start(
    start: &str,
    unit: CalendarUnit,
    tz: chrono_tz::Tz,
    path: &str,
    p: &mut Problems,
) -> Option<()> {
    use chrono::{Datelike, NaiveDateTime, TimeZone, Timelike, Weekday};
    let parsed = NaiveDateTime::parse_from_str(start, "%Y-%m-%d %H:%M:%S")
        .or_else(|_| NaiveDateTime::parse_from_str(start, "%Y-%m-%dT%H:%M:%S"));
    let Ok(t) = parsed else {
        p.refuse(
            path,
            format!("`{start}` is not a date and time like 2024-01-01 00:00:00"),
        );
        return None;
    };
    // A local midnight that doesn't exist (skipped by DST) starts no period.
    let exists = tz.from_local_datetime(&t).earliest().is_some();
    let why = if (t.hour(), t.minute(), t.second()) != (0, 0, 0) || !exists {
        Some("is not local midnight: authpulse periods start at 00:00 in timeZone".to_string())
    } else {
        match unit {
            CalendarUnit::Day => None,
            CalendarUnit::Week if t.weekday() != Weekday::Mon => Some(format!(
                "is a {:?}: authpulse weeks are ISO weeks, starting on Monday",
                t.weekday()
            )),
            CalendarUnit::Week => None,
            CalendarUnit::Month if t.day() != 1 => {
                Some("is not the 1st: authpulse months start on the 1st".to_string())
            }
            CalendarUnit::Month => None,
        }
    };
    match why {
        Some(why) => {
            p.refuse(path, format!("`{start}` {why}"));
            None
        }
        None => Some(()),
    }
}

/// The budgeting methods authpulse has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Occurrences,
    Timeslices,
}

/// `spec.budgetingMethod`, required by the spec.
pub fn method(spec: &Map<'_>, p: &mut Problems) -> Option<Method> {
    let path = spec.at("budgetingMethod");
    match spec.str("budgetingMethod", p) {
        Some("Occurrences") => Some(Method::Occurrences),
        Some("Timeslices") => Some(Method::Timeslices),
        Some("RatioTimeslices") => {
            p.refuse(
                &path,
                "RatioTimeslices averages each slice's good ratio; authpulse's timeslices count good slices (a slice is good when its ratio reaches timeSliceTarget), which is another number",
            );
            None
        }
        Some(other) => {
            p.refuse(
                &path,
                format!("`{other}` is not an OpenSLO v1 budgeting method (Occurrences, Timeslices, RatioTimeslices)"),
            );
            None
        }
        None => {
            if !spec.has("budgetingMethod") || spec.get("budgetingMethod").is_none() {
                p.refuse(
                    &path,
                    "is missing: it is required (Occurrences or Timeslices)",
                );
            }
            None
        }
    }
}

/// The budgeting of one objective under `method` (None: the method itself
/// was refused; the objective's slice fields are still checked).
pub fn budgeting(
    method: Option<Method>,
    objective: &Map<'_>,
    p: &mut Problems,
) -> Option<Budgeting> {
    match method {
        Some(Method::Occurrences) => {
            for key in ["timeSliceTarget", "timeSliceWindow"] {
                if objective.get(key).is_some() {
                    p.refuse(
                        &objective.at(key),
                        "means nothing with budgetingMethod Occurrences: remove it or use Timeslices",
                    );
                }
            }
            Some(Budgeting::Occurrences)
        }
        Some(Method::Timeslices) => {
            let target = slice_target(objective, p);
            let slice = slice_window(objective, p);
            Some(Budgeting::Timeslices {
                slice: slice?,
                target: target?.to_f64(),
            })
        }
        None => None,
    }
}

fn slice_target(objective: &Map<'_>, p: &mut Problems) -> Option<Decimal> {
    let path = objective.at("timeSliceTarget");
    let Some(v) = objective.get("timeSliceTarget") else {
        p.refuse(&path, "is missing: Timeslices requires it");
        return None;
    };
    match decimal(v) {
        Some(t) if t > Decimal::int(0) && t <= Decimal::int(1) => Some(t),
        _ => {
            p.refuse(&path, format!("{} is not a number in (0, 1]", show(v)));
            None
        }
    }
}

/// `timeSliceWindow`: a duration-shorthand, or a number of minutes (the
/// spec's default unit). authpulse slices are whole minutes.
fn slice_window(objective: &Map<'_>, p: &mut Problems) -> Option<Duration> {
    let path = objective.at("timeSliceWindow");
    let Some(v) = objective.get("timeSliceWindow") else {
        p.refuse(&path, "is missing: Timeslices requires it");
        return None;
    };
    let minutes: Option<u64> = match v {
        Yaml::String(s) => {
            match Shorthand::parse(s) {
                Some(d) => match d.fixed() {
                    Some(len) if len.as_secs().is_multiple_of(60) => Some(len.as_secs() / 60),
                    _ => {
                        p.refuse(
                        &path,
                        format!("`{s}`: a slice must be a fixed whole number of minutes (m, h, d or w)"),
                    );
                        return None;
                    }
                },
                None => None,
            }
        }
        // A bare number is minutes.
        other => decimal(other)
            .filter(|d| d.is_integer() && *d > Decimal::int(0))
            .and_then(|d| d.floor())
            .and_then(|n| u64::try_from(n).ok()),
    };
    match minutes {
        Some(m) if m > 0 => m.checked_mul(60).map(Duration::from_secs),
        _ => {
            p.refuse(
                &path,
                format!(
                    "{} is neither a duration-shorthand nor a whole number of minutes (authpulse slices are whole minutes)",
                    show(v)
                ),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn shorthand() {
        assert_eq!(
            Shorthand::parse("28d").and_then(|d| d.fixed()),
            Some(Duration::from_secs(28 * 86_400))
        );
        assert_eq!(Shorthand::parse("1M").map(|d| d.fixed()), Some(None));
        for bad in ["", "d", "0d", "1.5d", "-1d", "1s", "1 d", "10x"] {
            assert_eq!(Shorthand::parse(bad), None, "{bad:?}");
        }
    }

    proptest! {
        /// Any text: never panics; what parses prints back as itself
        /// (without leading zeros).
        #[test]
        fn shorthand_round_trips(s in "[0-9]{0,5}[mhdwMQYs]?") {
            if let Some(d) = Shorthand::parse(&s) {
                prop_assert_eq!(Shorthand::parse(&d.to_string()), Some(d));
                prop_assert!(d.n > 0);
            }
        }
    }
}
