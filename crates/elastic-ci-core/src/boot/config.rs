//! The boot configuration: every variable the UserData passes to the bootstrapper,
//! parsed and validated in one go.
//!
//! [`BootConfig::from_env_map`] reports every missing or invalid input together, so an
//! operator fixes a broken stack in one round instead of one instance launch per typo,
//! and nothing on the instance changes before the whole input is known to be good.
//! Settings that take one of a few words are enums ([`Keyword`]), and settings whose
//! empty value means "none" are `Option`s, so nothing downstream compares strings.
//!
//! Names and defaults are the original stack's (the template's parameter defaults).
//! Required: `BUILDKITE_STACK_NAME`, `BUILDKITE_STACK_VERSION`,
//! `BUILDKITE_STACK_DEPLOYED_BY`, `BUILDKITE_AGENT_TOKEN_PATH`, `BUILDKITE_QUEUE` and
//! `AWS_REGION` (or `AWS_DEFAULT_REGION`). Every other variable may be absent or empty,
//! which means its default, but must be valid when set.

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroU32;

use crate::boot::docker::{
    Cidr, CidrError, IPV4_POOL_1_SIZE, IPV4_POOL_2_SIZE, IPV6_POOL_SIZE, Networking,
};
use crate::uri::{AGENT_ENDPOINT_EXPECTED, SourceUri, parse_agent_endpoint, validate_bucket_name};

/// The agent's default API endpoint.
pub const DEFAULT_AGENT_ENDPOINT: &str = "https://agent-edge.buildkite.com/v3";

/// Everything the boot sequence needs to know, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootConfig {
    pub stack_name: String,
    pub stack_version: String,
    /// Only a CloudFormation stack waits for the instances' signals.
    pub deployed_by: DeployedBy,
    pub region: String,
    pub queue: String,
    /// SSM parameter name or full ARN holding the agent registration token.
    pub token_parameter: String,
    pub agents_per_instance: NonZeroU32,
    pub agent_endpoint: String,
    /// Extra agent tags, in order; empty items dropped.
    pub agent_tags: Vec<String>,
    pub timestamp_lines: bool,
    /// The agent's `experiment` setting (comma-separated names), when set.
    pub experiments: Option<String>,
    pub tracing_backend: Option<TracingBackend>,
    pub signing_key_parameter: Option<String>,
    pub signing_key_id: Option<String>,
    pub verification_key_parameter: Option<String>,
    pub release: AgentRelease,
    pub cancel_grace_period_secs: u32,
    /// `None` leaves the agent's own default (`-1` in the variable).
    pub signal_grace_period_secs: Option<u32>,
    pub signing_kms_key: Option<String>,
    pub verification_failure_behavior: VerificationFailureBehavior,
    pub scale_in_idle_period_secs: u64,
    pub terminate_after_job: bool,
    pub disconnect_after_uptime_secs: u64,
    pub terminate_on_disk_full: bool,
    pub purge_builds_on_disk_full: bool,
    pub secrets_bucket: Option<String>,
    /// `None`: the bucket's region is looked up by the hooks.
    pub secrets_bucket_region: Option<String>,
    pub skip_ssh_key_not_found_warning: bool,
    pub artifacts_bucket: Option<String>,
    /// The stack's region unless `BUILDKITE_S3_DEFAULT_REGION` names another.
    pub s3_default_region: String,
    pub s3_acl: S3Acl,
    pub git_mirrors: bool,
    pub git_mirror_seed_bucket: Option<String>,
    pub bootstrap_script: Option<SourceUri>,
    pub env_file: Option<SourceUri>,
    pub authorized_users: Option<SourceUri>,
    pub instance_storage: bool,
    /// `false` switches off the tmpfs at `/tmp` (`BUILDKITE_MOUNT_TMPFS_AT_TMP`).
    pub mount_tmpfs_at_tmp: bool,
    pub ecr_policy: EcrPolicy,
    /// Comma-separated commands for `/etc/sudoers.d/buildkite-agent-additional`.
    pub additional_sudo_permissions: Option<String>,
    pub plugins: Plugins,
    pub ecr_credential_helper: bool,
    pub docker: DockerSettings,
    /// `Some` when `ENABLE_RESOURCE_LIMITS` is `true`.
    pub resource_limits: Option<ResourceLimits>,
    /// `Some(days)` when `ENABLE_EC2_LOG_RETENTION_POLICY` is `true`.
    pub log_retention_days: Option<u32>,
    /// Windows instances: the agent's account is a member of Administrators
    /// (`BUILDKITE_WINDOWS_ADMINISTRATOR`, default true, as in the original).
    pub windows_administrator: bool,
    /// Accepted but risky settings, for the boot log (never values that could be secret).
    pub warnings: Vec<String>,
}

/// The built-in job plugins the hooks may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plugins {
    pub secrets: bool,
    pub ecr: bool,
    pub docker_login: bool,
}

/// Docker settings: the daemon's configuration at boot, and what jobs get through
/// `cfn-env`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerSettings {
    pub experimental: bool,
    pub userns_remap: bool,
    /// A Docker duration (`4h`, `90m`); days are given in hours, since Docker has no
    /// `d` unit (`1d12h` becomes `36h`).
    pub prune_until: String,
    pub pre_exit_disk_cleanup: bool,
    pub builder_prune: bool,
    pub networking: Networking,
    /// Split into /20 networks.
    pub ipv4_address_pool_1: Cidr,
    /// Split into /24 networks.
    pub ipv4_address_pool_2: Cidr,
    /// Split into /112 networks (dualstack only).
    pub ipv6_address_pool: Cidr,
    pub fixed_cidr_v4: Option<Cidr>,
    /// Dualstack only.
    pub fixed_cidr_v6: Cidr,
}

/// The systemd slice limits of `ENABLE_RESOURCE_LIMITS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceLimits {
    pub memory_high: String,
    pub memory_max: String,
    pub memory_swap_max: String,
    pub cpu_weight: u32,
    pub cpu_quota: String,
    pub io_weight: u32,
}

/// Who deployed the stack (`BUILDKITE_STACK_DEPLOYED_BY`), as the agent tag
/// `stack-deployed-by` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeployedBy {
    /// A CloudFormation stack, which waits for a signal from each instance.
    CloudFormation,
    /// Terraform or any other tool, which waits for nothing.
    Other(String),
}

impl DeployedBy {
    pub fn new(value: &str) -> DeployedBy {
        match value {
            "cloudformation" => DeployedBy::CloudFormation,
            other => DeployedBy::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            DeployedBy::CloudFormation => "cloudformation",
            DeployedBy::Other(name) => name,
        }
    }
}

impl fmt::Display for DeployedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A setting that takes one of a fixed list of words.
pub trait Keyword: Copy + 'static {
    /// Every value, in the order error messages list them.
    const ALL: &'static [Self];

    /// The word in the variable and in the files the boot writes.
    fn keyword(self) -> &'static str;
}

/// Declares a [`Keyword`] enum: each variant with its word, plus `as_str`.
macro_rules! keyword_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $($(#[$variant_meta:meta])* $variant:ident => $word:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $($(#[$variant_meta])* $variant,)+
        }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $word,)+
                }
            }
        }

        impl Keyword for $name {
            const ALL: &'static [Self] = &[$($name::$variant,)+];

            fn keyword(self) -> &'static str {
                self.as_str()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

keyword_enum! {
    /// The agent release channel; `/usr/bin/buildkite-agent` points at
    /// `/usr/bin/buildkite-agent-<channel>`.
    pub enum AgentRelease {
        Stable => "stable",
        Beta => "beta",
        /// Downloaded at boot from the experimental channel.
        Edge => "edge",
        /// Downloaded at boot from the oldstable channel.
        OldStable => "oldstable",
    }
}

keyword_enum! {
    /// Where the agent sends traces (`BUILDKITE_AGENT_TRACING_BACKEND`).
    pub enum TracingBackend {
        Datadog => "datadog",
        OpenTelemetry => "opentelemetry",
    }
}

keyword_enum! {
    /// What the agent does with a job that has no signature.
    pub enum VerificationFailureBehavior {
        Block => "block",
        Warn => "warn",
    }
}

keyword_enum! {
    /// The canned ACL of artifact uploads (`BUILDKITE_S3_ACL`).
    pub enum S3Acl {
        Private => "private",
        PublicRead => "public-read",
        PublicReadWrite => "public-read-write",
        AuthenticatedRead => "authenticated-read",
        AwsExecRead => "aws-exec-read",
        BucketOwnerRead => "bucket-owner-read",
        BucketOwnerFullControl => "bucket-owner-full-control",
    }
}

keyword_enum! {
    /// The ECR access the instance role grants (`BUILDKITE_ECR_POLICY`).
    pub enum EcrPolicy {
        None => "none",
        ReadOnly => "readonly",
        ReadOnlyPullThrough => "readonly-pullthrough",
        PowerUser => "poweruser",
        PowerUserPullThrough => "poweruser-pullthrough",
        Full => "full",
    }
}

impl Keyword for Networking {
    const ALL: &'static [Self] = &[Networking::Ipv4, Networking::DualStack];

    fn keyword(self) -> &'static str {
        self.as_str()
    }
}

impl AgentRelease {
    /// The download URL for channels that are not baked into the image.
    pub fn download_url(self, arch: &str) -> Option<String> {
        let channel = self.download_channel()?;
        Some(format!(
            "https://download.buildkite.com/agent/{channel}/latest/buildkite-agent-linux-{arch}"
        ))
    }

    /// The same for a Windows instance (x86_64 only).
    pub fn windows_download_url(self) -> Option<String> {
        let channel = self.download_channel()?;
        Some(format!(
            "https://download.buildkite.com/agent/{channel}/latest/buildkite-agent-windows-amd64.exe"
        ))
    }

    fn download_channel(self) -> Option<&'static str> {
        match self {
            AgentRelease::Edge => Some("experimental"),
            AgentRelease::OldStable => Some("oldstable"),
            AgentRelease::Stable | AgentRelease::Beta => None,
        }
    }
}

/// Every input that was missing or invalid, in the order of [`ENV_VARS`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct BootConfigError {
    pub problems: Vec<String>,
}

impl fmt::Display for BootConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "invalid boot configuration ({n} problem{}): {}",
            if n == 1 { "" } else { "s" },
            self.problems.join("; ")
        )
    }
}

const RETENTION_DAYS: &[u32] =
    &[1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1827, 3653];
const MEMORY_LIMIT_EXPECTED: &str =
    "a size such as 512M, a percentage from 1% to 100%, or infinity";
const PRUNE_AGE_EXPECTED: &str = "a duration such as 4h or 1d12h (digits followed by s, m, h or d)";
const PARAMETER_EXPECTED: &str =
    "expected an SSM parameter name (letters, digits, '_', '.', '-', '/') or a parameter ARN";

impl BootConfig {
    /// Every variable [`BootConfig::from_env_map`] reads, in the order it reads them.
    pub const ENV_VARS: &[&str] = &[
        "BUILDKITE_STACK_NAME",
        "BUILDKITE_STACK_VERSION",
        "BUILDKITE_STACK_DEPLOYED_BY",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "BUILDKITE_QUEUE",
        "BUILDKITE_AGENT_TOKEN_PATH",
        "BUILDKITE_AGENTS_PER_INSTANCE",
        "BUILDKITE_AGENT_ENDPOINT",
        "BUILDKITE_AGENT_TAGS",
        "BUILDKITE_AGENT_TIMESTAMP_LINES",
        "BUILDKITE_AGENT_EXPERIMENTS",
        "BUILDKITE_AGENT_TRACING_BACKEND",
        "BUILDKITE_AGENT_SIGNING_KEY_PATH",
        "BUILDKITE_AGENT_SIGNING_KEY_ID",
        "BUILDKITE_AGENT_VERIFICATION_KEY_PATH",
        "BUILDKITE_AGENT_RELEASE",
        "BUILDKITE_AGENT_CANCEL_GRACE_PERIOD",
        "BUILDKITE_AGENT_SIGNAL_GRACE_PERIOD_SECONDS",
        "BUILDKITE_AGENT_SIGNING_KMS_KEY",
        "BUILDKITE_AGENT_JOB_VERIFICATION_NO_SIGNATURE_BEHAVIOR",
        "BUILDKITE_SCALE_IN_IDLE_PERIOD",
        "BUILDKITE_TERMINATE_INSTANCE_AFTER_JOB",
        "BUILDKITE_AGENT_DISCONNECT_AFTER_UPTIME",
        "BUILDKITE_TERMINATE_INSTANCE_ON_DISK_FULL",
        "BUILDKITE_PURGE_BUILDS_ON_DISK_FULL",
        "BUILDKITE_SECRETS_BUCKET",
        "BUILDKITE_SECRETS_BUCKET_REGION",
        "BUILDKITE_SECRETS_PLUGIN_SKIP_SSH_KEY_NOT_FOUND_WARNING",
        "BUILDKITE_ARTIFACTS_BUCKET",
        "BUILDKITE_S3_DEFAULT_REGION",
        "BUILDKITE_S3_ACL",
        "BUILDKITE_AGENT_ENABLE_GIT_MIRRORS",
        "BUILDKITE_GIT_MIRROR_SEED_BUCKET",
        "BUILDKITE_ELASTIC_BOOTSTRAP_SCRIPT",
        "BUILDKITE_ENV_FILE_URL",
        "BUILDKITE_AUTHORIZED_USERS_URL",
        "BUILDKITE_ENABLE_INSTANCE_STORAGE",
        "BUILDKITE_MOUNT_TMPFS_AT_TMP",
        "BUILDKITE_ECR_POLICY",
        "BUILDKITE_ADDITIONAL_SUDO_PERMISSIONS",
        "SECRETS_PLUGIN_ENABLED",
        "ECR_PLUGIN_ENABLED",
        "DOCKER_LOGIN_PLUGIN_ENABLED",
        "ECR_CREDENTIAL_HELPER_ENABLED",
        "DOCKER_EXPERIMENTAL",
        "DOCKER_USERNS_REMAP",
        "DOCKER_PRUNE_UNTIL",
        "ENABLE_PRE_EXIT_DISK_CLEANUP",
        "DOCKER_BUILDER_PRUNE_ENABLED",
        "DOCKER_NETWORKING_PROTOCOL",
        "DOCKER_IPV4_ADDRESS_POOL_1",
        "DOCKER_IPV4_ADDRESS_POOL_2",
        "DOCKER_IPV6_ADDRESS_POOL",
        "DOCKER_FIXED_CIDR_V4",
        "DOCKER_FIXED_CIDR_V6",
        "ENABLE_RESOURCE_LIMITS",
        "RESOURCE_LIMITS_MEMORY_HIGH",
        "RESOURCE_LIMITS_MEMORY_MAX",
        "RESOURCE_LIMITS_MEMORY_SWAP_MAX",
        "RESOURCE_LIMITS_CPU_WEIGHT",
        "RESOURCE_LIMITS_CPU_QUOTA",
        "RESOURCE_LIMITS_IO_WEIGHT",
        "ENABLE_EC2_LOG_RETENTION_POLICY",
        "EC2_LOG_RETENTION_DAYS",
        "BUILDKITE_WINDOWS_ADMINISTRATOR",
    ];

    /// Parses the UserData environment. Every problem is collected before returning,
    /// and messages name the variable and never repeat a value that could be secret.
    ///
    /// Variables are read in the order of [`BootConfig::ENV_VARS`], which is the order
    /// problems are reported in.
    pub fn from_env_map(vars: &HashMap<String, String>) -> Result<BootConfig, BootConfigError> {
        let mut r = Reader { vars, problems: Vec::new(), warnings: Vec::new() };
        let stack_name = r.required("BUILDKITE_STACK_NAME");
        let stack_version = r.required("BUILDKITE_STACK_VERSION");
        let deployed_by = DeployedBy::new(&r.required("BUILDKITE_STACK_DEPLOYED_BY"));
        let region = read_region(&mut r);
        let config = BootConfig {
            stack_name,
            stack_version,
            deployed_by,
            queue: r.required("BUILDKITE_QUEUE"),
            token_parameter: read_token_parameter(&mut r),
            agents_per_instance: read_agents_per_instance(&mut r),
            agent_endpoint: read_agent_endpoint(&mut r),
            agent_tags: read_agent_tags(&mut r),
            timestamp_lines: r.bool("BUILDKITE_AGENT_TIMESTAMP_LINES", false),
            experiments: r.optional("BUILDKITE_AGENT_EXPERIMENTS"),
            tracing_backend: r.optional_keyword("BUILDKITE_AGENT_TRACING_BACKEND"),
            signing_key_parameter: r.parameter("BUILDKITE_AGENT_SIGNING_KEY_PATH"),
            signing_key_id: r.optional("BUILDKITE_AGENT_SIGNING_KEY_ID"),
            verification_key_parameter: r.parameter("BUILDKITE_AGENT_VERIFICATION_KEY_PATH"),
            release: r.keyword("BUILDKITE_AGENT_RELEASE", AgentRelease::Stable),
            cancel_grace_period_secs: r.number(
                "BUILDKITE_AGENT_CANCEL_GRACE_PERIOD",
                60,
                1,
                86_400,
            ),
            signal_grace_period_secs: read_signal_grace_period(&mut r),
            signing_kms_key: r.optional("BUILDKITE_AGENT_SIGNING_KMS_KEY"),
            verification_failure_behavior: r.keyword(
                "BUILDKITE_AGENT_JOB_VERIFICATION_NO_SIGNATURE_BEHAVIOR",
                VerificationFailureBehavior::Block,
            ),
            scale_in_idle_period_secs: r.number(
                "BUILDKITE_SCALE_IN_IDLE_PERIOD",
                600,
                0,
                31_536_000,
            ),
            terminate_after_job: r.bool("BUILDKITE_TERMINATE_INSTANCE_AFTER_JOB", false),
            disconnect_after_uptime_secs: r.number(
                "BUILDKITE_AGENT_DISCONNECT_AFTER_UPTIME",
                0,
                0,
                31_536_000,
            ),
            terminate_on_disk_full: r.bool("BUILDKITE_TERMINATE_INSTANCE_ON_DISK_FULL", false),
            purge_builds_on_disk_full: r.bool("BUILDKITE_PURGE_BUILDS_ON_DISK_FULL", false),
            secrets_bucket: r.bucket("BUILDKITE_SECRETS_BUCKET"),
            secrets_bucket_region: r.optional_region("BUILDKITE_SECRETS_BUCKET_REGION"),
            skip_ssh_key_not_found_warning: r
                .bool("BUILDKITE_SECRETS_PLUGIN_SKIP_SSH_KEY_NOT_FOUND_WARNING", false),
            artifacts_bucket: r.bucket("BUILDKITE_ARTIFACTS_BUCKET"),
            // The template passes the stack's region when ArtifactsBucketRegion is
            // empty; an absent value means the same.
            s3_default_region: r
                .optional_region("BUILDKITE_S3_DEFAULT_REGION")
                .unwrap_or_else(|| region.clone()),
            s3_acl: r.keyword("BUILDKITE_S3_ACL", S3Acl::Private),
            git_mirrors: r.bool("BUILDKITE_AGENT_ENABLE_GIT_MIRRORS", false),
            git_mirror_seed_bucket: r.bucket("BUILDKITE_GIT_MIRROR_SEED_BUCKET"),
            bootstrap_script: r.file_source("BUILDKITE_ELASTIC_BOOTSTRAP_SCRIPT"),
            env_file: r.source("BUILDKITE_ENV_FILE_URL"),
            authorized_users: r.file_source("BUILDKITE_AUTHORIZED_USERS_URL"),
            instance_storage: r.bool("BUILDKITE_ENABLE_INSTANCE_STORAGE", false),
            mount_tmpfs_at_tmp: r.bool("BUILDKITE_MOUNT_TMPFS_AT_TMP", true),
            ecr_policy: r.keyword("BUILDKITE_ECR_POLICY", EcrPolicy::None),
            additional_sudo_permissions: r.sudo_commands("BUILDKITE_ADDITIONAL_SUDO_PERMISSIONS"),
            plugins: read_plugins(&mut r),
            ecr_credential_helper: r.bool("ECR_CREDENTIAL_HELPER_ENABLED", false),
            docker: read_docker(&mut r),
            resource_limits: read_resource_limits(&mut r),
            log_retention_days: read_log_retention(&mut r),
            windows_administrator: r.bool("BUILDKITE_WINDOWS_ADMINISTRATOR", true),
            region,
            warnings: Vec::new(),
        };
        if !r.problems.is_empty() {
            return Err(BootConfigError { problems: r.problems });
        }
        Ok(BootConfig { warnings: r.warnings, ..config })
    }

    /// Whether the stack was deployed by CloudFormation, which waits for a signal from
    /// each instance.
    pub fn signals_cloudformation(&self) -> bool {
        self.deployed_by == DeployedBy::CloudFormation
    }
}

/// `AWS_REGION`, else `AWS_DEFAULT_REGION`: required.
fn read_region(r: &mut Reader<'_>) -> String {
    let Some(region) = r.optional("AWS_REGION").or_else(|| r.optional("AWS_DEFAULT_REGION")) else {
        r.problem("AWS_REGION is missing (or AWS_DEFAULT_REGION): the stack's region".into());
        return String::new();
    };
    if !is_region(&region) {
        r.problem(format!("AWS_REGION {region:?}: expected a region name such as us-east-1"));
    }
    region
}

/// The agent token's parameter: required, and a parameter name or ARN.
fn read_token_parameter(r: &mut Reader<'_>) -> String {
    let name = "BUILDKITE_AGENT_TOKEN_PATH";
    let parameter = r.required(name);
    if !parameter.is_empty() && !is_parameter_name(&parameter) {
        r.problem(format!("{name} {parameter:?}: {PARAMETER_EXPECTED}"));
    }
    parameter
}

fn read_agents_per_instance(r: &mut Reader<'_>) -> NonZeroU32 {
    let agents = r.number("BUILDKITE_AGENTS_PER_INSTANCE", 1u32, 1, 10_000);
    NonZeroU32::new(agents).unwrap_or(NonZeroU32::MIN)
}

fn read_agent_endpoint(r: &mut Reader<'_>) -> String {
    let name = "BUILDKITE_AGENT_ENDPOINT";
    let endpoint = r.string(name, DEFAULT_AGENT_ENDPOINT);
    if parse_agent_endpoint(&endpoint).is_none() {
        r.problem(format!("{name} {endpoint:?}: expected {AGENT_ENDPOINT_EXPECTED}"));
    }
    endpoint
}

/// The comma-separated extra tags, empty items dropped.
fn read_agent_tags(r: &mut Reader<'_>) -> Vec<String> {
    let tags = r.optional("BUILDKITE_AGENT_TAGS").unwrap_or_default();
    tags.split(',').filter(|tag| !tag.is_empty()).map(str::to_owned).collect()
}

/// Seconds from 0 to a day, or `-1` (the default) for the agent's own default.
fn read_signal_grace_period(r: &mut Reader<'_>) -> Option<u32> {
    let secs = r.number("BUILDKITE_AGENT_SIGNAL_GRACE_PERIOD_SECONDS", -1i64, -1, 86_400);
    u32::try_from(secs).ok()
}

fn read_plugins(r: &mut Reader<'_>) -> Plugins {
    Plugins {
        secrets: r.bool("SECRETS_PLUGIN_ENABLED", true),
        ecr: r.bool("ECR_PLUGIN_ENABLED", true),
        docker_login: r.bool("DOCKER_LOGIN_PLUGIN_ENABLED", true),
    }
}

fn read_docker(r: &mut Reader<'_>) -> DockerSettings {
    DockerSettings {
        experimental: r.bool("DOCKER_EXPERIMENTAL", false),
        userns_remap: r.bool("DOCKER_USERNS_REMAP", true),
        prune_until: docker_duration(&r.matching(
            "DOCKER_PRUNE_UNTIL",
            "4h",
            |value| prune_age_secs(value).is_some(),
            PRUNE_AGE_EXPECTED,
        )),
        pre_exit_disk_cleanup: r.bool("ENABLE_PRE_EXIT_DISK_CLEANUP", false),
        builder_prune: r.bool("DOCKER_BUILDER_PRUNE_ENABLED", false),
        networking: r.keyword("DOCKER_NETWORKING_PROTOCOL", Networking::Ipv4),
        ipv4_address_pool_1: r.pool(
            "DOCKER_IPV4_ADDRESS_POOL_1",
            "172.17.0.0/12",
            Cidr::parse_v4,
            IPV4_POOL_1_SIZE,
        ),
        ipv4_address_pool_2: r.pool(
            "DOCKER_IPV4_ADDRESS_POOL_2",
            "192.168.0.0/16",
            Cidr::parse_v4,
            IPV4_POOL_2_SIZE,
        ),
        ipv6_address_pool: r.pool(
            "DOCKER_IPV6_ADDRESS_POOL",
            "2001:db8:2::/104",
            Cidr::parse_v6,
            IPV6_POOL_SIZE,
        ),
        fixed_cidr_v4: r.optional_cidr("DOCKER_FIXED_CIDR_V4", Cidr::parse_v4),
        fixed_cidr_v6: r.cidr("DOCKER_FIXED_CIDR_V6", "2001:db8:1::/64", Cidr::parse_v6),
    }
}

/// The slice limits, `Some` when `ENABLE_RESOURCE_LIMITS` is on. The limits are
/// validated either way, so a bad value is reported before someone switches them on.
fn read_resource_limits(r: &mut Reader<'_>) -> Option<ResourceLimits> {
    let enabled = r.bool("ENABLE_RESOURCE_LIMITS", false);
    let memory = |r: &mut Reader<'_>, name: &str| {
        r.matching(name, "90%", is_memory_limit, MEMORY_LIMIT_EXPECTED)
    };
    let limits = ResourceLimits {
        memory_high: memory(r, "RESOURCE_LIMITS_MEMORY_HIGH"),
        memory_max: memory(r, "RESOURCE_LIMITS_MEMORY_MAX"),
        memory_swap_max: memory(r, "RESOURCE_LIMITS_MEMORY_SWAP_MAX"),
        cpu_weight: r.number("RESOURCE_LIMITS_CPU_WEIGHT", 100u32, 1, 10_000),
        cpu_quota: r.matching(
            "RESOURCE_LIMITS_CPU_QUOTA",
            "90%",
            is_cpu_quota,
            "a percentage such as 90% or 200%",
        ),
        io_weight: r.number("RESOURCE_LIMITS_IO_WEIGHT", 80u32, 1, 10_000),
    };
    enabled.then_some(limits)
}

/// The log retention in days, `Some` when `ENABLE_EC2_LOG_RETENTION_POLICY` is on: one
/// of the periods CloudWatch Logs accepts.
fn read_log_retention(r: &mut Reader<'_>) -> Option<u32> {
    let enabled = r.bool("ENABLE_EC2_LOG_RETENTION_POLICY", false);
    let days = r.number("EC2_LOG_RETENTION_DAYS", 7u32, 1, 3653);
    if !RETENTION_DAYS.contains(&days) {
        r.problem(format!(
            "EC2_LOG_RETENTION_DAYS {days:?}: expected one of {}",
            RETENTION_DAYS.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
        ));
    }
    enabled.then_some(days)
}
/// What the failure path can still use when the configuration itself is invalid: it
/// reads the few values it needs leniently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureContext {
    pub stack_name: Option<String>,
    pub region: Option<String>,
    pub signals_cloudformation: bool,
}

impl FailureContext {
    pub fn from_env_map(vars: &HashMap<String, String>) -> FailureContext {
        let get = |name: &str| {
            vars.get(name)
                .map(|value| value.trim().to_owned())
                .filter(|value| !value.is_empty() && !value.chars().any(char::is_control))
        };
        FailureContext {
            stack_name: get("BUILDKITE_STACK_NAME"),
            region: get("AWS_REGION")
                .or_else(|| get("AWS_DEFAULT_REGION"))
                .filter(|r| is_region(r)),
            signals_cloudformation: get("BUILDKITE_STACK_DEPLOYED_BY")
                .is_some_and(|name| DeployedBy::new(&name) == DeployedBy::CloudFormation),
        }
    }
}

struct Reader<'a> {
    vars: &'a HashMap<String, String>,
    problems: Vec<String>,
    warnings: Vec<String>,
}

impl Reader<'_> {
    fn problem(&mut self, problem: String) {
        self.problems.push(problem);
    }

    /// The value, `None` when absent or empty. Control characters are refused in every
    /// input: values end up in line-based files (the agent config, systemd units)
    /// where a line break would start a new setting.
    fn optional(&mut self, name: &str) -> Option<String> {
        let value = self.vars.get(name)?;
        if value.is_empty() {
            return None;
        }
        if value.chars().any(char::is_control) {
            self.problem(format!(
                "{name} contains a line break or another control character, which no setting allows"
            ));
            return None;
        }
        Some(value.clone())
    }

    fn required(&mut self, name: &str) -> String {
        match self.optional(name) {
            Some(value) => value,
            None => {
                if self.vars.get(name).is_none_or(String::is_empty) {
                    self.problem(format!("{name} is missing"));
                }
                String::new()
            }
        }
    }

    fn string(&mut self, name: &str, default: &str) -> String {
        self.optional(name).unwrap_or_else(|| default.to_owned())
    }

    fn bool(&mut self, name: &str, default: bool) -> bool {
        match self.optional(name).as_deref() {
            None => default,
            Some("true") => true,
            Some("false") => false,
            Some(other) => {
                self.problem(format!("{name} {other:?}: expected true or false"));
                default
            }
        }
    }

    fn number<T>(&mut self, name: &str, default: T, min: T, max: T) -> T
    where
        T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
    {
        let Some(text) = self.optional(name) else { return default };
        match text.trim().parse::<T>() {
            Ok(value) if value >= min && value <= max => value,
            _ => {
                self.problem(format!(
                    "{name} {text:?}: expected a whole number from {min} to {max}"
                ));
                default
            }
        }
    }

    /// One of `T`'s words, or `default` when absent or empty.
    fn keyword<T: Keyword>(&mut self, name: &str, default: T) -> T {
        self.optional_keyword_or(name, false).unwrap_or(default)
    }

    /// One of `T`'s words, or `None` when absent or empty.
    fn optional_keyword<T: Keyword>(&mut self, name: &str) -> Option<T> {
        self.optional_keyword_or(name, true)
    }

    fn optional_keyword_or<T: Keyword>(&mut self, name: &str, empty_allowed: bool) -> Option<T> {
        let value = self.optional(name)?;
        if let Some(found) = T::ALL.iter().copied().find(|known| known.keyword() == value) {
            return Some(found);
        }
        let empty = empty_allowed.then_some("\"\"");
        let shown: Vec<&str> =
            empty.into_iter().chain(T::ALL.iter().map(|k| k.keyword())).collect();
        self.problem(format!("{name} {value:?}: expected one of {}", shown.join(", ")));
        None
    }

    fn matching(
        &mut self,
        name: &str,
        default: &str,
        valid: fn(&str) -> bool,
        expected: &str,
    ) -> String {
        let value = self.string(name, default);
        if valid(&value) {
            value
        } else {
            self.problem(format!("{name} {value:?}: expected {expected}"));
            default.to_owned()
        }
    }

    /// A network, or `default` (a valid constant) when absent or invalid.
    fn cidr(&mut self, name: &str, default: &str, parse: CidrParser) -> Cidr {
        let value = self.string(name, default);
        self.parsed_cidr(name, &value, parse)
            .unwrap_or_else(|| parse(default).expect("the default network is valid"))
    }

    fn optional_cidr(&mut self, name: &str, parse: CidrParser) -> Option<Cidr> {
        let value = self.optional(name)?;
        self.parsed_cidr(name, &value, parse)
    }

    /// An address pool that Docker splits into networks of `size` bits of prefix.
    fn pool(&mut self, name: &str, default: &str, parse: CidrParser, size: u8) -> Cidr {
        let pool = self.cidr(name, default, parse);
        if pool.prefix_len() > size {
            self.problem(format!(
                "{name} {:?}: Docker splits this pool into /{size} networks, so its prefix must be /{size} or shorter",
                pool.to_string()
            ));
        }
        pool
    }

    fn parsed_cidr(&mut self, name: &str, value: &str, parse: CidrParser) -> Option<Cidr> {
        match parse(value) {
            Ok(cidr) => Some(cidr),
            Err(error) => {
                self.problem(format!("{name} {value:?}: {error}"));
                None
            }
        }
    }

    fn optional_region(&mut self, name: &str) -> Option<String> {
        let value = self.optional(name)?;
        if !is_region(&value) {
            self.problem(format!("{name} {value:?}: expected a region name such as us-east-1"));
            return None;
        }
        Some(value)
    }

    fn bucket(&mut self, name: &str) -> Option<String> {
        let value = self.optional(name)?;
        match validate_bucket_name(&value) {
            Ok(()) => Some(value),
            Err(reason) => {
                self.problem(format!("{name} {value:?}: {reason}"));
                None
            }
        }
    }

    fn parameter(&mut self, name: &str) -> Option<String> {
        let value = self.optional(name)?;
        if is_parameter_name(&value) {
            Some(value)
        } else {
            self.problem(format!("{name} {value:?}: {PARAMETER_EXPECTED}"));
            None
        }
    }

    fn source(&mut self, name: &str) -> Option<SourceUri> {
        let value = self.optional(name)?;
        match SourceUri::new(&value) {
            Ok(source) => {
                if matches!(&source, SourceUri::Http(url) if !url.is_https()) {
                    self.warnings.push(format!(
                        "{name} uses plain http: the download can be read and changed in transit"
                    ));
                }
                Some(source)
            }
            Err(error) => {
                self.problem(format!("{name}: {error}"));
                None
            }
        }
    }

    /// A source of one file: `ssm:` paths produce an env file, not a script or a key
    /// list, so they are refused here.
    fn file_source(&mut self, name: &str) -> Option<SourceUri> {
        let source = self.source(name)?;
        if let SourceUri::Ssm(path) = &source {
            self.problem(format!(
                "{name} \"ssm:{path}\": expected s3://, https://, http:// or file:// (an ssm: path is a set of variables, not a file)"
            ));
            return None;
        }
        Some(source)
    }

    fn sudo_commands(&mut self, name: &str) -> Option<String> {
        let value = self.optional(name)?;
        let mut ok = true;
        for command in value.split(',').map(str::trim) {
            if command == "ALL" {
                self.warnings.push(format!(
                    "{name} grants ALL: the buildkite-agent user, and so every job, can run any command as root"
                ));
            } else if !command.starts_with('/') || command.contains(['\\', '#', '!']) {
                self.problem(format!(
                    "{name} item {command:?}: expected an absolute command path (optionally with arguments) or ALL, without '\\', '#' or '!'"
                ));
                ok = false;
            }
        }
        ok.then_some(value)
    }
}

fn is_region(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 32
        && value.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && value.contains('-')
}

/// An SSM parameter name (`/a/b`, `a.b`) or a parameter ARN.
pub fn is_parameter_name(value: &str) -> bool {
    let name_chars = |s: &str| {
        !s.is_empty()
            && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/'))
    };
    if let Some(rest) = value.strip_prefix("arn:") {
        let parts: Vec<&str> = rest.splitn(5, ':').collect();
        return parts.len() == 5
            && parts[0].starts_with("aws")
            && parts[1] == "ssm"
            && parts[4].strip_prefix("parameter").is_some_and(name_chars);
    }
    name_chars(value) && value != "/"
}

type CidrParser = fn(&str) -> Result<Cidr, CidrError>;

/// The length in seconds of a prune age as the template takes it: one or more terms of
/// digits and a unit (`s`, `m`, `h`, `d`), such as `4h` or `1d12h`.
fn prune_age_secs(value: &str) -> Option<u64> {
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in value.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit: u64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return None,
        };
        let amount: u64 = digits.parse().ok()?;
        total = total.checked_add(amount.checked_mul(unit)?)?;
        digits.clear();
    }
    (digits.is_empty() && !value.is_empty()).then_some(total)
}

/// A valid prune age as Docker's `until` filter takes it (a Go duration, which has no
/// `d` unit): unchanged without days, else the total in hours, minutes and seconds.
fn docker_duration(value: &str) -> String {
    let Some(total) = prune_age_secs(value).filter(|_| value.contains('d')) else {
        return value.to_owned();
    };
    let (hours, minutes, secs) = (total / 3600, total % 3600 / 60, total % 60);
    let mut text = String::new();
    for (amount, unit) in [(hours, 'h'), (minutes, 'm'), (secs, 's')] {
        if amount > 0 {
            text.push_str(&format!("{amount}{unit}"));
        }
    }
    if text.is_empty() { "0s".to_owned() } else { text }
}

fn is_memory_limit(value: &str) -> bool {
    if value == "infinity" {
        return true;
    }
    if let Some(percent) = value.strip_suffix('%') {
        return percent.parse::<u8>().is_ok_and(|p| (1..=100).contains(&p))
            && !percent.starts_with('0');
    }
    let digits = value.strip_suffix(['K', 'k', 'M', 'm', 'G', 'g', 'T', 't']).unwrap_or(value);
    !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit())
}

fn is_cpu_quota(value: &str) -> bool {
    value
        .strip_suffix('%')
        .is_some_and(|digits| !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()))
}

#[cfg(test)]
pub(crate) mod tests {
    use expect_test::expect;
    use test_case::test_case;

    use super::*;

    /// A realistic, complete UserData environment.
    pub(crate) fn full_env() -> HashMap<String, String> {
        [
            ("BUILDKITE_STACK_NAME", "ci-linux"),
            ("BUILDKITE_STACK_VERSION", "v7.0.0"),
            ("BUILDKITE_STACK_DEPLOYED_BY", "cloudformation"),
            ("BUILDKITE_SCALE_IN_IDLE_PERIOD", "600"),
            ("BUILDKITE_SECRETS_BUCKET", "ci-linux-managedsecretsbucket-1x2y3z"),
            ("BUILDKITE_SECRETS_BUCKET_REGION", "us-east-1"),
            ("BUILDKITE_SECRETS_PLUGIN_SKIP_SSH_KEY_NOT_FOUND_WARNING", "false"),
            ("BUILDKITE_ARTIFACTS_BUCKET", "ci-artifacts"),
            ("BUILDKITE_S3_DEFAULT_REGION", "us-east-1"),
            ("BUILDKITE_S3_ACL", "private"),
            ("BUILDKITE_AGENT_TOKEN_PATH", "/ci-linux/buildkite/agent-token"),
            ("BUILDKITE_AGENTS_PER_INSTANCE", "2"),
            ("BUILDKITE_AGENT_ENDPOINT", "https://agent-edge.buildkite.com/v3"),
            ("BUILDKITE_AGENT_TAGS", "os=linux,size=large"),
            ("BUILDKITE_AGENT_TIMESTAMP_LINES", "false"),
            ("BUILDKITE_AGENT_EXPERIMENTS", "normalised-upload-paths"),
            ("BUILDKITE_AGENT_TRACING_BACKEND", ""),
            ("BUILDKITE_AGENT_SIGNING_KEY_PATH", ""),
            ("BUILDKITE_AGENT_SIGNING_KEY_ID", ""),
            ("BUILDKITE_AGENT_VERIFICATION_KEY_PATH", ""),
            ("BUILDKITE_AGENT_RELEASE", "stable"),
            ("BUILDKITE_AGENT_CANCEL_GRACE_PERIOD", "60"),
            ("BUILDKITE_AGENT_SIGNAL_GRACE_PERIOD_SECONDS", "-1"),
            ("BUILDKITE_AGENT_SIGNING_KMS_KEY", ""),
            ("BUILDKITE_AGENT_JOB_VERIFICATION_NO_SIGNATURE_BEHAVIOR", "block"),
            ("BUILDKITE_QUEUE", "default"),
            ("BUILDKITE_AGENT_ENABLE_GIT_MIRRORS", "true"),
            ("BUILDKITE_GIT_MIRROR_SEED_BUCKET", ""),
            ("BUILDKITE_ELASTIC_BOOTSTRAP_SCRIPT", ""),
            ("BUILDKITE_ENV_FILE_URL", "s3://ci-config/agent.env"),
            ("BUILDKITE_ENABLE_INSTANCE_STORAGE", "false"),
            ("BUILDKITE_AUTHORIZED_USERS_URL", ""),
            ("BUILDKITE_ECR_POLICY", "readonly"),
            ("BUILDKITE_TERMINATE_INSTANCE_AFTER_JOB", "false"),
            ("BUILDKITE_AGENT_DISCONNECT_AFTER_UPTIME", "0"),
            ("BUILDKITE_TERMINATE_INSTANCE_ON_DISK_FULL", "false"),
            ("BUILDKITE_PURGE_BUILDS_ON_DISK_FULL", "true"),
            ("BUILDKITE_ADDITIONAL_SUDO_PERMISSIONS", ""),
            ("AWS_DEFAULT_REGION", "us-east-1"),
            ("AWS_REGION", "us-east-1"),
            ("SECRETS_PLUGIN_ENABLED", "true"),
            ("ECR_PLUGIN_ENABLED", "true"),
            ("DOCKER_LOGIN_PLUGIN_ENABLED", "false"),
            ("ECR_CREDENTIAL_HELPER_ENABLED", "false"),
            ("DOCKER_EXPERIMENTAL", "false"),
            ("DOCKER_USERNS_REMAP", "true"),
            ("DOCKER_PRUNE_UNTIL", "4h"),
            ("ENABLE_PRE_EXIT_DISK_CLEANUP", "false"),
            ("DOCKER_BUILDER_PRUNE_ENABLED", "false"),
            ("ENABLE_RESOURCE_LIMITS", "false"),
            ("ENABLE_EC2_LOG_RETENTION_POLICY", "false"),
            ("EC2_LOG_RETENTION_DAYS", "7"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    fn with(changes: &[(&str, &str)]) -> HashMap<String, String> {
        let mut env = full_env();
        for (name, value) in changes {
            env.insert((*name).to_owned(), (*value).to_owned());
        }
        env
    }

    fn error(env: &HashMap<String, String>) -> String {
        BootConfig::from_env_map(env).unwrap_err().to_string()
    }

    #[test]
    fn parses_a_complete_environment() {
        let config = BootConfig::from_env_map(&full_env()).unwrap();
        assert_eq!(config.agents_per_instance.get(), 2);
        assert_eq!(config.agent_tags, ["os=linux", "size=large"]);
        assert_eq!(config.env_file.as_ref().unwrap().to_string(), "s3://ci-config/agent.env");
        assert!(config.git_mirrors && config.purge_builds_on_disk_full);
        assert!(!config.plugins.docker_login && config.plugins.secrets);
        assert!(config.signals_cloudformation());
        assert_eq!(config.resource_limits, None);
        assert!(config.warnings.is_empty());
    }

    #[test]
    fn only_the_identity_of_the_stack_is_required() {
        let minimal: HashMap<String, String> = [
            ("BUILDKITE_STACK_NAME", "s"),
            ("BUILDKITE_STACK_VERSION", "dev"),
            ("BUILDKITE_STACK_DEPLOYED_BY", "terraform"),
            ("BUILDKITE_AGENT_TOKEN_PATH", "/s/token"),
            ("BUILDKITE_QUEUE", "default"),
            ("AWS_DEFAULT_REGION", "eu-west-1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let config = BootConfig::from_env_map(&minimal).unwrap();
        assert_eq!(config.region, "eu-west-1");
        assert_eq!(config.s3_default_region, "eu-west-1");
        assert_eq!(config.agent_endpoint, DEFAULT_AGENT_ENDPOINT);
        assert_eq!(config.scale_in_idle_period_secs, 600);
        assert_eq!(config.release, AgentRelease::Stable);
        assert!(config.docker.userns_remap);
        assert!(!config.signals_cloudformation());
    }

    #[test]
    fn plain_http_endpoints_are_accepted_on_loopback_only() {
        for endpoint in ["http://127.0.0.1:9000/v3", "http://[::1]:9000/v3", "http://localhost/v3"]
        {
            let config = BootConfig::from_env_map(&with(&[("BUILDKITE_AGENT_ENDPOINT", endpoint)]));
            assert_eq!(config.map(|config| config.agent_endpoint), Ok(endpoint.to_owned()));
        }
    }

    #[test]
    fn reports_every_problem_at_once() {
        let mut env = with(&[
            ("BUILDKITE_AGENTS_PER_INSTANCE", "0"),
            ("BUILDKITE_AGENT_RELEASE", "nightly"),
            ("BUILDKITE_TERMINATE_INSTANCE_AFTER_JOB", "yes"),
            ("BUILDKITE_ENV_FILE_URL", "/etc/agent.env"),
            ("BUILDKITE_AGENT_TAGS", "a=b\nhooks-path=/tmp/evil"),
            ("DOCKER_PRUNE_UNTIL", "4 hours"),
            ("ENABLE_RESOURCE_LIMITS", "true"),
            ("RESOURCE_LIMITS_MEMORY_MAX", "101%"),
            ("BUILDKITE_QUEUE", ""),
        ]);
        env.remove("BUILDKITE_STACK_NAME");
        env.remove("AWS_REGION");
        env.remove("AWS_DEFAULT_REGION");
        expect![[r#"invalid boot configuration (10 problems): BUILDKITE_STACK_NAME is missing; AWS_REGION is missing (or AWS_DEFAULT_REGION): the stack's region; BUILDKITE_QUEUE is missing; BUILDKITE_AGENTS_PER_INSTANCE "0": expected a whole number from 1 to 10000; BUILDKITE_AGENT_TAGS contains a line break or another control character, which no setting allows; BUILDKITE_AGENT_RELEASE "nightly": expected one of stable, beta, edge, oldstable; BUILDKITE_TERMINATE_INSTANCE_AFTER_JOB "yes": expected true or false; BUILDKITE_ENV_FILE_URL: invalid source "/etc/agent.env": no scheme: expected s3://BUCKET/KEY, ssm:/PATH, https://…, http://… or file:///PATH; for a local file write file:///etc/agent.env; DOCKER_PRUNE_UNTIL "4 hours": expected a duration such as 4h or 1d12h (digits followed by s, m, h or d); RESOURCE_LIMITS_MEMORY_MAX "101%": expected a size such as 512M, a percentage from 1% to 100%, or infinity"#]].assert_eq(&error(&env));
    }

    #[test_case("BUILDKITE_AGENT_TOKEN_PATH", "token with spaces", "expected an SSM parameter name"; "token path")]
    #[test_case("BUILDKITE_AGENT_SIGNING_KEY_PATH", "$(id)", "expected an SSM parameter name"; "signing key")]
    #[test_case("BUILDKITE_SECRETS_BUCKET", "Bad_Bucket", "BUILDKITE_SECRETS_BUCKET \"Bad_Bucket\""; "bucket")]
    #[test_case("BUILDKITE_ELASTIC_BOOTSTRAP_SCRIPT", "ssm:/a/b", "an ssm: path is a set of variables"; "ssm script")]
    #[test_case("BUILDKITE_ADDITIONAL_SUDO_PERMISSIONS", "/usr/bin/docker,rm -rf /", "item \"rm -rf /\""; "sudo relative")]
    #[test_case("BUILDKITE_ADDITIONAL_SUDO_PERMISSIONS", "/bin/x # comment", "without '\\', '#' or '!'"; "sudo comment")]
    #[test_case("EC2_LOG_RETENTION_DAYS", "8", "expected one of 1, 3, 5, 7"; "retention")]
    #[test_case("AWS_REGION", "us_east_1", "AWS_REGION \"us_east_1\""; "region")]
    #[test_case("BUILDKITE_STACK_NAME", "a\rb", "BUILDKITE_STACK_NAME contains a line break"; "carriage return")]
    #[test_case("BUILDKITE_AGENT_ENDPOINT", "http://agent.buildkite.com/v3", "BUILDKITE_AGENT_ENDPOINT \"http://agent.buildkite.com/v3\": expected an https:// URL (http:// only to a loopback host: 127.0.0.0/8, ::1 or localhost)"; "plain http endpoint")]
    #[test_case("BUILDKITE_AGENT_ENDPOINT", "agent.buildkite.com", "BUILDKITE_AGENT_ENDPOINT \"agent.buildkite.com\": expected an https:// URL"; "endpoint without scheme")]
    fn rejects(name: &str, value: &str, expected: &str) {
        let message = error(&with(&[(name, value)]));
        assert!(message.contains(expected), "{message}");
        assert!(message.starts_with("invalid boot configuration (1 problem): "), "{message}");
    }

    #[test]
    fn accepts_hostile_but_harmless_values() {
        let config = BootConfig::from_env_map(&with(&[
            ("BUILDKITE_STACK_NAME", "it's \"$(touch /tmp/pwned)\" `id`"),
            ("BUILDKITE_AGENT_TAGS", "q=\"quoted\",dollar=$(id),,"),
            ("BUILDKITE_ADDITIONAL_SUDO_PERMISSIONS", "/usr/bin/systemctl restart docker, ALL"),
            ("BUILDKITE_AUTHORIZED_USERS_URL", "http://keys.example.com/keys"),
        ]))
        .unwrap();
        assert_eq!(config.agent_tags, ["q=\"quoted\"", "dollar=$(id)"]);
        assert_eq!(config.warnings.len(), 2, "{:?}", config.warnings);
    }

    #[test]
    fn word_settings_become_enums_and_empty_settings_none() {
        let defaults = BootConfig::from_env_map(&full_env()).unwrap();
        assert_eq!(defaults.deployed_by, DeployedBy::CloudFormation);
        assert_eq!(defaults.tracing_backend, None);
        assert_eq!(defaults.signal_grace_period_secs, None);
        assert_eq!(
            (defaults.signing_kms_key, defaults.experiments.as_deref()),
            (None, Some("normalised-upload-paths"))
        );
        assert_eq!(defaults.ecr_policy, EcrPolicy::ReadOnly);
        assert_eq!(defaults.s3_acl, S3Acl::Private);
        assert_eq!(defaults.verification_failure_behavior, VerificationFailureBehavior::Block);
        assert_eq!(defaults.secrets_bucket_region.as_deref(), Some("us-east-1"));
        let config = BootConfig::from_env_map(&with(&[
            ("BUILDKITE_STACK_DEPLOYED_BY", "terraform"),
            ("BUILDKITE_AGENT_TRACING_BACKEND", "opentelemetry"),
            ("BUILDKITE_AGENT_SIGNAL_GRACE_PERIOD_SECONDS", "0"),
            ("BUILDKITE_ECR_POLICY", "poweruser-pullthrough"),
            ("BUILDKITE_S3_ACL", "bucket-owner-full-control"),
            ("BUILDKITE_AGENT_JOB_VERIFICATION_NO_SIGNATURE_BEHAVIOR", "warn"),
            ("BUILDKITE_SECRETS_BUCKET", ""),
            ("BUILDKITE_SECRETS_BUCKET_REGION", ""),
        ]))
        .unwrap();
        assert_eq!(config.deployed_by, DeployedBy::Other("terraform".to_owned()));
        assert_eq!(config.tracing_backend, Some(TracingBackend::OpenTelemetry));
        assert_eq!(config.signal_grace_period_secs, Some(0));
        assert_eq!(config.ecr_policy, EcrPolicy::PowerUserPullThrough);
        assert_eq!(config.s3_acl, S3Acl::BucketOwnerFullControl);
        assert_eq!(config.verification_failure_behavior, VerificationFailureBehavior::Warn);
        assert_eq!((config.secrets_bucket, config.secrets_bucket_region), (None, None));
        expect![[r#"invalid boot configuration (1 problem): BUILDKITE_AGENT_TRACING_BACKEND "jaeger": expected one of "", datadog, opentelemetry"#]]
            .assert_eq(&error(&with(&[("BUILDKITE_AGENT_TRACING_BACKEND", "jaeger")])));
    }

    #[test]
    fn failure_context_reads_what_it_can() {
        let mut env = with(&[("BUILDKITE_AGENTS_PER_INSTANCE", "zero")]);
        env.remove("AWS_REGION");
        let context = FailureContext::from_env_map(&env);
        assert_eq!(context.stack_name.as_deref(), Some("ci-linux"));
        assert_eq!(context.region.as_deref(), Some("us-east-1"));
        assert!(context.signals_cloudformation);
        let context = FailureContext::from_env_map(&HashMap::new());
        assert_eq!(
            context,
            FailureContext { stack_name: None, region: None, signals_cloudformation: false }
        );
    }

    #[test]
    fn env_vars_lists_every_variable_read() {
        // Every variable in the complete environment is one the parser knows.
        for name in full_env().keys() {
            assert!(BootConfig::ENV_VARS.contains(&name.as_str()), "{name} not in ENV_VARS");
        }
        let mut sorted = BootConfig::ENV_VARS.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), BootConfig::ENV_VARS.len(), "duplicates in ENV_VARS");
    }

    #[test_case("4h", Some("4h"))]
    #[test_case("90m", Some("90m"))]
    #[test_case("1d12h30m", Some("36h30m"))]
    #[test_case("7d", Some("168h"))]
    #[test_case("0d", Some("0s"))]
    #[test_case("h", None)]
    #[test_case("4", None)]
    #[test_case("1.5h", None)]
    #[test_case("99999999999999999999d", None)]
    #[test_case("", None)]
    fn prune_ages(value: &str, docker: Option<&str>) {
        assert_eq!(prune_age_secs(value).map(|_| docker_duration(value)).as_deref(), docker);
    }

    #[test]
    fn reads_the_docker_daemon_settings() {
        let config = BootConfig::from_env_map(&with(&[
            ("DOCKER_NETWORKING_PROTOCOL", "dualstack"),
            ("DOCKER_IPV4_ADDRESS_POOL_1", "10.0.0.0/8"),
            ("DOCKER_IPV6_ADDRESS_POOL", "fd00::/80"),
            ("DOCKER_FIXED_CIDR_V4", "172.17.1.0/24"),
            ("DOCKER_FIXED_CIDR_V6", ""),
            ("DOCKER_PRUNE_UNTIL", "2d"),
            ("BUILDKITE_MOUNT_TMPFS_AT_TMP", "false"),
        ]))
        .unwrap();
        let docker = &config.docker;
        assert_eq!(docker.networking, Networking::DualStack);
        assert_eq!(docker.ipv4_address_pool_1.to_string(), "10.0.0.0/8");
        assert_eq!(docker.ipv4_address_pool_2.to_string(), "192.168.0.0/16");
        assert_eq!(docker.ipv6_address_pool.to_string(), "fd00::/80");
        assert_eq!(
            docker.fixed_cidr_v4.map(|cidr| cidr.to_string()).as_deref(),
            Some("172.17.1.0/24")
        );
        assert_eq!(docker.fixed_cidr_v6.to_string(), "2001:db8:1::/64");
        assert_eq!(docker.prune_until, "48h");
        assert!(!config.mount_tmpfs_at_tmp);
        let defaults = BootConfig::from_env_map(&full_env()).unwrap();
        assert_eq!(defaults.docker.networking, Networking::Ipv4);
        assert_eq!(defaults.docker.fixed_cidr_v4, None);
        assert!(defaults.mount_tmpfs_at_tmp);
    }

    #[test]
    fn reports_every_bad_docker_setting_at_once() {
        let env = with(&[
            ("DOCKER_NETWORKING_PROTOCOL", "ipv6"),
            ("DOCKER_IPV4_ADDRESS_POOL_1", "10.0.0.0/24"),
            ("DOCKER_IPV4_ADDRESS_POOL_2", "192.168.0/16"),
            ("DOCKER_IPV6_ADDRESS_POOL", "2001:db8:2::/120"),
            ("DOCKER_FIXED_CIDR_V4", "172.17.1.0"),
            ("DOCKER_FIXED_CIDR_V6", "2001:db8:1::/129"),
            ("DOCKER_PRUNE_UNTIL", "4hours"),
            ("BUILDKITE_MOUNT_TMPFS_AT_TMP", "no"),
        ]);
        expect![[r#"invalid boot configuration (8 problems): BUILDKITE_MOUNT_TMPFS_AT_TMP "no": expected true or false; DOCKER_PRUNE_UNTIL "4hours": expected a duration such as 4h or 1d12h (digits followed by s, m, h or d); DOCKER_NETWORKING_PROTOCOL "ipv6": expected one of ipv4, dualstack; DOCKER_IPV4_ADDRESS_POOL_1 "10.0.0.0/24": Docker splits this pool into /20 networks, so its prefix must be /20 or shorter; DOCKER_IPV4_ADDRESS_POOL_2 "192.168.0/16": expected an IPv4 network such as 172.17.0.0/12 (not an IPv4 address); DOCKER_IPV6_ADDRESS_POOL "2001:db8:2::/120": Docker splits this pool into /112 networks, so its prefix must be /112 or shorter; DOCKER_FIXED_CIDR_V4 "172.17.1.0": expected an IPv4 network such as 172.17.0.0/12 (no /prefix); DOCKER_FIXED_CIDR_V6 "2001:db8:1::/129": expected an IPv6 network such as 2001:db8:1::/64 (prefix must be 0 to 128)"#]].assert_eq(&error(&env));
    }

    #[test_case("/a/b", true)]
    #[test_case("plain.name", true)]
    #[test_case("/", false)]
    #[test_case("arn:aws:ssm:us-east-1:123456789012:parameter/a/b", true)]
    #[test_case("arn:aws-cn:ssm:cn-north-1:123456789012:parameter/x", true)]
    #[test_case("arn:aws:s3:::bucket", false)]
    fn parameter_names(value: &str, valid: bool) {
        assert_eq!(is_parameter_name(value), valid);
    }
}
