//! The metadata adapter against the fake metadata service of the testkit.

use elastic_ci_aws::error::AwsErrorKind;
use elastic_ci_aws::imds::{Imds, InstanceMetadata, LifecycleNotices};
use elastic_ci_core::lifecycle::MetadataNotices;
use elastic_ci_testkit::imds::FakeImds;

#[tokio::test]
async fn reads_identity_and_tags_over_imdsv2() {
    let fake = FakeImds::start("i-0123456789abcdef0", "eu-west-2");
    fake.set_tag("aws:autoscaling:groupName", "ci-AgentAutoScaleGroup-X");
    fake.set_tag("Cost Centre", "it's \"$(id)\"");
    let imds = Imds::new(Some(&fake.endpoint())).unwrap();
    assert_eq!(imds.instance_id().await.unwrap(), "i-0123456789abcdef0");
    assert_eq!(imds.region().await.unwrap(), "eu-west-2");
    let tags = imds.tags().await.unwrap();
    assert_eq!(tags["aws:autoscaling:groupName"], "ci-AgentAutoScaleGroup-X");
    assert_eq!(tags["Cost Centre"], "it's \"$(id)\"");
    fake.disable_tags();
    assert!(imds.tags().await.unwrap().is_empty());
}

#[tokio::test]
async fn reports_an_unavailable_service_without_retrying() {
    let fake = FakeImds::start("i-0123456789abcdef0", "eu-west-2");
    let imds = Imds::new(Some(&fake.endpoint())).unwrap();
    fake.down();
    let error = imds.instance_id().await.unwrap_err();
    assert_eq!(error.kind, AwsErrorKind::Transport, "{error}");
    assert_eq!(fake.n_requests(), 1, "one attempt: callers retry on their own schedule");
    fake.up();
    assert_eq!(imds.instance_id().await.unwrap(), "i-0123456789abcdef0");
}

#[tokio::test]
async fn reads_the_removal_notices_with_404_as_none() {
    let fake = FakeImds::start("i-0123456789abcdef0", "eu-west-2");
    let imds = Imds::new(Some(&fake.endpoint())).unwrap();
    assert_eq!(imds.notices().await.unwrap(), MetadataNotices::default());
    fake.set_target_lifecycle_state(Some("Terminated"));
    fake.set_spot_instance_action(Some(("terminate", "2026-01-05T18:02:00Z")));
    fake.set_rebalance_recommendation(Some("2026-01-05T18:00:00Z"));
    let notices = imds.notices().await.unwrap();
    assert_eq!(notices.target_state.as_deref(), Some("Terminated"));
    assert_eq!(
        notices.spot_action.as_deref(),
        Some(r#"{"action":"terminate","time":"2026-01-05T18:02:00Z"}"#)
    );
    assert_eq!(notices.rebalance.as_deref(), Some(r#"{"noticeTime":"2026-01-05T18:00:00Z"}"#));
    fake.set_spot_instance_action(None);
    assert_eq!(imds.notices().await.unwrap().spot_action, None);
    fake.down();
    let error = imds.notices().await.unwrap_err();
    assert_eq!(error.kind, AwsErrorKind::Service, "a 503 is an error, not 'no notice': {error}");
}
