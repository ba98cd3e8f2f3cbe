//! The commands: argument types, file and terminal I/O around the pure modules.

pub mod doctor;
pub mod drain;
pub mod export_trace;
pub mod iam_policy;
pub mod log_filters;
pub mod logs;
pub mod pause;
pub mod simulate;
pub mod status;
pub mod upgrade;

use elastic_ci_simulator::SimulateError;
use elastic_ci_simulator::settings::SettingsError;
use elastic_ci_simulator::sweep::SweepError;
use elastic_ci_simulator::trace::TraceError;

use crate::error::InputError;

/// Whether the failure is the user's input (exit status 2) rather than the command
/// failing (1).
pub(crate) fn is_invalid_input(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause.is::<TraceError>()
            || cause.is::<SettingsError>()
            || cause.is::<SweepError>()
            || cause.is::<SimulateError>()
            || cause.is::<InputError>()
    })
}
