//! One streaming pass from a source file to a Parquet copy and a profile.
//!
//! Three stages run side by side: a thread parses the source into record
//! batches, the calling thread profiles each batch (columns in parallel), and
//! a third thread encodes the Parquet copy. Queues between them hold two
//! batches, so memory stays flat in the file size.

use std::fs::File;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::mpsc::sync_channel;

use kiln_core::Progress;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use crate::format::Detected;
use crate::profile::{Profile, Profiler};
use crate::read::{self, ReadOptions};
use crate::schema::{ColumnSchema, TableSchema, logical_type};
use crate::{DataError, Result};

/// What an ingest found.
#[derive(Debug)]
pub struct Ingested {
    pub detected: Detected,
    pub schema: TableSchema,
    pub rows: u64,
    pub profile: Profile,
}

/// Reads `source`, writes its Parquet copy to `out` and profiles it.
pub fn ingest(
    source: &Path,
    opts: &ReadOptions,
    out: &Path,
    progress: &dyn Progress,
) -> Result<Ingested> {
    ingest_many(&[source.to_path_buf()], opts, out, progress)
}

/// As [`ingest`], for several files read as one table in the order given
/// (see [`read::open_many`]).
pub fn ingest_many(
    sources: &[std::path::PathBuf],
    opts: &ReadOptions,
    out: &Path,
    progress: &dyn Progress,
) -> Result<Ingested> {
    match ingest_once(sources, opts, out, progress, false) {
        Err(DataError::TypeMismatch { line, .. }) => {
            tracing::info!(
                line,
                "a value did not fit the sampled types; inferring from the whole file"
            );
            ingest_once(sources, opts, out, progress, true)
        }
        other => other,
    }
}

fn ingest_once(
    sources: &[std::path::PathBuf],
    opts: &ReadOptions,
    out: &Path,
    progress: &dyn Progress,
    full: bool,
) -> Result<Ingested> {
    let reader = read::open_many(sources, opts, full)?;
    let schema = reader.schema.clone();
    let detected = reader.detected;
    let bytes = reader.bytes_read.clone();
    let mut total = 0;
    for s in sources {
        total += std::fs::metadata(s)
            .map_err(DataError::io("read", s))?
            .len();
    }
    progress.start(
        if full {
            "re-reading with wider types"
        } else {
            "reading and profiling"
        },
        Some(total),
    );

    let file = File::create(out).map_err(DataError::io("create", out))?;
    let file = Tracked {
        inner: file,
        error: None,
    };
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(1 << 20))
        .build();
    let mut writer = ArrowWriter::try_new(file, schema.clone(), Some(props))?;
    let mut profiler = Profiler::new(&schema);

    std::thread::scope(|s| -> Result<()> {
        let (batch_tx, batch_rx) = sync_channel(2);
        s.spawn(move || {
            for b in reader {
                if batch_tx.send(b).is_err() {
                    break;
                }
            }
        });
        let (write_tx, write_rx) = sync_channel::<arrow_array::RecordBatch>(2);
        let writing = s.spawn(move || -> Result<ArrowWriter<Tracked>> {
            for b in write_rx {
                if let Err(e) = writer.write(&b) {
                    return Err(writer.inner_mut().take_error(out).unwrap_or(e.into()));
                }
            }
            Ok(writer)
        });
        let mut seen = 0u64;
        let mut failed = None;
        for b in batch_rx {
            match b {
                Ok(b) => {
                    profiler.update(&b);
                    if write_tx.send(b).is_err() {
                        break;
                    }
                    let now = bytes.load(Ordering::Relaxed);
                    progress.advance(now.saturating_sub(seen));
                    seen = now;
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        drop(write_tx);
        let writer = writing.join().expect("parquet writer thread panicked")?;
        if let Some(e) = failed {
            return Err(e);
        }
        let mut writer = writer;
        if let Err(e) = writer.flush() {
            return Err(writer.inner_mut().take_error(out).unwrap_or(e.into()));
        }
        writer.close()?;
        Ok(())
    })?;
    progress.finish();
    let profile = profiler.finish();
    Ok(Ingested {
        detected,
        schema: profile.schema(),
        rows: profile.rows,
        profile,
    })
}

/// A file that remembers the I/O error behind a Parquet write failure, so
/// a full disk is reported as such rather than as an encoding error.
struct Tracked {
    inner: File,
    error: Option<std::io::Error>,
}

impl Tracked {
    fn take_error(&mut self, path: &Path) -> Option<DataError> {
        self.error.take().map(|source| DataError::Io {
            action: "write the columnar copy",
            path: path.into(),
            source,
        })
    }
}

impl std::io::Write for Tracked {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.inner
            .write(buf)
            .inspect_err(|e| self.error = Some(copy_error(e)))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner
            .flush()
            .inspect_err(|e| self.error = Some(copy_error(e)))
    }
}

fn copy_error(e: &std::io::Error) -> std::io::Error {
    e.raw_os_error().map_or_else(
        || std::io::Error::new(e.kind(), e.to_string()),
        std::io::Error::from_raw_os_error,
    )
}

/// The schema of a file from a sample of its rows, without reading it all
/// (for `--no-profile`: categoricals are not told apart from strings).
pub fn sniff_schema(source: &Path, opts: &ReadOptions) -> Result<(TableSchema, Detected)> {
    let reader = read::open(source, opts, false)?;
    let columns = reader
        .schema
        .fields()
        .iter()
        .map(|f| ColumnSchema {
            name: f.name().clone(),
            ty: logical_type(f.data_type()).unwrap_or(kiln_core::ColumnType::String),
            nullable: true,
        })
        .collect();
    Ok((TableSchema { columns }, reader.detected))
}
