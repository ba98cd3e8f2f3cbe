//! `cargo xtask publish` against the local AWS emulator, with a throwaway git repository
//! holding branches, stable and pre-release tags.
//!
//! History of the fixture (newest last), all on `main`:
//!
//! - `one`, tagged `v1.0.0` (annotated): a stable release that is no longer the latest;
//! - `two`, tagged `v1.1.0-rc1` (lightweight): a pre-release;
//! - `three`, tagged `v1.1.0` (annotated): the latest stable release;
//! - `feature/x` branches off `three` with one more commit.

mod support;

use std::collections::BTreeSet;

use elastic_ci_aws::s3::{ObjectStore, S3ObjectStore};
use elastic_ci_testkit::moto::{Moto, moto};
use support::{GitRepo, xtask};

struct Fixture {
    repo: GitRepo,
    template: tempfile::NamedTempFile,
    body: String,
    one: String,
    two: String,
    three: String,
}

fn fixture() -> Fixture {
    let repo = GitRepo::new();
    let one = repo.commit("one");
    repo.git(&["tag", "-a", "v1.0.0", "-m", "v1.0.0"]);
    let two = repo.commit("two");
    repo.git(&["tag", "v1.1.0-rc1"]);
    let three = repo.commit("three");
    repo.git(&["tag", "-a", "v1.1.0", "-m", "v1.1.0"]);
    repo.git(&["checkout", "-q", "-b", "feature/x"]);
    repo.commit("four");
    repo.git(&["checkout", "-q", "main"]);

    let body = format!(
        "AWSTemplateFormatVersion: '2010-09-09'\nDescription: Buildkite stack {}\nResources:\n  Queue:\n    Type: AWS::SQS::Queue\n",
        elastic_ci_testkit::names::unique_name("publish-test")
    );
    let template = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(template.path(), &body).unwrap();
    Fixture { repo, template, body, one, two, three }
}

/// Runs `xtask publish` with the emulator and the given Buildkite variables (and none
/// inherited from a CI that runs the tests).
fn publish(
    moto: &Moto,
    fixture: &Fixture,
    bucket: &str,
    buildkite: &[(&str, &str)],
    extra_args: &[&str],
) -> std::process::Output {
    let mut command = xtask();
    command
        .args(["publish", "--bucket", bucket, "--repository"])
        .arg(fixture.repo.path())
        .arg("--template")
        .arg(fixture.template.path())
        .args(extra_args)
        .envs(moto.env());
    for name in [
        "BUILDKITE_BRANCH",
        "BUILDKITE_TAG",
        "BUILDKITE_COMMIT",
        "BUILDKITE_PIPELINE_DEFAULT_BRANCH",
    ] {
        command.env_remove(name);
    }
    command.envs(buildkite.iter().copied());
    command.output().unwrap()
}

fn succeeded(output: &std::process::Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "publish failed: {stderr}");
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// Every key in the bucket, after checking each holds the template as text/yaml.
async fn published(moto: &Moto, bucket: &str, body: &str) -> BTreeSet<String> {
    let store = S3ObjectStore::new(&moto.sdk_config(), &moto.settings());
    let mut keys = BTreeSet::new();
    for object in store.list(bucket, "").await.unwrap() {
        let mut content = Vec::new();
        store.download(bucket, &object.key, &mut content).await.unwrap();
        assert_eq!(String::from_utf8(content).unwrap(), body, "content of {}", object.key);
        let head = store.head(bucket, &object.key).await.unwrap();
        assert_eq!(
            head.content_type.as_deref(),
            Some("text/yaml"),
            "content type of {}",
            object.key
        );
        keys.insert(object.key);
    }
    keys
}

/// The two keys of a build under `prefix`.
fn under(prefix: &str, commit: &str) -> Vec<String> {
    vec![format!("{prefix}/aws-stack.yml"), format!("{prefix}/{commit}.aws-stack.yml")]
}

/// What the latest stable release adds.
fn latest() -> Vec<String> {
    vec!["latest/aws-stack.yml".to_owned(), "aws-stack.yml".to_owned()]
}

fn keys(groups: &[Vec<String>]) -> BTreeSet<String> {
    groups.iter().flatten().cloned().collect()
}

/// Buildkite's variables for a build of `tag` at `commit`.
fn tag_build<'a>(tag: &'a str, commit: &'a str) -> [(&'static str, &'a str); 3] {
    [("BUILDKITE_BRANCH", tag), ("BUILDKITE_TAG", tag), ("BUILDKITE_COMMIT", commit)]
}

/// Publishes `fixture` into a fresh bucket; returns the bucket, the command's output and
/// the keys it wrote.
async fn publish_case(
    moto: &Moto,
    fixture: &Fixture,
    buildkite: &[(&str, &str)],
    extra_args: &[&str],
) -> (String, String, String, BTreeSet<String>) {
    let bucket = moto.bucket("publish").await;
    let output = publish(moto, fixture, &bucket, buildkite, extra_args);
    let stdout = succeeded(&output);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let keys = published(moto, &bucket, &fixture.body).await;
    (bucket, stdout, stderr, keys)
}

#[tokio::test]
async fn a_default_branch_build_publishes_main_and_the_commit() {
    let Some(moto) = moto() else { return };
    let fixture = fixture();
    let (bucket, stdout, _, published) = publish_case(&moto, &fixture, &[], &[]).await;
    assert_eq!(published, keys(&[under("main", &fixture.three)]));
    let url = format!("https://s3.amazonaws.com/{bucket}/main/aws-stack.yml");
    assert!(stdout.contains(&url), "{stdout}");
}

#[tokio::test]
async fn the_master_alias_adds_the_legacy_prefix() {
    let Some(moto) = moto() else { return };
    let fixture = fixture();
    let three = fixture.three.as_str();
    let buildkite = [("BUILDKITE_BRANCH", "main"), ("BUILDKITE_COMMIT", three)];
    let (.., published) = publish_case(&moto, &fixture, &buildkite, &["--master-alias"]).await;
    assert_eq!(published, keys(&[under("main", three), under("master", three)]));
}

#[tokio::test]
async fn another_branch_publishes_only_its_own_prefix() {
    let Some(moto) = moto() else { return };
    let fixture = fixture();
    fixture.repo.git(&["checkout", "-q", "feature/x"]);
    let head = fixture.repo.git(&["rev-parse", "HEAD"]);
    let (.., published) = publish_case(&moto, &fixture, &[], &[]).await;
    assert_eq!(published, keys(&[under("feature/x", &head)]));
}

#[tokio::test]
async fn the_latest_stable_tag_also_moves_latest_and_the_bucket_root() {
    let Some(moto) = moto() else { return };
    let fixture = fixture();
    let (bucket, stdout, _, published) =
        publish_case(&moto, &fixture, &tag_build("v1.1.0", &fixture.three), &[]).await;
    assert_eq!(published, keys(&[under("v1.1.0", &fixture.three), latest()]));
    let url = format!("https://s3.amazonaws.com/{bucket}/aws-stack.yml");
    assert!(stdout.contains(&url), "{stdout}");
}

#[tokio::test]
async fn a_detached_checkout_of_the_latest_tag_is_a_release_build() {
    let Some(moto) = moto() else { return };
    let fixture = fixture();
    fixture.repo.git(&["checkout", "-q", "--detach", "v1.1.0"]);
    let (.., published) = publish_case(&moto, &fixture, &[], &[]).await;
    assert_eq!(published, keys(&[under("v1.1.0", &fixture.three), latest()]));
}

#[tokio::test]
async fn a_pre_release_tag_publishes_only_its_own_prefix() {
    let Some(moto) = moto() else { return };
    let fixture = fixture();
    let (_, _, stderr, published) =
        publish_case(&moto, &fixture, &tag_build("v1.1.0-rc1", &fixture.two), &[]).await;
    assert_eq!(published, keys(&[under("v1.1.0-rc1", &fixture.two)]));
    let note = "v1.1.0-rc1 is not the latest stable release (that is v1.1.0)";
    assert!(stderr.contains(note), "{stderr}");
}

#[tokio::test]
async fn an_older_stable_tag_publishes_only_its_own_prefix() {
    let Some(moto) = moto() else { return };
    let fixture = fixture();
    let (.., published) =
        publish_case(&moto, &fixture, &tag_build("v1.0.0", &fixture.one), &[]).await;
    assert_eq!(published, keys(&[under("v1.0.0", &fixture.one)]));
}

#[tokio::test]
async fn a_dry_run_prints_the_uploads_and_writes_nothing() {
    let Some(moto) = moto() else { return };
    let fixture = fixture();
    let bucket = moto.bucket("publish-dry").await;

    let three = &fixture.three;
    let output = publish(&moto, &fixture, &bucket, &tag_build("v1.1.0", three), &["--dry-run"]);
    let stdout = succeeded(&output);

    assert!(published(&moto, &bucket, &fixture.body).await.is_empty());
    let size = fixture.body.len();
    for key in keys(&[under("v1.1.0", three), latest()]) {
        let line = format!(
            "would call S3 PutObject s3://{bucket}/{key} (content type text/yaml, {size} bytes)"
        );
        assert!(stdout.contains(&line), "{line:?} missing from:\n{stdout}");
    }
    assert_eq!(stdout.lines().count(), 4, "{stdout}");
}

#[tokio::test]
async fn bad_tags_and_inputs_fail_before_anything_is_written() {
    let Some(moto) = moto() else { return };
    let fixture = fixture();
    let bucket = moto.bucket("publish-bad").await;
    let three = fixture.three.clone();

    let cases: [(&[(&str, &str)], &str); 4] = [
        (&tag_build("v9.9.9", &three), "tag \"v9.9.9\" does not exist"),
        (&tag_build("v1.0.0", &three), "tag v1.0.0 points at"),
        (
            &[("BUILDKITE_BRANCH", "main"), ("BUILDKITE_COMMIT", "no-such-commit")],
            "\"no-such-commit\" does not name a commit",
        ),
        (&[("BUILDKITE_BRANCH", "../escape")], "invalid branch \"../escape\""),
    ];
    for (buildkite, expected) in cases {
        let output = publish(&moto, &fixture, &bucket, buildkite, &[]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{buildkite:?} succeeded");
        assert!(stderr.contains(expected), "{expected:?} missing from: {stderr}");
    }

    let missing = tempfile::tempdir().unwrap();
    let output = xtask()
        .args(["publish", "--bucket", &bucket, "--template"])
        .arg(missing.path().join("aws-stack.yml"))
        .envs(moto.env())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("render it with `cargo xtask template`"), "{stderr}");

    let output = publish(&moto, &fixture, "Not_A_Bucket", &[], &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("invalid bucket name \"Not_A_Bucket\""), "{stderr}");

    assert!(published(&moto, &bucket, &fixture.body).await.is_empty());
}

/// Makes `fixture`'s template name scaler zips under `prefix`, and returns a dist
/// directory holding them.
fn lambda_fixture(fixture: &Fixture, prefix: &str) -> tempfile::TempDir {
    std::fs::write(
        fixture.template.path(),
        format!(
            "AWSTemplateFormatVersion: '2010-09-09'\nMappings:\n  ScalerLambda:\n    Release:\n      BucketPrefix: {prefix}\n      amd64: elastic-ci-scaler/v1.1.0/elastic-ci-scaler-x86_64.zip\n      arm64: elastic-ci-scaler/v1.1.0/elastic-ci-scaler-arm64.zip\nResources:\n  Queue:\n    Type: AWS::SQS::Queue\n"
        ),
    )
    .unwrap();
    let dist = tempfile::tempdir().unwrap();
    std::fs::write(dist.path().join("elastic-ci-scaler-x86_64.zip"), b"PK x86_64 zip").unwrap();
    std::fs::write(dist.path().join("elastic-ci-scaler-arm64.zip"), b"PK arm64 zip").unwrap();
    dist
}

#[tokio::test]
async fn lambda_zips_go_to_each_region_before_the_template() {
    let Some(moto) = moto() else { return };
    let fixture = fixture();
    let prefix = elastic_ci_testkit::names::unique_name("lambdas");
    let dist = lambda_fixture(&fixture, &prefix);
    let s3 = moto.s3();
    for region in ["us-east-1", "eu-west-1"] {
        s3.create_bucket().bucket(format!("{prefix}-{region}")).send().await.unwrap();
    }
    let release_bucket = moto.bucket("publish-lambda").await;
    let dist_arg = dist.path().to_str().unwrap().to_owned();
    let args = ["--lambda-regions", "us-east-1,eu-west-1", "--dist-dir", dist_arg.as_str()];
    let stdout = succeeded(&publish(&moto, &fixture, &release_bucket, &[], &args));

    let store = S3ObjectStore::new(&moto.sdk_config(), &moto.settings());
    for region in ["us-east-1", "eu-west-1"] {
        let bucket = format!("{prefix}-{region}");
        for (arch, body) in [("x86_64", "PK x86_64 zip"), ("arm64", "PK arm64 zip")] {
            let key = format!("elastic-ci-scaler/v1.1.0/elastic-ci-scaler-{arch}.zip");
            let mut content = Vec::new();
            store.download(&bucket, &key, &mut content).await.unwrap();
            assert_eq!(content, body.as_bytes(), "s3://{bucket}/{key}");
            let head = store.head(&bucket, &key).await.unwrap();
            assert_eq!(head.content_type.as_deref(), Some("application/zip"));
        }
    }
    assert_eq!(store.list(&release_bucket, "").await.unwrap().len(), 2);
    // The zips are uploaded first: the template's URLs come last.
    let last_zip = stdout.rfind(".zip").unwrap();
    let first_template = stdout.find("aws-stack.yml").unwrap();
    assert!(last_zip < first_template, "{stdout}");

    // A bad region or a missing zip fails before anything is written.
    let empty_bucket = moto.bucket("publish-lambda-bad").await;
    let bad_region = ["--lambda-regions", "us-east-1,Mars", "--dist-dir", dist_arg.as_str()];
    let output = publish(&moto, &fixture, &empty_bucket, &[], &bad_region);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("invalid region \"Mars\""), "{stderr}");
    std::fs::remove_file(dist.path().join("elastic-ci-scaler-arm64.zip")).unwrap();
    let output = publish(&moto, &fixture, &empty_bucket, &[], &args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    let expected = "elastic-ci-scaler-arm64.zip (build it with `cargo xtask dist`)";
    assert!(stderr.contains(expected), "{stderr}");
    assert!(store.list(&empty_bucket, "").await.unwrap().is_empty());
}
