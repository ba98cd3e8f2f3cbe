//! Entry point of `elastic-ci-bootstrap`; see the library for what each command does.

use std::process::ExitCode;

use clap::Parser;
use elastic_ci_bootstrap::{Cli, init_logging, log_file, report_error, run};
use elastic_ci_core::environment::from_os_vars;

fn main() -> ExitCode {
    let cli = Cli::parse();
    #[allow(clippy::disallowed_methods, reason = "the one place this binary reads its environment")]
    let environment = from_os_vars(std::env::vars_os());
    let warnings = environment.warnings();
    let env = environment.vars;
    init_logging(&env, log_file(&cli).as_deref());
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
    match runtime.block_on(run(cli, &env)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => report_error(&error),
    }
}
