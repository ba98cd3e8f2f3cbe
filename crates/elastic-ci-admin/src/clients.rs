//! The AWS clients every command reaches the stack through: trait objects, so that
//! tests can put in-memory fakes in their place.

use std::sync::Arc;

use aws_config::SdkConfig;
use elastic_ci_aws::autoscaling::{AutoScalingGroups, GroupAdmin, ScalingGroup};
use elastic_ci_aws::cloudformation::{CloudFormationStacks, Stacks};
use elastic_ci_aws::config::AwsSettings;
use elastic_ci_aws::ec2::{Ec2MachineImages, MachineImages, Network};
use elastic_ci_aws::eventbridge::{EventBridgeRules, Rules};
use elastic_ci_aws::logs::{CloudWatchLogEvents, LogEvents, LogGroupFilters};
use elastic_ci_aws::s3::{ObjectStore, S3ObjectStore};
use elastic_ci_aws::ssm::{ParameterAdmin, ParameterStore, RemoteCommands, SsmParameterStore};

/// One client per capability.
#[derive(Clone)]
pub struct Clients {
    /// The region the clients call, for the EC2 calls that name it.
    pub region: String,
    pub stacks: Arc<dyn Stacks>,
    pub groups: Arc<dyn ScalingGroup>,
    pub group_admin: Arc<dyn GroupAdmin>,
    pub rules: Arc<dyn Rules>,
    pub logs: Arc<dyn LogEvents>,
    pub log_filters: Arc<dyn LogGroupFilters>,
    pub parameters: Arc<dyn ParameterStore>,
    pub parameter_admin: Arc<dyn ParameterAdmin>,
    pub commands: Arc<dyn RemoteCommands>,
    pub objects: Arc<dyn ObjectStore>,
    pub images: Arc<dyn MachineImages>,
    pub network: Arc<dyn Network>,
}

impl Clients {
    /// The real clients, from one SDK configuration.
    pub fn from_sdk(sdk_config: &SdkConfig, settings: &AwsSettings) -> Clients {
        let groups = Arc::new(AutoScalingGroups::new(sdk_config));
        let ssm = Arc::new(SsmParameterStore::new(sdk_config));
        let ec2 = Arc::new(Ec2MachineImages::new(sdk_config));
        let logs = Arc::new(CloudWatchLogEvents::new(sdk_config));
        Clients {
            region: sdk_config.region().map_or_else(|| "us-east-1".to_owned(), ToString::to_string),
            stacks: Arc::new(CloudFormationStacks::new(sdk_config)),
            groups: groups.clone(),
            group_admin: groups,
            rules: Arc::new(EventBridgeRules::new(sdk_config)),
            logs: logs.clone(),
            log_filters: logs,
            parameters: ssm.clone(),
            parameter_admin: ssm.clone(),
            commands: ssm,
            objects: Arc::new(S3ObjectStore::new(sdk_config, settings)),
            images: ec2.clone(),
            network: ec2,
        }
    }
}
