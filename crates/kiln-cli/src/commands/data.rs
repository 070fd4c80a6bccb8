//! `kiln data …`

use anyhow::{Context, bail};
use comfy_table::Cell;
use kiln_data::check::CheckReport;
use kiln_data::diff::SchemaChange;
use kiln_data::format::Format;
use kiln_data::profile::{Profile, format_date, format_timestamp};
use kiln_data::read::ReadOptions;
use kiln_project::Project;
use kiln_project::datasets::{AddOptions, AddOutcome, VersionDiff, parse_ref};
use kiln_store::VersionRecord;

use crate::ExitStatus;
use crate::cli::{AddArgs, DataCommand};
use crate::output::{Printer, bytes, num, sparkline, table, thousands, value};

pub async fn run(project: &Project, cmd: DataCommand, p: Printer) -> anyhow::Result<ExitStatus> {
    match cmd {
        DataCommand::Add(args) => add(project, args, p).await,
        DataCommand::Ls => ls(project, p).await,
        DataCommand::Log { name } => log(project, &name, p).await,
        DataCommand::Show { reference } => show(project, &reference, p).await,
        DataCommand::Diff { a, b, key } => diff(project, &a, &b, key, p).await,
        DataCommand::Get { reference, output } => {
            let v = resolve(project, &reference).await?;
            let bar = p.progress();
            let n = project.get(&v, &output, &bar).await?;
            if p.json {
                p.json(&serde_json::json!({ "version": v.id, "output": output, "bytes": n }));
            } else {
                p.note(format!(
                    "Restored {}@{} to {} ({})",
                    v.dataset,
                    v.id.short(),
                    output.display(),
                    bytes(n as i64)
                ));
            }
            Ok(ExitStatus::Success)
        }
        DataCommand::Check { reference } => {
            let v = resolve(project, &reference).await?;
            if project.dataset_config(&v.dataset).checks.is_empty() {
                bail!(
                    "Dataset `{}` declares no checks\n  hint: add `datasets: {{ {}: {{ checks: … }} }}` to kiln.yaml (`kiln init --help` shows the layout)",
                    v.dataset,
                    v.dataset
                );
            }
            let report = project.check(&v).await?;
            if p.json {
                p.json(
                    &serde_json::json!({ "dataset": v.dataset, "version": v.id, "report": report }),
                );
            } else {
                print_report(&v, &report);
            }
            Ok(if report.passed {
                ExitStatus::Success
            } else {
                ExitStatus::Failure
            })
        }
        DataCommand::Describe {
            name,
            description,
            owner,
            tags,
        } => {
            let d = project
                .meta
                .describe(&name, description.as_deref(), owner.as_deref(), &tags)
                .await?;
            if p.json {
                p.json(&d);
            } else {
                p.note(format!("Updated the catalog fields of `{name}`"));
            }
            Ok(ExitStatus::Success)
        }
        DataCommand::Tag { reference, tag } => {
            kiln_project::datasets::validate_name(&tag).context("Invalid tag")?;
            let v = resolve(project, &reference).await?;
            project.meta.tag_version(&v.dataset, &v.id, &tag).await?;
            if p.json {
                p.json(&serde_json::json!({ "dataset": v.dataset, "version": v.id, "tag": tag }));
            } else {
                p.note(format!("Tagged {}@{} as `{tag}`", v.dataset, v.id.short()));
            }
            Ok(ExitStatus::Success)
        }
    }
}

async fn resolve(project: &Project, reference: &str) -> anyhow::Result<VersionRecord> {
    let (name, spec) = parse_ref(reference)?;
    Ok(project.meta.resolve(&name, &spec).await?)
}

async fn add(project: &Project, args: AddArgs, p: Printer) -> anyhow::Result<ExitStatus> {
    let format = match &args.format {
        Some(f) => Some(
            Format::from_name(f)
                .with_context(|| format!("Unknown format `{f}`; use csv, tsv, parquet or jsonl"))?,
        ),
        None => None,
    };
    let delimiter = match args.delimiter {
        Some(c) if c.is_ascii() => Some(c as u8),
        Some(c) => bail!("The delimiter must be one ASCII character, not `{c}`"),
        None => None,
    };
    let opts = AddOptions {
        message: args.message,
        read: ReadOptions {
            format,
            delimiter,
            header: !args.no_header,
        },
        no_profile: args.no_profile,
        enforce_checks: args.check,
    };
    if args.check && project.dataset_config(&args.name).checks.is_empty() {
        p.note(format!(
            "warning: --check given, but kiln.yaml declares no checks for `{}`; nothing to enforce",
            args.name
        ));
    }
    let bar = p.progress();
    let outcome = project.add(&args.name, &args.path, &opts, &bar).await?;
    drop(bar);
    if p.json {
        p.json(&outcome);
    }
    match outcome {
        AddOutcome::Created { version, checks } => {
            if !p.json {
                let rows = version
                    .row_count
                    .map_or(String::new(), |r| format!(", {} rows", thousands(r)));
                let files = if version.kind != "table" {
                    format!(", {} files", thousands(version.file_count))
                } else {
                    String::new()
                };
                println!(
                    "Added {}@{} (version {}{rows}{files}, {})",
                    version.dataset,
                    version.id.short(),
                    version.seq,
                    bytes(version.byte_size)
                );
                if let Some(r) = &checks {
                    if r.passed {
                        p.note(format!("checks: all {} passed", r.results.len()));
                    } else {
                        p.note(format!(
                            "warning: {} of {} checks failed; `kiln data check {}` shows them (add --check to refuse such versions)",
                            r.failed(),
                            r.results.len(),
                            version.dataset
                        ));
                    }
                }
            }
            Ok(ExitStatus::Success)
        }
        AddOutcome::Unchanged { version } => {
            if !p.json {
                println!(
                    "Unchanged: the content is already {}@{} (version {}); no new version",
                    version.dataset,
                    version.id.short(),
                    version.seq
                );
            }
            Ok(ExitStatus::Success)
        }
        AddOutcome::Refused { checks } => {
            if !p.json {
                eprintln!(
                    "error: Refused: {} of {} checks failed; nothing was written",
                    checks.failed(),
                    checks.results.len()
                );
                print_failures(&checks);
            }
            Ok(ExitStatus::Failure)
        }
    }
}

async fn ls(project: &Project, p: Printer) -> anyhow::Result<ExitStatus> {
    let datasets = project.meta.list_datasets().await?;
    if p.json {
        p.json(&datasets);
        return Ok(ExitStatus::Success);
    }
    if datasets.is_empty() {
        p.note("No datasets yet; `kiln data add NAME FILE` adds one");
        return Ok(ExitStatus::Success);
    }
    let mut t = table(&[
        "dataset", "versions", "latest", "rows", "size", "added", "owner", "tags",
    ]);
    for d in &datasets {
        let l = d.latest.as_ref();
        t.add_row(vec![
            d.dataset.name.clone(),
            d.versions.to_string(),
            l.map_or(String::new(), |v| v.id.short()),
            l.and_then(|v| v.row_count).map_or("-".into(), thousands),
            l.map_or(String::new(), |v| bytes(v.byte_size)),
            l.map_or(String::new(), |v| short_time(&v.created_at)),
            d.dataset.owner.clone().unwrap_or_default(),
            d.dataset.tags.join(", "),
        ]);
    }
    println!("{t}");
    Ok(ExitStatus::Success)
}

async fn log(project: &Project, name: &str, p: Printer) -> anyhow::Result<ExitStatus> {
    let versions = project.meta.versions(name).await?;
    if p.json {
        p.json(&versions);
        return Ok(ExitStatus::Success);
    }
    let mut t = table(&[
        "#", "version", "added", "author", "rows", "size", "tags", "message",
    ]);
    for v in &versions {
        t.add_row(vec![
            v.seq.to_string(),
            v.id.short(),
            short_time(&v.created_at),
            v.author.clone(),
            v.row_count.map_or("-".into(), thousands),
            bytes(v.byte_size),
            v.tags.join(", "),
            v.message.clone().unwrap_or_default(),
        ]);
    }
    println!("{t}");
    Ok(ExitStatus::Success)
}

async fn show(project: &Project, reference: &str, p: Printer) -> anyhow::Result<ExitStatus> {
    let v = resolve(project, reference).await?;
    let check = project.meta.latest_check(&v.dataset, &v.id).await?;
    if p.json {
        p.json(&serde_json::json!({ "version": v, "latest_check": check }));
        return Ok(ExitStatus::Success);
    }
    let dataset = project.meta.dataset(&v.dataset).await?;
    println!(
        "{}@{}  (version {}{})",
        v.dataset,
        v.id.short(),
        v.seq,
        if v.tags.is_empty() {
            String::new()
        } else {
            format!(", tags: {}", v.tags.join(", "))
        }
    );
    println!("  id       {}", v.id);
    if let Some(parent) = &v.parent_id {
        println!("  parent   {}@{}", v.dataset, parent.short());
    }
    println!(
        "  source   {} ({}, {})",
        v.source,
        v.format,
        bytes(v.byte_size)
    );
    println!(
        "  added    {} by {}{}",
        short_time(&v.created_at),
        v.author,
        v.message
            .as_ref()
            .map_or(String::new(), |m| format!(": {m}"))
    );
    if let Some(d) = &dataset.description {
        println!("  about    {d}");
    }
    if let Some(o) = &dataset.owner {
        println!("  owner    {o}");
    }
    if let Some(c) = &check {
        println!(
            "  checks   {} ({} of {} failed, {})",
            if c.passed { "passed" } else { "FAILED" },
            c.checks_failed,
            c.checks_total,
            short_time(&c.created_at)
        );
    }
    if v.kind == "files" {
        let manifest = project.manifest(&v).await?;
        println!("  files    {}\n", thousands(manifest.files.len() as i64));
        let mut t = table(&["path", "size", "hash"]);
        for f in manifest.files.iter().take(20) {
            t.add_row(vec![f.path.clone(), bytes(f.size as i64), f.hash.short()]);
        }
        println!("{t}");
        if manifest.files.len() > 20 {
            println!("… and {} more", manifest.files.len() - 20);
        }
        return Ok(ExitStatus::Success);
    }
    let rows = v.row_count.map_or("-".into(), thousands);
    let profile: Option<Profile> = v
        .profile
        .clone()
        .map(serde_json::from_value)
        .transpose()
        .context("The stored profile is unreadable")?;
    let columns = v
        .schema
        .get("columns")
        .and_then(|c| c.as_array())
        .map_or(0, Vec::len);
    let files = if v.kind == "partitions" {
        format!(" in {} files", thousands(v.file_count))
    } else {
        String::new()
    };
    println!("  shape    {rows} rows × {columns} columns{files}\n");
    let Some(profile) = profile else {
        let mut t = table(&["column", "type"]);
        for c in v
            .schema
            .get("columns")
            .and_then(|c| c.as_array())
            .into_iter()
            .flatten()
        {
            t.add_row(vec![value(&c["name"]), value(&c["type"])]);
        }
        println!("{t}");
        println!("(no profile: added with --no-profile)");
        return Ok(ExitStatus::Success);
    };
    let mut t = table(&[
        "column",
        "type",
        "nulls",
        "distinct",
        "min",
        "p50",
        "max",
        "mean",
        "std",
        "distribution / top values",
    ]);
    for c in &profile.columns {
        let null_pct = if profile.rows > 0 {
            100.0 * c.nulls as f64 / profile.rows as f64
        } else {
            0.0
        };
        let q50 = c.quantiles.iter().find(|q| q.0 == 0.5).map(|q| q.1);
        let p50 = q50.map_or(String::new(), |x| match c.ty {
            kiln_core::ColumnType::Date => format_date(x as i64),
            kiln_core::ColumnType::Timestamp => format_timestamp(x as i64),
            _ => num(x),
        });
        let dist = if let Some(h) = &c.histogram {
            sparkline(&h.counts)
        } else {
            c.top
                .iter()
                .take(4)
                .map(|(v, n)| format!("{v} ({})", thousands(*n as i64)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        t.add_row(vec![
            Cell::new(&c.name),
            Cell::new(c.ty),
            Cell::new(if c.nulls == 0 {
                "0".to_string()
            } else {
                format!("{} ({null_pct:.1}%)", thousands(c.nulls as i64))
            }),
            Cell::new(thousands(c.distinct as i64)),
            Cell::new(c.min.as_ref().map(value).unwrap_or_default()),
            Cell::new(p50),
            Cell::new(c.max.as_ref().map(value).unwrap_or_default()),
            Cell::new(c.mean.map(num).unwrap_or_default()),
            Cell::new(c.std.map(num).unwrap_or_default()),
            Cell::new(dist),
        ]);
    }
    println!("{t}");
    Ok(ExitStatus::Success)
}

async fn diff(
    project: &Project,
    a: &str,
    b: &str,
    key: Option<Vec<String>>,
    p: Printer,
) -> anyhow::Result<ExitStatus> {
    let va = resolve(project, a).await?;
    let vb = resolve(project, b).await?;
    let d = project.diff(&va, &vb, key).await?;
    if p.json {
        p.json(&d);
        return Ok(ExitStatus::Success);
    }
    print_diff(&va, &vb, &d);
    Ok(ExitStatus::Success)
}

fn print_diff(va: &VersionRecord, vb: &VersionRecord, d: &VersionDiff) {
    println!(
        "{}@{} → {}@{}",
        va.dataset,
        va.id.short(),
        vb.dataset,
        vb.id.short()
    );
    let rc = |r: Option<i64>| r.map_or("-".to_string(), thousands);
    let delta = match (d.rows_a, d.rows_b) {
        (Some(x), Some(y)) => format!(" ({}{})", if y >= x { "+" } else { "" }, thousands(y - x)),
        _ => String::new(),
    };
    println!("rows: {} → {}{delta}", rc(d.rows_a), rc(d.rows_b));
    if d.a == d.b {
        println!("identical versions");
        return;
    }
    if d.schema_changes.is_empty() {
        println!("schema: unchanged");
    } else {
        println!("\nschema changes:");
        for c in &d.schema_changes {
            match c {
                SchemaChange::Added { column, ty } => println!("  + {column} ({ty})"),
                SchemaChange::Removed { column, ty } => println!("  - {column} ({ty})"),
                SchemaChange::TypeChanged { column, from, to } => {
                    println!("  ~ {column}: {from} → {to}")
                }
            }
        }
    }
    // Show shifts a person should look at: bounds and nulls whenever they
    // move, the rest from 1 % relative change; `--json` has them all.
    let notable: Vec<_> = d
        .stat_shifts
        .iter()
        .filter(|s| match (s.stat, s.a, s.b) {
            ("min" | "max" | "null %", _, _) => true,
            (_, Some(x), Some(y)) => x == 0.0 || ((y - x) / x).abs() >= 0.01,
            _ => true,
        })
        .collect();
    if !notable.is_empty() {
        println!("\nstatistics that changed:");
        let mut t = table(&["column", "statistic", "before", "after", "change"]);
        for s in &notable {
            let change = match (s.a, s.b) {
                (Some(x), Some(y)) if x != 0.0 && !matches!(s.stat, "min" | "max") => {
                    format!("{:+.1}%", 100.0 * (y - x) / x.abs())
                }
                (Some(x), Some(y)) => format!("{:+}", num(y - x)),
                _ => String::new(),
            };
            t.add_row(vec![
                s.column.clone(),
                s.stat.to_string(),
                s.a.map(num).unwrap_or_default(),
                s.b.map(num).unwrap_or_default(),
                change,
            ]);
        }
        println!("{t}");
    }
    if notable.len() < d.stat_shifts.len() {
        println!(
            "({} smaller shifts under 1 % not shown; --json lists all)",
            d.stat_shifts.len() - notable.len()
        );
    }
    match &d.rows {
        Some(r) => {
            println!(
                "\nrows by key ({}): {} added, {} removed, {} changed, {} unchanged",
                r.key.join(", "),
                thousands(r.added as i64),
                thousands(r.removed as i64),
                thousands(r.changed as i64),
                thousands(r.unchanged as i64)
            );
            for k in &r.added_examples {
                println!("  + {k}");
            }
            for k in &r.removed_examples {
                println!("  - {k}");
            }
            for (k, cols) in &r.changed_examples {
                println!("  ~ {k}: {}", cols.join("; "));
            }
        }
        None => println!(
            "\n(rows not compared: declare `key:` for the dataset in kiln.yaml or pass --key)"
        ),
    }
}

fn print_report(v: &VersionRecord, r: &CheckReport) {
    println!(
        "checks on {}@{} ({} rows)",
        v.dataset,
        v.id.short(),
        thousands(r.rows as i64)
    );
    let mut t = table(&["", "check", "failing rows", "observed"]);
    for c in &r.results {
        t.add_row(vec![
            if c.passed { "pass" } else { "FAIL" }.to_string(),
            c.name.clone(),
            if c.failing_rows == 0 {
                String::new()
            } else {
                thousands(c.failing_rows as i64)
            },
            c.observed.clone(),
        ]);
    }
    println!("{t}");
    print_failures(r);
    println!(
        "{}: {} passed, {} failed",
        if r.passed { "passed" } else { "FAILED" },
        r.results.len() - r.failed(),
        r.failed()
    );
}

fn print_failures(r: &CheckReport) {
    for c in r
        .results
        .iter()
        .filter(|c| !c.passed && !c.examples.is_empty())
    {
        println!("{} — first failing rows:", c.name);
        for (row, v) in &c.examples {
            println!("  row {}: {v}", thousands(*row as i64));
        }
    }
}

/// `2026-11-26T12:00:00.123456Z` as `2026-11-26 12:00:00`.
fn short_time(t: &str) -> String {
    t.get(..19)
        .map_or_else(|| t.to_string(), |s| s.replace('T', " "))
}
