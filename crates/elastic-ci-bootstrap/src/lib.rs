//! `elastic-ci-bootstrap`: the commands that run on each agent instance.
//!
//! - `fetch SOURCE DEST`: download a file from `s3://`, `ssm:`, `https://`, `http://` or
//!   `file://` and put it in place atomically with a given mode.
//! - `boot`: configure the instance as an agent host, once ([`boot`]).
//! - `terminate`: retire this instance ([`terminate`]).
//! - `stop-gracefully`: drain the agents for a lifecycle notice ([`stop`]).
//! - `watch`: wait for a removal notice in the instance metadata and drain ([`watch`]).
//! - `check-disk`: free space and inodes for the hooks ([`disk`]).
//! - `fix-permissions AGENT ORG PIPELINE`: give a checkout back to the agent user
//!   ([`fixperms`]).
//!
//! ## Configuration
//!
//! - `boot` reads the UserData variables of
//!   `elastic_ci_core::boot::config::BootConfig::ENV_VARS`:
//!   `BUILDKITE_STACK_NAME`, `BUILDKITE_STACK_VERSION`, `BUILDKITE_STACK_DEPLOYED_BY`,
//!   `AWS_REGION`, `AWS_DEFAULT_REGION`, `BUILDKITE_QUEUE`,
//!   `BUILDKITE_AGENT_TOKEN_PATH`, `BUILDKITE_AGENTS_PER_INSTANCE`,
//!   `BUILDKITE_AGENT_ENDPOINT`, `BUILDKITE_AGENT_TAGS`,
//!   `BUILDKITE_AGENT_TIMESTAMP_LINES`, `BUILDKITE_AGENT_EXPERIMENTS`,
//!   `BUILDKITE_AGENT_TRACING_BACKEND`, `BUILDKITE_AGENT_SIGNING_KEY_PATH`,
//!   `BUILDKITE_AGENT_SIGNING_KEY_ID`, `BUILDKITE_AGENT_VERIFICATION_KEY_PATH`,
//!   `BUILDKITE_AGENT_RELEASE`, `BUILDKITE_AGENT_CANCEL_GRACE_PERIOD`,
//!   `BUILDKITE_AGENT_SIGNAL_GRACE_PERIOD_SECONDS`, `BUILDKITE_AGENT_SIGNING_KMS_KEY`,
//!   `BUILDKITE_AGENT_JOB_VERIFICATION_NO_SIGNATURE_BEHAVIOR`,
//!   `BUILDKITE_SCALE_IN_IDLE_PERIOD`, `BUILDKITE_TERMINATE_INSTANCE_AFTER_JOB`,
//!   `BUILDKITE_AGENT_DISCONNECT_AFTER_UPTIME`,
//!   `BUILDKITE_TERMINATE_INSTANCE_ON_DISK_FULL`,
//!   `BUILDKITE_PURGE_BUILDS_ON_DISK_FULL`, `BUILDKITE_SECRETS_BUCKET`,
//!   `BUILDKITE_SECRETS_BUCKET_REGION`,
//!   `BUILDKITE_SECRETS_PLUGIN_SKIP_SSH_KEY_NOT_FOUND_WARNING`,
//!   `BUILDKITE_ARTIFACTS_BUCKET`, `BUILDKITE_S3_DEFAULT_REGION`, `BUILDKITE_S3_ACL`,
//!   `BUILDKITE_AGENT_ENABLE_GIT_MIRRORS`, `BUILDKITE_GIT_MIRROR_SEED_BUCKET`,
//!   `BUILDKITE_ELASTIC_BOOTSTRAP_SCRIPT`, `BUILDKITE_ENV_FILE_URL`,
//!   `BUILDKITE_AUTHORIZED_USERS_URL`, `BUILDKITE_ENABLE_INSTANCE_STORAGE`,
//!   `BUILDKITE_MOUNT_TMPFS_AT_TMP`, `BUILDKITE_ECR_POLICY`,
//!   `BUILDKITE_ADDITIONAL_SUDO_PERMISSIONS`, `SECRETS_PLUGIN_ENABLED`,
//!   `ECR_PLUGIN_ENABLED`, `DOCKER_LOGIN_PLUGIN_ENABLED`,
//!   `ECR_CREDENTIAL_HELPER_ENABLED`, `DOCKER_EXPERIMENTAL`, `DOCKER_USERNS_REMAP`,
//!   `DOCKER_PRUNE_UNTIL`, `ENABLE_PRE_EXIT_DISK_CLEANUP`,
//!   `DOCKER_BUILDER_PRUNE_ENABLED`, `DOCKER_NETWORKING_PROTOCOL`,
//!   `DOCKER_IPV4_ADDRESS_POOL_1`, `DOCKER_IPV4_ADDRESS_POOL_2`,
//!   `DOCKER_IPV6_ADDRESS_POOL`, `DOCKER_FIXED_CIDR_V4`, `DOCKER_FIXED_CIDR_V6`,
//!   `ENABLE_RESOURCE_LIMITS`, `RESOURCE_LIMITS_MEMORY_HIGH`,
//!   `RESOURCE_LIMITS_MEMORY_MAX`, `RESOURCE_LIMITS_MEMORY_SWAP_MAX`,
//!   `RESOURCE_LIMITS_CPU_WEIGHT`, `RESOURCE_LIMITS_CPU_QUOTA`,
//!   `RESOURCE_LIMITS_IO_WEIGHT`, `ENABLE_EC2_LOG_RETENTION_POLICY`,
//!   `EC2_LOG_RETENTION_DAYS`, `BUILDKITE_WINDOWS_ADMINISTRATOR`.
//! - `check-disk` reads `DISK_MIN_AVAILABLE`, `DISK_MIN_INODES`,
//!   `BUILDKITE_PURGE_BUILDS_ON_DISK_FULL`, `BUILDKITE_BUILD_PATH` and
//!   `BUILDKITE_BUILD_CHECKOUT_PATH` from the job environment.
//! - `AWS_EC2_METADATA_SERVICE_ENDPOINT`: the instance metadata service (default
//!   `http://169.254.169.254`).
//! - `ELASTIC_CI_LOG`: log filter for stderr (default `info`); `boot` also appends its
//!   log to `/var/log/elastic-stack.log` under `--root`.
//! - The standard AWS variables (`AWS_REGION`, `AWS_PROFILE`, `AWS_ENDPOINT_URL`,
//!   `AWS_ENDPOINT_URL_<SERVICE>`, credentials), read by the SDK.
//! - `SSL_CERT_FILE` / `SSL_CERT_DIR`: extra trusted certificates for HTTPS sources.

pub(crate) mod boot;
pub mod child;
mod commands;
pub(crate) mod disk;
pub(crate) mod fetch;
pub mod files;
#[cfg(unix)]
pub mod fixperms;
mod output;
mod platform;
pub mod seed;
pub mod stop;
pub mod system;
pub(crate) mod terminate;
pub mod watch;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use elastic_ci_aws::config::{AwsSettings, aws_sdk_config};
use elastic_ci_aws::s3::S3ObjectStore;
use elastic_ci_aws::ssm::SsmParameterStore;
use elastic_ci_core::uri::SourceUri;

/// Sets up and looks after an Elastic CI Stack agent instance.
#[derive(Debug, Parser)]
#[command(name = "elastic-ci-bootstrap", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Download SOURCE to DEST, atomically.
    ///
    /// SOURCE is one of:
    ///   s3://BUCKET/KEY   one S3 object, streamed to DEST;
    ///   ssm:/PATH         every SSM parameter under PATH (recursive, decrypted), written
    ///                     as an env file for systemd's EnvironmentFile= and bash's
    ///                     `source`: NAME="value", NAME being the last path segment in
    ///                     upper case; invalid names are skipped with a warning;
    ///   https://… http:// a download that follows redirects; any non-2xx status fails;
    ///   file:///PATH      a local file.
    ///
    /// DEST is replaced only when the whole download succeeded; on failure it is left
    /// as it was and the exit status is 1. Invalid arguments exit with 2.
    #[command(verbatim_doc_comment)]
    Fetch(FetchArgs),

    /// Configure this instance as a Buildkite agent host: the UserData's last step.
    ///
    /// Reads the stack's settings from the environment (the UserData variables:
    /// BUILDKITE_STACK_NAME, BUILDKITE_STACK_VERSION, BUILDKITE_STACK_DEPLOYED_BY,
    /// BUILDKITE_AGENT_TOKEN_PATH, BUILDKITE_QUEUE, AWS_REGION and the optional rest;
    /// see the README), validates all of them before changing anything, then on every
    /// boot mounts instance storage at /mnt/ephemeral (BUILDKITE_ENABLE_INSTANCE_STORAGE;
    /// RAID-0 over several NVMe devices, never formatting ext4 again), switches off the
    /// tmpfs at /tmp (BUILDKITE_MOUNT_TMPFS_AT_TMP=false), configures Docker
    /// (/etc/docker/daemon.json, /etc/subuid, /etc/subgid, the GC timers) and restarts
    /// it; and on the first boot writes cfn-env, buildkite-agent.cfg (with the token
    /// from SSM), signing keys, the agent env file, authorized keys and systemd
    /// settings, seeds git mirrors, runs the bootstrap script and starts the
    /// agent.
    ///
    /// A status file (/var/log/elastic-stack-bootstrap-status) makes a later boot stop
    /// after the every-boot steps once a boot succeeded, and fail after a half-done
    /// boot. On failure the
    /// instance is marked Unhealthy, CloudFormation gets a FAILURE signal when it
    /// deployed the stack, and the exit status is 1 (or the bootstrap script's own
    /// status) with the failed step named.
    Boot(BootArgs),

    /// Terminate this instance and lower its group's desired capacity.
    ///
    /// Run when the agent stops (the agent unit's ExecStopPost). Waits --drain-secs
    /// for logs to reach CloudWatch; if another buildkite-agent process of the agent
    /// user still runs, leaves the instance to the last one to stop and exits 0.
    /// Otherwise reads the instance id
    /// and region from the metadata service (3 attempts each), then asks Auto Scaling
    /// to terminate the instance with the desired capacity decremented; if that is
    /// refused (desired capacity at MinSize), terminates it without decrement; if that
    /// fails too, marks it Unhealthy. Exits 1 only when all three fail.
    Terminate(TerminateArgs),

    /// Stop the agent gracefully for a lifecycle notice (the original's lifecycle
    /// handler; `watch` does this itself).
    ///
    /// For a spot interruption (ec2:SPOT_INSTANCE_TERMINATION TIME), asks the agent to
    /// stop (SIGTERM), waits for its jobs, and tells it to cancel them (SIGQUIT) 20
    /// seconds before TIME so it can deregister. For anything else, stops the agent
    /// unit and waits for every agent process to exit; for
    /// autoscaling:EC2_INSTANCE_TERMINATING with --lifecycle-hook, then completes the
    /// lifecycle action (CONTINUE).
    StopGracefully(StopArgs),

    /// Wait for a removal notice, then drain the agents so no running job is cut short.
    ///
    /// Polls the instance metadata service every --poll-secs for
    /// autoscaling/target-lifecycle-state, spot/instance-action and
    /// events/recommendations/rebalance. On Terminated (a termination lifecycle hook
    /// waits) or Warmed:* (the group moves the instance into its warm pool): stops the
    /// agents without cancelling their jobs, sends a lifecycle heartbeat every
    /// --heartbeat-secs while jobs run, then completes the lifecycle action with
    /// CONTINUE; the instance is left to Auto Scaling (terminate stands down). On a
    /// spot interruption: stops the agents and tells them to cancel their jobs 20
    /// seconds before the interruption. On a rebalance recommendation: stops the
    /// agents; their jobs finish and the instance retires. Exits after one notice.
    Watch(WatchArgs),

    /// Check free disk space and inodes; exit 0 if there is enough, 1 if not.
    ///
    /// Measures the file system of docker's data root (data-root in
    /// /etc/docker/daemon.json, else /var/lib/docker; a missing directory is measured
    /// at its nearest existing ancestor) or of --path. Thresholds come from the
    /// environment: DISK_MIN_AVAILABLE (KiB, default 5242880 = 5 GiB) and
    /// DISK_MIN_INODES (default 250000). With BUILDKITE_PURGE_BUILDS_ON_DISK_FULL=true
    /// and too little space, first deletes this agent's builds: the directory under
    /// BUILDKITE_BUILD_PATH named by the first component of
    /// BUILDKITE_BUILD_CHECKOUT_PATH, which must be one plain name of an existing
    /// directory. Messages go to stderr; an invalid threshold exits 2.
    CheckDisk(CheckDiskArgs),

    /// Give one pipeline's checkout back to the buildkite-agent user.
    ///
    /// Run by the environment hook through sudo after containers left root-owned
    /// files behind. Changes the owner of
    /// /var/lib/buildkite-agent/builds/AGENT/ORG/PIPELINE and everything in it to
    /// buildkite-agent, never following a symlink
    /// and never leaving that directory; the builds directory is fixed and there are
    /// no options. Each argument must be one plain directory name (no '/', not '.' or
    /// '..', not empty). Exit status: 0 done (or nothing checked out yet), 1 wrong
    /// number of arguments, 2 invalid argument, 3 the checkout cannot be opened safely
    /// (a symlink, not a directory, another mount), 4 no buildkite-agent user, 5 a
    /// change of owner failed.
    FixPermissions(FixPermsArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct BootArgs {
    /// The directory that stands for / : every file is written under it. Anything
    /// other than / requires --record-actions or --dry-run.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub(crate) root: PathBuf,
    /// Print the plan and change nothing (asks the metadata service once; does not
    /// read the token).
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Append each system action (chown, systemctl, mount, mkfs, mdadm, commands run
    /// as another user, the CloudFormation signal) to FILE as one JSON object per line
    /// instead of performing it, and answer questions about the system (mounts, NVMe
    /// devices, ids) from --system-state. Files are still written under --root, AWS
    /// is still called and the bootstrap script still runs.
    #[arg(long, value_name = "FILE")]
    pub(crate) record_actions: Option<PathBuf>,
    /// With --record-actions: answer the boot's questions about the system from FILE
    /// (JSON with optional fields docker_version, mounts [{source, target, fs_type}],
    /// nvme_list (the text of `nvme list`), block_devices {DEVICE: "ext4" or null},
    /// users {NAME: UID}, groups {NAME: GID}). Without it: docker version unknown,
    /// nothing mounted, no NVMe devices, buildkite-agent uid 2000, docker gid 992.
    #[arg(long, value_name = "FILE", requires = "record_actions")]
    pub(crate) system_state: Option<PathBuf>,
    /// Pause after the first failed metadata request, in milliseconds; it doubles
    /// after each further failure (5 attempts, pauses at most 30 s).
    #[arg(long, value_name = "MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(0..=30_000))]
    pub(crate) metadata_retry_delay_ms: u64,
    /// Give up a boot that has not finished after SECS seconds: the instance is then
    /// marked Unhealthy and CloudFormation gets a FAILURE signal, as for any failed
    /// step. Each command the boot runs has its own limit too (5 minutes; 30 for
    /// mkfs and mdadm).
    #[arg(long, value_name = "SECS", default_value_t = boot::DEFAULT_DEADLINE.as_secs(), value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub(crate) deadline_secs: u64,
}

#[derive(Debug, clap::Args)]
pub(crate) struct TerminateArgs {
    /// Seconds to wait first, so the agent's last log lines reach CloudWatch.
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=600))]
    pub(crate) drain_secs: u64,
    /// Pause after a failed metadata request, in milliseconds (doubled once; 3
    /// attempts per request).
    #[arg(long, value_name = "MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(0..=30_000))]
    pub(crate) metadata_retry_delay_ms: u64,
    /// The user whose buildkite-agent processes count as the instance's agents.
    #[arg(long, value_name = "USER", default_value = elastic_ci_core::boot::plan::AGENT_USER, hide = true)]
    pub(crate) agent_user: String,
    /// The process table the agents are looked for in.
    #[arg(long, value_name = "DIR", default_value = "/proc", hide = true)]
    pub(crate) proc_dir: PathBuf,
    /// The marker `watch` writes when Auto Scaling itself removes or stops the
    /// instance: while it exists, terminate does nothing.
    #[arg(long, value_name = "FILE", default_value = platform::INSTANCE_OS.drain_marker(), hide = true)]
    pub(crate) drain_marker: PathBuf,
}

#[derive(Debug, clap::Args)]
pub(crate) struct StopArgs {
    /// The lifecycle transition: ec2:SPOT_INSTANCE_TERMINATION,
    /// autoscaling:EC2_INSTANCE_TERMINATING, or anything else (or nothing) for a
    /// plain graceful stop.
    pub(crate) transition: Option<String>,
    /// This instance's id (the original's lifecycle listener passed it); read from the metadata service
    /// when needed and absent.
    pub(crate) instance_id: Option<String>,
    /// For a spot interruption: when it happens, in RFC 3339 (the original's lifecycle listener passed it).
    pub(crate) termination_time: Option<String>,
    /// The Auto Scaling lifecycle hook to complete after an
    /// autoscaling:EC2_INSTANCE_TERMINATING stop.
    #[arg(long, value_name = "NAME")]
    pub(crate) lifecycle_hook: Option<String>,
    /// The instance's Auto Scaling group (default: its aws:autoscaling:groupName tag
    /// from the metadata service).
    #[arg(long, value_name = "NAME")]
    pub(crate) group: Option<String>,
    /// Record the systemctl actions to FILE (JSON lines) instead of performing them;
    /// agent processes then count as stopped.
    #[arg(long, value_name = "FILE")]
    pub(crate) record_actions: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct WatchArgs {
    /// Seconds between two polls of the metadata service.
    #[arg(long, value_name = "SECS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=60))]
    pub(crate) poll_secs: u64,
    /// Seconds between two lifecycle heartbeats while jobs run; keep it below the
    /// hook's heartbeat timeout.
    #[arg(long, value_name = "SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub(crate) heartbeat_secs: u64,
    /// The longest drain, in seconds: the hook's global timeout.
    #[arg(long, value_name = "SECS", default_value_t = watch::MAX_GLOBAL_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..=172_800))]
    pub(crate) max_drain_secs: u64,
    /// The termination lifecycle hook to complete.
    #[arg(long, value_name = "NAME", default_value = watch::LIFECYCLE_HOOK_NAME)]
    pub(crate) lifecycle_hook: String,
    /// The instance's Auto Scaling group (default: its aws:autoscaling:groupName tag
    /// from the metadata service).
    #[arg(long, value_name = "NAME")]
    pub(crate) group: Option<String>,
    /// Record the systemctl actions to FILE (JSON lines) instead of performing them;
    /// agent processes then count as stopped.
    #[arg(long, value_name = "FILE")]
    pub(crate) record_actions: Option<PathBuf>,
    /// Where the drain marker that makes terminate stand down is written.
    #[arg(long, value_name = "FILE", default_value = platform::INSTANCE_OS.drain_marker(), hide = true)]
    pub(crate) drain_marker: PathBuf,
}

#[derive(Debug, clap::Args)]
pub(crate) struct CheckDiskArgs {
    /// Measure the file system holding DIR instead of docker's data root.
    #[arg(long, value_name = "DIR")]
    pub(crate) path: Option<PathBuf>,
    /// Docker's daemon configuration, read for data-root.
    #[arg(long, value_name = "FILE", default_value = "/etc/docker/daemon.json")]
    pub(crate) docker_config: PathBuf,
}

#[derive(Debug, clap::Args)]
pub(crate) struct FixPermsArgs {
    /// AGENT_DIR ORG_DIR PIPELINE_DIR: one directory name each.
    #[arg(value_name = "AGENT ORG PIPELINE", num_args = 0.., allow_hyphen_values = true, trailing_var_arg = true)]
    pub(crate) args: Vec<String>,
}

/// A command's own exit status, with a message printed as it is (no `error:`
/// prefix; nothing when empty).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub(crate) struct ExitWith {
    pub(crate) code: u8,
    pub(crate) message: String,
}

#[derive(Debug, clap::Args)]
pub(crate) struct FetchArgs {
    /// Where to read from: s3://BUCKET/KEY, ssm:/PATH, https://URL, http://URL or file:///PATH.
    #[arg(value_parser = parse_source)]
    pub(crate) source: SourceUri,
    /// The file to write.
    pub(crate) dest: PathBuf,
    /// Permission bits of DEST, in octal.
    #[arg(long, default_value = "0600", value_parser = parse_mode)]
    pub(crate) mode: u32,
    /// Give up an HTTP(S) download after this many seconds.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub(crate) timeout_secs: u64,
}

fn parse_source(input: &str) -> Result<SourceUri, String> {
    SourceUri::new(input).map_err(|error| error.to_string())
}

fn parse_mode(input: &str) -> Result<u32, String> {
    let digits = input.strip_prefix("0o").unwrap_or(input);
    match u32::from_str_radix(digits, 8) {
        Ok(mode) if mode <= 0o7777 && !digits.is_empty() => Ok(mode),
        _ => Err(format!(
            "invalid mode {input:?}: expected octal permission bits such as 0600 or 0640"
        )),
    }
}

/// Runs a parsed command line; `env` is the process environment.
pub async fn run(cli: Cli, env: &HashMap<String, String>) -> anyhow::Result<()> {
    match cli.command {
        Command::Fetch(args) => {
            let backends =
                backends_for(&args.source, env, Duration::from_secs(args.timeout_secs)).await?;
            fetch::fetch(&args.source, &args.dest, args.mode, &backends)
                .await
                .with_context(|| format!("fetching {} failed", args.source))?;
            Ok(())
        }
        Command::Boot(args) => commands::boot(args, env).await,
        Command::Terminate(args) => commands::terminate(args, env).await,
        Command::StopGracefully(args) => commands::stop_gracefully(args, env).await,
        Command::Watch(args) => commands::watch(args, env).await,
        Command::CheckDisk(args) => commands::check_disk(args, env),
        Command::FixPermissions(args) => commands::fix_permissions(args).await,
    }
}

/// The file `boot` appends its log to (besides stderr), under its `--root`.
pub fn log_file(cli: &Cli) -> Option<PathBuf> {
    match &cli.command {
        // Not for a dry run, nor for a boot that will be refused (a --root of its own
        // without --record-actions).
        Command::Boot(args)
            if !args.dry_run && (args.record_actions.is_some() || args.root == Path::new("/")) =>
        {
            Some(files::Root::new(&args.root).path(platform::INSTANCE_OS.log_file()))
        }
        _ => None,
    }
}

/// Builds only the clients a source needs: an HTTP or file fetch never loads AWS
/// configuration.
async fn backends_for(
    source: &SourceUri,
    env: &HashMap<String, String>,
    timeout: Duration,
) -> anyhow::Result<fetch::Backends> {
    let http = fetch::http_client_trusting(timeout, platform::root_certificates(env)?)
        .context("failed to build the HTTP client")?;
    let mut backends = fetch::Backends { objects: None, parameters: None, http };
    if matches!(source, SourceUri::S3(_) | SourceUri::Ssm(_)) {
        let settings = AwsSettings::from_env_map(env);
        let sdk_config = aws_sdk_config(&settings).await;
        backends.objects = Some(Arc::new(S3ObjectStore::new(&sdk_config, &settings)));
        backends.parameters = Some(Arc::new(SsmParameterStore::new(&sdk_config)));
    }
    Ok(backends)
}

/// Exit status for a failed command: the command's own ([`ExitWith`]), else 1.
pub fn report_error(error: &anyhow::Error) -> ExitCode {
    if let Some(exit) = error.downcast_ref::<ExitWith>() {
        if !exit.message.is_empty() {
            output::say(&exit.message);
        }
        return ExitCode::from(exit.code);
    }
    // One line: the caller (a boot script, a systemd unit) logs stderr line by line.
    let message = format!("{error:#}").replace(['\n', '\r'], " ");
    #[allow(clippy::print_stderr, reason = "the command's error report")]
    {
        eprintln!("error: {message}");
    }
    ExitCode::FAILURE
}

/// The stderr log subscriber of the instance binaries, filtered by `ELASTIC_CI_LOG`,
/// also appending to `log_file` when given (the boot log that the CloudWatch agent
/// ships to `/buildkite/elastic-stack`).
pub fn init_logging(env: &HashMap<String, String>, log_file: Option<&Path>) {
    use tracing_subscriber::fmt::writer::MakeWriterExt;

    let default = "info,aws_config=warn,aws_smithy_runtime=warn,aws_smithy_runtime_api=warn,hyper=warn,reqwest=warn";
    let filter = env.get("ELASTIC_CI_LOG").map_or(default, String::as_str);
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let file = log_file.and_then(|path| {
        let opened = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::OpenOptions::new().create(true).append(true).open(path));
        match opened {
            Ok(file) => Some(file),
            Err(error) => {
                output::say(&format!("warning: not logging to {}: {error}", path.display()));
                None
            }
        }
    });
    // Colour only on a terminal: on an instance stderr goes to the journal and log files.
    let ansi = file.is_none() && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_target(false).with_ansi(ansi);
    match file {
        Some(file) => {
            builder.with_writer(std::io::stderr.and(std::sync::Mutex::new(file))).init();
        }
        None => builder.with_writer(std::io::stderr).init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_octal_modes() {
        assert_eq!(parse_mode("0640"), Ok(0o640));
        assert_eq!(parse_mode("600"), Ok(0o600));
        assert_eq!(parse_mode("0o755"), Ok(0o755));
        for bad in ["", "0888", "rw-r--r--", "17777", "-1"] {
            let error = parse_mode(bad).unwrap_err();
            assert!(error.contains(&format!("{bad:?}")), "{error}");
        }
    }
}
