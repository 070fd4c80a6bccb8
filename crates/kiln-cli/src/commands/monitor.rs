//! `kiln monitor`: drift between tables, monitors over served traffic, alerts.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use kiln_monitor::drift::DriftReport;
use kiln_monitor::table::{Table, compare_tables};
use kiln_project::{Locations, Project};

use crate::ExitStatus;
use crate::cli::MonitorCommand;
use crate::output::{self, Printer};

pub async fn run(
    cmd: MonitorCommand,
    locations: &Locations,
    p: Printer,
) -> anyhow::Result<ExitStatus> {
    match cmd {
        MonitorCommand::Drift {
            reference,
            current,
            html,
            alpha,
            method,
        } => {
            drift(
                &reference,
                &current,
                html.as_deref(),
                alpha,
                method,
                locations,
                p,
            )
            .await
        }
        MonitorCommand::Metrics => {
            metrics(p);
            Ok(ExitStatus::Success)
        }
        other => {
            let project = super::open(locations).await?;
            let status = match other {
                MonitorCommand::Run { names } => run_monitors(&project, &names, p).await,
                MonitorCommand::Alerts { firing, limit } => {
                    alerts(&project, firing, limit, p).await
                }
                MonitorCommand::Windows { name, limit } => windows(&project, &name, limit, p).await,
                MonitorCommand::Report {
                    deployment,
                    html,
                    last,
                } => report(&project, &deployment, html.as_deref(), last, p).await,
                MonitorCommand::Triggers { limit } => triggers(&project, limit, p).await,
                MonitorCommand::Drift { .. } | MonitorCommand::Metrics => unreachable!(),
            };
            project.meta.close().await;
            status
        }
    }
}

fn metrics(p: Printer) {
    if p.json {
        let v: Vec<serde_json::Value> = kiln_project::monitoring::METRICS
            .iter()
            .map(|(m, d)| serde_json::json!({"metric": m, "description": d}))
            .collect();
        p.json(&v);
        return;
    }
    let mut t = output::table(&["metric", "what it is"]);
    for (m, d) in kiln_project::monitoring::METRICS {
        t.add_row(vec![*m, *d]);
    }
    println!("{t}");
}

pub async fn run_monitors(
    project: &Project,
    names: &[String],
    p: Printer,
) -> anyhow::Result<ExitStatus> {
    let declared = &project.config.monitors;
    if declared.is_empty() {
        bail!(
            "No monitors are declared in kiln.yaml\n  hint: add a `monitors:` section (see `kiln monitor run --help`)"
        );
    }
    for n in names {
        if !declared.contains_key(n) {
            bail!(
                "No monitor `{n}` in kiln.yaml (declared: {})",
                declared.keys().cloned().collect::<Vec<_>>().join(", ")
            );
        }
    }
    // One monitor failing does not keep the others from running.
    let mut runs = Vec::new();
    let mut failed = Vec::new();
    for (name, cfg) in declared {
        if names.is_empty() || names.contains(name) {
            match project.run_monitor(name, cfg).await {
                Ok(r) => runs.push(r),
                Err(e) => {
                    p.note(format!("error: monitor `{name}`: {e}"));
                    failed.push(name.clone());
                }
            }
        }
    }
    let firing = project.meta.alerts(Some("firing"), 1000).await?;
    if p.json {
        p.json(&serde_json::json!({"runs": runs, "firing": firing}));
    } else {
        for r in &runs {
            p.note(format!(
                "{}: {} new window(s) of `{}`, {} updated with labels",
                r.monitor,
                r.new_windows.len(),
                r.deployment,
                r.updated_windows
            ));
            for a in &r.fired {
                p.note(format!(
                    "  ALERT {} [{}] {}: {}",
                    a.rule,
                    a.severity,
                    a.state,
                    a.detail["message"].as_str().unwrap_or_default()
                ));
            }
            for a in &r.resolved {
                p.note(format!(
                    "  resolved: {} ({})",
                    a.rule,
                    a.detail["message"].as_str().unwrap_or_default()
                ));
            }
            for (url, id, ok) in &r.deliveries {
                p.note(format!(
                    "  webhook {url}: alert {} {}",
                    &id[..12.min(id.len())],
                    if *ok { "delivered" } else { "FAILED" }
                ));
            }
            for t in &r.triggers {
                p.note(format!(
                    "  retraining triggered: pipeline `{}` (trigger {}, {})",
                    t.pipeline,
                    &t.id[..12],
                    t.status
                ));
            }
        }
        print_alerts(&firing);
    }
    if !failed.is_empty() {
        bail!("{} monitor(s) failed: {}", failed.len(), failed.join(", "));
    }
    Ok(if firing.is_empty() {
        ExitStatus::Success
    } else {
        ExitStatus::Failure
    })
}

fn print_alerts(alerts: &[kiln_store::Alert]) {
    if alerts.is_empty() {
        return;
    }
    let mut t = output::table(&[
        "alert", "state", "severity", "monitor", "rule", "fired", "what",
    ]);
    for a in alerts {
        t.add_row(vec![
            a.id[..12.min(a.id.len())].to_string(),
            a.state.clone(),
            a.severity.clone(),
            a.monitor.clone(),
            a.rule.clone(),
            output::when(a.started_at),
            a.detail["message"].as_str().unwrap_or_default().to_string(),
        ]);
    }
    println!("{t}");
}

async fn alerts(
    project: &Project,
    firing: bool,
    limit: i64,
    p: Printer,
) -> anyhow::Result<ExitStatus> {
    let list = project
        .meta
        .alerts(firing.then_some("firing"), limit)
        .await?;
    if p.json {
        let mut out = Vec::new();
        for a in &list {
            let mut v = serde_json::to_value(a)?;
            v["events"] = serde_json::to_value(project.meta.alert_events(&a.id).await?)?;
            out.push(v);
        }
        p.json(&out);
    } else if list.is_empty() {
        p.note(if firing {
            "No alert is firing."
        } else {
            "No alerts yet."
        });
    } else {
        print_alerts(&list);
    }
    Ok(if firing && !list.is_empty() {
        ExitStatus::Failure
    } else {
        ExitStatus::Success
    })
}

pub async fn windows(
    project: &Project,
    name: &str,
    limit: usize,
    p: Printer,
) -> anyhow::Result<ExitStatus> {
    let all = project.meta.monitor_windows(name, 0).await?;
    if all.is_empty() && !project.config.monitors.contains_key(name) {
        bail!("No monitor `{name}`: none is declared in kiln.yaml and none has windows");
    }
    let shown = &all[all.len().saturating_sub(limit)..];
    if p.json {
        p.json(&shown);
        return Ok(ExitStatus::Success);
    }
    if shown.is_empty() {
        p.note(format!("Monitor `{name}` has no windows yet: run `kiln monitor run {name}` once the deployment has logged traffic"));
        return Ok(ExitStatus::Success);
    }
    let mut t = output::table(&[
        "window",
        "ends",
        "rows",
        "drift",
        "outliers",
        "p99 ms",
        "labels",
        if shown.iter().any(|w| w.metrics.get("mae").is_some()) {
            "MAE"
        } else {
            "accuracy"
        },
        "final",
    ]);
    let f = |w: &kiln_store::MonitorWindow, k: &str| {
        w.metrics.get(k).and_then(serde_json::Value::as_f64)
    };
    for w in shown {
        t.add_row(vec![
            w.seq.to_string(),
            output::when(w.end_time),
            output::thousands(w.rows),
            f(w, "drift.share")
                .map(|v| format!("{:.0} %", v * 100.0))
                .unwrap_or_default(),
            f(w, "outliers.share")
                .map(|v| format!("{:.1} %", v * 100.0))
                .unwrap_or_default(),
            f(w, "latency.p99").map(output::num).unwrap_or_default(),
            w.labels.to_string(),
            f(w, "accuracy")
                .or_else(|| f(w, "mae"))
                .map(output::num)
                .unwrap_or_default(),
            if w.r#final { "yes" } else { "no" }.into(),
        ]);
    }
    println!("{t}");
    Ok(ExitStatus::Success)
}

pub async fn report(
    project: &Project,
    deployment: &str,
    html: Option<&Path>,
    last: Option<usize>,
    p: Printer,
) -> anyhow::Result<ExitStatus> {
    let monitors: Vec<(&String, &kiln_project::MonitorConfig)> = project
        .config
        .monitors
        .iter()
        .filter(|(_, m)| m.deployment == deployment)
        .collect();
    if monitors.is_empty() {
        bail!(
            "No monitor watches deployment `{deployment}`\n  hint: declare one under `monitors:` in kiln.yaml (see `kiln monitor run --help`)"
        );
    }
    let mut stored = Vec::new();
    for (name, _) in &monitors {
        let mut windows = project.meta.monitor_windows(name, 0).await?;
        if let Some(n) = last {
            windows.drain(..windows.len().saturating_sub(n));
        }
        stored.push(((*name).clone(), windows));
    }
    let alerts: Vec<kiln_store::Alert> = project
        .meta
        .alerts(None, 1000)
        .await?
        .into_iter()
        .filter(|a| monitors.iter().any(|(n, _)| **n == a.monitor))
        .collect();
    if p.json || html.is_none() {
        p.json(&serde_json::json!({
            "deployment": deployment,
            "monitors": stored.iter().map(|(n, w)| serde_json::json!({"monitor": n, "windows": w})).collect::<Vec<_>>(),
            "alerts": alerts,
        }));
    }
    if let Some(out) = html {
        let empty = serde_json::Map::new();
        let data: Vec<(
            String,
            Vec<kiln_monitor::report::WindowPoint<'_>>,
            Option<&serde_json::Value>,
        )> = stored
            .iter()
            .map(|(n, ws)| {
                (
                    n.clone(),
                    ws.iter()
                        .map(|w| kiln_monitor::report::WindowPoint {
                            seq: w.seq,
                            end_ms: w.end_time,
                            rows: w.rows,
                            r#final: w.r#final,
                            metrics: w.metrics.as_object().unwrap_or(&empty),
                        })
                        .collect(),
                    ws.last().map(|w| &w.detail),
                )
            })
            .collect();
        let mut lines: Vec<kiln_monitor::report::AlertLine> = Vec::new();
        for a in &alerts {
            // The window it fired at (the alert itself holds its latest).
            let fired = project
                .meta
                .alert_events(&a.id)
                .await?
                .into_iter()
                .find(|e| e.kind == "firing")
                .and_then(|e| e.detail["window"]["seq"].as_i64())
                .unwrap_or(a.window_seq);
            lines.push(kiln_monitor::report::AlertLine {
                monitor: a.monitor.clone(),
                rule: a.rule.clone(),
                severity: a.severity.clone(),
                state: a.state.clone(),
                started: output::when(a.started_at),
                message: a.detail["message"].as_str().unwrap_or_default().to_string(),
                window: fired,
            });
        }
        let rules: Vec<(String, String, Option<f64>)> = monitors
            .iter()
            .flat_map(|(n, m)| {
                m.rules
                    .iter()
                    .map(|r| ((*n).clone(), r.metric.clone(), r.above.or(r.below)))
            })
            .collect();
        let page = kiln_monitor::report::monitor_page(deployment, &data, &lines, &rules);
        write_atomically(out, page.as_bytes())?;
        p.note(format!("report: {}", out.display()));
    }
    Ok(ExitStatus::Success)
}

pub async fn triggers(project: &Project, limit: i64, p: Printer) -> anyhow::Result<ExitStatus> {
    let list = project.meta.pipeline_triggers(None, limit).await?;
    if p.json {
        p.json(&list);
    } else if list.is_empty() {
        p.note("No retraining triggers yet.");
    } else {
        let mut t = output::table(&[
            "trigger", "pipeline", "status", "created", "cause", "reason",
        ]);
        for x in &list {
            t.add_row(vec![
                x.id[..12].to_string(),
                x.pipeline.clone(),
                x.status.clone(),
                output::when(x.created_at),
                x.cause.clone(),
                x.reason.clone(),
            ]);
        }
        println!("{t}");
    }
    Ok(ExitStatus::Success)
}

async fn drift(
    reference: &str,
    current: &str,
    html: Option<&Path>,
    alpha: f64,
    method: kiln_monitor::drift::Method,
    locations: &Locations,
    p: Printer,
) -> anyhow::Result<ExitStatus> {
    if !(alpha > 0.0 && alpha < 1.0) {
        bail!("--alpha must be between 0 and 1 (exclusive), not {alpha}");
    }
    let started = Instant::now();
    // Files need no project; a dataset reference does.
    let project = if Path::new(reference).exists() && Path::new(current).exists() {
        None
    } else {
        Some(super::open(locations).await?)
    };
    let mut guards = Vec::new();
    let mut locate = async |source: &str| -> anyhow::Result<(PathBuf, String)> {
        match &project {
            None => Ok((source.into(), source.to_string())),
            Some(project) => {
                let (path, label, guard) = project.table_file(source).await?;
                guards.push(guard);
                Ok((path, label))
            }
        }
    };
    let (ref_path, ref_label) = locate(reference).await?;
    let (cur_path, cur_label) = locate(current).await?;
    let (report, rows) = tokio::task::block_in_place(|| -> anyhow::Result<_> {
        let r = Table::open(&ref_path, &ref_label)?;
        let c = Table::open(&cur_path, &cur_label)?;
        let mut report = compare_tables(&r, &c, alpha)?;
        report.apply(method);
        Ok((report, (r.rows(), c.rows())))
    })?;
    if let Some(project) = project {
        project.meta.close().await;
    }
    let seconds = started.elapsed().as_secs_f64();
    if let Some(out) = html {
        let page =
            kiln_monitor::report::drift_page(&report, (&ref_label, rows.0), (&cur_label, rows.1));
        write_atomically(out, page.as_bytes())?;
    }
    if p.json {
        let mut v = serde_json::to_value(&report)?;
        let obj = v.as_object_mut().expect("a report is an object");
        obj.insert(
            "reference".into(),
            serde_json::json!({"source": ref_label, "rows": rows.0}),
        );
        obj.insert(
            "current".into(),
            serde_json::json!({"source": cur_label, "rows": rows.1}),
        );
        obj.insert("seconds".into(), seconds.into());
        p.json(&v);
    } else {
        print_drift(&report);
        let rule = match method {
            kiln_monitor::drift::Method::Test => format!(
                "alpha {}, p-value threshold {:.2e}",
                report.alpha,
                kiln_monitor::drift::threshold(report.alpha, report.columns_checked)
            ),
            kiln_monitor::drift::Method::Psi(t) => format!("PSI above {t}"),
            kiln_monitor::drift::Method::Wasserstein(t) => {
                format!("normed Wasserstein / Jensen–Shannon above {t}")
            }
            kiln_monitor::drift::Method::JensenShannon(t) => format!("Jensen–Shannon above {t}"),
        };
        p.note(format!(
            "{} of {} columns drifted ({} vs {} rows, {rule}) in {:.2} s",
            report.drifted_columns,
            report.columns_checked,
            output::thousands(rows.0 as i64),
            output::thousands(rows.1 as i64),
            seconds
        ));
        for c in &report.missing_columns {
            p.note(format!(
                "warning: `{c}` is in the reference but not in the current table"
            ));
        }
        for (c, why) in &report.skipped {
            p.note(format!("note: `{c}` not compared: {why}"));
        }
        if let Some(out) = html {
            p.note(format!("report: {}", out.display()));
        }
    }
    Ok(if report.drifted_columns > 0 {
        ExitStatus::Failure
    } else {
        ExitStatus::Success
    })
}

/// The verdicts, drifted columns first.
fn print_drift(report: &DriftReport) {
    let mut t = output::table(&[
        "column",
        "kind",
        "test",
        "statistic",
        "p-value",
        "PSI",
        "Wasserstein",
        "JS",
        "drift",
    ]);
    let mut order: Vec<&kiln_monitor::drift::ColumnDrift> = report.columns.iter().collect();
    order.sort_by_key(|c| !c.drifted);
    for c in order {
        let mut verdict = if c.drifted { "DRIFT" } else { "ok" }.to_string();
        if !c.new_categories.is_empty() {
            verdict.push_str(&format!(" (new: {})", c.new_categories.join(", ")));
        }
        if let Some(note) = &c.note {
            verdict.push_str(&format!(" ({note})"));
        }
        t.add_row(vec![
            c.column.clone(),
            c.kind.as_str().to_string(),
            c.test.to_string(),
            output::num(c.statistic),
            format!("{:.2e}", c.p_value),
            output::num(c.psi),
            c.wasserstein.map(output::num).unwrap_or_default(),
            output::num(c.jensen_shannon),
            verdict,
        ]);
    }
    println!("{t}");
}

/// Writes `bytes` to `path` through a temporary file in the same folder, so
/// a reader never sees half a report.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir).with_context(|| {
        format!(
            "Failed to write `{}`: cannot create a file in `{}`",
            path.display(),
            dir.display()
        )
    })?;
    tmp.write_all(bytes)
        .with_context(|| format!("Failed to write `{}`", path.display()))?;
    tmp.persist(path)
        .with_context(|| format!("Failed to write `{}`", path.display()))?;
    Ok(())
}
