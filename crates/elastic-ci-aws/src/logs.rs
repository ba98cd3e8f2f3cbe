//! Log events: CloudWatch Logs, where the instances' and the scaler's logs go.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use aws_config::SdkConfig;
use tracing::instrument;

use crate::error::AwsError;

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
