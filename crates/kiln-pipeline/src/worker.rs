//! `kiln worker`: claims queued steps from the store, runs them and
//! records their results, on any machine that reaches the store.
//!
//! A claim holds a lease that a heartbeat renews. When a worker dies, its
//! lease runs out and any worker puts the step back in the queue; the dead
//! worker's result, should it still arrive, is dropped because it no longer
//! holds the step. So each step run ends once, recorded by the worker that
//! held it to the end.

use std::sync::Arc;
use std::time::Duration;

use kiln_project::Project;
use kiln_store::{StepRun, now_ms};
use serde_json::Value;
use tokio::sync::watch;

use crate::run::{self, Exec, Observer, Work};
use crate::{Result, steps};

/// How a worker works.
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    /// Its name in step records (unique among workers).
    pub name: String,
    /// How long a claim holds without a heartbeat.
    pub lease: Duration,
    /// How often an idle worker looks for queued steps.
    pub poll: Duration,
}

/// How long after finishing a step a worker looks for the next one every
/// `FOLLOW_UP_POLL`.
const FOLLOW_UP: Duration = Duration::from_millis(250);
const FOLLOW_UP_POLL: Duration = Duration::from_millis(3);

/// What a worker reports.
pub enum WorkerEvent<'a> {
    Claimed {
        step: &'a StepRun,
        waited_ms: i64,
    },
    Finished {
        step: &'a StepRun,
        kept: bool,
    },
    Requeued {
        steps: u64,
    },
    Lost {
        step: &'a StepRun,
    },
    /// The store failed; the worker tries again after a while.
    StoreError {
        error: &'a str,
        retry_in: Duration,
    },
}

/// Works until `stop` turns true (the step in hand is finished first). A
/// store that fails is waited out (1 s, doubling to 30 s), not fatal.
pub async fn work(
    project: Arc<Project>,
    opts: &WorkerOptions,
    on_event: Arc<dyn Fn(WorkerEvent<'_>) + Send + Sync>,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let lease_ms = opts.lease.as_millis() as i64;
    // Expired leases are looked for every half lease, not every poll.
    let mut last_requeue: Option<std::time::Instant> = None;
    let mut backoff = Duration::from_secs(1);
    // Right after a step ends, the steps it unblocks are about to be
    // queued: look again soon, then settle back to `poll`.
    let mut last_done: Option<std::time::Instant> = None;
    loop {
        if *stop.borrow() {
            return Ok(());
        }
        let pass = async {
            if last_requeue.is_none_or(|t| t.elapsed() >= opts.lease / 2) {
                last_requeue = Some(std::time::Instant::now());
                run::sweep_abandoned(&project).await?;
                let requeued = project.meta.requeue_expired().await?;
                if requeued > 0 {
                    on_event(WorkerEvent::Requeued { steps: requeued });
                }
            }
            match project
                .meta
                .claim_step(&opts.name, now_ms() + lease_ms)
                .await?
            {
                Some(step) => {
                    let waited_ms = step.started_at.unwrap_or(0) - step.queued_at.unwrap_or(0);
                    on_event(WorkerEvent::Claimed {
                        step: &step,
                        waited_ms,
                    });
                    run_claimed(&project, opts, step, &on_event).await?;
                    Ok::<bool, crate::PipelineError>(true)
                }
                None => Ok(false),
            }
        };
        let wait = match pass.await {
            Ok(true) => {
                backoff = Duration::from_secs(1);
                last_done = Some(std::time::Instant::now());
                continue;
            }
            Ok(false) => {
                backoff = Duration::from_secs(1);
                match last_done {
                    Some(t) if t.elapsed() < FOLLOW_UP => opts.poll.min(FOLLOW_UP_POLL),
                    _ => opts.poll,
                }
            }
            Err(e) => {
                on_event(WorkerEvent::StoreError {
                    error: &e.to_string(),
                    retry_in: backoff,
                });
                let w = backoff;
                backoff = (backoff * 2).min(Duration::from_secs(30));
                w
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => {}
        }
    }
}

async fn run_claimed(
    project: &Arc<Project>,
    opts: &WorkerOptions,
    mut s: StepRun,
    on_event: &Arc<dyn Fn(WorkerEvent<'_>) + Send + Sync>,
) -> Result<()> {
    let work: Work = match serde_json::from_value(s.inputs.clone()) {
        Ok(w) => w,
        Err(e) => {
            s.status = "failed".into();
            s.error = Some(format!("the queued step cannot be read: {e}"));
            s.finished_at = Some(now_ms());
            project
                .meta
                .finish_claimed_step(&s, &opts.name, &[])
                .await?;
            return Ok(());
        }
    };
    // What this machine reads must be what `kiln run` read when it keyed
    // the step (the same checkout, the same kiln.yaml): else the result
    // would be cached under a key it does not match.
    let here = run::reads(project, &work.step, &work.upstream_files).await;
    if here.as_ref() != Ok(&work.reads) {
        s.status = "failed".into();
        s.error = Some(match here {
            Err(e) => format!("on worker {}: {e}", opts.name),
            Ok(here) => format!(
                "worker {} reads other content than `kiln run` did ({}): run workers in a \
                 checkout of the same commit, with the same kiln.yaml",
                opts.name,
                differing_keys(&work.reads, &here).join(", ")
            ),
        });
        s.finished_at = Some(now_ms());
        let kept = project
            .meta
            .finish_claimed_step(&s, &opts.name, &[])
            .await?;
        on_event(WorkerEvent::Finished { step: &s, kept });
        return Ok(());
    }
    let logs = run::log_dir(project, &s.run_id);
    std::fs::create_dir_all(&logs).map_err(crate::PipelineError::io("create", &logs))?;
    let observer: Observer = Arc::new(|_| {});
    let exec = Exec {
        project: project.clone(),
        run_id: s.run_id.clone(),
        logs,
        worker: opts.name.clone(),
        observer,
    };
    // The heartbeat: renew the lease at a third of its length; if the step
    // is no longer ours, stop working on it.
    let (lost_tx, mut lost) = watch::channel(false);
    let beat = {
        let project = project.clone();
        let (run_id, step, name) = (s.run_id.clone(), s.step.clone(), opts.name.clone());
        let every = opts.lease / 3;
        let lease_ms = opts.lease.as_millis() as i64;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                match project
                    .meta
                    .renew_lease(&run_id, &step, &name, now_ms() + lease_ms)
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => {
                        let _ = lost_tx.send(true);
                        return;
                    }
                    // A store that does not answer: keep trying until the
                    // lease runs out; another worker then takes the step.
                    Err(_) => {}
                }
            }
        })
    };
    // The claim counted this try; `perform` counts each try it makes.
    s.attempts -= 1;
    let result = tokio::select! {
        r = run::perform(&exec, &mut s, &work) => Some(r),
        _ = lost.changed() => None,
    };
    beat.abort();
    let Some(result) = result else {
        on_event(WorkerEvent::Lost { step: &s });
        return Ok(());
    };
    let produced = match result? {
        Ok(p) => {
            s.status = "succeeded".into();
            s.error = None;
            s.outputs = Some(Value::Object(p.outputs));
            Some(p.produced)
        }
        Err(e) => {
            s.status = "failed".into();
            s.error = Some(e);
            None
        }
    };
    s.finished_at = Some(now_ms());
    let edges = produced
        .map(|p| steps::edges(&s.run_id, &p))
        .unwrap_or_default();
    let kept = project
        .meta
        .finish_claimed_step(&s, &opts.name, &edges)
        .await?;
    on_event(WorkerEvent::Finished { step: &s, kept });
    Ok(())
}

/// The top-level keys whose values differ.
fn differing_keys(a: &Value, b: &Value) -> Vec<String> {
    let empty = serde_json::Map::new();
    let (a, b) = (
        a.as_object().unwrap_or(&empty),
        b.as_object().unwrap_or(&empty),
    );
    let mut keys: Vec<String> = a
        .keys()
        .chain(b.keys())
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect();
    keys.sort();
    keys.dedup();
    keys
}
