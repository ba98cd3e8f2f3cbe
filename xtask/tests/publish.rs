//! `cargo xtask publish` against the local AWS emulator, with a throwaway git repository
//! holding branches, stable and pre-release tags, and a release rendered by `cargo xtask
//! template` for each build.
//!
//! History of the fixture (newest last), all on `main`:
//!
//! - `one`, tagged `v1.0.0` (annotated): a stable release that is no longer the latest;
//! - `two`, tagged `v1.1.0-rc1` (lightweight): a pre-release;
//! - `three`, tagged `v1.1.0` (annotated): the latest stable release;
//! - `feature/x` branches off `three` with one more commit.

mod support;

use std::collections::BTreeSet;
use std::path::PathBuf;

use elastic_ci_aws::s3::{ObjectStore, S3ObjectStore};
use elastic_ci_testkit::moto::{Moto, moto};
use elastic_ci_testkit::names::unique_name;
use support::{GitRepo, xtask};

/// The files of a release under `<version>/`, SHA256SUMS included.
const RELEASE_FILES: [&str; 13] = [
    "aws-stack.yml",
    "service-role.yml",
    "mappings.yml",
    "terraform-module.tar.gz",
    "elastic-ci-scaler-x86_64.zip",
    "elastic-ci-scaler-arm64.zip",
    "x86_64/elastic-ci-bootstrap",
    "x86_64/elastic-ci-hooks",
    "x86_64/elastic-ci",
    "arm64/elastic-ci-bootstrap",
    "arm64/elastic-ci-hooks",
    "arm64/elastic-ci",
    "SHA256SUMS",
];

struct Fixture {
    repo: GitRepo,
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
    Fixture { repo, one, two, three }
}

impl Fixture {
    /// What `git describe --tags --long --always` says of `commit`.
    fn describe(&self, commit: &str) -> String {
        self.repo.git(&["describe", "--tags", "--long", "--always", commit])
    }
}

/// A rendered release for `version`: the template and what `template` writes beside it
/// (AMIs for `regions`, both architectures), the scaler zips and stand-in binaries.
struct Release {
    dir: tempfile::TempDir,
    lambda_prefix: String,
}

impl Release {
    fn template(&self) -> PathBuf {
        self.dir.path().join("aws-stack.yml")
    }

    fn body(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.dir.path().join(name)).unwrap()
    }
}

fn release(version: &str, regions: &[&str]) -> Release {
    let dir = tempfile::tempdir().unwrap();
    let lambda_prefix = unique_name("lambdas");
    let mut mappings = String::new();
    for (n, region) in regions.iter().enumerate() {
        mappings.push_str(&format!(
            "{region}:\n  linuxamd64: ami-0123456789abcde{n:x}0\n  linuxarm64: ami-0123456789abcde{n:x}1\n"
        ));
    }
    let mappings_path = dir.path().join("built.yml");
    std::fs::write(&mappings_path, mappings).unwrap();
    let output = xtask()
        .args(["template", "--version", version, "--lambda-bucket-prefix", &lambda_prefix])
        .arg("--mappings")
        .arg(&mappings_path)
        .arg("--output")
        .arg(dir.path().join("aws-stack.yml"))
        .output()
        .unwrap();
    assert!(output.status.success(), "template: {}", String::from_utf8_lossy(&output.stderr));
    for arch in ["x86_64", "arm64"] {
        std::fs::write(
            dir.path().join(format!("elastic-ci-scaler-{arch}.zip")),
            format!("PK {arch} zip"),
        )
        .unwrap();
        std::fs::create_dir_all(dir.path().join(arch)).unwrap();
        for binary in ["elastic-ci-bootstrap", "elastic-ci-hooks", "elastic-ci"] {
            std::fs::write(dir.path().join(arch).join(binary), format!("{binary} for {arch}"))
                .unwrap();
        }
    }
    Release { dir, lambda_prefix }
}

/// Runs `xtask publish` with the emulator and the given Buildkite variables (and none
/// inherited from a CI that runs the tests).
fn publish(
    moto: &Moto,
    fixture: &Fixture,
    release: &Release,
    bucket: &str,
    buildkite: &[(&str, &str)],
    extra_args: &[&str],
) -> std::process::Output {
    let mut command = xtask();
    command
        .args(["publish", "--bucket", bucket, "--repository"])
        .arg(fixture.repo.path())
        .arg("--template")
        .arg(release.template())
        .arg("--dist-dir")
        .arg(release.dir.path())
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

fn failed(output: &std::process::Output, expected: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "succeeded, expected {expected:?}");
    assert!(stderr.contains(expected), "{expected:?} missing from: {stderr}");
}

fn store(moto: &Moto) -> S3ObjectStore {
    S3ObjectStore::new(&moto.sdk_config(), &moto.settings())
}

async fn object(moto: &Moto, bucket: &str, key: &str) -> Vec<u8> {
    let mut content = Vec::new();
    store(moto)
        .download(bucket, key, &mut content)
        .await
        .unwrap_or_else(|error| panic!("{key}: {error}"));
    content
}

/// Every key in the bucket (none when it does not exist).
async fn published(moto: &Moto, bucket: &str) -> BTreeSet<String> {
    store(moto)
        .list(bucket, "")
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|object| object.key)
        .collect()
}

fn under_version(version: &str) -> Vec<String> {
    RELEASE_FILES.iter().map(|file| format!("{version}/{file}")).collect()
}

/// What a moving alias gets.
fn alias(prefix: &str) -> Vec<String> {
    ["aws-stack.yml", "mappings.yml", "terraform-module.tar.gz"]
        .iter()
        .map(|file| format!("{prefix}/{file}"))
        .collect()
}

fn keys(groups: &[Vec<String>]) -> BTreeSet<String> {
    groups.iter().flatten().cloned().collect()
}

/// Buildkite's variables for a build of `tag` at `commit`.
fn tag_build<'a>(tag: &'a str, commit: &'a str) -> [(&'static str, &'a str); 3] {
    [("BUILDKITE_BRANCH", tag), ("BUILDKITE_TAG", tag), ("BUILDKITE_COMMIT", commit)]
}

/// Publishes a release of `version` into a fresh bucket (which publish creates); returns
/// the bucket, the release, the command's stdout and stderr, and the keys written.
async fn publish_case(
    moto: &Moto,
    fixture: &Fixture,
    version: &str,
    buildkite: &[(&str, &str)],
    extra_args: &[&str],
) -> (String, Release, String, String, BTreeSet<String>) {
    let bucket = unique_name("publish");
    let release = release(version, &["us-east-1"]);
    let output = publish(moto, fixture, &release, &bucket, buildkite, extra_args);
    let stdout = succeeded(&output);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let keys = published(moto, &bucket).await;
    for key in &keys {
        if key.ends_with("aws-stack.yml") {
            assert_eq!(object(moto, &bucket, key).await, release.body("aws-stack.yml"), "{key}");
        }
    }
    (bucket, release, stdout, stderr, keys)
}

#[tokio::test]
async fn a_default_branch_build_publishes_its_version_the_commit_and_main() {
    let Some(moto) = moto() else { return };
    let fixture = fixture();
    let version = fixture.describe("HEAD");
    assert!(version.starts_with("v1.1.0-0-g"), "{version}");
    let (bucket, release, stdout, _, published) =
        publish_case(&moto, &fixture, &version, &[], &[]).await;
    let commit = format!("main/{}.aws-stack.yml", fixture.three);
    assert_eq!(published, keys(&[under_version(&version), vec![commit], alias("main")]));
    let url = format!("https://s3.amazonaws.com/{bucket}/main/aws-stack.yml");
    assert!(
        stdout.lines().last()
            == Some(
                format!("https://s3.amazonaws.com/{bucket}/main/terraform-module.tar.gz").as_str()
            ),
        "{stdout}"
    );
    assert!(stdout.contains(&url), "{stdout}");

    // The checksums cover every file, and the binaries are the dist directory's.
    let sums =
        String::from_utf8(object(&moto, &bucket, &format!("{version}/SHA256SUMS")).await).unwrap();
    assert_eq!(sums.lines().count(), RELEASE_FILES.len() - 1, "{sums}");
    assert!(sums.lines().all(|line| line.len() > 66), "{sums}");
    assert_eq!(
        object(&moto, &bucket, &format!("{version}/arm64/elastic-ci")).await,
        b"elastic-ci for arm64"
    );
    assert_eq!(
        object(&moto, &bucket, "main/terraform-module.tar.gz").await,
        release.body("terraform-module.tar.gz")
    );
    let head = store(&moto).head(&bucket, &format!("{version}/aws-stack.yml")).await.unwrap();
    assert_eq!(head.content_type.as_deref(), Some("text/yaml"));
    // Anyone's CloudFormation may read the release.
    let policy = moto.s3().get_bucket_policy().bucket(&bucket).send().await.unwrap();
    assert!(policy.policy().unwrap().contains(&format!("arn:aws:s3:::{bucket}/*")), "{policy:?}");
}

#[tokio::test]
async fn the_master_alias_adds_the_legacy_prefix() {
    let Some(moto) = moto() else { return };
    let fixture = fixture();
    let three = fixture.three.as_str();
    let version = fixture.describe(three);
    let buildkite = [("BUILDKITE_BRANCH", "main"), ("BUILDKITE_COMMIT", three)];
    let (.., published) =
        publish_case(&moto, &fixture, &version, &buildkite, &["--master-alias"]).await;
    let commits =
        vec![format!("main/{three}.aws-stack.yml"), format!("master/{three}.aws-stack.yml")];
    assert_eq!(
        published,
        keys(&[under_version(&version), commits, alias("main"), alias("master")])
    );
}

#[tokio::test]
async fn another_branch_publishes_only_its_own_prefix() {
    let Some(moto) = moto() else { return };
    let fixture = fixture();
    fixture.repo.git(&["checkout", "-q", "feature/x"]);
    let head = fixture.repo.git(&["rev-parse", "HEAD"]);
    let version = fixture.describe(&head);
    assert!(version.starts_with("v1.1.0-1-g"), "{version}");
    let (.., published) = publish_case(&moto, &fixture, &version, &[], &[]).await;
    let templates =
        vec![format!("feature/x/{head}.aws-stack.yml"), "feature/x/aws-stack.yml".to_owned()];
    assert_eq!(published, keys(&[under_version(&version), templates]));
}

#[tokio::test]
async fn the_latest_stable_tag_also_moves_latest_and_the_bucket_root() {
    let Some(moto) = moto() else { return };
    let fixture = fixture();
    let (bucket, _, stdout, _, published) =
        publish_case(&moto, &fixture, "v1.1.0", &tag_build("v1.1.0", &fixture.three), &[]).await;
    let commit = vec![format!("v1.1.0/{}.aws-stack.yml", fixture.three)];
    assert_eq!(
        published,
        keys(&[under_version("v1.1.0"), commit, alias("latest"), vec!["aws-stack.yml".to_owned()]])
    );
    let url = format!("https://s3.amazonaws.com/{bucket}/aws-stack.yml");
    assert_eq!(stdout.lines().last(), Some(url.as_str()), "{stdout}");
}

#[tokio::test]
async fn a_detached_checkout_of_the_latest_tag_is_a_release_build() {
    let Some(moto) = moto() else { return };
    let fixture = fixture();
    fixture.repo.git(&["checkout", "-q", "--detach", "v1.1.0"]);
    let (.., published) = publish_case(&moto, &fixture, "v1.1.0", &[], &[]).await;
    assert!(published.contains("latest/aws-stack.yml"), "{published:?}");
    assert!(published.contains("v1.1.0/SHA256SUMS"), "{published:?}");
}

#[tokio::test]
async fn a_pre_release_or_older_tag_publishes_only_its_own_prefix() {
    let Some(moto) = moto() else { return };
    let fixture = fixture();
    let (_, _, _, stderr, published) =
        publish_case(&moto, &fixture, "v1.1.0-rc1", &tag_build("v1.1.0-rc1", &fixture.two), &[])
            .await;
    let commit = vec![format!("v1.1.0-rc1/{}.aws-stack.yml", fixture.two)];
    assert_eq!(published, keys(&[under_version("v1.1.0-rc1"), commit]));
    let note = "v1.1.0-rc1 is not the latest stable release (that is v1.1.0)";
    assert!(stderr.contains(note), "{stderr}");

    let (.., published) =
        publish_case(&moto, &fixture, "v1.0.0", &tag_build("v1.0.0", &fixture.one), &[]).await;
    let commit = vec![format!("v1.0.0/{}.aws-stack.yml", fixture.one)];
    assert_eq!(published, keys(&[under_version("v1.0.0"), commit]));
}

#[tokio::test]
async fn a_dry_run_prints_the_buckets_and_uploads_and_writes_nothing() {
    let Some(moto) = moto() else { return };
    let fixture = fixture();
    let bucket = unique_name("publish-dry");
    let release = release("v1.1.0", &["us-east-1"]);
    let output = publish(
        &moto,
        &fixture,
        &release,
        &bucket,
        &tag_build("v1.1.0", &fixture.three),
        &["--dry-run", "--lambda-regions", "us-east-1"],
    );
    let stdout = succeeded(&output);
    assert!(published(&moto, &bucket).await.is_empty());
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[0],
        format!(
            "would create s3://{}-us-east-1 in us-east-1 if missing and let anyone read elastic-ci-scaler/*",
            release.lambda_prefix
        )
    );
    assert_eq!(
        lines[1],
        format!("would create s3://{bucket} in us-east-1 if missing and let anyone read *")
    );
    let size = release.body("aws-stack.yml").len();
    assert!(
        lines.contains(&format!("would call S3 PutObject s3://{bucket}/latest/aws-stack.yml (content type text/yaml, {size} bytes)").as_str()),
        "{stdout}"
    );
    // 2 buckets, 2 zips, 13 files, the commit's template, 3 + 1 aliases.
    assert_eq!(lines.len(), 2 + 2 + 13 + 1 + 4, "{stdout}");
}

#[tokio::test]
async fn bad_tags_trees_and_releases_fail_before_anything_is_written() {
    let Some(moto) = moto() else { return };
    let fixture = fixture();
    let bucket = moto.bucket("publish-bad").await;
    let three = fixture.three.clone();
    let main_version = fixture.describe(&three);
    fixture.repo.git(&["tag", "release-1", &three]);

    let v110 = release("v1.1.0", &["us-east-1"]);
    let cases: [(&[(&str, &str)], &Release, &str); 6] = [
        (&tag_build("v9.9.9", &three), &v110, "tag \"v9.9.9\" does not exist"),
        (&tag_build("v1.0.0", &three), &v110, "tag v1.0.0 points at"),
        (
            &tag_build("release-1", &three),
            &v110,
            "invalid release tag \"release-1\": expected vMAJOR.MINOR.PATCH",
        ),
        (
            &[("BUILDKITE_BRANCH", "main"), ("BUILDKITE_COMMIT", "no-such-commit")],
            &v110,
            "\"no-such-commit\" does not name a commit",
        ),
        (&[("BUILDKITE_BRANCH", "../escape")], &v110, "invalid branch \"../escape\""),
        // A template rendered earlier (here for the tag) is not this main build's.
        (
            &[],
            &v110,
            &format!(
                "is version v1.1.0, but this build is {main_version}: render it for this build"
            ),
        ),
    ];
    for (buildkite, release, expected) in cases {
        failed(&publish(&moto, &fixture, release, &bucket, buildkite, &[]), expected);
    }

    // A dirty tree on a tag.
    std::fs::write(fixture.repo.path().join("file.txt"), "changed").unwrap();
    failed(
        &publish(&moto, &fixture, &v110, &bucket, &tag_build("v1.1.0", &three), &[]),
        "has uncommitted changes (M file.txt): a release of tag v1.1.0 must be built from the tagged commit",
    );
    fixture.repo.git(&["checkout", "--", "file.txt"]);

    // A missing architecture's binaries, or a missing Terraform module.
    let incomplete = release("v1.1.0", &["us-east-1"]);
    std::fs::remove_file(incomplete.dir.path().join("arm64/elastic-ci-hooks")).unwrap();
    std::fs::remove_file(incomplete.dir.path().join("elastic-ci-scaler-arm64.zip")).unwrap();
    failed(
        &publish(&moto, &fixture, &incomplete, &bucket, &tag_build("v1.1.0", &three), &[]),
        "missing arm64 artefacts in ",
    );
    failed(
        &publish(&moto, &fixture, &incomplete, &bucket, &tag_build("v1.1.0", &three), &[]),
        ": elastic-ci-scaler-arm64.zip, arm64/elastic-ci-hooks (a release needs both architectures",
    );
    let no_module = release("v1.1.0", &["us-east-1"]);
    std::fs::remove_file(no_module.dir.path().join("terraform-module.tar.gz")).unwrap();
    failed(
        &publish(&moto, &fixture, &no_module, &bucket, &tag_build("v1.1.0", &three), &[]),
        "terraform-module.tar.gz (`cargo xtask template` writes it)",
    );
    // A region the template has no AMIs for.
    failed(
        &publish(
            &moto,
            &fixture,
            &v110,
            &bucket,
            &tag_build("v1.1.0", &three),
            &["--lambda-regions", "us-east-1,eu-west-1"],
        ),
        "has no linuxamd64 AMI for eu-west-1",
    );

    let missing = tempfile::tempdir().unwrap();
    let output = xtask()
        .args(["publish", "--bucket", &bucket, "--template"])
        .arg(missing.path().join("aws-stack.yml"))
        .envs(moto.env())
        .output()
        .unwrap();
    failed(&output, "render it with `cargo xtask template`");
    failed(
        &publish(&moto, &fixture, &v110, "Not_A_Bucket", &[], &[]),
        "invalid bucket name \"Not_A_Bucket\"",
    );

    assert!(published(&moto, &bucket).await.is_empty());
}

#[tokio::test]
async fn scaler_zips_go_to_buckets_publish_creates_in_each_region_before_anything_else() {
    let Some(moto) = moto() else { return };
    let fixture = fixture();
    let release = release("v1.1.0", &["us-east-1", "eu-west-1"]);
    let bucket = unique_name("publish-lambda");
    let regions = ["--lambda-regions", "us-east-1,eu-west-1"];
    let output =
        publish(&moto, &fixture, &release, &bucket, &tag_build("v1.1.0", &fixture.three), &regions);
    let stdout = succeeded(&output);

    for region in ["us-east-1", "eu-west-1"] {
        let lambda_bucket = format!("{}-{region}", release.lambda_prefix);
        let config =
            moto.sdk_config().into_builder().region(aws_config::Region::new(region)).build();
        let regional = S3ObjectStore::new(&config, &moto.settings());
        assert_eq!(regional.bucket_region(&lambda_bucket).await.unwrap().as_deref(), Some(region));
        for arch in ["x86_64", "arm64"] {
            let key = format!("elastic-ci-scaler/v1.1.0/elastic-ci-scaler-{arch}.zip");
            let mut content = Vec::new();
            regional.download(&lambda_bucket, &key, &mut content).await.unwrap();
            assert_eq!(content, format!("PK {arch} zip").as_bytes(), "s3://{lambda_bucket}/{key}");
            let head = regional.head(&lambda_bucket, &key).await.unwrap();
            assert_eq!(head.content_type.as_deref(), Some("application/zip"));
        }
        let policy = moto.s3().get_bucket_policy().bucket(&lambda_bucket).send().await.unwrap();
        assert!(policy.policy().unwrap().contains(&format!("{lambda_bucket}/elastic-ci-scaler/*")));
    }
    // The zips are uploaded first.
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[..4]
            .iter()
            .all(|line| line.ends_with(".zip") && line.contains(&release.lambda_prefix)),
        "{stdout}"
    );
    assert!(lines[4..].iter().all(|line| line.contains(&bucket)), "{stdout}");
}
