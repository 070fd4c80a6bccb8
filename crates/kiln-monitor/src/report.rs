//! HTML reports: self-contained pages (inline CSS and SVG, no raw rows) that
//! people open rather than read JSON.

use crate::drift::{ColumnDrift, DriftReport};
use crate::html::{self, Page, Tone};

/// The page of `kiln monitor drift --html`: a summary, the verdict per column,
/// the drift statistic per column against its threshold, and each column's
/// two distributions overlaid (drifted columns first).
pub fn drift_page(report: &DriftReport, reference: (&str, u64), current: (&str, u64)) -> String {
    let mut page = Page::new(
        "Data drift",
        &format!(
            "{} ({} rows) → {} ({} rows)",
            reference.0, reference.1, current.0, current.1
        ),
    );
    page.brand("kiln monitor");
    let tone = if report.drifted_columns > 0 {
        Tone::Bad
    } else {
        Tone::Good
    };
    page.card(
        "columns drifted",
        &format!("{} / {}", report.drifted_columns, report.columns_checked),
        tone,
    );
    page.card(
        "share drifted",
        &format!("{:.0} %", report.share_drifted * 100.0),
        tone,
    );
    // Verdicts by a distance (`--method psi|wasserstein|js`) are plotted as
    // that distance against its threshold; test verdicts as −log₁₀ p.
    let distance = report
        .columns
        .iter()
        .find(|c| matches!(c.test, "psi" | "wasserstein" | "jensen_shannon"))
        .map(|c| c.threshold);
    match distance {
        Some(t) => page.card("distance threshold", &format!("{t}"), Tone::Neutral),
        None => page.card(
            "p-value threshold",
            &format!(
                "{:.1e}",
                crate::drift::threshold(report.alpha, report.columns_checked)
            ),
            Tone::Neutral,
        ),
    }
    if !report.missing_columns.is_empty() {
        page.card(
            "missing columns",
            &report.missing_columns.len().to_string(),
            Tone::Warn,
        );
    }
    let mut order: Vec<&ColumnDrift> = report.columns.iter().collect();
    order.sort_by(|a, b| {
        b.drifted
            .cmp(&a.drifted)
            .then(a.p_value.total_cmp(&b.p_value))
    });
    page.section("Verdicts", verdict_table(&order));
    let labels: Vec<String> = order.iter().map(|c| c.column.clone()).collect();
    match distance {
        Some(t) => {
            let scores: Vec<f64> = order.iter().map(|c| c.statistic).collect();
            page.section(
                "Distance per column (the line is the threshold)",
                html::bar_chart("distance", &labels, &scores, Some(t)),
            );
        }
        None => {
            // -log10(p) against -log10(threshold): one scale for every test.
            let scores: Vec<f64> = order.iter().map(|c| neg_log10(c.p_value)).collect();
            let line = neg_log10(crate::drift::threshold(
                report.alpha,
                report.columns_checked,
            ));
            page.section(
                "Evidence of drift per column (−log₁₀ p-value; the line is the threshold)",
                html::bar_chart("−log₁₀ p", &labels, &scores, Some(line)),
            );
        }
    }
    let charts: Vec<String> = order
        .iter()
        .filter(|c| !c.histogram.labels.is_empty())
        .map(|c| {
            let title = format!(
                "{} — {}",
                c.column,
                if c.drifted { "drifted" } else { "no drift" }
            );
            html::histogram_overlay(
                &title,
                &c.histogram.labels,
                &c.histogram.reference,
                &c.histogram.current,
            )
        })
        .collect();
    page.section(
        "Distributions (reference behind, current in front)",
        html::grid(&charts),
    );
    page.render()
}

/// A p-value on a log scale, capped so p = 0 still plots.
pub fn neg_log10(p: f64) -> f64 {
    -(p.max(1e-300)).log10()
}

/// The per-column table of a drift report.
pub fn verdict_table(columns: &[&ColumnDrift]) -> String {
    let rows: Vec<Vec<String>> = columns
        .iter()
        .map(|c| {
            let mut verdict = if c.drifted {
                html::badge("drift", Tone::Bad)
            } else {
                html::badge("ok", Tone::Good)
            };
            if !c.new_categories.is_empty() {
                verdict.push_str(&html::escape(&format!(
                    " new: {}",
                    c.new_categories.join(", ")
                )));
            }
            if let Some(n) = &c.note {
                verdict.push_str(&html::escape(&format!(" {n}")));
            }
            vec![
                html::escape(&c.column),
                c.kind.as_str().into(),
                c.test.into(),
                format!("{:.4}", c.statistic),
                format!("{:.2e}", c.p_value),
                format!("{:.4}", c.psi),
                c.wasserstein.map(|w| format!("{w:.4}")).unwrap_or_default(),
                format!("{:.4}", c.jensen_shannon),
                format!(
                    "{:.2} % → {:.2} %",
                    100.0 * c.reference.nulls as f64 / c.reference.rows.max(1) as f64,
                    100.0 * c.current.nulls as f64 / c.current.rows.max(1) as f64
                ),
                verdict,
            ]
        })
        .collect();
    html::table(
        &[
            "column",
            "kind",
            "test",
            "statistic",
            "p-value",
            "PSI",
            "Wasserstein (normed)",
            "Jensen–Shannon",
            "missing",
            "verdict",
        ],
        &rows,
        &[
            false, false, false, true, true, true, true, true, true, false,
        ],
    )
}

/// One window, as the monitoring report plots it.
pub struct WindowPoint<'a> {
    /// The window's number.
    pub seq: i64,
    /// Its last row's time (ms since the epoch).
    pub end_ms: i64,
    /// Rows in it.
    pub rows: i64,
    /// Whether its label metrics are final.
    pub r#final: bool,
    /// Its metrics.
    pub metrics: &'a serde_json::Map<String, serde_json::Value>,
}

/// An alert, as the report lists it.
pub struct AlertLine {
    /// The monitor.
    pub monitor: String,
    /// The rule.
    pub rule: String,
    /// info, warning, critical.
    pub severity: String,
    /// firing or resolved.
    pub state: String,
    /// When it fired (RFC 3339).
    pub started: String,
    /// What breached.
    pub message: String,
    /// The window that fired it.
    pub window: i64,
}

/// The page of `kiln monitor report DEPLOYMENT --html`: for each monitor,
/// drift, outliers, accuracy and latency over its windows (windows where an
/// alert fired marked), its alerts, and the latest window's distributions
/// against the reference. Built from stored window metrics and histograms:
/// no logged row is embedded.
pub fn monitor_page(
    deployment: &str,
    monitors: &[(String, Vec<WindowPoint<'_>>, Option<&serde_json::Value>)],
    alerts: &[AlertLine],
    rules: &[(String, String, Option<f64>)],
) -> String {
    let mut page = Page::new(
        &format!("Monitoring — {deployment}"),
        &format!(
            "{} monitor(s); times are each window's last row (UTC)",
            monitors.len()
        ),
    );
    page.brand("kiln monitor");
    let windows: usize = monitors.iter().map(|m| m.1.len()).sum();
    let rows: i64 = monitors
        .iter()
        .flat_map(|m| m.1.iter().map(|w| w.rows))
        .sum();
    let firing = alerts.iter().filter(|a| a.state == "firing").count();
    page.card("windows", &windows.to_string(), Tone::Neutral);
    page.card("rows watched", &rows.to_string(), Tone::Neutral);
    page.card(
        "alerts firing",
        &firing.to_string(),
        if firing > 0 { Tone::Bad } else { Tone::Good },
    );
    for (name, points, latest) in monitors {
        let labels: Vec<String> = points
            .iter()
            .map(|w| {
                let t = w.end_ms / 1000;
                format!(
                    "#{} {:02}:{:02}:{:02}",
                    w.seq,
                    (t / 3600) % 24,
                    (t / 60) % 60,
                    t % 60
                )
            })
            .collect();
        let fired: Vec<usize> = points
            .iter()
            .enumerate()
            .filter(|(_, w)| {
                alerts
                    .iter()
                    .any(|a| &a.monitor == name && a.window == w.seq)
            })
            .map(|(i, _)| i)
            .collect();
        let series = |key: &str, label_metric: bool| -> Vec<f64> {
            points
                .iter()
                .map(|w| {
                    if label_metric && !w.r#final {
                        return f64::NAN;
                    }
                    w.metrics
                        .get(key)
                        .and_then(serde_json::Value::as_f64)
                        .unwrap_or(f64::NAN)
                })
                .collect()
        };
        let threshold = |metric: &str| {
            rules
                .iter()
                .find(|(m, r, _)| m == name && r == metric)
                .and_then(|r| r.2)
        };
        let mut charts = Vec::new();
        let drift = series("drift.share", false);
        let outliers = series("outliers.share", false);
        let prediction = series("prediction.psi", false);
        charts.push(html::line_chart(
            "Share of input columns drifted",
            &labels,
            &[html::Series {
                name: "drift.share",
                values: &drift,
            }],
            threshold("drift.share"),
            &fired,
        ));
        charts.push(html::line_chart(
            "Outlier inputs and prediction PSI",
            &labels,
            &[
                html::Series {
                    name: "outliers.share",
                    values: &outliers,
                },
                html::Series {
                    name: "prediction.psi",
                    values: &prediction,
                },
            ],
            None,
            &fired,
        ));
        let acc = series("accuracy", true);
        let auc = series("auc", true);
        let mae = series("mae", true);
        if acc.iter().any(|v| !v.is_nan()) {
            charts.push(html::line_chart(
                "Accuracy and AUC on fed-back labels (final windows)",
                &labels,
                &[
                    html::Series {
                        name: "accuracy",
                        values: &acc,
                    },
                    html::Series {
                        name: "auc",
                        values: &auc,
                    },
                ],
                threshold("accuracy"),
                &fired,
            ));
        } else if mae.iter().any(|v| !v.is_nan()) {
            charts.push(html::line_chart(
                "Mean absolute error on fed-back labels (final windows)",
                &labels,
                &[html::Series {
                    name: "mae",
                    values: &mae,
                }],
                threshold("mae"),
                &fired,
            ));
        }
        let p50 = series("latency.p50", false);
        let p99 = series("latency.p99", false);
        charts.push(html::line_chart(
            "Latency (ms)",
            &labels,
            &[
                html::Series {
                    name: "p50",
                    values: &p50,
                },
                html::Series {
                    name: "p99",
                    values: &p99,
                },
            ],
            threshold("latency.p99"),
            &fired,
        ));
        page.section(&format!("Monitor {name}"), html::grid(&charts));
        if let Some(cols) = latest
            .and_then(|d| d.get("columns"))
            .and_then(|c| c.as_array())
        {
            let hists: Vec<String> = cols
                .iter()
                .filter_map(|c| {
                    let h = c.get("histogram")?;
                    let strings = |k: &str| -> Option<Vec<String>> {
                        Some(
                            h.get(k)?
                                .as_array()?
                                .iter()
                                .map(|v| v.as_str().unwrap_or_default().to_string())
                                .collect(),
                        )
                    };
                    let floats = |k: &str| -> Option<Vec<f64>> {
                        Some(
                            h.get(k)?
                                .as_array()?
                                .iter()
                                .map(|v| v.as_f64().unwrap_or(0.0))
                                .collect(),
                        )
                    };
                    let drifted = c.get("drifted")?.as_bool()?;
                    Some(html::histogram_overlay(
                        &format!(
                            "{} — {}",
                            c.get("column")?.as_str()?,
                            if drifted { "drifted" } else { "no drift" }
                        ),
                        &strings("labels")?,
                        &floats("reference")?,
                        &floats("current")?,
                    ))
                })
                .collect();
            page.section(
                &format!("Monitor {name}: latest window against the reference"),
                html::grid(&hists),
            );
        }
    }
    let rows: Vec<Vec<String>> = alerts
        .iter()
        .map(|a| {
            vec![
                if a.state == "firing" {
                    html::badge("firing", Tone::Bad)
                } else {
                    html::badge("resolved", Tone::Good)
                },
                html::escape(&a.severity),
                html::escape(&a.monitor),
                html::escape(&a.rule),
                html::escape(&a.started),
                html::escape(&a.message),
            ]
        })
        .collect();
    page.section(
        "Alerts",
        html::table(
            &["state", "severity", "monitor", "rule", "fired", "what"],
            &rows,
            &[false; 6],
        ),
    );
    page.render()
}
