//! `kiln.yaml`: what a user declares, under git.

use std::collections::BTreeMap;
use std::path::Path;

use kiln_data::check::{CheckSuite, OneOrMany};
use serde::{Deserialize, Serialize};

use crate::{ProjectError, Result};

/// The whole `kiln.yaml`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KilnYaml {
    /// Project name; one store can hold many projects.
    pub project: String,
    /// Metadata store URL (default `sqlite://.kiln/kiln.db`); `--store` and
    /// `KILN_STORE` override it. Keep passwords out: use the variable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    /// Object store URL (default `file://.kiln/objects`); `--objects` and
    /// `KILN_OBJECTS` override it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objects: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub datasets: BTreeMap<String, DatasetConfig>,
    /// What `kiln serve` serves, by deployment name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub deployments: BTreeMap<String, DeploymentConfig>,
    /// What watches the served traffic, by monitor name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub monitors: BTreeMap<String, MonitorConfig>,
    /// Pipelines by name: steps, parameters, a schedule, triggers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pipelines: BTreeMap<String, crate::pipelines::PipelineConfig>,
}

/// One deployment: the model answering, and optionally others taking a
/// share of traffic (A/B) or mirroring it (shadow).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentConfig {
    /// The model answering: `NAME@ALIAS` (follows the alias as it moves),
    /// `NAME@VERSION`, a run id or a model file.
    pub model: String,
    /// Other models answering a percentage of requests each; `model` takes
    /// the rest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub split: Vec<SplitConfig>,
    /// A model that scores every request too, without answering it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<String>,
    /// Route by this request key (a header `x-kiln-key`, or this input
    /// column of the first row), so the same key always meets the same model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sticky: Option<String>,
    /// The fraction of requests whose predictions are logged (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<f64>,
}

/// A share of a deployment's traffic.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitConfig {
    pub model: String,
    /// Percent of requests, above 0 and below 100 (all splits together).
    pub percent: f64,
}

impl DeploymentConfig {
    /// Checks percentages and the sampling rate.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let mut total = 0.0;
        for s in &self.split {
            if !(s.percent > 0.0 && s.percent < 100.0) {
                return Err(format!(
                    "split `{}`: percent must be above 0 and below 100, not {}",
                    s.model, s.percent
                ));
            }
            total += s.percent;
        }
        if total >= 100.0 {
            return Err(format!(
                "the splits take {total}% of traffic; leave some for `{}` (together below 100)",
                self.model
            ));
        }
        if let Some(r) = self.sample
            && !(0.0..=1.0).contains(&r)
        {
            return Err(format!("sample must be between 0 and 1, not {r}"));
        }
        Ok(())
    }
}

/// A monitor: rules over windows of one deployment's logged predictions.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitorConfig {
    /// The deployment whose logged traffic is watched.
    pub deployment: String,
    /// What drift is measured against: a dataset version (`NAME@VERSION`)
    /// or a file. Default: the reference profile stored with the model
    /// version that served each row (its training data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// A tumbling window: a row count (`500`) or a span of time (`10m`,
    /// `1h`). Default 1000 rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<WindowSpec>,
    /// How long labels may take to arrive after a prediction. Label metrics
    /// (accuracy, AUC, errors) of a window are only final, and only alerted
    /// on, once this has passed since the window ended. Default `0s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_delay: Option<String>,
    /// The family-wise false-alarm rate of a window's drift tests (default 0.05).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f64>,
    /// How a column's drift is decided: `test` (p-value tests, the default),
    /// `psi[:T]` (PSI above T, default 0.2), `wasserstein[:T]` (normed
    /// Wasserstein for numbers and Jensen–Shannon for categories above T,
    /// default 0.1) or `js[:T]`. Tests flag any real difference, which on a
    /// seasonal stream is most windows; a distance flags large ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<String>,
    /// How long after its end a time window waits for rows still held in
    /// model servers' log buffers before it closes (default `90s`; keep it
    /// above `kiln serve --log-flush`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settle: Option<String>,
    /// How often `kiln server` runs the monitor (default `1m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<String>,
    /// Rules; an alert fires when one is breached.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<RuleConfig>,
    /// URLs that receive every alert as it fires and resolves (a CloudEvents
    /// JSON envelope, POST).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webhooks: Vec<String>,
}

/// A window's size: rows or time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum WindowSpec {
    /// So many rows per window.
    Rows(u64),
    /// A span of time (`10m`).
    Time(String),
}

/// A rule: a metric of each window against a threshold, or an anomaly in
/// the metric's series.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// The rule's name (default: the metric).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The metric of each window (`drift.share`, `accuracy`, `latency.p99`…;
    /// `kiln monitor metrics` lists them).
    pub metric: String,
    /// Breached when the metric is above this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub above: Option<f64>,
    /// Breached when the metric is below this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub below: Option<f64>,
    /// Breached when the metric's latest value is an anomaly in its series
    /// (a robust change detector: spikes and level shifts).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub anomaly: bool,
    /// Consecutive breaching windows before the alert fires (default 1).
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    pub for_windows: Option<u32>,
    /// `info`, `warning` (default) or `critical`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    /// A pipeline to run when the alert fires (retraining).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrain: Option<String>,
}

impl RuleConfig {
    /// The rule's name.
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.metric)
    }
}

impl MonitorConfig {
    /// Checks the window, durations, alpha and rules.
    pub fn validate(&self) -> std::result::Result<(), String> {
        match &self.window {
            Some(WindowSpec::Rows(0)) => return Err("window must be at least 1 row".into()),
            Some(WindowSpec::Time(t)) => {
                let d = kiln_core::parse_duration(t)?;
                if d.as_micros() == 0 {
                    return Err("a time window must be at least 1µs long (e.g. `10m`)".into());
                }
            }
            _ => {}
        }
        for d in [&self.label_delay, &self.every, &self.settle]
            .into_iter()
            .flatten()
        {
            kiln_core::parse_duration(d)?;
        }
        if let Some(m) = &self.drift {
            kiln_monitor::drift::Method::parse(m)?;
        }
        if let Some(a) = self.alpha
            && !(a > 0.0 && a < 1.0)
        {
            return Err(format!("alpha must be between 0 and 1, not {a}"));
        }
        let mut names = std::collections::BTreeSet::new();
        for r in &self.rules {
            let conditions = usize::from(r.above.is_some())
                + usize::from(r.below.is_some())
                + usize::from(r.anomaly);
            if conditions == 0 {
                return Err(format!(
                    "rule `{}`: say when it is breached: `above: N`, `below: N` or `anomaly: true`",
                    r.name()
                ));
            }
            if r.anomaly && conditions > 1 {
                return Err(format!(
                    "rule `{}`: `anomaly: true` takes no `above`/`below`",
                    r.name()
                ));
            }
            if let Some(s) = &r.severity
                && !matches!(s.as_str(), "info" | "warning" | "critical")
            {
                return Err(format!(
                    "rule `{}`: severity must be info, warning or critical, not `{s}`",
                    r.name()
                ));
            }
            if !crate::monitoring::known_metric(&r.metric) {
                return Err(format!(
                    "rule `{}`: no metric `{}` (`kiln monitor metrics` lists them)",
                    r.name(),
                    r.metric
                ));
            }
            if r.for_windows == Some(0) {
                return Err(format!("rule `{}`: `for` must be at least 1", r.name()));
            }
            if !names.insert(r.name().to_string()) {
                return Err(format!(
                    "two rules are called `{}`: give one a `name`",
                    r.name()
                ));
            }
        }
        for w in &self.webhooks {
            if !(w.starts_with("http://") || w.starts_with("https://")) {
                return Err(format!("webhook `{w}` must be an http:// or https:// URL"));
            }
        }
        Ok(())
    }
}

/// What is declared about one dataset.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetConfig {
    /// Columns that identify a row, for row-level diffs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<OneOrMany>,
    #[serde(default, skip_serializing_if = "CheckSuite::is_empty")]
    pub checks: CheckSuite,
}

impl KilnYaml {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(ProjectError::io("read", path))?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let cfg: Self = serde_saphyr::from_str(text).map_err(|e| ProjectError::Config {
            path: path.into(),
            message: e.to_string(),
        })?;
        for (name, d) in &cfg.deployments {
            d.validate().map_err(|e| ProjectError::Config {
                path: path.into(),
                message: format!("deployment `{name}`: {e}"),
            })?;
        }
        for (name, m) in &cfg.monitors {
            m.validate().map_err(|e| ProjectError::Config {
                path: path.into(),
                message: format!("monitor `{name}`: {e}"),
            })?;
            if !cfg.deployments.is_empty() && !cfg.deployments.contains_key(&m.deployment) {
                return Err(ProjectError::Config {
                    path: path.into(),
                    message: format!(
                        "monitor `{name}`: no deployment `{}` is declared (deployments: {})",
                        m.deployment,
                        cfg.deployments
                            .keys()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                });
            }
        }
        let monitors = cfg.monitors.keys().map(String::as_str).collect();
        for (name, p) in &cfg.pipelines {
            if let Err(m) = p.validate(&monitors) {
                let message = format!("pipeline `{name}`: {}", m.message);
                return Err(match m.line {
                    Some(line) => ProjectError::ConfigAt {
                        path: path.into(),
                        line,
                        message,
                        hint: m.hint,
                    },
                    None => ProjectError::Config {
                        path: path.into(),
                        message,
                    },
                });
            }
        }
        for (name, d) in &cfg.datasets {
            d.checks.validate().map_err(|e| ProjectError::Config {
                path: path.into(),
                message: format!("dataset `{name}`: {e}"),
            })?;
        }
        Ok(cfg)
    }

    /// The starter file `kiln init` writes, naming the stores it was given.
    pub fn starter(project: &str, store: Option<&str>, objects: Option<&str>) -> String {
        let store = store.map_or_else(
            || "# store: sqlite://.kiln/kiln.db".to_string(),
            |s| format!("store: {s}"),
        );
        let objects = objects.map_or_else(
            || "# objects: file://.kiln/objects".to_string(),
            |o| format!("objects: {o}"),
        );
        format!(
            "# kiln project: everything declared here lives under git.\n\
             project: {project}\n\
             \n\
             # Where kiln keeps metadata and objects. Override with --store / KILN_STORE\n\
             # and --objects / KILN_OBJECTS, e.g. postgres://… and s3://BUCKET/PREFIX;\n\
             # keep passwords in KILN_STORE, not here.\n\
             {store}\n\
             {objects}\n\
             \n\
             # Checks per dataset; `kiln data check NAME` runs them.\n\
             datasets: {{}}\n\
             #  patients:\n\
             #    key: patient_id              # identifies a row, for `kiln data diff`\n\
             #    checks:\n\
             #      rows: {{ min: 100 }}\n\
             #      unique: [patient_id]\n\
             #      columns:\n\
             #        age: {{ type: integer, not_null: true, range: {{ min: 0, max: 120 }} }}\n\
             #        sex: {{ allowed: [F, M] }}\n\
             #        email: {{ regex: '^[^@]+@[^@]+$', max_null_fraction: 0.1 }}\n\
             #        admitted_at: {{ freshness: 7d }}\n"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starter_file_parses() {
        let cfg = KilnYaml::parse(
            &KilnYaml::starter("demo", None, None),
            Path::new("kiln.yaml"),
        )
        .unwrap();
        assert_eq!(cfg.project, "demo");
        assert!(cfg.datasets.is_empty());
        let team = KilnYaml::parse(
            &KilnYaml::starter("t", None, Some("s3://b/p")),
            Path::new("kiln.yaml"),
        )
        .unwrap();
        assert_eq!(team.objects.as_deref(), Some("s3://b/p"));
    }

    #[test]
    fn unknown_check_keys_are_rejected_with_the_file_named() {
        let err = KilnYaml::parse(
            "project: p\ndatasets:\n  d:\n    checks:\n      columns:\n        a: { not_nul: true }\n",
            Path::new("kiln.yaml"),
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("kiln.yaml") && msg.contains("not_nul"),
            "{msg}"
        );
    }

    #[test]
    fn bad_regex_is_a_config_error() {
        let err = KilnYaml::parse(
            "project: p\ndatasets:\n  d:\n    checks:\n      columns:\n        a: { regex: '(' }\n",
            Path::new("kiln.yaml"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("bad regex"), "{err}");
    }
}
