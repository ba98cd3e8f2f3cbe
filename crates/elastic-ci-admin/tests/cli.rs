//! `elastic-ci` as a user runs it: exit codes, stdout and stderr, files written.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;

fn traces() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../elastic-ci-simulator/traces")
}

fn elastic_ci() -> Command {
    let mut command = Command::cargo_bin("elastic-ci").unwrap();
    command.env_remove("ELASTIC_CI_LOG");
    command
}

fn simulate_text(trace: &str, extra: &[&str]) -> assert_cmd::assert::Assert {
    elastic_ci().arg("simulate").arg("-").args(extra).write_stdin(trace.to_owned()).assert()
}

const HEADER: &str = "job_id,queue,visible_at_s,ready_at_s,duration_s\n";

#[test]
fn prints_a_summary_of_a_reference_trace() {
    elastic_ci()
        .arg("simulate")
        .arg(traces().join("t1.csv"))
        .assert()
        .success()
        .stdout(predicate::str::contains("20 jobs on queue \"default\""))
        .stdout(predicate::str::contains(
            "job wait (ready to start): p50 80.5 s, p95 80.5 s, max 80.5 s, mean 80.5 s",
        ))
        .stdout(predicate::str::contains("335.0 instance-minutes"))
        .stderr("");
}

#[test]
fn json_summary_has_the_documented_keys() {
    let output = elastic_ci()
        .args(["simulate", "--json", "--set", "SCALER_MODE=responsive"])
        .arg(traces().join("t2.csv"))
        .output()
        .unwrap();
    assert!(output.status.success());
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    for key in [
        "jobs",
        "unstarted_jobs",
        "wait_p50_s",
        "wait_p95_s",
        "wait_max_s",
        "instance_minutes",
        "busy_job_minutes",
        "instances_launched",
        "set_desired_capacity_calls",
        "aws_calls_per_minute",
        "buildkite_calls_per_minute",
    ] {
        assert!(summary.get(key).is_some(), "missing {key}");
    }
    assert_eq!(summary["jobs"], 20);
    assert_eq!(summary["wait_p95_s"], 80.5);
}

#[test]
fn writes_tables_and_a_plot() {
    let directory = tempfile::tempdir().unwrap();
    let jobs = directory.path().join("jobs.csv");
    let timeline = directory.path().join("timeline.jsonl");
    let plot = directory.path().join("plot.svg");
    elastic_ci()
        .arg("simulate")
        .arg(traces().join("t2.csv"))
        .arg("--jobs-out")
        .arg(&jobs)
        .arg("--timeline-out")
        .arg(&timeline)
        .arg("--plot")
        .arg(&plot)
        .assert()
        .success()
        .stdout(predicate::str::contains(format!("wrote {}", plot.display())));
    let jobs = std::fs::read_to_string(jobs).unwrap();
    let mut lines = jobs.lines();
    assert_eq!(
        lines.next(),
        Some("job_id,queue,visible_at_s,ready_at_s,duration_s,start_s,wait_s,instance")
    );
    assert_eq!(lines.next(), Some("t2-0001,default,5,5,600,85.5,80.5,0"));
    assert_eq!(lines.last(), Some("t2-0020,default,125,125,300,385.5,260.5,19"));
    let timeline = std::fs::read_to_string(timeline).unwrap();
    let second: serde_json::Value = serde_json::from_str(timeline.lines().nth(1).unwrap()).unwrap();
    assert_eq!(second["time_s"], 10.5);
    assert_eq!(second["scheduled_jobs"], 10);
    assert_eq!(second["action"], "scale_out");
    assert_eq!(second["desired_after"], 10);
    let svg = std::fs::read_to_string(plot).unwrap();
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(svg.trim_end().ends_with("</svg>"));
    assert!(svg.contains("ready jobs waiting for an agent"));
}

#[test]
fn sweeps_print_the_pareto_front() {
    elastic_ci()
        .arg("simulate")
        .arg(traces().join("t2.csv"))
        .args(["--sweep", "SCALE_OUT_COOLDOWN_PERIOD=0s,300s", "--sweep", "idle-period=300,600"])
        .args(["--threads", "2"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "4 combinations of SCALE_OUT_COOLDOWN_PERIOD, idle-period; the Pareto front of instance-minutes against p95 wait:",
        ))
        .stdout(predicate::str::contains(
            "  300s                       300          285.0         170.5 s   260.5 s   260.5 s   0          20\n  0s                         300          285.1         80.5 s    80.5 s    80.5 s    0          20\n2 of 4 combinations are on the front",
        ));
    let output = elastic_ci()
        .arg("simulate")
        .arg(traces().join("t2.csv"))
        .args(["--json", "--sweep", "SCALER_MODE=responsive,original"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let points = report["points"].as_array().unwrap();
    assert_eq!(points.len(), 2);
    // Same cost, shorter waits: the responsive mode dominates the original here.
    assert_eq!(points[0]["settings"]["SCALER_MODE"], "responsive");
    assert_eq!(points[0]["summary"]["instance_minutes"], points[1]["summary"]["instance_minutes"]);
    assert_eq!(points[0]["pareto"], true);
    assert_eq!(points[1]["pareto"], false);
}

#[test]
fn reads_json_lines_and_env_files() {
    let directory = tempfile::tempdir().unwrap();
    let env_file = directory.path().join("scaler.env");
    std::fs::write(&env_file, "SCALE_OUT_COOLDOWN_PERIOD=0s\nAWS_REGION=eu-west-1\n").unwrap();
    let trace = "{\"job_id\": \"a\", \"queue\": \"default\", \"visible_at_s\": 5, \"ready_at_s\": 5, \"duration_s\": 60}\n{\"job_id\": \"b\", \"queue\": \"default\", \"visible_at_s\": 125, \"ready_at_s\": 125, \"duration_s\": 60}\n";
    simulate_text(trace, &["--env-file", env_file.to_str().unwrap(), "--horizon", "1h"])
        .success()
        .stdout(predicate::str::contains("SCALE_OUT_COOLDOWN_PERIOD=0s"))
        .stdout(predicate::str::contains("simulated for 3600 s"))
        .stderr(predicate::str::contains("ignoring a variable the scaler does not read"))
        .stderr(predicate::str::contains("AWS_REGION"));
}

#[test]
fn malformed_traces_exit_2_naming_the_line() {
    simulate_text(&format!("{HEADER}a,default,0,0,60\nb,default,0,0,-5\n"), &[])
        .code(2)
        .stdout("")
        .stderr("error: invalid trace -: line 3: invalid duration_s -5 for job \"b\": expected seconds from 0 to 1e10\n");
    simulate_text(&format!("{HEADER}a,default,10,5,60\n"), &[]).code(2).stderr(
        predicate::str::contains(
            "line 2: job \"a\" is ready (ready_at_s 5) before it is visible (visible_at_s 10)",
        ),
    );
    simulate_text(&format!("{HEADER}a,default,0,zero,60\n"), &[])
        .code(2)
        .stderr(predicate::str::contains("line 2: invalid ready_at_s \"zero\""));
    simulate_text("{\"job_id\": \"a\"}\n", &[])
        .code(2)
        .stderr(predicate::str::contains("line 1: invalid JSON job: missing field `queue`"));
    simulate_text("job,queue\n", &["--trace-format", "csv"])
        .code(2)
        .stderr(predicate::str::contains("line 1: the CSV header has no job_id column"));
    simulate_text(&format!("{HEADER}a,gpu,0,0,60\n"), &[]).code(2).stderr(predicate::str::contains(
        "no job in the trace is on queue \"default\" (BUILDKITE_QUEUE); the trace's queues are: gpu",
    ));
}

#[test]
fn bad_settings_exit_2_naming_the_value() {
    let trace = format!("{HEADER}a,default,0,0,60\n");
    simulate_text(&trace, &["--set", "SCALE_OUT_COOLDOWN_PERIOD=300"]).code(2).stderr(
        predicate::str::contains(
            "invalid SCALE_OUT_COOLDOWN_PERIOD \"300\": expected a duration such as 10s, 1m30s, 1.5h or 0",
        ),
    );
    simulate_text(&trace, &["--set", "SCALER_MODE=fast"]).code(2).stderr(predicate::str::contains(
        "invalid SCALER_MODE \"fast\": expected original or responsive",
    ));
    simulate_text(&trace, &["--set", "SCALE_OUT_COOLDOWN=0s"])
        .code(2)
        .stderr(predicate::str::contains("unknown setting \"SCALE_OUT_COOLDOWN\""));
    simulate_text(&trace, &["--sweep", "INSTANCE_BUFFER=0,lots"]).code(2).stderr(
        predicate::str::contains("--sweep INSTANCE_BUFFER=lots: invalid scaler settings: invalid INSTANCE_BUFFER \"lots\": expected an integer"),
    );
    simulate_text(&trace, &["--sweep", "INSTANCE_BUFFER"])
        .code(2)
        .stderr(predicate::str::contains("expected NAME=VALUE1,VALUE2"));
    simulate_text(&trace, &["--boot", "soon"])
        .code(2)
        .stderr(predicate::str::contains("invalid value 'soon' for '--boot <DURATION>'"));
    simulate_text(&trace, &["--horizon", "10000h"]).code(2).stderr(predicate::str::contains(
        "a horizon of 36000000 s is longer than the 31622400 s (366 days) the simulator runs",
    ));
    simulate_text(&trace, &["--min-size", "5", "--max-size", "2"])
        .code(2)
        .stderr(predicate::str::contains("invalid --min-size 5: above --max-size 2"));
    simulate_text(&trace, &["--jobs-out", "jobs.txt"])
        .code(2)
        .stderr(predicate::str::contains("expected one ending in .csv, .json or .jsonl"));
    simulate_text(&trace, &["--plot", "out.svg", "--sweep", "INSTANCE_BUFFER=0,1"])
        .code(2)
        .stderr(predicate::str::contains("cannot be used with"));
    let directory = tempfile::tempdir().unwrap();
    let env_file = directory.path().join("bad.env");
    std::fs::write(&env_file, "INCLUDE_WAITING=yes\n").unwrap();
    simulate_text(&trace, &["--env-file", env_file.to_str().unwrap()])
        .code(2)
        .stderr(predicate::str::contains("invalid INCLUDE_WAITING \"yes\": expected a boolean"));
}

#[test]
fn missing_files_exit_1() {
    elastic_ci().args(["simulate", "/nonexistent/trace.csv"]).assert().code(1).stderr(
        predicate::str::starts_with("error: failed to read trace /nonexistent/trace.csv: "),
    );
    let directory = tempfile::tempdir().unwrap();
    let unwritable = directory.path().join("missing-dir").join("jobs.csv");
    elastic_ci()
        .arg("simulate")
        .arg(traces().join("t1.csv"))
        .arg("--jobs-out")
        .arg(&unwritable)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("failed to create a file in"));
    assert!(!unwritable.exists());
}

#[test]
fn help_explains_every_flag() {
    let output = elastic_ci().args(["simulate", "--help"]).output().unwrap();
    let help = String::from_utf8(output.stdout).unwrap();
    for flag in elastic_ci_simulator::settings::MODEL_PARAMS {
        assert!(help.contains(&format!("--{flag} <")), "--{flag} is not in the help");
    }
    for flag in [
        "--env-file",
        "--set",
        "--json",
        "--jobs-out",
        "--timeline-out",
        "--plot",
        "--sweep",
        "--threads",
        "--objective",
        "--horizon",
        "--trace-format",
    ] {
        assert!(help.contains(flag), "{flag} is not in the help");
    }
    assert!(help.contains("[default: 75s]"));
}

/// See: `std::env::vars()` panicked on a variable that is not UTF-8.
#[test]
fn a_variable_that_is_not_utf8_is_named_and_ignored() {
    use std::os::unix::ffi::OsStrExt;

    elastic_ci()
        .env(std::ffi::OsStr::from_bytes(b"JUNK"), std::ffi::OsStr::from_bytes(b"\xff"))
        .arg("simulate")
        .arg(traces().join("t1.csv"))
        .assert()
        .success()
        .stdout(predicate::str::contains("20 jobs on queue \"default\""))
        .stderr(predicate::str::contains("ignoring environment variable"))
        .stderr(predicate::str::contains("JUNK"));
}

#[test]
fn completions_name_the_commands() {
    for shell in ["bash", "zsh", "fish"] {
        elastic_ci()
            .args(["completions", shell])
            .assert()
            .success()
            .stdout(predicate::str::contains("rotate-token"))
            .stdout(predicate::str::contains("iam-policy"));
    }
    elastic_ci().args(["completions", "tcsh"]).assert().code(2);
}

#[test]
fn iam_policy_has_the_grants_the_flags_ask_for() {
    let output = elastic_ci()
        .args([
            "iam-policy",
            "--stack-name",
            "ci",
            "--secrets-bucket",
            "sec",
            "--kms-key",
            "k1",
            "--ecr",
            "readonly",
        ])
        .output()
        .unwrap();
    assert!(output.status.success());
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["AssumeRolePolicyDocument"]["Statement"][0]["Action"], "sts:AssumeRole");
    let policies = json["Policies"].as_object().unwrap();
    let names: Vec<&str> = policies.keys().map(String::as_str).collect();
    assert_eq!(names, ["DecryptAgentToken", "InstancePolicy", "SecretsBucket"]);
    assert_eq!(policies["DecryptAgentToken"]["Statement"][0]["Resource"], "arn:aws:kms:*:*:key/k1");
    assert_eq!(
        json["ManagedPolicyArns"][0],
        "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly"
    );
    elastic_ci()
        .args(["iam-policy", "--stack-name", "ci", "--secrets-bucket", "a b"])
        .assert()
        .code(2)
        .stderr("error: invalid --secrets-bucket \"a b\": expected a name without spaces, quotes or wildcards\n");
}

#[test]
fn stack_commands_need_a_stack() {
    elastic_ci().env_remove("ELASTIC_CI_STACK").arg("status").assert().code(2);
    elastic_ci()
        .args(["status", "--terraform-output", "/nonexistent/out.json"])
        .assert()
        .code(2)
        .stderr(predicate::str::starts_with("error: failed to read /nonexistent/out.json"));
    elastic_ci()
        .env("BUILDKITE_API_TOKEN", "")
        .args(["export-trace", "--org", "o", "--since", "7d"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("BUILDKITE_API_TOKEN"));
}

#[test]
fn copy_log_filters_refuses_bad_input_with_exit_2() {
    elastic_ci().env_remove("ELASTIC_CI_STACK").arg("copy-log-filters").assert().code(2);
    elastic_ci()
        .args(["copy-log-filters", "--stack", "ci", "--from-scaler-log-group", "/aws/lambda/a b"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "invalid log group name \"/aws/lambda/a b\": expected up to 512 letters, digits and _-/.#",
        ));
    // A Terraform deployment without a scaler has no group for the scaler's filters;
    // said before any AWS call (the endpoint answers nothing).
    let dir = tempfile::tempdir().unwrap();
    let outputs = dir.path().join("out.json");
    std::fs::write(
        &outputs,
        r#"{"stack_name":{"value":"ci"},"auto_scaling_group_name":{"value":"ci-agents"}}"#,
    )
    .unwrap();
    elastic_ci()
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .args(["copy-log-filters", "--terraform-output"])
        .arg(&outputs)
        .args(["--from-scaler-log-group", "/aws/lambda/old-scaler", "--dry-run"])
        .assert()
        .code(2)
        .stderr("error: stack ci has no scaler log group (MinSize equals MaxSize: no scaler)\n");
}

/// T2 with a warm pool of 20 and job events 5 s late: every job lands on a warm
/// instance 5 s after it is ready plus 20 s of resume (25 s), stopped time is reported
/// apart, and nothing is interrupted.
#[test]
fn simulates_a_warm_pool_job_events_and_spot_interruptions() {
    let output = elastic_ci()
        .args(["simulate", "--json", "--warm-pool-size", "20", "--event-delay", "5s"])
        .args(["--set", "SCALER_MODE=responsive"])
        .arg(traces().join("t2.csv"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["wait_p95_s"], 25.0);
    assert_eq!(summary["jobs_interrupted"], 0);
    assert!(summary["stopped_instance_minutes"].as_f64().unwrap() > 0.0);
    assert!(summary["event_polls"].as_u64().unwrap() >= 2);

    elastic_ci()
        .args(["simulate", "--spot-interruptions-per-hour", "50"])
        .arg(traces().join("t2.csv"))
        .assert()
        .success()
        .stdout(predicate::str::contains("jobs interrupted: "));
    let trace = format!("{HEADER}a,default,0,0,60\n");
    simulate_text(&trace, &["--event-delay", "soon"]).code(2).stderr(predicate::str::contains(
        r#"invalid --event-delay "soon": expected a duration such as 5s, or off"#,
    ));
    simulate_text(&trace, &["--spot-interruptions-per-hour=-1"])
        .code(2)
        .stderr(predicate::str::contains(r#"invalid rate "-1""#));
    simulate_text(&trace, &["--stopped-cost-ratio", "1.5"])
        .code(2)
        .stderr(predicate::str::contains(r#"invalid fraction "1.5""#));
}

/// The reference trace t1 costs 335.0 instance-minutes (see above); at $1.20 an hour
/// that is 335 / 60 × 1.2 = $6.70. In the sweep of t2's cooldowns, 385.0 and 385.1
/// instance-minutes are $7.70 and $7.702.
#[test]
fn prices_the_instance_minutes_in_the_summary_the_json_and_the_sweep() {
    elastic_ci()
        .arg("simulate")
        .arg(traces().join("t1.csv"))
        .args(["--price-per-instance-hour", "1.2"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "dollar cost: $6.70 (335.0 instance-minutes at $1.2 per instance-hour)\n",
        ));
    elastic_ci()
        .arg("simulate")
        .arg(traces().join("t1.csv"))
        .assert()
        .success()
        .stdout(predicate::str::contains("dollar cost").not());

    let output = elastic_ci()
        .args(["simulate", "--json", "--price-per-instance-hour", "1.2"])
        .arg(traces().join("t1.csv"))
        .output()
        .unwrap();
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["instance_minutes"], 335.0);
    assert_eq!(summary["price_per_instance_hour"], 1.2);
    assert!((summary["cost_usd"].as_f64().unwrap() - 6.70).abs() < 1e-9, "{summary}");

    let sweep = ["--sweep", "SCALE_OUT_COOLDOWN_PERIOD=0s,300s", "--threads", "2"];
    elastic_ci()
        .arg("simulate")
        .arg(traces().join("t2.csv"))
        .args(sweep)
        .args(["--price-per-instance-hour", "1.2"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "  SCALE_OUT_COOLDOWN_PERIOD  instance-min  cost $  wait p50",
        ))
        .stdout(predicate::str::contains("  300s                       385.0         7.70    "))
        .stdout(predicate::str::contains("  0s                         385.1         7.70    "))
        .stdout(predicate::str::contains("cost $ is at $1.2 per instance-hour."));
    let output = elastic_ci()
        .args(["simulate", "--json", "--price-per-instance-hour", "1.2"])
        .arg(traces().join("t2.csv"))
        .args(sweep)
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let points = report["points"].as_array().unwrap();
    assert_eq!(points.len(), 2);
    for point in points {
        let summary = &point["summary"];
        let expected = summary["instance_minutes"].as_f64().unwrap() / 60.0 * 1.2;
        assert!((summary["cost_usd"].as_f64().unwrap() - expected).abs() < 1e-9, "{summary}");
    }

    for bad in ["--price-per-instance-hour=-1", "--price-per-instance-hour=cheap"] {
        elastic_ci().arg("simulate").arg(traces().join("t1.csv")).arg(bad).assert().code(2).stderr(
            predicate::str::contains(
                "expected dollars per instance-hour from 0 to 1000, such as 0.0832",
            ),
        );
    }
}
