//! Entry point of `elastic-ci`; see the library for the commands.

use std::process::ExitCode;

use clap::Parser;
use elastic_ci_admin::{Cli, init_logging, report_error, run};
use elastic_ci_core::environment::from_os_vars;

fn main() -> ExitCode {
    let cli = Cli::parse();
    #[allow(clippy::disallowed_methods, reason = "the one place this binary reads its environment")]
    let environment = from_os_vars(std::env::vars_os());
    init_logging(&environment.vars, cli.verbose);
    for warning in environment.warnings() {
        tracing::warn!("{warning}");
    }
    let mut stdout = std::io::stdout().lock();
    match run(cli, &environment.vars, &mut stdout) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => report_error(&error),
    }
}
