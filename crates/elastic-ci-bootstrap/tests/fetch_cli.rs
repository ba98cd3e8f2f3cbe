//! `elastic-ci-bootstrap fetch` as a command: exit codes, the one-line error, the file
//! it leaves behind, against moto (S3, SSM) and a local HTTP(S) server.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

use assert_cmd::Command;
use elastic_ci_testkit::http::{TestServer, download_routes};
use elastic_ci_testkit::moto::{Moto, moto};
use elastic_ci_testkit::names::unique_name;

/// The binary with a clean environment: nothing from the developer's shell (AWS
/// profiles, endpoints) leaks into a test.
fn fetch_command(extra_env: &[(String, String)]) -> Command {
    let mut command = Command::cargo_bin("elastic-ci-bootstrap").unwrap();
    command.env_clear().env("PATH", "/usr/bin:/bin").env("ELASTIC_CI_LOG", "warn");
    for (name, value) in extra_env {
        command.env(name, value);
    }
    command.arg("fetch");
    command
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn assert_one_error_line(output: &Output, expected: &[&str]) {
    assert_eq!(output.status.code(), Some(1), "stderr: {}", stderr(output));
    let text = stderr(output);
    // Warnings logged before the failure (plain http, say) may precede it; the error
    // itself is one line.
    let lines: Vec<&str> = text.lines().filter(|line| !line.contains(" WARN ")).collect();
    assert_eq!(lines.len(), 1, "expected one error line on stderr, got: {text}");
    assert!(lines[0].starts_with("error: fetching "), "{text}");
    for part in expected {
        assert!(lines[0].contains(part), "{part:?} not in: {text}");
    }
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn bad_arguments_exit_2_before_any_io() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("out");
    for (args, expected) in [
        (vec!["ftp://host/x", "OUT"], "unsupported scheme \"ftp\""),
        (vec!["/etc/hostname", "OUT"], "for a local file write file:///etc/hostname"),
        (vec!["s3://bucket", "OUT"], "found no key"),
        (vec!["ssm:relative", "OUT"], "must start with '/'"),
        (vec!["ssm:/", "OUT"], "every parameter"),
        (vec!["file:///etc/hostname", "OUT", "--mode", "999"], "invalid mode \"999\""),
        (vec!["file:///etc/hostname"], "DEST"),
    ] {
        let args: Vec<String> = args
            .iter()
            .map(|a| if *a == "OUT" { dest.display().to_string() } else { (*a).to_owned() })
            .collect();
        let output = fetch_command(&[]).args(&args).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", stderr(&output));
        assert!(stderr(&output).contains(expected), "{args:?}: {}", stderr(&output));
        assert!(!dest.exists());
    }
}

#[test]
fn help_explains_sources() {
    let output = fetch_command(&[]).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    for needle in
        ["s3://BUCKET/KEY", "ssm:/PATH", "https://", "file:///PATH", "--mode", "EnvironmentFile"]
    {
        assert!(text.contains(needle), "{needle} missing from --help:\n{text}");
    }
}

#[test]
fn file_source_is_copied_with_the_requested_mode() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source with space.sh");
    std::fs::write(&source, "#!/bin/sh\necho hi\n").unwrap();
    let dest = dir.path().join("dest.sh");
    let url = format!("file://{}", source.display()).replace(' ', "%20");
    fetch_command(&[])
        .args([url.as_str(), dest.to_str().unwrap(), "--mode", "0750"])
        .assert()
        .success();
    assert_eq!(std::fs::read_to_string(&dest).unwrap(), "#!/bin/sh\necho hi\n");
    assert_eq!(mode_of(&dest), 0o750);

    let missing = format!("file://{}/missing", dir.path().display());
    let output =
        fetch_command(&[]).args([missing.as_str(), dest.to_str().unwrap()]).output().unwrap();
    assert_one_error_line(&output, &["reading", "missing", "No such file or directory"]);
    assert_eq!(std::fs::read_to_string(&dest).unwrap(), "#!/bin/sh\necho hi\n");
}

#[test]
fn https_source_is_verified_against_trusted_certificates() {
    let server = TestServer::https(download_routes(b"HTTPS_BODY=1\n".to_vec()));
    let ca = server.ca_pem_path().unwrap().display().to_string();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("agent.env");

    // Untrusted: the test CA is not in the system store.
    let output =
        fetch_command(&[]).args([&server.url("/file"), dest.to_str().unwrap()]).output().unwrap();
    assert_one_error_line(&output, &["GET https://127.0.0.1", "could not connect"]);
    assert!(!dest.exists());

    let trusted = [("SSL_CERT_FILE".to_owned(), ca)];
    fetch_command(&trusted)
        .args([&server.localhost_url("/redirect"), dest.to_str().unwrap()])
        .assert()
        .success();
    assert_eq!(std::fs::read_to_string(&dest).unwrap(), "HTTPS_BODY=1\n");
    assert_eq!(mode_of(&dest), 0o600);

    let output = fetch_command(&trusted)
        .args([&server.url("/missing?X-Amz-Signature=topsecret"), dest.to_str().unwrap()])
        .output()
        .unwrap();
    assert_one_error_line(&output, &["HTTP 404 Not Found", "/missing?…"]);
    assert!(!stderr(&output).contains("topsecret"));
    assert_eq!(std::fs::read_to_string(&dest).unwrap(), "HTTPS_BODY=1\n");
}

#[test]
fn http_timeouts_and_errors_fail_with_one_line() {
    let server = TestServer::http(download_routes(b"x".to_vec()));
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("out");
    let output = fetch_command(&[])
        .args([&server.url("/slow"), dest.to_str().unwrap(), "--timeout-secs", "1"])
        .output()
        .unwrap();
    assert_one_error_line(&output, &["timed out"]);
    let output =
        fetch_command(&[]).args([&server.url("/error"), dest.to_str().unwrap()]).output().unwrap();
    assert_one_error_line(&output, &["HTTP 500"]);
    assert_eq!(files_in(dir.path()), Vec::<String>::new());
}

fn moto_fetch(moto: &Moto) -> Command {
    fetch_command(&moto.env())
}

#[tokio::test]
async fn s3_object_present_missing_and_bucket_missing() {
    let Some(moto) = moto() else { return };
    let bucket = moto.bucket("fetch-s3").await;
    moto.put_object(&bucket, "config/agent.env", "FROM_S3=\"yes\"\n").await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("agent.env");
    let dest_arg = dest.to_str().unwrap().to_owned();

    let source = format!("s3://{bucket}/config/agent.env");
    let moto2 = moto.clone();
    let (source2, dest2) = (source.clone(), dest_arg.clone());
    tokio::task::spawn_blocking(move || {
        moto_fetch(&moto2)
            .args([source2.as_str(), dest2.as_str(), "--mode", "0640"])
            .assert()
            .success();
    })
    .await
    .unwrap();
    assert_eq!(std::fs::read_to_string(&dest).unwrap(), "FROM_S3=\"yes\"\n");
    assert_eq!(mode_of(&dest), 0o640);

    for (source, expected) in [
        (
            format!("s3://{bucket}/config/missing.env"),
            vec!["GetObject", "not found", "missing.env"],
        ),
        (
            format!("s3://{}/k", unique_name("no-such-bucket")),
            vec!["GetObject", "not found", "NoSuchBucket"],
        ),
    ] {
        let moto = moto.clone();
        let dest_arg = dest_arg.clone();
        let output = tokio::task::spawn_blocking(move || {
            moto_fetch(&moto).args([source.as_str(), dest_arg.as_str()]).output().unwrap()
        })
        .await
        .unwrap();
        assert_one_error_line(&output, &expected);
    }
    assert_eq!(std::fs::read_to_string(&dest).unwrap(), "FROM_S3=\"yes\"\n");
    assert_eq!(files_in(dir.path()), ["agent.env"]);
}

/// Values that break naive quoting, each of which must come back byte for byte.
const HOSTILE_VALUES: &[(&str, &str)] = &[
    ("quote", "say \"hi\" and 'bye'"),
    ("subshell", "$(touch /tmp/elastic-ci-pwned) `touch /tmp/elastic-ci-pwned`"),
    ("inject", "x\"\nLD_PRELOAD=/tmp/evil.so\nY=\""),
    ("backslash", "C:\\dir\\ \\n \\"),
    ("dollar", "${HOME} $HOME $$"),
    ("unicode", "ünïcødé ✓ 日本"),
    ("spaces", "  leading and trailing  "),
];

#[tokio::test]
async fn ssm_path_round_trips_through_systemd_format_and_bash() {
    let Some(moto) = moto() else { return };
    let root = format!("/{}", unique_name("fetch-ssm"));
    for (i, (name, value)) in HOSTILE_VALUES.iter().enumerate() {
        // Nested paths, and alternating String / SecureString.
        moto.put_parameter(&format!("{root}/level{}/{name}", i % 3), value, i % 2 == 0).await;
    }
    moto.put_parameter(&format!("{root}/not-a-name"), "skipped-value", true).await;
    // More than one page (10 per page) of parameters.
    for i in 0..15 {
        moto.put_parameter(&format!("{root}/many/p{i:02}"), &format!("v{i}"), false).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("agent.env");
    let (source, dest_arg) = (format!("ssm:{root}"), dest.to_str().unwrap().to_owned());
    let moto2 = moto.clone();
    let output = tokio::task::spawn_blocking(move || {
        moto_fetch(&moto2).args([source.as_str(), dest_arg.as_str()]).output().unwrap()
    })
    .await
    .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let log = stderr(&output);
    assert!(log.contains(&format!("skipping parameter {root}/not-a-name")), "{log}");
    assert!(!log.contains("skipped-value"), "a value reached the log: {log}");
    assert_eq!(mode_of(&dest), 0o600);

    let text = std::fs::read_to_string(&dest).unwrap();
    let parsed = elastic_ci_core::envfile::parse(&text).unwrap();
    assert_eq!(parsed.len(), HOSTILE_VALUES.len() + 15);
    for (name, value) in HOSTILE_VALUES {
        let found = parsed.iter().find(|(n, _)| n.as_str() == name.to_ascii_uppercase()).unwrap();
        assert_eq!(found.1, *value, "{name}");
    }

    // bash reads the same file back byte for byte and runs nothing.
    let script = format!(
        "set -a; source {}; set +a; for n in {}; do printf '%s\\0' \"${{!n}}\"; done",
        dest.display(),
        HOSTILE_VALUES.iter().map(|(n, _)| n.to_ascii_uppercase()).collect::<Vec<_>>().join(" ")
    );
    let bash = std::process::Command::new("bash")
        .args(["--noprofile", "--norc", "-c", &script])
        .output()
        .unwrap();
    assert!(bash.status.success(), "{}", String::from_utf8_lossy(&bash.stderr));
    let values: Vec<&str> =
        std::str::from_utf8(&bash.stdout).unwrap().split_terminator('\0').collect();
    let expected: Vec<&str> = HOSTILE_VALUES.iter().map(|(_, v)| *v).collect();
    assert_eq!(values, expected);
    assert!(!Path::new("/tmp/elastic-ci-pwned").exists());
}

#[tokio::test]
async fn ssm_path_without_parameters_writes_an_empty_env_file() {
    let Some(moto) = moto() else { return };
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("agent.env");
    let (source, dest_arg) =
        (format!("ssm:/{}", unique_name("fetch-empty")), dest.to_str().unwrap().to_owned());
    let output = tokio::task::spawn_blocking(move || {
        moto_fetch(&moto).args([source.as_str(), dest_arg.as_str()]).output().unwrap()
    })
    .await
    .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stderr(&output).contains("no parameters under this path"));
    assert!(
        elastic_ci_core::envfile::parse(&std::fs::read_to_string(&dest).unwrap())
            .unwrap()
            .is_empty()
    );
}
