//! `kiln runs`, `kiln experiments`, `kiln gc` and `kiln server`.

use std::collections::BTreeSet;

use anyhow::Context;
use kiln_project::Project;
use kiln_store::{Run, ViewType};

use crate::ExitStatus;
use crate::cli::{ExperimentsCommand, GcArgs, RunsCommand, RunsLsArgs, ServerArgs};
use crate::output::{Printer, bytes, num, table, thousands, when};

fn duration(ms: Option<i64>) -> String {
    match ms {
        None => String::new(),
        Some(ms) if ms < 60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        Some(ms) => format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60),
    }
}

fn metric_text(v: f64) -> String {
    if v.is_nan() { "NaN".into() } else { num(v) }
}

/// Whether a smaller value of this metric is better.
fn lower_is_better(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "loss", "error", "rmse", "mae", "mse", "mape", "deviance", "logloss", "brier", "time",
        "latency",
    ]
    .iter()
    .any(|w| k.contains(w))
}

pub async fn runs(project: &Project, cmd: RunsCommand, p: Printer) -> anyhow::Result<ExitStatus> {
    match cmd {
        RunsCommand::Ls(args) => ls(project, args, p).await,
        RunsCommand::Show { id } => show(project, &id, p).await,
        RunsCommand::Compare { ids } => compare(project, &ids, p).await,
        RunsCommand::Delete { ids } => set_stage(project, &ids, "deleted", p).await,
        RunsCommand::Restore { ids } => set_stage(project, &ids, "active", p).await,
        RunsCommand::History { id, metric } => {
            let run = project.meta.find_run(&id).await?;
            let points = project
                .meta
                .metric_history(&run.id, &metric, 1_000_000, None)
                .await?
                .items;
            if points.is_empty() {
                anyhow::bail!(
                    "Run `{}` has no metric `{metric}`; it has: {}",
                    &run.id[..12],
                    run.metrics
                        .iter()
                        .map(|m| m.key.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            if p.json {
                p.json(&points);
                return Ok(ExitStatus::Success);
            }
            let mut t = table(&["step", "value", "time"]);
            for m in &points {
                t.add_row(vec![
                    m.step.to_string(),
                    metric_text(m.value),
                    when(m.timestamp),
                ]);
            }
            println!("{t}");
            Ok(ExitStatus::Success)
        }
    }
}

async fn ls(project: &Project, args: RunsLsArgs, p: Printer) -> anyhow::Result<ExitStatus> {
    let experiments = match &args.experiment {
        Some(e) => vec![project.meta.find_experiment(e).await?.id],
        None => Vec::new(),
    };
    let view = if args.all {
        ViewType::All
    } else {
        ViewType::ActiveOnly
    };
    let runs = project
        .meta
        .search_runs(
            &experiments,
            args.filter.as_deref().unwrap_or(""),
            &args.order_by,
            view,
            args.limit,
            None,
        )
        .await?
        .items;
    if p.json {
        p.json(&runs);
        return Ok(ExitStatus::Success);
    }
    if runs.is_empty() {
        p.note("No runs yet: `kiln train` records one, and so does MLflow's client pointed at `kiln server`.");
        return Ok(ExitStatus::Success);
    }
    // The metrics most runs have, as columns (at most three); the metric
    // kiln selected models by comes first.
    let mut counts: std::collections::BTreeMap<&str, (usize, bool)> = Default::default();
    for r in &runs {
        let chosen = r.param("metric").map(|m| format!("test_{m}"));
        for m in &r.metrics {
            let e = counts.entry(m.key.as_str()).or_default();
            e.0 += 1;
            e.1 |= chosen.as_deref() == Some(m.key.as_str());
        }
    }
    let mut keys: Vec<(&str, (usize, bool))> = counts.into_iter().collect();
    keys.sort_by(|a, b| b.1.1.cmp(&a.1.1).then(b.1.0.cmp(&a.1.0)).then(a.0.cmp(b.0)));
    let keys: Vec<&str> = keys.into_iter().take(3).map(|(k, _)| k).collect();
    let mut header = vec!["run", "name", "exp", "status", "started", "took"];
    header.extend(keys.iter().copied());
    let mut t = table(&header);
    for r in &runs {
        let mut row = vec![
            r.id[..12].to_string(),
            r.name.clone(),
            r.experiment_id.clone(),
            if r.lifecycle_stage == "deleted" {
                format!("{} (deleted)", r.status)
            } else {
                r.status.clone()
            },
            when(r.start_time)
                .get(5..16)
                .unwrap_or_default()
                .to_string(),
            duration(r.duration_ms()),
        ];
        for k in &keys {
            row.push(r.metric(k).map(metric_text).unwrap_or_default());
        }
        t.add_row(row);
    }
    println!("{t}");
    Ok(ExitStatus::Success)
}

async fn show(project: &Project, id: &str, p: Printer) -> anyhow::Result<ExitStatus> {
    let record = project.meta.run(id).await?;
    let run = project.meta.tracked_run(&record.id).await?;
    let leaderboard: serde_json::Value = match record.artifacts["leaderboard"].as_str() {
        Some(h) => {
            let hash = kiln_core::ContentHash::parse(h).context("Invalid leaderboard object id")?;
            serde_json::from_slice(&project.objects.get_bytes(&hash).await?)
                .context("Invalid leaderboard object")?
        }
        None => serde_json::Value::Null,
    };
    let artifacts = match run.artifact_uri.strip_prefix("mlflow-artifacts:") {
        Some(root) => project.meta.artifacts_under(root.trim_matches('/')).await?,
        None => Vec::new(),
    };
    if p.json {
        let files: Vec<serde_json::Value> = artifacts
            .iter()
            .map(|(path, object, size)| serde_json::json!({ "path": path, "object": object.to_hex(), "size": size }))
            .collect();
        p.json(&serde_json::json!({
            "run": run,
            "model_object": record.model_object,
            "artifacts": files,
            "leaderboard": leaderboard,
        }));
        return Ok(ExitStatus::Success);
    }
    let mut t = table(&["field", "value"]);
    let mut row = |k: &str, v: String| {
        t.add_row(vec![k.to_string(), v]);
    };
    row("run", run.id.clone());
    row("name", run.name.clone());
    row("experiment", run.experiment_id.clone());
    row("kind", run.kind.clone());
    row(
        "status",
        format!("{} ({})", run.status, run.lifecycle_stage),
    );
    row("user", run.user_id.clone());
    row("started", when(run.start_time));
    row("duration", duration(run.duration_ms()));
    if let Some(c) = &run.source_commit {
        let dirty = match run.source_dirty {
            Some(true) => " (uncommitted changes)",
            _ => "",
        };
        row("code", format!("{}{dirty}", &c[..c.len().min(12)]));
    }
    if let Some(c) = &run.command {
        row("command", c.clone());
    }
    for i in &run.inputs {
        let what = if i.source_type == "kiln" {
            let (name, v) = i.source.split_once('@').unwrap_or((&i.source, ""));
            format!("{name}@{}", &v[..v.len().min(12)])
        } else {
            format!("{} ({})", i.name, i.digest)
        };
        row(&format!("input {}", i.role.as_deref().unwrap_or("")), what);
    }
    if let Some(m) = &record.model_object {
        row("model object", m[..12].to_string());
    }
    for kv in &run.params {
        row(&format!("param {}", kv.key), kv.value.clone());
    }
    for m in &run.metrics {
        row(&format!("metric {}", m.key), metric_text(m.value));
    }
    for kv in run.tags.iter().filter(|t| !t.key.starts_with("mlflow.")) {
        row(&format!("tag {}", kv.key), kv.value.clone());
    }
    for (path, _, size) in &artifacts {
        let rel = path
            .split_once("/artifacts/")
            .map_or(path.as_str(), |(_, r)| r);
        row("artifact", format!("{rel} ({})", bytes(*size)));
    }
    println!("{t}");
    if let Some(items) = leaderboard.as_array() {
        let mut t = table(&["trial", "score", "rounds", "seconds", "config"]);
        for it in items {
            t.add_row(vec![
                format!("#{}", it["id"]),
                it["score"].as_f64().map(num).unwrap_or_default(),
                it["rounds"]
                    .as_u64()
                    .map(|r| r.to_string())
                    .unwrap_or_default(),
                it["seconds"]
                    .as_f64()
                    .map(|s| format!("{s:.1}"))
                    .unwrap_or_default(),
                it["config"].as_str().unwrap_or_default().to_string(),
            ]);
        }
        println!("{t}");
    }
    Ok(ExitStatus::Success)
}

async fn compare(project: &Project, ids: &[String], p: Printer) -> anyhow::Result<ExitStatus> {
    let mut runs: Vec<Run> = Vec::new();
    for id in ids {
        runs.push(project.meta.find_run(id).await?);
    }
    let params: BTreeSet<&str> = runs
        .iter()
        .flat_map(|r| r.params.iter().map(|k| k.key.as_str()))
        .collect();
    let metrics: BTreeSet<&str> = runs
        .iter()
        .flat_map(|r| r.metrics.iter().map(|m| m.key.as_str()))
        .collect();
    // The best run per metric: highest, or lowest for losses and errors.
    let best = |key: &str| -> Option<usize> {
        let vals: Vec<(usize, f64)> = runs
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.metric(key).filter(|v| !v.is_nan()).map(|v| (i, v)))
            .collect();
        if vals.len() < 2 {
            return None;
        }
        let lower = lower_is_better(key);
        vals.into_iter()
            .reduce(|a, b| {
                if (lower && b.1 < a.1) || (!lower && b.1 > a.1) {
                    b
                } else {
                    a
                }
            })
            .map(|(i, _)| i)
    };
    if p.json {
        let params: serde_json::Map<String, serde_json::Value> = params
            .iter()
            .map(|k| {
                (
                    k.to_string(),
                    runs.iter().map(|r| r.param(k)).collect::<Vec<_>>().into(),
                )
            })
            .collect();
        let metrics: serde_json::Map<String, serde_json::Value> = metrics
            .iter()
            .map(|k| {
                let values: Vec<Option<f64>> = runs.iter().map(|r| r.metric(k).filter(|v| v.is_finite())).collect();
                (k.to_string(), serde_json::json!({ "values": values, "best": best(k), "lower_is_better": lower_is_better(k) }))
            })
            .collect();
        p.json(&serde_json::json!({
            "runs": runs.iter().map(|r| &r.id).collect::<Vec<_>>(),
            "names": runs.iter().map(|r| &r.name).collect::<Vec<_>>(),
            "params": params,
            "metrics": metrics,
        }));
        return Ok(ExitStatus::Success);
    }
    let mut header = vec!["".to_string()];
    header.extend(runs.iter().map(|r| format!("{} {}", &r.id[..8], r.name)));
    let mut t = table(&header.iter().map(String::as_str).collect::<Vec<_>>());
    for k in &params {
        let values: Vec<Option<&str>> = runs.iter().map(|r| r.param(k)).collect();
        let differ = values.windows(2).any(|w| w[0] != w[1]);
        let mut row = vec![format!("param {k}{}", if differ { " ≠" } else { "" })];
        row.extend(values.iter().map(|v| v.unwrap_or("").to_string()));
        t.add_row(row);
    }
    for k in &metrics {
        let b = best(k);
        let mut row = vec![format!("metric {k}")];
        row.extend(runs.iter().enumerate().map(|(i, r)| match r.metric(k) {
            Some(v) if Some(i) == b => format!("{} *", metric_text(v)),
            Some(v) => metric_text(v),
            None => String::new(),
        }));
        t.add_row(row);
    }
    println!("{t}");
    p.note("* marks the best value of each metric (lowest for losses and errors); ≠ marks parameters that differ.");
    Ok(ExitStatus::Success)
}

async fn set_stage(
    project: &Project,
    ids: &[String],
    stage: &str,
    p: Printer,
) -> anyhow::Result<ExitStatus> {
    let mut done = Vec::new();
    for id in ids {
        let run = project.meta.run(id).await?;
        project.meta.set_run_stage(&run.id, stage).await?;
        done.push(run.id);
    }
    if p.json {
        p.json(&serde_json::json!({ "runs": done, "lifecycle_stage": stage }));
    } else {
        for id in &done {
            println!(
                "{} {}",
                if stage == "deleted" {
                    "Deleted"
                } else {
                    "Restored"
                },
                &id[..12]
            );
        }
        if stage == "deleted" {
            p.note("`kiln runs restore ID` brings a run back; `kiln gc` removes deleted runs for good.");
        }
    }
    Ok(ExitStatus::Success)
}

pub async fn experiments(
    project: &Project,
    cmd: ExperimentsCommand,
    p: Printer,
) -> anyhow::Result<ExitStatus> {
    match cmd {
        ExperimentsCommand::Ls { all } => {
            let view = if all {
                ViewType::All
            } else {
                ViewType::ActiveOnly
            };
            let items = project
                .meta
                .search_experiments(view, None, 10_000, None)
                .await?
                .items;
            if p.json {
                p.json(&items);
                return Ok(ExitStatus::Success);
            }
            let mut t = table(&["id", "name", "runs", "created", "stage"]);
            for e in &items {
                let n = project
                    .meta
                    .search_runs(
                        std::slice::from_ref(&e.id),
                        "",
                        &[],
                        ViewType::ActiveOnly,
                        100_000,
                        None,
                    )
                    .await?
                    .items
                    .len();
                t.add_row(vec![
                    e.id.clone(),
                    e.name.clone(),
                    thousands(n as i64),
                    when(e.creation_time),
                    e.lifecycle_stage.clone(),
                ]);
            }
            println!("{t}");
        }
        ExperimentsCommand::Create { name } => {
            let e = project.meta.create_experiment(&name, None, &[]).await?;
            if p.json {
                p.json(&e);
            } else {
                println!("Created experiment {} ({})", e.name, e.id);
            }
        }
    }
    Ok(ExitStatus::Success)
}

pub async fn gc(project: &Project, args: GcArgs, p: Printer) -> anyhow::Result<ExitStatus> {
    let report = project.gc(args.dry_run, args.grace).await?;
    if p.json {
        p.json(&report);
        return Ok(ExitStatus::Success);
    }
    let verb = if report.dry_run {
        "Would remove"
    } else {
        "Removed"
    };
    println!(
        "{verb} {} deleted run(s) and {} object(s) ({}); {} object(s) live, {} unreferenced but younger than {:?} kept.",
        report.runs_purged.len(),
        thousands(report.objects_removed as i64),
        bytes(report.bytes_removed as i64),
        thousands(report.objects_live as i64),
        report.objects_kept_young,
        args.grace,
    );
    Ok(ExitStatus::Success)
}

pub async fn server(project: Project, args: ServerArgs, p: Printer) -> anyhow::Result<ExitStatus> {
    let addr: std::net::SocketAddr = format!("{}:{}", args.host, args.port)
        .parse()
        .or_else(|_| {
            use std::net::ToSocketAddrs;
            format!("{}:{}", args.host, args.port)
                .to_socket_addrs()
                .ok()
                .and_then(|mut a| a.next())
                .ok_or(())
        })
        .map_err(|_| {
            anyhow::anyhow!(
                "Invalid --host `{}`: give an IP address or a host name",
                args.host
            )
        })?;
    let name = project.meta.project().to_string();
    let scheduler_every = kiln_core::parse_duration(&args.scheduler_every)
        .map_err(|e| anyhow::anyhow!("Invalid --scheduler-every: {e}"))?;
    anyhow::ensure!(
        !scheduler_every.is_zero(),
        "Invalid --scheduler-every 0: give a duration such as `5s`"
    );
    let mut state = kiln_server::AppState::new(project);
    state.scheduler_every = scheduler_every;
    state.remote_steps = args.remote_steps;
    kiln_server::serve(state, addr, |bound| {
        // On stderr, always: scripts and tests wait for this line.
        eprintln!("kiln server listening on http://{bound} (project `{name}`)");
        if !p.quiet {
            eprintln!("  MLflow clients: MLFLOW_TRACKING_URI=http://{bound}");
            eprintln!("  REST API:       http://{bound}/api/v1 (OpenAPI: /api/openapi.json)");
        }
    })
    .await
    .with_context(|| format!("Failed to serve on {addr}"))?;
    Ok(ExitStatus::Success)
}
