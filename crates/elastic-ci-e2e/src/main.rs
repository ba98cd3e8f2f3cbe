//! `elastic-ci-demo`: the whole stack on this machine; see [`elastic_ci_e2e::demo`].

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = elastic_ci_e2e::demo::DemoArgs::parse();
    match elastic_ci_e2e::demo::run(&args) {
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
