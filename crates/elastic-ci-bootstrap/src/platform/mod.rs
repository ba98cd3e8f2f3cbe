//! What differs between the operating systems the instance binary runs on: file
//! modes and links, process groups, free space, users and owners, and the
//! Windows-only system actions (services, access control lists).
//!
//! Each function has one implementation per family, [`unix`] on Linux and `windows`
//! on Windows, with the same signature; the rest of the crate calls them and holds no
//! `cfg` of its own. What makes no sense on a platform (`fix-permissions` and owners
//! on Windows, services and ACLs on Linux) fails there with an error that says so.

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub(crate) use unix::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub(crate) use windows::*;

/// The error of an operation the platform does not have.
pub(crate) fn unsupported(what: &str) -> anyhow::Error {
    let os = if cfg!(windows) { "Windows" } else { std::env::consts::OS };
    anyhow::anyhow!("{what} is not supported on {os}")
}
