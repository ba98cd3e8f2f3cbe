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

/// A raw tar archive: names written byte for byte, as an attacker's tool would.
fn raw_tar(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let mut header = tar::Header::new_gnu();
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        let kind =
            if name.ends_with('/') { tar::EntryType::Directory } else { tar::EntryType::Regular };
        header.set_entry_type(kind);
        header.set_mode(0o644);
        header.set_size(data.len() as u64);
        header.set_cksum();
        builder.append(&header, *data).unwrap();
    }
    builder.into_inner().unwrap()
}

/// One simulated Windows instance: a moto group with the instance in it, a fake
/// metadata service, the token in SSM, a bucket with the agent environment file, the
/// bootstrap script and a git-mirror seed, and a root standing for the machine.
struct WindowsInstance {
    moto: Moto,
    wine: Wine,
    group: String,
    instance_id: String,
    _imds: FakeImds,
    token: String,
    bucket: String,
    root: tempfile::TempDir,
    work: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl WindowsInstance {
    async fn new(moto: Moto, wine: Wine) -> WindowsInstance {
        let group = moto.scaling_group("wine-boot", 0, 3, 1).await;
        let groups = elastic_ci_aws::autoscaling::AutoScalingGroups::new(&moto.sdk_config());
        let snapshot = elastic_ci_aws::autoscaling::ScalingGroup::describe_group(&groups, &group)
            .await
            .unwrap();
        let instance_id = snapshot.instances[0].id.clone();
        let imds = FakeImds::start(&instance_id, REGION);
        imds.set_tag("aws:autoscaling:groupName", &group);
        let prefix = unique_name("wine-boot");
        let token_path = format!("/{prefix}/buildkite/agent-token");
        let token = format!("bkat-{prefix}-s3cr3t");
        moto.put_parameter(&token_path, &token, true).await;
        let bucket = moto.bucket("wine-boot").await;
        let work = tempfile::tempdir().unwrap();
        let mut env: Vec<(String, String)> = [
            ("BUILDKITE_STACK_NAME", "ci-windows"),
            ("BUILDKITE_STACK_VERSION", "v7.0.0"),
            ("BUILDKITE_STACK_DEPLOYED_BY", "cloudformation"),
            ("BUILDKITE_QUEUE", "windows"),
            ("BUILDKITE_AGENTS_PER_INSTANCE", "2"),
            ("BUILDKITE_AGENT_TAGS", "os=windows"),
            ("BUILDKITE_AGENT_ENABLE_GIT_MIRRORS", "true"),
            ("BUILDKITE_WINDOWS_ADMINISTRATOR", "true"),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
        env.push(("BUILDKITE_AGENT_TOKEN_PATH".into(), token_path));
        env.push(("BUILDKITE_GIT_MIRROR_SEED_BUCKET".into(), bucket.clone()));
        env.extend(moto.env());
        env.push(("AWS_EC2_METADATA_SERVICE_ENDPOINT".into(), imds.endpoint()));
        WindowsInstance {
            moto,
            wine,
            group,
            instance_id,
            _imds: imds,
            token,
            bucket,
            root: tempfile::tempdir().unwrap(),
            work,
            env,
        }
    }

    fn set(&mut self, name: &str, value: &str) {
        self.env.retain(|(key, _)| key != name);
        self.env.push((name.to_owned(), value.to_owned()));
    }

    /// The Linux path of an instance path `C:\…` under the root.
    fn path(&self, windows_path: &str) -> PathBuf {
        let relative = windows_path.replacen(':', "", 1);
        let mut path = self.root.path().to_owned();
        for part in relative.split('\\').filter(|part| !part.is_empty()) {
            path.push(part);
        }
        path
    }

    fn actions_path(&self) -> PathBuf {
        self.work.path().join("actions.jsonl")
    }

    fn boot(&self) -> Output {
        let root = z(self.root.path());
        let actions = z(&self.actions_path());
        let args = [
            "boot",
            "--root",
            &root,
            "--record-actions",
            &actions,
            "--metadata-retry-delay-ms",
            "50",
        ];
        self.wine.run("elastic-ci-bootstrap", &args, &self.env)
    }

    fn actions(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.actions_path())
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    fn actions_named(&self, name: &str) -> Vec<serde_json::Value> {
        self.actions().into_iter().filter(|action| action["action"] == name).collect()
    }

    async fn health(&self) -> elastic_ci_core::fleet::Health {
        let groups = elastic_ci_aws::autoscaling::AutoScalingGroups::new(&self.moto.sdk_config());
        let snapshot =
            elastic_ci_aws::autoscaling::ScalingGroup::describe_group(&groups, &self.group)
                .await
                .unwrap();
        snapshot.instances.iter().find(|instance| instance.id == self.instance_id).unwrap().health
    }
}

/// Every file under `dir`, relative to it.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(current) = stack.pop() {
        for entry in std::fs::read_dir(&current).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(path.strip_prefix(dir).unwrap().to_owned());
            }
        }
    }
    found
}

/// Every file under `dir` that holds `needle`.
fn files_holding(dir: &Path, needle: &str) -> Vec<PathBuf> {
    files_under(dir)
        .into_iter()
        .filter(|path| {
            let bytes = std::fs::read(dir.join(path)).unwrap();
            bytes.windows(needle.len()).any(|window| window == needle.as_bytes())
        })
        .collect()
}

/// A whole Windows boot under wine: the configuration in the Windows layout with the
/// token readable by the agent's account alone, the agent installed as a service
/// that is never restarted, the batch bootstrap script run, a traversal seed refused,
/// and the token in no other file, action or log line.
#[tokio::test(flavor = "multi_thread")]
async fn boot_writes_the_windows_layout_and_records_the_service() {
    let Some((moto, wine)) = moto_and_wine() else { return };
    let mut instance = WindowsInstance::new(moto, wine).await;
    let bucket = instance.bucket.clone();
    let env_file = "# the agent's environment\nGREETING=\"it's 100% ^fine^ $HOME `x`\"\n";
    instance.moto.put_object(&bucket, "agent.env", env_file).await;
    instance
        .moto
        .put_object(
            &bucket,
            "setup.bat",
            "@echo off\r\necho ran %BUILDKITE_QUEUE%> \"%ELASTIC_CI_TEST_MARKER%\"\r\n",
        )
        .await;
    let escaping = raw_tar(&[
        ("dotdot/", b""),
        ("dotdot/HEAD", b"ref: refs/heads/main\n"),
        ("dotdot/../../escaped", b"x"),
    ]);
    instance.moto.put_object(&bucket, "git-mirror-seeds/dotdot.tar", escaping).await;
    instance.set("BUILDKITE_ENV_FILE_URL", &format!("s3://{bucket}/agent.env"));
    instance.set("BUILDKITE_ELASTIC_BOOTSTRAP_SCRIPT", &format!("s3://{bucket}/setup.bat"));
    let marker = instance.work.path().join("script-ran");
    instance.set("ELASTIC_CI_TEST_MARKER", &z(&marker));
    let image_agent = instance.path(r"C:\buildkite-agent\bin\buildkite-agent-stable.exe");
    std::fs::create_dir_all(image_agent.parent().unwrap()).unwrap();
    std::fs::write(&image_agent, "the image's agent").unwrap();
    // The image's CloudWatch agent configuration, as Packer installs it.
    let cloudwatch_config =
        instance.path(r"C:\ProgramData\Amazon\AmazonCloudWatchAgent\amazon-cloudwatch-agent.json");
    std::fs::create_dir_all(cloudwatch_config.parent().unwrap()).unwrap();
    std::fs::copy(
        xtask::project::root()
            .join("packer/windows/conf/cloudwatch-agent/amazon-cloudwatch-agent.json"),
        &cloudwatch_config,
    )
    .unwrap();

    let output = instance.boot();
    assert!(output.status.success(), "{}", streams(&output));

    // The CloudWatch agent writes to the stack's log groups, and reads its
    // configuration again.
    let cloudwatch = std::fs::read_to_string(&cloudwatch_config).unwrap();
    assert!(!cloudwatch.contains("{stack_name}"), "{cloudwatch}");
    assert!(cloudwatch.contains("\"/buildkite/ci-windows/buildkite-agent\""), "{cloudwatch}");
    let reloads: Vec<serde_json::Value> = instance
        .actions_named("run")
        .into_iter()
        .filter(|action| action["command"].to_string().contains("fetch-config"))
        .collect();
    assert_eq!(reloads.len(), 1, "{:?}", instance.actions());

    let config =
        std::fs::read_to_string(instance.path(r"C:\buildkite-agent\buildkite-agent.cfg")).unwrap();
    assert!(config.contains(&format!("token=\"{}\"\n", instance.token)), "{config}");
    for line in [
        "hooks-path=C:\\buildkite-agent\\hooks\n",
        "build-path=C:\\buildkite-agent\\builds\n",
        "plugins-path=C:\\buildkite-agent\\plugins\n",
        "git-mirrors-path=\"C:\\buildkite-agent\\git-mirrors\"\n",
        "shell=powershell\n",
        "spawn=2\n",
    ] {
        assert!(config.contains(line), "{line:?} missing from\n{config}");
    }
    assert_eq!(
        std::fs::read(instance.path(r"C:\buildkite-agent\bin\buildkite-agent.exe")).unwrap(),
        b"the image's agent"
    );
    assert_eq!(
        std::fs::read_to_string(instance.path(r"C:\buildkite-agent\env")).unwrap(),
        env_file
    );
    assert_eq!(std::fs::read_to_string(&marker).unwrap().trim(), "ran windows");
    assert_eq!(
        std::fs::read_to_string(
            instance.path(r"C:\buildkite-agent\elastic-stack-bootstrap-status")
        )
        .unwrap(),
        "Completed"
    );

    // Access: the token file is readable by the agent's account alone (besides SYSTEM
    // and Administrators), and not through inheritance.
    let config_acl: Vec<serde_json::Value> = instance
        .actions_named("restrict-access")
        .into_iter()
        .filter(|action| action["path"] == r"C:\buildkite-agent\buildkite-agent.cfg")
        .collect();
    assert_eq!(
        config_acl,
        [serde_json::json!({
            "action": "restrict-access",
            "path": r"C:\buildkite-agent\buildkite-agent.cfg",
            "grants": [
                {"account": "*S-1-5-18", "access": "full"},
                {"account": "*S-1-5-32-544", "access": "full"},
                {"account": r"NT SERVICE\buildkite-agent", "access": "read"},
            ],
            "inherit": false,
        })]
    );
    let restricted: Vec<String> = instance
        .actions_named("restrict-access")
        .iter()
        .map(|action| action["path"].as_str().unwrap().to_owned())
        .collect();
    for path in [
        r"C:\buildkite-agent",
        r"C:\buildkite-agent\builds",
        r"C:\buildkite-agent\cfn-env",
        r"C:\buildkite-agent\env",
    ] {
        assert!(restricted.contains(&path.to_owned()), "{path} not restricted: {restricted:?}");
    }

    // The service: the agent under its virtual account, terminate on exit, no restart.
    let services = instance.actions_named("install-service");
    assert_eq!(services.len(), 1, "{:?}", instance.actions());
    let service = &services[0];
    assert_eq!(service["name"], "buildkite-agent");
    assert_eq!(service["program"], r"C:\buildkite-agent\bin\buildkite-agent.exe");
    assert_eq!(
        service["args"],
        serde_json::json!(["start", "--config", r"C:\buildkite-agent\buildkite-agent.cfg"])
    );
    assert_eq!(service["account"], r"NT SERVICE\buildkite-agent");
    assert_eq!(
        service["on_exit"],
        serde_json::json!([r"C:\buildkite-agent\bin\elastic-ci-bootstrap.exe", "terminate"])
    );
    assert_eq!(service["environment_file"], r"C:\buildkite-agent\env");
    assert_eq!(
        instance.actions_named("add-to-group"),
        [
            serde_json::json!({"action": "add-to-group", "account": r"NT SERVICE\buildkite-agent", "group": "*S-1-5-32-544"})
        ]
    );
    assert_eq!(
        instance.actions_named("start-service"),
        [serde_json::json!({"action": "start-service", "name": "buildkite-agent"})]
    );
    let signals = instance.actions_named("signal-stack");
    assert_eq!(signals.len(), 1);
    assert_eq!(signals[0]["success"], true);
    assert_eq!(signals[0]["unique_id"], instance.instance_id.as_str());

    // The traversal seed: refused, and nothing written outside the mirrors.
    let stderr = text(&output.stderr);
    assert!(stderr.contains("has a '..' component"), "{stderr}");
    let escaped: Vec<PathBuf> = files_under(instance.root.path())
        .into_iter()
        .filter(|path| path.ends_with("escaped"))
        .collect();
    assert!(escaped.is_empty(), "{escaped:?}");
    assert!(!instance.path(r"C:\buildkite-agent\git-mirrors\dotdot").exists());

    // The token: only in the agent configuration.
    assert_eq!(
        files_holding(instance.root.path(), &instance.token),
        [PathBuf::from("C").join("buildkite-agent").join("buildkite-agent.cfg")]
    );
    assert!(files_holding(instance.work.path(), &instance.token).is_empty());
    assert!(!text(&output.stdout).contains(&instance.token));
    assert!(!stderr.contains(&instance.token));
    assert!(!stderr.contains("it's 100%"), "the environment file reached the log");
    assert_eq!(instance.health().await, elastic_ci_core::fleet::Health::Healthy);
}

/// A bootstrap script Windows cannot run is refused before anything changes, through
/// the failure path: Unhealthy, a FAILURE signal, the step named, no configuration.
#[tokio::test(flavor = "multi_thread")]
async fn boot_refuses_a_shell_script_through_the_failure_path() {
    let Some((moto, wine)) = moto_and_wine() else { return };
    let mut instance = WindowsInstance::new(moto, wine).await;
    let bucket = instance.bucket.clone();
    instance.set("BUILDKITE_ELASTIC_BOOTSTRAP_SCRIPT", &format!("s3://{bucket}/setup.sh"));
    let output = instance.boot();
    assert_eq!(output.status.code(), Some(1), "{}", streams(&output));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("boot failed at step configuration"), "{stderr}");
    assert!(stderr.contains("must end in .ps1 (PowerShell), .bat or .cmd (batch) on Windows"));
    assert!(!instance.path(r"C:\buildkite-agent\buildkite-agent.cfg").exists());
    let signals = instance.actions_named("signal-stack");
    assert_eq!(signals.len(), 1, "{:?}", instance.actions());
    assert_eq!(signals[0]["success"], false);
    assert!(instance.actions_named("install-service").is_empty());
    assert_eq!(instance.health().await, elastic_ci_core::fleet::Health::Unhealthy);
}
