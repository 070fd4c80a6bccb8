//! Every kind of kiln model explained end to end: attributions on the
//! table's columns add up to the model's output (the raw score for exact
//! methods, the prediction for permutation SHAP), for boosted trees
//! (binary, multiclass with each class), a linear model and an ensemble.

use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray};
use kiln_explain::report::Method;
use kiln_explain::{Choice, Explainer, Options, Subject, explain};
use kiln_ml::automl::{self, AutoMlOptions};
use kiln_ml::encode::DenseEncoder;
use kiln_ml::linear::{self, Dense, LinearParams};
use kiln_ml::model::{Learner, Model};
use kiln_ml::{Predictions, Task};

/// 600 rows: two numbers, a category and a label that depends on all
/// three (`label` has three classes when `classes` is 3, and is the number
/// itself when `classes` is 0).
fn table(classes: usize) -> RecordBatch {
    let n = 600;
    let mut state = 12345u64;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let (mut a, mut b, mut c, mut y) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut values = Vec::new();
    for _ in 0..n {
        let x0 = next() * 4.0 - 2.0;
        let x1 = next() * 4.0 - 2.0;
        let cat = ["red", "green", "blue"][(next() * 3.0) as usize % 3];
        let score = 1.5 * x0 - x1 * x0.abs() + if cat == "red" { 1.0 } else { -0.5 } + next() - 0.5;
        let label = if classes == 2 {
            if score > 0.0 { "yes" } else { "no" }
        } else if score > 1.0 {
            "high"
        } else if score > -1.0 {
            "mid"
        } else {
            "low"
        };
        a.push(x0);
        b.push(x1);
        c.push(cat);
        y.push(label);
        values.push(score);
    }
    let label: ArrayRef = if classes == 0 {
        Arc::new(Float64Array::from(values))
    } else {
        Arc::new(StringArray::from(y))
    };
    RecordBatch::try_from_iter([
        ("x0", Arc::new(Float64Array::from(a)) as ArrayRef),
        ("x1", Arc::new(Float64Array::from(b)) as ArrayRef),
        ("colour", Arc::new(StringArray::from(c)) as ArrayRef),
        ("label", label),
    ])
    .unwrap()
}

fn trained(batch: &RecordBatch, ensemble: bool, trials: usize) -> Model {
    let options = AutoMlOptions {
        max_trials: Some(trials),
        ensemble,
        ..AutoMlOptions::default()
    };
    automl::train(std::slice::from_ref(batch), "label", &options, &mut |_| {})
        .unwrap()
        .model
}

/// The explained output of each local row, checked against the model.
fn check_local_rows(model: &Model, batch: &RecordBatch, class: Option<&str>, expect: Method) {
    let options = Options {
        local: vec![0, 7, 123],
        class: class.map(str::to_string),
        rows: 200,
        repeats: 2,
        ..Options::default()
    };
    let e = explain(
        Subject::Kiln(model),
        "m",
        std::slice::from_ref(batch),
        &options,
    )
    .unwrap();
    assert_eq!(e.method, expect, "{:?}", e.method_note);
    assert_eq!(e.columns.len(), 3);
    let predicted = model
        .predict(std::slice::from_ref(batch))
        .unwrap()
        .predictions;
    let class_index = |c: &str| model.target.classes.iter().position(|k| k == c).unwrap();
    for l in &e.local {
        let total: f64 = l.contributions.iter().map(|c| c.shap).sum();
        assert!(
            (e.expected_value + total - l.output).abs() < 1e-9,
            "row {}",
            l.row
        );
        // The output is the model's, on the explained scale.
        if let Predictions::Regression(v) = &predicted {
            // Regression without a link: the output is the prediction.
            let p = v[l.row];
            assert!(
                (l.output - p).abs() < 1e-9,
                "row {}: {} vs {p}",
                l.row,
                l.output
            );
            continue;
        }
        let class = e.output.class.as_deref().unwrap();
        let p = match &predicted {
            Predictions::Binary(v) => {
                if class_index(class) == 1 {
                    v[l.row]
                } else {
                    1.0 - v[l.row]
                }
            }
            Predictions::Multiclass { probs, n_classes } => {
                probs[l.row * n_classes + class_index(class)]
            }
            Predictions::Regression(v) => v[l.row],
        };
        // The prediction as shown names the explained class's probability.
        let shown = l
            .prediction
            .strip_prefix(&format!("P({class}) = "))
            .unwrap_or_else(|| panic!("{} does not start with P({class})", l.prediction));
        let shown: f64 = shown.split_whitespace().next().unwrap().parse().unwrap();
        assert!((shown - p).abs() < 1e-4, "{} vs {p}", l.prediction);
        match (expect, &predicted) {
            (Method::Permutation, _) => assert!((l.output - p).abs() < 1e-9, "{} vs {p}", l.output),
            (_, Predictions::Binary(_)) => {
                let prob = 1.0 / (1.0 + (-l.output).exp());
                assert!((prob - p).abs() < 1e-9, "row {}: {prob} vs {p}", l.row);
            }
            (_, Predictions::Multiclass { .. }) => {} // softmax inputs: checked by the sum over classes below
            _ => unreachable!(),
        }
    }
}

#[test]
fn boosted_trees_are_explained_exactly_on_the_log_odds_of_either_class() {
    let batch = table(2);
    let model = trained(&batch, false, 1);
    assert!(matches!(model.learner, Learner::Gbdt(_)));
    check_local_rows(&model, &batch, None, Method::TreePathDependent);
    check_local_rows(&model, &batch, Some("no"), Method::TreePathDependent);
    // The negative class's values are the positive class's, negated.
    let get = |class: &str| {
        let o = Options {
            local: vec![5],
            class: Some(class.into()),
            repeats: 0,
            ..Options::default()
        };
        explain(Subject::Kiln(&model), "m", std::slice::from_ref(&batch), &o).unwrap()
    };
    let (yes, no) = (get("yes"), get("no"));
    for (a, b) in yes.local[0]
        .contributions
        .iter()
        .zip(&no.local[0].contributions)
    {
        assert_eq!(a.column, b.column);
        assert!((a.shap + b.shap).abs() < 1e-12);
    }
    // Interventional TreeSHAP on the same model adds up too.
    let o = Options {
        choice: Choice::Interventional,
        local: vec![3],
        repeats: 0,
        ..Options::default()
    };
    let e = explain(Subject::Kiln(&model), "m", std::slice::from_ref(&batch), &o).unwrap();
    assert_eq!(e.method, Method::TreeInterventional);
    assert_eq!(e.background_rows, Some(100));
    let total: f64 = e.local[0].contributions.iter().map(|c| c.shap).sum();
    assert!((e.expected_value + total - e.local[0].output).abs() < 1e-9);
}

#[test]
fn a_multiclass_models_classes_add_up_to_their_softmax() {
    let batch = table(3);
    let model = trained(&batch, false, 1);
    assert!(matches!(model.learner, Learner::Gbdt(_)));
    let classes = model.target.classes.clone();
    assert_eq!(classes.len(), 3);
    let mut raw = Vec::new();
    for c in &classes {
        check_local_rows(&model, &batch, Some(c), Method::TreePathDependent);
        let o = Options {
            local: vec![9],
            class: Some(c.clone()),
            repeats: 0,
            ..Options::default()
        };
        let e = explain(Subject::Kiln(&model), "m", std::slice::from_ref(&batch), &o).unwrap();
        assert_eq!(e.output.class.as_deref(), Some(c.as_str()));
        raw.push(e.local[0].output);
    }
    // The classes' raw scores, through softmax, are the predicted probabilities.
    let max = raw.iter().copied().fold(f64::MIN, f64::max);
    let z: f64 = raw.iter().map(|r| (r - max).exp()).sum();
    let Predictions::Multiclass { probs, n_classes } = model
        .predict(std::slice::from_ref(&batch))
        .unwrap()
        .predictions
    else {
        panic!("a multiclass model")
    };
    for (k, r) in raw.iter().enumerate() {
        assert!(((r - max).exp() / z - probs[9 * n_classes + k]).abs() < 1e-9);
    }
    // A class the model does not have is refused by name.
    let o = Options {
        class: Some("purple".into()),
        ..Options::default()
    };
    let err = explain(Subject::Kiln(&model), "m", std::slice::from_ref(&batch), &o).unwrap_err();
    assert!(err.to_string().contains("no class `purple`"), "{err}");
}

#[test]
fn a_linear_model_is_explained_exactly_against_the_background_mean() {
    let batch = table(2);
    let mut model = trained(&batch, false, 1);
    // The same preprocessing, a logistic regression as the learner.
    let (x, _) = model
        .preprocessor
        .transform(std::slice::from_ref(&batch))
        .unwrap();
    let labels = model.target.labels(std::slice::from_ref(&batch)).unwrap();
    let encoder = DenseEncoder::fit(&x);
    let data = encoder.transform(&x);
    let dense = Dense {
        data: &data,
        n_rows: x.n_rows(),
        n_cols: encoder.width(),
    };
    let fitted = linear::fit(
        &dense,
        &labels.target,
        Task::Binary,
        &LinearParams::default(),
    )
    .unwrap();
    model.learner = Learner::Linear {
        encoder,
        model: fitted,
    };
    check_local_rows(&model, &batch, None, Method::Linear);
    // A column's attribution is its coefficients times its encoded value
    // minus the background's mean: the category's one-hot group summed.
    let o = Options {
        local: vec![1],
        repeats: 0,
        ..Options::default()
    };
    let e = explain(Subject::Kiln(&model), "m", std::slice::from_ref(&batch), &o).unwrap();
    assert_eq!(e.background_rows, Some(100));
    assert!(e.method.exact());
    let colour = e.local[0]
        .contributions
        .iter()
        .find(|c| c.column == "colour")
        .unwrap();
    assert!(colour.shap.abs() > 1e-6);
}

#[test]
fn an_ensemble_falls_back_to_permutation_shap_and_says_why() {
    let batch = table(2);
    let mut model = trained(&batch, false, 1);
    // Two learners averaged: the boosted trees and themselves again.
    let single = model.learner.clone();
    model.learner = Learner::Ensemble {
        members: vec![(0.5, single.clone()), (0.5, single)],
    };
    check_local_rows(&model, &batch, None, Method::Permutation);
    check_local_rows(&model, &batch, Some("no"), Method::Permutation);
    let o = Options {
        local: vec![0],
        repeats: 0,
        ..Options::default()
    };
    let e = explain(Subject::Kiln(&model), "m", std::slice::from_ref(&batch), &o).unwrap();
    assert!(
        e.method_note
            .as_deref()
            .unwrap()
            .contains("ensemble of 2 learners")
    );
    assert!(!e.method.exact());
    assert_eq!(e.rows, 100, "permutation SHAP explains fewer rows");
    assert!(
        e.notes
            .iter()
            .any(|n| n.contains("permutation SHAP calls the model"))
    );
    // Without background rows there is nothing to estimate against.
    let err = Explainer::new(Subject::Kiln(&model), Choice::Auto, None, None)
        .err()
        .unwrap();
    assert!(err.to_string().contains("background"), "{err}");
}

#[test]
fn an_ensemble_of_boosted_regressors_is_explained_exactly_as_one_sum_of_trees() {
    let batch = table(0);
    let mut model = trained(&batch, false, 1);
    assert_eq!(model.task(), Task::Regression);
    let Learner::Gbdt(g) = model.learner.clone() else {
        panic!("boosted trees")
    };
    // A different second member (the trees shifted), weights 0.3 / 0.7.
    let mut other = g.clone();
    other.init_scores.iter_mut().for_each(|s| *s += 2.0);
    model.learner = Learner::Ensemble {
        members: vec![(0.3, Learner::Gbdt(g)), (0.7, Learner::Gbdt(other))],
    };
    check_local_rows(&model, &batch, None, Method::TreePathDependent);
    let o = Options {
        local: vec![2],
        repeats: 0,
        ..Options::default()
    };
    let e = explain(Subject::Kiln(&model), "m", std::slice::from_ref(&batch), &o).unwrap();
    assert!(e.method_note.is_none());
    assert!(e.method.exact());
    assert_eq!(e.output.name, "predicted `label`");
}

#[test]
fn a_table_without_labels_is_explained_without_permutation_importance() {
    let batch = table(2);
    let model = trained(&batch, false, 1);
    // The same rows with the label column all missing.
    let unlabelled = RecordBatch::try_from_iter([
        ("x0", batch.column(0).clone()),
        ("x1", batch.column(1).clone()),
        ("colour", batch.column(2).clone()),
        (
            "label",
            Arc::new(StringArray::from(vec![None::<&str>; batch.num_rows()])) as ArrayRef,
        ),
    ])
    .unwrap();
    let e = explain(
        Subject::Kiln(&model),
        "m",
        std::slice::from_ref(&unlabelled),
        &Options::default(),
    )
    .unwrap();
    assert!(e.permutation.is_none());
    assert!(
        e.notes
            .iter()
            .any(|n| n.contains("no row has a `label` label")),
        "{:?}",
        e.notes
    );
    assert_eq!(e.columns.len(), 3);
}
