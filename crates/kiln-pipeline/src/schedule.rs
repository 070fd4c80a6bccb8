//! What `kiln server` does for pipelines: runs them on their cron
//! schedules, when a dataset they watch gets a new version, and when a
//! trigger is pending (an alert's `retrain:`, a pipeline's `alert:`
//! trigger).
//!
//! Several servers may share one store; each firing happens once. A tick
//! is claimed by inserting its (pipeline, time) key, a dataset version's
//! trigger has an id derived from the pair (inserted once), and a pending
//! trigger is taken by an update that only one server's succeeds.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kiln_project::Project;
use kiln_store::{StoreError, VersionSpec};
use tokio::sync::Mutex;

use crate::run::{self, Observer, RunOptions};

/// How often the scheduler looks.
pub const DEFAULT_EVERY: Duration = Duration::from_secs(5);

/// A line for the server's log.
fn say(msg: impl AsRef<str>) {
    eprintln!("kiln server: {}", msg.as_ref());
}

/// The next tick of a schedule after `after` (milliseconds since the epoch).
pub fn next_tick(cron: &croner::Cron, after_ms: i64) -> Option<i64> {
    let after: DateTime<Utc> = DateTime::from_timestamp_millis(after_ms)?;
    cron.find_next_occurrence(&after, false)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// Runs for as long as the server does.
pub async fn scheduler_loop(project: Arc<Project>, every: Duration, remote: bool) {
    let pipelines = project.config.pipelines.clone();
    if pipelines.is_empty() {
        return;
    }
    let now = kiln_store::now_ms();
    // Schedules fire from now on: ticks missed while no server ran are not
    // caught up.
    let mut next: BTreeMap<String, (croner::Cron, i64)> = BTreeMap::new();
    for (name, p) in &pipelines {
        if let Some(s) = &p.schedule {
            let cron = kiln_project::pipelines::parse_schedule(&s.value).expect("validated");
            if let Some(t) = next_tick(&cron, now) {
                next.insert(name.clone(), (cron, t));
            }
        }
    }
    // The latest version of each watched dataset when the server started:
    // only newer ones trigger.
    let mut seen: BTreeMap<(String, String), Option<String>> = BTreeMap::new();
    for (name, p) in &pipelines {
        for t in &p.triggers {
            if let Some(d) = &t.value.dataset {
                seen.insert((name.clone(), d.clone()), latest(&project, d).await);
            }
        }
    }
    let mut unknown: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    let locks: BTreeMap<String, Arc<Mutex<()>>> = pipelines
        .keys()
        .map(|k| (k.clone(), Arc::new(Mutex::new(()))))
        .collect();
    let start = |name: String, cause: String, why: String| {
        let project = project.clone();
        let lock = locks[&name].clone();
        tokio::spawn(async move {
            // One run of a pipeline at a time per server; later ones wait.
            let _one = lock.lock().await;
            say(format!("pipeline {name}: starting ({why})"));
            let observer: Observer = Arc::new(|_| {});
            let (_tx, rx) = tokio::sync::watch::channel(false);
            let opts = RunOptions {
                cause,
                remote,
                ..RunOptions::default()
            };
            match run::run(project, &name, &opts, observer, rx).await {
                Ok(o) => say(format!(
                    "pipeline {name}: run {} {}{}",
                    &o.run.id[..12],
                    o.run.status,
                    o.run.error.map(|e| format!(": {e}")).unwrap_or_default()
                )),
                Err(e) => say(format!("pipeline {name}: {e}")),
            }
        });
    };
    loop {
        let now = kiln_store::now_ms();
        for (name, (cron, due)) in next.iter_mut() {
            if *due > now {
                continue;
            }
            let tick = *due;
            match project.meta.claim_tick(name, tick).await {
                Ok(claimed) => {
                    *due = next_tick(cron, now).unwrap_or(i64::MAX);
                    if claimed {
                        let at = DateTime::from_timestamp_millis(tick)
                            .map(|t| t.to_rfc3339())
                            .unwrap_or_default();
                        start(
                            name.clone(),
                            format!("schedule:{at}"),
                            format!("schedule, {at}"),
                        );
                    }
                }
                // Tried again next pass: a store that hiccups loses no tick.
                Err(e) => say(format!("pipeline {name}: claiming a tick: {e}")),
            }
        }
        for ((name, dataset), before) in seen.iter_mut() {
            let now_latest = latest(&project, dataset).await;
            if now_latest.is_none() || now_latest == *before {
                continue;
            }
            // While a run of the pipeline is under way, a version it is
            // adding may not be linked to it yet: look again after.
            if project
                .meta
                .pipeline_runs(Some(name), 1)
                .await
                .is_ok_and(|r| r.first().is_some_and(|r| r.status == "running"))
            {
                continue;
            }
            *before = now_latest.clone();
            let version = now_latest.expect("checked");
            if made_by(&project, &version, name).await {
                continue;
            }
            let id =
                blake3::hash(format!("{name}\0{version}").as_bytes()).to_hex()[..32].to_string();
            if let Err(e) = project
                .meta
                .add_pipeline_trigger_once(
                    &id,
                    name,
                    &format!("dataset:{version}"),
                    &format!("a new version of `{dataset}`"),
                )
                .await
            {
                say(format!("pipeline {name}: recording a trigger: {e}"));
            }
        }
        if let Err(e) = run::sweep_abandoned(&project).await {
            say(format!("ending abandoned runs: {e}"));
        }
        match project.meta.pipeline_triggers(Some("pending"), 100).await {
            Ok(pending) => {
                for t in pending.into_iter().rev() {
                    if !pipelines.contains_key(&t.pipeline) {
                        if unknown.insert(t.id.clone()) {
                            say(format!(
                                "trigger {} asks for pipeline `{}`, which this server's kiln.yaml \
                                 does not declare; it stays pending",
                                &t.id[..12.min(t.id.len())],
                                t.pipeline
                            ));
                        }
                        continue;
                    }
                    match project.meta.take_pipeline_trigger(&t.id).await {
                        Ok(true) => start(
                            t.pipeline.clone(),
                            format!("trigger:{}", t.id),
                            format!("{}: {}", t.cause, t.reason),
                        ),
                        Ok(false) => {}
                        Err(e) => say(format!("taking trigger {}: {e}", t.id)),
                    }
                }
            }
            Err(e) => say(format!("reading pipeline triggers: {e}")),
        }
        tokio::time::sleep(every).await;
    }
}

/// `NAME@HEX` of a dataset's latest version, if it has one.
async fn latest(project: &Project, dataset: &str) -> Option<String> {
    match project.meta.resolve(dataset, &VersionSpec::Latest).await {
        Ok(v) => Some(format!("{}@{}", v.dataset, v.id.to_hex())),
        Err(StoreError::UnknownDataset { .. }) => None,
        Err(e) => {
            say(format!("reading dataset `{dataset}`: {e}"));
            None
        }
    }
}

/// Whether a run of `pipeline` produced this dataset version (its own
/// ingest must not trigger it again).
async fn made_by(project: &Project, version: &str, pipeline: &str) -> bool {
    let Ok(edges) = project.meta.lineage("dataset_version", version).await else {
        return false;
    };
    for e in edges {
        if e.relation == "produced_by"
            && e.dst_kind == "pipeline_run"
            && let Ok(r) = project.meta.pipeline_run(&e.dst_id).await
            && r.pipeline == pipeline
        {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_follow_the_cron_expression_in_utc() {
        let cron = kiln_project::pipelines::parse_schedule("30 3 * * *").unwrap();
        // 2026-12-05T10:00:00Z → the next 03:30 is the 6th.
        let after = DateTime::parse_from_rfc3339("2026-12-05T10:00:00Z")
            .unwrap()
            .timestamp_millis();
        let next = next_tick(&cron, after).unwrap();
        assert_eq!(
            DateTime::from_timestamp_millis(next).unwrap().to_rfc3339(),
            "2026-12-06T03:30:00+00:00"
        );
        let every = kiln_project::pipelines::parse_schedule("*/15 * * * *").unwrap();
        let t = next_tick(&every, after).unwrap();
        assert_eq!(t - after, 15 * 60 * 1000);
        assert_eq!(next_tick(&every, t).unwrap() - t, 15 * 60 * 1000);
    }
}
