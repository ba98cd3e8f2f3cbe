//! `boot` against moto (SSM, S3, Auto Scaling) and the fake metadata service, in a
//! temporary root with system actions recorded.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use elastic_ci_core::boot::cfn_env;
use elastic_ci_core::envfile;
use elastic_ci_core::fleet::Health;
use elastic_ci_testkit::imds::FakeImds;
use elastic_ci_testkit::moto::{Moto, REGION, moto};
use elastic_ci_testkit::names::unique_name;
use tempfile::TempDir;

use crate::seed::{mirror_entries, tar_gz};
use crate::{
    assert_help_mentions, command, files_under, group_with_instance, health_of, recorded, stderr,
    stdout,
};

/// One simulated instance: a moto group with the instance in it, a fake metadata
/// service answering for it, the stack's token, bucket and UserData.
pub(crate) struct Instance {
    pub(crate) moto: Moto,
    group: String,
    pub(crate) instance_id: String,
    imds: FakeImds,
    bucket: String,
    token: String,
    token_path: String,
    pub(crate) root: TempDir,
    pub(crate) work: TempDir,
    pub(crate) env: HashMap<String, String>,
}

impl Instance {
    pub(crate) async fn new(moto: Moto) -> Instance {
        let (group, instance_id) = group_with_instance(&moto, "boot", 0, 3, 1).await;
        let imds = FakeImds::start(&instance_id, REGION);
        imds.set_tag("aws:autoscaling:groupName", &group);
        let prefix = unique_name("boot");
        let token_path = format!("/{prefix}/buildkite/agent-token");
        let token = format!("bkat-{prefix}-s3cr3t");
        moto.put_parameter(&token_path, &token, true).await;
        let bucket = moto.bucket("boot-config").await;
        let work = tempfile::tempdir().unwrap();
        let mut env: HashMap<String, String> = [
            ("BUILDKITE_STACK_NAME", "ci-linux"),
            ("BUILDKITE_STACK_VERSION", "v7.0.0"),
            ("BUILDKITE_STACK_DEPLOYED_BY", "cloudformation"),
            ("BUILDKITE_QUEUE", "default"),
            ("BUILDKITE_AGENTS_PER_INSTANCE", "2"),
            ("BUILDKITE_AGENT_TAGS", "os=linux"),
            ("BUILDKITE_SECRETS_BUCKET", "ci-linux-secrets"),
            ("BUILDKITE_SECRETS_BUCKET_REGION", REGION),
            ("BUILDKITE_S3_DEFAULT_REGION", REGION),
            ("BUILDKITE_AGENT_ENABLE_GIT_MIRRORS", "true"),
            ("BUILDKITE_ECR_POLICY", "readonly"),
            ("AWS_DEFAULT_REGION", REGION),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
        env.insert("BUILDKITE_AGENT_TOKEN_PATH".into(), token_path.clone());
        env.extend(moto.env());
        env.insert("AWS_EC2_METADATA_SERVICE_ENDPOINT".into(), imds.endpoint());
        Instance {
            moto,
            group,
            instance_id,
            imds,
            bucket,
            token,
            token_path,
            root: tempfile::tempdir().unwrap(),
            work,
            env,
        }
    }

    pub(crate) fn set(&mut self, name: &str, value: &str) {
        self.env.insert(name.to_owned(), value.to_owned());
    }

    fn actions_path(&self) -> PathBuf {
        self.work.path().join("actions.jsonl")
    }

    pub(crate) fn path(&self, instance_path: &str) -> PathBuf {
        self.root.path().join(instance_path.trim_start_matches('/'))
    }

    pub(crate) fn read(&self, instance_path: &str) -> String {
        std::fs::read_to_string(self.path(instance_path)).unwrap()
    }

    /// Writes a file under the root, as the image or an earlier boot left it.
    pub(crate) fn put(&self, instance_path: &str, content: &str) {
        let path = self.path(instance_path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    /// Runs `boot` with the recorded system answering from `state` (`--system-state`).
    pub(crate) fn boot_with_state(&self, state: &serde_json::Value) -> Output {
        let path = self.work.path().join("system-state.json");
        std::fs::write(&path, state.to_string()).unwrap();
        self.boot(&["--system-state", path.to_str().unwrap()])
    }

    /// Runs `boot` as the UserData does: with umask 077.
    pub(crate) fn boot(&self, extra: &[&str]) -> Output {
        let mut command = std::process::Command::new("bash");
        command.env_clear().env("PATH", "/usr/bin:/bin").env("ELASTIC_CI_LOG", "info");
        command.envs(&self.env).args(["-c", "umask 077 && exec \"$0\" \"$@\""]);
        command.arg(assert_cmd::cargo::cargo_bin("elastic-ci-bootstrap"));
        command.arg("boot").arg("--root").arg(self.root.path());
        command.arg("--record-actions").arg(self.actions_path());
        command.args(["--metadata-retry-delay-ms", "50"]).args(extra);
        command.output().unwrap()
    }

    pub(crate) fn actions(&self) -> Vec<serde_json::Value> {
        recorded(&self.actions_path())
    }

    pub(crate) fn signals(&self) -> Vec<bool> {
        self.actions()
            .iter()
            .filter(|action| action["action"] == "signal-stack")
            .map(|action| {
                assert_eq!(action["unique_id"], self.instance_id.as_str());
                assert_eq!(action["logical_resource_id"], "AgentAutoScaleGroup");
                action["success"].as_bool().unwrap()
            })
            .collect()
    }

    pub(crate) async fn health(&self) -> Health {
        health_of(&self.moto, &self.group, &self.instance_id).await
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[tokio::test(flavor = "multi_thread")]
async fn boots_an_instance_end_to_end() {
    let Some(moto) = moto() else { return };
    let mut instance = Instance::new(moto).await;
    let moto = &instance.moto;
    moto.put_object(&instance.bucket, "agent.env", "HTTP_PROXY=\"http://proxy:3128\"\n").await;
    let marker = instance.work.path().join("bootstrap-ran");
    moto.put_object(
        &instance.bucket,
        "bootstrap.sh",
        "#!/bin/bash\nset -eu\necho \"stack=$BUILDKITE_STACK_NAME umask=$(umask)\" > \"$BOOTSTRAP_MARKER\"\nenv > \"$BOOTSTRAP_MARKER.env\"\necho 'bootstrap script output'\n",
    )
    .await;
    let signing_path = format!("{}-signing", instance.token_path);
    moto.put_parameter(&signing_path, "{\"keys\":[]}", true).await;
    moto.put_object(
        &instance.bucket,
        "git-mirror-seeds/repo.tar.gz",
        tar_gz(&mirror_entries("repo")),
    )
    .await;
    instance.set("BUILDKITE_ENV_FILE_URL", &format!("s3://{}/agent.env", instance.bucket));
    instance.set(
        "BUILDKITE_ELASTIC_BOOTSTRAP_SCRIPT",
        &format!("s3://{}/bootstrap.sh", instance.bucket),
    );
    instance.set("BUILDKITE_AGENT_SIGNING_KEY_PATH", &signing_path);
    instance.set("BUILDKITE_GIT_MIRROR_SEED_BUCKET", &instance.bucket.clone());
    instance.set("BOOTSTRAP_MARKER", marker.to_str().unwrap());

    let output = instance.boot(&[]);
    assert!(output.status.success(), "stderr:\n{}", stderr(&output));

    // The agent configuration: the token, 0640, owned root:buildkite-agent.
    let cfg = instance.read("/etc/buildkite-agent/buildkite-agent.cfg");
    assert!(cfg.contains(&format!("token=\"{}\"", instance.token)));
    assert!(cfg.contains(&format!("name=\"ci-linux-{}-%spawn\"", instance.instance_id)));
    assert!(cfg.contains("tags=queue=default,docker=unknown,stack=ci-linux,buildkite-aws-stack=v7.0.0,stack-deployed-by=cloudformation,os=linux\n"));
    assert!(cfg.contains("signing-jwks-file=/etc/buildkite-agent/signing-key.json\n"));
    assert_eq!(mode(&instance.path("/etc/buildkite-agent/buildkite-agent.cfg")), 0o640);
    assert_eq!(instance.read("/etc/buildkite-agent/signing-key.json"), "{\"keys\":[]}\n");

    // cfn-env reads back; the env file is root-owned 0640.
    let entries = cfn_env::parse(&instance.read("/var/lib/buildkite-agent/cfn-env")).unwrap();
    let value = |name: &str| entries.iter().find(|entry| entry.name == name).unwrap().value.clone();
    assert_eq!(value("BUILDKITE_AGENTS_PER_INSTANCE"), "2");
    assert_eq!(value("PLUGINS_ENABLED"), "secrets ecr docker-login");
    assert_eq!(instance.read("/var/lib/buildkite-agent/env"), "HTTP_PROXY=\"http://proxy:3128\"\n");
    assert_eq!(mode(&instance.path("/var/lib/buildkite-agent/env")), 0o640);
    assert_eq!(instance.read("/var/log/elastic-stack-bootstrap-status"), "Completed");
    // Final modes whatever the umask.
    assert_eq!(mode(&instance.path("/var/lib/buildkite-agent/cfn-env")), 0o640);
    assert_eq!(mode(&instance.path("/var/lib/buildkite-agent/git-mirrors")), 0o755);
    // The removal-notice listener is the image's own service: nothing to configure.
    assert!(!instance.path("/etc/lifecycled").exists());
    assert_eq!(
        std::fs::read_link(instance.path("/usr/bin/buildkite-agent")).unwrap(),
        PathBuf::from("/usr/bin/buildkite-agent-stable")
    );
    assert_eq!(
        instance.read("/var/lib/buildkite-agent/git-mirrors/repo/HEAD"),
        "ref: refs/heads/main\n"
    );
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "stack=ci-linux umask=0022\n");
    assert!(instance.read("/var/log/elastic-stack.log").contains("boot completed"));
    // The script's stdout joins the log on stderr, never our stdout.
    assert!(stderr(&output).contains("bootstrap script output"));
    assert_eq!(stdout(&output), "");

    // System actions were recorded, not performed.
    let actions = instance.actions();
    let has = |expected: serde_json::Value| actions.contains(&expected);
    assert!(has(
        serde_json::json!({"action": "chown", "path": "/etc/buildkite-agent/buildkite-agent.cfg", "user": "root", "group": "buildkite-agent", "recursive": false})
    ));
    assert!(has(
        serde_json::json!({"action": "chown", "path": "/var/lib/buildkite-agent/env", "user": "root", "group": "buildkite-agent", "recursive": false})
    ));
    assert!(has(
        serde_json::json!({"action": "chown", "path": "/var/lib/buildkite-agent/git-mirrors", "user": "buildkite-agent", "group": "buildkite-agent", "recursive": true})
    ));
    assert!(!actions.iter().any(|action| action.to_string().contains("lifecycled")));
    assert!(has(serde_json::json!({"action": "wait-for-docker", "attempts": 6})));
    assert_eq!(
        actions.iter().rfind(|a| a["action"] == "systemctl").unwrap(),
        &serde_json::json!({"action": "systemctl", "args": ["enable", "--now", "buildkite-agent"]})
    );
    assert_eq!(instance.signals(), [true]);
    assert_eq!(instance.health().await, Health::Healthy);

    // The token is in the agent configuration and nowhere else.
    let mut places = Vec::new();
    for (path, content) in
        files_under(instance.root.path()).into_iter().chain(files_under(instance.work.path()))
    {
        if String::from_utf8_lossy(&content).contains(&instance.token) {
            places.push(path);
        }
    }
    assert_eq!(places, [PathBuf::from("etc/buildkite-agent/buildkite-agent.cfg")]);
    assert!(
        !stderr(&output).contains(&instance.token) && !stdout(&output).contains(&instance.token)
    );

    // Docker's configuration comes first, on every boot.
    let daemon: serde_json::Value =
        serde_json::from_str(&instance.read("/etc/docker/daemon.json")).unwrap();
    assert_eq!(daemon["userns-remap"], "buildkite-agent");
    assert_eq!(
        instance.read("/etc/subuid"),
        "buildkite-agent:2000:1\nbuildkite-agent:100000:65536\n"
    );
    assert_eq!(
        instance.read("/etc/subgid"),
        "buildkite-agent:992:1\nbuildkite-agent:100000:65536\n"
    );
    let every_boot = [
        serde_json::json!({"action": "systemctl", "args": ["daemon-reload"]}),
        serde_json::json!({"action": "systemctl", "args": ["enable", "--now", "docker-gc.timer", "docker-low-disk-gc.timer"]}),
        serde_json::json!({"action": "systemctl", "args": ["restart", "docker.service"]}),
        serde_json::json!({"action": "systemctl", "args": ["start", "docker-binfmt.service"]}),
    ];
    assert_eq!(actions[..every_boot.len()], every_boot);

    // A second boot repeats only the every-boot steps.
    let n_actions = actions.len();
    let again = instance.boot(&[]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(stderr(&again).contains("Bootstrap already completed successfully."));
    assert_eq!(instance.actions()[n_actions..], every_boot);
    assert_eq!(instance.signals(), [true]);
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_prints_the_plan_and_changes_nothing() {
    let Some(moto) = moto() else { return };
    let mut instance = Instance::new(moto).await;
    instance.set("BUILDKITE_ENV_FILE_URL", "ssm:/ci/env");
    let output = instance.boot(&["--dry-run"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let plan = stdout(&output);
    assert!(
        plan.starts_with(&format!(
            "Boot plan for instance {} of stack ci-linux in us-east-1",
            instance.instance_id
        )),
        "{plan}"
    );
    for needle in [
        " 1. docker-config (every boot)",
        "- systemctl restart docker.service",
        " 3. cfn-env",
        "write /var/lib/buildkite-agent/cfn-env (0640)",
        "| set_always BUILDKITE_STACK_NAME ci-linux",
        &format!("read the agent token from SSM parameter {} (never logged)", instance.token_path),
        "| token=\"<token from SSM>\"",
        "fetch ssm:/ci/env to /var/lib/buildkite-agent/env (0640)",
        "systemctl enable --now buildkite-agent",
        "signal-success (best effort)",
    ] {
        assert!(plan.contains(needle), "{needle:?} missing from:\n{plan}");
    }
    assert!(files_under(instance.root.path()).is_empty());
    assert!(instance.actions().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn retries_the_metadata_service_until_it_answers() {
    let Some(moto) = moto() else { return };
    let instance = Instance::new(moto).await;
    instance.imds.fail_next(3);
    let output = instance.boot(&[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(instance.imds.n_failed(), 3);
    let log = stderr(&output);
    assert!(log.contains("Attempt 4 of 5 to fetch metadata..."), "{log}");
    assert!(log.contains(&format!("Detected INSTANCE_ID={}", instance.instance_id)), "{log}");
    assert_eq!(instance.signals(), [true]);
}

#[tokio::test(flavor = "multi_thread")]
async fn metadata_down_for_good_marks_the_instance_unhealthy_and_signals_failure() {
    let Some(moto) = moto() else { return };
    let instance = Instance::new(moto).await;
    instance.imds.down();
    // cloud-init recorded the id while the service still answered.
    std::fs::create_dir_all(instance.path("/var/lib/cloud/data")).unwrap();
    std::fs::write(
        instance.path("/var/lib/cloud/data/instance-id"),
        format!("{}\n", instance.instance_id),
    )
    .unwrap();
    let output = instance.boot(&[]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let log = stderr(&output);
    assert!(log.contains("error: boot failed at step instance-metadata: Failed to fetch EC2 metadata after 5 attempts"), "{log}");
    // Five attempts at the instance id, then one at the group, for the launch hook.
    assert_eq!(instance.imds.n_failed(), 6);
    assert_eq!(instance.health().await, Health::Unhealthy);
    assert_eq!(instance.signals(), [false]);
    assert!(!instance.path("/var/log/elastic-stack-bootstrap-status").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_token_parameter_fails_the_boot_and_a_reboot_refuses_to_continue() {
    let Some(moto) = moto() else { return };
    let mut instance = Instance::new(moto).await;
    instance.set("BUILDKITE_AGENT_TOKEN_PATH", &format!("{}-missing", instance.token_path));
    let output = instance.boot(&[]);
    assert_eq!(output.status.code(), Some(1));
    let log = stderr(&output);
    assert!(log.contains("error: boot failed at step agent-config: could not read the agent token from SSM parameter"), "{log}");
    assert!(log.contains("ParameterNotFound"), "{log}");
    assert_eq!(instance.health().await, Health::Unhealthy);
    assert_eq!(instance.signals(), [false]);
    assert!(!instance.path("/etc/buildkite-agent/buildkite-agent.cfg").exists());
    assert_eq!(instance.read("/var/log/elastic-stack-bootstrap-status"), "Started");

    // The half-done boot is not resumed.
    let again = instance.boot(&[]);
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("boot failed at step status: Bootstrap previously failed, will not continue from unknown state"));
    assert_eq!(instance.signals(), [false, false]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_bootstrap_script_fails_the_boot() {
    let Some(moto) = moto() else { return };
    let mut instance = Instance::new(moto).await;
    let script = instance.work.path().join("setup.sh");
    std::fs::write(&script, "echo about to fail\nexit 3\n").unwrap();
    instance.set("BUILDKITE_ELASTIC_BOOTSTRAP_SCRIPT", &format!("file://{}", script.display()));
    let output = instance.boot(&[]);
    // The script's own exit status, as the original's boot exited with.
    assert_eq!(output.status.code(), Some(3));
    let log = stderr(&output);
    assert!(
        log.contains("boot failed at step bootstrap-script: the bootstrap script file://"),
        "{log}"
    );
    assert!(log.contains("exited with exit status: 3"), "{log}");
    // The agent was never started; the fetched copy of the script is gone.
    assert!(
        !instance
            .actions()
            .iter()
            .any(|a| a["args"] == serde_json::json!(["enable", "--now", "buildkite-agent"]))
    );
    assert!(
        std::fs::read_dir(instance.path("/var/lib/elastic-ci-bootstrap")).unwrap().next().is_none()
    );
    assert_eq!(instance.health().await, Health::Unhealthy);
}

/// A boot that hangs (here in a bootstrap script that never ends; on an instance a
/// hung dockerd) gives up at its deadline and takes the failure path, naming the step,
/// and the hung command is killed.
/// See: child processes had no timeouts, so a hung boot counted as capacity forever.
#[tokio::test(flavor = "multi_thread")]
async fn a_boot_past_its_deadline_fails_naming_the_step() {
    let Some(moto) = moto() else { return };
    let mut instance = Instance::new(moto).await;
    let pid_file = instance.work.path().join("script.pid");
    let script = instance.work.path().join("setup.sh");
    std::fs::write(
        &script,
        format!("echo $$ > {}\nwhile :; do sleep 1; done\n", pid_file.display()),
    )
    .unwrap();
    instance.set("BUILDKITE_ELASTIC_BOOTSTRAP_SCRIPT", &format!("file://{}", script.display()));
    let output = instance.boot(&["--deadline-secs", "3"]);
    let log = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{log}");
    assert!(
        log.contains(
            "boot failed at step bootstrap-script: the boot did not finish within its deadline of 3 s"
        ),
        "{log}"
    );
    assert_eq!(instance.health().await, Health::Unhealthy);
    assert_eq!(instance.signals(), [false]);
    assert!(
        !instance
            .actions()
            .iter()
            .any(|a| a["args"] == serde_json::json!(["enable", "--now", "buildkite-agent"]))
    );
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim()));
    assert!(stat.is_err() || stat.unwrap().contains(") Z "), "the script still runs");
}

#[tokio::test(flavor = "multi_thread")]
async fn reports_every_invalid_input_before_changing_anything() {
    let Some(moto) = moto() else { return };
    let mut instance = Instance::new(moto).await;
    instance.env.remove("BUILDKITE_QUEUE");
    instance.set("BUILDKITE_AGENTS_PER_INSTANCE", "none");
    instance.set("BUILDKITE_AGENT_RELEASE", "nightly");
    let output = instance.boot(&[]);
    assert_eq!(output.status.code(), Some(1));
    let log = stderr(&output);
    assert!(
        log.contains("error: boot failed at step configuration: invalid boot configuration (3 problems): BUILDKITE_QUEUE is missing; BUILDKITE_AGENTS_PER_INSTANCE \"none\": expected a whole number from 1 to 10000; BUILDKITE_AGENT_RELEASE \"nightly\": expected one of stable, beta, edge, oldstable"),
        "{log}"
    );
    assert_eq!(instance.health().await, Health::Unhealthy);
    assert_eq!(instance.signals(), [false]);
    // Only the boot log was written.
    let files: Vec<PathBuf> = files_under(instance.root.path()).into_keys().collect();
    assert_eq!(files, [PathBuf::from("var/log/elastic-stack.log")]);
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_values_stay_inert() {
    let Some(moto) = moto() else { return };
    let mut instance = Instance::new(moto).await;
    let pwned = instance.work.path().join("pwned");
    let hostile = format!("it's \"$(touch {0})\" `touch {0}` ${{HOME}}", pwned.display());
    instance.set("BUILDKITE_STACK_NAME", &hostile);
    instance.set("BUILDKITE_AGENT_TAGS", &format!("note={hostile}"));
    let env_path = format!("/{}/env", unique_name("hostile"));
    let moto = &instance.moto;
    moto.put_parameter(&format!("{env_path}/injected"), "x\"\nLD_PRELOAD=/evil.so", true).await;
    moto.put_parameter(
        &format!("{env_path}/command"),
        &format!("$(touch {})", pwned.display()),
        false,
    )
    .await;
    instance.set("BUILDKITE_ENV_FILE_URL", &format!("ssm:{env_path}"));
    let output = instance.boot(&[]);
    assert!(output.status.success(), "{}", stderr(&output));

    // cfn-env, sourced by bash as the environment hook does, yields the exact value.
    let cfn_env = instance.path("/var/lib/buildkite-agent/cfn-env");
    let sourced = std::process::Command::new("bash")
        .arg("-c")
        .arg("source \"$1\" > /dev/null && printf '%s' \"$BUILDKITE_STACK_NAME\"")
        .arg("bash")
        .arg(&cfn_env)
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&sourced.stdout), hostile);
    // The env file reads back as the stored values, and nothing ran.
    let env_file = envfile::parse(&instance.read("/var/lib/buildkite-agent/env")).unwrap();
    let mut values: Vec<(&str, &str)> =
        env_file.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    values.sort_unstable();
    assert_eq!(
        values,
        [
            ("COMMAND", format!("$(touch {})", pwned.display()).as_str()),
            ("INJECTED", "x\"\nLD_PRELOAD=/evil.so")
        ]
    );
    let cfg = instance.read("/etc/buildkite-agent/buildkite-agent.cfg");
    assert!(cfg.contains(&format!("name=\"{hostile}-{}-%spawn\"\n", instance.instance_id)));
    assert_eq!(cfg.lines().filter(|line| line.starts_with("hooks-path=")).count(), 1);
    assert!(!pwned.exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_that_could_inject_settings_is_refused_without_showing_it() {
    let Some(moto) = moto() else { return };
    let instance = Instance::new(moto).await;
    let token = format!("{}\nhooks-path=/tmp/evil", instance.token);
    instance.moto.put_parameter(&instance.token_path, &token, true).await;
    let output = instance.boot(&[]);
    assert_eq!(output.status.code(), Some(1));
    let log = stderr(&output);
    assert!(
        log.contains("boot failed at step agent-config: refusing to write the agent configuration: the agent token contains a line break or another control character"),
        "{log}"
    );
    assert!(!log.contains(&instance.token));
    assert!(!instance.path("/etc/buildkite-agent/buildkite-agent.cfg").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_with_a_trailing_newline_is_written_without_it() {
    let Some(moto) = moto() else { return };
    let instance = Instance::new(moto).await;
    instance.moto.put_parameter(&instance.token_path, &format!("{}\n", instance.token), true).await;
    let output = instance.boot(&[]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let cfg = instance.read("/etc/buildkite-agent/buildkite-agent.cfg");
    assert!(
        cfg.contains(&format!("\ntoken=\"{}\"\n", instance.token)),
        "the token line is not exact"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blank_token_fails_the_boot_naming_the_parameter() {
    let Some(moto) = moto() else { return };
    let instance = Instance::new(moto).await;
    instance.moto.put_parameter(&instance.token_path, " \n", true).await;
    let output = instance.boot(&[]);
    assert_eq!(output.status.code(), Some(1));
    let log = stderr(&output);
    let expected = format!(
        "boot failed at step agent-config: the agent token in SSM parameter {:?} is empty or only whitespace",
        instance.token_path
    );
    assert!(log.contains(&expected), "{log}");
    assert_eq!(instance.signals(), [false]);
    assert!(!instance.path("/etc/buildkite-agent/buildkite-agent.cfg").exists());
}

#[test]
fn root_other_than_slash_needs_recorded_actions() {
    let dir = tempfile::tempdir().unwrap();
    let output =
        command(&HashMap::new()).arg("boot").arg("--root").arg(dir.path()).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("needs --record-actions or --dry-run"), "{}", stderr(&output));
    assert!(files_under(dir.path()).is_empty());
}

#[test]
fn help_documents_every_command_and_flag() {
    assert_help_mentions(
        &[],
        &["boot", "terminate", "stop-gracefully", "check-disk", "fix-permissions", "fetch"],
    );
    assert_help_mentions(
        &["boot"],
        &[
            "--root",
            "--dry-run",
            "--record-actions",
            "--system-state",
            "--metadata-retry-delay-ms",
            "Unhealthy",
            "status file",
            "/mnt/ephemeral",
            "daemon.json",
        ],
    );
    assert_help_mentions(
        &["stop-gracefully"],
        &["--lifecycle-hook", "--group", "--record-actions", "SIGQUIT"],
    );
}

/// A warm-pool instance: the first boot (target lifecycle state `Warmed:Stopped`) does
/// everything but start the agent and signal CloudFormation; a reboot inside the pool
/// does nothing more; the boot after the group takes it into service (`InService`)
/// writes the agent configuration again with the token as it is now, and starts the
/// agent.
#[tokio::test(flavor = "multi_thread")]
async fn a_warm_pool_instance_boots_up_to_the_agent_then_resumes_with_a_fresh_token() {
    let Some(moto) = moto() else { return };
    let instance = Instance::new(moto).await;
    let starts_agent = |actions: &[serde_json::Value]| {
        actions.iter().any(|action| {
            action["action"] == "systemctl"
                && action["args"] == serde_json::json!(["enable", "--now", "buildkite-agent"])
        })
    };
    instance.imds.set_target_lifecycle_state(Some("Warmed:Stopped"));
    let warm = instance.boot(&[]);
    assert!(warm.status.success(), "{}", stderr(&warm));
    assert!(stderr(&warm).contains("warm phase completed"), "{}", stderr(&warm));
    assert!(!starts_agent(&instance.actions()), "no agent in the warm pool");
    assert!(instance.signals().is_empty(), "warm instances do not signal the stack");
    assert_eq!(instance.read("/var/log/elastic-stack-bootstrap-status"), "Warmed");
    let config = instance.read("/etc/buildkite-agent/buildkite-agent.cfg");
    assert!(config.contains(&instance.token), "configured up to the agent");

    let again = instance.boot(&[]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(!starts_agent(&instance.actions()));

    // The token rotates while the instance is stopped; then the group takes it.
    let fresh = format!("{}-rotated", instance.token);
    instance.moto.put_parameter(&instance.token_path, &fresh, true).await;
    instance.imds.set_target_lifecycle_state(Some("InService"));
    let n_before = instance.actions().len();
    let resumed = instance.boot(&[]);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert!(stderr(&resumed).contains("resumed from the warm pool"), "{}", stderr(&resumed));
    let resume_actions = &instance.actions()[n_before..];
    assert!(starts_agent(resume_actions), "{resume_actions:?}");
    assert!(
        !resume_actions.iter().any(|action| action["action"] == "signal-stack"),
        "{resume_actions:?}"
    );
    let config = instance.read("/etc/buildkite-agent/buildkite-agent.cfg");
    assert!(config.contains(&fresh), "the resume reads the token again");
    assert_eq!(instance.read("/var/log/elastic-stack-bootstrap-status"), "Completed");
}
