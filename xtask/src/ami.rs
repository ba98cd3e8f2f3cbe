//! `cargo xtask ami`: builds the agent AMI with Packer and records its id.
//!
//! 1. Builds the instance binaries (`cargo xtask dist`), unless `--dist-dir` names them.
//! 2. Runs `packer build -machine-readable` on `packer/<os>` with the region, arch,
//!    image name, version, binaries directory, visibility, manifest path and (when
//!    `AWS_ENDPOINT_URL_EC2` or `AWS_ENDPOINT_URL` is set) the EC2 endpoint, echoing
//!    Packer's progress, and reads the AMI id from the manifest Packer's `manifest`
//!    post-processor writes (checked against its `artifact` lines).
//! 3. With `--copy-to-regions`, copies the AMI to each region (EC2 CopyImage), waits
//!    until every copy is available, printing progress, and with `--public` lets every
//!    account launch the copies too (Packer already did that for the source).
//! 4. Records every id in the mappings file that `cargo xtask template` merges, under the
//!    OS and arch's column (`linuxamd64` or `linuxarm64`), keeping the other entries.
//!
//! The OS is a flag: `--os windows` builds `packer/windows` (x86_64 only, column
//! `windowsamd64`) from the `.exe`s in `--dist-dir`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, anyhow, bail, ensure};
use elastic_ci_aws::config::{AwsSettings, aws_sdk_config};
use elastic_ci_aws::ec2::{CopyImageRequest, Ec2MachineImages, ImageState, MachineImages};
use elastic_ci_aws::error::AwsErrorKind;
use elastic_ci_core::shell;

use crate::flags::AmiArgs;
use crate::project;
use crate::template::{self, AmiMappings};

pub(crate) const AFTER_HELP: &str = "\
The image is named elastic-ci-stack-<os>-<arch>-<version>-<unix time>. AWS
access follows the standard variables (AWS_PROFILE, AWS_REGION, ...); when
AWS_ENDPOINT_URL_EC2 or AWS_ENDPOINT_URL is set, Packer and the copies use that
endpoint (a local emulator).

Third-party downloads baked into the image are pinned with SHA-256 digests in
packer/linux/versions.auto.pkrvars.hcl (`cargo xtask pin-downloads` writes them):
the build refuses to start without them.";

use crate::pin_downloads::VERSIONS_FILE;
/// The instance binaries the image needs from the dist build.
const BINARIES: [&str; 2] = ["elastic-ci-bootstrap", "elastic-ci-hooks"];
/// How often a copy's state is checked; EC2 takes minutes to copy an image.
const POLL_INTERVAL: Duration = Duration::from_secs(15);
/// How long copies may take, together.
const COPY_TIMEOUT: Duration = Duration::from_secs(90 * 60);
/// Consecutive failed state checks tolerated per copy before giving up.
const MAX_POLL_FAILURES: u32 = 5;

/// The operating system of an image: its Packer template is `packer/<os>`, its mapping
/// columns `<os>amd64` and `<os>arm64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Os {
    #[value(name = "linux")]
    Linux,
    /// Windows Server 2022, x86_64 only.
    #[value(name = "windows")]
    Windows,
}

impl Os {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Os::Linux => "linux",
            Os::Windows => "windows",
        }
    }

    /// The instance binaries the image takes from the dist directory.
    pub(crate) fn binaries(self) -> [&'static str; 2] {
        match self {
            Os::Linux => BINARIES,
            Os::Windows => ["elastic-ci-bootstrap.exe", "elastic-ci-hooks.exe"],
        }
    }
}

/// The CPU architecture of an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Arch {
    #[value(name = "x86_64")]
    X86_64,
    #[value(name = "arm64")]
    Arm64,
}

impl Arch {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Arm64 => "arm64",
        }
    }

    /// The column of the template's `AWSRegion2AMI` mapping for an image of `os`.
    pub(crate) fn mapping_variant(self, os: Os) -> String {
        let arch = match self {
            Arch::X86_64 => "amd64",
            Arch::Arm64 => "arm64",
        };
        format!("{}{arch}", os.as_str())
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

pub(crate) fn run(args: &AmiArgs, env: &HashMap<String, String>) -> anyhow::Result<()> {
    let root = project::root();
    let template_dir =
        args.template.clone().unwrap_or_else(|| root.join("packer").join(args.os.as_str()));
    ensure!(
        !(args.os == Os::Windows && args.arch == Arch::Arm64),
        "Windows images are built for x86_64 only: leave out --arch arm64"
    );
    let region = args.region.clone().unwrap_or_else(|| default_region(env));
    validate_region(&region)?;
    for copy_region in &args.copy_to_regions {
        validate_region(copy_region)?;
        ensure!(
            copy_region != &region,
            "--copy-to-regions names {copy_region}, the region the image is built in"
        );
    }
    let version = match &args.version {
        Some(version) => version.clone(),
        None => template::release_version(&root, env),
    };
    let ami_name =
        format!("elastic-ci-stack-{}-{}-{version}-{}", args.os.as_str(), args.arch, unix_time());
    validate_ami_name(&ami_name)?;
    let mappings_path = match &args.mappings {
        Some(path) => path.clone(),
        None => project::target_dir()?.join("dist").join("mappings.yml"),
    };
    let variant = args.arch.mapping_variant(args.os);
    let say = |line: String| {
        if args.dry_run {
            println!("{line}");
        }
    };

    let manifest_path = mappings_path.with_file_name(format!(
        "packer-manifest-{}-{}.json",
        args.os.as_str(),
        args.arch
    ));
    let missing_digests = missing_digests(&template_dir, args.arch)?;
    if !missing_digests.is_empty() {
        let message = format!(
            "no SHA-256 digest for {} in {} for {}: pin the downloads with `cargo xtask pin-downloads` first",
            missing_digests.join(", "),
            template_dir.join(VERSIONS_FILE).display(),
            args.arch
        );
        ensure!(args.dry_run, "{message}");
        eprintln!("warning: {message}");
    }

    let dist_dir = match &args.dist_dir {
        Some(dir) => dir.clone(),
        None if args.os == Os::Windows => bail!(
            "pass --dist-dir with the Windows binaries (cargo build --profile ship --target x86_64-pc-windows-gnu -p elastic-ci-bootstrap -p elastic-ci-hooks builds them)"
        ),
        None => {
            let (mut command, dir) = dist_command(args.arch)?;
            say(format!("would run: cargo xtask {}", display_args(&command)));
            if !args.dry_run {
                run_step(&mut command, "build the instance binaries")?;
            }
            dir
        }
    };
    if !args.dry_run {
        for binary in args.os.binaries() {
            let path = dist_dir.join(binary);
            ensure!(
                path.is_file(),
                "{} is missing: build the {} instance binaries with `cargo xtask dist`, or pass --dist-dir",
                path.display(),
                args.arch
            );
        }
    }

    let image = ImageBuild {
        template_dir: &template_dir,
        region: &region,
        ami_name: &ami_name,
        version: &version,
        dist_dir: &dist_dir,
        manifest: &manifest_path,
    };
    let mut packer = packer_command(&image, args, env);
    say(format!("would run: {}", display_command(&packer)));
    let source_ami = if args.dry_run {
        "<AMI id from Packer>".to_owned()
    } else {
        // A manifest left by an earlier build must not be mistaken for this one's.
        match std::fs::remove_file(&manifest_path) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                return Err(error)
                    .with_context(|| format!("failed to remove {}", manifest_path.display()));
            }
        }
        if let Some(parent) = manifest_path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("failed to create {}", parent.display()))?;
        }
        let ami = run_packer(&mut packer, &region, &manifest_path)?;
        // Recorded at once, so a failed copy does not lose the image that was built.
        record_mappings(&mappings_path, &variant, &[(region.clone(), ami.clone())])?;
        ami
    };
    let mut built = vec![(region.clone(), source_ami.clone())];

    if !args.copy_to_regions.is_empty() {
        let requests: Vec<CopyImageRequest> = args
            .copy_to_regions
            .iter()
            .map(|copy_region| CopyImageRequest {
                source_region: region.clone(),
                source_image_id: source_ami.clone(),
                region: copy_region.clone(),
                name: ami_name.clone(),
                description: Some(format!("Copy of {source_ami} ({ami_name}) from {region}")),
            })
            .collect();
        if args.dry_run {
            for request in &requests {
                println!(
                    "would call EC2 CopyImage in {} (source {} in {}, name {}, with its tags)",
                    request.region, request.source_image_id, request.source_region, request.name
                );
                println!(
                    "would call EC2 DescribeImages in {} every {}s until the copy is available",
                    request.region,
                    POLL_INTERVAL.as_secs()
                );
                if args.public {
                    println!(
                        "would call EC2 ModifyImageAttribute in {} (launch permission: group all)",
                        request.region
                    );
                }
            }
            built.extend(requests.iter().map(|r| (r.region.clone(), "<copy id>".to_owned())));
        } else {
            built.extend(copy_images(&requests, args.public, env)?);
        }
    }

    if args.dry_run {
        println!(
            "would write {} with {} for {}",
            mappings_path.display(),
            variant,
            built.iter().map(|(region, _)| region.as_str()).collect::<Vec<_>>().join(", ")
        );
        return Ok(());
    }
    let mappings = record_mappings(&mappings_path, &variant, &built)?;
    eprintln!("recorded in {}:", mappings_path.display());
    for (region, ami) in &built {
        println!("{region} {variant} {ami}");
    }
    eprintln!(
        "{} region{} in the mappings; render the template with `cargo xtask template`",
        mappings.len(),
        if mappings.len() == 1 { "" } else { "s" }
    );
    Ok(())
}

/// AWS_REGION, else AWS_DEFAULT_REGION, else us-east-1.
pub(crate) fn default_region(env: &HashMap<String, String>) -> String {
    non_empty(env, "AWS_REGION")
        .or_else(|| non_empty(env, "AWS_DEFAULT_REGION"))
        .unwrap_or_else(|| "us-east-1".to_owned())
}

/// The command that builds the instance binaries (`cargo xtask dist`, run as this very
/// binary so that cargo has nothing to rebuild underneath it), and where they land.
fn dist_command(arch: Arch) -> anyhow::Result<(Command, PathBuf)> {
    let xtask = std::env::current_exe().context("failed to find the xtask binary")?;
    let mut command = Command::new(xtask);
    command.arg("dist");
    if arch == Arch::X86_64 {
        command.arg("--no-arm64");
    }
    // Its summary would mix with the AMI ids this task prints.
    command.stdout(std::io::stderr()).current_dir(project::root());
    Ok((command, project::target_dir()?.join("dist").join(arch.as_str())))
}

/// What one Packer build makes, and from what.
struct ImageBuild<'a> {
    template_dir: &'a Path,
    region: &'a str,
    ami_name: &'a str,
    version: &'a str,
    dist_dir: &'a Path,
    manifest: &'a Path,
}

fn packer_command(
    image: &ImageBuild<'_>,
    args: &AmiArgs,
    env: &HashMap<String, String>,
) -> Command {
    let mut vars = vec![
        ("region", image.region.to_owned()),
        ("arch", args.arch.as_str().to_owned()),
        ("ami_name", image.ami_name.to_owned()),
        ("version", image.version.to_owned()),
        ("dist_dir", image.dist_dir.display().to_string()),
        ("public", args.public.to_string()),
        ("manifest", image.manifest.display().to_string()),
    ];
    if args.encrypt_boot {
        vars.push(("encrypt_boot", "true".to_owned()));
    }
    if let Some(key) = &args.kms_key_id {
        vars.push(("kms_key_id", key.clone()));
    }
    if let Some(endpoint) = ec2_endpoint(env) {
        vars.push(("ec2_endpoint", endpoint));
    }
    let mut command = Command::new("packer");
    command.args(["build", "-machine-readable", "-color=false"]);
    for (name, value) in vars {
        command.arg("-var").arg(format!("{name}={value}"));
    }
    command.arg(image.template_dir);
    command
}

/// The endpoint the SDK would use for EC2, for Packer (which predates these variables).
fn ec2_endpoint(env: &HashMap<String, String>) -> Option<String> {
    non_empty(env, "AWS_ENDPOINT_URL_EC2").or_else(|| non_empty(env, "AWS_ENDPOINT_URL"))
}

/// Runs Packer, echoing its progress to stderr, and returns the AMI id it built in
/// `region`, read from the manifest and checked against Packer's artifact lines.
fn run_packer(command: &mut Command, region: &str, manifest: &Path) -> anyhow::Result<String> {
    eprintln!("==> {}", display_command(command));
    let mut child = command
        .stdout(Stdio::piped())
        .spawn()
        .context("failed to run packer (install it: apt-get install packer)")?;
    let stdout = child.stdout.take().context("packer's output is not captured")?;
    let mut artifacts = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("failed to read packer's output")?;
        match parse_machine_line(&line) {
            Some(MachineLine::Ui(text)) => eprintln!("{}", text.trim_end()),
            Some(MachineLine::ArtifactIds(ids)) => artifacts.extend(ids),
            None => {}
        }
    }
    let status = child.wait().context("failed to wait for packer")?;
    ensure!(status.success(), "packer build failed ({status}): see its output above");
    let text = std::fs::read_to_string(manifest).with_context(|| {
        format!("packer finished without writing its manifest {}", manifest.display())
    })?;
    let ami = manifest_ami(&text, region)
        .with_context(|| format!("invalid packer manifest {}", manifest.display()))?;
    let reported = artifacts
        .into_iter()
        .find_map(|(artifact_region, ami)| (artifact_region == region).then_some(ami));
    ensure!(
        reported.as_deref().is_none_or(|reported| reported == ami),
        "packer reported {} in {region} but its manifest says {ami}",
        reported.unwrap_or_default()
    );
    Ok(ami)
}

/// The AMI id in `region` of the latest run recorded in a Packer manifest
/// (`{"builds": [{"artifact_id": "region:ami-…,…", "packer_run_uuid": …}], "last_run_uuid": …}`).
fn manifest_ami(text: &str, region: &str) -> anyhow::Result<String> {
    let manifest: serde_json::Value = serde_json::from_str(text).context("not JSON")?;
    let last_run = manifest["last_run_uuid"].as_str().context("no last_run_uuid")?;
    let builds = manifest["builds"].as_array().context("no builds")?;
    let artifact = builds
        .iter()
        .rev()
        .find(|build| build["packer_run_uuid"].as_str() == Some(last_run))
        .and_then(|build| build["artifact_id"].as_str())
        .context("no build of the last run")?;
    artifact
        .split(',')
        .filter_map(|pair| pair.split_once(':'))
        .find_map(|(artifact_region, ami)| (artifact_region == region).then(|| ami.to_owned()))
        .ok_or_else(|| anyhow!("no AMI in {region} among {artifact}"))
}

/// A line of Packer's `-machine-readable` output that matters here.
#[derive(Debug, PartialEq, Eq)]
enum MachineLine {
    /// A message for the user.
    Ui(String),
    /// An artifact's ids: `(region, AMI id)` pairs.
    ArtifactIds(Vec<(String, String)>),
}

/// Parses `timestamp,target,type,data…`; commas inside data are `%!(PACKER_COMMA)`
/// and newlines `\n`.
fn parse_machine_line(line: &str) -> Option<MachineLine> {
    let mut fields = line.splitn(4, ',');
    let (_timestamp, _target, kind, data) =
        (fields.next()?, fields.next()?, fields.next()?, fields.next()?);
    let data: Vec<String> = data
        .split(',')
        .map(|field| field.replace("%!(PACKER_COMMA)", ",").replace("\\n", "\n"))
        .collect();
    match (kind, data.as_slice()) {
        ("ui", [_level, text, ..]) => Some(MachineLine::Ui(text.clone())),
        ("artifact", [_index, key, value, ..]) if key == "id" => {
            let ids = value
                .split(',')
                .filter_map(|pair| pair.split_once(':'))
                .map(|(region, ami)| (region.to_owned(), ami.to_owned()))
                .collect();
            Some(MachineLine::ArtifactIds(ids))
        }
        _ => None,
    }
}

/// Starts every copy, waits for all of them, then makes them public when asked.
/// Returns `(region, AMI id)` per copy.
fn copy_images(
    requests: &[CopyImageRequest],
    public: bool,
    env: &HashMap<String, String>,
) -> anyhow::Result<Vec<(String, String)>> {
    project::block_on(async {
        let images = machine_images(env).await;
        let mut copies = Vec::new();
        for request in requests {
            let image_id = images.copy_image(request).await.with_context(|| {
                format!("failed to copy {} to {}", request.source_image_id, request.region)
            })?;
            eprintln!("copying {} to {}: {image_id}", request.source_image_id, request.region);
            copies.push((request.region.clone(), image_id));
        }
        wait_until_available(&images, &copies, POLL_INTERVAL, COPY_TIMEOUT).await?;
        if public {
            for (region, image_id) in &copies {
                images
                    .make_public(region, image_id)
                    .await
                    .with_context(|| format!("failed to make {image_id} in {region} public"))?;
                eprintln!("{image_id} in {region} is public");
            }
        }
        Ok(copies)
    })
}

/// The EC2 image calls, with the AWS settings of `env`.
pub(crate) async fn machine_images(env: &HashMap<String, String>) -> Ec2MachineImages {
    let settings = AwsSettings::from_env_map(env);
    Ec2MachineImages::new(&aws_sdk_config(&settings).await)
}

/// Polls every copy until all are available, printing each change of state; fails on
/// a copy that ends unusable, disappears, or is not done by `timeout`.
async fn wait_until_available(
    images: &dyn MachineImages,
    copies: &[(String, String)],
    poll_interval: Duration,
    timeout: Duration,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut states: BTreeMap<&(String, String), (Option<ImageState>, u32)> =
        copies.iter().map(|copy| (copy, (None, 0))).collect();
    loop {
        for (copy, (last, failures)) in &mut states {
            let (region, image_id) = copy;
            if *last == Some(ImageState::Available) {
                continue;
            }
            match images.describe_image(region, image_id).await {
                Ok(Some(image)) => {
                    *failures = 0;
                    if last.as_ref() != Some(&image.state) {
                        eprintln!(
                            "{region} {image_id}: {} after {:.0?}",
                            image.state,
                            started.elapsed()
                        );
                    }
                    if let ImageState::Unusable(state) = &image.state {
                        bail!("the copy {image_id} in {region} ended {state}");
                    }
                    *last = Some(image.state);
                }
                Ok(None) => bail!("the copy {image_id} in {region} disappeared"),
                Err(error)
                    if *failures + 1 < MAX_POLL_FAILURES
                        && error.kind != AwsErrorKind::AccessDenied =>
                {
                    *failures += 1;
                    eprintln!("{region} {image_id}: could not check ({error}); trying again");
                }
                Err(error) => {
                    return Err(error).with_context(|| {
                        format!("failed to check the copy {image_id} in {region}")
                    });
                }
            }
        }
        let pending: Vec<String> = states
            .iter()
            .filter(|(_, (state, _))| *state != Some(ImageState::Available))
            .map(|((region, image_id), _)| format!("{image_id} in {region}"))
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        ensure!(
            started.elapsed() < timeout,
            "copies not available after {timeout:?}: {}",
            pending.join(", ")
        );
        eprintln!(
            "waiting for {} cop{} ({:.0?} so far)",
            pending.len(),
            if pending.len() == 1 { "y" } else { "ies" },
            started.elapsed()
        );
        tokio::time::sleep(poll_interval).await;
    }
}

/// Merges `built` into the mappings file under the column `variant` and writes it back
/// atomically; returns the whole mapping.
fn record_mappings(
    path: &Path,
    variant: &str,
    built: &[(String, String)],
) -> anyhow::Result<AmiMappings> {
    let mut mappings = match std::fs::read_to_string(path) {
        Ok(text) => template::parse_mappings(&text, path)?,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => AmiMappings::new(),
        Err(error) => {
            return Err(error).with_context(|| format!("failed to read {}", path.display()));
        }
    };
    for (region, ami) in built {
        mappings.entry(region.clone()).or_default().insert(variant.to_owned(), ami.clone());
    }
    let text = serde_yaml_ng::to_string(&mappings).context("failed to serialize the mappings")?;
    // The template task reads the file back; never let it see a malformed one.
    template::parse_mappings(&text, path)?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("failed to create {}", parent.display()))?;
    }
    let partial = path.with_extension("yml.partial");
    std::fs::write(&partial, text)
        .with_context(|| format!("failed to write {}", partial.display()))?;
    std::fs::rename(&partial, path)
        .with_context(|| format!("failed to write {}", path.display()))?;
    Ok(mappings)
}

/// The `*_sha256` inputs of the versions file that have no digest for `arch`, and the
/// `*_url` inputs without an HTTPS URL for it.
fn missing_digests(template_dir: &Path, arch: Arch) -> anyhow::Result<Vec<String>> {
    let path = template_dir.join(VERSIONS_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        // A template without pinned downloads (the emulator's test variant).
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => {
            return Err(error).with_context(|| format!("failed to read {}", path.display()));
        }
    };
    let inputs: BTreeMap<String, hcl::Value> =
        hcl::from_str(&text).with_context(|| format!("{} is not valid HCL", path.display()))?;
    let is_digest = |value: &hcl::Value| {
        value.as_str().is_some_and(|digest| {
            digest.len() == 64
                && digest.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        })
    };
    let is_url = |value: &hcl::Value| value.as_str().is_some_and(|url| url.starts_with("https://"));
    // By architecture (Linux), or one value (Windows, x86_64 only).
    let for_arch = |value: &hcl::Value| match value.as_object() {
        Some(by_arch) => by_arch.get(arch.as_str()).cloned(),
        None => Some(value.clone()),
    };
    Ok(inputs
        .iter()
        .filter(|(name, value)| {
            if name.ends_with("_sha256") {
                !for_arch(value).as_ref().is_some_and(is_digest)
            } else if name.ends_with("_url") {
                !for_arch(value).as_ref().is_some_and(is_url)
            } else {
                false
            }
        })
        .map(|(name, _)| name.clone())
        .collect())
}

fn run_step(command: &mut Command, what: &str) -> anyhow::Result<()> {
    eprintln!("==> {}", display_command(command));
    let status = command.status().with_context(|| format!("failed to {what}"))?;
    ensure!(status.success(), "failed to {what} ({status})");
    Ok(())
}

/// A command as a shell would take it.
pub(crate) fn display_command(command: &Command) -> String {
    format!("{} {}", shell::quote(&command.get_program().to_string_lossy()), display_args(command))
}

fn display_args(command: &Command) -> String {
    command
        .get_args()
        .map(|word| shell::quote(&word.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ")
}

pub(crate) fn validate_region(region: &str) -> anyhow::Result<()> {
    let parts: Vec<&str> = region.split('-').collect();
    let valid = parts.len() >= 3
        && parts.iter().all(|part| {
            !part.is_empty() && part.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
        && parts.last().is_some_and(|last| last.chars().all(|c| c.is_ascii_digit()));
    ensure!(valid, "invalid region {region:?}: expected a name such as us-east-1");
    Ok(())
}

/// EC2's rules for image names, so a bad version fails before Packer starts.
fn validate_ami_name(name: &str) -> anyhow::Result<()> {
    let valid = (3..=128).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "()[] ./-'@_".contains(c));
    ensure!(
        valid,
        "invalid image name {name:?}: the version may only hold letters, digits and ()[] ./-'@_"
    );
    Ok(())
}

fn non_empty(env: &HashMap<String, String>, name: &str) -> Option<String> {
    env.get(name).map(|value| value.trim()).filter(|value| !value.is_empty()).map(str::to_owned)
}

fn unix_time() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image_checks::TEMPLATE_DIR;
    use crate::test_images::TestImages;

    #[test]
    fn reads_ui_lines_and_artifact_ids() {
        let output = "\
1795958509,,ui,say,==> amazon-ebs.al2023: Creating AMI x from instance i-1
1795958509,,ui,message,    amazon-ebs.al2023: AMI: ami-104654a401cb2ffab
1795958509,amazon-ebs.al2023,artifact-count,1
1795958509,amazon-ebs.al2023,artifact,0,builder-id,mitchellh.amazonebs
1795958509,amazon-ebs.al2023,artifact,0,id,us-east-1:ami-104654a401cb2ffab%!(PACKER_COMMA)eu-west-1:ami-0aa
1795958509,amazon-ebs.al2023,artifact,0,string,AMIs were created:\\nus-east-1: ami-104654a401cb2ffab\\n";
        let lines: Vec<MachineLine> = output.lines().filter_map(parse_machine_line).collect();
        assert_eq!(
            lines,
            [
                MachineLine::Ui(
                    "==> amazon-ebs.al2023: Creating AMI x from instance i-1".to_owned()
                ),
                MachineLine::Ui("    amazon-ebs.al2023: AMI: ami-104654a401cb2ffab".to_owned()),
                MachineLine::ArtifactIds(vec![
                    ("us-east-1".to_owned(), "ami-104654a401cb2ffab".to_owned()),
                    ("eu-west-1".to_owned(), "ami-0aa".to_owned()),
                ]),
            ]
        );
        assert_eq!(parse_machine_line("not machine readable"), None);
    }

    #[test]
    fn reads_the_ami_of_the_last_run_from_the_manifest() {
        let manifest = r#"{"builds": [
            {"name": "al2023", "artifact_id": "us-east-1:ami-0old", "packer_run_uuid": "run-1"},
            {"name": "al2023", "artifact_id": "eu-west-1:ami-0eu,us-east-1:ami-0new", "packer_run_uuid": "run-2"}
        ], "last_run_uuid": "run-2"}"#;
        assert_eq!(manifest_ami(manifest, "us-east-1").unwrap(), "ami-0new");
        assert_eq!(manifest_ami(manifest, "eu-west-1").unwrap(), "ami-0eu");
        let error = manifest_ami(manifest, "ap-south-1").unwrap_err();
        assert_eq!(
            error.to_string(),
            "no AMI in ap-south-1 among eu-west-1:ami-0eu,us-east-1:ami-0new"
        );
        let stale = manifest.replace(r#""last_run_uuid": "run-2""#, r#""last_run_uuid": "run-3""#);
        assert_eq!(
            manifest_ami(&stale, "us-east-1").unwrap_err().to_string(),
            "no build of the last run"
        );
        assert!(manifest_ami("not json", "us-east-1").is_err());
    }

    /// The Windows pins are single values (one architecture); until pinned, each
    /// digest is reported missing and the build refuses to start.
    #[test]
    fn windows_pins_are_read_as_single_values() {
        let dir = project::root().join("packer/windows");
        let missing = missing_digests(&dir, Arch::X86_64).unwrap();
        assert_eq!(
            missing,
            ["buildkite_agent_sha256", "cloudwatch_agent_sha256", "git_sha256", "nssm_sha256"]
        );
        let pinned = tempfile::tempdir().unwrap();
        let digest = "a".repeat(64);
        std::fs::write(
            pinned.path().join(VERSIONS_FILE),
            format!("git_url = \"https://example.com/git.exe\"\ngit_sha256 = \"{digest}\"\n"),
        )
        .unwrap();
        assert!(missing_digests(pinned.path(), Arch::X86_64).unwrap().is_empty());
    }

    #[test]
    fn mapping_columns_are_named_after_the_os_and_arch() {
        assert_eq!(Arch::X86_64.mapping_variant(Os::Windows), "windowsamd64");
        assert!(template::AMI_VARIANTS.contains(&"windowsamd64"));
        assert_eq!(Os::Windows.binaries(), ["elastic-ci-bootstrap.exe", "elastic-ci-hooks.exe"]);
        assert_eq!(Arch::X86_64.mapping_variant(Os::Linux), "linuxamd64");
        assert_eq!(Arch::Arm64.mapping_variant(Os::Linux), "linuxarm64");
        for column in [Arch::X86_64, Arch::Arm64].map(|arch| arch.mapping_variant(Os::Linux)) {
            assert!(template::AMI_VARIANTS.contains(&column.as_str()), "{column}");
        }
    }

    #[test]
    fn merges_new_ids_into_the_mappings_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dist/mappings.yml");
        record_mappings(
            &path,
            "linuxamd64",
            &[("us-east-1".into(), "ami-0123456789abcdef0".into())],
        )
        .unwrap();
        let mappings = record_mappings(
            &path,
            &Arch::Arm64.mapping_variant(Os::Linux),
            &[
                ("us-east-1".into(), "ami-0123456789abcdef1".into()),
                ("eu-west-1".into(), "ami-0123456789abcdef2".into()),
            ],
        )
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(template::parse_mappings(&text, &path).unwrap(), mappings);
        assert_eq!(mappings["us-east-1"]["linuxamd64"], "ami-0123456789abcdef0");
        assert_eq!(mappings["us-east-1"]["linuxarm64"], "ami-0123456789abcdef1");
        assert_eq!(mappings["eu-west-1"].len(), 1);
    }

    #[test]
    fn refuses_to_merge_into_a_malformed_mappings_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mappings.yml");
        std::fs::write(&path, "us-east-1: [not, a, map]\n").unwrap();
        let error = record_mappings(
            &path,
            "linuxamd64",
            &[("us-east-1".into(), "ami-0123456789abcdef0".into())],
        )
        .unwrap_err();
        assert!(format!("{error:#}").contains("invalid mappings file"), "{error:#}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "us-east-1: [not, a, map]\n");
    }

    #[test]
    fn lists_the_downloads_without_a_digest_for_the_arch() {
        let dir = tempfile::tempdir().unwrap();
        let digest = "a".repeat(64);
        std::fs::write(
            dir.path().join(VERSIONS_FILE),
            format!(
                "agent_version = \"1\"\nagent_sha256 = {{\n  x86_64 = \"{digest}\"\n  arm64 = \"\"\n}}\nagent_url = {{\n  x86_64 = \"https://x/a\"\n  arm64 = \"http://x/a\"\n}}\nother_sha256 = {{\n  x86_64 = \"not-hex\"\n}}\n"
            ),
        )
        .unwrap();
        assert_eq!(missing_digests(dir.path(), Arch::X86_64).unwrap(), ["other_sha256"]);
        assert_eq!(
            missing_digests(dir.path(), Arch::Arm64).unwrap(),
            ["agent_sha256", "agent_url", "other_sha256"]
        );
        let none = tempfile::tempdir().unwrap();
        assert!(missing_digests(none.path(), Arch::X86_64).unwrap().is_empty());
    }

    #[test]
    fn the_shipped_versions_file_parses() {
        let dir = project::root().join(TEMPLATE_DIR);
        // Whatever is pinned, every download has an entry the check can read.
        let missing = missing_digests(&dir, Arch::X86_64).unwrap();
        assert!(missing.iter().all(|name| name.ends_with("_sha256")), "{missing:?}");
    }

    #[test]
    fn rejects_bad_regions_and_names() {
        assert!(validate_region("eu-central-1").is_ok());
        assert!(validate_region("us-gov-west-1").is_ok());
        let error = validate_region("EU_WEST").unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid region \"EU_WEST\": expected a name such as us-east-1"
        );
        assert!(
            validate_ami_name("elastic-ci-stack-linux-x86_64-v1.2.3-4-gabc-dirty-1700000000")
                .is_ok()
        );
        assert!(validate_ami_name("x-$(id)").is_err());
    }

    fn copies(ids: &[&str]) -> Vec<(String, String)> {
        ids.iter().map(|id| ("eu-west-1".to_owned(), (*id).to_owned())).collect()
    }

    #[tokio::test]
    async fn waits_through_pending_states_and_transient_errors() {
        let images = TestImages::scripted(&[
            (
                "ami-a",
                vec![
                    Ok(ImageState::Pending),
                    Err(AwsErrorKind::Throttled),
                    Ok(ImageState::Available),
                ],
            ),
            ("ami-b", vec![Ok(ImageState::Available)]),
        ]);
        wait_until_available(
            &images,
            &copies(&["ami-a", "ami-b"]),
            Duration::ZERO,
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn fails_on_a_copy_that_fails() {
        let images = TestImages::scripted(&[(
            "ami-a",
            vec![Ok(ImageState::Pending), Ok(ImageState::Unusable("failed".into()))],
        )]);
        let error = wait_until_available(
            &images,
            &copies(&["ami-a"]),
            Duration::ZERO,
            Duration::from_secs(60),
        )
        .await
        .unwrap_err();
        assert_eq!(error.to_string(), "the copy ami-a in eu-west-1 ended failed");
    }

    #[tokio::test]
    async fn gives_up_after_the_timeout_or_repeated_errors() {
        let images = TestImages::scripted(&[("ami-a", vec![Ok(ImageState::Pending)])]);
        let error = wait_until_available(
            &images,
            &copies(&["ami-a"]),
            Duration::from_millis(5),
            Duration::from_millis(20),
        )
        .await
        .unwrap_err();
        assert!(error.to_string().starts_with("copies not available after"), "{error}");

        let images = TestImages::scripted(&[("ami-a", vec![Err(AwsErrorKind::Transport)])]);
        let error = wait_until_available(
            &images,
            &copies(&["ami-a"]),
            Duration::ZERO,
            Duration::from_secs(60),
        )
        .await
        .unwrap_err();
        assert!(
            format!("{error:#}").contains("failed to check the copy ami-a in eu-west-1"),
            "{error:#}"
        );
    }
}
