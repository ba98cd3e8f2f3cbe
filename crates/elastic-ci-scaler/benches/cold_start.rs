//! Cold start of the scaler binary: from process start to its first poll of the
//! Buildkite API (configuration, AWS client set-up, the scaling-activity scan against
//! the local AWS emulator), and to its exit after one poll.
//!
//! `cargo bench -p elastic-ci-scaler --bench cold_start` measures the binary built
//! with the bench profile; `-- PATH` measures another build of it, such as the `dist`
//! one. Needs `ELASTIC_CI_MOTO_ENDPOINT` (`cargo xtask moto start`).

#![allow(clippy::print_stdout, clippy::print_stderr, reason = "a benchmark report")]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use elastic_ci_testkit::buildkite::{FakeBuildkite, QueueMetrics};
use elastic_ci_testkit::moto::moto;

const RUNS: usize = 15;

fn main() {
    // `cargo bench` passes `--bench`; anything else that is not a flag is a path.
    #[allow(clippy::disallowed_methods, reason = "benchmark arguments")]
    let binary = std::env::args()
        .skip(1)
        .find(|arg| !arg.starts_with('-'))
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_elastic-ci-scaler").to_owned());
    let Some(moto) = moto() else { return };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let group = runtime.block_on(moto.scaling_group("cold-start", 0, 10, 1));
    let buildkite = FakeBuildkite::start("bench-token");
    buildkite.set_queue("default", QueueMetrics::jobs(1, 0, 0));

    // Requests are stamped with the time since `base`, so they compare with each run's
    // start.
    let base = Instant::now();
    buildkite.state().set_clock(move || base.elapsed());
    let mut to_first_poll = Vec::new();
    let mut to_exit = Vec::new();
    for _ in 0..RUNS {
        let n_before = buildkite.requests().len();
        let started = base.elapsed();
        let status = Command::new(&binary)
            .args(["run", "--once", "--dry-run"])
            .env_clear()
            .envs(moto.env())
            .envs([
                ("BUILDKITE_QUEUE", "default"),
                ("ASG_NAME", group.as_str()),
                ("AGENTS_PER_INSTANCE", "1"),
                ("BUILDKITE_AGENT_TOKEN", "bench-token"),
                ("BUILDKITE_AGENT_ENDPOINT", buildkite.endpoint().as_str()),
                ("ELASTIC_CI_LOG", "warn"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        to_exit.push(base.elapsed() - started);
        assert!(status.success(), "{binary} failed: {status}");
        let requests = buildkite.requests();
        assert_eq!(requests.len(), n_before + 1, "one poll per run");
        to_first_poll.push(requests[n_before].at - started);
    }
    println!("binary: {binary}");
    report("process start to first poll", &mut to_first_poll);
    report("process start to exit after one poll", &mut to_exit);
}

fn report(what: &str, samples: &mut [Duration]) {
    samples.sort();
    let median = samples[samples.len() / 2];
    println!(
        "{what}: median {:.1} ms, min {:.1} ms, max {:.1} ms ({} runs)",
        median.as_secs_f64() * 1000.0,
        samples[0].as_secs_f64() * 1000.0,
        samples[samples.len() - 1].as_secs_f64() * 1000.0,
        samples.len()
    );
}
