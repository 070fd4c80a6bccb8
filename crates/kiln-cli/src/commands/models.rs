//! `kiln models` (the registry) and `kiln lineage`.

use kiln_project::Project;
use kiln_store::ModelVersion;

use crate::ExitStatus;
use crate::cli::ModelsCommand;
use crate::output::{Printer, num, table};

fn when(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_default()
}

fn short_source(v: &ModelVersion) -> String {
    match &v.run_id {
        Some(r) => format!("run {}", &r[..r.len().min(12)]),
        None => v
            .tags
            .iter()
            .find(|t| t.key == "kiln.import.file")
            .map(|t| format!("file {}", t.value))
            .unwrap_or_else(|| v.source.clone()),
    }
}

pub async fn models(
    project: &Project,
    cmd: ModelsCommand,
    p: Printer,
) -> anyhow::Result<ExitStatus> {
    match cmd {
        ModelsCommand::Ls => {
            let models = project
                .meta
                .search_registered_models(None, 10_000, None)
                .await?
                .items;
            if p.json {
                p.json(&models);
                return Ok(ExitStatus::Success);
            }
            if models.is_empty() {
                p.note("No registered models: `kiln models register NAME --run RUN` or `kiln models import NAME FILE` adds one.");
                return Ok(ExitStatus::Success);
            }
            let mut t = table(&["model", "latest", "aliases", "updated", "description"]);
            for m in &models {
                let latest = m.latest_versions.iter().map(|v| v.version).max();
                t.add_row(vec![
                    m.name.clone(),
                    latest.map(|v| format!("v{v}")).unwrap_or_default(),
                    m.aliases
                        .iter()
                        .map(|(a, v)| format!("{a}→v{v}"))
                        .collect::<Vec<_>>()
                        .join(" "),
                    when(m.last_updated_time),
                    m.description.clone(),
                ]);
            }
            println!("{t}");
        }
        ModelsCommand::Show { reference } => match reference.split_once('@') {
            None => {
                let m = project.meta.registered_model(&reference).await?;
                let versions = project
                    .meta
                    .search_model_versions(Some(&reference), None, &[], 10_000, None)
                    .await?
                    .items;
                if p.json {
                    let mut v = serde_json::to_value(&m)?;
                    v["versions"] = serde_json::to_value(&versions)?;
                    p.json(&v);
                    return Ok(ExitStatus::Success);
                }
                println!(
                    "{}{}",
                    m.name,
                    if m.description.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", m.description)
                    }
                );
                let mut t = table(&[
                    "version", "aliases", "stage", "format", "from", "created", "metrics",
                ]);
                for v in &versions {
                    let metrics = v
                        .metrics
                        .as_object()
                        .map(|o| {
                            o.iter()
                                .filter(|(k, _)| {
                                    k.starts_with("test_")
                                        || !o.keys().any(|x| x.starts_with("test_"))
                                })
                                .take(3)
                                .map(|(k, x)| {
                                    format!("{k}={}", x.as_f64().map(num).unwrap_or_default())
                                })
                                .collect::<Vec<_>>()
                                .join(" ")
                        })
                        .unwrap_or_default();
                    t.add_row(vec![
                        format!("v{}", v.version),
                        v.aliases.join(" "),
                        v.current_stage.clone(),
                        v.format.clone(),
                        short_source(v),
                        when(v.creation_time),
                        metrics,
                    ]);
                }
                println!("{t}");
            }
            Some((name, spec)) => {
                let v = match spec.parse::<i64>() {
                    Ok(n) => project.meta.model_version(name, n).await?,
                    Err(_) => project.meta.model_version_by_alias(name, spec).await?,
                };
                let card = model_card(project, &v).await?;
                if p.json {
                    p.json(&card);
                    return Ok(ExitStatus::Success);
                }
                print_card(&v, &card);
            }
        },
        ModelsCommand::Register {
            name,
            run,
            description,
        } => {
            let v = project
                .register_run_model(&name, &run, description.as_deref())
                .await?;
            if p.json {
                p.json(&v);
            } else {
                println!(
                    "Registered {}/v{} from run {} ({} model)",
                    v.name,
                    v.version,
                    short(&v.run_id),
                    v.format
                );
                p.note(format!(
                    "`kiln models alias {} champion {}` points an alias at it.",
                    v.name, v.version
                ));
            }
        }
        ModelsCommand::Import {
            name,
            file,
            description,
        } => {
            let (v, info) = project
                .import_model(&name, &file, description.as_deref())
                .await?;
            if p.json {
                p.json(&serde_json::json!({ "version": v, "inspected": info }));
            } else {
                println!(
                    "Imported {} as {}/v{}: {} model from {}, {} input(s){}",
                    file.display(),
                    v.name,
                    v.version,
                    v.format,
                    info.producer,
                    info.signature.inputs.len(),
                    info.task
                        .as_deref()
                        .map(|t| format!(", {t}"))
                        .unwrap_or_default()
                );
            }
        }
        ModelsCommand::Alias {
            name,
            alias,
            number,
            delete,
        } => {
            if delete {
                let was = project.meta.delete_alias(&name, &alias).await?;
                if p.json {
                    p.json(&serde_json::json!({ "name": name, "alias": alias, "previous_version": was }));
                } else {
                    println!("Removed alias {alias} of {name} (it pointed at v{was})");
                }
            } else {
                let version = number.expect("clap requires a version without --delete");
                let before = project.meta.set_alias(&name, &alias, version).await?;
                if p.json {
                    p.json(&serde_json::json!({ "name": name, "alias": alias, "version": version, "previous_version": before }));
                } else {
                    match before {
                        Some(b) if b != version => {
                            println!("Moved {name}@{alias}: v{b} → v{version}")
                        }
                        Some(_) => println!("{name}@{alias} already points at v{version}"),
                        None => println!("Set {name}@{alias} → v{version}"),
                    }
                }
            }
        }
    }
    Ok(ExitStatus::Success)
}

fn short(id: &Option<String>) -> String {
    id.as_deref()
        .map(|r| r[..r.len().min(12)].to_string())
        .unwrap_or_default()
}

/// A version's card: what it is, how good, trained on what, from where.
async fn model_card(project: &Project, v: &ModelVersion) -> anyhow::Result<serde_json::Value> {
    let run = match &v.run_id {
        Some(r) => project.meta.tracked_run(r).await.ok(),
        None => None,
    };
    let root = kiln_project::lineage::Node {
        kind: "model_version".into(),
        id: format!("{}/{}", v.name, v.version),
    };
    let tree = kiln_project::lineage::walk(&project.meta, root, 6).await?;
    let mut data = Vec::new();
    collect_datasets(&tree, &mut data);
    // What drives its predictions, from the summary `kiln train` stored.
    let explanation = project
        .version_explanation(&v.name, v.version)
        .await
        .ok()
        .flatten();
    Ok(serde_json::json!({
        "version": v,
        "run": run.as_ref().map(|r| serde_json::json!({
            "id": r.id, "name": r.name, "experiment_id": r.experiment_id, "status": r.status,
            "params": r.params.iter().map(|k| (k.key.clone(), k.value.clone())).collect::<std::collections::BTreeMap<_, _>>(),
            "source_commit": r.source_commit, "source_dirty": r.source_dirty,
        })),
        "data_versions": data,
        "explanation": explanation,
        "lineage": tree,
    }))
}

fn collect_datasets(t: &kiln_project::lineage::Tree, out: &mut Vec<String>) {
    let data = t.node.kind == "dataset_version" || t.node.kind == "external_dataset";
    if data && !out.contains(&t.node.id) {
        out.push(t.node.id.clone());
    }
    for c in &t.upstream {
        collect_datasets(c, out);
    }
}

fn print_card(v: &ModelVersion, card: &serde_json::Value) {
    println!(
        "{}/v{}{}",
        v.name,
        v.version,
        if v.aliases.is_empty() {
            String::new()
        } else {
            format!("  ({})", v.aliases.join(", "))
        }
    );
    if !v.description.is_empty() {
        println!("{}", v.description);
    }
    let mut t = table(&["field", "value"]);
    let mut row = |k: &str, val: String| {
        t.add_row(vec![k.to_string(), val]);
    };
    row("format", v.format.clone());
    row("stage", v.current_stage.clone());
    row(
        "created",
        format!("{} by {}", when(v.creation_time), v.user_id),
    );
    row("source", v.source.clone());
    if let Some(r) = &v.run_id {
        row("run", r.clone());
    }
    if let Some(c) = card["run"]["source_commit"].as_str() {
        row("code", c[..c.len().min(12)].to_string());
    }
    for d in card["data_versions"].as_array().into_iter().flatten() {
        let d = d.as_str().unwrap_or_default();
        let (name, id) = d.split_once('@').unwrap_or((d, ""));
        row("trained on", format!("{name}@{}", &id[..id.len().min(12)]));
    }
    if let Some(o) = v.metrics.as_object() {
        for (k, x) in o {
            row(
                &format!("metric {k}"),
                x.as_f64().map(num).unwrap_or_default(),
            );
        }
    }
    if let Some(sig) = v.signature.as_ref().and_then(|s| s["inputs"].as_array()) {
        let cols: Vec<String> = sig
            .iter()
            .map(|c| {
                format!(
                    "{}:{}",
                    c["name"].as_str().unwrap_or("?"),
                    c["type"].as_str().unwrap_or("?")
                )
            })
            .collect();
        row("inputs", cols.join(" "));
    }
    for kv in &v.tags {
        row(&format!("tag {}", kv.key), kv.value.clone());
    }
    // The stored explanation: the columns that move predictions most.
    let e = &card["explanation"];
    // The first five columns of a list, each with its `key` value.
    let top = |list: &[serde_json::Value], key: &str| -> String {
        list.iter()
            .take(5)
            .map(|c| {
                format!(
                    "{} {}",
                    c["column"].as_str().unwrap_or("?"),
                    c[key].as_f64().map(num).unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(columns) = e["columns"].as_array() {
        row(
            "explained by",
            format!(
                "{} (mean |SHAP| on the {}, {}): {}{}",
                e["method"].as_str().unwrap_or_default(),
                e["output"]["name"].as_str().unwrap_or_default(),
                e["rows"]
                    .as_u64()
                    .map(|r| format!("{r} held-out rows"))
                    .unwrap_or_default(),
                top(columns, "mean_abs"),
                if columns.len() > 5 { ", …" } else { "" }
            ),
        );
        if let Some(pi) = e["permutation"]["columns"].as_array() {
            row(
                "permutation importance",
                format!(
                    "{} worsens by: {}",
                    e["permutation"]["metric"].as_str().unwrap_or_default(),
                    top(pi, "mean")
                ),
            );
        }
    }
    println!("{t}");
}

pub async fn lineage(
    project: &Project,
    reference: &str,
    depth: usize,
    p: Printer,
) -> anyhow::Result<ExitStatus> {
    let root = kiln_project::lineage::resolve(&project.meta, reference).await?;
    let tree = kiln_project::lineage::walk(&project.meta, root, depth).await?;
    if p.json {
        p.json(&tree);
    } else {
        print!("{}", kiln_project::lineage::render(&tree));
    }
    Ok(ExitStatus::Success)
}
