//! Tables to compare, read one column at a time.
//!
//! A Parquet file is read column by column (a projection), so comparing two
//! tables of millions of rows holds only the columns being compared in
//! memory, never a whole table. Other formats (CSV, JSON lines) are read once
//! through kiln-data into Arrow batches.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use kiln_data::read::{ReadOptions, open};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rayon::prelude::*;

use crate::drift::{ColumnDrift, DriftReport, compare, threshold};
use crate::profile::{ColumnProfile, Kind, Values};

/// Why a table could not be compared.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// The file could not be read as a table.
    #[error("cannot read `{path}`: {message}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The two tables share no column drift can be measured on.
    #[error(
        "`{reference}` and `{current}` share no numeric or categorical column to compare; check that both are the same kind of table (the same column names)"
    )]
    NothingToCompare {
        /// The reference's label.
        reference: String,
        /// The current table's label.
        current: String,
    },
}

/// A table whose columns can be read one at a time.
pub struct Table {
    label: String,
    schema: SchemaRef,
    rows: u64,
    data: Data,
}

enum Data {
    Parquet(PathBuf),
    Batches(Vec<RecordBatch>),
}

impl Table {
    /// Opens a file (Parquet, CSV or JSON lines; the format by extension or
    /// content). `label` names it in reports.
    pub fn open(path: &Path, label: &str) -> Result<Table, TableError> {
        let err = |message: String| TableError::Read {
            path: path.into(),
            message,
        };
        let parquet = File::open(path)
            .ok()
            .and_then(|f| ParquetRecordBatchReaderBuilder::try_new(f).ok());
        if let Some(b) = parquet {
            return Ok(Table {
                label: label.into(),
                schema: b.schema().clone(),
                rows: b.metadata().file_metadata().num_rows().max(0) as u64,
                data: Data::Parquet(path.into()),
            });
        }
        let reader = open(path, &ReadOptions::default(), false).map_err(|e| err(e.to_string()))?;
        let schema = reader.schema.clone();
        let batches = reader
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| err(e.to_string()))?;
        Ok(Table::from_batches(label, schema, batches))
    }

    /// A table of batches in memory (a window of logged predictions).
    pub fn from_batches(label: &str, schema: SchemaRef, batches: Vec<RecordBatch>) -> Table {
        Table {
            label: label.into(),
            rows: batches.iter().map(|b| b.num_rows() as u64).sum(),
            schema,
            data: Data::Batches(batches),
        }
    }

    /// Rows.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Column names and how each is compared (`None`: not compared).
    pub fn columns(&self) -> Vec<(String, Option<Kind>)> {
        self.schema
            .fields()
            .iter()
            .map(|f| (f.name().clone(), Kind::of(f.data_type())))
            .collect()
    }

    /// The values of column `index`, as `kind`.
    pub fn values(&self, index: usize, kind: Kind) -> Result<Values, TableError> {
        let mut out = Values::new(kind);
        match &self.data {
            Data::Batches(batches) => {
                for b in batches {
                    out.push(b.column(index).as_ref())
                        .map_err(|message| self.read_error(message))?;
                }
            }
            Data::Parquet(path) => {
                let file = File::open(path).map_err(|e| self.read_error(e.to_string()))?;
                let b = ParquetRecordBatchReaderBuilder::try_new(file)
                    .map_err(|e| self.read_error(e.to_string()))?;
                let mask = ProjectionMask::roots(b.parquet_schema(), [index]);
                let reader = b
                    .with_projection(mask)
                    .with_batch_size(65_536)
                    .build()
                    .map_err(|e| self.read_error(e.to_string()))?;
                for batch in reader {
                    let batch = batch.map_err(|e| self.read_error(e.to_string()))?;
                    out.push(batch.column(0).as_ref())
                        .map_err(|message| self.read_error(message))?;
                }
            }
        }
        Ok(out)
    }

    /// The profile of every comparable column (a reference profile: numbers
    /// thinned to `limit` quantile points, `None` to keep every value).
    pub fn profile(&self, limit: Option<usize>) -> Result<Vec<ColumnProfile>, TableError> {
        let cols: Vec<(usize, String, Kind)> = self
            .columns()
            .into_iter()
            .enumerate()
            .filter_map(|(i, (n, k))| k.map(|k| (i, n, k)))
            .collect();
        cols.par_iter()
            .map(|(i, name, kind)| {
                Ok(ColumnProfile::from_values(
                    name,
                    self.values(*i, *kind)?,
                    limit,
                ))
            })
            .collect()
    }

    fn read_error(&self, message: String) -> TableError {
        TableError::Read {
            path: match &self.data {
                Data::Parquet(p) => p.clone(),
                Data::Batches(_) => PathBuf::from(&self.label),
            },
            message,
        }
    }
}

/// Compares every column the two tables share, exactly (all values on both
/// sides), a column pair at a time on each core. Columns are matched by name;
/// `alpha` is the family-wise false-alarm rate (see [`crate::drift`]).
pub fn compare_tables(
    reference: &Table,
    current: &Table,
    alpha: f64,
) -> Result<DriftReport, TableError> {
    let cur_cols = current.columns();
    let mut pairs = Vec::new();
    let mut missing = Vec::new();
    let mut skipped = Vec::new();
    for (i, (name, kind)) in reference.columns().into_iter().enumerate() {
        let Some(j) = cur_cols.iter().position(|(n, _)| *n == name) else {
            missing.push(name);
            continue;
        };
        match (kind, cur_cols[j].1) {
            (Some(rk), Some(ck)) => pairs.push((name, i, rk, j, ck)),
            (None, _) | (_, None) => skipped.push((
                name,
                "dates, times and binary columns are not compared".to_string(),
            )),
        }
    }
    if pairs.is_empty() {
        return Err(TableError::NothingToCompare {
            reference: reference.label.clone(),
            current: current.label.clone(),
        });
    }
    let t = threshold(alpha, pairs.len());
    let columns = pairs
        .par_iter()
        .map(|(name, i, rk, j, ck)| -> Result<ColumnDrift, TableError> {
            // Both sides at once: twice the tasks, so the cores finish
            // together instead of one waiting on the last column.
            let (r, c) = rayon::join(
                || {
                    Ok(ColumnProfile::from_values(
                        name,
                        reference.values(*i, *rk)?,
                        None,
                    ))
                },
                || {
                    Ok(ColumnProfile::from_values(
                        name,
                        current.values(*j, *ck)?,
                        None,
                    ))
                },
            );
            Ok(compare(&r?, &c?, t))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut report = DriftReport::new(alpha, columns);
    report.missing_columns = missing;
    report.new_columns = cur_cols
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| !reference.schema.fields().iter().any(|f| f.name() == n))
        .collect();
    report.skipped = skipped;
    Ok(report)
}
