//! One module per command group.

mod data;
mod demo;
mod init;

use std::path::PathBuf;

use anyhow::Context;
use kiln_project::{Locations, Project};

use crate::ExitStatus;
use crate::cli::{Cli, Command};
use crate::output::Printer;

pub async fn run(cli: Cli) -> anyhow::Result<ExitStatus> {
    let printer = Printer {
        json: cli.global.json,
        quiet: cli.global.quiet,
    };
    let locations = Locations {
        store: cli.global.store.clone(),
        objects: cli.global.objects.clone(),
    };
    match cli.command {
        Command::Init(args) => init::init(args, &locations, printer).await,
        Command::Data(cmd) => {
            let project = open(&locations).await?;
            let status = data::run(&project, cmd, printer).await;
            project.meta.close().await;
            status
        }
        Command::Demo(args) => demo::demo(args, printer).await,
        Command::Audit { limit } => {
            let project = open(&locations).await?;
            let entries = project.meta.audit_log(limit).await?;
            project.meta.close().await;
            if printer.json {
                printer.json(&entries);
            } else {
                let mut t = crate::output::table(&["when", "who", "action", "target", "detail"]);
                for e in &entries {
                    let target = match e.target_id.split_once('@') {
                        Some((name, id)) if id.len() == 64 => format!("{name}@{}", &id[..12]),
                        _ => e.target_id.clone(),
                    };
                    t.add_row(vec![
                        e.at.get(..19).unwrap_or(&e.at).replace('T', " "),
                        e.actor.clone(),
                        e.action.clone(),
                        target,
                        e.detail.to_string(),
                    ]);
                }
                println!("{t}");
            }
            Ok(ExitStatus::Success)
        }
    }
}

fn cwd() -> anyhow::Result<PathBuf> {
    std::env::current_dir().context("Failed to read the current directory")
}

async fn open(locations: &Locations) -> anyhow::Result<Project> {
    let project = Project::open(&cwd()?, locations).await?;
    // Remove what a killed writer left behind, unless a writer is active.
    project.objects.tidy();
    Ok(project)
}
