//! Comparing two versions of a dataset: schema changes, statistic shifts
//! from their profiles, and, given key columns, rows added, removed and changed.

use std::collections::HashMap;
use std::path::Path;

use arrow_array::{ArrayRef, RecordBatch};
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::Serialize;

use crate::profile::{ColumnProfile, Profile};
use crate::schema::TableSchema;
use crate::sketch::hash_bytes;
use crate::{DataError, Result};

/// Examples kept per kind of row change.
pub const EXAMPLES: usize = 5;

#[derive(Clone, Debug, Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum SchemaChange {
    Added {
        column: String,
        ty: String,
    },
    Removed {
        column: String,
        ty: String,
    },
    TypeChanged {
        column: String,
        from: String,
        to: String,
    },
}

/// One statistic of one column in both versions.
#[derive(Clone, Debug, Serialize)]
pub struct StatShift {
    pub column: String,
    pub stat: &'static str,
    pub a: Option<f64>,
    pub b: Option<f64>,
}

/// Row-level differences by key.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RowDiff {
    pub key: Vec<String>,
    pub added: u64,
    pub removed: u64,
    pub changed: u64,
    pub unchanged: u64,
    pub added_examples: Vec<String>,
    pub removed_examples: Vec<String>,
    /// Key and the columns that differ, as `col: a → b`.
    pub changed_examples: Vec<(String, Vec<String>)>,
}

/// Schema changes from `a` to `b`.
pub fn schema_changes(a: &TableSchema, b: &TableSchema) -> Vec<SchemaChange> {
    let mut out = Vec::new();
    for c in &a.columns {
        match b.column(&c.name) {
            None => out.push(SchemaChange::Removed {
                column: c.name.clone(),
                ty: c.ty.to_string(),
            }),
            Some(d) if d.ty != c.ty => out.push(SchemaChange::TypeChanged {
                column: c.name.clone(),
                from: c.ty.to_string(),
                to: d.ty.to_string(),
            }),
            _ => {}
        }
    }
    for c in &b.columns {
        if a.column(&c.name).is_none() {
            out.push(SchemaChange::Added {
                column: c.name.clone(),
                ty: c.ty.to_string(),
            });
        }
    }
    out
}

/// Reads one statistic from a column profile, given the table's row count.
type StatFn = fn(&ColumnProfile, u64) -> Option<f64>;

/// Per-column statistics of both profiles, for columns present in both,
/// keeping only those that changed.
pub fn stat_shifts(a: &Profile, b: &Profile) -> Vec<StatShift> {
    let mut out = Vec::new();
    for ca in &a.columns {
        let Some(cb) = b.column(&ca.name) else {
            continue;
        };
        let stats: [(&'static str, StatFn); 6] = [
            ("null %", |c, rows| {
                (rows > 0).then(|| 100.0 * c.nulls as f64 / rows as f64)
            }),
            ("distinct", |c, _| Some(c.distinct as f64)),
            ("mean", |c, _| c.mean),
            ("std", |c, _| c.std),
            ("min", |c, _| {
                c.min.as_ref().and_then(serde_json::Value::as_f64)
            }),
            ("max", |c, _| {
                c.max.as_ref().and_then(serde_json::Value::as_f64)
            }),
        ];
        for (stat, f) in stats {
            let (va, vb) = (f(ca, a.rows), f(cb, b.rows));
            let same = match (va, vb) {
                (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * x.abs().max(1.0),
                (None, None) => true,
                _ => false,
            };
            if !same {
                out.push(StatShift {
                    column: ca.name.clone(),
                    stat,
                    a: va,
                    b: vb,
                });
            }
        }
    }
    out
}

const FORMAT: FormatOptions<'static> = FormatOptions::new().with_null("∅");

/// Compares rows of two Parquet copies by `key`. Memory holds one hash per
/// row of `a`; changed columns are found by a second look at a few rows.
pub fn row_diff(a: &Path, b: &Path, key: &[String]) -> Result<RowDiff> {
    let key_label = format!("({})", key.join(", "));
    let mut rows_a: HashMap<String, u64> = HashMap::new();
    for_each_row(a, key, &key_label, |k, h, _| {
        if rows_a.insert(k.clone(), h).is_some() {
            return Err(DataError::Key {
                key: key_label.clone(),
                message: format!("key `{k}` appears twice in the first version"),
            });
        }
        Ok(())
    })?;
    let mut diff = RowDiff {
        key: key.to_vec(),
        ..RowDiff::default()
    };
    let mut seen_b = std::collections::HashSet::new();
    let mut changed_keys = Vec::new();
    for_each_row(b, key, &key_label, |k, h, _| {
        if !seen_b.insert(k.clone()) {
            return Err(DataError::Key {
                key: key_label.clone(),
                message: format!("key `{k}` appears twice in the second version"),
            });
        }
        match rows_a.remove(k) {
            Some(ha) if ha == h => diff.unchanged += 1,
            Some(_) => {
                diff.changed += 1;
                if changed_keys.len() < EXAMPLES {
                    changed_keys.push(k.clone());
                }
            }
            None => {
                diff.added += 1;
                if diff.added_examples.len() < EXAMPLES {
                    diff.added_examples.push(k.clone());
                }
            }
        }
        Ok(())
    })?;
    diff.removed = rows_a.len() as u64;
    let mut removed: Vec<String> = rows_a.into_keys().collect();
    removed.sort();
    diff.removed_examples = removed.into_iter().take(EXAMPLES).collect();
    if !changed_keys.is_empty() {
        let wanted: std::collections::HashSet<&String> = changed_keys.iter().collect();
        let mut values_a: HashMap<String, Vec<(String, String)>> = HashMap::new();
        for_each_row(a, key, &key_label, |k, _, vals| {
            if wanted.contains(k) {
                values_a.insert(k.clone(), vals());
            }
            Ok(())
        })?;
        let mut values_b: HashMap<String, Vec<(String, String)>> = HashMap::new();
        for_each_row(b, key, &key_label, |k, _, vals| {
            if wanted.contains(k) {
                values_b.insert(k.clone(), vals());
            }
            Ok(())
        })?;
        for k in changed_keys {
            let (va, vb) = (&values_a[&k], &values_b[&k]);
            let mut cols = Vec::new();
            for (name, x) in va {
                match vb.iter().find(|(n, _)| n == name) {
                    Some((_, y)) if y != x => cols.push(format!("{name}: {x} → {y}")),
                    None => cols.push(format!("{name}: {x} → (column removed)")),
                    _ => {}
                }
            }
            for (name, y) in vb {
                if !va.iter().any(|(n, _)| n == name) {
                    cols.push(format!("{name}: (new column) {y}"));
                }
            }
            diff.changed_examples.push((k, cols));
        }
    }
    Ok(diff)
}

/// Calls `f(key, row_hash, values)` for every row; `values()` formats the row
/// on demand as (column, value) pairs.
fn for_each_row(
    path: &Path,
    key: &[String],
    key_label: &str,
    mut f: impl FnMut(&String, u64, &dyn Fn() -> Vec<(String, String)>) -> Result<()>,
) -> Result<()> {
    let file = std::fs::File::open(path).map_err(DataError::io("open", path))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)?
        .with_batch_size(crate::read::BATCH_ROWS)
        .build()?;
    for batch in reader {
        let batch: RecordBatch = batch?;
        let schema = batch.schema();
        let key_cols: Vec<ArrayRef> = key
            .iter()
            .map(|k| {
                batch
                    .column_by_name(k)
                    .cloned()
                    .ok_or_else(|| DataError::Key {
                        key: key_label.to_string(),
                        message: format!("column `{k}` is missing from a version"),
                    })
            })
            .collect::<Result<_>>()?;
        let key_fmts: Vec<ArrayFormatter> = key_cols
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &FORMAT))
            .collect::<Result<_, _>>()?;
        // Columns are hashed in name order, so reordering columns is no change.
        let mut order: Vec<usize> = (0..batch.num_columns()).collect();
        order.sort_by(|&i, &j| schema.field(i).name().cmp(schema.field(j).name()));
        let fmts: Vec<ArrayFormatter> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &FORMAT))
            .collect::<Result<_, _>>()?;
        let mut buf = String::new();
        for i in 0..batch.num_rows() {
            let k = key_fmts
                .iter()
                .map(|f| f.value(i).to_string())
                .collect::<Vec<_>>()
                .join(", ");
            buf.clear();
            for &c in &order {
                use std::fmt::Write;
                let _ = write!(
                    buf,
                    "{}\u{1f}{}\u{1e}",
                    schema.field(c).name(),
                    fmts[c].value(i)
                );
            }
            let h = hash_bytes(buf.as_bytes());
            let values = || {
                order
                    .iter()
                    .map(|&c| (schema.field(c).name().clone(), fmts[c].value(i).to_string()))
                    .collect()
            };
            f(&k, h, &values)?;
        }
    }
    Ok(())
}
