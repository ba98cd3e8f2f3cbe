//! Metrics: CloudWatch.

use std::time::SystemTime;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum as SdkDatum, StandardUnit};
use tracing::instrument;

use crate::error::AwsError;

/// One data point.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricDatum {
    pub name: String,
    pub dimensions: Vec<(String, String)>,
    pub value: f64,
    pub unit: MetricUnit,
    pub timestamp: SystemTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricUnit {
    Count,
    Seconds,
    None,
}

/// What the stack needs from CloudWatch metrics.
#[async_trait]
pub trait Metrics: Send + Sync {
    /// Publishes data points to `namespace`, in as many requests as the service's
    /// per-request limit requires.
    async fn put(&self, namespace: &str, data: &[MetricDatum]) -> Result<(), AwsError>;
}

/// The most data points one PutMetricData request accepts.
const MAX_DATA_PER_REQUEST: usize = 1000;

/// [`Metrics`] over the AWS SDK.
#[derive(Debug, Clone)]
pub struct CloudWatchMetrics {
    client: aws_sdk_cloudwatch::Client,
}

impl CloudWatchMetrics {
    pub fn new(sdk_config: &SdkConfig) -> CloudWatchMetrics {
        CloudWatchMetrics { client: aws_sdk_cloudwatch::Client::new(sdk_config) }
    }
}

fn to_sdk(datum: &MetricDatum) -> SdkDatum {
    let unit = match datum.unit {
        MetricUnit::Count => StandardUnit::Count,
        MetricUnit::Seconds => StandardUnit::Seconds,
        MetricUnit::None => StandardUnit::None,
    };
    SdkDatum::builder()
        .metric_name(&datum.name)
        .set_dimensions(Some(
            datum
                .dimensions
                .iter()
                .map(|(name, value)| Dimension::builder().name(name).value(value).build())
                .collect(),
        ))
        .value(datum.value)
        .unit(unit)
        .timestamp(datum.timestamp.into())
        .build()
}

#[async_trait]
impl Metrics for CloudWatchMetrics {
    #[instrument(skip_all, fields(namespace, n_data = data.len()))]
    async fn put(&self, namespace: &str, data: &[MetricDatum]) -> Result<(), AwsError> {
        for chunk in data.chunks(MAX_DATA_PER_REQUEST) {
            self.client
                .put_metric_data()
                .namespace(namespace)
                .set_metric_data(Some(chunk.iter().map(to_sdk).collect()))
                .send()
                .await
                .map_err(|error| AwsError::from_sdk("PutMetricData", namespace, error))?;
        }
        Ok(())
    }
}
