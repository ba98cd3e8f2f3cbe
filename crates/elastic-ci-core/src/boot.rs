//! The instance boot sequence, as data: the typed configuration read from the UserData
//! environment ([`config`]), the files it renders ([`agent_config`], [`cfn_env`],
//! [`units`]), instance storage ([`storage`]) and Docker's daemon configuration
//! ([`docker`]), the system actions it asks for ([`action`]) and the ordered plan that
//! ties them together ([`plan`]).
//!
//! The instance binary gathers facts (instance id, docker version, login user, mounts,
//! NVMe devices and what they hold, the ids user-namespace remapping needs), asks
//! [`plan::plan`] for the steps, and executes them; `boot --dry-run` prints the same
//! plan instead. Nothing here touches the system. A Windows instance gets the plan of
//! [`windows`], from the same configuration.

pub mod action;
pub mod agent_config;
pub mod cfn_env;
pub mod config;
pub mod docker;
pub mod plan;
pub mod storage;
pub mod units;
pub mod windows;
