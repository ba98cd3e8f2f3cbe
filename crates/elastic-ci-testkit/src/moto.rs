//! The local AWS emulator.
//!
//! `cargo xtask ci` starts moto and passes its endpoint in `ELASTIC_CI_MOTO_ENDPOINT`;
//! `cargo xtask moto start` does the same for a developer's shell. Without the variable
//! the moto suites skip with a message, except when `CI` is set: there a missing
//! emulator fails the test.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use elastic_ci_aws::config::AwsSettings;

/// The variable that carries the emulator's endpoint to the tests.
pub const ENDPOINT_VAR: &str = "ELASTIC_CI_MOTO_ENDPOINT";

/// The region every test uses.
pub const REGION: &str = "us-east-1";

/// A reachable emulator.
#[derive(Debug, Clone)]
pub struct Moto {
    pub endpoint: String,
}

/// The emulator, or `None` (after printing why) when the test should skip.
///
/// # Panics
///
/// When `CI` is set and no endpoint is given: a suite that silently skips in CI would
/// pass without testing anything.
pub fn moto() -> Option<Moto> {
    #[allow(clippy::disallowed_methods, reason = "test harness configuration, read once per test")]
    let endpoint = std::env::var(ENDPOINT_VAR).ok().filter(|value| !value.is_empty());
    match endpoint {
        Some(endpoint) => Some(Moto { endpoint }),
        None => {
            #[allow(clippy::disallowed_methods, reason = "test harness configuration")]
            let in_ci = std::env::var_os("CI").is_some();
            assert!(
                !in_ci,
                "{ENDPOINT_VAR} is not set but CI is: run the tests through `cargo xtask ci`"
            );
            #[allow(clippy::print_stderr, reason = "tell the developer why the test did nothing")]
            {
                eprintln!(
                    "skipping: {ENDPOINT_VAR} is not set (run `cargo xtask moto start` or `cargo xtask ci`)"
                );
            }
            None
        }
    }
}

impl Moto {
    /// SDK configuration pointing at the emulator with dummy credentials.
    pub fn sdk_config(&self) -> SdkConfig {
        SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(&self.endpoint)
            .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(
                Credentials::for_tests(),
            ))
            .build()
    }

    /// Settings as the production builder would derive them from the environment.
    pub fn settings(&self) -> AwsSettings {
        AwsSettings { region: None, profile: None, endpoint_url: None, s3_path_style: true }
    }

    /// Environment for a child process (one of our binaries) to use the emulator.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_REGION", REGION),
            ("AWS_DEFAULT_REGION", REGION),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
    }

    pub fn s3(&self) -> aws_sdk_s3::Client {
        let config =
            aws_sdk_s3::config::Builder::from(&self.sdk_config()).force_path_style(true).build();
        aws_sdk_s3::Client::from_conf(config)
    }

    pub fn ssm(&self) -> aws_sdk_ssm::Client {
        aws_sdk_ssm::Client::new(&self.sdk_config())
    }

    pub fn autoscaling(&self) -> aws_sdk_autoscaling::Client {
        aws_sdk_autoscaling::Client::new(&self.sdk_config())
    }

    pub fn cloudwatch(&self) -> aws_sdk_cloudwatch::Client {
        aws_sdk_cloudwatch::Client::new(&self.sdk_config())
    }

    pub fn ecr(&self) -> aws_sdk_ecr::Client {
        aws_sdk_ecr::Client::new(&self.sdk_config())
    }

    pub fn cloudformation(&self) -> aws_sdk_cloudformation::Client {
        aws_sdk_cloudformation::Client::new(&self.sdk_config())
    }

    /// Creates a uniquely named bucket and returns its name.
    pub async fn bucket(&self, prefix: &str) -> String {
        let bucket = crate::names::unique_name(prefix);
        self.s3().create_bucket().bucket(&bucket).send().await.expect("moto CreateBucket");
        bucket
    }

    pub async fn put_object(&self, bucket: &str, key: &str, body: impl Into<Vec<u8>>) {
        let body: Vec<u8> = body.into();
        self.s3()
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(body.into())
            .send()
            .await
            .expect("moto PutObject");
    }

    /// Stores a parameter; `secure` makes it a SecureString.
    pub async fn put_parameter(&self, name: &str, value: &str, secure: bool) {
        let kind = if secure {
            aws_sdk_ssm::types::ParameterType::SecureString
        } else {
            aws_sdk_ssm::types::ParameterType::String
        };
        self.ssm()
            .put_parameter()
            .name(name)
            .value(value)
            .r#type(kind)
            .overwrite(true)
            .send()
            .await
            .expect("moto PutParameter");
    }

    /// Creates a launch configuration and an Auto Scaling group with the given sizes in
    /// the emulator, and returns the group's name. Moto starts the desired number of
    /// instances at once, all InService.
    pub async fn scaling_group(&self, prefix: &str, min: i32, max: i32, desired: i32) -> String {
        let name = crate::names::unique_name(prefix);
        let launch_configuration = format!("{name}-lc");
        let autoscaling = self.autoscaling();
        autoscaling
            .create_launch_configuration()
            .launch_configuration_name(&launch_configuration)
            .image_id("ami-12c6146b")
            .instance_type("t3.micro")
            .send()
            .await
            .expect("moto CreateLaunchConfiguration");
        autoscaling
            .create_auto_scaling_group()
            .auto_scaling_group_name(&name)
            .launch_configuration_name(&launch_configuration)
            .min_size(min)
            .max_size(max)
            .desired_capacity(desired)
            .availability_zones(format!("{REGION}a"))
            .send()
            .await
            .expect("moto CreateAutoScalingGroup");
        name
    }
}
