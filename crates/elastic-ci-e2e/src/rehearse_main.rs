//! `elastic-ci-rehearse`: the release against the local AWS emulator; see
//! [`elastic_ci_e2e::rehearsal`].

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = elastic_ci_e2e::rehearsal::RehearsalArgs::parse();
    match elastic_ci_e2e::rehearsal::run(&args) {
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
