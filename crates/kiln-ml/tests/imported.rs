//! `kiln_ml::imported`: every fixture model in `tests/fixtures/foreign/`
//! scored by kiln must give its own library's predictions (written beside
//! it by `make.py` as `<model>.expected.json`) to within 1e-6.

use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use kiln_core::ColumnType;
use kiln_ml::foreign::{ForeignError, ModelFormat};
use kiln_ml::imported::ImportedModel;
use kiln_ml::{MlError, Predictions, Task};
use serde_json::Value;

const TOLERANCE: f64 = 1e-6;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/foreign/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A fixture's `.expected.json`.
struct Expected {
    columns: Vec<String>,
    /// Row-major, NaN for missing.
    x: Vec<f64>,
    rows: usize,
    predictions: Vec<Value>,
    sklearn: Option<Vec<Value>>,
}

fn expected(model: &str) -> Expected {
    let stem = model.rsplit_once('.').unwrap().0;
    let doc: Value = serde_json::from_slice(&fixture(&format!("{stem}.expected.json"))).unwrap();
    let columns: Vec<String> = doc["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    let rows = doc["rows"].as_array().unwrap();
    let x = rows
        .iter()
        .flat_map(|r| r.as_array().unwrap())
        .map(|v| v.as_f64().unwrap_or(f64::NAN))
        .collect();
    Expected {
        columns,
        x,
        rows: rows.len(),
        predictions: doc["predictions"].as_array().unwrap().clone(),
        sklearn: doc.get("sklearn").and_then(Value::as_array).cloned(),
    }
}

/// The values kiln reports for row `i`: the positive class's probability,
/// the class probabilities, or the value.
fn row(p: &Predictions, i: usize) -> Vec<f64> {
    match p {
        Predictions::Binary(v) | Predictions::Regression(v) => vec![v[i]],
        Predictions::Multiclass { probs, n_classes } => {
            probs[i * n_classes..(i + 1) * n_classes].to_vec()
        }
    }
}

/// A library's value(s) for one row, as kiln reports them: a binary
/// classifier's `[p0, p1]` becomes `p1`.
fn library_row(v: &Value, task: Task) -> Vec<f64> {
    match v {
        Value::Array(items) => {
            let all: Vec<f64> = items.iter().map(|v| v.as_f64().unwrap()).collect();
            if task == Task::Binary {
                vec![all[1]]
            } else {
                all
            }
        }
        v => vec![v.as_f64().unwrap()],
    }
}

/// Loads `model`, scores its expected rows both as a matrix and as an
/// Arrow batch, and compares with the library's predictions (`relative`:
/// the tolerance scales with the value, for f32 models compared with f64
/// scikit-learn).
fn compare(model: &ImportedModel, e: &Expected, library: &[Value], tolerance: f64, relative: bool) {
    let names: Vec<&str> = model.inputs().iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, e.columns);
    assert!(
        model
            .inputs()
            .iter()
            .all(|c| c.column_type == ColumnType::Float && c.categories.is_none())
    );
    let dense = model.predict_dense(&e.x, e.rows);
    assert_eq!(dense.len(), e.rows);

    // The same rows as an Arrow batch, missing values as nulls.
    let width = e.columns.len();
    let columns: Vec<(String, ArrayRef)> = (0..width)
        .map(|j| {
            let values: Vec<Option<f64>> = (0..e.rows)
                .map(|i| Some(e.x[i * width + j]).filter(|v| !v.is_nan()))
                .collect();
            (
                e.columns[j].clone(),
                Arc::new(Float64Array::from(values)) as ArrayRef,
            )
        })
        .collect();
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    assert_eq!(model.predict(&batch).unwrap(), dense);

    let mut checked = 0;
    for (i, expected) in library.iter().enumerate() {
        if expected.is_null() {
            continue;
        }
        let want = library_row(expected, model.task());
        let got = row(&dense, i);
        assert_eq!(got.len(), want.len(), "row {i}");
        for (g, w) in got.iter().zip(&want) {
            let allowed = if relative {
                tolerance * w.abs().max(1.0)
            } else {
                tolerance
            };
            assert!(
                (g - w).abs() <= allowed,
                "row {i}: kiln {g} vs library {w} (difference {:e})",
                (g - w).abs()
            );
        }
        checked += 1;
    }
    assert!(checked >= 40, "only {checked} rows compared");
}

/// Checks `model` against its library's own predictions.
fn check(name: &str, format: ModelFormat, task: Task, classes: &[&str]) -> ImportedModel {
    let model = ImportedModel::load(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(model.format(), format);
    assert_eq!(model.task(), task);
    assert_eq!(model.classes(), classes);
    let e = expected(name);
    compare(&model, &e, &e.predictions, TOLERANCE, false);
    if e.x.iter().any(|v| v.is_nan()) {
        assert!(e.predictions.iter().all(|p| !p.is_null()));
    }
    model
}

#[test]
fn lightgbm_binary_matches_booster_predict() {
    check(
        "lightgbm_credit_binary.txt",
        ModelFormat::Lightgbm,
        Task::Binary,
        &["0", "1"],
    );
}

#[test]
fn lightgbm_regression_matches_booster_predict() {
    check(
        "lightgbm_bikeshare_regression.txt",
        ModelFormat::Lightgbm,
        Task::Regression,
        &[],
    );
}

#[test]
fn lightgbm_multiclass_softmax_matches_booster_predict() {
    check(
        "lightgbm_bikeshare_weather_multiclass.txt",
        ModelFormat::Lightgbm,
        Task::Multiclass,
        &["0", "1", "2"],
    );
}

#[test]
fn lightgbm_categorical_bitsets_and_nan_missing_match_booster_predict() {
    let text = String::from_utf8(fixture("lightgbm_bikeshare_categorical_regression.txt")).unwrap();
    assert!(
        text.contains("cat_threshold="),
        "the fixture lost its categorical splits"
    );
    check(
        "lightgbm_bikeshare_categorical_regression.txt",
        ModelFormat::Lightgbm,
        Task::Regression,
        &[],
    );
}

#[test]
fn lightgbm_zero_as_missing_matches_booster_predict() {
    check(
        "lightgbm_credit_zero_missing_binary.txt",
        ModelFormat::Lightgbm,
        Task::Binary,
        &["0", "1"],
    );
}

#[test]
fn xgboost_binary_with_categorical_splits_matches_booster_predict() {
    check(
        "xgboost_credit_binary.json",
        ModelFormat::Xgboost,
        Task::Binary,
        &["0", "1"],
    );
}

#[test]
fn xgboost_unnamed_regression_matches_booster_predict() {
    let model = check(
        "xgboost_bikeshare_regression_unnamed.json",
        ModelFormat::Xgboost,
        Task::Regression,
        &[],
    );
    let names: Vec<&str> = model.inputs().iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["f0", "f1", "f2", "f3"]);
}

#[test]
fn xgboost_multiclass_with_vector_base_score_matches_booster_predict() {
    check(
        "xgboost_bikeshare_weather_multiclass.json",
        ModelFormat::Xgboost,
        Task::Multiclass,
        &["0", "1", "2"],
    );
}

#[test]
fn xgboost_ubjson_is_refused() {
    let err =
        ImportedModel::load(&fixture("xgboost_bikeshare_regression_unnamed.ubj")).unwrap_err();
    assert!(matches!(err, ForeignError::XgboostUbjson), "{err:?}");
}

#[test]
fn onnx_scaler_and_linear_classifier_match_onnxruntime() {
    check(
        "onnx_bikeshare_logreg.onnx",
        ModelFormat::Onnx,
        Task::Binary,
        &["0", "1"],
    );
}

#[test]
fn onnx_tree_ensemble_regressor_matches_onnxruntime() {
    let model = check(
        "onnx_bikeshare_gbr.onnx",
        ModelFormat::Onnx,
        Task::Regression,
        &[],
    );
    // One packed `[N, 4]` input: its columns have no names.
    let names: Vec<&str> = model.inputs().iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["f0", "f1", "f2", "f3"]);
}

#[test]
fn onnx_feature_vectorizer_scaler_and_linear_regressor_match_onnxruntime() {
    check(
        "onnx_bikeshare_atemp_linreg.onnx",
        ModelFormat::Onnx,
        Task::Regression,
        &[],
    );
}

#[test]
fn onnx_multiclass_forest_behind_zipmap_matches_onnxruntime() {
    check(
        "onnx_bikeshare_weather_forest.onnx",
        ModelFormat::Onnx,
        Task::Multiclass,
        &["0", "1", "2"],
    );
}

#[test]
fn onnx_softmax_linear_classifier_and_normalizer_match_onnxruntime() {
    check(
        "onnx_bikeshare_weather_logreg.onnx",
        ModelFormat::Onnx,
        Task::Multiclass,
        &["clear", "cloudy/misty", "light rain/snow"],
    );
}

#[test]
fn onnx_binary_boosted_classifier_with_base_value_matches_onnxruntime() {
    check(
        "onnx_credit_gbc.onnx",
        ModelFormat::Onnx,
        Task::Binary,
        &["bad", "good"],
    );
}

const ONNX_FIXTURES: [&str; 6] = [
    "onnx_bikeshare_logreg.onnx",
    "onnx_bikeshare_gbr.onnx",
    "onnx_bikeshare_atemp_linreg.onnx",
    "onnx_bikeshare_weather_forest.onnx",
    "onnx_bikeshare_weather_logreg.onnx",
    "onnx_credit_gbc.onnx",
];

#[test]
fn onnx_models_agree_with_their_scikit_learn_source() {
    // ONNX computes in f32, scikit-learn in f64: within 1e-5 of the value.
    for name in ONNX_FIXTURES {
        let model = ImportedModel::load(&fixture(name)).unwrap();
        let e = expected(name);
        compare(&model, &e, e.sklearn.as_ref().unwrap(), 1e-5, true);
    }
}

#[test]
fn onnx_unsupported_operators_and_inputs_are_named() {
    // OneHotEncoder over a string input, behind a Gather.
    let err = ImportedModel::load(&fixture("onnx_credit_forest.onnx")).unwrap_err();
    assert!(matches!(err, ForeignError::Unsupported { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.starts_with("Cannot score this ONNX model"), "{msg}");
    assert!(msg.contains("`OneHotEncoder`"), "{msg}");
    assert!(msg.contains("`Gather`"), "{msg}");
    assert!(msg.contains("input `home` is a tensor of string"), "{msg}");
    assert!(msg.contains("TreeEnsembleClassifier"), "{msg}");
}

#[test]
fn onnx_unknown_operator_in_a_handmade_graph_is_named() {
    // x[N,2] → Relu → TreeEnsembleRegressor is refused at Relu.
    let model = handmade_onnx("Relu");
    let err = ImportedModel::load(&model).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("the operator `Relu` is not supported"),
        "{msg}"
    );
    assert!(msg.contains("Scaler"), "{msg}");
    // The same graph with an Identity scores.
    let model = ImportedModel::load(&handmade_onnx("Identity")).unwrap();
    let p = model.predict_dense(&[0.0, 1.0, 5.0, 4.0], 2);
    assert_eq!(p, Predictions::Regression(vec![1.5, 2.5]));
}

// A protobuf writer for hand-made ONNX files.
fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn int_field(number: u64, v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    varint(number << 3, &mut out);
    varint(v, &mut out);
    out
}

fn len_field(number: u64, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    varint((number << 3) | 2, &mut out);
    varint(body.len() as u64, &mut out);
    out.extend_from_slice(body);
    out
}

fn attr_ints(name: &str, values: &[i64]) -> Vec<u8> {
    let mut a = len_field(1, name.as_bytes());
    for &v in values {
        a.extend(int_field(8, v as u64));
    }
    len_field(5, &a)
}

fn attr_floats(name: &str, values: &[f32]) -> Vec<u8> {
    let packed: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    len_field(
        5,
        &[len_field(1, name.as_bytes()), len_field(7, &packed)].concat(),
    )
}

fn attr_strings(name: &str, values: &[&str]) -> Vec<u8> {
    let mut a = len_field(1, name.as_bytes());
    for v in values {
        a.extend(len_field(9, v.as_bytes()));
    }
    len_field(5, &a)
}

fn attr_int(name: &str, v: i64) -> Vec<u8> {
    len_field(
        5,
        &[len_field(1, name.as_bytes()), int_field(3, v as u64)].concat(),
    )
}

/// A float `[N, 2]` input `x`, a unary `op` (default domain), then one
/// stump (`x1 <= 3 ? 1 : 2`) plus a base value of 0.5.
fn handmade_onnx(op: &str) -> Vec<u8> {
    let value_info = |name: &str, width: u64| {
        let dims = [
            len_field(1, &len_field(2, b"N")),
            len_field(1, &int_field(1, width)),
        ]
        .concat();
        let tensor = [int_field(1, 1), len_field(2, &dims)].concat();
        [
            len_field(1, name.as_bytes()),
            len_field(2, &len_field(1, &tensor)),
        ]
        .concat()
    };
    let unary = [
        len_field(1, b"x"),
        len_field(2, b"h"),
        len_field(4, op.as_bytes()),
    ]
    .concat();
    let trees = [
        len_field(1, b"h"),
        len_field(2, b"y"),
        len_field(4, b"TreeEnsembleRegressor"),
        len_field(7, b"ai.onnx.ml"),
        attr_ints("nodes_treeids", &[0, 0, 0]),
        attr_ints("nodes_nodeids", &[0, 1, 2]),
        attr_ints("nodes_featureids", &[1, 0, 0]),
        attr_strings("nodes_modes", &["BRANCH_LEQ", "LEAF", "LEAF"]),
        attr_floats("nodes_values", &[3.0, 0.0, 0.0]),
        attr_ints("nodes_truenodeids", &[1, 0, 0]),
        attr_ints("nodes_falsenodeids", &[2, 0, 0]),
        attr_ints("target_treeids", &[0, 0]),
        attr_ints("target_nodeids", &[1, 2]),
        attr_ints("target_ids", &[0, 0]),
        attr_floats("target_weights", &[1.0, 2.0]),
        attr_floats("base_values", &[0.5]),
        attr_int("n_targets", 1),
    ]
    .concat();
    let graph = [
        len_field(1, &unary),
        len_field(1, &trees),
        len_field(2, b"handmade"),
        len_field(11, &value_info("x", 2)),
        len_field(12, &value_info("y", 1)),
    ]
    .concat();
    [
        int_field(1, 8),
        len_field(2, b"kiln-test"),
        len_field(7, &graph),
        len_field(8, &[len_field(1, b""), int_field(2, 17)].concat()),
        len_field(8, &[len_field(1, b"ai.onnx.ml"), int_field(2, 3)].concat()),
    ]
    .concat()
}

const ALL_FIXTURES: [&str; 16] = [
    "lightgbm_bikeshare_regression.txt",
    "lightgbm_credit_binary.txt",
    "lightgbm_bikeshare_weather_multiclass.txt",
    "lightgbm_bikeshare_categorical_regression.txt",
    "lightgbm_credit_zero_missing_binary.txt",
    "xgboost_credit_binary.json",
    "xgboost_bikeshare_regression_unnamed.json",
    "xgboost_bikeshare_weather_multiclass.json",
    "xgboost_bikeshare_regression_unnamed.ubj",
    "onnx_bikeshare_logreg.onnx",
    "onnx_credit_forest.onnx",
    "onnx_bikeshare_gbr.onnx",
    "onnx_bikeshare_atemp_linreg.onnx",
    "onnx_bikeshare_weather_forest.onnx",
    "onnx_bikeshare_weather_logreg.onnx",
    "onnx_credit_gbc.onnx",
];

/// Loading must not panic, and a model that loads must score without
/// panicking (rows of zeros, NaN and large values).
fn load_and_score(bytes: &[u8]) -> bool {
    match ImportedModel::load(bytes) {
        Ok(model) => {
            let width = model.inputs().len();
            let x: Vec<f64> = [0.0, f64::NAN, 1e30, -3.5]
                .iter()
                .flat_map(|&v| std::iter::repeat_n(v, width))
                .collect();
            let p = model.predict_dense(&x, 4);
            assert_eq!(p.len(), 4);
            true
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            false
        }
    }
}

#[test]
fn truncated_fixtures_are_errors_not_panics() {
    for name in ALL_FIXTURES {
        let bytes = fixture(name);
        let step = (bytes.len() / 300).max(1);
        for cut in (0..bytes.len()).step_by(step) {
            let result = std::panic::catch_unwind(|| load_and_score(&bytes[..cut]));
            assert!(result.is_ok(), "{name} cut at {cut} panicked");
        }
    }
    for garbage in [
        &b""[..],
        b"\x00\x01\x02",
        b"tree\n",
        b"{\"learner\": 5}",
        b"\x08\x08\x3a\x02\x0a\x00",
    ] {
        assert!(ImportedModel::load(garbage).is_err(), "{garbage:?}");
    }
}

#[test]
fn mutated_fixtures_are_errors_or_score_without_panics() {
    // A small portable generator (xorshift), so failures reproduce.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let fixtures: Vec<Vec<u8>> = ALL_FIXTURES.iter().map(|n| fixture(n)).collect();
    for round in 0..3000 {
        let mut bytes = fixtures[next() as usize % fixtures.len()].clone();
        for _ in 0..1 + next() % 6 {
            let at = next() as usize % bytes.len();
            bytes[at] = if round % 3 == 0 {
                // Text formats: a digit or sign, so numbers stay numbers.
                b"0123456789-."[next() as usize % 12]
            } else {
                next() as u8
            };
        }
        let result = std::panic::catch_unwind(|| load_and_score(&bytes));
        assert!(result.is_ok(), "round {round} panicked");
    }
}

#[test]
fn predict_with_the_wrong_columns_is_an_error() {
    let model = ImportedModel::load(&fixture("lightgbm_credit_binary.txt")).unwrap();
    let names: Vec<String> = model.inputs().iter().map(|c| c.name.clone()).collect();
    let column = |values: Vec<f64>| Arc::new(Float64Array::from(values)) as ArrayRef;

    // One column short.
    let narrow = RecordBatch::try_from_iter(
        names[..4]
            .iter()
            .map(|n| (n.clone(), column(vec![1.0, 2.0]))),
    )
    .unwrap();
    let err = model.predict(&narrow).unwrap_err();
    assert!(matches!(err, MlError::Invalid { .. }), "{err:?}");
    assert!(err.to_string().contains("4 column(s)"), "{err}");
    assert!(err.to_string().contains("takes 5"), "{err}");

    // Right width, wrong order.
    let mut swapped = names.clone();
    swapped.swap(0, 1);
    let batch =
        RecordBatch::try_from_iter(swapped.iter().map(|n| (n.clone(), column(vec![1.0])))).unwrap();
    let err = model.predict(&batch).unwrap_err();
    assert!(err.to_string().contains("`home` stands where"), "{err}");

    // A text column.
    let batch = RecordBatch::try_from_iter(names.iter().enumerate().map(|(j, n)| {
        let array: ArrayRef = if j == 1 {
            Arc::new(StringArray::from(vec!["rent"]))
        } else {
            column(vec![1.0])
        };
        (n.clone(), array)
    }))
    .unwrap();
    let err = model.predict(&batch).unwrap_err();
    assert!(matches!(err, MlError::WrongType { .. }), "{err:?}");
}

#[test]
fn predict_reads_integer_columns_and_nulls() {
    let model = ImportedModel::load(&fixture("xgboost_bikeshare_regression_unnamed.json")).unwrap();
    let ints = RecordBatch::try_from_iter([
        (
            "f0",
            Arc::new(Int64Array::from(vec![Some(8), None])) as ArrayRef,
        ),
        (
            "f1",
            Arc::new(Float64Array::from(vec![0.5, 0.5])) as ArrayRef,
        ),
        (
            "f2",
            Arc::new(Float64Array::from(vec![Some(0.7), None])) as ArrayRef,
        ),
        (
            "f3",
            Arc::new(Float64Array::from(vec![0.1, 0.1])) as ArrayRef,
        ),
    ])
    .unwrap();
    let from_batch = model.predict(&ints).unwrap();
    let dense = model.predict_dense(&[8.0, 0.5, 0.7, 0.1, f64::NAN, 0.5, f64::NAN, 0.1], 2);
    assert_eq!(from_batch, dense);
}

#[test]
fn empty_batches_give_empty_predictions() {
    for name in [
        "lightgbm_bikeshare_weather_multiclass.txt",
        "onnx_credit_gbc.onnx",
    ] {
        let model = ImportedModel::load(&fixture(name)).unwrap();
        assert!(model.predict_dense(&[], 0).is_empty(), "{name}");
    }
}

#[test]
fn large_batches_are_scored_in_parallel_chunks_identically() {
    let model =
        ImportedModel::load(&fixture("lightgbm_bikeshare_categorical_regression.txt")).unwrap();
    let e = expected("lightgbm_bikeshare_categorical_regression.txt");
    // 40 copies of the rows: more than one parallel chunk.
    let copies = 40;
    let x: Vec<f64> = std::iter::repeat_n(e.x.iter().copied(), copies)
        .flatten()
        .collect();
    let big = model.predict_dense(&x, e.rows * copies);
    let small = model.predict_dense(&e.x, e.rows);
    let (Predictions::Regression(big), Predictions::Regression(small)) = (big, small) else {
        panic!("not a regression");
    };
    for (i, v) in big.iter().enumerate() {
        assert_eq!(*v, small[i % e.rows]);
    }
}
