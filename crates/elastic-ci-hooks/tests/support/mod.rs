//! A simulated agent instance for the hook tests: a temporary directory standing for
//! `/`, with the image's hook shims and `elastic-ci-hooks` where the image puts them
//! (`elastic_ci_testkit::image`), a recording `elastic-ci-bootstrap` beside
//! `elastic-ci-hooks` (where the hooks look for it), a home, a `TMPDIR`, and recording
//! stubs first on `PATH` for `docker`, `sudo`, `buildkite-agent` and
//! `docker-credential-ecr-login`. The real `bash`, `ssh-agent`, `ssh-add` and `git`
//! come from the system directories after them.
//!
//! Each stub appends one line per call to `calls.log` (its arguments, `%q`-quoted) and
//! copies what it read on stdin to `stdin.log`, so tests can check that secrets travel
//! on stdin and never as arguments.

#![allow(dead_code, reason = "each test binary uses a different part of the support code")]

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The shim `hook` as installed in the sandbox that `env` (a [`Sandbox::job_env`])
/// belongs to.
pub(crate) fn shim(hook: &str, env: &HashMap<String, String>) -> PathBuf {
    Path::new(&env["STUB_DIR"]).join(elastic_ci_testkit::image::HOOKS_DIR).join(hook)
}

pub(crate) const HOOKS_BIN: &str = env!("CARGO_BIN_EXE_elastic-ci-hooks");

const DOCKER_STUB: &str = r#"#!/bin/bash
printf '%q ' docker "$@" >> "$STUB_DIR/calls.log"; echo >> "$STUB_DIR/calls.log"
# A hung dockerd: the named subcommand never answers.
if [[ $1 == "${STUB_DOCKER_HANGS:-}" ]]; then while :; do sleep 1; done; fi
case "$1" in
  ps) echo "CONTAINER ID   IMAGE"; exit "${STUB_DOCKER_PS_EXIT:-0}" ;;
  login)
    { printf 'docker %s: ' "${*: -1}"; cat; echo; } >> "$STUB_DIR/stdin.log"
    count=$(cat "$STUB_DIR/login-count" 2>/dev/null || echo 0)
    echo $((count + 1)) > "$STUB_DIR/login-count"
    if (( count < ${STUB_DOCKER_LOGIN_FAILURES:-0} )); then echo "Error response from daemon: unauthorized" >&2; exit 1; fi
    echo "Login Succeeded" ;;
  *) exit 0 ;;
esac
"#;

const BOOTSTRAP_STUB: &str = r#"#!/bin/bash
printf '%q ' elastic-ci-bootstrap "$@" >> "$STUB_DIR/calls.log"; echo >> "$STUB_DIR/calls.log"
case "$1" in
  check-disk)
    # Exit statuses to return, one per call, from the first line of $STUB_DIR/disk.
    status=0
    if [[ -s "$STUB_DIR/disk" ]]; then status=$(head -n1 "$STUB_DIR/disk"); sed -i 1d "$STUB_DIR/disk"; fi
    if [[ $status == 0 ]]; then echo "Disk space free: 20G"; else echo "Not enough disk space free: 1.0G available, cutoff is 5.0G" >&2; fi
    exit "$status" ;;
  terminate) echo "requesting instance termination..." ;;
  fix-permissions) exit "${STUB_FIXPERMS_EXIT:-0}" ;;
esac
"#;

const SUDO_STUB: &str = r#"#!/bin/bash
printf '%q ' sudo "$@" >> "$STUB_DIR/calls.log"; echo >> "$STUB_DIR/calls.log"
[[ $1 == -n ]] && shift
exec "$@"
"#;

const AGENT_STUB: &str = r#"#!/bin/bash
printf '%q ' buildkite-agent "$@" >> "$STUB_DIR/calls.log"; echo >> "$STUB_DIR/calls.log"
{ printf 'buildkite-agent: '; cat; echo; } >> "$STUB_DIR/stdin.log"
"#;

const CREDENTIAL_HELPER_STUB: &str = "#!/bin/bash\nexit 0\n";

/// One simulated instance.
pub(crate) struct Sandbox {
    pub(crate) dir: tempfile::TempDir,
}

impl Sandbox {
    pub(crate) fn new() -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["bin", "home", "tmp", "builds/agent-1/acme/app"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        let sandbox = Sandbox { dir };
        for hook in ["environment", "pre-command", "pre-exit"] {
            elastic_ci_testkit::image::install_hook_shim(sandbox.dir.path(), hook).unwrap();
        }
        let local_bin = sandbox.path("usr/local/bin");
        std::fs::create_dir_all(&local_bin).unwrap();
        install_hooks_binary(&local_bin.join("elastic-ci-hooks"));
        write_executable(&local_bin.join("elastic-ci-bootstrap"), BOOTSTRAP_STUB);
        sandbox.stub("docker", DOCKER_STUB);
        sandbox.stub("sudo", SUDO_STUB);
        sandbox.stub("buildkite-agent", AGENT_STUB);
        sandbox.stub("docker-credential-ecr-login", CREDENTIAL_HELPER_STUB);
        std::fs::write(sandbox.path("calls.log"), "").unwrap();
        std::fs::write(sandbox.path("stdin.log"), "").unwrap();
        sandbox
    }

    pub(crate) fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    pub(crate) fn stub(&self, name: &str, script: &str) {
        write_executable(&self.path("bin").join(name), script);
    }

    pub(crate) fn remove_stub(&self, name: &str) {
        std::fs::remove_file(self.path("bin").join(name)).unwrap();
    }

    /// Exit statuses `check-disk` returns, one per call (then 0).
    pub(crate) fn disk_answers(&self, statuses: &[u8]) {
        let text: String = statuses.iter().map(|s| format!("{s}\n")).collect();
        std::fs::write(self.path("disk"), text).unwrap();
    }

    pub(crate) fn calls(&self) -> String {
        std::fs::read_to_string(self.path("calls.log")).unwrap()
    }

    pub(crate) fn stdin_log(&self) -> String {
        std::fs::read_to_string(self.path("stdin.log")).unwrap()
    }

    /// Entries of the sandbox's TMPDIR (per-job Docker configs, ssh-agent sockets).
    pub(crate) fn tmp_entries(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.path("tmp"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// The job environment the agent would give the first hook, for a stack with
    /// every built-in plugin on and no secrets bucket or ECR policy.
    pub(crate) fn job_env(&self) -> HashMap<String, String> {
        let builds = self.path("builds");
        let pairs = [
            ("PATH", format!("{}:/usr/bin:/bin", self.path("bin").display())),
            ("HOME", self.path("home").display().to_string()),
            ("TMPDIR", self.path("tmp").display().to_string()),
            ("STUB_DIR", self.dir.path().display().to_string()),
            ("BUILDKITE_STACK_VERSION", "v0-test".to_owned()),
            ("BUILDKITE_BUILD_PATH", builds.display().to_string()),
            (
                "BUILDKITE_BUILD_CHECKOUT_PATH",
                builds.join("agent-1/acme/app").display().to_string(),
            ),
            ("BUILDKITE_PIPELINE_SLUG", "app".to_owned()),
            ("BUILDKITE_REPO", "https://github.com/acme/app.git".to_owned()),
            ("PLUGINS_ENABLED", "secrets ecr docker-login".to_owned()),
            ("DOCKER_USERNS_REMAP", "true".to_owned()),
            ("BUILDKITE_ECR_POLICY", "none".to_owned()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
        ];
        pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }
}

/// Installs the hooks binary at `path`. A hard link, not a symlink: the binary finds
/// `elastic-ci-bootstrap` beside its own path, which the kernel reports with symlinks
/// resolved. A copy when the target directory is on another file system.
fn install_hooks_binary(path: &Path) {
    if std::fs::hard_link(HOOKS_BIN, path).is_err() {
        std::fs::copy(HOOKS_BIN, path).unwrap();
    }
}

fn write_executable(path: &Path, script: &str) {
    std::fs::write(path, script).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// What running a shim did.
pub(crate) struct ShimRun {
    pub(crate) output: Output,
    /// The exported environment after the shim ran, as the agent would capture it;
    /// empty when the hook failed.
    pub(crate) env: BTreeMap<String, String>,
}

impl ShimRun {
    pub(crate) fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    pub(crate) fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    pub(crate) fn code(&self) -> Option<i32> {
        self.output.status.code()
    }
}

/// Runs a hook shim the way the agent does: sourced by bash with the job environment,
/// which is captured afterwards.
pub(crate) fn run_shim(hook: &str, env: &HashMap<String, String>) -> ShimRun {
    let dump = tempfile::NamedTempFile::new().unwrap();
    let output = Command::new("/bin/bash")
        .arg("-c")
        .arg(r#"source "$1"; env -0 > "$2""#)
        .arg("agent-wrapper")
        .arg(shim(hook, env))
        .arg(dump.path())
        .env_clear()
        .envs(env)
        .output()
        .unwrap();
    let mut captured = BTreeMap::new();
    if output.status.success() {
        let bytes = std::fs::read(dump.path()).unwrap();
        for record in bytes.split(|b| *b == 0).filter(|r| !r.is_empty()) {
            let text = String::from_utf8(record.to_vec()).unwrap();
            let (name, value) = text.split_once('=').unwrap();
            captured.insert(name.to_owned(), value.to_owned());
        }
        for shell_var in ["_", "SHLVL", "PWD", "OLDPWD"] {
            captured.remove(shell_var);
        }
    }
    ShimRun { output, env: captured }
}

/// The hooks binary as installed in the sandbox that `env` (a [`Sandbox::job_env`])
/// belongs to, with the recording bootstrapper beside it.
pub(crate) fn installed_hooks(env: &HashMap<String, String>) -> PathBuf {
    Path::new(&env["STUB_DIR"]).join("usr/local/bin/elastic-ci-hooks")
}

/// Runs the sandbox's binary directly; its stdout must be only `export`/`unset` lines.
pub(crate) fn run_hook(subcommand: &str, env: &HashMap<String, String>) -> Output {
    let output =
        Command::new(installed_hooks(env)).arg(subcommand).env_clear().envs(env).output().unwrap();
    assert_only_exports(&String::from_utf8_lossy(&output.stdout));
    output
}

/// Checks the stdout contract: evaluated by bash, the output runs nothing but
/// `export` and `unset` commands (a DEBUG trap sees every command before it runs).
pub(crate) fn assert_only_exports(stdout: &str) {
    let checker = r#"trap 'case $BASH_COMMAND in "export "*|"unset "*|"eval \"\$1\"") ;; *) echo "unexpected command: $BASH_COMMAND" >&2; exit 3;; esac' DEBUG
eval "$1""#;
    let output = Command::new("/bin/bash")
        .arg("-c")
        .arg(checker)
        .arg("checker")
        .arg(stdout)
        .env_clear()
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "stdout is not only export/unset lines: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Asserts that `text` contains none of the `secrets`.
pub(crate) fn assert_no_secrets(what: &str, text: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(!text.contains(secret), "{what} contains the secret {secret:?}:\n{text}");
    }
}

/// Makes an unencrypted ed25519 key pair and returns (private key, public key line).
pub(crate) fn ssh_key(dir: &Path, name: &str) -> (String, String) {
    let path = dir.join(name);
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success());
    let private = std::fs::read_to_string(&path).unwrap();
    let public = std::fs::read_to_string(path.with_extension("pub")).unwrap();
    (private, public)
}

/// Whether a process is alive.
pub(crate) fn alive(pid: &str) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|stat| !stat.contains(") Z "))
}
