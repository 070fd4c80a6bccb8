//! `kiln explain`: SHAP values, permutation importance and partial
//! dependence for a kiln or imported model, as a table, JSON or an HTML
//! page.

use anyhow::{Context, bail};
use kiln_explain::report::{Explanation, Method, short};
use kiln_explain::{Choice, Options, Subject};
use kiln_project::Project;

use crate::ExitStatus;
use crate::cli::ExplainArgs;
use crate::commands::monitor::write_atomically;
use crate::output::{Printer, table, thousands};
use kiln_core::Progress;

pub async fn explain(
    project: &Project,
    args: ExplainArgs,
    p: Printer,
) -> anyhow::Result<ExitStatus> {
    let choice = match args.method.as_str() {
        "auto" => Choice::Auto,
        "interventional" => Choice::Interventional,
        "permutation" => Choice::Permutation,
        other => {
            bail!("`--method {other}` is not a method: use auto, interventional or permutation")
        }
    };
    if args.background == Some(0) {
        bail!("`--background 0`: the background sample needs rows; the default is 100");
    }
    if args.permutations == 0 {
        bail!("`--permutations 0`: permutation SHAP needs at least one pair; the default is 4");
    }
    if args.sample == 0 {
        bail!("`--sample 0`: explain at least one row; the default is 1000");
    }
    let options = Options {
        choice,
        class: args.class.clone(),
        background: args.background,
        permutations: args.permutations,
        rows: args.sample,
        local: args.rows.clone(),
        repeats: args.repeats,
        ..Options::default()
    };
    let imported = project.load_imported(&args.model).await?;
    let kiln_model = match imported {
        Some(_) => None,
        None => Some(project.load_model(&args.model).await?),
    };
    let data = match (&args.data, &kiln_model) {
        (Some(d), _) => d.clone(),
        (None, Some(m)) => match &m.training.dataset {
            Some(d) => d.clone(),
            None => bail!(
                "the model does not record the dataset it was trained on: give the rows to explain, e.g. `kiln explain {} data.csv`",
                args.model
            ),
        },
        (None, None) => bail!(
            "an imported model needs rows to explain: `kiln explain {} data.csv`",
            args.model
        ),
    };
    let (batches, label) = project.read_table(&data).await?;
    let subject = match (&imported, &kiln_model) {
        (Some(m), _) => Subject::Imported(m),
        (None, Some(m)) => Subject::Kiln(m),
        (None, None) => unreachable!("one model was loaded"),
    };
    let bar = p.progress();
    bar.start(&format!("explaining {}", args.model), None);
    let explanation = tokio::task::block_in_place(|| {
        kiln_explain::explain(subject, &args.model, &batches, &options)
    })
    .map_err(|e| anyhow::anyhow!("Cannot explain `{}` on {label}: {e}", args.model))?;
    bar.finish();
    if let Some(out) = &args.html {
        let page = kiln_explain::html::page(&explanation);
        write_atomically(out, page.as_bytes())
            .with_context(|| format!("Failed to write the report to `{}`", out.display()))?;
    }
    if p.json {
        p.json(&serde_json::json!({ "data": label, "explanation": explanation }));
    } else {
        print_explanation(&explanation, &label, args.top, p);
        if let Some(out) = &args.html {
            p.note(format!("Wrote the report to {}", out.display()));
        }
    }
    Ok(ExitStatus::Success)
}

fn method_words(m: Method) -> &'static str {
    match m {
        Method::TreePathDependent => "exact TreeSHAP (path-dependent)",
        Method::TreeInterventional => "exact TreeSHAP (interventional)",
        Method::Linear => "exact linear SHAP",
        Method::Permutation => "permutation SHAP (estimate)",
    }
}

fn print_explanation(e: &Explanation, label: &str, top: usize, p: Printer) {
    if let Some(note) = &e.method_note {
        p.note(format!("note: {note}"));
    }
    p.note(format!(
        "{} of `{}` on {} rows of {label}{}; attributions are on the {} and start from E[f(x)] = {}",
        method_words(e.method),
        e.model,
        thousands(e.rows as i64),
        e.background_rows
            .map(|b| format!(" against {b} background rows"))
            .unwrap_or_default(),
        e.output.name,
        short(e.expected_value),
    ));
    let mut header = vec!["#", "column", "mean |SHAP|", "mean SHAP"];
    if e.permutation.is_some() {
        header.push("permutation Δ");
    }
    let mut t = table(&header);
    for (i, c) in e.columns.iter().take(top.max(1)).enumerate() {
        let mut row = vec![
            (i + 1).to_string(),
            c.column.clone(),
            short(c.mean_abs),
            short(c.mean),
        ];
        if let Some(pi) = &e.permutation {
            row.push(
                pi.columns
                    .iter()
                    .find(|x| x.column == c.column)
                    .map(|x| format!("{} ± {}", short(x.mean), short(x.std)))
                    .unwrap_or_default(),
            );
        }
        t.add_row(row);
    }
    println!("{t}");
    if e.columns.len() > top {
        p.note(format!(
            "{} more columns in --json and --html",
            e.columns.len() - top
        ));
    }
    if let Some(pi) = &e.permutation {
        p.note(format!(
            "permutation Δ: how much {} worsens when the column is shuffled ({} repeats on {} labelled rows; unshuffled {})",
            pi.metric,
            pi.repeats,
            thousands(pi.rows as i64),
            short(pi.baseline)
        ));
    }
    if !e.interactions.is_empty() {
        let pairs: Vec<String> = e
            .interactions
            .iter()
            .take(3)
            .map(|i| format!("{} × {} ({})", i.a, i.b, short(i.mean_abs)))
            .collect();
        p.note(format!("strongest interactions: {}", pairs.join(", ")));
    }
    for l in &e.local {
        println!();
        println!(
            "Row {}: {} — output {} = E[f(x)] {} + Σ {}",
            l.row,
            l.prediction,
            short(l.output),
            short(e.expected_value),
            short(l.output - e.expected_value)
        );
        let mut t = table(&["column", "value", "SHAP"]);
        for c in l.contributions.iter().take(top.max(1)) {
            t.add_row(vec![c.column.clone(), c.value.to_string(), signed(c.shap)]);
        }
        println!("{t}");
    }
    for n in &e.notes {
        p.note(format!("note: {n}"));
    }
}

/// A number with its sign: `+1.25`, `-0.5`.
fn signed(v: f64) -> String {
    if v >= 0.0 {
        format!("+{}", short(v))
    } else {
        short(v)
    }
}
