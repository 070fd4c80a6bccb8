//! Reading a file as a stream of Arrow record batches with canonical types.
//!
//! CSV types are inferred from the first 10,000 records, which is fast; if
//! a later value does not fit (an integer column with a `3.5` on row
//! 2,000,000), the caller re-opens with `full_inference` and types are
//! inferred from the whole file. JSON-lines types always come from the whole
//! file (see `open_jsonl`).

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow_array::RecordBatch;
use arrow_schema::{ArrowError, DataType, Schema, SchemaRef};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use regex::Regex;

use crate::format::{Detected, Format};
use crate::schema::canonical_schema;
use crate::{DataError, Result};

/// Rows per record batch.
pub const BATCH_ROWS: usize = 65_536;
/// Records read to infer CSV and JSON types on the fast path.
pub const INFER_ROWS: usize = 10_000;

/// How to read a file; everything is guessed when left out.
#[derive(Clone, Debug)]
pub struct ReadOptions {
    pub format: Option<Format>,
    pub delimiter: Option<u8>,
    /// Whether a CSV file starts with a header line (default true).
    pub header: bool,
}

impl Default for ReadOptions {
    fn default() -> Self {
        Self {
            format: None,
            delimiter: None,
            header: true,
        }
    }
}

/// An open table: its canonical schema and a stream of batches in that schema.
pub struct TableReader {
    pub schema: SchemaRef,
    pub detected: Detected,
    batches: Box<dyn Iterator<Item = Result<RecordBatch>> + Send>,
    /// Bytes of the file consumed so far, for progress.
    pub bytes_read: Arc<AtomicU64>,
}

impl Iterator for TableReader {
    type Item = Result<RecordBatch>;
    fn next(&mut self) -> Option<Self::Item> {
        self.batches.next()
    }
}

/// Opens `path` for reading as a table.
pub fn open(path: &Path, opts: &ReadOptions, full_inference: bool) -> Result<TableReader> {
    let detected = crate::format::detect(path, opts.format, opts.delimiter)?;
    let bytes_read = Arc::new(AtomicU64::new(0));
    let (schema, batches) = match detected.format {
        Format::Csv { delimiter } => open_csv(
            path,
            delimiter,
            detected.gzip,
            opts.header,
            &bytes_read,
            full_inference,
        )?,
        Format::JsonLines => open_jsonl(path, detected.gzip, &bytes_read, full_inference)?,
        Format::Parquet => open_parquet(path, &bytes_read)?,
    };
    Ok(TableReader {
        schema,
        detected,
        batches,
        bytes_read,
    })
}

type Batches = Box<dyn Iterator<Item = Result<RecordBatch>> + Send>;

/// Opens several files of one format as one table, in the order given
/// (partitions of a folder). They must have the same column names in the
/// same order; a column's types are unified (integer and float make float,
/// other mixes make string). Files are opened one at a time.
pub fn open_many(
    paths: &[std::path::PathBuf],
    opts: &ReadOptions,
    full_inference: bool,
) -> Result<TableReader> {
    let Some(first) = paths.first() else {
        return Err(DataError::Unreadable {
            path: PathBuf::new(),
            format: "table".into(),
            message: "no files".into(),
        });
    };
    if paths.len() == 1 {
        return open(first, opts, full_inference);
    }
    let head = open(first, opts, full_inference)?;
    let detected = head.detected;
    let names: Vec<String> = head
        .schema
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let mut types: Vec<DataType> = head
        .schema
        .fields()
        .iter()
        .map(|f| f.data_type().clone())
        .collect();
    drop(head);
    for p in &paths[1..] {
        let r = open(p, opts, full_inference)?;
        let these: Vec<&String> = r.schema.fields().iter().map(|f| f.name()).collect();
        if these.len() != names.len() || these.iter().zip(&names).any(|(a, b)| *a != b) {
            return Err(DataError::Mismatch {
                path: p.clone(),
                message: format!(
                    "its columns ({}) differ from those of `{}` ({})",
                    these
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    first.display(),
                    names.join(", ")
                ),
            });
        }
        for (t, f) in types.iter_mut().zip(r.schema.fields()) {
            *t = unify(t, f.data_type());
        }
    }
    let schema: SchemaRef = Arc::new(Schema::new(
        names
            .iter()
            .zip(&types)
            .map(|(n, t)| arrow_schema::Field::new(n, t.clone(), true))
            .collect::<Vec<_>>(),
    ));
    let bytes_read = Arc::new(AtomicU64::new(0));
    let (counter, target, opts) = (bytes_read.clone(), schema.clone(), opts.clone());
    let mut queue: std::collections::VecDeque<PathBuf> = paths.iter().cloned().collect();
    let mut current: Option<TableReader> = None;
    let mut base = 0u64;
    let batches = std::iter::from_fn(move || {
        loop {
            if current.is_none() {
                let p = queue.pop_front()?;
                match open(&p, &opts, full_inference) {
                    Ok(r) => current = Some(r),
                    Err(e) => return Some(Err(e)),
                }
            }
            let r = current.as_mut().expect("set above");
            match r.next() {
                Some(b) => {
                    counter.store(
                        base + r.bytes_read.load(Ordering::Relaxed),
                        Ordering::Relaxed,
                    );
                    return Some(b.and_then(|b| cast_batch(&b, &target)));
                }
                None => {
                    base += r.bytes_read.load(Ordering::Relaxed);
                    current = None;
                }
            }
        }
    });
    Ok(TableReader {
        schema,
        detected,
        batches: Box::new(batches),
        bytes_read,
    })
}

/// The type two files' columns share.
fn unify(a: &DataType, b: &DataType) -> DataType {
    match (a, b) {
        (a, b) if a == b => a.clone(),
        (DataType::Int64, DataType::Float64) | (DataType::Float64, DataType::Int64) => {
            DataType::Float64
        }
        _ => DataType::Utf8,
    }
}

/// Counts bytes read from the underlying file (before decompression).
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

fn raw_reader(
    path: &Path,
    gzip: bool,
    count: Option<&Arc<AtomicU64>>,
) -> Result<Box<dyn Read + Send>> {
    let file = File::open(path).map_err(DataError::io("open", path))?;
    let counted: Box<dyn Read + Send> = match count {
        Some(c) => Box::new(Counting {
            inner: file,
            count: c.clone(),
        }),
        None => Box::new(file),
    };
    Ok(if gzip {
        Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(
            1 << 20,
            counted,
        )))
    } else {
        counted
    })
}

fn csv_format(delimiter: u8, header: bool) -> arrow_csv::reader::Format {
    arrow_csv::reader::Format::default()
        .with_header(header)
        .with_delimiter(delimiter)
}

fn open_csv(
    path: &Path,
    delimiter: u8,
    gzip: bool,
    header: bool,
    count: &Arc<AtomicU64>,
    full: bool,
) -> Result<(SchemaRef, Batches)> {
    let format = csv_format(delimiter, header);
    let infer_from = raw_reader(path, gzip, None)?;
    let (inferred, _) = format
        .infer_schema(
            BufReader::with_capacity(1 << 20, infer_from),
            if full { None } else { Some(INFER_ROWS) },
        )
        .map_err(|e| map_csv_error(path, None, e))?;
    if inferred.fields().is_empty() {
        return Err(DataError::Malformed {
            path: path.into(),
            line: 1,
            column: None,
            message: "the file is empty".into(),
            hint: "a CSV file needs a header line naming its columns".into(),
        });
    }
    check_header(path, &inferred)?;
    let schema = canonical(path, &inferred)?;
    let reader = arrow_csv::ReaderBuilder::new(schema.clone())
        .with_format(format)
        .with_batch_size(BATCH_ROWS)
        .build(BufReader::with_capacity(
            1 << 20,
            raw_reader(path, gzip, Some(count))?,
        ))
        .map_err(|e| map_csv_error(path, None, e))?;
    let path: PathBuf = path.into();
    let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let batches = reader.map(move |r| r.map_err(|e| map_csv_error(&path, Some(&names), e)));
    Ok((schema, Box::new(batches)))
}

fn check_header(path: &Path, schema: &Schema) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for (i, f) in schema.fields().iter().enumerate() {
        if f.name().trim().is_empty() {
            return Err(DataError::Malformed {
                path: path.into(),
                line: 1,
                column: Some(i as u64 + 1),
                message: "a column has an empty name".into(),
                hint: "give every column a name in the header line".into(),
            });
        }
        if !seen.insert(f.name().as_str()) {
            return Err(DataError::Malformed {
                path: path.into(),
                line: 1,
                column: Some(i as u64 + 1),
                message: format!("column name `{}` appears twice", f.name()),
                hint: "column names in the header must be unique".into(),
            });
        }
    }
    Ok(())
}

fn canonical(path: &Path, schema: &Schema) -> Result<SchemaRef> {
    canonical_schema(schema).map_err(|(column, dt)| DataError::UnsupportedType {
        path: path.into(),
        column,
        arrow_type: dt.to_string(),
    })
}

/// Turns arrow-csv's (and the csv crate's) messages into errors with
/// file:line:column. Their line numbers count records from 1 with the
/// header as line 1; the tests pin this.
fn map_csv_error(path: &Path, names: Option<&[String]>, e: ArrowError) -> DataError {
    let msg = match &e {
        ArrowError::CsvError(m) | ArrowError::ParseError(m) => m.clone(),
        other => other.to_string(),
    };
    let nums = |re: &str| -> Option<Vec<String>> {
        let caps = Regex::new(re).ok()?.captures(&msg)?;
        Some(
            caps.iter()
                .skip(1)
                .map(|m| m.map_or(String::new(), |m| m.as_str().to_string()))
                .collect(),
        )
    };
    if let Some(c) =
        nums(r"incorrect number of fields for line (\d+), expected (\d+) got (more than )?(\d+)")
    {
        let line = c[0].parse().unwrap_or(0);
        let got = if c[2].is_empty() {
            c[3].clone()
        } else {
            format!("more than {}", c[3])
        };
        return DataError::Malformed {
            path: path.into(),
            line,
            column: None,
            message: format!("expected {} fields, found {got}", c[1]),
            hint: "every row needs as many fields as the header; look for an unquoted delimiter, a missing field, or a quote that is opened and never closed".into(),
        };
    }
    if let Some(c) =
        nums(r"unequal lengths .* Expected (\d+) records, found (\d+) records at line (\d+)")
    {
        return DataError::Malformed {
            path: path.into(),
            line: c[2].parse().unwrap_or(0),
            column: None,
            message: format!("expected {} fields, found {}", c[0], c[1]),
            hint: "every row needs as many fields as the header; look for an unquoted delimiter, a missing field, or a quote that is opened and never closed".into(),
        };
    }
    if let Some(c) = nums(r"invalid UTF-8 data for line (\d+) and field (\d+)") {
        return DataError::Malformed {
            path: path.into(),
            line: c[0].parse().unwrap_or(0),
            column: c[1].parse().ok(),
            message: "invalid UTF-8".into(),
            hint: "kiln reads UTF-8 text; convert the file first, e.g. `iconv -f LATIN1 -t UTF-8`"
                .into(),
        };
    }
    if let Some(c) = nums(r"parsing value '(.*)' as type '(.*)' for column (\d+) at line (\d+)") {
        let column: u64 = c[2].parse().unwrap_or(0);
        return DataError::TypeMismatch {
            path: path.into(),
            line: c[3].parse().unwrap_or(0),
            column: column + 1,
            name: names
                .and_then(|n| n.get(column as usize))
                .cloned()
                .unwrap_or_default(),
            value: c[0].clone(),
            expected: c[1].clone(),
        };
    }
    if let Some(c) = nums(r"invalid UTF-8 in field (\d+) near byte index \d+ at line (\d+)") {
        return DataError::Malformed {
            path: path.into(),
            line: c[1].parse().unwrap_or(0),
            column: c[0].parse::<u64>().ok().map(|f| f + 1),
            message: "invalid UTF-8".into(),
            hint: "kiln reads UTF-8 text; convert the file first, e.g. `iconv -f LATIN1 -t UTF-8`"
                .into(),
        };
    }
    if msg.contains("UTF-8") || msg.contains("utf-8") || msg.contains("utf8") {
        return DataError::Malformed {
            path: path.into(),
            line: 1,
            column: None,
            message: format!("invalid UTF-8 ({msg})"),
            hint: "kiln reads UTF-8 text; convert the file first, e.g. `iconv -f LATIN1 -t UTF-8`"
                .into(),
        };
    }
    DataError::Unreadable {
        path: path.into(),
        format: "CSV".into(),
        message: msg,
    }
}

fn open_jsonl(
    path: &Path,
    gzip: bool,
    count: &Arc<AtomicU64>,
    full: bool,
) -> Result<(SchemaRef, Batches)> {
    let unreadable = |e: ArrowError| DataError::Unreadable {
        path: path.into(),
        format: "JSON lines".into(),
        message: e.to_string(),
    };
    // arrow-json truncates a late `2.5` into an Int64 column instead of
    // failing, so JSON types are always inferred from the whole file.
    let _ = full;
    let (inferred, _) = arrow_json::reader::infer_json_schema(
        BufReader::with_capacity(1 << 20, raw_reader(path, gzip, None)?),
        None,
    )
    .map_err(unreadable)?;
    if inferred.fields().is_empty() {
        return Err(DataError::Unreadable {
            path: path.into(),
            format: "JSON lines".into(),
            message: "no records".into(),
        });
    }
    let schema = canonical(path, &inferred)?;
    // arrow-json reads into the inferred types; the canonical cast follows.
    let reader = arrow_json::ReaderBuilder::new(Arc::new(inferred))
        .with_batch_size(BATCH_ROWS)
        .build(BufReader::with_capacity(
            1 << 20,
            raw_reader(path, gzip, Some(count))?,
        ))
        .map_err(unreadable)?;
    let path: PathBuf = path.into();
    let target = schema.clone();
    let batches = reader.map(move |r| {
        let batch = r.map_err(|e| {
            let m = e.to_string();
            if m.contains("expected") || m.contains("parse") || m.contains("Parse") {
                DataError::TypeMismatch {
                    path: path.clone(),
                    line: 0,
                    column: 0,
                    name: String::new(),
                    value: m,
                    expected: "inferred type".into(),
                }
            } else {
                DataError::Unreadable {
                    path: path.clone(),
                    format: "JSON lines".into(),
                    message: m,
                }
            }
        })?;
        cast_batch(&batch, &target)
    });
    Ok((schema, Box::new(batches)))
}

fn open_parquet(path: &Path, count: &Arc<AtomicU64>) -> Result<(SchemaRef, Batches)> {
    let file = File::open(path).map_err(DataError::io("open", path))?;
    let size = file.metadata().map_err(DataError::io("read", path))?.len();
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| DataError::Unreadable {
            path: path.into(),
            format: "Parquet".into(),
            message: e.to_string(),
        })?;
    let total_rows = builder.metadata().file_metadata().num_rows().max(1) as u64;
    let schema = canonical(path, builder.schema())?;
    let reader = builder.with_batch_size(BATCH_ROWS).build()?;
    let target = schema.clone();
    let count = count.clone();
    let path: PathBuf = path.into();
    let mut rows = 0u64;
    let batches = reader.map(move |r| {
        let batch = r.map_err(|e| DataError::Unreadable {
            path: path.clone(),
            format: "Parquet".into(),
            message: e.to_string(),
        })?;
        rows += batch.num_rows() as u64;
        count.store(size * rows / total_rows, Ordering::Relaxed);
        cast_batch(&batch, &target)
    });
    Ok((schema, Box::new(batches)))
}

/// Casts each column of `batch` to the type `schema` gives it.
pub fn cast_batch(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    if batch
        .schema()
        .fields()
        .iter()
        .zip(schema.fields())
        .all(|(a, b)| a.data_type() == b.data_type())
    {
        return Ok(RecordBatch::try_new(
            schema.clone(),
            batch.columns().to_vec(),
        )?);
    }
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| {
            if c.data_type() == f.data_type() {
                Ok(c.clone())
            } else if *c.data_type() == DataType::Null {
                Ok(arrow_array::new_null_array(f.data_type(), c.len()))
            } else {
                arrow_cast::cast(c, f.data_type())
            }
        })
        .collect::<Result<Vec<_>, ArrowError>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

#[cfg(test)]
mod tests {
    use arrow_array::cast::AsArray;

    use super::*;

    fn read_all(text: &[u8]) -> Result<Vec<RecordBatch>> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.csv");
        std::fs::write(&p, text).unwrap();
        open(&p, &ReadOptions::default(), false)?.collect()
    }

    #[test]
    fn quoted_fields_keep_delimiters_newlines_and_quotes() {
        let b = read_all(b"id,note\n1,\"a, b\"\n2,\"two\nlines\"\n3,\"say \"\"hi\"\"\"\n").unwrap();
        let notes = b[0].column(1).as_string::<i32>();
        assert_eq!(notes.value(0), "a, b");
        assert_eq!(notes.value(1), "two\nlines");
        assert_eq!(notes.value(2), "say \"hi\"");
    }

    #[test]
    fn empty_fields_are_nulls_in_every_type() {
        let b = read_all(b"i,s,d\n1,,2024-01-01\n,x,\n").unwrap();
        assert_eq!(b[0].column(0).null_count(), 1);
        assert_eq!(b[0].column(1).null_count(), 1);
        assert_eq!(b[0].column(2).null_count(), 1);
        assert_eq!(b[0].schema().field(2).data_type(), &DataType::Date32);
    }

    #[test]
    fn a_header_with_an_empty_name_is_refused_with_its_column() {
        match read_all(b"a,,c\n1,2,3\n") {
            Err(DataError::Malformed {
                line: 1,
                column: Some(2),
                ..
            }) => {}
            other => panic!("expected a malformed header, got {other:?}"),
        }
    }
}

#[cfg(test)]
mod fuzz {
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    /// Random CSV-ish bytes (delimiters, quotes, newlines, invalid UTF-8)
    /// never panic ingest: every input is read or refused with an error.
    #[test]
    fn random_csv_bytes_are_ingested_or_refused_without_panicking() {
        const ALPHABET: &[u8] = b"ab1.5,,\"\n\n\r-e\xff ";
        let dir = tempfile::tempdir().unwrap();
        let mut rng = SmallRng::seed_from_u64(42);
        for case in 0..400 {
            let len = rng.random_range(0..200);
            let bytes: Vec<u8> = (0..len)
                .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())])
                .collect();
            let p = dir.path().join(format!("c{case}.csv"));
            std::fs::write(&p, &bytes).unwrap();
            // Ingest covers reading, the type-widening retry, profiling and Parquet.
            let out = dir.path().join(format!("c{case}.parquet"));
            let _ =
                crate::ingest::ingest(&p, &ReadOptions::default(), &out, &kiln_core::NoProgress);
        }
    }
}
