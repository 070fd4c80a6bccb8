//! The request-decoding layer of kiln's model server: a prediction request,
//! in whichever format it came, becomes one Arrow [`RecordBatch`] typed by
//! the model's signature, or an [`InputError`] that names the column and the
//! row (0-based) and says how to fix the request.
//!
//! Decoding has two steps:
//!
//! 1. A `Frame::from_*` constructor turns one wire format into a [`Frame`]:
//!    column names and untyped JSON values, all columns the same length.
//!    * MLflow `/invocations`: [`Frame::from_records`] (`dataframe_records`),
//!      [`Frame::from_split`] (`dataframe_split`), [`Frame::from_inputs`]
//!      (`inputs` / `instances`) and [`Frame::from_csv`] (`text/csv`);
//!    * Open Inference Protocol v2: [`Frame::from_v2`] (the request's `inputs`);
//!    * kiln's own records: [`Frame::from_records`].
//! 2. [`Frame::to_batch`] types the frame by the model's signature
//!    ([`InputColumn`]s): exactly the signature's columns, in its order, in
//!    kiln's canonical Arrow types (what `kiln predict` reads from a file), so
//!    a model predicts the same for a request as for the same rows in a file.
//!
//! | column type            | Arrow type                   | accepted values |
//! |------------------------|------------------------------|-----------------|
//! | integer                | `Int64`                      | JSON integers, integral numbers (`3.0`), numeric text (`"42"`, `"3.0"`) |
//! | float                  | `Float64`                    | JSON numbers, numeric text (`"2.5"`, `"1e3"`), `"NaN"` |
//! | boolean                | `Boolean`                    | `true`/`false`, the text `"true"`/`"false"` (any case) |
//! | string, categorical    | `Utf8`                       | text; numbers and booleans as their JSON text (`1` → `"1"`) |
//! | date                   | `Date32`                     | `"YYYY-MM-DD"` (or a timestamp at midnight) |
//! | timestamp              | `Timestamp(Microsecond, None)` | RFC 3339 or a date-time with an offset (`+02:00`, `+0200`, `Z`; converted to UTC), `"YYYY-MM-DD HH:MM:SS[.f]"` (`T` or space; taken as UTC), `"YYYY-MM-DD"` (midnight) |
//!
//! `null` is a missing value of any type, and so is empty (or blank) text for
//! every type but string and categorical (an empty CSV field is always
//! missing). Categories unseen in training are not refused here: the model
//! treats them as missing and reports them.
//!
//! Nothing here knows HTTP: `kiln-server` picks the constructor by route and
//! content type and turns an [`InputError`] into its error body.
//!
//! ```
//! use kiln_core::ColumnType;
//! use kiln_ml::preprocess::InputColumn;
//! use kiln_serve::Frame;
//! use serde_json::json;
//!
//! let signature = [
//!     InputColumn { name: "age".into(), column_type: ColumnType::Integer, categories: None },
//!     InputColumn { name: "city".into(), column_type: ColumnType::String, categories: None },
//! ];
//! let frame = Frame::from_split(&json!({
//!     "columns": ["city", "age"],
//!     "data": [["Oslo", 42], ["Lima", "37"]]
//! }))
//! .unwrap();
//! let batch = frame.to_batch(&signature).unwrap();
//! assert_eq!(batch.num_rows(), 2);
//! assert_eq!(batch.schema().field(0).name(), "age");
//!
//! let bad = Frame::from_records(&[json!({"age": "abc", "city": "Oslo"})]).unwrap();
//! let e = bad.to_batch(&signature).unwrap_err();
//! assert_eq!((e.column.as_deref(), e.row), (Some("age"), Some(0)));
//! assert!(e.message.starts_with(r#"column "age", row 0: "abc" is not an integer"#));
//! ```

mod decode;
pub mod explain;
mod predictor;
mod typing;

pub use explain::ExplainRequest;
pub use predictor::Predictor;
pub use typing::arrow_type;

#[doc(no_inline)]
pub use arrow_array::RecordBatch;
#[doc(no_inline)]
pub use kiln_ml::preprocess::InputColumn;

/// Caps: a request with more than this many rows is refused before typing.
pub const MAX_ROWS: usize = 100_000;

/// Column-oriented input: each column's name and its values, all the same length.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Frame {
    pub columns: Vec<(String, Vec<serde_json::Value>)>,
    pub rows: usize,
}

/// A request that cannot be decoded or does not fit the model's signature:
/// what is wrong, where, and how to fix it, all in `message`; `column` and
/// `row` (0-based) locate it when it concerns one column or one row.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct InputError {
    pub column: Option<String>,
    pub row: Option<usize>,
    pub message: String,
}

impl InputError {
    pub(crate) fn new(
        column: Option<&str>,
        row: Option<usize>,
        message: impl Into<String>,
    ) -> Self {
        InputError {
            column: column.map(str::to_string),
            row,
            message: message.into(),
        }
    }
}

impl Frame {
    /// The values of the column `name`, if the frame has it.
    pub fn column(&self, name: &str) -> Option<&[serde_json::Value]> {
        self.columns
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// The column names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.columns.iter().map(|(n, _)| n.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_errors_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Frame>();
        check::<InputError>();
    }
}
