//! `terminate` against moto and the fake metadata service.

use std::collections::HashMap;

use elastic_ci_aws::autoscaling::{AutoScalingGroups, ScalingGroup};
use elastic_ci_core::fleet::LifecycleState;
use elastic_ci_testkit::imds::FakeImds;
use elastic_ci_testkit::moto::{REGION, moto};

use crate::{assert_help_mentions, command, group_with_instance, stderr};

fn terminate_env(
    moto: &elastic_ci_testkit::moto::Moto,
    imds: &FakeImds,
) -> HashMap<String, String> {
    let mut env: HashMap<String, String> = moto.env().into_iter().collect();
    // The region comes from the metadata service, as on an instance.
    env.remove("AWS_REGION");
    env.remove("AWS_DEFAULT_REGION");
    env.insert("AWS_EC2_METADATA_SERVICE_ENDPOINT".into(), imds.endpoint());
    env
}

#[tokio::test(flavor = "multi_thread")]
async fn terminates_this_instance_and_lowers_desired_capacity() {
    let Some(moto) = moto() else { return };
    let (group, instance_id) = group_with_instance(&moto, "terminate", 0, 3, 2).await;
    let imds = FakeImds::start(&instance_id, REGION);
    imds.fail_next(1);
    let log = terminate_successfully(&moto, &imds);
    assert!(log.contains("Metadata fetch failed, retrying in 0s (attempt 1/3)..."), "{log}");
    assert!(
        log.contains("Successfully terminated instance with desired capacity decremented"),
        "{log}"
    );
    let snapshot = AutoScalingGroups::new(&moto.sdk_config()).describe_group(&group).await.unwrap();
    assert_eq!(snapshot.desired_capacity, 1);
    let state =
        snapshot.instances.iter().find(|i| i.id == instance_id).map(|i| i.lifecycle_state.clone());
    assert!(
        matches!(state, None | Some(LifecycleState::Terminating | LifecycleState::Terminated)),
        "{state:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fails_cleanly_when_the_metadata_service_is_down() {
    let Some(moto) = moto() else { return };
    let (group, instance_id) = group_with_instance(&moto, "terminate-down", 0, 3, 1).await;
    let imds = FakeImds::start(&instance_id, REGION);
    imds.down();
    let output = command(&terminate_env(&moto, &imds))
        .args(["terminate", "--drain-secs", "0", "--metadata-retry-delay-ms", "10"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let log = stderr(&output);
    assert!(log.contains("error: ERROR: Failed to fetch instance ID after retries"), "{log}");
    assert_eq!(imds.n_failed(), 3);
    let snapshot = AutoScalingGroups::new(&moto.sdk_config()).describe_group(&group).await.unwrap();
    assert_eq!(snapshot.desired_capacity, 1);
}

/// `terminate` runs from the agent's stop with an environment jobs can influence: a
/// variable that is not UTF-8 is named in a warning and ignored.
/// See: `std::env::vars()` panicked on a variable that is not UTF-8.
#[tokio::test(flavor = "multi_thread")]
async fn terminate_ignores_a_variable_that_is_not_utf8() {
    use std::os::unix::ffi::OsStrExt;

    let Some(moto) = moto() else { return };
    let (group, instance_id) = group_with_instance(&moto, "terminate-utf8", 0, 3, 2).await;
    let imds = FakeImds::start(&instance_id, REGION);
    let output = command(&terminate_env(&moto, &imds))
        .env(std::ffi::OsStr::from_bytes(b"JOB_\xffJUNK"), "value")
        .env("ALSO_JUNK", std::ffi::OsStr::from_bytes(b"\xc3\x28"))
        .args(["terminate", "--drain-secs", "0", "--metadata-retry-delay-ms", "10"])
        .output()
        .unwrap();
    let log = stderr(&output);
    assert!(output.status.success(), "{log}");
    assert!(log.contains("ignoring environment variable \"ALSO_JUNK\""), "{log}");
    assert!(log.contains("ignoring environment variable \"JOB_\u{fffd}JUNK\""), "{log}");
    assert!(
        log.contains("Successfully terminated instance with desired capacity decremented"),
        "{log}"
    );
    let snapshot = AutoScalingGroups::new(&moto.sdk_config()).describe_group(&group).await.unwrap();
    assert_eq!(snapshot.desired_capacity, 1);
}

/// Several agents on one instance: while one still runs, another's stop leaves the
/// instance alone; the last one's stop terminates it.
/// See: a full disk in one job terminated the instance under its sibling agents'
/// running jobs.
#[tokio::test(flavor = "multi_thread")]
async fn terminates_only_when_the_last_agent_has_stopped() {
    let Some(moto) = moto() else { return };
    let (group, instance_id) = group_with_instance(&moto, "terminate-last", 0, 3, 2).await;
    let imds = FakeImds::start(&instance_id, REGION);
    // The simulated agents: entries of a process table of their own, running the
    // image's agent binary in the agent unit, as the user running the test.
    let proc = tempfile::tempdir().unwrap();
    let agent_entry = |pid: u32| {
        let dir = proc.path().join(pid.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::symlink("/usr/bin/buildkite-agent-stable", dir.join("exe")).unwrap();
        std::fs::write(dir.join("cgroup"), "0::/system.slice/buildkite-agent.service\n").unwrap();
        std::fs::write(dir.join("stat"), format!("{pid} (buildkite-agent) S 1")).unwrap();
        dir
    };
    let mut agents = vec![agent_entry(100), agent_entry(101)];
    // A job's leftover named like the agent, in the unit: it must not count.
    let impostor = proc.path().join("200");
    std::fs::create_dir_all(&impostor).unwrap();
    std::os::unix::fs::symlink(
        "/var/lib/buildkite-agent/builds/buildkite-agent",
        impostor.join("exe"),
    )
    .unwrap();
    std::fs::write(impostor.join("cgroup"), "0::/system.slice/buildkite-agent.service\n").unwrap();
    let user =
        nix::unistd::User::from_uid(nix::unistd::geteuid()).unwrap().expect("the test's user");
    let terminate = || {
        command(&terminate_env(&moto, &imds))
            .args(["terminate", "--drain-secs", "0", "--metadata-retry-delay-ms", "10"])
            .args(["--agent-user", &user.name])
            .arg("--proc-dir")
            .arg(proc.path())
            .output()
            .unwrap()
    };
    let describe = || async {
        AutoScalingGroups::new(&moto.sdk_config()).describe_group(&group).await.unwrap()
    };

    // The first agent stops (its job hit a full disk); the second still runs a job.
    std::fs::remove_dir_all(agents.remove(0)).unwrap();
    let output = terminate();
    let log = stderr(&output);
    assert!(output.status.success(), "{log}");
    assert!(log.contains("1 buildkite-agent process(es) still running"), "{log}");
    assert!(!log.contains("terminated instance"), "{log}");
    let snapshot = describe().await;
    assert_eq!(snapshot.desired_capacity, 2);
    assert!(snapshot.instances.iter().any(|i| i.id == instance_id
        && !matches!(i.lifecycle_state, LifecycleState::Terminating | LifecycleState::Terminated)));

    // The last agent stops: its stop terminates the instance.
    std::fs::remove_dir_all(agents.remove(0)).unwrap();
    let output = terminate();
    let log = stderr(&output);
    assert!(output.status.success(), "{log}");
    assert!(
        log.contains("Successfully terminated instance with desired capacity decremented"),
        "{log}"
    );
    assert_eq!(describe().await.desired_capacity, 1);
}

#[test]
fn help_explains_the_fallbacks() {
    assert_help_mentions(
        &["terminate"],
        &[
            "--drain-secs",
            "decremented",
            "without decrement",
            "Unhealthy",
            "--metadata-retry-delay-ms",
        ],
    );
}

/// Auto Scaling removed the instance while its agent stopped (a scale-in through the
/// termination hook): terminating it now would lower the desired capacity the group
/// keeps for the others, so nothing is asked of Auto Scaling.
#[tokio::test]
async fn an_instance_already_out_of_its_group_is_left_alone() {
    let Some(moto) = moto() else { return };
    let (group, instance_id) = group_with_instance(&moto, "terminate-gone", 0, 3, 2).await;
    moto.autoscaling()
        .detach_instances()
        .auto_scaling_group_name(&group)
        .instance_ids(&instance_id)
        .should_decrement_desired_capacity(true)
        .send()
        .await
        .expect("moto DetachInstances");
    let imds = FakeImds::start(&instance_id, REGION);
    let log = terminate_successfully(&moto, &imds);
    assert!(log.contains("in no Auto Scaling group any more"), "{log}");
    let snapshot = AutoScalingGroups::new(&moto.sdk_config()).describe_group(&group).await.unwrap();
    assert_eq!(snapshot.desired_capacity, 1, "the detach's decrement only");
}

/// Runs `terminate` without its drain pause, checks that it succeeded, and returns its
/// log.
fn terminate_successfully(moto: &elastic_ci_testkit::moto::Moto, imds: &FakeImds) -> String {
    let output = command(&terminate_env(moto, imds))
        .args(["terminate", "--drain-secs", "0", "--metadata-retry-delay-ms", "10"])
        .output()
        .unwrap();
    let log = stderr(&output);
    assert!(output.status.success(), "{log}");
    log
}
