//! `elastic-ci-rehearse`: the release against the local AWS emulator; see
//! [`elastic_ci_e2e::rehearsal`].

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = elastic_ci_e2e::rehearsal::RehearsalArgs::parse();
    #[allow(clippy::disallowed_methods, reason = "the one place this binary reads its environment")]
    let environment = elastic_ci_core::environment::from_os_vars(std::env::vars_os());
    for warning in environment.warnings() {
        #[allow(clippy::print_stderr, reason = "a warning before anything else runs")]
        {
            eprintln!("warning: {warning}");
        }
    }
    match elastic_ci_e2e::rehearsal::run(&args, &environment.vars) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            #[allow(clippy::print_stderr, reason = "the binary's one error line")]
            {
                eprintln!("error: {error:#}");
            }
            ExitCode::FAILURE
        }
    }
}
