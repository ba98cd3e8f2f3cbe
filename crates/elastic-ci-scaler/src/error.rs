//! Why an invocation or a poll failed, with the stable error types the Lambda reports.

use elastic_ci_aws::error::{AwsError, AwsErrorKind};
use elastic_ci_buildkite::MetricsError;
use elastic_ci_core::scaling::config::ScalerConfigError;

use crate::token::TokenError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScalerError {
    #[error("invalid configuration: {0}")]
    InvalidConfig(#[from] ScalerConfigError),
    #[error("unsupported configuration: {0}")]
    Unsupported(String),
    #[error(transparent)]
    AgentToken(#[from] TokenError),
    #[error(transparent)]
    Buildkite(#[from] MetricsError),
    #[error(transparent)]
    Aws(#[from] AwsError),
}

impl ScalerError {
    /// The `errorType` the Lambda reports: stable strings for alarms and searches.
    pub fn error_type(&self) -> &'static str {
        match self {
            ScalerError::InvalidConfig(_) | ScalerError::Unsupported(_) => "InvalidConfig",
            ScalerError::AgentToken(_) => "AgentTokenUnavailable",
            ScalerError::Buildkite(error) if error.is_unauthorized() => "BuildkiteUnauthorized",
            ScalerError::Buildkite(_) => "BuildkiteUnavailable",
            ScalerError::Aws(error) => match error.kind {
                AwsErrorKind::Throttled => "AwsThrottled",
                AwsErrorKind::AccessDenied => "AwsAccessDenied",
                AwsErrorKind::NotFound => "AwsNotFound",
                AwsErrorKind::Validation | AwsErrorKind::Transport | AwsErrorKind::Service => {
                    "AwsError"
                }
            },
        }
    }
}

impl From<ScalerError> for lambda_runtime::Diagnostic {
    fn from(error: ScalerError) -> lambda_runtime::Diagnostic {
        lambda_runtime::Diagnostic {
            error_type: error.error_type().to_owned(),
            error_message: error.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_stable_error_types() {
        let throttled = ScalerError::Aws(AwsError::new(
            AwsErrorKind::Throttled,
            "DescribeAutoScalingGroups",
            "asg",
            "Rate exceeded",
        ));
        let diagnostic = lambda_runtime::Diagnostic::from(throttled);
        assert_eq!(diagnostic.error_type, "AwsThrottled");
        assert_eq!(
            diagnostic.error_message,
            "DescribeAutoScalingGroups asg: throttled: Rate exceeded"
        );
        let config = ScalerError::from(ScalerConfigError::Missing { name: "ASG_NAME" });
        assert_eq!(config.error_type(), "InvalidConfig");
        assert_eq!(config.to_string(), "invalid configuration: ASG_NAME is required but not set");
        let down = ScalerError::from(MetricsError::Status {
            url: "http://x/v3/metrics/queue?name=q".into(),
            status: 500,
            body: "boom".into(),
        });
        assert_eq!(down.error_type(), "BuildkiteUnavailable");
    }
}
