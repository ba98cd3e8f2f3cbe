//! Cost of one scaling decision, for the capacity simulator that calls it per tick.

use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use elastic_ci_core::scaling::{
    GroupSizes, QueueCounts, ScalingMode, ScalingPolicy, ScalingState, decide,
};

fn stack_defaults() -> ScalingPolicy {
    ScalingPolicy {
        agents_per_instance: NonZeroU32::new(1),
        include_waiting: false,
        instance_buffer: 0,
        max_instance_cap: None,
        availability_threshold: 0.5,
        scale_out_factor: 1.0,
        scale_in_factor: 0.0,
        scale_out_cooldown: Duration::from_secs(300),
        scale_in_cooldown: Duration::from_secs(3600),
        scale_only_after_all_events: false,
        disable_scale_in: true,
        disable_scale_out: false,
        elastic_ci_mode: false,
        route_by_desired_capacity: false,
        mode: ScalingMode::Original,
    }
}

fn bench_decide(c: &mut Criterion) {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let policy = stack_defaults();
    let group =
        GroupSizes { min_size: 0, max_size: 100, desired_capacity: 8, in_service: 8, pending: 0 };
    let busy = QueueCounts {
        scheduled_jobs: 12,
        running_jobs: 8,
        waiting_jobs: 3,
        idle_agents: 0,
        busy_agents: 6,
        total_agents: 6,
    };
    let scaled_recently =
        ScalingState { last_scale_out: Some(now - Duration::from_secs(60)), last_scale_in: None };
    c.bench_function("decide/scale_out", |b| {
        b.iter(|| {
            decide(
                black_box(&policy),
                black_box(&ScalingState::default()),
                black_box(&busy),
                black_box(&group),
                black_box(now),
            )
        });
    });
    c.bench_function("decide/cooldown", |b| {
        b.iter(|| {
            decide(
                black_box(&policy),
                black_box(&scaled_recently),
                black_box(&busy),
                black_box(&group),
                black_box(now),
            )
        });
    });
    let idle = QueueCounts::default();
    c.bench_function("decide/idle", |b| {
        b.iter(|| {
            decide(
                black_box(&policy),
                black_box(&ScalingState::default()),
                black_box(&idle),
                black_box(&group),
                black_box(now),
            )
        });
    });
}

criterion_group!(benches, bench_decide);
criterion_main!(benches);
