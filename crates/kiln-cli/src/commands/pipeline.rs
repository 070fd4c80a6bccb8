//! `kiln gate`, `kiln run`, `kiln pipelines`, `kiln approve`.

use std::sync::Arc;

use kiln_pipeline::gate::{self, GateSpec, Outcome};
use kiln_pipeline::junit;
use kiln_project::Project;

use crate::ExitStatus;
use crate::cli::{GateArgs, PipelinesCommand, RunArgs, WorkerArgs};
use crate::output::Printer;

pub async fn gate(
    project: &Project,
    args: GateArgs,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    // A bad requirement is refused before anything is read.
    kiln_pipeline::gate::parse_requirement(&args.require)?;
    if let Some(path) = &args.junit {
        check_writable(path)?;
    }
    let report = gate::evaluate(
        project,
        &GateSpec {
            model: args.model.clone(),
            require: args.require.clone(),
            data: args.data.clone(),
        },
    )
    .await?;
    if let Some(path) = &args.junit {
        let seconds = report.duration_ms as f64 / 1e3 / report.clauses.len().max(1) as f64;
        let cases: Vec<junit::Case> = report
            .clauses
            .iter()
            .map(|c| junit::Case {
                name: c.clause.clone(),
                classname: format!("kiln.gate.{}", report.model),
                seconds,
                outcome: match c.outcome {
                    Outcome::Passed => junit::CaseOutcome::Passed,
                    Outcome::Failed => junit::CaseOutcome::Failed {
                        message: c.reason.clone().unwrap_or_default(),
                        detail: format!("{}\n{}", c.clause, c.values),
                    },
                    Outcome::Skipped => junit::CaseOutcome::Skipped {
                        message: c.reason.clone().unwrap_or_default(),
                    },
                },
            })
            .collect();
        junit::write(
            path,
            &junit::render(&format!("kiln gate {}", report.model), &cases),
        )?;
    }
    if printer.json {
        printer.json(&report);
    } else {
        let mut t = crate::output::table(&["", "clause", "values", "why"]);
        for c in &report.clauses {
            let mark = match c.outcome {
                Outcome::Passed => "pass",
                Outcome::Failed => "FAIL",
                Outcome::Skipped => "skip",
            };
            t.add_row(vec![
                mark.to_string(),
                c.clause.clone(),
                c.values.clone(),
                c.reason.clone().unwrap_or_default(),
            ]);
        }
        println!("{t}");
        if printer.verbose {
            let mut m = crate::output::table(&["metric", "value", "recorded as", "from"]);
            for r in &report.metrics {
                m.add_row(vec![
                    r.name.clone(),
                    r.value
                        .map(kiln_pipeline::expr::format_number)
                        .unwrap_or_else(|| "-".into()),
                    r.key.clone().unwrap_or_else(|| "-".into()),
                    r.source.clone(),
                ]);
            }
            println!("{m}");
        }
        let failed = report
            .clauses
            .iter()
            .filter(|c| c.outcome == Outcome::Failed)
            .count();
        printer.note(if report.passed {
            format!("{} passed the gate", report.model)
        } else {
            format!(
                "{} failed the gate: {failed} of {} clauses",
                report.model,
                report.clauses.len()
            )
        });
        if let Some(path) = &args.junit {
            printer.note(format!("wrote {}", path.display()));
        }
    }
    Ok(if report.passed {
        ExitStatus::Success
    } else {
        ExitStatus::Failure
    })
}

/// Refuses an output path whose folder does not exist before any work.
fn check_writable(path: &std::path::Path) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    anyhow::ensure!(
        dir.is_dir(),
        "Cannot write `{}`: the folder `{}` does not exist",
        path.display(),
        dir.display()
    );
    Ok(())
}

pub async fn run(
    project: Arc<Project>,
    args: RunArgs,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    use kiln_pipeline::run::{self as runner, Event, RunOptions};
    let name = match &args.pipeline {
        Some(n) => n.clone(),
        None => runner::only_pipeline(&project)?,
    };
    let mut opts = RunOptions {
        params: args.params.clone(),
        force: args.force,
        remote: args.remote,
        ..RunOptions::default()
    };
    if let Some(j) = args.jobs {
        anyhow::ensure!(
            j > 0,
            "Invalid --jobs 0: at least one step must run at a time"
        );
        opts.jobs = j;
    }
    if let Some(path) = &args.junit {
        check_writable(path)?;
    }
    if args.dry_run {
        let plan = runner::plan(&project, &name, &opts).await?;
        if printer.json {
            printer.json(&plan);
        } else {
            let mut t = crate::output::table(&["step", "kind", "needs", "will", "does"]);
            for p in &plan {
                t.add_row(vec![
                    p.step.clone(),
                    p.kind.clone(),
                    p.needs.join(", "),
                    p.will.clone(),
                    shorten(&p.does, 70),
                ]);
            }
            println!("{t}");
            printer.note(format!("dry run of `{name}`: nothing was run or recorded"));
        }
        return Ok(ExitStatus::Success);
    }
    let live = !printer.json && !printer.quiet;
    let started = std::time::Instant::now();
    let observer: runner::Observer = Arc::new(move |e: Event<'_>| {
        if !live {
            return;
        }
        match e {
            Event::Started { run, order } => eprintln!(
                "Running pipeline `{}` (run {}): {} steps",
                run.pipeline,
                &run.id[..12],
                order.len()
            ),
            Event::StepStarted { step, attempt } if attempt > 1 => {
                eprintln!("  retry    {step} (attempt {attempt})")
            }
            Event::StepStarted { .. } => {}
            Event::Retrying { step, error, delay } => eprintln!(
                "  failed   {step}: {}; retrying in {}",
                error.lines().next().unwrap_or_default(),
                runner::human(delay)
            ),
            Event::Waiting { step } => eprintln!(
                "  waiting  {step}: for `kiln approve RUN {step}` (RUN from `kiln pipelines runs`)"
            ),
            Event::StepFinished { step } => {
                let took = match (step.started_at, step.finished_at) {
                    (Some(a), Some(b)) => {
                        runner::human(std::time::Duration::from_millis((b - a).max(0) as u64))
                    }
                    _ => String::new(),
                };
                let why = step
                    .error
                    .as_deref()
                    .map(|e| format!("  {}", e.lines().next().unwrap_or_default()))
                    .unwrap_or_default();
                eprintln!(
                    "  {:<8} {:<20} {took:>7}{why}",
                    match step.status.as_str() {
                        "succeeded" => "ok",
                        "failed" => "FAILED",
                        other => other,
                    },
                    step.step
                );
            }
        }
    });
    let cancel_rx = cancel_on_ctrl_c(printer);
    let outcome = runner::run(project.clone(), &name, &opts, observer, cancel_rx).await?;
    if let Some(path) = &args.junit {
        let cases = runner::junit_cases(&outcome);
        junit::write(path, &junit::render(&format!("kiln run {name}"), &cases))?;
    }
    if printer.json {
        printer.json(&outcome);
    } else {
        let counts = |st: &str| outcome.steps.iter().filter(|s| s.status == st).count();
        printer.note(format!(
            "Pipeline `{name}` {} in {}: {} ran, {} cached, {} failed, {} skipped{}",
            outcome.run.status,
            runner::human(started.elapsed()),
            counts("succeeded"),
            counts("cached"),
            counts("failed"),
            counts("skipped"),
            if counts("cancelled") > 0 {
                format!(", {} cancelled", counts("cancelled"))
            } else {
                String::new()
            }
        ));
        for s in outcome.steps.iter().filter(|s| s.status == "failed") {
            if let Some(e) = &s.error {
                printer.note(format!("step `{}`: {e}", s.step));
            }
        }
        printer.note(format!(
            "logs: kiln pipelines logs {} [STEP]",
            &outcome.run.id[..12]
        ));
    }
    Ok(if outcome.run.status == "succeeded" {
        ExitStatus::Success
    } else {
        ExitStatus::Failure
    })
}

fn shorten(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    }
}

fn when(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

fn took(a: Option<i64>, b: Option<i64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) => {
            kiln_pipeline::run::human(std::time::Duration::from_millis((b - a).max(0) as u64))
        }
        _ => "-".into(),
    }
}

pub async fn pipelines(
    project: &Project,
    cmd: PipelinesCommand,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    // A run whose process was killed is ended before it is shown.
    kiln_pipeline::run::sweep_abandoned(project).await?;
    match cmd {
        PipelinesCommand::Ls => {
            let mut rows = Vec::new();
            for (name, p) in &project.config.pipelines {
                let last = project
                    .meta
                    .pipeline_runs(Some(name), 1)
                    .await?
                    .into_iter()
                    .next();
                rows.push(serde_json::json!({
                    "pipeline": name,
                    "description": p.description,
                    "steps": p.steps.len(),
                    "schedule": p.schedule.as_ref().map(|s| s.value.clone()),
                    "triggers": p.triggers.iter().map(|t| &t.value).collect::<Vec<_>>(),
                    "last_run": last,
                }));
            }
            if printer.json {
                printer.json(&rows);
            } else {
                let mut t = crate::output::table(&[
                    "pipeline", "steps", "schedule", "triggers", "last run", "status",
                ]);
                for (name, p) in &project.config.pipelines {
                    let r = rows
                        .iter()
                        .find(|r| r["pipeline"] == name.as_str())
                        .unwrap();
                    let triggers: Vec<String> = p
                        .triggers
                        .iter()
                        .map(|t| match (&t.value.dataset, &t.value.alert) {
                            (Some(d), _) => format!("dataset {d}"),
                            (_, Some(a)) => format!("alert {a}"),
                            _ => String::new(),
                        })
                        .collect();
                    t.add_row(vec![
                        name.clone(),
                        p.steps.len().to_string(),
                        p.schedule
                            .as_ref()
                            .map(|s| s.value.clone())
                            .unwrap_or_default(),
                        triggers.join(", "),
                        r["last_run"]["created_at"]
                            .as_i64()
                            .map(when)
                            .unwrap_or_default(),
                        r["last_run"]["status"].as_str().unwrap_or("").to_string(),
                    ]);
                }
                println!("{t}");
            }
        }
        PipelinesCommand::Trigger { pipeline, reason } => {
            kiln_pipeline::run::pipeline(project, &pipeline)?;
            let t = project
                .meta
                .add_pipeline_trigger(&pipeline, "manual", &reason)
                .await?;
            if printer.json {
                printer.json(&t);
            } else {
                printer.note(format!(
                    "trigger {} pending: `kiln server` runs `{pipeline}` when it next looks",
                    &t.id[..12]
                ));
            }
        }
        PipelinesCommand::Kinds => {
            let kinds: Vec<serde_json::Value> = kiln_project::pipelines::KINDS
                .iter()
                .map(|k| {
                    serde_json::json!({
                        "kind": k.name, "summary": k.summary, "required": k.required,
                        "optional": k.optional, "outputs": k.outputs, "cached": k.cached,
                    })
                })
                .collect();
            if printer.json {
                printer.json(&kinds);
            } else {
                let mut t = crate::output::table(&[
                    "kind",
                    "does",
                    "with (required)",
                    "with (optional)",
                    "outputs",
                ]);
                for k in kiln_project::pipelines::KINDS {
                    t.add_row(vec![
                        k.name.to_string(),
                        k.summary.to_string(),
                        k.required.join(", "),
                        k.optional.join(", "),
                        if k.outputs.is_empty() {
                            "any".into()
                        } else {
                            k.outputs.join(", ")
                        },
                    ]);
                }
                println!("{t}");
            }
        }
        PipelinesCommand::Runs { pipeline, limit } => {
            let runs = project
                .meta
                .pipeline_runs(pipeline.as_deref(), limit)
                .await?;
            if printer.json {
                printer.json(&runs);
            } else {
                let mut t = crate::output::table(&[
                    "run", "pipeline", "status", "cause", "started", "took", "error",
                ]);
                for r in &runs {
                    t.add_row(vec![
                        r.id[..12].to_string(),
                        r.pipeline.clone(),
                        r.status.clone(),
                        r.cause.clone(),
                        when(r.created_at),
                        took(Some(r.created_at), r.finished_at),
                        shorten(r.error.as_deref().unwrap_or(""), 60),
                    ]);
                }
                println!("{t}");
            }
        }
        PipelinesCommand::Show { target } => {
            if let Some(p) = project.config.pipelines.get(&target) {
                let order = p.order().expect("validated");
                let deps = p.dependencies();
                if printer.json {
                    printer.json(
                        &serde_json::json!({ "pipeline": target, "definition": p, "order": order }),
                    );
                } else {
                    if let Some(d) = &p.description {
                        printer.note(d);
                    }
                    if let Some(s) = &p.schedule {
                        let described = kiln_project::pipelines::parse_schedule(&s.value)
                            .map(|c| c.describe())
                            .unwrap_or_default();
                        printer.note(format!("schedule: {} (UTC; {described})", s.value));
                    }
                    let mut t = crate::output::table(&["step", "kind", "needs", "does", "cached"]);
                    for step in order {
                        let s = &p.steps[step].value;
                        t.add_row(vec![
                            step.to_string(),
                            s.kind_name().to_string(),
                            deps[step].iter().copied().collect::<Vec<_>>().join(", "),
                            shorten(
                                &s.run.clone().unwrap_or_else(|| {
                                    serde_json::to_string(&s.args).unwrap_or_default()
                                }),
                                70,
                            ),
                            if s.cached() { "yes" } else { "no" }.into(),
                        ]);
                    }
                    println!("{t}");
                }
                return Ok(ExitStatus::Success);
            }
            let run = project.meta.pipeline_run(&target).await.map_err(|e| match e {
                kiln_store::StoreError::NotFound { .. } => anyhow::anyhow!(
                    "No pipeline or pipeline run `{target}`\n  hint: pipelines: {}; runs: `kiln pipelines runs`",
                    project.config.pipelines.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
                other => other.into(),
            })?;
            let steps = project.meta.step_runs(&run.id).await?;
            if printer.json {
                printer.json(&serde_json::json!({ "run": run, "steps": steps }));
            } else {
                printer.note(format!(
                    "run {} of `{}`: {} ({}), started {} by {}{}",
                    &run.id[..12],
                    run.pipeline,
                    run.status,
                    run.cause,
                    when(run.created_at),
                    run.author,
                    run.source_commit
                        .as_ref()
                        .map(|c| format!(", commit {}", &c[..c.len().min(12)]))
                        .unwrap_or_default()
                ));
                let mut t = crate::output::table(&[
                    "step", "kind", "status", "tries", "took", "outputs", "error",
                ]);
                for s in &steps {
                    let outputs = s
                        .outputs
                        .as_ref()
                        .and_then(|o| o.as_object())
                        .map(|o| {
                            o.iter()
                                .filter(|(k, _)| k.as_str() != "clauses")
                                .map(|(k, v)| {
                                    format!(
                                        "{k}={}",
                                        v.as_str()
                                            .map(str::to_string)
                                            .unwrap_or_else(|| v.to_string())
                                    )
                                })
                                .collect::<Vec<_>>()
                                .join(" ")
                        })
                        .unwrap_or_default();
                    t.add_row(vec![
                        s.step.clone(),
                        s.kind.clone(),
                        match &s.cached_from {
                            Some(from) => format!("cached ({})", &from[..12.min(from.len())]),
                            None => s.status.clone(),
                        },
                        s.attempts.to_string(),
                        took(s.started_at, s.finished_at),
                        shorten(&outputs, 60),
                        shorten(
                            s.error
                                .as_deref()
                                .unwrap_or("")
                                .lines()
                                .next()
                                .unwrap_or(""),
                            60,
                        ),
                    ]);
                }
                println!("{t}");
            }
        }
        PipelinesCommand::Logs { run, step } => {
            let run = project.meta.pipeline_run(&run).await?;
            let steps = project.meta.step_runs(&run.id).await?;
            if let Some(name) = &step
                && !steps.iter().any(|s| &s.step == name)
            {
                anyhow::bail!(
                    "Run {} has no step `{name}`\n  hint: its steps: {}",
                    &run.id[..12],
                    steps
                        .iter()
                        .map(|s| s.step.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            for s in steps
                .iter()
                .filter(|s| step.as_ref().is_none_or(|n| n == &s.step))
            {
                let text = match &s.log_object {
                    Some(hex) => {
                        let hash = kiln_core::ContentHash::parse(hex)?;
                        String::from_utf8_lossy(&project.objects.get_bytes(&hash).await?)
                            .into_owned()
                    }
                    // A step that runs now writes its log here.
                    None => std::fs::read_to_string(
                        kiln_pipeline::run::log_dir(project, &run.id)
                            .join(format!("{}.log", s.step)),
                    )
                    .unwrap_or_default(),
                };
                if step.is_none() {
                    println!("=== {} ({})", s.step, s.status);
                }
                print!("{text}");
                if !text.is_empty() && !text.ends_with('\n') {
                    println!();
                }
            }
        }
    }
    Ok(ExitStatus::Success)
}

pub async fn approve(
    project: &Project,
    run: &str,
    step: &str,
    reject: bool,
    message: Option<&str>,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    let run = project.meta.pipeline_run(run).await?;
    let decision = if reject { "rejected" } else { "approved" };
    if !project
        .meta
        .decide_step(&run.id, step, decision, message)
        .await?
    {
        anyhow::bail!(
            "Nothing waits for approval at step `{step}` of run {}\n  hint: `kiln pipelines show {}` shows its steps; an approval step waits while its status is running",
            &run.id[..12],
            &run.id[..12]
        );
    }
    printer.note(format!("{decision} step `{step}` of run {}", &run.id[..12]));
    Ok(ExitStatus::Success)
}

pub async fn worker(
    project: Arc<Project>,
    args: WorkerArgs,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    use kiln_pipeline::worker::{WorkerEvent, WorkerOptions};
    let duration = |flag: &str, v: &str| -> anyhow::Result<std::time::Duration> {
        let d = kiln_core::parse_duration(v).map_err(|e| anyhow::anyhow!("Invalid {flag}: {e}"))?;
        anyhow::ensure!(
            !d.is_zero(),
            "Invalid {flag} 0: give a duration such as `30s`"
        );
        Ok(d)
    };
    let lease = duration("--lease", &args.lease)?;
    let poll = duration("--poll", &args.poll)?;
    anyhow::ensure!(
        lease >= std::time::Duration::from_millis(300),
        "Invalid --lease {}: at least 300ms, so the heartbeat (a third of it) keeps up",
        args.lease
    );
    let name = args.name.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "worker".into());
        format!("{host}-{}", std::process::id())
    });
    let opts = WorkerOptions {
        name: name.clone(),
        lease,
        poll,
    };
    let quiet = printer.quiet;
    let label = name.clone();
    let on_event: Arc<dyn Fn(WorkerEvent<'_>) + Send + Sync> = Arc::new(move |e| {
        if quiet {
            return;
        }
        match e {
            WorkerEvent::Claimed { step, waited_ms } => eprintln!(
                "kiln worker {label}: running {}/{} (queued {waited_ms} ms)",
                &step.run_id[..12],
                step.step
            ),
            WorkerEvent::Finished { step, kept } => eprintln!(
                "kiln worker {label}: {}/{} {}{}",
                &step.run_id[..12],
                step.step,
                step.status,
                if kept {
                    ""
                } else {
                    " (dropped: another worker holds it now)"
                }
            ),
            WorkerEvent::Requeued { steps } => {
                eprintln!("kiln worker {label}: requeued {steps} step(s) whose worker stopped")
            }
            WorkerEvent::StoreError { error, retry_in } => eprintln!(
                "kiln worker {label}: the store failed ({error}); trying again in {}",
                kiln_pipeline::run::human(retry_in)
            ),
            WorkerEvent::Lost { step } => eprintln!(
                "kiln worker {label}: {}/{} is no longer mine; stopped it",
                &step.run_id[..12],
                step.step
            ),
        }
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        kiln_server::shutdown().await;
        let _ = stop_tx.send(true);
    });
    printer.note(format!(
        "kiln worker {name}: waiting for steps (lease {}, poll {})",
        args.lease, args.poll
    ));
    kiln_pipeline::worker::work(project, &opts, on_event, stop_rx).await?;
    printer.note(format!("kiln worker {name}: stopped"));
    Ok(ExitStatus::Success)
}

pub async fn reproduce(
    project: Arc<Project>,
    run: &str,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    let live = !printer.json && !printer.quiet;
    let observer: kiln_pipeline::run::Observer = Arc::new(move |e| {
        if let (true, kiln_pipeline::run::Event::Started { run, order }) = (live, e) {
            eprintln!(
                "Reproducing as run {} ({} steps, nothing cached)",
                &run.id[..12],
                order.len()
            );
        }
    });
    let cancel_rx = cancel_on_ctrl_c(printer);
    let r = kiln_pipeline::reproduce::reproduce(project, run, observer, cancel_rx).await?;
    if printer.json {
        printer.json(&r);
    } else {
        let mut t = crate::output::table(&[
            "step",
            "kind",
            "outputs",
            "what differs",
            "inputs changed since",
        ]);
        for s in &r.steps {
            t.add_row(vec![
                s.step.clone(),
                s.kind.clone(),
                s.verdict.clone(),
                s.differences.join("; "),
                s.changed_inputs.join("; "),
            ]);
        }
        println!("{t}");
        printer.note(if r.identical {
            format!(
                "run {} reproduced: every output byte-identical (new run {})",
                &r.of[..12],
                &r.run.run.id[..12]
            )
        } else {
            format!(
                "run {} did not reproduce: see `what differs` (new run {})",
                &r.of[..12],
                &r.run.run.id[..12]
            )
        });
    }
    Ok(if r.identical {
        ExitStatus::Success
    } else {
        ExitStatus::Failure
    })
}

/// The first Ctrl-C cancels the run (its commands are killed; a built-in
/// step such as training ends its current work first); a second one quits
/// at once.
fn cancel_on_ctrl_c(printer: Printer) -> tokio::sync::watch::Receiver<bool> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = tx.send(true);
            printer.note("cancelling: running commands are stopped (Ctrl-C again to quit now)");
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
    rx
}
