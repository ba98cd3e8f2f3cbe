//! Lifecycle notices handled by `stop-gracefully`: which transition, and when a spot
//! interruption hits.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The transition lifecycled passes as the handler's first argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// `ec2:SPOT_INSTANCE_TERMINATION`: the instance goes away at a given time.
    SpotInterruption,
    /// `autoscaling:EC2_INSTANCE_TERMINATING`: an Auto Scaling lifecycle hook waits.
    Terminating,
    /// Anything else, or nothing.
    Other(String),
}

impl Transition {
    pub fn parse(text: &str) -> Transition {
        match text {
            "ec2:SPOT_INSTANCE_TERMINATION" => Transition::SpotInterruption,
            "autoscaling:EC2_INSTANCE_TERMINATING" => Transition::Terminating,
            other => Transition::Other(other.to_owned()),
        }
    }
}

/// How long before a spot interruption the agent is told to cancel its jobs, so it
/// can still deregister before the hard stop.
pub const SPOT_MARGIN: Duration = Duration::from_secs(20);

/// Parses an RFC 3339 timestamp such as `2026-01-05T18:02:00Z` or
/// `2026-01-05T18:02:00.5+01:00`.
pub fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    let (date, time) = text.split_once(['T', 't', ' '])?;
    let mut date_parts = date.splitn(3, '-');
    let year: i64 = date_parts.next()?.parse().ok()?;
    let month: i64 = date_parts.next()?.parse().ok()?;
    let day: i64 = date_parts.next()?.parse().ok()?;
    let (clock, offset_secs) = if let Some(clock) = time.strip_suffix(['Z', 'z']) {
        (clock, 0)
    } else {
        let split = time.rfind(['+', '-'])?;
        let (clock, offset) = time.split_at(split);
        let sign = if offset.starts_with('-') { -1 } else { 1 };
        let (hours, minutes) = offset[1..].split_once(':')?;
        let hours: i64 = hours.parse().ok()?;
        let minutes: i64 = minutes.parse().ok()?;
        if !(0..=23).contains(&hours) || !(0..=59).contains(&minutes) {
            return None;
        }
        (clock, sign * (hours * 3600 + minutes * 60))
    };
    let mut clock_parts = clock.splitn(3, ':');
    let hour: i64 = clock_parts.next()?.parse().ok()?;
    let minute: i64 = clock_parts.next()?.parse().ok()?;
    let seconds = clock_parts.next()?;
    let (whole, fraction) = seconds.split_once('.').unwrap_or((seconds, ""));
    let second: i64 = whole.parse().ok()?;
    if !(0..=9999).contains(&year)
        || !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || !(0..=23).contains(&hour)
        || !(0..=59).contains(&minute)
        || !(0..=60).contains(&second)
        || !fraction.chars().all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let nanos: u32 = format!("{fraction:0<9}").get(..9)?.parse().ok()?;
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    let secs = u64::try_from(secs).ok()?;
    UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
}

/// Formats a time as RFC 3339 in UTC to the second, such as `2026-01-05T18:02:00Z`;
/// times before the epoch format as the epoch.
pub fn format_rfc3339(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let secs = i64::try_from(secs).unwrap_or(i64::MAX / 2);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (the inverse of
/// `days_from_civil`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use test_case::test_case;

    use super::*;

    #[test_case("1970-01-01T00:00:00Z")]
    #[test_case("2000-02-29T23:59:59Z")]
    #[test_case("2026-01-05T18:02:00Z")]
    #[test_case("2100-12-31T00:00:01Z")]
    fn formats_what_it_parses(text: &str) {
        assert_eq!(format_rfc3339(parse_rfc3339(text).unwrap()), text);
    }

    fn secs(time: SystemTime) -> u64 {
        time.duration_since(UNIX_EPOCH).unwrap().as_secs()
    }

    #[test_case("1970-01-01T00:00:00Z", 0)]
    #[test_case("2015-01-05T18:02:00Z", 1_420_480_920)]
    #[test_case("2015-01-05T19:02:00+01:00", 1_420_480_920)]
    #[test_case("2015-01-05T17:32:00.250-00:30", 1_420_480_920)]
    #[test_case("2024-02-29T00:00:00Z", 1_709_164_800)]
    fn parses(text: &str, expected: u64) {
        assert_eq!(parse_rfc3339(text).map(secs), Some(expected));
    }

    #[test_case("")]
    #[test_case("2015-13-05T18:02:00Z")]
    #[test_case("2015-01-05 18:02")]
    #[test_case("tomorrow")]
    fn refuses(text: &str) {
        assert_eq!(parse_rfc3339(text), None);
    }

    #[test]
    fn reads_transitions() {
        assert_eq!(
            Transition::parse("ec2:SPOT_INSTANCE_TERMINATION"),
            Transition::SpotInterruption
        );
        assert_eq!(
            Transition::parse("autoscaling:EC2_INSTANCE_TERMINATING"),
            Transition::Terminating
        );
        assert_eq!(Transition::parse(""), Transition::Other(String::new()));
    }

    proptest! {
        /// Lifecycle notices come from outside the process: any text is a
        /// transition and a time or none, never a panic.
        #[test]
        fn parsers_never_panic(
            text in ".*",
            time_like in "[0-9]{0,20}-[0-9]{0,20}-[0-9]{0,20}[T ][0-9]{0,20}:[0-9]{0,20}:[0-9]{0,20}(\\.[0-9]{0,12})?(Z|[+-][0-9]{0,20}:?[0-9]{0,20})?",
        ) {
            let _ = Transition::parse(&text);
            let _ = parse_rfc3339(&text);
            let _ = parse_rfc3339(&time_like);
        }
    }

    /// See: the fuzz target `lifecycle` found that an offset or a year too large for
    /// the arithmetic overflowed (a panic in debug builds, a wrong time otherwise).
    #[test]
    fn out_of_range_offsets_and_years_are_refused_not_overflowed() {
        assert_eq!(parse_rfc3339("2026-01-05T18:02:00+3555555555555111113:33"), None);
        assert_eq!(parse_rfc3339("2026-01-05T18:02:00+24:00"), None);
        assert_eq!(parse_rfc3339("99999999999999-01-05T18:02:00Z"), None);
        assert_eq!(parse_rfc3339("2026-01-05T99999999999999999:02:00Z"), None);
        assert_eq!(
            parse_rfc3339("1970-01-01T01:00:00+01:00"),
            Some(UNIX_EPOCH),
            "a valid offset still counts"
        );
    }
}
