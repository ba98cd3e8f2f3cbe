//! Parameter store: SSM.

use async_trait::async_trait;
use aws_config::SdkConfig;
use elastic_ci_core::secret::Secret;
use tracing::instrument;

use crate::error::AwsError;

/// One parameter. Every value is held as a [`Secret`], whatever its type: plain
/// `String` parameters carry proxy passwords and tokens too often to be treated as
/// safe to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parameter {
    /// The full name, such as `/buildkite/env/http_proxy`.
    pub name: String,
    pub value: Secret,
}

/// What the stack needs from SSM Parameter Store.
#[async_trait]
pub trait ParameterStore: Send + Sync {
    /// One parameter by name or full ARN, decrypted.
    async fn get(&self, name: &str) -> Result<Parameter, AwsError>;

    /// Every parameter under `path`, recursively, decrypted, across all pages, in the
    /// order the service returns them.
    async fn get_by_path(&self, path: &str) -> Result<Vec<Parameter>, AwsError>;
}

/// [`ParameterStore`] over the AWS SDK.
#[derive(Debug, Clone)]
pub struct SsmParameterStore {
    client: aws_sdk_ssm::Client,
}

impl SsmParameterStore {
    pub fn new(sdk_config: &SdkConfig) -> SsmParameterStore {
        SsmParameterStore { client: aws_sdk_ssm::Client::new(sdk_config) }
    }
}

#[async_trait]
impl ParameterStore for SsmParameterStore {
    #[instrument(skip_all, fields(name))]
    async fn get(&self, name: &str) -> Result<Parameter, AwsError> {
        let output = self
            .client
            .get_parameter()
            .name(name)
            .with_decryption(true)
            .send()
            .await
            .map_err(|error| AwsError::from_sdk("GetParameter", name, error))?;
        let parameter = output.parameter.ok_or_else(|| {
            AwsError::new(
                crate::error::AwsErrorKind::Service,
                "GetParameter",
                name,
                "the answer held no parameter",
            )
        })?;
        Ok(Parameter {
            name: parameter.name.unwrap_or_else(|| name.to_owned()),
            value: Secret::new(parameter.value.unwrap_or_default()),
        })
    }

    #[instrument(skip_all, fields(path))]
    async fn get_by_path(&self, path: &str) -> Result<Vec<Parameter>, AwsError> {
        let mut pages = self
            .client
            .get_parameters_by_path()
            .path(path)
            .recursive(true)
            .with_decryption(true)
            .into_paginator()
            .send();
        let mut parameters = Vec::new();
        while let Some(page) = pages.next().await {
            let page =
                page.map_err(|error| AwsError::from_sdk("GetParametersByPath", path, error))?;
            for parameter in page.parameters.unwrap_or_default() {
                let Some(name) = parameter.name else { continue };
                parameters.push(Parameter {
                    name,
                    value: Secret::new(parameter.value.unwrap_or_default()),
                });
            }
        }
        Ok(parameters)
    }
}

/// A parameter's type and encryption key, without its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParameterInfo {
    pub name: String,
    /// `String`, `StringList` or `SecureString`.
    pub kind: String,
    /// The KMS key of a `SecureString`; `None` for the account's default key.
    pub key_id: Option<String>,
}

/// What the operator's tool writes to SSM: the agent token on rotation.
#[async_trait]
pub trait ParameterAdmin: Send + Sync {
    /// A parameter's type and key by name; a missing one is `NotFound`.
    async fn describe_parameter(&self, name: &str) -> Result<ParameterInfo, AwsError>;

    /// Overwrites a parameter's value, keeping the type and key given.
    async fn overwrite(&self, info: &ParameterInfo, value: &Secret) -> Result<(), AwsError>;
}

#[async_trait]
impl ParameterAdmin for SsmParameterStore {
    #[instrument(skip_all, fields(name))]
    async fn describe_parameter(&self, name: &str) -> Result<ParameterInfo, AwsError> {
        const OPERATION: &str = "DescribeParameters";
        let filter = aws_sdk_ssm::types::ParameterStringFilter::builder()
            .key("Name")
            .option("Equals")
            .values(name)
            .build()
            .map_err(|error| {
                AwsError::new(
                    crate::error::AwsErrorKind::Validation,
                    OPERATION,
                    name,
                    error.to_string(),
                )
            })?;
        let output = self
            .client
            .describe_parameters()
            .parameter_filters(filter)
            .send()
            .await
            .map_err(|error| AwsError::from_sdk(OPERATION, name, error))?;
        let metadata = output
            .parameters
            .unwrap_or_default()
            .into_iter()
            .find(|parameter| parameter.name.as_deref() == Some(name))
            .ok_or_else(|| {
                AwsError::new(
                    crate::error::AwsErrorKind::NotFound,
                    OPERATION,
                    name,
                    "parameter not found",
                )
            })?;
        Ok(ParameterInfo {
            name: name.to_owned(),
            kind: metadata.r#type.map(|kind| kind.as_str().to_owned()).unwrap_or_default(),
            key_id: metadata.key_id,
        })
    }

    #[instrument(skip_all, fields(name = %info.name))]
    async fn overwrite(&self, info: &ParameterInfo, value: &Secret) -> Result<(), AwsError> {
        self.client
            .put_parameter()
            .name(&info.name)
            .value(value.expose())
            .r#type(aws_sdk_ssm::types::ParameterType::from(info.kind.as_str()))
            .set_key_id(info.key_id.clone())
            .overwrite(true)
            .send()
            .await
            .map_err(|error| AwsError::from_sdk("PutParameter", &info.name, error))?;
        Ok(())
    }
}

/// Commands run on instances through the SSM agent.
#[async_trait]
pub trait RemoteCommands: Send + Sync {
    /// Runs shell `commands` on `instance_ids` (the `AWS-RunShellScript` document);
    /// returns the command id. Does not wait for the commands to finish.
    async fn run_shell(
        &self,
        instance_ids: &[String],
        commands: &[String],
        comment: &str,
    ) -> Result<String, AwsError>;
}

#[async_trait]
impl RemoteCommands for SsmParameterStore {
    #[instrument(skip_all, fields(instances = instance_ids.len()))]
    async fn run_shell(
        &self,
        instance_ids: &[String],
        commands: &[String],
        comment: &str,
    ) -> Result<String, AwsError> {
        let output = self
            .client
            .send_command()
            .document_name("AWS-RunShellScript")
            .set_instance_ids(Some(instance_ids.to_vec()))
            .parameters("commands", commands.to_vec())
            .comment(comment)
            .send()
            .await
            .map_err(|error| AwsError::from_sdk("SendCommand", instance_ids.join(","), error))?;
        Ok(output.command.and_then(|command| command.command_id).unwrap_or_default())
    }
}
