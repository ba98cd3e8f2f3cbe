//! `cargo xtask dist`: the shipped binaries, built with the size-optimised `ship`
//! profile, under `<target dir>/dist/`:
//!
//! - `elastic-ci-scaler-x86_64.zip` and `elastic-ci-scaler-arm64.zip`: the scaler
//!   Lambda function, one `bootstrap` executable per zip, for the `provided.al2023`
//!   runtime (the names the template's `ScalerLambda` mapping expects);
//! - `x86_64/<binary>` and `arm64/<binary>`: the instance binaries the AMI installs
//!   (`elastic-ci-bootstrap`, `elastic-ci-hooks`) and the operator CLI `elastic-ci`.
//!
//! Everything is built by cargo-lambda, installed from PyPI (with zig as its linker)
//! into a virtual environment under the target directory, never globally: zig links
//! against an old glibc, so the binaries run on Amazon Linux 2023 whatever the build
//! machine's glibc, and it cross-links for arm64. arm64 needs Rust's
//! `aarch64-unknown-linux-gnu` standard library, which `rustup target add` fetches when
//! it can; when it cannot, arm64 is skipped with a message and x86_64 is still built,
//! and `cargo xtask publish` refuses to release without both.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

use crate::flags::DistArgs;
use crate::{moto, project};

/// The cargo-lambda release the build is written against.
const CARGO_LAMBDA_REQUIREMENT: &str = "cargo-lambda==1.9.2";

/// The Lambda function's package (and binary).
const SCALER: &str = "elastic-ci-scaler";

/// The released binaries beside the scaler, as (package, binary): the two the AMI
/// installs, then the operator CLI. A package that does not exist yet is skipped with
/// a note.
pub(crate) const BINARIES: &[(&str, &str)] = &[
    ("elastic-ci-bootstrap", "elastic-ci-bootstrap"),
    ("elastic-ci-hooks", "elastic-ci-hooks"),
    ("elastic-ci-admin", "elastic-ci"),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arch {
    X86_64,
    Arm64,
}

impl Arch {
    fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Arm64 => "arm64",
        }
    }

    fn rust_target(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64-unknown-linux-gnu",
            Arch::Arm64 => "aarch64-unknown-linux-gnu",
        }
    }
}

pub(crate) fn run(args: &DistArgs) -> anyhow::Result<()> {
    let target_dir = project::target_dir()?;
    let dist = target_dir.join("dist");
    std::fs::create_dir_all(&dist)
        .with_context(|| format!("failed to create {}", dist.display()))?;
    let venv = target_dir.join("cargo-lambda").join("venv");
    moto::install_in_venv(&venv, CARGO_LAMBDA_REQUIREMENT, "cargo-lambda")?;

    let binaries: Vec<(&str, &str)> = BINARIES
        .iter()
        .copied()
        .filter(|(package, _)| {
            let exists = project::root().join("crates").join(package).join("Cargo.toml").is_file();
            if !exists {
                eprintln!("note: {package} does not exist yet; not built");
            }
            exists
        })
        .collect();

    let mut built = Vec::new();
    for arch in [Arch::X86_64, Arch::Arm64] {
        if arch == Arch::Arm64 && args.no_arm64 {
            continue;
        }
        if let Err(error) = ensure_std(arch) {
            if arch == Arch::X86_64 {
                return Err(error);
            }
            eprintln!(
                "warning: skipping arm64: {error:#}. The x86_64 artefacts are complete; build arm64 on a machine where `rustup target add aarch64-unknown-linux-gnu` works (a release needs both)."
            );
            continue;
        }
        let lambda_dir = target_dir.join("lambda").join(arch.name());
        // The scaler alone and without its default features: inside Lambda its metrics
        // are log lines, so the zip carries no CloudWatch client.
        let scaler = [SCALER];
        let instance: Vec<&str> = binaries.iter().map(|(package, _)| *package).collect();
        for (packages, extra) in [(&scaler[..], &["--no-default-features"][..]), (&instance, &[])] {
            if packages.is_empty() {
                continue;
            }
            let mut command = Command::new(venv.join("bin/cargo-lambda"));
            command
                .args([
                    "lambda",
                    "build",
                    "--profile",
                    "ship",
                    "--output-format",
                    "zip",
                    "--locked",
                ])
                .args(["--target", arch.rust_target()])
                .args(extra)
                .arg("--lambda-dir")
                .arg(&lambda_dir)
                .args(packages.iter().flat_map(|package| ["--package", *package]))
                .current_dir(project::root())
                // The venv first: cargo-lambda finds zig through its Python.
                .env("PATH", path_with(&venv.join("bin")));
            eprintln!("==> building {} for {}", packages.join(", "), arch.name());
            moto::run_checked(&mut command, &format!("build the {} binaries", arch.name()))?;
        }

        let zip = dist.join(format!("{SCALER}-{}.zip", arch.name()));
        copy(&lambda_dir.join(SCALER).join("bootstrap.zip"), &zip)?;
        built.push(zip);
        let binaries_dir = dist.join(arch.name());
        std::fs::create_dir_all(&binaries_dir)?;
        for (_, binary) in &binaries {
            let source = target_dir.join(arch.rust_target()).join("ship").join(binary);
            let destination = binaries_dir.join(binary);
            copy(&source, &destination)?;
            built.push(destination);
        }
    }

    println!("built into {}:", dist.display());
    for path in &built {
        let size = std::fs::metadata(path)?.len();
        let shown = path.strip_prefix(&dist).unwrap_or(path);
        println!("  {:<40} {:>10} bytes ({})", shown.display(), size, human(size));
    }
    Ok(())
}

/// Makes sure the standard library for `arch` is installed, adding it with rustup.
fn ensure_std(arch: Arch) -> anyhow::Result<()> {
    let output = Command::new("rustc")
        .args(["--print", "target-libdir", "--target", arch.rust_target()])
        .current_dir(project::root())
        .output()
        .context("failed to run rustc")?;
    let libdir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    if output.status.success() && has_std(&libdir) {
        return Ok(());
    }
    eprintln!("==> rustup target add {}", arch.rust_target());
    let status = Command::new("rustup")
        .args(["target", "add", arch.rust_target()])
        .current_dir(project::root())
        .stdout(Stdio::null())
        .status();
    match status {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => bail!("`rustup target add {}` failed ({status})", arch.rust_target()),
        Err(error) => bail!("rustup is not available to add {}: {error}", arch.rust_target()),
    }
}

fn has_std(libdir: &Path) -> bool {
    std::fs::read_dir(libdir).is_ok_and(|mut entries| {
        entries.any(|entry| {
            entry.is_ok_and(|entry| entry.file_name().to_string_lossy().starts_with("libstd-"))
        })
    })
}

fn path_with(dir: &Path) -> std::ffi::OsString {
    #[allow(clippy::disallowed_methods, reason = "extend the PATH of a child process")]
    let current = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![dir.to_path_buf()];
    paths.extend(std::env::split_paths(&current));
    std::env::join_paths(paths).unwrap_or(current)
}

fn copy(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::copy(from, to)
        .with_context(|| format!("failed to copy {} to {}", from.display(), to.display()))?;
    Ok(())
}

fn human(bytes: u64) -> String {
    #[allow(clippy::cast_precision_loss, reason = "a file size shown with one decimal")]
    let mib = bytes as f64 / (1024.0 * 1024.0);
    format!("{mib:.1} MiB")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zips_carry_the_names_the_template_expects() {
        let names: Vec<String> = [Arch::X86_64, Arch::Arm64]
            .iter()
            .map(|arch| format!("{SCALER}-{}.zip", arch.name()))
            .collect();
        assert_eq!(names, ["elastic-ci-scaler-x86_64.zip", "elastic-ci-scaler-arm64.zip"]);
        let template =
            std::fs::read_to_string(project::root().join("xtask/src/template.rs")).unwrap();
        assert!(template.contains("elastic-ci-scaler-<arch>.zip"));
    }

    #[test]
    fn sizes_read_in_mebibytes() {
        assert_eq!(human(3 * 1024 * 1024 / 2), "1.5 MiB");
    }
}
