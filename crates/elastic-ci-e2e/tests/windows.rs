//! The Windows binaries under wine: `elastic-ci-bootstrap.exe`, `elastic-ci-hooks.exe`
//! and `elastic-ci.exe`, built for `x86_64-pc-windows-gnu` by `cargo xtask windows`
//! (the `windows` step of `cargo xtask ci`), run in the wine prefix it made, against
//! the local AWS emulator, a fake metadata service and local HTTP(S) servers.
//!
//! What wine cannot show (the service control manager, NTFS access lists, the virtual
//! account) is checked as the recorded actions of `boot --record-actions`.
//!
//! Without the `.exe`s or the emulator the tests skip; with `CI` set they fail.

#![allow(clippy::print_stderr, reason = "a skipped test says why")]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use elastic_ci_core::envfile;
use elastic_ci_testkit::http::{TestServer, download_routes};
use elastic_ci_testkit::imds::FakeImds;
use elastic_ci_testkit::moto::{Moto, REGION, moto};
use elastic_ci_testkit::names::unique_name;
use xtask::windows;

/// The target directory, from this test's own path (`<target>/debug/deps/windows-…`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors().nth(3).unwrap().to_owned()
}

/// The Windows binaries and the wine prefix, or `None` (after saying why) when the
/// test should skip.
///
/// # Panics
///
/// When `CI` is set and they are missing.
fn wine() -> Option<Wine> {
    let target = target_dir();
    let dir = windows::binary_dir(&target);
    let missing: Vec<String> = ["elastic-ci-bootstrap", "elastic-ci-hooks", "elastic-ci"]
        .iter()
        .map(|name| dir.join(format!("{name}.exe")))
        .filter(|exe| !exe.is_file())
        .map(|exe| exe.display().to_string())
        .collect();
    let prefix_ready =
        windows::prefix(&target).join("drive_c/windows/system32/bcryptprimitives.dll");
    let ready = missing.is_empty() && prefix_ready.is_file();
    #[allow(clippy::disallowed_methods, reason = "test harness configuration")]
    let in_ci = std::env::var_os("CI").is_some();
    if !ready {
        assert!(
            !in_ci,
            "the Windows binaries ({missing:?}) or the wine prefix are missing but CI is set: run `cargo xtask windows`"
        );
        eprintln!("skipping: run `cargo xtask windows` to build the Windows binaries");
        return None;
    }
    Some(Wine { target, dir })
}

struct Wine {
    target: PathBuf,
    dir: PathBuf,
}

impl Wine {
    /// Runs `NAME.exe ARGS…` under wine with `env` added.
    fn run(&self, name: &str, args: &[&str], env: &[(String, String)]) -> Output {
        let exe = self.dir.join(format!("{name}.exe"));
        let mut command = windows::wine_command(&self.target, &exe);
        command.args(args).env("ELASTIC_CI_LOG", "info");
        for (key, value) in env {
            command.env(key, value);
        }
        command.output().unwrap()
    }

    /// The Linux path of `C:\…` in the prefix.
    fn drive_c(&self, windows_path: &str) -> PathBuf {
        let relative = windows_path.trim_start_matches("C:").trim_start_matches(['\\', '/']);
        let mut path = windows::prefix(&self.target).join("drive_c");
        for part in relative.split(['\\', '/']).filter(|part| !part.is_empty()) {
            path.push(part);
        }
        path
    }

    /// A new directory `C:\elastic-ci-test\<unique>` in the prefix (fetch writes only
    /// into existing directories).
    fn scratch_dir(&self, prefix: &str) -> String {
        let dir = format!(r"C:\elastic-ci-test\{}", unique_name(prefix));
        std::fs::create_dir_all(self.drive_c(&dir)).unwrap();
        dir
    }
}

/// A Linux path as a Windows program under wine names it (drive `Z:` is `/`).
fn z(path: &Path) -> String {
    format!("Z:{}", path.display()).replace('/', "\\")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Both streams, for assertion messages.
fn streams(output: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    )
}

fn moto_and_wine() -> Option<(Moto, Wine)> {
    let wine = wine()?;
    let moto = moto()?;
    Some((moto, wine))
}

#[test]
fn the_windows_binaries_start_under_wine() {
    let Some(wine) = wine() else { return };
    let version = wine.run("elastic-ci-bootstrap", &["--version"], &[]);
    assert!(version.status.success(), "{}", streams(&version));
    assert!(text(&version.stdout).starts_with("elastic-ci-bootstrap "), "{}", streams(&version));
    let help = wine.run("elastic-ci-hooks", &["--help"], &[]);
    assert!(help.status.success(), "{}", streams(&help));
    assert!(text(&help.stdout).contains("environment"), "{}", streams(&help));
    let admin = wine.run("elastic-ci", &["--version"], &[]);
    assert!(admin.status.success(), "{}", streams(&admin));
}

#[test]
fn fix_permissions_says_it_is_not_supported_on_windows() {
    let Some(wine) = wine() else { return };
    let output = wine.run("elastic-ci-bootstrap", &["fix-permissions", "a", "b", "c"], &[]);
    assert_eq!(output.status.code(), Some(1), "{}", streams(&output));
    assert!(
        text(&output.stderr).contains("fix-permissions is not supported on Windows"),
        "{}",
        streams(&output)
    );
}

/// The free space of the build drive, against both sides of the threshold.
#[test]
fn check_disk_measures_the_build_drive() {
    let Some(wine) = wine() else { return };
    let env = |min: &str| vec![("DISK_MIN_AVAILABLE".to_owned(), min.to_owned())];
    let enough = wine.run("elastic-ci-bootstrap", &["check-disk", "--path", r"C:\"], &env("1"));
    assert!(enough.status.success(), "{}", streams(&enough));
    assert!(text(&enough.stderr).contains("Disk space free:"), "{}", streams(&enough));
    let far_too_little = "9000000000000";
    let low = wine.run(
        "elastic-ci-bootstrap",
        &["check-disk", "--path", r"C:\buildkite-agent\builds"],
        &env(far_too_little),
    );
    assert_eq!(low.status.code(), Some(1), "{}", streams(&low));
    assert!(text(&low.stderr).contains("Not enough disk space free"), "{}", streams(&low));
}

/// Values a PowerShell, batch or POSIX shell would read as code, and text a naive
/// writer would mangle.
const HOSTILE_VALUES: [(&str, &str); 8] = [
    ("QUOTES", r#"it's "quoted" 'twice'"#),
    ("DOLLAR", "$HOME ${PATH} $(whoami) $env:USERNAME"),
    ("BACKTICKS", "`whoami` `$x`"),
    ("NEWLINES", "line one\nline two\r\nline three"),
    ("PERCENT", "%PATH% %% 100%"),
    ("CARET", "a^b ^& c ^^ | & < >"),
    ("BACKSLASH", r"C:\Program Files\x\ trailing\"),
    ("UNICODE", "café ☃ 日本"),
];

/// `fetch ssm:/PATH` under wine writes an env file that reads back byte for byte.
#[tokio::test(flavor = "multi_thread")]
async fn fetch_round_trips_hostile_ssm_values_exactly() {
    let Some((moto, wine)) = moto_and_wine() else { return };
    let path = format!("/{}", unique_name("wine-env"));
    for (name, value) in HOSTILE_VALUES {
        moto.put_parameter(&format!("{path}/{}", name.to_lowercase()), value, true).await;
    }
    let dest = format!(r"{}\env", wine.scratch_dir("ssm"));
    let output =
        wine.run("elastic-ci-bootstrap", &["fetch", &format!("ssm:{path}"), &dest], &moto.env());
    assert!(output.status.success(), "{}", streams(&output));
    let written = std::fs::read_to_string(wine.drive_c(&dest)).unwrap();
    let parsed: BTreeMap<String, String> = envfile::parse(&written)
        .unwrap()
        .into_iter()
        .map(|(name, value)| (name.to_string(), value))
        .collect();
    let expected: BTreeMap<String, String> = HOSTILE_VALUES
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect();
    assert_eq!(parsed, expected, "{written}");
    for (_, value) in HOSTILE_VALUES {
        assert!(!text(&output.stderr).contains(value), "a value reached the log: {value:?}");
    }
}

/// S3 objects (any bytes), `file://C:/…` paths and HTTPS downloads arrive exactly, and
/// a failed download leaves the destination as it was.
#[tokio::test(flavor = "multi_thread")]
async fn fetch_s3_file_and_https_sources_exactly() {
    let Some((moto, wine)) = moto_and_wine() else { return };
    let body: Vec<u8> = (0..=255u8).chain(b"\r\n\n\x1a%^$`".iter().copied()).collect();
    let bucket = moto.bucket("wine-fetch").await;
    moto.put_object(&bucket, "dir/setup.bin", body.clone()).await;
    let dir = wine.scratch_dir("fetch");

    let from_s3 = format!(r"{dir}\from-s3.bin");
    let output = wine.run(
        "elastic-ci-bootstrap",
        &["fetch", &format!("s3://{bucket}/dir/setup.bin"), &from_s3],
        &moto.env(),
    );
    assert!(output.status.success(), "{}", streams(&output));
    assert_eq!(std::fs::read(wine.drive_c(&from_s3)).unwrap(), body);

    let from_file = format!(r"{dir}\from-file.bin");
    let source = format!("file://{}", from_s3.replace('\\', "/"));
    let output = wine.run("elastic-ci-bootstrap", &["fetch", &source, &from_file], &[]);
    assert!(output.status.success(), "{source}: {}", streams(&output));
    assert_eq!(std::fs::read(wine.drive_c(&from_file)).unwrap(), body);

    let server = TestServer::https(download_routes(body.clone()));
    let ca = server.ca_pem_path().unwrap().to_owned();
    let from_https = format!(r"{dir}\from-https.bin");
    let env = [("SSL_CERT_FILE".to_owned(), z(&ca))];
    let output =
        wine.run("elastic-ci-bootstrap", &["fetch", &server.url("/file"), &from_https], &env);
    assert!(output.status.success(), "{}", streams(&output));
    assert_eq!(std::fs::read(wine.drive_c(&from_https)).unwrap(), body);

    let missing = wine.run(
        "elastic-ci-bootstrap",
        &["fetch", &format!("s3://{bucket}/missing"), &from_s3],
        &moto.env(),
    );
    assert_eq!(missing.status.code(), Some(1), "{}", streams(&missing));
    assert_eq!(std::fs::read(wine.drive_c(&from_s3)).unwrap(), body, "left as it was");
}
