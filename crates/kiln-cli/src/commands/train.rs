//! `kiln train`, `kiln predict`, `kiln evaluate`, `kiln runs …`

use std::time::Duration;

use anyhow::{Context, bail};
use kiln_ml::Task;
use kiln_ml::automl::{AutoMlOptions, Event, Trial};
use kiln_ml::evaluate::{Evaluation, evaluate, parse_threshold_objective};
use kiln_ml::metrics::Metric;
use kiln_project::Project;
use kiln_project::training::write_predictions;

use crate::ExitStatus;
use crate::cli::{EvaluateArgs, PredictArgs, TrainArgs};
use crate::output::{Printer, table, thousands};

/// `30s`, `2m`, `1h`, `1m30s` or plain seconds.
pub fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    kiln_core::parse_duration(s).map_err(|e| anyhow::anyhow!(e))
}

fn parse_task(s: &str) -> anyhow::Result<Option<Task>> {
    Ok(match s {
        "auto" => None,
        "binary" => Some(Task::Binary),
        "multiclass" => Some(Task::Multiclass),
        "regression" => Some(Task::Regression),
        other => {
            bail!("Invalid task `{other}`\n  hint: use auto, binary, multiclass or regression")
        }
    })
}

fn fmt_score(v: f64) -> String {
    if v.abs() >= 1000.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.4}")
    }
}

pub async fn train(project: &Project, args: TrainArgs, p: Printer) -> anyhow::Result<ExitStatus> {
    if let Some(n) = args.threads {
        // Fails only if a pool was already built, which nothing does before.
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build_global();
    }
    if args.trials == Some(0) {
        bail!(
            "Invalid --trials 0: a run needs at least one trial\n  hint: give --trials 1 or more"
        );
    }
    // Refuse an output nobody can write before training, not after the
    // run is recorded.
    if let Some(path) = &args.output {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        if !dir.is_dir() {
            bail!(
                "Cannot write the model file `{}`: the folder `{}` does not exist\n  hint: create the folder first, or pass another --output",
                path.display(),
                dir.display()
            );
        }
    }
    let opts = AutoMlOptions {
        task: parse_task(&args.task)?,
        metric: args
            .metric
            .as_deref()
            .map(str::parse::<Metric>)
            .transpose()
            .map_err(|e| anyhow::anyhow!("{e}"))?,
        budget: parse_duration(&args.budget)?,
        max_trials: args.trials,
        seed: args.seed,
        split: args.split.parse().map_err(kiln_project::ProjectError::Ml)?,
        test_fraction: args.test_fraction,
        positive: args.positive.clone(),
        exclude: args.exclude.clone(),
        ensemble: !args.no_ensemble,
    };
    let live = !p.json && !p.quiet;
    let verbose = p.verbose;
    let budget_text = match opts.max_trials {
        Some(n) => format!("{n} trials"),
        None => format!("budget {}", args.budget),
    };
    let dataset = args.dataset.clone();
    let target = args.target.clone();
    let mut on_event = move |e: Event<'_>| {
        if !live {
            return;
        }
        match e {
            Event::Started {
                task,
                metric,
                train_rows,
                test_rows,
                validation,
                features,
            } => {
                eprintln!(
                    "Training a {task} model for `{target}` on {dataset}: {} training rows, {} test rows held out, {features} features",
                    thousands(train_rows as i64),
                    thousands(test_rows as i64),
                );
                eprintln!(
                    "Choosing by {} ({} is better) with {validation}, {budget_text}",
                    metric.name(),
                    if metric.higher_is_better() {
                        "higher"
                    } else {
                        "lower"
                    },
                );
                eprintln!(
                    "{:>6}  {:>10}  {:>10}  {:>7}  config",
                    "trial", "score", "best", "time"
                );
            }
            Event::Trial { trial, best } => {
                let improved = trial.id == best.id;
                // The defaults and every improvement; -v shows every trial.
                if !(verbose || improved || trial.stage == "portfolio") {
                    return;
                }
                let mark = if improved { "*" } else { " " };
                eprintln!(
                    "{:>6}  {:>10}  {:>9}{mark}  {:>6.1}s  {}{}",
                    trial.id,
                    fmt_score(trial.score),
                    fmt_score(best.score),
                    trial.seconds,
                    trial.config,
                    if trial.truncated {
                        " (cut short by the budget)"
                    } else {
                        ""
                    }
                );
            }
            Event::Ensemble {
                score,
                members,
                kept,
            } => {
                if kept {
                    eprintln!("Ensemble of {members} models: {} (kept)", fmt_score(score));
                } else if members > 1 {
                    eprintln!(
                        "Ensemble of {members} models: {} (not kept: no better than the best, or no time left to refit it)",
                        fmt_score(score)
                    );
                }
            }
            Event::Refit => {}
        }
    };
    let trained = project
        .train(
            &args.dataset,
            &args.target,
            &opts,
            args.experiment.as_deref(),
            &mut on_event,
        )
        .await?;
    let out = &trained.outcome;
    let model = &out.model;
    if let Some(path) = &args.output {
        model
            .save(path)
            .map_err(kiln_project::ProjectError::Ml)
            .with_context(|| format!("Failed to write the model file `{}`", path.display()))?;
    }
    let run_short = &trained.run.id[..12];
    if p.json {
        p.json(&serde_json::json!({
            "model": trained.run.id,
            "run": trained.run.id,
            "model_object": trained.model_object,
            "dataset": format!("{}@{}", trained.version.dataset, trained.version.id),
            "task": model.task(),
            "target": model.target.name,
            "classes": model.target.classes,
            "metric": out.metric.name(),
            "validation_score": model.training.validation_score,
            "test_metrics": out.test_metrics,
            "trials": out.leaderboard.len(),
            "reproducible": out.reproducible,
            "elapsed_seconds": out.elapsed.as_secs_f64(),
            "chosen": model.training.config,
            "leaderboard": out.leaderboard,
            "model_file": args.output,
        }));
        return Ok(ExitStatus::Success);
    }
    print_leaderboard(&out.leaderboard, out.metric);
    if !out.test_metrics.is_empty() {
        let mut t = table(&["test metric", "value"]);
        for (k, v) in &out.test_metrics {
            t.add_row(vec![k.clone(), fmt_score(*v)]);
        }
        println!("{t}");
    }
    let tested = if model.training.test_rows == 0 {
        "no test rows held out (--test-fraction 0): evaluate it on your test table".to_string()
    } else {
        format!(
            "tested on {} held-out rows",
            thousands(model.training.test_rows as i64)
        )
    };
    p.note(format!(
        "Chose {} after {} trials in {:.1}s; {tested}.",
        model.training.config,
        out.leaderboard.len(),
        out.elapsed.as_secs_f64(),
    ));
    if !out.reproducible {
        p.note("A trial was cut short by the budget: rerun with a larger --budget, or with --trials, to reproduce it exactly.");
    } else {
        p.note(format!(
            "Reproduce byte for byte with --seed {} --trials {}.",
            args.seed,
            out.leaderboard.len()
        ));
    }
    p.note(format!(
        "Model: {run_short} (run {run_short}). Score with `kiln predict {run_short} DATA -o OUT`, check with `kiln evaluate {run_short} {} --holdout`.",
        args.dataset
    ));
    Ok(ExitStatus::Success)
}

/// Says which columns had categories unseen in training.
fn unseen_notes(notes: &[kiln_ml::preprocess::TransformNote], p: Printer) {
    for n in notes {
        p.note(format!(
            "note: {} rows have a `{}` value not seen in training; it was treated as missing",
            thousands(n.unseen_categories as i64),
            n.column
        ));
    }
}

fn print_leaderboard(board: &[Trial], metric: Metric) {
    let mut sorted: Vec<&Trial> = board.iter().collect();
    sorted.sort_by(|a, b| {
        let o = a.score.total_cmp(&b.score);
        if metric.higher_is_better() {
            o.reverse()
        } else {
            o
        }
    });
    let mut t = table(&[
        "rank",
        "trial",
        metric.name(),
        "rounds",
        "seconds",
        "config",
    ]);
    for (i, tr) in sorted.iter().take(10).enumerate() {
        t.add_row(vec![
            (i + 1).to_string(),
            format!("#{}", tr.id),
            fmt_score(tr.score),
            tr.rounds.map_or_else(String::new, |r| r.to_string()),
            format!("{:.1}", tr.seconds),
            tr.config.clone(),
        ]);
    }
    println!("{t}");
}

pub async fn predict(
    project: &Project,
    args: PredictArgs,
    p: Printer,
) -> anyhow::Result<ExitStatus> {
    if let Some(model) = project.load_imported(&args.model).await? {
        // An ONNX, LightGBM or XGBoost model: evaluated by kiln, on the
        // columns it reads.
        let (batches, label) = project.read_table(&args.data).await?;
        let x = kiln_project::training::imported_input(&model, &batches)?;
        let predictions = tokio::task::block_in_place(|| model.predict(&x))
            .map_err(kiln_project::ProjectError::Ml)?;
        let rows = write_predictions(
            model.classes(),
            &predictions,
            &batches,
            &args.keep,
            &args.output,
        )?;
        if p.json {
            p.json(&serde_json::json!({ "rows": rows, "output": args.output, "input": label }));
        } else {
            p.note(format!(
                "Wrote {} predictions of the {} model to {}",
                thousands(rows as i64),
                model.format(),
                args.output.display()
            ));
        }
        return Ok(ExitStatus::Success);
    }
    let model = project.load_model(&args.model).await?;
    let (batches, label) = project.read_table(&args.data).await?;
    let scored = tokio::task::block_in_place(|| model.predict(&batches))
        .map_err(kiln_project::ProjectError::Ml)?;
    let rows = write_predictions(
        &model.target.classes,
        &scored.predictions,
        &batches,
        &args.keep,
        &args.output,
    )?;
    if p.json {
        p.json(&serde_json::json!({
            "rows": rows,
            "output": args.output,
            "input": label,
            "unseen_categories": scored.notes,
        }));
    } else {
        unseen_notes(&scored.notes, p);
        p.note(format!(
            "Wrote {} predictions of `{}` to {}",
            thousands(rows as i64),
            model.target.name,
            args.output.display()
        ));
    }
    Ok(ExitStatus::Success)
}

pub async fn evaluate_cmd(
    project: &Project,
    args: EvaluateArgs,
    p: Printer,
) -> anyhow::Result<ExitStatus> {
    let model = project.load_model(&args.model).await?;
    let (batches, label) = project.read_table(&args.data).await?;
    let objective = args
        .threshold
        .as_deref()
        .map(parse_threshold_objective)
        .transpose()
        .map_err(kiln_project::ProjectError::Ml)?;
    let ev = tokio::task::block_in_place(|| evaluate(&model, &batches, args.holdout, objective))
        .map_err(kiln_project::ProjectError::Ml)?;
    if p.json {
        p.json(&serde_json::json!({ "data": label, "evaluation": ev, "metrics": ev.metrics }));
        return Ok(ExitStatus::Success);
    }
    print_evaluation(&ev, &label, args.holdout, p);
    Ok(ExitStatus::Success)
}

fn print_evaluation(ev: &Evaluation, label: &str, holdout: bool, p: Printer) {
    p.note(format!(
        "{} rows of {label}{}{}",
        thousands(ev.rows as i64),
        if holdout {
            " (the training holdout)"
        } else {
            ""
        },
        if ev.unlabelled > 0 {
            format!(
                "; {} without a label skipped",
                thousands(ev.unlabelled as i64)
            )
        } else {
            String::new()
        }
    ));
    let mut t = table(&["metric", "value"]);
    for (k, v) in &ev.metrics {
        t.add_row(vec![k.clone(), fmt_score(*v)]);
    }
    println!("{t}");
    if let Some(cm) = &ev.confusion {
        let mut header = vec!["true \\ predicted".to_string()];
        header.extend(ev.classes.iter().cloned());
        let refs: Vec<&str> = header.iter().map(String::as_str).collect();
        let mut t = table(&refs);
        for (i, c) in ev.classes.iter().enumerate() {
            let mut row = vec![c.clone()];
            row.extend(
                (0..cm.n_classes).map(|j| thousands(cm.counts[i * cm.n_classes + j] as i64)),
            );
            t.add_row(row);
        }
        println!("{t}");
    }
    if !ev.calibration.is_empty() {
        let mut t = table(&["probability", "rows", "mean predicted", "observed rate"]);
        for b in &ev.calibration {
            t.add_row(vec![
                format!("{:.1}–{:.1}", b.lower, b.upper),
                thousands(b.count as i64),
                format!("{:.3}", b.mean_predicted),
                format!("{:.3}", b.fraction_positive),
            ]);
        }
        println!("{t}");
    }
    if let Some(c) = &ev.threshold {
        p.note(format!(
            "Threshold {:.4}: precision {:.3}, recall {:.3}, F1 {:.3}{}",
            c.threshold,
            c.precision,
            c.recall,
            c.f1,
            c.cost.map(|c| format!(", cost {c:.1}")).unwrap_or_default()
        ));
    }
    unseen_notes(&ev.notes, p);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_accept_units_and_plain_seconds() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("30s5").is_err());
    }
}
