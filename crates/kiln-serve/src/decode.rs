//! Wire formats to [`Frame`]s: names and untyped values, no signature yet.

use std::collections::HashSet;
use std::io::Cursor;
use std::sync::Arc;

use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_schema::{ArrowError, DataType, Field, Schema};
use serde_json::{Map, Value};

use crate::{Frame, InputError, MAX_ROWS};

/// Distinct keys × records a records request may expand to: a key missing
/// from a record becomes a null, so a few records with many different keys
/// would otherwise grow into a huge frame.
const MAX_CELLS: usize = 20_000_000;

/// Rows per batch when reading CSV.
const CSV_BATCH_ROWS: usize = 8_192;

/// The error for a request over [`MAX_ROWS`].
pub(crate) fn too_many_rows(rows: usize) -> InputError {
    InputError::new(
        None,
        None,
        format!(
            "the request has {rows} rows, more than the {MAX_ROWS} one request may hold; split it into requests of at most {MAX_ROWS} rows"
        ),
    )
}

/// A value as compact JSON for an error message, cut short when long.
pub(crate) fn show(v: &Value) -> String {
    const MAX: usize = 60;
    let s = v.to_string();
    if s.chars().count() <= MAX {
        s
    } else {
        let cut: String = s.chars().take(MAX).collect();
        format!("{cut}…")
    }
}

/// What kind of JSON value `v` is, with its article.
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

const RECORD_EXAMPLE: &str = r#"{"age": 42, "city": "Oslo"}"#;
const SPLIT_EXAMPLE: &str = r#"{"columns": ["age", "city"], "data": [[42, "Oslo"], [37, "Lima"]]}"#;
const INPUTS_EXAMPLE: &str = r#"a list of records [{"age": 42, "city": "Oslo"}], a dict of columns {"age": [42, 37], "city": ["Oslo", "Lima"]}, or a dict of values for one row {"age": 42, "city": "Oslo"}"#;
const V2_EXAMPLE: &str = r#"{"name": "age", "shape": [2], "datatype": "INT64", "data": [42, 37]}"#;

/// Names each column may carry once; `what` is how the format calls them.
fn check_unique<'a>(
    names: impl IntoIterator<Item = &'a str>,
    what: &str,
) -> Result<(), InputError> {
    match crate::typing::first_duplicate(names) {
        Some(name) => Err(InputError::new(
            Some(name),
            None,
            format!("{what} \"{name}\" appears twice; send each column once"),
        )),
        None => Ok(()),
    }
}

impl Frame {
    /// MLflow `dataframe_records` / kiln records: `[{"a": 1, "b": "x"}, …]` (keys may differ per record: a missing key is null).
    ///
    /// Columns come in the order their keys first appear.
    pub fn from_records(records: &[Value]) -> Result<Frame, InputError> {
        if records.len() > MAX_ROWS {
            return Err(too_many_rows(records.len()));
        }
        let mut seen: HashSet<&str> = HashSet::new();
        let mut names: Vec<&str> = Vec::new();
        for (row, record) in records.iter().enumerate() {
            let Value::Object(map) = record else {
                return Err(InputError::new(
                    None,
                    Some(row),
                    format!(
                        "row {row}: {} is {}, not a record; send each row as an object of column names to values, e.g. {RECORD_EXAMPLE}",
                        show(record),
                        kind(record)
                    ),
                ));
            };
            for key in map.keys() {
                if seen.insert(key) {
                    names.push(key);
                }
            }
            if names.len().saturating_mul(records.len()) > MAX_CELLS {
                return Err(InputError::new(
                    None,
                    None,
                    format!(
                        "the records use {} different keys over {} rows, too many to decode; send the same columns in every record",
                        names.len(),
                        records.len()
                    ),
                ));
            }
        }
        let mut columns: Vec<(String, Vec<Value>)> = names
            .iter()
            .map(|n| (n.to_string(), Vec::with_capacity(records.len())))
            .collect();
        for record in records {
            let map = record.as_object().expect("checked above");
            for (name, values) in &mut columns {
                values.push(map.get(name.as_str()).cloned().unwrap_or(Value::Null));
            }
        }
        Ok(Frame {
            columns,
            rows: records.len(),
        })
    }

    /// MLflow `dataframe_split`: `{"columns": [...], "data": [[...], ...], "index"?: [...]}`.
    ///
    /// The index, when given, is ignored: rows keep their order.
    pub fn from_split(split: &Value) -> Result<Frame, InputError> {
        let Value::Object(o) = split else {
            return Err(InputError::new(
                None,
                None,
                format!(
                    "dataframe_split is {}, not an object; send {SPLIT_EXAMPLE}",
                    kind(split)
                ),
            ));
        };
        let names: Vec<&str> = match o.get("columns") {
            Some(Value::Array(c)) => c
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_str().ok_or_else(|| {
                        InputError::new(
                            None,
                            None,
                            format!(
                                "dataframe_split `columns[{i}]` is {} ({}), not a column name; name every column with a string, e.g. {SPLIT_EXAMPLE}",
                                show(v),
                                kind(v)
                            ),
                        )
                    })
                })
                .collect::<Result<_, _>>()?,
            Some(other) => {
                return Err(InputError::new(
                    None,
                    None,
                    format!(
                        "dataframe_split `columns` is {}, not a list of names; send {SPLIT_EXAMPLE}",
                        kind(other)
                    ),
                ));
            }
            None => {
                return Err(InputError::new(
                    None,
                    None,
                    format!(
                        "dataframe_split has no `columns`; name the columns of `data`: {SPLIT_EXAMPLE}"
                    ),
                ));
            }
        };
        check_unique(names.iter().copied(), "column")?;
        let data = match o.get("data") {
            Some(Value::Array(d)) => d,
            Some(other) => {
                return Err(InputError::new(
                    None,
                    None,
                    format!(
                        "dataframe_split `data` is {}, not a list of rows; send {SPLIT_EXAMPLE}",
                        kind(other)
                    ),
                ));
            }
            None => {
                return Err(InputError::new(
                    None,
                    None,
                    format!("dataframe_split has no `data`; send the rows: {SPLIT_EXAMPLE}"),
                ));
            }
        };
        if data.len() > MAX_ROWS {
            return Err(too_many_rows(data.len()));
        }
        let mut columns: Vec<(String, Vec<Value>)> = names
            .iter()
            .map(|n| (n.to_string(), Vec::with_capacity(data.len())))
            .collect();
        for (row, values) in data.iter().enumerate() {
            let Value::Array(values) = values else {
                return Err(InputError::new(
                    None,
                    Some(row),
                    format!(
                        "row {row}: {} is {}, not a list of values; send each row of `data` as a list with one value per column ({})",
                        show(values),
                        kind(values),
                        names.join(", ")
                    ),
                ));
            };
            if values.len() != names.len() {
                return Err(InputError::new(
                    None,
                    Some(row),
                    format!(
                        "row {row} has {} values but `columns` names {} ({}); send one value per column in every row, null where missing",
                        values.len(),
                        names.len(),
                        names.join(", ")
                    ),
                ));
            }
            for ((_, column), v) in columns.iter_mut().zip(values) {
                column.push(v.clone());
            }
        }
        Ok(Frame {
            columns,
            rows: data.len(),
        })
    }

    /// MLflow `inputs` / `instances`: either a list of records, or a dict of column → list of values (all the same length), or a dict of column → scalar (one row).
    pub fn from_inputs(inputs: &Value) -> Result<Frame, InputError> {
        match inputs {
            Value::Array(records) => Frame::from_records(records).map_err(|mut e| {
                if e.message.contains("not a record") {
                    e.message = format!(
                        "{}; `inputs` and `instances` take {INPUTS_EXAMPLE}",
                        e.message
                    );
                }
                e
            }),
            Value::Object(map) => from_dict(map),
            other => Err(InputError::new(
                None,
                None,
                format!(
                    "`inputs` is {}; send {INPUTS_EXAMPLE}",
                    if other.is_null() { "null" } else { kind(other) }
                ),
            )),
        }
    }

    /// Open Inference Protocol v2 `inputs`: `[{"name","shape","datatype","data"}, …]`, one tensor per column, shape `[N]` or `[N,1]`; datatypes BOOL, INT8..INT64, UINT8..UINT64, FP16/FP32/FP64, BYTES (strings). `data` may be flat or nested (row-major). Checks that data length matches the shape.
    ///
    /// A whole request body (`{"inputs": [...]}`) is taken too. A `null`
    /// in `data` is a missing value of any datatype.
    pub fn from_v2(inputs: &Value) -> Result<Frame, InputError> {
        let tensors = match inputs {
            Value::Array(t) => t,
            Value::Object(o) if o.get("inputs").is_some_and(Value::is_array) => {
                o["inputs"].as_array().expect("checked above")
            }
            other => {
                return Err(InputError::new(
                    None,
                    None,
                    format!(
                        "`inputs` is {}, not a list of tensors; send one tensor per column, e.g. [{V2_EXAMPLE}]",
                        kind(other)
                    ),
                ));
            }
        };
        let mut columns: Vec<(String, Vec<Value>)> = Vec::with_capacity(tensors.len());
        // The first tensor's name and rows, which every other must match.
        let mut rows: Option<(String, usize)> = None;
        for (i, tensor) in tensors.iter().enumerate() {
            let (name, values) = v2_tensor(i, tensor)?;
            match &rows {
                None => rows = Some((name.clone(), values.len())),
                Some((first, n)) if *n != values.len() => {
                    return Err(InputError::new(
                        Some(&name),
                        None,
                        format!(
                            "tensor \"{name}\" has {} rows but tensor \"{first}\" has {n}; send every column with the same number of rows",
                            values.len()
                        ),
                    ));
                }
                Some(_) => {}
            }
            if columns.iter().any(|(n, _)| *n == name) {
                return Err(InputError::new(
                    Some(&name),
                    None,
                    format!("tensor \"{name}\" appears twice; send each column once"),
                ));
            }
            columns.push((name, values));
        }
        Ok(Frame {
            columns,
            rows: rows.map_or(0, |(_, n)| n),
        })
    }

    /// CSV with a header row (MLflow accepts `text/csv`); values stay strings until typed.
    ///
    /// Parsed as `kiln predict` parses a CSV file (comma-separated, `"`
    /// quotes, `""` inside quotes); an empty field is null. A UTF-8 byte
    /// order mark is skipped.
    pub fn from_csv(bytes: &[u8]) -> Result<Frame, InputError> {
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(InputError::new(
                None,
                None,
                "the CSV body is empty; send a header line naming the columns, then one line per row",
            ));
        }
        let format = arrow_csv::reader::Format::default().with_header(true);
        let (header, _) = format
            .infer_schema(Cursor::new(bytes), Some(0))
            .map_err(|e| csv_error(&[], e))?;
        let names: Vec<String> = header.fields().iter().map(|f| f.name().clone()).collect();
        for (i, name) in names.iter().enumerate() {
            if name.trim().is_empty() {
                return Err(InputError::new(
                    None,
                    None,
                    format!(
                        "CSV header field {} is empty; name every column in the header line",
                        i + 1
                    ),
                ));
            }
        }
        check_unique(names.iter().map(String::as_str), "CSV column")?;
        let schema = Arc::new(Schema::new(
            names
                .iter()
                .map(|n| Field::new(n, DataType::Utf8, true))
                .collect::<Vec<_>>(),
        ));
        let reader = arrow_csv::ReaderBuilder::new(schema)
            .with_format(format)
            .with_batch_size(CSV_BATCH_ROWS)
            .build(Cursor::new(bytes))
            .map_err(|e| csv_error(&names, e))?;
        let mut columns: Vec<(String, Vec<Value>)> =
            names.iter().map(|n| (n.clone(), Vec::new())).collect();
        let mut rows = 0usize;
        for batch in reader {
            let batch = batch.map_err(|e| csv_error(&names, e))?;
            rows += batch.num_rows();
            if rows > MAX_ROWS {
                return Err(too_many_rows_at_least(rows));
            }
            for ((_, values), array) in columns.iter_mut().zip(batch.columns()) {
                let array = array.as_string::<i32>();
                values.extend((0..array.len()).map(|i| {
                    if array.is_null(i) {
                        Value::Null
                    } else {
                        Value::String(array.value(i).to_string())
                    }
                }));
            }
        }
        Ok(Frame { columns, rows })
    }
}

/// [`too_many_rows`] when reading stopped part way.
fn too_many_rows_at_least(rows: usize) -> InputError {
    InputError::new(
        None,
        None,
        format!(
            "the request has more than {MAX_ROWS} rows (at least {rows}), more than one request may hold; split it into requests of at most {MAX_ROWS} rows"
        ),
    )
}

/// MLflow `inputs` as a dict: column → list of values, or column → value.
fn from_dict(map: &Map<String, Value>) -> Result<Frame, InputError> {
    let Some((first_name, first)) = map.iter().next() else {
        return Ok(Frame::default());
    };
    if let Value::Array(first_values) = first {
        let rows = first_values.len();
        if rows > MAX_ROWS {
            return Err(too_many_rows(rows));
        }
        let mut columns = Vec::with_capacity(map.len());
        for (name, v) in map {
            let Value::Array(values) = v else {
                return Err(InputError::new(
                    Some(name),
                    None,
                    format!(
                        "column \"{name}\" is {} ({}) but column \"{first_name}\" is a list; send a list of values for every column, or a single value for every column (one row)",
                        kind(v),
                        show(v)
                    ),
                ));
            };
            if values.len() != rows {
                return Err(InputError::new(
                    Some(name),
                    None,
                    format!(
                        "column \"{name}\" has {} values but column \"{first_name}\" has {rows}; send the same number of values for every column, null where missing",
                        values.len()
                    ),
                ));
            }
            columns.push((name.clone(), values.clone()));
        }
        Ok(Frame { columns, rows })
    } else {
        let mut columns = Vec::with_capacity(map.len());
        for (name, v) in map {
            if v.is_array() {
                return Err(InputError::new(
                    Some(name),
                    None,
                    format!(
                        "column \"{name}\" is a list but column \"{first_name}\" is a single value; send a list of values for every column, or a single value for every column (one row)"
                    ),
                ));
            }
            columns.push((name.clone(), vec![v.clone()]));
        }
        Ok(Frame { columns, rows: 1 })
    }
}

/// A v2 datatype: what its data must hold.
#[derive(Clone, Copy)]
enum V2Type {
    Bool,
    Int { min: i64, max: i64 },
    UInt { max: u64 },
    Float,
    Bytes,
}

const V2_TYPES: &str =
    "BOOL, INT8, INT16, INT32, INT64, UINT8, UINT16, UINT32, UINT64, FP16, FP32, FP64, BYTES";

fn v2_type(name: &str) -> Option<V2Type> {
    Some(match name {
        "BOOL" => V2Type::Bool,
        "INT8" => V2Type::Int {
            min: i8::MIN.into(),
            max: i8::MAX.into(),
        },
        "INT16" => V2Type::Int {
            min: i16::MIN.into(),
            max: i16::MAX.into(),
        },
        "INT32" => V2Type::Int {
            min: i32::MIN.into(),
            max: i32::MAX.into(),
        },
        "INT64" => V2Type::Int {
            min: i64::MIN,
            max: i64::MAX,
        },
        "UINT8" => V2Type::UInt {
            max: u8::MAX.into(),
        },
        "UINT16" => V2Type::UInt {
            max: u16::MAX.into(),
        },
        "UINT32" => V2Type::UInt {
            max: u32::MAX.into(),
        },
        "UINT64" => V2Type::UInt { max: u64::MAX },
        "FP16" | "FP32" | "FP64" => V2Type::Float,
        "BYTES" => V2Type::Bytes,
        _ => return None,
    })
}

impl V2Type {
    fn accepts(self, v: &Value) -> bool {
        match (self, v) {
            (_, Value::Null) => true,
            (V2Type::Bool, Value::Bool(_)) => true,
            (V2Type::Int { min, max }, Value::Number(n)) => match n.as_i64() {
                Some(x) => (min..=max).contains(&x),
                None => false,
            },
            (V2Type::UInt { max }, Value::Number(n)) => n.as_u64().is_some_and(|x| x <= max),
            (V2Type::Float, Value::Number(_)) => true,
            (V2Type::Bytes, Value::String(_)) => true,
            _ => false,
        }
    }

    fn hint(self, datatype: &str) -> String {
        match self {
            V2Type::Bool => "send true or false".into(),
            V2Type::Int { min, max } => {
                format!("send whole numbers from {min} to {max}, or declare a wider datatype")
            }
            V2Type::UInt { max } => {
                format!("send whole numbers from 0 to {max}, or declare a wider datatype")
            }
            V2Type::Float => "send numbers".into(),
            V2Type::Bytes => {
                format!("send strings, or declare the datatype of the values (not {datatype})")
            }
        }
    }
}

/// One v2 tensor (the `index`-th) as a named column.
fn v2_tensor(index: usize, tensor: &Value) -> Result<(String, Vec<Value>), InputError> {
    let Value::Object(t) = tensor else {
        return Err(InputError::new(
            None,
            None,
            format!(
                "`inputs[{index}]` is {}, not a tensor; send one tensor per column, e.g. {V2_EXAMPLE}",
                kind(tensor)
            ),
        ));
    };
    let name = match t.get("name") {
        Some(Value::String(n)) if !n.is_empty() => n.clone(),
        _ => {
            return Err(InputError::new(
                None,
                None,
                format!(
                    "`inputs[{index}]` has no `name`; name each tensor after its column, e.g. {V2_EXAMPLE}"
                ),
            ));
        }
    };
    let col = Some(name.as_str());
    let datatype = match t.get("datatype") {
        Some(Value::String(d)) => d.as_str(),
        _ => {
            return Err(InputError::new(
                col,
                None,
                format!(
                    "tensor \"{name}\" has no `datatype`; give one of {V2_TYPES}, e.g. {V2_EXAMPLE}"
                ),
            ));
        }
    };
    let Some(ty) = v2_type(datatype) else {
        return Err(InputError::new(
            col,
            None,
            format!(
                "tensor \"{name}\" has datatype `{datatype}`, which kiln does not take; use one of {V2_TYPES}"
            ),
        ));
    };
    let shape_hint = "a column's shape is [N] or [N, 1] for N rows";
    let shape: Vec<u64> = match t.get("shape") {
        Some(Value::Array(s)) => s
            .iter()
            .map(|d| {
                d.as_u64().ok_or_else(|| {
                    InputError::new(
                        col,
                        None,
                        format!(
                            "tensor \"{name}\" has shape {}, which holds {}; {shape_hint}",
                            show(&t["shape"]),
                            show(d)
                        ),
                    )
                })
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(InputError::new(
                col,
                None,
                format!("tensor \"{name}\" has no `shape`; {shape_hint}"),
            ));
        }
    };
    let n = match shape[..] {
        [n] | [n, 1] => n,
        _ => {
            return Err(InputError::new(
                col,
                None,
                format!(
                    "tensor \"{name}\" has shape {}; {shape_hint}: send one tensor per column",
                    show(&t["shape"])
                ),
            ));
        }
    };
    let n = match usize::try_from(n) {
        Ok(n) if n <= MAX_ROWS => n,
        _ => return Err(too_many_rows(n.try_into().unwrap_or(usize::MAX))),
    };
    let data = match t.get("data") {
        Some(d @ Value::Array(_)) => d,
        Some(other) => {
            return Err(InputError::new(
                col,
                None,
                format!(
                    "tensor \"{name}\" has `data` {}, not a list; send the values as a list, e.g. {V2_EXAMPLE}",
                    kind(other)
                ),
            ));
        }
        None => {
            return Err(InputError::new(
                col,
                None,
                format!("tensor \"{name}\" has no `data`; send the values, e.g. {V2_EXAMPLE}"),
            ));
        }
    };
    let values = flatten(data, n);
    if values.len() != n {
        let got = if values.len() > n {
            format!("more than {n}")
        } else {
            values.len().to_string()
        };
        return Err(InputError::new(
            col,
            None,
            format!(
                "tensor \"{name}\" has shape {} but {got} values in `data`; make the shape's first number the number of rows",
                show(&t["shape"])
            ),
        ));
    }
    for (row, v) in values.iter().enumerate() {
        if !ty.accepts(v) {
            return Err(InputError::new(
                col,
                Some(row),
                format!(
                    "tensor \"{name}\", row {row}: {} is not {datatype} data; {}",
                    show(v),
                    ty.hint(datatype)
                ),
            ));
        }
    }
    Ok((name, values))
}

/// The leaves of nested lists in row-major order, stopping one past `limit`
/// (enough to say there are too many). Iterative, so no depth of nesting
/// can overflow the stack.
fn flatten(data: &Value, limit: usize) -> Vec<Value> {
    let mut out = Vec::new();
    let mut stack: Vec<std::slice::Iter<'_, Value>> = Vec::new();
    match data {
        Value::Array(a) => stack.push(a.iter()),
        other => return vec![other.clone()],
    }
    while let Some(top) = stack.last_mut() {
        match top.next() {
            None => {
                stack.pop();
            }
            Some(Value::Array(a)) => stack.push(a.iter()),
            Some(v) => {
                out.push(v.clone());
                if out.len() > limit {
                    break;
                }
            }
        }
    }
    out
}

/// arrow-csv's and the csv crate's messages as a request error, with the
/// row (0-based, after the header) where one is given. Their line numbers
/// count the header as line 1; the tests pin this.
fn csv_error(names: &[String], e: ArrowError) -> InputError {
    let msg = match &e {
        ArrowError::CsvError(m) | ArrowError::ParseError(m) => m.clone(),
        other => other.to_string(),
    };
    // "... line N ..." → row N - 2; the header is line 1.
    let line = number_after(&msg, "line ");
    let row = line.and_then(|l| l.checked_sub(2));
    let at = match (line, row) {
        (_, Some(r)) => format!("row {r}: "),
        (Some(1), None) => "the header line: ".to_string(),
        _ => String::new(),
    };
    if msg.contains("UTF-8") || msg.contains("utf-8") || msg.contains("utf8") {
        // "... for line 3 and field 2": fields count from 1.
        let column = number_after(&msg, "field ")
            .and_then(|f| f.checked_sub(1))
            .and_then(|f| names.get(f));
        let within = column.map_or(String::new(), |c| format!("column \"{c}\" "));
        return InputError::new(
            column.map(String::as_str),
            row,
            format!("{at}{within}the CSV is not valid UTF-8; send UTF-8 text"),
        );
    }
    if let (Some(expected), Some(got)) = (
        number_after(&msg, "expected "),
        number_after(&msg, "got ").or_else(|| number_after(&msg, "found ")),
    ) {
        let more = if msg.contains("more than") {
            "more than "
        } else {
            ""
        };
        return InputError::new(
            None,
            row,
            format!(
                "{at}the CSV line has {more}{got} field{} but the header names {expected} ({}); send one field per column in every line, and quote fields that hold a comma, a quote or a line break",
                if got == 1 && more.is_empty() { "" } else { "s" },
                names.join(", ")
            ),
        );
    }
    InputError::new(
        None,
        row,
        format!("{at}the CSV does not parse ({msg}); send a header line, then one line per row"),
    )
}

/// The number right after the first `prefix` in `s` (skipping words such as
/// "more than "), if any.
fn number_after(s: &str, prefix: &str) -> Option<usize> {
    let rest = &s[s.find(prefix)? + prefix.len()..];
    let rest = rest.strip_prefix("more than ").unwrap_or(rest);
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn flatten_reads_row_major_and_stops_one_past_the_limit() {
        let data = json!([[1, [2]], [], [[3], 4], 5]);
        assert_eq!(
            flatten(&data, 10),
            [json!(1), json!(2), json!(3), json!(4), json!(5)]
        );
        assert_eq!(flatten(&data, 2).len(), 3);
        assert_eq!(flatten(&json!(7), 10), [json!(7)]);
    }

    #[test]
    fn numbers_after_a_word_skip_more_than() {
        let m = "incorrect number of fields for line 3, expected 2 got more than 2";
        assert_eq!(number_after(m, "line "), Some(3));
        assert_eq!(number_after(m, "expected "), Some(2));
        assert_eq!(number_after(m, "got "), Some(2));
        assert_eq!(number_after(m, "found "), None);
    }

    #[test]
    fn long_values_are_cut_short_in_messages() {
        assert_eq!(show(&json!("abc")), "\"abc\"");
        let long = show(&json!("x".repeat(100)));
        assert_eq!(long.chars().count(), 61);
        assert!(long.ends_with('…'));
    }
}
