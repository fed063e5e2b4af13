//! Exact decimal numbers as YAML writes them (`0.9995`, `800`, `1e3`,
//! `-2.5E-1`), so the importer can say "exactly": `target: 0.9995` becomes
//! `objective: 99.95` by moving the point, never through a binary float, and
//! `value: 0.8` seconds becomes 800,000 µs, not 799,999 after a rounding.
//!
//! A number is `mantissa × 10^exponent` with a sign. Only what the importer
//! needs is here: parsing, scaling by powers of ten, comparing with small
//! integers, floor/ceiling to an integer, and plain decimal text. The
//! mantissa is bounded (38 digits) and so is the exponent, which keeps every
//! operation exact and overflow-free; anything outside is refused by the
//! parser as "not a number we can represent exactly".
use std::cmp::Ordering;

/// Significant digits a mantissa may carry (u128 holds 38 decimal digits).
const MAX_DIGITS: usize = 38;
/// The largest exponent magnitude accepted (after normalisation).
const MAX_EXPONENT: i32 = 60;

/// An exact decimal: `(-1)^negative × mantissa × 10^exponent`.
#[derive(Clone, Copy, Debug)]
pub struct Decimal {
    negative: bool,
    mantissa: u128,
    exponent: i32,
}

impl PartialEq for Decimal {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Decimal {}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Decimal {
    fn cmp(&self, other: &Self) -> Ordering {
        let (a, b) = (self.normalised(), other.normalised());
        match (a.is_zero(), b.is_zero()) {
            (true, true) => return Ordering::Equal,
            (true, false) => {
                return if b.negative {
                    Ordering::Greater
                } else {
                    Ordering::Less
                };
            }
            (false, true) => {
                return if a.negative {
                    Ordering::Less
                } else {
                    Ordering::Greater
                };
            }
            _ => {}
        }
        if a.negative != b.negative {
            return if a.negative {
                Ordering::Less
            } else {
                Ordering::Greater
            };
        }
        let magnitude = compare_magnitude(&a, &b);
        if a.negative {
            magnitude.reverse()
        } else {
            magnitude
        }
    }
}

/// Compares |a| and |b| (both normalised, non-zero).
fn compare_magnitude(a: &Decimal, b: &Decimal) -> Ordering {
    // Order of magnitude first: digits + exponent is the position of the
    // leading digit.
    let lead = |d: &Decimal| digits(d.mantissa) as i32 + d.exponent;
    match lead(a).cmp(&lead(b)) {
        Ordering::Equal => {}
        other => return other,
    }
    // Same leading position: align the mantissas on the smaller exponent.
    // Both have at most MAX_DIGITS digits and the same leading position, so
    // the shift is below MAX_DIGITS and the product fits after trimming.
    let (ma, mb) = (a.mantissa, b.mantissa);
    let shift = (a.exponent - b.exponent).unsigned_abs();
    if a.exponent >= b.exponent {
        widen(ma, shift).map_or(Ordering::Greater, |wa| wa.cmp(&mb))
    } else {
        widen(mb, shift).map_or(Ordering::Less, |wb| ma.cmp(&wb))
    }
}

/// `m × 10^k`, or None on overflow.
fn widen(m: u128, k: u32) -> Option<u128> {
    10u128.checked_pow(k).and_then(|p| m.checked_mul(p))
}

fn digits(m: u128) -> usize {
    if m == 0 { 1 } else { m.ilog10() as usize + 1 }
}

impl Decimal {
    /// An integer.
    pub fn int(n: i64) -> Decimal {
        Decimal {
            negative: n < 0,
            mantissa: u128::from(n.unsigned_abs()),
            exponent: 0,
        }
    }

    /// Parses a YAML (core schema) integer or float as written: an optional
    /// sign, digits with an optional fraction (`5`, `0.25`, `.5`, `5.`),
    /// an optional exponent (`1e3`, `2.5E-1`). `.inf`, `.nan`, hex, octal,
    /// and numbers beyond the bounds above are refused.
    pub fn parse(text: &str) -> Option<Decimal> {
        let t = text.trim();
        let (negative, rest) = match t.as_bytes().first()? {
            b'-' => (true, &t[1..]),
            b'+' => (false, &t[1..]),
            _ => (false, t),
        };
        let (number, exp) = match rest.find(['e', 'E']) {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        let (int_part, frac_part) = match number.split_once('.') {
            Some((i, f)) => (i, f),
            None => (number, ""),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return None;
        }
        if !int_part
            .bytes()
            .chain(frac_part.bytes())
            .all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let mut exponent: i64 = match exp {
            None => 0,
            Some(e) => {
                let (sign, digits_text) = match e.as_bytes().first()? {
                    b'-' => (-1, &e[1..]),
                    b'+' => (1, &e[1..]),
                    _ => (1, e),
                };
                if digits_text.is_empty()
                    || digits_text.len() > 4
                    || !digits_text.bytes().all(|b| b.is_ascii_digit())
                {
                    return None;
                }
                sign * digits_text.parse::<i64>().ok()?
            }
        };
        // Digits without leading zeros; the fraction moves the exponent.
        let all: String = format!("{int_part}{frac_part}");
        let significant = all.trim_start_matches('0');
        let significant = significant.trim_end_matches('0');
        let trailing_zeros = all.len() - all.trim_end_matches('0').len();
        exponent -= frac_part.len() as i64;
        if significant.is_empty() {
            return Some(Decimal {
                negative: false,
                mantissa: 0,
                exponent: 0,
            });
        }
        exponent += trailing_zeros as i64;
        if significant.len() > MAX_DIGITS {
            return None;
        }
        let mantissa: u128 = significant.parse().ok()?;
        let exponent = i32::try_from(exponent).ok()?;
        if exponent.abs() > MAX_EXPONENT {
            return None;
        }
        Some(Decimal {
            negative,
            mantissa,
            exponent,
        })
    }

    fn is_zero(&self) -> bool {
        self.mantissa == 0
    }

    /// The same value with no trailing zeros in the mantissa (zero is +0).
    fn normalised(&self) -> Decimal {
        if self.mantissa == 0 {
            return Decimal {
                negative: false,
                mantissa: 0,
                exponent: 0,
            };
        }
        let mut d = *self;
        while d.mantissa.is_multiple_of(10) {
            d.mantissa /= 10;
            d.exponent += 1;
        }
        d
    }

    pub fn is_negative(&self) -> bool {
        self.negative && !self.is_zero()
    }

    /// `self × 10^k`: exact (the exponent moves).
    pub fn shift(&self, k: i32) -> Decimal {
        Decimal {
            exponent: self.exponent + k,
            ..*self
        }
    }

    /// Whether the value is a whole number.
    pub fn is_integer(&self) -> bool {
        let n = self.normalised();
        n.exponent >= 0
    }

    /// The largest integer not above the value, if it fits an i128.
    pub fn floor(&self) -> Option<i128> {
        self.round_toward(false)
    }

    /// The smallest integer not below the value, if it fits an i128.
    pub fn ceil(&self) -> Option<i128> {
        self.round_toward(true)
    }

    fn round_toward(&self, up: bool) -> Option<i128> {
        let n = self.normalised();
        let (whole, exact): (u128, bool) = if n.exponent >= 0 {
            (widen(n.mantissa, n.exponent.unsigned_abs())?, true)
        } else {
            match 10u128.checked_pow(n.exponent.unsigned_abs()) {
                // 10^k beyond u128: |value| < 1.
                None => (0, n.mantissa == 0),
                Some(p) => (n.mantissa / p, n.mantissa.is_multiple_of(p)),
            }
        };
        let whole = i128::try_from(whole).ok()?;
        let signed = if n.negative { -whole } else { whole };
        // Truncation went toward zero; step away from it where needed.
        Some(match (exact, n.negative, up) {
            (true, _, _) => signed,
            (false, false, true) => signed + 1,
            (false, true, false) => signed - 1,
            (false, _, _) => signed,
        })
    }

    /// Plain decimal text without an exponent or trailing zeros: `99.95`,
    /// `800`, `-0.25`, `0`.
    pub fn plain(&self) -> String {
        let n = self.normalised();
        let sign = if n.negative { "-" } else { "" };
        let m = n.mantissa.to_string();
        if n.exponent >= 0 {
            return format!(
                "{sign}{m}{}",
                "0".repeat(n.exponent.unsigned_abs() as usize)
            );
        }
        let point = n.exponent.unsigned_abs() as usize;
        if m.len() > point {
            let (i, f) = m.split_at(m.len() - point);
            format!("{sign}{i}.{f}")
        } else {
            format!("{sign}0.{}{m}", "0".repeat(point - m.len()))
        }
    }

    /// The nearest binary float (for catalog fields that are floats).
    pub fn to_f64(self) -> f64 {
        self.plain().parse().unwrap_or(f64::NAN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(s: &str) -> Decimal {
        Decimal::parse(s).unwrap_or_else(|| panic!("{s} parses"))
    }

    #[test]
    fn moves_the_point_without_rounding() {
        assert_eq!(d("0.9995").shift(2).plain(), "99.95");
        assert_eq!(d("0.999").shift(2).plain(), "99.9");
        assert_eq!(d("0.98").shift(2).plain(), "98");
        assert_eq!(d("99.99").plain(), "99.99");
        assert_eq!(d("1e3").plain(), "1000");
        assert_eq!(d("2.5E-1").plain(), "0.25");
        assert_eq!(d(".5").plain(), "0.5");
        assert_eq!(d("5.").plain(), "5");
        assert_eq!(d("-0.0").plain(), "0");
        assert_eq!(d("0.000001").shift(6).plain(), "1");
        // 0.8 s in µs is 800000 exactly (0.8 * 1e6 in binary is 799999.99…).
        assert_eq!(d("0.8").shift(6).floor(), Some(800_000));
    }

    #[test]
    fn floor_and_ceiling() {
        assert_eq!(d("499.9995").floor(), Some(499));
        assert_eq!(d("499.9995").ceil(), Some(500));
        assert_eq!(d("500").floor(), Some(500));
        assert_eq!(d("500").ceil(), Some(500));
        assert_eq!(d("-1.5").floor(), Some(-2));
        assert_eq!(d("-1.5").ceil(), Some(-1));
        assert_eq!(d("0.001").floor(), Some(0));
        assert_eq!(d("0.001").ceil(), Some(1));
    }

    #[test]
    fn refuses_what_is_not_a_plain_number() {
        for bad in [
            "", "-", ".", "1e", "e3", "0x10", "1_000", ".inf", ".nan", "1.2.3", "1e99999", "abc",
            "1 000",
        ] {
            assert!(Decimal::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn compares_across_exponents_and_signs() {
        assert!(d("0.99") < d("1"));
        assert!(d("1") == d("1.000"));
        assert!(d("100") == d("1e2"));
        assert!(d("-1") < d("0"));
        assert!(d("-2") < d("-1"));
        assert!(d("0") == d("-0"));
        assert!(d("0.1") > d("0.099999999999999999999"));
    }

    proptest! {
        /// Any text: parsing never panics, and what parses prints as plain
        /// text that parses back to the same value.
        #[test]
        fn parsing_never_panics_and_plain_text_round_trips(s in "[-+0-9.eE]{0,24}") {
            if let Some(x) = Decimal::parse(&s) {
                let back = Decimal::parse(&x.plain());
                prop_assert_eq!(back, Some(x));
            }
        }

        /// A number written with a point and with an exponent is the same
        /// number, equal to the integer arithmetic it stands for.
        #[test]
        fn written_forms_agree(m in 0u64..10_000_000_000, e in -15i32..15, negative: bool) {
            let sign = if negative { "-" } else { "" };
            let scientific = d(&format!("{sign}{m}e{e}"));
            let plain = d(&scientific.plain());
            prop_assert_eq!(scientific, plain);
            // Scaling back by -e gives the integer m.
            let back = scientific.shift(-e);
            prop_assert!(back.is_integer());
            let want = if negative { -(m as i128) } else { m as i128 };
            prop_assert_eq!(back.floor(), Some(want));
            prop_assert_eq!(back.ceil(), Some(want));
            // And the float view is the float of the same text.
            let f: f64 = format!("{sign}{m}e{e}").parse().unwrap_or(f64::NAN);
            prop_assert_eq!(scientific.to_f64(), f);
        }

        /// floor ≤ x ≤ ceil, with a gap of at most one, and equality exactly
        /// for whole numbers.
        #[test]
        fn floor_and_ceiling_bracket_the_value(m in 0u64..1_000_000_000_000, e in -9i32..4, negative: bool) {
            let sign = if negative { "-" } else { "" };
            let x = d(&format!("{sign}{m}e{e}"));
            let (lo, hi) = (x.floor().expect("fits"), x.ceil().expect("fits"));
            let as_dec = |n: i128| d(&n.to_string());
            prop_assert!(as_dec(lo) <= x && x <= as_dec(hi));
            prop_assert!(hi - lo <= 1);
            prop_assert_eq!(lo == hi, x.is_integer());
        }

        /// The order agrees with the order of the integers the values scale to.
        #[test]
        fn order_matches_integer_order(a in -1_000_000i64..1_000_000, b in -1_000_000i64..1_000_000, k in 0i32..6) {
            let (x, y) = (Decimal::int(a).shift(-k), Decimal::int(b).shift(-k));
            prop_assert_eq!(x.cmp(&y), a.cmp(&b));
        }
    }
}
