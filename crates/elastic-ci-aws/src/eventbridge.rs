//! Schedule rules: EventBridge, which invokes the scaler on a schedule.

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
    /// A rule of the default bus; a missing rule is `NotFound`.
    async fn describe_rule(&self, name: &str) -> Result<Rule, AwsError>;

    /// Enables or disables a rule (idempotent).
    async fn set_rule_enabled(&self, name: &str, enabled: bool) -> Result<(), AwsError>;
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
        let output = self
            .client
            .describe_rule()
            .name(name)
            .send()
            .await
            .map_err(|error| AwsError::from_sdk("DescribeRule", name, error))?;
        let state = output.state.ok_or_else(|| {
            AwsError::new(AwsErrorKind::Service, "DescribeRule", name, "the answer has no state")
        })?;
        Ok(Rule {
            name: output.name.unwrap_or_else(|| name.to_owned()),
            enabled: state == RuleState::Enabled,
            schedule: output.schedule_expression,
        })
    }

    #[instrument(skip_all, fields(name, enabled))]
    async fn set_rule_enabled(&self, name: &str, enabled: bool) -> Result<(), AwsError> {
        if enabled {
            self.client
                .enable_rule()
                .name(name)
                .send()
                .await
                .map_err(|error| AwsError::from_sdk("EnableRule", name, error))?;
        } else {
            self.client
                .disable_rule()
                .name(name)
                .send()
                .await
                .map_err(|error| AwsError::from_sdk("DisableRule", name, error))?;
        }
        Ok(())
    }
}
