//! `kiln explain` and `explain=true` through the real binary: a trained
//! model explained from the CLI with its HTML report, an imported LightGBM
//! model whose attributions equal LightGBM's own `pred_contrib`, the
//! model-agnostic fallback and its notes, bad input, the summary on the
//! model card, and explanations served over HTTP and logged.

mod common;

use common::{BIKES, Project, Server, shared_data};
use serde_json::{Value, json};

const FOREIGN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../kiln-ml/tests/fixtures/foreign"
);
const SHAP: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../kiln-explain/tests/fixtures"
);

/// Asserts every local row adds up: E[f(x)] + Σ SHAP = output.
#[track_caller]
fn assert_additive(e: &Value) {
    let expected = e["expected_value"].as_f64().unwrap();
    for l in e["local"].as_array().unwrap() {
        let total: f64 = l["contributions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["shap"].as_f64().unwrap())
            .sum();
        let output = l["output"].as_f64().unwrap();
        assert!(
            (expected + total - output).abs() < 1e-9,
            "row {}: {expected} + {total} vs {output}",
            l["row"]
        );
    }
}

/// Trains an ensemble on the Pima diabetes data (a classifier, so not one
/// sum of trees); its run id.
fn pima_ensemble(p: &Project) -> String {
    p.kiln(&[
        "data",
        "add",
        "pima",
        &shared_data("pima_diabetes.csv"),
        "-q",
    ])
    .ok();
    p.kiln(&[
        "train", "pima", "--target", "diabetes", "--trials", "3", "--json",
    ])
    .ok()
    .json()["model"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A LightGBM text model without its row counts (the training weights).
fn uncounted(model: impl AsRef<std::path::Path>) -> String {
    std::fs::read_to_string(model)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("leaf_count=") && !l.starts_with("internal_count="))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The shap fixture of `model`: rows, LightGBM's pred_contrib.
fn fixture(model: &str) -> Value {
    let stem = model.rsplit_once('.').unwrap().0;
    serde_json::from_slice(&std::fs::read(format!("{SHAP}/{stem}.shap.json")).unwrap()).unwrap()
}

/// The fixture's rows as CSV (missing values empty).
fn fixture_csv(doc: &Value, rows: usize) -> String {
    let cols: Vec<&str> = doc["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let mut s = cols.join(",") + "\n";
    for r in doc["rows"].as_array().unwrap().iter().take(rows) {
        let cells: Vec<String> = r
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().map(|x| x.to_string()).unwrap_or_default())
            .collect();
        s += &(cells.join(",") + "\n");
    }
    s
}

#[test]
fn a_trained_model_is_explained_with_a_report_and_its_values_add_up() {
    let p = Project::new();
    p.kiln(&["data", "add", "bikes", BIKES, "-q"]).ok();
    let run = p
        .kiln(&[
            "train",
            "bikes",
            "--target",
            "bikers",
            "--trials",
            "2",
            "--no-ensemble",
            "--json",
        ])
        .ok()
        .json()["model"]
        .as_str()
        .unwrap()
        .to_string();
    // No DATA: the dataset version the model was trained on.
    let out = p
        .kiln(&[
            "explain",
            &run,
            "--rows",
            "0,5",
            "--sample",
            "300",
            "--html",
            "report.html",
            "--json",
        ])
        .ok()
        .json();
    let e = &out["explanation"];
    assert_eq!(e["method"], "tree_path_dependent", "{e}");
    assert!(e["method_note"].is_null());
    assert_eq!(e["rows"], 300);
    assert_additive(e);
    // Every input column is reported, most important first.
    let columns = e["columns"].as_array().unwrap();
    let names: Vec<&str> = columns
        .iter()
        .map(|c| c["column"].as_str().unwrap())
        .collect();
    for c in ["datetime", "hour", "temp", "humidity", "weekday"] {
        assert!(names.contains(&c), "{names:?}");
    }
    assert!(!names.contains(&"bikers"));
    let mean_abs: Vec<f64> = columns
        .iter()
        .map(|c| c["mean_abs"].as_f64().unwrap())
        .collect();
    assert!(mean_abs.windows(2).all(|w| w[0] >= w[1]), "{mean_abs:?}");
    // The time (its hour, weekday, trend: one column) drives demand most,
    // and is shown as the table has it.
    assert_eq!(names[0], "datetime");
    assert_eq!(columns[0]["points"].as_array().unwrap().len(), 300);
    let first = &columns[0]["points"][0]["value"];
    assert!(first.as_str().unwrap().starts_with("2011-01-01"), "{first}");
    // The local rows' outputs are the model's predictions on the raw scale.
    p.kiln(&["predict", &run, BIKES, "-o", "pred.csv"]).ok();
    let preds: Vec<f64> = std::fs::read_to_string(p.path("pred.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').next_back().unwrap().parse().unwrap())
        .collect();
    let log = e["output"]["name"].as_str().unwrap().starts_with("log");
    for l in e["local"].as_array().unwrap() {
        let row = l["row"].as_u64().unwrap() as usize;
        let output = l["output"].as_f64().unwrap();
        let predicted = if log { output.exp() } else { output };
        assert!(
            (predicted - preds[row]).abs() < 1e-6,
            "row {row}: {predicted} vs {}",
            preds[row]
        );
    }
    // Permutation importance on the labelled rows; partial dependence.
    let pi = &e["permutation"];
    assert_eq!(pi["metric"], "rmse");
    assert_eq!(pi["columns"][0]["column"], "datetime", "{pi}");
    assert!(pi["columns"][0]["mean"].as_f64().unwrap() > 0.0);
    let dep = e["dependence"].as_array().unwrap();
    assert!(!dep.is_empty());
    assert_eq!(
        dep[0]["grid"].as_array().unwrap().len(),
        dep[0]["average"].as_array().unwrap().len()
    );
    assert!(!e["interactions"].as_array().unwrap().is_empty());

    let html = std::fs::read_to_string(p.path("report.html")).unwrap();
    for s in [
        "Explanation:",
        "Global importance",
        "Summary",
        "Partial dependence",
        "Row 5",
        "humidity",
    ] {
        assert!(html.contains(s), "the report lacks {s:?}");
    }
    assert!(!html.contains("NaN"));

    // The table view names the method and the columns.
    let out = p
        .kiln(&["explain", &run, "--repeats", "0", "--rows", "2"])
        .ok();
    assert!(
        out.stderr.contains("exact TreeSHAP (path-dependent)"),
        "{}",
        out.stderr
    );
    assert!(
        out.stdout.contains("humidity") && out.stdout.contains("Row 2:"),
        "{}",
        out.stdout
    );

    // The summary kiln train stored is on the model card.
    p.kiln(&["models", "register", "bikes", "--run", &run, "-q"])
        .ok();
    let card = p.kiln(&["models", "show", "bikes@1", "--json"]).ok().json();
    assert_eq!(card["explanation"]["method"], "tree_path_dependent");
    assert_eq!(card["explanation"]["columns"][0]["column"], "datetime");
    assert!(card["explanation"]["columns"][0]["points"].is_null());
    let text = p.kiln(&["models", "show", "bikes@1"]).ok().stdout;
    assert!(
        text.contains("explained by") && text.contains("datetime"),
        "{text}"
    );
}

#[test]
fn an_imported_lightgbm_model_gets_lightgbms_own_attributions() {
    let p = Project::new();
    for model in [
        "lightgbm_credit_binary.txt",
        "lightgbm_bikeshare_categorical_regression.txt",
    ] {
        let doc = fixture(model);
        let n = 12;
        p.write("rows.csv", fixture_csv(&doc, n));
        let rows: Vec<String> = (0..n).map(|i| i.to_string()).collect();
        let path = format!("{FOREIGN}/{model}");
        let out = p
            .kiln(&[
                "explain",
                &path,
                "rows.csv",
                "--rows",
                &rows.join(","),
                "--json",
            ])
            .ok()
            .json();
        let e = &out["explanation"];
        assert_eq!(e["method"], "tree_path_dependent");
        assert!(
            e["output"]["name"]
                .as_str()
                .unwrap()
                .starts_with("raw score")
        );
        assert_additive(e);
        let m = doc["columns"].as_array().unwrap().len();
        for l in e["local"].as_array().unwrap() {
            let r = l["row"].as_u64().unwrap() as usize;
            let native = doc["native"][r].as_array().unwrap();
            let bias = native[m].as_f64().unwrap();
            assert!((e["expected_value"].as_f64().unwrap() - bias).abs() < 1e-6);
            for c in l["contributions"].as_array().unwrap() {
                let j = doc["columns"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .position(|x| x == &c["column"])
                    .unwrap();
                let want = native[j].as_f64().unwrap();
                let got = c["shap"].as_f64().unwrap();
                assert!(
                    (got - want).abs() < 1e-6,
                    "{model} row {r} {}: {got} vs {want}",
                    c["column"]
                );
            }
        }
        // An imported model names no target: no permutation importance, said so.
        assert!(e["permutation"].is_null());
        assert!(e["notes"].to_string().contains("does not name its target"));
    }
}

#[test]
fn models_without_an_exact_method_fall_back_to_permutation_and_say_so() {
    let p = Project::new();
    // An ONNX tree ensemble records no training weights: permutation SHAP.
    let doc = fixture("lightgbm_bikeshare_regression.txt");
    let _ = doc;
    let mut csv = "f0,f1,f2,f3\n".to_string();
    let bikes = std::fs::read_to_string(BIKES).unwrap();
    let mut lines = bikes.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let at = |name: &str| header.iter().position(|h| *h == name).unwrap();
    for l in lines.take(60) {
        let f: Vec<&str> = l.split(',').collect();
        csv += &format!(
            "{},{},{},{}\n",
            f[at("hour")],
            f[at("temp")],
            f[at("humidity")],
            f[at("windspeed")]
        );
    }
    p.write("packed.csv", csv);
    let onnx = format!("{FOREIGN}/onnx_bikeshare_gbr.onnx");
    let out = p
        .kiln(&["explain", &onnx, "packed.csv", "--rows", "0,1", "--json"])
        .ok()
        .json();
    let e = &out["explanation"];
    assert_eq!(e["method"], "permutation");
    assert!(
        e["method_note"]
            .as_str()
            .unwrap()
            .contains("TreeSHAP cannot walk"),
        "{e}"
    );
    assert_eq!(e["background_rows"], 50);
    assert_additive(e);

    // A kiln ensemble: permutation SHAP on the probability, said so.
    let run = pima_ensemble(&p);
    let out = p
        .kiln(&["explain", &run, "--rows", "0", "--json"])
        .ok()
        .json();
    let e = &out["explanation"];
    if e["method"] == "permutation" {
        assert!(
            e["method_note"].as_str().unwrap().contains("ensemble"),
            "{e}"
        );
        assert!(
            e["output"]["name"]
                .as_str()
                .unwrap()
                .starts_with("probability of")
        );
    }
    assert_additive(e);
    let out = p
        .kiln(&[
            "explain",
            &run,
            "--method",
            "permutation",
            "--rows",
            "3",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(out["explanation"]["method"], "permutation");
    assert_additive(&out["explanation"]);

    // A LightGBM file without its row counts: interventional TreeSHAP,
    // still exact (equal to the libraries' additivity), and said so.
    p.write(
        "uncounted.txt",
        uncounted(format!("{FOREIGN}/lightgbm_credit_binary.txt")),
    );
    let doc = fixture("lightgbm_credit_binary.txt");
    p.write("credit.csv", fixture_csv(&doc, 40));
    let out = p
        .kiln(&[
            "explain",
            "uncounted.txt",
            "credit.csv",
            "--rows",
            "0,1",
            "--json",
        ])
        .ok()
        .json();
    let e = &out["explanation"];
    assert_eq!(e["method"], "tree_interventional");
    assert!(
        e["method_note"]
            .as_str()
            .unwrap()
            .contains("no training weights"),
        "{e}"
    );
    assert_additive(e);

    // A background of 8 rows is reported as too small.
    let doc = fixture("lightgbm_credit_binary.txt");
    p.write("few.csv", fixture_csv(&doc, 8));
    let model = format!("{FOREIGN}/lightgbm_credit_binary.txt");
    let out = p
        .kiln(&[
            "explain",
            &model,
            "few.csv",
            "--method",
            "interventional",
            "--json",
        ])
        .ok()
        .json();
    let e = &out["explanation"];
    assert_eq!(e["method"], "tree_interventional");
    assert_eq!(e["background_rows"], 8);
    assert!(e["notes"].to_string().contains("too small"), "{e}");
    let out = p
        .kiln(&["explain", &model, "few.csv", "--method", "interventional"])
        .ok();
    assert!(out.stderr.contains("too small"), "{}", out.stderr);
}

#[test]
fn bad_explain_requests_exit_2_with_the_reason() {
    let p = Project::new();
    let model = format!("{FOREIGN}/lightgbm_credit_binary.txt");
    let doc = fixture("lightgbm_credit_binary.txt");
    p.write("rows.csv", fixture_csv(&doc, 20));
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["explain", &model, "rows.csv", "--method", "magic"],
            "auto, interventional or permutation",
        ),
        (
            vec!["explain", &model, "rows.csv", "--rows", "99"],
            "row 99 is not in the table, which has 20 rows",
        ),
        (
            vec!["explain", &model, "rows.csv", "--class", "maybe"],
            "no class `maybe`",
        ),
        (vec!["explain", &model], "needs rows to explain"),
        (
            vec!["explain", &model, "rows.csv", "--background", "0"],
            "--background 0",
        ),
        (
            vec!["explain", &model, "rows.csv", "--permutations", "0"],
            "--permutations 0",
        ),
        (vec!["explain", &model, "missing.csv"], "missing.csv"),
        (
            vec!["explain", "no-such-model.txt", "rows.csv"],
            "no-such-model.txt",
        ),
    ];
    for (args, why) in cases {
        let out = p.kiln(&args).code(2);
        assert!(out.stderr.contains(why), "{args:?}: {}", out.stderr);
    }
    // A table without a column the model reads.
    p.write("short.csv", "seniority,age\n1,30\n");
    let out = p.kiln(&["explain", &model, "short.csv"]).code(2);
    assert!(out.stderr.contains("`home`"), "{}", out.stderr);
    // An unwritable report path fails before anything is half-written.
    let out = p
        .kiln(&[
            "explain",
            &model,
            "rows.csv",
            "--html",
            "no/such/dir/r.html",
        ])
        .code(2);
    assert!(out.stderr.contains("r.html"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explanations_are_served_with_predictions_and_logged() {
    let p = Project::new();
    let model = format!("{FOREIGN}/lightgbm_credit_binary.txt");
    let doc = fixture("lightgbm_credit_binary.txt");
    let cols: Vec<String> = doc["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    let records: Vec<Value> = doc["rows"]
        .as_array()
        .unwrap()
        .iter()
        .take(4)
        .map(|r| {
            let mut o = serde_json::Map::new();
            for (c, v) in cols.iter().zip(r.as_array().unwrap()) {
                o.insert(c.clone(), v.clone());
            }
            Value::Object(o)
        })
        .collect();
    let mut server = Server::start(
        &p,
        &["serve", "--port", "0", &format!("credit={model}")],
        &[],
    );
    let client = reqwest::Client::new();
    let post = |body: Value| {
        let c = client.clone();
        let url = format!("{}/api/v1/deployments/credit/predict", server.url);
        async move {
            let r = c.post(url).json(&body).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, v) = post(json!({ "records": records, "explain": { "top": 2 } })).await;
    assert_eq!(status, 200, "{v}");
    let e = &v["explanations"];
    assert_eq!(e["method"], "tree_path_dependent");
    let m = cols.len();
    for (r, row) in e["rows"].as_array().unwrap().iter().enumerate() {
        let native = doc["native"][r].as_array().unwrap();
        let top = row["top"].as_array().unwrap();
        assert_eq!(top.len(), 2);
        let mut total = row["rest"].as_f64().unwrap();
        for t in top {
            let j = cols
                .iter()
                .position(|c| c == t["column"].as_str().unwrap())
                .unwrap();
            let got = t["shap"].as_f64().unwrap();
            assert!((got - native[j].as_f64().unwrap()).abs() < 1e-6);
            assert_eq!(t["value"], records[r][&cols[j]]);
            total += got;
        }
        // Largest first, and they add up to the raw score.
        assert!(top[0]["shap"].as_f64().unwrap().abs() >= top[1]["shap"].as_f64().unwrap().abs());
        let raw = doc["raw"][r][0].as_f64().unwrap();
        assert!((e["expected_value"].as_f64().unwrap() + total - raw).abs() < 1e-6);
        assert!((native[m].as_f64().unwrap() - e["expected_value"].as_f64().unwrap()).abs() < 1e-6);
    }
    assert!(v["explain_ms"].as_f64().unwrap() >= 0.0);
    // Without `explain`, no explanation; a bad option is a 400.
    let (_, v) = post(json!({ "records": records })).await;
    assert!(v.get("explanations").is_none());
    let (status, v) = post(json!({ "records": records, "explain": { "top": 0 } })).await;
    assert_eq!(status, 400);
    assert_eq!(v["error"]["column"], "explain");
    let (status, v) = post(json!({ "records": records, "explain": "yes" })).await;
    assert_eq!(status, 400, "{v}");
    // The explained request's rows are logged with their explanations.
    assert_eq!(server.terminate(), 0, "{}", server.log());
    let logged = p
        .kiln(&["predictions", "credit", "--limit", "100", "--json"])
        .ok()
        .json();
    let logged = logged.as_array().unwrap();
    let explained: Vec<&Value> = logged
        .iter()
        .filter(|r| r["explanation"].is_string())
        .collect();
    assert_eq!(explained.len(), 4, "{logged:?}");
    let first: Value = serde_json::from_str(explained[0]["explanation"].as_str().unwrap()).unwrap();
    assert_eq!(first["top"].as_array().unwrap().len(), 2);

    // A tree file without training weights has nothing to explain against
    // when served: refused with the reason.
    p.write("uncounted.txt", uncounted(&model));
    let server = Server::start(&p, &["serve", "--port", "0", "bare=uncounted.txt"], &[]);
    let r = client
        .post(format!("{}/api/v1/deployments/bare/predict", server.url))
        .json(&json!({ "records": records, "explain": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let v: Value = r.json().await.unwrap();
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("records no training weights"), "{message}");
    drop(server);

    // A kiln ensemble is explained against the background its run stored.
    let run = pima_ensemble(&p);
    p.kiln(&["models", "register", "pima", "--run", &run, "-q"])
        .ok();
    let server = Server::start(&p, &["serve", "--port", "0", "pima@1"], &[]);
    let record = json!({"pregnancies": 6, "glucose": 148, "blood_pressure": 72, "skin_thickness": 35,
        "insulin": null, "bmi": 33.6, "diabetes_pedigree": 0.627, "age": 50});
    let r = client
        .post(format!("{}/api/v1/deployments/pima/predict", server.url))
        .json(&json!({ "records": [record], "explain": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = r.json().await.unwrap();
    let e = &v["explanations"];
    assert_eq!(e["rows"][0]["top"].as_array().unwrap().len(), 5);
    let total = e["rows"][0]["rest"].as_f64().unwrap()
        + e["rows"][0]["top"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["shap"].as_f64().unwrap())
            .sum::<f64>();
    let output = e["rows"][0]["output"].as_f64().unwrap();
    assert!((e["expected_value"].as_f64().unwrap() + total - output).abs() < 1e-9);
    if e["method"] == "permutation" {
        // On the probability: the output is the served probability.
        let prob = v["probabilities"][0][e["class"].as_str().unwrap()]
            .as_f64()
            .unwrap();
        assert!((output - prob).abs() < 1e-9, "{output} vs {prob}");
    }
}
