//! Replays a generated trace of 1,000,000 jobs (by default; `cargo bench -p
//! elastic-ci-simulator --bench simulate -- N` for another size) and prints how long
//! parsing and simulating take.
//!
//! The trace is 8-hour working days of T5's process at 30 times its arrival rate
//! (about 33,000 jobs a day, some 30 days), for a group of up to 1000 instances, so
//! that the fleet, not MaxSize, limits nothing and every event type occurs often.

use std::time::Instant;

use elastic_ci_simulator::reference::day_trace;
use elastic_ci_simulator::run;
use elastic_ci_simulator::settings::Settings;
use elastic_ci_simulator::trace::Trace;

#[allow(clippy::print_stdout, reason = "a benchmark binary prints its figures")]
fn main() -> anyhow::Result<()> {
    let n_jobs: usize =
        std::env::args().skip(1).find_map(|arg| arg.parse().ok()).unwrap_or(1_000_000);

    let started = Instant::now();
    let trace = day_trace(7, 30.0, 10_000, n_jobs);
    let generated = started.elapsed();
    let csv = trace.to_csv("benchmark trace");

    let started = Instant::now();
    let parsed = Trace::parse(&csv, None)?;
    let parse_time = started.elapsed();
    anyhow::ensure!(parsed.jobs.len() == trace.jobs.len(), "the trace did not read back");

    println!(
        "trace: {} jobs over {:.1} days, {:.1} MB of CSV (generated in {:.2} s)",
        trace.jobs.len(),
        trace.horizon_us.unwrap_or(0) as f64 / 1e6 / 28_800.0,
        csv.len() as f64 / 1e6,
        generated.as_secs_f64()
    );
    println!("parse: {:.2} s", parse_time.as_secs_f64());

    for mode in ["original", "responsive"] {
        let mut settings = Settings::stack_defaults();
        settings.set("max-size", "1000")?;
        settings.set("SCALER_MODE", mode)?;
        let started = Instant::now();
        let result = run(&parsed, &settings, None)?;
        let elapsed = started.elapsed();
        let summary = &result.summary;
        println!(
            "simulate ({mode}): {:.2} s for {} jobs, {} polls, {} instances ({:.0} jobs/s); wait p95 {:.1} s, {:.0} instance-minutes",
            elapsed.as_secs_f64(),
            summary.jobs,
            summary.polls,
            summary.instances_launched,
            summary.jobs as f64 / elapsed.as_secs_f64(),
            summary.wait_p95_s.unwrap_or(0.0),
            summary.instance_minutes
        );
    }
    Ok(())
}
