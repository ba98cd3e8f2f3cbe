//! `cargo xtask ci`: every check CI runs, in the order that fails fastest.

use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};

use crate::flags::CiArgs;
use crate::{demo, image_checks, infra_checks, moto, project, windows};

pub(crate) fn run(args: &CiArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let root = project::root();
    let cargo = project::cargo();

    if !args.no_lint {
        step(
            "cargo fmt --check",
            Command::new(&cargo).args(["fmt", "--all", "--check"]).current_dir(&root),
        )?;
        step(
            "cargo clippy",
            Command::new(&cargo)
                .args([
                    "clippy",
                    "--workspace",
                    "--all-targets",
                    "--locked",
                    "--",
                    "-D",
                    "warnings",
                ])
                .current_dir(&root),
        )?;
    }

    for (name, check) in infra_checks::CHECKS.iter().chain(&image_checks::CHECKS) {
        timed(name, check)?;
    }

    // Build the tests before starting the emulator, so a compile error fails fast and
    // the emulator's install runs while nothing else needs the CPU.
    step("build tests", test_command(&cargo, &root, true).current_dir(&root))?;

    let dir = moto::moto_dir()?;
    let server = moto::Server::start(&dir).context("failed to start the local AWS emulator")?;
    eprintln!("moto listening at {}", server.endpoint);
    // The Windows binaries: cross-built, their unit tests and the end-to-end suite
    // under wine, against the same emulator. Before the workspace's tests, which
    // include that suite and need this build's `.exe`s (a stale or missing one fails
    // them when CI is set).
    timed("windows", || windows::run(false, Some(&server.endpoint)))?;
    let mut tests = test_command(&cargo, &root, false);
    tests
        .current_dir(&root)
        .env("ELASTIC_CI_MOTO_ENDPOINT", &server.endpoint)
        // Suites that need the emulator fail instead of skipping when CI is set.
        .env("CI", "true");
    step("tests", &mut tests)?;
    // The whole stack end to end, with the binaries the test build made: after the
    // tests, so that its timings do not compete with them for the CPU; each removal
    // scenario in its short form: no job may be interrupted.
    for scenario in [None, Some("spot"), Some("scale-in"), Some("warm"), Some("update")] {
        let label = match scenario {
            Some(name) => format!("cargo xtask demo --check --scenario {name}"),
            None => "cargo xtask demo --check".to_owned(),
        };
        timed(&label, || {
            let mut demo = Command::new(demo::binary()?);
            demo.args(["--check", "--moto-endpoint", &server.endpoint]);
            if let Some(name) = scenario {
                demo.args(["--scenario", name]);
            }
            let status = demo.current_dir(&root).status().context("failed to run the demo")?;
            if !status.success() {
                bail!("{label} failed ({status})");
            }
            Ok(())
        })?;
    }
    // The release, rehearsed on the same emulator with the same build.
    timed("cargo xtask release --rehearse", || {
        let status = Command::new(demo::rehearsal_binary()?)
            .args(["--moto-endpoint", &server.endpoint])
            .current_dir(&root)
            .status()
            .context("failed to run the release rehearsal")?;
        if !status.success() {
            bail!("the release rehearsal failed ({status})");
        }
        Ok(())
    })?;
    drop(server);

    eprintln!("ci passed in {:.0?}", started.elapsed());
    Ok(())
}

/// nextest when it is installed (one process per test, so tests cannot share state by
/// accident), otherwise `cargo test`.
fn test_command(cargo: &str, root: &std::path::Path, build_only: bool) -> Command {
    let mut command = Command::new(cargo);
    command.current_dir(root);
    let runner: &[&str] = if has_nextest(cargo) {
        &["nextest", "run", "--workspace", "--locked"]
    } else {
        &["test", "--workspace", "--locked"]
    };
    command.args(runner);
    // Build only, or run every test and report every failure.
    command.arg(if build_only { "--no-run" } else { "--no-fail-fast" });
    command
}

fn has_nextest(cargo: &str) -> bool {
    Command::new(cargo)
        .args(["nextest", "--version"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

fn step(name: &str, command: &mut Command) -> anyhow::Result<()> {
    timed(name, || {
        let status = command.status().with_context(|| format!("failed to run {name}"))?;
        if !status.success() {
            bail!("{name} failed ({status})");
        }
        Ok(())
    })
}

/// Runs one step of the run, announcing it and reporting how long it took.
fn timed(name: &str, step: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<()> {
    let started = Instant::now();
    eprintln!("==> {name}");
    step().with_context(|| format!("{name} failed"))?;
    eprintln!("==> {name}: ok in {:.0?}", started.elapsed());
    Ok(())
}
