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
    let output = command(&terminate_env(&moto, &imds))
        .args(["terminate", "--drain-secs", "0", "--metadata-retry-delay-ms", "10"])
        .output()
        .unwrap();
    let log = stderr(&output);
    assert!(output.status.success(), "{log}");
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
