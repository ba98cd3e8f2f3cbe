//! Entry point of `elastic-ci-scaler`: the Lambda function when `AWS_LAMBDA_RUNTIME_API`
//! is set, the operator command otherwise. See the library for what it does.

use std::process::ExitCode;

use clap::Parser;
use elastic_ci_core::environment::from_os_vars;
use elastic_ci_scaler::cli::{Cli, cli_main, init_logging, lambda_main, report_error};

fn main() -> ExitCode {
    #[allow(clippy::disallowed_methods, reason = "the one place this binary reads its environment")]
    let environment = from_os_vars(std::env::vars_os());
    let warnings = environment.warnings();
    let env = environment.vars;
    let in_lambda = env.contains_key("AWS_LAMBDA_RUNTIME_API");
    // In Lambda the command line is the runtime's, not ours.
    let cli = if in_lambda { None } else { Some(Cli::parse()) };
    init_logging(&env, in_lambda);
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            return report_error(
                &anyhow::Error::new(error).context("failed to start the async runtime"),
            );
        }
    };
    let result = runtime.block_on(async move {
        match cli {
            None => lambda_main(env).await,
            Some(cli) => cli_main(cli, env).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => report_error(&error),
    }
}
