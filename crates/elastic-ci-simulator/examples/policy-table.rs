//! Prints the README's tables: `SCALER_MODE=original` (the stack's defaults) against
//! `SCALER_MODE=responsive` on the reference traces T1–T5; the warm pool and job-event
//! modes on T1–T5, with their cost and interrupted jobs; the reference variants A–I on
//! T1–T5; and the two modes on 30 other working days drawn from T5's process with other
//! seeds, under a few model variations.
//! `cargo run --release -p elastic-ci-simulator --example policy-table`.

#![allow(clippy::print_stdout, reason = "a report program prints its tables")]

use elastic_ci_simulator::reference::{NAMES, day_trace, reference};
use elastic_ci_simulator::run;
use elastic_ci_simulator::settings::Settings;
use elastic_ci_simulator::summary::Summary;
use elastic_ci_simulator::trace::Trace;

fn summary(trace: &Trace, mode: &str, extra: &[(&str, &str)]) -> anyhow::Result<Summary> {
    let mut settings = Settings::stack_defaults();
    settings.set("SCALER_MODE", mode)?;
    for (name, value) in extra {
        settings.set(name, value)?;
    }
    Ok(run(trace, &settings, None)?.summary)
}

fn secs(value: Option<f64>) -> String {
    value.map_or_else(|| "n/a".to_owned(), |secs| format!("{secs:.1}"))
}

fn change(after: f64, before: f64) -> f64 {
    if before > 0.0 { after / before - 1.0 } else { 0.0 }
}

/// The reference variants A–I on T1–T5: p95 wait and
/// instance-minutes.
fn variants_table() -> anyhow::Result<()> {
    let variants: [(&str, &str, &[(&str, &str)]); 10] = [
        ("A", "stack defaults", &[]),
        ("B", "A, out cooldown 0", &[("SCALE_OUT_COOLDOWN_PERIOD", "0s")]),
        ("C", "A, INCLUDE_WAITING", &[("INCLUDE_WAITING", "true")]),
        (
            "D",
            "B, availability 0",
            &[("SCALE_OUT_COOLDOWN_PERIOD", "0s"), ("AVAILABILITY_THRESHOLD", "0")],
        ),
        ("E", "A, 4 agents, MaxSize 25", &[("AGENTS_PER_INSTANCE", "4"), ("max-size", "25")]),
        ("F", "A, idle 300 s", &[("idle-period", "300s")]),
        ("G", "B, idle 300 s", &[("SCALE_OUT_COOLDOWN_PERIOD", "0s"), ("idle-period", "300s")]),
        ("H", "A, INSTANCE_BUFFER 2", &[("INSTANCE_BUFFER", "2")]),
        ("I", "A, metrics lag 15 s", &[("metrics-lag", "15s")]),
        ("R", "A, SCALER_MODE=responsive", &[("SCALER_MODE", "responsive")]),
    ];
    let traces: Vec<Trace> = NAMES.iter().filter_map(|name| reference(name)).collect();
    print!("| variant |");
    for name in NAMES {
        print!(" {} p95 wait (s) / instance-min |", name.to_uppercase());
    }
    println!();
    println!("|---|---:|---:|---:|---:|---:|");
    for (letter, label, settings) in variants {
        print!("| {letter}: {label} |");
        for trace in &traces {
            let s = summary(trace, "original", settings)?;
            print!(" {} / {:.0} |", secs(s.wait_p95_s), s.instance_minutes);
        }
        println!();
    }
    Ok(())
}

/// The warm pool and job events on T1–T5 against the stack defaults: waits, running
/// and stopped instance-minutes, the cost with stopped time at its EBS price, and jobs
/// interrupted (with a spot-interruption row for the one path that can interrupt).
fn fast_start_table() -> anyhow::Result<()> {
    let responsive_no_cooldown: &[(&str, &str)] =
        &[("SCALER_MODE", "responsive"), ("SCALE_OUT_COOLDOWN_PERIOD", "0s")];
    let modes: [(&str, Vec<(&str, &str)>); 6] = [
        ("stack defaults", vec![]),
        ("job events (5 s)", [responsive_no_cooldown, &[("event-delay", "5s")]].concat()),
        (
            "warm pool 16, idle 180 s",
            [responsive_no_cooldown, &[("warm-pool-size", "16"), ("idle-period", "180s")]].concat(),
        ),
        (
            "warm pool 16, idle 180 s, job events",
            [
                responsive_no_cooldown,
                &[("warm-pool-size", "16"), ("idle-period", "180s"), ("event-delay", "5s")],
            ]
            .concat(),
        ),
        (
            "warm pool 14, idle 300 s, job events",
            [
                responsive_no_cooldown,
                &[("warm-pool-size", "14"), ("idle-period", "300s"), ("event-delay", "5s")],
            ]
            .concat(),
        ),
        ("stack defaults, 0.5 spot interruptions/h", vec![("spot-interruptions-per-hour", "0.5")]),
    ];
    println!(
        "| trace | mode | wait p50 (s) | wait p95 (s) | wait max (s) | running instance-min | stopped instance-min | cost (instance-min) | cost change | jobs interrupted |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for name in NAMES {
        let trace = reference(name).ok_or_else(|| anyhow::anyhow!("no trace {name}"))?;
        let base = summary(&trace, "original", &[])?;
        for (label, extra) in &modes {
            let s = summary(&trace, "original", extra)?;
            println!(
                "| {} | {label} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:+.1}% | {} |",
                name.to_uppercase(),
                secs(s.wait_p50_s),
                secs(s.wait_p95_s),
                secs(s.wait_max_s),
                s.instance_minutes,
                s.stopped_instance_minutes,
                s.cost_instance_minutes,
                change(s.cost_instance_minutes, base.cost_instance_minutes) * 100.0,
                s.jobs_interrupted
            );
        }
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    println!(
        "| trace | mode | wait p50 (s) | wait p95 (s) | wait max (s) | instance-minutes | instances launched | SetDesiredCapacity calls |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for name in NAMES {
        let trace = reference(name).ok_or_else(|| anyhow::anyhow!("no trace {name}"))?;
        let before = summary(&trace, "original", &[])?;
        let after = summary(&trace, "responsive", &[])?;
        for (mode, s) in [("original", &before), ("responsive", &after)] {
            println!(
                "| {} | {mode} | {} | {} | {} | {:.1} | {} | {} |",
                name.to_uppercase(),
                secs(s.wait_p50_s),
                secs(s.wait_p95_s),
                secs(s.wait_max_s),
                s.instance_minutes,
                s.instances_launched,
                s.set_desired_capacity_calls
            );
        }
        println!(
            "| | change | | {:+.0}% | {:+.0}% | {:+.1}% | | |",
            change(after.wait_p95_s.unwrap_or(0.0), before.wait_p95_s.unwrap_or(0.0)) * 100.0,
            change(after.wait_max_s.unwrap_or(0.0), before.wait_max_s.unwrap_or(0.0)) * 100.0,
            change(after.instance_minutes, before.instance_minutes) * 100.0
        );
    }
    println!();
    fast_start_table()?;
    println!();
    variants_table()?;
    println!();
    let variants: [(&str, &[(&str, &str)]); 5] = [
        ("the stack defaults", &[]),
        ("AGENTS_PER_INSTANCE=4, max-size=25", &[("AGENTS_PER_INSTANCE", "4"), ("max-size", "25")]),
        ("idle-period=300s", &[("idle-period", "300s")]),
        ("metrics-lag=15s", &[("metrics-lag", "15s")]),
        ("min-size=2", &[("min-size", "2")]),
    ];
    println!(
        "| 30 other days (seeds 1–30) with | p95 wait change: median | worst | instance-minutes change: median | worst |"
    );
    println!("|---|---:|---:|---:|---:|");
    for (label, extra) in variants {
        let mut p95_changes = Vec::new();
        let mut cost_changes = Vec::new();
        for seed in 1..=30 {
            let trace = day_trace(seed, 1.0, 1, usize::MAX);
            let before = summary(&trace, "original", extra)?;
            let after = summary(&trace, "responsive", extra)?;
            p95_changes
                .push(change(after.wait_p95_s.unwrap_or(0.0), before.wait_p95_s.unwrap_or(0.0)));
            cost_changes.push(change(after.instance_minutes, before.instance_minutes));
        }
        p95_changes.sort_by(f64::total_cmp);
        cost_changes.sort_by(f64::total_cmp);
        let median = |values: &[f64]| (values[14] + values[15]) / 2.0 * 100.0;
        println!(
            "| {label} | {:+.0}% | {:+.0}% | {:+.1}% | {:+.1}% |",
            median(&p95_changes),
            p95_changes[29] * 100.0,
            median(&cost_changes),
            cost_changes[29] * 100.0
        );
    }
    Ok(())
}
