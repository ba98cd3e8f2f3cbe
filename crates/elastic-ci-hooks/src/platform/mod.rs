//! What differs between the operating systems the hooks run on: process groups and
//! signals, whether a file is executable, private directories and who owns them.
//!
//! Each function has one implementation per family, [`unix`] on Linux and `windows`
//! on Windows, with the same signature; the rest of the crate holds no `cfg` of its
//! own.

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub(crate) use unix::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub(crate) use windows::*;
