use kiln_project::Project;

use crate::ExitStatus;
use crate::cli::InitArgs;
use crate::output::Printer;

pub async fn init(
    args: InitArgs,
    locations: &kiln_project::Locations,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    let dir = match args.dir {
        Some(d) => d,
        None => super::cwd()?,
    };
    let config = Project::init(&dir, args.name.as_deref(), locations).await?;
    if printer.json {
        printer.json(&serde_json::json!({ "config": config }));
    } else {
        printer.note(format!("Created a kiln project: {}", config.display()));
        printer.note(
            "next: `kiln data add NAME FILE` versions a dataset; declare its checks in kiln.yaml",
        );
    }
    Ok(ExitStatus::Success)
}
