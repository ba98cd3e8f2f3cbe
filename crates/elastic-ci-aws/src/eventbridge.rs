//! The scaler's rules: EventBridge, which invokes the scaler on a schedule and, with a
//! Buildkite partner event bus, on each Job Scheduled event.
//!
//! A rule is named by its name (a rule of the default bus) or by `BUS|NAME`, the
//! physical id CloudFormation gives a rule of another bus.

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_eventbridge::types::RuleState;
use tracing::instrument;

use crate::error::{AwsError, AwsErrorKind};

/// One rule, as far as pausing the scaler needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub name: String,
    pub enabled: bool,
    /// `rate(1 minute)`, `cron(…)`, or `None` for an event-pattern rule.
    pub schedule: Option<String>,
}

/// What the stack needs from EventBridge.
#[async_trait]
pub trait Rules: Send + Sync {
    /// A rule (`NAME` or `BUS|NAME`); a missing rule is `NotFound`.
    async fn describe_rule(&self, name: &str) -> Result<Rule, AwsError>;

    /// Enables or disables a rule (idempotent).
    async fn set_rule_enabled(&self, name: &str, enabled: bool) -> Result<(), AwsError>;
}

/// The bus and the rule's name of `BUS|NAME`; `None` for a rule of the default bus.
fn split_bus(name: &str) -> (Option<&str>, &str) {
    match name.rsplit_once('|') {
        Some((bus, rule)) => (Some(bus), rule),
        None => (None, name),
    }
}

/// [`Rules`] over the AWS SDK.
#[derive(Debug, Clone)]
pub struct EventBridgeRules {
    client: aws_sdk_eventbridge::Client,
}

impl EventBridgeRules {
    pub fn new(sdk_config: &SdkConfig) -> EventBridgeRules {
        EventBridgeRules { client: aws_sdk_eventbridge::Client::new(sdk_config) }
    }
}

#[async_trait]
impl Rules for EventBridgeRules {
    #[instrument(skip_all, fields(name))]
    async fn describe_rule(&self, name: &str) -> Result<Rule, AwsError> {
        let (bus, rule) = split_bus(name);
        let output = self
            .client
            .describe_rule()
            .set_event_bus_name(bus.map(str::to_owned))
            .name(rule)
            .send()
            .await
            .map_err(|error| AwsError::from_sdk("DescribeRule", name, error))?;
        let state = output.state.ok_or_else(|| {
            AwsError::new(AwsErrorKind::Service, "DescribeRule", name, "the answer has no state")
        })?;
        Ok(Rule {
            name: name.to_owned(),
            enabled: state == RuleState::Enabled,
            schedule: output.schedule_expression,
        })
    }

    #[instrument(skip_all, fields(name, enabled))]
    async fn set_rule_enabled(&self, name: &str, enabled: bool) -> Result<(), AwsError> {
        let (bus, rule) = split_bus(name);
        let bus = bus.map(str::to_owned);
        if enabled {
            self.client
                .enable_rule()
                .set_event_bus_name(bus)
                .name(rule)
                .send()
                .await
                .map_err(|error| AwsError::from_sdk("EnableRule", name, error))?;
        } else {
            self.client
                .disable_rule()
                .set_event_bus_name(bus)
                .name(rule)
                .send()
                .await
                .map_err(|error| AwsError::from_sdk("DisableRule", name, error))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_of_another_bus_is_named_with_its_bus() {
        assert_eq!(split_bus("ci-Schedule-1"), (None, "ci-Schedule-1"));
        assert_eq!(
            split_bus("aws.partner/buildkite.com/acme/x|ci-JobScheduled-2"),
            (Some("aws.partner/buildkite.com/acme/x"), "ci-JobScheduled-2")
        );
    }
}
