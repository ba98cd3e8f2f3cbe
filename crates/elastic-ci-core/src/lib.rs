//! Pure domain logic shared by every Elastic CI Stack binary.
//!
//! **Architecture Invariant:** this crate does no I/O. It has no async runtime, no AWS
//! SDK, no HTTP client, and never reads the environment, the file system or the clock.
//! Callers hand it plain values (environment maps, file contents, timestamps) and get
//! plain values back, so everything here is tested with table and property tests.
//!
//! - [`uri`]: the `s3://`, `ssm:`, `https://`, `http://` and `file://` sources that the
//!   stack fetches configuration from.
//! - [`envfile`]: the env-file format read by both systemd's `EnvironmentFile=` and
//!   bash's `source`, with a writer and a parser.
//! - [`environment`]: a process environment as text, for the binaries' `from_env`
//!   shims (variables that are not UTF-8 are named, not kept).
//! - [`fleet`]: snapshots of an Auto Scaling group and its instances.
//! - [`scaling`]: the scaler's configuration and its pure scaling decision.
//! - [`secret`]: a string wrapper that never prints its contents.
//! - [`shell`]: quoting for text a shell evaluates.
//! - [`boot`]: the instance boot sequence as data: configuration, rendered files, plan.
//! - [`archive`]: what a git-mirror seed archive may contain.
//! - [`disk`]: the disk-space check's thresholds and purge target.
//! - [`fixperms`]: argument rules of `fix-permissions`.
//! - [`backoff`]: retry schedules.
//! - [`lifecycle`]: lifecycle transitions and spot interruption times.
//! - [`hooks`]: the agent hooks' output script (quoted `export`/`unset` lines),
//!   environment differences, plugin switches, checkout paths, ECR registry names.
//! - [`secrets`]: the S3 secrets bucket's layout and lookup order, secret-file names,
//!   git credentials.

pub mod archive;
pub mod backoff;
pub mod boot;
pub mod disk;
pub mod envfile;
pub mod environment;
pub mod fixperms;
pub mod fleet;
pub mod hooks;
pub mod lifecycle;
pub mod scaling;
pub mod secret;
pub mod secrets;
pub mod shell;
pub mod uri;
