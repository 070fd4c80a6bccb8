//! kiln's data engine: tables in, values out. No store, no HTTP.
//!
//! * [`format`](mod@format) detects a file's format (CSV/TSV with sniffed delimiter, gzip,
//!   Parquet, JSON lines) and [`read`] turns it into Arrow record batches with
//!   inferred, canonical column types.
//! * [`ingest`] makes the columnar (Parquet) copy and the [`profile`] of a
//!   table in one streaming pass, so memory stays flat in the file size.
//! * [`check`] evaluates a declared [`check::CheckSuite`] on a columnar copy;
//!   [`diff`] compares two versions (schema, statistics, rows by key).
//!
//! ```no_run
//! use kiln_data::{ingest, read::ReadOptions};
//! let out = ingest::ingest(
//!     "bikes.csv".as_ref(),
//!     &ReadOptions::default(),
//!     "bikes.parquet".as_ref(),
//!     &kiln_core::NoProgress,
//! )?;
//! println!("{} rows, {} columns", out.rows, out.schema.columns.len());
//! # Ok::<(), kiln_data::DataError>(())
//! ```

pub mod check;
pub mod diff;
mod error;
pub mod format;
pub mod ingest;
pub mod profile;
pub mod read;
pub mod schema;
mod sketch;

pub use error::DataError;

pub type Result<T, E = DataError> = std::result::Result<T, E>;
