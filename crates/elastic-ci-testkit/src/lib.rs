//! Test support shared by every crate's tests. Dev-only: nothing in a shipped binary
//! depends on it.
//!
//! - [`moto`]: reach the local AWS emulator that `cargo xtask moto start` (or
//!   `cargo xtask ci`) runs, with SDK clients for setting up fixtures.
//! - [`buildkite`]: a fake Buildkite agent API whose queue counts and failures tests
//!   script.
//! - [`buildkite_rest`]: a fake Buildkite REST API serving an organization's builds
//!   and jobs, paginated, for `elastic-ci export-trace`.
//! - [`http`]: an in-process HTTP and HTTPS server for tests of HTTP clients.
//! - [`image`]: the agent image's hook shims installed under a directory standing
//!   for `/`.
//! - [`imds`]: a fake EC2 instance metadata service (IMDSv2) that can be taken down.
//! - [`log_filter`]: CloudWatch Logs filter patterns evaluated against log lines, for
//!   the stack's metric filters.
//! - [`names`]: resource names unique across parallel tests and runs.
//!
//! **Architecture Invariant:** tests reach nothing but 127.0.0.1.
//!
//! This crate is the one exception to "AWS SDK crates appear only in `elastic-ci-aws`":
//! fixtures (buckets, parameters, groups) are set up with SDK calls the production
//! traits deliberately do not offer.

pub mod buildkite;
pub mod buildkite_rest;
pub mod http;
pub mod image;
pub mod imds;
pub mod log_filter;
pub mod moto;
pub mod names;
