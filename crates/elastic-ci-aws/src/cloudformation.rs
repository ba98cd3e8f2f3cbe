//! Stack signal: CloudFormation's SignalResource, which completes an Auto Scaling
//! group's creation or update policy for one instance.

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_cloudformation::types::ResourceSignalStatus;
use tracing::instrument;

use crate::error::AwsError;

/// Which resource to signal, for which instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceSignal {
    pub stack_name: String,
    pub logical_resource_id: String,
    /// The instance id, so that each instance signals once.
    pub unique_id: String,
    pub success: bool,
}

#[async_trait]
pub trait StackSignal: Send + Sync {
    async fn signal(&self, signal: &ResourceSignal) -> Result<(), AwsError>;
}

/// [`StackSignal`] over the AWS SDK.
#[derive(Debug, Clone)]
pub struct CloudFormationSignal {
    client: aws_sdk_cloudformation::Client,
}

impl CloudFormationSignal {
    pub fn new(sdk_config: &SdkConfig) -> CloudFormationSignal {
        CloudFormationSignal { client: aws_sdk_cloudformation::Client::new(sdk_config) }
    }
}

#[async_trait]
impl StackSignal for CloudFormationSignal {
    #[instrument(skip_all, fields(stack = %signal.stack_name, resource = %signal.logical_resource_id, success = signal.success))]
    async fn signal(&self, signal: &ResourceSignal) -> Result<(), AwsError> {
        let status = if signal.success {
            ResourceSignalStatus::Success
        } else {
            ResourceSignalStatus::Failure
        };
        self.client
            .signal_resource()
            .stack_name(&signal.stack_name)
            .logical_resource_id(&signal.logical_resource_id)
            .unique_id(&signal.unique_id)
            .status(status)
            .send()
            .await
            .map_err(|error| {
                AwsError::from_sdk(
                    "SignalResource",
                    format!("{}/{}", signal.stack_name, signal.logical_resource_id),
                    error,
                )
            })?;
        Ok(())
    }
}
