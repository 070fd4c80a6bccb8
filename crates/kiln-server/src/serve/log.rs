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
/// Records the queue holds before it drops: over half a second of a
/// 30,000 requests/s stream between two drains.
const QUEUE: usize = 32_768;
/// How often the writer drains the queue.
const DRAIN_EVERY: Duration = Duration::from_millis(20);

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
    /// Each row's explanation as JSON, when the request asked for one
    /// (`explain=true`): logged for audit.
    pub explanations: Option<Vec<String>>,
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

/// A buffer's identity: deployment, the loaded version (by address: the
/// buffer holds it, so the address is not reused while the buffer lives),
/// role, and the hour (hours since the epoch).
type Key = (Arc<str>, usize, Role, i64);

const HOUR_US: i64 = 3_600_000_000;

/// Records converted to columns this many at a time, so a buffer holds
/// columns (about 10 bytes a value) rather than a small batch per request.
const CHUNK: usize = 1024;

struct Buffer {
    loaded: Arc<Loaded>,
    /// Converted records.
    chunks: Vec<RecordBatch>,
    /// Records not converted yet.
    records: Vec<Record>,
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
    let converter = Converter::start();
    // The writer wakes on a timer and drains the queue, rather than waiting
    // on it: a sender then never has a waiting task to wake, which would cost
    // every request a wake-up of this task.
    let mut tick = tokio::time::interval(DRAIN_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut open = true;
    while open {
        tick.tick().await;
        loop {
            let r = match rx.try_recv() {
                Ok(r) => r,
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            };
            // Only bookkeeping here: records become columns a chunk at a time.
            let key: Key = (
                r.deployment.clone(),
                Arc::as_ptr(&r.loaded) as usize,
                r.role,
                r.time_us.div_euclid(HOUR_US),
            );
            let b = buffers.entry(key.clone()).or_insert_with(|| Buffer {
                loaded: r.loaded.clone(),
                chunks: Vec::new(),
                records: Vec::new(),
                rows: 0,
                first_us: r.time_us,
                last_us: r.time_us,
                since: Instant::now(),
            });
            b.rows += r.inputs.num_rows();
            b.last_us = b.last_us.max(r.time_us);
            b.first_us = b.first_us.min(r.time_us);
            b.records.push(r);
            if b.records.len() >= CHUNK {
                let records = std::mem::take(&mut b.records);
                match converter.run(move || to_batch(&records)).await {
                    Some(Ok(batch)) => b.chunks.push(batch),
                    Some(Err(e)) => {
                        tracing::warn!("prediction log: cannot record predictions: {e}")
                    }
                    None => tracing::warn!("prediction log: the converter thread is gone"),
                }
            }
            if b.rows >= FLUSH_ROWS {
                let b = buffers.remove(&key).expect("just filled");
                flush(&project, &metrics, &converter, &key, b).await;
            }
        }
        let due: Vec<Key> = buffers
            .iter()
            .filter(|(_, b)| b.since.elapsed() >= flush_every)
            .map(|(k, _)| k.clone())
            .collect();
        for k in due {
            let b = buffers.remove(&k).expect("listed");
            flush(&project, &metrics, &converter, &k, b).await;
        }
    }
    for (k, b) in buffers.drain() {
        flush(&project, &metrics, &converter, &k, b).await;
    }
}

/// `YYYY-MM-DDTHH` of a time in microseconds (UTC).
fn hour_of(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H")
        .to_string()
}

/// Records of one key as one batch: request id, row, time, latency, model,
/// version, role, then the inputs (`input.NAME`), the prediction and, for
/// classifiers, `prob.CLASS`. Records whose inputs differ in schema from
/// the first (never within one version) are left out.
fn to_batch(records: &[Record]) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let first = &records[0];
    let schema = first.inputs.schema();
    let records: Vec<&Record> = records
        .iter()
        .filter(|r| r.inputs.schema() == schema)
        .collect();
    let n: usize = records.iter().map(|r| r.inputs.num_rows()).sum();
    let each = |f: &dyn Fn(&Record) -> f64| -> Float64Array {
        records
            .iter()
            .flat_map(|r| std::iter::repeat_n(f(r), r.inputs.num_rows()))
            .collect()
    };
    let mut ids = arrow_array::builder::StringBuilder::with_capacity(n, n * 32);
    let mut rows = Vec::with_capacity(n);
    let mut times = Vec::with_capacity(n);
    for r in &records {
        for i in 0..r.inputs.num_rows() {
            ids.append_value(&r.request_id);
            rows.push(i as u32);
            times.push(r.time_us);
        }
    }
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
        Arc::new(ids.finish()),
        Arc::new(UInt32Array::from(rows)),
        Arc::new(TimestampMicrosecondArray::from(times).with_timezone("UTC")),
        Arc::new(each(&|r| r.latency_ms)),
        Arc::new(StringArray::from(vec![first.loaded.model_name.as_str(); n])),
        Arc::new(StringArray::from(vec![first.loaded.version.as_str(); n])),
        Arc::new(StringArray::from(vec![first.role.as_str(); n])),
    ];
    let inputs = arrow_select::concat::concat_batches(&schema, records.iter().map(|r| &r.inputs))?;
    for (f, c) in schema.fields().iter().zip(inputs.columns()) {
        fields.push(Field::new(
            format!("input.{}", f.name()),
            f.data_type().clone(),
            true,
        ));
        columns.push(c.clone());
    }
    let classes = first.loaded.predictor.classes();
    if matches!(first.predictions, Predictions::Regression(_)) {
        let values: Float64Array = records
            .iter()
            .flat_map(|r| match &r.predictions {
                Predictions::Regression(v) => v.clone(),
                _ => vec![f64::NAN; r.inputs.num_rows()],
            })
            .collect();
        fields.push(Field::new("prediction", DataType::Float64, false));
        columns.push(Arc::new(values));
    } else {
        let k = classes.len();
        let mut labels = arrow_array::builder::StringBuilder::with_capacity(n, n * 8);
        let mut probs: Vec<Vec<f64>> = vec![Vec::with_capacity(n); k];
        for r in &records {
            for c in r.predictions.classes().unwrap_or_default() {
                labels.append_value(classes.get(c as usize).map_or("", String::as_str));
            }
            match &r.predictions {
                Predictions::Binary(v) if k == 2 => {
                    probs[0].extend(v.iter().map(|x| 1.0 - x));
                    probs[1].extend_from_slice(v);
                }
                Predictions::Multiclass { probs: p, .. } => {
                    for row in p.chunks(k) {
                        for (ci, x) in row.iter().enumerate() {
                            probs[ci].push(*x);
                        }
                    }
                }
                _ => {
                    for col in &mut probs {
                        col.extend(std::iter::repeat_n(f64::NAN, r.inputs.num_rows()));
                    }
                }
            }
        }
        fields.push(Field::new("prediction", DataType::Utf8, false));
        columns.push(Arc::new(labels.finish()));
        for (class, p) in classes.iter().zip(probs) {
            fields.push(Field::new(
                format!("prob.{class}"),
                DataType::Float64,
                false,
            ));
            columns.push(Arc::new(Float64Array::from(p)));
        }
    }
    // Explanations, when any record of the segment has them.
    if records.iter().any(|r| r.explanations.is_some()) {
        let mut b = arrow_array::builder::StringBuilder::with_capacity(n, n * 256);
        for r in &records {
            match &r.explanations {
                Some(e) => e.iter().for_each(|e| b.append_value(e)),
                None => (0..r.inputs.num_rows()).for_each(|_| b.append_null()),
            }
        }
        fields.push(Field::new("explanation", DataType::Utf8, true));
        columns.push(Arc::new(b.finish()));
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}

/// A thread of its own for the log's CPU work (records to columns, Parquet),
/// at a lower scheduling priority than the threads answering requests, so
/// that on a busy machine the log waits rather than the requests.
struct Converter {
    jobs: std::sync::mpsc::Sender<Box<dyn FnOnce() + Send>>,
}

impl Converter {
    fn start() -> Converter {
        let (jobs, rx) = std::sync::mpsc::channel::<Box<dyn FnOnce() + Send>>();
        let spawned = std::thread::Builder::new()
            .name("kiln-log".into())
            .spawn(move || {
                lower_priority();
                // Ends when the writer drops its sender.
                while let Ok(job) = rx.recv() {
                    job();
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("prediction log: cannot start its converter thread: {e}");
        }
        Converter { jobs }
    }

    /// Runs `f` on the converter thread; None if the thread is gone.
    async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let _ = tx.send(f());
            }))
            .ok()?;
        rx.await.ok()
    }
}

/// Nice 10 for the calling thread (Linux: `setpriority` with who = 0 names
/// the calling thread); elsewhere, or if refused, nothing changes.
#[allow(unsafe_code)]
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority takes plain integers and touches no memory of ours.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 10);
    }
}

async fn flush(project: &Project, metrics: &Metrics, converter: &Converter, key: &Key, b: Buffer) {
    let (deployment, _, role, hour) = key;
    let hour = hour_of(hour * HOUR_US);
    let (model, version) = (b.loaded.model_name.clone(), b.loaded.version.clone());
    let (first_us, last_us) = (b.first_us, b.last_us);
    let (mut chunks, records) = (b.chunks, b.records);
    let written = converter
        .run(move || {
            if !records.is_empty() {
                chunks.push(to_batch(&records)?);
            }
            let Some(first) = chunks.first() else {
                return Ok((0, Vec::new()));
            };
            let schema = first.schema();
            let batch = arrow_select::concat::concat_batches(
                &schema,
                chunks.iter().filter(|c| c.schema() == schema),
            )?;
            Ok::<_, parquet::errors::ParquetError>((batch.num_rows(), parquet_bytes(&batch)?))
        })
        .await;
    let (rows_written, bytes) = match written {
        Some(Ok((0, _))) => return,
        Some(Ok(x)) => x,
        Some(Err(e)) => {
            tracing::warn!("prediction log: cannot write a segment for `{deployment}`: {e}");
            return;
        }
        None => {
            tracing::warn!("prediction log: the converter thread is gone");
            return;
        }
    };
    let result = async {
        let hash = project.objects.put_bytes(bytes).await?;
        project
            .meta
            .add_prediction_segment(&PredictionSegment {
                deployment: deployment.to_string(),
                hour,
                model,
                version,
                role: role.as_str().to_string(),
                object: hash.to_hex(),
                rows: rows_written as i64,
                first_time: first_us / 1000,
                last_time: last_us / 1000,
            })
            .await?;
        Ok::<_, kiln_store::StoreError>(())
    }
    .await;
    match result {
        Ok(()) => {
            metrics.log_written.inc_by(rows_written as u64);
        }
        Err(e) => tracing::warn!("prediction log: cannot store a segment for `{deployment}`: {e}"),
    }
}

fn parquet_bytes(batch: &RecordBatch) -> Result<Vec<u8>, parquet::errors::ParquetError> {
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
        .build();
    let mut out = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut out, batch.schema(), Some(props))?;
    w.write(batch)?;
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
