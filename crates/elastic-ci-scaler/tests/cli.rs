//! The binary's command line and its Lambda mode, without AWS: help, argument and
//! configuration errors, and a configuration error reported through the Lambda
//! runtime API.

#[path = "support/lambda_api.rs"]
mod lambda_api;

use std::process::Command;

use assert_cmd::cargo::CommandCargoExt;
use predicates::prelude::*;

use crate::lambda_api::{FakeLambdaApi, REQUEST_ID};

fn scaler() -> Command {
    let mut command = Command::cargo_bin("elastic-ci-scaler").unwrap();
    command.env_clear().env("PATH", "/usr/bin:/bin");
    command
}

#[test]
fn help_explains_the_commands_and_flags() {
    let output = scaler().arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for expected in ["run", "AWS_LAMBDA_RUNTIME_API", "BUILDKITE_QUEUE"] {
        assert!(help.contains(expected), "{expected}: {help}");
    }
    let output = scaler().args(["run", "--help"]).output().unwrap();
    let help = String::from_utf8(output.stdout).unwrap();
    for expected in ["--once", "--dry-run", "SIGTERM"] {
        assert!(help.contains(expected), "{expected}: {help}");
    }
}

#[test]
fn no_command_is_an_error() {
    assert_cmd::Command::from_std(scaler())
        .assert()
        .failure()
        .stderr(predicate::str::contains("no command given"));
    assert_cmd::Command::from_std(scaler()).arg("--bogus").assert().code(2);
}

#[test]
fn bad_configuration_names_the_variable_and_hides_the_token() {
    let mut command = scaler();
    command.args(["run", "--once"]).envs([
        ("BUILDKITE_QUEUE", "default"),
        ("ASG_NAME", "asg"),
        ("AGENTS_PER_INSTANCE", "1"),
        ("BUILDKITE_AGENT_TOKEN", "very-secret-token"),
        ("SCALE_IN_COOLDOWN_PERIOD", "3600"),
    ]);
    let output = command.output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains(r#"invalid SCALE_IN_COOLDOWN_PERIOD "3600": expected a duration"#),
        "{stderr}"
    );
    assert!(!stderr.contains("very-secret-token"), "{stderr}");
    assert!(output.stdout.is_empty());

    let mut command = scaler();
    command.args(["run"]).envs([("BUILDKITE_QUEUE", "default"), ("ASG_NAME", "asg")]);
    let output = command.output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("AGENTS_PER_INSTANCE is required"));
}

#[test]
fn in_lambda_a_bad_configuration_fails_each_invocation_naming_the_variable() {
    let api = FakeLambdaApi::start();
    let (kind, body) = api.invoke(scaler().envs([
        ("AWS_REGION", "us-east-1"),
        ("BUILDKITE_QUEUE", "default"),
        ("AGENTS_PER_INSTANCE", "1"),
        ("BUILDKITE_AGENT_TOKEN", "token"),
    ]));
    assert_eq!(kind, format!("error {REQUEST_ID}"));
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["errorType"], "InvalidConfig");
    assert_eq!(body["errorMessage"], "invalid configuration: ASG_NAME is required but not set");
}

/// A variable that is not UTF-8 is left out with a warning naming it; the command
/// goes on and fails only for the configuration.
/// See: `std::env::vars()` panicked on a variable that is not UTF-8.
#[test]
fn a_variable_that_is_not_utf8_is_named_and_ignored() {
    use std::os::unix::ffi::OsStrExt;

    let mut command = scaler();
    command
        .args(["run", "--once"])
        .envs([("BUILDKITE_QUEUE", "default"), ("ASG_NAME", "asg")])
        .env(std::ffi::OsStr::from_bytes(b"JOB_JUNK"), std::ffi::OsStr::from_bytes(b"\xff\xfe"));
    let output = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("ignoring environment variable"), "{stderr}");
    assert!(stderr.contains("JOB_JUNK"), "{stderr}");
    assert!(stderr.contains("AGENTS_PER_INSTANCE is required"), "{stderr}");
}
