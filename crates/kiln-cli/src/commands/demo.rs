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
    let project = serve_tour(project).await?;
    step(
        "kiln predictions bikes — the prediction log (Parquet segments by hour), with labels fed back",
    );
    super::serve::predictions(&project, "bikes", 6, p).await?;
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

/// Serves `bikes@champion` in this process, calls it in each protocol,
/// shows /metrics, then shuts it down (which writes the prediction log).
async fn serve_tour(project: Project) -> anyhow::Result<Project> {
    use kiln_project::ModelRef;
    use kiln_server::serve::{ServeOptions, ServeState, deploy, metrics::Metrics};
    use serde_json::{Value, json};

    let project = std::sync::Arc::new(project);
    let metrics = std::sync::Arc::new(Metrics::new());
    let spec = deploy::DeploymentSpec {
        name: "bikes".into(),
        model: ModelRef::parse("bikes@champion"),
        split: Vec::new(),
        shadow: None,
        sticky: None,
        sample: 1.0,
    };
    let started = std::time::Instant::now();
    let d = deploy::load_deployment(&project, &metrics, spec).await?;
    let state = ServeState::new(project.clone(), metrics, vec![d], ServeOptions::default());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(kiln_server::serve::serve_until(
        state,
        "127.0.0.1:0".parse().expect("an address"),
        move |a| {
            let _ = addr_tx.send(a);
        },
        async {
            let _ = stop_rx.await;
        },
    ));
    let addr = addr_rx.await.context("The model server did not start")?;
    step(&format!(
        "kiln serve bikes@champion — ready in {:.2} s on http://{addr}: MLflow, Open Inference Protocol v2, kiln's API",
        started.elapsed().as_secs_f64()
    ));
    // Three hours of the data, without the target, as records.
    let mut lines = BIKES.lines();
    let header: Vec<&str> = lines.next().expect("a header").split(',').collect();
    let records: Vec<Value> = lines
        .take(3)
        .map(|l| {
            header
                .iter()
                .zip(l.split(','))
                .filter(|(k, _)| **k != "bikers")
                .map(|(k, v)| {
                    let v = v
                        .parse::<i64>()
                        .map(Value::from)
                        .or_else(|_| v.parse::<f64>().map(Value::from))
                        .unwrap_or_else(|_| Value::from(v));
                    (k.to_string(), v)
                })
                .collect::<serde_json::Map<_, _>>()
                .into()
        })
        .collect();
    let client = reqwest::Client::new();
    let base = format!("http://{addr}");
    let post = async |path: &str, body: Value| -> anyhow::Result<(String, Value)> {
        let r = client
            .post(format!("{base}{path}"))
            .json(&body)
            .send()
            .await
            .with_context(|| format!("POST {path}"))?;
        let id = r
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        Ok((
            id,
            r.json()
                .await
                .with_context(|| format!("POST {path}: not JSON"))?,
        ))
    };
    let (_, v) = post("/invocations", json!({ "dataframe_records": records })).await?;
    println!("POST /invocations {{\"dataframe_records\": [3 rows]}}\n  → {v}");
    let inputs: Vec<Value> = header
        .iter()
        .filter(|h| **h != "bikers")
        .map(|h| {
            let data: Vec<Value> = records.iter().map(|r| r[*h].clone()).collect();
            let datatype = if data[0].is_string() {
                "BYTES"
            } else if data.iter().all(Value::is_i64) {
                "INT64"
            } else {
                "FP64"
            };
            json!({ "name": h, "shape": [3], "datatype": datatype, "data": data })
        })
        .collect();
    let (_, v) = post("/v2/models/bikes/infer", json!({ "inputs": inputs })).await?;
    println!(
        "POST /v2/models/bikes/infer {{\"inputs\": [13 tensors]}}\n  → outputs {}",
        v["outputs"]
    );
    let (id, v) = post(
        "/api/v1/deployments/bikes/predict",
        json!({ "records": records }),
    )
    .await?;
    println!(
        "POST /api/v1/deployments/bikes/predict\n  → request {id}, model bikes v{}, {} ms",
        v["model"]["version"].as_str().unwrap_or("?"),
        v["latency_ms"]
            .as_f64()
            .map_or("?".into(), |m| format!("{m:.2}"))
    );
    // The truth arrives later: the riders those hours actually had.
    let truth: Vec<i64> = BIKES
        .lines()
        .skip(1)
        .take(3)
        .filter_map(|l| l.rsplit(',').next()?.parse().ok())
        .collect();
    let (_, v) = post(
        "/api/v1/deployments/bikes/feedback",
        json!({ "request_id": id, "labels": truth }),
    )
    .await?;
    println!(
        "POST /api/v1/deployments/bikes/feedback {{\"request_id\": …, \"labels\": {truth:?}}}\n  → {v}"
    );
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    println!("GET /metrics (some of it)");
    for l in text.lines().filter(|l| {
        l.starts_with("kiln_requests_total")
            || l.starts_with("kiln_request_duration_seconds_count")
            || l.starts_with("kiln_model_load_seconds{")
            || l.starts_with("process_resident_memory_bytes")
    }) {
        println!("  {l}");
    }
    let _ = stop_tx.send(());
    server.await.context("The model server failed")??;
    std::sync::Arc::try_unwrap(project)
        .map_err(|_| anyhow::anyhow!("The model server still holds the project"))
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
