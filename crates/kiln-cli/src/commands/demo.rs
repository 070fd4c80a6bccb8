//! `kiln demo`: a tour on a throw-away project with a bundled real dataset
//! (Capital Bikeshare hourly rentals, 2011; see examples/data/ATTRIBUTION.md).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use kiln_project::{Locations, Project};

use crate::ExitStatus;
use crate::cli::{
    AddArgs, DataCommand, DemoArgs, EvaluateArgs, ExplainArgs, PipelinesCommand, PredictArgs,
    RunArgs, RunsCommand, RunsLsArgs,
};
use crate::output::Printer;

/// The bundled dataset, compiled in so the demo runs anywhere.
const BIKES: &str = include_str!("../../../../examples/data/bikeshare_hourly.csv");

const CONFIG: &str = r#"project: demo
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
deployments:
  bikes:
    model: bikes@champion
monitors:
  bikes-watch:
    deployment: bikes
    window: 250                 # rows per window
    rules:
      - name: inputs-drifted
        metric: drift.share     # share of input columns drifted from the training data
        above: 0.2
      - name: error-up
        metric: mae             # on the riders fed back
        above: MAE_LIMIT
    webhooks: [WEBHOOK]
pipelines:
  bikes:
    description: the hourly demand model, from the CSV to bikes@champion
    params: { budget: 10s }
    schedule: "0 3 * * *"          # kiln server runs it at 03:00 UTC every day
    triggers: [{ alert: bikes-watch }] # and when the monitor's alerts fire
    steps:
      ingest:
        kind: ingest
        with: { dataset: bikes, path: data/bikeshare_hourly.csv, message: "Capital Bikeshare, hourly, 2011" }
      check: { kind: check, with: { dataset: "${steps.ingest.dataset}" } }
      train:
        kind: train
        needs: [check]
        with:
          dataset: "${steps.ingest.dataset}"
          target: bikers
          split: time                 # the last 20% of hours held out
          budget: "${params.budget}"
          experiment: bikeshare
      register:
        kind: register
        with: { model: bikes, run: "${steps.train.run}", description: Hourly bike demand }
      gate:
        kind: gate
        with:
          model: "${steps.register.model}"
          require: "GATE"
      deploy:
        kind: deploy
        needs: [gate]
        with: { model: "${steps.register.model}", alias: champion }
"#;

/// What a model must meet to become the champion: its test r2 and rmse
/// are about 0.8 and 52 riders, single-row predictions take a few ms even
/// in a debug build; the first model has no champion to compare with.
const GATE: &str = "r2 >= 0.5 && rmse <= champion.rmse * 1.05 && p99_latency_ms < 50";

/// The monitor's error limit: well above the model's error on ordinary
/// hours, well below its error in the heat wave.
const MAE_LIMIT: &str = "30";

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
    // `kiln run` listens for Ctrl-C (to cancel its steps), which takes the
    // signal's default away for the rest of the process: keep Ctrl-C ending
    // the tour wherever it is.
    tokio::spawn(async {
        if tokio::signal::ctrl_c().await.is_ok() {
            std::process::exit(130);
        }
    });
    step("kiln init — a project is kiln.yaml plus .kiln/ (SQLite metadata, object folder)");
    Project::init(&dir, Some("demo"), &Locations::default()).await?;
    // A webhook receiver on loopback, standing in for a chat or paging hook.
    let (hook_url, hook) = webhook_receiver().await?;
    let config = CONFIG
        .replace("WEBHOOK", &hook_url)
        .replace("MAE_LIMIT", MAE_LIMIT)
        .replace("GATE", GATE);
    std::fs::write(dir.join("kiln.yaml"), &config).context("Failed to write kiln.yaml")?;
    println!("{}\n--- kiln.yaml ---\n{config}", dir.display());

    let data = dir.join("data");
    std::fs::create_dir_all(&data).context("Failed to create the data folder")?;
    let v1 = data.join("bikeshare_hourly.csv");
    std::fs::write(&v1, BIKES).context("Failed to write the demo dataset")?;
    let v2 = data.join("bikeshare_hourly_v2.csv");
    std::fs::write(&v2, modified(BIKES)).context("Failed to write the modified dataset")?;

    let project = Arc::new(Project::open(&dir, &Locations::default()).await?);
    // `kiln run bikes`, as the CLI runs it: the same code and the same lines.
    let pipeline = |dry_run: bool| {
        super::pipeline::run(
            project.clone(),
            RunArgs {
                pipeline: Some("bikes".into()),
                params: Vec::new(),
                dry_run,
                force: false,
                jobs: None,
                junit: None,
                remote: false,
            },
            p,
        )
    };
    let shown = |cmd: PipelinesCommand| super::pipeline::pipelines(&project, cmd, p);

    step(
        "kiln run bikes --dry-run — the plan: steps in the order their needs give, none cached yet",
    );
    pipeline(true).await?;
    step(
        "kiln run bikes — ingest the CSV, check it, AutoML (task and metric inferred, the last 20% of hours held out, budget 10s), register, gate, deploy as bikes@champion",
    );
    let ran = pipeline(false).await?;
    anyhow::ensure!(
        ran == ExitStatus::Success,
        "The demo pipeline failed\n  hint: run `kiln demo --dir DIR` and read `kiln pipelines logs RUN` there"
    );
    let first = last_run(&project).await?;
    step(&format!(
        "kiln pipelines show {first} — each step's status, tries, time and outputs"
    ));
    shown(PipelinesCommand::Show {
        target: first.clone(),
    })
    .await?;
    step(&format!(
        "kiln pipelines logs {first} — every step's log: the checks, AutoML's trials, the gate's clauses (no champion yet, so that comparison is skipped)"
    ));
    shown(PipelinesCommand::Logs {
        run: first.clone(),
        step: None,
    })
    .await?;
    step(
        "kiln run bikes — again: nothing it reads changed, so ingest, check, train and register are cached; the gate (now against the champion) and the deploy always run",
    );
    let ran = pipeline(false).await?;
    anyhow::ensure!(
        ran == ExitStatus::Success,
        "The demo pipeline failed on its second run"
    );
    let second = last_run(&project).await?;
    step(&format!(
        "kiln pipelines logs {second} gate — with a champion now, the candidate is compared with it"
    ));
    shown(PipelinesCommand::Logs {
        run: second,
        step: Some("gate".into()),
    })
    .await?;
    step("kiln pipelines ls — the schedule and the trigger `kiln server` acts on, the last run");
    shown(PipelinesCommand::Ls).await?;

    let run = |cmd: DataCommand| super::data::run(&project, cmd, p);
    step(
        "kiln data add bikes data/bikeshare_hourly.csv — the bytes the pipeline ingested make no new version",
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
    step(
        "kiln lineage bikes@champion — from the model back to its run, its data version and the pipeline run behind them",
    );
    super::models::lineage(&project, "bikes@champion", 8, p).await?;
    let why = dir.join("explain.html");
    step(&format!(
        "kiln explain bikes@champion --rows 100 --html {} — what drives demand, overall and for one hour (the first line names the method)",
        why.display()
    ));
    super::explain::explain(
        &project,
        ExplainArgs {
            model: "bikes@champion".into(),
            data: None,
            rows: vec![100],
            html: Some(why),
            class: None,
            method: "auto".into(),
            background: None,
            permutations: 4,
            sample: 1000,
            repeats: 3,
            top: 8,
        },
        p,
    )
    .await?;
    serve_tour(&project).await?;
    step(
        "kiln predictions bikes — the prediction log (Parquet segments by hour), with labels fed back",
    );
    super::serve::predictions(&project, "bikes", 6, p).await?;
    step(
        "kiln monitor run — windows of the logged traffic against the training data; rules fire alerts",
    );
    super::monitor::run_monitors(&project, &[], p).await?;
    for (content_type, body) in hook.lock().expect("webhook log").iter() {
        let e: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        println!(
            "webhook received {content_type}: {} {} ({})",
            e["type"].as_str().unwrap_or("?"),
            e["subject"].as_str().unwrap_or("?"),
            e["data"]["detail"]["message"].as_str().unwrap_or("")
        );
    }
    step("kiln monitor windows bikes-watch — drift, latency and error per window");
    super::monitor::windows(&project, "bikes-watch", 8, p).await?;
    step(
        "kiln monitor triggers — the retraining the alerts asked for: `kiln server` would run the `bikes` pipeline for each (as it does at 03:00)",
    );
    super::monitor::triggers(&project, 5, p).await?;
    let report = dir.join("monitor.html");
    step(&format!(
        "kiln monitor report bikes --html {} — drift, error and latency over time",
        report.display()
    ));
    super::monitor::report(&project, "bikes", Some(&report), None, p).await?;
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
async fn serve_tour(project: &Arc<Project>) -> anyhow::Result<()> {
    use kiln_project::ModelRef;
    use kiln_server::serve::{ServeOptions, ServeState, deploy, metrics::Metrics};
    use serde_json::{Value, json};

    let metrics = Arc::new(Metrics::new());
    let spec = deploy::DeploymentSpec {
        name: "bikes".into(),
        model: ModelRef::parse("bikes@champion"),
        split: Vec::new(),
        shadow: None,
        sticky: None,
        sample: 1.0,
    };
    let started = std::time::Instant::now();
    let d = deploy::load_deployment(project, &metrics, spec).await?;
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
        json!({ "records": records, "explain": { "top": 3 } }),
    )
    .await?;
    println!(
        "POST /api/v1/deployments/bikes/predict {{\"records\": [3 rows], \"explain\": {{\"top\": 3}}}}\n  → request {id}, model bikes v{}, {} ms (+{} ms to explain)",
        v["model"]["version"].as_str().unwrap_or("?"),
        v["latency_ms"]
            .as_f64()
            .map_or("?".into(), |m| format!("{m:.2}")),
        v["explain_ms"]
            .as_f64()
            .map_or("?".into(), |m| format!("{m:.2}"))
    );
    let e = &v["explanations"];
    if let Some(row) = e["rows"].get(0) {
        let top: Vec<String> = row["top"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| {
                format!(
                    "{} = {} ({:+.1})",
                    t["column"].as_str().unwrap_or("?"),
                    t["value"],
                    t["shap"].as_f64().unwrap_or(0.0)
                )
            })
            .collect();
        println!(
            "  row 0: {:.1} = E[f(x)] {:.1} + {} + {:.1} from the rest ({})",
            row["output"].as_f64().unwrap_or(0.0),
            e["expected_value"].as_f64().unwrap_or(0.0),
            top.join(" + "),
            row["rest"].as_f64().unwrap_or(0.0),
            e["method"].as_str().unwrap_or("?")
        );
    }
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
    // Traffic: 2,000 hours spread over the year; from the 1,000th a heat
    // wave (warmer, drier hours than the model ever saw). The riders of each
    // hour come back as feedback.
    let all: Vec<&str> = BIKES.lines().skip(1).collect();
    let mut sent = 0usize;
    let mut shown = false;
    for chunk in (0..2000usize).collect::<Vec<_>>().chunks(20) {
        let mut rows = Vec::new();
        let mut truth = Vec::new();
        for &i in chunk {
            let line = all[(i * 7919) % all.len()];
            let mut rec = serde_json::Map::new();
            for (k, v) in header.iter().zip(line.split(',')) {
                let mut v = v
                    .parse::<i64>()
                    .map(Value::from)
                    .or_else(|_| v.parse::<f64>().map(Value::from))
                    .unwrap_or_else(|_| Value::from(v));
                if i >= 1000 {
                    if let ("temp" | "atemp", Some(t)) = (*k, v.as_f64()) {
                        v = json!((t + 0.25).min(1.0));
                    }
                    if let ("humidity", Some(h)) = (*k, v.as_f64()) {
                        v = json!((h - 0.3).max(0.0));
                    }
                }
                if *k == "bikers" {
                    truth.push(v);
                } else {
                    rec.insert(k.to_string(), v);
                }
            }
            rows.push(Value::Object(rec));
        }
        let (id, _) = post(
            "/api/v1/deployments/bikes/predict",
            json!({ "records": rows }),
        )
        .await?;
        post(
            "/api/v1/deployments/bikes/feedback",
            json!({ "request_id": id, "labels": truth }),
        )
        .await?;
        sent += rows.len();
        if !shown && sent >= 1000 {
            println!("replayed {sent} ordinary hours; now a heat wave: temp +0.25, humidity −0.3");
            shown = true;
        }
    }
    println!("replayed {sent} hours with their riders fed back");
    let _ = stop_tx.send(());
    server.await.context("The model server failed")??;
    Ok(())
}

type Received = std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>;

/// A webhook receiver on loopback: answers 200 to every POST and keeps the
/// content type and body of each.
async fn webhook_receiver() -> anyhow::Result<(String, Received)> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("Failed to start the demo's webhook receiver")?;
    let url = format!("http://{}/alerts", listener.local_addr()?);
    let got: Received = Default::default();
    let sink = got.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let sink = sink.clone();
            tokio::spawn(async move {
                let mut reader = BufReader::new(stream);
                let (mut length, mut content_type) = (0usize, String::new());
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).await.unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    } else if let Some(v) = lower.strip_prefix("content-type:") {
                        content_type = v.trim().to_string();
                    }
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).await.is_ok() {
                    sink.lock()
                        .expect("webhook log")
                        .push((content_type, String::from_utf8_lossy(&body).into_owned()));
                }
                let _ = reader
                    .into_inner()
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    Ok((url, got))
}

/// The latest run of the `bikes` pipeline, as a short id.
async fn last_run(project: &Project) -> anyhow::Result<String> {
    project
        .meta
        .pipeline_runs(Some("bikes"), 1)
        .await?
        .first()
        .map(|r| r.id[..12].to_string())
        .context("The pipeline run was not recorded")
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
