//! Lifecycle notices: what the instance metadata service announces (the Auto Scaling
//! target lifecycle state, a spot interruption, a rebalance recommendation), which of
//! them `watch` acts on, and the transitions `stop-gracefully` is called with.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The termination lifecycle hook the stack declares on its group: `watch` keeps it
/// waiting while jobs run and completes it once the agents are gone.
pub const DRAIN_HOOK_NAME: &str = "buildkite-agent-drain";

/// The launch lifecycle hook the stack declares on its group when it has a warm pool:
/// it holds a new instance until its boot (warm phase, resume or full boot) is done,
/// and the boot completes it (`CONTINUE`, or `ABANDON` when the boot failed). Without
/// it, Auto Scaling stops an instance launched into the warm pool as soon as it runs.
pub const LAUNCH_HOOK_NAME: &str = "buildkite-agent-launch";

/// How long a boot may take before it is given up: the boot's own deadline, and the
/// launch hook's heartbeat timeout (the boot sends no heartbeat).
pub const BOOT_DEADLINE: Duration = Duration::from_secs(15 * 60);

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

/// Where Auto Scaling is moving the instance, as
/// `latest/meta-data/autoscaling/target-lifecycle-state` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetState {
    InService,
    /// Leaving the group: a termination lifecycle hook holds it in
    /// `Terminating:Wait`.
    Terminated,
    Detached,
    Standby,
    /// Going into the warm pool, to end up in this pool state (`Stopped`, `Running`,
    /// `Hibernated` or `Terminated`).
    Warmed(String),
    Other(String),
}

impl TargetState {
    pub fn parse(text: &str) -> TargetState {
        match text.trim() {
            "InService" => TargetState::InService,
            "Terminated" => TargetState::Terminated,
            "Detached" => TargetState::Detached,
            "Standby" => TargetState::Standby,
            other => match other.strip_prefix("Warmed:") {
                Some(pool_state) => TargetState::Warmed(pool_state.to_owned()),
                None => TargetState::Other(other.to_owned()),
            },
        }
    }
}

/// What `latest/meta-data/spot/instance-action` announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpotAction {
    /// `terminate`, `stop` or `hibernate`.
    pub action: String,
    pub time: SystemTime,
}

/// A spot instance-action document that is not `{"action": …, "time": RFC 3339}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid spot instance-action {document:?}: expected {{\"action\":\"terminate\",\"time\":\"<RFC 3339>\"}}"
)]
pub struct SpotActionError {
    /// The document, cut to 200 characters.
    pub document: String,
}

impl SpotAction {
    pub fn parse(document: &str) -> Result<SpotAction, SpotActionError> {
        let error = || SpotActionError { document: document.chars().take(200).collect() };
        let value: serde_json::Value = serde_json::from_str(document).map_err(|_| error())?;
        let action = value.get("action").and_then(|action| action.as_str()).ok_or_else(error)?;
        let time = value
            .get("time")
            .and_then(|time| time.as_str())
            .and_then(parse_rfc3339)
            .ok_or_else(error)?;
        Ok(SpotAction { action: action.to_owned(), time })
    }
}

/// What the metadata service said at one poll; `None` where it answered 404.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetadataNotices {
    pub target_state: Option<String>,
    pub spot_action: Option<String>,
    pub rebalance: Option<String>,
}

/// What `watch` does about one poll's notices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A spot interruption: drain until shortly before `time`, then cancel.
    SpotInterruption { time: SystemTime },
    /// A termination hook waits: drain, heartbeating, then complete the action.
    Terminating,
    /// The group is moving the instance into its warm pool: stop the agents without
    /// terminating, complete the action, and let the group stop the instance.
    ToWarmPool(String),
    /// A rebalance recommendation: the spot instance is at elevated risk. Drain now,
    /// so that no job starts that a later 2-minute notice would cut short.
    Rebalance,
}

/// The notice to act on, most urgent first: a spot interruption (its deadline is
/// fixed), then a waiting termination hook, then a move into the warm pool, then a
/// rebalance recommendation. A malformed spot document is treated as an interruption
/// two minutes after `now`, the shortest notice spot gives.
pub fn notice(notices: &MetadataNotices, now: SystemTime) -> Option<Notice> {
    if let Some(document) = &notices.spot_action {
        let time = match SpotAction::parse(document) {
            Ok(action) => action.time,
            Err(_) => now + SPOT_NOTICE,
        };
        return Some(Notice::SpotInterruption { time });
    }
    match notices.target_state.as_deref().map(TargetState::parse) {
        Some(TargetState::Terminated) => return Some(Notice::Terminating),
        Some(TargetState::Warmed(pool_state)) => return Some(Notice::ToWarmPool(pool_state)),
        _ => {}
    }
    notices.rebalance.as_ref().map(|_| Notice::Rebalance)
}

/// The warning a spot interruption gives.
pub const SPOT_NOTICE: Duration = Duration::from_secs(120);

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

    #[test_case(0, "1970-01-01T00:00:00Z")]
    #[test_case(1_420_480_920, "2015-01-05T18:02:00Z")]
    #[test_case(1_709_164_800, "2024-02-29T00:00:00Z")]
    fn formats(secs: u64, expected: &str) {
        let time = UNIX_EPOCH + Duration::from_secs(secs);
        assert_eq!(format_rfc3339(time), expected);
        assert_eq!(parse_rfc3339(expected), Some(time));
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

    #[test_case("InService", TargetState::InService)]
    #[test_case("Terminated\n", TargetState::Terminated)]
    #[test_case("Warmed:Stopped", TargetState::Warmed("Stopped".into()))]
    #[test_case("Warmed:Hibernated", TargetState::Warmed("Hibernated".into()))]
    #[test_case("Standby", TargetState::Standby)]
    #[test_case("Detached", TargetState::Detached)]
    #[test_case("Pending", TargetState::Other("Pending".into()))]
    fn reads_target_states(text: &str, expected: TargetState) {
        assert_eq!(TargetState::parse(text), expected);
    }

    #[test]
    fn reads_a_spot_instance_action() {
        let action =
            SpotAction::parse(r#"{"action": "terminate", "time": "2015-01-05T18:02:00Z"}"#)
                .unwrap();
        assert_eq!(action.action, "terminate");
        assert_eq!(secs(action.time), 1_420_480_920);
    }

    #[test_case("")]
    #[test_case("2015-01-05T18:02:00Z")]
    #[test_case(r#"{"action":"terminate"}"#)]
    #[test_case(r#"{"action":"terminate","time":"soon"}"#)]
    fn refuses_a_malformed_spot_instance_action(document: &str) {
        let error = SpotAction::parse(document).unwrap_err();
        assert!(error.to_string().starts_with("invalid spot instance-action"), "{error}");
    }

    fn notices(
        target: Option<&str>,
        spot: Option<&str>,
        rebalance: Option<&str>,
    ) -> MetadataNotices {
        MetadataNotices {
            target_state: target.map(str::to_owned),
            spot_action: spot.map(str::to_owned),
            rebalance: rebalance.map(str::to_owned),
        }
    }

    #[test]
    fn acts_on_the_most_urgent_notice() {
        let now = UNIX_EPOCH + Duration::from_secs(1_420_480_000);
        let spot = r#"{"action":"stop","time":"2015-01-05T18:02:00Z"}"#;
        let rebalance = Some(r#"{"noticeTime":"2015-01-05T18:00:00Z"}"#);
        assert_eq!(notice(&notices(Some("InService"), None, None), now), None);
        assert_eq!(notice(&notices(None, None, None), now), None);
        assert_eq!(
            notice(&notices(Some("Terminated"), Some(spot), rebalance), now),
            Some(Notice::SpotInterruption {
                time: UNIX_EPOCH + Duration::from_secs(1_420_480_920)
            })
        );
        assert_eq!(
            notice(&notices(Some("Terminated"), None, rebalance), now),
            Some(Notice::Terminating)
        );
        assert_eq!(
            notice(&notices(Some("Warmed:Stopped"), None, None), now),
            Some(Notice::ToWarmPool("Stopped".into()))
        );
        assert_eq!(
            notice(&notices(Some("InService"), None, rebalance), now),
            Some(Notice::Rebalance)
        );
        // An unreadable spot document still drains, with the shortest notice.
        assert_eq!(
            notice(&notices(None, Some("garbage"), None), now),
            Some(Notice::SpotInterruption { time: now + SPOT_NOTICE })
        );
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
            let _ = SpotAction::parse(&text);
            let _ = TargetState::parse(&text);
        }

        /// Formatting and parsing agree on every second from 1970 to 2200.
        #[test]
        fn formatting_round_trips(secs in 0u64..7_258_118_400) {
            let time = UNIX_EPOCH + Duration::from_secs(secs);
            prop_assert_eq!(parse_rfc3339(&format_rfc3339(time)), Some(time));
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
