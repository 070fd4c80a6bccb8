//! `kiln-bench gbdt`: kiln's gradient-boosted trees alone, with the flags
//! bench/ml/lgbm.py takes, so both sides fit the same files with the same
//! settings. Prints one JSON line.

use std::path::Path;
use std::time::Instant;

use arrow_array::RecordBatch;
use kiln_data::read::{ReadOptions, open};
use kiln_ml::Task;
use kiln_ml::gbdt::{Gbdt, GbdtParams, Objective};
use kiln_ml::metrics::{Metric, score};
use kiln_ml::preprocess::{PreprocessOptions, Preprocessor, TargetSpec};

fn read(path: &str) -> Vec<RecordBatch> {
    let reader =
        open(Path::new(path), &ReadOptions::default(), false).unwrap_or_else(|e| super::fail(&e));
    reader
        .map(|b| b.unwrap_or_else(|e| super::fail(&e)))
        .collect()
}

pub fn run(args: &[String]) {
    let flags = super::Flags::parse(args);
    let get = |k: &str, d: &str| flags.get(k, d);
    let num = |k: &str, d: &str| -> f64 {
        get(k, d)
            .parse()
            .unwrap_or_else(|_| super::fail(&format!("--{k} must be a number")))
    };
    let threads = num("threads", "2") as usize;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool");
    let target = get("target", "y");
    let train = read(&get("train", ""));
    let test = read(&get("test", ""));
    let task = match get("objective", "binary").as_str() {
        "binary" => Task::Binary,
        "regression" => Task::Regression,
        other => super::fail(&format!("unknown objective {other}")),
    };
    let params = GbdtParams {
        objective: if task == Task::Binary {
            Objective::Binary
        } else {
            Objective::L2
        },
        n_trees: num("trees", "100") as usize,
        max_leaves: num("leaves", "31") as usize,
        learning_rate: num("lr", "0.1"),
        max_bin: num("max-bin", "255") as usize,
        min_data_in_leaf: num("min-child-samples", "20") as usize,
        ..GbdtParams::default()
    };
    pool.install(|| {
        let start = Instant::now();
        let pre = Preprocessor::fit(&train, &target, None, &PreprocessOptions::default())
            .unwrap_or_else(|e| super::fail(&e));
        let (x, _) = pre.transform(&train).unwrap_or_else(|e| super::fail(&e));
        let (spec, labels) = TargetSpec::fit(&train, &target, Some(task), None)
            .unwrap_or_else(|e| super::fail(&e));
        let y = labels.target.numbers();
        let construct = start.elapsed().as_secs_f64();
        let model = Gbdt::fit(&x, &y, &params, None).unwrap_or_else(|e| super::fail(&e));
        let fit = start.elapsed().as_secs_f64();

        let (xt, _) = pre.transform(&test).unwrap_or_else(|e| super::fail(&e));
        let truth = spec.labels(&test).unwrap_or_else(|e| super::fail(&e)).target;
        let start = Instant::now();
        let pred = model.predict(&xt);
        let predict = start.elapsed().as_secs_f64();
        let metric = if task == Task::Binary {
            Metric::RocAuc
        } else {
            Metric::Rmse
        };
        let value = score(metric, &truth, &pred).unwrap_or_else(|e| super::fail(&e));
        println!(
            "{{\"side\":\"kiln\",\"fit_seconds\":{fit:.4},\"construct_seconds\":{construct:.4},\"predict_seconds\":{predict:.4},\"rows_per_second\":{:.0},\"{}\":{value:.6},\"trees\":{}}}",
            pred.len() as f64 / predict,
            metric.name(),
            model.trees.len()
        );
    });
}
