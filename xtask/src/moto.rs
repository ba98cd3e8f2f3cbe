//! The local AWS emulator: moto in server mode, in a virtual environment under the
//! target directory, listening on 127.0.0.1.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::flags::{MotoAction, MotoArgs};
use crate::project;

/// The moto release the suites are written against. Upgrading it is a deliberate act:
/// moto's behaviour (and its gaps) changes between releases.
const MOTO_REQUIREMENT: &str = "moto[server]==5.2.5";

/// How long a fresh server may take to answer.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// What `moto start` records for `stop`, `status` and other tasks.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct MotoState {
    pub(crate) endpoint: String,
    pub(crate) pid: u32,
}

pub(crate) fn run(args: &MotoArgs) -> anyhow::Result<()> {
    let dir = moto_dir()?;
    match args.action {
        MotoAction::Start => {
            let state = match running(&dir)? {
                Some(state) => {
                    eprintln!("moto is already running (pid {})", state.pid);
                    state
                }
                None => {
                    let server = Server::start(&dir)?;
                    let state =
                        MotoState { endpoint: server.endpoint.clone(), pid: server.detach() };
                    std::fs::write(state_file(&dir), serde_json::to_vec_pretty(&state)?)
                        .context("failed to record the moto state")?;
                    eprintln!(
                        "moto started (pid {}); logs in {}",
                        state.pid,
                        log_file(&dir).display()
                    );
                    state
                }
            };
            println!("export AWS_ENDPOINT_URL={}", state.endpoint);
            println!("export ELASTIC_CI_MOTO_ENDPOINT={}", state.endpoint);
            println!("export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1");
            println!(
                "export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_EC2_METADATA_DISABLED=true"
            );
            Ok(())
        }
        MotoAction::Stop => {
            match read_state(&dir)? {
                Some(state) => {
                    stop_pid(state.pid);
                    eprintln!("moto stopped (pid {})", state.pid);
                }
                None => eprintln!("moto is not running"),
            }
            let _ = std::fs::remove_file(state_file(&dir));
            Ok(())
        }
        MotoAction::Status => match running(&dir)? {
            Some(state) => {
                println!("running: pid {} at {}", state.pid, state.endpoint);
                Ok(())
            }
            None => bail!("moto is not running (start it with `cargo xtask moto start`)"),
        },
    }
}

/// A moto server owned by this process: stopped on drop unless detached.
pub struct Server {
    pub endpoint: String,
    child: Option<std::process::Child>,
}

impl Server {
    /// Installs moto if needed and starts a fresh server on a free port.
    pub fn start(dir: &Path) -> anyhow::Result<Server> {
        Server::start_with_log(dir, &log_file(dir))
    }

    /// [`Server::start`], logging to `log_path` instead of the shared log file (the
    /// demo keeps its emulator's log with the rest of its run).
    pub fn start_with_log(dir: &Path, log_path: &Path) -> anyhow::Result<Server> {
        let moto_server = install(dir)?;
        let port = free_port()?;
        let log = std::fs::File::create(log_path).with_context(|| {
            format!("failed to create the moto log file {}", log_path.display())
        })?;
        let mut command = Command::new(&moto_server);
        command
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // Its own process group: an interrupt in the terminal that started it does not
        // take the shared server down with the command.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command
            .spawn()
            .with_context(|| format!("failed to start {}", moto_server.display()))?;
        let mut server =
            Server { endpoint: format!("http://127.0.0.1:{port}"), child: Some(child) };
        let started = Instant::now();
        loop {
            if http_status(port, "GET", "/moto-api/").is_ok_and(|status| status == 200) {
                break;
            }
            if let Some(child) = server.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!("moto exited with {status} before answering; see {}", log_path.display());
            }
            if started.elapsed() > START_TIMEOUT {
                bail!("moto did not answer within {START_TIMEOUT:?}; see {}", log_path.display());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let status = http_status(port, "POST", "/moto-api/reset")?;
        if status != 200 {
            bail!("resetting moto answered HTTP {status}");
        }
        Ok(server)
    }

    /// Leaves the server running after this process exits; returns its pid.
    pub(crate) fn detach(mut self) -> u32 {
        self.child.take().map(|child| child.id()).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_pid(child.id());
            let _ = child.wait();
        }
    }
}

/// The emulator's working directory under the target directory.
pub fn moto_dir() -> anyhow::Result<PathBuf> {
    let dir = project::target_dir()?.join("moto");
    std::fs::create_dir_all(&dir).with_context(|| format!("failed to create {}", dir.display()))?;
    Ok(dir)
}

/// The recorded server, if it is still alive and answering.
pub(crate) fn running(dir: &Path) -> anyhow::Result<Option<MotoState>> {
    let Some(state) = read_state(dir)? else { return Ok(None) };
    let alive = Path::new(&format!("/proc/{}", state.pid)).exists();
    let port = state.endpoint.rsplit(':').next().and_then(|port| port.parse::<u16>().ok());
    let answers = port.is_some_and(|port| {
        http_status(port, "GET", "/moto-api/").is_ok_and(|status| status == 200)
    });
    Ok((alive && answers).then_some(state))
}

fn read_state(dir: &Path) -> anyhow::Result<Option<MotoState>> {
    match std::fs::read(state_file(dir)) {
        Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error).context("failed to read the moto state file"),
    }
}

fn state_file(dir: &Path) -> PathBuf {
    dir.join("state.json")
}

fn log_file(dir: &Path) -> PathBuf {
    dir.join("server.log")
}

/// Creates the virtual environment and installs the pinned moto into it, unless that
/// is already done. Returns the path of `moto_server`.
fn install(dir: &Path) -> anyhow::Result<PathBuf> {
    let venv = dir.join("venv");
    install_in_venv(&venv, MOTO_REQUIREMENT, "moto")?;
    Ok(venv.join("bin/moto_server"))
}

/// Installs a pinned PyPI `requirement` into its own virtual environment at `venv`,
/// unless the environment already holds exactly that requirement.
pub(crate) fn install_in_venv(venv: &Path, requirement: &str, what: &str) -> anyhow::Result<()> {
    let marker = venv.join(".elastic-ci-requirement");
    if std::fs::read_to_string(&marker).is_ok_and(|pinned| pinned == requirement) {
        return Ok(());
    }
    eprintln!("installing {requirement} into {} …", venv.display());
    let python = python()?;
    run_checked(
        Command::new(&python).args(["-m", "venv", "--clear"]).arg(venv),
        &format!("create the {what} virtual environment"),
    )?;
    run_checked(
        Command::new(venv.join("bin/pip")).args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            requirement,
        ]),
        &format!("install {what}"),
    )?;
    std::fs::write(&marker, requirement)?;
    Ok(())
}

/// The Python 3 interpreter to build virtual environments with.
pub(crate) fn python() -> anyhow::Result<String> {
    for candidate in ["python3", "python"] {
        if Command::new(candidate)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
        {
            return Ok(candidate.to_owned());
        }
    }
    bail!(
        "Python 3 is needed for the local AWS emulator (moto) and the template linters: install python3 and python3-venv"
    )
}

pub(crate) fn run_checked(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let status = command.status().with_context(|| format!("failed to {what}"))?;
    if !status.success() {
        bail!("failed to {what}: {status}");
    }
    Ok(())
}

fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("failed to find a free port")?;
    Ok(listener.local_addr()?.port())
}

fn stop_pid(pid: u32) {
    let _ = Command::new("kill").arg(pid.to_string()).stderr(Stdio::null()).status();
}

/// One request to the emulator's own API at 127.0.0.1:`port`, returning the status
/// code. reqwest is already in xtask's graph (through `elastic-ci-aws`), so this costs
/// no build time; it runs on a runtime of its own, as every caller is blocking code.
fn http_status(port: u16, method: &str, path: &str) -> anyhow::Result<u16> {
    let method = reqwest::Method::from_bytes(method.as_bytes())?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
        let response =
            client.request(method, format!("http://127.0.0.1:{port}{path}")).send().await?;
        Ok(response.status().as_u16())
    })
}
