//! The hooks without AWS: command line, Docker checks and logins, disk paths,
//! fix-permissions, clean-up, ssh-agent handling, and (with the in-memory S3 fake)
//! what the hooks say when the instance role may not read a secret.
//!
//! Every hook runs on a simulated instance (`support::Sandbox`) with recording stubs
//! first on `PATH`, through the real shims where the environment matters.

#[path = "../support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::process::Command;
use std::sync::Arc;

use async_trait::async_trait;
use elastic_ci_aws::ecr::RegistryAuth;
use elastic_ci_aws::fake::FakeObjectStore;
use elastic_ci_aws::s3::ObjectStore;
use elastic_ci_hooks::clients::Clients;
use elastic_ci_hooks::joblog::JobLog;
use elastic_ci_hooks::{Cli, run};
use support::{Sandbox, alive, assert_no_secrets, run_hook, run_shim};

#[test]
fn help_explains_every_command() {
    let output = Command::new(support::HOOKS_BIN).arg("--help").output().unwrap();
    let help = String::from_utf8(output.stdout).unwrap();
    for command in ["environment", "pre-command", "pre-exit", "git-credential"] {
        assert!(help.contains(command), "{help}");
    }
    let output = Command::new(support::HOOKS_BIN).args(["environment", "--help"]).output().unwrap();
    assert!(String::from_utf8(output.stdout).unwrap().contains("DOCKER_CONFIG"));
    let output = Command::new(support::HOOKS_BIN).arg("no-such-hook").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty());
}

#[test]
fn environment_creates_a_private_docker_config_and_pre_exit_removes_it() {
    let sandbox = Sandbox::new();
    let mut env = sandbox.job_env();
    env.insert("BUILDKITE_DOCKER_EXPERIMENTAL".into(), "true".into());
    let run = run_shim("environment", &env);
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    let dir = run.env.get("DOCKER_CONFIG").expect("DOCKER_CONFIG exported").clone();
    assert_eq!(run.env.get("BUILDKITE_DOCKER_CONFIG_TEMP_DIRECTORY"), Some(&dir));
    assert!(dir.starts_with(&*sandbox.path("tmp").to_string_lossy()));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
    let config = std::fs::read_to_string(format!("{dir}/config.json")).unwrap();
    assert!(config.contains(r#""experimental": "enabled""#), "{config}");
    for flag in ["SECRETS_PLUGIN_ENABLED", "ECR_PLUGIN_ENABLED", "DOCKER_LOGIN_PLUGIN_ENABLED"] {
        assert_eq!(run.env.get(flag).map(String::as_str), Some("1"), "{flag}");
    }
    let stderr = run.stderr();
    assert!(
        stderr.contains("~~~ :llama: Setting up elastic stack environment (v0-test)"),
        "{stderr}"
    );
    assert!(sandbox.calls().contains("docker ps"), "{}", sandbox.calls());
    assert!(sandbox.calls().contains("elastic-ci-bootstrap check-disk"));

    let mut job = env.clone();
    job.extend(run.env.clone());
    let exit = run_shim("pre-exit", &job);
    assert_eq!(exit.code(), Some(0), "{}", exit.stderr());
    assert!(!std::path::Path::new(&dir).exists());
    assert!(!exit.env.contains_key("DOCKER_CONFIG"));
    assert!(!exit.env.contains_key("BUILDKITE_DOCKER_CONFIG_TEMP_DIRECTORY"));
    assert!(sandbox.tmp_entries().is_empty(), "{:?}", sandbox.tmp_entries());
}

/// Installed under a hook's name, the binary is the hook itself, as the agent runs an
/// executable hook (Windows' environment.exe): it reads cfn-env on its own, prints
/// nothing, and hands the changes to `buildkite-agent env set` as JSON on stdin and
/// to `env unset` by name, so no shell evaluates any value.
#[test]
fn installed_as_a_hook_it_changes_the_job_through_the_agents_job_api() {
    use elastic_ci_core::boot::cfn_env::{self, CfnEnvEntry, SetMode};

    let sandbox = Sandbox::new();
    let bin = sandbox.path("usr/local/bin");
    for hook in ["environment", "pre-exit"] {
        std::fs::hard_link(bin.join("elastic-ci-hooks"), bin.join(hook)).unwrap();
    }
    let hostile = "it's $(touch pwned) `x` %PATH% ^& \"q\"";
    let entry = |mode, name: &str, value: &str| CfnEnvEntry {
        mode,
        name: name.to_owned(),
        value: value.to_owned(),
    };
    let entries = [
        entry(SetMode::Always, "BUILDKITE_STACK_VERSION", "v9.9.9"),
        entry(SetMode::Always, "STACK_NOTE", hostile),
        entry(SetMode::UnlessPresent, "AWS_REGION", "eu-west-1"),
    ];
    std::fs::write(sandbox.path("usr/local/cfn-env"), cfn_env::render(&entries)).unwrap();
    let env = sandbox.job_env();
    let output = Command::new(bin.join("environment"))
        .current_dir(sandbox.path("tmp"))
        .env_clear()
        .envs(&env)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(output.stdout.is_empty(), "{}", String::from_utf8_lossy(&output.stdout));
    assert!(stderr.contains("(v9.9.9)"), "{stderr}");
    assert!(stderr.contains("AWS_REGION already set, NOT overriding!"), "{stderr}");
    let calls = sandbox.calls();
    assert!(
        calls.contains("buildkite-agent env set --input-format=json --output-format=quiet -"),
        "{calls}"
    );
    assert!(!calls.contains("v9.9.9") && !calls.contains("pwned"), "values as arguments: {calls}");
    let sent: HashMap<String, String> = sandbox
        .stdin_log()
        .lines()
        .filter_map(|line| line.strip_prefix("buildkite-agent: ").or(Some(line)))
        .filter_map(|line| serde_json::from_str::<HashMap<String, String>>(line).ok())
        .flatten()
        .collect();
    assert_eq!(sent["STACK_NOTE"], hostile);
    assert_eq!(sent["BUILDKITE_STACK_VERSION"], "v9.9.9");
    assert!(!sent.contains_key("AWS_REGION"));
    let docker_config = sent["DOCKER_CONFIG"].clone();
    assert!(std::path::Path::new(&docker_config).is_dir());
    assert!(!sandbox.path("tmp/pwned").exists());

    let mut job = env.clone();
    job.extend(sent);
    let output = Command::new(bin.join("pre-exit")).env_clear().envs(&job).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.stdout.is_empty());
    assert!(!std::path::Path::new(&docker_config).exists());
    let calls = sandbox.calls();
    assert!(calls.contains("buildkite-agent env unset"), "{calls}");
    assert!(calls.contains("DOCKER_CONFIG"), "{calls}");
}

/// A job can put a variable that is not UTF-8 into the environment of later hooks: it
/// is named in a warning and left out, and the hook does its work.
/// See: `std::env::vars()` panicked on a variable that is not UTF-8.
#[test]
fn a_variable_that_is_not_utf8_is_named_and_ignored() {
    use std::os::unix::ffi::OsStrExt;

    let sandbox = Sandbox::new();
    let output = Command::new(support::installed_hooks(&sandbox.job_env()))
        .arg("environment")
        .env_clear()
        .envs(sandbox.job_env())
        .env("JOB_JUNK", std::ffi::OsStr::from_bytes(b"\xff\xfe"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("ignoring environment variable \"JOB_JUNK\""), "{stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    support::assert_only_exports(&stdout);
    assert!(stdout.contains("export DOCKER_CONFIG="), "{stdout}");
}

#[test]
fn cfn_env_is_loaded_before_the_hook_runs() {
    let sandbox = Sandbox::new();
    // The stack's cfn-env: it exports settings the hook then acts on.
    std::fs::create_dir_all(sandbox.path("var/lib/buildkite-agent")).unwrap();
    std::fs::write(
        sandbox.path("var/lib/buildkite-agent/cfn-env"),
        "export BUILDKITE_STACK_VERSION='v9.9.9'\nexport PLUGINS_ENABLED='secrets'\n",
    )
    .unwrap();
    let run = run_shim("environment", &sandbox.job_env());
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    let stdout = run.stdout();
    assert!(stdout.contains("~~~ :earth_asia: Setting up environment variables"), "{stdout}");
    assert!(run.stderr().contains("(v9.9.9)"));
    assert_eq!(run.env.get("SECRETS_PLUGIN_ENABLED").map(String::as_str), Some("1"));
    assert_eq!(run.env.get("ECR_PLUGIN_ENABLED"), None);
}

/// The shims' paths are constants of the image: a job that sets `ELASTIC_CI_HOOKS` or
/// `ELASTIC_CI_CFN_ENV` neither runs another binary nor skips cfn-env.
/// See: the hook shims honoured ELASTIC_CI_HOOKS and ELASTIC_CI_CFN_ENV from the job.
#[test]
fn a_job_cannot_swap_the_hook_binary_or_skip_cfn_env() {
    let sandbox = Sandbox::new();
    std::fs::create_dir_all(sandbox.path("var/lib/buildkite-agent")).unwrap();
    std::fs::write(
        sandbox.path("var/lib/buildkite-agent/cfn-env"),
        "export BUILDKITE_STACK_VERSION='v9.9.9'\n",
    )
    .unwrap();
    // What a pipeline would point the shims at instead.
    sandbox.stub("fake-hooks", "#!/bin/bash\necho 'export HIJACKED=1'\n");
    std::fs::write(sandbox.path("home/empty-cfn-env"), "").unwrap();
    let mut env = sandbox.job_env();
    env.insert("ELASTIC_CI_HOOKS".into(), sandbox.path("bin/fake-hooks").display().to_string());
    env.insert(
        "ELASTIC_CI_CFN_ENV".into(),
        sandbox.path("home/empty-cfn-env").display().to_string(),
    );
    for hook in ["environment", "pre-command", "pre-exit"] {
        let run = run_shim(hook, &env);
        assert_eq!(run.code(), Some(0), "{hook}: {}", run.stderr());
        assert_eq!(run.env.get("HIJACKED"), None, "{hook}");
        if hook == "environment" {
            assert!(run.stderr().contains("(v9.9.9)"), "{}", run.stderr());
            assert!(run.env.contains_key("DOCKER_CONFIG"));
            env.extend(run.env.clone());
        }
    }
}

#[test]
fn jobs_switch_plugins_off() {
    let sandbox = Sandbox::new();
    let mut env = sandbox.job_env();
    env.insert("ECR_PLUGIN_ENABLED".into(), "false".into());
    env.insert("DOCKER_LOGIN_PLUGIN_ENABLED".into(), "0".into());
    let run = run_shim("environment", &env);
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    assert_eq!(run.env.get("SECRETS_PLUGIN_ENABLED").map(String::as_str), Some("1"));
    assert_eq!(run.env.get("ECR_PLUGIN_ENABLED").map(String::as_str), Some("0"));
    assert_eq!(run.env.get("DOCKER_LOGIN_PLUGIN_ENABLED").map(String::as_str), Some("0"));
    assert_eq!(run.env.get("PLUGINS_ENABLED").map(String::as_str), Some("secrets"));
}

#[test]
fn docker_not_running_fails_the_job_without_leaving_a_config_behind() {
    let sandbox = Sandbox::new();
    let mut env = sandbox.job_env();
    env.insert("STUB_DOCKER_PS_EXIT".into(), "1".into());
    let run = run_shim("environment", &env);
    assert_eq!(run.code(), Some(1));
    assert!(run.stderr().contains("Docker isn't running!"), "{}", run.stderr());
    assert!(sandbox.tmp_entries().is_empty(), "{:?}", sandbox.tmp_entries());
}

#[test]
fn without_docker_the_docker_steps_are_skipped_with_a_warning() {
    let sandbox = Sandbox::new();
    sandbox.remove_stub("docker");
    let mut env = sandbox.job_env();
    // The system directories of this machine may hold a docker CLI: use a PATH
    // with the stubs and a minimal set of tools only.
    let tools = sandbox.path("tools");
    std::fs::create_dir(&tools).unwrap();
    for tool in ["bash", "sed", "head", "cat"] {
        let found =
            Command::new("/bin/bash").arg("-c").arg(format!("command -v {tool}")).output().unwrap();
        let found = String::from_utf8(found.stdout).unwrap();
        std::os::unix::fs::symlink(found.trim(), tools.join(tool)).unwrap();
    }
    env.insert("PATH".into(), format!("{}:{}", sandbox.path("bin").display(), tools.display()));
    sandbox.disk_answers(&[1, 1]);
    let output = run_hook("environment", &env);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("docker is not installed"), "{stderr}");
    assert!(stderr.contains("nothing to prune"), "{stderr}");
    assert_eq!(output.status.code(), Some(1), "the disk is still full");

    // A job that asks for a docker login cannot do without docker.
    env.insert("DOCKER_LOGIN_PLUGIN_ENABLED".into(), "1".into());
    env.insert("DOCKER_LOGIN_USER".into(), "bot".into());
    env.insert("DOCKER_LOGIN_PASSWORD".into(), "pw".into());
    let output = run_hook("pre-command", &env);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("docker is not installed"));
}

#[test]
fn a_low_disk_is_pruned_and_checked_again() {
    let sandbox = Sandbox::new();
    sandbox.disk_answers(&[1, 0]);
    let mut env = sandbox.job_env();
    env.insert("DOCKER_PRUNE_UNTIL".into(), "2h".into());
    env.insert("DOCKER_BUILDER_PRUNE_ENABLED".into(), "true".into());
    let run = run_shim("environment", &env);
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    let calls = sandbox.calls();
    assert!(calls.contains("docker image prune --all --force --filter until=2h"), "{calls}");
    assert!(calls.contains("docker builder prune --all --force --filter until=2h"), "{calls}");
    assert_eq!(calls.matches("check-disk").count(), 2);
    assert!(run.stderr().contains("~~~ :broom: Pruning docker resources to free disk space"));
}

#[test]
fn a_full_disk_fails_the_job_or_stops_the_agent_after_it() {
    let sandbox = Sandbox::new();
    sandbox.disk_answers(&[1, 1]);
    let env = sandbox.job_env();
    let run = run_shim("environment", &env);
    assert_eq!(run.code(), Some(1));
    let stderr = run.stderr();
    assert!(stderr.contains("--- :warning: Insufficient disk space after cleanup."), "{stderr}");
    assert!(stderr.contains("Not enough disk space free: 1.0G available"), "{stderr}");
    assert!(stderr.contains("set BuildkiteTerminateInstanceOnDiskFull to true"), "{stderr}");
    assert!(!sandbox.calls().contains("terminate"));
    assert!(sandbox.tmp_entries().is_empty(), "{:?}", sandbox.tmp_entries());

    sandbox.disk_answers(&[1, 1]);
    let mut env = env;
    env.insert("BUILDKITE_TERMINATE_INSTANCE_ON_DISK_FULL".into(), "true".into());
    let run = run_shim("environment", &env);
    assert_eq!(run.code(), Some(1));
    // The agent is asked to stop after this job; the instance is not terminated under
    // its other agents' jobs (see: a full disk terminated the instance under its
    // sibling agents' running jobs).
    assert!(run.stderr().contains("Stopping this agent after the job due to disk space issues"));
    assert!(sandbox.calls().contains("buildkite-agent stop \n"), "{}", sandbox.calls());
    assert!(!sandbox.calls().contains("terminate"), "{}", sandbox.calls());
}

#[test]
fn pre_exit_cleans_up_even_when_the_disk_is_full() {
    let sandbox = Sandbox::new();
    let env = sandbox.job_env();
    let setup = run_shim("environment", &env);
    assert_eq!(setup.code(), Some(0), "{}", setup.stderr());
    let mut job = env.clone();
    job.extend(setup.env.clone());
    // An ssh-agent as the secrets would have started it.
    let agent =
        Command::new("ssh-agent").arg("-s").env("TMPDIR", sandbox.path("tmp")).output().unwrap();
    let agent = String::from_utf8(agent.stdout).unwrap();
    let field = |name: &str| {
        agent
            .split(';')
            .find_map(|part| part.trim().strip_prefix(&format!("{name}=")))
            .unwrap()
            .to_owned()
    };
    let pid = field("SSH_AGENT_PID");
    job.insert("SSH_AUTH_SOCK".into(), field("SSH_AUTH_SOCK"));
    job.insert("SSH_AGENT_PID".into(), pid.clone());
    job.insert("ELASTIC_CI_SSH_AGENT_PID".into(), pid.clone());
    assert!(alive(&pid));

    job.insert("ENABLE_PRE_EXIT_DISK_CLEANUP".into(), "true".into());
    job.insert("BUILDKITE_TERMINATE_INSTANCE_ON_DISK_FULL".into(), "true".into());
    sandbox.disk_answers(&[1, 1]);
    let exit = run_shim("pre-exit", &job);
    assert_eq!(exit.code(), Some(1), "{}", exit.stderr());
    assert!(!std::path::Path::new(&job["DOCKER_CONFIG"]).exists());
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(!alive(&pid), "ssh-agent {pid} still running");
    assert!(sandbox.calls().contains("buildkite-agent stop \n"), "{}", sandbox.calls());
    assert!(!sandbox.calls().contains("terminate"), "{}", sandbox.calls());
    assert!(sandbox.tmp_entries().is_empty(), "{:?}", sandbox.tmp_entries());
}

#[test]
fn pre_exit_removes_only_its_own_docker_config_and_ssh_agent() {
    let sandbox = Sandbox::new();
    let mut env = sandbox.job_env();
    let precious = sandbox.path("home/precious");
    std::fs::create_dir(&precious).unwrap();
    env.insert("BUILDKITE_DOCKER_CONFIG_TEMP_DIRECTORY".into(), precious.display().to_string());
    // A process that is not an ssh-agent.
    let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
    env.insert("ELASTIC_CI_SSH_AGENT_PID".into(), sleeper.id().to_string());
    let output = run_hook("pre-exit", &env);
    assert_eq!(output.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("its name does not start with the per-job prefix"), "{stderr}");
    assert!(precious.exists());
    assert!(alive(&sleeper.id().to_string()));
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
}

/// The bootstrapper is the one installed beside `elastic-ci-hooks`: a job that sets
/// `ELASTIC_CI_BOOTSTRAP` or `ELASTIC_CI_SUDO` neither replaces the disk check that
/// protects the next jobs nor chooses what runs through sudo.
/// See: the hooks honoured ELASTIC_CI_BOOTSTRAP and ELASTIC_CI_SUDO from the job.
#[test]
fn a_job_cannot_choose_the_bootstrapper_or_how_it_gets_root() {
    let sandbox = Sandbox::new();
    // What a job would point the hooks at instead: a disk check that always passes.
    sandbox
        .stub("fake-bootstrap", "#!/bin/bash\necho \"hijacked $*\" >> \"$STUB_DIR/calls.log\"\n");
    let mut env = sandbox.job_env();
    env.insert("DOCKER_USERNS_REMAP".into(), "false".into());
    env.insert(
        "ELASTIC_CI_BOOTSTRAP".into(),
        sandbox.path("bin/fake-bootstrap").display().to_string(),
    );
    env.insert("ELASTIC_CI_SUDO".into(), String::new());
    let run = run_shim("environment", &env);
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    let calls = sandbox.calls();
    assert!(!calls.contains("hijacked"), "{calls}");
    assert!(calls.contains("elastic-ci-bootstrap check-disk"), "{calls}");
    let bootstrap = sandbox.path("usr/local/bin/elastic-ci-bootstrap");
    let expected = format!("sudo -n {} fix-permissions agent-1 acme app", bootstrap.display());
    assert!(calls.contains(&expected), "{calls}");
    std::fs::remove_dir_all(&run.env["DOCKER_CONFIG"]).unwrap();
}

/// A full disk stops the image's agent: a job that puts its own `buildkite-agent`
/// first on `PATH` cannot keep a full instance taking jobs.
/// See: the hooks stopped the `buildkite-agent` found on the job's PATH.
#[test]
fn a_job_cannot_replace_the_agent_that_a_full_disk_stops() {
    let sandbox = Sandbox::new();
    sandbox
        .stub("buildkite-agent", "#!/bin/bash\necho \"hijacked $*\" >> \"$STUB_DIR/calls.log\"\n");
    let mut env = sandbox.job_env();
    env.insert("BUILDKITE_TERMINATE_INSTANCE_ON_DISK_FULL".into(), "true".into());
    sandbox.disk_answers(&[1, 1]);
    let run = run_shim("environment", &env);
    assert_eq!(run.code(), Some(1), "{}", run.stderr());
    let calls = sandbox.calls();
    assert!(!calls.contains("hijacked"), "{calls}");
    assert!(calls.contains("buildkite-agent stop \n"), "{calls}");
}

#[test]
fn fix_permissions_runs_through_sudo_with_the_checkout_dirs() {
    let sandbox = Sandbox::new();
    let mut env = sandbox.job_env();
    env.insert("DOCKER_USERNS_REMAP".into(), "false".into());
    let run = run_shim("environment", &env);
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    let bootstrap = sandbox.path("usr/local/bin/elastic-ci-bootstrap");
    let expected = format!("sudo -n {} fix-permissions agent-1 acme app", bootstrap.display());
    assert!(sandbox.calls().contains(&expected), "{}", sandbox.calls());
    assert!(run.stderr().contains("~~~ Fixing permissions for 'agent-1/acme/app'..."));
    // That job succeeded, so its Docker config is its pre-exit's to remove.
    std::fs::remove_dir_all(&run.env["DOCKER_CONFIG"]).unwrap();

    env.insert("BUILDKITE_BUILD_CHECKOUT_PATH".into(), "/elsewhere/a/b/c".into());
    let run = run_shim("environment", &env);
    assert_eq!(run.code(), Some(53));
    assert!(run.stderr().contains("is not BUILD_PATH/AGENT/ORG/PIPELINE"), "{}", run.stderr());

    env.insert(
        "BUILDKITE_BUILD_CHECKOUT_PATH".into(),
        sandbox.path("builds/agent-1/acme/app").display().to_string(),
    );
    env.insert("STUB_FIXPERMS_EXIT".into(), "3".into());
    let run = run_shim("environment", &env);
    assert_eq!(run.code(), Some(53));
    assert!(run.stderr().contains("fix-permissions failed (exit status 3)"), "{}", run.stderr());
    assert!(sandbox.tmp_entries().is_empty());
}

#[test]
fn docker_login_sends_the_password_on_stdin_and_retries() {
    let sandbox = Sandbox::new();
    let password = "pa ss'$(touch /tmp/pwned)\"`id`";
    let mut env = sandbox.job_env();
    env.insert("DOCKER_LOGIN_PLUGIN_ENABLED".into(), "1".into());
    env.insert("DOCKER_LOGIN_USER".into(), "robot".into());
    env.insert("DOCKER_LOGIN_PASSWORD".into(), format!("{password}\n"));
    env.insert("DOCKER_LOGIN_SERVER".into(), "quay.io".into());
    env.insert("BUILDKITE_PLUGIN_DOCKER_LOGIN_RETRIES".into(), "2".into());
    env.insert("STUB_DOCKER_LOGIN_FAILURES".into(), "1".into());
    let run = run_shim("pre-command", &env);
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    assert!(run.stderr().contains("Login failed on attempt 1 of 3. Trying again in 1 seconds..."));
    assert_eq!(
        run.env.get("BUILDKITE_PLUGIN_DOCKER_LOGIN_USERNAME").map(String::as_str),
        Some("robot")
    );
    assert_eq!(
        run.env.get("BUILDKITE_PLUGIN_DOCKER_LOGIN_SERVER").map(String::as_str),
        Some("quay.io")
    );
    let calls = sandbox.calls();
    assert_eq!(
        calls.matches("docker login --username robot --password-stdin quay.io").count(),
        2,
        "{calls}"
    );
    assert_eq!(sandbox.stdin_log().matches(&format!("docker quay.io: {password}\n")).count(), 2);
    assert_no_secrets("arguments", &calls, &[password]);
    assert_no_secrets("stderr", &run.stderr(), &[password]);
    assert!(!std::path::Path::new("/tmp/pwned").exists());
}

#[test]
fn docker_login_gives_up_after_its_retries() {
    let sandbox = Sandbox::new();
    let mut env = sandbox.job_env();
    env.insert("DOCKER_LOGIN_PLUGIN_ENABLED".into(), "1".into());
    env.insert("DOCKER_LOGIN_USER".into(), "robot".into());
    env.insert("DOCKER_LOGIN_PASSWORD".into(), "hunter2".into());
    env.insert("BUILDKITE_PLUGIN_DOCKER_LOGIN_RETRIES".into(), "1".into());
    env.insert("STUB_DOCKER_LOGIN_FAILURES".into(), "5".into());
    let output = run_hook("pre-command", &env);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("docker login to Docker Hub as robot failed after 2 attempts"),
        "{stderr}"
    );
    assert!(
        sandbox.calls().contains("docker login --username robot --password-stdin \n"),
        "{}",
        sandbox.calls()
    );
    assert_no_secrets("stderr", &stderr, &["hunter2"]);
}

/// A `docker` that never answers (a hung dockerd) fails the hook at the time limit
/// instead of hanging the job; `ELASTIC_CI_COMMAND_TIMEOUT_SECS` shortens the limit.
/// See: child processes had no timeouts.
#[test]
fn a_docker_that_never_answers_fails_the_hook_at_the_time_limit() {
    let sandbox = Sandbox::new();
    let mut env = sandbox.job_env();
    env.insert("ELASTIC_CI_COMMAND_TIMEOUT_SECS".into(), "1".into());
    env.insert("DOCKER_LOGIN_PLUGIN_ENABLED".into(), "1".into());
    env.insert("DOCKER_LOGIN_USER".into(), "robot".into());
    env.insert("DOCKER_LOGIN_PASSWORD".into(), "hunter2".into());
    env.insert("STUB_DOCKER_HANGS".into(), "login".into());
    let output = run_hook("pre-command", &env);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_ne!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("did not finish within 1s and was killed"), "{stderr}");
    assert_no_secrets("stderr", &stderr, &["hunter2"]);

    env.insert("STUB_DOCKER_HANGS".into(), "ps".into());
    let output = run_hook("environment", &env);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_ne!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("docker did not finish within 1s and was killed"), "{stderr}");

    env.insert("ELASTIC_CI_COMMAND_TIMEOUT_SECS".into(), "soon".into());
    env.remove("STUB_DOCKER_HANGS");
    let output = run_hook("environment", &env);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("invalid ELASTIC_CI_COMMAND_TIMEOUT_SECS \"soon\": expected whole seconds"),
        "{stderr}"
    );
}

#[test]
fn docker_login_without_a_password_fails_clearly() {
    let sandbox = Sandbox::new();
    let mut env = sandbox.job_env();
    env.insert("DOCKER_LOGIN_PLUGIN_ENABLED".into(), "1".into());
    env.insert("DOCKER_LOGIN_USER".into(), "robot".into());
    let output = run_hook("pre-command", &env);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains("No docker-login password found in $DOCKER_LOGIN_PASSWORD")
    );

    env.insert("DOCKER_LOGIN_PLUGIN_ENABLED".into(), "0".into());
    let output = run_hook("pre-command", &env);
    assert_eq!(output.status.code(), Some(0));
    assert!(output.stdout.is_empty());
}

#[test]
fn git_credential_store_and_erase_do_nothing() {
    for action in ["store", "erase"] {
        let output = Command::new(support::HOOKS_BIN)
            .args(["git-credential", "bucket", "us-east-1", "git-credentials", action])
            .env_clear()
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(0));
        assert!(output.stdout.is_empty());
    }
}

/// The in-memory S3 fake behind the hooks' client factory: moto cannot deny access.
struct FakeClients {
    store: Arc<FakeObjectStore>,
}

#[async_trait]
impl Clients for FakeClients {
    async fn object_store(&self, _region: Option<&str>) -> Arc<dyn ObjectStore> {
        Arc::clone(&self.store) as Arc<dyn ObjectStore>
    }

    async fn registry_auth(&self, _region: &str, _profile: Option<&str>) -> Arc<dyn RegistryAuth> {
        Arc::new(elastic_ci_aws::fake::FakeRegistryAuth::default())
    }
}

async fn run_in_process(
    args: &[&str],
    env: &HashMap<String, String>,
    clients: &FakeClients,
) -> (Result<String, u8>, String) {
    use clap::Parser;
    let (log, buffer) = JobLog::in_memory();
    let cli = Cli::parse_from(std::iter::once("elastic-ci-hooks").chain(args.iter().copied()));
    let result = run(cli, env, clients, &log, &mut std::io::empty()).await;
    let text = String::from_utf8(buffer.lock().unwrap().clone()).unwrap();
    (result, text)
}

#[tokio::test]
async fn access_denied_names_the_key_and_the_missing_permission() {
    let sandbox = Sandbox::new();
    let store = Arc::new(FakeObjectStore::default());
    store.create_bucket("secrets");
    store.put("secrets", "app/env", "export FROM_PIPELINE=yes\n");
    store.put("secrets", "env", "export FROM_GLOBAL=yes\n");
    store.deny("secrets", "env");
    store.put("secrets", "app/secret-files/API_TOKEN", "t0k3n");
    store.deny("secrets", "app/secret-files/API_TOKEN");
    let clients = FakeClients { store: Arc::clone(&store) };
    let mut env = sandbox.job_env();
    env.insert("BUILDKITE_SECRETS_BUCKET".into(), "secrets".into());
    let (result, log) = run_in_process(&["environment"], &env, &clients).await;
    let stdout = result.unwrap_or_else(|code| panic!("exit {code}:\n{log}"));
    assert!(log.contains(
        ":warning: access denied to s3://secrets/env: the instance role needs s3:GetObject on arn:aws:s3:::secrets/env"
    ), "{log}");
    assert!(log.contains("access denied to s3://secrets/app/secret-files/API_TOKEN"), "{log}");
    assert!(stdout.contains("export FROM_PIPELINE=yes"), "{stdout}");
    assert!(!stdout.contains("FROM_GLOBAL") && !stdout.contains("API_TOKEN"), "{stdout}");
    support::assert_only_exports(&stdout);
    // The created Docker config belongs to the (successful) job now.
    let _ = std::fs::remove_dir_all(sandbox.path("tmp"));

    // The bucket itself denied: the job fails, naming the permission.
    store.faults.fail_next("HeadBucket", elastic_ci_aws::error::AwsErrorKind::AccessDenied, 1);
    std::fs::create_dir_all(sandbox.path("tmp")).unwrap();
    let (result, log) = run_in_process(&["environment"], &env, &clients).await;
    assert_eq!(result, Err(53), "{log}");
    assert!(log.contains("the instance role needs s3:ListBucket on arn:aws:s3:::secrets"), "{log}");
    assert!(sandbox.tmp_entries().is_empty(), "{:?}", sandbox.tmp_entries());

    // Anything else (after the SDK's retries) fails the job rather than running it
    // without its secrets.
    store.faults.fail_next("GetObject", elastic_ci_aws::error::AwsErrorKind::Transport, 1);
    let (result, log) = run_in_process(&["environment"], &env, &clients).await;
    assert_eq!(result, Err(53), "{log}");
    assert!(log.contains("failed to download s3://secrets/"), "{log}");
}
