//! `kiln export`: CI files, a Dockerfile, Kubernetes manifests.

use clap::Subcommand;
use kiln_project::Locations;

use crate::ExitStatus;
use crate::output::Printer;

#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// A CI file that runs the pipeline and the gate.
    Ci,
}

pub async fn run(
    cmd: ExportCommand,
    _locations: &Locations,
    _printer: Printer,
) -> anyhow::Result<ExitStatus> {
    match cmd {
        ExportCommand::Ci => anyhow::bail!("kiln export is being written"),
    }
}
