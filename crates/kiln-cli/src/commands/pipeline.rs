//! `kiln gate`.

use kiln_pipeline::gate::{self, GateSpec, Outcome};
use kiln_pipeline::junit;
use kiln_project::Project;

use crate::ExitStatus;
use crate::cli::GateArgs;
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
