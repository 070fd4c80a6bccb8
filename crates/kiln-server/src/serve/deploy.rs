//! Deployments: which loaded model versions answer a deployment's requests
//! (weighted A/B, sticky by key), which one mirrors them (shadow), and how a
//! moved alias swaps a new version in without failing a request.

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use kiln_project::{ModelRef, Project};
use kiln_serve::Predictor;

use super::metrics::{DeploymentMetrics, Metrics, VersionMetrics};

/// What a deployment is declared to serve.
#[derive(Clone, Debug)]
pub struct DeploymentSpec {
    pub name: String,
    /// The model answering the rest of the traffic.
    pub model: ModelRef,
    /// Other models and their percentage of requests.
    pub split: Vec<(ModelRef, f64)>,
    /// A model scoring every request without answering it.
    pub shadow: Option<ModelRef>,
    /// An input column whose value in the first row routes the request.
    pub sticky: Option<String>,
    /// The fraction of requests whose predictions are logged.
    pub sample: f64,
}

impl DeploymentSpec {
    /// Every reference the deployment loads: the arms, then the shadow.
    pub fn references(&self) -> impl Iterator<Item = &ModelRef> {
        std::iter::once(&self.model)
            .chain(self.split.iter().map(|(r, _)| r))
            .chain(self.shadow.iter())
    }
}

/// One model version in memory.
pub struct Loaded {
    /// The registered model (or run, or file) it came from.
    pub model_name: String,
    pub version: String,
    /// The reference it was loaded through (`fraud@champion`).
    pub reference: String,
    pub predictor: Predictor,
    pub load_seconds: f64,
    /// The size of the model file.
    pub bytes: usize,
    pub metrics: VersionMetrics,
    /// The training rows `kiln train` kept for explaining the model
    /// (`explain=true` on models that are not trees).
    pub background: Option<Vec<kiln_serve::RecordBatch>>,
    /// What explaining keeps between requests (the flattened trees).
    pub explain_cache: kiln_serve::explain::Cache,
}

/// The versions answering now; replaced whole on a reload.
pub struct Live {
    /// Arms with their cumulative share of traffic, in millionths.
    pub arms: Vec<(Arc<Loaded>, u64)>,
    pub shadow: Option<Arc<Loaded>>,
}

/// Traffic shares are counted in units of 1/SHARES.
const SHARES: u64 = 1_000_000;

impl Live {
    /// Each arm with its percentage of traffic.
    pub fn percents(&self) -> impl Iterator<Item = (&Arc<Loaded>, f64)> {
        let mut before = 0;
        self.arms.iter().map(move |(a, upto)| {
            let pct = (upto - before) as f64 * 100.0 / SHARES as f64;
            before = *upto;
            (a, pct)
        })
    }
}

/// A deployment: its declaration, the versions live now and what the
/// shadow has seen.
pub struct Deployment {
    pub spec: DeploymentSpec,
    /// The name, shared with every log record.
    name: Arc<str>,
    live: RwLock<Arc<Live>>,
    counter: AtomicU64,
    pub shadow: Mutex<ShadowStats>,
    pub metrics: DeploymentMetrics,
    /// References whose move to a version failed to load, and that version.
    failed: Mutex<std::collections::HashMap<String, i64>>,
}

impl Deployment {
    pub fn new(
        spec: DeploymentSpec,
        arms: Vec<Arc<Loaded>>,
        shadow: Option<Arc<Loaded>>,
        metrics: DeploymentMetrics,
    ) -> Self {
        let live = Live {
            arms: weigh(&spec, arms),
            shadow,
        };
        Deployment {
            name: spec.name.as_str().into(),
            spec,
            live: RwLock::new(Arc::new(live)),
            counter: AtomicU64::new(0),
            shadow: Mutex::new(ShadowStats::default()),
            metrics,
            failed: Mutex::default(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name, shared.
    pub fn name_arc(&self) -> Arc<str> {
        self.name.clone()
    }

    /// The versions live now.
    pub fn live(&self) -> Arc<Live> {
        self.live.read().expect("live lock").clone()
    }

    /// Replaces the live versions; requests already routed finish on the
    /// versions they were given.
    pub fn swap(&self, arms: Vec<Arc<Loaded>>, shadow: Option<Arc<Loaded>>) {
        let live = Live {
            arms: weigh(&self.spec, arms),
            shadow,
        };
        *self.live.write().expect("live lock") = Arc::new(live);
    }

    /// The arm that answers a request: the one serving `version` when the
    /// request names one (v2's `/versions/{v}`); else by the key's hash
    /// when there is a key (the same key always meets the same arm while
    /// the split holds), else by a low-discrepancy sequence that keeps the
    /// shares exact. None when no live arm serves `version`.
    pub fn route(
        &self,
        live: &Live,
        key: Option<&str>,
        version: Option<&str>,
    ) -> Option<Arc<Loaded>> {
        if let Some(v) = version {
            return live
                .arms
                .iter()
                .find(|(a, _)| a.version == v)
                .map(|(a, _)| a.clone());
        }
        Some(self.pick(live, key))
    }

    fn pick(&self, live: &Live, key: Option<&str>) -> Arc<Loaded> {
        if live.arms.len() == 1 {
            return live.arms[0].0.clone();
        }
        let point = match key {
            Some(k) => {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                k.hash(&mut h);
                h.finish() % SHARES
            }
            None => {
                // Weyl sequence on the golden ratio: evenly spread points.
                // The top bits of n·φ·2^64 are the fraction {n·φ}.
                let n = self.counter.fetch_add(1, Ordering::Relaxed);
                let frac =
                    (n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as f64 / (1u64 << 53) as f64;
                (frac * SHARES as f64) as u64
            }
        };
        live.arms
            .iter()
            .find(|(_, upto)| point < *upto)
            .unwrap_or(live.arms.last().expect("an arm"))
            .0
            .clone()
    }
}

/// Cumulative shares: the splits take their percentages, the main model
/// (first) the rest.
fn weigh(spec: &DeploymentSpec, arms: Vec<Arc<Loaded>>) -> Vec<(Arc<Loaded>, u64)> {
    let split: f64 = spec.split.iter().map(|(_, p)| p).sum();
    let mut shares = vec![100.0 - split];
    shares.extend(spec.split.iter().map(|(_, p)| *p));
    let mut upto = 0u64;
    arms.into_iter()
        .zip(shares)
        .map(|(a, pct)| {
            upto += (pct / 100.0 * SHARES as f64).round() as u64;
            (a, upto.min(SHARES))
        })
        .collect()
}

/// How the shadow compares with the answering model, on requests both scored.
#[derive(Default)]
pub struct ShadowStats {
    pub compared_rows: u64,
    /// Rows where both gave the same class (classifiers) or values within
    /// 1e-6 relative (regression).
    pub agreeing_rows: u64,
    pub abs_diff_sum: f64,
    pub errors: u64,
    /// The most recent latencies (ms), for percentiles.
    pub primary_ms: Ring,
    pub shadow_ms: Ring,
}

/// A fixed window of recent values.
pub struct Ring {
    values: Vec<f64>,
    next: usize,
}

impl Default for Ring {
    fn default() -> Self {
        Ring {
            values: Vec::with_capacity(RING),
            next: 0,
        }
    }
}

const RING: usize = 2048;

impl Ring {
    pub fn push(&mut self, v: f64) {
        if self.values.len() < RING {
            self.values.push(v);
        } else {
            self.values[self.next] = v;
        }
        self.next = (self.next + 1) % RING;
    }

    /// The `q` quantile (0..=1) of the window, None when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.values.is_empty() {
            return None;
        }
        let mut v = self.values.clone();
        v.sort_by(f64::total_cmp);
        let i = ((v.len() - 1) as f64 * q).round() as usize;
        Some(v[i])
    }
}

/// Loads one reference: fetches the bytes, compiles the model off the
/// async threads, registers its metrics.
pub async fn load(
    project: &Project,
    metrics: &Metrics,
    deployment: &str,
    reference: &ModelRef,
) -> anyhow::Result<Arc<Loaded>> {
    let t = Instant::now();
    let fetched = project.fetch_model(reference).await?;
    let origin = reference.to_string();
    let bytes = fetched.bytes.len();
    let (format, model_bytes) = (fetched.format.clone(), fetched.bytes);
    let predictor =
        tokio::task::spawn_blocking(move || Predictor::load(&format, &model_bytes, &origin))
            .await??;
    // Missing or unreadable, a background only limits what can be explained.
    let background = if fetched.format == "kiln" {
        project
            .served_background(&fetched.model_name, &fetched.version)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!("{reference}: its background sample cannot be read: {e}");
                None
            })
    } else {
        None
    };
    let load_seconds = t.elapsed().as_secs_f64();
    let vm = metrics.version(deployment, &fetched.model_name, &fetched.version);
    vm.load_seconds.set(load_seconds);
    Ok(Arc::new(Loaded {
        model_name: fetched.model_name,
        version: fetched.version,
        reference: reference.to_string(),
        predictor,
        load_seconds,
        bytes,
        metrics: vm,
        background,
        explain_cache: Default::default(),
    }))
}

/// Loads every reference of a deployment.
pub async fn load_deployment(
    project: &Project,
    metrics: &Metrics,
    spec: DeploymentSpec,
) -> anyhow::Result<Deployment> {
    let mut arms = Vec::new();
    for r in std::iter::once(&spec.model).chain(spec.split.iter().map(|(r, _)| r)) {
        arms.push(load(project, metrics, &spec.name, r).await?);
    }
    let shadow = match &spec.shadow {
        Some(r) => Some(load(project, metrics, &spec.name, r).await?),
        None => None,
    };
    let dm = metrics.deployment(&spec.name);
    Ok(Deployment::new(spec, arms, shadow, dm))
}

/// Checks every alias a deployment follows and swaps in the versions that
/// moved: the new version is loaded beside the old one, then swapped in
/// whole. Returns what moved, as `(reference, from, to)`.
pub async fn reload(
    project: &Project,
    metrics: &Metrics,
    d: &Deployment,
) -> anyhow::Result<Vec<(String, String, String)>> {
    let live = d.live();
    let mut moved = Vec::new();
    let mut arms: Vec<Arc<Loaded>> = live.arms.iter().map(|(a, _)| a.clone()).collect();
    let mut shadow = live.shadow.clone();
    let refs: Vec<&ModelRef> = std::iter::once(&d.spec.model)
        .chain(d.spec.split.iter().map(|(r, _)| r))
        .collect();
    for (i, r) in refs.into_iter().enumerate() {
        if let Some(new) = moved_version(project, metrics, d, r, &arms[i]).await? {
            moved.push((r.to_string(), arms[i].version.clone(), new.version.clone()));
            arms[i] = new;
        }
    }
    if let (Some(r), Some(old)) = (&d.spec.shadow, &live.shadow)
        && let Some(new) = moved_version(project, metrics, d, r, old).await?
    {
        moved.push((r.to_string(), old.version.clone(), new.version.clone()));
        shadow = Some(new);
    }
    if !moved.is_empty() {
        d.swap(arms, shadow);
        metrics.reloads.inc_by(moved.len() as u64);
    }
    Ok(moved)
}

async fn moved_version(
    project: &Project,
    metrics: &Metrics,
    d: &Deployment,
    r: &ModelRef,
    current: &Loaded,
) -> anyhow::Result<Option<Arc<Loaded>>> {
    if !matches!(r, ModelRef::Alias { .. }) {
        return Ok(None);
    }
    let Some(now) = project.current_version(r).await? else {
        return Ok(None);
    };
    let key = r.to_string();
    if now.to_string() == current.version
        || d.failed.lock().expect("failed loads").get(&key) == Some(&now)
    {
        return Ok(None);
    }
    match load(project, metrics, d.name(), r).await {
        Ok(l) => Ok(Some(l)),
        Err(e) => {
            // Tried once per move: the next move (or a restart) tries again.
            d.failed.lock().expect("failed loads").insert(key, now);
            Err(e.context(format!("{r} moved to v{now}, which cannot be loaded")))
        }
    }
}
