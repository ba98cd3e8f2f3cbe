//! In-memory implementations of every trait, for tests of the code that uses them.
//!
//! They exist for what the local emulator cannot do (scaling activities, pending
//! instances, throttling, capacity validation) and for fast unit tests. Each fake
//! records the calls made to it and can be told to fail the next calls of an operation
//! with a chosen error kind, through its [`Faults`]. Each fake is there when the
//! feature of its service is.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

use async_trait::async_trait;
use elastic_ci_core::fleet::{
    GroupSnapshot, Health, InstanceSnapshot, LifecycleActionResult, LifecycleState,
    ScalingActivity, WarmPoolSnapshot,
};
use elastic_ci_core::secret::Secret;
use tokio::io::{AsyncWrite, AsyncWriteExt};

#[cfg(feature = "autoscaling")]
use crate::autoscaling::{
    ActivityPage, GroupAdmin, GroupDetails, InstanceDetails, LifecycleAction, ScalingGroup,
    SizeUpdate,
};
#[cfg(feature = "cloudformation")]
use crate::cloudformation::{
    ChangeSet, ChangeSetRequest, ResourceChange, ResourceSignal, StackDescription, StackEvent,
    StackResource, StackSignal, Stacks, TemplateSource,
};
use crate::cloudwatch::{MetricDatum, Metrics};
use crate::ec2::{CopyImageRequest, MachineImage, MachineImages, Network, OwnedImage, SubnetRoute};
#[cfg(feature = "ecr")]
use crate::ecr::{RegistryAuth, RegistryCredentials};
use crate::error::{AwsError, AwsErrorKind};
#[cfg(feature = "eventbridge")]
use crate::eventbridge::{Rule, Rules};
#[cfg(feature = "logs")]
use crate::logs::{
    LogEvent, LogEvents, LogFilter, LogGroupFilters, LogPage, MetricFilter, SubscriptionFilter,
};
#[cfg(feature = "s3")]
use crate::s3::{DownloadError, ObjectHead, ObjectStore, ObjectSummary};
#[cfg(feature = "ssm")]
use crate::ssm::{Parameter, ParameterAdmin, ParameterInfo, ParameterStore, RemoteCommands};

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A test that panicked while holding the lock has already failed; keep going so
    // that its assertion message, not a poison error, is what gets reported.
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Failures queued per operation name (the AWS operation, such as `SetDesiredCapacity`).
#[derive(Debug, Default)]
pub struct Faults {
    queued: Mutex<HashMap<&'static str, VecDeque<AwsErrorKind>>>,
}

impl Faults {
    /// Makes the next `times` calls of `operation` fail with `kind`.
    pub fn fail_next(&self, operation: &'static str, kind: AwsErrorKind, times: usize) {
        lock(&self.queued).entry(operation).or_default().extend(std::iter::repeat_n(kind, times));
    }

    fn check(&self, operation: &'static str, resource: &str) -> Result<(), AwsError> {
        match lock(&self.queued).get_mut(operation).and_then(VecDeque::pop_front) {
            Some(kind) => Err(AwsError::new(kind, operation, resource, "injected fault")),
            None => Ok(()),
        }
    }
}

#[cfg(feature = "s3")]
#[derive(Debug, Clone)]
struct FakeObject {
    body: Vec<u8>,
    content_type: Option<String>,
    last_modified: SystemTime,
}

#[cfg(feature = "s3")]
/// In-memory S3.
#[derive(Debug, Default)]
pub struct FakeObjectStore {
    buckets: Mutex<BTreeMap<String, BTreeMap<String, FakeObject>>>,
    denied: Mutex<HashSet<(String, String)>>,
    failing_uploads: Mutex<HashSet<(String, String)>>,
    policies: Mutex<BTreeMap<String, String>>,
    pub faults: Faults,
}

#[cfg(feature = "s3")]
impl FakeObjectStore {
    pub fn create_bucket(&self, bucket: &str) {
        lock(&self.buckets).entry(bucket.to_owned()).or_default();
    }

    pub fn put(&self, bucket: &str, key: &str, body: impl Into<Vec<u8>>) {
        lock(&self.buckets).entry(bucket.to_owned()).or_default().insert(
            key.to_owned(),
            FakeObject { body: body.into(), content_type: None, last_modified: SystemTime::now() },
        );
    }

    /// Makes every upload of one key fail as a lost connection would, whatever came
    /// before it (a publish that fails halfway).
    pub fn fail_uploads_of(&self, bucket: &str, key: &str) {
        lock(&self.failing_uploads).insert((bucket.to_owned(), key.to_owned()));
    }

    /// The policy [`ObjectStore::allow_public_read`] last set on `bucket`.
    pub fn policy(&self, bucket: &str) -> Option<String> {
        lock(&self.policies).get(bucket).cloned()
    }

    /// Makes reads of one key fail with access denied, as a bucket policy would.
    pub fn deny(&self, bucket: &str, key: &str) {
        lock(&self.denied).insert((bucket.to_owned(), key.to_owned()));
    }

    /// An object's body and content type, for assertions.
    pub fn object(&self, bucket: &str, key: &str) -> Option<(Vec<u8>, Option<String>)> {
        lock(&self.buckets)
            .get(bucket)?
            .get(key)
            .map(|object| (object.body.clone(), object.content_type.clone()))
    }

    fn find(
        &self,
        operation: &'static str,
        bucket: &str,
        key: &str,
    ) -> Result<FakeObject, AwsError> {
        let resource = format!("s3://{bucket}/{key}");
        self.faults.check(operation, &resource)?;
        if lock(&self.denied).contains(&(bucket.to_owned(), key.to_owned())) {
            return Err(AwsError::new(
                AwsErrorKind::AccessDenied,
                operation,
                resource,
                "Access Denied",
            ));
        }
        let buckets = lock(&self.buckets);
        let objects = buckets.get(bucket).ok_or_else(|| {
            AwsError::new(
                AwsErrorKind::NotFound,
                operation,
                &resource,
                "The specified bucket does not exist",
            )
        })?;
        objects.get(key).cloned().ok_or_else(|| {
            AwsError::new(
                AwsErrorKind::NotFound,
                operation,
                &resource,
                "The specified key does not exist.",
            )
        })
    }
}

#[cfg(feature = "s3")]
#[async_trait]
impl ObjectStore for FakeObjectStore {
    async fn download(
        &self,
        bucket: &str,
        key: &str,
        writer: &mut (dyn AsyncWrite + Send + Unpin),
    ) -> Result<u64, DownloadError> {
        let object = self.find("GetObject", bucket, key)?;
        let write_error = |source| DownloadError::Write {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            source,
        };
        writer.write_all(&object.body).await.map_err(write_error)?;
        writer.flush().await.map_err(write_error)?;
        Ok(object.body.len() as u64)
    }

    async fn upload(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        content_type: Option<&str>,
    ) -> Result<(), AwsError> {
        let resource = format!("s3://{bucket}/{key}");
        self.faults.check("PutObject", &resource)?;
        if lock(&self.failing_uploads).contains(&(bucket.to_owned(), key.to_owned())) {
            return Err(AwsError::new(
                AwsErrorKind::Transport,
                "PutObject",
                resource,
                "injected fault",
            ));
        }
        let mut buckets = lock(&self.buckets);
        let objects = buckets.get_mut(bucket).ok_or_else(|| {
            AwsError::new(
                AwsErrorKind::NotFound,
                "PutObject",
                &resource,
                "The specified bucket does not exist",
            )
        })?;
        objects.insert(
            key.to_owned(),
            FakeObject {
                body,
                content_type: content_type.map(str::to_owned),
                last_modified: SystemTime::now(),
            },
        );
        Ok(())
    }

    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectSummary>, AwsError> {
        let resource = format!("s3://{bucket}/{prefix}");
        self.faults.check("ListObjectsV2", &resource)?;
        let buckets = lock(&self.buckets);
        let objects = buckets.get(bucket).ok_or_else(|| {
            AwsError::new(
                AwsErrorKind::NotFound,
                "ListObjectsV2",
                &resource,
                "The specified bucket does not exist",
            )
        })?;
        Ok(objects
            .iter()
            .filter(|(key, _)| key.starts_with(prefix))
            .map(|(key, object)| ObjectSummary {
                key: key.clone(),
                size: object.body.len() as u64,
                last_modified: Some(object.last_modified),
            })
            .collect())
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<ObjectHead, AwsError> {
        let object = self.find("HeadObject", bucket, key)?;
        Ok(ObjectHead {
            size: object.body.len() as u64,
            content_type: object.content_type,
            last_modified: Some(object.last_modified),
        })
    }

    async fn bucket_region(&self, bucket: &str) -> Result<Option<String>, AwsError> {
        let resource = format!("s3://{bucket}");
        self.faults.check("HeadBucket", &resource)?;
        if lock(&self.buckets).contains_key(bucket) {
            Ok(Some("us-east-1".to_owned()))
        } else {
            Err(AwsError::new(AwsErrorKind::NotFound, "HeadBucket", resource, "Not Found"))
        }
    }

    async fn ensure_bucket(&self, bucket: &str, _region: &str) -> Result<bool, AwsError> {
        self.faults.check("CreateBucket", &format!("s3://{bucket}"))?;
        let mut buckets = lock(&self.buckets);
        if buckets.contains_key(bucket) {
            return Ok(false);
        }
        buckets.insert(bucket.to_owned(), BTreeMap::new());
        Ok(true)
    }

    async fn allow_public_read(&self, bucket: &str, prefix: &str) -> Result<(), AwsError> {
        let resource = format!("s3://{bucket}");
        self.faults.check("PutBucketPolicy", &resource)?;
        if !lock(&self.buckets).contains_key(bucket) {
            return Err(AwsError::new(
                AwsErrorKind::NotFound,
                "PutBucketPolicy",
                resource,
                "The specified bucket does not exist",
            ));
        }
        lock(&self.policies)
            .insert(bucket.to_owned(), crate::s3::public_read_policy(bucket, prefix));
        Ok(())
    }
}

#[cfg(feature = "ssm")]
/// In-memory SSM Parameter Store.
#[derive(Debug, Default)]
pub struct FakeParameterStore {
    parameters: Mutex<BTreeMap<String, String>>,
    /// Type and key by name; a parameter without an entry is a `SecureString` under
    /// the default key.
    kinds: Mutex<BTreeMap<String, ParameterInfo>>,
    commands: Mutex<Vec<(Vec<String>, Vec<String>)>>,
    pub faults: Faults,
}

#[cfg(feature = "ssm")]
impl FakeParameterStore {
    pub fn put(&self, name: &str, value: &str) {
        lock(&self.parameters).insert(name.to_owned(), value.to_owned());
    }

    /// Sets a parameter's type and key.
    pub fn set_kind(&self, name: &str, kind: &str, key_id: Option<&str>) {
        lock(&self.kinds).insert(
            name.to_owned(),
            ParameterInfo {
                name: name.to_owned(),
                kind: kind.to_owned(),
                key_id: key_id.map(str::to_owned),
            },
        );
    }

    /// A parameter's value, for assertions.
    pub fn value(&self, name: &str) -> Option<String> {
        lock(&self.parameters).get(name).cloned()
    }

    /// The shell commands sent, with their instance ids, oldest first.
    pub fn commands(&self) -> Vec<(Vec<String>, Vec<String>)> {
        lock(&self.commands).clone()
    }
}

#[cfg(feature = "ssm")]
#[async_trait]
impl ParameterAdmin for FakeParameterStore {
    async fn describe_parameter(&self, name: &str) -> Result<ParameterInfo, AwsError> {
        self.faults.check("DescribeParameters", name)?;
        if !lock(&self.parameters).contains_key(name) {
            return Err(AwsError::new(
                AwsErrorKind::NotFound,
                "DescribeParameters",
                name,
                "parameter not found",
            ));
        }
        Ok(lock(&self.kinds).get(name).cloned().unwrap_or_else(|| ParameterInfo {
            name: name.to_owned(),
            kind: "SecureString".to_owned(),
            key_id: None,
        }))
    }

    async fn overwrite(&self, info: &ParameterInfo, value: &Secret) -> Result<(), AwsError> {
        self.faults.check("PutParameter", &info.name)?;
        lock(&self.parameters).insert(info.name.clone(), value.expose().to_owned());
        lock(&self.kinds).insert(info.name.clone(), info.clone());
        Ok(())
    }
}

#[cfg(feature = "ssm")]
#[async_trait]
impl RemoteCommands for FakeParameterStore {
    async fn run_shell(
        &self,
        instance_ids: &[String],
        commands: &[String],
        _comment: &str,
    ) -> Result<String, AwsError> {
        self.faults.check("SendCommand", &instance_ids.join(","))?;
        let mut sent = lock(&self.commands);
        sent.push((instance_ids.to_vec(), commands.to_vec()));
        Ok(format!("command-{}", sent.len()))
    }
}

#[cfg(feature = "ssm")]
#[async_trait]
impl ParameterStore for FakeParameterStore {
    async fn get(&self, name: &str) -> Result<Parameter, AwsError> {
        self.faults.check("GetParameter", name)?;
        // Accept a full ARN as the service does: the name follows ":parameter".
        let lookup = name.split_once(":parameter").map_or(name, |(_, rest)| rest);
        lock(&self.parameters)
            .get(lookup)
            .map(|value| Parameter { name: lookup.to_owned(), value: Secret::new(value.clone()) })
            .ok_or_else(|| {
                AwsError::new(AwsErrorKind::NotFound, "GetParameter", name, "parameter not found")
            })
    }

    async fn get_by_path(&self, path: &str) -> Result<Vec<Parameter>, AwsError> {
        self.faults.check("GetParametersByPath", path)?;
        let prefix = format!("{}/", path.trim_end_matches('/'));
        Ok(lock(&self.parameters)
            .iter()
            .filter(|(name, _)| name.starts_with(&prefix))
            .map(|(name, value)| Parameter {
                name: name.clone(),
                value: Secret::new(value.clone()),
            })
            .collect())
    }
}

#[cfg(feature = "autoscaling")]
/// A call made to the [`FakeScalingGroup`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScalingCall {
    SetDesiredCapacity {
        group_name: String,
        desired: u32,
    },
    SetInstanceHealth {
        instance_id: String,
        health: Health,
    },
    TerminateInstance {
        instance_id: String,
        decrement_desired: bool,
    },
    CompleteLifecycleAction {
        instance_id: String,
        hook_name: String,
        result: LifecycleActionResult,
    },
    RecordLifecycleActionHeartbeat {
        instance_id: String,
    },
}

#[cfg(feature = "autoscaling")]
/// Scaling activities per page, as the service's maximum.
const ACTIVITY_PAGE_SIZE: usize = 100;

#[cfg(feature = "autoscaling")]
/// In-memory Auto Scaling, validating capacity changes the way the service does.
#[derive(Debug, Default)]
pub struct FakeScalingGroup {
    groups: Mutex<BTreeMap<String, GroupSnapshot>>,
    activities: Mutex<HashMap<String, Vec<ScalingActivity>>>,
    activity_page_requests: Mutex<u32>,
    warm_pools: Mutex<BTreeMap<String, WarmPoolSnapshot>>,
    calls: Mutex<Vec<ScalingCall>>,
    tags: Mutex<HashMap<String, BTreeMap<String, String>>>,
    /// Instance type, zone and launch template version by instance id.
    instance_details: Mutex<HashMap<String, (String, String, Option<String>)>>,
    pub faults: Faults,
}

#[cfg(feature = "autoscaling")]
impl FakeScalingGroup {
    pub fn insert_group(&self, group: GroupSnapshot) {
        lock(&self.groups).insert(group.name.clone(), group);
    }

    pub fn group(&self, group_name: &str) -> Option<GroupSnapshot> {
        lock(&self.groups).get(group_name).cloned()
    }

    /// Adds an instance to a group in the given state.
    pub fn add_instance(
        &self,
        group_name: &str,
        instance_id: &str,
        lifecycle_state: LifecycleState,
    ) {
        if let Some(group) = lock(&self.groups).get_mut(group_name) {
            group.instances.push(InstanceSnapshot {
                id: instance_id.to_owned(),
                lifecycle_state,
                health: Health::Healthy,
                protected_from_scale_in: false,
            });
        }
    }

    /// Sets what [`GroupAdmin::group_details`] reports of an instance besides its state.
    pub fn set_instance_details(
        &self,
        instance_id: &str,
        instance_type: &str,
        zone: &str,
        launch_template_version: Option<&str>,
    ) {
        lock(&self.instance_details).insert(
            instance_id.to_owned(),
            (instance_type.to_owned(), zone.to_owned(), launch_template_version.map(str::to_owned)),
        );
    }

    /// Takes an instance out of its group, as the service does once a termination
    /// completes.
    pub fn remove_instance(&self, instance_id: &str) {
        for group in lock(&self.groups).values_mut() {
            group.instances.retain(|instance| instance.id != instance_id);
        }
    }

    /// Marks an instance Unhealthy or Healthy without recording a call.
    pub fn set_health(&self, instance_id: &str, health: Health) {
        for group in lock(&self.groups).values_mut() {
            for instance in &mut group.instances {
                if instance.id == instance_id {
                    instance.health = health;
                }
            }
        }
    }

    /// The group's tags.
    pub fn tags(&self, group_name: &str) -> BTreeMap<String, String> {
        lock(&self.tags).get(group_name).cloned().unwrap_or_default()
    }

    /// Gives a group a warm pool.
    pub fn insert_warm_pool(&self, group_name: &str, pool: WarmPoolSnapshot) {
        lock(&self.warm_pools).insert(group_name.to_owned(), pool);
    }

    pub fn add_activity(&self, group_name: &str, activity: ScalingActivity) {
        lock(&self.activities).entry(group_name.to_owned()).or_default().push(activity);
    }

    /// How many pages of scaling activities were asked for.
    pub fn activity_page_requests(&self) -> u32 {
        *lock(&self.activity_page_requests)
    }

    pub fn calls(&self) -> Vec<ScalingCall> {
        lock(&self.calls).clone()
    }

    fn record(&self, call: ScalingCall) {
        lock(&self.calls).push(call);
    }

    fn group_of(&self, instance_id: &str) -> Option<String> {
        lock(&self.groups)
            .values()
            .find(|group| group.instances.iter().any(|instance| instance.id == instance_id))
            .map(|group| group.name.clone())
    }
}

#[cfg(feature = "autoscaling")]
#[async_trait]
impl ScalingGroup for FakeScalingGroup {
    async fn describe_group(&self, group_name: &str) -> Result<GroupSnapshot, AwsError> {
        self.faults.check("DescribeAutoScalingGroups", group_name)?;
        self.group(group_name).ok_or_else(|| {
            AwsError::new(
                AwsErrorKind::NotFound,
                "DescribeAutoScalingGroups",
                group_name,
                "no such Auto Scaling group",
            )
        })
    }

    async fn group_of_instance(&self, instance_id: &str) -> Result<Option<String>, AwsError> {
        self.faults.check("DescribeAutoScalingInstances", instance_id)?;
        Ok(self.group_of(instance_id))
    }

    async fn set_desired_capacity(&self, group_name: &str, desired: u32) -> Result<(), AwsError> {
        const OPERATION: &str = "SetDesiredCapacity";
        self.faults.check(OPERATION, group_name)?;
        let mut groups = lock(&self.groups);
        let group = groups.get_mut(group_name).ok_or_else(|| {
            AwsError::new(
                AwsErrorKind::NotFound,
                OPERATION,
                group_name,
                "no such Auto Scaling group",
            )
        })?;
        if desired > group.max_size || desired < group.min_size {
            return Err(AwsError::new(
                AwsErrorKind::Validation,
                OPERATION,
                group_name,
                format!(
                    "New SetDesiredCapacity value {desired} is outside [{}, {}] for the AutoScalingGroup",
                    group.min_size, group.max_size
                ),
            ));
        }
        group.desired_capacity = desired;
        drop(groups);
        self.record(ScalingCall::SetDesiredCapacity { group_name: group_name.to_owned(), desired });
        Ok(())
    }

    async fn set_instance_health(&self, instance_id: &str, health: Health) -> Result<(), AwsError> {
        const OPERATION: &str = "SetInstanceHealth";
        self.faults.check(OPERATION, instance_id)?;
        let mut groups = lock(&self.groups);
        let instance = groups
            .values_mut()
            .flat_map(|group| group.instances.iter_mut())
            .find(|instance| instance.id == instance_id)
            .ok_or_else(|| {
                AwsError::new(
                    AwsErrorKind::Validation,
                    OPERATION,
                    instance_id,
                    "Instance Id not found",
                )
            })?;
        instance.health = health;
        drop(groups);
        self.record(ScalingCall::SetInstanceHealth { instance_id: instance_id.to_owned(), health });
        Ok(())
    }

    async fn terminate_instance(
        &self,
        instance_id: &str,
        decrement_desired: bool,
    ) -> Result<(), AwsError> {
        const OPERATION: &str = "TerminateInstanceInAutoScalingGroup";
        self.faults.check(OPERATION, instance_id)?;
        let mut groups = lock(&self.groups);
        let group = groups
            .values_mut()
            .find(|group| group.instances.iter().any(|instance| instance.id == instance_id))
            .ok_or_else(|| {
                AwsError::new(
                    AwsErrorKind::Validation,
                    OPERATION,
                    instance_id,
                    "Instance Id not found",
                )
            })?;
        if decrement_desired {
            if group.desired_capacity <= group.min_size {
                return Err(AwsError::new(
                    AwsErrorKind::Validation,
                    OPERATION,
                    instance_id,
                    format!(
                        "Currently, desiredSize equals minSize ({}). Terminating instance without replacement will violate group's min size constraint.",
                        group.min_size
                    ),
                ));
            }
            group.desired_capacity -= 1;
        }
        for instance in &mut group.instances {
            if instance.id == instance_id {
                instance.lifecycle_state = LifecycleState::Terminating;
            }
        }
        drop(groups);
        self.record(ScalingCall::TerminateInstance {
            instance_id: instance_id.to_owned(),
            decrement_desired,
        });
        Ok(())
    }

    async fn scaling_activities_page(
        &self,
        group_name: &str,
        next_token: Option<&str>,
    ) -> Result<ActivityPage, AwsError> {
        const OPERATION: &str = "DescribeScalingActivities";
        self.faults.check(OPERATION, group_name)?;
        *lock(&self.activity_page_requests) += 1;
        let start = match next_token {
            None => 0,
            Some(token) => token.parse::<usize>().map_err(|_| {
                AwsError::new(AwsErrorKind::Validation, OPERATION, group_name, "invalid NextToken")
            })?,
        };
        let mut activities = lock(&self.activities).get(group_name).cloned().unwrap_or_default();
        activities.sort_by_key(|activity| std::cmp::Reverse(activity.start_time));
        let end = (start + ACTIVITY_PAGE_SIZE).min(activities.len());
        let page = activities.get(start..end).unwrap_or_default().to_vec();
        Ok(ActivityPage {
            activities: page,
            next_token: (end < activities.len()).then(|| end.to_string()),
        })
    }

    async fn record_lifecycle_action_heartbeat(
        &self,
        action: &LifecycleAction,
    ) -> Result<(), AwsError> {
        self.faults.check("RecordLifecycleActionHeartbeat", &action.instance_id)?;
        self.record(ScalingCall::RecordLifecycleActionHeartbeat {
            instance_id: action.instance_id.clone(),
        });
        Ok(())
    }

    async fn describe_warm_pool(
        &self,
        group_name: &str,
    ) -> Result<Option<WarmPoolSnapshot>, AwsError> {
        self.faults.check("DescribeWarmPool", group_name)?;
        Ok(lock(&self.warm_pools).get(group_name).cloned())
    }

    async fn complete_lifecycle_action(
        &self,
        action: &LifecycleAction,
        result: LifecycleActionResult,
    ) -> Result<(), AwsError> {
        self.faults.check("CompleteLifecycleAction", &action.instance_id)?;
        self.record(ScalingCall::CompleteLifecycleAction {
            instance_id: action.instance_id.clone(),
            hook_name: action.hook_name.clone(),
            result,
        });
        Ok(())
    }
}

/// In-memory CloudWatch metrics: records what was published.
#[derive(Debug, Default)]
pub struct FakeMetrics {
    published: Mutex<Vec<(String, MetricDatum)>>,
    pub faults: Faults,
}

impl FakeMetrics {
    pub fn published(&self) -> Vec<(String, MetricDatum)> {
        lock(&self.published).clone()
    }
}

#[async_trait]
impl Metrics for FakeMetrics {
    async fn put(&self, namespace: &str, data: &[MetricDatum]) -> Result<(), AwsError> {
        self.faults.check("PutMetricData", namespace)?;
        lock(&self.published)
            .extend(data.iter().map(|datum| (namespace.to_owned(), datum.clone())));
        Ok(())
    }
}

#[cfg(feature = "ecr")]
/// In-memory ECR: one credential per registry id; `""` is the caller's own registry.
#[derive(Debug, Default)]
pub struct FakeRegistryAuth {
    registries: Mutex<BTreeMap<String, RegistryCredentials>>,
    pub faults: Faults,
}

#[cfg(feature = "ecr")]
impl FakeRegistryAuth {
    pub fn insert(&self, registry_id: &str, credentials: RegistryCredentials) {
        lock(&self.registries).insert(registry_id.to_owned(), credentials);
    }
}

#[cfg(feature = "ecr")]
#[async_trait]
impl RegistryAuth for FakeRegistryAuth {
    async fn authorization(
        &self,
        registry_ids: &[String],
    ) -> Result<Vec<RegistryCredentials>, AwsError> {
        self.faults.check("GetAuthorizationToken", &registry_ids.join(","))?;
        let registries = lock(&self.registries);
        let default = [String::new()];
        let wanted = if registry_ids.is_empty() { &default[..] } else { registry_ids };
        wanted
            .iter()
            .map(|id| {
                registries.get(id).cloned().ok_or_else(|| {
                    AwsError::new(
                        AwsErrorKind::NotFound,
                        "GetAuthorizationToken",
                        id,
                        "registry not found",
                    )
                })
            })
            .collect()
    }
}

#[cfg(feature = "cloudformation")]
/// In-memory CloudFormation signals: records them.
#[derive(Debug, Default)]
pub struct FakeStackSignal {
    signals: Mutex<Vec<ResourceSignal>>,
    pub faults: Faults,
}

#[cfg(feature = "cloudformation")]
impl FakeStackSignal {
    pub fn signals(&self) -> Vec<ResourceSignal> {
        lock(&self.signals).clone()
    }
}

#[cfg(feature = "cloudformation")]
#[async_trait]
impl StackSignal for FakeStackSignal {
    async fn signal(&self, signal: &ResourceSignal) -> Result<(), AwsError> {
        self.faults.check("SignalResource", &signal.stack_name)?;
        lock(&self.signals).push(signal.clone());
        Ok(())
    }
}

#[cfg(feature = "autoscaling")]
#[async_trait]
impl GroupAdmin for FakeScalingGroup {
    async fn group_details(&self, group_name: &str) -> Result<GroupDetails, AwsError> {
        let snapshot = self.describe_group(group_name).await?;
        let details = lock(&self.instance_details);
        let instances = snapshot
            .instances
            .iter()
            .map(|instance| {
                let (instance_type, zone, version) =
                    details.get(&instance.id).cloned().unwrap_or_default();
                InstanceDetails {
                    id: instance.id.clone(),
                    instance_type,
                    zone,
                    lifecycle_state: match &instance.lifecycle_state {
                        LifecycleState::Pending => "Pending".to_owned(),
                        LifecycleState::InService => "InService".to_owned(),
                        LifecycleState::Terminating => "Terminating".to_owned(),
                        LifecycleState::Terminated => "Terminated".to_owned(),
                        LifecycleState::Warmed => "Warmed:Stopped".to_owned(),
                        LifecycleState::Other(other) => other.clone(),
                    },
                    health: instance.health,
                    launch_template_version: version,
                    protected_from_scale_in: instance.protected_from_scale_in,
                }
            })
            .collect();
        drop(details);
        Ok(GroupDetails { snapshot, instances, tags: self.tags(group_name) })
    }

    async fn update_sizes(&self, group_name: &str, update: SizeUpdate) -> Result<(), AwsError> {
        const OPERATION: &str = "UpdateAutoScalingGroup";
        self.faults.check(OPERATION, group_name)?;
        let mut groups = lock(&self.groups);
        let group = groups.get_mut(group_name).ok_or_else(|| {
            AwsError::new(AwsErrorKind::NotFound, OPERATION, group_name, "no such group")
        })?;
        let min = update.min_size.unwrap_or(group.min_size);
        let max = update.max_size.unwrap_or(group.max_size);
        let desired = update.desired_capacity.unwrap_or(group.desired_capacity);
        if min > max || desired < min || desired > max {
            return Err(AwsError::new(
                AwsErrorKind::Validation,
                OPERATION,
                group_name,
                format!(
                    "Desired capacity:{desired} must be between the specified min size:{min} and max size:{max}"
                ),
            ));
        }
        group.min_size = min;
        group.max_size = max;
        group.desired_capacity = desired;
        Ok(())
    }

    async fn put_tag(&self, group_name: &str, key: &str, value: &str) -> Result<(), AwsError> {
        self.faults.check("CreateOrUpdateTags", group_name)?;
        lock(&self.tags)
            .entry(group_name.to_owned())
            .or_default()
            .insert(key.to_owned(), value.to_owned());
        Ok(())
    }

    async fn delete_tag(&self, group_name: &str, key: &str) -> Result<(), AwsError> {
        self.faults.check("DeleteTags", group_name)?;
        if let Some(tags) = lock(&self.tags).get_mut(group_name) {
            tags.remove(key);
        }
        Ok(())
    }
}

#[cfg(feature = "cloudformation")]
/// How the fake finishes an executed change set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeSetOutcome {
    /// The update completes: the parameters are applied.
    Complete,
    /// The update rolls back after this resource failed with this reason.
    RollBack { resource: String, reason: String },
}

#[cfg(feature = "cloudformation")]
#[derive(Debug)]
struct FakeStack {
    description: StackDescription,
    resources: Vec<StackResource>,
    /// Newest last.
    events: Vec<StackEvent>,
}

#[cfg(feature = "cloudformation")]
/// In-memory CloudFormation stacks: parameters, resources, change sets and events.
#[derive(Debug)]
pub struct FakeStacks {
    stacks: Mutex<BTreeMap<String, FakeStack>>,
    templates: Mutex<BTreeMap<String, String>>,
    template_parameters: Mutex<Vec<String>>,
    planned_changes: Mutex<Vec<ResourceChange>>,
    change_sets: Mutex<BTreeMap<String, ChangeSetRequest>>,
    outcome: Mutex<ChangeSetOutcome>,
    pub faults: Faults,
}

#[cfg(feature = "cloudformation")]
impl Default for FakeStacks {
    fn default() -> FakeStacks {
        FakeStacks {
            stacks: Mutex::default(),
            templates: Mutex::default(),
            template_parameters: Mutex::default(),
            planned_changes: Mutex::default(),
            change_sets: Mutex::default(),
            outcome: Mutex::new(ChangeSetOutcome::Complete),
            faults: Faults::default(),
        }
    }
}

#[cfg(feature = "cloudformation")]
impl FakeStacks {
    /// Adds a stack in `UPDATE_COMPLETE` with these parameters and resources
    /// (logical id, type, physical id).
    pub fn insert_stack(
        &self,
        name: &str,
        parameters: &[(&str, &str)],
        resources: &[(&str, &str, &str)],
    ) {
        let description = StackDescription {
            name: name.to_owned(),
            id: format!("arn:aws:cloudformation:us-east-1:123456789012:stack/{name}/1"),
            status: "UPDATE_COMPLETE".to_owned(),
            status_reason: None,
            parameters: parameters
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                .collect(),
            outputs: BTreeMap::new(),
        };
        let resources = resources
            .iter()
            .map(|(logical, kind, physical)| StackResource {
                logical_id: (*logical).to_owned(),
                physical_id: (*physical).to_owned(),
                resource_type: (*kind).to_owned(),
                status: "UPDATE_COMPLETE".to_owned(),
            })
            .collect();
        lock(&self.stacks)
            .insert(name.to_owned(), FakeStack { description, resources, events: Vec::new() });
    }

    /// The template a stack reports it was deployed with.
    pub fn set_template(&self, stack_name: &str, body: &str) {
        lock(&self.templates).insert(stack_name.to_owned(), body.to_owned());
    }

    /// The parameter keys the next templates declare.
    pub fn set_template_parameters(&self, keys: &[&str]) {
        *lock(&self.template_parameters) = keys.iter().map(|key| (*key).to_owned()).collect();
    }

    /// The resource changes the next change sets report.
    pub fn set_planned_changes(&self, changes: Vec<ResourceChange>) {
        *lock(&self.planned_changes) = changes;
    }

    pub fn set_outcome(&self, outcome: ChangeSetOutcome) {
        *lock(&self.outcome) = outcome;
    }

    /// A stack's current parameters.
    pub fn parameters(&self, name: &str) -> BTreeMap<String, String> {
        lock(&self.stacks)
            .get(name)
            .map(|stack| stack.description.parameters.clone())
            .unwrap_or_default()
    }

    /// The change sets created, by name.
    pub fn change_sets(&self) -> BTreeMap<String, ChangeSetRequest> {
        lock(&self.change_sets).clone()
    }

    fn missing(operation: &'static str, name: &str) -> AwsError {
        AwsError::new(
            AwsErrorKind::NotFound,
            operation,
            name,
            format!("Stack with id {name} does not exist"),
        )
    }

    fn event(
        stack: &mut FakeStack,
        logical_id: &str,
        kind: &str,
        status: &str,
        reason: Option<&str>,
    ) {
        let timestamp = SystemTime::now();
        let event_id = format!("event-{}", stack.events.len() + 1);
        stack.events.push(StackEvent {
            event_id,
            timestamp,
            logical_id: logical_id.to_owned(),
            resource_type: kind.to_owned(),
            status: status.to_owned(),
            reason: reason.map(str::to_owned),
        });
    }
}

#[cfg(feature = "cloudformation")]
#[async_trait]
impl Stacks for FakeStacks {
    async fn describe_stack(&self, stack_name: &str) -> Result<StackDescription, AwsError> {
        self.faults.check("DescribeStacks", stack_name)?;
        lock(&self.stacks)
            .get(stack_name)
            .map(|stack| stack.description.clone())
            .ok_or_else(|| FakeStacks::missing("DescribeStacks", stack_name))
    }

    async fn stack_resources(&self, stack_name: &str) -> Result<Vec<StackResource>, AwsError> {
        self.faults.check("ListStackResources", stack_name)?;
        lock(&self.stacks)
            .get(stack_name)
            .map(|stack| stack.resources.clone())
            .ok_or_else(|| FakeStacks::missing("ListStackResources", stack_name))
    }

    async fn template_body(&self, stack_name: &str) -> Result<String, AwsError> {
        self.faults.check("GetTemplate", stack_name)?;
        lock(&self.templates)
            .get(stack_name)
            .cloned()
            .ok_or_else(|| FakeStacks::missing("GetTemplate", stack_name))
    }

    async fn template_parameters(
        &self,
        _template: &TemplateSource,
    ) -> Result<Vec<String>, AwsError> {
        self.faults.check("GetTemplateSummary", "template")?;
        Ok(lock(&self.template_parameters).clone())
    }

    async fn create_change_set(&self, request: &ChangeSetRequest) -> Result<String, AwsError> {
        self.faults.check("CreateChangeSet", &request.stack_name)?;
        let stacks = lock(&self.stacks);
        let stack = stacks
            .get(&request.stack_name)
            .ok_or_else(|| FakeStacks::missing("CreateChangeSet", &request.stack_name))?;
        for parameter in &request.parameters {
            if parameter.value.is_none()
                && !stack.description.parameters.contains_key(&parameter.key)
            {
                return Err(AwsError::new(
                    AwsErrorKind::Validation,
                    "CreateChangeSet",
                    &request.stack_name,
                    format!(
                        "Invalid input for parameter key {}. Cannot specify usePreviousValue as true for a parameter key not in the previous template",
                        parameter.key
                    ),
                ));
            }
        }
        drop(stacks);
        lock(&self.change_sets).insert(request.change_set_name.clone(), request.clone());
        Ok(format!(
            "arn:aws:cloudformation:us-east-1:123456789012:changeSet/{}/1",
            request.change_set_name
        ))
    }

    async fn describe_change_set(
        &self,
        _stack_name: &str,
        change_set_name: &str,
    ) -> Result<ChangeSet, AwsError> {
        self.faults.check("DescribeChangeSet", change_set_name)?;
        if !lock(&self.change_sets).contains_key(change_set_name) {
            return Err(AwsError::new(
                AwsErrorKind::NotFound,
                "DescribeChangeSet",
                change_set_name,
                "ChangeSet does not exist",
            ));
        }
        Ok(ChangeSet {
            status: "CREATE_COMPLETE".to_owned(),
            status_reason: None,
            changes: lock(&self.planned_changes).clone(),
        })
    }

    async fn execute_change_set(
        &self,
        stack_name: &str,
        change_set_name: &str,
    ) -> Result<(), AwsError> {
        self.faults.check("ExecuteChangeSet", change_set_name)?;
        let request = lock(&self.change_sets).get(change_set_name).cloned().ok_or_else(|| {
            AwsError::new(
                AwsErrorKind::NotFound,
                "ExecuteChangeSet",
                change_set_name,
                "ChangeSet does not exist",
            )
        })?;
        let outcome = lock(&self.outcome).clone();
        let mut stacks = lock(&self.stacks);
        let stack = stacks
            .get_mut(stack_name)
            .ok_or_else(|| FakeStacks::missing("ExecuteChangeSet", stack_name))?;
        const STACK: &str = "AWS::CloudFormation::Stack";
        FakeStacks::event(stack, stack_name, STACK, "UPDATE_IN_PROGRESS", None);
        match outcome {
            ChangeSetOutcome::Complete => {
                let mut parameters = BTreeMap::new();
                for parameter in &request.parameters {
                    let value = match &parameter.value {
                        Some(value) => value.clone(),
                        None => stack
                            .description
                            .parameters
                            .get(&parameter.key)
                            .cloned()
                            .unwrap_or_default(),
                    };
                    parameters.insert(parameter.key.clone(), value);
                }
                stack.description.parameters = parameters;
                stack.description.status = "UPDATE_COMPLETE".to_owned();
                FakeStacks::event(stack, stack_name, STACK, "UPDATE_COMPLETE", None);
            }
            ChangeSetOutcome::RollBack { resource, reason } => {
                FakeStacks::event(
                    stack,
                    &resource,
                    "AWS::AutoScaling::AutoScalingGroup",
                    "UPDATE_FAILED",
                    Some(&reason),
                );
                FakeStacks::event(stack, stack_name, STACK, "UPDATE_ROLLBACK_IN_PROGRESS", None);
                FakeStacks::event(stack, stack_name, STACK, "UPDATE_ROLLBACK_COMPLETE", None);
                stack.description.status = "UPDATE_ROLLBACK_COMPLETE".to_owned();
            }
        }
        Ok(())
    }

    async fn stack_events(&self, stack_name: &str) -> Result<Vec<StackEvent>, AwsError> {
        self.faults.check("DescribeStackEvents", stack_name)?;
        let stacks = lock(&self.stacks);
        let stack = stacks
            .get(stack_name)
            .ok_or_else(|| FakeStacks::missing("DescribeStackEvents", stack_name))?;
        Ok(stack.events.iter().rev().cloned().collect())
    }
}

#[cfg(feature = "eventbridge")]
/// In-memory EventBridge rules.
#[derive(Debug, Default)]
pub struct FakeRules {
    rules: Mutex<BTreeMap<String, Rule>>,
    pub faults: Faults,
}

#[cfg(feature = "eventbridge")]
impl FakeRules {
    pub fn insert(&self, name: &str, enabled: bool) {
        lock(&self.rules).insert(
            name.to_owned(),
            Rule { name: name.to_owned(), enabled, schedule: Some("rate(1 minute)".to_owned()) },
        );
    }

    pub fn enabled(&self, name: &str) -> Option<bool> {
        lock(&self.rules).get(name).map(|rule| rule.enabled)
    }
}

#[cfg(feature = "eventbridge")]
#[async_trait]
impl Rules for FakeRules {
    async fn describe_rule(&self, name: &str) -> Result<Rule, AwsError> {
        self.faults.check("DescribeRule", name)?;
        lock(&self.rules).get(name).cloned().ok_or_else(|| {
            AwsError::new(AwsErrorKind::NotFound, "DescribeRule", name, "Rule does not exist")
        })
    }

    async fn set_rule_enabled(&self, name: &str, enabled: bool) -> Result<(), AwsError> {
        let operation = if enabled { "EnableRule" } else { "DisableRule" };
        self.faults.check(operation, name)?;
        let mut rules = lock(&self.rules);
        let rule = rules.get_mut(name).ok_or_else(|| {
            AwsError::new(AwsErrorKind::NotFound, operation, name, "Rule does not exist")
        })?;
        rule.enabled = enabled;
        Ok(())
    }
}

#[cfg(feature = "logs")]
/// In-memory CloudWatch Logs: events, metric filters and subscription filters per
/// group. Like the service, a group takes two subscription filters at most, and a
/// destination can be made to refuse delivery.
#[derive(Debug, Default)]
pub struct FakeLogEvents {
    groups: Mutex<BTreeMap<String, Vec<LogEvent>>>,
    metric_filters: Mutex<BTreeMap<String, Vec<MetricFilter>>>,
    subscription_filters: Mutex<BTreeMap<String, Vec<SubscriptionFilter>>>,
    refused_destinations: Mutex<HashSet<String>>,
    pub faults: Faults,
}

#[cfg(feature = "logs")]
impl FakeLogEvents {
    pub fn create_group(&self, group: &str) {
        lock(&self.groups).entry(group.to_owned()).or_default();
    }

    /// Makes `PutSubscriptionFilter` refuse this destination, as the service does when
    /// it cannot deliver a test message there.
    pub fn refuse_destination(&self, destination_arn: &str) {
        lock(&self.refused_destinations).insert(destination_arn.to_owned());
    }

    fn require_group(&self, operation: &'static str, group: &str) -> Result<(), AwsError> {
        if lock(&self.groups).contains_key(group) {
            Ok(())
        } else {
            Err(AwsError::new(
                AwsErrorKind::NotFound,
                operation,
                group,
                "The specified log group does not exist.",
            ))
        }
    }

    pub fn put(&self, group: &str, stream: &str, timestamp: SystemTime, message: &str) {
        let mut groups = lock(&self.groups);
        let events = groups.entry(group.to_owned()).or_default();
        let event_id = format!("{group}/{}", events.len());
        events.push(LogEvent {
            event_id,
            stream: stream.to_owned(),
            timestamp,
            message: message.to_owned(),
        });
    }
}

#[cfg(feature = "logs")]
#[async_trait]
impl LogEvents for FakeLogEvents {
    async fn filter_page(
        &self,
        filter: &LogFilter,
        _next_token: Option<&str>,
    ) -> Result<LogPage, AwsError> {
        self.faults.check("FilterLogEvents", &filter.group)?;
        let groups = lock(&self.groups);
        let events = groups.get(&filter.group).ok_or_else(|| {
            AwsError::new(
                AwsErrorKind::NotFound,
                "FilterLogEvents",
                &filter.group,
                "The specified log group does not exist.",
            )
        })?;
        let mut events: Vec<LogEvent> = events
            .iter()
            .filter(|event| {
                filter.stream_prefix.as_ref().is_none_or(|prefix| event.stream.starts_with(prefix))
                    && filter.start.is_none_or(|start| event.timestamp >= start)
                    && filter
                        .pattern
                        .as_ref()
                        .is_none_or(|pattern| event.message.contains(pattern.trim_matches('"')))
            })
            .cloned()
            .collect();
        events.sort_by_key(|event| event.timestamp);
        Ok(LogPage { events, next_token: None })
    }
}

#[cfg(feature = "logs")]
#[async_trait]
impl LogGroupFilters for FakeLogEvents {
    async fn log_group_names(&self, prefix: &str) -> Result<Vec<String>, AwsError> {
        self.faults.check("DescribeLogGroups", prefix)?;
        Ok(lock(&self.groups).keys().filter(|name| name.starts_with(prefix)).cloned().collect())
    }

    async fn metric_filters(&self, group: &str) -> Result<Vec<MetricFilter>, AwsError> {
        self.faults.check("DescribeMetricFilters", group)?;
        self.require_group("DescribeMetricFilters", group)?;
        Ok(lock(&self.metric_filters).get(group).cloned().unwrap_or_default())
    }

    async fn put_metric_filter(&self, group: &str, filter: &MetricFilter) -> Result<(), AwsError> {
        self.faults.check("PutMetricFilter", group)?;
        self.require_group("PutMetricFilter", group)?;
        let mut filters = lock(&self.metric_filters);
        let filters = filters.entry(group.to_owned()).or_default();
        filters.retain(|existing| existing.name != filter.name);
        filters.push(filter.clone());
        Ok(())
    }

    async fn subscription_filters(&self, group: &str) -> Result<Vec<SubscriptionFilter>, AwsError> {
        self.faults.check("DescribeSubscriptionFilters", group)?;
        self.require_group("DescribeSubscriptionFilters", group)?;
        Ok(lock(&self.subscription_filters).get(group).cloned().unwrap_or_default())
    }

    async fn put_subscription_filter(
        &self,
        group: &str,
        filter: &SubscriptionFilter,
    ) -> Result<(), AwsError> {
        const OPERATION: &str = "PutSubscriptionFilter";
        self.faults.check(OPERATION, group)?;
        self.require_group(OPERATION, group)?;
        if lock(&self.refused_destinations).contains(&filter.destination_arn) {
            return Err(refused(
                group,
                "InvalidParameterException",
                "Could not deliver test message to specified destination.",
            ));
        }
        let mut filters = lock(&self.subscription_filters);
        let filters = filters.entry(group.to_owned()).or_default();
        let replaces = filters.iter().any(|existing| existing.name == filter.name);
        if !replaces && filters.len() >= 2 {
            return Err(refused(group, "LimitExceededException", "Resource limit exceeded."));
        }
        filters.retain(|existing| existing.name != filter.name);
        filters.push(filter.clone());
        Ok(())
    }
}

#[cfg(feature = "logs")]
/// A `PutSubscriptionFilter` the service refuses, with its error code.
fn refused(group: &str, code: &str, message: &str) -> AwsError {
    let mut error =
        AwsError::new(AwsErrorKind::Validation, "PutSubscriptionFilter", group, message);
    error.code = Some(code.to_owned());
    error
}

/// In-memory EC2 network and instance facts.
#[derive(Debug, Default)]
pub struct FakeNetwork {
    subnets: Mutex<BTreeMap<String, SubnetRoute>>,
    launch_template_images: Mutex<BTreeMap<String, String>>,
    launch_times: Mutex<BTreeMap<String, SystemTime>>,
    pub faults: Faults,
}

impl FakeNetwork {
    pub fn set_subnet(&self, subnet_id: &str, route: SubnetRoute) {
        lock(&self.subnets).insert(subnet_id.to_owned(), route);
    }

    pub fn set_launch_template_image(&self, launch_template_id: &str, image_id: &str) {
        lock(&self.launch_template_images)
            .insert(launch_template_id.to_owned(), image_id.to_owned());
    }

    pub fn set_launch_time(&self, instance_id: &str, time: SystemTime) {
        lock(&self.launch_times).insert(instance_id.to_owned(), time);
    }
}

#[async_trait]
impl Network for FakeNetwork {
    async fn subnet_route(&self, _region: &str, subnet_id: &str) -> Result<SubnetRoute, AwsError> {
        self.faults.check("DescribeSubnets", subnet_id)?;
        Ok(lock(&self.subnets).get(subnet_id).cloned().unwrap_or(SubnetRoute::Missing))
    }

    async fn launch_template_image(
        &self,
        _region: &str,
        launch_template_id: &str,
    ) -> Result<Option<String>, AwsError> {
        self.faults.check("DescribeLaunchTemplateVersions", launch_template_id)?;
        Ok(lock(&self.launch_template_images).get(launch_template_id).cloned())
    }

    async fn launch_times(
        &self,
        _region: &str,
        instance_ids: &[String],
    ) -> Result<BTreeMap<String, SystemTime>, AwsError> {
        self.faults.check("DescribeInstances", &instance_ids.join(","))?;
        let times = lock(&self.launch_times);
        Ok(instance_ids
            .iter()
            .filter_map(|id| times.get(id).map(|time| (id.clone(), *time)))
            .collect())
    }
}

/// In-memory EC2 images of one account, keyed by region and id.
#[derive(Debug, Default)]
pub struct FakeMachineImages {
    images: Mutex<BTreeMap<(String, String), MachineImage>>,
    pub faults: Faults,
}

impl FakeMachineImages {
    pub fn insert(&self, region: &str, image: MachineImage) {
        lock(&self.images).insert((region.to_owned(), image.image_id.clone()), image);
    }
}

#[async_trait]
impl MachineImages for FakeMachineImages {
    async fn describe_image(
        &self,
        region: &str,
        image_id: &str,
    ) -> Result<Option<MachineImage>, AwsError> {
        self.faults.check("DescribeImages", image_id)?;
        Ok(lock(&self.images).get(&(region.to_owned(), image_id.to_owned())).cloned())
    }

    async fn copy_image(&self, request: &CopyImageRequest) -> Result<String, AwsError> {
        self.faults.check("CopyImage", &request.source_image_id)?;
        let source = lock(&self.images)
            .get(&(request.source_region.clone(), request.source_image_id.clone()))
            .cloned()
            .ok_or_else(|| {
                AwsError::new(
                    AwsErrorKind::NotFound,
                    "CopyImage",
                    &request.source_image_id,
                    "no such image",
                )
            })?;
        let image_id = format!("{}-copy", source.image_id);
        self.insert(
            &request.region,
            MachineImage { image_id: image_id.clone(), name: request.name.clone(), ..source },
        );
        Ok(image_id)
    }

    async fn make_public(&self, region: &str, image_id: &str) -> Result<(), AwsError> {
        self.faults.check("ModifyImageAttribute", image_id)?;
        if let Some(image) = lock(&self.images).get_mut(&(region.to_owned(), image_id.to_owned())) {
            image.public = true;
        }
        Ok(())
    }

    /// The images of `region` whose names match; the fake keeps no architecture,
    /// creation date, snapshots or tags, so those are empty.
    async fn owned_images(
        &self,
        region: &str,
        name_pattern: &str,
    ) -> Result<Vec<OwnedImage>, AwsError> {
        self.faults.check("DescribeImages", region)?;
        Ok(lock(&self.images)
            .iter()
            .filter(|((image_region, _), image)| {
                image_region == region && wildcard_match(name_pattern, &image.name)
            })
            .map(|(_, image)| OwnedImage {
                image_id: image.image_id.clone(),
                name: image.name.clone(),
                state: image.state.clone(),
                architecture: String::new(),
                creation_date: String::new(),
                snapshot_ids: Vec::new(),
                tags: BTreeMap::new(),
            })
            .collect())
    }

    async fn deregister_image(&self, region: &str, image_id: &str) -> Result<(), AwsError> {
        self.faults.check("DeregisterImage", image_id)?;
        lock(&self.images).remove(&(region.to_owned(), image_id.to_owned()));
        Ok(())
    }

    async fn delete_snapshot(&self, _region: &str, snapshot_id: &str) -> Result<(), AwsError> {
        self.faults.check("DeleteSnapshot", snapshot_id)
    }
}

/// EC2's name filter: `*` matches any run of characters, `?` any one.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    let (pattern, text): (Vec<char>, Vec<char>) =
        (pattern.chars().collect(), text.chars().collect());
    // Positions of the pattern reachable after each prefix of the text.
    let mut reachable = vec![false; pattern.len() + 1];
    reachable[0] = true;
    for index in 0..pattern.len() {
        if pattern[index] == '*' && reachable[index] {
            reachable[index + 1] = true;
        }
    }
    for character in text {
        let mut next = vec![false; pattern.len() + 1];
        for index in 0..pattern.len() {
            if reachable[index] && (pattern[index] == '?' || pattern[index] == character) {
                next[index + 1] = true;
            }
            if reachable[index] && pattern[index] == '*' {
                next[index] = true;
                next[index + 1] = true;
            }
        }
        for index in 0..pattern.len() {
            if pattern[index] == '*' && next[index] {
                next[index + 1] = true;
            }
        }
        reachable = next;
    }
    reachable[pattern.len()]
}
