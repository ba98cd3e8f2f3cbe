//! Scaling group: EC2 Auto Scaling.

use std::collections::BTreeMap;
use std::time::SystemTime;

use async_trait::async_trait;
use aws_config::SdkConfig;
use elastic_ci_core::fleet::{
    GroupSnapshot, Health, InstanceSnapshot, LifecycleActionResult, LifecycleState,
    ScalingActivity, WarmPoolSnapshot,
};
use tracing::instrument;

use crate::error::{AwsError, AwsErrorKind};

/// Identifies a lifecycle action to complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleAction {
    pub group_name: String,
    pub hook_name: String,
    pub instance_id: String,
    pub token: Option<String>,
}

/// One page of a group's scaling activities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityPage {
    /// Newest first.
    pub activities: Vec<ScalingActivity>,
    /// Where the next page starts; `None` on the last page.
    pub next_token: Option<String>,
}

/// What the stack needs from Auto Scaling.
#[async_trait]
pub trait ScalingGroup: Send + Sync {
    /// A group with its sizes and instances; a missing group is `NotFound`.
    async fn describe_group(&self, group_name: &str) -> Result<GroupSnapshot, AwsError>;

    /// The group an instance belongs to, or `None` when it belongs to none.
    async fn group_of_instance(&self, instance_id: &str) -> Result<Option<String>, AwsError>;

    /// Sets the desired capacity, ignoring the group's own cooldowns.
    async fn set_desired_capacity(&self, group_name: &str, desired: u32) -> Result<(), AwsError>;

    async fn set_instance_health(&self, instance_id: &str, health: Health) -> Result<(), AwsError>;

    /// Terminates an instance of a group, lowering the desired capacity by one when
    /// `decrement_desired` is set (so the group does not replace it).
    async fn terminate_instance(
        &self,
        instance_id: &str,
        decrement_desired: bool,
    ) -> Result<(), AwsError>;

    async fn complete_lifecycle_action(
        &self,
        action: &LifecycleAction,
        result: LifecycleActionResult,
    ) -> Result<(), AwsError>;

    /// Restarts the heartbeat timeout of a lifecycle action that is waiting.
    async fn record_lifecycle_action_heartbeat(
        &self,
        action: &LifecycleAction,
    ) -> Result<(), AwsError>;

    /// The group's warm pool, or `None` when it has none.
    async fn describe_warm_pool(
        &self,
        group_name: &str,
    ) -> Result<Option<WarmPoolSnapshot>, AwsError>;

    /// One page (up to 100) of the group's scaling activities, newest first, starting
    /// at `next_token` (the first page when `None`).
    async fn scaling_activities_page(
        &self,
        group_name: &str,
        next_token: Option<&str>,
    ) -> Result<ActivityPage, AwsError>;
}

/// [`ScalingGroup`] over the AWS SDK.
#[derive(Debug, Clone)]
pub struct AutoScalingGroups {
    client: aws_sdk_autoscaling::Client,
}

impl AutoScalingGroups {
    pub fn new(sdk_config: &SdkConfig) -> AutoScalingGroups {
        AutoScalingGroups { client: aws_sdk_autoscaling::Client::new(sdk_config) }
    }
}

fn size(
    operation: &'static str,
    group_name: &str,
    what: &str,
    value: Option<i32>,
) -> Result<u32, AwsError> {
    let value = value.unwrap_or(0);
    u32::try_from(value).map_err(|_| {
        AwsError::new(
            AwsErrorKind::Service,
            operation,
            group_name,
            format!("the group's {what} is negative ({value})"),
        )
    })
}

fn to_i32(operation: &'static str, resource: &str, value: u32) -> Result<i32, AwsError> {
    i32::try_from(value).map_err(|_| {
        AwsError::new(
            AwsErrorKind::Validation,
            operation,
            resource,
            format!("{value} is larger than the API accepts"),
        )
    })
}

impl AutoScalingGroups {
    /// The one group `group_name` as DescribeAutoScalingGroups returns it; a missing
    /// group is `NotFound`.
    async fn describe_one(
        &self,
        group_name: &str,
    ) -> Result<aws_sdk_autoscaling::types::AutoScalingGroup, AwsError> {
        const OPERATION: &str = "DescribeAutoScalingGroups";
        let output = self
            .client
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(group_name)
            .send()
            .await
            .map_err(|error| AwsError::from_sdk(OPERATION, group_name, error))?;
        output
            .auto_scaling_groups
            .unwrap_or_default()
            .into_iter()
            .find(|group| group.auto_scaling_group_name.as_deref() == Some(group_name))
            .ok_or_else(|| {
                AwsError::new(
                    AwsErrorKind::NotFound,
                    OPERATION,
                    group_name,
                    "no such Auto Scaling group",
                )
            })
    }
}

/// The sizes and instances of a described group.
fn snapshot(
    group_name: &str,
    group: &aws_sdk_autoscaling::types::AutoScalingGroup,
) -> Result<GroupSnapshot, AwsError> {
    const OPERATION: &str = "DescribeAutoScalingGroups";
    let instances = group.instances().iter().cloned().map(instance_from_sdk).collect();
    Ok(GroupSnapshot {
        name: group_name.to_owned(),
        min_size: size(OPERATION, group_name, "MinSize", group.min_size)?,
        max_size: size(OPERATION, group_name, "MaxSize", group.max_size)?,
        desired_capacity: size(OPERATION, group_name, "DesiredCapacity", group.desired_capacity)?,
        instances,
    })
}

#[async_trait]
impl ScalingGroup for AutoScalingGroups {
    #[instrument(skip_all, fields(group_name))]
    async fn describe_group(&self, group_name: &str) -> Result<GroupSnapshot, AwsError> {
        let group = self.describe_one(group_name).await?;
        snapshot(group_name, &group)
    }

    #[instrument(skip_all, fields(instance_id))]
    async fn group_of_instance(&self, instance_id: &str) -> Result<Option<String>, AwsError> {
        let output = self
            .client
            .describe_auto_scaling_instances()
            .instance_ids(instance_id)
            .send()
            .await
            .map_err(|error| {
                AwsError::from_sdk("DescribeAutoScalingInstances", instance_id, error)
            })?;
        Ok(output
            .auto_scaling_instances
            .unwrap_or_default()
            .into_iter()
            .find(|instance| instance.instance_id.as_deref() == Some(instance_id))
            .and_then(|instance| instance.auto_scaling_group_name))
    }

    #[instrument(skip_all, fields(group_name, desired))]
    async fn set_desired_capacity(&self, group_name: &str, desired: u32) -> Result<(), AwsError> {
        const OPERATION: &str = "SetDesiredCapacity";
        self.client
            .set_desired_capacity()
            .auto_scaling_group_name(group_name)
            .desired_capacity(to_i32(OPERATION, group_name, desired)?)
            .honor_cooldown(false)
            .send()
            .await
            .map_err(|error| AwsError::from_sdk(OPERATION, group_name, error))?;
        Ok(())
    }

    #[instrument(skip_all, fields(instance_id, %health))]
    async fn set_instance_health(&self, instance_id: &str, health: Health) -> Result<(), AwsError> {
        self.client
            .set_instance_health()
            .instance_id(instance_id)
            .health_status(health.as_api())
            .should_respect_grace_period(false)
            .send()
            .await
            .map_err(|error| AwsError::from_sdk("SetInstanceHealth", instance_id, error))?;
        Ok(())
    }

    #[instrument(skip_all, fields(instance_id, decrement_desired))]
    async fn terminate_instance(
        &self,
        instance_id: &str,
        decrement_desired: bool,
    ) -> Result<(), AwsError> {
        self.client
            .terminate_instance_in_auto_scaling_group()
            .instance_id(instance_id)
            .should_decrement_desired_capacity(decrement_desired)
            .send()
            .await
            .map_err(|error| {
                AwsError::from_sdk("TerminateInstanceInAutoScalingGroup", instance_id, error)
            })?;
        Ok(())
    }

    #[instrument(skip_all, fields(group_name))]
    async fn scaling_activities_page(
        &self,
        group_name: &str,
        next_token: Option<&str>,
    ) -> Result<ActivityPage, AwsError> {
        const OPERATION: &str = "DescribeScalingActivities";
        let output = self
            .client
            .describe_scaling_activities()
            .auto_scaling_group_name(group_name)
            .max_records(100)
            .set_next_token(next_token.map(str::to_owned))
            .send()
            .await
            .map_err(|error| AwsError::from_sdk(OPERATION, group_name, error))?;
        Ok(ActivityPage {
            activities: activities_from_sdk(output.activities.unwrap_or_default()),
            next_token: output.next_token.filter(|token| !token.is_empty()),
        })
    }

    #[instrument(skip_all, fields(group_name = %action.group_name, instance_id = %action.instance_id))]
    async fn record_lifecycle_action_heartbeat(
        &self,
        action: &LifecycleAction,
    ) -> Result<(), AwsError> {
        self.client
            .record_lifecycle_action_heartbeat()
            .auto_scaling_group_name(&action.group_name)
            .lifecycle_hook_name(&action.hook_name)
            .instance_id(&action.instance_id)
            .set_lifecycle_action_token(action.token.clone())
            .send()
            .await
            .map_err(|error| {
                AwsError::from_sdk("RecordLifecycleActionHeartbeat", &action.instance_id, error)
            })?;
        Ok(())
    }

    #[instrument(skip_all, fields(group_name))]
    async fn describe_warm_pool(
        &self,
        group_name: &str,
    ) -> Result<Option<WarmPoolSnapshot>, AwsError> {
        const OPERATION: &str = "DescribeWarmPool";
        let mut instances = Vec::new();
        let mut next_token = None;
        loop {
            let output = self
                .client
                .describe_warm_pool()
                .auto_scaling_group_name(group_name)
                .set_next_token(next_token)
                .send()
                .await
                .map_err(|error| AwsError::from_sdk(OPERATION, group_name, error))?;
            let Some(configuration) = output.warm_pool_configuration else {
                return Ok(None);
            };
            instances
                .extend(output.instances.unwrap_or_default().into_iter().map(instance_from_sdk));
            next_token = output.next_token.filter(|token| !token.is_empty());
            if next_token.is_none() {
                let max_prepared = configuration
                    .max_group_prepared_capacity
                    .filter(|capacity| *capacity >= 0)
                    .map(|capacity| {
                        size(OPERATION, group_name, "MaxGroupPreparedCapacity", Some(capacity))
                    })
                    .transpose()?;
                return Ok(Some(WarmPoolSnapshot {
                    min_size: size(
                        OPERATION,
                        group_name,
                        "warm pool MinSize",
                        configuration.min_size,
                    )?,
                    max_group_prepared_capacity: max_prepared,
                    pool_state: configuration
                        .pool_state
                        .map(|state| state.as_str().to_owned())
                        .unwrap_or_else(|| "Stopped".to_owned()),
                    instances,
                }));
            }
        }
    }

    #[instrument(skip_all, fields(group_name = %action.group_name, instance_id = %action.instance_id))]
    async fn complete_lifecycle_action(
        &self,
        action: &LifecycleAction,
        result: LifecycleActionResult,
    ) -> Result<(), AwsError> {
        self.client
            .complete_lifecycle_action()
            .auto_scaling_group_name(&action.group_name)
            .lifecycle_hook_name(&action.hook_name)
            .instance_id(&action.instance_id)
            .set_lifecycle_action_token(action.token.clone())
            .lifecycle_action_result(result.as_api())
            .send()
            .await
            .map_err(|error| {
                AwsError::from_sdk("CompleteLifecycleAction", &action.instance_id, error)
            })?;
        Ok(())
    }
}

fn instance_from_sdk(instance: aws_sdk_autoscaling::types::Instance) -> InstanceSnapshot {
    InstanceSnapshot {
        id: instance.instance_id.unwrap_or_default(),
        lifecycle_state: LifecycleState::from_api(
            instance.lifecycle_state.as_ref().map(|state| state.as_str()).unwrap_or_default(),
        ),
        health: Health::from_api(instance.health_status.as_deref().unwrap_or("Healthy")),
        protected_from_scale_in: instance.protected_from_scale_in.unwrap_or(false),
    }
}

fn activities_from_sdk(
    activities: Vec<aws_sdk_autoscaling::types::Activity>,
) -> Vec<ScalingActivity> {
    activities
        .into_iter()
        .filter_map(|activity| {
            Some(ScalingActivity {
                start_time: SystemTime::try_from(activity.start_time?).ok()?,
                end_time: activity.end_time.and_then(|time| SystemTime::try_from(time).ok()),
                status: activity
                    .status_code
                    .map(|code| code.as_str().to_owned())
                    .unwrap_or_default(),
                description: activity.description.unwrap_or_default(),
                cause: activity.cause.unwrap_or_default(),
            })
        })
        .collect()
}

/// One instance of a group, with what an operator looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceDetails {
    pub id: String,
    pub instance_type: String,
    pub zone: String,
    /// The API's word, such as `InService` or `Pending:Wait`.
    pub lifecycle_state: String,
    pub health: Health,
    /// The launch template version the instance was launched with.
    pub launch_template_version: Option<String>,
    pub protected_from_scale_in: bool,
}

/// A group with its tags and instance details.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDetails {
    pub snapshot: GroupSnapshot,
    pub instances: Vec<InstanceDetails>,
    pub tags: BTreeMap<String, String>,
}

/// New sizes for a group; `None` leaves a size as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SizeUpdate {
    pub min_size: Option<u32>,
    pub max_size: Option<u32>,
    pub desired_capacity: Option<u32>,
}

/// What the operator's tool needs from Auto Scaling beyond [`ScalingGroup`].
#[async_trait]
pub trait GroupAdmin: Send + Sync {
    /// A group with its tags and instance details; a missing group is `NotFound`.
    async fn group_details(&self, group_name: &str) -> Result<GroupDetails, AwsError>;

    /// Changes the group's sizes in one call (UpdateAutoScalingGroup).
    async fn update_sizes(&self, group_name: &str, update: SizeUpdate) -> Result<(), AwsError>;

    /// Sets a tag on the group, not propagated to instances.
    async fn put_tag(&self, group_name: &str, key: &str, value: &str) -> Result<(), AwsError>;

    async fn delete_tag(&self, group_name: &str, key: &str) -> Result<(), AwsError>;
}

#[async_trait]
impl GroupAdmin for AutoScalingGroups {
    #[instrument(skip_all, fields(group_name))]
    async fn group_details(&self, group_name: &str) -> Result<GroupDetails, AwsError> {
        // One call for the snapshot and the details alike.
        let group = self.describe_one(group_name).await?;
        let snapshot = snapshot(group_name, &group)?;
        let instances = group
            .instances
            .unwrap_or_default()
            .into_iter()
            .map(|instance| InstanceDetails {
                id: instance.instance_id.unwrap_or_default(),
                instance_type: instance.instance_type.unwrap_or_default(),
                zone: instance.availability_zone.unwrap_or_default(),
                lifecycle_state: instance
                    .lifecycle_state
                    .map(|state| state.as_str().to_owned())
                    .unwrap_or_default(),
                health: Health::from_api(instance.health_status.as_deref().unwrap_or("Healthy")),
                launch_template_version: instance
                    .launch_template
                    .and_then(|template| template.version),
                protected_from_scale_in: instance.protected_from_scale_in.unwrap_or(false),
            })
            .collect();
        let tags = group
            .tags
            .unwrap_or_default()
            .into_iter()
            .filter_map(|tag| Some((tag.key?, tag.value.unwrap_or_default())))
            .collect();
        Ok(GroupDetails { snapshot, instances, tags })
    }

    #[instrument(skip_all, fields(group_name))]
    async fn update_sizes(&self, group_name: &str, update: SizeUpdate) -> Result<(), AwsError> {
        const OPERATION: &str = "UpdateAutoScalingGroup";
        let convert = |value: Option<u32>| {
            value.map(|value| to_i32(OPERATION, group_name, value)).transpose()
        };
        self.client
            .update_auto_scaling_group()
            .auto_scaling_group_name(group_name)
            .set_min_size(convert(update.min_size)?)
            .set_max_size(convert(update.max_size)?)
            .set_desired_capacity(convert(update.desired_capacity)?)
            .send()
            .await
            .map_err(|error| AwsError::from_sdk(OPERATION, group_name, error))?;
        Ok(())
    }

    #[instrument(skip_all, fields(group_name, key))]
    async fn put_tag(&self, group_name: &str, key: &str, value: &str) -> Result<(), AwsError> {
        self.client
            .create_or_update_tags()
            .tags(group_tag(group_name, key, Some(value)))
            .send()
            .await
            .map_err(|error| AwsError::from_sdk("CreateOrUpdateTags", group_name, error))?;
        Ok(())
    }

    #[instrument(skip_all, fields(group_name, key))]
    async fn delete_tag(&self, group_name: &str, key: &str) -> Result<(), AwsError> {
        self.client
            .delete_tags()
            .tags(group_tag(group_name, key, None))
            .send()
            .await
            .map_err(|error| AwsError::from_sdk("DeleteTags", group_name, error))?;
        Ok(())
    }
}

fn group_tag(group_name: &str, key: &str, value: Option<&str>) -> aws_sdk_autoscaling::types::Tag {
    aws_sdk_autoscaling::types::Tag::builder()
        .resource_id(group_name)
        .resource_type("auto-scaling-group")
        .key(key)
        .set_value(value.map(str::to_owned))
        .propagate_at_launch(false)
        .build()
}
