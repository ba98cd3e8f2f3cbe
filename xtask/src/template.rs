//! `cargo xtask template`: renders the published CloudFormation template.
//!
//! The source, `cloudformation/aws-stack.yml`, deploys as it is (it is what the linters
//! and the moto deploy test read) but names no release: its version is `0.0.0-dev` and
//! its AMI mapping is a placeholder. Rendering
//!
//! - replaces every `0.0.0-dev` with the release version (the template description, the
//!   `BUILDKITE_STACK_VERSION` the instances report, and the scaler zip's S3 key);
//! - replaces the lines between the `BEGIN AMI MAPPINGS` and `END AMI MAPPINGS` markers
//!   with the AMI ids of the AMI build, read from the mappings file;
//! - sets the prefix of the per-region buckets the scaler zips are published to.
//!
//! Beside the template it writes `service-role.yml`, the merged `mappings.yml` and the
//! Terraform module stamped with the same release (`terraform-module.tar.gz`, see
//! [`crate::terraform_module`]): what `cargo xtask publish` uploads.
//!
//! # The mappings file
//!
//! `cargo xtask ami` writes it, by default to `<target dir>/dist/mappings.yml`: a YAML
//! map from region to the AMI id of each image variant, every variant optional.
//! `--mappings` may be given several times (one file per architecture's build, merged)
//! and may name a published release's `s3://BUCKET/KEY`.
//!
//! ```yaml
//! us-east-1:
//!   linuxamd64: ami-0123456789abcdef0
//!   linuxarm64: ami-0fedcba9876543210
//! eu-west-1:
//!   linuxamd64: ami-00112233445566778
//! ```
//!
//! Variants are `linuxamd64`, `linuxarm64`, `ubuntu2404amd64`, `ubuntu2404arm64` and
//! `windowsamd64`; a
//! missing one renders as a sentence naming the architecture, distribution and region
//! (`missing_image`), never as an empty string, so that no stack launches from an empty
//! image id. Without the file the template keeps its placeholder mapping, a us-east-1 row
//! of such sentences, whose stacks need the `ImageId` parameter.
//!
//! # The scaler zips
//!
//! The template expects the scaler at
//! `s3://<bucket prefix>-<region>/elastic-ci-scaler/<version>/elastic-ci-scaler-<arch>.zip`
//! with `<arch>` `x86_64` or `arm64` (the `ScalerLambda` mapping); the `ScalerLambdaS3Bucket`
//! and `ScalerLambdaS3Key` parameters override it per stack. Rendering does not need the
//! zips to exist.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, anyhow, bail, ensure};
use elastic_ci_aws::config::{AwsSettings, aws_sdk_config};
use elastic_ci_aws::s3::{ObjectStore, S3ObjectStore};
use serde::Deserialize;

use crate::flags::TemplateArgs;
use crate::{project, terraform_module};

/// The source template, relative to the project root.
pub const SOURCE: &str = "cloudformation/aws-stack.yml";
/// The service role template, published beside the stack template unchanged.
pub const SERVICE_ROLE_SOURCE: &str = "cloudformation/service-role.yml";
/// The version the source template carries until it is rendered.
pub const SOURCE_VERSION: &str = "0.0.0-dev";
/// The default prefix of the per-region buckets that hold the scaler zips.
pub const DEFAULT_LAMBDA_BUCKET_PREFIX: &str = "elastic-ci-stack-lambdas";
/// The image variants of the `AWSRegion2AMI` mapping, in column order.
pub const AMI_VARIANTS: [&str; 5] =
    ["linuxamd64", "linuxarm64", "ubuntu2404amd64", "ubuntu2404arm64", "windowsamd64"];
/// CloudFormation's limit for a template passed inline (`--template-body`); larger
/// templates must be deployed from S3 (`--template-url`).
pub(crate) const INLINE_TEMPLATE_LIMIT_BYTES: usize = 51_200;

const BEGIN_MARKER: &str = "# BEGIN AMI MAPPINGS";
const END_MARKER: &str = "# END AMI MAPPINGS";
const BUCKET_PREFIX_KEY: &str = "BucketPrefix:";

/// AMI ids by region, then by image variant.
pub type AmiMappings = BTreeMap<String, BTreeMap<String, String>>;

/// What to put into the published template.
#[derive(Debug, Clone)]
pub struct RenderOptions {
    pub version: String,
    /// `None` keeps the placeholder mapping.
    pub ami_mappings: Option<AmiMappings>,
    pub lambda_bucket_prefix: String,
}

pub(crate) fn run(args: &TemplateArgs, env: &HashMap<String, String>) -> anyhow::Result<()> {
    let root = project::root();
    let dist = project::target_dir()?.join("dist");
    let version = match &args.version {
        Some(version) => version.clone(),
        None => release_version(&root, env),
    };
    let default_mappings = dist.join("mappings.yml");
    let sources: Vec<String> = if args.mappings.is_empty() {
        if default_mappings.is_file() {
            vec![default_mappings.display().to_string()]
        } else {
            eprintln!(
                "note: no AMI mappings at {} (written by `cargo xtask ami`): the template keeps its placeholder mapping, so stacks need the ImageId parameter",
                default_mappings.display()
            );
            Vec::new()
        }
    } else {
        args.mappings.clone()
    };
    let mut merged: Option<AmiMappings> = None;
    for source in &sources {
        let (text, name) = read_mappings_source(source, env)?;
        let mappings = parse_mappings(&text, Path::new(&name))?;
        let merged = merged.get_or_insert_with(AmiMappings::new);
        for (region, row) in mappings {
            merged.entry(region).or_default().extend(row);
        }
    }
    let options = RenderOptions {
        version,
        ami_mappings: merged,
        lambda_bucket_prefix: args.lambda_bucket_prefix.clone(),
    };

    let source_path = root.join(SOURCE);
    let source = std::fs::read_to_string(&source_path)
        .with_context(|| format!("failed to read {}", source_path.display()))?;
    let rendered = render(&source, &options)?;

    let output = args.output.clone().unwrap_or_else(|| dist.join("aws-stack.yml"));
    write(&output, &rendered)?;
    let service_role = std::fs::read_to_string(root.join(SERVICE_ROLE_SOURCE))
        .with_context(|| format!("failed to read {SERVICE_ROLE_SOURCE}"))?;
    let service_role_output = output.with_file_name("service-role.yml");
    write(&service_role_output, &service_role)?;
    if let Some(mappings) = &options.ami_mappings {
        let text =
            serde_yaml_ng::to_string(mappings).context("failed to serialize the mappings")?;
        let mappings_output = output.with_file_name(MAPPINGS_NAME);
        write(&mappings_output, &text)?;
    }
    let module_dir = output.with_file_name("terraform-module");
    terraform_module::stamp(
        &root.join(terraform_module::SOURCE_DIR),
        &module_dir,
        &options.version,
        &options.lambda_bucket_prefix,
        options.ami_mappings.as_ref(),
    )?;
    let module_archive = output.with_file_name(terraform_module::ARCHIVE_NAME);
    terraform_module::archive(&module_dir, &module_archive)?;

    let size = rendered.len();
    let fits = if size <= INLINE_TEMPLATE_LIMIT_BYTES {
        "fits the 51,200-byte limit for --template-body"
    } else {
        "over the 51,200-byte limit for --template-body: deploy it from S3 with --template-url"
    };
    eprintln!(
        "rendered {} (version {}, {} AMI region{}): {size} bytes, {fits}",
        output.display(),
        options.version,
        options.ami_mappings.as_ref().map_or(0, BTreeMap::len),
        if options.ami_mappings.as_ref().map_or(0, BTreeMap::len) == 1 { "" } else { "s" },
    );
    eprintln!("copied {}", service_role_output.display());
    eprintln!("stamped the Terraform module into {}", module_archive.display());
    Ok(())
}

/// The name of the mappings file beside the rendered template.
pub const MAPPINGS_NAME: &str = "mappings.yml";

/// The text of a mappings file given as a path or an `s3://bucket/key` URI (a
/// published release's `mappings.yml`), and its name for messages.
fn read_mappings_source(
    source: &str,
    env: &HashMap<String, String>,
) -> anyhow::Result<(String, String)> {
    let Some(location) = source.strip_prefix("s3://") else {
        let text =
            std::fs::read_to_string(source).with_context(|| format!("failed to read {source}"))?;
        return Ok((text, source.to_owned()));
    };
    let (bucket, key) = location
        .split_once('/')
        .filter(|(bucket, key)| !bucket.is_empty() && !key.is_empty())
        .ok_or_else(|| anyhow!("invalid mappings location {source:?}: expected s3://BUCKET/KEY"))?;
    let body = project::block_on(async {
        let settings = AwsSettings::from_env_map(env);
        let sdk_config = aws_sdk_config(&settings).await;
        let store = S3ObjectStore::new(&sdk_config, &settings);
        let mut body = Vec::new();
        store
            .download(bucket, key, &mut body)
            .await
            .with_context(|| format!("failed to download {source}"))?;
        anyhow::Ok(body)
    })?;
    let text = String::from_utf8(body).with_context(|| format!("{source} is not text"))?;
    Ok((text, source.to_owned()))
}

/// The version a build releases: `BUILDKITE_TAG` on a tag build, otherwise
/// [`default_version`].
pub fn release_version(root: &Path, env: &HashMap<String, String>) -> String {
    match env.get("BUILDKITE_TAG").map(|tag| tag.trim()).filter(|tag| !tag.is_empty()) {
        Some(tag) => tag.to_owned(),
        None => default_version(root),
    }
}

/// Renders the source template. Fails, naming the problem, on a version or bucket
/// prefix that cannot appear in the template, or a source without the expected markers.
pub fn render(source: &str, options: &RenderOptions) -> anyhow::Result<String> {
    validate_version(&options.version)?;
    validate_bucket_prefix(&options.lambda_bucket_prefix)?;
    ensure!(
        source.contains(SOURCE_VERSION),
        "the source template does not contain the version placeholder {SOURCE_VERSION:?}"
    );

    let mut lines: Vec<String> = Vec::new();
    let mut in_mappings = false;
    let mut saw_mappings = false;
    let mut saw_bucket_prefix = false;
    for line in source.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with(BEGIN_MARKER) {
            ensure!(!saw_mappings, "the source template has two {BEGIN_MARKER:?} markers");
            in_mappings = true;
            saw_mappings = true;
            lines.push(line.to_owned());
            continue;
        }
        if trimmed.starts_with(END_MARKER) {
            ensure!(in_mappings, "{END_MARKER:?} without {BEGIN_MARKER:?} in the source template");
            in_mappings = false;
            let indent = &line[..line.len() - trimmed.len()];
            if let Some(mappings) = &options.ami_mappings {
                lines.extend(mapping_lines(mappings, indent));
            }
            lines.push(line.to_owned());
            continue;
        }
        if in_mappings {
            // The placeholder lines stay only when there is nothing to replace them with.
            if options.ami_mappings.is_none() {
                lines.push(line.to_owned());
            }
            continue;
        }
        if let Some(rest) = trimmed.strip_prefix(BUCKET_PREFIX_KEY) {
            ensure!(!rest.trim().is_empty(), "empty {BUCKET_PREFIX_KEY} in the source template");
            ensure!(!saw_bucket_prefix, "two {BUCKET_PREFIX_KEY} lines in the source template");
            saw_bucket_prefix = true;
            let indent = &line[..line.len() - trimmed.len()];
            lines.push(format!("{indent}{BUCKET_PREFIX_KEY} {}", options.lambda_bucket_prefix));
            continue;
        }
        lines.push(line.replace(SOURCE_VERSION, &options.version));
    }
    ensure!(saw_mappings && !in_mappings, "the source template lacks the AMI mapping markers");
    ensure!(saw_bucket_prefix, "the source template lacks the {BUCKET_PREFIX_KEY} line");

    let mut rendered = lines.join("\n");
    rendered.push('\n');
    check_rendered(&rendered, options)?;
    Ok(rendered)
}

/// Parses and validates a mappings file (see the module documentation).
pub fn parse_mappings(text: &str, path: &Path) -> anyhow::Result<AmiMappings> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Variants {
        linuxamd64: Option<String>,
        linuxarm64: Option<String>,
        ubuntu2404amd64: Option<String>,
        ubuntu2404arm64: Option<String>,
        windowsamd64: Option<String>,
    }

    let parsed: BTreeMap<String, Variants> = serde_yaml_ng::from_str(text).with_context(|| {
        format!(
            "invalid mappings file {}: expected a map from region to {}",
            path.display(),
            AMI_VARIANTS.join("/")
        )
    })?;
    ensure!(!parsed.is_empty(), "mappings file {} has no region", path.display());
    let mut mappings = AmiMappings::new();
    for (region, variants) in parsed {
        ensure!(
            is_region(&region),
            "invalid region {region:?} in {}: expected a name such as us-east-1",
            path.display()
        );
        let values = [
            variants.linuxamd64,
            variants.linuxarm64,
            variants.ubuntu2404amd64,
            variants.ubuntu2404arm64,
            variants.windowsamd64,
        ];
        let mut row = BTreeMap::new();
        for (variant, ami) in AMI_VARIANTS.iter().zip(values) {
            let Some(ami) = ami.filter(|ami| !ami.is_empty()) else { continue };
            ensure!(
                is_ami_id(&ami),
                "invalid AMI id {ami:?} for {region} {variant} in {}: expected ami- and 8 or 17 hex digits",
                path.display()
            );
            row.insert((*variant).to_owned(), ami);
        }
        ensure!(!row.is_empty(), "region {region} in {} has no AMI id", path.display());
        mappings.insert(region, row);
    }
    Ok(mappings)
}

fn mapping_lines<'a>(
    mappings: &'a AmiMappings,
    indent: &'a str,
) -> impl Iterator<Item = String> + 'a {
    mappings.iter().map(move |(region, row)| mapping_line(region, row, indent))
}

/// One region's row of the `AWSRegion2AMI` mapping; a variant without an image maps to
/// [`missing_image`], quoted.
pub(crate) fn mapping_line(region: &str, row: &BTreeMap<String, String>, indent: &str) -> String {
    let columns: Vec<String> = AMI_VARIANTS
        .iter()
        .map(|variant| match row.get(*variant) {
            Some(ami) => format!("{variant}: {ami}"),
            None => format!("{variant}: \"{}\"", missing_image(variant, region)),
        })
        .collect();
    format!("{indent}{region}: {{{}}}", columns.join(", "))
}

/// What the mapping holds for a variant without an image: a sentence naming the
/// architecture, the distribution and the region, and what to set instead. A stack that
/// would launch from it fails when Auto Scaling validates the launch template, with the
/// sentence as the invalid image id, rather than launching from an empty one.
pub(crate) fn missing_image(variant: &str, region: &str) -> String {
    let (distribution, arch) = match variant {
        "linuxamd64" => ("Amazon Linux 2023", "x86_64"),
        "linuxarm64" => ("Amazon Linux 2023", "arm64"),
        "ubuntu2404amd64" => ("Ubuntu 24.04", "x86_64"),
        "windowsamd64" => ("Windows Server 2022", "x86_64"),
        _ => ("Ubuntu 24.04", "arm64"),
    };
    format!(
        "No {arch} {distribution} AMI for {region} in this template: set ImageId or ImageIdParameter"
    )
}

/// Where a rendered template expects the scaler's Lambda zips: in the bucket
/// `<bucket_prefix>-<region>` of each region a stack is deployed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalerZips {
    pub bucket_prefix: String,
    /// Key of the x86_64 (`amd64`) zip, then of the arm64 one.
    pub x86_64_key: String,
    pub arm64_key: String,
}

/// Reads the scaler zip location from a template's `ScalerLambda` mapping.
pub fn scaler_zips(template: &str) -> anyhow::Result<ScalerZips> {
    let template: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(template).context("the template is not valid YAML")?;
    let release = &template["Mappings"]["ScalerLambda"]["Release"];
    let field = |name: &str| {
        release[name]
            .as_str()
            .filter(|value| !value.is_empty())
            .map(str::to_owned)
            .with_context(|| format!("the template has no Mappings.ScalerLambda.Release.{name}"))
    };
    Ok(ScalerZips {
        bucket_prefix: field("BucketPrefix")?,
        x86_64_key: field("amd64")?,
        arm64_key: field("arm64")?,
    })
}

/// The release version a rendered template names: the version directory of its scaler
/// zips' keys (`elastic-ci-scaler/<version>/…`), which rendering sets with the rest.
pub fn rendered_version(template: &str) -> anyhow::Result<String> {
    let zips = scaler_zips(template)?;
    let version = |key: &str| {
        key.strip_prefix("elastic-ci-scaler/")
            .and_then(|rest| rest.split_once('/'))
            .map(|(version, _)| version.to_owned())
    };
    match (version(&zips.x86_64_key), version(&zips.arm64_key)) {
        (Some(amd64), Some(arm64)) if amd64 == arm64 => Ok(amd64),
        _ => bail!(
            "its scaler keys {:?} and {:?} do not name one version",
            zips.x86_64_key,
            zips.arm64_key
        ),
    }
}

/// Reads the rendered template back as YAML and checks what rendering promised.
fn check_rendered(rendered: &str, options: &RenderOptions) -> anyhow::Result<()> {
    let template: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(rendered).context("the rendered template is not valid YAML")?;
    let zips = scaler_zips(rendered)?;
    ensure!(
        zips.bucket_prefix == options.lambda_bucket_prefix,
        "the rendered template's ScalerLambda bucket prefix is not {:?}",
        options.lambda_bucket_prefix
    );
    for (arch, key) in [("amd64", &zips.x86_64_key), ("arm64", &zips.arm64_key)] {
        ensure!(
            key.contains(&format!("/{}/", options.version)),
            "the rendered scaler key for {arch} ({key:?}) does not name version {}",
            options.version
        );
    }
    if let Some(mappings) = &options.ami_mappings {
        let rendered_regions = template["Mappings"]["AWSRegion2AMI"]
            .as_mapping()
            .map(|mapping| mapping.len())
            .unwrap_or_default();
        ensure!(
            rendered_regions == mappings.len(),
            "the rendered template maps {rendered_regions} regions, expected {}",
            mappings.len()
        );
    }
    if options.version != SOURCE_VERSION {
        ensure!(
            !rendered.contains(SOURCE_VERSION),
            "the rendered template still contains {SOURCE_VERSION:?}"
        );
    }
    Ok(())
}

/// `git describe --tags --long --always --dirty` (for example `v1.2.0-3-gabc1234`), or the
/// workspace version when git cannot tell.
pub fn default_version(root: &Path) -> String {
    let described = Command::new("git")
        .args(["describe", "--tags", "--long", "--always", "--dirty"])
        .current_dir(root)
        .output()
        .ok()
        .filter(|output| output.status.success())
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .map(|version| version.trim().to_owned())
        .filter(|version| validate_version(version).is_ok());
    described.unwrap_or_else(|| format!("v{}", env!("CARGO_PKG_VERSION")))
}

/// A version ends up in an S3 key and in unquoted YAML: letters, digits and `.`, `_`,
/// `+`, `-` only.
fn validate_version(version: &str) -> anyhow::Result<()> {
    let valid = !version.is_empty()
        && version.len() <= 64
        && version.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-'));
    if !valid {
        bail!(
            "invalid version {version:?}: expected 1 to 64 letters, digits, '.', '_', '+' or '-'"
        );
    }
    Ok(())
}

/// The prefix plus `-<region>` must be a valid bucket name.
fn validate_bucket_prefix(prefix: &str) -> anyhow::Result<()> {
    let valid = (3..=40).contains(&prefix.len())
        && prefix.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && prefix.starts_with(|c: char| c.is_ascii_alphanumeric());
    if !valid {
        bail!(
            "invalid Lambda bucket prefix {prefix:?}: expected 3 to 40 lower-case letters, digits or '-', starting with a letter or digit"
        );
    }
    Ok(())
}

fn is_region(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    parts.len() >= 3
        && parts[0].len() == 2
        && parts[..parts.len() - 1]
            .iter()
            .all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_lowercase()))
        && parts[parts.len() - 1].chars().all(|c| c.is_ascii_digit())
        && !parts[parts.len() - 1].is_empty()
}

fn is_ami_id(ami: &str) -> bool {
    ami.strip_prefix("ami-").is_some_and(|hex| {
        matches!(hex.len(), 8 | 17)
            && hex.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    })
}

fn write(path: &PathBuf, text: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("failed to create {}", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("failed to write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> String {
        std::fs::read_to_string(project::root().join(SOURCE)).expect("the source template")
    }

    fn options(mappings: Option<AmiMappings>) -> RenderOptions {
        RenderOptions {
            version: "v1.2.3".to_owned(),
            ami_mappings: mappings,
            lambda_bucket_prefix: "my-lambdas".to_owned(),
        }
    }

    fn mappings(text: &str) -> AmiMappings {
        parse_mappings(text, Path::new("mappings.yml")).expect("valid mappings")
    }

    #[test]
    fn renders_version_bucket_prefix_and_mappings() {
        let mappings = mappings(
            "us-east-1:\n  linuxamd64: ami-0123456789abcdef0\n  linuxarm64: ami-12c6146b\neu-west-1:\n  ubuntu2404amd64: ami-0fedcba9876543210\n",
        );
        let rendered = render(&source(), &options(Some(mappings))).expect("renders");
        assert!(!rendered.contains(SOURCE_VERSION));
        assert!(rendered.contains("Description: Buildkite Elastic CI Stack for AWS v1.2.3\n"));
        assert!(rendered.contains("BUILDKITE_STACK_VERSION=v1.2.3\n"));
        assert!(rendered.contains("amd64: elastic-ci-scaler/v1.2.3/elastic-ci-scaler-x86_64.zip"));
        assert!(rendered.contains("BucketPrefix: my-lambdas\n"));
        let template: serde_yaml_ng::Value = serde_yaml_ng::from_str(&rendered).expect("YAML");
        let row = |region: &str| {
            let row = &template["Mappings"]["AWSRegion2AMI"][region];
            AMI_VARIANTS.map(|variant| row[variant].as_str().unwrap_or_default().to_owned())
        };
        assert_eq!(
            row("us-east-1"),
            [
                "ami-0123456789abcdef0",
                "ami-12c6146b",
                "No x86_64 Ubuntu 24.04 AMI for us-east-1 in this template: set ImageId or ImageIdParameter",
                "No arm64 Ubuntu 24.04 AMI for us-east-1 in this template: set ImageId or ImageIdParameter",
                "No x86_64 Windows Server 2022 AMI for us-east-1 in this template: set ImageId or ImageIdParameter",
            ]
        );
        assert_eq!(
            row("eu-west-1"),
            [
                "No x86_64 Amazon Linux 2023 AMI for eu-west-1 in this template: set ImageId or ImageIdParameter",
                "No arm64 Amazon Linux 2023 AMI for eu-west-1 in this template: set ImageId or ImageIdParameter",
                "ami-0fedcba9876543210",
                "No arm64 Ubuntu 24.04 AMI for eu-west-1 in this template: set ImageId or ImageIdParameter",
                "No x86_64 Windows Server 2022 AMI for eu-west-1 in this template: set ImageId or ImageIdParameter",
            ]
        );
    }

    /// The source's placeholder row is what rendering writes for a region without
    /// images, so a development template refuses to launch the same way.
    #[test]
    fn the_placeholder_mapping_is_a_row_without_images() {
        let source = source();
        let placeholder = source
            .lines()
            .skip_while(|line| !line.trim_start().starts_with(BEGIN_MARKER))
            .nth(1)
            .expect("a placeholder row");
        assert_eq!(placeholder, mapping_line("us-east-1", &BTreeMap::new(), "    "));
        let template: serde_yaml_ng::Value = serde_yaml_ng::from_str(&source).expect("YAML");
        for variant in AMI_VARIANTS {
            let value = template["Mappings"]["AWSRegion2AMI"]["us-east-1"][variant]
                .as_str()
                .expect("a string");
            assert!(!value.is_empty() && !value.starts_with("ami-"), "{variant}: {value}");
        }
    }

    #[test]
    fn a_rendered_template_tells_its_version() {
        let rendered = render(&source(), &options(None)).expect("renders");
        assert_eq!(rendered_version(&rendered).unwrap(), "v1.2.3");
        assert_eq!(rendered_version(&source()).unwrap(), SOURCE_VERSION);
        let mixed = rendered.replacen("elastic-ci-scaler/v1.2.3/", "elastic-ci-scaler/v1.2.2/", 1);
        assert!(
            rendered_version(&mixed).unwrap_err().to_string().contains("do not name one version")
        );
    }

    #[test]
    fn keeps_the_placeholder_mapping_without_a_mappings_file() {
        let rendered = render(&source(), &options(None)).expect("renders");
        let template: serde_yaml_ng::Value = serde_yaml_ng::from_str(&rendered).expect("YAML");
        let regions = template["Mappings"]["AWSRegion2AMI"].as_mapping().expect("a mapping");
        assert_eq!(regions.len(), 1);
        assert_eq!(
            template["Mappings"]["AWSRegion2AMI"]["us-east-1"]["linuxamd64"].as_str(),
            Some(missing_image("linuxamd64", "us-east-1").as_str())
        );
    }

    #[test]
    fn rendering_changes_nothing_but_the_release_lines() {
        let source = source();
        let rendered = render(&source, &options(None)).expect("renders");
        let changed: Vec<(&str, &str)> =
            source.lines().zip(rendered.lines()).filter(|(a, b)| a != b).collect();
        assert_eq!(source.lines().count(), rendered.lines().count());
        assert!(
            changed
                .iter()
                .all(|(a, _)| a.contains(SOURCE_VERSION) || a.contains(BUCKET_PREFIX_KEY))
        );
        assert_eq!(changed.len(), source.matches(SOURCE_VERSION).count() + 1);
    }

    #[test]
    fn rejects_versions_that_would_break_the_template() {
        for version in ["", "v1 2", "v1:2", "v1/2", "v1\"2", "v1\n2"] {
            let error =
                render(&source(), &RenderOptions { version: version.to_owned(), ..options(None) })
                    .expect_err(version);
            assert!(error.to_string().contains(&format!("invalid version {version:?}")), "{error}");
        }
    }

    #[test]
    fn rejects_bad_bucket_prefixes() {
        for prefix in ["", "ab", "Upper", "-dash", "with_underscore", "a.b"] {
            let error = render(
                &source(),
                &RenderOptions { lambda_bucket_prefix: prefix.to_owned(), ..options(None) },
            )
            .expect_err(prefix);
            assert!(
                error.to_string().contains(&format!("invalid Lambda bucket prefix {prefix:?}"))
            );
        }
    }

    #[test]
    fn rejects_bad_mappings_naming_the_value() {
        let cases = [
            (
                "us-east-1:\n  linuxamd64: ami-xyz\n",
                "invalid AMI id \"ami-xyz\" for us-east-1 linuxamd64",
            ),
            ("useast1:\n  linuxamd64: ami-12c6146b\n", "invalid region \"useast1\""),
            ("us-east-1:\n  windows: ami-12c6146b\n", "invalid mappings file mappings.yml"),
            ("us-east-1: {}\n", "region us-east-1 in mappings.yml has no AMI id"),
            ("{}\n", "has no region"),
            ("- not a map\n", "invalid mappings file mappings.yml"),
        ];
        for (text, expected) in cases {
            let error = parse_mappings(text, Path::new("mappings.yml")).expect_err(text);
            assert!(format!("{error:#}").contains(expected), "{text:?}: {error:#}");
        }
    }

    #[test]
    fn rejects_a_source_without_markers() {
        let source =
            source().replace(BEGIN_MARKER, "# something").replace(END_MARKER, "# something else");
        let error = render(&source, &options(None)).expect_err("no markers");
        assert!(error.to_string().contains("AMI mapping markers"), "{error}");
    }
}
