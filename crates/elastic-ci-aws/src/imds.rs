//! Instance metadata: the EC2 instance metadata service (IMDSv2), through aws-config's
//! client.
//!
//! Instance tags come from here rather than from the EC2 API: the launch template
//! enables tags in metadata, and the EC2 SDK crate is very large.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::imds::client::error::ImdsError;
use aws_smithy_types::error::display::DisplayErrorContext;
use elastic_ci_core::lifecycle::MetadataNotices;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use tracing::instrument;

use crate::error::{AwsError, AwsErrorKind};

/// What the instance binaries need to know about the instance they run on.
#[async_trait]
pub trait InstanceMetadata: Send + Sync {
    /// `i-0123456789abcdef0`.
    async fn instance_id(&self) -> Result<String, AwsError>;

    /// `us-east-1`.
    async fn region(&self) -> Result<String, AwsError>;

    /// The instance's tags; empty when tags are not enabled in metadata.
    async fn tags(&self) -> Result<BTreeMap<String, String>, AwsError>;

    /// Where Auto Scaling is moving the instance (`InService`, `Warmed:Stopped`, …);
    /// `None` when the service does not say (404).
    async fn target_lifecycle_state(&self) -> Result<Option<String>, AwsError> {
        Ok(None)
    }
}

/// The three items that announce the instance's removal, read by `watch`.
#[async_trait]
pub trait LifecycleNotices: Send + Sync {
    /// `autoscaling/target-lifecycle-state`, `spot/instance-action` and
    /// `events/recommendations/rebalance`, read one after another (the service limits
    /// concurrent connections); an item that answers 404 is `None`.
    async fn notices(&self) -> Result<MetadataNotices, AwsError>;
}

/// [`InstanceMetadata`] over aws-config's IMDSv2 client.
#[derive(Debug, Clone)]
pub struct Imds {
    client: aws_config::imds::Client,
}

const OPERATION: &str = "GetInstanceMetadata";

impl Imds {
    /// A client for `endpoint` (the value of `AWS_EC2_METADATA_SERVICE_ENDPOINT`, read
    /// by the caller), or the link-local default when `None`.
    ///
    /// Each request makes one attempt with short timeouts: callers retry with their
    /// own schedule, so that "metadata service down" is visible to them and logged.
    pub fn new(endpoint: Option<&str>) -> Result<Imds, AwsError> {
        let mut builder = aws_config::imds::Client::builder()
            .max_attempts(1)
            .connect_timeout(Duration::from_secs(2))
            .read_timeout(Duration::from_secs(2))
            .operation_timeout(Duration::from_secs(5))
            .token_ttl(Duration::from_secs(300));
        if let Some(endpoint) = endpoint {
            builder = builder.endpoint(endpoint).map_err(|error| {
                AwsError::new(
                    AwsErrorKind::Validation,
                    OPERATION,
                    endpoint,
                    format!("invalid AWS_EC2_METADATA_SERVICE_ENDPOINT: {error}"),
                )
            })?;
        }
        Ok(Imds { client: builder.build() })
    }

    async fn get(&self, path: &str) -> Result<String, AwsError> {
        self.client
            .get(path)
            .await
            .map(|value| value.as_ref().trim().to_owned())
            .map_err(|error| imds_error(path, &error))
    }
}

/// Each notice item's path under the metadata root.
pub const TARGET_LIFECYCLE_STATE_PATH: &str =
    "/latest/meta-data/autoscaling/target-lifecycle-state";
pub const SPOT_INSTANCE_ACTION_PATH: &str = "/latest/meta-data/spot/instance-action";
pub const REBALANCE_RECOMMENDATION_PATH: &str =
    "/latest/meta-data/events/recommendations/rebalance";

/// Maps an IMDS failure without its response body or headers (a token response body
/// is a credential).
fn imds_error(path: &str, error: &ImdsError) -> AwsError {
    let (kind, message) = match error {
        ImdsError::ErrorResponse(response) => {
            let status = response.response().status().as_u16();
            let kind = match status {
                404 => AwsErrorKind::NotFound,
                401 | 403 => AwsErrorKind::AccessDenied,
                400..=499 => AwsErrorKind::Validation,
                _ => AwsErrorKind::Service,
            };
            (kind, format!("HTTP {status}"))
        }
        ImdsError::FailedToLoadToken(token) => {
            let reason = if token.is_dispatch_failure() {
                "could not connect".to_owned()
            } else {
                // The token error's own words; they never include a token.
                DisplayErrorContext(error).to_string()
            };
            (AwsErrorKind::Transport, format!("no session token: {reason}"))
        }
        ImdsError::IoError(_) => (AwsErrorKind::Transport, DisplayErrorContext(error).to_string()),
        _ => (AwsErrorKind::Service, DisplayErrorContext(error).to_string()),
    };
    AwsError::new(kind, OPERATION, path, message)
}

/// What a tag key keeps unescaped in a metadata path: letters, digits and `-_.~:`.
/// Keys may hold spaces and other characters that are not allowed in a URL path.
const TAG_KEY_KEPT: &AsciiSet =
    &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~').remove(b':');

/// Percent-encodes a tag key for a metadata path.
fn encode_path_segment(segment: &str) -> String {
    utf8_percent_encode(segment, TAG_KEY_KEPT).to_string()
}

#[async_trait]
impl InstanceMetadata for Imds {
    #[instrument(skip_all)]
    async fn instance_id(&self) -> Result<String, AwsError> {
        self.get("/latest/meta-data/instance-id").await
    }

    #[instrument(skip_all)]
    async fn region(&self) -> Result<String, AwsError> {
        self.get("/latest/meta-data/placement/region").await
    }

    #[instrument(skip_all)]
    async fn target_lifecycle_state(&self) -> Result<Option<String>, AwsError> {
        match self.get(TARGET_LIFECYCLE_STATE_PATH).await {
            Ok(state) => Ok(Some(state)),
            Err(error) if error.is_not_found() => Ok(None),
            Err(error) => Err(error),
        }
    }

    #[instrument(skip_all)]
    async fn tags(&self) -> Result<BTreeMap<String, String>, AwsError> {
        let keys = match self.get("/latest/meta-data/tags/instance").await {
            Ok(keys) => keys,
            Err(error) if error.is_not_found() => return Ok(BTreeMap::new()),
            Err(error) => return Err(error),
        };
        let mut tags = BTreeMap::new();
        for key in keys.lines().map(str::trim).filter(|key| !key.is_empty()) {
            let path = format!("/latest/meta-data/tags/instance/{}", encode_path_segment(key));
            let value = self.client.get(&path).await.map_err(|error| imds_error(&path, &error))?;
            tags.insert(key.to_owned(), value.as_ref().to_owned());
        }
        Ok(tags)
    }
}

#[async_trait]
impl LifecycleNotices for Imds {
    #[instrument(skip_all)]
    async fn notices(&self) -> Result<MetadataNotices, AwsError> {
        let optional = |result: Result<String, AwsError>| match result {
            Ok(value) => Ok(Some(value)),
            Err(error) if error.is_not_found() => Ok(None),
            Err(error) => Err(error),
        };
        Ok(MetadataNotices {
            target_state: optional(self.get(TARGET_LIFECYCLE_STATE_PATH).await)?,
            spot_action: optional(self.get(SPOT_INSTANCE_ACTION_PATH).await)?,
            rebalance: optional(self.get(REBALANCE_RECOMMENDATION_PATH).await)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_tag_keys() {
        assert_eq!(encode_path_segment("aws:autoscaling:groupName"), "aws:autoscaling:groupName");
        assert_eq!(encode_path_segment("Cost Centre/1"), "Cost%20Centre%2F1");
    }

    #[test]
    fn rejects_a_malformed_endpoint() {
        let error = Imds::new(Some("not a url")).unwrap_err();
        assert_eq!(error.kind, AwsErrorKind::Validation);
        assert!(error.to_string().contains("AWS_EC2_METADATA_SERVICE_ENDPOINT"), "{error}");
    }
}
