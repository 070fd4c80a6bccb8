//! `kiln-bench shap`: kiln's SHAP engine alone on a model file and a table,
//! with the flags bench/explain/peer.py takes, so both sides explain the
//! same rows of the same model. Prints one JSON line.
//!
//! `--model FILE --data FILE --threads T --method path|interventional
//!  --background N --single K`: the seconds to explain every row (after
//! reading; the engine's work, as `pred_contrib` is LightGBM's), and the
//! microseconds one served row's explanation takes (`kiln_serve::explain`,
//! what `explain=true` adds to a request: building the explainer, TreeSHAP,
//! the top columns as JSON), the median of K calls, beside one row's
//! prediction.

use std::path::Path;
use std::time::Instant;

use arrow_array::RecordBatch;
use kiln_data::read::{ReadOptions, open};
use kiln_explain::explain::{Choice, Data, Explainer, Subject, data_of, spread};
use kiln_ml::imported::ImportedModel;

pub fn run(args: &[String]) {
    let flags = super::Flags::parse(args);
    let get = |k: &str, d: &str| flags.get(k, d);
    let num = |k: &str, d: &str| -> usize {
        get(k, d)
            .parse()
            .unwrap_or_else(|_| super::fail(&format!("--{k} must be a whole number")))
    };
    let threads = num("threads", "2");
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool");
    let bytes = std::fs::read(get("model", "")).unwrap_or_else(|e| super::fail(&e));
    let model = ImportedModel::load(&bytes).unwrap_or_else(|e| super::fail(&e));
    let batches: Vec<RecordBatch> =
        open(Path::new(&get("data", "")), &ReadOptions::default(), false)
            .unwrap_or_else(|e| super::fail(&e))
            .map(|b| b.unwrap_or_else(|e| super::fail(&e)))
            .collect();
    let subject = Subject::Imported(&model);
    let data = data_of(subject, &batches).unwrap_or_else(|e| super::fail(&e));
    let n = data.n_rows();
    let choice = match get("method", "path").as_str() {
        "path" => Choice::Auto,
        "interventional" => Choice::Interventional,
        other => super::fail(&format!("unknown method {other}")),
    };
    let background: Option<Data> = Some(data.take(&spread(n, num("background", "100"))));
    let (seconds, sum) = pool.install(|| {
        let start = Instant::now();
        let e = Explainer::new(subject, choice, None, background.clone())
            .unwrap_or_else(|e| super::fail(&e));
        let phi = e.attributions(&data);
        (start.elapsed().as_secs_f64(), phi.iter().sum::<f64>())
    });
    // One served row: what explain=true adds to a request.
    let single = num("single", "0");
    let (mut explain_us, mut predict_us) = (Vec::new(), Vec::new());
    if single > 0 {
        let predictor = kiln_serve::Predictor::Imported(model.clone());
        let request = kiln_serve::ExplainRequest {
            top: 5,
            class: None,
        };
        // As a served version does: the trees are kept between requests.
        let cache = kiln_serve::explain::Cache::default();
        let first = &batches[0];
        pool.install(|| {
            for i in 0..single {
                let row = first.slice(i % first.num_rows(), 1);
                let row = kiln_serve::RecordBatch::try_new(
                    std::sync::Arc::new(arrow_schema_of(&model)),
                    model_columns(&model, &row),
                )
                .expect("one row");
                let t = Instant::now();
                std::hint::black_box(predictor.predict(&row).expect("predicts"));
                predict_us.push(t.elapsed().as_secs_f64() * 1e6);
                let t = Instant::now();
                std::hint::black_box(
                    kiln_serve::explain::explain(&predictor, &row, None, &request, &cache)
                        .expect("explains"),
                );
                explain_us.push(t.elapsed().as_secs_f64() * 1e6);
            }
        });
    }
    println!(
        "{{\"side\": \"kiln\", \"method\": \"{}\", \"rows\": {n}, \"trees\": {}, \"seconds\": {seconds:.4}, \"checksum\": {sum:.6}, \"single_explain_us\": {:.1}, \"single_predict_us\": {:.1}}}",
        get("method", "path"),
        model.trees().map_or(0, |t| t.n_trees()),
        median(&mut explain_us),
        median(&mut predict_us),
    );
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The model's input columns of `row`, in its order, as Float64 (what a
/// served request is typed to).
fn model_columns(model: &ImportedModel, row: &RecordBatch) -> Vec<arrow_array::ArrayRef> {
    model
        .inputs()
        .iter()
        .map(|c| {
            let col = row
                .column_by_name(&c.name)
                .unwrap_or_else(|| super::fail(&format!("no column {}", c.name)));
            arrow_cast::cast(col, &arrow_schema::DataType::Float64).expect("numbers")
        })
        .collect()
}

fn arrow_schema_of(model: &ImportedModel) -> arrow_schema::Schema {
    arrow_schema::Schema::new(
        model
            .inputs()
            .iter()
            .map(|c| arrow_schema::Field::new(&c.name, arrow_schema::DataType::Float64, true))
            .collect::<Vec<_>>(),
    )
}
