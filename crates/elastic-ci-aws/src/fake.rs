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
use crate::autoscaling::{ActivityPage, LifecycleAction, ScalingGroup};
#[cfg(feature = "cloudformation")]
use crate::cloudformation::{ResourceSignal, StackSignal};
use crate::cloudwatch::{MetricDatum, Metrics};
#[cfg(feature = "ecr")]
use crate::ecr::{RegistryAuth, RegistryCredentials};
use crate::error::{AwsError, AwsErrorKind};
#[cfg(feature = "s3")]
use crate::s3::{DownloadError, ObjectHead, ObjectStore, ObjectSummary};
#[cfg(feature = "ssm")]
use crate::ssm::{Parameter, ParameterStore};

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
}

#[cfg(feature = "ssm")]
/// In-memory SSM Parameter Store.
#[derive(Debug, Default)]
pub struct FakeParameterStore {
    parameters: Mutex<BTreeMap<String, String>>,
    pub faults: Faults,
}

#[cfg(feature = "ssm")]
impl FakeParameterStore {
    pub fn put(&self, name: &str, value: &str) {
        lock(&self.parameters).insert(name.to_owned(), value.to_owned());
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
    SetDesiredCapacity { group_name: String, desired: u32 },
    SetInstanceHealth { instance_id: String, health: Health },
    TerminateInstance { instance_id: String, decrement_desired: bool },
    CompleteLifecycleAction { instance_id: String, result: LifecycleActionResult },
    RecordLifecycleActionHeartbeat { instance_id: String },
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
