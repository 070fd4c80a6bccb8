//! `kiln demo`: a tour on a throw-away project with a bundled real dataset
//! (Capital Bikeshare hourly rentals, 2011; see examples/data/ATTRIBUTION.md).

use std::path::{Path, PathBuf};

use anyhow::Context;
use kiln_project::{Locations, Project};

use crate::ExitStatus;
use crate::cli::{
    AddArgs, DataCommand, DemoArgs, EvaluateArgs, ModelsCommand, PredictArgs, RunsCommand,
    RunsLsArgs, TrainArgs,
};
use crate::output::Printer;

/// The bundled dataset, compiled in so the demo runs anywhere.
const BIKES: &str = include_str!("../../../../examples/data/bikeshare_hourly.csv");

const CONFIG: &str = "project: demo
datasets:
  bikes:
    key: datetime
    checks:
      rows: { min: 8000 }
      unique: [datetime]
      columns:
        datetime: { type: timestamp, not_null: true }
        bikers: { type: integer, not_null: true, range: { min: 0, max: 1000 } }
        humidity: { range: { min: 0, max: 1 }, max_null_fraction: 0.01 }
        temp: { range: { min: 0, max: 1 } }
        weather: { allowed: [clear, cloudy/misty, light rain/snow, heavy rain/snow] }
";

pub async fn demo(args: DemoArgs, printer: Printer) -> anyhow::Result<ExitStatus> {
    // Without --dir, the project lives in a temporary directory removed on exit.
    let throwaway = match args.dir {
        Some(_) => None,
        None => Some(
            tempfile::Builder::new()
                .prefix("kiln-demo-")
                .tempdir()
                .context("Failed to create a temporary directory")?,
        ),
    };
    let dir: PathBuf = match (&args.dir, &throwaway) {
        (Some(d), _) => d.clone(),
        (None, t) => t.as_ref().expect("made above").path().to_path_buf(),
    };
    let p = Printer {
        json: false,
        ..printer
    };
    step("kiln init — a project is kiln.yaml plus .kiln/ (SQLite metadata, object folder)");
    Project::init(&dir, Some("demo"), &Locations::default()).await?;
    std::fs::write(dir.join("kiln.yaml"), CONFIG).context("Failed to write kiln.yaml")?;
    println!("{}\n--- kiln.yaml ---\n{CONFIG}", dir.display());

    let data = dir.join("data");
    std::fs::create_dir_all(&data).context("Failed to create the data folder")?;
    let v1 = data.join("bikeshare_hourly.csv");
    std::fs::write(&v1, BIKES).context("Failed to write the demo dataset")?;
    let v2 = data.join("bikeshare_hourly_v2.csv");
    std::fs::write(&v2, modified(BIKES)).context("Failed to write the modified dataset")?;

    let project = Project::open(&dir, &Locations::default()).await?;
    let run = |cmd: DataCommand| super::data::run(&project, cmd, p);

    step("kiln data add bikes data/bikeshare_hourly.csv — hash, profile, columnar copy, checks");
    run(add("bikes", &v1, "Capital Bikeshare, hourly, 2011", false)).await?;
    step(
        "kiln data add bikes data/bikeshare_hourly.csv — the same bytes again make no new version",
    );
    run(add("bikes", &v1, "again", false)).await?;
    run(DataCommand::Tag {
        reference: "bikes@latest".into(),
        tag: "v1".into(),
    })
    .await?;
    step("kiln data show bikes@v1 — schema and profile");
    run(DataCommand::Show {
        reference: "bikes@v1".into(),
    })
    .await?;

    step(
        "kiln data add bikes data/bikeshare_hourly_v2.csv --check — a feed with sensor glitches is refused",
    );
    let refused = run(add("bikes", &v2, "nightly feed", true)).await?;
    println!(
        "(exit status would be {})",
        if refused == ExitStatus::Failure { 1 } else { 0 }
    );
    step("kiln data add bikes data/bikeshare_hourly_v2.csv — recorded anyway, with a warning");
    run(add("bikes", &v2, "nightly feed", false)).await?;
    step("kiln data check bikes@latest — which checks fail, and on which rows");
    let checked = run(DataCommand::Check {
        reference: "bikes@latest".into(),
    })
    .await?;
    println!(
        "(exit status would be {})",
        if checked == ExitStatus::Failure { 1 } else { 0 }
    );
    step("kiln data diff bikes@v1 bikes@latest — schema, statistics, rows by key");
    run(DataCommand::Diff {
        a: "bikes@v1".into(),
        b: "bikes@latest".into(),
        key: None,
    })
    .await?;
    step("kiln data log bikes");
    run(DataCommand::Log {
        name: "bikes".into(),
    })
    .await?;
    step("kiln data get bikes@v1 -o restored.csv — byte-identical restore");
    let restored = dir.join("restored.csv");
    run(DataCommand::Get {
        reference: "bikes@v1".into(),
        output: restored.clone(),
    })
    .await?;
    let same =
        std::fs::read(&restored).context("Failed to read the restored file")? == BIKES.as_bytes();
    println!("restored file identical to the original: {same}");

    step(
        "kiln train bikes@v1 --target bikers --split time --budget 10s — AutoML: task and metric inferred, the last 20% of hours held out, a portfolio of models then a search, the best (or an ensemble) refitted and tested",
    );
    super::train::train(
        &project,
        TrainArgs {
            dataset: "bikes@v1".into(),
            target: "bikers".into(),
            task: "auto".into(),
            metric: None,
            budget: "10s".into(),
            trials: None,
            seed: 0,
            split: "time".into(),
            test_fraction: 0.2,
            positive: None,
            exclude: Vec::new(),
            no_ensemble: false,
            threads: None,
            output: None,
            experiment: Some("bikeshare".into()),
        },
        p,
    )
    .await?;
    let run_id = project
        .meta
        .runs(1)
        .await?
        .first()
        .map(|r| r.id[..12].to_string())
        .context("The training run was not recorded")?;
    step(&format!(
        "kiln evaluate {run_id} bikes@v1 --holdout — the stored model scores its test hours again: same metrics"
    ));
    super::train::evaluate_cmd(
        &project,
        EvaluateArgs {
            model: run_id.clone(),
            data: "bikes@v1".into(),
            holdout: true,
            threshold: None,
        },
        p,
    )
    .await?;
    step(&format!(
        "kiln predict {run_id} data/bikeshare_hourly_v2.csv -o predictions.csv --keep datetime — batch scoring"
    ));
    let predictions = dir.join("predictions.csv");
    super::train::predict(
        &project,
        PredictArgs {
            model: run_id.clone(),
            data: v2.display().to_string(),
            output: predictions.clone(),
            keep: vec!["datetime".into()],
        },
        p,
    )
    .await?;
    let head: Vec<String> = std::fs::read_to_string(&predictions)
        .context("Failed to read the predictions")?
        .lines()
        .take(4)
        .map(str::to_string)
        .collect();
    println!("{}", head.join("\n"));
    step("kiln runs ls — every run, kiln's and MLflow clients', with its metrics");
    super::tracking::runs(
        &project,
        RunsCommand::Ls(RunsLsArgs {
            experiment: None,
            filter: None,
            order_by: Vec::new(),
            all: false,
            limit: 10,
        }),
        p,
    )
    .await?;
    step(&format!(
        "kiln models register bikes --run {run_id} && kiln models alias bikes champion 1 — the registry: versions, aliases, audited moves"
    ));
    super::models::models(
        &project,
        ModelsCommand::Register {
            name: "bikes".into(),
            run: run_id.clone(),
            description: Some("Hourly bike demand".into()),
        },
        p,
    )
    .await?;
    super::models::models(
        &project,
        ModelsCommand::Alias {
            name: "bikes".into(),
            alias: "champion".into(),
            number: Some(1),
            delete: false,
        },
        p,
    )
    .await?;
    step("kiln lineage bikes@champion — from the model back to its run and its data version");
    super::models::lineage(&project, "bikes@champion", 8, p).await?;
    project.meta.close().await;
    println!(
        "\nDemo project: {} ({})",
        dir.display(),
        if throwaway.is_none() {
            "kept"
        } else {
            "removed on exit"
        }
    );
    Ok(ExitStatus::Success)
}

fn step(title: &str) {
    let bold = std::io::IsTerminal::is_terminal(&std::io::stdout())
        && std::env::var_os(kiln_core::EnvVars::NO_COLOR).is_none();
    if bold {
        println!("\n\x1b[1m$ {title}\x1b[0m");
    } else {
        println!("\n$ {title}");
    }
}

fn add(name: &str, path: &Path, message: &str, check: bool) -> DataCommand {
    DataCommand::Add(AddArgs {
        name: name.into(),
        path: path.into(),
        message: Some(message.into()),
        check,
        no_profile: false,
        format: None,
        delimiter: None,
        no_header: false,
    })
}

/// The next night's feed: the first day is gone, a new week is appended,
/// a sensor glitch writes negative counts and humidity above 1, and a new
/// weather label appears.
fn modified(csv: &str) -> String {
    let mut lines = csv.lines();
    let header = lines.next().unwrap_or_default();
    let rows: Vec<&str> = lines.collect();
    let mut out = vec![header.to_string()];
    for (i, row) in rows.iter().enumerate().skip(24) {
        let mut f: Vec<String> = row.split(',').map(str::to_string).collect();
        if i % 997 == 0 {
            f[13] = format!("-{}", f[13]);
        }
        if i % 1499 == 0 {
            f[11] = "1.4".into();
        }
        if i == 5000 {
            f[8] = "fog".into();
        }
        out.push(f.join(","));
    }
    // A new week: the last week's rows again, stamped with the next 168 hours.
    let last = rows
        .last()
        .and_then(|r| r.split(',').next())
        .unwrap_or_default();
    if let Ok(end) = chrono::NaiveDateTime::parse_from_str(last, "%Y-%m-%d %H:%M:%S") {
        for (h, row) in rows.iter().rev().take(168).rev().enumerate() {
            let mut f: Vec<String> = row.split(',').map(str::to_string).collect();
            f[0] = (end + chrono::Duration::hours(h as i64 + 1))
                .format("%Y-%m-%d %H:%M:%S")
                .to_string();
            out.push(f.join(","));
        }
    }
    out.join("\n") + "\n"
}
