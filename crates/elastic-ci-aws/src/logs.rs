//! CloudWatch Logs, where the instances' and the scaler's logs go: reading their
//! events, and copying log groups' metric and subscription filters.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use aws_config::SdkConfig;
use tracing::instrument;

use crate::error::{AwsError, AwsErrorKind};

/// One log event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEvent {
    /// Unique within the group: what `--follow` deduplicates by.
    pub event_id: String,
    pub stream: String,
    pub timestamp: SystemTime,
    pub message: String,
}

/// Which events of a group to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFilter {
    pub group: String,
    /// Only streams whose name starts with this (an instance id, for the instances'
    /// groups).
    pub stream_prefix: Option<String>,
    /// Events at or after this time.
    pub start: Option<SystemTime>,
    /// A CloudWatch Logs filter pattern.
    pub pattern: Option<String>,
}

/// One page of events, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPage {
    pub events: Vec<LogEvent>,
    pub next_token: Option<String>,
}

/// What the operator's tool needs from CloudWatch Logs.
#[async_trait]
pub trait LogEvents: Send + Sync {
    /// One page of the events `filter` matches, starting at `next_token`. A missing
    /// group is `NotFound`.
    async fn filter_page(
        &self,
        filter: &LogFilter,
        next_token: Option<&str>,
    ) -> Result<LogPage, AwsError>;
}

/// Milliseconds since the epoch, as CloudWatch Logs counts time.
pub fn to_millis(time: SystemTime) -> i64 {
    let millis = time.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis();
    i64::try_from(millis).unwrap_or(i64::MAX)
}

/// The time of a CloudWatch Logs timestamp; negative ones are the epoch.
pub fn from_millis(millis: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(millis).unwrap_or(0))
}

/// [`LogEvents`] over the AWS SDK.
#[derive(Debug, Clone)]
pub struct CloudWatchLogEvents {
    client: aws_sdk_cloudwatchlogs::Client,
}

impl CloudWatchLogEvents {
    pub fn new(sdk_config: &SdkConfig) -> CloudWatchLogEvents {
        CloudWatchLogEvents { client: aws_sdk_cloudwatchlogs::Client::new(sdk_config) }
    }
}

#[async_trait]
impl LogEvents for CloudWatchLogEvents {
    #[instrument(skip_all, fields(group = %filter.group))]
    async fn filter_page(
        &self,
        filter: &LogFilter,
        next_token: Option<&str>,
    ) -> Result<LogPage, AwsError> {
        let output = self
            .client
            .filter_log_events()
            .log_group_name(&filter.group)
            .set_log_stream_name_prefix(filter.stream_prefix.clone())
            .set_start_time(filter.start.map(to_millis))
            .set_filter_pattern(filter.pattern.clone())
            .set_next_token(next_token.map(str::to_owned))
            .send()
            .await
            .map_err(|error| AwsError::from_sdk("FilterLogEvents", &filter.group, error))?;
        let mut events: Vec<LogEvent> = output
            .events
            .unwrap_or_default()
            .into_iter()
            .map(|event| LogEvent {
                event_id: event.event_id.unwrap_or_default(),
                stream: event.log_stream_name.unwrap_or_default(),
                timestamp: from_millis(event.timestamp.unwrap_or(0)),
                message: event.message.unwrap_or_default(),
            })
            // The service applies the prefix itself; moto ignores it, so it is applied
            // here too (a no-op against the service).
            .filter(|event: &LogEvent| {
                filter
                    .stream_prefix
                    .as_deref()
                    .is_none_or(|prefix| event.stream.starts_with(prefix))
            })
            .collect();
        events.sort_by_key(|event| event.timestamp);
        Ok(LogPage { events, next_token: output.next_token.filter(|token| !token.is_empty()) })
    }
}

/// One metric a metric filter publishes for each matching event.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricTransformation {
    pub metric_name: String,
    pub metric_namespace: String,
    /// What is published per match: a number or a `$.field` of the event.
    pub metric_value: String,
    pub default_value: Option<f64>,
    /// A CloudWatch unit name, such as `Count`.
    pub unit: Option<String>,
    pub dimensions: BTreeMap<String, String>,
}

/// A log group's metric filter.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricFilter {
    pub name: String,
    pub pattern: String,
    pub transformations: Vec<MetricTransformation>,
    pub apply_on_transformed_logs: bool,
}

/// A log group's subscription filter: where matching events are delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionFilter {
    pub name: String,
    pub pattern: String,
    /// A Lambda function, Kinesis or Firehose stream, or log destination.
    pub destination_arn: String,
    /// The role CloudWatch Logs assumes to deliver (Kinesis and Firehose).
    pub role_arn: Option<String>,
    /// `ByLogStream` (the service's default) or `Random`.
    pub distribution: String,
    pub apply_on_transformed_logs: bool,
}

/// The distribution the service gives a subscription filter created without one.
pub const DEFAULT_DISTRIBUTION: &str = "ByLogStream";

/// What copying filters between log groups needs from CloudWatch Logs.
#[async_trait]
pub trait LogGroupFilters: Send + Sync {
    /// The names of the log groups whose name starts with `prefix`.
    async fn log_group_names(&self, prefix: &str) -> Result<Vec<String>, AwsError>;

    /// A group's metric filters. A missing group is `NotFound`.
    async fn metric_filters(&self, group: &str) -> Result<Vec<MetricFilter>, AwsError>;

    /// Creates the filter on `group`, or replaces the one of the same name.
    async fn put_metric_filter(&self, group: &str, filter: &MetricFilter) -> Result<(), AwsError>;

    /// A group's subscription filters. A missing group is `NotFound`.
    async fn subscription_filters(&self, group: &str) -> Result<Vec<SubscriptionFilter>, AwsError>;

    /// Creates the filter on `group`, or replaces the one of the same name. A group
    /// takes two subscription filters at most: a third is refused with code
    /// `LimitExceededException`.
    async fn put_subscription_filter(
        &self,
        group: &str,
        filter: &SubscriptionFilter,
    ) -> Result<(), AwsError>;
}

#[async_trait]
impl LogGroupFilters for CloudWatchLogEvents {
    #[instrument(skip_all, fields(prefix = %prefix))]
    async fn log_group_names(&self, prefix: &str) -> Result<Vec<String>, AwsError> {
        let mut names = Vec::new();
        let mut pages =
            self.client.describe_log_groups().log_group_name_prefix(prefix).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page =
                page.map_err(|error| AwsError::from_sdk("DescribeLogGroups", prefix, error))?;
            names.extend(
                page.log_groups.unwrap_or_default().into_iter().filter_map(|g| g.log_group_name),
            );
        }
        Ok(names)
    }

    #[instrument(skip_all, fields(group = %group))]
    async fn metric_filters(&self, group: &str) -> Result<Vec<MetricFilter>, AwsError> {
        let mut filters = Vec::new();
        let mut pages =
            self.client.describe_metric_filters().log_group_name(group).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page =
                page.map_err(|error| AwsError::from_sdk("DescribeMetricFilters", group, error))?;
            filters.extend(page.metric_filters.unwrap_or_default().into_iter().map(|filter| {
                MetricFilter {
                    name: filter.filter_name.unwrap_or_default(),
                    pattern: filter.filter_pattern.unwrap_or_default(),
                    transformations: filter
                        .metric_transformations
                        .unwrap_or_default()
                        .into_iter()
                        .map(|metric| MetricTransformation {
                            metric_name: metric.metric_name,
                            metric_namespace: metric.metric_namespace,
                            metric_value: metric.metric_value,
                            default_value: metric.default_value,
                            unit: metric.unit.map(|unit| unit.as_str().to_owned()),
                            dimensions: metric.dimensions.unwrap_or_default().into_iter().collect(),
                        })
                        .collect(),
                    apply_on_transformed_logs: filter.apply_on_transformed_logs,
                }
            }));
        }
        Ok(filters)
    }

    #[instrument(skip_all, fields(group = %group, filter = %filter.name))]
    async fn put_metric_filter(&self, group: &str, filter: &MetricFilter) -> Result<(), AwsError> {
        use aws_sdk_cloudwatchlogs::types::{MetricTransformation as Sdk, StandardUnit};
        let transformations = filter
            .transformations
            .iter()
            .map(|metric| {
                Sdk::builder()
                    .metric_name(&metric.metric_name)
                    .metric_namespace(&metric.metric_namespace)
                    .metric_value(&metric.metric_value)
                    .set_default_value(metric.default_value)
                    .set_unit(metric.unit.as_deref().map(StandardUnit::from))
                    .set_dimensions(
                        (!metric.dimensions.is_empty())
                            .then(|| metric.dimensions.clone().into_iter().collect()),
                    )
                    .build()
                    .map_err(|error| {
                        AwsError::new(
                            AwsErrorKind::Validation,
                            "PutMetricFilter",
                            group,
                            error.to_string(),
                        )
                    })
            })
            .collect::<Result<Vec<Sdk>, AwsError>>()?;
        self.client
            .put_metric_filter()
            .log_group_name(group)
            .filter_name(&filter.name)
            .filter_pattern(&filter.pattern)
            .set_metric_transformations(Some(transformations))
            .set_apply_on_transformed_logs(filter.apply_on_transformed_logs.then_some(true))
            .send()
            .await
            .map_err(|error| AwsError::from_sdk("PutMetricFilter", group, error))?;
        Ok(())
    }

    #[instrument(skip_all, fields(group = %group))]
    async fn subscription_filters(&self, group: &str) -> Result<Vec<SubscriptionFilter>, AwsError> {
        let mut filters = Vec::new();
        let mut pages = self
            .client
            .describe_subscription_filters()
            .log_group_name(group)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page
                .map_err(|error| AwsError::from_sdk("DescribeSubscriptionFilters", group, error))?;
            filters.extend(page.subscription_filters.unwrap_or_default().into_iter().map(
                |filter| SubscriptionFilter {
                    name: filter.filter_name.unwrap_or_default(),
                    pattern: filter.filter_pattern.unwrap_or_default(),
                    destination_arn: filter.destination_arn.unwrap_or_default(),
                    role_arn: filter.role_arn.filter(|role| !role.is_empty()),
                    distribution: filter.distribution.map_or_else(
                        || DEFAULT_DISTRIBUTION.to_owned(),
                        |distribution| distribution.as_str().to_owned(),
                    ),
                    apply_on_transformed_logs: filter.apply_on_transformed_logs,
                },
            ));
        }
        Ok(filters)
    }

    #[instrument(skip_all, fields(group = %group, filter = %filter.name))]
    async fn put_subscription_filter(
        &self,
        group: &str,
        filter: &SubscriptionFilter,
    ) -> Result<(), AwsError> {
        self.client
            .put_subscription_filter()
            .log_group_name(group)
            .filter_name(&filter.name)
            .filter_pattern(&filter.pattern)
            .destination_arn(&filter.destination_arn)
            .set_role_arn(filter.role_arn.clone())
            .distribution(aws_sdk_cloudwatchlogs::types::Distribution::from(
                filter.distribution.as_str(),
            ))
            .set_apply_on_transformed_logs(filter.apply_on_transformed_logs.then_some(true))
            .send()
            .await
            .map_err(|error| AwsError::from_sdk("PutSubscriptionFilter", group, error))?;
        Ok(())
    }
}
