//! `cargo xtask publish`: uploads a release to the release bucket, and the scaler zips
//! to the per-region buckets the template names.
//!
//! | key | uploaded for |
//! |---|---|
//! | `<version>/…`: `aws-stack.yml`, `service-role.yml`, `mappings.yml`, `terraform-module.tar.gz`, `elastic-ci-scaler-<arch>.zip`, `<arch>/elastic-ci-bootstrap`, `<arch>/elastic-ci-hooks`, `<arch>/elastic-ci`, then `SHA256SUMS` | every build |
//! | `<branch>/<commit>.aws-stack.yml`, `<branch>/aws-stack.yml` | every build; a tag build's branch is its tag |
//! | `main/…` (and `master/…` with `--master-alias`): `<commit>.aws-stack.yml`, then `aws-stack.yml`, `mappings.yml`, `terraform-module.tar.gz` | builds of the default branch |
//! | `latest/aws-stack.yml`, `latest/mappings.yml`, `latest/terraform-module.tar.gz`, `aws-stack.yml` | the build of the latest stable tag |
//!
//! `<version>` is the build's: its tag on a tag build, otherwise `git describe --tags
//! --long --always --dirty` (so a branch build of a tagged commit, `v1.2.0-0-gabc1234`,
//! never writes into the tag's directory). `<arch>` is `x86_64` and `arm64`. The scaler zips also go to
//! `s3://<prefix>-<region>/elastic-ci-scaler/<version>/` for each `--lambda-regions`
//! region, the keys the template names.
//!
//! Everything is checked before the first upload: the tag is a release tag and the
//! work tree is clean on a tag, the rendered template is this build's version and maps
//! both architectures' AMIs in every region served, and every artefact of both
//! architectures is there. Buckets that are missing are created (the release bucket in
//! the client's region, each scaler bucket in its region) and made readable by anyone,
//! so any account's CloudFormation and Lambda can read them. The uploads go in the
//! order of the table, the zips first: the moving aliases (`<branch>/aws-stack.yml`,
//! `main/`, `latest/`, the root) come last, so a publish that fails halfway leaves
//! them on the previous release.
//!
//! The latest stable tag is the highest `vMAJOR.MINOR.PATCH` tag without a pre-release
//! suffix merged into `origin/<default branch>` (or the local branch when there is no
//! remote one). A pre-release tag, or a stable tag older than the latest, publishes
//! only under its own prefix.
//!
//! Branch, commit and tag come from `BUILDKITE_BRANCH`, `BUILDKITE_COMMIT` and
//! `BUILDKITE_TAG` when set, otherwise from git: the checked-out branch, `HEAD`, and on
//! a detached `HEAD` the highest `v*` tag pointing at it. A tag must exist and point at
//! the commit being published.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, anyhow, bail, ensure};
use elastic_ci_aws::config::{AwsSettings, aws_sdk_config};
use elastic_ci_aws::s3::{ObjectStore, S3ObjectStore};
use sha2::{Digest, Sha256};

use crate::flags::PublishArgs;
use crate::version::{ReleaseVersion, validate_release_tag};
use crate::{dist, git, project, template, terraform_module};

pub(crate) const AFTER_HELP: &str = "\
Keys written (see `cargo xtask publish` in the README for the whole layout):
  <version>/...   the template, service-role.yml, mappings.yml,
                  terraform-module.tar.gz, the scaler zips, <arch>/ binaries and
                  SHA256SUMS; every build
  <branch>/aws-stack.yml, <branch>/<commit>.aws-stack.yml
                  every build; a tag build's branch is its tag
  main/... (and master/... with --master-alias)
                  builds of the default branch
  latest/..., aws-stack.yml
                  the build of the latest stable tag
The moving aliases (<branch>/aws-stack.yml, main/, latest/, the root) are
uploaded last. Missing buckets are created and made publicly readable.

Branch, commit and tag come from BUILDKITE_BRANCH, BUILDKITE_COMMIT and
BUILDKITE_TAG when set, otherwise from git. A tag must look like vX.Y.Z (or
vX.Y.Z-PRE) and the work tree must be clean. The latest stable tag is the
highest vX.Y.Z tag without a '-' merged into origin/<default branch> (or
<default branch>). AWS access follows the standard variables (AWS_PROFILE,
AWS_REGION, AWS_ENDPOINT_URL, ...).";

/// The name of the published template.
pub(crate) const TEMPLATE_NAME: &str = "aws-stack.yml";
/// The checksums of a release's files, uploaded after them.
pub(crate) const CHECKSUMS_NAME: &str = "SHA256SUMS";
/// The key prefix of the scaler zips in their buckets, which anyone may read.
const SCALER_PREFIX: &str = "elastic-ci-scaler/";
/// The files every moving alias points at the build's copies of (the bucket root gets
/// the template only).
const ALIASED: [&str; 3] = [TEMPLATE_NAME, template::MAPPINGS_NAME, terraform_module::ARCHIVE_NAME];
/// The scaler zips' file names, by architecture.
const ZIPS: [(&str, &str); 2] =
    [("x86_64", "elastic-ci-scaler-x86_64.zip"), ("arm64", "elastic-ci-scaler-arm64.zip")];

/// What is being published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Build {
    pub(crate) branch: String,
    pub(crate) commit: String,
    pub(crate) tag: Option<String>,
}

/// One object to put.
#[derive(Debug, Clone)]
pub(crate) struct Upload {
    pub(crate) bucket: String,
    /// The bucket's region, when it is not the one the environment names.
    pub(crate) region: Option<String>,
    pub(crate) key: String,
    pub(crate) body: Arc<Vec<u8>>,
    pub(crate) content_type: &'static str,
}

/// A bucket the release writes to: created when missing, readable by anyone under
/// `public_prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReleaseBucket {
    pub(crate) bucket: String,
    pub(crate) region: String,
    /// `None` when the store's client is in that region already.
    pub(crate) client_region: Option<String>,
    pub(crate) public_prefix: String,
}

/// Everything a publish does, in order.
#[derive(Debug, Clone, Default)]
pub(crate) struct Plan {
    pub(crate) buckets: Vec<ReleaseBucket>,
    pub(crate) uploads: Vec<Upload>,
}

pub(crate) fn run(args: &PublishArgs, env: &HashMap<String, String>) -> anyhow::Result<()> {
    validate_bucket(&args.bucket)?;
    let repository = args.repository.clone().unwrap_or_else(project::root);
    let template_path = match &args.template {
        Some(path) => path.clone(),
        None => project::target_dir()?.join("dist").join(TEMPLATE_NAME),
    };
    let dist_dir = match &args.dist_dir {
        Some(dir) => dir.clone(),
        None => project::target_dir()?.join("dist"),
    };
    let body = read_template(&template_path)?;
    let text = std::str::from_utf8(&body).context("the template is not UTF-8")?;
    for region in &args.lambda_regions {
        validate_region(region)?;
    }

    let build = resolve_build(&repository, env)?;
    let version = build_version(&repository, &build)?;
    let rendered = template::rendered_version(text)
        .with_context(|| format!("cannot tell the version of {}", template_path.display()))?;
    ensure!(
        rendered == version,
        "{} is version {rendered}, but this build is {version}: render it for this build with `cargo xtask template`",
        template_path.display()
    );
    check_amis(text, &args.lambda_regions, &template_path)?;
    let files = release_files(&body, &template_path, &dist_dir)?;

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
    let layout =
        release_keys(&build, &version, &default_branch, args.master_alias, latest.as_deref());
    let region = crate::ami::default_region(env);
    let plan = plan(&args.bucket, &region, &layout, &files, text, &args.lambda_regions)?;
    eprintln!(
        "publishing {version} ({} files, {} uploads) for branch {}, commit {}{}",
        files.len(),
        plan.uploads.len(),
        build.branch,
        build.commit,
        build.tag.as_ref().map(|tag| format!(", tag {tag}")).unwrap_or_default()
    );

    if args.dry_run {
        for bucket in &plan.buckets {
            println!(
                "would create s3://{} in {} if missing and let anyone read {}*",
                bucket.bucket, bucket.region, bucket.public_prefix
            );
        }
        for upload in &plan.uploads {
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

    let urls = project::block_on(async {
        let stores = sdk_stores(&plan, env).await;
        execute(&plan, &stores).await
    })?;
    if let Some(summary) = &args.summary {
        let text = summary_markdown(&version, &args.bucket, &region, &urls, text);
        std::fs::write(summary, text)
            .with_context(|| format!("failed to write {}", summary.display()))?;
    }
    Ok(())
}

/// The files of a release, as (path under `<version>/`, body, content type): the
/// template and what `cargo xtask template` wrote beside it, the scaler zips and both
/// architectures' binaries from the dist directory. Every one must exist.
fn release_files(
    template: &[u8],
    template_path: &Path,
    dist_dir: &Path,
) -> anyhow::Result<Vec<(String, Arc<Vec<u8>>, &'static str)>> {
    let beside = |name: &str| template_path.with_file_name(name);
    let mut files = vec![(TEMPLATE_NAME.to_owned(), Arc::new(template.to_vec()), YAML)];
    for (name, content_type) in [
        ("service-role.yml", YAML),
        (template::MAPPINGS_NAME, YAML),
        (terraform_module::ARCHIVE_NAME, "application/gzip"),
    ] {
        let path = beside(name);
        let body = std::fs::read(&path).with_context(|| {
            format!("failed to read {} (`cargo xtask template` writes it)", path.display())
        })?;
        files.push((name.to_owned(), Arc::new(body), content_type));
    }
    for (arch, zip) in ZIPS {
        let binaries: Vec<(String, PathBuf)> =
            std::iter::once((zip.to_owned(), dist_dir.join(zip)))
                .chain(dist::BINARIES.iter().map(|(_, binary)| {
                    (format!("{arch}/{binary}"), dist_dir.join(arch).join(binary))
                }))
                .collect();
        let missing: Vec<&str> = binaries
            .iter()
            .filter(|(_, path)| !path.is_file())
            .map(|(name, _)| name.as_str())
            .collect();
        ensure!(
            missing.is_empty(),
            "missing {arch} artefacts in {}: {} (a release needs both architectures: build them with `cargo xtask dist`)",
            dist_dir.display(),
            missing.join(", ")
        );
        for (name, path) in binaries {
            let body = std::fs::read(&path)
                .with_context(|| format!("failed to read {}", path.display()))?;
            let content_type = if name.ends_with(".zip") { ZIP } else { BINARY };
            files.push((name, Arc::new(body), content_type));
        }
    }
    Ok(files)
}

const YAML: &str = "text/yaml";
const ZIP: &str = "application/zip";
const BINARY: &str = "application/octet-stream";

/// Refuses a template without both architectures' AMIs in a region it is published
/// for: a stack there would launch instances with an empty image id.
fn check_amis(template: &str, regions: &[String], path: &Path) -> anyhow::Result<()> {
    let parsed: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(template).context("the template is not valid YAML")?;
    for region in regions {
        let row = &parsed["Mappings"]["AWSRegion2AMI"][region.as_str()];
        for variant in ["linuxamd64", "linuxarm64"] {
            let ami = row[variant].as_str().unwrap_or_default();
            ensure!(
                !ami.is_empty(),
                "{} has no {variant} AMI for {region}: build both architectures' images with `cargo xtask ami` and render the template again",
                path.display()
            );
        }
    }
    Ok(())
}

/// Every bucket and upload of a release, in order (see the module documentation).
pub(crate) fn plan(
    bucket: &str,
    region: &str,
    layout: &Layout,
    files: &[(String, Arc<Vec<u8>>, &'static str)],
    template: &str,
    lambda_regions: &[String],
) -> anyhow::Result<Plan> {
    let mut plan = Plan::default();
    let file = |name: &str| {
        files
            .iter()
            .find(|(file, _, _)| file == name)
            .map(|(_, body, content_type)| (body.clone(), *content_type))
            .ok_or_else(|| anyhow!("the release has no {name}"))
    };
    if !lambda_regions.is_empty() {
        let zips = template::scaler_zips(template)?;
        for lambda_region in lambda_regions {
            let lambda_bucket = format!("{}-{lambda_region}", zips.bucket_prefix);
            validate_bucket(&lambda_bucket)?;
            plan.buckets.push(ReleaseBucket {
                bucket: lambda_bucket.clone(),
                region: lambda_region.clone(),
                client_region: Some(lambda_region.clone()),
                public_prefix: SCALER_PREFIX.to_owned(),
            });
            for ((_, zip), key) in ZIPS.iter().zip([&zips.x86_64_key, &zips.arm64_key]) {
                let (body, content_type) = file(zip)?;
                plan.uploads.push(Upload {
                    bucket: lambda_bucket.clone(),
                    region: Some(lambda_region.clone()),
                    key: key.clone(),
                    body,
                    content_type,
                });
            }
        }
    }
    plan.buckets.push(ReleaseBucket {
        bucket: bucket.to_owned(),
        region: region.to_owned(),
        client_region: None,
        public_prefix: String::new(),
    });
    let to_bucket = |key: String, name: &str| -> anyhow::Result<Upload> {
        let (body, content_type) = file(name)?;
        Ok(Upload { bucket: bucket.to_owned(), region: None, key, body, content_type })
    };
    for (name, _, _) in files {
        plan.uploads.push(to_bucket(format!("{}/{name}", layout.version), name)?);
    }
    let mut sorted: Vec<&(String, Arc<Vec<u8>>, &str)> = files.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut sums = String::new();
    for (name, body, _) in sorted {
        let _ = writeln!(sums, "{}  {name}", hex(&Sha256::digest(body.as_slice())));
    }
    plan.uploads.push(Upload {
        bucket: bucket.to_owned(),
        region: None,
        key: format!("{}/{CHECKSUMS_NAME}", layout.version),
        body: Arc::new(sums.into_bytes()),
        content_type: "text/plain",
    });
    for key in &layout.templates {
        plan.uploads.push(to_bucket(key.clone(), TEMPLATE_NAME)?);
    }
    for prefix in &layout.aliases {
        if prefix.is_empty() {
            plan.uploads.push(to_bucket(TEMPLATE_NAME.to_owned(), TEMPLATE_NAME)?);
        } else {
            for name in ALIASED {
                plan.uploads.push(to_bucket(format!("{prefix}/{name}"), name)?);
            }
        }
    }
    Ok(plan)
}

/// One S3 client per region the plan writes in.
async fn sdk_stores(
    plan: &Plan,
    env: &HashMap<String, String>,
) -> HashMap<Option<String>, Arc<dyn ObjectStore>> {
    let settings = AwsSettings::from_env_map(env);
    let mut stores: HashMap<Option<String>, Arc<dyn ObjectStore>> = HashMap::new();
    let regions = plan
        .buckets
        .iter()
        .map(|bucket| bucket.client_region.clone())
        .chain(plan.uploads.iter().map(|upload| upload.region.clone()));
    for region in regions {
        if stores.contains_key(&region) {
            continue;
        }
        let settings = settings.clone().with_overrides(region.clone(), None, None);
        let sdk_config = aws_sdk_config(&settings).await;
        stores.insert(region, Arc::new(S3ObjectStore::new(&sdk_config, &settings)));
    }
    stores
}

/// Prepares every bucket, then uploads in order, printing each object's URL; returns
/// the URLs. Stops at the first failure.
pub(crate) async fn execute(
    plan: &Plan,
    stores: &HashMap<Option<String>, Arc<dyn ObjectStore>>,
) -> anyhow::Result<Vec<String>> {
    let store = |region: &Option<String>| {
        stores.get(region).cloned().ok_or_else(|| anyhow!("no S3 client for {region:?}"))
    };
    let mut regions: HashMap<&str, String> = HashMap::new();
    for bucket in &plan.buckets {
        let store = store(&bucket.client_region)?;
        if store
            .ensure_bucket(&bucket.bucket, &bucket.region)
            .await
            .with_context(|| format!("cannot publish to bucket {}", bucket.bucket))?
        {
            eprintln!("created bucket {} in {}", bucket.bucket, bucket.region);
        }
        store
            .allow_public_read(&bucket.bucket, &bucket.public_prefix)
            .await
            .with_context(|| format!("failed to let anyone read bucket {}", bucket.bucket))?;
        regions.insert(&bucket.bucket, bucket.region.clone());
    }
    let mut urls = Vec::new();
    for upload in &plan.uploads {
        store(&upload.region)?
            .upload(&upload.bucket, &upload.key, upload.body.to_vec(), Some(upload.content_type))
            .await
            .with_context(|| format!("failed to upload s3://{}/{}", upload.bucket, upload.key))?;
        let url = public_url(
            &upload.bucket,
            regions.get(upload.bucket.as_str()).map(String::as_str),
            &upload.key,
        );
        println!("{url}");
        urls.push(url);
    }
    Ok(urls)
}

/// A Markdown summary of a publish for `buildkite-agent annotate`: the template and
/// module URLs and the AMI ids.
fn summary_markdown(
    version: &str,
    bucket: &str,
    region: &str,
    urls: &[String],
    template: &str,
) -> String {
    let find = |suffix: &str| {
        urls.iter()
            .find(|url| url.ends_with(&format!("/{version}/{suffix}")))
            .cloned()
            .unwrap_or_default()
    };
    let mut text = format!(
        "### Elastic CI Stack {version}\n\n- Template: {}\n- Terraform module: {}\n- Checksums: {}\n- Release bucket: `s3://{bucket}` ({region})\n",
        find(TEMPLATE_NAME),
        find(terraform_module::ARCHIVE_NAME),
        find(CHECKSUMS_NAME),
    );
    let parsed: serde_yaml_ng::Value = serde_yaml_ng::from_str(template).unwrap_or_default();
    if let Some(regions) = parsed["Mappings"]["AWSRegion2AMI"].as_mapping() {
        text.push_str("\n| region | linuxamd64 | linuxarm64 |\n|---|---|---|\n");
        for (name, row) in regions {
            let _ = writeln!(
                text,
                "| {} | {} | {} |",
                name.as_str().unwrap_or_default(),
                row["linuxamd64"].as_str().unwrap_or_default(),
                row["linuxarm64"].as_str().unwrap_or_default()
            );
        }
    }
    text
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// An AWS region name such as `us-east-1` or `ap-southeast-2`.
fn validate_region(region: &str) -> anyhow::Result<()> {
    crate::ami::validate_region(region)
}

/// Branch, commit and tag of the build, from Buildkite's variables or from git. A tag
/// must be a release tag, exist, point at the commit, and be built from a clean tree.
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
        validate_release_tag(tag)?;
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
        let changes = git::output(repository, &["status", "--porcelain", "--untracked-files=no"])?;
        ensure!(
            changes.is_empty(),
            "the work tree of {} has uncommitted changes ({}): a release of tag {tag} must be built from the tagged commit as it is",
            repository.display(),
            changes.lines().map(str::trim).collect::<Vec<_>>().join(", ")
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

/// The version a build publishes: its tag, or `git describe --tags --long --always` of its
/// commit with `-dirty` when that commit is checked out with changes.
pub(crate) fn build_version(repository: &Path, build: &Build) -> anyhow::Result<String> {
    if let Some(tag) = &build.tag {
        return Ok(tag.clone());
    }
    let described =
        git::output(repository, &["describe", "--tags", "--long", "--always", &build.commit])?;
    let head = git::commit_of(repository, "HEAD")?;
    let dirty = head == build.commit
        && !git::output(repository, &["status", "--porcelain", "--untracked-files=no"])?.is_empty();
    Ok(if dirty { format!("{described}-dirty") } else { described })
}

/// Where a build goes: its version's directory, the template copies of its branch and
/// commit, and the moving aliases, uploaded last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    pub(crate) version: String,
    /// Template keys besides `<version>/aws-stack.yml`, per-commit ones first.
    pub(crate) templates: Vec<String>,
    /// Prefixes that move to this build (`""` is the bucket root).
    pub(crate) aliases: Vec<String>,
}

/// The keys of a build (see the module documentation).
pub(crate) fn release_keys(
    build: &Build,
    version: &str,
    default_branch: &str,
    master_alias: bool,
    latest_stable: Option<&str>,
) -> Layout {
    let mut prefixes = BTreeSet::from([build.branch.clone()]);
    let mut aliases = Vec::new();
    if build.tag.is_none() && build.branch == default_branch {
        aliases.push("main".to_owned());
        if build.branch != "main" {
            aliases.push(build.branch.clone());
        }
        if master_alias && !aliases.iter().any(|alias| alias == "master") {
            aliases.push("master".to_owned());
        }
        prefixes.extend(aliases.iter().cloned());
    }
    let mut templates: Vec<String> = prefixes
        .iter()
        .map(|prefix| format!("{prefix}/{}.{TEMPLATE_NAME}", build.commit))
        .collect();
    // The branch's own template moves with each build, but its version directory does
    // not, and a tag's branch is its version directory.
    if build.branch != version && !aliases.contains(&build.branch) {
        templates.push(format!("{}/{TEMPLATE_NAME}", build.branch));
    }
    if build.tag.is_some() && build.tag.as_deref() == latest_stable {
        aliases.push("latest".to_owned());
        aliases.push(String::new());
    }
    Layout { version: version.to_owned(), templates, aliases }
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
fn stable_version(tag: &str) -> Option<[u64; 3]> {
    ReleaseVersion::parse(tag).filter(ReleaseVersion::is_stable).map(|version| version.numbers)
}

/// Orders tags by version where they have one, pre-releases below their release.
fn version_key(tag: &str) -> ([u64; 3], bool, String) {
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
    let parsed: serde_yaml_ng::Value = serde_yaml_ng::from_slice(&body)
        .with_context(|| format!("{} is not YAML", path.display()))?;
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
    use elastic_ci_aws::fake::FakeObjectStore;
    use test_case::test_case;

    use super::*;

    fn build(branch: &str, tag: Option<&str>) -> Build {
        Build {
            branch: branch.to_owned(),
            commit: "c0ffee".to_owned(),
            tag: tag.map(str::to_owned),
        }
    }

    fn layout(templates: &[&str], aliases: &[&str]) -> (Vec<String>, Vec<String>) {
        (
            templates.iter().map(|key| (*key).to_owned()).collect(),
            aliases.iter().map(|prefix| (*prefix).to_owned()).collect(),
        )
    }

    #[test_case(build("main", None), "v1.2.0-3-gc0ffee", false, None, layout(&["main/c0ffee.aws-stack.yml"], &["main"]); "default branch")]
    #[test_case(build("main", None), "v1.2.0-3-gc0ffee", true, None, layout(&["main/c0ffee.aws-stack.yml", "master/c0ffee.aws-stack.yml"], &["main", "master"]); "default branch with the master alias")]
    #[test_case(build("feature/x", None), "v1.2.0-4-gc0ffee", true, None, layout(&["feature/x/c0ffee.aws-stack.yml", "feature/x/aws-stack.yml"], &[]); "other branch")]
    #[test_case(build("v1.2.0", Some("v1.2.0")), "v1.2.0", true, Some("v1.2.0"), layout(&["v1.2.0/c0ffee.aws-stack.yml"], &["latest", ""]); "latest stable tag")]
    #[test_case(build("v1.1.0", Some("v1.1.0")), "v1.1.0", false, Some("v1.2.0"), layout(&["v1.1.0/c0ffee.aws-stack.yml"], &[]); "older stable tag")]
    #[test_case(build("v1.3.0-rc1", Some("v1.3.0-rc1")), "v1.3.0-rc1", false, Some("v1.2.0"), layout(&["v1.3.0-rc1/c0ffee.aws-stack.yml"], &[]); "pre-release tag")]
    fn lays_out_releases(
        build: Build,
        version: &str,
        master_alias: bool,
        latest: Option<&str>,
        expected: (Vec<String>, Vec<String>),
    ) {
        let layout = release_keys(&build, version, "main", master_alias, latest);
        assert_eq!(layout.version, version);
        assert_eq!((layout.templates, layout.aliases), expected);
    }

    #[test]
    fn a_master_default_branch_is_also_published_under_main() {
        let layout = release_keys(&build("master", None), "v1-1-gc0ffee", "master", false, None);
        assert_eq!(layout.templates, ["main/c0ffee.aws-stack.yml", "master/c0ffee.aws-stack.yml"]);
        assert_eq!(layout.aliases, ["main", "master"]);
    }

    #[test]
    fn orders_versions_numerically_and_rejects_pre_releases() {
        assert_eq!(stable_version("v1.10.0"), Some([1, 10, 0]));
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

    fn files(version: &str) -> Vec<(String, Arc<Vec<u8>>, &'static str)> {
        let mut names = vec![
            TEMPLATE_NAME.to_owned(),
            "service-role.yml".to_owned(),
            template::MAPPINGS_NAME.to_owned(),
            terraform_module::ARCHIVE_NAME.to_owned(),
        ];
        for (arch, zip) in ZIPS {
            names.push(zip.to_owned());
            names.extend(dist::BINARIES.iter().map(|(_, binary)| format!("{arch}/{binary}")));
        }
        names
            .into_iter()
            .map(|name| {
                let body = format!("{name} of {version}").into_bytes();
                (name, Arc::new(body), YAML)
            })
            .collect()
    }

    fn release_plan(version: &str) -> Plan {
        let build = build(version, Some(version));
        let layout = release_keys(&build, version, "main", false, Some(version));
        let template = format!(
            "Mappings:\n  ScalerLambda:\n    Release:\n      BucketPrefix: lambdas\n      amd64: elastic-ci-scaler/{version}/elastic-ci-scaler-x86_64.zip\n      arm64: elastic-ci-scaler/{version}/elastic-ci-scaler-arm64.zip\n"
        );
        plan(
            "releases",
            "us-east-1",
            &layout,
            &files(version),
            &template,
            &["eu-west-1".to_owned()],
        )
        .unwrap()
    }

    #[test]
    fn the_zips_go_first_the_checksums_after_the_files_and_the_aliases_last() {
        let plan = release_plan("v2.0.0");
        let keys: Vec<String> =
            plan.uploads.iter().map(|upload| format!("{}/{}", upload.bucket, upload.key)).collect();
        assert_eq!(
            keys[0],
            "lambdas-eu-west-1/elastic-ci-scaler/v2.0.0/elastic-ci-scaler-x86_64.zip"
        );
        assert_eq!(
            keys[1],
            "lambdas-eu-west-1/elastic-ci-scaler/v2.0.0/elastic-ci-scaler-arm64.zip"
        );
        let sums = keys.iter().position(|key| key == "releases/v2.0.0/SHA256SUMS").unwrap();
        assert_eq!(sums, 2 + files("v2.0.0").len());
        assert_eq!(
            &keys[sums + 1..],
            [
                "releases/v2.0.0/c0ffee.aws-stack.yml",
                "releases/latest/aws-stack.yml",
                "releases/latest/mappings.yml",
                "releases/latest/terraform-module.tar.gz",
                "releases/aws-stack.yml",
            ]
        );
        let sums_body = String::from_utf8(plan.uploads[sums].body.to_vec()).unwrap();
        assert_eq!(sums_body.lines().count(), files("v2.0.0").len());
        assert!(sums_body.contains(&format!(
            "{}  arm64/elastic-ci\n",
            hex(&Sha256::digest(b"arm64/elastic-ci of v2.0.0"))
        )));
        assert_eq!(
            plan.buckets.iter().map(|bucket| bucket.public_prefix.as_str()).collect::<Vec<_>>(),
            ["elastic-ci-scaler/", ""]
        );
    }

    #[tokio::test]
    async fn a_publish_that_fails_before_the_aliases_leaves_them_on_the_previous_release() {
        let store = Arc::new(FakeObjectStore::default());
        let stores: HashMap<Option<String>, Arc<dyn ObjectStore>> = HashMap::from([
            (None, store.clone() as Arc<dyn ObjectStore>),
            (Some("eu-west-1".to_owned()), store.clone() as Arc<dyn ObjectStore>),
        ]);
        execute(&release_plan("v2.0.0"), &stores).await.unwrap();

        store.fail_uploads_of("releases", "v2.1.0/SHA256SUMS");
        let error = execute(&release_plan("v2.1.0"), &stores).await.unwrap_err();
        assert_eq!(format!("{error}"), "failed to upload s3://releases/v2.1.0/SHA256SUMS");

        let object = |key: &str| {
            store
                .object("releases", key)
                .map(|(body, _)| String::from_utf8_lossy(&body).into_owned())
        };
        for alias in [
            "latest/aws-stack.yml",
            "latest/mappings.yml",
            "latest/terraform-module.tar.gz",
            "aws-stack.yml",
        ] {
            let name = alias.rsplit('/').next().unwrap();
            assert_eq!(object(alias), Some(format!("{name} of v2.0.0")), "{alias}");
        }
        // What came before the failure is there; nothing after it.
        assert_eq!(object("v2.1.0/aws-stack.yml"), Some("aws-stack.yml of v2.1.0".to_owned()));
        assert_eq!(object("v2.1.0/SHA256SUMS"), None);
        assert_eq!(object("v2.1.0/c0ffee.aws-stack.yml"), None);
        // Publishing made the buckets it writes to readable by anyone.
        assert!(store.policy("releases").unwrap().contains("arn:aws:s3:::releases/*"));
        assert!(
            store
                .policy("lambdas-eu-west-1")
                .unwrap()
                .contains("lambdas-eu-west-1/elastic-ci-scaler/*")
        );
    }
}
