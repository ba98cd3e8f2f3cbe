//! `cargo xtask publish`: uploads the rendered template to the release bucket.
//!
//! The layout is the original stack's, so its published URLs keep working:
//!
//! | key | uploaded for |
//! |---|---|
//! | `<branch>/aws-stack.yml`, `<branch>/<commit>.aws-stack.yml` | every build; a tag build's branch is its tag |
//! | `main/…` (and `master/…` with `--master-alias`) | builds of the default branch |
//! | `latest/aws-stack.yml`, `aws-stack.yml` | the build of the latest stable tag |
//!
//! The latest stable tag is the highest `vMAJOR.MINOR.PATCH` tag without a pre-release
//! suffix (no `-`) merged into `origin/<default branch>` (or the local branch when
//! there is no remote one). A pre-release tag, or a stable tag older than the latest,
//! publishes only under its own prefix.
//!
//! Branch, commit and tag come from `BUILDKITE_BRANCH`, `BUILDKITE_COMMIT` and
//! `BUILDKITE_TAG` when set, otherwise from git: the checked-out branch, `HEAD`, and on
//! a detached `HEAD` the highest `v*` tag pointing at it. A tag must exist and point at
//! the commit being published.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail, ensure};
use elastic_ci_aws::config::{AwsSettings, aws_sdk_config};
use elastic_ci_aws::s3::{ObjectStore, S3ObjectStore};

use crate::flags::PublishArgs;
use crate::{git, project, template};

pub(crate) const AFTER_HELP: &str = "\
Keys written, all with content type text/yaml:
  <branch>/aws-stack.yml, <branch>/<commit>.aws-stack.yml
      every build; a tag build's branch is its tag
  main/... (and master/... with --master-alias)
      builds of the default branch
  latest/aws-stack.yml, aws-stack.yml
      the build of the latest stable tag

Branch, commit and tag come from BUILDKITE_BRANCH, BUILDKITE_COMMIT and
BUILDKITE_TAG when set, otherwise from git. The latest stable tag is the highest
vX.Y.Z tag without a '-' merged into origin/<default branch> (or <default
branch>). AWS access follows the standard variables (AWS_PROFILE, AWS_REGION,
AWS_ENDPOINT_URL, ...).";

/// The name of the published template.
pub(crate) const TEMPLATE_NAME: &str = "aws-stack.yml";
const CONTENT_TYPE: &str = "text/yaml";

/// What is being published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Build {
    pub(crate) branch: String,
    pub(crate) commit: String,
    pub(crate) tag: Option<String>,
}

pub(crate) fn run(args: &PublishArgs, env: &HashMap<String, String>) -> anyhow::Result<()> {
    validate_bucket(&args.bucket)?;
    let repository = args.repository.clone().unwrap_or_else(project::root);
    let template_path = match &args.template {
        Some(path) => path.clone(),
        None => project::target_dir()?.join("dist").join(TEMPLATE_NAME),
    };
    let body = read_template(&template_path)?;

    let build = resolve_build(&repository, env)?;
    let default_branch = args
        .default_branch
        .clone()
        .or_else(|| non_empty(env, "BUILDKITE_PIPELINE_DEFAULT_BRANCH").map(str::to_owned))
        .unwrap_or_else(|| "main".to_owned());
    let latest = match &build.tag {
        Some(tag) => {
            let latest = latest_stable_tag(&repository, &default_branch)?;
            if latest.as_deref() != Some(tag.as_str()) {
                eprintln!(
                    "{tag} is not the latest stable release (that is {}): not publishing latest/ or the bucket root",
                    latest.as_deref().unwrap_or("none yet")
                );
            }
            latest
        }
        None => None,
    };
    let keys = release_keys(&build, &default_branch, args.master_alias, latest.as_deref());
    eprintln!(
        "publishing {} ({} bytes) for branch {}, commit {}{}",
        template_path.display(),
        body.len(),
        build.branch,
        build.commit,
        build.tag.as_ref().map(|tag| format!(", tag {tag}")).unwrap_or_default()
    );

    let mut uploads = match args.lambda_regions.as_slice() {
        [] => Vec::new(),
        regions => {
            let dist = match &args.dist_dir {
                Some(dir) => dir.clone(),
                None => project::target_dir()?.join("dist"),
            };
            lambda_uploads(&body, regions, &dist)?
        }
    };
    // The template last: a published template never names a zip that is not there yet.
    uploads.extend(keys.iter().map(|key| Upload {
        bucket: args.bucket.clone(),
        region: None,
        key: key.clone(),
        body: body.clone(),
        content_type: CONTENT_TYPE,
    }));

    if args.dry_run {
        for upload in &uploads {
            println!(
                "would call S3 PutObject s3://{}/{} (content type {}, {} bytes)",
                upload.bucket,
                upload.key,
                upload.content_type,
                upload.body.len()
            );
        }
        return Ok(());
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    runtime.block_on(upload(&uploads, env))
}

/// One object to put.
struct Upload {
    bucket: String,
    /// The bucket's region, when it is not the one the environment names.
    region: Option<String>,
    key: String,
    body: Vec<u8>,
    content_type: &'static str,
}

const ZIP_CONTENT_TYPE: &str = "application/zip";

/// The scaler zips for each region, at the keys the template names. Every file is read
/// and every name checked before anything is uploaded.
fn lambda_uploads(template: &[u8], regions: &[String], dist: &Path) -> anyhow::Result<Vec<Upload>> {
    let template = std::str::from_utf8(template).context("the template is not UTF-8")?;
    let zips = template::scaler_zips(template)?;
    let mut files = Vec::new();
    for (file, key) in [
        ("elastic-ci-scaler-x86_64.zip", &zips.x86_64_key),
        ("elastic-ci-scaler-arm64.zip", &zips.arm64_key),
    ] {
        let path = dist.join(file);
        let body = std::fs::read(&path).with_context(|| {
            format!("failed to read {} (build it with `cargo xtask dist`)", path.display())
        })?;
        files.push((key.clone(), body));
    }
    let mut uploads = Vec::new();
    for region in regions {
        validate_region(region)?;
        let bucket = format!("{}-{region}", zips.bucket_prefix);
        validate_bucket(&bucket)?;
        for (key, body) in &files {
            uploads.push(Upload {
                bucket: bucket.clone(),
                region: Some(region.clone()),
                key: key.clone(),
                body: body.clone(),
                content_type: ZIP_CONTENT_TYPE,
            });
        }
    }
    Ok(uploads)
}

async fn upload(uploads: &[Upload], env: &HashMap<String, String>) -> anyhow::Result<()> {
    let settings = AwsSettings::from_env_map(env);
    let mut stores: HashMap<Option<&str>, S3ObjectStore> = HashMap::new();
    let mut bucket_regions: HashMap<&str, Option<String>> = HashMap::new();
    for upload in uploads {
        let store = match stores.entry(upload.region.as_deref()) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => {
                let settings = settings.clone().with_overrides(upload.region.clone(), None, None);
                let sdk_config = aws_sdk_config(&settings).await;
                entry.insert(S3ObjectStore::new(&sdk_config, &settings))
            }
        };
        let bucket = upload.bucket.as_str();
        if !bucket_regions.contains_key(bucket) {
            // Fails before the bucket's first upload when it is missing or unreachable.
            let region = store
                .bucket_region(bucket)
                .await
                .with_context(|| format!("cannot publish to bucket {bucket}"))?;
            bucket_regions.insert(bucket, region);
        }
        store
            .upload(bucket, &upload.key, upload.body.clone(), Some(upload.content_type))
            .await
            .with_context(|| format!("failed to upload s3://{bucket}/{}", upload.key))?;
        println!("{}", public_url(bucket, bucket_regions[bucket].as_deref(), &upload.key));
    }
    Ok(())
}

/// An AWS region name such as `us-east-1` or `ap-southeast-2`.
fn validate_region(region: &str) -> anyhow::Result<()> {
    let parts: Vec<&str> = region.split('-').collect();
    let valid = parts.len() >= 3
        && parts[..parts.len() - 1]
            .iter()
            .all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_lowercase()))
        && parts[parts.len() - 1].parse::<u8>().is_ok();
    if !valid {
        bail!("invalid region {region:?}: expected a name such as us-east-1");
    }
    Ok(())
}

/// Branch, commit and tag of the build, from Buildkite's variables or from git.
pub(crate) fn resolve_build(
    repository: &Path,
    env: &HashMap<String, String>,
) -> anyhow::Result<Build> {
    let commit = git::commit_of(repository, non_empty(env, "BUILDKITE_COMMIT").unwrap_or("HEAD"))?;
    let env_branch = non_empty(env, "BUILDKITE_BRANCH");
    let tag = match non_empty(env, "BUILDKITE_TAG") {
        Some(tag) => Some(tag.to_owned()),
        None if env_branch.is_none() && !on_branch(repository)? => {
            let tags = git::output(repository, &["tag", "--points-at", &commit, "--list", "v*"])?;
            let tag = tags.lines().max_by_key(|tag| version_key(tag)).ok_or_else(|| {
                anyhow!(
                    "HEAD of {} is detached and no v* tag points at it: check out a branch, or set BUILDKITE_BRANCH (and BUILDKITE_TAG for a release)",
                    repository.display()
                )
            })?;
            Some(tag.to_owned())
        }
        None => None,
    };
    if let Some(tag) = &tag {
        let tagged = git::commit_of(repository, &format!("refs/tags/{tag}")).map_err(|_| {
            anyhow!(
                "tag {tag:?} does not exist in {}: fetch the tags (git fetch --tags) or fix BUILDKITE_TAG",
                repository.display()
            )
        })?;
        ensure!(
            tagged == commit,
            "tag {tag} points at {tagged}, not at the commit being published ({commit})"
        );
    }
    let branch = match (env_branch, &tag) {
        (Some(branch), _) => branch.to_owned(),
        (None, Some(tag)) => tag.clone(),
        (None, None) => git::output(repository, &["symbolic-ref", "--short", "HEAD"])?,
    };
    validate_prefix(&branch)?;
    Ok(Build { branch, commit, tag })
}

/// Every key the build is published under, in upload order: the immutable per-commit
/// copies first, the moving aliases last.
pub(crate) fn release_keys(
    build: &Build,
    default_branch: &str,
    master_alias: bool,
    latest_stable: Option<&str>,
) -> Vec<String> {
    let mut prefixes = BTreeSet::from([build.branch.clone()]);
    if build.tag.is_none() && build.branch == default_branch {
        prefixes.insert("main".to_owned());
        if master_alias {
            prefixes.insert("master".to_owned());
        }
    }
    let mut keys: Vec<String> = prefixes
        .iter()
        .map(|prefix| format!("{prefix}/{}.{TEMPLATE_NAME}", build.commit))
        .chain(prefixes.iter().map(|prefix| format!("{prefix}/{TEMPLATE_NAME}")))
        .collect();
    if build.tag.is_some() && build.tag.as_deref() == latest_stable {
        keys.push(format!("latest/{TEMPLATE_NAME}"));
        keys.push(TEMPLATE_NAME.to_owned());
    }
    keys
}

/// The highest stable `v*` tag merged into the default branch.
fn latest_stable_tag(repository: &Path, default_branch: &str) -> anyhow::Result<Option<String>> {
    let remote = format!("refs/remotes/origin/{default_branch}");
    let candidates = [remote.clone(), format!("refs/heads/{default_branch}")];
    let find_base = || -> anyhow::Result<Option<&String>> {
        for candidate in &candidates {
            if git::succeeds(repository, &["rev-parse", "--verify", "--quiet", candidate])? {
                return Ok(Some(candidate));
            }
        }
        Ok(None)
    };
    let mut base = find_base()?;
    // CI checks out a tag build without the default branch: fetch it and the tags.
    if base.is_none() && git::succeeds(repository, &["remote", "get-url", "origin"])? {
        eprintln!("fetching origin/{default_branch} and the tags to find the latest release");
        git::output(
            repository,
            &[
                "fetch",
                "--quiet",
                "--tags",
                "origin",
                &format!("+refs/heads/{default_branch}:{remote}"),
            ],
        )?;
        base = find_base()?;
    }
    let base = base.ok_or_else(|| {
        anyhow!(
            "cannot tell the latest release: neither origin/{default_branch} nor {default_branch} exists in {} (fetch the default branch, or pass --default-branch)",
            repository.display()
        )
    })?;
    let tags = git::output(repository, &["tag", "--merged", base, "--list", "v*"])?;
    Ok(tags
        .lines()
        .filter_map(|tag| stable_version(tag).map(|version| (version, tag)))
        .max()
        .map(|(_, tag)| tag.to_owned()))
}

/// `v1.2.3` → `[1, 2, 3]`; `None` for a pre-release (`v1.2.3-rc1`) or anything else.
fn stable_version(tag: &str) -> Option<Vec<u64>> {
    let digits = tag.strip_prefix('v')?;
    digits.split('.').map(|part| part.parse().ok()).collect()
}

/// Orders tags by version where they have one, pre-releases below their release.
fn version_key(tag: &str) -> (Vec<u64>, bool, String) {
    let (release, pre) = match tag.split_once('-') {
        Some((release, _)) => (release, true),
        None => (tag, false),
    };
    (stable_version(release).unwrap_or_default(), !pre, tag.to_owned())
}

fn on_branch(repository: &Path) -> anyhow::Result<bool> {
    git::succeeds(repository, &["symbolic-ref", "--quiet", "HEAD"])
}

fn non_empty<'a>(env: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    env.get(name).map(|value| value.trim()).filter(|value| !value.is_empty())
}

fn read_template(path: &PathBuf) -> anyhow::Result<Vec<u8>> {
    let body = std::fs::read(path).with_context(|| {
        format!(
            "failed to read the template {} (render it with `cargo xtask template`)",
            path.display()
        )
    })?;
    let parsed: serde_yaml::Value =
        serde_yaml::from_slice(&body).with_context(|| format!("{} is not YAML", path.display()))?;
    ensure!(
        parsed.get("Resources").is_some(),
        "{} is not a CloudFormation template: it has no Resources",
        path.display()
    );
    Ok(body)
}

/// S3 bucket naming rules, so a typo fails here rather than at the first upload.
fn validate_bucket(bucket: &str) -> anyhow::Result<()> {
    elastic_ci_core::uri::validate_bucket_name(bucket)
        .map_err(|reason| anyhow!("invalid bucket name {bucket:?}: {reason}"))
}

/// A branch becomes a key prefix: it must not climb out of it or be empty.
fn validate_prefix(branch: &str) -> anyhow::Result<()> {
    let valid = !branch.is_empty()
        && branch.split('/').all(|part| !part.is_empty() && part != "." && part != "..")
        && !branch.chars().any(char::is_control);
    if !valid {
        bail!("invalid branch {branch:?}: expected names separated by '/', without '.' or '..'");
    }
    Ok(())
}

fn public_url(bucket: &str, region: Option<&str>, key: &str) -> String {
    match region {
        None | Some("us-east-1") => format!("https://s3.amazonaws.com/{bucket}/{key}"),
        Some(region) => format!("https://s3.{region}.amazonaws.com/{bucket}/{key}"),
    }
}

#[cfg(test)]
mod tests {
    use test_case::test_case;

    use super::*;

    fn build(branch: &str, tag: Option<&str>) -> Build {
        Build {
            branch: branch.to_owned(),
            commit: "c0ffee".to_owned(),
            tag: tag.map(str::to_owned),
        }
    }

    #[test_case(build("main", None), false, None, &["main/c0ffee.aws-stack.yml", "main/aws-stack.yml"]; "default branch")]
    #[test_case(build("main", None), true, None, &["main/c0ffee.aws-stack.yml", "master/c0ffee.aws-stack.yml", "main/aws-stack.yml", "master/aws-stack.yml"]; "default branch with the master alias")]
    #[test_case(build("feature/x", None), true, None, &["feature/x/c0ffee.aws-stack.yml", "feature/x/aws-stack.yml"]; "other branch")]
    #[test_case(build("v1.2.0", Some("v1.2.0")), true, Some("v1.2.0"), &["v1.2.0/c0ffee.aws-stack.yml", "v1.2.0/aws-stack.yml", "latest/aws-stack.yml", "aws-stack.yml"]; "latest stable tag")]
    #[test_case(build("v1.1.0", Some("v1.1.0")), false, Some("v1.2.0"), &["v1.1.0/c0ffee.aws-stack.yml", "v1.1.0/aws-stack.yml"]; "older stable tag")]
    #[test_case(build("v1.3.0-rc1", Some("v1.3.0-rc1")), false, Some("v1.2.0"), &["v1.3.0-rc1/c0ffee.aws-stack.yml", "v1.3.0-rc1/aws-stack.yml"]; "pre-release tag")]
    fn lays_out_releases(
        build: Build,
        master_alias: bool,
        latest: Option<&str>,
        expected: &[&str],
    ) {
        assert_eq!(release_keys(&build, "main", master_alias, latest), expected);
    }

    #[test]
    fn a_master_default_branch_is_also_published_under_main() {
        let keys = release_keys(&build("master", None), "master", false, None);
        assert_eq!(
            keys,
            [
                "main/c0ffee.aws-stack.yml",
                "master/c0ffee.aws-stack.yml",
                "main/aws-stack.yml",
                "master/aws-stack.yml"
            ]
        );
    }

    #[test]
    fn orders_versions_numerically_and_rejects_pre_releases() {
        assert_eq!(stable_version("v1.10.0"), Some(vec![1, 10, 0]));
        assert_eq!(stable_version("v1.2.3-rc1"), None);
        assert_eq!(stable_version("release-1"), None);
        assert!(stable_version("v1.10.0") > stable_version("v1.9.9"));
        assert!(version_key("v1.3.0") > version_key("v1.3.0-rc2"));
        assert!(version_key("v1.3.0-rc2") > version_key("v1.2.9"));
    }

    #[test_case("my-bucket", true; "plain")]
    #[test_case("buildkite-aws-stack", true; "original")]
    #[test_case("My_Bucket", false; "uppercase and underscore")]
    #[test_case("ab", false; "too short")]
    #[test_case("-bucket", false; "leading dash")]
    fn checks_bucket_names(bucket: &str, valid: bool) {
        assert_eq!(validate_bucket(bucket).is_ok(), valid, "{bucket}");
    }

    #[test_case("main", true; "plain")]
    #[test_case("feature/new-thing", true; "nested")]
    #[test_case("a/../b", false; "climbs out")]
    #[test_case("/main", false; "absolute")]
    #[test_case("main/", false; "trailing slash")]
    #[test_case("", false; "empty")]
    fn checks_branch_prefixes(branch: &str, valid: bool) {
        assert_eq!(validate_prefix(branch).is_ok(), valid, "{branch}");
    }

    #[test]
    fn urls_name_the_bucket_region() {
        assert_eq!(
            public_url("b", Some("us-east-1"), "latest/aws-stack.yml"),
            "https://s3.amazonaws.com/b/latest/aws-stack.yml"
        );
        assert_eq!(
            public_url("b", Some("eu-west-1"), "k"),
            "https://s3.eu-west-1.amazonaws.com/b/k"
        );
    }
}
