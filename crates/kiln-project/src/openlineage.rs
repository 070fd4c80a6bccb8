//! OpenLineage run events (<https://openlineage.io/spec/2-0-2/OpenLineage.json>):
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

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_store::{KV, RunInput};

    fn run() -> Run {
        Run {
            id: "0123456789abcdef0123456789abcdef".into(),
            experiment_id: "1".into(),
            name: "baseline".into(),
            kind: "train".into(),
            status: "FINISHED".into(),
            user_id: "ana".into(),
            start_time: 1_790_000_000_000,
            end_time: Some(1_790_000_005_000),
            artifact_uri: String::new(),
            lifecycle_stage: "active".into(),
            source_commit: None,
            source_dirty: None,
            command: None,
            environment: None,
            params: Vec::new(),
            tags: Vec::new(),
            metrics: Vec::new(),
            inputs: vec![RunInput {
                name: "visits".into(),
                digest: "abcd".into(),
                source_type: "kiln".into(),
                source: "visits@ff00".into(),
                schema: None,
                profile: None,
                role: Some("train".into()),
                tags: vec![KV::new("mlflow.data.context", "train")],
            }],
        }
    }

    #[test]
    fn a_finished_run_is_a_complete_event_with_its_inputs_and_a_uuid() {
        let e = run_event("clinic", &run(), &["model_artifact:beef".into()]);
        assert_eq!(e["eventType"], "COMPLETE");
        assert_eq!(e["run"]["runId"], "01234567-89ab-cdef-0123-456789abcdef");
        assert_eq!(e["job"]["namespace"], "kiln://clinic");
        assert_eq!(e["inputs"][0]["name"], "visits@ff00");
        assert_eq!(e["outputs"][0]["name"], "model_artifact:beef");
        assert_eq!(e["eventTime"], "2026-09-21T14:13:25.000Z");
        let mut failed = run();
        failed.status = "FAILED".into();
        assert_eq!(run_event("clinic", &failed, &[])["eventType"], "FAIL");
    }

    #[tokio::test]
    async fn events_are_appended_to_a_file_one_json_line_each() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lineage.jsonl");
        let target = format!("file://{}", path.display());
        for _ in 0..2 {
            send(&target, &run_event("p", &run(), &[])).await.unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["eventType"], "COMPLETE");
    }

    #[tokio::test]
    async fn events_are_posted_to_an_http_endpoint() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // Read the head, then the body its Content-Length announces.
            loop {
                let n = sock.read(&mut chunk).await.unwrap();
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        sock.write_all(b"HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n")
                            .await
                            .unwrap();
                        return (head.to_string(), body.to_string());
                    }
                }
                if n == 0 {
                    panic!("connection closed early");
                }
            }
        });
        send(
            &format!("http://{addr}/api/v1/lineage"),
            &run_event("p", &run(), &[]),
        )
        .await
        .unwrap();
        let (head, body) = server.await.unwrap();
        assert!(head.starts_with("POST /api/v1/lineage "), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{head}"
        );
        let event: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(event["eventType"], "COMPLETE");
    }

    #[tokio::test]
    async fn an_endpoint_that_refuses_is_an_error_not_a_panic() {
        let err = send("http://127.0.0.1:9/nothing-listens", &json!({})).await;
        assert!(err.is_err());
    }
}
