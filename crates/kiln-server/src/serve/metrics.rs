//! `/metrics` in Prometheus' (OpenMetrics) exposition format: requests,
//! errors and latency per deployment and model version, rows scored, model
//! load time, requests in flight, reloads, prediction-log drops, and the
//! process's CPU time and memory.
//!
//! Each loaded version holds its own metric handles ([`VersionMetrics`]), so
//! a request updates atomics without a label lookup.

use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// Latency buckets, in seconds: 50 µs to about 3 s.
fn latency_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.000_05, 2.0, 17,
    ))
}

/// Every metric the model server exports.
pub struct Metrics {
    registry: Mutex<Registry>,
    requests: Family<Labels, Counter>,
    latency: Family<Labels, Histogram, fn() -> Histogram>,
    rows: Family<Labels, Counter>,
    load_seconds: Family<Labels, Gauge<f64, AtomicU64>>,
    in_flight: Family<Labels, Gauge>,
    errors: Family<Labels, Counter>,
    pub reloads: Counter,
    pub log_dropped: Counter,
    pub log_written: Counter,
    shadow_rows: Family<Labels, Counter>,
    shadow_agreeing: Family<Labels, Counter>,
    /// Error answers by deployment alone (not exported: what the sampler
    /// records for monitors).
    deployment_errors: Family<Labels, Counter>,
}

/// The handles one deployment updates, whichever version answers.
#[derive(Clone, Default)]
pub struct DeploymentMetrics {
    /// Requests being scored now.
    pub in_flight: Gauge,
    /// Rows a shadow model scored, and those where it agreed.
    pub shadow_rows: Counter,
    pub shadow_agreeing: Counter,
    /// Requests answered with predictions (not exported: the sampler reads it).
    pub answered: Counter,
}

/// The handles one loaded model version updates.
pub struct VersionMetrics {
    pub ok: Counter,
    pub client_errors: Counter,
    pub server_errors: Counter,
    pub latency: Histogram,
    pub rows: Counter,
    pub load_seconds: Gauge<f64, AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let m = Metrics {
            registry: Mutex::new(Registry::default()),
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            rows: Family::default(),
            load_seconds: Family::default(),
            in_flight: Family::default(),
            errors: Family::default(),
            reloads: Counter::default(),
            log_dropped: Counter::default(),
            log_written: Counter::default(),
            shadow_rows: Family::default(),
            shadow_agreeing: Family::default(),
            deployment_errors: Family::default(),
        };
        {
            let mut r = m.registry.lock().expect("registry");
            r.register(
                "kiln_requests",
                "Prediction requests by deployment, model version and outcome (ok, client_error, server_error)",
                m.requests.clone(),
            );
            r.register(
                "kiln_request_duration_seconds",
                "Time to decode, score and answer a prediction request",
                m.latency.clone(),
            );
            r.register("kiln_prediction_rows", "Rows scored", m.rows.clone());
            r.register(
                "kiln_model_load_seconds",
                "Time to fetch and load a model version",
                m.load_seconds.clone(),
            );
            r.register(
                "kiln_request_errors",
                "Prediction requests answered with an error, by deployment and HTTP status",
                m.errors.clone(),
            );
            r.register(
                "kiln_requests_in_flight",
                "Prediction requests being answered now",
                m.in_flight.clone(),
            );
            r.register(
                "kiln_model_reloads",
                "Model versions swapped in because an alias moved",
                m.reloads.clone(),
            );
            r.register(
                "kiln_prediction_log_dropped",
                "Prediction log records dropped because the log buffer was full",
                m.log_dropped.clone(),
            );
            r.register(
                "kiln_prediction_log_rows",
                "Prediction log rows written to segments",
                m.log_written.clone(),
            );
            r.register(
                "kiln_shadow_rows",
                "Rows scored by a shadow model",
                m.shadow_rows.clone(),
            );
            r.register(
                "kiln_shadow_agreeing_rows",
                "Rows where the shadow model agreed with the answering model",
                m.shadow_agreeing.clone(),
            );
            r.register_collector(Box::new(ProcessCollector));
        }
        m
    }

    /// The handles for one deployment's model version.
    pub fn version(&self, deployment: &str, model: &str, version: &str) -> VersionMetrics {
        let base: Labels = vec![
            ("deployment", deployment.to_string()),
            ("model", model.to_string()),
            ("version", version.to_string()),
        ];
        let with = |outcome: &str| {
            let mut l = base.clone();
            l.push(("outcome", outcome.to_string()));
            self.requests.get_or_create(&l).clone()
        };
        VersionMetrics {
            ok: with("ok"),
            client_errors: with("client_error"),
            server_errors: with("server_error"),
            latency: self.latency.get_or_create(&base).clone(),
            rows: self.rows.get_or_create(&base).clone(),
            load_seconds: self.load_seconds.get_or_create(&base).clone(),
        }
    }

    /// Error answers of one deployment so far.
    pub fn deployment_errors(&self, deployment: &str) -> u64 {
        self.deployment_errors
            .get_or_create(&vec![("deployment", deployment.to_string())])
            .get()
    }

    /// Counts an error answer (`deployment` empty when none was named).
    pub fn error(&self, deployment: &str, status: u16) {
        if !deployment.is_empty() {
            self.deployment_errors
                .get_or_create(&vec![("deployment", deployment.to_string())])
                .inc();
        }
        self.errors
            .get_or_create(&vec![
                ("deployment", deployment.to_string()),
                ("status", status.to_string()),
            ])
            .inc();
    }

    /// The handles one deployment updates.
    pub fn deployment(&self, deployment: &str) -> DeploymentMetrics {
        let l: Labels = vec![("deployment", deployment.to_string())];
        DeploymentMetrics {
            in_flight: self.in_flight.get_or_create(&l).clone(),
            shadow_rows: self.shadow_rows.get_or_create(&l).clone(),
            shadow_agreeing: self.shadow_agreeing.get_or_create(&l).clone(),
            answered: Counter::default(),
        }
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let r = self.registry.lock().expect("registry");
        prometheus_client::encoding::text::encode(&mut out, &r).expect("writing to a String");
        out
    }
}

/// CPU time and resident memory of this process, read at each scrape.
#[derive(Debug)]
struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some(cpu) = process_cpu_seconds() {
            let c = ConstCounter::new(cpu);
            let e = encoder.encode_descriptor(
                "process_cpu_seconds",
                "User and system CPU time spent by this process",
                None,
                c.metric_type(),
            )?;
            c.encode(e)?;
        }
        if let Some(rss) = process_resident_bytes() {
            let g = ConstGauge::new(rss as i64);
            let e = encoder.encode_descriptor(
                "process_resident_memory_bytes",
                "Resident memory of this process",
                None,
                g.metric_type(),
            )?;
            g.encode(e)?;
        }
        Ok(())
    }
}

/// utime + stime from /proc/self/stat (Linux; clock ticks at 100 Hz).
pub fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// VmRSS from /proc/self/status (Linux).
pub fn process_resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
