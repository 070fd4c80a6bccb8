//! One module per command group.

mod data;
mod demo;
mod explain;
pub mod export;
mod init;
mod models;
mod monitor;
mod pipeline;
mod serve;
mod tracking;
mod train;

pub use train::parse_duration;

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
        verbose: cli.global.verbose > 0,
    };
    let locations = Locations {
        store: cli.global.store.clone(),
        objects: cli.global.objects.clone(),
        project: cli.global.project.clone(),
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
        Command::Train(args) => {
            with_project(&locations, async |p| train::train(p, args, printer).await).await
        }
        Command::Predict(args) => {
            with_project(&locations, async |p| train::predict(p, args, printer).await).await
        }
        Command::Evaluate(args) => {
            with_project(&locations, async |p| {
                train::evaluate_cmd(p, args, printer).await
            })
            .await
        }
        Command::Explain(args) => {
            with_project(&locations, async |p| {
                explain::explain(p, args, printer).await
            })
            .await
        }
        Command::Runs(cmd) => {
            with_project(&locations, async |p| tracking::runs(p, cmd, printer).await).await
        }
        Command::Experiments(cmd) => {
            with_project(&locations, async |p| {
                tracking::experiments(p, cmd, printer).await
            })
            .await
        }
        Command::Models(cmd) => {
            with_project(&locations, async |p| models::models(p, cmd, printer).await).await
        }
        Command::Lineage { reference, depth } => {
            with_project(&locations, async |p| {
                models::lineage(p, &reference, depth, printer).await
            })
            .await
        }
        Command::Gc(args) => {
            with_project(&locations, async |p| tracking::gc(p, args, printer).await).await
        }
        Command::Monitor(cmd) => monitor::run(cmd, &locations, printer).await,
        Command::Predictions { deployment, limit } => {
            with_project(&locations, async |p| {
                serve::predictions(p, &deployment, limit, printer).await
            })
            .await
        }
        Command::Serve(args) => {
            let project = open(&locations).await?;
            serve::serve(project, args, printer).await
        }
        Command::Server(args) => {
            let project = open(&locations).await?;
            tracking::server(project, args, printer).await
        }
        Command::Gate(args) => {
            with_project(&locations, async |p| pipeline::gate(p, args, printer).await).await
        }
        Command::Run(args) => {
            let project = std::sync::Arc::new(open(&locations).await?);
            let status = pipeline::run(project.clone(), args, printer).await;
            project.meta.close().await;
            status
        }
        Command::Reproduce { run } => {
            let project = std::sync::Arc::new(open(&locations).await?);
            let status = pipeline::reproduce(project.clone(), &run, printer).await;
            project.meta.close().await;
            status
        }
        Command::Worker(args) => {
            let project = std::sync::Arc::new(open(&locations).await?);
            let status = pipeline::worker(project.clone(), args, printer).await;
            project.meta.close().await;
            status
        }
        Command::Pipelines(cmd) => {
            with_project(&locations, async |p| {
                pipeline::pipelines(p, cmd, printer).await
            })
            .await
        }
        Command::Approve {
            run,
            step,
            reject,
            message,
        } => {
            with_project(&locations, async |p| {
                pipeline::approve(p, &run, &step, reject, message.as_deref(), printer).await
            })
            .await
        }
        Command::Export(cmd) => export::run(cmd, &locations, printer).await,
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

/// Opens the project, runs `f` on it and closes the store, whatever `f` returned.
async fn with_project<F>(locations: &Locations, f: F) -> anyhow::Result<ExitStatus>
where
    F: AsyncFnOnce(&Project) -> anyhow::Result<ExitStatus>,
{
    let project = open(locations).await?;
    let status = f(&project).await;
    project.meta.close().await;
    status
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
