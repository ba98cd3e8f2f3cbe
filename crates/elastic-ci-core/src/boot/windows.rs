//! The boot of a Windows instance: the same configuration as on Linux, the original's
//! Windows layout (`C:\buildkite-agent\…`), and its flaws fixed.
//!
//! - The agent runs as a Windows service of its own virtual account
//!   (`NT SERVICE\buildkite-agent`, which has no password to generate, store or pass
//!   on a command line), installed through NSSM as one recorded
//!   [`SystemAction::InstallService`]. When the agent exits, `elastic-ci-bootstrap
//!   terminate` runs and the service is never restarted (the original restarted it,
//!   so an instance on its way out took new jobs). A stop is a Ctrl-C, the agent's
//!   graceful stop, and waits for running jobs instead of killing them after a few
//!   seconds.
//! - Explicit access control lists: `C:\buildkite-agent` and what it holds belong to
//!   SYSTEM and Administrators, the agent's account may read and run them, write only
//!   its builds, plugins and git mirrors, and read the files with secrets (agent
//!   configuration with the token, signing keys, the agent environment file, cfn-env),
//!   which no other account may. The original set no access lists at all.
//! - The bootstrap script runs by its extension: `.ps1` with `powershell.exe -File`,
//!   `.bat` and `.cmd` with `cmd.exe /c`; anything else is refused before the boot
//!   changes anything.
//! - Failure takes the same path as on Linux (Unhealthy, FAILURE signal), for every
//!   step.
//!
//! What Linux has and Windows does not (instance storage, Docker's daemon settings,
//! sudo rules, authorized keys, resource limits, log retention) is
//! left out, with a note in the boot log when it was asked for.

use crate::boot::action::{Access, AccessGrant, SystemAction};
use crate::boot::agent_config::{AgentConfig, AgentPaths};
use crate::boot::cfn_env;
use crate::boot::config::BootConfig;
use crate::boot::plan::{
    BootPhase, BootPlan, InstanceFacts, Op, STATUS_COMPLETED, STATUS_WARMED, ScriptShell,
    agent_config_ops_at, agent_env_file_ops_at, first_boot_steps, signal_success_step,
    signing_key_ops_at, status_step_at, write,
};
use crate::uri::SourceUri;

pub const AGENT_ROOT: &str = r"C:\buildkite-agent";
pub const BIN_DIR: &str = r"C:\buildkite-agent\bin";
pub const AGENT_CONFIG_PATH: &str = r"C:\buildkite-agent\buildkite-agent.cfg";
pub const CFN_ENV_PATH: &str = r"C:\buildkite-agent\cfn-env";
pub const AGENT_ENV_FILE_PATH: &str = r"C:\buildkite-agent\env";
pub const BUILD_PATH: &str = r"C:\buildkite-agent\builds";
pub const PLUGINS_PATH: &str = r"C:\buildkite-agent\plugins";
pub const GIT_MIRRORS_PATH: &str = r"C:\buildkite-agent\git-mirrors";
pub const HOOKS_PATH: &str = r"C:\buildkite-agent\hooks";
pub const SIGNING_KEY_PATH: &str = r"C:\buildkite-agent\signing-key.json";
pub const VERIFICATION_KEY_PATH: &str = r"C:\buildkite-agent\verification-key.json";
pub const AGENT_BINARY_PATH: &str = r"C:\buildkite-agent\bin\buildkite-agent.exe";
pub const BOOTSTRAP_BINARY_PATH: &str = r"C:\buildkite-agent\bin\elastic-ci-bootstrap.exe";
pub const AGENT_LOG_PATH: &str = r"C:\buildkite-agent\buildkite-agent.log";
/// Where the image puts the CloudWatch agent's configuration, and the agent's control
/// script.
pub const CLOUDWATCH_AGENT_CONFIG_PATH: &str =
    r"C:\ProgramData\Amazon\AmazonCloudWatchAgent\amazon-cloudwatch-agent.json";
const CLOUDWATCH_AGENT_CTL: &str =
    r"C:\Program Files\Amazon\AmazonCloudWatchAgent\amazon-cloudwatch-agent-ctl.ps1";
pub const STATUS_FILE_PATH: &str = r"C:\buildkite-agent\elastic-stack-bootstrap-status";
pub const LOG_FILE_PATH: &str = r"C:\buildkite-agent\elastic-stack.log";
/// Where the bootstrap script is fetched to: under the administrators' program data,
/// never the agent's directories.
pub const PRIVATE_DIR_PATH: &str = r"C:\ProgramData\elastic-ci-bootstrap";
pub const DRAIN_MARKER_PATH: &str = r"C:\ProgramData\elastic-ci\lifecycle-drain";
/// The agent's service, and the virtual account it runs as.
pub const SERVICE_NAME: &str = "buildkite-agent";
pub const AGENT_ACCOUNT: &str = r"NT SERVICE\buildkite-agent";
/// LocalSystem and the Administrators group, by their well-known SIDs (names differ
/// between Windows languages).
pub const SYSTEM_ACCOUNT: &str = "*S-1-5-18";
pub const ADMINISTRATORS: &str = "*S-1-5-32-544";
/// How long a stop waits for running jobs after the Ctrl-C: a day, standing for the
/// Linux unit's unlimited stop (`TimeoutStopSec=0`).
pub const STOP_TIMEOUT_SECS: u32 = 86_400;
/// The program that runs the agent as a service.
pub const NSSM: &str = r"C:\Program Files\nssm\nssm.exe";

/// The Windows layout of the agent configuration. The original sets `shell=powershell`.
pub const WINDOWS_PATHS: AgentPaths = AgentPaths {
    hooks: HOOKS_PATH,
    build: BUILD_PATH,
    plugins: PLUGINS_PATH,
    git_mirrors: GIT_MIRRORS_PATH,
    signing_key: SIGNING_KEY_PATH,
    verification_key: VERIFICATION_KEY_PATH,
    shell: Some("powershell"),
    access: "SYSTEM and Administrators, read by NT SERVICE\\buildkite-agent alone",
};

/// Plans one phase of a Windows boot.
pub fn plan_phase(config: &BootConfig, facts: &InstanceFacts, phase: BootPhase) -> BootPlan {
    let mut steps = Vec::new();
    if phase == BootPhase::Resume {
        steps.extend(first_boot_steps([
            ("agent-config", agent_config_ops(config, facts)),
            ("agent-env-file", agent_env_file_ops(config)),
            ("start-agent", start_agent_ops(phase)),
        ]));
        steps.push(status_step_at(STATUS_FILE_PATH, STATUS_COMPLETED));
        return BootPlan { steps };
    }
    steps.extend(first_boot_steps([
        ("configuration", refusals(config)),
        ("ignored-settings", ignored_settings(config)),
        ("directories", directory_ops(config)),
        ("cfn-env", cfn_env_ops(config, facts)),
        ("agent-release", agent_release_ops(config)),
        ("agent-config", agent_config_ops(config, facts)),
        ("signing-keys", signing_key_ops(config)),
        ("agent-env-file", agent_env_file_ops(config)),
        ("bootstrap-script", bootstrap_script_ops(config)),
        ("cloudwatch-agent", cloudwatch_agent_ops(config)),
        ("agent-service", agent_service_ops(config)),
        ("start-agent", start_agent_ops(phase)),
    ]));
    if phase == BootPhase::Full {
        steps.extend(signal_success_step(config, facts));
    }
    let status = if phase == BootPhase::Warm { STATUS_WARMED } else { STATUS_COMPLETED };
    steps.push(status_step_at(STATUS_FILE_PATH, status));
    BootPlan { steps }
}

/// Settings the Windows boot cannot carry out, refused before anything changes.
fn refusals(config: &BootConfig) -> Vec<Op> {
    let script = config.bootstrap_script.as_ref().map(ScriptShell::for_windows);
    script.and_then(Result::err).map(Op::Refuse).into_iter().collect()
}

/// Notes for the settings that mean nothing on Windows but were asked for.
fn ignored_settings(config: &BootConfig) -> Vec<Op> {
    let asked = [
        (config.authorized_users.is_some(), "BUILDKITE_AUTHORIZED_USERS_URL"),
        (config.additional_sudo_permissions.is_some(), "BUILDKITE_ADDITIONAL_SUDO_PERMISSIONS"),
        (config.resource_limits.is_some(), "ENABLE_RESOURCE_LIMITS"),
        (config.instance_storage, "BUILDKITE_ENABLE_INSTANCE_STORAGE"),
        (config.log_retention_days.is_some(), "ENABLE_EC2_LOG_RETENTION_POLICY"),
    ];
    asked
        .into_iter()
        .filter(|(set, _)| *set)
        .map(|(_, name)| Op::Note(format!("{name} has no effect on Windows instances")))
        .collect()
}

/// SYSTEM and Administrators in full control, and the agent's account with `access`.
fn grants(access: Access) -> Vec<AccessGrant> {
    [(SYSTEM_ACCOUNT, Access::Full), (ADMINISTRATORS, Access::Full), (AGENT_ACCOUNT, access)]
        .into_iter()
        .map(|(account, access)| AccessGrant { account: account.to_owned(), access })
        .collect()
}

/// A file's access list.
fn restrict(path: &str, access: Access) -> Op {
    Op::System(SystemAction::RestrictAccess {
        path: path.to_owned(),
        grants: grants(access),
        inherit: false,
    })
}

/// A directory's access list, inherited by what it holds.
fn restrict_dir(path: &str, access: Access) -> Op {
    Op::System(SystemAction::RestrictAccess {
        path: path.to_owned(),
        grants: grants(access),
        inherit: true,
    })
}

/// The agent's directories: read and run everything, write only where jobs work.
fn directory_ops(config: &BootConfig) -> Vec<Op> {
    let mut writable = vec![BUILD_PATH, PLUGINS_PATH];
    if config.git_mirrors {
        writable.push(GIT_MIRRORS_PATH);
    }
    let mut ops = vec![
        Op::CreateDir { path: AGENT_ROOT.to_owned(), mode: 0o755 },
        restrict_dir(AGENT_ROOT, Access::ReadExecute),
    ];
    for dir in writable {
        ops.push(Op::CreateDir { path: dir.to_owned(), mode: 0o755 });
        ops.push(restrict_dir(dir, Access::Modify));
    }
    if let (true, Some(bucket)) = (config.git_mirrors, &config.git_mirror_seed_bucket) {
        ops.push(Op::SeedGitMirrors { bucket: bucket.clone(), dir: GIT_MIRRORS_PATH.to_owned() });
    }
    ops
}

fn cfn_env_ops(config: &BootConfig, facts: &InstanceFacts) -> Vec<Op> {
    vec![
        write(CFN_ENV_PATH, 0o640, cfn_env::render(&cfn_env::entries(config, facts))),
        read_only(CFN_ENV_PATH),
    ]
}

/// The image's CloudWatch agent configuration names its log groups `/buildkite/{stack_name}/…`:
/// the boot fills in the stack and has the agent read it again.
fn cloudwatch_agent_ops(config: &BootConfig) -> Vec<Op> {
    vec![Op::ConfigureCloudWatchAgent {
        config_path: CLOUDWATCH_AGENT_CONFIG_PATH.to_owned(),
        stack_name: config.stack_name.clone(),
        retention_days: config.log_retention_days,
        reload: [
            "powershell.exe",
            "-NoProfile",
            "-NonInteractive",
            "-ExecutionPolicy",
            "Bypass",
            "-File",
            CLOUDWATCH_AGENT_CTL,
            "-a",
            "fetch-config",
            "-m",
            "ec2",
            "-s",
            "-c",
            &format!("file:{CLOUDWATCH_AGENT_CONFIG_PATH}"),
        ]
        .map(str::to_owned)
        .to_vec(),
    }]
}

/// `bin\buildkite-agent.exe` from the channel's binary, downloaded first when the
/// image does not carry it.
fn agent_release_ops(config: &BootConfig) -> Vec<Op> {
    let channel_binary = format!(r"{BIN_DIR}\buildkite-agent-{}.exe", config.release.as_str());
    let mut ops = Vec::new();
    if let Some(url) = config.release.windows_download_url() {
        // A constant https URL.
        if let Ok(source) = SourceUri::new(&url) {
            ops.push(Op::Fetch { source, path: channel_binary.clone(), mode: 0o755 });
        }
    }
    ops.push(Op::Copy { from: channel_binary, to: AGENT_BINARY_PATH.to_owned() });
    ops
}

fn agent_config_ops(config: &BootConfig, facts: &InstanceFacts) -> Vec<Op> {
    let agent_config = AgentConfig::with_paths(config, facts, &WINDOWS_PATHS);
    agent_config_ops_at(config, AGENT_CONFIG_PATH, agent_config, &read_only)
}

fn signing_key_ops(config: &BootConfig) -> Vec<Op> {
    signing_key_ops_at(config, [SIGNING_KEY_PATH, VERIFICATION_KEY_PATH], &read_only)
}

fn agent_env_file_ops(config: &BootConfig) -> Vec<Op> {
    agent_env_file_ops_at(config, AGENT_ENV_FILE_PATH, &read_only)
}

/// A file with a secret: the agent's account may read it, no other account.
fn read_only(path: &str) -> Op {
    restrict(path, Access::Read)
}

fn bootstrap_script_ops(config: &BootConfig) -> Vec<Op> {
    let Some(source) = &config.bootstrap_script else { return Vec::new() };
    // Refused by the configuration step otherwise.
    let Ok(shell) = ScriptShell::for_windows(source) else { return Vec::new() };
    vec![Op::RunBootstrapScript { source: source.clone(), shell }]
}

fn agent_service_ops(config: &BootConfig) -> Vec<Op> {
    let mut ops = vec![Op::System(SystemAction::InstallService {
        name: SERVICE_NAME.to_owned(),
        program: AGENT_BINARY_PATH.to_owned(),
        args: vec!["start".to_owned(), "--config".to_owned(), AGENT_CONFIG_PATH.to_owned()],
        account: AGENT_ACCOUNT.to_owned(),
        log_path: AGENT_LOG_PATH.to_owned(),
        environment: vec![
            format!("HOME={AGENT_ROOT}"),
            format!("BUILDKITE_TERMINATE_INSTANCE_AFTER_JOB={}", config.terminate_after_job),
        ],
        environment_file: config.env_file.as_ref().map(|_| AGENT_ENV_FILE_PATH.to_owned()),
        on_exit: vec![BOOTSTRAP_BINARY_PATH.to_owned(), "terminate".to_owned()],
        stop_timeout_secs: STOP_TIMEOUT_SECS,
    })];
    if config.windows_administrator {
        ops.push(Op::System(SystemAction::AddToGroup {
            account: AGENT_ACCOUNT.to_owned(),
            group: ADMINISTRATORS.to_owned(),
        }));
    }
    ops
}

fn start_agent_ops(phase: BootPhase) -> Vec<Op> {
    match phase {
        BootPhase::Warm => Vec::new(),
        BootPhase::Full | BootPhase::Resume => {
            vec![Op::System(SystemAction::StartService { name: SERVICE_NAME.to_owned() })]
        }
    }
}

/// The commands that carry out a Windows-only action, or `None` for any other.
/// `environment_file` is what the action's environment file holds, as `NAME=value`
/// assignments (read by the caller).
pub fn commands(action: &SystemAction, environment_file: &[String]) -> Option<Vec<Vec<String>>> {
    let words = |items: &[&str]| items.iter().map(|item| (*item).to_owned()).collect::<Vec<_>>();
    match action {
        SystemAction::InstallService {
            name,
            program,
            args,
            account,
            log_path,
            environment,
            environment_file: _,
            on_exit,
            stop_timeout_secs,
        } => {
            let nssm_set = |setting: &str, values: &[&str]| {
                let mut command = words(&[NSSM, "set", name, setting]);
                command.extend(words(values));
                command
            };
            let mut install = words(&[NSSM, "install", name, program]);
            install.extend(args.iter().cloned());
            let mut environment_extra = words(&[NSSM, "set", name, "AppEnvironmentExtra"]);
            environment_extra.extend(environment.iter().cloned());
            environment_extra.extend(environment_file.iter().cloned());
            let stop_ms = (u64::from(*stop_timeout_secs) * 1000).to_string();
            Some(vec![
                install,
                // A virtual account: the service control manager knows it, and it has no
                // password.
                words(&["sc.exe", "config", name, "obj=", account]),
                nssm_set("Start", &["SERVICE_AUTO_START"]),
                nssm_set("AppStdout", &[log_path]),
                nssm_set("AppStderr", &[log_path]),
                environment_extra,
                // Never restarted: the exit hook terminates the instance.
                nssm_set("AppExit", &["Default", "Exit"]),
                nssm_set("AppEvents", &["Exit/Post", &on_exit.join(" ")]),
                // A stop is Ctrl-C, then the jobs' time; no window messages, which a
                // console program ignores.
                nssm_set("AppStopMethodSkip", &["6"]),
                nssm_set("AppStopMethodConsole", &[&stop_ms]),
            ])
        }
        SystemAction::StartService { name } => Some(vec![words(&[NSSM, "start", name])]),
        SystemAction::RestrictAccess { path, grants, inherit } => {
            let mut command = words(&["icacls", path, "/inheritance:r"]);
            // (OI)(CI): inherited by the files and directories inside.
            let flags = if *inherit { "(OI)(CI)" } else { "" };
            for grant in grants {
                command.push("/grant:r".to_owned());
                command.push(format!("{}:{flags}({})", grant.account, grant.access.icacls()));
            }
            Some(vec![command])
        }
        SystemAction::AddToGroup { account, group } => {
            Some(vec![words(&["net", "localgroup", group, account, "/add"])])
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use expect_test::expect;

    use super::*;
    use crate::boot::config::tests::full_env;
    use crate::boot::plan::InstanceOs;
    use crate::boot::plan::tests::facts;
    use crate::secret::Secret;

    fn windows_facts() -> InstanceFacts {
        InstanceFacts { os: InstanceOs::Windows, docker_version: "unknown".to_owned(), ..facts() }
    }

    fn config(changes: &[(&str, &str)]) -> BootConfig {
        let mut env = full_env();
        for (name, value) in changes {
            env.insert((*name).to_owned(), (*value).to_owned());
        }
        BootConfig::from_env_map(&env).unwrap()
    }

    #[test]
    fn golden_windows_plan() {
        let config = config(&[
            ("BUILDKITE_ELASTIC_BOOTSTRAP_SCRIPT", "https://example.com/setup.ps1?sig=x"),
            ("BUILDKITE_AGENT_RELEASE", "stable"),
        ]);
        let plan = crate::boot::plan::plan(&config, &windows_facts());
        expect![[r#"
             1. directories
                - create directory C:\buildkite-agent (0755)
                - set the access list of C:\buildkite-agent to *S-1-5-18:F, *S-1-5-32-544:F, NT SERVICE\buildkite-agent:RX
                - create directory C:\buildkite-agent\builds (0755)
                - set the access list of C:\buildkite-agent\builds to *S-1-5-18:F, *S-1-5-32-544:F, NT SERVICE\buildkite-agent:M
                - create directory C:\buildkite-agent\plugins (0755)
                - set the access list of C:\buildkite-agent\plugins to *S-1-5-18:F, *S-1-5-32-544:F, NT SERVICE\buildkite-agent:M
                - create directory C:\buildkite-agent\git-mirrors (0755)
                - set the access list of C:\buildkite-agent\git-mirrors to *S-1-5-18:F, *S-1-5-32-544:F, NT SERVICE\buildkite-agent:M
             2. cfn-env
                - write C:\buildkite-agent\cfn-env (0640)
                  | # Written by elastic-ci-bootstrap at boot and sourced by the agent's environment hook
                  | # in every job. Every value here is printed into build logs and CloudWatch and cannot be
                  | # redacted: never put a secret in this file.
                  | 
                  | # Prints and exports a variable, overriding the job's own value.
                  | set_always() {
                  |   local name="$1" value="$2"
                  |   printf 'export %s="%s"\n' "$name" "$value"
                  |   export "$name=$value"
                  | }
                  | 
                  | # Exports a variable unless the job already has it (even empty); never prints the
                  | # job's value.
                  | set_unless_present() {
                  |   local name="$1" value="$2"
                  |   if [[ -n "${!name+set}" ]]; then
                  |     echo "^^^ +++"
                  |     echo ":warning: $name already set, NOT overriding!"
                  |   else
                  |     set_always "$name" "$value"
                  |   fi
                  | }
                  | 
                  | # Assignments (one per variable; values are single-quoted):
                  | set_always BUILDKITE_AGENTS_PER_INSTANCE 2
                  | set_always BUILDKITE_TERMINATE_INSTANCE_AFTER_JOB false
                  | set_always BUILDKITE_TERMINATE_INSTANCE_ON_DISK_FULL false
                  | set_always BUILDKITE_PURGE_BUILDS_ON_DISK_FULL true
                  | set_always BUILDKITE_ECR_POLICY readonly
                  | set_always ECR_CREDENTIAL_HELPER_ENABLED false
                  | set_always BUILDKITE_SECRETS_BUCKET ci-linux-managedsecretsbucket-1x2y3z
                  | set_always BUILDKITE_SECRETS_BUCKET_REGION us-east-1
                  | set_always BUILDKITE_STACK_NAME ci-linux
                  | set_always BUILDKITE_STACK_VERSION v7.0.0
                  | set_always BUILDKITE_DOCKER_EXPERIMENTAL false
                  | set_always DOCKER_USERNS_REMAP true
                  | set_always ENABLE_PRE_EXIT_DISK_CLEANUP false
                  | set_always DOCKER_PRUNE_UNTIL 4h
                  | set_always DOCKER_BUILDER_PRUNE_ENABLED false
                  | set_always DOCKER_VERSION unknown
                  | set_always PLUGINS_ENABLED 'secrets ecr'
                  | set_always BUILDKITE_ARTIFACTS_BUCKET ci-artifacts
                  | set_always BUILDKITE_S3_DEFAULT_REGION us-east-1
                  | set_always BUILDKITE_S3_ACL private
                  | set_unless_present BUILDKITE_SECRETS_PLUGIN_SKIP_SSH_KEY_NOT_FOUND_WARNING false
                  | set_unless_present AWS_DEFAULT_REGION us-east-1
                  | set_unless_present AWS_REGION us-east-1
                - set the access list of C:\buildkite-agent\cfn-env to *S-1-5-18:F, *S-1-5-32-544:F, NT SERVICE\buildkite-agent:R
             3. agent-release
                - copy C:\buildkite-agent\bin\buildkite-agent-stable.exe to C:\buildkite-agent\bin\buildkite-agent.exe
             4. agent-config
                - read the agent token from SSM parameter /ci-linux/buildkite/agent-token (never logged)
                - write C:\buildkite-agent\buildkite-agent.cfg (0640)
                  | # Written by elastic-ci-bootstrap at boot. It holds the agent registration token:
                  | # SYSTEM and Administrators, read by NT SERVICE\buildkite-agent alone. Changes are overwritten on the next boot.
                  | name="ci-linux-i-0123456789abcdef0-%spawn"
                  | token="<token from SSM>"
                  | tags=queue=default,docker=unknown,stack=ci-linux,buildkite-aws-stack=v7.0.0,stack-deployed-by=cloudformation,os=linux,size=large
                  | endpoint=https://agent-edge.buildkite.com/v3
                  | tags-from-ec2-meta-data=true
                  | no-ansi-timestamps=false
                  | timestamp-lines=false
                  | hooks-path=C:\buildkite-agent\hooks
                  | build-path=C:\buildkite-agent\builds
                  | plugins-path=C:\buildkite-agent\plugins
                  | git-mirrors-path="C:\buildkite-agent\git-mirrors"
                  | experiment="normalised-upload-paths"
                  | priority=%n
                  | spawn=2
                  | no-color=true
                  | shell=powershell
                  | disconnect-after-idle-timeout=600
                  | disconnect-after-job=false
                  | disconnect-after-uptime=0
                  | tracing-backend=
                  | cancel-grace-period=60
                  | signal-grace-period-seconds=-1
                  | signing-aws-kms-key=
                  | verification-failure-behavior=block
                - set the access list of C:\buildkite-agent\buildkite-agent.cfg to *S-1-5-18:F, *S-1-5-32-544:F, NT SERVICE\buildkite-agent:R
             5. agent-env-file
                - fetch s3://ci-config/agent.env to C:\buildkite-agent\env (0640)
                - set the access list of C:\buildkite-agent\env to *S-1-5-18:F, *S-1-5-32-544:F, NT SERVICE\buildkite-agent:R
             6. bootstrap-script
                - fetch https://example.com/setup.ps1?… to C:\ProgramData\elastic-ci-bootstrap and run it with powershell.exe -File as the boot's account
             7. cloudwatch-agent
                - name the log groups of C:\ProgramData\Amazon\AmazonCloudWatchAgent\amazon-cloudwatch-agent.json /buildkite/ci-linux/… and run powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -File C:\Program Files\Amazon\AmazonCloudWatchAgent\amazon-cloudwatch-agent-ctl.ps1 -a fetch-config -m ec2 -s -c file:C:\ProgramData\Amazon\AmazonCloudWatchAgent\amazon-cloudwatch-agent.json
             8. agent-service
                - install service buildkite-agent: C:\buildkite-agent\bin\buildkite-agent.exe start --config C:\buildkite-agent\buildkite-agent.cfg as NT SERVICE\buildkite-agent; on exit C:\buildkite-agent\bin\elastic-ci-bootstrap.exe terminate, never restarted; stops by Ctrl-C within 86400 s
                - add NT SERVICE\buildkite-agent to the local group *S-1-5-32-544
             9. start-agent
                - start service buildkite-agent
            10. signal-success (best effort)
                - signal SUCCESS to ci-linux/AgentAutoScaleGroup for i-0123456789abcdef0
            11. status
                - write C:\buildkite-agent\elastic-stack-bootstrap-status (0644)
        "#]].assert_eq(&plan.to_string());
    }

    #[test]
    fn the_agent_configuration_uses_the_windows_layout() {
        let config = config(&[]);
        let rendered = AgentConfig::with_paths(&config, &windows_facts(), &WINDOWS_PATHS)
            .render(&Secret::new("bkat_example"))
            .unwrap();
        let text = rendered.expose();
        assert!(text.contains("hooks-path=C:\\buildkite-agent\\hooks\n"), "{text}");
        assert!(text.contains("build-path=C:\\buildkite-agent\\builds\n"), "{text}");
        assert!(text.contains("\nshell=powershell\n"), "{text}");
        assert!(text.contains("read by NT SERVICE\\buildkite-agent alone"), "{text}");
    }

    #[test]
    fn bootstrap_scripts_run_by_extension() {
        let shell = |source: &str| ScriptShell::for_windows(&SourceUri::new(source).unwrap());
        assert_eq!(shell("s3://bkt/a/setup.PS1"), Ok(ScriptShell::PowerShell));
        assert_eq!(shell("https://example.com/x.bat?sig=a.sh"), Ok(ScriptShell::Batch));
        assert_eq!(shell("file:///C:/scripts/x.cmd"), Ok(ScriptShell::Batch));
        let error = shell("s3://bkt/setup.sh").unwrap_err();
        assert_eq!(
            error,
            "the bootstrap script s3://bkt/setup.sh must end in .ps1 (PowerShell), .bat or .cmd (batch) on Windows"
        );
        assert_eq!(
            ScriptShell::PowerShell.command(r"C:\s.ps1").last().map(String::as_str),
            Some(r"C:\s.ps1")
        );
        assert_eq!(ScriptShell::Batch.command("x.bat")[..3], ["cmd.exe", "/d", "/c"]);
    }

    #[test]
    fn a_script_of_another_kind_is_refused_before_anything_changes() {
        let config = config(&[("BUILDKITE_ELASTIC_BOOTSTRAP_SCRIPT", "s3://bucket/setup.sh")]);
        let plan = crate::boot::plan::plan(&config, &windows_facts());
        assert_eq!(plan.steps[0].name, "configuration");
        assert!(matches!(&plan.steps[0].ops[..], [Op::Refuse(reason)] if reason.contains(".ps1")));
        assert!(!plan.steps.iter().any(|step| step.name == "bootstrap-script"));
    }

    #[test]
    fn the_warm_phase_starts_no_agent_and_the_resume_only_what_may_change() {
        let config = config(&[]);
        let names = |phase| {
            plan_phase(&config, &windows_facts(), phase)
                .steps
                .iter()
                .map(|step| step.name)
                .collect::<Vec<_>>()
        };
        assert!(!names(BootPhase::Warm).contains(&"start-agent"));
        assert!(!names(BootPhase::Warm).contains(&"signal-success"));
        assert_eq!(
            names(BootPhase::Resume),
            ["agent-config", "agent-env-file", "start-agent", "status"]
        );
    }

    #[test]
    fn windows_actions_become_nssm_icacls_and_net_commands() {
        let config = config(&[("BUILDKITE_WINDOWS_ADMINISTRATOR", "false")]);
        let ops = agent_service_ops(&config);
        assert_eq!(ops.len(), 1, "no Administrators membership when switched off");
        let Op::System(install) = &ops[0] else { panic!("{ops:?}") };
        let install_commands = commands(install, &["A=1".to_owned()]).unwrap();
        let lines: Vec<String> = install_commands.iter().map(|command| command.join(" ")).collect();
        expect![[r#"
            C:\Program Files\nssm\nssm.exe install buildkite-agent C:\buildkite-agent\bin\buildkite-agent.exe start --config C:\buildkite-agent\buildkite-agent.cfg
            sc.exe config buildkite-agent obj= NT SERVICE\buildkite-agent
            C:\Program Files\nssm\nssm.exe set buildkite-agent Start SERVICE_AUTO_START
            C:\Program Files\nssm\nssm.exe set buildkite-agent AppStdout C:\buildkite-agent\buildkite-agent.log
            C:\Program Files\nssm\nssm.exe set buildkite-agent AppStderr C:\buildkite-agent\buildkite-agent.log
            C:\Program Files\nssm\nssm.exe set buildkite-agent AppEnvironmentExtra HOME=C:\buildkite-agent BUILDKITE_TERMINATE_INSTANCE_AFTER_JOB=false A=1
            C:\Program Files\nssm\nssm.exe set buildkite-agent AppExit Default Exit
            C:\Program Files\nssm\nssm.exe set buildkite-agent AppEvents Exit/Post C:\buildkite-agent\bin\elastic-ci-bootstrap.exe terminate
            C:\Program Files\nssm\nssm.exe set buildkite-agent AppStopMethodSkip 6
            C:\Program Files\nssm\nssm.exe set buildkite-agent AppStopMethodConsole 86400000"#]].assert_eq(&lines.join("\n"));
        let Op::System(acl) = restrict(AGENT_CONFIG_PATH, Access::Read) else { unreachable!() };
        expect![[r#"icacls C:\buildkite-agent\buildkite-agent.cfg /inheritance:r /grant:r *S-1-5-18:(F) /grant:r *S-1-5-32-544:(F) /grant:r NT SERVICE\buildkite-agent:(R)"#]].assert_eq(&commands(&acl, &[]).unwrap()[0].join(" "));
        assert_eq!(commands(&SystemAction::systemctl(&["start", "x"]), &[]), None);
    }
}
