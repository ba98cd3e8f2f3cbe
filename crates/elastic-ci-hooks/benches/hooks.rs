//! Wall time of one job's hooks (environment + pre-command + pre-exit, each run by
//! bash through its shim as the agent runs it) against the local AWS emulator, with a
//! realistic secrets bucket and the default ECR login, next to the same work done the
//! original's way (bash and the AWS CLI, `original_hooks.sh` beside this file).
//!
//! `cargo bench -p elastic-ci-hooks --bench hooks [-- ITERATIONS]` with
//! `ELASTIC_CI_MOTO_ENDPOINT` set (`eval "$(cargo xtask moto start)"`). Docker is the
//! recording stub of the tests; ssh-agent, ssh-add, bash and the AWS CLI are real.

#![allow(clippy::print_stdout, reason = "a bench binary prints its figures")]

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use elastic_ci_testkit::moto::moto;
use support::{Sandbox, run_shim, ssh_key};

fn summary(label: &str, times: &mut [Duration]) {
    times.sort();
    let total: Duration = times.iter().sum();
    let mean = total / u32::try_from(times.len()).unwrap_or(1);
    println!(
        "{label:<48} min {:>7.1} ms   median {:>7.1} ms   mean {:>7.1} ms   (n={})",
        times[0].as_secs_f64() * 1e3,
        times[times.len() / 2].as_secs_f64() * 1e3,
        mean.as_secs_f64() * 1e3,
        times.len()
    );
}

#[tokio::main]
async fn main() {
    let Some(moto) = moto() else { return };
    let iterations: usize = std::env::args().skip(1).find_map(|arg| arg.parse().ok()).unwrap_or(10);
    let sandbox = Sandbox::new();
    let bucket = moto.bucket("hooks-bench").await;
    let (key, _) = ssh_key(sandbox.dir.path(), "bench_key");
    let global_env: String =
        (0..10).map(|i| format!("export GLOBAL_SETTING_{i}=\"value-{i}\"\n")).collect();
    let pipeline_env = format!(
        "{}DOCKER_LOGIN_USER=robot\nDOCKER_LOGIN_PASSWORD=hunter2\n",
        (0..10).map(|i| format!("export APP_SETTING_{i}=\"app-{i}\"\n")).collect::<String>()
    );
    let mut objects = vec![
        ("app/private_ssh_key".to_owned(), key),
        ("env".to_owned(), global_env),
        ("app/env".to_owned(), pipeline_env),
        ("git-credentials".to_owned(), "https://bot:token@github.com\n".to_owned()),
    ];
    for i in 0..5 {
        objects.push((format!("app/secret-files/SERVICE_{i}_TOKEN"), format!("token-{i}")));
    }
    for (key, body) in &objects {
        moto.put_object(&bucket, key, body.as_bytes()).await;
    }
    let mut env = sandbox.job_env();
    env.extend(moto.env());
    env.insert("BUILDKITE_SECRETS_BUCKET".into(), bucket.clone());
    env.insert("BUILDKITE_ECR_POLICY".into(), "readonly".into());

    println!("one job: environment + pre-command + pre-exit, {iterations} iterations");
    let mut rust = Vec::new();
    let mut phases: [Vec<Duration>; 3] = Default::default();
    for _ in 0..iterations {
        let started = Instant::now();
        let setup = run_shim("environment", &env);
        assert_eq!(setup.code(), Some(0), "{}", setup.stderr());
        phases[0].push(started.elapsed());
        let mut job = env.clone();
        job.extend(setup.env.clone());
        let command_started = Instant::now();
        let command = run_shim("pre-command", &job);
        assert_eq!(command.code(), Some(0), "{}", command.stderr());
        phases[1].push(command_started.elapsed());
        let exit_started = Instant::now();
        let exit = run_shim("pre-exit", &job);
        assert_eq!(exit.code(), Some(0), "{}", exit.stderr());
        phases[2].push(exit_started.elapsed());
        rust.push(started.elapsed());
    }
    summary("elastic-ci-hooks: whole job", &mut rust);
    for (name, times) in ["environment", "pre-command", "pre-exit"].iter().zip(phases.iter_mut()) {
        summary(&format!("elastic-ci-hooks: {name}"), times);
    }

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/original_hooks.sh");
    let has_aws = Command::new("aws").arg("--version").output().is_ok_and(|o| o.status.success());
    if !has_aws {
        println!("original (bash + AWS CLI): skipped, the aws CLI is not installed");
        return;
    }
    #[allow(clippy::disallowed_methods, reason = "the bench's own configuration, read once")]
    let host_path = std::env::var("PATH").unwrap_or_default();
    let mut original = Vec::new();
    let mut original_phases: std::collections::BTreeMap<String, Vec<Duration>> = Default::default();
    for _ in 0..iterations {
        let started = Instant::now();
        let output = Command::new("bash")
            .arg(script)
            .arg(&bucket)
            .arg("app")
            .envs(&env)
            // The CLI and jq live outside the sandbox's PATH.
            .env("PATH", format!("{}:{host_path}", sandbox.path("bin").display()))
            .output()
            .unwrap();
        original.push(started.elapsed());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stderr}");
        for line in stderr.lines() {
            let mut words = line.split_whitespace();
            if let (Some("phase"), Some(name), Some(ms)) =
                (words.next(), words.next(), words.next())
            {
                let ms: u64 = ms.parse().unwrap_or(0);
                original_phases.entry(name.to_owned()).or_default().push(Duration::from_millis(ms));
            }
        }
    }
    summary("original (bash + AWS CLI): whole job", &mut original);
    for (name, times) in &mut original_phases {
        summary(&format!("original (bash + AWS CLI): {name}"), times);
    }
}
