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
