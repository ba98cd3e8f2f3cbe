//! Narrow async traits over the AWS services the stack uses, shaped by what the stack
//! needs rather than by the SDK, with one SDK adapter each and in-memory fakes behind
//! the `fake` feature.
//!
//! | trait | service | adapter |
//! |---|---|---|
//! | [`s3::ObjectStore`] | S3 | [`s3::S3ObjectStore`] |
//! | [`ssm::ParameterStore`] | SSM Parameter Store | [`ssm::SsmParameterStore`] |
//! | [`autoscaling::ScalingGroup`] | EC2 Auto Scaling | [`autoscaling::AutoScalingGroups`] |
//! | [`cloudwatch::Metrics`] | CloudWatch | [`cloudwatch::CloudWatchMetrics`]; [`cloudwatch::EmbeddedMetrics`] (log lines, no SDK crate) |
//! | [`ecr::RegistryAuth`] | ECR | [`ecr::EcrRegistryAuth`] |
//! | [`cloudformation::StackSignal`] | CloudFormation | [`cloudformation::CloudFormationSignal`] |
//! | [`cloudformation::Stacks`] | CloudFormation (stacks, resources, change sets, events) | [`cloudformation::CloudFormationStacks`] |
//! | [`autoscaling::GroupAdmin`] | EC2 Auto Scaling (sizes, tags, instance details) | [`autoscaling::AutoScalingGroups`] |
//! | [`ssm::ParameterAdmin`], [`ssm::RemoteCommands`] | SSM (token rotation, SendCommand) | [`ssm::SsmParameterStore`] |
//! | [`eventbridge::Rules`] | EventBridge rules | [`eventbridge::EventBridgeRules`] |
//! | [`logs::LogEvents`], [`logs::LogGroupFilters`] | CloudWatch Logs (events; metric and subscription filters) | [`logs::CloudWatchLogEvents`] |
//! | [`imds::InstanceMetadata`] | EC2 instance metadata (IMDSv2) | [`imds::Imds`] |
//! | [`ec2::MachineImages`], [`ec2::Network`] | EC2 images, subnets and routes, instance launch times | [`ec2::Ec2MachineImages`] (signed Query API calls, no SDK crate) |
//!
//! **Architecture Invariant:** every SDK client is built from the `SdkConfig` that
//! [`config::aws_sdk_config`] returns, so the standard variables (`AWS_REGION`,
//! `AWS_PROFILE`, `AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_<SERVICE>`) point any binary at
//! a local emulator. Every adapter maps SDK errors into [`error::AwsError`], whose kind
//! tells not-found, access-denied, throttled, validation and transport failures apart.
//!
//! [`retry::retry`] is the workspace's one retry loop, sleeping a
//! `elastic_ci_core::backoff::Backoff` schedule between attempts.
//!
//! Each SDK-backed module is behind a cargo feature of its name (`s3`, `ssm`,
//! `autoscaling`, `cloudwatch`, `ecr`, `cloudformation`, `logs`, `eventbridge`), so that a
//! crate compiles only the SDK crates it calls; `config`, `error`, `ec2`, `imds` and the
//! metrics trait with its embedded-metric-format writer are always there.
//!
//! ## Configuration
//!
//! Read by the SDK itself: `AWS_REGION`, `AWS_PROFILE`, `AWS_ENDPOINT_URL`,
//! `AWS_ENDPOINT_URL_<SERVICE>`, `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS`, the credential
//! variables, and `AWS_EC2_METADATA_SERVICE_ENDPOINT` for the instance metadata service.

#[cfg(feature = "autoscaling")]
pub mod autoscaling;
#[cfg(feature = "cloudformation")]
pub mod cloudformation;
pub mod cloudwatch;
pub mod config;
pub mod ec2;
#[cfg(feature = "ecr")]
pub mod ecr;
pub mod error;
#[cfg(feature = "eventbridge")]
pub mod eventbridge;
#[cfg(feature = "fake")]
pub mod fake;
pub mod imds;
#[cfg(feature = "logs")]
pub mod logs;
pub mod retry;
#[cfg(feature = "s3")]
pub mod s3;
#[cfg(feature = "ssm")]
pub mod ssm;
mod xml;
