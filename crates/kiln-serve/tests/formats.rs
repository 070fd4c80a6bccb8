//! Each wire format decodes to the same frame, and each malformed request is
//! refused with where it went wrong and how to fix it.

use kiln_core::ColumnType;
use kiln_ml::preprocess::InputColumn;
use kiln_serve::{Frame, InputError, MAX_ROWS};
use serde_json::{Value, json};

/// The frame every format below decodes to. Column names are in
/// alphabetical order, so JSON objects give the same order whether or not
/// serde_json preserves key order.
fn expected() -> Frame {
    Frame {
        columns: vec![
            ("age".into(), vec![json!(42), json!(37), json!(null)]),
            (
                "city".into(),
                vec![json!("Oslo"), json!("Lima"), json!("Oslo")],
            ),
            (
                "member".into(),
                vec![json!(true), json!(false), json!(null)],
            ),
        ],
        rows: 3,
    }
}

fn signature() -> Vec<InputColumn> {
    let col = |name: &str, column_type| InputColumn {
        name: name.into(),
        column_type,
        categories: None,
    };
    vec![
        col("age", ColumnType::Integer),
        col("city", ColumnType::String),
        col("member", ColumnType::Boolean),
    ]
}

#[test]
fn every_json_format_decodes_to_the_same_frame() {
    let records = json!([
        {"age": 42, "city": "Oslo", "member": true},
        {"member": false, "city": "Lima", "age": 37},
        {"city": "Oslo"}
    ]);
    let split = json!({
        "columns": ["age", "city", "member"],
        "data": [[42, "Oslo", true], [37, "Lima", false], [null, "Oslo", null]],
        "index": [10, 11, 12]
    });
    let dict = json!({
        "age": [42, 37, null],
        "city": ["Oslo", "Lima", "Oslo"],
        "member": [true, false, null]
    });
    let v2 = json!([
        {"name": "age", "shape": [3], "datatype": "INT64", "data": [42, 37, null]},
        {"name": "city", "shape": [3, 1], "datatype": "BYTES", "data": [["Oslo"], ["Lima"], ["Oslo"]]},
        {"name": "member", "shape": [3, 1], "datatype": "BOOL", "data": [true, false, null]}
    ]);
    let records_list = records.as_array().unwrap();
    assert_eq!(Frame::from_records(records_list).unwrap(), expected());
    assert_eq!(Frame::from_inputs(&records).unwrap(), expected());
    assert_eq!(Frame::from_split(&split).unwrap(), expected());
    assert_eq!(Frame::from_inputs(&dict).unwrap(), expected());
    assert_eq!(Frame::from_v2(&v2).unwrap(), expected());
    assert_eq!(
        Frame::from_v2(&json!({"inputs": v2})).unwrap(),
        expected(),
        "a whole v2 request body is taken too"
    );
}

#[test]
fn csv_decodes_to_text_that_types_to_the_same_batch() {
    let csv =
        Frame::from_csv(b"age,city,member\n42,Oslo,true\n37,\"Lima\",false\n,Oslo,\n").unwrap();
    assert_eq!(
        csv,
        Frame {
            columns: vec![
                ("age".into(), vec![json!("42"), json!("37"), json!(null)]),
                (
                    "city".into(),
                    vec![json!("Oslo"), json!("Lima"), json!("Oslo")]
                ),
                (
                    "member".into(),
                    vec![json!("true"), json!("false"), json!(null)]
                ),
            ],
            rows: 3,
        }
    );
    assert_eq!(
        csv.to_batch(&signature()).unwrap(),
        expected().to_batch(&signature()).unwrap()
    );
}

#[test]
fn csv_takes_quotes_crlf_line_ends_and_a_byte_order_mark() {
    let f = Frame::from_csv(b"\xEF\xBB\xBFnote,n\r\n\"a, \"\"b\"\"\nc\",1\r\n,2\r\n").unwrap();
    assert_eq!(f.names().collect::<Vec<_>>(), ["note", "n"]);
    assert_eq!(f.rows, 2);
    assert_eq!(
        f.column("note").unwrap(),
        [json!("a, \"b\"\nc"), json!(null)]
    );
}

#[test]
fn an_inputs_dict_of_single_values_is_one_row() {
    let f = Frame::from_inputs(&json!({"age": 42, "city": "Oslo", "member": null})).unwrap();
    assert_eq!(f.rows, 1);
    assert_eq!(f.column("age").unwrap(), [json!(42)]);
    assert_eq!(f.column("member").unwrap(), [json!(null)]);
}

#[test]
fn v2_nested_data_is_read_row_major_whatever_its_nesting() {
    for data in [
        json!([1, 2, 3]),
        json!([[1], [2], [3]]),
        json!([[1, 2], [3]]),
    ] {
        let f = Frame::from_v2(&json!([
            {"name": "x", "shape": [3, 1], "datatype": "FP32", "data": data}
        ]))
        .unwrap();
        assert_eq!(f.column("x").unwrap(), [json!(1), json!(2), json!(3)]);
    }
}

#[test]
fn v2_parameters_and_unknown_fields_are_ignored() {
    let f = Frame::from_v2(&json!([
        {"name": "x", "shape": [1], "datatype": "UINT8", "data": [255], "parameters": {"content_type": "np"}}
    ]))
    .unwrap();
    assert_eq!(f.column("x").unwrap(), [json!(255)]);
}

#[test]
fn empty_requests_decode_to_empty_frames_and_refuse_to_type() {
    let frames = [
        Frame::from_records(&[]).unwrap(),
        Frame::from_inputs(&json!([])).unwrap(),
        Frame::from_inputs(&json!({})).unwrap(),
        Frame::from_split(&json!({"columns": ["age"], "data": []})).unwrap(),
        Frame::from_v2(&json!([])).unwrap(),
        Frame::from_v2(&json!([{"name": "age", "shape": [0], "datatype": "INT64", "data": []}]))
            .unwrap(),
        Frame::from_csv(b"age,city,member\n").unwrap(),
    ];
    for f in frames {
        assert_eq!(f.rows, 0, "{f:?}");
        let e = f.to_batch(&signature()).unwrap_err();
        assert_eq!((e.column.as_deref(), e.row), (None, None));
        assert!(e.message.contains("the request has no rows"), "{e}");
        assert!(e.message.contains("age (integer), city (string)"), "{e}");
    }
}

/// A bad request, and the column, row and message parts of its refusal.
type Case<'a> = (Value, Option<&'a str>, Option<usize>, &'a [&'a str]);

/// Asserts an error's column, row and message parts.
fn check(
    result: Result<Frame, InputError>,
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
    assert_eq!(e.to_string(), e.message);
}

#[test]
fn bad_records_name_the_row() {
    check(
        Frame::from_records(&[json!({"age": 1}), json!(5)]),
        None,
        Some(1),
        &[
            "row 1: 5 is a number, not a record",
            "send each row as an object",
        ],
    );
    check(
        Frame::from_inputs(&json!([{"age": 1}, [1, 2]])),
        None,
        Some(1),
        &[
            "row 1: [1,2] is a list, not a record",
            "`inputs` and `instances` take",
        ],
    );
}

#[test]
fn bad_splits_say_what_is_missing_or_misshapen() {
    let cases: &[Case] = &[
        (
            json!([1]),
            None,
            None,
            &["dataframe_split is a list, not an object", "\"columns\""],
        ),
        (json!({"data": [[1]]}), None, None, &["has no `columns`"]),
        (
            json!({"columns": "age", "data": []}),
            None,
            None,
            &["`columns` is a string, not a list of names"],
        ),
        (
            json!({"columns": ["age", 3], "data": []}),
            None,
            None,
            &["`columns[1]` is 3 (a number), not a column name"],
        ),
        (
            json!({"columns": ["age", "age"], "data": []}),
            Some("age"),
            None,
            &["column \"age\" appears twice", "send each column once"],
        ),
        (json!({"columns": ["age"]}), None, None, &["has no `data`"]),
        (
            json!({"columns": ["age"], "data": {"age": 1}}),
            None,
            None,
            &["`data` is an object, not a list of rows"],
        ),
        (
            json!({"columns": ["age", "city"], "data": [[1, "a"], 7]}),
            None,
            Some(1),
            &["row 1: 7 is a number, not a list of values", "(age, city)"],
        ),
        (
            json!({"columns": ["age", "city"], "data": [[1, "a"], [2, "b"], [3]]}),
            None,
            Some(2),
            &[
                "row 2 has 1 values but `columns` names 2 (age, city)",
                "one value per column in every row",
            ],
        ),
    ];
    for (split, column, row, parts) in cases {
        check(Frame::from_split(split), *column, *row, parts);
    }
}

#[test]
fn bad_inputs_say_which_form_to_send() {
    check(
        Frame::from_inputs(&json!(5)),
        None,
        None,
        &["`inputs` is a number", "a dict of columns"],
    );
    check(
        Frame::from_inputs(&json!(null)),
        None,
        None,
        &["`inputs` is null"],
    );
    check(
        Frame::from_inputs(&json!({"age": [1, 2], "city": "Oslo"})),
        Some("city"),
        None,
        &[
            "column \"city\" is a string",
            "column \"age\" is a list",
            "a list of values for every column",
        ],
    );
    check(
        Frame::from_inputs(&json!({"age": 1, "city": ["Oslo"]})),
        Some("city"),
        None,
        &["column \"city\" is a list but column \"age\" is a single value"],
    );
    check(
        Frame::from_inputs(&json!({"age": [1, 2], "city": ["Oslo"]})),
        Some("city"),
        None,
        &[
            "column \"city\" has 1 values but column \"age\" has 2",
            "the same number of values",
        ],
    );
}

#[test]
fn bad_v2_tensors_name_the_tensor_and_row() {
    let t = |name: &str, shape: Value, datatype: &str, data: Value| json!({"name": name, "shape": shape, "datatype": datatype, "data": data});
    let cases: Vec<Case> = vec![
        (
            json!("x"),
            None,
            None,
            &[
                "`inputs` is a string, not a list of tensors",
                "one tensor per column",
            ],
        ),
        (
            json!([1]),
            None,
            None,
            &["`inputs[0]` is a number, not a tensor"],
        ),
        (
            json!([{"shape": [1], "datatype": "BOOL", "data": [true]}]),
            None,
            None,
            &["`inputs[0]` has no `name`"],
        ),
        (
            json!([{"name": "a", "shape": [1], "data": [true]}]),
            Some("a"),
            None,
            &["tensor \"a\" has no `datatype`", "BOOL, INT8"],
        ),
        (
            json!([t("a", json!([1]), "STRING", json!(["x"]))]),
            Some("a"),
            None,
            &["datatype `STRING`", "BYTES"],
        ),
        (
            json!([{"name": "a", "datatype": "BOOL", "data": [true]}]),
            Some("a"),
            None,
            &["has no `shape`", "[N] or [N, 1]"],
        ),
        (
            json!([t("a", json!([2, 2]), "FP64", json!([1, 2, 3, 4]))]),
            Some("a"),
            None,
            &["has shape [2,2]", "one tensor per column"],
        ),
        (
            json!([t("a", json!([-1]), "FP64", json!([]))]),
            Some("a"),
            None,
            &["which holds -1"],
        ),
        (
            json!([{"name": "a", "shape": [1], "datatype": "BOOL"}]),
            Some("a"),
            None,
            &["has no `data`"],
        ),
        (
            json!([t("a", json!([1]), "BOOL", json!(true))]),
            Some("a"),
            None,
            &["`data` a boolean, not a list"],
        ),
        (
            json!([t("a", json!([3]), "FP64", json!([1.5, 2.5]))]),
            Some("a"),
            None,
            &["has shape [3] but 2 values", "the shape's first number"],
        ),
        (
            json!([t("a", json!([1]), "FP64", json!([1.5, 2.5]))]),
            Some("a"),
            None,
            &["has shape [1] but more than 1 values"],
        ),
        (
            json!([
                t("a", json!([2]), "FP64", json!([1, 2])),
                t("b", json!([3]), "FP64", json!([1, 2, 3]))
            ]),
            Some("b"),
            None,
            &[
                "tensor \"b\" has 3 rows but tensor \"a\" has 2",
                "the same number of rows",
            ],
        ),
        (
            json!([
                t("a", json!([1]), "FP64", json!([1])),
                t("a", json!([1]), "FP64", json!([2]))
            ]),
            Some("a"),
            None,
            &["tensor \"a\" appears twice"],
        ),
        (
            json!([t("a", json!([2]), "INT8", json!([1, 300]))]),
            Some("a"),
            Some(1),
            &[
                "tensor \"a\", row 1: 300 is not INT8 data",
                "from -128 to 127",
            ],
        ),
        (
            json!([t("a", json!([2]), "UINT8", json!([1, -1]))]),
            Some("a"),
            Some(1),
            &["-1 is not UINT8 data", "from 0 to 255"],
        ),
        (
            json!([t("a", json!([2]), "INT64", json!([1, 2.5]))]),
            Some("a"),
            Some(1),
            &["2.5 is not INT64 data"],
        ),
        (
            json!([t("a", json!([2]), "BOOL", json!([true, "true"]))]),
            Some("a"),
            Some(1),
            &["\"true\" is not BOOL data", "send true or false"],
        ),
        (
            json!([t("a", json!([2]), "BYTES", json!(["x", 5]))]),
            Some("a"),
            Some(1),
            &["5 is not BYTES data", "send strings"],
        ),
        (
            json!([t("a", json!([1]), "FP32", json!(["1.5"]))]),
            Some("a"),
            Some(0),
            &["\"1.5\" is not FP32 data", "send numbers"],
        ),
    ];
    for (inputs, column, row, parts) in cases {
        check(Frame::from_v2(&inputs), column, row, parts);
    }
}

#[test]
fn bad_csv_names_the_row_after_the_header() {
    check(
        Frame::from_csv(b""),
        None,
        None,
        &["the CSV body is empty", "header line"],
    );
    check(
        Frame::from_csv(b"age,ci\xfft\n1,2\n"),
        None,
        None,
        &["the header line: the CSV is not valid UTF-8"],
    );
    check(
        Frame::from_csv(b" \n"),
        None,
        None,
        &["the CSV body is empty"],
    );
    check(
        Frame::from_csv(b"age,city\n1,Oslo\n2\n"),
        None,
        Some(1),
        &[
            "row 1: the CSV line has 1 field but the header names 2 (age, city)",
            "quote fields",
        ],
    );
    check(
        Frame::from_csv(b"age,city\n1,Oslo,x\n"),
        None,
        Some(0),
        &["row 0: the CSV line has 3 fields but the header names 2"],
    );
    check(
        Frame::from_csv(b"age,city\n1,Oslo\n2,Os\xfflo\n"),
        Some("city"),
        Some(1),
        &[
            "row 1: column \"city\" the CSV is not valid UTF-8",
            "send UTF-8",
        ],
    );
    check(
        Frame::from_csv(b"age,,city\n1,2,3\n"),
        None,
        None,
        &["CSV header field 2 is empty", "name every column"],
    );
    check(
        Frame::from_csv(b"age,city,age\n1,2,3\n"),
        Some("age"),
        None,
        &["CSV column \"age\" appears twice"],
    );
}

#[test]
fn requests_over_the_row_cap_are_refused_before_typing() {
    let over = MAX_ROWS + 1;
    let cap = format!("more than the {MAX_ROWS}");
    let results = [
        Frame::from_records(&vec![json!({}); over]),
        Frame::from_inputs(&json!({ "age": vec![1; over] })),
        Frame::from_split(&json!({"columns": [], "data": vec![json!([]); over]})),
        Frame::from_v2(&json!([{"name": "a", "shape": [over], "datatype": "FP64", "data": []}])),
        Frame::from_v2(
            &json!([{"name": "a", "shape": [u64::MAX, 1], "datatype": "FP64", "data": []}]),
        ),
    ];
    for r in results {
        check(r, None, None, &[&cap, "split it into requests"]);
    }
    let mut csv = b"age\n".to_vec();
    csv.extend(b"1\n".repeat(over));
    check(
        Frame::from_csv(&csv),
        None,
        None,
        &["more than 100000 rows", "split it"],
    );
    let f = Frame {
        columns: vec![("age".into(), vec![json!(1); over])],
        rows: over,
    };
    let e = f.to_batch(&signature()).unwrap_err();
    assert!(e.message.contains(&cap), "{e}");
}

#[test]
fn records_with_too_many_different_keys_are_refused() {
    let records: Vec<Value> = (0..5_000).map(|i| json!({ format!("k{i}"): 1 })).collect();
    check(
        Frame::from_records(&records),
        None,
        None,
        &["different keys", "send the same columns in every record"],
    );
}
