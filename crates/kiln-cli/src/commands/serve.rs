//! `kiln serve`: deployments from kiln.yaml or the command line, loaded and
//! served until Ctrl-C or SIGTERM.

use std::sync::Arc;

use anyhow::{Context, bail};
use kiln_project::{DeploymentConfig, ModelRef, Project, SplitConfig};
use kiln_server::serve::deploy::{self, DeploymentSpec};
use kiln_server::serve::metrics::Metrics;
use kiln_server::serve::{ServeOptions, ServeState};

use crate::ExitStatus;
use crate::cli::ServeArgs;
use crate::output::Printer;

/// The deployments the arguments name, as declared.
fn declared(
    project: &Project,
    args: &ServeArgs,
) -> anyhow::Result<Vec<(String, DeploymentConfig)>> {
    let config = &project.config.deployments;
    if args.targets.is_empty() {
        if config.is_empty() {
            bail!(
                "Nothing to serve: name a model (`kiln serve NAME@ALIAS`, a run id or a model file) \
                 or declare deployments in kiln.yaml"
            );
        }
        if !args.split.is_empty() || args.shadow.is_some() {
            bail!("--split and --shadow apply to one model named on the command line");
        }
        return Ok(config.iter().map(|(n, c)| (n.clone(), c.clone())).collect());
    }
    let models = args
        .targets
        .iter()
        .filter(|t| !config.contains_key(t.as_str()))
        .count();
    if (!args.split.is_empty() || args.shadow.is_some()) && (models != 1 || args.targets.len() != 1)
    {
        bail!(
            "--split and --shadow apply to exactly one model TARGET; declare more complex deployments in kiln.yaml"
        );
    }
    let mut out = Vec::new();
    for t in &args.targets {
        if let Some(c) = config.get(t) {
            out.push((t.clone(), c.clone()));
            continue;
        }
        let (name, model) = match t.split_once('=') {
            Some((n, m)) if !n.contains('@') && !n.contains('/') => (n.to_string(), m.to_string()),
            _ => (ModelRef::parse(t).default_name(), t.clone()),
        };
        let split = args
            .split
            .iter()
            .map(|s| {
                let (m, pct) = s.rsplit_once('=').with_context(|| {
                    format!("--split `{s}`: write MODEL=PERCENT, e.g. fraud@challenger=10")
                })?;
                let percent: f64 = pct
                    .trim_end_matches('%')
                    .parse()
                    .with_context(|| format!("--split `{s}`: `{pct}` is not a percentage"))?;
                Ok(SplitConfig {
                    model: m.to_string(),
                    percent,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        out.push((
            name,
            DeploymentConfig {
                model,
                split,
                shadow: args.shadow.clone(),
                sticky: args.sticky.clone(),
                sample: args.sample,
            },
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for (n, c) in &out {
        if !seen.insert(n.clone()) {
            bail!("Two targets make a deployment named `{n}`; name them: `NAME=MODEL`");
        }
        c.validate()
            .map_err(|e| anyhow::anyhow!("deployment `{n}`: {e}"))?;
        check_name(n)?;
    }
    Ok(out)
}

fn check_name(n: &str) -> anyhow::Result<()> {
    if n.is_empty()
        || !n
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        bail!("Deployment name `{n}`: use letters, digits, `-`, `_` and `.` (it appears in URLs)");
    }
    Ok(())
}

pub async fn serve(project: Project, args: ServeArgs, p: Printer) -> anyhow::Result<ExitStatus> {
    let started = std::time::Instant::now();
    let addr: std::net::SocketAddr = {
        use std::net::ToSocketAddrs;
        format!("{}:{}", args.host, args.port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .with_context(|| {
                format!(
                    "Invalid --host `{}`: give an IP address or a host name",
                    args.host
                )
            })?
    };
    if let Some(r) = args.sample
        && !(0.0..=1.0).contains(&r)
    {
        bail!("--sample must be between 0 and 1, not {r}");
    }
    let declared = declared(&project, &args)?;
    let project = Arc::new(project);
    let metrics = Arc::new(Metrics::new());
    let mut deployments = Vec::new();
    for (name, c) in declared {
        let spec = DeploymentSpec {
            name: name.clone(),
            model: ModelRef::parse(&c.model),
            split: c
                .split
                .iter()
                .map(|s| (ModelRef::parse(&s.model), s.percent))
                .collect(),
            shadow: c.shadow.as_deref().map(ModelRef::parse),
            sticky: c.sticky.clone(),
            sample: c.sample.unwrap_or(1.0),
        };
        let d = deploy::load_deployment(&project, &metrics, spec)
            .await
            .with_context(|| format!("Cannot load deployment `{name}`"))?;
        deployments.push(d);
    }
    let summary: Vec<String> = deployments
        .iter()
        .map(|d| {
            let live = d.live();
            let arms: Vec<String> = live
                .arms
                .iter()
                .map(|(a, _)| format!("{} (v{}, {})", a.reference, a.version, a.predictor.format()))
                .collect();
            let shadow = live
                .shadow
                .as_ref()
                .map(|s| format!(", shadow {} (v{})", s.reference, s.version))
                .unwrap_or_default();
            format!("  {}: {}{shadow}", d.name(), arms.join(" + "))
        })
        .collect();
    let names: Vec<String> = deployments.iter().map(|d| d.name().to_string()).collect();
    let options = ServeOptions {
        timeout: args.timeout,
        max_body: args.max_body << 20,
        reload_every: args.reload_every,
        log_flush_every: args.log_flush,
    };
    let state = ServeState::new(project, metrics, deployments, options);
    kiln_server::serve::serve(state, addr, |bound| {
        // On stderr, always: scripts and tests wait for this line.
        eprintln!(
            "kiln serve listening on http://{bound} ({} deployment{}, ready in {:.2} s)",
            names.len(),
            if names.len() == 1 { "" } else { "s" },
            started.elapsed().as_secs_f64()
        );
        if !p.quiet {
            for s in &summary {
                eprintln!("{s}");
            }
            let first = &names[0];
            eprintln!(
                "  MLflow:     POST http://{bound}/invocations{}",
                if names.len() > 1 {
                    format!("?deployment={first}")
                } else {
                    String::new()
                }
            );
            eprintln!("  v2:         POST http://{bound}/v2/models/{first}/infer");
            eprintln!("  kiln:       POST http://{bound}/api/v1/deployments/{first}/predict");
            eprintln!("  Prometheus: GET  http://{bound}/metrics");
        }
    })
    .await
    .with_context(|| format!("Failed to serve on {addr}"))?;
    Ok(ExitStatus::Success)
}

/// `kiln predictions DEPLOYMENT`: the logged rows, newest first, joined
/// with their labels.
pub async fn predictions(
    project: &Project,
    deployment: &str,
    limit: usize,
    p: Printer,
) -> anyhow::Result<ExitStatus> {
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    let segments = project.meta.prediction_segments(deployment, None).await?;
    if segments.is_empty() {
        bail!(
            "No logged predictions for deployment `{deployment}`: serve it with `kiln serve` \
             (predictions are written every --log-flush, and at shutdown)"
        );
    }
    let batches = kiln_server::serve::log::read_segments(project, deployment).await?;
    let labels: std::collections::HashMap<(String, i64), serde_json::Value> = project
        .meta
        .feedback(deployment, i64::MAX)
        .await?
        .into_iter()
        .map(|f| ((f.request_id, f.row), f.label))
        .collect();
    // Every logged row as JSON, then newest first.
    let mut rows: Vec<serde_json::Value> = Vec::new();
    for b in &batches {
        let schema = b.schema();
        for i in 0..b.num_rows() {
            let mut row = serde_json::Map::new();
            for (f, c) in schema.fields().iter().zip(b.columns()) {
                let v = if c.is_null(i) {
                    serde_json::Value::Null
                } else {
                    match c.data_type() {
                        arrow_schema::DataType::Utf8 => c.as_string::<i32>().value(i).into(),
                        arrow_schema::DataType::Float64 => c
                            .as_primitive::<arrow_array::types::Float64Type>()
                            .value(i)
                            .into(),
                        arrow_schema::DataType::Int64 => c
                            .as_primitive::<arrow_array::types::Int64Type>()
                            .value(i)
                            .into(),
                        arrow_schema::DataType::UInt32 => c
                            .as_primitive::<arrow_array::types::UInt32Type>()
                            .value(i)
                            .into(),
                        arrow_schema::DataType::Boolean => c.as_boolean().value(i).into(),
                        arrow_schema::DataType::Timestamp(..) => {
                            let us = c
                                .as_primitive::<arrow_array::types::TimestampMicrosecondType>()
                                .value(i);
                            chrono::DateTime::from_timestamp_micros(us)
                                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                                .unwrap_or_default()
                                .into()
                        }
                        _ => arrow_cast::display::ArrayFormatter::try_new(
                            c.as_ref(),
                            &Default::default(),
                        )
                        .map(|f| f.value(i).to_string())
                        .unwrap_or_default()
                        .into(),
                    }
                };
                row.insert(f.name().clone(), v);
            }
            rows.push(row.into());
        }
    }
    rows.sort_by(|a, b| {
        b["time"]
            .as_str()
            .cmp(&a["time"].as_str())
            .then(a["request_id"].as_str().cmp(&b["request_id"].as_str()))
            .then(a["row"].as_u64().cmp(&b["row"].as_u64()))
    });
    rows.truncate(limit);
    for r in &mut rows {
        let key = (
            r["request_id"].as_str().unwrap_or_default().to_string(),
            r["row"].as_i64().unwrap_or_default(),
        );
        r["label"] = labels.get(&key).cloned().unwrap_or(serde_json::Value::Null);
    }
    if p.json {
        p.json(&rows);
        return Ok(ExitStatus::Success);
    }
    let total: i64 = segments.iter().map(|s| s.rows).sum();
    let mut t = crate::output::table(&[
        "time",
        "request",
        "row",
        "model",
        "role",
        "ms",
        "prediction",
        "label",
    ]);
    for r in &rows {
        let cell = |v: &serde_json::Value| match v {
            serde_json::Value::Null => String::new(),
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n
                .as_f64()
                .map(|f| format!("{}", (f * 1e4).round() / 1e4))
                .unwrap_or_default(),
            other => other.to_string(),
        };
        t.add_row(vec![
            r["time"]
                .as_str()
                .unwrap_or_default()
                .get(..23)
                .unwrap_or_default()
                .replace('T', " "),
            r["request_id"]
                .as_str()
                .unwrap_or_default()
                .chars()
                .take(12)
                .collect(),
            cell(&r["row"]),
            format!(
                "{}@{}",
                r.get("model").and_then(|v| v.as_str()).unwrap_or("?"),
                r.get("version").and_then(|v| v.as_str()).unwrap_or("?")
            ),
            cell(&r["role"]),
            format!("{:.2}", r["latency_ms"].as_f64().unwrap_or_default()),
            cell(&r["prediction"]),
            cell(&r["label"]),
        ]);
    }
    println!("{t}");
    p.note(format!(
        "{} logged rows in {} segment{} of `{deployment}`; {} labels fed back",
        total,
        segments.len(),
        if segments.len() == 1 { "" } else { "s" },
        labels.len()
    ));
    Ok(ExitStatus::Success)
}
