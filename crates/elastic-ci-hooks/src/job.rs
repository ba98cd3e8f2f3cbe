//! The state one hook invocation works on: the job environment as it changes, the
//! script of changes for the shim, the job log, and what this invocation created
//! (removed again if the hook fails, because the agent drops a failed hook's
//! environment, so `pre-exit` would never learn about it).

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::Context;
use elastic_ci_core::hooks::{EnvChange, HookScript};

use crate::clients::Clients;
use crate::config::{self, HooksConfig};
use crate::joblog::JobLog;

/// A hook failure with the exit status the job should see. Its message has been
/// written to the job log already.
#[derive(Debug, thiserror::Error)]
#[error("the hook failed with exit status {code}")]
pub struct JobFailure {
    pub code: u8,
}

/// Things this invocation made that must not outlive a failed hook.
#[derive(Debug, Default)]
pub struct Created {
    pub docker_config_dir: Option<PathBuf>,
    pub ssh_agent_pid: Option<u32>,
}

pub struct Job<'a> {
    /// The job environment, with this hook's changes applied.
    pub env: HashMap<String, String>,
    pub config: HooksConfig,
    pub log: &'a JobLog,
    pub clients: &'a dyn Clients,
    pub script: HookScript,
    pub created: Created,
}

impl<'a> Job<'a> {
    pub fn new(
        env: &HashMap<String, String>,
        log: &'a JobLog,
        clients: &'a dyn Clients,
    ) -> Job<'a> {
        // The bootstrapper is found beside this executable, as the image installs them.
        let hooks_binary = std::env::current_exe()
            .unwrap_or_else(|_| PathBuf::from(config::INSTALLED_HOOKS_BINARY));
        let config = HooksConfig::from_env_map(env, &hooks_binary);
        for warning in &config.warnings {
            log.warning(warning);
        }
        Job {
            env: env.clone(),
            config,
            log,
            clients,
            script: HookScript::new(),
            created: Created::default(),
        }
    }

    /// A variable of the job environment, empty when unset.
    pub fn var(&self, name: &str) -> &str {
        self.env.get(name).map_or("", String::as_str)
    }

    /// Exports a variable to the job (and to the rest of this hook).
    pub fn export(&mut self, name: &str, value: &str) -> anyhow::Result<()> {
        self.apply(EnvChange::Export { name: name.to_owned(), value: value.to_owned() })
    }

    /// Removes a variable from the job (and from the rest of this hook).
    pub fn unset(&mut self, name: &str) -> anyhow::Result<()> {
        self.apply(EnvChange::Unset { name: name.to_owned() })
    }

    pub fn apply(&mut self, change: EnvChange) -> anyhow::Result<()> {
        let name = change.name().to_owned();
        self.script
            .push(change.clone())
            .with_context(|| format!("cannot set {name} for the job"))?;
        match change {
            EnvChange::Export { name, value } => {
                self.env.insert(name, value);
            }
            EnvChange::Unset { name } => {
                self.env.remove(&name);
            }
        }
        Ok(())
    }
}
