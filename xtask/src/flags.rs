//! Command-line flags of every task.

use clap::{Parser, Subcommand};

/// Project automation for the Elastic CI Stack.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
pub(crate) struct Xtask {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run every check CI runs: fmt, clippy, and all tests against a fresh local AWS.
    Ci(CiArgs),
    /// Manage the local AWS emulator (moto) used by tests and local runs.
    Moto(MotoArgs),
    /// Build the scaler Lambda zips, the instance binaries and `elastic-ci` for x86_64
    /// and (when the aarch64 standard library can be had) arm64 with the `ship` profile
    /// into <target dir>/dist/, and print their sizes.
    Dist(DistArgs),
    /// Render the published CloudFormation template into <target dir>/dist/aws-stack.yml:
    /// release version, AMI mappings from the AMI build, scaler zip location.
    Template(TemplateArgs),
    /// Regenerate the inputs and outputs tables of terraform/README.md from the module's
    /// variables.tf and outputs.tf (the text between the BEGIN_TF_DOCS and END_TF_DOCS
    /// markers).
    TerraformDocs(TerraformDocsArgs),
    /// Build the agent AMI with Packer and record its id (and its copies' ids) in the
    /// mappings file that `cargo xtask template` merges.
    Ami(AmiArgs),
    /// Publish the release: the rendered template and what `template` wrote beside it,
    /// the scaler zips and both architectures' binaries, under <version>/ of the release
    /// bucket, then the branch's and the moving aliases' copies; print the URLs.
    Publish(PublishArgs),
    /// Download every third-party file the agent image installs, for both architectures,
    /// check each against upstream's checksum file where there is one, and write their
    /// URLs and SHA-256 digests into packer/linux/versions.auto.pkrvars.hcl.
    PinDownloads(PinDownloadsArgs),
    /// Rehearse the whole release against a local AWS (moto): pinned downloads from a
    /// local HTTPS mirror, both architectures' images, the template, the publish, then a
    /// stack created from the published template URL and the Terraform module checked.
    #[command(disable_help_flag = true)]
    Release(ReleaseArgs),
    /// Run the whole stack on this machine: the template deployed into a local AWS
    /// (moto), a fake Buildkite queue fed from a job trace, the real scaler, and a
    /// simulated instance (real bootstrapper and hooks) for every instance the group
    /// launches. Shows the queue and the fleet live, then a summary and an HTML report.
    #[command(disable_help_flag = true)]
    Demo(DemoArgs),
    /// Build the Windows binaries (elastic-ci-bootstrap.exe, elastic-ci-hooks.exe,
    /// elastic-ci.exe) with MinGW-w64 and test them under wine: the unit tests, then
    /// the end-to-end suite against the local AWS emulator. Installs the Rust target,
    /// MinGW-w64 and wine when missing, and makes a wine prefix under the target
    /// directory.
    Windows(WindowsArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct WindowsArgs {
    /// Only install the toolchain and make the wine prefix (what `cargo test --target
    /// x86_64-pc-windows-gnu` needs to run the tests under wine).
    #[arg(long)]
    pub(crate) prepare: bool,
    /// The local AWS emulator the end-to-end suite uses (default: the one `cargo xtask
    /// moto start` started, through ELASTIC_CI_MOTO_ENDPOINT).
    #[arg(long, value_name = "URL")]
    pub(crate) moto_endpoint: Option<String>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// The demo's arguments (`cargo xtask demo --help` lists them). `--no-build` runs
    /// the binaries already in the target directory instead of building them first.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "ARGS")]
    pub(crate) args: Vec<std::ffi::OsString>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct ReleaseArgs {
    /// Rehearse on this machine; the release itself runs in the project's pipeline, one
    /// task per step (see the README's "Releasing").
    #[arg(long)]
    pub(crate) rehearse: bool,
    /// The rehearsal's arguments (`cargo xtask release --rehearse --help` lists them).
    /// `--no-build` runs the binaries already in the target directory.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "ARGS")]
    pub(crate) args: Vec<std::ffi::OsString>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct CiArgs {
    /// Skip `cargo fmt --check` and clippy (tests and infrastructure checks only).
    #[arg(long)]
    pub(crate) no_lint: bool,
}

#[derive(Debug, clap::Args)]
pub(crate) struct TerraformDocsArgs {
    /// Change nothing; fail when the README's tables differ from the module's files.
    #[arg(long)]
    pub(crate) check: bool,
}

#[derive(Debug, clap::Args)]
pub(crate) struct TemplateArgs {
    /// Release version written into the template, the Terraform module and the scaler
    /// zip's S3 key [default: BUILDKITE_TAG, else `git describe --tags --long --always --dirty`].
    #[arg(long)]
    pub(crate) version: Option<String>,
    /// AMI ids by region, as written by `cargo xtask ami`: a file, or s3://BUCKET/KEY
    /// (such as a published release's mappings.yml); repeat to merge several
    /// [default: <target dir>/dist/mappings.yml; without it the placeholder mapping stays].
    #[arg(long, value_name = "FILE|S3 URI")]
    pub(crate) mappings: Vec<String>,
    /// Prefix of the per-region buckets holding the scaler zips: the template reads
    /// s3://<PREFIX>-<region>/elastic-ci-scaler/<version>/elastic-ci-scaler-<arch>.zip.
    #[arg(long, value_name = "PREFIX", default_value = crate::template::DEFAULT_LAMBDA_BUCKET_PREFIX)]
    pub(crate) lambda_bucket_prefix: String,
    /// Where to write the template; service-role.yml, the merged mappings.yml and the
    /// stamped terraform-module.tar.gz are written beside it
    /// [default: <target dir>/dist/aws-stack.yml].
    #[arg(long, value_name = "FILE")]
    pub(crate) output: Option<std::path::PathBuf>,
}

#[derive(Debug, clap::Args)]
#[command(after_long_help = crate::ami::AFTER_HELP, args_conflicts_with_subcommands = true)]
pub(crate) struct AmiArgs {
    #[command(subcommand)]
    pub(crate) action: Option<AmiAction>,
    /// Print every command and AWS call instead of running it; change nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// The operating system of the image (its Packer template is packer/<os>).
    #[arg(long, value_enum, default_value_t = crate::ami::Os::Linux)]
    pub(crate) os: crate::ami::Os,
    /// The CPU architecture of the image.
    #[arg(long, value_enum, default_value_t = crate::ami::Arch::X86_64)]
    pub(crate) arch: crate::ami::Arch,
    /// The region to build in [default: AWS_REGION, else AWS_DEFAULT_REGION, else us-east-1].
    #[arg(long, value_name = "REGION")]
    pub(crate) region: Option<String>,
    /// Copy the image to these regions too (EC2 CopyImage), waiting until every copy
    /// is available.
    #[arg(long, value_name = "REGION,...", value_delimiter = ',')]
    pub(crate) copy_to_regions: Vec<String>,
    /// Let every AWS account launch the image and its copies.
    #[arg(long)]
    pub(crate) public: bool,
    /// The stack version the image belongs to [default: BUILDKITE_TAG, else
    /// `git describe --tags --long --always --dirty`].
    #[arg(long)]
    pub(crate) version: Option<String>,
    /// Encrypt the image's snapshots (with --kms-key-id, or the account's default EBS
    /// key). Images with encrypted snapshots cannot be made public.
    #[arg(long, conflicts_with = "public")]
    pub(crate) encrypt_boot: bool,
    /// The KMS key for --encrypt-boot.
    #[arg(long, value_name = "KEY", requires = "encrypt_boot")]
    pub(crate) kms_key_id: Option<String>,
    /// Take elastic-ci-bootstrap and elastic-ci-hooks from DIR instead of building them
    /// with `cargo xtask dist` into <target dir>/dist/<arch> (the pipeline passes the
    /// dist step's artefacts here).
    #[arg(long, value_name = "DIR")]
    pub(crate) dist_dir: Option<std::path::PathBuf>,
    /// The mappings file to record the AMI ids in (other regions and architectures
    /// already in it are kept) [default: <target dir>/dist/mappings.yml].
    #[arg(long, value_name = "FILE")]
    pub(crate) mappings: Option<std::path::PathBuf>,
    /// The Packer template directory [default: packer/<os>].
    #[arg(long, value_name = "DIR")]
    pub(crate) template: Option<std::path::PathBuf>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum AmiAction {
    /// Deregister the account's old agent images that no release uses, and delete their
    /// snapshots, in every region named. Prints what it would do unless --yes.
    Prune(PruneArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct PruneArgs {
    /// Keep this many of the newest images of each region, OS and architecture,
    /// whatever their age.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub(crate) keep: usize,
    /// Delete only images older than this (s, m, h or d, such as 30d).
    #[arg(long, value_name = "AGE", default_value = "30d")]
    pub(crate) older_than: String,
    /// The regions to prune [default: AWS_REGION, else AWS_DEFAULT_REGION, else us-east-1].
    #[arg(long, value_name = "REGION,...", value_delimiter = ',')]
    pub(crate) regions: Vec<String>,
    /// Deregister and delete; without it nothing changes.
    #[arg(long)]
    pub(crate) yes: bool,
}

#[derive(Debug, clap::Args)]
#[command(after_long_help = crate::publish::AFTER_HELP)]
pub(crate) struct PublishArgs {
    /// Print every upload instead of making it; change nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// The release bucket, such as buildkite-aws-stack.
    #[arg(long)]
    pub(crate) bucket: String,
    /// The rendered template to upload [default: <target dir>/dist/aws-stack.yml].
    #[arg(long, value_name = "FILE")]
    pub(crate) template: Option<std::path::PathBuf>,
    /// The branch whose builds are also published under main/ (and master/ with
    /// --master-alias) [default: BUILDKITE_PIPELINE_DEFAULT_BRANCH, else main].
    #[arg(long, value_name = "BRANCH")]
    pub(crate) default_branch: Option<String>,
    /// Also publish default-branch builds under master/, where the original stack
    /// published per-commit builds before v6.
    #[arg(long)]
    pub(crate) master_alias: bool,
    /// The git work tree to read the branch, commit and tags from [default: the
    /// project root].
    #[arg(long, value_name = "DIR")]
    pub(crate) repository: Option<std::path::PathBuf>,
    /// The regions the release serves: the scaler zips go to the bucket
    /// `<prefix>-<region>` of each (created if missing), at the keys the template names,
    /// before anything else, and the template must map both architectures' AMIs there.
    #[arg(long, value_name = "REGION,…", value_delimiter = ',')]
    pub(crate) lambda_regions: Vec<String>,
    /// Where `cargo xtask dist` put the scaler zips and the <arch>/ binaries
    /// [default: <target dir>/dist].
    #[arg(long, value_name = "DIR")]
    pub(crate) dist_dir: Option<std::path::PathBuf>,
    /// Also write a Markdown summary (URLs, AMI ids) to FILE, for
    /// `buildkite-agent annotate`.
    #[arg(long, value_name = "FILE")]
    pub(crate) summary: Option<std::path::PathBuf>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct PinDownloadsArgs {
    /// Print the URLs instead of downloading them; change nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Download from this mirror instead (https://HOST[:PORT][/PATH]; each upstream URL's
    /// path is kept below it). The pinned URLs are then the mirror's.
    #[arg(long, value_name = "URL")]
    pub(crate) base_url: Option<String>,
    /// The versions file to read and rewrite
    /// [default: packer/linux/versions.auto.pkrvars.hcl].
    #[arg(long, value_name = "FILE")]
    pub(crate) file: Option<std::path::PathBuf>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct DistArgs {
    /// Build only the x86_64 artefacts.
    #[arg(long)]
    pub(crate) no_arm64: bool,
}

#[derive(Debug, clap::Args)]
pub(crate) struct MotoArgs {
    #[command(subcommand)]
    pub(crate) action: MotoAction,
}

#[derive(Debug, Subcommand)]
pub(crate) enum MotoAction {
    /// Install moto if needed, start it on 127.0.0.1 and print the variables that point
    /// our binaries at it. Does nothing but print them when it is already running.
    Start,
    /// Stop the emulator started by `start`.
    Stop,
    /// Say whether the emulator is running, and where.
    Status,
}
