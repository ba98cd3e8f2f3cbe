//! `cargo xtask pin-downloads` against a local HTTPS mirror: every file pinned with its
//! digest, upstream checksum files honoured, and a mismatch or a failed download
//! leaving the versions file as it was.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use elastic_ci_testkit::http::{TestServer, file_routes};
use support::xtask;

fn shipped_versions() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("packer/linux/versions.auto.pkrvars.hcl")
}

fn sha256(bytes: &[u8]) -> String {
    let output = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(bytes)?;
            child.wait_with_output()
        })
        .unwrap();
    String::from_utf8(output.stdout).unwrap().split_whitespace().next().unwrap().to_owned()
}

/// The mirror's paths, as the dry run names them: downloads, then checksum files.
fn planned_paths(versions: &Path, base: &str) -> (Vec<String>, Vec<String>) {
    let output = xtask()
        .args(["pin-downloads", "--dry-run", "--base-url", base, "--file"])
        .arg(versions)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let mut downloads = Vec::new();
    let mut checksums = Vec::new();
    for line in stdout.lines() {
        if let Some(url) = line.strip_prefix("would download ") {
            downloads.push(url.strip_prefix(base).unwrap().to_owned());
        } else if let Some(url) = line.strip_prefix("would check against ") {
            checksums.push(url.strip_prefix(base).unwrap().to_owned());
        } else {
            panic!("unexpected dry-run line {line:?}");
        }
    }
    (downloads, checksums)
}

/// A mirror serving a distinct body for every download, and checksum files listing
/// them (one entry of `wrong_checksum`, if given, with another digest).
struct Mirror {
    server: TestServer,
    bodies: BTreeMap<String, Vec<u8>>,
}

fn mirror(versions: &Path, wrong_checksum: Option<&str>, failing: &[&str]) -> Mirror {
    // The paths do not depend on the host: plan them against a placeholder.
    let (downloads, checksums) = planned_paths(versions, "https://mirror.invalid");
    let mut files = BTreeMap::new();
    let mut bodies = BTreeMap::new();
    for path in &downloads {
        let body = format!("contents of {path}\n").into_bytes();
        bodies.insert(path.clone(), body.clone());
        files.insert(path.clone(), body);
    }
    for checksum_path in &checksums {
        let dir = checksum_path.rsplit_once('/').unwrap().0;
        let mut text = String::new();
        for (path, body) in &bodies {
            if let Some(name) = path.strip_prefix(&format!("{dir}/")) {
                let digest =
                    if Some(name) == wrong_checksum { "0".repeat(64) } else { sha256(body) };
                text.push_str(&format!("{digest}  {name}\n"));
            }
        }
        files.insert(checksum_path.clone(), text.into_bytes());
    }
    let failing = failing.iter().map(|path| (*path).to_owned()).collect::<BTreeSet<_>>();
    Mirror { server: TestServer::https(file_routes(files, failing)), bodies }
}

fn pin(mirror: &Mirror, versions: &Path) -> std::process::Output {
    xtask()
        .args(["pin-downloads", "--base-url"])
        .arg(mirror.server.url(""))
        .arg("--file")
        .arg(versions)
        .env("SSL_CERT_FILE", mirror.server.ca_pem_path().unwrap())
        .output()
        .unwrap()
}

fn copy_of_shipped() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("versions.auto.pkrvars.hcl");
    std::fs::copy(shipped_versions(), &path).unwrap();
    (dir, path)
}

#[test]
fn pins_every_download_of_both_architectures_from_a_mirror() {
    let (_dir, versions) = copy_of_shipped();
    let mirror = mirror(&versions, None, &[]);
    let output = pin(&mirror, &versions);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    let text = std::fs::read_to_string(&versions).unwrap();
    let parsed: BTreeMap<String, hcl::Value> = hcl::from_str(&text).unwrap();
    let mut n_pinned = 0;
    for (name, value) in &parsed {
        let Some(download) = name.strip_suffix("_url") else { continue };
        for arch in ["x86_64", "arm64"] {
            let url = value.as_object().unwrap()[arch].as_str().unwrap();
            let path = url.strip_prefix(&mirror.server.url("")).expect("the mirror's URL");
            let digest = parsed[&format!("{download}_sha256")].as_object().unwrap()[arch]
                .as_str()
                .unwrap()
                .to_owned();
            assert_eq!(digest, sha256(&mirror.bodies[path]), "{download} {arch}");
            n_pinned += 1;
        }
    }
    assert_eq!(n_pinned, 8, "{text}");
    // The versions are kept.
    assert!(text.contains("docker_compose_version = \"2.29.7\"\n"), "{text}");
}

#[test]
fn a_checksum_mismatch_is_refused_and_leaves_the_file_unchanged() {
    let (_dir, versions) = copy_of_shipped();
    let before = std::fs::read(&versions).unwrap();
    let mirror = mirror(&versions, Some("buildx-v0.17.1.linux-arm64"), &[]);
    let output = pin(&mirror, &versions);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("/buildx-v0.17.1.linux-arm64 has SHA-256 "), "{stderr}");
    assert!(
        stderr.contains("/docker/buildx/releases/download/v0.17.1/checksums.txt says 0000"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&versions).unwrap(), before);
}

#[test]
fn a_failed_download_leaves_the_file_unchanged() {
    let (_dir, versions) = copy_of_shipped();
    let before = std::fs::read(&versions).unwrap();
    let failing = "/docker/compose/releases/download/v2.29.7/docker-compose-linux-aarch64";
    let mirror = mirror(&versions, None, &[failing]);
    let output = pin(&mirror, &versions);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains(&format!("failed to download {}", mirror.server.url(failing))),
        "{stderr}"
    );
    assert!(stderr.contains("HTTP 500"), "{stderr}");
    assert_eq!(std::fs::read(&versions).unwrap(), before);

    // An untrusted mirror fails the same way, before anything is written.
    let output = xtask()
        .args(["pin-downloads", "--base-url"])
        .arg(mirror.server.url(""))
        .arg("--file")
        .arg(&versions)
        .env_remove("SSL_CERT_FILE")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("failed to download https://127.0.0.1:"), "{stderr}");
    assert_eq!(std::fs::read(&versions).unwrap(), before);
}

#[test]
fn bad_inputs_are_refused_naming_the_value() {
    let (dir, versions) = copy_of_shipped();
    let output = xtask()
        .args(["pin-downloads", "--base-url", "http://mirror.example", "--file"])
        .arg(&versions)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains("invalid --base-url \"http://mirror.example\"")
    );
    let broken = dir.path().join("broken.hcl");
    let text = std::fs::read_to_string(&versions).unwrap();
    let hostile = text.replace(
        "docker_compose_version = \"2.29.7\"",
        "docker_compose_version = \"2.29.7; rm -rf /\"",
    );
    std::fs::write(&broken, hostile).unwrap();
    let output =
        xtask().args(["pin-downloads", "--dry-run", "--file"]).arg(&broken).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("invalid docker_compose_version \"2.29.7; rm -rf /\""), "{stderr}");
    std::fs::write(&broken, "docker_compose_version = \"2.29.7\"\n").unwrap();
    let output =
        xtask().args(["pin-downloads", "--dry-run", "--file"]).arg(&broken).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("has no buildkite_agent_version"), "{stderr}");
}
