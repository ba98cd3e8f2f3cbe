//! Metrics: CloudWatch, through the PutMetricData API ([`CloudWatchMetrics`], with the
//! `cloudwatch` feature) or as log lines in CloudWatch's embedded metric format, which
//! CloudWatch Logs turns into metrics ([`EmbeddedMetrics`]: no API call and no SDK crate,
//! for code whose output already goes to CloudWatch Logs, such as a Lambda function).

use std::io::Write;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
#[cfg(feature = "cloudwatch")]
use aws_config::SdkConfig;
#[cfg(feature = "cloudwatch")]
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum as SdkDatum, StandardUnit};
use serde_json::{Map, Value, json};
#[cfg(feature = "cloudwatch")]
use tracing::instrument;

use crate::error::{AwsError, AwsErrorKind};

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

impl MetricUnit {
    /// The unit's name in CloudWatch.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricUnit::Count => "Count",
            MetricUnit::Seconds => "Seconds",
            MetricUnit::None => "None",
        }
    }
}

/// What the stack needs from CloudWatch metrics.
#[async_trait]
pub trait Metrics: Send + Sync {
    /// Publishes data points to `namespace`, in as many requests as the service's
    /// per-request limit requires.
    async fn put(&self, namespace: &str, data: &[MetricDatum]) -> Result<(), AwsError>;
}

/// The most data points one PutMetricData request accepts.
#[cfg(feature = "cloudwatch")]
const MAX_DATA_PER_REQUEST: usize = 1000;

/// [`Metrics`] over the AWS SDK.
#[cfg(feature = "cloudwatch")]
#[derive(Debug, Clone)]
pub struct CloudWatchMetrics {
    client: aws_sdk_cloudwatch::Client,
}

#[cfg(feature = "cloudwatch")]
impl CloudWatchMetrics {
    pub fn new(sdk_config: &SdkConfig) -> CloudWatchMetrics {
        CloudWatchMetrics { client: aws_sdk_cloudwatch::Client::new(sdk_config) }
    }
}

#[cfg(feature = "cloudwatch")]
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

#[cfg(feature = "cloudwatch")]
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

/// The most metrics one embedded-metric directive may define.
const MAX_METRICS_PER_DIRECTIVE: usize = 100;

/// [`Metrics`] as log lines in CloudWatch's embedded metric format, written to `out`
/// (standard output in a Lambda function, whose output CloudWatch Logs reads).
pub struct EmbeddedMetrics {
    out: Mutex<Box<dyn Write + Send>>,
}

impl EmbeddedMetrics {
    pub fn new(out: Box<dyn Write + Send>) -> EmbeddedMetrics {
        EmbeddedMetrics { out: Mutex::new(out) }
    }

    /// Lines on standard output.
    pub fn stdout() -> EmbeddedMetrics {
        EmbeddedMetrics::new(Box::new(std::io::stdout()))
    }
}

impl std::fmt::Debug for EmbeddedMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EmbeddedMetrics")
    }
}

#[async_trait]
impl Metrics for EmbeddedMetrics {
    async fn put(&self, namespace: &str, data: &[MetricDatum]) -> Result<(), AwsError> {
        let mut text = String::new();
        for line in embedded_metric_lines(namespace, data) {
            text.push_str(&line);
            text.push('\n');
        }
        let mut out = self.out.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        out.write_all(text.as_bytes()).and_then(|()| out.flush()).map_err(|error| {
            AwsError::new(
                AwsErrorKind::Transport,
                "EmbeddedMetrics",
                namespace,
                format!("failed to write the metric lines: {error}"),
            )
        })
    }
}

/// The data as embedded-metric-format documents, one JSON object per line: one per
/// timestamp and dimension set, each naming at most 100 metrics. A metric name that is
/// also a dimension name, or a second value of the same name in one document, starts
/// another document, so that no value is overwritten.
pub fn embedded_metric_lines(namespace: &str, data: &[MetricDatum]) -> Vec<String> {
    // Documents by (timestamp, dimensions), in the order the data came.
    let mut documents: Vec<(u128, &[(String, String)], Vec<&MetricDatum>)> = Vec::new();
    for datum in data {
        let millis = datum.timestamp.duration_since(UNIX_EPOCH).map_or(0, |time| time.as_millis());
        let fits =
            |(time, dimensions, metrics): &&mut (u128, &[(String, String)], Vec<&MetricDatum>)| {
                *time == millis
                    && *dimensions == datum.dimensions.as_slice()
                    && metrics.len() < MAX_METRICS_PER_DIRECTIVE
                    && !metrics.iter().any(|other| other.name == datum.name)
                    && !datum.dimensions.iter().any(|(name, _)| *name == datum.name)
            };
        match documents.iter_mut().find(|document| fits(document)) {
            Some(document) => document.2.push(datum),
            None => documents.push((millis, &datum.dimensions, vec![datum])),
        }
    }
    documents
        .into_iter()
        .map(|(millis, dimensions, metrics)| {
            let mut root = Map::new();
            for (name, value) in dimensions {
                root.insert(name.clone(), Value::String(value.clone()));
            }
            for datum in &metrics {
                root.insert(datum.name.clone(), json!(datum.value));
            }
            let definitions: Vec<Value> = metrics
                .iter()
                .map(|datum| json!({"Name": datum.name, "Unit": datum.unit.as_str()}))
                .collect();
            let dimension_names: Vec<&str> =
                dimensions.iter().map(|(name, _)| name.as_str()).collect();
            root.insert(
                "_aws".to_owned(),
                json!({
                    "Timestamp": u64::try_from(millis).unwrap_or(u64::MAX),
                    "CloudWatchMetrics": [{
                        "Namespace": namespace,
                        "Dimensions": [dimension_names],
                        "Metrics": definitions,
                    }],
                }),
            );
            Value::Object(root).to_string()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;

    fn datum(name: &str, value: f64, queue: &str, secs: u64) -> MetricDatum {
        MetricDatum {
            name: name.to_owned(),
            dimensions: vec![
                ("Org".to_owned(), "acme".to_owned()),
                ("Queue".to_owned(), queue.to_owned()),
            ],
            value,
            unit: MetricUnit::Count,
            timestamp: UNIX_EPOCH + Duration::from_secs(secs),
        }
    }

    #[test]
    fn one_document_per_timestamp_and_dimension_set() {
        let lines = embedded_metric_lines(
            "Buildkite",
            &[
                datum("ScheduledJobsCount", 3.0, "default", 1_700_000_000),
                datum("RunningJobsCount", 1.0, "default", 1_700_000_000),
                datum("ScheduledJobsCount", 5.0, "other", 1_700_000_000),
            ],
        );
        assert_eq!(lines.len(), 2);
        let first: Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(
            first,
            json!({
                "Org": "acme",
                "Queue": "default",
                "ScheduledJobsCount": 3.0,
                "RunningJobsCount": 1.0,
                "_aws": {
                    "Timestamp": 1_700_000_000_000_u64,
                    "CloudWatchMetrics": [{
                        "Namespace": "Buildkite",
                        "Dimensions": [["Org", "Queue"]],
                        "Metrics": [
                            {"Name": "ScheduledJobsCount", "Unit": "Count"},
                            {"Name": "RunningJobsCount", "Unit": "Count"},
                        ],
                    }],
                },
            })
        );
        let second: Value = serde_json::from_str(&lines[1]).unwrap();
        assert_eq!(second["Queue"], "other");
        assert_eq!(second["ScheduledJobsCount"], 5.0);
    }

    #[test]
    fn a_repeated_name_or_a_full_directive_starts_another_document() {
        let mut data = vec![datum("A", 1.0, "q", 10), datum("A", 2.0, "q", 10)];
        data.extend((0..150).map(|index| datum(&format!("M{index}"), 0.0, "q", 20)));
        let lines = embedded_metric_lines("Buildkite", &data);
        let counts: Vec<usize> = lines
            .iter()
            .map(|line| {
                let document: Value = serde_json::from_str(line).unwrap();
                document["_aws"]["CloudWatchMetrics"][0]["Metrics"].as_array().unwrap().len()
            })
            .collect();
        assert_eq!(counts, [1, 1, 100, 50]);
        // Every value is in exactly one document.
        let values: BTreeMap<String, usize> =
            lines.iter().fold(BTreeMap::new(), |mut seen, line| {
                let document: Value = serde_json::from_str(line).unwrap();
                for definition in
                    document["_aws"]["CloudWatchMetrics"][0]["Metrics"].as_array().unwrap()
                {
                    *seen.entry(definition["Name"].as_str().unwrap().to_owned()).or_default() += 1;
                }
                seen
            });
        assert_eq!(values["A"], 2);
        assert_eq!(values.len(), 151);
    }

    #[tokio::test]
    async fn embedded_metrics_write_one_line_per_document() {
        #[derive(Clone, Default)]
        struct Shared(std::sync::Arc<Mutex<Vec<u8>>>);
        impl Write for Shared {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let out = Shared::default();
        let metrics = EmbeddedMetrics::new(Box::new(out.clone()));
        metrics
            .put("Buildkite", &[datum("A", 1.0, "q", 10), datum("B", 2.0, "r", 10)])
            .await
            .unwrap();
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text.ends_with('\n'));
    }
}
