//! `cargo xtask release --rehearse`: a launcher for `elastic-ci-rehearse` (crate
//! `elastic-ci-e2e`), which runs the release tasks of this crate against the local AWS
//! emulator and deploys what they published. The release itself is the pipeline's
//! steps (`pin-downloads` when bumping, `dist`, `ami` per architecture, `template`,
//! `publish`), each a task of its own.

use anyhow::bail;

use crate::demo;
use crate::flags::ReleaseArgs;

pub(crate) fn run(args: &ReleaseArgs) -> anyhow::Result<()> {
    if !args.rehearse {
        bail!(
            "`cargo xtask release` only rehearses (--rehearse): a release is the pipeline's dist, ami, template and publish steps (see Releasing in the README)"
        );
    }
    demo::launch(demo::REHEARSAL_BINARY, &args.args)
}
