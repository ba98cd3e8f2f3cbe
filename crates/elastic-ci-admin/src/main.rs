//! Entry point of `elastic-ci`; see the library for the commands.

use std::collections::HashMap;
use std::process::ExitCode;

use clap::Parser;
use elastic_ci_admin::{Cli, init_logging, report_error, run};

fn main() -> ExitCode {
    let cli = Cli::parse();
    #[allow(clippy::disallowed_methods, reason = "the one place this binary reads its environment")]
    let env: HashMap<String, String> = std::env::vars().collect();
    init_logging(&env, cli.verbose);
    let mut stdout = std::io::stdout().lock();
    match run(cli, &env, &mut stdout) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => report_error(&error),
    }
}
