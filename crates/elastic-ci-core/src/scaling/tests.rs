//! Decision tables for [`decide`]: the worked examples of the original's behaviour, every
//! input, each quirk with and without its fix, and properties that hold for any input.

use std::time::{Duration, SystemTime};

use expect_test::{Expect, expect};
use proptest::prelude::*;

use super::*;

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn ago(seconds: u64) -> Option<SystemTime> {
    Some(now() - Duration::from_secs(seconds))
}

/// The upstream unit tests' baseline: one agent per instance, no availability rule, no
/// cooldowns, everything enabled.
fn policy() -> ScalingPolicy {
    ScalingPolicy {
        agents_per_instance: NonZeroU32::new(1),
        include_waiting: false,
        instance_buffer: 0,
        max_instance_cap: None,
        availability_threshold: 0.0,
        scale_out_factor: 0.0,
        scale_in_factor: 0.0,
        scale_out_cooldown: Duration::ZERO,
        scale_in_cooldown: Duration::ZERO,
        scale_only_after_all_events: false,
        disable_scale_in: false,
        disable_scale_out: false,
        elastic_ci_mode: false,
        route_by_desired_capacity: false,
        mode: ScalingMode::Original,
    }
}

fn jobs(scheduled: u32, running: u32, waiting: u32) -> QueueCounts {
    QueueCounts {
        scheduled_jobs: scheduled,
        running_jobs: running,
        waiting_jobs: waiting,
        ..QueueCounts::default()
    }
}

fn group(desired: u32, in_service: u32) -> GroupSizes {
    GroupSizes { min_size: 0, max_size: 100, desired_capacity: desired, in_service, pending: 0 }
}

fn check_with(
    policy: &ScalingPolicy,
    state: &ScalingState,
    counts: &QueueCounts,
    group: &GroupSizes,
    expect: Expect,
) {
    let decision = decide(policy, state, counts, group, now());
    let action = match decision.action {
        Action::None => "none".to_owned(),
        Action::SetDesiredCapacity { direction, from, to } => {
            format!("set {from} -> {to} ({direction:?})")
        }
    };
    expect.assert_eq(&format!("{action}: {decision}"));
}

fn check(policy: &ScalingPolicy, counts: &QueueCounts, group: &GroupSizes, expect: Expect) {
    check_with(policy, &ScalingState::default(), counts, group, expect);
}

// Worked examples of the original scaler's arithmetic.

#[test]
fn scales_out_from_zero() {
    check(
        &policy(),
        &jobs(3, 0, 0),
        &group(0, 0),
        expect![
            "set 0 -> 3 (Out): 3 scheduled, 0 running, 0 waiting jobs need 3 agents, 3 instances; capacity 3 within [0, 100]; group desired 0, in service 0, pending 0: scale out from 0 to 3"
        ],
    );
}

#[test]
fn rounds_agents_up_to_whole_instances() {
    let with = |n: u32| ScalingPolicy { agents_per_instance: NonZeroU32::new(n), ..policy() };
    let computed = |policy: ScalingPolicy, s, r| {
        decide(&policy, &ScalingState::default(), &jobs(s, r, 0), &group(0, 0), now()).computed
    };
    assert_eq!(computed(with(4), 10, 2), 3);
    assert_eq!(computed(with(5), 10, 2), 3);
    assert_eq!(computed(with(20), 10, 2), 1);
    assert_eq!(computed(with(4), 10, 3), 4);
}

#[test]
fn waiting_jobs_replace_running_ones_when_there_are_more() {
    let include = ScalingPolicy { include_waiting: true, ..policy() };
    check(
        &include,
        &jobs(8, 2, 20),
        &group(0, 0),
        expect![
            "set 0 -> 28 (Out): 8 scheduled, 2 running, 20 waiting jobs need 28 agents, 28 instances; capacity 28 within [0, 100]; group desired 0, in service 0, pending 0: scale out from 0 to 28"
        ],
    );
    check(
        &include,
        &jobs(8, 2, 1),
        &group(0, 0),
        expect![
            "set 0 -> 10 (Out): 8 scheduled, 2 running, 1 waiting jobs need 10 agents, 10 instances; capacity 10 within [0, 100]; group desired 0, in service 0, pending 0: scale out from 0 to 10"
        ],
    );
    check(
        &policy(),
        &jobs(8, 2, 20),
        &group(0, 0),
        expect![
            "set 0 -> 10 (Out): 8 scheduled, 2 running, 20 waiting jobs need 10 agents, 10 instances; capacity 10 within [0, 100]; group desired 0, in service 0, pending 0: scale out from 0 to 10"
        ],
    );
}

#[test]
fn the_buffer_follows_jobs_and_never_exceeds_them() {
    let buffered = ScalingPolicy { instance_buffer: 20, include_waiting: true, ..policy() };
    check(
        &buffered,
        &jobs(10, 2, 2),
        &group(12, 12),
        expect![
            "set 12 -> 26 (Out): 10 scheduled, 2 running, 2 waiting jobs need 12 agents, 12 instances; plus 14 buffer; capacity 26 within [0, 100]; group desired 12, in service 12, pending 0: scale out from 12 to 26"
        ],
    );
    let buffered = ScalingPolicy { instance_buffer: 10, ..policy() };
    check(
        &buffered,
        &jobs(10, 2, 2),
        &group(12, 12),
        expect![
            "set 12 -> 22 (Out): 10 scheduled, 2 running, 2 waiting jobs need 12 agents, 12 instances; plus 10 buffer; capacity 22 within [0, 100]; group desired 12, in service 12, pending 0: scale out from 12 to 22"
        ],
    );
    let two_per_instance =
        ScalingPolicy { instance_buffer: 3, agents_per_instance: NonZeroU32::new(2), ..policy() };
    let computed = |counts| {
        decide(&two_per_instance, &ScalingState::default(), &counts, &group(0, 0), now()).computed
    };
    assert_eq!(computed(jobs(1, 0, 0)), 2);
    assert_eq!(computed(jobs(0, 0, 0)), 0);
    // Only waiting jobs, not included: no buffer.
    assert_eq!(computed(jobs(0, 0, 5)), 0);
}

#[test]
fn the_scale_out_factor_multiplies_each_step_rounding_up() {
    let factor = |f: f64| ScalingPolicy { scale_out_factor: f, ..policy() };
    let step = |policy: ScalingPolicy, desired: u32, scheduled: u32| match decide(
        &policy,
        &ScalingState::default(),
        &jobs(scheduled, 0, 0),
        &group(desired, desired),
        now(),
    )
    .action
    {
        Action::SetDesiredCapacity { to, .. } => to,
        Action::None => desired,
    };
    assert_eq!(step(factor(0.5), 2, 12), 7);
    assert_eq!(step(factor(0.5), 7, 12), 10);
    assert_eq!(step(factor(0.5), 10, 12), 11);
    assert_eq!(step(factor(0.5), 11, 12), 12);
    assert_eq!(step(factor(0.1), 11, 12), 12);
    assert_eq!(step(factor(5.0), 0, 10), 50);
    let small_group = GroupSizes { max_size: 10, ..group(0, 0) };
    check(
        &factor(2.0),
        &jobs(8, 0, 0),
        &small_group,
        expect![
            "set 0 -> 10 (Out): 8 scheduled, 0 running, 0 waiting jobs need 8 agents, 8 instances; capacity 8 within [0, 10]; group desired 0, in service 0, pending 0: scale out from 0 to 10"
        ],
    );
}

#[test]
fn a_huge_scale_out_factor_raises_to_the_maximum_rather_than_wrapping() {
    // A step of 1e300 instances saturates to u64::MAX; added to the desired capacity
    // without saturation it wrapped around below it.
    for factor in [1e300, f64::MAX, f64::INFINITY] {
        let policy = ScalingPolicy { scale_out_factor: factor, ..policy() };
        let group = GroupSizes { max_size: u32::MAX, ..group(3, 3) };
        let decision = decide(&policy, &ScalingState::default(), &jobs(5, 0, 0), &group, now());
        assert_eq!(
            decision.action,
            Action::SetDesiredCapacity { direction: Direction::Out, from: 3, to: u32::MAX },
            "{factor}"
        );
    }
}

#[test]
fn the_scale_in_factor_multiplies_each_step_rounding_down() {
    let factor = |f: f64| ScalingPolicy { scale_in_factor: f, ..policy() };
    check(
        &factor(0.1),
        &jobs(0, 0, 0),
        &group(10, 10),
        expect![
            "set 10 -> 9 (In): 0 scheduled, 0 running, 0 waiting jobs need 0 agents, 0 instances; capacity 0 within [0, 100]; group desired 10, in service 10, pending 0: scale in from 10 to 9"
        ],
    );
    check(
        &factor(0.1),
        &jobs(0, 0, 0),
        &group(1, 1),
        expect![
            "set 1 -> 0 (In): 0 scheduled, 0 running, 0 waiting jobs need 0 agents, 0 instances; capacity 0 within [0, 100]; group desired 1, in service 1, pending 0: scale in from 1 to 0"
        ],
    );
    // Parity: a large factor overshoots to MinSize despite scheduled jobs.
    check(
        &factor(5.0),
        &jobs(10, 0, 0),
        &group(20, 20),
        expect![
            "set 20 -> 0 (In): 10 scheduled, 0 running, 0 waiting jobs need 10 agents, 10 instances; capacity 10 within [0, 100]; group desired 20, in service 20, pending 0: scale in from 20 to 0"
        ],
    );
}

#[test]
fn the_scale_out_cooldown_holds_until_it_has_passed() {
    let cooling = ScalingPolicy { scale_out_cooldown: Duration::from_secs(300), ..policy() };
    let state = |seconds| ScalingState { last_scale_out: ago(seconds), last_scale_in: None };
    check_with(
        &cooling,
        &state(0),
        &jobs(10, 2, 0),
        &group(4, 4),
        expect![
            "none: 10 scheduled, 2 running, 0 waiting jobs need 12 agents, 12 instances; capacity 12 within [0, 100]; group desired 4, in service 4, pending 0: scale-out cooldown, 300.0s left"
        ],
    );
    check_with(
        &cooling,
        &state(600),
        &jobs(10, 2, 0),
        &group(4, 4),
        expect![
            "set 4 -> 12 (Out): 10 scheduled, 2 running, 0 waiting jobs need 12 agents, 12 instances; capacity 12 within [0, 100]; group desired 4, in service 4, pending 0: scale out from 4 to 12"
        ],
    );
    // Exactly at the end of the cooldown, scaling proceeds.
    let at_end = decide(&cooling, &state(300), &jobs(10, 2, 0), &group(4, 4), now());
    assert_eq!(at_end.reason, Reason::ScaleOut);
    let doubled = ScalingPolicy { scale_out_factor: 2.0, ..cooling };
    let decision = decide(&doubled, &state(600), &jobs(10, 2, 0), &group(4, 4), now());
    assert_eq!(
        decision.action,
        Action::SetDesiredCapacity { direction: Direction::Out, from: 4, to: 20 }
    );
    // The scale-in cooldown does not block scale-out by default.
    let in_only = ScalingState { last_scale_out: None, last_scale_in: ago(0) };
    let cooling_in = ScalingPolicy { scale_in_cooldown: Duration::from_secs(3600), ..policy() };
    let decision = decide(&cooling_in, &in_only, &jobs(3, 0, 0), &group(1, 1), now());
    assert_eq!(decision.reason, Reason::ScaleOut);
}

#[test]
fn the_scale_in_cooldown_holds_until_it_has_passed() {
    let cooling = ScalingPolicy { scale_in_cooldown: Duration::from_secs(3600), ..policy() };
    let state = |seconds| ScalingState { last_scale_out: None, last_scale_in: ago(seconds) };
    check_with(
        &cooling,
        &state(60),
        &jobs(0, 1, 0),
        &group(5, 5),
        expect![
            "none: 0 scheduled, 1 running, 0 waiting jobs need 1 agents, 1 instances; capacity 1 within [0, 100]; group desired 5, in service 5, pending 0: scale-in cooldown, 3540.0s left"
        ],
    );
    let decision = decide(&cooling, &state(3600), &jobs(0, 1, 0), &group(5, 5), now());
    assert_eq!(
        decision.action,
        Action::SetDesiredCapacity { direction: Direction::In, from: 5, to: 1 }
    );
}

#[test]
fn scale_only_after_all_events_measures_from_the_latest_of_either_direction() {
    let policy = ScalingPolicy {
        scale_out_cooldown: Duration::from_secs(120),
        scale_only_after_all_events: true,
        ..policy()
    };
    let state = ScalingState { last_scale_out: ago(600), last_scale_in: ago(60) };
    check_with(
        &policy,
        &state,
        &jobs(3, 0, 0),
        &group(1, 1),
        expect![
            "none: 3 scheduled, 0 running, 0 waiting jobs need 3 agents, 3 instances; capacity 3 within [0, 100]; group desired 1, in service 1, pending 0: scale-out cooldown, 60.0s left"
        ],
    );
    let without = ScalingPolicy { scale_only_after_all_events: false, ..policy };
    let decision = decide(&without, &state, &jobs(3, 0, 0), &group(1, 1), now());
    assert_eq!(
        decision.action,
        Action::SetDesiredCapacity { direction: Direction::Out, from: 1, to: 3 }
    );
    // Mirror for scale-in.
    let policy_in = ScalingPolicy {
        scale_in_cooldown: Duration::from_secs(120),
        scale_only_after_all_events: true,
        ..super::tests::policy()
    };
    let state = ScalingState { last_scale_out: ago(30), last_scale_in: ago(600) };
    let decision = decide(&policy_in, &state, &jobs(0, 0, 0), &group(3, 3), now());
    assert_eq!(decision.reason, Reason::ScaleInCooldown { remaining: Duration::from_secs(90) });
}

#[test]
fn a_cooldown_reference_in_the_future_blocks() {
    let state =
        ScalingState { last_scale_out: Some(now() + Duration::from_secs(5)), last_scale_in: None };
    let decision = decide(&policy(), &state, &jobs(3, 0, 0), &group(0, 0), now());
    assert_eq!(decision.reason, Reason::ScaleOutCooldown { remaining: Duration::from_secs(5) });
}

#[test]
fn the_availability_rule_adds_an_instance_when_agents_are_missing() {
    let policy = ScalingPolicy {
        availability_threshold: 0.5,
        agents_per_instance: NonZeroU32::new(4),
        ..policy()
    };
    let with_agents = |s, r, total| QueueCounts { total_agents: total, ..jobs(s, r, 0) };
    check(
        &policy,
        &with_agents(5, 2, 3),
        &group(2, 2),
        expect![
            "set 2 -> 3 (Out): 5 scheduled, 2 running, 0 waiting jobs need 7 agents, 2 instances; only 38% of expected agents connected, so at least 3; capacity 3 within [0, 100]; group desired 2, in service 2, pending 0: scale out from 2 to 3"
        ],
    );
    check(
        &policy,
        &with_agents(5, 2, 1),
        &group(2, 1),
        expect![
            "none: 5 scheduled, 2 running, 0 waiting jobs need 7 agents, 2 instances; only 25% of expected agents connected, instances still starting; capacity 2 within [0, 100]; group desired 2, in service 1, pending 0: waiting for requested instances"
        ],
    );
    let computed =
        |counts, group| decide(&policy, &ScalingState::default(), &counts, &group, now()).computed;
    assert_eq!(computed(with_agents(5, 2, 7), group(2, 2)), 2);
    assert_eq!(computed(with_agents(2, 0, 2), group(3, 3)), 4);
    assert_eq!(computed(with_agents(20, 0, 2), group(2, 2)), 5);
    // Q16: nothing desired means an availability of 1.0, so the "desired 0 → 1" branch
    // never fires.
    let decision =
        decide(&policy, &ScalingState::default(), &with_agents(5, 0, 0), &group(0, 0), now());
    assert_eq!(decision.availability, Availability::Sufficient { ratio: 1.0 });
    assert_eq!(decision.computed, 2);
    // No job needs an agent: not checked.
    let idle =
        decide(&policy, &ScalingState::default(), &with_agents(0, 0, 0), &group(2, 2), now());
    assert_eq!(idle.availability, Availability::NotChecked);
}

#[test]
fn the_instance_cap_limits_jobs_and_buffer_but_not_the_availability_boost() {
    let capped =
        ScalingPolicy { max_instance_cap: NonZeroU32::new(5), instance_buffer: 10, ..policy() };
    check(
        &capped,
        &jobs(50, 0, 0),
        &group(0, 0),
        expect![
            "set 0 -> 10 (Out): 50 scheduled, 0 running, 0 waiting jobs need 50 agents, 5 instances; plus 5 buffer; capacity 10 within [0, 100]; group desired 0, in service 0, pending 0: scale out from 0 to 10"
        ],
    );
    // Q17: the boost ignores the cap (MaxSize still applies).
    let boosted = ScalingPolicy {
        max_instance_cap: NonZeroU32::new(2),
        availability_threshold: 0.5,
        ..policy()
    };
    let counts = QueueCounts { total_agents: 1, ..jobs(10, 0, 0) };
    let decision = decide(&boosted, &ScalingState::default(), &counts, &group(6, 6), now());
    assert_eq!(decision.job_based, 2);
    assert_eq!(decision.computed, 7);
    // Zero agents per instance: one instance per job, the cap is not applied.
    let one_to_one = ScalingPolicy { agents_per_instance: None, ..capped };
    let decision =
        decide(&one_to_one, &ScalingState::default(), &jobs(50, 0, 0), &group(0, 0), now());
    assert_eq!(decision.job_based, 50);
    assert_eq!(decision.computed, 60);
}

#[test]
fn the_result_is_clamped_to_the_group_bounds() {
    let bounded = GroupSizes { min_size: 2, max_size: 5, ..group(2, 2) };
    check(
        &policy(),
        &jobs(50, 0, 0),
        &bounded,
        expect![
            "set 2 -> 5 (Out): 50 scheduled, 0 running, 0 waiting jobs need 50 agents, 50 instances; capacity 5 within [2, 5]; group desired 2, in service 2, pending 0: scale out from 2 to 5"
        ],
    );
    check(
        &policy(),
        &jobs(0, 0, 0),
        &bounded,
        expect![
            "none: 0 scheduled, 0 running, 0 waiting jobs need 0 agents, 0 instances; capacity 2 within [2, 5]; group desired 2, in service 2, pending 0: no change"
        ],
    );
}

#[test]
fn converging_groups_are_left_alone() {
    let converging = GroupSizes { pending: 2, ..group(5, 3) };
    check(
        &policy(),
        &jobs(5, 0, 0),
        &converging,
        expect![
            "none: 5 scheduled, 0 running, 0 waiting jobs need 5 agents, 5 instances; capacity 5 within [0, 100]; group desired 5, in service 3, pending 2: waiting for requested instances"
        ],
    );
}

#[test]
fn disabled_directions_never_act() {
    let no_in = ScalingPolicy { disable_scale_in: true, ..policy() };
    check(
        &no_in,
        &jobs(0, 0, 0),
        &group(4, 4),
        expect![
            "none: 0 scheduled, 0 running, 0 waiting jobs need 0 agents, 0 instances; capacity 0 within [0, 100]; group desired 4, in service 4, pending 0: scale-in needed but disabled"
        ],
    );
    let no_out = ScalingPolicy { disable_scale_out: true, ..policy() };
    check(
        &no_out,
        &jobs(4, 0, 0),
        &group(0, 0),
        expect![
            "none: 4 scheduled, 0 running, 0 waiting jobs need 4 agents, 4 instances; capacity 4 within [0, 100]; group desired 0, in service 0, pending 0: scale-out needed but disabled"
        ],
    );
}

// The original's quirks, in parity mode and fixed.

#[test]
fn q7_an_increase_below_in_service_goes_through_scale_in_in_parity_mode() {
    // Desired 2, but 5 protected instances still in service: 4 jobs need 4 instances.
    let draining = group(2, 5);
    let stack_defaults = ScalingPolicy { disable_scale_in: true, ..policy() };
    check(
        &stack_defaults,
        &jobs(4, 0, 0),
        &draining,
        expect![
            "none: 4 scheduled, 0 running, 0 waiting jobs need 4 agents, 4 instances; capacity 4 within [0, 100]; group desired 2, in service 5, pending 0: scale-in needed but disabled"
        ],
    );
    let fixed = ScalingPolicy { route_by_desired_capacity: true, ..stack_defaults };
    check(
        &fixed,
        &jobs(4, 0, 0),
        &draining,
        expect![
            "set 2 -> 4 (Out): 4 scheduled, 0 running, 0 waiting jobs need 4 agents, 4 instances; capacity 4 within [0, 100]; group desired 2, in service 5, pending 0: scale out from 2 to 4"
        ],
    );
    // With scale-in enabled, parity raises the capacity through scale-in, under the
    // scale-in cooldown.
    let cooling_in = ScalingPolicy { scale_in_cooldown: Duration::from_secs(3600), ..policy() };
    let state = ScalingState { last_scale_out: None, last_scale_in: ago(60) };
    let decision = decide(&cooling_in, &state, &jobs(4, 0, 0), &draining, now());
    assert_eq!(decision.reason, Reason::ScaleInCooldown { remaining: Duration::from_secs(3540) });
    let decision = decide(&policy(), &ScalingState::default(), &jobs(4, 0, 0), &draining, now());
    assert_eq!(
        decision.action,
        Action::SetDesiredCapacity { direction: Direction::In, from: 2, to: 4 }
    );
}

#[test]
fn q8_parity_sets_the_unchanged_capacity_and_the_fix_skips_it() {
    let draining = group(2, 5);
    check(
        &policy(),
        &jobs(2, 0, 0),
        &draining,
        expect![
            "set 2 -> 2 (In): 2 scheduled, 0 running, 0 waiting jobs need 2 agents, 2 instances; capacity 2 within [0, 100]; group desired 2, in service 5, pending 0: set desired capacity to 2 (unchanged)"
        ],
    );
    let fixed = ScalingPolicy { route_by_desired_capacity: true, ..policy() };
    check(
        &fixed,
        &jobs(2, 0, 0),
        &draining,
        expect![
            "none: 2 scheduled, 0 running, 0 waiting jobs need 2 agents, 2 instances; capacity 2 within [0, 100]; group desired 2, in service 5, pending 0: no change"
        ],
    );
}

#[test]
fn the_fixed_routing_scales_in_and_converges_like_the_original() {
    let fixed = ScalingPolicy { route_by_desired_capacity: true, ..policy() };
    let decision = decide(&fixed, &ScalingState::default(), &jobs(0, 0, 0), &group(3, 3), now());
    assert_eq!(
        decision.action,
        Action::SetDesiredCapacity { direction: Direction::In, from: 3, to: 0 }
    );
    let decision = decide(&fixed, &ScalingState::default(), &jobs(5, 0, 0), &group(5, 3), now());
    assert_eq!(decision.reason, Reason::Converging);
    let decision = decide(&fixed, &ScalingState::default(), &jobs(0, 0, 0), &group(0, 0), now());
    assert_eq!(decision.reason, Reason::Steady);
}

#[test]
fn elastic_ci_mode_ignores_disable_scale_in_and_waits_for_pending_instances() {
    let elastic = ScalingPolicy { elastic_ci_mode: true, disable_scale_in: true, ..policy() };
    let decision = decide(&elastic, &ScalingState::default(), &jobs(0, 0, 0), &group(3, 3), now());
    assert_eq!(
        decision.action,
        Action::SetDesiredCapacity { direction: Direction::In, from: 3, to: 0 }
    );
    let pending = GroupSizes { pending: 1, ..group(1, 3) };
    let decision = decide(&elastic, &ScalingState::default(), &jobs(1, 0, 0), &pending, now());
    assert_eq!(decision.reason, Reason::PendingInstances);
    // Example 12: instances in service but no agent connected.
    let dangling = ScalingPolicy { agents_per_instance: NonZeroU32::new(6), ..elastic };
    let one = GroupSizes { max_size: 1, ..group(1, 1) };
    check(
        &dangling,
        &jobs(4, 0, 7),
        &one,
        expect![
            "none: 4 scheduled, 0 running, 7 waiting jobs need 4 agents, 1 instances; capacity 1 within [0, 1]; group desired 1, in service 1, pending 0: instances but no connected agents: dangling-instance check"
        ],
    );
}

#[test]
fn recording_an_action_starts_its_cooldown() {
    let mut state = ScalingState::default();
    state.record(Action::None, now());
    assert_eq!(state, ScalingState::default());
    state.record(Action::SetDesiredCapacity { direction: Direction::Out, from: 0, to: 1 }, now());
    assert_eq!(state.last_scale_out, Some(now()));
    state.record(Action::SetDesiredCapacity { direction: Direction::In, from: 1, to: 0 }, now());
    assert_eq!(state.last_scale_in, Some(now()));
}

#[test]
fn decisions_serialize_with_their_numbers() {
    let cooling = ScalingPolicy { scale_out_cooldown: Duration::from_secs(300), ..policy() };
    let state = ScalingState { last_scale_out: ago(100), last_scale_in: None };
    let decision = decide(&cooling, &state, &jobs(3, 0, 0), &group(0, 0), now());
    expect![[r#"{"counts":{"scheduled_jobs":3,"running_jobs":0,"waiting_jobs":0,"idle_agents":0,"busy_agents":0,"total_agents":0},"group":{"min_size":0,"max_size":100,"desired_capacity":0,"in_service":0,"pending":0},"instance_count":0,"agents_required":3,"job_based":3,"availability":{"kind":"not_checked"},"buffer":0,"computed":3,"action":{"kind":"none"},"reason":{"kind":"scale_out_cooldown","remaining_secs":200.0}}"#]]
        .assert_eq(&serde_json::to_string(&decision).unwrap());
}

// The responsive mode (SCALER_MODE=responsive).

fn responsive_cooling() -> ScalingPolicy {
    ScalingPolicy {
        mode: ScalingMode::Responsive,
        scale_out_cooldown: Duration::from_secs(300),
        availability_threshold: 0.5,
        disable_scale_in: true,
        ..policy()
    }
}

fn connected(scheduled: u32, running: u32, agents: u32) -> QueueCounts {
    QueueCounts {
        scheduled_jobs: scheduled,
        running_jobs: running,
        waiting_jobs: 0,
        idle_agents: agents - running.min(agents),
        busy_agents: running.min(agents),
        total_agents: agents,
    }
}

#[test]
fn responsive_mode_scales_out_within_the_cooldown_once_requested_agents_connected() {
    let state = ScalingState { last_scale_out: ago(60), last_scale_in: None };
    check_with(
        &responsive_cooling(),
        &state,
        &connected(10, 10, 10),
        &group(10, 10),
        expect![
            "set 10 -> 20 (Out): 10 scheduled, 10 running, 0 waiting jobs need 20 agents, 20 instances; capacity 20 within [0, 100]; group desired 10, in service 10, pending 0: scale out from 10 to 20"
        ],
    );
    let original = ScalingPolicy { mode: ScalingMode::Original, ..responsive_cooling() };
    check_with(
        &original,
        &state,
        &connected(10, 10, 10),
        &group(10, 10),
        expect![
            "none: 10 scheduled, 10 running, 0 waiting jobs need 20 agents, 20 instances; capacity 20 within [0, 100]; group desired 10, in service 10, pending 0: scale-out cooldown, 240.0s left"
        ],
    );
}

#[test]
fn responsive_mode_keeps_the_cooldown_while_requested_instances_boot() {
    // Ten instances desired, five agents connected: the other five are on their way
    // (and the availability rule, which wants an eleventh, waits too).
    let state = ScalingState { last_scale_out: ago(60), last_scale_in: None };
    check_with(
        &responsive_cooling(),
        &state,
        &connected(12, 5, 5),
        &group(10, 10),
        expect![
            "none: 12 scheduled, 5 running, 0 waiting jobs need 17 agents, 17 instances; capacity 17 within [0, 100]; group desired 10, in service 10, pending 0: scale-out cooldown, 240.0s left"
        ],
    );
}

#[test]
fn responsive_mode_leaves_a_small_backlog_to_the_running_jobs_until_the_cooldown_ends() {
    // Two jobs wait, forty run: no more than a quarter of the running jobs.
    let cooling = ScalingState { last_scale_out: ago(60), last_scale_in: None };
    check_with(
        &responsive_cooling(),
        &cooling,
        &connected(2, 40, 40),
        &group(40, 40),
        expect![
            "none: 2 scheduled, 40 running, 0 waiting jobs need 42 agents, 42 instances; capacity 42 within [0, 100]; group desired 40, in service 40, pending 0: scale-out cooldown, 240.0s left"
        ],
    );
    let cooled = ScalingState { last_scale_out: ago(300), last_scale_in: None };
    check_with(
        &responsive_cooling(),
        &cooled,
        &connected(2, 40, 40),
        &group(40, 40),
        expect![
            "set 40 -> 42 (Out): 2 scheduled, 40 running, 0 waiting jobs need 42 agents, 42 instances; capacity 42 within [0, 100]; group desired 40, in service 40, pending 0: scale out from 40 to 42"
        ],
    );
    // Eleven waiting are more than a quarter of forty.
    check_with(
        &responsive_cooling(),
        &cooling,
        &connected(11, 40, 40),
        &group(40, 40),
        expect![
            "set 40 -> 51 (Out): 11 scheduled, 40 running, 0 waiting jobs need 51 agents, 51 instances; capacity 51 within [0, 100]; group desired 40, in service 40, pending 0: scale out from 40 to 51"
        ],
    );
}

#[test]
fn responsive_mode_adds_instances_for_missing_agents_only_while_jobs_wait() {
    // Twelve instances, four agents left while idle instances terminate themselves,
    // two jobs running and none waiting.
    let draining = connected(0, 2, 4);
    let original = ScalingPolicy { mode: ScalingMode::Original, ..responsive_cooling() };
    check(
        &original,
        &draining,
        &group(12, 12),
        expect![
            "set 12 -> 13 (Out): 0 scheduled, 2 running, 0 waiting jobs need 2 agents, 2 instances; only 33% of expected agents connected, so at least 13; capacity 13 within [0, 100]; group desired 12, in service 12, pending 0: scale out from 12 to 13"
        ],
    );
    check(
        &responsive_cooling(),
        &draining,
        &group(12, 12),
        expect![
            "none: 0 scheduled, 2 running, 0 waiting jobs need 2 agents, 2 instances; capacity 2 within [0, 100]; group desired 12, in service 12, pending 0: scale-in needed but disabled"
        ],
    );
    check(
        &responsive_cooling(),
        &connected(1, 2, 4),
        &group(12, 12),
        expect![
            "set 12 -> 13 (Out): 1 scheduled, 2 running, 0 waiting jobs need 3 agents, 3 instances; only 33% of expected agents connected, so at least 13; capacity 13 within [0, 100]; group desired 12, in service 12, pending 0: scale out from 12 to 13"
        ],
    );
}

// Properties.

fn any_policy() -> impl Strategy<Value = ScalingPolicy> {
    (
        (0u32..8, any::<bool>(), 0u32..20, 0u32..50, 0.0f64..1.5),
        (0.0f64..6.0, 0.0f64..6.0, 0u64..600, 0u64..600, any::<bool>()),
        (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()),
    )
        .prop_map(|(a, b, c)| ScalingPolicy {
            agents_per_instance: NonZeroU32::new(a.0),
            include_waiting: a.1,
            instance_buffer: a.2,
            max_instance_cap: NonZeroU32::new(a.3),
            availability_threshold: a.4,
            scale_out_factor: b.0,
            scale_in_factor: b.1,
            scale_out_cooldown: Duration::from_secs(b.2),
            scale_in_cooldown: Duration::from_secs(b.3),
            scale_only_after_all_events: b.4,
            disable_scale_in: c.0,
            disable_scale_out: c.1,
            elastic_ci_mode: c.2,
            route_by_desired_capacity: c.3,
            mode: if c.4 { ScalingMode::Responsive } else { ScalingMode::Original },
        })
}

fn any_counts() -> impl Strategy<Value = QueueCounts> {
    (0u32..500, 0u32..500, 0u32..500, 0u32..500).prop_map(|(s, r, w, agents)| QueueCounts {
        scheduled_jobs: s,
        running_jobs: r,
        waiting_jobs: w,
        idle_agents: agents / 2,
        busy_agents: agents - agents / 2,
        total_agents: agents,
    })
}

fn any_group() -> impl Strategy<Value = GroupSizes> {
    (0u32..20, 0u32..200, 0u32..250, 0u32..250, 0u32..10).prop_map(
        |(min, extra, desired, in_service, pending)| {
            let max = min + extra;
            GroupSizes {
                min_size: min,
                max_size: max,
                desired_capacity: desired.clamp(min, max),
                in_service,
                pending,
            }
        },
    )
}

fn any_state() -> impl Strategy<Value = ScalingState> {
    (proptest::option::of(0u64..1200), proptest::option::of(0u64..1200)).prop_map(|(out, r#in)| {
        ScalingState { last_scale_out: out.and_then(ago), last_scale_in: r#in.and_then(ago) }
    })
}

proptest! {
    #[test]
    fn the_computed_capacity_stays_within_the_group_bounds(
        policy in any_policy(), state in any_state(), counts in any_counts(), group in any_group()
    ) {
        let decision = decide(&policy, &state, &counts, &group, now());
        prop_assert!(decision.computed >= group.min_size && decision.computed <= group.max_size);
        if (policy.route_by_desired_capacity || policy.scale_in_factor == 0.0)
            && let Action::SetDesiredCapacity { to, .. } = decision.action
        {
            prop_assert!(to >= group.min_size && to <= group.max_size, "{decision:?}");
        }
    }

    #[test]
    fn with_scale_in_disabled_capacity_never_drops(
        policy in any_policy(), state in any_state(), counts in any_counts(), group in any_group()
    ) {
        let policy = ScalingPolicy { disable_scale_in: true, elastic_ci_mode: false, ..policy };
        let decision = decide(&policy, &state, &counts, &group, now());
        if let Action::SetDesiredCapacity { from, to, .. } = decision.action {
            prop_assert!(to >= from, "{decision:?}");
        }
    }

    #[test]
    fn responsive_mode_scales_out_whenever_the_original_does_while_jobs_wait(
        policy in any_policy(), state in any_state(), counts in any_counts(), group in any_group()
    ) {
        let counts = QueueCounts { scheduled_jobs: counts.scheduled_jobs.max(1), ..counts };
        let original = ScalingPolicy { mode: ScalingMode::Original, ..policy };
        let responsive = ScalingPolicy { mode: ScalingMode::Responsive, ..policy };
        let before = decide(&original, &state, &counts, &group, now());
        let after = decide(&responsive, &state, &counts, &group, now());
        if let Action::SetDesiredCapacity { direction: Direction::Out, .. } = before.action {
            prop_assert_eq!(after.action, before.action);
        }
        prop_assert_eq!(after.computed, before.computed);
    }

    #[test]
    fn a_scale_out_never_lowers_the_capacity_and_stays_within_the_bounds(
        policy in any_policy(),
        factor in prop_oneof![
            0.0f64..=100.0,
            0.0f64..=f64::MAX,
            Just(f64::MAX),
            Just(f64::INFINITY),
        ],
        state in any_state(),
        counts in any_counts(),
        group in any_group(),
        max_size in prop_oneof![Just(None), Just(Some(u32::MAX))],
    ) {
        let group = GroupSizes { max_size: max_size.unwrap_or(group.max_size), ..group };
        let policy = ScalingPolicy { scale_out_factor: factor, ..policy };
        let decision = decide(&policy, &state, &counts, &group, now());
        if let Action::SetDesiredCapacity { direction: Direction::Out, from, to } = decision.action {
            prop_assert_eq!(from, group.desired_capacity);
            prop_assert!(to >= from, "{decision:?}");
            prop_assert!(to >= group.min_size && to <= group.max_size, "{decision:?}");
        }
    }

    #[test]
    fn scale_out_never_lowers_and_scale_in_never_raises_with_the_fix(
        policy in any_policy(), state in any_state(), counts in any_counts(), group in any_group()
    ) {
        let policy = ScalingPolicy { route_by_desired_capacity: true, ..policy };
        let decision = decide(&policy, &state, &counts, &group, now());
        match decision.action {
            Action::SetDesiredCapacity { direction: Direction::Out, from, to } => prop_assert!(to > from),
            Action::SetDesiredCapacity { direction: Direction::In, from, to } => prop_assert!(to < from),
            Action::None => {}
        }
    }
}
