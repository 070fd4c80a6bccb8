//! MLflow's JSON shapes (its protobuf messages in proto3 JSON, with int64
//! as numbers and floats' non-finite values as strings).

use kiln_store::{Experiment, KV, LoggedModel, Metric, ModelVersion, RegisteredModel, Run};
use serde_json::{Value, json};

use crate::body::float_json;

pub fn kvs(items: &[KV]) -> Value {
    items
        .iter()
        .map(|t| json!({ "key": t.key, "value": t.value }))
        .collect()
}

pub fn metric(m: &Metric) -> Value {
    json!({ "key": m.key, "value": float_json(m.value), "timestamp": m.timestamp, "step": m.step })
}

pub fn experiment(e: &Experiment) -> Value {
    json!({
        "experiment_id": e.id,
        "name": e.name,
        "artifact_location": e.artifact_location,
        "lifecycle_stage": e.lifecycle_stage,
        "last_update_time": e.last_update_time,
        "creation_time": e.creation_time,
        "tags": kvs(&e.tags),
    })
}

pub fn run_info(r: &Run) -> Value {
    let mut info = json!({
        "run_id": r.id,
        "run_uuid": r.id,
        "run_name": r.name,
        "experiment_id": r.experiment_id,
        "user_id": r.user_id,
        "status": r.status,
        "start_time": r.start_time,
        "artifact_uri": r.artifact_uri,
        "lifecycle_stage": r.lifecycle_stage,
    });
    if let Some(end) = r.end_time {
        info["end_time"] = end.into();
    }
    info
}

pub fn run(r: &Run, outputs: &[(String, i64)]) -> Value {
    let inputs: Vec<Value> = r
        .inputs
        .iter()
        .map(|i| {
            let mut d = json!({
                "name": i.name,
                "digest": i.digest,
                "source_type": i.source_type,
                "source": i.source,
            });
            if let Some(s) = &i.schema {
                d["schema"] = s.clone().into();
            }
            if let Some(p) = &i.profile {
                d["profile"] = p.clone().into();
            }
            json!({ "tags": kvs(&i.tags), "dataset": d })
        })
        .collect();
    json!({
        "info": run_info(r),
        "data": {
            "metrics": r.metrics.iter().map(metric).collect::<Vec<_>>(),
            "params": kvs(&r.params),
            "tags": kvs(&r.tags),
        },
        "inputs": { "dataset_inputs": inputs },
        "outputs": {
            "model_outputs": outputs.iter().map(|(m, s)| json!({ "model_id": m, "step": s })).collect::<Vec<_>>(),
        },
    })
}

pub fn logged_model(m: &LoggedModel) -> Value {
    let mut info = json!({
        "model_id": m.id,
        "experiment_id": m.experiment_id,
        "name": m.name,
        "creation_timestamp_ms": m.creation_time,
        "last_updated_timestamp_ms": m.last_updated_time,
        "artifact_uri": m.artifact_location,
        "status": m.status,
        "model_type": m.model_type.clone().unwrap_or_default(),
        "tags": kvs(&m.tags),
    });
    if let Some(r) = &m.source_run_id {
        info["source_run_id"] = r.clone().into();
    }
    if let Some(s) = &m.status_message {
        info["status_message"] = s.clone().into();
    }
    let metrics: Vec<Value> = m
        .metrics
        .iter()
        .map(|x| {
            let mut v = metric(x);
            v["model_id"] = m.id.clone().into();
            if let Some(r) = &m.source_run_id {
                v["run_id"] = r.clone().into();
            }
            v
        })
        .collect();
    json!({ "info": info, "data": { "params": kvs(&m.params), "metrics": metrics } })
}

pub fn model_version(v: &ModelVersion) -> Value {
    let mut out = json!({
        "name": v.name,
        "version": v.version.to_string(),
        "creation_timestamp": v.creation_time,
        "last_updated_timestamp": v.last_updated_time,
        "user_id": v.user_id,
        "current_stage": v.current_stage,
        "description": v.description,
        "source": v.source,
        "status": v.status,
        "run_link": v.run_link.clone().unwrap_or_default(),
        "tags": kvs(&v.tags),
        "aliases": v.aliases,
    });
    if let Some(r) = &v.run_id {
        out["run_id"] = r.clone().into();
    }
    if let Some(m) = &v.model_id {
        out["model_id"] = m.clone().into();
    }
    out
}

pub fn registered_model(m: &RegisteredModel) -> Value {
    json!({
        "name": m.name,
        "creation_timestamp": m.creation_time,
        "last_updated_timestamp": m.last_updated_time,
        "description": m.description,
        "latest_versions": m.latest_versions.iter().map(model_version).collect::<Vec<_>>(),
        "tags": kvs(&m.tags),
        "aliases": m.aliases.iter().map(|(a, v)| json!({ "alias": a, "version": v.to_string() })).collect::<Vec<_>>(),
    })
}

/// A page of runs written straight to JSON, without building a tree of
/// values first: a search answers up to 50,000 runs.
pub struct RunsPage(pub kiln_store::Page<Run>);

impl serde::Serialize for RunsPage {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("runs", &Seq(&self.0.items, RunRef))?;
        if let Some(t) = &self.0.next_page_token {
            m.serialize_entry("next_page_token", t)?;
        }
        m.end()
    }
}

/// A slice serialized through a wrapper of each element.
struct Seq<'a, T, W>(&'a [T], fn(&'a T) -> W);

impl<'a, T, W: serde::Serialize> serde::Serialize for Seq<'a, T, W> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(self.1))
    }
}

struct RunRef<'a>(&'a Run);
struct KvRef<'a>(&'a KV);
struct MetricRef<'a>(&'a Metric);
struct Float(f64);

impl serde::Serialize for Float {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            f if f.is_nan() => s.serialize_str("NaN"),
            f if f == f64::INFINITY => s.serialize_str("Infinity"),
            f if f == f64::NEG_INFINITY => s.serialize_str("-Infinity"),
            f => s.serialize_f64(f),
        }
    }
}

impl serde::Serialize for KvRef<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("key", &self.0.key)?;
        m.serialize_entry("value", &self.0.value)?;
        m.end()
    }
}

impl serde::Serialize for MetricRef<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(4))?;
        m.serialize_entry("key", &self.0.key)?;
        m.serialize_entry("value", &Float(self.0.value))?;
        m.serialize_entry("timestamp", &self.0.timestamp)?;
        m.serialize_entry("step", &self.0.step)?;
        m.end()
    }
}

impl serde::Serialize for RunRef<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let r = self.0;
        let mut m = s.serialize_map(Some(4))?;
        m.serialize_entry("info", &run_info(r))?;
        struct Data<'a>(&'a Run);
        impl serde::Serialize for Data<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeMap;
                let mut m = s.serialize_map(Some(3))?;
                m.serialize_entry("metrics", &Seq(&self.0.metrics, MetricRef))?;
                m.serialize_entry("params", &Seq(&self.0.params, KvRef))?;
                m.serialize_entry("tags", &Seq(&self.0.tags, KvRef))?;
                m.end()
            }
        }
        m.serialize_entry("data", &Data(r))?;
        if r.inputs.is_empty() {
            m.serialize_entry("inputs", &json!({}))?;
        } else {
            m.serialize_entry("inputs", &run(r, &[])["inputs"])?;
        }
        m.serialize_entry("outputs", &json!({}))?;
        m.end()
    }
}
