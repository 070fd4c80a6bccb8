//! OpenLineage run events (https://openlineage.io/spec/2-0-2/OpenLineage.json):
//! when a run ends, kiln tells a lineage backend (Marquez, a file) which
//! job ran, on which datasets, and what it produced.

use kiln_store::Run;
use serde_json::{Value, json};

const PRODUCER: &str = concat!("https://example.invalid/kiln/", env!("CARGO_PKG_VERSION"));
const SCHEMA: &str = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/definitions/RunEvent";

/// The event for a run: START while it runs, COMPLETE, FAIL or ABORT after.
pub fn run_event(project: &str, run: &Run, outputs: &[String]) -> Value {
    let event_type = match run.status.as_str() {
        "FINISHED" => "COMPLETE",
        "FAILED" => "FAIL",
        "KILLED" => "ABORT",
        _ => "START",
    };
    let at = run.end_time.unwrap_or(run.start_time);
    let time = chrono::DateTime::from_timestamp_millis(at)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    // OpenLineage run ids are UUIDs; kiln's are 128-bit hex.
    let id = &run.id;
    let uuid = if id.len() == 32 {
        format!(
            "{}-{}-{}-{}-{}",
            &id[..8],
            &id[8..12],
            &id[12..16],
            &id[16..20],
            &id[20..]
        )
    } else {
        id.clone()
    };
    let namespace = format!("kiln://{project}");
    let inputs: Vec<Value> = run
        .inputs
        .iter()
        .map(|i| {
            json!({
                "namespace": namespace,
                "name": if i.source_type == "kiln" { i.source.clone() } else { i.name.clone() },
                "facets": {},
                "inputFacets": {},
            })
        })
        .collect();
    let outputs: Vec<Value> = outputs
        .iter()
        .map(|o| json!({ "namespace": namespace, "name": o, "facets": {}, "outputFacets": {} }))
        .collect();
    json!({
        "eventType": event_type,
        "eventTime": time,
        "producer": PRODUCER,
        "schemaURL": SCHEMA,
        "run": { "runId": uuid, "facets": {} },
        "job": { "namespace": namespace, "name": format!("experiment-{}/{}", run.experiment_id, run.name), "facets": {} },
        "inputs": inputs,
        "outputs": outputs,
    })
}

/// Sends an event where `KILN_OPENLINEAGE_URL` says, if it is set. Lineage
/// is best effort: a failure is logged, never fails the run.
pub async fn emit(event: &Value) {
    let Ok(target) = std::env::var(kiln_core::EnvVars::KILN_OPENLINEAGE_URL) else {
        return;
    };
    if let Err(e) = send(&target, event).await {
        tracing::warn!(target = %target, error = %e, "could not emit an OpenLineage event");
    }
}

async fn send(target: &str, event: &Value) -> Result<(), String> {
    if target.starts_with("http://") || target.starts_with("https://") {
        let response = reqwest::Client::new()
            .post(target)
            .header("content-type", "application/json")
            .body(event.to_string())
            .timeout(std::time::Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("{target} answered {}", response.status()));
        }
        return Ok(());
    }
    let path = target.strip_prefix("file://").unwrap_or(target);
    let mut line = event.to_string();
    line.push('\n');
    // One write of a whole line with O_APPEND: concurrent writers interleave
    // lines, never bytes.
    use std::io::Write;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(line.as_bytes()))
        .map_err(|e| format!("{path}: {e}"))
}
