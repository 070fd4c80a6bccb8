//! `Frame::to_batch`: every column type in kiln's canonical Arrow type, and
//! every value, column or shape that does not fit the signature refused
//! with its column, row and a fix.

use arrow_array::cast::AsArray;
use arrow_array::types::{Date32Type, Float64Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use kiln_core::ColumnType;
use kiln_ml::preprocess::InputColumn;
use kiln_serve::{Frame, InputError};
use serde_json::{Value, json};

fn col(name: &str, column_type: ColumnType) -> InputColumn {
    InputColumn {
        name: name.into(),
        column_type,
        categories: (column_type == ColumnType::Categorical)
            .then(|| vec!["red".to_string(), "blue".to_string()]),
    }
}

/// One column of each type, in an order unlike the requests'.
fn signature() -> Vec<InputColumn> {
    vec![
        col("when", ColumnType::Timestamp),
        col("n", ColumnType::Integer),
        col("x", ColumnType::Float),
        col("ok", ColumnType::Boolean),
        col("name", ColumnType::String),
        col("colour", ColumnType::Categorical),
        col("day", ColumnType::Date),
    ]
}

fn records(rows: Value) -> Frame {
    Frame::from_records(rows.as_array().unwrap()).unwrap()
}

#[test]
fn every_column_type_is_typed_to_kiln_canonical_arrow_types_in_signature_order() {
    let frame = records(json!([
        {"n": 42, "x": 2.5, "ok": true, "name": "Ada", "colour": "red", "day": "2024-02-29", "when": "2024-02-29T10:00:00Z"},
        {"n": 3.0, "x": 7, "ok": "False", "name": 12, "colour": "green", "day": "2024-03-01T00:00:00.000", "when": "2024-02-29 12:00:00.5"},
        {"n": "-7", "x": "1e3", "ok": "true", "name": true, "colour": 1.5, "day": "1969-12-31", "when": "2024-02-29"},
        {"n": null, "x": "NaN", "ok": null, "name": null, "colour": null, "day": null, "when": null},
        {"n": "", "x": "", "ok": "", "name": "", "colour": "", "day": " ", "when": ""}
    ]));
    let batch = frame.to_batch(&signature()).unwrap();
    let schema = batch.schema();
    let fields: Vec<(&str, &DataType)> = schema
        .fields()
        .iter()
        .map(|f| (f.name().as_str(), f.data_type()))
        .collect();
    assert_eq!(
        fields,
        [
            ("when", &DataType::Timestamp(TimeUnit::Microsecond, None)),
            ("n", &DataType::Int64),
            ("x", &DataType::Float64),
            ("ok", &DataType::Boolean),
            ("name", &DataType::Utf8),
            ("colour", &DataType::Utf8),
            ("day", &DataType::Date32),
        ]
    );
    assert!(schema.fields().iter().all(|f| f.is_nullable()));
    assert_eq!(batch.num_rows(), 5);

    let ints = batch.column(1).as_primitive::<Int64Type>();
    assert_eq!(
        ints.iter().collect::<Vec<_>>(),
        [Some(42), Some(3), Some(-7), None, None]
    );
    let floats = batch.column(2).as_primitive::<Float64Type>();
    assert_eq!(&floats.values()[..3], [2.5, 7.0, 1000.0]);
    assert!(floats.value(3).is_nan() && !floats.is_null(3));
    assert!(floats.is_null(4));
    let bools = batch.column(3).as_boolean();
    assert_eq!(
        bools.iter().collect::<Vec<_>>(),
        [Some(true), Some(false), Some(true), None, None]
    );
    let names = batch.column(4).as_string::<i32>();
    assert_eq!(
        names.iter().collect::<Vec<_>>(),
        [Some("Ada"), Some("12"), Some("true"), None, Some("")]
    );
    // An unseen category ("green") is kept: the model treats it as missing.
    let colours = batch.column(5).as_string::<i32>();
    assert_eq!(
        colours.iter().collect::<Vec<_>>(),
        [Some("red"), Some("green"), Some("1.5"), None, Some("")]
    );
    let days = batch.column(6).as_primitive::<Date32Type>();
    assert_eq!(
        days.iter().collect::<Vec<_>>(),
        [Some(19_782), Some(19_783), Some(-1), None, None]
    );
    let day = 19_782 * 86_400_000_000i64;
    let hour = 3_600_000_000i64;
    let whens = batch.column(0).as_primitive::<TimestampMicrosecondType>();
    assert_eq!(
        whens.iter().collect::<Vec<_>>(),
        [
            Some(day + 10 * hour),
            Some(day + 12 * hour + 500_000),
            Some(day),
            None,
            None
        ]
    );
}

#[test]
fn csv_text_types_like_json_values() {
    let csv = Frame::from_csv(
        b"n,x,ok,name,colour,day,when\n42,2.5,TRUE,Ada,red,2024-02-29,2024-02-29T10:00:00Z\n,,,,,,\n",
    )
    .unwrap();
    let json = records(json!([
        {"n": 42, "x": 2.5, "ok": true, "name": "Ada", "colour": "red", "day": "2024-02-29", "when": "2024-02-29 10:00:00"},
        {"n": null, "x": null, "ok": null, "name": null, "colour": null, "day": null, "when": null}
    ]));
    assert_eq!(
        csv.to_batch(&signature()).unwrap(),
        json.to_batch(&signature()).unwrap()
    );
}

/// A one-row-per-value request for `column`: `values[row]` at `row`, a
/// valid value for every other column.
fn with_values(column: &str, values: &[Value]) -> Frame {
    let good = json!({"n": 1, "x": 1.5, "ok": true, "name": "a", "colour": "red", "day": "2024-01-01", "when": "2024-01-01T00:00:00Z"});
    let rows: Vec<Value> = values
        .iter()
        .map(|v| {
            let mut r = good.clone();
            r[column] = v.clone();
            r
        })
        .collect();
    Frame::from_records(&rows).unwrap()
}

fn check(
    result: Result<RecordBatch, InputError>,
    column: Option<&str>,
    row: Option<usize>,
    parts: &[&str],
) {
    let e = result.expect_err("a refusal");
    assert_eq!(e.column.as_deref(), column, "{e}");
    assert_eq!(e.row, row, "{e}");
    for part in parts {
        assert!(e.message.contains(part), "`{part}` is not in: {e}");
    }
}

#[test]
fn a_value_of_the_wrong_type_names_column_row_value_and_expected_type() {
    let cases: &[(&str, Value, &str, &str)] = &[
        (
            "n",
            json!("abc"),
            r#"column "n", row 3: "abc" is not an integer"#,
            "send a whole number such as 42",
        ),
        (
            "n",
            json!(3.5),
            r#"column "n", row 3: 3.5 is not an integer"#,
            "whole number",
        ),
        (
            "n",
            json!(true),
            r#"column "n", row 3: true is not an integer"#,
            "whole number",
        ),
        (
            "n",
            json!(18446744073709551615u64),
            "18446744073709551615 is outside the integer range",
            "whole number",
        ),
        (
            "x",
            json!("abc"),
            r#"column "x", row 3: "abc" is not a number"#,
            "send a number such as 2.5",
        ),
        (
            "x",
            json!("inf"),
            r#""inf" is not a finite number"#,
            "send a number",
        ),
        (
            "ok",
            json!("yes"),
            r#"column "ok", row 3: "yes" is not a boolean"#,
            "send true or false",
        ),
        ("ok", json!(1), "1 is not a boolean", "send true or false"),
        (
            "name",
            json!(["a"]),
            r#"column "name", row 3: ["a"] is a list, not a single value"#,
            "send text",
        ),
        (
            "colour",
            json!({"c": "red"}),
            r#"{"c":"red"} is an object, not a single value"#,
            "send text",
        ),
        (
            "day",
            json!("03/01/2024"),
            r#"column "day", row 3: "03/01/2024" is not a date"#,
            "\"YYYY-MM-DD\"",
        ),
        (
            "day",
            json!("2024-03-01 10:30:00"),
            "is a timestamp, not a date",
            "\"YYYY-MM-DD\"",
        ),
        (
            "day",
            json!(19_782),
            "19782 is not a date",
            "\"YYYY-MM-DD\"",
        ),
        (
            "when",
            json!("noon"),
            r#"column "when", row 3: "noon" is not a timestamp"#,
            "RFC 3339",
        ),
        (
            "when",
            json!(1_709_200_800),
            "1709200800 is not a timestamp",
            "\"YYYY-MM-DD HH:MM:SS\"",
        ),
    ];
    for (column, bad, what, fix) in cases {
        let mut values = vec![json!(null); 3];
        values.push(bad.clone());
        values.push(bad.clone()); // Only the first bad row is reported.
        check(
            with_values(column, &values).to_batch(&signature()),
            Some(column),
            Some(3),
            &[what, fix, "or null for a missing value"],
        );
    }
}

#[test]
fn a_long_bad_value_is_cut_short_in_the_message() {
    let long = "z".repeat(500);
    let e = with_values("n", &[json!(long)])
        .to_batch(&signature())
        .unwrap_err();
    assert!(e.message.len() < 300, "{e}");
    assert!(e.message.contains("zzz…"), "{e}");
}

#[test]
fn missing_and_extra_columns_are_all_named_in_one_error() {
    let one = |v: Value| records(json!([v]));
    let full = json!({"n": 1, "x": 1.5, "ok": true, "name": "a", "colour": "red", "day": "2024-01-01", "when": "2024-01-01"});
    assert!(one(full.clone()).to_batch(&signature()).is_ok());
    let signature_list = "when (timestamp), n (integer), x (float), ok (boolean), name (string), colour (categorical), day (date)";

    let mut missing_two = full.clone();
    missing_two.as_object_mut().unwrap().remove("x");
    missing_two.as_object_mut().unwrap().remove("day");
    check(
        one(missing_two).to_batch(&signature()),
        None,
        None,
        &[
            r#"the request lacks the model's columns "x", "day""#,
            "send every column of the model's signature",
            signature_list,
        ],
    );

    let mut missing_one = full.clone();
    missing_one.as_object_mut().unwrap().remove("n");
    check(
        one(missing_one).to_batch(&signature()),
        Some("n"),
        None,
        &[r#"lacks the model's column "n";"#, signature_list],
    );

    let mut extra = full.clone();
    extra["target"] = json!(1);
    check(
        one(extra).to_batch(&signature()),
        Some("target"),
        None,
        &[
            r#"has column the model does not take: "target""#,
            "and no other",
        ],
    );

    let mut both = full.clone();
    both.as_object_mut().unwrap().remove("ok");
    both.as_object_mut().unwrap().remove("name");
    both["OK"] = json!(true);
    both["extra"] = json!(0);
    check(
        one(both).to_batch(&signature()),
        None,
        None,
        &[
            r#"lacks the model's columns "ok", "name" and has columns the model does not take: "OK", "extra""#,
            r#"("OK" differs from "ok" only in case or spaces"#,
            signature_list,
        ],
    );
}

#[test]
fn hand_built_frames_with_uneven_or_repeated_columns_are_refused() {
    let sig = [col("n", ColumnType::Integer), col("x", ColumnType::Float)];
    let uneven = Frame {
        columns: vec![
            ("n".into(), vec![json!(1), json!(2)]),
            ("x".into(), vec![json!(1.0)]),
        ],
        rows: 2,
    };
    check(
        uneven.to_batch(&sig),
        Some("x"),
        None,
        &["column \"x\" has 1 values but the request has 2 rows"],
    );
    let repeated = Frame {
        columns: vec![("n".into(), vec![json!(1)]), ("n".into(), vec![json!(2)])],
        rows: 1,
    };
    check(
        repeated.to_batch(&sig),
        Some("n"),
        None,
        &["column \"n\" appears twice"],
    );
}

#[test]
fn unseen_categories_and_all_null_columns_are_not_errors() {
    let sig = [col("colour", ColumnType::Categorical)];
    let batch = records(json!([{"colour": "mauve"}, {"colour": null}]))
        .to_batch(&sig)
        .unwrap();
    assert_eq!(batch.column(0).null_count(), 1);
    let sig = [col("n", ColumnType::Integer)];
    let batch = records(json!([{"n": null}])).to_batch(&sig).unwrap();
    assert_eq!(batch.column(0).data_type(), &DataType::Int64);
    assert_eq!(batch.column(0).null_count(), 1);
}
