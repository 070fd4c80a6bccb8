//! `kiln train`, `predict`, `evaluate` and `runs …` end to end on the shared
//! real datasets, on SQLite + a local folder. Every run uses `--trials`, so
//! it is fast and gives the same model each time.

mod common;

use std::collections::BTreeMap;

use common::{Out, Project, shared_data};
use serde_json::Value;

const PIMA: &str = "pima_diabetes.csv";
const CREDIT: &str = "credit_scoring.csv";
const BIKES: &str = "bikeshare_hourly.csv";

/// A project with the shared file `file` added as dataset `name`.
fn project_with(name: &str, file: &str) -> Project {
    let p = Project::new();
    p.kiln(&["data", "add", name, &shared_data(file)]).ok();
    p
}

/// Trains on `dataset` with 3 trials and returns `kiln train --json`'s output.
fn train_json(p: &Project, dataset: &str, target: &str, extra: &[&str]) -> Value {
    let mut args = vec![
        "train", dataset, "--target", target, "--trials", "3", "--json",
    ];
    args.extend_from_slice(extra);
    p.kiln(&args).ok().json()
}

/// The pima project and its trained model's `kiln train --json` output.
fn trained_pima() -> (Project, Value) {
    let p = project_with("pima", PIMA);
    let out = train_json(&p, "pima", "diabetes", &[]);
    (p, out)
}

/// The shared file `file` with `edit` applied to each data row's fields
/// (row numbers from 0); the shared files have no quoted fields.
fn csv_with(file: &str, edit: impl Fn(usize, &mut Vec<String>)) -> String {
    let text = std::fs::read_to_string(shared_data(file)).unwrap();
    let mut lines = text.lines();
    let mut out = vec![lines.next().unwrap().to_string()];
    for (i, line) in lines.enumerate() {
        let mut fields: Vec<String> = line.split(',').map(String::from).collect();
        edit(i, &mut fields);
        out.push(fields.join(","));
    }
    out.join("\n") + "\n"
}

/// The shared file `file` without column `column`.
fn csv_without(file: &str, column: &str) -> String {
    let text = std::fs::read_to_string(shared_data(file)).unwrap();
    let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
    let drop = header.iter().position(|c| *c == column).unwrap();
    text.lines()
        .map(|l| {
            let mut f: Vec<&str> = l.split(',').collect();
            f.remove(drop);
            f.join(",")
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// A predictions CSV: its header and rows (kiln writes no quotes for these).
fn read_csv(path: &std::path::Path) -> (Vec<String>, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(!text.contains('"'), "unexpected quoting in {text}");
    let mut lines = text.lines();
    let header = lines.next().unwrap().split(',').map(String::from).collect();
    let rows = lines
        .map(|l| l.split(',').map(String::from).collect())
        .collect();
    (header, rows)
}

/// A JSON object of numbers as a map (test metrics, evaluation metrics).
fn numbers(v: &Value) -> BTreeMap<String, f64> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .iter()
        .map(|(k, v)| (k.clone(), v.as_f64().unwrap()))
        .collect()
}

/// Asserts a failed command: exit 2, nothing on stdout, each of `expect`
/// on stderr and, when given, a `hint:` line holding `hint`.
#[track_caller]
fn refused(p: &Project, args: &[&str], expect: &[&str], hint: Option<&str>) -> Out {
    let out = p.kiln(args).code(2);
    assert!(out.stdout.is_empty(), "stdout on failure:\n{}", out.stdout);
    for e in expect {
        assert!(
            out.stderr.contains(e),
            "`kiln {}`: expected {e:?} in:\n{}",
            args.join(" "),
            out.stderr
        );
    }
    if let Some(h) = hint {
        assert!(
            out.stderr
                .lines()
                .any(|l| l.trim_start().starts_with("hint: ") && l.contains(h)),
            "`kiln {}`: expected a hint with {h:?} in:\n{}",
            args.join(" "),
            out.stderr
        );
    }
    out
}

/// Asserts a refused `kiln train` that recorded no run and stored nothing.
#[track_caller]
fn train_refused(p: &Project, args: &[&str], expect: &[&str], hint: Option<&str>) {
    let objects = p.object_count();
    let mut all = vec!["train"];
    all.extend_from_slice(args);
    refused(p, &all, expect, hint);
    assert_eq!(p.run_count(), 0, "a refused train recorded a run");
    assert_eq!(p.object_count(), objects, "a refused train stored objects");
    assert!(p.tmp_files().is_empty(), "left {:?}", p.tmp_files());
}

/// Asserts that a failed command left neither `rel` nor a temporary file
/// beside it.
#[track_caller]
fn nothing_written(p: &Project, rel: &str) {
    assert!(!p.path(rel).exists(), "`{rel}` was written");
    let dir = p.path(rel).parent().unwrap().to_path_buf();
    let stray: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp"))
        .map(|e| e.path())
        .collect();
    assert!(stray.is_empty(), "temporary files left: {stray:?}");
}

#[test]
fn train_prints_a_model_with_test_metrics_and_a_leaderboard_of_its_trials() {
    let (_p, out) = trained_pima();
    let model = out["model"].as_str().unwrap();
    assert_eq!(model.len(), 32, "{model}");
    assert!(model.chars().all(|c| c.is_ascii_hexdigit()), "{model}");
    assert_eq!(out["run"], model);
    assert_eq!(out["task"], "binary");
    assert_eq!(out["target"], "diabetes");
    assert_eq!(out["classes"], serde_json::json!(["neg", "pos"]));
    assert_eq!(out["metric"], "roc_auc");
    assert_eq!(out["trials"], 3);
    assert_eq!(out["reproducible"], true);
    assert!(out["dataset"].as_str().unwrap().starts_with("pima@"));
    let board = out["leaderboard"].as_array().unwrap();
    assert_eq!(board.len(), 3);
    let ids: Vec<u64> = board.iter().map(|t| t["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, [1, 2, 3]);
    assert!(board.iter().all(|t| t["score"].as_f64().unwrap() > 0.5));
    let test = numbers(&out["test_metrics"]);
    for m in ["roc_auc", "accuracy", "logloss", "f1"] {
        assert!(test.contains_key(m), "no test {m} in {test:?}");
    }
    // A model that learned nothing scores 0.5; pima gets above 0.75.
    assert!(test["roc_auc"] > 0.75, "test AUC {}", test["roc_auc"]);
}

#[test]
fn evaluate_holdout_reproduces_the_test_metrics_exactly() {
    let (p, out) = trained_pima();
    let model = out["model"].as_str().unwrap();
    let ev = p
        .kiln(&["evaluate", model, "pima", "--holdout", "--json"])
        .ok()
        .json();
    assert_eq!(numbers(&ev["metrics"]), numbers(&out["test_metrics"]));
    // 20% of 768 rows, stratified.
    assert_eq!(ev["evaluation"]["rows"], 154);
    let cm = &ev["evaluation"]["confusion"];
    assert_eq!(
        cm["counts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_u64().unwrap())
            .sum::<u64>(),
        154
    );

    // Without --holdout every row is scored, and the scores differ.
    let all = p.kiln(&["evaluate", model, "pima", "--json"]).ok().json();
    assert_eq!(all["evaluation"]["rows"], 768);
    assert_ne!(numbers(&all["metrics"]), numbers(&out["test_metrics"]));

    // A run id prefix names the model too, and the text form shows the table.
    let text = p.kiln(&["evaluate", &model[..8], "pima", "--holdout"]).ok();
    assert!(text.stderr.contains("154 rows"), "{}", text.stderr);
    assert!(text.stdout.contains("roc_auc"), "{}", text.stdout);
}

#[test]
fn predict_writes_a_prediction_and_class_probabilities_summing_to_one() {
    let (p, out) = trained_pima();
    let model = out["model"].as_str().unwrap();
    let input = shared_data(PIMA);
    let run = p
        .kiln(&[
            "predict",
            model,
            &input,
            "-o",
            "out.csv",
            "--keep",
            "diabetes,age",
        ])
        .ok();
    assert!(
        run.stderr.contains("Wrote 768 predictions of `diabetes`"),
        "{}",
        run.stderr
    );
    let (header, rows) = read_csv(&p.path("out.csv"));
    assert_eq!(
        header,
        ["diabetes", "age", "prediction", "prob_neg", "prob_pos"]
    );
    assert_eq!(rows.len(), 768);
    let (_, source) = read_csv(std::path::Path::new(&input));
    let mut right = 0;
    for (row, src) in rows.iter().zip(&source) {
        // The kept columns are the input's, row for row.
        assert_eq!(row[0], src[8]);
        assert_eq!(row[1], src[7]);
        let (neg, pos): (f64, f64) = (row[3].parse().unwrap(), row[4].parse().unwrap());
        assert!((0.0..=1.0).contains(&neg) && (0.0..=1.0).contains(&pos));
        assert!((neg + pos - 1.0).abs() < 1e-9, "{neg} + {pos}");
        // The prediction is the more probable class.
        assert_eq!(row[2], if pos >= 0.5 { "pos" } else { "neg" }, "{row:?}");
        right += usize::from(row[2] == row[0]);
    }
    assert!(right > 768 * 7 / 10, "only {right} of 768 right");
}

#[test]
fn predict_writes_parquet_for_a_parquet_output() {
    let (p, out) = trained_pima();
    let model = out["model"].as_str().unwrap();
    let json = p
        .kiln(&["predict", model, "pima", "-o", "out.parquet", "--json"])
        .ok()
        .json();
    assert_eq!(json["rows"], 768);
    let bytes = std::fs::read(p.path("out.parquet")).unwrap();
    assert!(
        bytes.starts_with(b"PAR1") && bytes.ends_with(b"PAR1"),
        "not Parquet"
    );
    // kiln reads it back as a table with the predicted columns.
    p.kiln(&["data", "add", "preds", "out.parquet"]).ok();
    let show = p.kiln(&["data", "show", "preds", "--json"]).ok().json();
    assert_eq!(show["version"]["row_count"], 768);
    let names: Vec<&str> = show["version"]["schema"]["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["prediction", "prob_neg", "prob_pos"]);
}

#[test]
fn runs_ls_and_show_list_the_training_run() {
    let (p, out) = trained_pima();
    let model = out["model"].as_str().unwrap();
    let runs = p.kiln(&["runs", "ls", "--json"]).ok().json();
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 1);
    let r = &runs[0];
    assert_eq!(r["id"], model);
    assert_eq!(r["kind"], "train");
    assert_eq!(r["status"], "FINISHED");
    assert_eq!(r["experiment_id"], "0");
    assert_eq!(r["inputs"][0]["name"], "pima");
    assert_eq!(r["inputs"][0]["role"], "train");
    assert_eq!(r["params"]["target"], "diabetes");
    assert_eq!(r["params"]["trials"], "3");
    assert_eq!(r["params"]["seed"], "0");
    // Test metrics are flat metrics of the run, `test_<name>`.
    for (k, v) in out["test_metrics"].as_object().unwrap() {
        let got = r["metrics"][format!("test_{k}")].as_f64().unwrap();
        assert!(
            (got - v.as_f64().unwrap()).abs() < 1e-12,
            "{k}: {got} vs {v}"
        );
    }
    let table = p.kiln(&["runs", "ls"]).ok().stdout;
    assert!(table.contains(&model[..12]), "{table}");

    let show = p.kiln(&["runs", "show", &model[..8], "--json"]).ok().json();
    assert_eq!(show["run"]["id"], model);
    assert_eq!(show["run"]["user_id"], "tester");
    assert_eq!(show["leaderboard"], out["leaderboard"]);
    let text = p.kiln(&["runs", "show", model]).ok().stdout;
    assert!(
        text.contains(model) && text.contains("diabetes") && text.contains("metric test_roc_auc"),
        "{text}"
    );
}

#[test]
fn a_model_file_from_train_scores_and_evaluates_like_its_run() {
    let p = project_with("pima", PIMA);
    let out = train_json(&p, "pima", "diabetes", &["-o", "model.kiln"]);
    assert_eq!(out["model_file"], "model.kiln");
    let bytes = std::fs::read(p.path("model.kiln")).unwrap();
    assert!(bytes.starts_with(b"kiln-model 1\n"));
    let run = out["model"].as_str().unwrap();
    p.kiln(&["predict", run, "pima", "-o", "by_run.csv"]).ok();
    p.kiln(&["predict", "model.kiln", "pima", "-o", "by_file.csv"])
        .ok();
    assert_eq!(
        std::fs::read(p.path("by_run.csv")).unwrap(),
        std::fs::read(p.path("by_file.csv")).unwrap()
    );
    let ev = p
        .kiln(&["evaluate", "model.kiln", "pima", "--holdout", "--json"])
        .ok()
        .json();
    assert_eq!(numbers(&ev["metrics"]), numbers(&out["test_metrics"]));
}

#[test]
fn the_same_seed_and_trials_give_identical_model_bytes_and_another_seed_does_not() {
    let p = project_with("credit", CREDIT);
    let a = train_json(&p, "credit", "credit_status", &["-o", "a.kiln"]);
    // One thread instead of all: parallelism must not change the model.
    let b = train_json(
        &p,
        "credit",
        "credit_status",
        &["-o", "b.kiln", "--threads", "1"],
    );
    let c = train_json(
        &p,
        "credit",
        "credit_status",
        &["-o", "c.kiln", "--seed", "7"],
    );
    let read = |f: &str| std::fs::read(p.path(f)).unwrap();
    assert!(
        read("a.kiln") == read("b.kiln"),
        "same seed, different bytes"
    );
    assert_eq!(a["model_object"], b["model_object"]);
    assert_ne!(a["run"], b["run"], "two trainings are two runs");
    assert!(read("a.kiln") != read("c.kiln"), "another seed, same bytes");
    assert_ne!(a["model_object"], c["model_object"]);
    assert_eq!(p.run_count(), 3);
}

#[test]
fn a_multiclass_model_skips_unlabelled_rows_and_its_probabilities_sum_to_one() {
    // `home` has six classes and six rows without one.
    let p = project_with("credit", CREDIT);
    let out = train_json(&p, "credit", "home", &[]);
    assert_eq!(out["task"], "multiclass");
    let classes: Vec<&str> = out["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(classes.len(), 6, "{classes:?}");
    let model = out["model"].as_str().unwrap();
    let ev = p
        .kiln(&["evaluate", model, "credit", "--holdout", "--json"])
        .ok()
        .json();
    assert_eq!(numbers(&ev["metrics"]), numbers(&out["test_metrics"]));
    assert_eq!(ev["evaluation"]["unlabelled"], 6);

    p.kiln(&["predict", model, "credit", "-o", "home.csv"]).ok();
    let (header, rows) = read_csv(&p.path("home.csv"));
    let mut expected = vec!["prediction".to_string()];
    expected.extend(classes.iter().map(|c| format!("prob_{c}")));
    assert_eq!(header, expected);
    // Unlabelled rows are scored too.
    assert_eq!(rows.len(), 4454);
    for row in &rows {
        let probs: Vec<f64> = row[1..].iter().map(|v| v.parse().unwrap()).collect();
        assert!((probs.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{row:?}");
        let best = (0..probs.len())
            .max_by(|&a, &b| probs[a].total_cmp(&probs[b]))
            .unwrap();
        assert_eq!(row[0], classes[best], "{row:?}");
    }
}

#[test]
fn a_regression_model_on_a_time_split_reproduces_its_test_metrics_and_predicts_numbers() {
    let p = project_with("bikes", BIKES);
    let out = train_json(&p, "bikes", "bikers", &["--split", "time"]);
    assert_eq!(out["task"], "regression");
    assert_eq!(out["metric"], "rmse");
    assert_eq!(out["classes"], serde_json::json!([]));
    let model = out["model"].as_str().unwrap();
    let ev = p
        .kiln(&["evaluate", model, "bikes", "--holdout", "--json"])
        .ok()
        .json();
    let test = numbers(&out["test_metrics"]);
    assert_eq!(numbers(&ev["metrics"]), test);
    // Rentals per hour range 1–651; a mean predictor has an R² of 0.
    assert!(test["r2"] > 0.5, "test R² {}", test["r2"]);

    p.kiln(&[
        "predict",
        model,
        &shared_data(BIKES),
        "-o",
        "bikes.csv",
        "--keep",
        "datetime",
    ])
    .ok();
    let (header, rows) = read_csv(&p.path("bikes.csv"));
    assert_eq!(header, ["datetime", "prediction"]);
    assert_eq!(rows.len(), 8645);
    assert!(
        rows.iter()
            .all(|r| r[1].parse::<f64>().is_ok_and(f64::is_finite))
    );
}

#[test]
fn an_empty_and_a_constant_feature_are_dropped_and_the_model_still_trains() {
    let p = Project::new();
    let mut text = csv_with(PIMA, |_, f| {
        f.push(String::new());
        f.push("7".into());
    });
    text = text.replacen("diabetes\n", "diabetes,nothing,same\n", 1);
    p.write("pima_plus.csv", text);
    p.kiln(&["data", "add", "pima", "pima_plus.csv"]).ok();
    let out = train_json(&p, "pima", "diabetes", &["-o", "model.kiln"]);
    assert!(numbers(&out["test_metrics"])["roc_auc"] > 0.75);

    let file = std::fs::read_to_string(p.path("model.kiln")).unwrap();
    let model: Value = serde_json::from_str(file.split_once('\n').unwrap().1).unwrap();
    let dropped: BTreeMap<&str, &str> = model["preprocessor"]["dropped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["name"].as_str().unwrap(), d["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(
        dropped,
        BTreeMap::from([("nothing", "all values are missing"), ("same", "constant")])
    );
    let inputs: Vec<&str> = model["preprocessor"]["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(inputs.len(), 8, "{inputs:?}");
    // The dropped columns are not needed to score.
    p.kiln(&["predict", "model.kiln", &shared_data(PIMA), "-o", "out.csv"])
        .ok();
    assert_eq!(read_csv(&p.path("out.csv")).1.len(), 768);
}

#[test]
fn targets_that_cannot_be_learned_are_refused_and_nothing_is_recorded() {
    let p = project_with("pima", PIMA);
    train_refused(
        &p,
        &["pima", "--target", "nosuch", "--trials", "3"],
        &["no column `nosuch`"],
        Some("the table's columns are: pregnancies, glucose"),
    );
    /// A 200-row table `x,z,y` whose `y` in row `i` is `label(i)`, trained
    /// with `extra` arguments.
    struct Case {
        name: &'static str,
        label: fn(usize) -> String,
        extra: &'static [&'static str],
        expect: &'static [&'static str],
        hint: &'static str,
    }
    let cases = [
        Case {
            name: "constant",
            label: |_| "5".into(),
            extra: &[],
            expect: &[
                "Cannot learn target `y`",
                "every row has the same value `5`",
            ],
            hint: "at least two different target values",
        },
        Case {
            name: "single_class",
            label: |_| "yes".into(),
            extra: &[],
            expect: &["Cannot learn target `y`", "the same value `yes`"],
            hint: "at least two different target values",
        },
        Case {
            name: "all_empty",
            label: |_| String::new(),
            extra: &[],
            expect: &["Cannot learn target `y`", "every value is missing"],
            hint: "pick a column with values",
        },
        Case {
            name: "three_classes",
            label: |i| ["a", "b", "c"][i % 3].into(),
            extra: &["--task", "binary"],
            expect: &["binary classification needs two classes; it has 3"],
            hint: "--task multiclass",
        },
    ];
    for c in cases {
        let mut csv = String::from("x,z,y\n");
        for i in 0..200 {
            csv.push_str(&format!("{},{},{}\n", i % 7, i % 5, (c.label)(i)));
        }
        let file = format!("{}.csv", c.name);
        p.write(&file, csv);
        p.kiln(&["data", "add", c.name, &file]).ok();
        let mut args = vec![c.name, "--target", "y", "--trials", "3"];
        args.extend_from_slice(c.extra);
        train_refused(&p, &args, c.expect, Some(c.hint));
    }
}

#[test]
fn bad_training_settings_are_refused_before_anything_is_recorded() {
    let p = project_with("pima", PIMA);
    let base = ["pima", "--target", "diabetes"];
    let cases: &[(&[&str], &[&str], Option<&str>)] = &[
        (
            &["--budget", "0.1s"],
            &["Invalid budget", "under 1s", "--budget 1s or more"],
            None,
        ),
        (
            &["--trials", "3", "--metric", "nope"],
            &["Unknown metric `nope`", "roc_auc"],
            None,
        ),
        (
            &["--trials", "3", "--metric", "rmse"],
            &[
                "Invalid metric rmse",
                "does not apply to binary tasks",
                "roc_auc",
            ],
            None,
        ),
        (
            &["--trials", "3", "--split", "group:nosuchcolumn"],
            &["no column `nosuchcolumn`", "--split group:nosuchcolumn"],
            Some("the table's columns are: pregnancies"),
        ),
        (
            &["--trials", "3", "--split", "time:nosuchcolumn"],
            &["no column `nosuchcolumn`", "--split time:nosuchcolumn"],
            Some("the table's columns are: pregnancies"),
        ),
        (
            &["--trials", "3", "--split", "sideways"],
            &["Invalid split `sideways`", "group:COLUMN"],
            None,
        ),
        (
            &["--trials", "0"],
            &["Invalid --trials 0"],
            Some("--trials 1 or more"),
        ),
        (
            &["--trials", "3", "-o", "no/such/folder/model.kiln"],
            &["model file", "the folder `no/such/folder` does not exist"],
            Some("create the folder"),
        ),
    ];
    for (extra, expect, hint) in cases {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        train_refused(&p, &args, expect, *hint);
    }
    assert!(!p.path("no").exists());
}

#[test]
fn predict_refuses_a_table_without_a_column_the_model_uses() {
    let (p, out) = trained_pima();
    let model = out["model"].as_str().unwrap();
    p.write("no_glucose.csv", csv_without(PIMA, "glucose"));
    refused(
        &p,
        &["predict", model, "no_glucose.csv", "-o", "out.csv"],
        &["lacks column(s) glucose"],
        Some("same columns as the training data"),
    );
    nothing_written(&p, "out.csv");
}

#[test]
fn predict_refuses_a_numeric_column_given_as_text() {
    let (p, out) = trained_pima();
    let model = out["model"].as_str().unwrap();
    p.write(
        "text_bmi.csv",
        csv_with(PIMA, |i, f| {
            if i == 3 {
                f[5] = "high".into();
            }
        }),
    );
    refused(
        &p,
        &["predict", model, "text_bmi.csv", "-o", "out.csv"],
        &["Column `bmi` is string, but the model expects float"],
        Some("convert the column"),
    );
    nothing_written(&p, "out.csv");
}

#[test]
fn predict_and_evaluate_refuse_an_infinite_number_naming_column_and_row() {
    // arrow-csv reads `inf` and `-inf` as floats, so the integer column
    // `glucose` becomes a float column holding infinities.
    let (p, out) = trained_pima();
    let model = out["model"].as_str().unwrap();
    p.write(
        "inf.csv",
        csv_with(PIMA, |i, f| match i {
            4 => f[1] = "inf".into(),
            9 => f[1] = "-inf".into(),
            _ => {}
        }),
    );
    let hint = Some("replace infinities with a finite value");
    refused(
        &p,
        &["predict", model, "inf.csv", "-o", "out.csv"],
        &["Column `glucose`", "non-finite value (inf)", "at row 5"],
        hint,
    );
    nothing_written(&p, "out.csv");
    refused(
        &p,
        &["evaluate", model, "inf.csv"],
        &["Column `glucose`", "non-finite value (inf)", "at row 5"],
        hint,
    );
    p.write(
        "neg_inf.csv",
        csv_with(PIMA, |i, f| {
            if i == 9 {
                f[1] = "-inf".into();
            }
        }),
    );
    refused(
        &p,
        &["predict", model, "neg_inf.csv", "-o", "out.csv"],
        &["Column `glucose`", "non-finite value (-inf)", "at row 10"],
        hint,
    );
    nothing_written(&p, "out.csv");
}

#[test]
fn an_unseen_category_is_scored_as_missing_with_a_note_naming_the_column() {
    let p = project_with("credit", CREDIT);
    let out = train_json(&p, "credit", "credit_status", &[]);
    let model = out["model"].as_str().unwrap();
    p.write(
        "castles.csv",
        csv_with(CREDIT, |i, f| {
            if i == 2 || i == 9 {
                f[1] = "castle".into();
            }
        }),
    );
    let run = p
        .kiln(&["predict", model, "castles.csv", "-o", "castles_out.csv"])
        .ok();
    assert!(
        run.stderr
            .contains("2 rows have a `home` value not seen in training"),
        "{}",
        run.stderr
    );
    let json = p
        .kiln(&["predict", model, "castles.csv", "-o", "c.csv", "--json"])
        .ok()
        .json();
    assert_eq!(
        json["unseen_categories"],
        serde_json::json!([{ "column": "home", "unseen_categories": 2 }])
    );
    // Only the two edited rows score differently from the original file.
    p.kiln(&["predict", model, "credit", "-o", "orig_out.csv"])
        .ok();
    let (_, castles) = read_csv(&p.path("castles_out.csv"));
    let (_, orig) = read_csv(&p.path("orig_out.csv"));
    assert_eq!(castles.len(), 4454);
    let changed: Vec<usize> = (0..orig.len()).filter(|&i| castles[i] != orig[i]).collect();
    assert!(
        changed.iter().all(|i| [2, 9].contains(i)),
        "rows {changed:?} changed"
    );
    let ev = p.kiln(&["evaluate", model, "castles.csv"]).ok();
    assert!(
        ev.stderr.contains("`home` value not seen in training"),
        "{}",
        ev.stderr
    );
}

#[test]
fn a_model_file_from_a_newer_kiln_is_refused_with_upgrade_advice() {
    let p = project_with("pima", PIMA);
    p.write("future.kiln", "kiln-model 999\n{}");
    refused(
        &p,
        &["predict", "future.kiln", "pima", "-o", "out.csv"],
        &["Cannot load model `future.kiln`", "format version 999"],
        Some("upgrade kiln"),
    );
    nothing_written(&p, "out.csv");
}

#[test]
fn a_file_that_is_not_a_model_or_is_damaged_is_refused() {
    let p = project_with("pima", PIMA);
    let csv = shared_data(PIMA);
    refused(
        &p,
        &["predict", &csv, "pima", "-o", "out.csv"],
        &["Cannot load model", "not a kiln model file"],
        Some("kiln train -o"),
    );
    p.write("cut.kiln", "kiln-model 1\n{\"kiln_version\":");
    refused(
        &p,
        &["evaluate", "cut.kiln", "pima"],
        &["Cannot load model `cut.kiln`", "does not parse"],
        Some("damaged"),
    );
    nothing_written(&p, "out.csv");
}

#[test]
fn an_unknown_run_id_is_refused_by_predict_evaluate_and_runs_show() {
    let p = project_with("pima", PIMA);
    let hint = Some("`kiln runs ls` lists the runs");
    refused(
        &p,
        &["predict", "deadbeef0000", "pima", "-o", "out.csv"],
        &["No run `deadbeef0000`"],
        hint,
    );
    nothing_written(&p, "out.csv");
    refused(
        &p,
        &["evaluate", "deadbeef0000", "pima"],
        &["No run `deadbeef0000`"],
        hint,
    );
    refused(
        &p,
        &["runs", "show", "deadbeef0000"],
        &["No run `deadbeef0000`"],
        hint,
    );
}

#[test]
fn a_missing_input_or_model_file_is_reported_as_a_missing_file() {
    let (p, out) = trained_pima();
    let model = out["model"].as_str().unwrap();
    for input in ["new.csv", "sub/new.csv"] {
        refused(
            &p,
            &["predict", model, input, "-o", "out.csv"],
            &[&format!("Failed to read `{input}`"), "No such file"],
            Some("check the path"),
        );
    }
    refused(
        &p,
        &["predict", "model.kiln", "pima", "-o", "out.csv"],
        &["Failed to read `model.kiln`", "No such file"],
        Some("check the path"),
    );
    // A dataset reference is still a dataset reference.
    refused(
        &p,
        &["predict", model, "nosuch", "-o", "out.csv"],
        &["No dataset named `nosuch`"],
        Some("kiln data ls"),
    );
    nothing_written(&p, "out.csv");
}

#[test]
fn predict_refuses_to_keep_a_column_the_input_lacks() {
    let (p, out) = trained_pima();
    let model = out["model"].as_str().unwrap();
    refused(
        &p,
        &["predict", model, "pima", "-o", "out.csv", "--keep", "id"],
        &["Cannot keep column `id`"],
        None,
    );
    nothing_written(&p, "out.csv");
}

#[test]
fn test_fraction_zero_trains_on_every_row_and_has_no_holdout_to_evaluate() {
    let p = project_with("pima", PIMA);
    let out = train_json(&p, "pima", "diabetes", &["--test-fraction", "0"]);
    assert!(
        out["test_metrics"].as_object().unwrap().is_empty(),
        "{}",
        out["test_metrics"]
    );
    let model = out["model"].as_str().unwrap();
    // Every row was training data: the full table still evaluates.
    let all = p.kiln(&["evaluate", model, "pima", "--json"]).ok().json();
    assert_eq!(all["evaluation"]["rows"], 768);
    refused(
        &p,
        &["evaluate", model, "pima", "--holdout"],
        &["held out no test rows", "--test-fraction 0"],
        None,
    );
    refused(
        &p,
        &[
            "train",
            "pima",
            "--target",
            "diabetes",
            "--test-fraction",
            "1",
        ],
        &["test fraction"],
        None,
    );
}
