//! The scaler's configuration, read from the environment variables of the original
//! scaler Lambda under the same names, defaults and syntax.
//!
//! An unset variable and an empty one mean the same: the default. A variable that is
//! set must parse, or the whole configuration is rejected with an error naming it.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::time::Duration;

use url::Url;

use crate::scaling::goparse::{self, GoNanos};
use crate::scaling::{ScalingMode, ScalingPolicy};
use crate::secret::{BlankTokenError, Secret, agent_token};
use crate::uri::{AGENT_ENDPOINT_EXPECTED, parse_agent_endpoint};

/// Where the Buildkite agent token comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `BUILDKITE_AGENT_TOKEN`, in clear.
    Plain(Secret),
    /// `BUILDKITE_AGENT_TOKEN_SSM_KEY`: a parameter name or a full parameter ARN, read
    /// with decryption.
    Ssm(String),
}

/// Everything the scaler reads from its environment.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalerConfig {
    /// `BUILDKITE_QUEUE`: the queue polled, and the CloudWatch `Queue` dimension.
    pub queue: String,
    /// `ASG_NAME`: the Auto Scaling group scaled; also the key of the startup jitter.
    pub group_name: String,
    /// `BUILDKITE_AGENT_TOKEN` or `BUILDKITE_AGENT_TOKEN_SSM_KEY` (which wins).
    pub agent_token: TokenSource,
    /// `BUILDKITE_AGENT_ENDPOINT`: the agent API base URL.
    pub agent_endpoint: Url,
    /// `LAMBDA_INTERVAL`: the minimum time between polls in one invocation.
    pub poll_interval: Duration,
    /// `LAMBDA_TIMEOUT`: stop polling after this long; `None` when zero or negative.
    pub invocation_timeout: Option<Duration>,
    /// `LAMBDA_STARTUP_JITTER_MAX`: the window of the deterministic startup delay.
    pub startup_jitter_max: Duration,
    /// `ASG_ACTIVITY_TIMEOUT`: deadline of the cold-start scan of scaling activities.
    pub activity_timeout: Duration,
    /// `MAX_DESCRIBE_SCALING_ACTIVITIES_PAGES`: page cap of that scan; `None` (any
    /// negative value) is unlimited.
    pub max_activity_pages: Option<u32>,
    /// `CLOUDWATCH_METRICS`: publish the queue's metrics every poll.
    pub cloudwatch_metrics: bool,
    /// `IGNORE_CLOUDWATCH_METRICS_ERRORS`: scale even when publishing the metrics failed
    /// (the original skipped the poll).
    pub ignore_cloudwatch_metrics_errors: bool,
    /// `DANGLING_CHECK_MINIMUM_INSTANCE_UPTIME` (Elastic CI mode).
    pub dangling_check_minimum_instance_uptime: Duration,
    /// `MAX_DANGLING_INSTANCES_TO_CHECK` (Elastic CI mode).
    pub max_dangling_instances_to_check: i64,
    /// `DEBUG`: outside Lambda, run one invocation and exit.
    pub debug: bool,
    /// The inputs of [`crate::scaling::decide`].
    pub policy: ScalingPolicy,
}

/// A variable that is missing or does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScalerConfigError {
    #[error("{name} is required but not set")]
    Missing { name: &'static str },
    #[error("invalid {name} {value:?}: expected {expected}")]
    Invalid { name: &'static str, value: String, expected: &'static str },
    #[error("must provide either BUILDKITE_AGENT_TOKEN or BUILDKITE_AGENT_TOKEN_SSM_KEY")]
    MissingToken,
    #[error(transparent)]
    BlankToken(#[from] BlankTokenError),
}

impl ScalerConfigError {
    /// The variable at fault, when there is one.
    pub fn variable(&self) -> Option<&'static str> {
        match self {
            ScalerConfigError::Missing { name } | ScalerConfigError::Invalid { name, .. } => {
                Some(name)
            }
            ScalerConfigError::BlankToken(_) => Some("BUILDKITE_AGENT_TOKEN"),
            ScalerConfigError::MissingToken => None,
        }
    }
}

/// The endpoint the original scaler polls unless told otherwise.
pub const DEFAULT_AGENT_ENDPOINT: &str = "https://agent.buildkite.com/v3";

const GO_BOOL: &str = "a boolean (1, t, T, TRUE, true, True, 0, f, F, FALSE, false, False)";
const GO_DURATION: &str = "a duration such as 10s, 1m30s, 1.5h or 0";
const GO_INT: &str = "an integer";
const GO_FLOAT: &str = "a finite number";
const SCALER_MODES: &str = "original or responsive";
/// The largest scale factor: a step of a hundred times the shortfall is already more
/// than any group needs, and larger ones only risk overflowing the arithmetic.
pub const MAX_SCALE_FACTOR: f64 = 100.0;
const SCALE_FACTOR: &str = "a number from -100 to 100 (its absolute value is used)";
/// The most agents one instance runs, as the instance boot accepts.
pub const MAX_AGENTS_PER_INSTANCE: i64 = 10_000;
const AGENTS_PER_INSTANCE: &str =
    "an integer of at most 10000 (zero or less: one instance per agent)";
const GO_INT_U32: &str = "an integer of at most 4294967295";

impl ScalerConfig {
    /// Every environment variable [`ScalerConfig::from_env_map`] reads.
    pub const ENV_VARS: &[&str] = &[
        "BUILDKITE_QUEUE",
        "ASG_NAME",
        "AGENTS_PER_INSTANCE",
        "BUILDKITE_AGENT_TOKEN",
        "BUILDKITE_AGENT_TOKEN_SSM_KEY",
        "BUILDKITE_AGENT_ENDPOINT",
        "LAMBDA_INTERVAL",
        "LAMBDA_TIMEOUT",
        "LAMBDA_STARTUP_JITTER_MAX",
        "ASG_ACTIVITY_TIMEOUT",
        "MAX_DESCRIBE_SCALING_ACTIVITIES_PAGES",
        "SCALE_OUT_FACTOR",
        "SCALE_IN_FACTOR",
        "SCALE_OUT_COOLDOWN_PERIOD",
        "SCALE_IN_COOLDOWN_PERIOD",
        "SCALE_ONLY_AFTER_ALL_EVENT",
        "INCLUDE_WAITING",
        "INSTANCE_BUFFER",
        "AVAILABILITY_THRESHOLD",
        "MAX_INSTANCE_CAP",
        "DISABLE_SCALE_IN",
        "DISABLE_SCALE_OUT",
        "CLOUDWATCH_METRICS",
        "ELASTIC_CI_MODE",
        "DANGLING_CHECK_MINIMUM_INSTANCE_UPTIME",
        "MAX_DANGLING_INSTANCES_TO_CHECK",
        "DEBUG",
        "ROUTE_BY_DESIRED_CAPACITY",
        "IGNORE_CLOUDWATCH_METRICS_ERRORS",
        "SCALER_MODE",
    ];

    /// Reads the configuration from environment variables.
    pub fn from_env_map(vars: &HashMap<String, String>) -> Result<ScalerConfig, ScalerConfigError> {
        let env = Env(vars);
        let queue = env.required("BUILDKITE_QUEUE")?.to_owned();
        let group_name = env.required("ASG_NAME")?.to_owned();
        let agents_per_instance = env.required("AGENTS_PER_INSTANCE").and_then(|value| {
            goparse::parse_int(value)
                .filter(|n| *n <= MAX_AGENTS_PER_INSTANCE)
                .ok_or_else(|| invalid("AGENTS_PER_INSTANCE", value, AGENTS_PER_INSTANCE))
        })?;
        let elastic_ci_mode = env.bool("ELASTIC_CI_MODE", false)?;
        let token = env.get("BUILDKITE_AGENT_TOKEN");
        let agent_token = match (env.get("BUILDKITE_AGENT_TOKEN_SSM_KEY"), token) {
            (Some(key), _) => TokenSource::Ssm(key.to_owned()),
            (None, Some(token)) => {
                TokenSource::Plain(agent_token(&Secret::new(token), "BUILDKITE_AGENT_TOKEN")?)
            }
            (None, None) => return Err(ScalerConfigError::MissingToken),
        };
        let policy = ScalingPolicy {
            // Zero or less means one instance per agent needed, as in the original.
            agents_per_instance: positive_u32(agents_per_instance),
            include_waiting: env.bool("INCLUDE_WAITING", false)?,
            instance_buffer: positive_u32(env.int_u32("INSTANCE_BUFFER", 0)?).map_or(0, u32::from),
            max_instance_cap: positive_u32(env.int_u32("MAX_INSTANCE_CAP", 0)?),
            availability_threshold: env.float("AVAILABILITY_THRESHOLD", 0.5)?,
            scale_out_factor: env.scale_factor("SCALE_OUT_FACTOR")?,
            scale_in_factor: env.scale_factor("SCALE_IN_FACTOR")?,
            scale_out_cooldown: non_negative(env.duration("SCALE_OUT_COOLDOWN_PERIOD", 0)?),
            scale_in_cooldown: non_negative(env.duration(
                "SCALE_IN_COOLDOWN_PERIOD",
                if elastic_ci_mode { 3_600_000_000_000 } else { 0 },
            )?),
            scale_only_after_all_events: env.bool("SCALE_ONLY_AFTER_ALL_EVENT", false)?,
            disable_scale_in: env.bool("DISABLE_SCALE_IN", false)?,
            disable_scale_out: env.bool("DISABLE_SCALE_OUT", false)?,
            elastic_ci_mode,
            route_by_desired_capacity: env.bool("ROUTE_BY_DESIRED_CAPACITY", false)?,
            mode: env.parsed("SCALER_MODE", ScalingMode::Original, SCALER_MODES, |value| {
                match value {
                    "original" => Some(ScalingMode::Original),
                    "responsive" => Some(ScalingMode::Responsive),
                    _ => None,
                }
            })?,
        };
        let endpoint_text = env.get("BUILDKITE_AGENT_ENDPOINT").unwrap_or(DEFAULT_AGENT_ENDPOINT);
        let agent_endpoint = parse_agent_endpoint(endpoint_text).ok_or_else(|| {
            invalid("BUILDKITE_AGENT_ENDPOINT", endpoint_text, AGENT_ENDPOINT_EXPECTED)
        })?;
        let invocation_timeout = env.duration("LAMBDA_TIMEOUT", -1)?;
        Ok(ScalerConfig {
            queue,
            group_name,
            agent_token,
            agent_endpoint,
            poll_interval: non_negative(env.duration("LAMBDA_INTERVAL", 10_000_000_000)?),
            invocation_timeout: (invocation_timeout > 0).then(|| non_negative(invocation_timeout)),
            startup_jitter_max: non_negative(env.duration("LAMBDA_STARTUP_JITTER_MAX", 0)?),
            activity_timeout: non_negative(env.duration("ASG_ACTIVITY_TIMEOUT", 10_000_000_000)?),
            max_activity_pages: u32::try_from(
                env.int_u32("MAX_DESCRIBE_SCALING_ACTIVITIES_PAGES", -1)?,
            )
            .ok(),
            cloudwatch_metrics: env.bool("CLOUDWATCH_METRICS", false)?,
            ignore_cloudwatch_metrics_errors: env
                .bool("IGNORE_CLOUDWATCH_METRICS_ERRORS", false)?,
            dangling_check_minimum_instance_uptime: non_negative(
                env.duration("DANGLING_CHECK_MINIMUM_INSTANCE_UPTIME", 3_600_000_000_000)?,
            ),
            max_dangling_instances_to_check: env.int("MAX_DANGLING_INSTANCES_TO_CHECK", 5)?,
            debug: env.bool("DEBUG", false)?,
            policy,
        })
    }
}

struct Env<'a>(&'a HashMap<String, String>);

impl Env<'_> {
    /// A set, non-empty variable.
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str).filter(|value| !value.is_empty())
    }

    fn required(&self, name: &'static str) -> Result<&str, ScalerConfigError> {
        self.get(name).ok_or(ScalerConfigError::Missing { name })
    }

    fn parsed<T>(
        &self,
        name: &'static str,
        default: T,
        expected: &'static str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<T, ScalerConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(value) => parse(value).ok_or_else(|| invalid(name, value, expected)),
        }
    }

    fn bool(&self, name: &'static str, default: bool) -> Result<bool, ScalerConfigError> {
        self.parsed(name, default, GO_BOOL, goparse::parse_bool)
    }

    fn duration(&self, name: &'static str, default: GoNanos) -> Result<GoNanos, ScalerConfigError> {
        self.parsed(name, default, GO_DURATION, goparse::parse_duration)
    }

    fn int(&self, name: &'static str, default: i64) -> Result<i64, ScalerConfigError> {
        self.parsed(name, default, GO_INT, goparse::parse_int)
    }

    /// An integer whose positive values must fit in 32 bits; zero and negative values
    /// keep their meaning (none, or unlimited), larger ones are refused rather than
    /// silently clamped.
    fn int_u32(&self, name: &'static str, default: i64) -> Result<i64, ScalerConfigError> {
        self.parsed(name, default, GO_INT_U32, |value| {
            goparse::parse_int(value).filter(|n| *n <= i64::from(u32::MAX))
        })
    }

    fn float(&self, name: &'static str, default: f64) -> Result<f64, ScalerConfigError> {
        self.parsed(name, default, GO_FLOAT, goparse::parse_float)
    }

    /// A scale factor: its absolute value, as in the original, of at most
    /// [`MAX_SCALE_FACTOR`]; unset is zero (a step of one times the shortfall).
    fn scale_factor(&self, name: &'static str) -> Result<f64, ScalerConfigError> {
        self.parsed(name, 0.0, SCALE_FACTOR, |value| {
            goparse::parse_float(value).map(f64::abs).filter(|factor| *factor <= MAX_SCALE_FACTOR)
        })
    }
}

fn invalid(name: &'static str, value: &str, expected: &'static str) -> ScalerConfigError {
    ScalerConfigError::Invalid { name, value: value.to_owned(), expected }
}

/// A Go duration as a `Duration`; negative ones count as zero, which is how every
/// variable here treats them (a negative cooldown or interval never waits).
fn non_negative(nanos: GoNanos) -> Duration {
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(0))
}

fn positive_u32(value: i64) -> Option<NonZeroU32> {
    u32::try_from(value.clamp(0, i64::from(u32::MAX))).ok().and_then(NonZeroU32::new)
}

#[cfg(test)]
mod tests {
    use expect_test::{Expect, expect};
    use test_case::test_case;

    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        let mut vars: HashMap<String, String> = [
            ("BUILDKITE_QUEUE", "default"),
            ("ASG_NAME", "stack-AgentAutoScaleGroup"),
            ("AGENTS_PER_INSTANCE", "1"),
            ("BUILDKITE_AGENT_TOKEN", "token-in-clear"),
        ]
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect();
        for (name, value) in pairs {
            vars.insert((*name).to_owned(), (*value).to_owned());
        }
        vars
    }

    fn check(pairs: &[(&str, &str)], expect: Expect) {
        let rendered = match ScalerConfig::from_env_map(&vars(pairs)) {
            Ok(config) => format!("{config:#?}"),
            Err(error) => format!("error: {error}"),
        };
        expect.assert_eq(&rendered);
    }

    #[test]
    fn defaults_match_the_original() {
        check(
            &[],
            expect![[r#"
                ScalerConfig {
                    queue: "default",
                    group_name: "stack-AgentAutoScaleGroup",
                    agent_token: Plain(
                        Secret(<redacted>),
                    ),
                    agent_endpoint: Url {
                        scheme: "https",
                        cannot_be_a_base: false,
                        username: "",
                        password: None,
                        host: Some(
                            Domain(
                                "agent.buildkite.com",
                            ),
                        ),
                        port: None,
                        path: "/v3",
                        query: None,
                        fragment: None,
                    },
                    poll_interval: 10s,
                    invocation_timeout: None,
                    startup_jitter_max: 0ns,
                    activity_timeout: 10s,
                    max_activity_pages: None,
                    cloudwatch_metrics: false,
                    ignore_cloudwatch_metrics_errors: false,
                    dangling_check_minimum_instance_uptime: 3600s,
                    max_dangling_instances_to_check: 5,
                    debug: false,
                    policy: ScalingPolicy {
                        agents_per_instance: Some(
                            1,
                        ),
                        include_waiting: false,
                        instance_buffer: 0,
                        max_instance_cap: None,
                        availability_threshold: 0.5,
                        scale_out_factor: 0.0,
                        scale_in_factor: 0.0,
                        scale_out_cooldown: 0ns,
                        scale_in_cooldown: 0ns,
                        scale_only_after_all_events: false,
                        disable_scale_in: false,
                        disable_scale_out: false,
                        elastic_ci_mode: false,
                        route_by_desired_capacity: false,
                        mode: Original,
                    },
                }"#]],
        );
    }

    #[test]
    fn every_variable_is_read() {
        check(
            &[
                ("BUILDKITE_QUEUE", "builders"),
                ("ASG_NAME", "asg"),
                ("AGENTS_PER_INSTANCE", "4"),
                ("BUILDKITE_AGENT_TOKEN_SSM_KEY", "/buildkite/agent-token"),
                ("BUILDKITE_AGENT_ENDPOINT", "http://127.0.0.1:9000/v3"),
                ("LAMBDA_INTERVAL", "15s"),
                ("LAMBDA_TIMEOUT", "50s"),
                ("LAMBDA_STARTUP_JITTER_MAX", "30s"),
                ("ASG_ACTIVITY_TIMEOUT", "5s"),
                ("MAX_DESCRIBE_SCALING_ACTIVITIES_PAGES", "3"),
                ("SCALE_OUT_FACTOR", "-1.5"),
                ("SCALE_IN_FACTOR", "0.1"),
                ("SCALE_OUT_COOLDOWN_PERIOD", "300s"),
                ("SCALE_IN_COOLDOWN_PERIOD", "1h"),
                ("SCALE_ONLY_AFTER_ALL_EVENT", "T"),
                ("INCLUDE_WAITING", "1"),
                ("INSTANCE_BUFFER", "2"),
                ("AVAILABILITY_THRESHOLD", "0.25"),
                ("MAX_INSTANCE_CAP", "50"),
                ("DISABLE_SCALE_IN", "true"),
                ("DISABLE_SCALE_OUT", "False"),
                ("CLOUDWATCH_METRICS", "1"),
                ("ELASTIC_CI_MODE", "0"),
                ("DANGLING_CHECK_MINIMUM_INSTANCE_UPTIME", "30m"),
                ("MAX_DANGLING_INSTANCES_TO_CHECK", "7"),
                ("DEBUG", "true"),
                ("ROUTE_BY_DESIRED_CAPACITY", "true"),
                ("IGNORE_CLOUDWATCH_METRICS_ERRORS", "true"),
                ("SCALER_MODE", "responsive"),
            ],
            expect![[r#"
                ScalerConfig {
                    queue: "builders",
                    group_name: "asg",
                    agent_token: Ssm(
                        "/buildkite/agent-token",
                    ),
                    agent_endpoint: Url {
                        scheme: "http",
                        cannot_be_a_base: false,
                        username: "",
                        password: None,
                        host: Some(
                            Ipv4(
                                127.0.0.1,
                            ),
                        ),
                        port: Some(
                            9000,
                        ),
                        path: "/v3",
                        query: None,
                        fragment: None,
                    },
                    poll_interval: 15s,
                    invocation_timeout: Some(
                        50s,
                    ),
                    startup_jitter_max: 30s,
                    activity_timeout: 5s,
                    max_activity_pages: Some(
                        3,
                    ),
                    cloudwatch_metrics: true,
                    ignore_cloudwatch_metrics_errors: true,
                    dangling_check_minimum_instance_uptime: 1800s,
                    max_dangling_instances_to_check: 7,
                    debug: true,
                    policy: ScalingPolicy {
                        agents_per_instance: Some(
                            4,
                        ),
                        include_waiting: true,
                        instance_buffer: 2,
                        max_instance_cap: Some(
                            50,
                        ),
                        availability_threshold: 0.25,
                        scale_out_factor: 1.5,
                        scale_in_factor: 0.1,
                        scale_out_cooldown: 300s,
                        scale_in_cooldown: 3600s,
                        scale_only_after_all_events: true,
                        disable_scale_in: true,
                        disable_scale_out: false,
                        elastic_ci_mode: false,
                        route_by_desired_capacity: true,
                        mode: Responsive,
                    },
                }"#]],
        );
    }

    #[test]
    fn elastic_ci_mode_defaults_the_scale_in_cooldown_to_an_hour() {
        let config = ScalerConfig::from_env_map(&vars(&[("ELASTIC_CI_MODE", "true")])).unwrap();
        assert_eq!(config.policy.scale_in_cooldown, Duration::from_secs(3600));
        let config = ScalerConfig::from_env_map(&vars(&[
            ("ELASTIC_CI_MODE", "true"),
            ("SCALE_IN_COOLDOWN_PERIOD", "5m"),
        ]))
        .unwrap();
        assert_eq!(config.policy.scale_in_cooldown, Duration::from_secs(300));
    }

    #[test]
    fn empty_values_mean_unset() {
        let config = ScalerConfig::from_env_map(&vars(&[
            ("LAMBDA_INTERVAL", ""),
            ("DISABLE_SCALE_IN", ""),
            ("BUILDKITE_AGENT_TOKEN_SSM_KEY", ""),
        ]))
        .unwrap();
        assert_eq!(config.poll_interval, Duration::from_secs(10));
        assert!(!config.policy.disable_scale_in);
        assert_eq!(config.agent_token, TokenSource::Plain(Secret::new("token-in-clear")));
    }

    #[test]
    fn zero_or_negative_values_mean_none() {
        let config = ScalerConfig::from_env_map(&vars(&[
            ("AGENTS_PER_INSTANCE", "0"),
            ("INSTANCE_BUFFER", "-3"),
            ("MAX_INSTANCE_CAP", "-1"),
            ("LAMBDA_TIMEOUT", "0"),
            ("SCALE_OUT_COOLDOWN_PERIOD", "-5m"),
            ("MAX_DESCRIBE_SCALING_ACTIVITIES_PAGES", "-7"),
        ]))
        .unwrap();
        assert_eq!(config.policy.agents_per_instance, None);
        assert_eq!(config.policy.instance_buffer, 0);
        assert_eq!(config.policy.max_instance_cap, None);
        assert_eq!(config.invocation_timeout, None);
        assert_eq!(config.policy.scale_out_cooldown, Duration::ZERO);
        assert_eq!(config.max_activity_pages, None);
    }

    #[test_case("BUILDKITE_QUEUE", "", "BUILDKITE_QUEUE is required but not set")]
    #[test_case("ASG_NAME", "", "ASG_NAME is required but not set")]
    #[test_case("AGENTS_PER_INSTANCE", "", "AGENTS_PER_INSTANCE is required but not set")]
    #[test_case(
        "AGENTS_PER_INSTANCE",
        "two",
        r#"invalid AGENTS_PER_INSTANCE "two": expected an integer of at most 10000 (zero or less: one instance per agent)"#
    )]
    #[test_case(
        "LAMBDA_INTERVAL",
        "10",
        r#"invalid LAMBDA_INTERVAL "10": expected a duration such as 10s, 1m30s, 1.5h or 0"#
    )]
    #[test_case("SCALE_IN_COOLDOWN_PERIOD", "3600", r#"invalid SCALE_IN_COOLDOWN_PERIOD "3600": expected a duration such as 10s, 1m30s, 1.5h or 0"#)]
    #[test_case("DISABLE_SCALE_IN", "yes", r#"invalid DISABLE_SCALE_IN "yes": expected a boolean (1, t, T, TRUE, true, True, 0, f, F, FALSE, false, False)"#)]
    #[test_case(
        "SCALE_OUT_FACTOR",
        "NaN",
        r#"invalid SCALE_OUT_FACTOR "NaN": expected a number from -100 to 100 (its absolute value is used)"#
    )]
    #[test_case(
        "SCALE_OUT_FACTOR",
        "1e300",
        r#"invalid SCALE_OUT_FACTOR "1e300": expected a number from -100 to 100 (its absolute value is used)"#
    )]
    #[test_case(
        "SCALE_OUT_FACTOR",
        "-100.5",
        r#"invalid SCALE_OUT_FACTOR "-100.5": expected a number from -100 to 100 (its absolute value is used)"#
    )]
    #[test_case(
        "SCALE_IN_FACTOR",
        "101",
        r#"invalid SCALE_IN_FACTOR "101": expected a number from -100 to 100 (its absolute value is used)"#
    )]
    #[test_case(
        "AGENTS_PER_INSTANCE",
        "10001",
        r#"invalid AGENTS_PER_INSTANCE "10001": expected an integer of at most 10000 (zero or less: one instance per agent)"#
    )]
    #[test_case(
        "INSTANCE_BUFFER",
        "4294967296",
        r#"invalid INSTANCE_BUFFER "4294967296": expected an integer of at most 4294967295"#
    )]
    #[test_case(
        "MAX_INSTANCE_CAP",
        "9223372036854775807",
        r#"invalid MAX_INSTANCE_CAP "9223372036854775807": expected an integer of at most 4294967295"#
    )]
    #[test_case(
        "MAX_DESCRIBE_SCALING_ACTIVITIES_PAGES",
        "5000000000",
        r#"invalid MAX_DESCRIBE_SCALING_ACTIVITIES_PAGES "5000000000": expected an integer of at most 4294967295"#
    )]
    #[test_case(
        "AVAILABILITY_THRESHOLD",
        "half",
        r#"invalid AVAILABILITY_THRESHOLD "half": expected a finite number"#
    )]
    #[test_case(
        "INSTANCE_BUFFER",
        "1.5",
        r#"invalid INSTANCE_BUFFER "1.5": expected an integer of at most 4294967295"#
    )]
    #[test_case("BUILDKITE_AGENT_ENDPOINT", "agent.buildkite.com", r#"invalid BUILDKITE_AGENT_ENDPOINT "agent.buildkite.com": expected an https:// URL (http:// only to a loopback host: 127.0.0.0/8, ::1 or localhost)"#)]
    #[test_case("BUILDKITE_AGENT_ENDPOINT", "ftp://x/v3", r#"invalid BUILDKITE_AGENT_ENDPOINT "ftp://x/v3": expected an https:// URL (http:// only to a loopback host: 127.0.0.0/8, ::1 or localhost)"#)]
    #[test_case("BUILDKITE_AGENT_ENDPOINT", "http://agent.buildkite.com/v3", r#"invalid BUILDKITE_AGENT_ENDPOINT "http://agent.buildkite.com/v3": expected an https:// URL (http:// only to a loopback host: 127.0.0.0/8, ::1 or localhost)"#)]
    #[test_case("ROUTE_BY_DESIRED_CAPACITY", "on", r#"invalid ROUTE_BY_DESIRED_CAPACITY "on": expected a boolean (1, t, T, TRUE, true, True, 0, f, F, FALSE, false, False)"#)]
    #[test_case(
        "SCALER_MODE",
        "fast",
        r#"invalid SCALER_MODE "fast": expected original or responsive"#
    )]
    fn bad_values_are_named(name: &str, value: &str, message: &str) {
        let error = ScalerConfig::from_env_map(&vars(&[(name, value)])).unwrap_err();
        assert_eq!(error.to_string(), message);
        assert_eq!(error.variable(), Some(name));
    }

    #[test]
    fn a_token_is_required_and_never_shown() {
        let mut env = vars(&[]);
        env.remove("BUILDKITE_AGENT_TOKEN");
        let error = ScalerConfig::from_env_map(&env).unwrap_err();
        assert_eq!(
            error.to_string(),
            "must provide either BUILDKITE_AGENT_TOKEN or BUILDKITE_AGENT_TOKEN_SSM_KEY"
        );
        let config = ScalerConfig::from_env_map(&vars(&[])).unwrap();
        assert!(!format!("{config:?}").contains("token-in-clear"));
    }

    #[test]
    fn the_clear_token_loses_surrounding_whitespace_and_a_blank_one_is_refused() {
        let config =
            ScalerConfig::from_env_map(&vars(&[("BUILDKITE_AGENT_TOKEN", "  token\n")])).unwrap();
        assert_eq!(config.agent_token, TokenSource::Plain(Secret::new("token")));
        let error =
            ScalerConfig::from_env_map(&vars(&[("BUILDKITE_AGENT_TOKEN", " \n")])).unwrap_err();
        assert_eq!(
            error.to_string(),
            "the agent token in BUILDKITE_AGENT_TOKEN is empty or only whitespace"
        );
        assert_eq!(error.variable(), Some("BUILDKITE_AGENT_TOKEN"));
    }

    #[test]
    fn scale_factors_and_counts_are_accepted_up_to_their_bounds() {
        let config = ScalerConfig::from_env_map(&vars(&[
            ("SCALE_OUT_FACTOR", "-100"),
            ("SCALE_IN_FACTOR", "100"),
            ("AGENTS_PER_INSTANCE", "10000"),
            ("INSTANCE_BUFFER", "4294967295"),
            ("MAX_INSTANCE_CAP", "-9223372036854775808"),
        ]))
        .unwrap();
        assert_eq!(config.policy.scale_out_factor, 100.0);
        assert_eq!(config.policy.scale_in_factor, 100.0);
        assert_eq!(config.policy.agents_per_instance.map(NonZeroU32::get), Some(10_000));
        assert_eq!(config.policy.instance_buffer, u32::MAX);
        assert_eq!(config.policy.max_instance_cap, None);
    }

    #[test]
    fn the_ssm_key_wins_over_the_clear_token() {
        let arn = "arn:aws:ssm:eu-west-1:123456789012:parameter/buildkite/token";
        let config =
            ScalerConfig::from_env_map(&vars(&[("BUILDKITE_AGENT_TOKEN_SSM_KEY", arn)])).unwrap();
        assert_eq!(config.agent_token, TokenSource::Ssm(arn.to_owned()));
    }

    #[test]
    fn env_vars_lists_exactly_what_is_read() {
        // Every listed variable, set to garbage, makes parsing fail or is a free-form
        // string; no variable outside the list changes the result.
        let free_form = [
            "BUILDKITE_QUEUE",
            "ASG_NAME",
            "BUILDKITE_AGENT_TOKEN",
            "BUILDKITE_AGENT_TOKEN_SSM_KEY",
        ];
        for name in ScalerConfig::ENV_VARS {
            let result = ScalerConfig::from_env_map(&vars(&[(name, "?garbage?")]));
            if free_form.contains(name) {
                assert!(result.is_ok(), "{name}");
            } else {
                assert_eq!(result.unwrap_err().variable(), Some(*name));
            }
        }
        let baseline = ScalerConfig::from_env_map(&vars(&[])).unwrap();
        let other = ScalerConfig::from_env_map(&vars(&[("MIN_SIZE", "3"), ("MAX_SIZE", "x")]));
        assert_eq!(other.unwrap(), baseline);
    }
}
