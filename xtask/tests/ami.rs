//! `cargo xtask ami`: the dry run's commands, and a whole build against the local AWS
//! emulator with the emulator variant of the Packer template (no instance to provision),
//! followed by `cargo xtask template` rendering the recorded AMI ids.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use elastic_ci_aws::ec2::{Ec2MachineImages, ImageState, MachineImages};
use elastic_ci_testkit::moto::{Moto, moto};
use support::xtask;

fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn stdout_of(output: &Output) -> String {
    assert!(output.status.success(), "xtask failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// A directory with stand-ins for the instance binaries.
fn dist_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for binary in ["elastic-ci-bootstrap", "elastic-ci-hooks"] {
        std::fs::write(dir.path().join(binary), "#!/bin/sh\n").unwrap();
    }
    dir
}

fn without_endpoints(command: &mut std::process::Command) -> &mut std::process::Command {
    command.env_remove("AWS_ENDPOINT_URL").env_remove("AWS_ENDPOINT_URL_EC2")
}

#[test]
fn a_dry_run_prints_the_packer_command_and_the_copies_and_changes_nothing() {
    let work = tempfile::tempdir().unwrap();
    let dist = dist_dir();
    let mappings = work.path().join("mappings.yml");
    let output = without_endpoints(xtask().args([
        "ami",
        "--dry-run",
        "--arch",
        "arm64",
        "--region",
        "eu-central-1",
        "--copy-to-regions",
        "us-west-2,ap-southeast-2",
        "--public",
        "--version",
        "v1.2.3",
    ]))
    .arg("--dist-dir")
    .arg(dist.path())
    .arg("--mappings")
    .arg(&mappings)
    .output()
    .unwrap();
    let stdout = stdout_of(&output);
    let lines: Vec<&str> = stdout.lines().collect();

    let packer = lines[0];
    let template = project_root().join("packer/linux");
    let expected_start = "would run: packer build -machine-readable -color=false -var region=eu-central-1 -var arch=arm64 -var ami_name=elastic-ci-stack-linux-arm64-v1.2.3-";
    assert!(packer.starts_with(expected_start), "{packer}");
    let expected_end = format!(
        " -var version=v1.2.3 -var dist_dir={} -var public=true -var manifest={} {}",
        dist.path().display(),
        work.path().join("packer-manifest-linux-arm64.json").display(),
        template.display()
    );
    assert!(packer.ends_with(&expected_end), "{packer}\ndoes not end with\n{expected_end}");
    assert!(!packer.contains("ec2_endpoint"), "{packer}");
    assert!(!packer.contains("encrypt_boot"), "{packer}");
    assert_eq!(
        &lines[1..4],
        [
            "would call EC2 CopyImage in us-west-2 (source <AMI id from Packer> in eu-central-1, name ".to_owned()
                + packer.split("ami_name=").nth(1).unwrap().split(' ').next().unwrap()
                + ", with its tags)",
            "would call EC2 DescribeImages in us-west-2 every 15s until the copy is available".to_owned(),
            "would call EC2 ModifyImageAttribute in us-west-2 (launch permission: group all)".to_owned(),
        ]
    );
    assert!(lines[4].starts_with("would call EC2 CopyImage in ap-southeast-2"), "{}", lines[4]);
    assert_eq!(
        lines.last().unwrap(),
        &format!(
            "would write {} with linuxarm64 for eu-central-1, us-west-2, ap-southeast-2",
            mappings.display()
        )
    );
    assert_eq!(lines.len(), 8, "{stdout}");
    assert!(!mappings.exists());
    // The shipped template pins no digests yet: the dry run says so, a real run refuses.
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no SHA-256 digest for"), "{stderr}");
}

#[test]
fn a_dry_run_without_binaries_prints_their_build_and_an_endpoint_reaches_packer() {
    let work = tempfile::tempdir().unwrap();
    let output = xtask()
        .args(["ami", "--dry-run", "--region", "us-east-1", "--version", "v1"])
        .arg("--mappings")
        .arg(work.path().join("mappings.yml"))
        .env_remove("AWS_ENDPOINT_URL_EC2")
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .output()
        .unwrap();
    let stdout = stdout_of(&output);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "would run: cargo xtask dist --no-arm64");
    assert!(lines[1].contains(" -var arch=x86_64 "), "{}", lines[1]);
    assert!(lines[1].contains("/dist/x86_64 -var public"), "{}", lines[1]);
    let manifest = work.path().join("packer-manifest-linux-x86_64.json");
    let expected = format!(
        " -var public=false -var manifest={} -var ec2_endpoint=http://127.0.0.1:9 ",
        manifest.display()
    );
    assert!(lines[1].contains(&expected), "{}", lines[1]);

    let output = xtask()
        .args([
            "ami",
            "--dry-run",
            "--version",
            "v1",
            "--encrypt-boot",
            "--kms-key-id",
            "alias/images",
        ])
        .arg("--mappings")
        .arg(work.path().join("mappings.yml"))
        .env_remove("AWS_ENDPOINT_URL_EC2")
        .env_remove("AWS_ENDPOINT_URL")
        .output()
        .unwrap();
    let stdout = stdout_of(&output);
    assert!(stdout.contains(" -var encrypt_boot=true -var kms_key_id=alias/images "), "{stdout}");
}

#[test]
fn refuses_bad_inputs_before_running_anything() {
    let work = tempfile::tempdir().unwrap();
    for (args, expected) in [
        (&["--region", "Mars"][..], "invalid region \"Mars\": expected a name such as us-east-1"),
        (
            &["--region", "us-east-1", "--copy-to-regions", "us-east-1"][..],
            "--copy-to-regions names us-east-1",
        ),
        (&["--version", "v1;rm -rf /"][..], "invalid image name"),
        (&["--arch", "sparc"][..], "invalid value 'sparc' for '--arch <ARCH>'"),
        (&["--os", "solaris"][..], "invalid value 'solaris' for '--os <OS>'"),
        (
            &["--os", "windows", "--arch", "arm64"][..],
            "Windows images are built for x86_64 only: leave out --arch arm64",
        ),
        (&["--public", "--encrypt-boot"][..], "cannot be used with"),
        (&["--kms-key-id", "k"][..], "--encrypt-boot"),
    ] {
        let output = without_endpoints(xtask().arg("ami").args(args))
            .args(["--version", "v1"].iter().filter(|_| !args.contains(&"--version")))
            .arg("--mappings")
            .arg(work.path().join("mappings.yml"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(expected), "{expected:?} missing from: {stderr}");
    }
    // A real build of the shipped template needs pinned digests: it stops before Packer.
    let dist = dist_dir();
    let output = without_endpoints(xtask().args(["ami", "--version", "v1"]))
        .arg("--dist-dir")
        .arg(dist.path())
        .arg("--mappings")
        .arg(work.path().join("mappings.yml"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("no SHA-256 digest for buildkite_agent_beta_sha256, buildkite_agent_sha256, docker_buildx_sha256, docker_compose_sha256 in "), "{stderr}");
    assert!(!work.path().join("mappings.yml").exists());
}

/// Whether Packer can run; `cargo xtask ci` installs it before the tests.
fn packer_available() -> bool {
    let found = std::process::Command::new("packer")
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success());
    if !found {
        #[allow(clippy::disallowed_methods, reason = "test harness configuration")]
        let in_ci = std::env::var_os("CI").is_some();
        assert!(
            !in_ci,
            "packer is not installed but CI is set: run the tests through `cargo xtask ci`"
        );
        #[allow(clippy::print_stderr, reason = "tell the developer why the test did nothing")]
        {
            eprintln!("skipping: packer is not installed (apt-get install packer)");
        }
    }
    found
}

/// `cargo xtask ami ARGS` with the emulator variant of the template, stand-in
/// binaries and a mappings file, against the emulator.
fn ami_on_moto(moto: &Moto, args: &[&str], dist: &Path, mappings: &Path) -> Output {
    xtask()
        .arg("ami")
        .args(args)
        .arg("--template")
        .arg(project_root().join("packer/linux/test"))
        .arg("--dist-dir")
        .arg(dist)
        .arg("--mappings")
        .arg(mappings)
        .envs(moto.env())
        .env_remove("AWS_ENDPOINT_URL_EC2")
        .output()
        .unwrap()
}

#[tokio::test]
async fn builds_copies_and_records_an_ami_that_the_template_then_renders() {
    let Some(moto) = moto() else { return };
    if !packer_available() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let dist = dist_dir();
    let mappings = work.path().join("mappings.yml");
    // An entry of another build, which must survive.
    std::fs::write(&mappings, "ap-south-1:\n  linuxarm64: ami-0123456789abcdef0\n").unwrap();

    let args = ["--region", "us-east-1", "--copy-to-regions", "eu-west-1,us-west-2", "--public"];
    let args = [&args[..], &["--version", "v9.9.9-test"]].concat();
    let stdout = stdout_of(&ami_on_moto(&moto, &args, dist.path(), &mappings));

    let recorded: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(&mappings).unwrap()).unwrap();
    let ami = |region: &str, variant: &str| {
        recorded[region][variant]
            .as_str()
            .unwrap_or_else(|| panic!("no {region} {variant} in {recorded:?}"))
            .to_owned()
    };
    assert_eq!(ami("ap-south-1", "linuxarm64"), "ami-0123456789abcdef0");
    let source = ami("us-east-1", "linuxamd64");
    let copies = [
        ("eu-west-1", ami("eu-west-1", "linuxamd64")),
        ("us-west-2", ami("us-west-2", "linuxamd64")),
    ];
    assert_eq!(
        stdout,
        format!(
            "us-east-1 linuxamd64 {source}\neu-west-1 linuxamd64 {}\nus-west-2 linuxamd64 {}\n",
            copies[0].1, copies[1].1
        )
    );

    let images = Ec2MachineImages::new(&moto.sdk_config());
    let built =
        images.describe_image("us-east-1", &source).await.unwrap().expect("the built image");
    assert!(built.name.starts_with("elastic-ci-stack-linux-x86_64-v9.9.9-test-"), "{}", built.name);
    assert!(built.public, "Packer makes the source image public");
    for (region, copy) in &copies {
        let image = images.describe_image(region, copy).await.unwrap().expect("the copy");
        assert_eq!((image.state, image.public), (ImageState::Available, true), "{region} {copy}");
        assert_eq!(image.name, built.name);
    }

    let rendered = work.path().join("aws-stack.yml");
    let output = xtask()
        .args(["template", "--version", "v9.9.9-test", "--mappings"])
        .arg(&mappings)
        .arg("--output")
        .arg(&rendered)
        .output()
        .unwrap();
    stdout_of(&output);
    let template: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(&rendered).unwrap()).unwrap();
    let mapping = &template["Mappings"]["AWSRegion2AMI"];
    assert_eq!(mapping["us-east-1"]["linuxamd64"].as_str(), Some(source.as_str()));
    assert_eq!(mapping["eu-west-1"]["linuxamd64"].as_str(), Some(copies[0].1.as_str()));
    assert_eq!(mapping["us-west-2"]["linuxamd64"].as_str(), Some(copies[1].1.as_str()));
    assert_eq!(mapping["ap-south-1"]["linuxarm64"].as_str(), Some("ami-0123456789abcdef0"));
    // A variant without an image maps to a sentence naming it, never to an empty id.
    assert_eq!(
        mapping["us-east-1"]["linuxarm64"].as_str(),
        Some(
            "No arm64 Amazon Linux 2023 AMI for us-east-1 in this template: set ImageId or ImageIdParameter"
        )
    );
}

#[tokio::test]
async fn a_failed_copy_keeps_the_built_image_in_the_mappings() {
    let Some(moto) = moto() else { return };
    if !packer_available() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let dist = dist_dir();
    let mappings = work.path().join("mappings.yml");

    // The emulator knows no such region, so the copy fails after the build.
    let args = ["--arch", "arm64", "--region", "us-east-1", "--copy-to-regions", "xx-nowhere-1"];
    let args = [&args[..], &["--version", "v9.9.9-test"]].concat();
    let output = ami_on_moto(&moto, &args, dist.path(), &mappings);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("failed to copy ami-"), "{stderr}");
    assert!(stderr.contains(" to xx-nowhere-1"), "{stderr}");

    let recorded: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(&mappings).unwrap()).unwrap();
    let source = recorded["us-east-1"]["linuxarm64"].as_str().unwrap();
    let images = Ec2MachineImages::new(&moto.sdk_config());
    let built = images.describe_image("us-east-1", source).await.unwrap().expect("the built image");
    assert!(!built.public, "not asked to be public");
    assert!(recorded.get("xx-nowhere-1").is_none(), "{recorded:?}");
}

#[tokio::test]
async fn prune_deregisters_old_development_images_and_keeps_releases_and_the_newest() {
    let Some(moto) = moto() else { return };
    if !packer_available() {
        return;
    }
    // A region no other test builds in: pruning sees every image of the account there.
    let region = "ca-central-1";
    let work = tempfile::tempdir().unwrap();
    let dist = dist_dir();
    // An emulator that outlived earlier runs of this test still has their development
    // images there: clear them first (their releases stay, as they should).
    let output = xtask()
        .args(["ami", "prune", "--regions", region, "--keep", "0", "--older-than", "0s", "--yes"])
        .envs(moto.env())
        .output()
        .unwrap();
    stdout_of(&output);
    let mut built = Vec::new();
    for version in ["v7.0.0", "v7.0.0-1-gaaaaaaa", "v7.0.0-2-gbbbbbbb"] {
        let mappings = work.path().join(format!("{version}.yml"));
        let output =
            ami_on_moto(&moto, &["--region", region, "--version", version], dist.path(), &mappings);
        let stdout = stdout_of(&output);
        built.push(stdout.split_whitespace().last().unwrap().to_owned());
        let manifest =
            std::fs::read_to_string(work.path().join("packer-manifest-linux-x86_64.json"))
                .expect("packer's manifest beside the mappings");
        assert!(manifest.contains(built.last().unwrap().as_str()), "{manifest}");
        // Creation times are kept to the second.
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    let [release, old_dev, new_dev] = [&built[0], &built[1], &built[2]];

    let prune = |extra: &[&str]| {
        let output = xtask()
            .args(["ami", "prune", "--regions", region, "--keep", "1", "--older-than", "0s"])
            .args(extra)
            .envs(moto.env())
            .output()
            .unwrap();
        (stdout_of(&output), String::from_utf8_lossy(&output.stderr).into_owned())
    };
    let (stdout, stderr) = prune(&[]);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.starts_with(&format!("would deregister {region} {old_dev} (")), "{stdout}");
    assert!(stderr.contains("would delete 1 image in 1 region, kept "), "{stderr}");
    let images = Ec2MachineImages::new(&moto.sdk_config());
    for ami in &built {
        assert!(images.describe_image(region, ami).await.unwrap().is_some(), "{ami} is gone");
    }

    let (stdout, _) = prune(&["--yes"]);
    assert!(stdout.starts_with(&format!("deregistered {region} {old_dev} (")), "{stdout}");
    let left: Vec<String> = images
        .owned_images(region, "elastic-ci-stack-*")
        .await
        .unwrap()
        .into_iter()
        .map(|image| image.image_id)
        .collect();
    assert!(left.contains(release) && left.contains(new_dev), "{left:?}");
    assert!(!left.contains(old_dev), "{left:?}");

    let output =
        xtask().args(["ami", "prune", "--older-than", "3w"]).envs(moto.env()).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("invalid age \"3w\""), "{stderr}");
}
