//! The registry, lineage, run comparison and garbage collection through the
//! real `kiln` binary.

mod common;

use common::{BIKES, Project};

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../kiln-ml/tests/fixtures/foreign/"
);

/// A project with the bundled bikes data and two quick training runs.
fn trained_bikes() -> (Project, Vec<String>) {
    let p = Project::new();
    p.kiln(&["data", "add", "bikes", BIKES, "-q"]).ok();
    let mut runs = Vec::new();
    for seed in ["1", "2"] {
        let out = p
            .kiln(&[
                "train", "bikes", "--target", "bikers", "--trials", "2", "--seed", seed, "--split",
                "time", "-e", "demand", "--json",
            ])
            .ok()
            .json();
        runs.push(out["model"].as_str().unwrap().to_string());
    }
    (p, runs)
}

#[test]
fn a_kiln_run_is_tracked_registered_aliased_and_traced_to_its_data() {
    let (p, runs) = trained_bikes();

    // The training run is a tracked run like any other: experiment, flat
    // params and metrics, its data version as a train input, its command.
    let run = p.kiln(&["runs", "show", &runs[0], "--json"]).ok().json();
    let r = &run["run"];
    assert_eq!(r["kind"], "train");
    assert_eq!(r["status"], "FINISHED");
    assert_eq!(r["params"]["target"], "bikers");
    assert_eq!(r["params"]["seed"], "1");
    assert!(r["metrics"]["test_rmse"].as_f64().is_some(), "{r}");
    assert_eq!(r["inputs"][0]["role"], "train");
    assert!(
        r["inputs"][0]["source"]
            .as_str()
            .unwrap()
            .starts_with("bikes@")
    );
    assert!(r["command"].as_str().unwrap().contains("train bikes"));
    let exps = p.kiln(&["experiments", "ls", "--json"]).ok().json();
    let demand = exps
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "demand")
        .expect("experiment created");
    assert_eq!(r["experiment_id"], demand["id"]);

    // Register both runs' models; aliases point, move and are removed.
    let v1 = p
        .kiln(&[
            "models",
            "register",
            "bikes",
            "--run",
            &runs[0][..10],
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(v1["version"], 1);
    assert_eq!(v1["format"], "kiln");
    let inputs: Vec<&str> = v1["signature"]["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(
        inputs.contains(&"temp") && !inputs.contains(&"bikers"),
        "{inputs:?}"
    );
    let v2 = p
        .kiln(&["models", "register", "bikes", "--run", &runs[1], "--json"])
        .ok()
        .json();
    assert_eq!(v2["version"], 2);

    let set = p
        .kiln(&["models", "alias", "bikes", "champion", "1", "--json"])
        .ok()
        .json();
    assert!(set["previous_version"].is_null());
    let moved = p
        .kiln(&["models", "alias", "bikes", "champion", "2"])
        .ok()
        .stdout;
    assert!(moved.contains("v1 → v2"), "{moved}");
    p.kiln(&["models", "alias", "bikes", "challenger", "1"])
        .ok();
    let card = p
        .kiln(&["models", "show", "bikes@champion", "--json"])
        .ok()
        .json();
    assert_eq!(card["version"]["version"], 2);
    assert_eq!(card["version"]["run_id"], runs[1].as_str());
    assert!(card["version"]["metrics"]["test_rmse"].as_f64().is_some());
    assert!(
        card["data_versions"][0]
            .as_str()
            .unwrap()
            .starts_with("bikes@"),
        "{card}"
    );
    let text = p.kiln(&["models", "show", "bikes"]).ok().stdout;
    assert!(
        text.contains("champion") && text.contains("challenger") && text.contains("v2"),
        "{text}"
    );
    p.kiln(&["models", "alias", "bikes", "challenger", "--delete"])
        .ok();
    let model = p.kiln(&["models", "ls", "--json"]).ok().json();
    assert_eq!(model[0]["aliases"].as_array().unwrap().len(), 1, "{model}");

    // Every move is in the audit log with where the alias came from.
    let audit = p.kiln(&["audit", "--json"]).ok().json();
    let moves: Vec<&serde_json::Value> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"].as_str().unwrap().starts_with("model.alias"))
        .collect();
    assert_eq!(moves.len(), 4, "{moves:?}");
    assert!(moves.iter().any(|e| e["detail"]["alias"] == "champion"
        && e["detail"]["from"] == 1
        && e["detail"]["to"] == 2));

    // Lineage: model version → run → dataset version, and back down.
    let tree = p.kiln(&["lineage", "bikes@champion", "--json"]).ok().json();
    assert_eq!(tree["kind"], "model_version");
    let run_node = tree["upstream"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["kind"] == "run")
        .expect("run upstream");
    assert_eq!(run_node["id"], runs[1].as_str());
    assert!(
        run_node["upstream"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["kind"] == "dataset_version"),
        "{tree}"
    );
    let version = r["inputs"][0]["source"].as_str().unwrap();
    let down = p
        .kiln(&["lineage", &format!("bikes@{}", &version[6..18]), "--json"])
        .ok()
        .json();
    assert_eq!(down["kind"], "dataset_version");
    let text = down.to_string();
    assert!(
        text.contains(&runs[0]) && text.contains("bikes/1") && text.contains("bikes/2"),
        "{down}"
    );

    // Bad references say what they accept.
    let bad = p.kiln(&["lineage", "nothing-here"]).code(2);
    assert!(bad.stderr.contains("MODEL@VERSION"), "{}", bad.stderr);
    let bad = p.kiln(&["models", "alias", "bikes", "latest", "1"]).code(2);
    assert!(bad.stderr.contains("reserved"), "{}", bad.stderr);
    let bad = p
        .kiln(&["models", "alias", "bikes", "champion", "9"])
        .code(2);
    assert!(bad.stderr.contains("bikes/9"), "{}", bad.stderr);
    let bad = p.kiln(&["models", "show", "nope"]).code(2);
    assert!(bad.stderr.contains("kiln models ls"), "{}", bad.stderr);
}

#[test]
fn runs_compare_marks_the_best_value_of_each_metric() {
    let (p, runs) = trained_bikes();
    let cmp = p
        .kiln(&["runs", "compare", &runs[0], &runs[1], "--json"])
        .ok()
        .json();
    let rmse = &cmp["metrics"]["test_rmse"];
    assert_eq!(rmse["lower_is_better"], true);
    let values: Vec<f64> = rmse["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let best = rmse["best"].as_u64().unwrap() as usize;
    assert!(values.iter().all(|v| values[best] <= *v), "{cmp}");
    let r2 = &cmp["metrics"]["test_r2"];
    let values: Vec<f64> = r2["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let best = r2["best"].as_u64().unwrap() as usize;
    assert!(values.iter().all(|v| values[best] >= *v), "{cmp}");
    assert_eq!(cmp["params"]["seed"], serde_json::json!(["1", "2"]));
    let text = p.kiln(&["runs", "compare", &runs[0], &runs[1]]).ok().stdout;
    assert!(
        text.contains("param seed ≠") && text.contains(" *"),
        "{text}"
    );
    let one = p.kiln(&["runs", "compare", &runs[0]]).code(2);
    assert!(
        one.stderr.contains("required") || one.stderr.contains("2 values"),
        "{}",
        one.stderr
    );
}

#[test]
fn model_files_from_other_tools_import_with_their_signature() {
    let p = Project::new();
    for (file, format, first_input, task) in [
        ("lightgbm_credit_binary.txt", "lightgbm", None, "binary"),
        ("xgboost_credit_binary.json", "xgboost", None, "binary"),
        ("onnx_bikeshare_logreg.onnx", "onnx", None, "binary"),
        (
            "lightgbm_bikeshare_regression.txt",
            "lightgbm",
            Some("weather"),
            "regression",
        ),
    ] {
        let out = p
            .kiln(&[
                "models",
                "import",
                "imported",
                &format!("{FIXTURES}{file}"),
                "--json",
            ])
            .ok()
            .json();
        assert_eq!(out["version"]["format"], format, "{file}");
        assert_eq!(out["inspected"]["task"], task, "{file}");
        let sig = out["version"]["signature"]["inputs"].as_array().unwrap();
        assert!(!sig.is_empty(), "{file}: {out}");
        if let Some(name) = first_input {
            assert!(sig.iter().any(|c| c["name"] == name), "{file}: {sig:?}");
        }
    }
    let show = p
        .kiln(&["models", "show", "imported", "--json"])
        .ok()
        .json();
    assert_eq!(show["versions"].as_array().unwrap().len(), 4);
    let card = p.kiln(&["models", "show", "imported@3"]).ok().stdout;
    assert!(
        card.contains("onnx") && card.contains("onnx_bikeshare_logreg.onnx"),
        "{card}"
    );

    // Not a model, a missing file, a model saved in a format kiln refuses.
    let csv = p.kiln(&["models", "import", "imported", BIKES]).code(2);
    assert!(
        csv.stderr.contains("expected a kiln model, ONNX"),
        "{}",
        csv.stderr
    );
    let missing = p
        .kiln(&["models", "import", "imported", "nope.onnx"])
        .code(2);
    assert!(missing.stderr.contains("nope.onnx"), "{}", missing.stderr);
    let ubj = p
        .kiln(&[
            "models",
            "import",
            "imported",
            &format!("{FIXTURES}xgboost_bikeshare_regression_unnamed.ubj"),
        ])
        .code(2);
    assert!(ubj.stderr.to_lowercase().contains("json"), "{}", ubj.stderr);
    // Nothing was half-registered by the failures.
    let show = p
        .kiln(&["models", "show", "imported", "--json"])
        .ok()
        .json();
    assert_eq!(show["versions"].as_array().unwrap().len(), 4);
}

#[test]
fn gc_removes_deleted_runs_and_unreferenced_objects_but_keeps_what_is_live() {
    let (p, runs) = trained_bikes();
    p.kiln(&["models", "register", "bikes", "--run", &runs[1]])
        .ok();
    let before = p.object_count();

    // Deleting hides a run; restoring brings it back; gc leaves both alone
    // while nothing is deleted.
    p.kiln(&["runs", "delete", &runs[0]]).ok();
    assert_eq!(p.run_count(), 1);
    p.kiln(&["runs", "restore", &runs[0]]).ok();
    assert_eq!(p.run_count(), 2);
    let dry = p.kiln(&["gc", "--grace", "0s", "--json"]).ok().json();
    assert_eq!(dry["objects_removed"], 0, "{dry}");

    // Delete both runs: run 0's model and leaderboard go; run 1's model is
    // registered and stays, as does the data.
    p.kiln(&["runs", "delete", &runs[0], &runs[1]]).ok();
    let dry = p
        .kiln(&["gc", "--grace", "0s", "--dry-run", "--json"])
        .ok()
        .json();
    assert_eq!(dry["runs_purged"].as_array().unwrap().len(), 2);
    let would = dry["objects_removed"].as_u64().unwrap();
    assert!(would >= 3, "{dry}");
    assert_eq!(p.object_count(), before, "a dry run removed objects");
    // Young objects are spared by the default grace period.
    let young = p.kiln(&["gc", "--dry-run", "--json"]).ok().json();
    assert_eq!(young["objects_removed"], 0);
    assert_eq!(young["objects_kept_young"].as_u64().unwrap(), would);

    let done = p.kiln(&["gc", "--grace", "0s", "--json"]).ok().json();
    assert_eq!(done["objects_removed"].as_u64().unwrap(), would);
    assert_eq!(p.object_count() as u64, before as u64 - would);
    let all = p.kiln(&["runs", "ls", "--all", "--json"]).ok().json();
    assert_eq!(all.as_array().unwrap().len(), 0);
    // What is live still reads: the registered model scores, the data restores.
    p.kiln(&["models", "show", "bikes@1"]).ok();
    p.kiln(&["data", "get", "bikes", "-o", "restored.csv"]).ok();
    assert_eq!(
        std::fs::read(p.path("restored.csv")).unwrap(),
        std::fs::read(BIKES).unwrap()
    );
    let again = p.kiln(&["gc", "--grace", "0s", "--json"]).ok().json();
    assert_eq!(again["objects_removed"], 0);
}

#[test]
fn kiln_train_emits_an_openlineage_event_naming_its_data_and_model() {
    let p = Project::new();
    p.kiln(&["data", "add", "bikes", BIKES, "-q"]).ok();
    let events = p.path("lineage.jsonl");
    let out: common::Out = p
        .command(&[
            "train", "bikes", "--target", "bikers", "--trials", "1", "--json",
        ])
        .env(
            "KILN_OPENLINEAGE_URL",
            format!("file://{}", events.display()),
        )
        .output()
        .unwrap()
        .into();
    let run = out.ok().json()["model"].as_str().unwrap().to_string();
    let text = std::fs::read_to_string(&events).unwrap();
    let event: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(event["eventType"], "COMPLETE");
    assert_eq!(
        event["run"]["runId"].as_str().unwrap().replace('-', ""),
        run
    );
    assert!(
        event["inputs"][0]["name"]
            .as_str()
            .unwrap()
            .starts_with("bikes@"),
        "{event}"
    );
    assert!(
        event["outputs"][0]["name"]
            .as_str()
            .unwrap()
            .starts_with("model_artifact:"),
        "{event}"
    );
    // An unreachable endpoint is logged, never fails the run.
    let out: common::Out = p
        .command(&[
            "train", "bikes", "--target", "bikers", "--trials", "1", "-q",
        ])
        .env("KILN_OPENLINEAGE_URL", "http://127.0.0.1:9/lineage")
        .output()
        .unwrap()
        .into();
    out.ok();
}
