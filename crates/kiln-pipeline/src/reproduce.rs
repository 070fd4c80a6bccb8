//! `kiln reproduce RUN`: a recorded pipeline run again, from its recorded
//! definition, parameters and the versions it read, every step re-run;
//! then each output compared with the recorded one.

use std::collections::BTreeMap;
use std::sync::Arc;

use kiln_project::Project;
use kiln_project::pipelines::PipelineConfig;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::watch;

use crate::run::{self, NOT_REPLAYED, Observer, Outcome, Replay, RunOptions};
use crate::{PipelineError, Result};

/// One step's verdict.
#[derive(Clone, Debug, Serialize)]
pub struct StepVerdict {
    pub step: String,
    pub kind: String,
    /// `identical`, `different`, `not rerun` (it changes the registry or
    /// waits for a person), or `failed`.
    pub verdict: String,
    /// What differs, in words.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub differences: Vec<String>,
    /// Inputs that are not what the recorded run read (a file edited since).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changed_inputs: Vec<String>,
}

/// The verdict of a reproduction.
#[derive(Clone, Debug, Serialize)]
pub struct Reproduction {
    /// The run reproduced.
    pub of: String,
    /// The new run.
    pub run: Outcome,
    /// True when every step that was re-run gave byte-identical outputs.
    pub identical: bool,
    pub steps: Vec<StepVerdict>,
}

/// Output keys that name something new by nature (a training run's id):
/// what they point at is compared instead (the model's bytes).
const FRESH_IDS: [&str; 1] = ["run"];

/// Reproduces a recorded run.
pub async fn reproduce(
    project: Arc<Project>,
    run_id: &str,
    observer: Observer,
    cancel: watch::Receiver<bool>,
) -> Result<Reproduction> {
    let original = project.meta.pipeline_run(run_id).await?;
    let recorded = project.meta.step_runs(&original.id).await?;
    let config: PipelineConfig =
        serde_json::from_value(original.definition.clone()).map_err(|e| {
            PipelineError::Invalid {
                what: format!("run {}", &original.id[..12]),
                message: format!("its recorded definition cannot be read: {e}"),
                hint: "it was recorded by another version of kiln".into(),
            }
        })?;
    let params: BTreeMap<String, String> = original
        .params
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str().map_or_else(|| v.to_string(), str::to_string),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let mut replay = Replay {
        of: original.id.clone(),
        ..Replay::default()
    };
    for s in &recorded {
        if let Some(reads) = s.inputs.get("reads") {
            replay.reads.insert(s.step.clone(), reads.clone());
        }
        if let Some(o) = &s.outputs {
            replay.outputs.insert(s.step.clone(), o.clone());
        }
    }
    let opts = RunOptions {
        cause: format!("reproduce:{}", original.id),
        replay: Some(Arc::new(replay)),
        ..RunOptions::default()
    };
    let outcome = run::run_config(
        project,
        &original.pipeline,
        config,
        params,
        &opts,
        observer,
        cancel,
    )
    .await?;

    let mut steps = Vec::new();
    for new in &outcome.steps {
        let old = recorded.iter().find(|s| s.step == new.step);
        let mut v = StepVerdict {
            step: new.step.clone(),
            kind: new.kind.clone(),
            verdict: String::new(),
            differences: Vec::new(),
            changed_inputs: Vec::new(),
        };
        if let (Some(old_reads), Some(new_reads)) = (
            old.and_then(|o| o.inputs.get("reads")),
            new.inputs.get("reads"),
        ) {
            v.changed_inputs = differing(old_reads, new_reads, &[]);
        }
        v.verdict = if NOT_REPLAYED.contains(&new.kind.as_str()) {
            "not rerun".into()
        } else if new.status != "succeeded" {
            v.differences.push(format!(
                "it {}: {}",
                new.status,
                new.error.as_deref().unwrap_or_default()
            ));
            "failed".into()
        } else {
            match old.and_then(|o| o.outputs.as_ref()) {
                None => {
                    v.differences
                        .push("the recorded run has no outputs for it".into());
                    "different".into()
                }
                Some(old_out) => {
                    let new_out = new.outputs.clone().unwrap_or(Value::Null);
                    v.differences = differing(old_out, &new_out, &FRESH_IDS);
                    if v.differences.is_empty() {
                        "identical".into()
                    } else {
                        "different".into()
                    }
                }
            }
        };
        steps.push(v);
    }
    let identical = steps
        .iter()
        .all(|s| s.verdict == "identical" || s.verdict == "not rerun");
    Ok(Reproduction {
        of: original.id,
        run: outcome,
        identical,
        steps,
    })
}

/// The keys whose values differ between two JSON objects (nested objects,
/// such as a step's output files, by their own keys), leaving out `skip`.
fn differing(old: &Value, new: &Value, skip: &[&str]) -> Vec<String> {
    let (Some(a), Some(b)) = (old.as_object(), new.as_object()) else {
        return if old == new {
            Vec::new()
        } else {
            vec![format!("{old} → {new}")]
        };
    };
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut out = Vec::new();
    for k in keys {
        if skip.contains(&k.as_str()) {
            continue;
        }
        match (a.get(k), b.get(k)) {
            (Some(x), Some(y)) if x.is_object() && y.is_object() => {
                for d in differing(x, y, &[]) {
                    out.push(format!("{k}.{d}"));
                }
            }
            (Some(x), Some(y)) if x == y => {}
            (x, y) => out.push(format!("{k}: {} → {}", short(x), short(y))),
        }
    }
    out
}

fn short(v: Option<&Value>) -> String {
    match v {
        None => "(none)".into(),
        Some(Value::String(s)) if s.chars().count() > 20 => {
            format!("{}…", s.chars().take(16).collect::<String>())
        }
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn differences_name_the_keys_and_skip_fresh_ids() {
        let old = json!({"run": "a", "model": "m1", "files": {"x.txt": "h1", "y.txt": "h2"}});
        let same = json!({"run": "b", "model": "m1", "files": {"x.txt": "h1", "y.txt": "h2"}});
        assert!(differing(&old, &same, &FRESH_IDS).is_empty());
        let other = json!({"run": "b", "model": "m2", "files": {"x.txt": "h1", "y.txt": "h3"}});
        assert_eq!(
            differing(&old, &other, &FRESH_IDS),
            ["files.y.txt: h2 → h3", "model: m1 → m2"]
        );
    }
}
