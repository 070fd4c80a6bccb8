//! MLflow's clients send GET parameters in the query string and everything
//! else as a JSON body; [`Params`] merges both into one JSON object and reads
//! fields leniently, the way protobuf's JSON mapping does (numbers may come
//! as strings, floats as `"NaN"` or `"Infinity"`).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde_json::{Map, Value};

use crate::error::{ApiError, MlflowError};

/// The request's parameters: query string, then JSON body on top.
#[derive(Debug, Default)]
pub struct Params(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for Params {
    type Rejection = MlflowError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let mut map = Map::new();
        if let Some(q) = req.uri().query() {
            for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
                let k = k.into_owned();
                let v = Value::String(v.into_owned());
                match map.get_mut(&k) {
                    Some(Value::Array(items)) => items.push(v),
                    Some(prev) => {
                        let first = prev.take();
                        *prev = Value::Array(vec![first, v]);
                    }
                    None => {
                        map.insert(k, v);
                    }
                }
            }
        }
        let body = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::invalid("body", e.to_string()))?;
        if !body.iter().all(u8::is_ascii_whitespace) {
            match serde_json::from_slice::<Value>(&body) {
                Ok(Value::Object(o)) => map.extend(o),
                Ok(_) => return Err(ApiError::invalid("body", "expected a JSON object").into()),
                Err(e) => {
                    return Err(ApiError::invalid("body", format!("malformed JSON: {e}")).into());
                }
            }
        }
        Ok(Self(map))
    }
}

impl Params {
    pub fn get(&self, field: &str) -> Option<&Value> {
        self.0.get(field).filter(|v| !v.is_null())
    }

    /// A string field, or `None` when absent.
    pub fn opt_str(&self, field: &str) -> Result<Option<String>, ApiError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(Value::Bool(b)) => Ok(Some(b.to_string())),
            Some(Value::Array(a)) if a.len() == 1 => match &a[0] {
                Value::String(s) => Ok(Some(s.clone())),
                _ => Err(ApiError::invalid(field, "expected a string")),
            },
            Some(_) => Err(ApiError::invalid(field, "expected a string")),
        }
    }

    pub fn str(&self, field: &str) -> Result<String, ApiError> {
        self.opt_str(field)?.ok_or_else(|| missing(field))
    }

    /// The first of several names a field goes by (e.g. `run_id`, `run_uuid`).
    pub fn str_any(&self, fields: &[&str]) -> Result<String, ApiError> {
        for f in fields {
            if let Some(s) = self.opt_str(f)?.filter(|s| !s.is_empty()) {
                return Ok(s);
            }
        }
        Err(missing(fields[0]))
    }

    pub fn opt_i64(&self, field: &str) -> Result<Option<i64>, ApiError> {
        match self.get(field) {
            None => Ok(None),
            Some(v) => int(v)
                .map(Some)
                .ok_or_else(|| ApiError::invalid(field, format!("expected an integer, got {v}"))),
        }
    }

    pub fn opt_bool(&self, field: &str) -> Result<Option<bool>, ApiError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) if s == "true" || s == "false" => Ok(Some(s == "true")),
            Some(v) => Err(ApiError::invalid(
                field,
                format!("expected true or false, got {v}"),
            )),
        }
    }

    /// A list of strings (a repeated query parameter, or a JSON array).
    pub fn strings(&self, field: &str) -> Result<Vec<String>, ApiError> {
        match self.get(field) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    Value::Number(n) => Ok(n.to_string()),
                    _ => Err(ApiError::invalid(field, "expected a list of strings")),
                })
                .collect(),
            Some(Value::String(s)) => Ok(vec![s.clone()]),
            Some(_) => Err(ApiError::invalid(field, "expected a list of strings")),
        }
    }

    /// A list of objects (`tags`, `metrics`, …).
    pub fn objects(&self, field: &str) -> Result<Vec<Map<String, Value>>, ApiError> {
        match self.get(field) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::Object(o) => Ok(o.clone()),
                    _ => Err(ApiError::invalid(field, "expected a list of objects")),
                })
                .collect(),
            Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
                Ok(Value::Array(items)) => items
                    .into_iter()
                    .map(|v| match v {
                        Value::Object(o) => Ok(o),
                        _ => Err(ApiError::invalid(field, "expected a list of objects")),
                    })
                    .collect(),
                _ => Err(ApiError::invalid(field, "expected a list of objects")),
            },
            Some(_) => Err(ApiError::invalid(field, "expected a list of objects")),
        }
    }
}

fn missing(field: &str) -> ApiError {
    ApiError::invalid(
        field,
        format!("Missing value for required parameter '{field}'."),
    )
}

/// An integer from a JSON number or a numeric string.
pub fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A float from a JSON number or protobuf's `"NaN"`, `"Infinity"`, `"-Infinity"`.
pub fn float(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => match s.as_str() {
            "NaN" | "nan" => Some(f64::NAN),
            "Infinity" | "inf" => Some(f64::INFINITY),
            "-Infinity" | "-inf" => Some(f64::NEG_INFINITY),
            other => other.trim().parse().ok(),
        },
        _ => None,
    }
}

/// A float as protobuf's JSON mapping writes it.
pub fn float_json(f: f64) -> Value {
    if f.is_nan() {
        Value::String("NaN".into())
    } else if f == f64::INFINITY {
        Value::String("Infinity".into())
    } else if f == f64::NEG_INFINITY {
        Value::String("-Infinity".into())
    } else {
        serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
    }
}

/// A required string inside one object of a list.
pub fn obj_str(o: &Map<String, Value>, list: &str, field: &str) -> Result<String, ApiError> {
    match o.get(field) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        _ => Err(ApiError::invalid(
            &format!("{list}.{field}"),
            format!("Missing value for required parameter '{list}.{field}'."),
        )),
    }
}
