//! The prediction log: every sampled prediction (inputs, outputs, model
//! version, latency, request id) is appended to Parquet segments in the
//! object store, one per deployment, model version, role and hour, indexed
//! in the metadata store (`prediction_segments`).
//!
//! Serving never waits for it: a request hands its record to a bounded
//! queue and moves on; when the queue is full the record is dropped and
//! counted (`kiln_prediction_log_dropped_total`). One task drains the
//! queue, and writes a segment when a buffer holds [`FLUSH_ROWS`] rows, when
//! it is older than the flush interval, or at shutdown.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{
    ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray, UInt32Array,
};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use kiln_ml::Predictions;
use kiln_project::Project;
use kiln_store::PredictionSegment;
use tokio::sync::mpsc;

use super::deploy::Loaded;
use super::metrics::Metrics;

/// Rows that make a segment worth writing at once.
pub const FLUSH_ROWS: usize = 50_000;
/// Records the queue holds before it drops.
const QUEUE: usize = 16_384;

/// Which model a record's predictions came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// The model that answered the request.
    Answer,
    /// A shadow model: scored, not answered.
    Shadow,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Answer => "answer",
            Role::Shadow => "shadow",
        }
    }
}

/// One request's predictions by one model.
pub struct Record {
    pub deployment: Arc<str>,
    pub request_id: String,
    /// Microseconds since the epoch.
    pub time_us: i64,
    pub loaded: Arc<Loaded>,
    pub role: Role,
    pub latency_ms: f64,
    /// The inputs, typed by the model's signature.
    pub inputs: RecordBatch,
    pub predictions: Predictions,
}

/// The sending side, shared by every request.
#[derive(Clone)]
pub struct Logger {
    tx: mpsc::Sender<Record>,
    metrics: Arc<Metrics>,
}

impl Logger {
    /// Queues a record; drops and counts it when the queue is full.
    pub fn log(&self, r: Record) {
        if self.tx.try_send(r).is_err() {
            self.metrics.log_dropped.inc();
        }
    }
}

/// Starts the writer task; returns the logger and the task, which ends
/// (after writing what it holds) once every logger is dropped.
pub fn start(
    project: Arc<Project>,
    metrics: Arc<Metrics>,
    flush_every: Duration,
) -> (Logger, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(QUEUE);
    let task = tokio::spawn(writer(project, metrics.clone(), rx, flush_every));
    (Logger { tx, metrics }, task)
}

type Key = (Arc<str>, String, String, String, Role, String);

struct Buffer {
    batches: Vec<RecordBatch>,
    rows: usize,
    first_us: i64,
    last_us: i64,
    since: Instant,
}

async fn writer(
    project: Arc<Project>,
    metrics: Arc<Metrics>,
    mut rx: mpsc::Receiver<Record>,
    flush_every: Duration,
) {
    let mut buffers: HashMap<Key, Buffer> = HashMap::new();
    let mut tick = tokio::time::interval(flush_every.min(Duration::from_secs(1)));
    loop {
        tokio::select! {
            r = rx.recv() => match r {
                Some(r) => {
                    let hour = hour_of(r.time_us);
                    let key: Key = (
                        r.deployment.clone(),
                        r.loaded.model_name.clone(),
                        r.loaded.version.clone(),
                        r.loaded.predictor.format().to_string(),
                        r.role,
                        hour,
                    );
                    let batch = match to_batch(&r) {
                        Ok(b) => b,
                        Err(e) => {
                            tracing::warn!("prediction log: cannot record a prediction: {e}");
                            continue;
                        }
                    };
                    let b = buffers.entry(key.clone()).or_insert_with(|| Buffer {
                        batches: Vec::new(),
                        rows: 0,
                        first_us: r.time_us,
                        last_us: r.time_us,
                        since: Instant::now(),
                    });
                    b.rows += batch.num_rows();
                    b.last_us = b.last_us.max(r.time_us);
                    b.first_us = b.first_us.min(r.time_us);
                    b.batches.push(batch);
                    if b.rows >= FLUSH_ROWS {
                        let b = buffers.remove(&key).expect("just filled");
                        flush(&project, &metrics, &key, b).await;
                    }
                }
                None => break,
            },
            _ = tick.tick() => {
                let due: Vec<Key> = buffers
                    .iter()
                    .filter(|(_, b)| b.since.elapsed() >= flush_every)
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in due {
                    let b = buffers.remove(&k).expect("listed");
                    flush(&project, &metrics, &k, b).await;
                }
            }
        }
    }
    for (k, b) in buffers.drain() {
        flush(&project, &metrics, &k, b).await;
    }
}

/// `YYYY-MM-DDTHH` of a time in microseconds (UTC).
fn hour_of(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H")
        .to_string()
}

/// One record as rows: request id, row, time, latency, model, version,
/// role, then the inputs (`input.NAME`), the prediction and, for
/// classifiers, `prob.CLASS`.
fn to_batch(r: &Record) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let n = r.inputs.num_rows();
    let mut fields = vec![
        Field::new("request_id", DataType::Utf8, false),
        Field::new("row", DataType::UInt32, false),
        Field::new(
            "time",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("latency_ms", DataType::Float64, false),
        Field::new("model", DataType::Utf8, false),
        Field::new("version", DataType::Utf8, false),
        Field::new("role", DataType::Utf8, false),
    ];
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![r.request_id.as_str(); n])),
        Arc::new(UInt32Array::from_iter_values(0..n as u32)),
        Arc::new(TimestampMicrosecondArray::from(vec![r.time_us; n]).with_timezone("UTC")),
        Arc::new(Float64Array::from(vec![r.latency_ms; n])),
        Arc::new(StringArray::from(vec![r.loaded.model_name.as_str(); n])),
        Arc::new(StringArray::from(vec![r.loaded.version.as_str(); n])),
        Arc::new(StringArray::from(vec![r.role.as_str(); n])),
    ];
    let schema = r.inputs.schema();
    for (f, c) in schema.fields().iter().zip(r.inputs.columns()) {
        fields.push(Field::new(
            format!("input.{}", f.name()),
            f.data_type().clone(),
            true,
        ));
        columns.push(c.clone());
    }
    let classes = r.loaded.predictor.classes();
    match &r.predictions {
        Predictions::Regression(v) => {
            fields.push(Field::new("prediction", DataType::Float64, false));
            columns.push(Arc::new(Float64Array::from(v.clone())));
        }
        p => {
            let labels: Vec<&str> = p
                .classes()
                .unwrap_or_default()
                .into_iter()
                .map(|c| classes.get(c as usize).map_or("", String::as_str))
                .collect();
            fields.push(Field::new("prediction", DataType::Utf8, false));
            columns.push(Arc::new(StringArray::from(labels)));
            let k = classes.len();
            for (ci, class) in classes.iter().enumerate() {
                let probs: Vec<f64> = match p {
                    Predictions::Binary(v) => v
                        .iter()
                        .map(|&x| if ci == 1 { x } else { 1.0 - x })
                        .collect(),
                    Predictions::Multiclass { probs, .. } => {
                        probs.chunks(k).map(|row| row[ci]).collect()
                    }
                    Predictions::Regression(_) => unreachable!(),
                };
                fields.push(Field::new(
                    format!("prob.{class}"),
                    DataType::Float64,
                    false,
                ));
                columns.push(Arc::new(Float64Array::from(probs)));
            }
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}

async fn flush(project: &Project, metrics: &Metrics, key: &Key, b: Buffer) {
    let (deployment, model, version, _format, role, hour) = key;
    let rows = b.rows;
    let bytes = match tokio::task::spawn_blocking(move || parquet_bytes(&b.batches)).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e)) => {
            tracing::warn!("prediction log: cannot write a segment for `{deployment}`: {e}");
            return;
        }
        Err(e) => {
            tracing::warn!("prediction log: segment writer failed: {e}");
            return;
        }
    };
    let result = async {
        let hash = project.objects.put_bytes(bytes).await?;
        project
            .meta
            .add_prediction_segment(&PredictionSegment {
                deployment: deployment.to_string(),
                hour: hour.clone(),
                model: model.clone(),
                version: version.clone(),
                role: role.as_str().to_string(),
                object: hash.to_hex(),
                rows: rows as i64,
                first_time: b.first_us / 1000,
                last_time: b.last_us / 1000,
            })
            .await?;
        Ok::<_, kiln_store::StoreError>(())
    }
    .await;
    match result {
        Ok(()) => {
            metrics.log_written.inc_by(rows as u64);
        }
        Err(e) => tracing::warn!("prediction log: cannot store a segment for `{deployment}`: {e}"),
    }
}

fn parquet_bytes(batches: &[RecordBatch]) -> Result<Vec<u8>, parquet::errors::ParquetError> {
    let Some(first) = batches.first() else {
        return Ok(Vec::new());
    };
    // Records of one key share a signature; a batch that does not (the
    // model's columns cannot change within a version) is skipped.
    let schema = first.schema();
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
        .build();
    let mut out = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut out, schema.clone(), Some(props))?;
    for b in batches.iter().filter(|b| b.schema() == schema) {
        w.write(b)?;
    }
    w.close()?;
    Ok(out)
}

/// Reads segments back: every row of a deployment's log, oldest first.
pub async fn read_segments(
    project: &Project,
    deployment: &str,
) -> anyhow::Result<Vec<RecordBatch>> {
    let mut out = Vec::new();
    for s in project.meta.prediction_segments(deployment, None).await? {
        let hash = kiln_core::ContentHash::parse(&s.object)?;
        let bytes = bytes::Bytes::from(project.objects.get_bytes(&hash).await?);
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)?
            .build()?;
        for b in reader {
            out.push(b?);
        }
    }
    Ok(out)
}
