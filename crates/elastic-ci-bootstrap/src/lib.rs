//! `elastic-ci-bootstrap`: the commands that run on each agent instance.
//!
//! - `fetch SOURCE DEST`: download a file from `s3://`, `ssm:`, `https://`, `http://` or
//!   `file://` and put it in place atomically with a given mode.
//!
//! ## Configuration
//!
//! - `ELASTIC_CI_LOG`: log filter for stderr (default `info`).
//! - The standard AWS variables (`AWS_REGION`, `AWS_PROFILE`, `AWS_ENDPOINT_URL`,
//!   `AWS_ENDPOINT_URL_<SERVICE>`, credentials), read by the SDK.
//! - `SSL_CERT_FILE` / `SSL_CERT_DIR`: extra trusted certificates for HTTPS sources.

pub mod fetch;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use elastic_ci_aws::config::{AwsSettings, aws_sdk_config};
use elastic_ci_aws::s3::S3ObjectStore;
use elastic_ci_aws::ssm::SsmParameterStore;
use elastic_ci_core::uri::SourceUri;

/// Sets up and looks after an Elastic CI Stack agent instance.
#[derive(Debug, Parser)]
#[command(name = "elastic-ci-bootstrap", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Download SOURCE to DEST, atomically.
    ///
    /// SOURCE is one of:
    ///   s3://BUCKET/KEY   one S3 object, streamed to DEST;
    ///   ssm:/PATH         every SSM parameter under PATH (recursive, decrypted), written
    ///                     as an env file for systemd's EnvironmentFile= and bash's
    ///                     `source`: NAME="value", NAME being the last path segment in
    ///                     upper case; invalid names are skipped with a warning;
    ///   https://… http:// a download that follows redirects; any non-2xx status fails;
    ///   file:///PATH      a local file.
    ///
    /// DEST is replaced only when the whole download succeeded; on failure it is left
    /// as it was and the exit status is 1. Invalid arguments exit with 2.
    #[command(verbatim_doc_comment)]
    Fetch(FetchArgs),
}

#[derive(Debug, clap::Args)]
pub struct FetchArgs {
    /// Where to read from: s3://BUCKET/KEY, ssm:/PATH, https://URL, http://URL or file:///PATH.
    #[arg(value_parser = parse_source)]
    pub source: SourceUri,
    /// The file to write.
    pub dest: PathBuf,
    /// Permission bits of DEST, in octal.
    #[arg(long, default_value = "0600", value_parser = parse_mode)]
    pub mode: u32,
    /// Give up an HTTP(S) download after this many seconds.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub timeout_secs: u64,
}

fn parse_source(input: &str) -> Result<SourceUri, String> {
    SourceUri::new(input).map_err(|error| error.to_string())
}

fn parse_mode(input: &str) -> Result<u32, String> {
    let digits = input.strip_prefix("0o").unwrap_or(input);
    match u32::from_str_radix(digits, 8) {
        Ok(mode) if mode <= 0o7777 && !digits.is_empty() => Ok(mode),
        _ => Err(format!(
            "invalid mode {input:?}: expected octal permission bits such as 0600 or 0640"
        )),
    }
}

/// Runs a parsed command line; `env` is the process environment.
pub async fn run(cli: Cli, env: &HashMap<String, String>) -> anyhow::Result<()> {
    match cli.command {
        Command::Fetch(args) => {
            let backends =
                backends_for(&args.source, env, Duration::from_secs(args.timeout_secs)).await?;
            fetch::fetch(&args.source, &args.dest, args.mode, &backends)
                .await
                .with_context(|| format!("fetching {} failed", args.source))?;
            Ok(())
        }
    }
}

/// Builds only the clients a source needs: an HTTP or file fetch never loads AWS
/// configuration.
async fn backends_for(
    source: &SourceUri,
    env: &HashMap<String, String>,
    timeout: Duration,
) -> anyhow::Result<fetch::Backends> {
    let http = fetch::http_client(timeout).context("failed to build the HTTP client")?;
    let mut backends = fetch::Backends { objects: None, parameters: None, http };
    if matches!(source, SourceUri::S3(_) | SourceUri::Ssm(_)) {
        let settings = AwsSettings::from_env_map(env);
        let sdk_config = aws_sdk_config(&settings).await;
        backends.objects = Some(Arc::new(S3ObjectStore::new(&sdk_config, &settings)));
        backends.parameters = Some(Arc::new(SsmParameterStore::new(&sdk_config)));
    }
    Ok(backends)
}

/// Exit status for a failed command: 2 for bad input, 1 for everything else.
pub fn report_error(error: &anyhow::Error) -> ExitCode {
    // One line: the caller (a boot script, a systemd unit) logs stderr line by line.
    let message = format!("{error:#}").replace(['\n', '\r'], " ");
    #[allow(clippy::print_stderr, reason = "the command's error report")]
    {
        eprintln!("error: {message}");
    }
    ExitCode::FAILURE
}

/// The stderr log subscriber of the instance binaries, filtered by `ELASTIC_CI_LOG`.
pub fn init_logging(env: &HashMap<String, String>) {
    let default = "info,aws_config=warn,aws_smithy_runtime=warn,aws_smithy_runtime_api=warn,hyper=warn,reqwest=warn";
    let filter = env.get("ELASTIC_CI_LOG").map_or(default, String::as_str);
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colour only on a terminal: on an instance stderr goes to the journal and log files.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi)
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_octal_modes() {
        assert_eq!(parse_mode("0640"), Ok(0o640));
        assert_eq!(parse_mode("600"), Ok(0o600));
        assert_eq!(parse_mode("0o755"), Ok(0o755));
        for bad in ["", "0888", "rw-r--r--", "17777", "-1"] {
            let error = parse_mode(bad).unwrap_err();
            assert!(error.contains(&format!("{bad:?}")), "{error}");
        }
    }
}
