//! Entry point of `elastic-ci-hooks`; see the library for what each command does.

use std::io::Write;
use std::process::ExitCode;

use elastic_ci_core::environment::from_os_vars;
use elastic_ci_hooks::clients::SdkClients;
use elastic_ci_hooks::joblog::JobLog;
use elastic_ci_hooks::{cli_from_args, init_logging, run};

fn main() -> ExitCode {
    let cli = cli_from_args(std::env::args_os().collect());
    // Variables that are not UTF-8 cannot be passed on faithfully; they are left out,
    // with a warning in the job log.
    #[allow(clippy::disallowed_methods, reason = "the one place this binary reads its environment")]
    let environment = from_os_vars(std::env::vars_os());
    let warnings = environment.warnings();
    let env = environment.vars;
    init_logging(&env);
    let log = JobLog::stderr();
    for warning in warnings {
        log.warning(&warning);
    }
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
