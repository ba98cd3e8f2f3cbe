//! The agent image's files against the contracts of the code that relies on them: the
//! boot plan's paths and units, the stack's log groups, the sudo rule, and the
//! CloudWatch configuration script run on a copy of an instance's files.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use elastic_ci_core::boot::cfn_env::{self, CfnEnvEntry, SetMode};
use elastic_ci_core::boot::plan;

fn image() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("packer/linux")
}

fn read(relative: &str) -> String {
    let path = image().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

fn unit(name: &str) -> String {
    read(&format!("conf/systemd/{name}"))
}

fn has_line(text: &str, line: &str) -> bool {
    text.lines().any(|candidate| candidate.trim() == line)
}

#[test]
fn the_agent_unit_terminates_the_instance_on_every_stop_and_drains_jobs() {
    let agent = unit("buildkite-agent.service");
    for line in [
        format!("User={}", plan::AGENT_USER),
        format!("EnvironmentFile=-{}", plan::AGENT_ENV_FILE_PATH),
        format!("ExecStart={} start", plan::AGENT_BINARY_PATH),
        format!("ExecStopPost={} terminate", plan::BOOTSTRAP_BINARY_PATH),
        "KillMode=process".to_owned(),
        "TimeoutStopSec=0".to_owned(),
        "Restart=on-failure".to_owned(),
        "SyslogIdentifier=buildkite-agent".to_owned(),
    ] {
        assert!(has_line(&agent, &line), "{line:?} missing from buildkite-agent.service");
    }
}

#[test]
fn the_removal_notice_listener_runs_from_every_boot_and_nothing_is_downloaded_for_it() {
    let handler = Path::new(plan::STOP_HANDLER_PATH);
    assert_eq!(handler.parent(), Some(Path::new("/usr/local/bin")), "installed from conf/bin");
    let shim = read(&format!("conf/bin/{}", handler.file_name().unwrap().to_string_lossy()));
    assert!(
        has_line(&shim, &format!("exec {} stop-gracefully \"$@\"", plan::BOOTSTRAP_BINARY_PATH)),
        "{shim}"
    );
    let watch = unit("elastic-ci-watch.service");
    assert!(
        has_line(&watch, &format!("ExecStart={} watch", plan::BOOTSTRAP_BINARY_PATH)),
        "{watch}"
    );
    assert!(has_line(&watch, "WantedBy=multi-user.target"), "{watch}");
    let install = read("scripts/install-elastic-ci.sh");
    assert!(has_line(&install, "systemctl enable elastic-ci-watch.service"), "{install}");
    assert!(!image().join("conf/systemd/lifecycled.service").exists());
    for file in [
        "scripts/install-downloads.sh",
        "versions.auto.pkrvars.hcl",
        "variables.pkr.hcl",
        "amazon-linux-2023.pkr.hcl",
    ] {
        assert!(
            !read(file).to_lowercase().contains("lifecycled"),
            "{file} still mentions lifecycled"
        );
    }
}

#[test]
fn every_unit_the_boot_enables_is_in_the_image() {
    // The boot runs `systemctl enable --now` on these (crates/elastic-ci-core/src/boot/plan.rs).
    for name in ["buildkite-agent.service", "refresh_authorized_keys.timer"] {
        assert!(image().join("conf/systemd").join(name).is_file(), "{name} is not in the image");
    }
    let refresh = unit("refresh_authorized_keys.service");
    assert!(has_line(&refresh, &format!("ExecStart={}", plan::REFRESH_KEYS_SCRIPT_PATH)));
}

#[test]
fn sudo_allows_only_fix_permissions() {
    let sudoers = read("conf/sudoers/buildkite-agent");
    let rules: Vec<&str> = sudoers
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect();
    assert_eq!(
        rules,
        [format!(
            "buildkite-agent ALL=(root) NOPASSWD: {} fix-permissions *",
            plan::BOOTSTRAP_BINARY_PATH
        )]
    );
}

#[test]
fn the_template_runs_every_provisioner_script_and_no_other() {
    let template = read("amazon-linux-2023.pkr.hcl");
    let named: BTreeSet<String> = template
        .lines()
        .filter_map(|line| line.trim().strip_prefix("\"${path.root}/scripts/"))
        .map(|rest| rest.trim_end_matches(['"', ',']).to_owned())
        .collect();
    let on_disk: BTreeSet<String> = std::fs::read_dir(image().join("scripts"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(named, on_disk);
}

/// The CloudWatch agent's files and groups, with `{stack_name}` in the group names.
fn collected_logs() -> Vec<(String, String, String)> {
    let config: serde_json::Value =
        serde_json::from_str(&read("conf/cloudwatch-agent/amazon-cloudwatch-agent.json")).unwrap();
    config["logs"]["logs_collected"]["files"]["collect_list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| {
            let field = |name: &str| entry[name].as_str().unwrap().to_owned();
            (field("file_path"), field("log_group_name"), field("log_stream_name"))
        })
        .collect()
}

#[test]
fn logs_stream_per_instance_into_the_groups_the_stack_creates() {
    let logs = collected_logs();
    let files: BTreeSet<&str> = logs.iter().map(|(file, _, _)| file.as_str()).collect();
    for required in
        ["/var/log/messages", "/var/log/docker", "/var/log/buildkite-agent", plan::LOG_FILE_PATH]
    {
        assert!(files.contains(required), "{required} is not streamed");
    }
    let root = image().parent().unwrap().parent().unwrap().to_path_buf();
    let template = std::fs::read_to_string(root.join("cloudformation/aws-stack.yml")).unwrap();
    let terraform = std::fs::read_to_string(root.join("terraform/compute.tf")).unwrap();
    for (file, group, stream) in &logs {
        assert_eq!(stream, "{instance_id}", "{file}");
        let name =
            group.strip_prefix("/buildkite/{stack_name}/").unwrap_or_else(|| panic!("{group}"));
        assert!(
            template
                .contains(&format!("LogGroupName: !Sub /buildkite/${{AWS::StackName}}/{name}\n")),
            "the CloudFormation template creates no log group for {group}"
        );
        assert!(
            terraform.contains(&format!("\"{name}\"")),
            "the Terraform module creates no log group for {group}"
        );
    }
}

/// A copy of the files the script reads and writes, with a recording stand-in for the
/// CloudWatch agent's control program.
struct Instance {
    root: tempfile::TempDir,
}

impl Instance {
    fn new(stack_name: &str) -> Instance {
        let instance = Instance { root: tempfile::tempdir().unwrap() };
        let config = instance.path(plan::CLOUDWATCH_AGENT_CONFIG_PATH);
        std::fs::create_dir_all(config.parent().unwrap()).unwrap();
        std::fs::write(&config, read("conf/cloudwatch-agent/amazon-cloudwatch-agent.json"))
            .unwrap();
        let ctl = instance.path("/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl");
        std::fs::create_dir_all(ctl.parent().unwrap()).unwrap();
        std::fs::write(
            &ctl,
            format!("#!/bin/sh\necho \"$@\" >> '{}'\n", instance.path("/ctl.log").display()),
        )
        .unwrap();
        std::fs::set_permissions(&ctl, std::fs::Permissions::from_mode(0o755)).unwrap();
        let cfn_env_text = cfn_env::render(&[
            CfnEnvEntry {
                mode: SetMode::Always,
                name: "BUILDKITE_AGENTS_PER_INSTANCE".into(),
                value: "1".into(),
            },
            CfnEnvEntry {
                mode: SetMode::Always,
                name: "BUILDKITE_STACK_NAME".into(),
                value: stack_name.into(),
            },
        ]);
        let cfn_env_path = instance.path(plan::CFN_ENV_PATH);
        std::fs::create_dir_all(cfn_env_path.parent().unwrap()).unwrap();
        std::fs::write(cfn_env_path, cfn_env_text).unwrap();
        instance
    }

    fn path(&self, absolute: &str) -> PathBuf {
        self.root.path().join(absolute.trim_start_matches('/'))
    }

    fn configure(&self) -> std::process::Output {
        Command::new("bash")
            .arg(image().join("conf/bin/elastic-ci-configure-cloudwatch-agent"))
            .arg(self.root.path())
            .output()
            .unwrap()
    }

    fn config(&self) -> String {
        std::fs::read_to_string(self.path(plan::CLOUDWATCH_AGENT_CONFIG_PATH)).unwrap()
    }

    fn ctl_calls(&self) -> String {
        std::fs::read_to_string(self.path("/ctl.log")).unwrap_or_default()
    }
}

#[test]
fn the_cloudwatch_agent_starts_with_groups_named_after_the_stack() {
    let instance = Instance::new("ci-linux.prod_2");
    let output = instance.configure();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    let config: serde_json::Value = serde_json::from_str(&instance.config()).unwrap();
    let groups: Vec<&str> = config["logs"]["logs_collected"]["files"]["collect_list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["log_group_name"].as_str().unwrap())
        .collect();
    assert!(groups.contains(&"/buildkite/ci-linux.prod_2/system"), "{groups:?}");
    assert!(
        groups.iter().all(|group| group.starts_with("/buildkite/ci-linux.prod_2/")),
        "{groups:?}"
    );
    let config_path = instance.path(plan::CLOUDWATCH_AGENT_CONFIG_PATH);
    assert_eq!(
        instance.ctl_calls(),
        format!("-a fetch-config -m ec2 -s -c file:{}\n", config_path.display())
    );

    // A later run (a reboot, or a job that rewrote cfn-env) keeps the names.
    let rendered = instance.config();
    std::fs::write(instance.path(plan::CFN_ENV_PATH), "set_always BUILDKITE_STACK_NAME other\n")
        .unwrap();
    assert!(instance.configure().status.success());
    assert_eq!(instance.config(), rendered);
    assert_eq!(instance.ctl_calls().lines().count(), 2);
}

#[test]
fn a_stack_name_that_is_not_one_starts_nothing() {
    for hostile in ["a b", "x'; touch /tmp/pwned; '", "../../etc", "a|b"] {
        let instance = Instance::new(hostile);
        let original = instance.config();
        let output = instance.configure();
        assert!(!output.status.success(), "{hostile:?} was accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("no valid BUILDKITE_STACK_NAME"), "{stderr}");
        assert_eq!(instance.config(), original, "{hostile:?} changed the configuration");
        assert_eq!(instance.ctl_calls(), "", "{hostile:?} started the agent");
    }
}

/// The blocks of every `.pkr.hcl` file of a template directory.
fn packer_blocks(dir: &Path) -> Vec<hcl::Block> {
    let mut blocks = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.to_string_lossy().ends_with(".pkr.hcl") {
            let body: hcl::Body = hcl::from_str(&std::fs::read_to_string(&path).unwrap())
                .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
            blocks.extend(body.into_blocks());
        }
    }
    blocks
}

fn attribute<'a>(block: &'a hcl::Block, key: &str) -> Option<&'a hcl::Expression> {
    block.body().attributes().find(|attribute| attribute.key() == key).map(hcl::Attribute::expr)
}

#[test]
fn every_image_variable_is_described_in_both_templates() {
    for dir in [image(), image().join("test")] {
        let variables: Vec<hcl::Block> = packer_blocks(&dir)
            .into_iter()
            .filter(|block| block.identifier() == "variable")
            .collect();
        assert!(variables.len() > 10, "{}", dir.display());
        for variable in &variables {
            let name = variable.labels()[0].as_str();
            let described = matches!(
                attribute(variable, "description"),
                Some(hcl::Expression::String(text)) if !text.trim().is_empty()
            );
            assert!(described, "variable {name} of {} has no description", dir.display());
        }
    }
    // The emulator variant takes every input the real template takes.
    let names = |dir: PathBuf| -> BTreeSet<String> {
        packer_blocks(&dir)
            .into_iter()
            .filter(|block| block.identifier() == "variable")
            .map(|block| block.labels()[0].as_str().to_owned())
            .collect()
    };
    let missing: Vec<String> =
        names(image()).difference(&names(image().join("test"))).cloned().collect();
    assert_eq!(missing, ["encrypt_boot", "kms_key_id"], "the test variant lacks inputs");
}

#[test]
fn the_image_declares_its_plugin_requires_imdsv2_and_writes_a_manifest() {
    let blocks = packer_blocks(&image());
    let packer =
        blocks.iter().find(|block| block.identifier() == "packer").expect("a packer block");
    let plugins = packer
        .body()
        .blocks()
        .find(|block| block.identifier() == "required_plugins")
        .expect("required_plugins");
    let amazon = attribute(plugins, "amazon").expect("the amazon plugin").to_string();
    assert!(amazon.contains("github.com/hashicorp/amazon"), "{amazon}");

    let source = blocks.iter().find(|block| block.identifier() == "source").expect("a source");
    assert_eq!(
        attribute(source, "imds_support"),
        Some(&hcl::Expression::String("v2.0".to_owned()))
    );
    for setting in ["encrypt_boot", "kms_key_id"] {
        assert!(attribute(source, setting).is_some(), "{setting} is not an option");
    }
    for dir in [image(), image().join("test")] {
        let build = packer_blocks(&dir)
            .into_iter()
            .find(|block| block.identifier() == "build")
            .expect("a build");
        let manifest = build
            .body()
            .blocks()
            .find(|block| {
                block.identifier() == "post-processor"
                    && block.labels().first().map(hcl::BlockLabel::as_str) == Some("manifest")
            })
            .unwrap_or_else(|| panic!("{} has no manifest post-processor", dir.display()));
        assert_eq!(
            attribute(manifest, "output").map(ToString::to_string).as_deref(),
            Some("var.manifest")
        );
    }
}

#[test]
fn the_install_script_downloads_only_what_the_versions_file_pins() {
    let script = read("scripts/install-downloads.sh");
    assert!(!script.contains("https://"), "the script builds a URL of its own");
    let template = read("amazon-linux-2023.pkr.hcl");
    let versions: std::collections::BTreeMap<String, hcl::Value> =
        hcl::from_str(&read("versions.auto.pkrvars.hcl")).unwrap();
    for name in versions.keys().filter_map(|name| name.strip_suffix("_url")) {
        let variable = name.to_ascii_uppercase();
        for (suffix, input) in [("URL", "url"), ("SHA256", "sha256")] {
            let passed = format!("\"{variable}_{suffix}=${{var.{name}_{input}[var.arch]}}\"");
            assert!(template.contains(&passed), "{passed} is not passed to the scripts");
            assert!(
                script.contains(&format!("{variable}_{suffix}")),
                "{variable}_{suffix} is not read"
            );
        }
    }
}
