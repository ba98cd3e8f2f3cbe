//! The actions that change the instance beyond writing files: ownership, systemd,
//! mounts, file systems and arrays, commands run as another user, the stack signal;
//! on Windows, the agent's service, access control lists and group membership.
//!
//! The instance binary executes them through one small trait, or, with
//! `--record-actions FILE`, appends each to FILE as one JSON object per line
//! (`{"action":"chown","path":"/etc/…",…}`) instead. Paths are the instance's own
//! absolute paths, whatever `--root` the files were written under.

use std::fmt;

use serde::Serialize;

/// One change to the system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum SystemAction {
    /// Changes the owner of `path` without following symlinks; `recursive` walks
    /// directories, never following links either.
    Chown { path: String, user: String, group: String, recursive: bool },
    /// Runs `systemctl ARGS…`.
    Systemctl { args: Vec<String> },
    /// Bind-mounts `source` onto `target`.
    BindMount { source: String, target: String },
    /// Runs a command as `user` through a login shell (`su -l USER -c …`).
    RunAsUser { user: String, command: Vec<String> },
    /// Waits until `docker ps` works, trying `attempts` times with growing pauses;
    /// fails if it never does.
    WaitForDocker { attempts: u32 },
    /// Checks a sudoers file with `visudo -cf PATH`.
    CheckSudoers { path: String },
    /// Runs a command as root.
    Run { command: Vec<String> },
    /// Writes `path` (mdadm's configuration) with a `DEVICE` line for `devices`
    /// followed by the `ARRAY` line of `mdadm --detail --brief ARRAY`, so that the
    /// array is assembled under the same name at the next boot.
    WriteRaidConfig { path: String, array: String, devices: Vec<String> },
    /// Sends a CloudFormation resource signal (SignalResource) for this instance.
    SignalStack {
        stack_name: String,
        logical_resource_id: String,
        unique_id: String,
        success: bool,
    },
    /// Windows: installs `program ARGS…` as the service `name` (run by NSSM), running as
    /// `account`, its output appended to `log_path`, with `environment` (`NAME=value`,
    /// nothing secret) and the assignments of `environment_file` when given. When the
    /// program exits, `on_exit` runs and the service stays stopped (never restarted);
    /// a stop request is a Ctrl-C (the agent's graceful stop) followed by up to
    /// `stop_timeout_secs` for the jobs to finish. Starts automatically at boot.
    InstallService {
        name: String,
        program: String,
        args: Vec<String>,
        account: String,
        log_path: String,
        environment: Vec<String>,
        environment_file: Option<String>,
        on_exit: Vec<String>,
        stop_timeout_secs: u32,
    },
    /// Windows: starts the service `name`.
    StartService { name: String },
    /// Windows: replaces the access control list of `path` by exactly `grants`
    /// (inheritance from the parent removed); with `inherit` (a directory) the grants
    /// are inherited by what it contains.
    RestrictAccess { path: String, grants: Vec<AccessGrant>, inherit: bool },
    /// Windows: adds `account` to the local group `group`.
    AddToGroup { account: String, group: String },
}

/// Who may do what to a file, in a [`SystemAction::RestrictAccess`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessGrant {
    pub account: String,
    pub access: Access,
}

/// The access rights `icacls` grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    /// `F`: everything, including changing the access list.
    Full,
    /// `M`: read, write, create and delete.
    Modify,
    /// `RX`: read and run.
    ReadExecute,
    /// `R`: read only.
    Read,
}

impl Access {
    /// The `icacls` abbreviation.
    pub fn icacls(self) -> &'static str {
        match self {
            Access::Full => "F",
            Access::Modify => "M",
            Access::ReadExecute => "RX",
            Access::Read => "R",
        }
    }
}

impl SystemAction {
    pub fn systemctl(args: &[&str]) -> SystemAction {
        SystemAction::Systemctl { args: args.iter().map(|a| (*a).to_owned()).collect() }
    }

    pub fn chown(path: &str, user: &str, group: &str) -> SystemAction {
        SystemAction::Chown {
            path: path.to_owned(),
            user: user.to_owned(),
            group: group.to_owned(),
            recursive: false,
        }
    }

    pub fn chown_recursive(path: &str, user: &str, group: &str) -> SystemAction {
        SystemAction::Chown {
            path: path.to_owned(),
            user: user.to_owned(),
            group: group.to_owned(),
            recursive: true,
        }
    }
}

impl fmt::Display for SystemAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SystemAction::Chown { path, user, group, recursive } => {
                let flag = if *recursive { " -R" } else { "" };
                write!(f, "chown{flag} {user}:{group} {path}")
            }
            SystemAction::Systemctl { args } => write!(f, "systemctl {}", args.join(" ")),
            SystemAction::BindMount { source, target } => {
                write!(f, "mount --bind {source} {target}")
            }
            SystemAction::RunAsUser { user, command } => {
                write!(f, "as {user}: {}", command.join(" "))
            }
            SystemAction::WaitForDocker { attempts } => {
                write!(f, "wait for docker (up to {attempts} tries of `docker ps`)")
            }
            SystemAction::CheckSudoers { path } => write!(f, "visudo -cf {path}"),
            SystemAction::Run { command } => f.write_str(&command.join(" ")),
            SystemAction::WriteRaidConfig { path, array, devices } => write!(
                f,
                "write {path}: DEVICE {}, then `mdadm --detail --brief {array}`",
                devices.join(" ")
            ),
            SystemAction::SignalStack { stack_name, logical_resource_id, unique_id, success } => {
                let status = if *success { "SUCCESS" } else { "FAILURE" };
                write!(f, "signal {status} to {stack_name}/{logical_resource_id} for {unique_id}")
            }
            SystemAction::InstallService {
                name,
                program,
                args,
                account,
                on_exit,
                stop_timeout_secs,
                ..
            } => write!(
                f,
                "install service {name}: {program} {} as {account}; on exit {}, never restarted; stops by Ctrl-C within {stop_timeout_secs} s",
                args.join(" "),
                on_exit.join(" ")
            ),
            SystemAction::StartService { name } => write!(f, "start service {name}"),
            SystemAction::RestrictAccess { path, grants, .. } => {
                let grants: Vec<String> = grants
                    .iter()
                    .map(|grant| format!("{}:{}", grant.account, grant.access.icacls()))
                    .collect();
                write!(f, "set the access list of {path} to {}", grants.join(", "))
            }
            SystemAction::AddToGroup { account, group } => {
                write!(f, "add {account} to the local group {group}")
            }
        }
    }
}
