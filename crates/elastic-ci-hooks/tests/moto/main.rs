//! The hooks against the local AWS emulator (moto): a full secrets bucket, ECR logins,
//! the git credential helper, and the whole job lifecycle through the real shims.
//!
//! Needs `ELASTIC_CI_MOTO_ENDPOINT` (set by `cargo xtask ci` or `cargo xtask moto
//! start`); skips without it, except in CI, where it fails.

#[path = "../support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::process::Command;

use elastic_ci_testkit::moto::{Moto, moto};
use elastic_ci_testkit::names::unique_name;
use support::{Sandbox, alive, assert_no_secrets, run_shim, ssh_key};

/// Values no secret may be mangled by or leak through.
const HOSTILE: &str = "p'a\"s$(touch /tmp/elastic-ci-pwned)`id`${HOME}\\n\nline2 ;&|<>*";

fn job_env(sandbox: &Sandbox, moto: &Moto, bucket: &str) -> HashMap<String, String> {
    let mut env = sandbox.job_env();
    env.extend(moto.env());
    env.insert("BUILDKITE_SECRETS_BUCKET".into(), bucket.into());
    env
}

/// The secrets bucket of a realistic pipeline `app`, with hostile values.
async fn full_bucket(moto: &Moto, sandbox: &Sandbox) -> (String, Vec<String>) {
    let bucket = moto.bucket("hooks-secrets").await;
    let (global_key, global_public) = ssh_key(sandbox.dir.path(), "global_key");
    let (pipeline_key, pipeline_public) = ssh_key(sandbox.dir.path(), "pipeline_key");
    let objects: Vec<(&str, String)> = vec![
        ("private_ssh_key", global_key),
        ("app/private_ssh_key", pipeline_key),
        ("env", "export SHARED=global\nexport GLOBAL_ONLY=1\n".to_owned()),
        ("environment", "echo 'hello from the global environment file'\n".to_owned()),
        (
            "app/env",
            format!(
                "set -euo pipefail\nexport SHARED=pipeline\nDOCKER_LOGIN_USER=robot\nDOCKER_LOGIN_PASSWORD=$(cat <<'EOF'\n{HOSTILE}\nEOF\n)\nDERIVED=\"$SHARED-$GLOBAL_ONLY\"\nexport GIT_CONFIG_PARAMETERS=\"'core.autocrlf=false'\"\n"
            ),
        ),
        ("app/environment", "unset GLOBAL_ONLY\n".to_owned()),
        ("git-credentials", "https://global:globalpass@git.example.com\n".to_owned()),
        ("app/git-credentials", "https://pipe%40line:pipe%3Apass@github.com".to_owned()),
        ("secret-files/GLOBAL_TOKEN", "global-token\n".to_owned()),
        ("secret-files/SHARED_SECRET", "from-global".to_owned()),
        ("app/secret-files/SHARED_SECRET", "from-pipeline".to_owned()),
        ("app/secret-files/nested/API_PASSWORD", HOSTILE.to_owned()),
        ("secret-files/bad-name_TOKEN", "skipped".to_owned()),
        ("secret-files-old/OLD_TOKEN", "not a secret file".to_owned()),
        ("secret-files/README", "not a secret name".to_owned()),
        ("other/secret-files/OTHER_TOKEN", "another pipeline's".to_owned()),
    ];
    for (key, body) in &objects {
        moto.put_object(&bucket, key, body.as_bytes()).await;
    }
    (bucket, vec![global_public, pipeline_public])
}

#[tokio::test]
async fn a_job_with_a_full_secrets_bucket_and_ecr_runs_through_all_three_hooks() {
    let Some(moto) = moto() else { return };
    let sandbox = Sandbox::new();
    let (bucket, public_keys) = full_bucket(&moto, &sandbox).await;
    let mut env = job_env(&sandbox, &moto, &bucket);
    env.insert("BUILDKITE_ECR_POLICY".into(), "readonly".into());
    env.insert("AWS_ECR_LOGIN_REGISTRY_IDS".into(), "111122223333, 444455556666".into());
    env.insert("BUILDKITE_PLUGIN_S3_SECRETS_DUMP_ENV".into(), "true".into());

    let setup = run_shim("environment", &env);
    assert_eq!(setup.code(), Some(0), "{}", setup.stderr());
    let job = &setup.env;
    let get = |name: &str| job.get(name).map(String::as_str);
    // Env files in lookup order: the pipeline's win, unsets and derived values apply.
    assert_eq!(get("SHARED"), Some("pipeline"));
    assert_eq!(get("GLOBAL_ONLY"), None);
    assert_eq!(get("DERIVED"), Some("pipeline-1"));
    assert_eq!(get("DOCKER_LOGIN_USER"), Some("robot"));
    assert_eq!(get("DOCKER_LOGIN_PASSWORD"), Some(HOSTILE));
    // Secret files: exact values, pipeline over global, one trailing newline dropped.
    assert_eq!(get("GLOBAL_TOKEN"), Some("global-token"));
    assert_eq!(get("SHARED_SECRET"), Some("from-pipeline"));
    assert_eq!(get("API_PASSWORD"), Some(HOSTILE));
    for absent in ["OLD_TOKEN", "OTHER_TOKEN", "bad-name_TOKEN"] {
        assert_eq!(get(absent), None, "{absent}");
    }
    assert!(!std::path::Path::new("/tmp/elastic-ci-pwned").exists());
    // Git credentials: appended to what the env file set.
    let git_config = get("GIT_CONFIG_PARAMETERS").unwrap();
    assert!(git_config.starts_with("'core.autocrlf=false' 'credential.helper=!"), "{git_config}");
    assert_eq!(git_config.matches("'credential.helper=").count(), 2, "{git_config}");
    // The plugin variables of the original, for pipelines that read them.
    assert_eq!(get("BUILDKITE_PLUGIN_S3_SECRETS_BUCKET"), Some(bucket.as_str()));
    assert_eq!(get("BUILDKITE_PLUGIN_ECR_ACCOUNT_IDS_0"), Some("111122223333, 444455556666"));

    // Both SSH keys are in a per-job agent, pipeline key first.
    let agent_pid = get("SSH_AGENT_PID").unwrap().to_owned();
    assert_eq!(get("ELASTIC_CI_SSH_AGENT_PID"), Some(agent_pid.as_str()));
    let listed = Command::new("ssh-add")
        .arg("-L")
        .env_clear()
        .env("SSH_AUTH_SOCK", get("SSH_AUTH_SOCK").unwrap())
        .output()
        .unwrap();
    let listed = String::from_utf8(listed.stdout).unwrap();
    let field = |line: &str| line.split_whitespace().nth(1).unwrap().to_owned();
    let listed: Vec<String> = listed.lines().map(field).collect();
    assert_eq!(listed, [field(&public_keys[1]), field(&public_keys[0])]);

    // ECR: one login per registry, each with its own password on stdin.
    let calls = sandbox.calls();
    for account in ["111122223333", "444455556666"] {
        let host = format!("{account}.dkr.ecr.us-east-1.amazonaws.com");
        assert!(
            calls.contains(&format!("docker login --username AWS --password-stdin {host}")),
            "{calls}"
        );
        assert!(sandbox.stdin_log().contains(&format!("docker {host}: {account}-auth-token\n")));
    }

    // Secrets never reach stderr or an argument list; the redactor got them on stdin.
    let secrets =
        [HOSTILE, "global-token", "from-pipeline", "globalpass", "111122223333-auth-token"];
    assert_no_secrets("environment stderr", &setup.stderr(), &secrets);
    assert_no_secrets("arguments", &calls, &secrets);
    let redactor = sandbox.stdin_log();
    assert!(redactor.contains("buildkite-agent: {"), "{redactor}");
    assert!(redactor.contains("from-pipeline") && redactor.contains("global-token"));
    let stderr = setup.stderr();
    assert!(stderr.contains("hello from the global environment file"), "{stderr}");
    assert!(stderr.contains("~~~ Environment variables that were set"), "{stderr}");
    assert!(stderr.contains("DOCKER_LOGIN_PASSWORD set (value hidden)"), "{stderr}");
    // The one warning: a secret file whose name is not a variable name.
    assert_eq!(stderr.matches(":warning:").count(), 1, "{stderr}");
    assert!(
        stderr.contains(":warning: skipping secret file \"secret-files/bad-name_TOKEN\""),
        "{stderr}"
    );

    // Git asks the credential helper: the entry for the requested host, decoded.
    let mut full_env = env.clone();
    full_env.extend(job.clone());
    let answer = git_fill(&full_env, "protocol=https\nhost=github.com\n\n");
    assert!(answer.contains("username=pipe@line\npassword=pipe:pass\n"), "{answer}");
    let answer = git_fill(&full_env, "protocol=https\nhost=git.example.com\n\n");
    assert!(answer.contains("username=global\npassword=globalpass\n"), "{answer}");

    // pre-command: the Docker Hub login from the env file's variables.
    let command = run_shim("pre-command", &full_env);
    assert_eq!(command.code(), Some(0), "{}", command.stderr());
    let calls = sandbox.calls();
    assert!(calls.contains("docker login --username robot --password-stdin \n"), "{calls}");
    assert!(sandbox.stdin_log().contains(&format!("docker --password-stdin: {HOSTILE}\n")));
    assert_no_secrets("arguments", &calls, &[HOSTILE]);
    assert_no_secrets("pre-command stderr", &command.stderr(), &[HOSTILE]);

    // pre-exit: the agent and the Docker config are gone, and the job is told.
    let exit = run_shim("pre-exit", &full_env);
    assert_eq!(exit.code(), Some(0), "{}", exit.stderr());
    for gone in ["SSH_AUTH_SOCK", "SSH_AGENT_PID", "DOCKER_CONFIG"] {
        assert!(!exit.env.contains_key(gone), "{gone}");
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(!alive(&agent_pid));
    assert!(sandbox.tmp_entries().is_empty(), "{:?}", sandbox.tmp_entries());
}

/// `git credential fill` with the job's GIT_CONFIG_PARAMETERS, so git itself runs the
/// helper the environment hook configured.
fn git_fill(env: &HashMap<String, String>, request: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("git")
        .args(["credential", "fill"])
        .env_clear()
        .envs(env)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(request.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test]
async fn missing_optional_keys_are_quiet_and_ssh_repos_get_a_warning() {
    let Some(moto) = moto() else { return };
    let sandbox = Sandbox::new();
    let bucket = moto.bucket("hooks-empty").await;
    let mut env = job_env(&sandbox, &moto, &bucket);
    let run = run_shim("environment", &env);
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    assert!(!run.stderr().contains(":warning:"), "{}", run.stderr());
    assert!(run.stderr().contains("No secret files found in \"app\""));
    assert!(!run.env.contains_key("SSH_AUTH_SOCK"));

    env.insert("BUILDKITE_REPO".into(), "git@github.com:acme/app.git".into());
    let run = run_shim("environment", &env);
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    assert!(
        run.stderr().contains("Failed to find an SSH key in secret bucket"),
        "{}",
        run.stderr()
    );

    env.insert("BUILDKITE_SECRETS_PLUGIN_SKIP_SSH_KEY_NOT_FOUND_WARNING".into(), "true".into());
    let run = run_shim("environment", &env);
    assert!(!run.stderr().contains("Failed to find an SSH key"), "{}", run.stderr());
}

#[tokio::test]
async fn a_missing_bucket_fails_the_job_and_leaves_nothing_behind() {
    let Some(moto) = moto() else { return };
    let sandbox = Sandbox::new();
    let bucket = unique_name("hooks-no-such-bucket");
    let env = job_env(&sandbox, &moto, &bucket);
    let run = run_shim("environment", &env);
    assert_eq!(run.code(), Some(53));
    let stderr = run.stderr();
    assert!(stderr.contains(&format!("secrets bucket {bucket:?} not found")), "{stderr}");
    assert!(
        stderr.contains(":rotating_light: Elastic CI Stack environment hook failed"),
        "{stderr}"
    );
    assert!(run.stdout().is_empty());
    assert!(sandbox.tmp_entries().is_empty(), "{:?}", sandbox.tmp_entries());
}

#[tokio::test]
async fn a_failing_env_file_fails_the_job_naming_it_and_stops_the_agent() {
    let Some(moto) = moto() else { return };
    let sandbox = Sandbox::new();
    let bucket = moto.bucket("hooks-failing-env").await;
    let (key, _) = ssh_key(sandbox.dir.path(), "key");
    moto.put_object(&bucket, "private_ssh_key", key.into_bytes()).await;
    moto.put_object(&bucket, "app/env", b"export OK=1\nfalse\nexport NEVER=1\n".to_vec()).await;
    let env = job_env(&sandbox, &moto, &bucket);
    let run = run_shim("environment", &env);
    assert_eq!(run.code(), Some(53));
    let stderr = run.stderr();
    assert!(
        stderr.contains(&format!("evaluating s3://{bucket}/app/env failed (exit status 1)")),
        "{stderr}"
    );
    std::thread::sleep(std::time::Duration::from_millis(200));
    // The agent that was started for the key is stopped again, its socket removed.
    assert!(sandbox.tmp_entries().is_empty(), "{:?}", sandbox.tmp_entries());
}

#[tokio::test]
async fn an_oversized_secret_fails_the_job_naming_the_key_and_the_limit() {
    let Some(moto) = moto() else { return };
    for (key, limit) in [("private_ssh_key", 64 * 1024), ("app/env", 1024 * 1024)] {
        let sandbox = Sandbox::new();
        let bucket = moto.bucket("hooks-oversized").await;
        moto.put_object(&bucket, key, vec![b'#'; limit + 1]).await;
        let run = run_shim("environment", &job_env(&sandbox, &moto, &bucket));
        assert_ne!(run.code(), Some(0), "{key}");
        let stderr = run.stderr();
        assert!(stderr.contains(&format!("failed to download s3://{bucket}/{key}")), "{stderr}");
        assert!(stderr.contains(&format!("larger than the limit of {limit} bytes")), "{stderr}");
    }
    // At the limit, an env file of comments is read and evaluated.
    let sandbox = Sandbox::new();
    let bucket = moto.bucket("hooks-at-limit").await;
    let mut env_file = b"export AT_LIMIT=1\n".to_vec();
    env_file.resize(1024 * 1024, b'#');
    moto.put_object(&bucket, "env", env_file).await;
    let run = run_shim("environment", &job_env(&sandbox, &moto, &bucket));
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    assert_eq!(run.env.get("AT_LIMIT").map(String::as_str), Some("1"));
}

#[tokio::test]
async fn an_env_file_that_exits_keeps_what_it_set() {
    let Some(moto) = moto() else { return };
    let sandbox = Sandbox::new();
    let bucket = moto.bucket("hooks-exit-env").await;
    moto.put_object(&bucket, "env", b"export FIRST=1\nexit 0\nexport NEVER=1\n".to_vec()).await;
    moto.put_object(&bucket, "app/env", b"export SECOND=1\n".to_vec()).await;
    let run = run_shim("environment", &job_env(&sandbox, &moto, &bucket));
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    assert_eq!(run.env.get("FIRST").map(String::as_str), Some("1"));
    assert!(!run.env.contains_key("NEVER") && !run.env.contains_key("SECOND"));
    assert!(run.stderr().contains("called exit"), "{}", run.stderr());
}

#[tokio::test]
async fn ecr_logs_in_to_this_account_by_default_and_can_be_switched_off() {
    let Some(moto) = moto() else { return };
    let sandbox = Sandbox::new();
    let mut env = sandbox.job_env();
    env.extend(moto.env());
    env.insert("BUILDKITE_ECR_POLICY".into(), "poweruser".into());
    let run = run_shim("environment", &env);
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    let calls = sandbox.calls();
    assert!(
        calls.contains("docker login --username AWS --password-stdin 123456789012.dkr.ecr.us-east-1.amazonaws.com"),
        "{calls}"
    );
    assert_eq!(run.env.get("BUILDKITE_PLUGIN_ECR_LOGIN").map(String::as_str), Some("1"));

    std::fs::write(sandbox.path("calls.log"), "").unwrap();
    env.insert("AWS_ECR_LOGIN".into(), "false".into());
    let run = run_shim("environment", &env);
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    assert!(!sandbox.calls().contains("docker login"), "{}", sandbox.calls());

    // A registry login that keeps failing fails the job after its retries (and
    // removes the Docker config it made; the successful jobs above keep theirs).
    for entry in sandbox.tmp_entries() {
        std::fs::remove_dir_all(sandbox.path("tmp").join(entry)).unwrap();
    }
    env.remove("AWS_ECR_LOGIN");
    env.insert("BUILDKITE_PLUGIN_ECR_RETRIES".into(), "1".into());
    env.insert("STUB_DOCKER_LOGIN_FAILURES".into(), "9".into());
    let run = run_shim("environment", &env);
    assert_eq!(run.code(), Some(53));
    assert!(run.stderr().contains("Login failed on attempt 1 of 2"), "{}", run.stderr());
    assert!(run.stderr().contains("failed after 2 attempts"), "{}", run.stderr());
    assert!(sandbox.tmp_entries().is_empty());
}

#[tokio::test]
async fn ecr_credential_helper_mode_configures_docker_instead_of_logging_in() {
    let Some(moto) = moto() else { return };
    let sandbox = Sandbox::new();
    let mut env = sandbox.job_env();
    env.extend(moto.env());
    env.insert("BUILDKITE_ECR_POLICY".into(), "readonly".into());
    env.insert("ECR_CREDENTIAL_HELPER_ENABLED".into(), "true".into());
    env.insert("AWS_ECR_LOGIN_REGISTRY_IDS".into(), "111122223333".into());
    env.insert("BUILDKITE_PLUGIN_ECR_REGION".into(), "cn-north-1".into());
    let run = run_shim("environment", &env);
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    assert!(!sandbox.calls().contains("docker login"));
    let config =
        std::fs::read_to_string(format!("{}/config.json", run.env["DOCKER_CONFIG"])).unwrap();
    assert!(
        config.contains(r#""111122223333.dkr.ecr.cn-north-1.amazonaws.com.cn": "ecr-login""#),
        "{config}\n{}",
        run.stderr()
    );
    assert_eq!(run.env.get("AWS_ECR_IGNORE_CREDS_STORAGE").map(String::as_str), Some("true"));
}
