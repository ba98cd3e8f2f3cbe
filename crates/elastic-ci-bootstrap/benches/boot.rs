//! Wall time of a full `elastic-ci-bootstrap boot` against the local AWS emulator and
//! the fake metadata service (system actions recorded, so no root and no systemd),
//! next to the same AWS and metadata calls made the original's way (curl and the AWS
//! CLI, `original_boot.sh` beside this file).
//!
//! Then the two phases of a warm-pool instance: the warm phase (the metadata service
//! answers `Warmed:Stopped`: everything up to the agent start) and the resume phase
//! (`InService` after it: the token and agent environment read again, agents started),
//! the part that stands between the group taking a warm instance and its agents.
//!
//! `cargo bench -p elastic-ci-bootstrap --bench boot [-- ITERATIONS]` with
//! `ELASTIC_CI_MOTO_ENDPOINT` set (`eval "$(cargo xtask moto start)"`). The inputs:
//! a token in SSM, an agent env file and a bootstrap script in S3, one git-mirror seed.

#![allow(clippy::print_stdout, reason = "a bench binary prints its figures")]

use std::collections::HashMap;
use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use elastic_ci_aws::autoscaling::{AutoScalingGroups, ScalingGroup};
use elastic_ci_testkit::imds::FakeImds;
use elastic_ci_testkit::moto::{REGION, moto};
use elastic_ci_testkit::names::unique_name;

fn summary(label: &str, times: &mut [Duration]) {
    times.sort();
    let total: Duration = times.iter().sum();
    let mean = total / u32::try_from(times.len()).unwrap_or(1);
    println!(
        "{label:<40} min {:>7.1} ms   median {:>7.1} ms   mean {:>7.1} ms   (n={})",
        times[0].as_secs_f64() * 1e3,
        times[times.len() / 2].as_secs_f64() * 1e3,
        mean.as_secs_f64() * 1e3,
        times.len()
    );
}

/// A small bare mirror, tar.gz.
fn seed() -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, body) in [
        ("repo/HEAD", &b"ref: refs/heads/main\n"[..]),
        // A seed's config must name its origin, or the seed is skipped.
        (
            "repo/config",
            b"[core]\n\tbare = true\n[remote \"origin\"]\n\turl = https://github.com/example/repo.git\n",
        ),
        ("repo/objects/pack/pack-1.pack", &[7u8; 256 * 1024]),
        ("repo/refs/heads/main", b"0123456789abcdef\n"),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(body.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, path, body).unwrap();
    }
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(&builder.into_inner().unwrap()).unwrap();
    encoder.finish().unwrap()
}

#[tokio::main]
async fn main() {
    let Some(moto) = moto() else { return };
    let iterations: usize = std::env::args().skip(1).find_map(|arg| arg.parse().ok()).unwrap_or(10);
    let group = moto.scaling_group("boot-bench", 0, 2, 1).await;
    let snapshot = AutoScalingGroups::new(&moto.sdk_config()).describe_group(&group).await.unwrap();
    let instance_id = snapshot.instances[0].id.clone();
    let imds = FakeImds::start(&instance_id, REGION);
    let token_path = format!("/{}/agent-token", unique_name("boot-bench"));
    moto.put_parameter(&token_path, "bkat-bench-token", true).await;
    let bucket = moto.bucket("boot-bench").await;
    moto.put_object(&bucket, "agent.env", "HTTP_PROXY=\"http://proxy:3128\"\n").await;
    moto.put_object(&bucket, "bootstrap.sh", "#!/bin/bash\ntrue\n").await;
    moto.put_object(&bucket, "git-mirror-seeds/repo.tar.gz", seed()).await;

    let mut env: HashMap<String, String> = moto.env().into_iter().collect();
    for (name, value) in [
        ("BUILDKITE_STACK_NAME", "bench"),
        ("BUILDKITE_STACK_VERSION", "dev"),
        ("BUILDKITE_STACK_DEPLOYED_BY", "cloudformation"),
        ("BUILDKITE_QUEUE", "default"),
        ("BUILDKITE_AGENT_TOKEN_PATH", &token_path),
        ("BUILDKITE_AGENT_ENABLE_GIT_MIRRORS", "true"),
        ("BUILDKITE_GIT_MIRROR_SEED_BUCKET", &bucket),
        ("BUILDKITE_ENV_FILE_URL", &format!("s3://{bucket}/agent.env")),
        ("BUILDKITE_ELASTIC_BOOTSTRAP_SCRIPT", &format!("s3://{bucket}/bootstrap.sh")),
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &imds.endpoint()),
        ("ELASTIC_CI_LOG", "warn"),
        ("PATH", "/usr/bin:/bin"),
    ] {
        env.insert(name.to_owned(), value.to_owned());
    }

    println!("one boot against moto, system actions recorded, {iterations} iterations");
    let binary = assert_cmd::cargo::cargo_bin("elastic-ci-bootstrap");
    let mut ours = Vec::new();
    for _ in 0..iterations {
        let root = tempfile::tempdir().unwrap();
        let actions = root.path().join("actions.jsonl");
        let started = Instant::now();
        let output = Command::new(&binary)
            .arg("boot")
            .arg("--root")
            .arg(root.path())
            .arg("--record-actions")
            .arg(&actions)
            .env_clear()
            .envs(&env)
            .output()
            .unwrap();
        ours.push(started.elapsed());
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        assert!(root.path().join("var/lib/buildkite-agent/git-mirrors/repo/HEAD").exists());
    }
    summary("elastic-ci-bootstrap boot", &mut ours);

    let boot_in = |root: &std::path::Path| {
        let output = Command::new(&binary)
            .arg("boot")
            .arg("--root")
            .arg(root)
            .arg("--record-actions")
            .arg(root.join("actions.jsonl"))
            .env_clear()
            .envs(&env)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    };
    let mut warm = Vec::new();
    let mut resume = Vec::new();
    for _ in 0..iterations {
        let root = tempfile::tempdir().unwrap();
        imds.set_target_lifecycle_state(Some("Warmed:Stopped"));
        let started = Instant::now();
        boot_in(root.path());
        warm.push(started.elapsed());
        imds.set_target_lifecycle_state(Some("InService"));
        let started = Instant::now();
        boot_in(root.path());
        resume.push(started.elapsed());
        let status = root.path().join("var/log/elastic-stack-bootstrap-status");
        assert_eq!(std::fs::read_to_string(status).unwrap(), "Completed");
    }
    imds.set_target_lifecycle_state(None);
    summary("warm phase (into the warm pool)", &mut warm);
    summary("resume phase (out of the warm pool)", &mut resume);

    let has_aws = Command::new("aws").arg("--version").output().is_ok_and(|o| o.status.success());
    if !has_aws {
        println!("original (curl + AWS CLI): skipped, the aws CLI is not installed");
        return;
    }
    #[allow(clippy::disallowed_methods, reason = "the bench's own configuration, read once")]
    let host_path = std::env::var("PATH").unwrap_or_default();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/original_boot.sh");
    let mut original = Vec::new();
    for _ in 0..iterations {
        let work = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let output = Command::new("bash")
            .arg(script)
            .arg(imds.endpoint())
            .arg(&bucket)
            .arg(&token_path)
            .arg(work.path())
            .envs(&env)
            .env("PATH", &host_path)
            .output()
            .unwrap();
        original.push(started.elapsed());
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        assert!(work.path().join("git-mirrors/repo/HEAD").exists());
    }
    summary("original (curl + AWS CLI)", &mut original);
}
