//! CloudFormation: the stack signal (SignalResource, which completes an Auto Scaling
//! group's creation or update policy for one instance), and [`Stacks`], what the
//! operator's tool reads and changes of a stack (resources, parameters, change sets,
//! events).

use std::collections::BTreeMap;
use std::time::SystemTime;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_cloudformation::types::{
    Capability, ChangeSetType, Parameter, ResourceAttribute, ResourceSignalStatus,
};
use tracing::instrument;

use crate::error::{AwsError, AwsErrorKind};

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

/// A stack as DescribeStacks reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackDescription {
    pub name: String,
    pub id: String,
    /// `CREATE_COMPLETE`, `UPDATE_ROLLBACK_COMPLETE`, …
    pub status: String,
    pub status_reason: Option<String>,
    /// Parameter values by key; `NoEcho` values come back masked by the service.
    pub parameters: BTreeMap<String, String>,
    pub outputs: BTreeMap<String, String>,
}

/// One resource of a stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackResource {
    pub logical_id: String,
    pub physical_id: String,
    pub resource_type: String,
    pub status: String,
}

/// One stack event, as DescribeStackEvents reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackEvent {
    pub event_id: String,
    pub timestamp: SystemTime,
    pub logical_id: String,
    pub resource_type: String,
    pub status: String,
    pub reason: Option<String>,
}

/// Where a new template comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateSource {
    /// An `https://` URL of an S3 object, as CloudFormation requires.
    Url(String),
    /// The template's text.
    Body(String),
}

/// A parameter of a change set: a new value, or the stack's previous one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeSetParameter {
    pub key: String,
    /// `None` keeps the previous value (`UsePreviousValue`).
    pub value: Option<String>,
}

/// A change set to create for an existing stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeSetRequest {
    pub stack_name: String,
    pub change_set_name: String,
    pub template: TemplateSource,
    pub parameters: Vec<ChangeSetParameter>,
}

/// One resource change of a change set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceChange {
    /// `Add`, `Modify`, `Remove`, …
    pub action: String,
    pub logical_id: String,
    pub resource_type: String,
    /// `True`, `False` or `Conditional` for a modification; `None` when not reported.
    pub replacement: Option<String>,
    /// The properties the change touches (`MaxSize`, `LaunchTemplate`, …); empty when
    /// the service does not say.
    pub properties: Vec<String>,
}

/// A change set as DescribeChangeSet reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeSet {
    /// `CREATE_PENDING`, `CREATE_IN_PROGRESS`, `CREATE_COMPLETE`, `FAILED`, …
    pub status: String,
    pub status_reason: Option<String>,
    pub changes: Vec<ResourceChange>,
}

/// What the operator's tool reads and changes of a stack.
#[async_trait]
pub trait Stacks: Send + Sync {
    /// A stack by name or id; a missing stack is `NotFound`.
    async fn describe_stack(&self, stack_name: &str) -> Result<StackDescription, AwsError>;

    /// Every resource of a stack, across all pages.
    async fn stack_resources(&self, stack_name: &str) -> Result<Vec<StackResource>, AwsError>;

    /// The template the stack was last deployed with (GetTemplate).
    async fn template_body(&self, stack_name: &str) -> Result<String, AwsError>;

    /// The parameter keys a template declares (GetTemplateSummary).
    async fn template_parameters(&self, template: &TemplateSource)
    -> Result<Vec<String>, AwsError>;

    /// Creates a change set for an update; returns its id.
    async fn create_change_set(&self, request: &ChangeSetRequest) -> Result<String, AwsError>;

    async fn describe_change_set(
        &self,
        stack_name: &str,
        change_set_name: &str,
    ) -> Result<ChangeSet, AwsError>;

    async fn execute_change_set(
        &self,
        stack_name: &str,
        change_set_name: &str,
    ) -> Result<(), AwsError>;

    /// The stack's most recent events (the first page), newest first.
    async fn stack_events(&self, stack_name: &str) -> Result<Vec<StackEvent>, AwsError>;
}

/// [`Stacks`] over the AWS SDK.
#[derive(Debug, Clone)]
pub struct CloudFormationStacks {
    client: aws_sdk_cloudformation::Client,
}

impl CloudFormationStacks {
    pub fn new(sdk_config: &SdkConfig) -> CloudFormationStacks {
        CloudFormationStacks { client: aws_sdk_cloudformation::Client::new(sdk_config) }
    }
}

/// CloudFormation reports a missing stack as a validation error; the message is the
/// only thing that tells it apart from other invalid requests.
fn stack_not_found(mut error: AwsError) -> AwsError {
    if error.message.contains("does not exist") {
        error.kind = AwsErrorKind::NotFound;
    }
    error
}

#[async_trait]
impl Stacks for CloudFormationStacks {
    #[instrument(skip_all, fields(stack_name))]
    async fn describe_stack(&self, stack_name: &str) -> Result<StackDescription, AwsError> {
        const OPERATION: &str = "DescribeStacks";
        let output =
            self.client.describe_stacks().stack_name(stack_name).send().await.map_err(|error| {
                stack_not_found(AwsError::from_sdk(OPERATION, stack_name, error))
            })?;
        let stack = output.stacks.unwrap_or_default().into_iter().next().ok_or_else(|| {
            AwsError::new(AwsErrorKind::NotFound, OPERATION, stack_name, "no such stack")
        })?;
        Ok(StackDescription {
            name: stack.stack_name.unwrap_or_else(|| stack_name.to_owned()),
            id: stack.stack_id.unwrap_or_default(),
            status: stack.stack_status.map(|status| status.as_str().to_owned()).unwrap_or_default(),
            status_reason: stack.stack_status_reason,
            parameters: stack
                .parameters
                .unwrap_or_default()
                .into_iter()
                .filter_map(|parameter| {
                    Some((parameter.parameter_key?, parameter.parameter_value.unwrap_or_default()))
                })
                .collect(),
            outputs: stack
                .outputs
                .unwrap_or_default()
                .into_iter()
                .filter_map(|output| {
                    Some((output.output_key?, output.output_value.unwrap_or_default()))
                })
                .collect(),
        })
    }

    #[instrument(skip_all, fields(stack_name))]
    async fn stack_resources(&self, stack_name: &str) -> Result<Vec<StackResource>, AwsError> {
        let mut pages =
            self.client.list_stack_resources().stack_name(stack_name).into_paginator().send();
        let mut resources = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|error| {
                stack_not_found(AwsError::from_sdk("ListStackResources", stack_name, error))
            })?;
            for summary in page.stack_resource_summaries.unwrap_or_default() {
                resources.push(StackResource {
                    logical_id: summary.logical_resource_id.unwrap_or_default(),
                    physical_id: summary.physical_resource_id.unwrap_or_default(),
                    resource_type: summary.resource_type.unwrap_or_default(),
                    status: summary
                        .resource_status
                        .map(|status| status.as_str().to_owned())
                        .unwrap_or_default(),
                });
            }
        }
        Ok(resources)
    }

    #[instrument(skip_all, fields(stack_name))]
    async fn template_body(&self, stack_name: &str) -> Result<String, AwsError> {
        let output =
            self.client.get_template().stack_name(stack_name).send().await.map_err(|error| {
                stack_not_found(AwsError::from_sdk("GetTemplate", stack_name, error))
            })?;
        Ok(output.template_body.unwrap_or_default())
    }

    #[instrument(skip_all)]
    async fn template_parameters(
        &self,
        template: &TemplateSource,
    ) -> Result<Vec<String>, AwsError> {
        let request = self.client.get_template_summary();
        let (request, resource) = match template {
            TemplateSource::Url(url) => (request.template_url(url), url.as_str()),
            TemplateSource::Body(body) => (request.template_body(body), "the template body"),
        };
        let output = request
            .send()
            .await
            .map_err(|error| AwsError::from_sdk("GetTemplateSummary", resource, error))?;
        Ok(output
            .parameters
            .unwrap_or_default()
            .into_iter()
            .filter_map(|parameter| parameter.parameter_key)
            .collect())
    }

    #[instrument(skip_all, fields(stack_name = %request.stack_name))]
    async fn create_change_set(&self, request: &ChangeSetRequest) -> Result<String, AwsError> {
        let parameters = request
            .parameters
            .iter()
            .map(|parameter| match &parameter.value {
                Some(value) => Parameter::builder()
                    .parameter_key(&parameter.key)
                    .parameter_value(value)
                    .build(),
                None => Parameter::builder()
                    .parameter_key(&parameter.key)
                    .use_previous_value(true)
                    .build(),
            })
            .collect();
        let builder = self
            .client
            .create_change_set()
            .stack_name(&request.stack_name)
            .change_set_name(&request.change_set_name)
            .change_set_type(ChangeSetType::Update)
            .set_parameters(Some(parameters))
            .capabilities(Capability::CapabilityIam)
            .capabilities(Capability::CapabilityNamedIam)
            .capabilities(Capability::CapabilityAutoExpand);
        let builder = match &request.template {
            TemplateSource::Url(url) => builder.template_url(url),
            TemplateSource::Body(body) => builder.template_body(body),
        };
        let output = builder.send().await.map_err(|error| {
            stack_not_found(AwsError::from_sdk("CreateChangeSet", &request.stack_name, error))
        })?;
        Ok(output.id.unwrap_or_else(|| request.change_set_name.clone()))
    }

    #[instrument(skip_all, fields(stack_name, change_set_name))]
    async fn describe_change_set(
        &self,
        stack_name: &str,
        change_set_name: &str,
    ) -> Result<ChangeSet, AwsError> {
        let mut changes = Vec::new();
        let mut next_token = None;
        loop {
            let output = self
                .client
                .describe_change_set()
                .stack_name(stack_name)
                .change_set_name(change_set_name)
                .set_next_token(next_token)
                .send()
                .await
                .map_err(|error| AwsError::from_sdk("DescribeChangeSet", change_set_name, error))?;
            for change in output.changes.unwrap_or_default() {
                let Some(resource) = change.resource_change else { continue };
                changes.push(ResourceChange {
                    action: resource
                        .action
                        .map(|action| action.as_str().to_owned())
                        .unwrap_or_default(),
                    logical_id: resource.logical_resource_id.unwrap_or_default(),
                    resource_type: resource.resource_type.unwrap_or_default(),
                    replacement: resource.replacement.map(|value| value.as_str().to_owned()),
                    properties: resource
                        .details
                        .unwrap_or_default()
                        .into_iter()
                        .filter_map(|detail| detail.target)
                        .filter(|target| target.attribute == Some(ResourceAttribute::Properties))
                        .filter_map(|target| target.name)
                        .collect(),
                });
            }
            next_token = output.next_token.filter(|token| !token.is_empty());
            if next_token.is_none() {
                return Ok(ChangeSet {
                    status: output
                        .status
                        .map(|status| status.as_str().to_owned())
                        .unwrap_or_default(),
                    status_reason: output.status_reason,
                    changes,
                });
            }
        }
    }

    #[instrument(skip_all, fields(stack_name, change_set_name))]
    async fn execute_change_set(
        &self,
        stack_name: &str,
        change_set_name: &str,
    ) -> Result<(), AwsError> {
        self.client
            .execute_change_set()
            .stack_name(stack_name)
            .change_set_name(change_set_name)
            .send()
            .await
            .map_err(|error| AwsError::from_sdk("ExecuteChangeSet", change_set_name, error))?;
        Ok(())
    }

    #[instrument(skip_all, fields(stack_name))]
    async fn stack_events(&self, stack_name: &str) -> Result<Vec<StackEvent>, AwsError> {
        let output =
            self.client.describe_stack_events().stack_name(stack_name).send().await.map_err(
                |error| {
                    stack_not_found(AwsError::from_sdk("DescribeStackEvents", stack_name, error))
                },
            )?;
        Ok(output
            .stack_events
            .unwrap_or_default()
            .into_iter()
            .filter_map(|event| {
                Some(StackEvent {
                    event_id: event.event_id.unwrap_or_default(),
                    timestamp: SystemTime::try_from(event.timestamp?).ok()?,
                    logical_id: event.logical_resource_id.unwrap_or_default(),
                    resource_type: event.resource_type.unwrap_or_default(),
                    status: event
                        .resource_status
                        .map(|status| status.as_str().to_owned())
                        .unwrap_or_default(),
                    reason: event.resource_status_reason,
                })
            })
            .collect())
    }
}
