//! The boot sequence as an ordered list of named steps, each a list of operations.
//!
//! [`plan`] is the single source of truth: the instance binary executes exactly these
//! operations, and `boot --dry-run` prints them. Step names appear in the failure
//! message and in the failure signal, so an operator knows where a boot stopped.
//!
//! The first steps (instance storage, Docker's configuration) run on every boot, as
//! the original's first two UserData parts did; they are planned from the instance's
//! current state, so running them again is harmless. The rest runs once.

use std::fmt;

use crate::boot::action::SystemAction;
use crate::boot::agent_config::AgentConfig;
use crate::boot::config::{BootConfig, DockerSettings};
use crate::boot::docker::{self, RemapIds};
use crate::boot::storage::{self, StorageFacts};
use crate::boot::{cfn_env, units, windows};
use crate::uri::SourceUri;

pub const AGENT_USER: &str = "buildkite-agent";
pub const AGENT_HOME: &str = "/var/lib/buildkite-agent";
pub const CFN_ENV_PATH: &str = "/var/lib/buildkite-agent/cfn-env";
pub const AGENT_ENV_FILE_PATH: &str = "/var/lib/buildkite-agent/env";
pub const BUILD_PATH: &str = "/var/lib/buildkite-agent/builds";
pub const PLUGINS_PATH: &str = "/var/lib/buildkite-agent/plugins";
pub const GIT_MIRRORS_PATH: &str = "/var/lib/buildkite-agent/git-mirrors";
pub const HOOKS_PATH: &str = "/etc/buildkite-agent/hooks";
pub const AGENT_CONFIG_PATH: &str = "/etc/buildkite-agent/buildkite-agent.cfg";
pub const SIGNING_KEY_PATH: &str = "/etc/buildkite-agent/signing-key.json";
pub const VERIFICATION_KEY_PATH: &str = "/etc/buildkite-agent/verification-key.json";
pub const STATUS_FILE_PATH: &str = "/var/log/elastic-stack-bootstrap-status";
pub const LOG_FILE_PATH: &str = "/var/log/elastic-stack.log";
pub const SUDOERS_ADDITIONAL_PATH: &str = "/etc/sudoers.d/buildkite-agent-additional";
pub const AGENT_BINARY_PATH: &str = "/usr/bin/buildkite-agent";
/// The original's lifecycle handler, kept for scripts that call it: a shim that runs
/// `elastic-ci-bootstrap stop-gracefully "$@"`.
pub const STOP_HANDLER_PATH: &str = "/usr/local/bin/stop-agent-gracefully";
pub const BOOTSTRAP_BINARY_PATH: &str = "/usr/local/bin/elastic-ci-bootstrap";
/// The marker `elastic-ci-bootstrap watch` leaves while Auto Scaling removes the
/// instance or stops it into the warm pool, so that `terminate` stands down. Under
/// `/run`, so a restart clears it.
pub const DRAIN_MARKER_PATH: &str = "/run/elastic-ci/lifecycle-drain";
pub const REFRESH_KEYS_SCRIPT_PATH: &str = "/usr/local/bin/refresh_authorized_keys";
pub const AGENT_SLICE_PATH: &str = "/etc/systemd/system/buildkite-agent.slice";
pub const RESOURCE_LIMITS_DROP_IN_PATH: &str =
    "/etc/systemd/system/buildkite-agent.service.d/10-resource-limits.conf";
pub const ENVIRONMENT_DROP_IN_PATH: &str =
    "/etc/systemd/system/buildkite-agent.service.d/environment.conf";
pub const CLOUDWATCH_AGENT_CONFIG_PATH: &str =
    "/opt/aws/amazon-cloudwatch-agent/etc/amazon-cloudwatch-agent.json";
pub const EPHEMERAL_PATH: &str = "/mnt/ephemeral";
pub const FSTAB_PATH: &str = "/etc/fstab";
/// Where cloud-init keeps the instance id it read at the start of the boot: the
/// fallback when the metadata service stays unreachable, so a failed boot can still
/// mark its own instance unhealthy.
pub const CLOUD_INIT_INSTANCE_ID_PATH: &str = "/var/lib/cloud/data/instance-id";
/// Root-only scratch space for the bootstrap script (never `/tmp`).
pub const PRIVATE_DIR_PATH: &str = "/var/lib/elastic-ci-bootstrap";
/// The logical id of the Auto Scaling group in the stack template.
pub const STACK_RESOURCE: &str = "AgentAutoScaleGroup";

/// The operating system an instance runs: it picks the layout of the agent's files
/// and the plan's shape (see [`crate::boot::windows`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceOs {
    Linux,
    Windows,
}

impl InstanceOs {
    /// The boot's status file.
    pub fn status_file(self) -> &'static str {
        match self {
            InstanceOs::Linux => STATUS_FILE_PATH,
            InstanceOs::Windows => windows::STATUS_FILE_PATH,
        }
    }

    /// The boot's log file.
    pub fn log_file(self) -> &'static str {
        match self {
            InstanceOs::Linux => LOG_FILE_PATH,
            InstanceOs::Windows => windows::LOG_FILE_PATH,
        }
    }

    /// Where the bootstrap script is fetched to, readable by administrators alone.
    pub fn private_dir(self) -> &'static str {
        match self {
            InstanceOs::Linux => PRIVATE_DIR_PATH,
            InstanceOs::Windows => windows::PRIVATE_DIR_PATH,
        }
    }

    /// The marker `watch` leaves while Auto Scaling removes the instance.
    pub fn drain_marker(self) -> &'static str {
        match self {
            InstanceOs::Linux => DRAIN_MARKER_PATH,
            InstanceOs::Windows => windows::DRAIN_MARKER_PATH,
        }
    }
}

/// How the bootstrap script is run: chosen by the operating system and, on Windows,
/// by the script's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptShell {
    /// `bash`, with umask 022 (Linux).
    Bash,
    /// `powershell.exe -File` (a `.ps1` script).
    PowerShell,
    /// `cmd.exe /c` (a `.bat` or `.cmd` script).
    Batch,
}

impl ScriptShell {
    /// The shell for a Windows script, by the extension of the source's path (its
    /// query string ignored).
    pub fn for_windows(source: &SourceUri) -> Result<ScriptShell, String> {
        let path = match source {
            SourceUri::S3(s3) => s3.key.as_str(),
            SourceUri::Http(url) => url.as_str().split(['?', '#']).next().unwrap_or_default(),
            SourceUri::File(path) => path.as_str(),
            SourceUri::Ssm(_) => "",
        };
        let extension = path.rsplit_once('.').map(|(_, ext)| ext.to_ascii_lowercase());
        match extension.as_deref() {
            Some("ps1") => Ok(ScriptShell::PowerShell),
            Some("bat" | "cmd") => Ok(ScriptShell::Batch),
            _ => Err(format!(
                "the bootstrap script {source} must end in .ps1 (PowerShell), .bat or .cmd (batch) on Windows"
            )),
        }
    }

    /// The file name extension the fetched script is given (the interpreters go by it).
    pub fn extension(self) -> &'static str {
        match self {
            ScriptShell::Bash => "",
            ScriptShell::PowerShell => ".ps1",
            ScriptShell::Batch => ".bat",
        }
    }

    /// The command that runs the script at `path`.
    pub fn command(self, path: &str) -> Vec<String> {
        let words: &[&str] = match self {
            ScriptShell::Bash => &["bash", "-c", "umask 022 && exec bash \"$1\"", "bash"],
            ScriptShell::PowerShell => &[
                "powershell.exe",
                "-NoLogo",
                "-NoProfile",
                "-NonInteractive",
                "-ExecutionPolicy",
                "Bypass",
                "-File",
            ],
            ScriptShell::Batch => &["cmd.exe", "/d", "/c"],
        };
        words.iter().map(|word| (*word).to_owned()).chain([path.to_owned()]).collect()
    }

    fn name(self) -> &'static str {
        match self {
            ScriptShell::Bash => "bash",
            ScriptShell::PowerShell => "powershell.exe -File",
            ScriptShell::Batch => "cmd.exe /c",
        }
    }
}

/// What the boot learned about the instance before planning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceFacts {
    pub os: InstanceOs,
    pub instance_id: String,
    /// Such as `27.1.1`; `unknown` when it could not be read.
    pub docker_version: String,
    /// `amd64`, `arm64` or `unknown`.
    pub arch: String,
    /// `ec2-user`, or `ubuntu` on Ubuntu.
    pub login_user: String,
    pub login_home: String,
    /// Mounts, instance-store devices and what they hold, as far as the configuration
    /// needs them.
    pub storage: StorageFacts,
    /// The ids of user-namespace remapping, when it is on.
    pub remap_ids: Option<RemapIds>,
}

/// The architecture name used in agent download URLs, from Rust's target name.
pub fn arch_name(machine: &str) -> &'static str {
    match machine {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        _ => "unknown",
    }
}

/// The login user: `ubuntu` when `/etc/os-release` says `ID=ubuntu`, else `ec2-user`.
pub fn login_user(os_release: &str) -> &'static str {
    let id = os_release.lines().find_map(|line| line.trim().strip_prefix("ID="));
    match id.map(|id| id.trim_matches(['"', '\''])) {
        Some("ubuntu") => "ubuntu",
        _ => "ec2-user",
    }
}

/// The home directory of `user` in an `/etc/passwd` text, or `/home/<user>`.
pub fn home_of(passwd: &str, user: &str) -> String {
    passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.len() >= 7 && fields[0] == user && fields[5].starts_with('/'))
        .map_or_else(|| format!("/home/{user}"), |fields| fields[5].to_owned())
}

/// One operation of a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `mkdir -p`, the last component with `mode`.
    CreateDir { path: String, mode: u32 },
    /// Writes a file atomically (temporary file beside it, then rename), creating the
    /// parent directories. `show` prints the content into the boot log.
    WriteFile { path: String, mode: u32, content: String, show: bool },
    /// Renames a file within one directory.
    Rename { from: String, to: String },
    /// Points `link` at `target`, replacing what was there.
    Symlink { link: String, target: String },
    /// Makes `line` the only `/etc/fstab` entry for its mount point.
    SetFstabEntry { line: String },
    /// Sets the stack's keys in Docker's `daemon.json` (parsed, changed, written
    /// atomically; a file that is not a JSON object fails the step unchanged).
    ConfigureDockerDaemon { path: String, docker: DockerSettings, data_root: Option<String> },
    /// Says something in the boot log (a branch taken, a thing left alone).
    Note(String),
    /// Reads the agent token from SSM (decrypted) and keeps it in memory.
    ReadAgentToken { parameter: String },
    /// Writes the agent configuration with the token read before.
    WriteAgentConfig { path: String, mode: u32, config: AgentConfig },
    /// Writes one SSM parameter's value (decrypted) to a file.
    FetchParameter { parameter: String, path: String, mode: u32 },
    /// Downloads a source to a file (`elastic-ci-bootstrap fetch`).
    Fetch { source: SourceUri, path: String, mode: u32 },
    /// Best-effort seeding of git mirrors from `s3://bucket/git-mirror-seeds/`.
    SeedGitMirrors { bucket: String, dir: String },
    /// Fetches the user's bootstrap script to a private path and runs it with `shell`
    /// as root (Linux) or as the boot's account (Windows); a non-zero exit fails the
    /// boot.
    RunBootstrapScript { source: SourceUri, shell: ScriptShell },
    /// Copies a file (Windows: the agent channel's binary into place).
    Copy { from: String, to: String },
    /// Fails the step: a setting the plan cannot carry out, found before anything
    /// changed.
    Refuse(String),
    /// Adds `retention_in_days` to the CloudWatch agent's log files and reloads it.
    SetLogRetention { config_path: String, days: u32 },
    /// Names the log groups of the CloudWatch agent's configuration after the stack
    /// (its `{stack_name}` placeholder), sets `retention_in_days` when given, and runs
    /// `reload` (the agent's fetch-config). Windows; Linux does this in a unit.
    ConfigureCloudWatchAgent {
        config_path: String,
        stack_name: String,
        retention_days: Option<u32>,
        reload: Vec<String>,
    },
    /// A change outside the file system.
    System(SystemAction),
}

/// A named group of operations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub name: &'static str,
    pub ops: Vec<Op>,
    /// A failure is logged as a warning and the boot goes on.
    pub best_effort: bool,
    /// Runs on every boot, not only the first; every-boot steps come first.
    pub every_boot: bool,
}

/// The whole boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootPlan {
    pub steps: Vec<Step>,
}

/// What the status file says after a warm phase: the instance is configured up to the
/// agent start and waits, stopped, in the group's warm pool.
pub const STATUS_WARMED: &str = "Warmed";
/// What the status file says after a whole boot or a resume.
pub const STATUS_COMPLETED: &str = "Completed";
/// What the status file says while a whole boot or a resume runs: a boot that finds
/// it failed half-way and does not go on.
pub const STATUS_STARTED: &str = "Started";
/// What the status file says while a warm phase runs. The warm phase changes nothing
/// the agents use yet, so a boot that finds it (the instance was stopped or rebooted
/// half-way) runs the warm phase again, or the whole boot when the group takes the
/// instance into service.
pub const STATUS_WARMING: &str = "Warming";

/// Which part of the boot runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootPhase {
    /// Everything, the agent start and the CloudFormation signal included.
    Full,
    /// An instance launched into the warm pool: everything up to the agent start; the
    /// group then stops it. No agent runs, and CloudFormation is not signalled (only
    /// instances in service count towards the creation policy).
    Warm,
    /// A warm-pool instance the group took into service: what may have changed while
    /// it was stopped is read again (the agent token into the agent configuration, the
    /// agent environment file), then the agents start.
    Resume,
}

/// Plans the whole boot of one instance.
pub fn plan(config: &BootConfig, facts: &InstanceFacts) -> BootPlan {
    plan_phase(config, facts, BootPhase::Full)
}

/// Plans one phase of the boot.
pub fn plan_phase(config: &BootConfig, facts: &InstanceFacts, phase: BootPhase) -> BootPlan {
    if facts.os == InstanceOs::Windows {
        return windows::plan_phase(config, facts, phase);
    }
    if phase == BootPhase::Resume {
        return resume_plan(config, facts);
    }
    let mut steps = every_boot_steps(config, facts);
    // Each feature's operations, in the original's order; a feature that is off has
    // none, and its step is left out.
    let first_boot = [
        ("cfn-env", cfn_env_ops(config, facts)),
        ("agent-release", agent_release_ops(config, facts)),
        ("sudoers", sudoers_ops(config)),
        ("git-mirrors", git_mirrors_ops(config)),
        ("build-path", build_path_ops(config)),
        ("agent-config", agent_config_ops(config, facts)),
        ("signing-keys", signing_key_ops(config)),
        ("agent-env-file", agent_env_file_ops(config)),
        ("authorized-keys", authorized_keys_ops(config, facts)),
        ("git-lfs", git_lfs_ops()),
        ("bootstrap-script", bootstrap_script_ops(config)),
        ("resource-limits", resource_limits_ops(config)),
        ("docker", vec![Op::System(SystemAction::WaitForDocker { attempts: 6 })]),
        ("agent-service-environment", agent_service_environment_ops(config)),
        ("start-agent", start_agent_ops(phase)),
    ];
    steps.extend(first_boot_steps(first_boot));
    steps.extend(log_retention_step(config));
    if phase == BootPhase::Full {
        steps.extend(signal_success_step(config, facts));
    }
    let status = if phase == BootPhase::Warm { STATUS_WARMED } else { STATUS_COMPLETED };
    steps.push(status_step(status));
    BootPlan { steps }
}

/// The resume of a warm-pool instance: the every-boot steps, then only what may have
/// changed while it was stopped, then the agent start. Kept short: it is all that stands
/// between the group taking the instance and its agents taking jobs.
fn resume_plan(config: &BootConfig, facts: &InstanceFacts) -> BootPlan {
    let mut steps = every_boot_steps(config, facts);
    steps.extend(first_boot_steps([
        ("agent-config", agent_config_ops(config, facts)),
        ("agent-env-file", agent_env_file_ops(config)),
        ("start-agent", start_agent_ops(BootPhase::Resume)),
    ]));
    steps.push(status_step(STATUS_COMPLETED));
    BootPlan { steps }
}

pub(crate) fn first_boot_steps<const N: usize>(steps: [(&'static str, Vec<Op>); N]) -> Vec<Step> {
    steps
        .into_iter()
        .filter(|(_, ops)| !ops.is_empty())
        .map(|(name, ops)| Step { name, ops, best_effort: false, every_boot: false })
        .collect()
}

fn start_agent_ops(phase: BootPhase) -> Vec<Op> {
    match phase {
        BootPhase::Warm => Vec::new(),
        BootPhase::Full | BootPhase::Resume => {
            vec![systemctl(&["enable", "--now", "buildkite-agent"])]
        }
    }
}

pub(crate) fn status_step(status: &str) -> Step {
    status_step_at(STATUS_FILE_PATH, status)
}

pub(crate) fn status_step_at(path: &str, status: &str) -> Step {
    Step {
        name: "status",
        ops: vec![Op::WriteFile {
            path: path.to_owned(),
            mode: 0o644,
            content: status.to_owned(),
            show: false,
        }],
        best_effort: false,
        every_boot: false,
    }
}

/// Instance storage and Docker's configuration: planned from the instance's current
/// state, so that running them on every boot is harmless.
fn every_boot_steps(config: &BootConfig, facts: &InstanceFacts) -> Vec<Step> {
    let mut steps = Vec::new();
    let storage_ops =
        storage::ops(config.mount_tmpfs_at_tmp, config.instance_storage, &facts.storage);
    if !storage_ops.is_empty() {
        steps.push(Step {
            name: "instance-storage",
            ops: storage_ops,
            best_effort: false,
            every_boot: true,
        });
    }
    steps.push(Step {
        name: "docker-config",
        ops: docker::ops(config, facts.remap_ids),
        best_effort: false,
        every_boot: true,
    });
    steps.push(Step {
        name: "docker-binfmt",
        ops: vec![systemctl(&["start", docker::BINFMT_SERVICE])],
        best_effort: true,
        every_boot: true,
    });
    steps
}

fn cfn_env_ops(config: &BootConfig, facts: &InstanceFacts) -> Vec<Op> {
    vec![
        write(CFN_ENV_PATH, 0o640, cfn_env::render(&cfn_env::entries(config, facts))),
        Op::System(agent_owned(CFN_ENV_PATH)),
    ]
}

/// `/usr/bin/buildkite-agent` pointed at the channel's binary, downloaded first when
/// the image does not carry it.
fn agent_release_ops(config: &BootConfig, facts: &InstanceFacts) -> Vec<Op> {
    let channel_binary = format!("{AGENT_BINARY_PATH}-{}", config.release.as_str());
    let mut ops = Vec::new();
    if let Some(url) = config.release.download_url(&facts.arch) {
        // The URL is a constant https URL with a known architecture name.
        if let Ok(source) = SourceUri::new(&url) {
            ops.push(Op::Fetch { source, path: channel_binary.clone(), mode: 0o755 });
        }
    }
    ops.push(Op::Symlink { link: AGENT_BINARY_PATH.to_owned(), target: channel_binary });
    ops
}

fn sudoers_ops(config: &BootConfig) -> Vec<Op> {
    let Some(commands) = &config.additional_sudo_permissions else { return Vec::new() };
    // sudo ignores files whose name contains a '.', so the rule is checked under a
    // pending name and only then moved into place: a syntax error can never break
    // sudo (and with it fix-permissions).
    let pending = format!("{SUDOERS_ADDITIONAL_PATH}.pending");
    vec![
        write(&pending, 0o440, units::sudoers_additional(commands)),
        Op::System(SystemAction::CheckSudoers { path: pending.clone() }),
        Op::Rename { from: pending, to: SUDOERS_ADDITIONAL_PATH.to_owned() },
    ]
}

fn git_mirrors_ops(config: &BootConfig) -> Vec<Op> {
    if !config.git_mirrors {
        return Vec::new();
    }
    let mut ops = vec![Op::CreateDir { path: GIT_MIRRORS_PATH.to_owned(), mode: 0o755 }];
    ops.extend(ephemeral_bind(config, "git-mirrors", GIT_MIRRORS_PATH));
    if let Some(bucket) = &config.git_mirror_seed_bucket {
        ops.push(Op::SeedGitMirrors { bucket: bucket.clone(), dir: GIT_MIRRORS_PATH.to_owned() });
    }
    ops.push(Op::System(SystemAction::chown_recursive(GIT_MIRRORS_PATH, AGENT_USER, AGENT_USER)));
    ops
}

fn build_path_ops(config: &BootConfig) -> Vec<Op> {
    let mut ops = vec![Op::CreateDir { path: BUILD_PATH.to_owned(), mode: 0o755 }];
    ops.extend(ephemeral_bind(config, "builds", BUILD_PATH));
    ops.push(Op::System(SystemAction::chown(BUILD_PATH, AGENT_USER, AGENT_USER)));
    ops
}

fn agent_config_ops(config: &BootConfig, facts: &InstanceFacts) -> Vec<Op> {
    agent_config_ops_at(config, AGENT_CONFIG_PATH, AgentConfig::new(config, facts), &protect)
}

fn signing_key_ops(config: &BootConfig) -> Vec<Op> {
    signing_key_ops_at(config, [SIGNING_KEY_PATH, VERIFICATION_KEY_PATH], &protect)
}

fn agent_env_file_ops(config: &BootConfig) -> Vec<Op> {
    agent_env_file_ops_at(config, AGENT_ENV_FILE_PATH, &protect)
}

/// A file with a secret: root's, readable by the agent's group.
fn protect(path: &str) -> Op {
    Op::System(agent_owned(path))
}

/// The token read, the agent configuration written at `path`, and `protect`ed.
pub(crate) fn agent_config_ops_at(
    config: &BootConfig,
    path: &str,
    agent_config: AgentConfig,
    protect: &dyn Fn(&str) -> Op,
) -> Vec<Op> {
    vec![
        Op::ReadAgentToken { parameter: config.token_parameter.clone() },
        Op::WriteAgentConfig { path: path.to_owned(), mode: 0o640, config: agent_config },
        protect(path),
    ]
}

/// The signing and verification keys at `paths`, each `protect`ed.
pub(crate) fn signing_key_ops_at(
    config: &BootConfig,
    paths: [&str; 2],
    protect: &dyn Fn(&str) -> Op,
) -> Vec<Op> {
    let parameters = [&config.signing_key_parameter, &config.verification_key_parameter];
    let mut ops = Vec::new();
    for (parameter, path) in parameters.into_iter().zip(paths) {
        if let Some(parameter) = parameter {
            ops.push(Op::FetchParameter {
                parameter: parameter.clone(),
                path: path.to_owned(),
                mode: 0o640,
            });
            ops.push(protect(path));
        }
    }
    ops
}

/// The agent environment file at `path`, `protect`ed.
pub(crate) fn agent_env_file_ops_at(
    config: &BootConfig,
    path: &str,
    protect: &dyn Fn(&str) -> Op,
) -> Vec<Op> {
    let Some(source) = &config.env_file else { return Vec::new() };
    vec![Op::Fetch { source: source.clone(), path: path.to_owned(), mode: 0o640 }, protect(path)]
}

/// The login user's `authorized_keys` from the source, and a timer that refreshes it.
fn authorized_keys_ops(config: &BootConfig, facts: &InstanceFacts) -> Vec<Op> {
    let Some(source) = &config.authorized_users else { return Vec::new() };
    let user = facts.login_user.as_str();
    let ssh_dir = format!("{}/.ssh", facts.login_home);
    let keys = format!("{ssh_dir}/authorized_keys");
    vec![
        Op::CreateDir { path: ssh_dir.clone(), mode: 0o700 },
        Op::System(SystemAction::chown(&ssh_dir, user, user)),
        Op::Fetch { source: source.clone(), path: keys.clone(), mode: 0o600 },
        Op::System(SystemAction::chown(&keys, user, user)),
        // Not shown in the log, and readable by root alone (which runs it): the script
        // holds the full URL, and a pre-signed URL's query string is a credential.
        Op::WriteFile {
            path: REFRESH_KEYS_SCRIPT_PATH.to_owned(),
            mode: 0o700,
            content: units::refresh_authorized_keys(
                BOOTSTRAP_BINARY_PATH,
                &source_text(source),
                &facts.login_home,
                user,
            ),
            show: false,
        },
        systemctl(&["enable", "--now", "refresh_authorized_keys.timer"]),
    ]
}

fn git_lfs_ops() -> Vec<Op> {
    vec![Op::System(SystemAction::RunAsUser {
        user: AGENT_USER.to_owned(),
        command: vec!["git".into(), "lfs".into(), "install".into()],
    })]
}

fn bootstrap_script_ops(config: &BootConfig) -> Vec<Op> {
    let Some(source) = &config.bootstrap_script else { return Vec::new() };
    vec![Op::RunBootstrapScript { source: source.clone(), shell: ScriptShell::Bash }]
}

fn resource_limits_ops(config: &BootConfig) -> Vec<Op> {
    let Some(limits) = &config.resource_limits else { return Vec::new() };
    vec![
        write(AGENT_SLICE_PATH, 0o644, units::agent_slice(limits)),
        write(RESOURCE_LIMITS_DROP_IN_PATH, 0o644, units::resource_limits_drop_in()),
        systemctl(&["daemon-reload"]),
    ]
}

fn agent_service_environment_ops(config: &BootConfig) -> Vec<Op> {
    vec![
        write(
            ENVIRONMENT_DROP_IN_PATH,
            0o644,
            units::environment_drop_in(config.terminate_after_job),
        ),
        systemctl(&["daemon-reload"]),
    ]
}

fn log_retention_step(config: &BootConfig) -> Option<Step> {
    let days = config.log_retention_days?;
    Some(Step {
        name: "log-retention",
        ops: vec![Op::SetLogRetention {
            config_path: CLOUDWATCH_AGENT_CONFIG_PATH.to_owned(),
            days,
        }],
        best_effort: true,
        every_boot: false,
    })
}

pub(crate) fn signal_success_step(config: &BootConfig, facts: &InstanceFacts) -> Option<Step> {
    // Expected to fail once the stack is complete (nothing waits for the signal), so
    // best effort.
    config.signals_cloudformation().then(|| Step {
        name: "signal-success",
        ops: vec![Op::System(success_signal(config, &facts.instance_id, true))],
        best_effort: true,
        every_boot: false,
    })
}

/// A file shown in the boot log.
pub(crate) fn write(path: &str, mode: u32, content: String) -> Op {
    Op::WriteFile { path: path.to_owned(), mode, content, show: true }
}

fn agent_owned(path: &str) -> SystemAction {
    SystemAction::chown(path, "root", AGENT_USER)
}

fn systemctl(args: &[&str]) -> Op {
    Op::System(SystemAction::systemctl(args))
}

/// The stack signal for this instance.
pub fn success_signal(config: &BootConfig, instance_id: &str, success: bool) -> SystemAction {
    stack_signal(&config.stack_name, instance_id, success)
}

/// The stack signal for an instance of `stack_name`.
pub fn stack_signal(stack_name: &str, instance_id: &str, success: bool) -> SystemAction {
    SystemAction::SignalStack {
        stack_name: stack_name.to_owned(),
        logical_resource_id: STACK_RESOURCE.to_owned(),
        unique_id: instance_id.to_owned(),
        success,
    }
}

/// A source as the `fetch` command takes it, query string included.
pub(crate) fn source_text(source: &SourceUri) -> String {
    match source {
        SourceUri::S3(s3) => s3.to_string(),
        SourceUri::Ssm(path) => format!("ssm:{path}"),
        SourceUri::Http(url) => url.as_str().to_owned(),
        SourceUri::File(path) => format!("file://{path}"),
    }
}

/// With instance storage: `/mnt/ephemeral/<name>` bind-mounted onto `target`, in fstab.
fn ephemeral_bind(config: &BootConfig, name: &str, target: &str) -> Vec<Op> {
    if !config.instance_storage {
        return Vec::new();
    }
    let source = format!("{EPHEMERAL_PATH}/{name}");
    vec![
        Op::CreateDir { path: source.clone(), mode: 0o755 },
        Op::System(SystemAction::BindMount { source: source.clone(), target: target.to_owned() }),
        Op::SetFstabEntry { line: units::bind_mount_fstab_line(&source, target) },
    ]
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::CreateDir { path, mode } => write!(f, "create directory {path} ({mode:04o})"),
            Op::WriteFile { path, mode, content, show } => {
                write!(f, "write {path} ({mode:04o})")?;
                if *show {
                    for line in content.lines() {
                        write!(f, "\n      | {line}")?;
                    }
                }
                Ok(())
            }
            Op::Rename { from, to } => write!(f, "rename {from} to {to}"),
            Op::Symlink { link, target } => write!(f, "link {link} -> {target}"),
            Op::SetFstabEntry { line } => {
                let mount_point = storage::fstab_mount_point(line).unwrap_or_default();
                write!(f, "set the {mount_point} line of {FSTAB_PATH}: {line}")
            }
            Op::ConfigureDockerDaemon { path, docker, data_root } => {
                write!(f, "set in {path}, keeping its other keys: ")?;
                match docker::daemon_json(&serde_json::json!({}), docker, data_root.as_deref()) {
                    Ok(keys) => write!(f, "{keys}"),
                    Err(error) => write!(f, "<{error}>"),
                }
            }
            Op::Note(text) => write!(f, "note: {text}"),
            Op::ReadAgentToken { parameter } => {
                write!(f, "read the agent token from SSM parameter {parameter} (never logged)")
            }
            Op::WriteAgentConfig { path, mode, config } => {
                write!(f, "write {path} ({mode:04o})")?;
                if let Ok(text) = config.render_redacted() {
                    for line in text.lines() {
                        write!(f, "\n      | {line}")?;
                    }
                }
                Ok(())
            }
            Op::FetchParameter { parameter, path, mode } => {
                write!(f, "write SSM parameter {parameter} to {path} ({mode:04o})")
            }
            Op::Fetch { source, path, mode } => write!(f, "fetch {source} to {path} ({mode:04o})"),
            Op::SeedGitMirrors { bucket, dir } => write!(
                f,
                "seed git mirrors from s3://{bucket}/git-mirror-seeds/ into {dir} (best effort)"
            ),
            Op::RunBootstrapScript { source, shell } => {
                let (dir, user) = match shell {
                    ScriptShell::Bash => (PRIVATE_DIR_PATH, "root"),
                    ScriptShell::PowerShell | ScriptShell::Batch => {
                        (windows::PRIVATE_DIR_PATH, "the boot's account")
                    }
                };
                write!(f, "fetch {source} to {dir} and run it with {} as {user}", shell.name())
            }
            Op::Copy { from, to } => write!(f, "copy {from} to {to}"),
            Op::Refuse(reason) => write!(f, "refuse: {reason}"),
            Op::SetLogRetention { config_path, days } => write!(
                f,
                "set retention_in_days={days} on every log of {config_path} and reload the CloudWatch agent"
            ),
            Op::ConfigureCloudWatchAgent { config_path, stack_name, retention_days, reload } => {
                write!(f, "name the log groups of {config_path} /buildkite/{stack_name}/…")?;
                if let Some(days) = retention_days {
                    write!(f, " with retention_in_days={days}")?;
                }
                write!(f, " and run {}", reload.join(" "))
            }
            Op::System(action) => write!(f, "{action}"),
        }
    }
}

impl fmt::Display for BootPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, step) in self.steps.iter().enumerate() {
            let note = match (step.every_boot, step.best_effort) {
                (true, true) => " (every boot, best effort)",
                (true, false) => " (every boot)",
                (false, true) => " (best effort)",
                (false, false) => "",
            };
            writeln!(f, "{:>2}. {}{note}", index + 1, step.name)?;
            for op in &step.ops {
                writeln!(f, "    - {op}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use expect_test::expect;

    use super::*;
    use crate::boot::config::tests::full_env;

    pub(crate) fn facts() -> InstanceFacts {
        InstanceFacts {
            os: InstanceOs::Linux,
            instance_id: "i-0123456789abcdef0".to_owned(),
            docker_version: "27.1.1".to_owned(),
            arch: "amd64".to_owned(),
            login_user: "ec2-user".to_owned(),
            login_home: "/home/ec2-user".to_owned(),
            storage: StorageFacts::default(),
            remap_ids: Some(RemapIds { agent_uid: 2000, docker_gid: 992 }),
        }
    }

    fn step_names(plan: &BootPlan) -> Vec<&str> {
        plan.steps.iter().map(|step| step.name).collect()
    }

    #[test]
    fn the_warm_phase_stops_before_the_agent_and_the_resume_reads_again_what_may_change() {
        let config = BootConfig::from_env_map(&full_env()).unwrap();
        let full = plan(&config, &facts());
        let warm = plan_phase(&config, &facts(), BootPhase::Warm);
        // Everything of the full boot but the agent start and the signal.
        let expected: Vec<&str> = step_names(&full)
            .into_iter()
            .filter(|name| !matches!(*name, "start-agent" | "signal-success"))
            .collect();
        assert_eq!(step_names(&warm), expected);
        assert_eq!(warm.steps.last().unwrap().ops, status_step(STATUS_WARMED).ops);
        let resume = plan_phase(&config, &facts(), BootPhase::Resume);
        assert_eq!(
            step_names(&resume),
            [
                "docker-config",
                "docker-binfmt",
                "agent-config",
                "agent-env-file",
                "start-agent",
                "status"
            ]
        );
        assert_eq!(resume.steps.last().unwrap().ops, status_step(STATUS_COMPLETED).ops);
        assert!(
            resume.steps.iter().all(|step| !matches!(
                step.name,
                "bootstrap-script" | "git-mirrors" | "signal-success" | "cfn-env"
            )),
            "the resume repeats nothing slow or one-off"
        );
    }

    #[test]
    fn plans_the_steps_in_the_original_order() {
        let config = BootConfig::from_env_map(&full_env()).unwrap();
        expect![[r#"
            [
                "docker-config",
                "docker-binfmt",
                "cfn-env",
                "agent-release",
                "git-mirrors",
                "build-path",
                "agent-config",
                "agent-env-file",
                "git-lfs",
                "docker",
                "agent-service-environment",
                "start-agent",
                "signal-success",
                "status",
            ]
        "#]]
        .assert_debug_eq(&step_names(&plan(&config, &facts())));
    }

    #[test]
    fn optional_features_add_their_steps() {
        let mut env = full_env();
        for (name, value) in [
            ("BUILDKITE_AGENT_RELEASE", "edge"),
            ("BUILDKITE_ADDITIONAL_SUDO_PERMISSIONS", "/usr/bin/docker"),
            ("BUILDKITE_ENABLE_INSTANCE_STORAGE", "true"),
            ("BUILDKITE_GIT_MIRROR_SEED_BUCKET", "seeds"),
            ("BUILDKITE_AGENT_VERIFICATION_KEY_PATH", "/ci/verify"),
            ("BUILDKITE_AUTHORIZED_USERS_URL", "s3://keys/authorized_keys"),
            ("BUILDKITE_ELASTIC_BOOTSTRAP_SCRIPT", "file:///opt/setup.sh"),
            ("ENABLE_RESOURCE_LIMITS", "true"),
            ("ENABLE_EC2_LOG_RETENTION_POLICY", "true"),
            ("BUILDKITE_STACK_DEPLOYED_BY", "terraform"),
        ] {
            env.insert(name.to_owned(), value.to_owned());
        }
        let config = BootConfig::from_env_map(&env).unwrap();
        let plan = plan(&config, &facts());
        let text = plan.to_string();
        for needle in [
            "fetch https://download.buildkite.com/agent/experimental/latest/buildkite-agent-linux-amd64 to /usr/bin/buildkite-agent-edge (0755)",
            "link /usr/bin/buildkite-agent -> /usr/bin/buildkite-agent-edge",
            "visudo -cf /etc/sudoers.d/buildkite-agent-additional.pending",
            "mount --bind /mnt/ephemeral/builds /var/lib/buildkite-agent/builds",
            "set the /var/lib/buildkite-agent/git-mirrors line of /etc/fstab: /mnt/ephemeral/git-mirrors /var/lib/buildkite-agent/git-mirrors none defaults,bind 0 0",
            "note: No NVMe drives to mount.",
            "create directory /mnt/ephemeral/docker (0711)",
            "\"data-root\":\"/mnt/ephemeral/docker\"",
            "seed git mirrors from s3://seeds/git-mirror-seeds/",
            "write SSM parameter /ci/verify to /etc/buildkite-agent/verification-key.json (0640)",
            "chown ec2-user:ec2-user /home/ec2-user/.ssh/authorized_keys",
            "systemctl enable --now refresh_authorized_keys.timer",
            "fetch file:///opt/setup.sh to /var/lib/elastic-ci-bootstrap and run it",
            "| MemoryMax=90%",
            "set retention_in_days=7",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
        }
        assert!(!step_names(&plan).contains(&"signal-success"));
    }

    /// See: the authorized-keys refresher, which holds its source URL, was readable
    /// by every user.
    #[test]
    fn the_authorized_keys_refresher_is_private_to_root() {
        let mut env = full_env();
        env.insert(
            "BUILDKITE_AUTHORIZED_USERS_URL".to_owned(),
            "https://keys.example.com/keys?X-Amz-Signature=secret".to_owned(),
        );
        let config = BootConfig::from_env_map(&env).unwrap();
        let plan = plan(&config, &facts());
        let script = plan
            .steps
            .iter()
            .flat_map(|step| &step.ops)
            .find_map(|op| match op {
                Op::WriteFile { path, mode, content, show } if path == REFRESH_KEYS_SCRIPT_PATH => {
                    Some((*mode, content.clone(), *show))
                }
                _ => None,
            })
            .expect("the plan writes the refresher");
        assert_eq!(script.0, 0o700);
        assert!(script.1.contains("X-Amz-Signature=secret"));
        assert!(!script.2);
        assert!(!plan.to_string().contains("X-Amz-Signature"));
    }

    #[test]
    fn every_boot_steps_come_first_and_configure_docker() {
        let config = BootConfig::from_env_map(&full_env()).unwrap();
        let plan = plan(&config, &facts());
        let n_every_boot = plan.steps.iter().take_while(|step| step.every_boot).count();
        assert_eq!(n_every_boot, 2);
        assert!(plan.steps[n_every_boot..].iter().all(|step| !step.every_boot));
        let text = plan.to_string();
        // One leading space less on each line: expect-test strips the common indentation.
        let docker: String = text
            .split(" 3. cfn-env")
            .next()
            .unwrap()
            .lines()
            .map(|line| format!("{}\n", line.strip_prefix(' ').unwrap_or(line)))
            .collect();
        expect![[r#"
             1. docker-config (every boot)
                - write /etc/subuid (0644)
                  | buildkite-agent:2000:1
                  | buildkite-agent:100000:65536
                - write /etc/subgid (0644)
                  | buildkite-agent:992:1
                  | buildkite-agent:100000:65536
                - set in /etc/docker/daemon.json, keeping its other keys: {"default-address-pools":[{"base":"172.17.0.0/12","size":20},{"base":"192.168.0.0/16","size":24}],"userns-remap":"buildkite-agent"}
                - write /etc/systemd/system/docker-gc.service.d/prune-until.conf (0644)
                  | [Service]
                  | Environment=DOCKER_PRUNE_UNTIL=4h
                - write /etc/systemd/system/docker-low-disk-gc.service.d/prune-until.conf (0644)
                  | [Service]
                  | Environment=DOCKER_PRUNE_UNTIL=4h
                - systemctl daemon-reload
                - systemctl enable --now docker-gc.timer docker-low-disk-gc.timer
                - systemctl restart docker.service
             2. docker-binfmt (every boot, best effort)
                - systemctl start docker-binfmt.service
        "#]]
        .assert_eq(&docker);
    }

    #[test_case::test_case("ID=ubuntu\nNAME=Ubuntu", "ubuntu")]
    #[test_case::test_case("ID=\"ubuntu\"", "ubuntu")]
    #[test_case::test_case("ID=\"amzn\"\nID_LIKE=\"fedora\"", "ec2-user")]
    #[test_case::test_case("", "ec2-user")]
    fn picks_the_login_user(os_release: &str, expected: &str) {
        assert_eq!(login_user(os_release), expected);
    }

    #[test]
    fn finds_home_directories() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\nubuntu:x:1000:1000::/srv/ubuntu:/bin/bash\n";
        assert_eq!(home_of(passwd, "ubuntu"), "/srv/ubuntu");
        assert_eq!(home_of(passwd, "ec2-user"), "/home/ec2-user");
    }
}
