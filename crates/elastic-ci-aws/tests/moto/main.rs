//! The SDK adapters against the local AWS emulator (moto).
//!
//! Needs `ELASTIC_CI_MOTO_ENDPOINT` (set by `cargo xtask ci` or `cargo xtask moto
//! start`); skips without it, except in CI, where it fails.

mod ec2;

use aws_config::Region;
use elastic_ci_aws::autoscaling::{AutoScalingGroups, LifecycleAction, ScalingGroup};
use elastic_ci_aws::cloudwatch::{CloudWatchMetrics, MetricDatum, MetricUnit, Metrics};
use elastic_ci_aws::ecr::{EcrRegistryAuth, RegistryAuth};
use elastic_ci_aws::error::AwsErrorKind;
use elastic_ci_aws::s3::{ObjectStore, S3ObjectStore};
use elastic_ci_aws::ssm::{ParameterStore, SsmParameterStore};
use elastic_ci_core::fleet::{Health, LifecycleActionResult, LifecycleState};
use elastic_ci_testkit::moto::moto;
use elastic_ci_testkit::names::unique_name;

#[tokio::test]
async fn s3_upload_download_list_head() {
    let Some(moto) = moto() else { return };
    let store = S3ObjectStore::new(&moto.sdk_config(), &moto.settings());
    let bucket = moto.bucket("aws-s3").await;

    store.upload(&bucket, "dir/a.txt", b"hello".to_vec(), Some("text/plain")).await.unwrap();
    // Larger than one streamed chunk, so the download loop runs more than once.
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    store.upload(&bucket, "dir/big.bin", big.clone(), None).await.unwrap();
    store.upload(&bucket, "other/c.txt", b"c".to_vec(), None).await.unwrap();

    let mut downloaded = Vec::new();
    let n_bytes = store.download(&bucket, "dir/big.bin", &mut downloaded).await.unwrap();
    assert_eq!(n_bytes, big.len() as u64);
    assert_eq!(downloaded, big);

    let mut in_memory = Vec::new();
    store.download(&bucket, "dir/a.txt", &mut in_memory).await.unwrap();
    assert_eq!(in_memory, b"hello");

    let keys: Vec<String> =
        store.list(&bucket, "dir/").await.unwrap().into_iter().map(|o| o.key).collect();
    assert_eq!(keys, ["dir/a.txt", "dir/big.bin"]);

    let head = store.head(&bucket, "dir/a.txt").await.unwrap();
    assert_eq!(head.size, 5);
    assert_eq!(head.content_type.as_deref(), Some("text/plain"));
}

#[tokio::test]
async fn s3_lists_every_page() {
    let Some(moto) = moto() else { return };
    let store = S3ObjectStore::new(&moto.sdk_config(), &moto.settings());
    let bucket = moto.bucket("aws-s3-pages").await;
    // One page holds 1000 keys.
    let mut uploads = tokio::task::JoinSet::new();
    for worker in 0..8 {
        let (store, bucket) = (store.clone(), bucket.clone());
        uploads.spawn(async move {
            for i in (worker..1005).step_by(8) {
                store.upload(&bucket, &format!("p/{i:05}"), vec![], None).await.unwrap();
            }
        });
    }
    while let Some(done) = uploads.join_next().await {
        done.unwrap();
    }
    let listed = store.list(&bucket, "p/").await.unwrap();
    assert_eq!(listed.len(), 1005);
    assert_eq!(listed[1004].key, "p/01004");
}

#[tokio::test]
async fn s3_errors_are_classified() {
    let Some(moto) = moto() else { return };
    let store = S3ObjectStore::new(&moto.sdk_config(), &moto.settings());
    let bucket = moto.bucket("aws-s3-errors").await;

    let mut sink = Vec::new();
    let missing_key = store.download(&bucket, "nope", &mut sink).await.unwrap_err();
    assert_eq!(missing_key.aws_kind(), Some(AwsErrorKind::NotFound), "{missing_key}");
    assert!(missing_key.to_string().contains(&format!("s3://{bucket}/nope")), "{missing_key}");

    let missing_bucket =
        store.download(&unique_name("no-such-bucket"), "k", &mut sink).await.unwrap_err();
    assert_eq!(missing_bucket.aws_kind(), Some(AwsErrorKind::NotFound), "{missing_bucket}");

    let head = store.head(&bucket, "nope").await.unwrap_err();
    assert_eq!(head.kind, AwsErrorKind::NotFound, "{head}");
}

#[tokio::test]
async fn s3_bucket_region_reports_the_region_or_a_missing_bucket() {
    let Some(moto) = moto() else { return };
    let store = S3ObjectStore::new(&moto.sdk_config(), &moto.settings());
    let bucket = moto.bucket("aws-s3-region").await;
    assert_eq!(store.bucket_region(&bucket).await.unwrap().as_deref(), Some("us-east-1"));
    let missing = store.bucket_region(&unique_name("no-such-bucket")).await.unwrap_err();
    assert_eq!(missing.kind, AwsErrorKind::NotFound, "{missing}");
    assert!(missing.to_string().starts_with("HeadBucket s3://no-such-bucket-"), "{missing}");
}

#[tokio::test]
async fn s3_ensure_bucket_creates_once_in_the_region_and_public_read_sets_the_policy() {
    let Some(moto) = moto() else { return };
    let config = moto.sdk_config().into_builder().region(Region::new("eu-west-1")).build();
    let store = S3ObjectStore::new(&config, &moto.settings());
    let bucket = unique_name("aws-s3-ensure");
    assert!(store.ensure_bucket(&bucket, "eu-west-1").await.unwrap(), "created");
    assert!(!store.ensure_bucket(&bucket, "eu-west-1").await.unwrap(), "already there");
    assert_eq!(store.bucket_region(&bucket).await.unwrap().as_deref(), Some("eu-west-1"));

    store.allow_public_read(&bucket, "releases/").await.unwrap();
    let policy = moto.s3().get_bucket_policy().bucket(&bucket).send().await.unwrap();
    let policy: serde_json::Value = serde_json::from_str(policy.policy().unwrap()).unwrap();
    let statement = &policy["Statement"][0];
    assert_eq!(statement["Principal"], "*");
    assert_eq!(statement["Action"], "s3:GetObject");
    assert_eq!(statement["Resource"], format!("arn:aws:s3:::{bucket}/releases/*"));
    let block = moto.s3().get_public_access_block().bucket(&bucket).send().await.unwrap();
    let block = block.public_access_block_configuration().unwrap();
    assert_eq!(block.block_public_policy(), Some(false));
    assert_eq!(block.block_public_acls(), Some(true));

    let missing = store.allow_public_read(&unique_name("no-such-bucket"), "").await.unwrap_err();
    assert_eq!(missing.kind, AwsErrorKind::NotFound, "{missing}");
}

#[tokio::test]
async fn ssm_get_and_get_by_path() {
    let Some(moto) = moto() else { return };
    let store = SsmParameterStore::new(&moto.sdk_config());
    let root = format!("/{}", unique_name("test-ssm"));
    moto.put_parameter(&format!("{root}/token"), "s3cr3t", true).await;
    moto.put_parameter(&format!("{root}/env/a"), "1", false).await;
    moto.put_parameter(&format!("{root}/env/nested/deep/b"), "two words", true).await;

    let token = store.get(&format!("{root}/token")).await.unwrap();
    assert_eq!(token.value.expose(), "s3cr3t");

    let arn = format!("arn:aws:ssm:us-east-1:123456789012:parameter{root}/token");
    assert_eq!(store.get(&arn).await.unwrap().value.expose(), "s3cr3t");

    let mut found: Vec<(String, String)> = store
        .get_by_path(&format!("{root}/env"))
        .await
        .unwrap()
        .into_iter()
        .map(|p| (p.name, p.value.expose().to_owned()))
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            (format!("{root}/env/a"), "1".to_owned()),
            (format!("{root}/env/nested/deep/b"), "two words".to_owned())
        ]
    );

    let missing = store.get(&format!("{root}/missing")).await.unwrap_err();
    assert_eq!(missing.kind, AwsErrorKind::NotFound, "{missing}");
}

#[tokio::test]
async fn ssm_get_by_path_reads_every_page() {
    let Some(moto) = moto() else { return };
    let store = SsmParameterStore::new(&moto.sdk_config());
    let root = format!("/{}", unique_name("test-ssm-pages"));
    // One page holds at most 10 parameters.
    for i in 0..27 {
        moto.put_parameter(&format!("{root}/p{i:02}"), &format!("v{i}"), i % 2 == 0).await;
    }
    let found = store.get_by_path(&root).await.unwrap();
    assert_eq!(found.len(), 27);
}

#[tokio::test]
async fn autoscaling_describe_scale_health_terminate() {
    let Some(moto) = moto() else { return };
    let groups = AutoScalingGroups::new(&moto.sdk_config());
    let name = moto.scaling_group("aws-asg", 0, 5, 2).await;

    let group = groups.describe_group(&name).await.unwrap();
    assert_eq!((group.min_size, group.max_size, group.desired_capacity), (0, 5, 2));
    assert_eq!(group.instances.len(), 2);
    assert!(group.instances.iter().all(|i| i.lifecycle_state == LifecycleState::InService));

    let instance_id = group.instances[0].id.clone();
    assert_eq!(
        groups.group_of_instance(&instance_id).await.unwrap().as_deref(),
        Some(name.as_str())
    );
    assert_eq!(groups.group_of_instance("i-00000000000000000").await.unwrap(), None);

    groups.set_desired_capacity(&name, 3).await.unwrap();
    assert_eq!(groups.describe_group(&name).await.unwrap().desired_capacity, 3);

    // Moto records no scaling activities; the paged call still answers one last page.
    let page = groups.scaling_activities_page(&name, None).await.unwrap();
    assert_eq!(page.next_token, None);

    groups.set_instance_health(&instance_id, Health::Unhealthy).await.unwrap();
    let health = groups.describe_group(&name).await.unwrap();
    let instance = health.instances.iter().find(|i| i.id == instance_id).unwrap();
    assert_eq!(instance.health, Health::Unhealthy);

    groups.terminate_instance(&instance_id, true).await.unwrap();
    let after = groups.describe_group(&name).await.unwrap();
    assert_eq!(after.desired_capacity, 2);
    assert!(after.instances.iter().all(|i| i.id != instance_id));

    let missing = groups.describe_group(&unique_name("no-such-group")).await.unwrap_err();
    assert_eq!(missing.kind, AwsErrorKind::NotFound, "{missing}");

    // Moto keeps no history of scaling activities; the call itself must work.
    groups.scaling_activities_page(&name, None).await.unwrap();
}

/// The emulator stores a warm pool's configuration (never its instances) and does not
/// implement the lifecycle-action calls; the in-memory fake stands in for those, and
/// this test notices the day the emulator starts answering them.
#[tokio::test]
async fn autoscaling_warm_pool_and_lifecycle_actions() {
    let Some(moto) = moto() else { return };
    let groups = AutoScalingGroups::new(&moto.sdk_config());
    let name = moto.scaling_group("aws-warm", 0, 5, 1).await;
    assert_eq!(groups.describe_warm_pool(&name).await.unwrap(), None);

    moto.autoscaling()
        .put_warm_pool()
        .auto_scaling_group_name(&name)
        .min_size(2)
        .max_group_prepared_capacity(4)
        .pool_state(aws_sdk_autoscaling::types::WarmPoolState::Stopped)
        .send()
        .await
        .expect("moto PutWarmPool");
    let pool = groups.describe_warm_pool(&name).await.unwrap().expect("a warm pool");
    assert_eq!(
        (pool.min_size, pool.max_group_prepared_capacity, pool.pool_state.as_str()),
        (2, Some(4), "Stopped")
    );

    let instance_id = groups.describe_group(&name).await.unwrap().instances[0].id.clone();
    let action = LifecycleAction {
        group_name: name.clone(),
        hook_name: "drain".into(),
        instance_id,
        token: None,
    };
    let heartbeat = groups.record_lifecycle_action_heartbeat(&action).await;
    let complete = groups.complete_lifecycle_action(&action, LifecycleActionResult::Continue).await;
    assert!(
        heartbeat.is_err() && complete.is_err(),
        "the emulator now answers lifecycle actions ({heartbeat:?}, {complete:?}): test them here instead of only against the fake"
    );
}

#[tokio::test]
async fn cloudwatch_metrics_are_readable_back() {
    let Some(moto) = moto() else { return };
    let metrics = CloudWatchMetrics::new(&moto.sdk_config());
    let namespace = unique_name("Buildkite-test");
    let now = std::time::SystemTime::now();
    let datum = MetricDatum {
        name: "ScheduledJobsCount".to_owned(),
        dimensions: vec![("Queue".to_owned(), "default".to_owned())],
        value: 7.0,
        unit: MetricUnit::Count,
        timestamp: now,
    };
    metrics.put(&namespace, &[datum]).await.unwrap();

    let listed = moto.cloudwatch().list_metrics().namespace(&namespace).send().await.unwrap();
    let names: Vec<&str> = listed.metrics().iter().filter_map(|m| m.metric_name()).collect();
    assert_eq!(names, ["ScheduledJobsCount"]);
}

#[tokio::test]
async fn ecr_authorization_decodes_credentials() {
    let Some(moto) = moto() else { return };
    let auth = EcrRegistryAuth::new(&moto.sdk_config());
    let credentials = auth.authorization(&[]).await.unwrap();
    assert_eq!(credentials.len(), 1);
    assert_eq!(credentials[0].username, "AWS");
    assert!(!credentials[0].password.is_empty());
    assert!(credentials[0].endpoint.starts_with("https://"), "{}", credentials[0].endpoint);

    let others =
        auth.authorization(&["111111111111".to_owned(), "222222222222".to_owned()]).await.unwrap();
    assert_eq!(others.len(), 2);
}
