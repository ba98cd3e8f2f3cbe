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
