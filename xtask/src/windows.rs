//! `cargo xtask windows`: the Windows binaries, built with MinGW-w64 and tested under
//! wine on this Linux machine.
//!
//! - The toolchain is installed when missing: the `x86_64-pc-windows-gnu` standard
//!   library (`rustup target add`) and Debian's `gcc-mingw-w64-x86-64` (the linker
//!   named in `.cargo/config.toml`) and `wine64`.
//! - The wine prefix lives under the target directory (`<target>/wine/prefix`), made
//!   once. Rust's standard library for Windows takes its random numbers from
//!   `ProcessPrng` in `bcryptprimitives.dll`, which wine 8 lacks, so every Rust
//!   program fails to load there; the prefix gets a small stand-in DLL, compiled here
//!   from [`PROCESS_PRNG_SHIM`], whose `ProcessPrng` calls `SystemFunction036`
//!   (`RtlGenRandom`, which wine has).
//! - `.cargo/wine-runner` is cargo's runner for the target: `cargo test --target
//!   x86_64-pc-windows-gnu` runs the unit tests under wine in that prefix.
//!
//! The step of `cargo xtask ci` builds `elastic-ci-bootstrap.exe`, `elastic-ci-hooks.exe`
//! and `elastic-ci.exe`, runs the unit tests of the first two under wine, then the
//! end-to-end suite `crates/elastic-ci-e2e/tests/windows.rs`, which runs the `.exe`s
//! under wine against the local AWS emulator and a fake metadata service.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail, ensure};

use crate::image_checks::ensure_apt_tool;
use crate::moto::run_checked;
use crate::project;

/// The Rust target of the Windows binaries.
pub const TARGET: &str = "x86_64-pc-windows-gnu";
/// Debian's 64-bit wine loader (the `wine` launcher needs the 32-bit part too).
pub const WINE: &str = "/usr/lib/wine/wine64";
/// The packages built for Windows: the instance binaries and the operator's CLI.
pub const PACKAGES: [&str; 3] = ["elastic-ci-bootstrap", "elastic-ci-hooks", "elastic-ci-admin"];
/// The packages whose unit tests run under wine.
const TESTED_PACKAGES: [&str; 2] = ["elastic-ci-bootstrap", "elastic-ci-hooks"];

/// `ProcessPrng` for wine 8, whose `bcryptprimitives.dll` does not export it: the same
/// contract (fill the buffer, never fail for a valid one) over `RtlGenRandom`.
pub const PROCESS_PRNG_SHIM: &str = r"/* ProcessPrng for wine 8, over RtlGenRandom. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length) {
    while (length > 0) {
        ULONG chunk = length > 0x10000000 ? 0x10000000 : (ULONG)length;
        if (!SystemFunction036(data, chunk)) {
            return FALSE;
        }
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
";

/// `cargo xtask windows`: prepare, build, and (unless `prepare_only`) test.
pub(crate) fn run(prepare_only: bool, moto_endpoint: Option<&str>) -> anyhow::Result<()> {
    let target_dir = project::target_dir()?;
    prepare(&target_dir)?;
    if prepare_only {
        eprintln!("wine prefix ready at {}", prefix(&target_dir).display());
        return Ok(());
    }
    test(&target_dir, moto_endpoint)
}

/// The toolchain, the stand-in DLL and the wine prefix.
pub fn prepare(target_dir: &Path) -> anyhow::Result<()> {
    ensure_rust_target()?;
    ensure_apt_tool("x86_64-w64-mingw32-gcc", "gcc-mingw-w64-x86-64")?;
    ensure_apt_tool(WINE, "wine64")?;
    let dll = build_shim(target_dir)?;
    let prefix = prefix(target_dir);
    let system32 = prefix.join("drive_c/windows/system32");
    if !system32.is_dir() {
        eprintln!("creating the wine prefix {} …", prefix.display());
        std::fs::create_dir_all(&prefix)
            .with_context(|| format!("failed to create {}", prefix.display()))?;
        let status = wine_command(target_dir, Path::new("cmd"))
            .args(["/c", "exit"])
            .status()
            .context("failed to run wine")?;
        ensure!(status.success(), "wine could not create its prefix ({status})");
        ensure!(system32.is_dir(), "wine made no {}", system32.display());
    }
    let installed = system32.join("bcryptprimitives.dll");
    if std::fs::read(&installed).ok() != std::fs::read(&dll).ok() {
        std::fs::copy(&dll, &installed)
            .with_context(|| format!("failed to install {}", installed.display()))?;
    }
    Ok(())
}

/// The wine prefix under the target directory.
pub fn prefix(target_dir: &Path) -> PathBuf {
    target_dir.join("wine").join("prefix")
}

/// Where the Windows debug binaries are.
pub fn binary_dir(target_dir: &Path) -> PathBuf {
    target_dir.join(TARGET).join("debug")
}

/// A command that runs `program` under wine in the prefix, quietly.
pub fn wine_command(target_dir: &Path, program: &Path) -> Command {
    let mut command = Command::new(WINE);
    command
        .arg(program)
        .env("WINEPREFIX", prefix(target_dir))
        .env("WINEDEBUG", "-all")
        // No desktop integration or Mono/Gecko installers when the prefix is made.
        .env("WINEDLLOVERRIDES", "mscoree,mshtml,winemenubuilder.exe=d");
    command
}

fn ensure_rust_target() -> anyhow::Result<()> {
    let output = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .current_dir(project::root())
        .output()
        .context("failed to run rustup")?;
    if String::from_utf8_lossy(&output.stdout).lines().any(|line| line.trim() == TARGET) {
        return Ok(());
    }
    run_checked(
        Command::new("rustup").args(["target", "add", TARGET]).current_dir(project::root()),
        &format!("install the {TARGET} standard library (rustup target add {TARGET})"),
    )
}

/// Compiles the stand-in `bcryptprimitives.dll` when its source changed.
fn build_shim(target_dir: &Path) -> anyhow::Result<PathBuf> {
    let dir = target_dir.join("wine").join("shim");
    std::fs::create_dir_all(&dir).with_context(|| format!("failed to create {}", dir.display()))?;
    let source = dir.join("process_prng.c");
    let dll = dir.join("bcryptprimitives.dll");
    let current = std::fs::read_to_string(&source).ok();
    if current.as_deref() == Some(PROCESS_PRNG_SHIM) && dll.is_file() {
        return Ok(dll);
    }
    std::fs::write(&source, PROCESS_PRNG_SHIM)
        .with_context(|| format!("failed to write {}", source.display()))?;
    run_checked(
        Command::new("x86_64-w64-mingw32-gcc")
            .args(["-shared", "-O2", "-o"])
            .arg(&dll)
            .arg(&source)
            .arg("-ladvapi32"),
        "compile the ProcessPrng stand-in for wine",
    )?;
    Ok(dll)
}

/// Builds the Windows binaries, runs the unit tests under wine, then the end-to-end
/// suite that drives the `.exe`s under wine.
fn test(target_dir: &Path, moto_endpoint: Option<&str>) -> anyhow::Result<()> {
    let cargo = project::cargo();
    let root = project::root();
    let mut build = Command::new(&cargo);
    build.args(["build", "--locked", "--target", TARGET]).current_dir(&root);
    for package in PACKAGES {
        build.args(["-p", package]);
    }
    run_checked(&mut build, "build the Windows binaries")?;
    for package in PACKAGES {
        let exe = binary_dir(target_dir).join(format!("{}.exe", binary_name(package)));
        let size = std::fs::metadata(&exe).with_context(|| format!("no {}", exe.display()))?.len();
        eprintln!("{}: {:.1} MB", exe.display(), to_megabytes(size));
    }
    let mut unit = Command::new(&cargo);
    unit.args(["test", "--locked", "--target", TARGET, "--lib", "--bins"]).current_dir(&root);
    for package in TESTED_PACKAGES {
        unit.args(["-p", package]);
    }
    run_checked(&mut unit, "run the Windows unit tests under wine")?;
    let mut suite = Command::new(&cargo);
    suite
        .args(["test", "--locked", "--workspace", "--test", "windows"])
        .current_dir(&root)
        // Missing binaries or a missing emulator fail instead of skipping.
        .env("CI", "true");
    if let Some(endpoint) = moto_endpoint {
        suite.env("ELASTIC_CI_MOTO_ENDPOINT", endpoint);
    }
    let status = suite.status().context("failed to run the Windows end-to-end tests")?;
    if !status.success() {
        bail!("the Windows end-to-end tests failed ({status})");
    }
    Ok(())
}

/// The executable a package builds.
fn binary_name(package: &str) -> &str {
    if package == "elastic-ci-admin" { "elastic-ci" } else { package }
}

#[allow(clippy::cast_precision_loss, reason = "a size shown to one decimal")]
fn to_megabytes(bytes: u64) -> f64 {
    bytes as f64 / 1_000_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runner_script_uses_the_same_prefix_and_loader() {
        let script = std::fs::read_to_string(project::root().join(".cargo/wine-runner")).unwrap();
        assert!(script.contains("$target_dir/wine/prefix"), "{script}");
        assert!(script.contains(WINE), "{script}");
        assert!(script.contains(TARGET), "{script}");
        let config = std::fs::read_to_string(project::root().join(".cargo/config.toml")).unwrap();
        assert!(config.contains(&format!("[target.{TARGET}]")), "{config}");
        assert!(config.contains("runner = \".cargo/wine-runner\""), "{config}");
    }

    #[test]
    fn names_the_binaries() {
        assert_eq!(binary_name("elastic-ci-admin"), "elastic-ci");
        assert_eq!(binary_name("elastic-ci-hooks"), "elastic-ci-hooks");
    }
}
