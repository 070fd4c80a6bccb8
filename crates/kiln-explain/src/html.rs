//! The HTML page of an [`Explanation`]: `kiln explain --html OUT`.
//!
//! One self-contained file in the manner of the `shap` package's plots:
//! global importance (mean |SHAP|), the beeswarm summary, dependence plots,
//! partial dependence with ICE curves, permutation importance, the strongest
//! interactions, one waterfall per explained row, a plain-words account of
//! the method and a table of every column. Charts come from [`kiln_html`],
//! which escapes every text and never writes `NaN` into the document.

use std::collections::HashMap;

use kiln_html::{self as html, BeeRow, Page, Tone, XAxis};

use crate::report::{
    ColumnKind, ColumnSummary, Explanation, Local, Method, PermutationImportance, Point, Value,
    short,
};

/// Columns in the importance chart and the summary plot.
const TOP_COLUMNS: usize = 20;
/// Columns with a dependence plot.
const DEPENDENCE_COLUMNS: usize = 6;
/// Contributions a waterfall shows one by one; the rest are summed in one step.
const WATERFALL_STEPS: usize = 10;
/// Categories a categorical dependence plot shows; rarer ones become "(other)".
const MAX_CATEGORIES: usize = 12;
/// Pairs in the interactions table.
const TOP_INTERACTIONS: usize = 20;

/// A self-contained HTML page for `e`: cards, a warning when
/// [`Explanation::method_note`] is set, then one section per part of the
/// explanation (optional parts only when present), the method in plain words
/// and a table of all columns.
pub fn page(e: &Explanation) -> String {
    let mut page = Page::new(&format!("Explanation: {}", e.model), &subtitle(e));
    page.brand("kiln explain");
    page.card("Method", method_card(e.method), exact_tone(e.method));
    page.card("Rows explained", &thousands(e.rows), Tone::Neutral);
    if let Some(rows) = e.background_rows {
        page.card("Background rows", &thousands(rows), Tone::Neutral);
    }
    page.card(
        "Expected value E[f(x)]",
        &number(e.expected_value),
        Tone::Neutral,
    );
    if let Some(top) = e.columns.first() {
        page.card("Top column", &top.column, Tone::Neutral);
    }
    if let Some(note) = &e.method_note {
        page.section("", html::callout(Tone::Warn, "Note on the method:", note));
    }
    page.section("Global importance", global_importance(e));
    page.section("Summary", summary(e));
    page.section("Dependence", dependence(e));
    if !e.dependence.is_empty() {
        page.section("Partial dependence", partial_dependence(e));
    }
    if let Some(p) = &e.permutation {
        page.section("Permutation importance", permutation(p));
    }
    if !e.interactions.is_empty() {
        page.section("Interactions", interactions(e));
    }
    if !e.local.is_empty() {
        page.section("Local explanations", local(e));
    }
    page.section("Method", method(e));
    page.section("All columns", all_columns(e));
    page.render()
}

/// "exact TreeSHAP (path-dependent) on the raw score, 1,000 rows".
fn subtitle(e: &Explanation) -> String {
    let mut s = format!(
        "{} on the {}, {}",
        method_phrase(e.method),
        e.output.name,
        rows_text(e.rows)
    );
    if let Some(background) = e.background_rows {
        s.push_str(&format!(
            ", against {} of background",
            rows_text(background)
        ));
    }
    s
}

fn method_phrase(method: Method) -> &'static str {
    match method {
        Method::TreePathDependent => "exact TreeSHAP (path-dependent)",
        Method::TreeInterventional => "exact TreeSHAP (interventional)",
        Method::Linear => "exact linear SHAP",
        Method::Permutation => "permutation SHAP (estimated)",
    }
}

fn method_card(method: Method) -> &'static str {
    match method {
        Method::TreePathDependent | Method::TreeInterventional => "Exact TreeSHAP",
        Method::Linear => "Exact linear SHAP",
        Method::Permutation => "Estimated (permutation)",
    }
}

/// Exact values are good news; estimates carry noise.
fn exact_tone(method: Method) -> Tone {
    if method.exact() {
        Tone::Good
    } else {
        Tone::Warn
    }
}

fn global_importance(e: &Explanation) -> String {
    let top = &e.columns[..e.columns.len().min(TOP_COLUMNS)];
    let labels: Vec<String> = top.iter().map(|c| c.column.clone()).collect();
    let values: Vec<f64> = top.iter().map(|c| c.mean_abs).collect();
    let mut body = paragraph(&format!(
        "Mean |SHAP| over the {} explained: how far each column moves the {} away from \
         E[f(x)] on average, in the output's units.",
        rows_text(e.rows),
        e.output.name
    ));
    body.push_str(&html::grid(&[html::bar_chart(
        "Mean |SHAP| per column",
        &labels,
        &values,
        None,
    )]));
    body.push_str(&more_columns(e.columns.len()));
    body
}

fn summary(e: &Explanation) -> String {
    let rows: Vec<BeeRow> = e
        .columns
        .iter()
        .take(TOP_COLUMNS)
        .map(|c| BeeRow {
            label: c.column.clone(),
            points: c.points.iter().map(|p| p.shap).zip(colours(c)).collect(),
        })
        .collect();
    let mut body = paragraph(&format!(
        "One dot per explained row and column, at its SHAP value: right of the line raises \
         the {}, left lowers it. The colour is the column's value in that row, from low \
         (blue) to high (red) within the column, clipped to its 5th and 95th percentiles; \
         categories and missing values are grey.",
        e.output.name
    ));
    body.push_str(&html::grid(&[html::beeswarm("SHAP value per row", &rows)]));
    body.push_str(&more_columns(e.columns.len()));
    body
}

/// "Showing the top 20 of 31 columns…", when some are left out.
fn more_columns(columns: usize) -> String {
    if columns <= TOP_COLUMNS {
        return String::new();
    }
    muted(&format!(
        "Showing the top {TOP_COLUMNS} of {columns} columns; all are in the table at the end."
    ))
}

fn dependence(e: &Explanation) -> String {
    if e.columns.is_empty() {
        return muted("No columns to show.");
    }
    let charts: Vec<String> = e
        .columns
        .iter()
        .take(DEPENDENCE_COLUMNS)
        .map(|c| dependence_chart(e, c))
        .collect();
    let mut body = paragraph(
        "Each column's value in each explained row against its SHAP value there. A trend \
         shows how the model uses the column; a vertical spread at one value shows that \
         other columns change its effect. A numeric column is coloured by the column it \
         interacts with most, when that one is numeric; rows missing the value are left out.",
    );
    body.push_str(&html::grid(&charts));
    body
}

fn dependence_chart(e: &Explanation, c: &ColumnSummary) -> String {
    let y_label = format!("SHAP value for {}", c.column);
    match c.kind {
        ColumnKind::Numeric => {
            let partner = partner(e, c);
            let colours = partner.map_or_else(|| vec![None; c.points.len()], colours);
            let points: Vec<(f64, f64, Option<f64>)> = c
                .points
                .iter()
                .zip(colours)
                .filter_map(|(p, colour)| Some((p.value.as_number()?, p.shap, colour)))
                .collect();
            let title = match partner {
                Some(p) => format!("{} (colour: {})", c.column, p.column),
                None => c.column.clone(),
            };
            html::scatter(&title, &c.column, &y_label, &points)
        }
        ColumnKind::Categorical => {
            let (categories, points) = categorise(&c.points);
            html::category_scatter(&c.column, &y_label, &categories, &points)
        }
    }
}

/// The numeric column that interacts most with `c`, with one point per row
/// like `c`, to colour its dependence plot by.
fn partner<'a>(e: &'a Explanation, c: &ColumnSummary) -> Option<&'a ColumnSummary> {
    let other = e.interactions.iter().find_map(|i| {
        if i.a == c.column && i.b != c.column {
            Some(&i.b)
        } else if i.b == c.column && i.a != c.column {
            Some(&i.a)
        } else {
            None
        }
    })?;
    e.columns.iter().find(|p| {
        p.column == *other && p.kind == ColumnKind::Numeric && p.points.len() == c.points.len()
    })
}

/// The categories of a column's points, most frequent first (ties by name;
/// beyond [`MAX_CATEGORIES`] the rarest are grouped as "(other)"), and each
/// point as (category index, SHAP value).
fn categorise(points: &[Point]) -> (Vec<String>, Vec<(usize, f64)>) {
    let names: Vec<String> = points.iter().map(|p| value_text(&p.value)).collect();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for name in &names {
        *counts.entry(name).or_default() += 1;
    }
    let mut categories: Vec<(&str, usize)> = counts.into_iter().collect();
    categories.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let mut shown: Vec<String> = categories.iter().map(|(c, _)| c.to_string()).collect();
    if shown.len() > MAX_CATEGORIES {
        shown.truncate(MAX_CATEGORIES - 1);
        shown.push("(other)".to_owned());
    }
    // Names missing from `shown` were grouped, so "(other)" is the last one.
    let other = shown.len().saturating_sub(1);
    let index: HashMap<&str, usize> = shown
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), i))
        .collect();
    let points = names
        .iter()
        .zip(points)
        .map(|(name, p)| (index.get(name.as_str()).copied().unwrap_or(other), p.shap))
        .collect();
    (shown, points)
}

fn partial_dependence(e: &Explanation) -> String {
    let charts: Vec<String> = e
        .dependence
        .iter()
        .map(|d| match d.kind {
            ColumnKind::Numeric => {
                let grid: Vec<f64> = d
                    .grid
                    .iter()
                    .map(|v| v.as_number().unwrap_or(f64::NAN))
                    .collect();
                html::curves(
                    &d.column,
                    "prediction",
                    XAxis::Numbers(&grid),
                    &d.average,
                    &d.ice,
                )
            }
            ColumnKind::Categorical => {
                let grid: Vec<String> = d.grid.iter().map(value_text).collect();
                html::curves(
                    &d.column,
                    "prediction",
                    XAxis::Labels(&grid),
                    &d.average,
                    &d.ice,
                )
            }
        })
        .collect();
    let mut body = paragraph(
        "Each thin line is one sampled row with the column set to each value on the x axis \
         and everything else unchanged (individual conditional expectation, ICE); the thick \
         line is their average, the partial dependence. Parallel thin lines mean the column \
         acts on its own; lines that cross mean its effect depends on other columns.",
    );
    body.push_str(&html::grid(&charts));
    body
}

fn permutation(p: &PermutationImportance) -> String {
    let direction = if p.larger_is_better {
        "larger is better"
    } else {
        "smaller is better"
    };
    let top = &p.columns[..p.columns.len().min(TOP_COLUMNS)];
    let labels: Vec<String> = top.iter().map(|c| c.column.clone()).collect();
    let means: Vec<f64> = top.iter().map(|c| c.mean).collect();
    let stds: Vec<f64> = top.iter().map(|c| c.std).collect();
    let mut body = paragraph(&format!(
        "How much {metric} worsens when one column's values are shuffled, on {rows} with \
         labels: the baseline {metric} is {baseline} ({direction}), and each column was \
         shuffled {repeats} {times}. Bars show the mean worsening, whiskers one standard \
         deviation either side. A column near zero is one the model does not need.",
        metric = p.metric,
        rows = rows_text(p.rows),
        baseline = number(p.baseline),
        repeats = p.repeats,
        times = if p.repeats == 1 { "time" } else { "times" },
    ));
    body.push_str(&html::grid(&[html::bar_chart_with_error(
        &format!("Worsening of {} when shuffled", p.metric),
        &labels,
        &means,
        &stds,
    )]));
    body.push_str(&more_columns(p.columns.len()));
    body
}

fn interactions(e: &Explanation) -> String {
    let rows: Vec<Vec<String>> = e
        .interactions
        .iter()
        .take(TOP_INTERACTIONS)
        .map(|i| {
            vec![
                html::escape(&i.a),
                html::escape(&i.b),
                html::escape(&number(i.mean_abs)),
            ]
        })
        .collect();
    let mut body = paragraph(
        "Mean |SHAP interaction value| of the strongest pairs of columns: how much of their \
         effect on the output comes from the two together rather than each on its own.",
    );
    body.push_str(&html::table(
        &["column", "with", "mean |interaction|"],
        &rows,
        &[false, false, true],
    ));
    body
}

fn local(e: &Explanation) -> String {
    let charts: Vec<String> = e
        .local
        .iter()
        .map(|l| {
            html::waterfall(
                &format!("Row {}: prediction {}", l.row, l.prediction),
                e.expected_value,
                &waterfall_steps(l),
                l.output,
            )
        })
        .collect();
    let mut body = paragraph(&format!(
        "Each chart starts at E[f(x)] = {}, the average {}, and adds one column's SHAP value \
         per bar to reach f(x), the row's own. Red bars raise it, blue bars lower it; the \
         {WATERFALL_STEPS} largest are shown and the rest summed. Rows are numbered from 0.",
        number(e.expected_value),
        e.output.name
    ));
    body.push_str(&html::grid(&charts));
    body
}

/// The waterfall of one row: its largest contributions by |SHAP| ("temp =
/// 31.2"), then one step summing the others, unless only one is left.
fn waterfall_steps(l: &Local) -> Vec<(String, f64)> {
    // Non-finite values go last rather than first.
    let magnitude = |v: f64| if v.is_finite() { v.abs() } else { -1.0 };
    let mut contributions: Vec<_> = l.contributions.iter().collect();
    contributions.sort_by(|a, b| magnitude(b.shap).total_cmp(&magnitude(a.shap)));
    let shown = if contributions.len() > WATERFALL_STEPS + 1 {
        WATERFALL_STEPS
    } else {
        contributions.len()
    };
    let (top, rest) = contributions.split_at(shown);
    let mut steps: Vec<(String, f64)> = top
        .iter()
        .map(|c| (format!("{} = {}", c.column, value_text(&c.value)), c.shap))
        .collect();
    if !rest.is_empty() {
        let sum = rest.iter().map(|c| c.shap).filter(|v| v.is_finite()).sum();
        steps.push((format!("{} other columns", rest.len()), sum));
    }
    steps
}

fn method(e: &Explanation) -> String {
    let output = &e.output.name;
    let mut body = paragraph(&format!(
        "A SHAP value is how much one column moved one row's output away from the average \
         output E[f(x)] = {}. They add up: E[f(x)] plus the sum of a row's SHAP values is \
         f(x), the model's {output} for that row. Positive values push it up, negative ones \
         down, and all are in the units of the {output}.",
        number(e.expected_value)
    ));
    let background = e
        .background_rows
        .map_or_else(|| "a background sample".to_owned(), rows_text);
    body.push_str(&paragraph(&match e.method {
        Method::TreePathDependent => "Path-dependent TreeSHAP computes exact Shapley values \
             from the trees alone: when a column is left out, the row goes down both branches \
             of every split on it, weighted by how much training data went each way (rows, or \
             XGBoost's hessian cover). It needs \
             no background sample, but correlated columns can share credit in ways that \
             follow the training data."
            .to_owned(),
        Method::TreeInterventional => format!(
            "Interventional TreeSHAP computes exact Shapley values against {background}: \
             leaving a column out means giving it a background row's value instead, averaged \
             over the background. Columns are treated as independent of each other."
        ),
        Method::Linear => format!(
            "For a linear model, a column's SHAP value is its weight times how far the row's \
             encoded input is from the mean of {background}: exact, with the columns treated \
             as independent."
        ),
        Method::Permutation => format!(
            "Permutation SHAP estimates Shapley values for any model: it adds the columns to \
             a row one at a time in random orders (each with its reverse), taking the columns \
             not yet added from {background}, and credits each column with the change it \
             makes. The values add up exactly, but each is an estimate with some noise."
        ),
    }));
    if e.permutation.is_some() {
        body.push_str(&paragraph(
            "Permutation importance answers another question: how much worse the model \
             scores when a column's values are shuffled, so it shows what the model needs to \
             be accurate rather than how it uses a column for a given row.",
        ));
    }
    if !e.notes.is_empty() {
        body.push_str("<ul>");
        for note in &e.notes {
            body.push_str(&format!("<li>{}</li>", html::escape(note)));
        }
        body.push_str("</ul>");
    }
    body
}

fn all_columns(e: &Explanation) -> String {
    let worsening: HashMap<&str, f64> = e
        .permutation
        .iter()
        .flat_map(|p| &p.columns)
        .map(|c| (c.column.as_str(), c.mean))
        .collect();
    let mut headers = vec!["column", "kind", "mean |SHAP|", "mean SHAP"];
    let mut numeric = vec![false, false, true, true];
    if e.permutation.is_some() {
        headers.push("permutation worsening");
        numeric.push(true);
    }
    let rows: Vec<Vec<String>> = e
        .columns
        .iter()
        .map(|c| {
            let kind = match c.kind {
                ColumnKind::Numeric => "numeric",
                ColumnKind::Categorical => "categorical",
            };
            let mut row = vec![
                html::escape(&c.column),
                html::escape(kind),
                html::escape(&number(c.mean_abs)),
                html::escape(&number(c.mean)),
            ];
            if e.permutation.is_some() {
                let w = worsening.get(c.column.as_str()).copied();
                row.push(html::escape(&w.map_or_else(String::new, number)));
            }
            row
        })
        .collect();
    html::table(&headers, &rows, &numeric)
}

/// Each point's value scaled to 0..1 for colouring, as the `shap` package
/// does: between the column's 5th and 95th percentiles, clipped (or its
/// minimum and maximum when those are equal; 0.5 when the column is
/// constant). `None` for categories and missing values.
fn colours(c: &ColumnSummary) -> Vec<Option<f64>> {
    if c.kind == ColumnKind::Categorical {
        return vec![None; c.points.len()];
    }
    let mut sorted: Vec<f64> = c
        .points
        .iter()
        .filter_map(|p| p.value.as_number())
        .collect();
    sorted.sort_by(f64::total_cmp);
    let Some((&min, &max)) = sorted.first().zip(sorted.last()) else {
        return vec![None; c.points.len()];
    };
    let quantile = |q: f64| sorted[(q * (sorted.len() - 1) as f64).round() as usize];
    let (lo, hi) = match (quantile(0.05), quantile(0.95)) {
        (lo, hi) if lo < hi => (lo, hi),
        _ => (min, max),
    };
    c.points
        .iter()
        .map(|p| {
            let v = p.value.as_number()?;
            Some(if lo < hi {
                ((v - lo) / (hi - lo)).clamp(0.0, 1.0)
            } else {
                0.5
            })
        })
        .collect()
}

/// A cell's value for a label: a non-finite number reads "n/a", not "NaN".
fn value_text(v: &Value) -> String {
    match v {
        Value::Number(n) if !n.is_finite() => "n/a".to_owned(),
        v => v.to_string(),
    }
}

/// A number for text: [`short`], with tiny values in exponent notation and
/// non-finite ones as "n/a".
fn number(v: f64) -> String {
    if !v.is_finite() {
        "n/a".to_owned()
    } else if v != 0.0 && v.abs() < 1e-3 {
        format!("{v:.2e}")
    } else {
        short(v)
    }
}

/// "1 row", "1,000 rows".
fn rows_text(n: usize) -> String {
    format!("{} {}", thousands(n), if n == 1 { "row" } else { "rows" })
}

/// `1234567` as "1,234,567".
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

fn paragraph(text: &str) -> String {
    format!("<p>{}</p>", html::escape(text))
}

fn muted(text: &str) -> String {
    format!("<p class=\"muted\">{}</p>", html::escape(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{
        Contribution, Dependence, Importance, Interaction, Output, PermutationImportance,
    };

    const EVIL: &str = "<b>&amp";

    fn point(value: Value, shap: f64) -> Point {
        Point { value, shap }
    }

    fn sample() -> Explanation {
        let temp: Vec<Point> = (0..40)
            .map(|i| match i {
                3 => point(Value::Missing, 0.1),
                5 => point(Value::Number(20.0), f64::NAN),
                i => point(Value::Number(i as f64), (i as f64 - 20.0) / 10.0),
            })
            .collect();
        let city: Vec<Point> = (0..40)
            .map(|i| point(Value::Text(["paris", "oslo", "rome"][i % 3].into()), 0.05))
            .collect();
        let hour: Vec<Point> = (0..40)
            .map(|i| point(Value::Number((i % 24) as f64), -0.01 * i as f64))
            .collect();
        let column = |name: &str, kind, mean_abs, points| ColumnSummary {
            column: name.to_owned(),
            kind,
            mean_abs,
            mean: -mean_abs / 2.0,
            points,
        };
        Explanation {
            model: "bikes@3".to_owned(),
            method: Method::Permutation,
            method_note: Some("`knn` models have no exact method <yet>".to_owned()),
            output: Output {
                name: "predicted `count`".to_owned(),
                class: None,
            },
            expected_value: 12.5,
            rows: 1234,
            background_rows: Some(100),
            columns: vec![
                column("temp", ColumnKind::Numeric, 1.1, temp),
                column(EVIL, ColumnKind::Categorical, 0.05, city),
                column("hour", ColumnKind::Numeric, 0.2, hour),
            ],
            local: vec![Local {
                row: 7,
                output: 14.0,
                prediction: "14".to_owned(),
                contributions: vec![
                    Contribution {
                        column: "temp".to_owned(),
                        value: Value::Number(31.2),
                        shap: 1.7,
                    },
                    Contribution {
                        column: EVIL.to_owned(),
                        value: Value::Text("oslo".to_owned()),
                        shap: -0.3,
                    },
                    Contribution {
                        column: "hour".to_owned(),
                        value: Value::Number(f64::NAN),
                        shap: 0.1,
                    },
                ],
            }],
            permutation: Some(PermutationImportance {
                metric: "rmse".to_owned(),
                larger_is_better: false,
                baseline: 3.2,
                repeats: 5,
                rows: 500,
                columns: vec![
                    Importance {
                        column: "temp".to_owned(),
                        mean: 2.5,
                        std: 0.3,
                    },
                    Importance {
                        column: EVIL.to_owned(),
                        mean: 0.1,
                        std: f64::NAN,
                    },
                ],
            }),
            dependence: vec![
                Dependence {
                    column: "temp".to_owned(),
                    kind: ColumnKind::Numeric,
                    grid: vec![Value::Number(0.0), Value::Number(20.0), Value::Number(40.0)],
                    average: vec![10.0, 12.0, f64::NAN],
                    ice: vec![vec![9.0, 11.0, 15.0], vec![11.0, 13.0, 14.0]],
                },
                Dependence {
                    column: EVIL.to_owned(),
                    kind: ColumnKind::Categorical,
                    grid: vec![Value::Text("oslo".into()), Value::Text("paris".into())],
                    average: vec![12.0, 13.0],
                    ice: vec![vec![11.0, 14.0]],
                },
            ],
            interactions: vec![Interaction {
                a: "hour".to_owned(),
                b: "temp".to_owned(),
                mean_abs: 0.04,
            }],
            notes: vec!["Explained 1,234 of 50,000 rows, sampled.".to_owned()],
        }
    }

    /// Every `<svg>…</svg>` of the page.
    fn svgs(html: &str) -> Vec<&str> {
        html.split("<svg")
            .skip(1)
            .map(|s| &s[..s.find("</svg>").expect("closed svg")])
            .collect()
    }

    #[test]
    fn page_shows_every_part_of_the_explanation() {
        let html = page(&sample());
        for text in [
            "<title>Explanation: bikes@3</title>",
            "permutation SHAP (estimated) on the predicted `count`, 1,234 rows, against 100 \
             rows of background",
            "<div class=\"callout warn\"><strong>Note on the method:</strong> `knn` models \
             have no exact method &lt;yet&gt;</div>",
            "<div class=\"card warn\"><div class=\"label\">Method</div>\
             <div class=\"value\">Estimated (permutation)</div>",
            ">Top column</div><div class=\"value\">temp</div>",
            "temp (colour: hour)",
            "Row 7: prediction 14",
            "temp = 31.2",
            "hour = n/a",
            "on 500 rows with labels: the baseline rmse is 3.2 (smaller is better), and \
             each column was shuffled 5 times",
            ">2.5 ± 0.3</text>",
            "<li>Explained 1,234 of 50,000 rows, sampled.</li>",
            "<th class=\"num\">permutation worsening</th>",
        ] {
            assert!(html.contains(text), "{text:?} missing");
        }
        let at = |s: &str| html.find(s).unwrap_or_else(|| panic!("{s} missing"));
        let headings = [
            "Global importance",
            "Summary",
            "Dependence",
            "Partial dependence",
            "Permutation importance",
            "Interactions",
            "Local explanations",
            "Method",
            "All columns",
        ]
        .map(|h| at(&format!("<h2>{h}</h2>")));
        assert!(headings.is_sorted(), "sections in order");
        assert!(at("callout warn") < headings[0], "the note comes first");
        for column in ["temp", "hour", "&lt;b&gt;&amp;amp"] {
            assert!(html.contains(&format!("<td>{column}</td>")), "{column} row");
        }
        assert!(!html.contains(EVIL), "unescaped column name");
        assert!(!html.contains("NaN"));
        for svg in svgs(&html) {
            assert!(!svg.contains("inf"), "{svg}");
        }
    }

    #[test]
    fn page_of_nothing_renders_placeholders() {
        let mut e = sample();
        e.method = Method::TreePathDependent;
        e.method_note = None;
        e.rows = 0;
        e.background_rows = None;
        e.columns.clear();
        e.local.clear();
        e.permutation = None;
        e.dependence.clear();
        e.interactions.clear();
        e.notes.clear();
        let html = page(&e);
        assert!(html.contains("exact TreeSHAP (path-dependent) on the predicted `count`, 0 rows"));
        assert!(html.contains("<div class=\"card good\">"));
        assert_eq!(
            html.matches("<div class=\"nodata\">No data</div>").count(),
            2
        );
        assert!(html.contains("No columns to show."));
        assert!(html.contains("No rows</td>"));
        assert!(!html.contains("class=\"callout"));
        for absent in [
            "Partial dependence",
            "Permutation importance",
            "Local explanations",
        ] {
            assert!(!html.contains(&format!("<h2>{absent}</h2>")), "{absent}");
        }

        // The stored summary has no points: still no panic.
        let summary = page(&sample().summary());
        assert!(summary.contains("<h2>Summary</h2>"));
    }

    #[test]
    fn waterfall_sums_all_but_the_largest_contributions() {
        let contribution = |i: usize, shap: f64| Contribution {
            column: format!("c{i}"),
            value: Value::Number(i as f64),
            shap,
        };
        let mut contributions: Vec<Contribution> = (0..14)
            .map(|i| contribution(i, 0.5 - i as f64 / 10.0))
            .collect();
        contributions.push(contribution(14, f64::NAN));
        let l = Local {
            row: 0,
            output: 0.0,
            prediction: "0".to_owned(),
            contributions,
        };
        let steps = waterfall_steps(&l);
        assert_eq!(steps.len(), WATERFALL_STEPS + 1);
        // Largest |shap| first: -0.8 (c13), -0.7 (c12), …, 0.2 (c3).
        assert_eq!(steps[0].0, "c13 = 13");
        assert_eq!(steps[1].0, "c12 = 12");
        assert_eq!(steps[9].0, "c3 = 3");
        assert_eq!(steps[10].0, "5 other columns");
        // The rest: c7 (-0.2), c4 (0.1), c6 (-0.1), c5 (0) and the NaN.
        assert!((steps[10].1 + 0.2).abs() < 1e-12, "{steps:?}");

        // Eleven columns: all shown, no "1 other columns".
        let short = Local {
            contributions: l.contributions[..11].to_vec(),
            ..l
        };
        assert_eq!(waterfall_steps(&short).len(), 11);
        assert!(
            waterfall_steps(&short)
                .iter()
                .all(|s| !s.0.contains("other"))
        );
    }

    #[test]
    fn colours_clip_to_the_5th_and_95th_percentiles() {
        let mut points: Vec<Point> = (0..=100)
            .map(|i| point(Value::Number(i as f64), 0.0))
            .collect();
        points.push(point(Value::Missing, 0.0));
        let c = ColumnSummary {
            column: "x".to_owned(),
            kind: ColumnKind::Numeric,
            mean_abs: 0.0,
            mean: 0.0,
            points,
        };
        let scaled = colours(&c);
        assert_eq!(scaled[0], Some(0.0));
        assert_eq!(scaled[5], Some(0.0));
        assert_eq!(scaled[50], Some(0.5));
        assert_eq!(scaled[100], Some(1.0));
        assert_eq!(scaled[101], None);

        let flat = ColumnSummary {
            points: vec![point(Value::Number(3.0), 0.0); 4],
            ..c.clone()
        };
        assert_eq!(colours(&flat), [Some(0.5); 4]);
        let categorical = ColumnSummary {
            kind: ColumnKind::Categorical,
            ..flat
        };
        assert_eq!(colours(&categorical), [None; 4]);
    }

    #[test]
    fn categorise_orders_by_frequency_and_groups_the_rarest() {
        let names = ["b", "a", "b", "c", "a", "b"];
        let points: Vec<Point> = names
            .iter()
            .map(|n| point(Value::Text((*n).to_owned()), 1.0))
            .chain([point(Value::Missing, 2.0)])
            .collect();
        let (categories, indexed) = categorise(&points);
        assert_eq!(categories, ["b", "a", "(missing)", "c"]);
        assert_eq!(indexed[0], (0, 1.0));
        assert_eq!(indexed[6], (2, 2.0));

        let many: Vec<Point> = (0..30)
            .map(|i| point(Value::Text(format!("k{:02}", i % 15)), 0.0))
            .collect();
        let (categories, indexed) = categorise(&many);
        assert_eq!(categories.len(), MAX_CATEGORIES);
        assert_eq!(categories.last().unwrap(), "(other)");
        assert_eq!(indexed[14].0, MAX_CATEGORIES - 1, "k14 is grouped");
        assert_eq!(categorise(&[]), (vec![], vec![]));
    }

    #[test]
    fn number_formatting_examples() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(rows_text(1), "1 row");
        assert_eq!(number(f64::NAN), "n/a");
        assert_eq!(number(0.00012), "1.20e-4");
        assert_eq!(number(12.5), "12.5");
        assert_eq!(value_text(&Value::Number(f64::INFINITY)), "n/a");
    }
}
