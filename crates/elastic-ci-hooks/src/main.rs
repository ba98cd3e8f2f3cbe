//! Entry point of `elastic-ci-hooks`; see the library for what each command does.

use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use elastic_ci_hooks::clients::SdkClients;
use elastic_ci_hooks::joblog::JobLog;
use elastic_ci_hooks::{Cli, init_logging, run};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Variables that are not UTF-8 cannot be passed on faithfully; they are left out.
    let env: HashMap<String, String> = std::env::vars_os()
        .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)))
        .collect();
    init_logging(&env);
    let log = JobLog::stderr();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            log.error(&format!("failed to start the async runtime: {error}"));
            return ExitCode::from(53);
        }
    };
    let clients = SdkClients::new(&env);
    match runtime.block_on(run(cli, &env, &clients, &log, &mut std::io::stdin())) {
        Ok(stdout) => {
            // Stdout is the script the hook shim evaluates: written whole, or not at all.
            let mut out = std::io::stdout().lock();
            match out.write_all(stdout.as_bytes()).and_then(|()| out.flush()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    log.error(&format!("failed to write the hook's output: {error}"));
                    ExitCode::from(53)
                }
            }
        }
        Err(code) => ExitCode::from(code),
    }
}
