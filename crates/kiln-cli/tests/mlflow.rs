//! MLflow's official Python client against a real `kiln server`: a data
//! scientist's session (tests/mlflow/flow.py) and 32 concurrent writers
//! (tests/mlflow/concurrent_writes.py), then the same facts read back through
//! kiln's CLI. The interpreter with `mlflow` comes from
//! KILN_TEST_MLFLOW_PYTHON, which `scripts/test` sets.

mod common;

use std::process::Command;

use common::{Project, Server};
use serde_json::Value;

/// Runs scripts of tests/mlflow against a server.
trait Scripts {
    /// Runs a script of tests/mlflow against this server; returns the JSON
    /// line it prints last.
    fn run_script(&self, script: &str, args: &[&str]) -> Value;
}

impl Scripts for Server {
    fn run_script(&self, script: &str, args: &[&str]) -> Value {
        let python =
            std::env::var(kiln_core::EnvVars::KILN_TEST_MLFLOW_PYTHON).unwrap_or_else(|_| {
                panic!(
                    "{} is not set: run the tests with scripts/test, which installs mlflow",
                    kiln_core::EnvVars::KILN_TEST_MLFLOW_PYTHON
                )
            });
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/mlflow/");
        let out = Command::new(python)
            .arg(format!("{path}{script}"))
            .args(args)
            .env("MLFLOW_TRACKING_URI", &self.url)
            .env("KILN_USER", "tester")
            .output()
            .expect("run python");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{script} failed ({}):\n{}\n{}\nserver log:\n{}",
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr),
            self.log.lock().unwrap()
        );
        let last = stdout
            .lines()
            .rfind(|l| l.starts_with('{'))
            .unwrap_or_else(|| panic!("{script} printed no JSON:\n{stdout}"));
        serde_json::from_str(last).unwrap()
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * a.abs().max(1.0)
}

/// Runs flow.py and checks every fact it reports through the CLI.
fn flow_lands_in_kiln(p: &Project, env: &[(&str, String)]) -> Value {
    let server = Server::start(p, &["server", "--port", "0"], env);
    let facts = server.run_script("flow.py", &[]);
    let run_id = facts["run_ids"][0].as_str().unwrap();

    // The run: name, experiment, params, latest metrics, artifacts.
    let show = p.kiln(&["runs", "show", run_id, "--json"]).ok().json();
    let run = &show["run"];
    assert_eq!(run["id"], run_id);
    assert_eq!(run["name"], facts["run_name"]);
    assert_eq!(run["experiment_id"], facts["experiment_id"]);
    assert_eq!(run["status"], "FINISHED");
    assert_eq!(run["kind"], "external");
    for (k, v) in facts["params"].as_object().unwrap() {
        assert_eq!(&run["params"][k], v, "param {k}");
    }
    let long = &facts["long_param"];
    assert_eq!(
        run["params"][long["key"].as_str().unwrap()]
            .as_str()
            .unwrap()
            .chars()
            .count() as u64,
        long["length"].as_u64().unwrap()
    );
    for (k, v) in facts["metrics"].as_object().unwrap() {
        assert!(
            close(run["metrics"][k].as_f64().unwrap(), v.as_f64().unwrap()),
            "metric {k}: {} vs {v}",
            run["metrics"][k]
        );
    }
    for (k, v) in facts["tags"].as_object().unwrap() {
        assert_eq!(&run["tags"][k], v, "tag {k}");
    }
    assert_eq!(run["tags"]["mlflow.runName"], facts["run_name"]);
    let stored: Vec<String> = show["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            a["path"]
                .as_str()
                .unwrap()
                .split_once("/artifacts/")
                .unwrap()
                .1
                .to_string()
        })
        .collect();
    for a in facts["artifact_paths"].as_array().unwrap() {
        assert!(
            stored.contains(&a.as_str().unwrap().to_string()),
            "artifact {a} not in {stored:?}"
        );
    }
    let inputs = run["inputs"].as_array().unwrap();
    assert!(inputs.iter().any(|i| i["role"] == "train"), "{inputs:?}");

    // Every point of every metric, in step order, NaN and infinities kept.
    for (key, points) in facts["metric_history"].as_object().unwrap() {
        let history = p
            .kiln(&["runs", "history", run_id, key, "--json"])
            .ok()
            .json();
        let history = history.as_array().unwrap();
        let points = points.as_array().unwrap();
        assert_eq!(history.len(), points.len(), "history of {key}: {history:?}");
        for (h, want) in history.iter().zip(points) {
            assert_eq!(h["step"], want[0], "{key}");
            match want[1].as_f64() {
                Some(v) => assert!(
                    close(h["value"].as_f64().unwrap(), v),
                    "{key}: {h} vs {want}"
                ),
                // The CLI's JSON has no NaN or infinity: null.
                None => assert!(h["value"].is_null(), "{key}: {h} vs {want}"),
            }
        }
    }

    // The experiment, the runs in it, a search like the client's.
    let experiments = p.kiln(&["experiments", "ls", "--json"]).ok().json();
    assert!(
        experiments
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == facts["experiment_name"])
    );
    let exp = facts["experiment_name"].as_str().unwrap();
    let hits = p
        .kiln(&[
            "runs",
            "ls",
            "-e",
            exp,
            "--filter",
            "metrics.acc > 0.5",
            "--order-by",
            "metrics.acc DESC",
            "--json",
        ])
        .ok()
        .json();
    let accs: Vec<f64> = hits
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["metrics"]["acc"].as_f64().unwrap())
        .collect();
    assert!(
        !accs.is_empty() && accs.windows(2).all(|w| w[0] >= w[1]) && accs.iter().all(|a| *a > 0.5),
        "{accs:?}"
    );
    assert_eq!(hits[0]["id"], run_id);

    // The model: registered by log_model, aliased, its card and lineage.
    let model = facts["model_name"].as_str().unwrap();
    let models = p.kiln(&["models", "ls", "--json"]).ok().json();
    let m = models
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == model)
        .expect("model listed");
    assert!(
        m["aliases"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a[0] == "champion" && a[1] == 1),
        "{m}"
    );
    let card = p
        .kiln(&["models", "show", &format!("{model}@champion"), "--json"])
        .ok()
        .json();
    assert_eq!(card["version"]["version"], 1);
    assert_eq!(card["version"]["run_id"], run_id);
    assert_eq!(card["version"]["model_id"], facts["logged_model_id"]);
    assert_eq!(card["version"]["format"], "mlflow");
    assert!(
        card["version"]["signature"]["inputs"]
            .as_array()
            .is_some_and(|i| !i.is_empty()),
        "{card}"
    );
    assert!(close(
        card["version"]["metrics"]["acc"].as_f64().unwrap(),
        facts["metrics"]["acc"].as_f64().unwrap()
    ));
    let data = card["data_versions"].as_array().unwrap();
    assert!(!data.is_empty(), "the card names no training data: {card}");

    // Lineage walks from the model version through its run to its data.
    let tree = p
        .kiln(&["lineage", &format!("{model}@1"), "--json"])
        .ok()
        .json();
    let text = tree.to_string();
    assert!(text.contains(run_id), "{tree}");
    assert!(text.contains("external_dataset"), "{tree}");
    let rendered = p
        .kiln(&["lineage", &format!("{model}@champion")])
        .ok()
        .stdout;
    assert!(
        rendered.contains("registered from") && rendered.contains("used"),
        "{rendered}"
    );
    facts
}

#[test]
fn mlflow_client_flow_lands_in_kiln_and_the_cli_reads_it_back() {
    let p = Project::new();
    let events = p.path("lineage.jsonl");
    let facts = flow_lands_in_kiln(
        &p,
        &[(
            "KILN_OPENLINEAGE_URL",
            format!("file://{}", events.display()),
        )],
    );
    // Each run that ended sent an OpenLineage event; the first names its
    // dataset and the logged model it produced.
    let run_id = facts["run_ids"][0].as_str().unwrap();
    let text = std::fs::read_to_string(&events).unwrap();
    let event: Value = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|e| e["run"]["runId"].as_str().unwrap().replace('-', "") == run_id)
        .expect("an event for the first run");
    assert_eq!(event["eventType"], "COMPLETE");
    assert!(!event["inputs"].as_array().unwrap().is_empty(), "{event}");
    assert!(
        event["outputs"]
            .to_string()
            .contains(facts["logged_model_id"].as_str().unwrap()),
        "{event}"
    );
    // Alias moves are audited: what serving and webhooks will follow.
    let audit = p.kiln(&["audit", "--json"]).ok().json();
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "model.alias.set" && e["detail"]["to"] == 1),
        "{audit}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mlflow_client_flow_works_on_postgres_and_s3() {
    let p = Project::on_servers().await;
    tokio::task::block_in_place(|| flow_lands_in_kiln(&p, &[]));
}

#[test]
fn thirty_two_concurrent_mlflow_clients_lose_no_point() {
    let p = Project::new();
    let server = Server::start(&p, &["server", "--port", "0"], &[]);
    let summary = server.run_script(
        "concurrent_writes.py",
        &["--workers", "32", "--points", "50", "--batch", "200"],
    );
    assert_eq!(summary["worker_errors"], 0, "{summary}");
    assert_eq!(summary["lost_points"], 0, "{summary}");
    assert_eq!(summary["received_points"], 32 * 250, "{summary}");
    // And through the CLI, from the store itself.
    let runs = p
        .kiln(&[
            "runs",
            "ls",
            "-e",
            summary["experiment_id"].as_str().unwrap(),
            "--limit",
            "100",
            "--json",
        ])
        .ok()
        .json();
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 32);
    for r in runs.iter().take(4) {
        let id = r["id"].as_str().unwrap();
        let single = p
            .kiln(&["runs", "history", id, "single", "--json"])
            .ok()
            .json();
        let batch = p
            .kiln(&["runs", "history", id, "batch", "--json"])
            .ok()
            .json();
        assert_eq!(single.as_array().unwrap().len(), 50);
        assert_eq!(batch.as_array().unwrap().len(), 200);
    }
}
