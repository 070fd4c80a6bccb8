//! A [`Frame`] typed by a model's signature: one batch in kiln's canonical
//! Arrow types, or the first value that does not fit.

use std::collections::HashSet;
use std::sync::Arc;

use arrow_array::{
    ArrayRef, BooleanArray, Date32Array, Float64Array, Int64Array, RecordBatch, RecordBatchOptions,
    StringArray, TimestampMicrosecondArray,
};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use chrono::{DateTime, NaiveDate, NaiveDateTime};
use kiln_core::ColumnType;
use kiln_ml::preprocess::InputColumn;
use serde_json::Value;

use crate::decode::{show, too_many_rows};
use crate::{Frame, InputError, MAX_ROWS};

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// The Arrow type [`Frame::to_batch`] gives a column of type `t`: kiln's
/// canonical types, as `kiln predict` reads a CSV file. Timestamps are UTC
/// without a zone, like a CSV file's.
pub fn arrow_type(t: ColumnType) -> DataType {
    match t {
        ColumnType::Integer => DataType::Int64,
        ColumnType::Float => DataType::Float64,
        ColumnType::Boolean => DataType::Boolean,
        ColumnType::String | ColumnType::Categorical => DataType::Utf8,
        ColumnType::Date => DataType::Date32,
        ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
    }
}

impl Frame {
    /// Types the frame by the model's signature into one RecordBatch with exactly the signature's columns in its order.
    ///
    /// Refused: more than [`MAX_ROWS`] rows; no rows; a signature column
    /// missing or a column the signature lacks (all named in one error); a
    /// value that is not of its column's type (the first one, by column in
    /// signature order, then row). See the crate docs for the accepted forms.
    pub fn to_batch(&self, inputs: &[InputColumn]) -> Result<RecordBatch, InputError> {
        if self.rows > MAX_ROWS {
            return Err(too_many_rows(self.rows));
        }
        if self.rows == 0 {
            return Err(InputError::new(
                None,
                None,
                format!(
                    "the request has no rows; send at least one row with the model's columns: {}",
                    signature(inputs)
                ),
            ));
        }
        if let Some(name) = first_duplicate(self.names()) {
            return Err(InputError::new(
                Some(name),
                None,
                format!("column \"{name}\" appears twice; send each column once"),
            ));
        }
        for (name, values) in &self.columns {
            if values.len() != self.rows {
                return Err(InputError::new(
                    Some(name),
                    None,
                    format!(
                        "column \"{name}\" has {} values but the request has {} rows; send the same number of values for every column, null where missing",
                        values.len(),
                        self.rows
                    ),
                ));
            }
        }
        check_columns(self, inputs)?;
        let mut fields = Vec::with_capacity(inputs.len());
        let mut arrays = Vec::with_capacity(inputs.len());
        for input in inputs {
            let values = self.column(&input.name).expect("checked above");
            arrays.push(type_column(input, values)?);
            fields.push(Field::new(&input.name, arrow_type(input.column_type), true));
        }
        RecordBatch::try_new_with_options(
            Arc::new(Schema::new(fields)),
            arrays,
            &RecordBatchOptions::new().with_row_count(Some(self.rows)),
        )
        .map_err(|e| InputError::new(None, None, format!("the batch cannot be built: {e}")))
    }
}

/// The signature for an error message: `age (integer), city (string)`.
fn signature(inputs: &[InputColumn]) -> String {
    if inputs.is_empty() {
        return "(the model takes no columns)".into();
    }
    inputs
        .iter()
        .map(|c| format!("{} ({})", c.name, c.column_type))
        .collect::<Vec<_>>()
        .join(", ")
}

fn quoted(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A name that occurs twice (the first in sorted order), if any. Sorting a
/// few dozen names is cheaper than hashing them, once per request.
pub(crate) fn first_duplicate<'a>(names: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let mut v: Vec<&str> = names.into_iter().collect();
    v.sort_unstable();
    v.windows(2).find(|w| w[0] == w[1]).map(|w| w[0])
}

/// Refuses missing and extra columns, naming them all.
fn check_columns(frame: &Frame, inputs: &[InputColumn]) -> Result<(), InputError> {
    // The usual request: the signature's columns, in its order.
    if frame.columns.len() == inputs.len()
        && frame
            .columns
            .iter()
            .zip(inputs)
            .all(|((n, _), c)| *n == c.name)
    {
        return Ok(());
    }
    let have: HashSet<&str> = frame.names().collect();
    let want: HashSet<&str> = inputs.iter().map(|c| c.name.as_str()).collect();
    let missing: Vec<&str> = inputs
        .iter()
        .map(|c| c.name.as_str())
        .filter(|n| !have.contains(n))
        .collect();
    let extra: Vec<&str> = frame.names().filter(|n| !want.contains(n)).collect();
    if missing.is_empty() && extra.is_empty() {
        return Ok(());
    }
    let plural = |v: &[&str]| if v.len() == 1 { "" } else { "s" };
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!(
            "lacks the model's column{} {}",
            plural(&missing),
            quoted(&missing)
        ));
    }
    if !extra.is_empty() {
        parts.push(format!(
            "has column{} the model does not take: {}",
            plural(&extra),
            quoted(&extra)
        ));
    }
    let mut message = format!(
        "the request {}; send every column of the model's signature and no other: {}",
        parts.join(" and "),
        signature(inputs)
    );
    for e in &extra {
        if let Some(m) = missing.iter().find(|m| m.eq_ignore_ascii_case(e.trim())) {
            message.push_str(&format!(
                " (\"{e}\" differs from \"{m}\" only in case or spaces; names must match exactly)"
            ));
        }
    }
    let column = match (&missing[..], &extra[..]) {
        ([one], []) | ([], [one]) => Some(*one),
        _ => None,
    };
    Err(InputError::new(column, None, message))
}

/// What fixes a bad value of type `t`.
fn hint(t: ColumnType) -> &'static str {
    match t {
        ColumnType::Integer => "send a whole number such as 42, or null for a missing value",
        ColumnType::Float => r#"send a number such as 2.5 (or "NaN"), or null for a missing value"#,
        ColumnType::Boolean => "send true or false, or null for a missing value",
        ColumnType::String | ColumnType::Categorical => {
            r#"send text such as "red" (numbers and booleans are taken as their text), or null for a missing value"#
        }
        ColumnType::Date => {
            r#"send a date as "YYYY-MM-DD", e.g. "2024-03-01", or null for a missing value"#
        }
        ColumnType::Timestamp => {
            r#"send a timestamp as RFC 3339 ("2024-03-01T12:30:00Z") or "YYYY-MM-DD HH:MM:SS", or null for a missing value"#
        }
    }
}

/// A value that does not fit: what is wrong with it, as a predicate
/// ("is not an integer").
type Parsed<T> = Result<Option<T>, &'static str>;

fn typed<T>(
    input: &InputColumn,
    values: &[Value],
    parse: impl Fn(&Value) -> Parsed<T>,
) -> Result<Vec<Option<T>>, InputError> {
    values
        .iter()
        .enumerate()
        .map(|(row, v)| {
            parse(v).map_err(|what| {
                InputError::new(
                    Some(&input.name),
                    Some(row),
                    format!(
                        "column \"{}\", row {row}: {} {what}; {}",
                        input.name,
                        show(v),
                        hint(input.column_type)
                    ),
                )
            })
        })
        .collect()
}

fn type_column(input: &InputColumn, values: &[Value]) -> Result<ArrayRef, InputError> {
    Ok(match input.column_type {
        ColumnType::Integer => Arc::new(Int64Array::from(typed(input, values, integer)?)),
        ColumnType::Float => Arc::new(Float64Array::from(typed(input, values, float)?)),
        ColumnType::Boolean => Arc::new(BooleanArray::from(typed(input, values, boolean)?)),
        ColumnType::String | ColumnType::Categorical => {
            Arc::new(StringArray::from(typed(input, values, string)?))
        }
        ColumnType::Date => Arc::new(Date32Array::from(typed(input, values, date)?)),
        ColumnType::Timestamp => Arc::new(TimestampMicrosecondArray::from(typed(
            input, values, timestamp,
        )?)),
    })
}

const NESTED_LIST: &str = "is a list, not a single value";
const NESTED_OBJECT: &str = "is an object, not a single value";
const NOT_INTEGER: &str = "is not an integer";
const OUT_OF_RANGE: &str =
    "is outside the integer range (-9223372036854775808 to 9223372036854775807)";

/// Text that stands for a missing value of a non-text type: empty or blank.
fn text(s: &str) -> Option<&str> {
    let t = s.trim();
    (!t.is_empty()).then_some(t)
}

fn integer(v: &Value) -> Parsed<i64> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Ok(Some(i)),
            None if n.is_u64() => Err(OUT_OF_RANGE),
            None => integral(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => {
            let Some(t) = text(s) else { return Ok(None) };
            if let Ok(i) = t.parse::<i64>() {
                return Ok(Some(i));
            }
            match t.parse::<f64>() {
                Ok(x) => integral(x),
                Err(_) => Err(NOT_INTEGER),
            }
        }
        Value::Bool(_) => Err(NOT_INTEGER),
        Value::Array(_) => Err(NESTED_LIST),
        Value::Object(_) => Err(NESTED_OBJECT),
    }
}

/// An integral float as an integer (`3.0` → 3).
fn integral(x: f64) -> Parsed<i64> {
    // i64 holds [-2^63, 2^63).
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    if !x.is_finite() || x.fract() != 0.0 {
        Err(NOT_INTEGER)
    } else if !(-LIMIT..LIMIT).contains(&x) {
        Err(OUT_OF_RANGE)
    } else {
        Ok(Some(x as i64))
    }
}

fn float(v: &Value) -> Parsed<f64> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => n.as_f64().map(Some).ok_or("is not a number"),
        Value::String(s) => {
            let Some(t) = text(s) else { return Ok(None) };
            match t.parse::<f64>() {
                // The model refuses infinities; say so here, at the value.
                Ok(x) if x.is_infinite() => Err("is not a finite number"),
                Ok(x) => Ok(Some(x)),
                Err(_) => Err("is not a number"),
            }
        }
        Value::Bool(_) => Err("is not a number"),
        Value::Array(_) => Err(NESTED_LIST),
        Value::Object(_) => Err(NESTED_OBJECT),
    }
}

fn boolean(v: &Value) -> Parsed<bool> {
    match v {
        Value::Null => Ok(None),
        Value::Bool(b) => Ok(Some(*b)),
        Value::String(s) => match text(s) {
            None => Ok(None),
            Some(t) if t.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(t) if t.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(_) => Err("is not a boolean"),
        },
        Value::Number(_) => Err("is not a boolean"),
        Value::Array(_) => Err(NESTED_LIST),
        Value::Object(_) => Err(NESTED_OBJECT),
    }
}

fn string(v: &Value) -> Parsed<String> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Number(n) => Ok(Some(n.to_string())),
        Value::Bool(b) => Ok(Some(b.to_string())),
        Value::Array(_) => Err(NESTED_LIST),
        Value::Object(_) => Err(NESTED_OBJECT),
    }
}

fn epoch() -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).expect("a valid date")
}

fn parse_date(t: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(t, "%Y-%m-%d").ok()
}

/// Microseconds since the epoch, UTC: RFC 3339 (any offset), a date and
/// time without an offset (taken as UTC), or a date (midnight).
fn parse_timestamp(t: &str) -> Option<i64> {
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Some(dt.timestamp_micros());
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(t, format) {
            return Some(dt.and_utc().timestamp_micros());
        }
    }
    // Offsets without a colon or minutes (`+0200`, `+02`), or after a space.
    for format in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M:%S%.f%#z"] {
        if let Ok(dt) = DateTime::parse_from_str(t, format) {
            return Some(dt.timestamp_micros());
        }
    }
    parse_date(t).map(|d| (d - epoch()).num_days() * MICROS_PER_DAY)
}

fn date(v: &Value) -> Parsed<i32> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => {
            let Some(t) = text(s) else { return Ok(None) };
            if let Some(d) = parse_date(t) {
                return Ok(Some((d - epoch()).num_days() as i32));
            }
            match parse_timestamp(t) {
                // A timestamp at midnight is the date (pandas writes dates so).
                Some(m) if m % MICROS_PER_DAY == 0 => Ok(Some((m / MICROS_PER_DAY) as i32)),
                Some(_) => Err("is a timestamp, not a date"),
                None => Err("is not a date"),
            }
        }
        Value::Number(_) | Value::Bool(_) => Err("is not a date"),
        Value::Array(_) => Err(NESTED_LIST),
        Value::Object(_) => Err(NESTED_OBJECT),
    }
}

fn timestamp(v: &Value) -> Parsed<i64> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => {
            let Some(t) = text(s) else { return Ok(None) };
            parse_timestamp(t).map(Some).ok_or("is not a timestamp")
        }
        Value::Number(_) | Value::Bool(_) => Err("is not a timestamp"),
        Value::Array(_) => Err(NESTED_LIST),
        Value::Object(_) => Err(NESTED_OBJECT),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn check<T: std::fmt::Debug + PartialEq>(
        parse: impl Fn(&Value) -> Parsed<T>,
        cases: &[(Value, Parsed<T>)],
    ) {
        for (v, expect) in cases {
            assert_eq!(&parse(v), expect, "{v}");
        }
    }

    #[test]
    fn integers_from_numbers_integral_floats_and_numeric_text() {
        check(
            integer,
            &[
                (json!(42), Ok(Some(42))),
                (json!(-7), Ok(Some(-7))),
                (json!(3.0), Ok(Some(3))),
                (json!("42"), Ok(Some(42))),
                (json!(" +5 "), Ok(Some(5))),
                (json!("3.0"), Ok(Some(3))),
                (json!("1e3"), Ok(Some(1000))),
                (json!(null), Ok(None)),
                (json!(""), Ok(None)),
                (json!("  "), Ok(None)),
                (json!(i64::MIN), Ok(Some(i64::MIN))),
                (json!(3.5), Err(NOT_INTEGER)),
                (json!("abc"), Err(NOT_INTEGER)),
                (json!("NaN"), Err(NOT_INTEGER)),
                (json!(true), Err(NOT_INTEGER)),
                (json!(u64::MAX), Err(OUT_OF_RANGE)),
                (json!(1e19), Err(OUT_OF_RANGE)),
                (json!("12345678901234567890"), Err(OUT_OF_RANGE)),
                (json!([1]), Err(NESTED_LIST)),
                (json!({"a": 1}), Err(NESTED_OBJECT)),
            ],
        );
    }

    #[test]
    fn floats_from_numbers_and_numeric_text_with_nan_but_not_infinity() {
        check(
            float,
            &[
                (json!(2.5), Ok(Some(2.5))),
                (json!(3), Ok(Some(3.0))),
                (json!("2.5"), Ok(Some(2.5))),
                (json!("-1e-3"), Ok(Some(-0.001))),
                (json!(""), Ok(None)),
                (json!("inf"), Err("is not a finite number")),
                (json!("-Infinity"), Err("is not a finite number")),
                (json!("1,5"), Err("is not a number")),
                (json!(false), Err("is not a number")),
            ],
        );
        assert!(float(&json!("NaN")).unwrap().unwrap().is_nan());
        assert!(float(&json!("nan")).unwrap().unwrap().is_nan());
    }

    #[test]
    fn booleans_from_json_booleans_and_their_text_in_any_case() {
        check(
            boolean,
            &[
                (json!(true), Ok(Some(true))),
                (json!("false"), Ok(Some(false))),
                (json!("True"), Ok(Some(true))),
                (json!("FALSE"), Ok(Some(false))),
                (json!(""), Ok(None)),
                (json!(1), Err("is not a boolean")),
                (json!("yes"), Err("is not a boolean")),
            ],
        );
    }

    #[test]
    fn strings_take_numbers_and_booleans_as_their_json_text() {
        check(
            string,
            &[
                (json!("red"), Ok(Some("red".to_string()))),
                (json!(""), Ok(Some(String::new()))),
                (json!(1), Ok(Some("1".to_string()))),
                (json!(1.5), Ok(Some("1.5".to_string()))),
                (json!(true), Ok(Some("true".to_string()))),
                (json!(null), Ok(None)),
                (json!(["red"]), Err(NESTED_LIST)),
            ],
        );
    }

    #[test]
    fn dates_from_iso_dates_and_midnight_timestamps() {
        check(
            date,
            &[
                (json!("1970-01-02"), Ok(Some(1))),
                (json!("2024-02-29"), Ok(Some(19_782))),
                (json!("1969-12-31"), Ok(Some(-1))),
                (json!("2024-02-29T00:00:00.000"), Ok(Some(19_782))),
                (json!("2024-02-29T00:00:00Z"), Ok(Some(19_782))),
                (json!(""), Ok(None)),
                (
                    json!("2024-02-29 10:00:00"),
                    Err("is a timestamp, not a date"),
                ),
                (json!("2023-02-29"), Err("is not a date")),
                (json!("29/02/2024"), Err("is not a date")),
                (json!(19_782), Err("is not a date")),
            ],
        );
    }

    #[test]
    fn timestamps_from_rfc3339_datetimes_and_dates_in_utc_microseconds() {
        let day = 19_782 * MICROS_PER_DAY; // 2024-02-29
        let ten = day + 10 * 3_600_000_000;
        check(
            timestamp,
            &[
                (json!("2024-02-29T10:00:00Z"), Ok(Some(ten))),
                (json!("2024-02-29T12:00:00+02:00"), Ok(Some(ten))),
                (json!("2024-02-29 12:00:00+02:00"), Ok(Some(ten))),
                (json!("2024-02-29T12:00:00+0200"), Ok(Some(ten))),
                (json!("2024-02-29 08:00:00-02"), Ok(Some(ten))),
                (json!("2024-02-29 10:00:00Z"), Ok(Some(ten))),
                (json!("2024-02-29 10:00:00"), Ok(Some(ten))),
                (json!("2024-02-29T10:00:00"), Ok(Some(ten))),
                (json!("2024-02-29 10:00:00.25"), Ok(Some(ten + 250_000))),
                (json!("2024-02-29T10:00:00.000001Z"), Ok(Some(ten + 1))),
                (json!("2024-02-29"), Ok(Some(day))),
                (json!(""), Ok(None)),
                (json!("2024-02-29 25:00:00"), Err("is not a timestamp")),
                (json!("yesterday"), Err("is not a timestamp")),
                (json!(1_709_200_800), Err("is not a timestamp")),
            ],
        );
    }

    #[test]
    fn canonical_arrow_types_per_column_type() {
        let expect = [
            (ColumnType::Integer, DataType::Int64),
            (ColumnType::Float, DataType::Float64),
            (ColumnType::Boolean, DataType::Boolean),
            (ColumnType::String, DataType::Utf8),
            (ColumnType::Categorical, DataType::Utf8),
            (ColumnType::Date, DataType::Date32),
            (
                ColumnType::Timestamp,
                DataType::Timestamp(TimeUnit::Microsecond, None),
            ),
        ];
        for (t, dt) in expect {
            assert_eq!(arrow_type(t), dt);
        }
    }
}
