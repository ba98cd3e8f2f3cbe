//! `elastic-ci-rehearse` (`cargo xtask release --rehearse`): the whole release against
//! the local AWS emulator, then a deployment of what it published.
//!
//! 1. A local HTTPS server stands in for the download hosts: it serves a fixture file
//!    at every URL of the image's pinned downloads, and the checksum files upstream
//!    publishes for some of them.
//! 2. The release tasks of `xtask` run as the pipeline runs them, in a child process
//!    whose environment points every AWS client at the emulator and trusts the
//!    server's CA: `pin-downloads --base-url` on a copy of the versions file, `ami` for
//!    x86_64 and arm64 (Packer against the emulator, with the emulator variant of the
//!    image template and that pinned file), `template`, and `publish` of a `vX.Y.Z` tag
//!    of a throwaway git repository to a bucket and scaler buckets it creates.
//! 3. Then, as a user would: `create_stack` from the published template URL with only
//!    `BuildkiteAgentToken` set, which must reach CREATE_COMPLETE with the release's
//!    image in the launch template and the published zip as the scaler's code; every
//!    file is checked against the published SHA256SUMS; the published Terraform module
//!    unpacks, parses, and defaults to the release's images and zip.
//! 4. A JSON report (URLs, keys and sizes, image ids, the stack's status, the time of
//!    each step) is written to `<target dir>/release-rehearsal/report.json`.
//!
//! Without `--dist-dir` the binaries and zips are small stand-ins (what is checked is
//! the release's plumbing, and `cargo xtask dist` takes many minutes); with
//! `--dist-dir <target dir>/dist` after `cargo xtask dist` the real ones are published.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail, ensure};
use aws_sdk_cloudformation::types::{Capability, Parameter, StackStatus};
use base64::Engine;
use elastic_ci_testkit::http::{TestServer, file_routes};
use elastic_ci_testkit::moto::{Moto, REGION};
use elastic_ci_testkit::names::unique_name;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use xtask::{pin_downloads, project, terraform_module};

use crate::moto_api::{MotoApi, xml_first};

/// The rehearsal's command line.
#[derive(Debug, clap::Parser)]
#[command(
    name = "elastic-ci-rehearse",
    about = "Rehearse the whole release against a local AWS (moto)."
)]
pub struct RehearsalArgs {
    /// Use this running emulator instead of starting one (`cargo xtask ci` passes its
    /// own); resources get unique names.
    #[arg(long, value_name = "URL")]
    pub moto_endpoint: Option<String>,
    /// Publish the binaries and zips `cargo xtask dist` built into DIR (both
    /// architectures) instead of stand-ins.
    #[arg(long, value_name = "DIR")]
    pub dist_dir: Option<PathBuf>,
    /// Internal: run the release tasks of a prepared rehearsal (the child process).
    #[arg(long, hide = true, value_name = "JSON")]
    pub stage_release: Option<String>,
}

/// What the child process needs to run the release tasks.
#[derive(Debug, Serialize, Deserialize)]
struct Stage {
    mirror: String,
    packer_dir: PathBuf,
    dist_dir: PathBuf,
    mappings: PathBuf,
    template: PathBuf,
    summary: PathBuf,
    repository: PathBuf,
    bucket: String,
    lambda_prefix: String,
    version: String,
    steps_file: PathBuf,
}

/// One timed step.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Step {
    name: String,
    seconds: f64,
}

/// The report, as written to `report.json`.
#[derive(Debug, Serialize)]
struct Report {
    version: String,
    passed: bool,
    error: Option<String>,
    wall_time_seconds: f64,
    steps: Vec<Step>,
    stand_in_binaries: bool,
    release_bucket: String,
    template_url: String,
    terraform_module_url: String,
    scaler_buckets: Vec<String>,
    amis: BTreeMap<String, BTreeMap<String, String>>,
    artefacts: Vec<Artefact>,
    stack: Option<StackReport>,
    scaler_code_sha256: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
struct Artefact {
    key: String,
    bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
struct StackReport {
    name: String,
    status: String,
    image_id: String,
}

/// Where the report goes.
pub fn report_path() -> anyhow::Result<PathBuf> {
    Ok(project::target_dir()?.join("release-rehearsal").join("report.json"))
}

/// Runs the rehearsal; `env` is this process's environment (the staged child reads the
/// emulator's settings from it).
pub fn run(args: &RehearsalArgs, env: &HashMap<String, String>) -> anyhow::Result<()> {
    if let Some(stage) = &args.stage_release {
        let stage: Stage = serde_json::from_str(stage).context("invalid --stage-release")?;
        return run_release_tasks(&stage, env);
    }
    let started = Instant::now();
    let dir = project::target_dir()?.join("release-rehearsal");
    let work = dir.join("run");
    if work.exists() {
        std::fs::remove_dir_all(&work)
            .with_context(|| format!("failed to clear {}", work.display()))?;
    }
    std::fs::create_dir_all(&work)
        .with_context(|| format!("failed to create {}", work.display()))?;
    let mut steps = Vec::new();
    let (server, moto) = match &args.moto_endpoint {
        Some(endpoint) => (None, Moto { endpoint: endpoint.clone() }),
        None => {
            let step = Instant::now();
            let server = xtask::moto::Server::start_with_log(
                &xtask::moto::moto_dir()?,
                &work.join("moto.log"),
            )?;
            let moto = Moto { endpoint: server.endpoint.clone() };
            steps.push(Step {
                name: "start the emulator".to_owned(),
                seconds: step.elapsed().as_secs_f64(),
            });
            (Some(server), moto)
        }
    };
    let version = format!("v{}", env!("CARGO_PKG_VERSION"));
    let mut report = Report {
        version: version.clone(),
        passed: false,
        error: None,
        wall_time_seconds: 0.0,
        steps,
        stand_in_binaries: args.dist_dir.is_none(),
        release_bucket: unique_name("elastic-ci-rehearsal"),
        template_url: String::new(),
        terraform_module_url: String::new(),
        scaler_buckets: Vec::new(),
        amis: BTreeMap::new(),
        artefacts: Vec::new(),
        stack: None,
        scaler_code_sha256: None,
    };
    let result = rehearse(args, &moto, &work, &mut report);
    drop(server);
    report.wall_time_seconds = started.elapsed().as_secs_f64();
    report.passed = result.is_ok();
    report.error = result.as_ref().err().map(|error| format!("{error:#}"));
    let path = report_path()?;
    std::fs::write(&path, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("failed to write {}", path.display()))?;
    print_summary(&report, &path);
    result
}

fn rehearse(
    args: &RehearsalArgs,
    moto: &Moto,
    work: &Path,
    report: &mut Report,
) -> anyhow::Result<()> {
    let root = project::root();
    let timed = |report: &mut Report, name: &str, started: Instant| {
        report.steps.push(Step { name: name.to_owned(), seconds: started.elapsed().as_secs_f64() });
    };

    // The image template the tasks build against the emulator, with the real pins.
    let step = Instant::now();
    let packer_dir = work.join("packer");
    std::fs::create_dir_all(&packer_dir)?;
    for entry in std::fs::read_dir(root.join("packer/linux/test"))? {
        let path = entry?.path();
        if path.extension().is_some_and(|extension| extension == "hcl") {
            std::fs::copy(&path, packer_dir.join(path.file_name().context("a nameless file")?))?;
        }
    }
    let versions = packer_dir.join(pin_downloads::VERSIONS_FILE);
    std::fs::copy(root.join("packer/linux").join(pin_downloads::VERSIONS_FILE), &versions)?;
    let (mirror, fixtures) = download_mirror(&versions)?;

    let repository = work.join("repository");
    git_release(&repository, &report.version)?;
    let dist_dir = match &args.dist_dir {
        Some(dir) => dir.clone(),
        None => stand_in_dist(&work.join("dist"))?,
    };
    let out = work.join("release");
    std::fs::create_dir_all(&out)?;
    let lambda_prefix = short_name("rehearsal-lambdas-", 12);
    timed(report, "prepare (mirror, repository, template copy)", step);

    let stage = Stage {
        mirror: mirror.url(""),
        packer_dir: packer_dir.clone(),
        dist_dir: dist_dir.clone(),
        mappings: out.join("built-mappings.yml"),
        template: out.join("aws-stack.yml"),
        summary: out.join("summary.md"),
        repository,
        bucket: report.release_bucket.clone(),
        lambda_prefix: lambda_prefix.clone(),
        version: report.version.clone(),
        steps_file: work.join("steps.json"),
    };
    let log = work.join("release-tasks.log");
    let log_file = std::fs::File::create(&log)?;
    let mut child = Command::new(std::env::current_exe().context("failed to find this binary")?);
    child
        .arg("--stage-release")
        .arg(serde_json::to_string(&stage)?)
        .envs(moto.env())
        .env("SSL_CERT_FILE", mirror.ca_pem_path().context("the mirror has no CA")?)
        .stdout(log_file.try_clone()?)
        .stderr(log_file);
    for name in [
        "BUILDKITE_BRANCH",
        "BUILDKITE_TAG",
        "BUILDKITE_COMMIT",
        "BUILDKITE_PIPELINE_DEFAULT_BRANCH",
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL_EC2",
        "AWS_ENDPOINT_URL_S3",
    ] {
        child.env_remove(name);
    }
    let status = child.status().context("failed to run the release tasks")?;
    if let Ok(text) = std::fs::read_to_string(&stage.steps_file) {
        let child_steps: Vec<Step> = serde_json::from_str(&text).unwrap_or_default();
        report.steps.extend(child_steps);
    }
    if !status.success() {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        bail!(
            "the release tasks failed ({status}); the end of {}:\n{}",
            log.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    // The mirror served every pinned file: the pins name its files and digests.
    check_pins(&versions, &fixtures, &stage.mirror)?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    runtime.block_on(check_release(moto, &stage, &dist_dir, work, report))
}

/// `prefix` and the last `n_digits` digits of a unique name: short names for the
/// resources whose names have tight limits (bucket prefixes, stack names).
fn short_name(prefix: &str, n_digits: usize) -> String {
    let digits: String = unique_name("r").chars().filter(char::is_ascii_digit).collect();
    format!("{prefix}{}", &digits[digits.len().saturating_sub(n_digits)..])
}

/// The child process: the release tasks, timed.
fn run_release_tasks(stage: &Stage, env: &HashMap<String, String>) -> anyhow::Result<()> {
    let versions = stage.packer_dir.join(pin_downloads::VERSIONS_FILE);
    let template_dir = stage.packer_dir.display().to_string();
    let mappings = stage.mappings.display().to_string();
    let mut tasks: Vec<(String, Vec<String>)> = vec![(
        "pin-downloads --base-url".to_owned(),
        strings(&[
            "pin-downloads",
            "--base-url",
            &stage.mirror,
            "--file",
            &versions.display().to_string(),
        ]),
    )];
    for arch in ["x86_64", "arm64"] {
        tasks.push((
            format!("ami --arch {arch}"),
            strings(&[
                "ami",
                "--arch",
                arch,
                "--region",
                REGION,
                "--version",
                &stage.version,
                "--template",
                &template_dir,
                "--dist-dir",
                &stage.dist_dir.join(arch).display().to_string(),
                "--mappings",
                &mappings,
            ]),
        ));
    }
    tasks.push((
        "template".to_owned(),
        strings(&[
            "template",
            "--version",
            &stage.version,
            "--mappings",
            &mappings,
            "--lambda-bucket-prefix",
            &stage.lambda_prefix,
            "--output",
            &stage.template.display().to_string(),
        ]),
    ));
    tasks.push((
        "publish".to_owned(),
        strings(&[
            "publish",
            "--bucket",
            &stage.bucket,
            "--template",
            &stage.template.display().to_string(),
            "--dist-dir",
            &stage.dist_dir.display().to_string(),
            "--repository",
            &stage.repository.display().to_string(),
            "--lambda-regions",
            REGION,
            "--summary",
            &stage.summary.display().to_string(),
        ]),
    ));
    let mut steps = Vec::new();
    let mut result = Ok(());
    for (name, args) in tasks {
        eprintln!("==> cargo xtask {}", args.join(" "));
        let started = Instant::now();
        result = xtask::run_task(&args, env).with_context(|| format!("cargo xtask {name} failed"));
        steps.push(Step {
            name: format!("cargo xtask {name}"),
            seconds: started.elapsed().as_secs_f64(),
        });
        if result.is_err() {
            break;
        }
    }
    std::fs::write(&stage.steps_file, serde_json::to_vec(&steps)?)?;
    result
}

fn strings(words: &[&str]) -> Vec<String> {
    words.iter().map(|word| (*word).to_owned()).collect()
}

/// A local HTTPS server with a fixture file at the path of every pinned download, and
/// checksum files where upstream has them. Returns it and the fixtures by path.
fn download_mirror(versions: &Path) -> anyhow::Result<(TestServer, BTreeMap<String, Vec<u8>>)> {
    let mut files = BTreeMap::new();
    let mut fixtures = BTreeMap::new();
    for planned in pin_downloads::plan(versions, None)? {
        let mut sums = String::new();
        for (arch, url) in &planned.urls {
            let path = url_path(url)?;
            let body =
                format!("rehearsal fixture: {} {} for {arch}\n", planned.name, planned.version)
                    .into_bytes();
            let name = path.rsplit('/').next().unwrap_or_default().to_owned();
            sums.push_str(&format!("{}  {name}\n", hex(&Sha256::digest(&body))));
            fixtures.insert(path.clone(), body.clone());
            files.insert(path, body);
        }
        if let Some(checksums) = &planned.checksums {
            files.insert(url_path(checksums)?, sums.into_bytes());
        }
    }
    Ok((TestServer::https(file_routes(files, BTreeSet::new())), fixtures))
}

fn url_path(url: &str) -> anyhow::Result<String> {
    Ok(url::Url::parse(url).with_context(|| format!("invalid URL {url}"))?.path().to_owned())
}

/// Every pinned URL is the mirror's and every digest its fixture's.
fn check_pins(
    versions: &Path,
    fixtures: &BTreeMap<String, Vec<u8>>,
    mirror: &str,
) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(versions)?;
    let inputs: BTreeMap<String, hcl::Value> =
        hcl::from_str(&text).context("the pinned file is not HCL")?;
    let mut served = BTreeSet::new();
    for (name, value) in &inputs {
        let Some(download) = name.strip_suffix("_url") else { continue };
        let urls = value.as_object().context("a URL map")?;
        let digests = inputs
            .get(&format!("{download}_sha256"))
            .and_then(hcl::Value::as_object)
            .with_context(|| format!("no {download}_sha256"))?;
        for (arch, url) in urls {
            let url = url.as_str().unwrap_or_default();
            let path = url
                .strip_prefix(mirror.trim_end_matches('/'))
                .with_context(|| format!("{url} is not the mirror's"))?;
            let fixture = fixtures.get(path).with_context(|| format!("no fixture at {path}"))?;
            ensure!(
                digests.get(arch).and_then(hcl::Value::as_str)
                    == Some(hex(&Sha256::digest(fixture)).as_str()),
                "the pinned digest of {download} {arch} is not its file's"
            );
            served.insert(path.to_owned());
        }
    }
    ensure!(
        served.len() == fixtures.len(),
        "pinned {} of the mirror's {} files",
        served.len(),
        fixtures.len()
    );
    Ok(())
}

/// A throwaway repository whose detached `HEAD` is the release tag.
fn git_release(repository: &Path, tag: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(repository)?;
    let git = |args: &[&str]| -> anyhow::Result<()> {
        let output = Command::new("git")
            .args(["-c", "user.name=Rehearsal", "-c", "user.email=rehearsal@example.com"])
            .args(["-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false"])
            .args(args)
            .current_dir(repository)
            .output()
            .context("failed to run git")?;
        ensure!(
            output.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(())
    };
    git(&["init", "--quiet", "--initial-branch", "main"])?;
    std::fs::write(repository.join("RELEASE"), format!("{tag}\n"))?;
    git(&["add", "RELEASE"])?;
    git(&["commit", "--quiet", "-m", "release"])?;
    git(&["tag", "-a", tag, "-m", tag])?;
    git(&["checkout", "--quiet", "--detach", tag])
}

/// Small stand-ins named as `cargo xtask dist` names its output: a zip holding a
/// `bootstrap` script per architecture, and a script per binary.
fn stand_in_dist(dir: &Path) -> anyhow::Result<PathBuf> {
    for arch in ["x86_64", "arm64"] {
        let binaries = dir.join(arch);
        std::fs::create_dir_all(&binaries)?;
        for binary in ["elastic-ci-bootstrap", "elastic-ci-hooks", "elastic-ci"] {
            std::fs::write(
                binaries.join(binary),
                format!("#!/bin/sh\necho 'release rehearsal stand-in for {arch} {binary}'\n"),
            )?;
        }
        let zip_path = dir.join(format!("elastic-ci-scaler-{arch}.zip"));
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&zip_path)?);
        let options = zip::write::SimpleFileOptions::default().unix_permissions(0o755);
        zip.start_file("bootstrap", options)?;
        zip.write_all(
            format!("#!/bin/sh\necho 'release rehearsal stand-in scaler for {arch}'\n").as_bytes(),
        )?;
        zip.finish()?;
    }
    Ok(dir.to_path_buf())
}

/// What a user would do with the published release, and what they would get.
async fn check_release(
    moto: &Moto,
    stage: &Stage,
    dist_dir: &Path,
    work: &Path,
    report: &mut Report,
) -> anyhow::Result<()> {
    let (row, published_zip) = check_published_files(moto, stage, dist_dir, report).await?;
    check_stack_from_url(moto, stage, &row, &published_zip, report).await?;
    check_terraform_module(moto, stage, &row, work, report).await
}

/// Every key and its size, the checksums of the version's files, the aliases, the
/// images and the scaler zip; returns the emulator region's images and the zip.
async fn check_published_files(
    moto: &Moto,
    stage: &Stage,
    dist_dir: &Path,
    report: &mut Report,
) -> anyhow::Result<(BTreeMap<String, String>, Vec<u8>)> {
    let version = &stage.version;
    let bucket = &stage.bucket;
    let s3 = moto.s3();
    let step = Instant::now();
    let listed = s3
        .list_objects_v2()
        .bucket(bucket)
        .send()
        .await
        .context("failed to list the release bucket")?;
    for object in listed.contents() {
        report.artefacts.push(Artefact {
            key: object.key().unwrap_or_default().to_owned(),
            bytes: object.size().and_then(|size| u64::try_from(size).ok()).unwrap_or(0),
        });
    }
    let sums = String::from_utf8(get(moto, bucket, &format!("{version}/SHA256SUMS")).await?)?;
    ensure!(
        sums.lines().count() == 12,
        "SHA256SUMS lists {} files, expected 12",
        sums.lines().count()
    );
    for line in sums.lines() {
        let (digest, name) = line.split_once("  ").context("a SHA256SUMS line")?;
        let body = get(moto, bucket, &format!("{version}/{name}")).await?;
        ensure!(
            hex(&Sha256::digest(&body)) == digest,
            "{version}/{name} does not match SHA256SUMS"
        );
    }
    for alias in ["latest/aws-stack.yml", "aws-stack.yml"] {
        ensure!(
            get(moto, bucket, alias).await?
                == get(moto, bucket, &format!("{version}/aws-stack.yml")).await?,
            "{alias} is not the release's template"
        );
    }
    let mappings: BTreeMap<String, BTreeMap<String, String>> =
        serde_yaml_ng::from_slice(&get(moto, bucket, &format!("{version}/mappings.yml")).await?)?;
    let row = mappings
        .get(REGION)
        .context("the published mappings have no region of the emulator")?
        .clone();
    for variant in ["linuxamd64", "linuxarm64"] {
        ensure!(
            row.get(variant).is_some_and(|ami| ami.starts_with("ami-")),
            "no {variant} image in {REGION}"
        );
    }
    report.amis = mappings.clone();
    let scaler_bucket = format!("{}-{REGION}", stage.lambda_prefix);
    report.scaler_buckets.push(scaler_bucket.clone());
    let listed = s3
        .list_objects_v2()
        .bucket(&scaler_bucket)
        .send()
        .await
        .context("failed to list the scaler bucket")?;
    for object in listed.contents() {
        report.artefacts.push(Artefact {
            key: format!("s3://{scaler_bucket}/{}", object.key().unwrap_or_default()),
            bytes: object.size().and_then(|size| u64::try_from(size).ok()).unwrap_or(0),
        });
    }
    let zip_key = format!("elastic-ci-scaler/{version}/elastic-ci-scaler-x86_64.zip");
    let published_zip = get(moto, &scaler_bucket, &zip_key).await?;
    ensure!(
        published_zip == std::fs::read(dist_dir.join("elastic-ci-scaler-x86_64.zip"))?,
        "the published scaler zip is not the dist one"
    );
    report.steps.push(Step {
        name: "check the published files".to_owned(),
        seconds: step.elapsed().as_secs_f64(),
    });

    Ok((row, published_zip))
}

/// A stack from the published URL, with nothing but the token: it completes, with the
/// release's image and the published scaler code.
async fn check_stack_from_url(
    moto: &Moto,
    stage: &Stage,
    row: &BTreeMap<String, String>,
    published_zip: &[u8],
    report: &mut Report,
) -> anyhow::Result<()> {
    let (version, bucket) = (&stage.version, &stage.bucket);
    let step = Instant::now();
    report.template_url = format!("https://s3.amazonaws.com/{bucket}/{version}/aws-stack.yml");
    let stack_name = short_name("rehearsal", 10);
    let cloudformation = moto.cloudformation();
    cloudformation
        .create_stack()
        .stack_name(&stack_name)
        .template_url(&report.template_url)
        .parameters(
            Parameter::builder()
                .parameter_key("BuildkiteAgentToken")
                .parameter_value("bkua_rehearsal_token")
                .build(),
        )
        .capabilities(Capability::CapabilityIam)
        .capabilities(Capability::CapabilityNamedIam)
        .send()
        .await
        .map_err(|error| {
            anyhow::anyhow!(
                "create_stack from {} failed: {}",
                report.template_url,
                error.into_service_error()
            )
        })?;
    let described = cloudformation.describe_stacks().stack_name(&stack_name).send().await?;
    let stack = described.stacks().first().context("the stack is not described")?;
    let status = stack.stack_status().map(|status| status.as_str().to_owned()).unwrap_or_default();
    let listed = cloudformation.list_stack_resources().stack_name(&stack_name).send().await?;
    let physical = |logical: &str| {
        listed
            .stack_resource_summaries()
            .iter()
            .find(|summary| summary.logical_resource_id() == Some(logical))
            .and_then(|summary| summary.physical_resource_id())
            .map(str::to_owned)
            .with_context(|| format!("the stack has no {logical}"))
    };
    let api = MotoApi::new(&moto.endpoint);
    let launch_template = api
        .try_query(
            "ec2",
            "2016-11-15",
            &[
                ("Action", "DescribeLaunchTemplateVersions"),
                ("LaunchTemplateId", &physical("AgentLaunchTemplate")?),
            ],
        )
        .await?;
    let image_id = xml_first(&launch_template, "imageId").unwrap_or_default();
    report.stack = Some(StackReport {
        name: stack_name.clone(),
        status: status.clone(),
        image_id: image_id.clone(),
    });
    ensure!(
        stack.stack_status() == Some(&StackStatus::CreateComplete),
        "the stack is {status}: {}",
        stack.stack_status_reason().unwrap_or_default()
    );
    ensure!(
        Some(&image_id) == row.get("linuxamd64"),
        "the launch template's image is {image_id:?}, not the release's {:?}",
        row.get("linuxamd64")
    );
    let function = api
        .try_get("lambda", &format!("/2015-03-31/functions/{}", physical("AutoscalingFunction")?))
        .await?;
    let code_sha256 =
        function["Configuration"]["CodeSha256"].as_str().unwrap_or_default().to_owned();
    let expected = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(published_zip));
    ensure!(
        code_sha256 == expected,
        "the scaler's code is {code_sha256:?}, not the published zip's {expected:?}"
    );
    report.scaler_code_sha256 = Some(code_sha256);
    report.steps.push(Step {
        name: "create_stack from the template URL".to_owned(),
        seconds: step.elapsed().as_secs_f64(),
    });

    Ok(())
}

/// The Terraform module as a user would fetch it: it unpacks and parses, carries the
/// release's stamp, finds its zip, and its minimal example needs only a token.
async fn check_terraform_module(
    moto: &Moto,
    stage: &Stage,
    row: &BTreeMap<String, String>,
    work: &Path,
    report: &mut Report,
) -> anyhow::Result<()> {
    let (version, bucket) = (&stage.version, &stage.bucket);
    let step = Instant::now();
    report.terraform_module_url =
        format!("https://s3.amazonaws.com/{bucket}/{version}/{}", terraform_module::ARCHIVE_NAME);
    let archive =
        get(moto, bucket, &format!("{version}/{}", terraform_module::ARCHIVE_NAME)).await?;
    let module = work.join("terraform-module");
    tar::Archive::new(flate2::read::GzDecoder::new(archive.as_slice()))
        .unpack(&module)
        .context("the module archive does not unpack")?;
    let mut n_files = 0;
    for file in walk(&module)? {
        if file.extension().is_some_and(|extension| extension == "tf") {
            let text = std::fs::read_to_string(&file)?;
            hcl::parse(&text).with_context(|| format!("{} does not parse", file.display()))?;
            n_files += 1;
        }
    }
    ensure!(n_files >= 8, "the module archive holds {n_files} .tf files");
    let stamp = terraform_module::read_stamp(&std::fs::read_to_string(module.join("main.tf"))?)?;
    ensure!(stamp.version == *version, "the module's stack_version is {}", stamp.version);
    ensure!(
        stamp.lambda_bucket_prefix == stage.lambda_prefix,
        "the module's scaler bucket prefix is {}",
        stamp.lambda_bucket_prefix
    );
    ensure!(
        stamp.ami_mapping.get(REGION) == Some(row),
        "the module's images are not the release's: {:?}",
        stamp.ami_mapping
    );
    let scaler_tf = std::fs::read_to_string(module.join("scaler.tf"))?;
    for expression in [
        "\"${local.lambda_bucket_prefix}-${local.region}\"",
        "\"elastic-ci-scaler/${local.stack_version}/elastic-ci-scaler-${var.lambda_architecture}.zip\"",
    ] {
        ensure!(scaler_tf.contains(expression), "the module does not find its zip at {expression}");
    }
    // The minimal example applies as shipped: its module block needs only a token.
    let minimal: hcl::Body =
        hcl::from_str(&std::fs::read_to_string(module.join("examples/minimal/main.tf"))?)?;
    let inputs: BTreeSet<String> = minimal
        .blocks()
        .filter(|block| block.identifier() == "module")
        .flat_map(|block| block.body().attributes().map(|attribute| attribute.key().to_owned()))
        .collect();
    let expected: BTreeSet<String> =
        ["source", "stack_name", "buildkite_queue", "buildkite_agent_token"]
            .iter()
            .map(|key| (*key).to_owned())
            .collect();
    ensure!(inputs == expected, "examples/minimal sets {inputs:?}, expected only {expected:?}");
    report.steps.push(Step {
        name: "check the Terraform module".to_owned(),
        seconds: step.elapsed().as_secs_f64(),
    });
    Ok(())
}

async fn get(moto: &Moto, bucket: &str, key: &str) -> anyhow::Result<Vec<u8>> {
    let object =
        moto.s3().get_object().bucket(bucket).key(key).send().await.map_err(|error| {
            anyhow::anyhow!("s3://{bucket}/{key}: {}", error.into_service_error())
        })?;
    Ok(object.body.collect().await.context("failed to read an object")?.to_vec())
}

fn walk(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current)? {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    Ok(files)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn print_summary(report: &Report, path: &Path) {
    eprintln!();
    eprintln!(
        "release rehearsal of {} ({})",
        report.version,
        if report.stand_in_binaries { "stand-in binaries" } else { "dist binaries" }
    );
    for step in &report.steps {
        eprintln!("  {:<48} {:>6.1} s", step.name, step.seconds);
    }
    eprintln!("published (keys of s3://{} unless named):", report.release_bucket);
    for artefact in &report.artefacts {
        eprintln!("  {:<48} {:>10} bytes", artefact.key, artefact.bytes);
    }
    if let Some(stack) = &report.stack {
        eprintln!(
            "stack {} from {}: {} (image {})",
            stack.name, report.template_url, stack.status, stack.image_id
        );
    }
    match &report.error {
        None => eprintln!(
            "rehearsal passed in {:.1} s; report: {}",
            report.wall_time_seconds,
            path.display()
        ),
        Some(error) => eprintln!(
            "rehearsal FAILED after {:.1} s: {error}\nreport: {}",
            report.wall_time_seconds,
            path.display()
        ),
    }
}
