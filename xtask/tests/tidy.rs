//! Tidy checks: rules of the code base that no compiler enforces, read off the tree.
//! Each failure says what is wrong and what to do about it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use elastic_ci_core::boot::config::BootConfig;
use elastic_ci_core::disk::DiskCheckConfig;
use elastic_ci_core::scaling::config::ScalerConfig;
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask is in the workspace").to_owned()
}

/// `cargo metadata` of the workspace, with its resolved dependency graph.
fn metadata() -> Value {
    let output = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(root())
        .output()
        .expect("cargo metadata runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON")
}

/// The workspace's packages: name → (normal dependencies, dev-dependencies).
fn workspace_dependencies(
    metadata: &Value,
) -> BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)> {
    let members: BTreeSet<&str> = metadata["workspace_members"]
        .as_array()
        .expect("workspace members")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .filter(|package| members.contains(package["id"].as_str().unwrap_or_default()))
        .map(|package| {
            let (mut normal, mut dev) = (BTreeSet::new(), BTreeSet::new());
            for dependency in package["dependencies"].as_array().expect("dependencies") {
                let name = dependency["name"].as_str().expect("a name").to_owned();
                match dependency["kind"].as_str() {
                    Some("dev") => dev.insert(name),
                    _ => normal.insert(name),
                };
            }
            (package["name"].as_str().expect("a name").to_owned(), (normal, dev))
        })
        .collect()
}

/// Every file git tracks (so the target directory and scratch files never count).
fn tracked_files() -> Vec<PathBuf> {
    let output = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(root())
        .output()
        .expect("git ls-files runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    output
        .stdout
        .split(|byte| *byte == 0)
        .filter(|path| !path.is_empty())
        .map(|path| PathBuf::from(String::from_utf8_lossy(path).into_owned()))
        .filter(|path| root().join(path).is_file())
        .collect()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(root().join(path))
        .unwrap_or_else(|error| panic!("failed to read {}: {error}", path.display()))
}

#[test]
fn core_depends_only_on_crates_that_do_no_io() {
    // Parsing, formats and error types; nothing that reaches the network, the file
    // system, the clock or a runtime.
    const ALLOWED: [&str; 5] = ["percent-encoding", "serde", "serde_json", "thiserror", "url"];
    let dependencies = workspace_dependencies(&metadata());
    let (normal, _) = &dependencies["elastic-ci-core"];
    let extra: Vec<&String> =
        normal.iter().filter(|name| !ALLOWED.contains(&name.as_str())).collect();
    assert!(
        extra.is_empty(),
        "elastic-ci-core must stay free of I/O (ARCHITECTURE.md), but depends on {extra:?}: move the code that needs them into elastic-ci-aws or a binary crate, or, if the crate does no I/O, add it to ALLOWED in {}",
        file!()
    );
}

#[test]
fn aws_sdk_service_crates_are_only_in_the_aws_crate_and_dev_only_crates() {
    // Crates that are never shipped: test support, the end-to-end tests, the automation.
    const DEV_ONLY: [&str; 3] = ["elastic-ci-testkit", "elastic-ci-e2e", "elastic-ci-aws"];
    let mut offenders = Vec::new();
    for (package, (normal, _)) in workspace_dependencies(&metadata()) {
        if DEV_ONLY.contains(&package.as_str()) {
            continue;
        }
        for dependency in normal.iter().filter(|name| name.starts_with("aws-sdk-")) {
            offenders.push(format!("{package} → {dependency}"));
        }
    }
    assert!(
        offenders.is_empty(),
        "AWS service calls go through the traits of elastic-ci-aws (ARCHITECTURE.md), but {offenders:?}: add a trait method there (with its adapter and fake) and call that; tests may use SDK crates as dev-dependencies"
    );
}

/// The packages cargo builds for the workspace on any platform, with the features it
/// activates (which `cargo metadata`'s lock-file graph does not tell): name → versions.
fn resolved_versions() -> BTreeMap<String, BTreeSet<String>> {
    let output = Command::new(env!("CARGO"))
        .args(["tree", "--workspace", "--locked", "-e", "all", "--target", "all"])
        .args(["--prefix", "none", "--format", "{p}"])
        .current_dir(root())
        .output()
        .expect("cargo tree runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let mut versions: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let mut words = line.split_whitespace();
        if let (Some(name), Some(version)) = (words.next(), words.next())
            && let Some(version) = version.strip_prefix('v')
        {
            versions.entry(name.to_owned()).or_default().insert(version.to_owned());
        }
    }
    versions
}

#[test]
fn one_tls_crypto_provider() {
    let resolved = resolved_versions();
    assert!(
        resolved.contains_key("aws-lc-rs"),
        "aws-lc-rs, the TLS crypto provider, is not in the graph"
    );
    assert!(
        !resolved.contains_key("ring"),
        "ring is in the dependency graph beside aws-lc-rs: find who pulls it in with `cargo tree -i ring --workspace -e all --target all` and choose the aws-lc-rs feature of that crate instead"
    );
}

/// The scaler's Lambda zip (`cargo xtask dist` builds it with `--no-default-features`)
/// carries no CloudWatch client: inside Lambda the queue metrics are log lines.
#[test]
fn the_lambda_build_of_the_scaler_has_no_cloudwatch_client() {
    let tree = |features: &[&str]| {
        let output = Command::new(env!("CARGO"))
            .args(["tree", "--locked", "-p", "elastic-ci-scaler", "-e", "normal"])
            .args(features)
            .args(["--prefix", "none", "--format", "{p}"])
            .current_dir(root())
            .output()
            .expect("cargo tree runs");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let shipped = tree(&["--no-default-features"]);
    assert!(
        !shipped.contains("aws-sdk-cloudwatch "),
        "the scaler built without default features depends on aws-sdk-cloudwatch: keep it behind the put-metric-data feature"
    );
    assert!(shipped.contains("lambda_runtime "), "{shipped}");
    assert!(
        tree(&[]).contains("aws-sdk-cloudwatch "),
        "`elastic-ci-scaler run` outside Lambda publishes with PutMetricData by default"
    );
}

#[test]
fn no_unexpected_duplicate_versions() {
    // Crates resolved at two versions for reasons outside the workspace's control, each
    // with the reason. Remove an entry when its duplicate goes.
    const CLOUDWATCH_PIN: &str = "aws-sdk-cloudwatch is pinned at 1.99 (a test dependency, for the local emulator) and brings the older smithy and http stack";
    const KNOWN: &[(&str, &str)] = &[
        ("aws-smithy-http", CLOUDWATCH_PIN),
        ("aws-smithy-json", CLOUDWATCH_PIN),
        ("aws-smithy-query", CLOUDWATCH_PIN),
        ("aws-smithy-xml", CLOUDWATCH_PIN),
        ("http", CLOUDWATCH_PIN),
        ("http-body", CLOUDWATCH_PIN),
        ("base64", "pem 4 (rcgen's, in the test kit) moved to base64 0.23; the SDK is on 0.22"),
        (
            "block-buffer",
            "the SDK's checksums use the RustCrypto 0.11 hashes, aws-config still sha1 0.10",
        ),
        (
            "cpufeatures",
            "the SDK's checksums use the RustCrypto 0.11 hashes, aws-config still sha1 0.10",
        ),
        (
            "crypto-common",
            "the SDK's checksums use the RustCrypto 0.11 hashes, aws-config still sha1 0.10",
        ),
        (
            "digest",
            "the SDK's checksums use the RustCrypto 0.11 hashes, aws-config still sha1 0.10",
        ),
        ("sha1", "the SDK's checksums use the RustCrypto 0.11 hashes, aws-config still sha1 0.10"),
        ("syn", "proc-macro crates are moving from syn 2 to syn 3"),
        ("synstructure", "proc-macro crates are moving from syn 2 to syn 3"),
        ("windows-sys", "platform crates (Windows only) pin different majors"),
    ];
    let unexpected: Vec<String> = resolved_versions()
        .into_iter()
        .filter(|(name, versions)| {
            versions.len() > 1 && !KNOWN.iter().any(|(known, _)| known == name)
        })
        .map(|(name, versions)| format!("{name} {versions:?}"))
        .collect();
    assert!(
        unexpected.is_empty(),
        "the dependency graph holds several versions of {unexpected:?}: align the dependency with the version the workspace already uses (`cargo tree -d --workspace -e all --target all`), or, if it cannot be helped, add it with the reason to KNOWN in {}",
        file!()
    );
}

#[test]
fn every_rust_file_says_what_it_is() {
    let missing: Vec<PathBuf> = tracked_files()
        .into_iter()
        .filter(|path| path.extension().is_some_and(|extension| extension == "rs"))
        .filter(|path| {
            let text = read(path);
            let first = text.lines().find(|line| !line.trim().is_empty()).unwrap_or_default();
            !first.starts_with("//!")
        })
        .collect();
    assert!(
        missing.is_empty(),
        "these files do not start with a `//!` comment saying what they are for: {missing:?}: add one"
    );
}

/// The backticked upper-case names in the doc paragraph of `file` that mentions
/// `anchor`, up to the next list item or blank doc line.
fn documented_variables(file: &str, anchor: &str) -> BTreeSet<String> {
    let text = read(Path::new(file));
    let docs: Vec<&str> = text
        .lines()
        .take_while(|line| line.starts_with("//!"))
        .map(|line| line.trim_start_matches("//!").trim())
        .collect();
    let start = docs
        .iter()
        .position(|line| line.contains(anchor))
        .unwrap_or_else(|| panic!("{file}'s crate documentation does not mention {anchor}"));
    let mut paragraph = docs[start].to_owned();
    for line in &docs[start + 1..] {
        if line.is_empty() || line.starts_with("- ") {
            break;
        }
        paragraph.push(' ');
        paragraph.push_str(line);
    }
    paragraph
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|word| {
            !word.is_empty()
                && word.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn crate_docs_list_exactly_the_variables_the_configuration_reads() {
    let cases: [(&str, &str, &[&str]); 3] = [
        ("crates/elastic-ci-scaler/src/lib.rs", "ScalerConfig::ENV_VARS", ScalerConfig::ENV_VARS),
        ("crates/elastic-ci-bootstrap/src/lib.rs", "BootConfig::ENV_VARS", BootConfig::ENV_VARS),
        ("crates/elastic-ci-bootstrap/src/lib.rs", "`check-disk` reads", DiskCheckConfig::ENV_VARS),
    ];
    for (file, anchor, variables) in cases {
        let documented = documented_variables(file, anchor);
        let read: BTreeSet<String> = variables.iter().map(|name| (*name).to_owned()).collect();
        let undocumented: Vec<&String> = read.difference(&documented).collect();
        let stale: Vec<&String> = documented.difference(&read).collect();
        assert!(
            undocumented.is_empty() && stale.is_empty(),
            "the Configuration section of {file} ({anchor}) is out of date: add {undocumented:?}, remove {stale:?}"
        );
    }
}

#[test]
fn nothing_in_the_repository_cites_the_specifications() {
    // The specifications of the original are the maintainers' notes, not part of the
    // repository: users reading help, the README or a trace file do not have them.
    let offenders: Vec<String> = tracked_files()
        .into_iter()
        .filter(|path| path != Path::new("xtask/tests/tidy.rs"))
        .filter_map(|path| {
            let text = std::fs::read_to_string(root().join(&path)).ok()?;
            let lines: Vec<String> = text
                .lines()
                .enumerate()
                .filter(|(_, line)| {
                    line.contains("spec/") || line.contains("spec §") || line.contains("Spec §")
                })
                .map(|(number, _)| format!("{}:{}", path.display(), number + 1))
                .collect();
            (!lines.is_empty()).then_some(lines)
        })
        .flatten()
        .collect();
    assert!(
        offenders.is_empty(),
        "these lines cite the specifications, which users and contributors do not have: {offenders:?}: say what the cited section says instead"
    );
}

#[test]
fn clippy_bans_reading_the_environment_outside_the_shims() {
    let clippy = read(Path::new("clippy.toml"));
    for method in ["std::env::var", "std::env::var_os", "std::env::vars", "std::env::vars_os"] {
        assert!(
            clippy.contains(&format!("path = \"{method}\"")),
            "clippy.toml must ban {method} (disallowed-methods): each binary reads its environment once, in its shim"
        );
    }
}

/// The template names its instance role (`<stack>-Role`, as the original did), so
/// CloudFormation refuses it without `CAPABILITY_NAMED_IAM`: every command in the
/// README that deploys it must pass that capability.
#[test]
fn readme_deploy_commands_pass_the_named_iam_capability() {
    let template = std::fs::read_to_string(root().join("cloudformation/aws-stack.yml")).unwrap();
    assert!(template.contains("RoleName:"), "the template no longer names a role");
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    // Shell commands continue over lines ending with a backslash.
    let joined = readme.replace("\\\n", " ");
    let deploys: Vec<&str> = joined
        .lines()
        .filter(|line| {
            ["create-stack", "update-stack", "create-change-set"]
                .iter()
                .any(|command| line.contains(&format!("aws cloudformation {command}")))
        })
        .collect();
    assert!(!deploys.is_empty(), "no deploy command found in the README");
    for line in deploys {
        assert!(
            line.contains("CAPABILITY_NAMED_IAM"),
            "this README command deploys the template without CAPABILITY_NAMED_IAM, which CloudFormation then refuses: {line}"
        );
    }
}
