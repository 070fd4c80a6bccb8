//! Pipelines as `kiln.yaml` declares them: steps, what each needs,
//! parameters, a schedule and triggers; checked when the file is read, with
//! the line of each mistake.
//!
//! ```yaml
//! pipelines:
//!   bikes:
//!     params: { budget: 30s, min_r2: 0.5 }
//!     schedule: "0 3 * * *"
//!     triggers: [{ dataset: bikes }, { alert: bikes-live }]
//!     steps:
//!       ingest: { kind: ingest, with: { dataset: bikes, path: data/bikes.csv } }
//!       train:
//!         kind: train
//!         with: { dataset: "${steps.ingest.dataset}", target: bikers, budget: "${params.budget}" }
//!       report: { run: python report.py, needs: [train], inputs: [report.py], outputs: [report.html] }
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

/// One pipeline.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// What it is for, shown by `kiln pipelines ls`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Parameters with their defaults; `~` (null) makes one required.
    /// `--param NAME=VALUE` sets one; steps read `${params.NAME}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, serde_json::Value>,
    /// When `kiln server` runs it: a cron expression in UTC (`0 3 * * *`,
    /// `@hourly`; six fields put seconds first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Spanned<String>>,
    /// What else makes `kiln server` run it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub triggers: Vec<Spanned<TriggerConfig>>,
    /// The steps by name; `needs` orders them.
    pub steps: BTreeMap<String, Spanned<StepConfig>>,
}

/// A trigger: a new version of a dataset, or an alert of a monitor.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerConfig {
    /// Run when a new version of this dataset is added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
    /// Run when an alert of this monitor fires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<String>,
}

/// One step.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepConfig {
    /// A built-in kind (`kiln pipelines kinds` lists them); omit it for a
    /// `run:` step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// A shell command (run by `sh -c` in the project's folder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// Steps that must succeed first. A step whose `with` reads
    /// `${steps.X.…}` needs X without saying so.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub needs: Vec<Spanned<String>>,
    /// The built-in kind's arguments; strings may hold `${params.NAME}` and
    /// `${steps.STEP.OUTPUT}`.
    #[serde(default, rename = "with", skip_serializing_if = "BTreeMap::is_empty")]
    pub args: BTreeMap<String, serde_json::Value>,
    /// Files (or folders) a `run:` step reads: their content is part of its
    /// cache key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<String>,
    /// Files a `run:` step writes: stored when it succeeds, restored when it
    /// is skipped as cached.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<String>,
    /// Environment variables for a `run:` step.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Tries after the first failure (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    /// The wait before the first retry, doubled for each next one
    /// (default `1s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_delay: Option<String>,
    /// How long one try may take (`10m`); longer is a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// `false` always runs the step. Default: true, except for gate,
    /// approve and deploy, whose answer depends on the moment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<bool>,
}

/// A built-in kind: its arguments and the outputs later steps may read.
pub struct Kind {
    pub name: &'static str,
    pub summary: &'static str,
    pub required: &'static [&'static str],
    pub optional: &'static [&'static str],
    /// Empty: any name (a `run:` step's outputs file, evaluate's metrics).
    pub outputs: &'static [&'static str],
    /// Cached unless `cache: false`.
    pub cached: bool,
}

/// The kinds, `run` last.
pub const KINDS: &[Kind] = &[
    Kind {
        name: "ingest",
        summary: "version a file or folder as a dataset (kiln data add)",
        required: &["dataset", "path"],
        optional: &["message"],
        outputs: &["dataset", "version", "rows"],
        cached: true,
    },
    Kind {
        name: "check",
        summary: "run a dataset's checks; fails the step on a failed check",
        required: &["dataset"],
        optional: &[],
        outputs: &["passed", "failed"],
        cached: true,
    },
    Kind {
        name: "transform",
        summary: "SQL over datasets (SQLite's dialect) into a new dataset",
        required: &["sql", "output"],
        optional: &["tables", "message"],
        outputs: &["dataset", "version", "rows"],
        cached: true,
    },
    Kind {
        name: "split",
        summary: "split a dataset version into train and test datasets (random or stratified)",
        required: &["dataset"],
        optional: &["test_fraction", "seed", "stratify", "train", "test"],
        outputs: &["train", "test", "train_rows", "test_rows"],
        cached: true,
    },
    Kind {
        name: "train",
        summary: "AutoML on a dataset version (kiln train)",
        required: &["dataset", "target"],
        optional: &[
            "task",
            "metric",
            "budget",
            "trials",
            "seed",
            "split",
            "test_fraction",
            "positive",
            "exclude",
            "ensemble",
            "experiment",
        ],
        outputs: &["run", "model", "metric", "score"],
        cached: true,
    },
    Kind {
        name: "evaluate",
        summary: "score a model on a labelled dataset; outputs its metrics",
        required: &["model", "dataset"],
        optional: &[],
        outputs: &[],
        cached: true,
    },
    Kind {
        name: "register",
        summary: "register a run's model as the next version of a model",
        required: &["model", "run"],
        optional: &["description"],
        outputs: &["model", "version"],
        cached: true,
    },
    Kind {
        name: "gate",
        summary: "fail unless a model version meets a requirement (kiln gate)",
        required: &["model", "require"],
        optional: &["data"],
        outputs: &["passed"],
        cached: false,
    },
    Kind {
        name: "approve",
        summary: "wait until a person approves (kiln approve RUN STEP)",
        required: &[],
        optional: &["message"],
        outputs: &["by"],
        cached: false,
    },
    Kind {
        name: "deploy",
        summary: "point an alias at a model version (what kiln serve follows)",
        required: &["model", "alias"],
        optional: &[],
        outputs: &["model", "previous"],
        cached: false,
    },
    Kind {
        name: "run",
        summary: "a shell command with declared inputs, outputs and environment",
        required: &[],
        optional: &[],
        outputs: &[],
        cached: true,
    },
];

/// A kind by name.
pub fn kind(name: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.name == name)
}

impl StepConfig {
    /// The step's kind: `run` for a command.
    pub fn kind_name(&self) -> &str {
        self.kind.as_deref().unwrap_or("run")
    }

    /// Whether results are reused when nothing it reads changed.
    pub fn cached(&self) -> bool {
        self.cache
            .unwrap_or_else(|| kind(self.kind_name()).is_none_or(|k| k.cached))
    }

    /// Every string a template may sit in: the command, `with` values,
    /// environment values, inputs and outputs.
    pub fn templated(&self) -> Vec<&str> {
        fn strings<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a str>) {
            match v {
                serde_json::Value::String(s) => out.push(s),
                serde_json::Value::Array(a) => a.iter().for_each(|v| strings(v, out)),
                serde_json::Value::Object(m) => m.values().for_each(|v| strings(v, out)),
                _ => {}
            }
        }
        let mut out: Vec<&str> = self.run.iter().map(String::as_str).collect();
        for v in self.args.values() {
            strings(v, &mut out);
        }
        out.extend(self.env.values().map(String::as_str));
        out.extend(self.inputs.iter().map(String::as_str));
        out.extend(self.outputs.iter().map(String::as_str));
        out
    }
}

/// A `${…}` reference.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Ref {
    Param(String),
    Output {
        step: String,
        output: String,
    },
    /// `${run.id}`: the pipeline run's id.
    RunId,
}

impl fmt::Display for Ref {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ref::Param(p) => write!(f, "${{params.{p}}}"),
            Ref::Output { step, output } => write!(f, "${{steps.{step}.{output}}}"),
            Ref::RunId => f.write_str("${run.id}"),
        }
    }
}

enum Piece<'a> {
    Text(&'a str),
    Ref(Ref),
}

/// Splits a templated string; `$${` is a literal `${`.
fn pieces(s: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        if rest[..i].ends_with('$') {
            out.push(Piece::Text(&rest[..i]));
            out.push(Piece::Text("{"));
            rest = &rest[i + 2..];
            continue;
        }
        out.push(Piece::Text(&rest[..i]));
        let after = &rest[i + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("`{s}`: a `${{` is not closed by `}}`"))?;
        let inner = after[..end].trim();
        let parts: Vec<&str> = inner.split('.').collect();
        let r = match parts.as_slice() {
            ["params", p] if !p.is_empty() => Ref::Param(p.to_string()),
            ["steps", step, output] if !step.is_empty() && !output.is_empty() => Ref::Output {
                step: step.to_string(),
                output: output.to_string(),
            },
            ["run", "id"] => Ref::RunId,
            _ => {
                return Err(format!(
                    "`${{{inner}}}` is not a reference: write `${{params.NAME}}`, \
                     `${{steps.STEP.OUTPUT}}` or `${{run.id}}`"
                ));
            }
        };
        out.push(Piece::Ref(r));
        rest = &after[end + 1..];
    }
    out.push(Piece::Text(rest));
    Ok(out)
}

/// The references in a templated string.
pub fn refs(s: &str) -> Result<Vec<Ref>, String> {
    Ok(pieces(s)?
        .into_iter()
        .filter_map(|p| match p {
            Piece::Ref(r) => Some(r),
            Piece::Text(_) => None,
        })
        .collect())
}

/// Fills a templated string in; `value` gives each reference's text.
pub fn render(s: &str, value: &dyn Fn(&Ref) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    for p in pieces(s)? {
        match p {
            Piece::Text(t) => out.push_str(t),
            Piece::Ref(r) => match value(&r) {
                Some(v) => out.push_str(&v),
                None => return Err(format!("{r} has no value")),
            },
        }
    }
    Ok(out)
}

/// A mistake in a pipeline, with the line it is on.
#[derive(Clone, Debug, PartialEq)]
pub struct PipelineMistake {
    pub line: Option<u64>,
    pub message: String,
    pub hint: String,
}

fn line_of<T>(s: &Spanned<T>) -> Option<u64> {
    let l = s.referenced.line();
    (l > 0).then_some(l)
}

impl PipelineConfig {
    /// Every step's needs: declared ones, those its templates read, and
    /// the steps that declare as `outputs` a file it declares as `inputs`
    /// (as DVC links stages by their dependencies and outputs).
    pub fn dependencies(&self) -> BTreeMap<&str, BTreeSet<&str>> {
        let mut writer: BTreeMap<String, &str> = BTreeMap::new();
        for (name, s) in &self.steps {
            for o in &s.value.outputs {
                writer.insert(normal_path(o), name.as_str());
            }
        }
        self.steps
            .iter()
            .map(|(name, s)| {
                let mut needs: BTreeSet<&str> =
                    s.value.needs.iter().map(|n| n.value.as_str()).collect();
                for i in &s.value.inputs {
                    let i = normal_path(i);
                    // The step writing this file, or a file inside this
                    // folder.
                    for (o, w) in &writer {
                        let inside = o == &i
                            || o.strip_prefix(i.as_str())
                                .is_some_and(|r| r.starts_with('/'));
                        if inside && *w != name.as_str() {
                            needs.insert(w);
                        }
                    }
                }
                for t in s.value.templated() {
                    for r in refs(t).unwrap_or_default() {
                        if let Ref::Output { step, .. } = r
                            && let Some((k, _)) = self.steps.get_key_value(step.as_str())
                        {
                            needs.insert(k.as_str());
                        }
                    }
                }
                (name.as_str(), needs)
            })
            .collect()
    }

    /// The steps in an order that runs every step after its needs (ties by
    /// name), or the steps of a cycle.
    pub fn order(&self) -> Result<Vec<&str>, Vec<String>> {
        let deps = self.dependencies();
        let mut done: BTreeSet<&str> = BTreeSet::new();
        let mut out = Vec::with_capacity(deps.len());
        while out.len() < deps.len() {
            let ready: Vec<&str> = deps
                .iter()
                .filter(|(n, needs)| !done.contains(*n) && needs.iter().all(|d| done.contains(d)))
                .map(|(n, _)| *n)
                .collect();
            if ready.is_empty() {
                return Err(find_cycle(&deps, &done));
            }
            for n in ready {
                done.insert(n);
                out.push(n);
            }
        }
        Ok(out)
    }

    /// Checks everything that can be checked before running: kinds and
    /// their arguments, needs, references, cycles, durations, the
    /// schedule, triggers.
    pub fn validate(&self, monitors: &BTreeSet<&str>) -> Result<(), PipelineMistake> {
        let at = |line: Option<u64>, message: String, hint: &str| PipelineMistake {
            line,
            message,
            hint: hint.to_string(),
        };
        for p in self.params.keys() {
            if !valid_name(p) {
                return Err(at(
                    None,
                    format!("parameter `{p}` is not a name"),
                    "use letters, digits, `_` and `-`",
                ));
            }
        }
        if self.steps.is_empty() {
            return Err(at(None, "it has no steps".into(), "declare `steps:`"));
        }
        if let Some(s) = &self.schedule {
            parse_schedule(&s.value).map_err(|e| {
                at(
                    line_of(s),
                    format!("schedule `{}`: {e}", s.value),
                    "write five fields in UTC: minute hour day-of-month month day-of-week, \
                     e.g. `0 3 * * *` (03:00 daily), or `@hourly`, `@daily`",
                )
            })?;
        }
        for t in &self.triggers {
            match (&t.value.dataset, &t.value.alert) {
                (Some(_), None) => {}
                (None, Some(m)) => {
                    if !monitors.contains(m.as_str()) {
                        return Err(at(
                            line_of(t),
                            format!("trigger: no monitor `{m}` is declared"),
                            "name a monitor under `monitors:`",
                        ));
                    }
                }
                _ => {
                    return Err(at(
                        line_of(t),
                        "a trigger names one `dataset:` or one `alert:`".into(),
                        "e.g. `triggers: [{ dataset: visits }, { alert: fraud-live }]`",
                    ));
                }
            }
        }
        let names: Vec<&str> = self.steps.keys().map(String::as_str).collect();
        for (name, spanned) in &self.steps {
            let s = &spanned.value;
            let line = line_of(spanned);
            let here =
                |message: String, hint: &str| at(line, format!("step `{name}`: {message}"), hint);
            if !valid_name(name) {
                return Err(here(
                    "is not a name".into(),
                    "use letters, digits, `_` and `-`",
                ));
            }
            let kind_name = match (&s.kind, &s.run) {
                (Some(_), Some(_)) => {
                    return Err(here(
                        "has both `kind` and `run`".into(),
                        "a `run:` step runs a command and has no kind; drop one",
                    ));
                }
                (None, None) => {
                    return Err(here(
                        "has neither `kind` nor `run`".into(),
                        &format!(
                            "say what it does: `kind: {}` or `run: COMMAND`",
                            kind_list()
                        ),
                    ));
                }
                (Some(k), None) => k.as_str(),
                (None, Some(_)) => "run",
            };
            let Some(kind) = kind(kind_name).filter(|k| k.name != "run" || s.run.is_some()) else {
                return Err(here(
                    format!("unknown kind `{kind_name}`"),
                    &format!("kinds: {}", kind_list()),
                ));
            };
            if kind.name == "run" {
                if !s.args.is_empty() {
                    return Err(here(
                        "a `run:` step takes no `with:`".into(),
                        "pass values in the command or in `env:`",
                    ));
                }
            } else {
                for field in [
                    ("inputs", !s.inputs.is_empty()),
                    ("outputs", !s.outputs.is_empty()),
                    ("env", !s.env.is_empty()),
                ] {
                    if field.1 {
                        return Err(here(
                            format!("`{}` is for `run:` steps", field.0),
                            "a built-in step reads and writes what its `with:` names",
                        ));
                    }
                }
                for arg in s.args.keys() {
                    if !kind.required.contains(&arg.as_str())
                        && !kind.optional.contains(&arg.as_str())
                    {
                        let mut known: Vec<&str> = kind.required.to_vec();
                        known.extend(kind.optional);
                        return Err(here(
                            format!("`{}` takes no argument `{arg}`", kind.name),
                            &format!("its arguments: {}", known.join(", ")),
                        ));
                    }
                }
                for req in kind.required {
                    if !s.args.contains_key(*req) {
                        return Err(here(
                            format!("`{}` needs `with: {{ {req}: … }}`", kind.name),
                            &format!("required: {}", kind.required.join(", ")),
                        ));
                    }
                }
            }
            for n in &s.needs {
                if !self.steps.contains_key(&n.value) {
                    return Err(at(
                        line_of(n).or(line),
                        format!("step `{name}` needs `{}`, which is not a step", n.value),
                        &format!("steps: {}", names.join(", ")),
                    ));
                }
                if &n.value == name {
                    return Err(here("needs itself".into(), "remove it from `needs`"));
                }
            }
            for (what, d) in [("retry_delay", &s.retry_delay), ("timeout", &s.timeout)] {
                if let Some(d) = d {
                    kiln_core::parse_duration(d)
                        .map_err(|e| here(format!("{what}: {e}"), "e.g. `30s`, `10m`, `1h`"))?;
                }
            }
            for t in s.templated() {
                for r in refs(t).map_err(|e| here(e, "write `$${` for a literal `${`"))? {
                    match r {
                        Ref::Param(p) if !self.params.contains_key(&p) => {
                            return Err(here(
                                format!("reads `${{params.{p}}}`, which is not declared"),
                                &format!(
                                    "declare it under `params:` (`{p}: DEFAULT`, or `{p}: ~` to require it)"
                                ),
                            ));
                        }
                        Ref::Output { step, output } => {
                            let Some(up) = self.steps.get(&step) else {
                                return Err(here(
                                    format!(
                                        "reads `${{steps.{step}.{output}}}`, but there is no step `{step}`"
                                    ),
                                    &format!("steps: {}", names.join(", ")),
                                ));
                            };
                            let up_kind = self::kind(up.value.kind_name());
                            if let Some(k) = up_kind
                                && !k.outputs.is_empty()
                                && !k.outputs.contains(&output.as_str())
                            {
                                return Err(here(
                                    format!(
                                        "reads `${{steps.{step}.{output}}}`, but a `{}` step has no output `{output}`",
                                        k.name
                                    ),
                                    &format!("its outputs: {}", k.outputs.join(", ")),
                                ));
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        let mut writers: BTreeMap<String, &str> = BTreeMap::new();
        for (name, step) in &self.steps {
            for o in &step.value.outputs {
                if let Some(other) = writers.insert(normal_path(o), name) {
                    return Err(at(
                        line_of(step),
                        format!("steps `{other}` and `{name}` both declare output `{o}`"),
                        "one step writes each file; give one of them another path",
                    ));
                }
            }
        }
        if let Err(cycle) = self.order() {
            let first = &cycle[0];
            return Err(at(
                self.steps.get(first).and_then(line_of),
                format!("its steps form a cycle: {}", cycle.join(" → ")),
                "a step cannot need, directly or through others, a step that needs it",
            ));
        }
        Ok(())
    }
}

/// A cycle among the steps not yet ordered: follow needs until a step
/// repeats.
fn find_cycle(deps: &BTreeMap<&str, BTreeSet<&str>>, done: &BTreeSet<&str>) -> Vec<String> {
    let start = deps
        .keys()
        .find(|n| !done.contains(*n))
        .copied()
        .unwrap_or_default();
    let mut path = vec![start];
    let mut at = start;
    loop {
        let next = deps[at]
            .iter()
            .find(|d| !done.contains(*d))
            .copied()
            .unwrap_or(start);
        if let Some(i) = path.iter().position(|p| *p == next) {
            let mut cycle: Vec<String> = path[i..].iter().map(|s| s.to_string()).collect();
            cycle.push(next.to_string());
            // Reported in the order things run: a needs b → b first.
            cycle.reverse();
            return cycle;
        }
        path.push(next);
        at = next;
    }
}

/// A declared path as compared between steps: no `./`, no trailing `/`.
fn normal_path(p: &str) -> String {
    let mut p = p.trim();
    while let Some(rest) = p.strip_prefix("./") {
        p = rest;
    }
    p.trim_end_matches('/').to_string()
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn kind_list() -> String {
    KINDS.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
}

/// Parses a cron expression (five fields, or six with seconds first; UTC;
/// `@hourly`, `@daily`…).
pub fn parse_schedule(s: &str) -> Result<croner::Cron, String> {
    let fields = s.split_whitespace().count();
    if !s.starts_with('@') && !(5..=6).contains(&fields) {
        return Err(format!(
            "{fields} fields where five are needed (six with seconds first)"
        ));
    }
    s.parse::<croner::Cron>().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<PipelineConfig, PipelineMistake> {
        let p: PipelineConfig = serde_saphyr::from_str(yaml).unwrap();
        p.validate(&["live"].into_iter().collect()).map(|()| p)
    }

    #[test]
    fn steps_run_after_what_they_need_including_what_their_templates_read() {
        let p = parse(
            "steps:\n  c: { kind: check, with: { dataset: \"${steps.a.dataset}\" } }\n  a: { kind: ingest, with: { dataset: d, path: x.csv } }\n  b: { run: echo, needs: [c] }\n  z: { run: echo }\n",
        )
        .unwrap();
        assert_eq!(p.order().unwrap(), ["a", "z", "c", "b"]);
    }

    #[test]
    fn a_step_reading_a_file_another_writes_runs_after_it() {
        let p = parse(
            "steps:\n  use: { run: x, inputs: [a.csv, raw.csv] }\n  make: { run: y, outputs: [a.csv] }\n",
        )
        .unwrap();
        assert_eq!(p.order().unwrap(), ["make", "use"]);
        let folder = parse("steps:\n  use: { run: x, inputs: [./data/] }\n  make: { run: y, outputs: [data/a.csv] }\n").unwrap();
        assert_eq!(folder.order().unwrap(), ["make", "use"]);
        let twice = parse(
            "steps:\n  a: { run: x, outputs: [o.txt] }\n  b: { run: y, outputs: [./o.txt] }\n",
        )
        .unwrap_err();
        assert!(twice.message.contains("both declare output"), "{twice:?}");
        let cyc = parse("steps:\n  a: { run: x, inputs: [b.txt], outputs: [a.txt] }\n  b: { run: y, inputs: [a.txt], outputs: [b.txt] }\n")
            .unwrap_err();
        assert!(cyc.message.contains("cycle"), "{cyc:?}");
    }

    #[test]
    fn mistakes_name_the_line_and_the_fix() {
        let cases = [
            ("steps:\n  a: { kind: trian }\n", 2, "unknown kind `trian`"),
            (
                "steps:\n  a: { run: x }\n  b:\n    run: y\n    needs: [a, q]\n",
                5,
                "needs `q`",
            ),
            (
                "steps:\n  a: { run: x, needs: [b] }\n  b: { run: y, needs: [a] }\n",
                2,
                "cycle: a → b → a",
            ),
            (
                "steps:\n  a: { run: \"x ${params.n}\" }\n",
                2,
                "`${params.n}`, which is not declared",
            ),
            (
                "steps:\n  a: { kind: train, with: { dataset: d } }\n",
                2,
                "needs `with: { target: … }`",
            ),
            (
                "steps:\n  a: { kind: train, with: { dataset: d, target: t, budjet: 1 } }\n",
                2,
                "no argument `budjet`",
            ),
            (
                "schedule: \"61 * * * *\"\nsteps:\n  a: { run: x }\n",
                1,
                "schedule `61 * * * *`",
            ),
            (
                "schedule: \"0 3 * *\"\nsteps:\n  a: { run: x }\n",
                1,
                "4 fields",
            ),
            (
                "steps:\n  a: { run: x, timeout: 5 minutes }\n",
                2,
                "timeout",
            ),
            (
                "triggers:\n  - { alert: nope }\nsteps:\n  a: { run: x }\n",
                2,
                "no monitor `nope`",
            ),
            (
                "steps:\n  a: { kind: ingest, with: { dataset: d, path: p } }\n  b: { run: \"${steps.a.nope}\" }\n",
                3,
                "no output `nope`",
            ),
            ("steps:\n  a: { run: \"${oops}\" }\n", 2, "not a reference"),
        ];
        for (yaml, line, needle) in cases {
            let e = parse(yaml).unwrap_err();
            assert!(e.message.contains(needle), "{yaml}: {e:?}");
            assert_eq!(e.line, Some(line), "{yaml}: {e:?}");
            assert!(!e.hint.is_empty(), "{yaml}: {e:?}");
        }
    }

    #[test]
    fn templates_render_and_escape() {
        let v = |r: &Ref| match r {
            Ref::Param(p) if p == "n" => Some("7".to_string()),
            Ref::Output { step, output } => Some(format!("{step}/{output}")),
            _ => None,
        };
        assert_eq!(render("a ${params.n} ${steps.s.o}", &v).unwrap(), "a 7 s/o");
        assert_eq!(render("$${params.n}", &v).unwrap(), "${params.n}");
        assert!(
            render("${params.m}", &v)
                .unwrap_err()
                .contains("${params.m}")
        );
        assert!(render("${params.n", &v).is_err());
    }

    #[test]
    fn gate_approve_and_deploy_run_every_time_unless_told() {
        let s = |k: &str| StepConfig {
            kind: Some(k.into()),
            ..StepConfig::default()
        };
        assert!(s("train").cached());
        assert!(!s("gate").cached());
        assert!(!s("deploy").cached());
        let never = StepConfig {
            cache: Some(false),
            ..s("train")
        };
        assert!(!never.cached());
    }
}
