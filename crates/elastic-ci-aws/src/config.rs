//! The one place that builds an AWS SDK configuration.

use std::collections::HashMap;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::Region;
use aws_config::SdkConfig;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;

/// What may be overridden about how we reach AWS.
///
/// Region, profile and endpoint come from the standard variables (`AWS_REGION`,
/// `AWS_PROFILE`, `AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_<SERVICE>`), which the SDK reads
/// itself; explicit values here (from command-line flags) take precedence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsSettings {
    pub region: Option<String>,
    pub profile: Option<String>,
    pub endpoint_url: Option<String>,
    /// Whether S3 must use path-style addressing: set whenever an endpoint override
    /// applies to S3, because emulators and private endpoints do not serve
    /// virtual-hosted bucket names.
    pub s3_path_style: bool,
}

impl AwsSettings {
    /// Settings that only honour the standard environment variables.
    pub fn from_env_map(vars: &HashMap<String, String>) -> AwsSettings {
        let set = |name: &str| vars.get(name).is_some_and(|value| !value.trim().is_empty());
        let ignore_endpoints = vars
            .get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        AwsSettings {
            region: None,
            profile: None,
            endpoint_url: None,
            s3_path_style: !ignore_endpoints
                && (set("AWS_ENDPOINT_URL") || set("AWS_ENDPOINT_URL_S3")),
        }
    }

    /// Overrides from command-line flags; an endpoint override switches S3 to path style.
    pub fn with_overrides(
        mut self,
        region: Option<String>,
        profile: Option<String>,
        endpoint_url: Option<String>,
    ) -> AwsSettings {
        if region.is_some() {
            self.region = region;
        }
        if profile.is_some() {
            self.profile = profile;
        }
        if endpoint_url.is_some() {
            self.endpoint_url = endpoint_url;
            self.s3_path_style = true;
        }
        self
    }
}

/// Attempts per call, first try included. AWS throttles the control-plane calls the
/// scaler and the instances make at fleet scale, so a few retries with the standard
/// jittered backoff ride out a burst without stalling a boot for long.
const MAX_ATTEMPTS: u32 = 4;

/// Builds the SDK configuration every client is made from.
pub async fn aws_sdk_config(settings: &AwsSettings) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::v2026_01_12())
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(MAX_ATTEMPTS)
                .with_initial_backoff(Duration::from_millis(200)),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(Duration::from_secs(60))
                .build(),
        );
    if let Some(region) = &settings.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(profile) = &settings.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(endpoint_url) = &settings.endpoint_url {
        loader = loader.endpoint_url(endpoint_url);
    }
    loader.load().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn endpoint_overrides_switch_s3_to_path_style() {
        assert!(!AwsSettings::from_env_map(&vars(&[])).s3_path_style);
        assert!(
            AwsSettings::from_env_map(&vars(&[("AWS_ENDPOINT_URL", "http://127.0.0.1:5000")]))
                .s3_path_style
        );
        assert!(
            AwsSettings::from_env_map(&vars(&[("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:5000")]))
                .s3_path_style
        );
        assert!(
            !AwsSettings::from_env_map(&vars(&[("AWS_ENDPOINT_URL_SSM", "http://127.0.0.1:5000")]))
                .s3_path_style
        );
        assert!(
            !AwsSettings::from_env_map(&vars(&[
                ("AWS_ENDPOINT_URL", "http://127.0.0.1:5000"),
                ("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true")
            ]))
            .s3_path_style
        );
        let flagged = AwsSettings::from_env_map(&vars(&[])).with_overrides(
            None,
            None,
            Some("http://x".into()),
        );
        assert!(flagged.s3_path_style);
        assert_eq!(flagged.endpoint_url.as_deref(), Some("http://x"));
    }
}
