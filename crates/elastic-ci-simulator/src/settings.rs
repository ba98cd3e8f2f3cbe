//! What a simulation run is configured with: the scaler's environment variables (the
//! Lambda's names, parsed by the Lambda's own [`ScalerConfig::from_env_map`]) and the
//! world model's constants, addressable by name for `--set` and `--sweep`.

use std::collections::BTreeMap;
use std::time::Duration;

use elastic_ci_core::envfile;
use elastic_ci_core::scaling::config::{ScalerConfig, ScalerConfigError};
use elastic_ci_core::scaling::goparse;

use crate::model::ModelParams;

/// The scaler environment a default Elastic CI Stack deploys (the scaler's defaults and
/// the template's parameter defaults), which every run starts from. The queue,
/// group and token are placeholders the model does not use beyond the startup jitter
/// (which hashes `ASG_NAME`) and counting SSM reads.
pub const STACK_DEFAULTS: &[(&str, &str)] = &[
    ("BUILDKITE_QUEUE", "default"),
    ("ASG_NAME", "elastic-ci-stack-AgentAutoScaleGroup"),
    ("AGENTS_PER_INSTANCE", "1"),
    ("BUILDKITE_AGENT_TOKEN_SSM_KEY", "/elastic-ci-stack/buildkite/agent-token"),
    ("LAMBDA_INTERVAL", "10s"),
    ("LAMBDA_TIMEOUT", "50s"),
    ("LAMBDA_STARTUP_JITTER_MAX", "0s"),
    ("SCALE_OUT_FACTOR", "1.0"),
    ("SCALE_OUT_COOLDOWN_PERIOD", "300s"),
    ("SCALE_IN_COOLDOWN_PERIOD", "3600s"),
    ("INCLUDE_WAITING", "false"),
    ("INSTANCE_BUFFER", "0"),
    ("AVAILABILITY_THRESHOLD", "0.5"),
    ("DISABLE_SCALE_IN", "true"),
    ("CLOUDWATCH_METRICS", "true"),
    ("ELASTIC_CI_MODE", "false"),
];

/// The model constants settable by name, as `--NAME` flags and in `--set`/`--sweep`.
pub const MODEL_PARAMS: &[&str] = &[
    "schedule-period",
    "run-cost",
    "function-timeout",
    "metrics-lag",
    "poll-duration",
    "boot",
    "agent-connect",
    "idle-period",
    "drain",
    "billing-tail",
    "min-size",
    "max-size",
    "warm-pool-size",
    "resume",
    "event-delay",
    "spot-interruptions-per-hour",
    "spot-notice",
    "spot-seed",
    "stopped-cost-ratio",
];

/// A setting that is unknown or does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error(
        "unknown setting {name:?}: expected a scaler variable ({}) or a model parameter ({})",
        ScalerConfig::ENV_VARS.join(", "),
        MODEL_PARAMS.join(", ")
    )]
    Unknown { name: String },
    #[error("invalid {name} {value:?}: expected {expected}")]
    Invalid { name: String, value: String, expected: &'static str },
    #[error("invalid setting {text:?}: expected NAME=VALUE")]
    NotAnAssignment { text: String },
    #[error("invalid env file: {0}")]
    EnvFile(#[from] envfile::EnvFileError),
    #[error("invalid scaler settings: {0}")]
    Scaler(#[from] ScalerConfigError),
}

/// The settings of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Scaler environment variables, the stack defaults overlaid.
    pub env: BTreeMap<String, String>,
    pub model: ModelParams,
}

impl Settings {
    /// The stack's defaults and the reference model.
    pub fn stack_defaults() -> Settings {
        Settings {
            env: STACK_DEFAULTS
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect(),
            model: ModelParams::spec_defaults(),
        }
    }

    /// Overlays an env file (systemd `EnvironmentFile=` syntax). Returns the variables
    /// it set that the scaler does not read, which are ignored.
    pub fn apply_env_file(&mut self, text: &str) -> Result<Vec<String>, SettingsError> {
        let mut ignored = Vec::new();
        for (name, value) in envfile::parse(text)? {
            if ScalerConfig::ENV_VARS.contains(&name.as_str()) {
                self.env.insert(name.as_str().to_owned(), value);
            } else {
                ignored.push(name.as_str().to_owned());
            }
        }
        Ok(ignored)
    }

    /// Sets a scaler variable or a model parameter by name.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), SettingsError> {
        if ScalerConfig::ENV_VARS.contains(&name) {
            self.env.insert(name.to_owned(), value.to_owned());
            return Ok(());
        }
        let invalid = |expected| SettingsError::Invalid {
            name: name.to_owned(),
            value: value.to_owned(),
            expected,
        };
        let model = &mut self.model;
        let duration = || parse_duration_arg(value).map_err(|_| invalid(DURATION_EXPECTED));
        let size = || value.parse::<u32>().map_err(|_| invalid("a whole number, 0 or more"));
        let number = |max: f64, expected| {
            value
                .parse::<f64>()
                .ok()
                .filter(|number| number.is_finite() && (0.0..=max).contains(number))
                .ok_or_else(|| invalid(expected))
        };
        match name {
            "schedule-period" => model.schedule_period = duration()?,
            "run-cost" => model.run_cost = duration()?,
            "function-timeout" => model.function_timeout = duration()?,
            "metrics-lag" => model.metrics_lag = duration()?,
            "poll-duration" => model.poll_duration = duration()?,
            "boot" => model.boot = duration()?,
            "agent-connect" => model.agent_connect = duration()?,
            "idle-period" => model.idle_period = duration()?,
            "drain" => model.drain = duration()?,
            "billing-tail" => model.billing_tail = duration()?,
            "min-size" => model.min_size = size()?,
            "max-size" => model.max_size = size()?,
            "warm-pool-size" => model.warm_pool_size = size()?,
            "resume" => model.resume = duration()?,
            "event-delay" => {
                model.event_delay = if value == "off" { None } else { Some(duration()?) };
            }
            "spot-interruptions-per-hour" => {
                model.spot_interruptions_per_hour = number(f64::MAX, "a rate of 0 or more")?;
            }
            "spot-notice" => model.spot_notice = duration()?,
            "spot-seed" => {
                model.spot_seed = value.parse().map_err(|_| invalid("a whole number"))?;
            }
            "stopped-cost-ratio" => {
                model.stopped_cost_ratio = number(1.0, "a fraction from 0 to 1")?;
            }
            _ => return Err(SettingsError::Unknown { name: name.to_owned() }),
        }
        Ok(())
    }

    /// Applies `NAME=VALUE`.
    pub fn set_assignment(&mut self, text: &str) -> Result<(), SettingsError> {
        let (name, value) = split_assignment(text)?;
        self.set(name, value)
    }

    /// The scaler configuration, exactly as the Lambda would read it.
    pub fn scaler_config(&self) -> Result<ScalerConfig, SettingsError> {
        let env = self.env.iter().map(|(name, value)| (name.clone(), value.clone())).collect();
        Ok(ScalerConfig::from_env_map(&env)?)
    }

    /// The variables that differ from the stack defaults, for reports.
    pub fn env_changes(&self) -> Vec<(String, String)> {
        let defaults = Settings::stack_defaults();
        self.env
            .iter()
            .filter(|(name, value)| defaults.env.get(*name) != Some(*value))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect()
    }
}

/// Splits `NAME=VALUE` at the first `=`.
pub fn split_assignment(text: &str) -> Result<(&str, &str), SettingsError> {
    text.split_once('=')
        .filter(|(name, _)| !name.is_empty())
        .ok_or_else(|| SettingsError::NotAnAssignment { text: text.to_owned() })
}

const DURATION_EXPECTED: &str = "seconds (75, 0.5) or a duration (75s, 1m15s, 500ms), 0 or more";

/// A model duration: plain seconds or Go duration syntax, not negative.
pub fn parse_duration_arg(text: &str) -> Result<Duration, String> {
    let error = || format!("invalid duration {text:?}: expected {DURATION_EXPECTED}");
    if let Ok(secs) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|_| error());
    }
    let nanos = goparse::parse_duration(text).ok_or_else(error)?;
    u64::try_from(nanos).map(Duration::from_nanos).map_err(|_| error())
}

#[cfg(test)]
mod tests {
    use test_case::test_case;

    use super::*;

    #[test]
    fn starts_from_the_stack_defaults() {
        let config = Settings::stack_defaults().scaler_config().unwrap();
        assert_eq!(config.policy.scale_out_cooldown, Duration::from_secs(300));
        assert!(config.policy.disable_scale_in);
        assert_eq!(config.policy.availability_threshold, 0.5);
        assert_eq!(config.invocation_timeout, Some(Duration::from_secs(50)));
        assert!(config.cloudwatch_metrics);
    }

    #[test]
    fn env_files_overlay_and_report_foreign_variables() {
        let mut settings = Settings::stack_defaults();
        let ignored = settings
            .apply_env_file("SCALE_OUT_COOLDOWN_PERIOD=0s\n# comment\nAWS_REGION=eu-west-1\n")
            .unwrap();
        assert_eq!(ignored, ["AWS_REGION"]);
        assert_eq!(
            settings.env_changes(),
            [("SCALE_OUT_COOLDOWN_PERIOD".to_owned(), "0s".to_owned())]
        );
        let config = settings.scaler_config().unwrap();
        assert_eq!(config.policy.scale_out_cooldown, Duration::ZERO);
    }

    #[test]
    fn model_parameters_are_set_by_name() {
        let mut settings = Settings::stack_defaults();
        for name in MODEL_PARAMS {
            let value = if *name == "stopped-cost-ratio" { "0.7" } else { "7" };
            settings.set(name, value).unwrap();
        }
        settings.set_assignment("idle-period=5m").unwrap();
        settings.set_assignment("run-cost=250ms").unwrap();
        assert_eq!(settings.model.idle_period, Duration::from_secs(300));
        assert_eq!(settings.model.run_cost, Duration::from_millis(250));
        assert_eq!(settings.model.max_size, 7);
        assert_eq!(settings.model.boot, Duration::from_secs(7));
        assert_eq!(settings.model.warm_pool_size, 7);
        assert_eq!(settings.model.event_delay, Some(Duration::from_secs(7)));
        assert_eq!(settings.model.stopped_cost_ratio, 0.7);
        settings.set("event-delay", "off").unwrap();
        assert_eq!(settings.model.event_delay, None);
    }

    #[test_case("max-size=-1", r#"invalid max-size "-1": expected a whole number, 0 or more"#)]
    #[test_case("boot=-5s", r#"invalid boot "-5s": expected seconds (75, 0.5) or a duration (75s, 1m15s, 500ms), 0 or more"#)]
    #[test_case("boot=soon", r#"invalid boot "soon": expected seconds (75, 0.5) or a duration (75s, 1m15s, 500ms), 0 or more"#)]
    #[test_case("=5", r#"invalid setting "=5": expected NAME=VALUE"#)]
    #[test_case("boot", r#"invalid setting "boot": expected NAME=VALUE"#)]
    fn bad_settings_are_named(text: &str, message: &str) {
        let error = Settings::stack_defaults().set_assignment(text).unwrap_err();
        assert_eq!(error.to_string(), message);
    }

    #[test]
    fn unknown_names_list_what_is_known() {
        let error = Settings::stack_defaults().set("SCALE_OUT_COOLDOWN", "0s").unwrap_err();
        let message = error.to_string();
        assert!(message.starts_with("unknown setting \"SCALE_OUT_COOLDOWN\": expected a scaler variable (BUILDKITE_QUEUE, "), "{message}");
        assert!(message.contains("or a model parameter (schedule-period, "), "{message}");
    }

    #[test]
    fn scaler_values_are_checked_by_the_lambdas_parser() {
        let mut settings = Settings::stack_defaults();
        settings.set("SCALE_OUT_COOLDOWN_PERIOD", "300").unwrap();
        assert_eq!(
            settings.scaler_config().unwrap_err().to_string(),
            r#"invalid scaler settings: invalid SCALE_OUT_COOLDOWN_PERIOD "300": expected a duration such as 10s, 1m30s, 1.5h or 0"#
        );
    }
}
