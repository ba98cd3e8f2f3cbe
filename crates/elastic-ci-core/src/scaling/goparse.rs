//! Values in the syntax of Go's standard library, which the original scaler used for its
//! environment variables: `strconv.ParseBool`, `time.ParseDuration`, `strconv.Atoi` and
//! `strconv.ParseFloat`. Keeping the grammar lets existing stack configurations move
//! over unchanged.

/// A signed duration in nanoseconds, as Go's `time.Duration` (an `int64`).
pub type GoNanos = i64;

/// `strconv.ParseBool`: `1 t T TRUE true True` and `0 f F FALSE false False`.
pub fn parse_bool(input: &str) -> Option<bool> {
    match input {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// `time.ParseDuration`: a signed sequence of decimal numbers, each with an optional
/// fraction and a unit (`ns`, `us`, `µs`, `μs`, `ms`, `s`, `m`, `h`), such as `300ms`,
/// `-1.5h` or `2h45m`. A bare `0` is allowed; other bare numbers are not.
pub fn parse_duration(input: &str) -> Option<GoNanos> {
    let (negative, mut rest) = match input.as_bytes().first() {
        Some(b'-') => (true, &input[1..]),
        Some(b'+') => (false, &input[1..]),
        _ => (false, input),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    // Accumulated in u64 like Go, which allows exactly one more nanosecond for the
    // negative extreme.
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let integer_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (integer_digits, after_integer) = rest.split_at(integer_len);
        let (fraction_digits, after_number) = match after_integer.strip_prefix('.') {
            Some(after_dot) => {
                let len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
                after_dot.split_at(len)
            }
            None => ("", after_integer),
        };
        if integer_digits.is_empty() && fraction_digits.is_empty() {
            return None;
        }
        let unit_len = after_number
            .char_indices()
            .find(|(_, c)| *c == '.' || c.is_ascii_digit())
            .map_or(after_number.len(), |(index, _)| index);
        let (unit, after_unit) = after_number.split_at(unit_len);
        let unit_nanos: u64 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        let mut value: u64 = if integer_digits.is_empty() {
            0
        } else {
            integer_digits.parse::<u64>().ok()?.checked_mul(unit_nanos)?
        };
        if !fraction_digits.is_empty() {
            // Go keeps the fraction's first digits that fit and scales them by the unit
            // in floating point; so does this.
            let kept = &fraction_digits[..fraction_digits.len().min(18)];
            let numerator = kept.parse::<u64>().ok()?;
            let scale = 10f64.powi(i32::try_from(kept.len()).ok()?);
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                clippy::cast_precision_loss,
                reason = "a non-negative fraction of one unit, below 2^53 nanoseconds"
            )]
            let fraction = (numerator as f64 * (unit_nanos as f64 / scale)) as u64;
            value = value.checked_add(fraction)?;
        }
        total = total.checked_add(value)?;
        rest = after_unit;
    }
    if negative {
        if total > i64::MAX as u64 + 1 {
            return None;
        }
        Some(0i64.checked_sub_unsigned(total)?)
    } else {
        i64::try_from(total).ok()
    }
}

/// `strconv.Atoi`: an optionally signed base-10 integer.
pub fn parse_int(input: &str) -> Option<i64> {
    input.parse().ok()
}

/// `strconv.ParseFloat`, limited to finite values.
pub fn parse_float(input: &str) -> Option<f64> {
    input.parse::<f64>().ok().filter(|value| value.is_finite())
}

#[cfg(test)]
mod tests {
    use test_case::test_case;

    use super::*;

    const S: i64 = 1_000_000_000;

    #[test_case("0", Some(0); "bare zero")]
    #[test_case("-0", Some(0); "negative zero")]
    #[test_case("10s", Some(10 * S); "seconds")]
    #[test_case("1m30s", Some(90 * S); "minutes and seconds")]
    #[test_case("1h", Some(3600 * S); "hours")]
    #[test_case("1.5h", Some(5400 * S); "fractional hours")]
    #[test_case(".5s", Some(S / 2); "leading dot")]
    #[test_case("1.s", Some(S); "trailing dot")]
    #[test_case("300ms", Some(300_000_000); "milliseconds")]
    #[test_case("2us", Some(2_000); "microseconds ascii")]
    #[test_case("2µs", Some(2_000); "microseconds micro sign")]
    #[test_case("2μs", Some(2_000); "microseconds greek mu")]
    #[test_case("7ns", Some(7); "nanoseconds")]
    #[test_case("-1s", Some(-S); "negative")]
    #[test_case("+5m", Some(300 * S); "plus sign")]
    #[test_case("2h45m0.5s", Some(9900 * S + S / 2); "compound with fraction")]
    #[test_case("9223372036854775807ns", Some(i64::MAX); "largest")]
    #[test_case("-9223372036854775808ns", Some(i64::MIN); "smallest")]
    #[test_case("9223372036854775808ns", None; "overflow")]
    #[test_case("3000000h", None; "overflow in hours")]
    #[test_case("", None; "empty")]
    #[test_case("10", None; "bare number")]
    #[test_case("-", None; "sign only")]
    #[test_case(".s", None; "dot without digits")]
    #[test_case("10x", None; "unknown unit")]
    #[test_case("10 s", None; "space")]
    #[test_case("1h-5m", None; "sign in the middle")]
    #[test_case("s", None; "unit only")]
    #[test_case("10S", None; "units are case sensitive")]
    fn parses_go_durations(input: &str, expected: Option<i64>) {
        assert_eq!(parse_duration(input), expected);
    }

    #[test_case("1", Some(true))]
    #[test_case("t", Some(true))]
    #[test_case("T", Some(true))]
    #[test_case("TRUE", Some(true))]
    #[test_case("true", Some(true))]
    #[test_case("True", Some(true))]
    #[test_case("0", Some(false))]
    #[test_case("f", Some(false))]
    #[test_case("F", Some(false))]
    #[test_case("FALSE", Some(false))]
    #[test_case("false", Some(false))]
    #[test_case("False", Some(false))]
    #[test_case("yes", None)]
    #[test_case("tRUE", None)]
    #[test_case(" true", None)]
    #[test_case("2", None)]
    fn parses_go_booleans(input: &str, expected: Option<bool>) {
        assert_eq!(parse_bool(input), expected);
    }

    #[test_case("5", Some(5))]
    #[test_case("+5", Some(5))]
    #[test_case("-1", Some(-1))]
    #[test_case("1.0", None)]
    #[test_case(" 1", None)]
    #[test_case("0x10", None)]
    fn parses_go_integers(input: &str, expected: Option<i64>) {
        assert_eq!(parse_int(input), expected);
    }

    #[test_case("1", Some(1.0))]
    #[test_case("-0.5", Some(-0.5))]
    #[test_case("1e1", Some(10.0))]
    #[test_case("NaN", None)]
    #[test_case("inf", None)]
    #[test_case("one", None)]
    fn parses_finite_floats(input: &str, expected: Option<f64>) {
        assert_eq!(parse_float(input), expected);
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            let text = String::from_utf8_lossy(&bytes);
            let _ = (parse_duration(&text), parse_bool(&text), parse_int(&text), parse_float(&text));
        }

        #[test]
        fn durations_never_panic_on_duration_like_text(
            text in "[-+]?([0-9]{0,25}(\\.[0-9]{0,30})?(ns|us|\u{b5}s|\u{3bc}s|ms|s|m|h|x|\\.)?){0,5}"
        ) {
            if let Some(nanos) = parse_duration(&text) {
                proptest::prop_assert!(!text.is_empty());
                proptest::prop_assert!(nanos == 0 || text.chars().any(|c| c.is_ascii_digit()));
            }
        }
    }
}
