//! Garbage never panics: random JSON shapes (biased towards the keys and
//! values the formats look for) and random CSV bytes are decoded and typed,
//! or refused with an error.

use kiln_core::ColumnType;
use kiln_ml::preprocess::InputColumn;
use kiln_serve::{Frame, InputError};
use serde_json::{Map, Value, json};

/// xorshift64*: portable and seeded, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const KEYS: &[&str] = &[
    "columns", "data", "index", "inputs", "name", "shape", "datatype", "a", "b", "n", "when",
];
const STRINGS: &[&str] = &[
    "",
    " ",
    "a",
    "b",
    "n",
    "INT8",
    "UINT64",
    "FP16",
    "BYTES",
    "BOOL",
    "true",
    "False",
    "NaN",
    "inf",
    "-1e400",
    "3.0",
    "42",
    "99999999999999999999",
    "2024-02-29",
    "2024-13-01",
    "2024-02-29T10:00:00Z",
    "2024-02-29 10:00:00.123456789",
    "é\u{0}\u{7f}",
];

fn number(rng: &mut Rng) -> Value {
    match rng.below(8) {
        0 => json!(0),
        1 => json!(-1),
        2 => json!(u64::MAX),
        3 => json!(i64::MIN),
        4 => json!(0.5),
        5 => json!(1e300),
        6 => json!(rng.below(5)),
        _ => json!(-3.0),
    }
}

fn value(rng: &mut Rng, depth: usize) -> Value {
    let leaf = depth >= 4;
    match rng.below(if leaf { 4 } else { 7 }) {
        0 => Value::Null,
        1 => Value::Bool(rng.below(2) == 0),
        2 => number(rng),
        3 => Value::String(rng.pick(STRINGS).to_string()),
        4 | 5 => Value::Array((0..rng.below(5)).map(|_| value(rng, depth + 1)).collect()),
        _ => {
            let mut m = Map::new();
            for _ in 0..rng.below(5) {
                m.insert(rng.pick(KEYS).to_string(), value(rng, depth + 1));
            }
            Value::Object(m)
        }
    }
}

/// A v2 tensor that is nearly right, one field at a time random.
fn tensor(rng: &mut Rng) -> Value {
    let mut t = json!({
        "name": rng.pick(&["a", "b", "n", "when"]),
        "shape": [rng.below(4)],
        "datatype": rng.pick(&["BOOL", "INT8", "UINT8", "INT64", "FP32", "BYTES"]),
        "data": (0..rng.below(4)).map(|_| value(rng, 3)).collect::<Vec<_>>(),
    });
    let key = *rng.pick(&["name", "shape", "datatype", "data", "none"]);
    if key != "none" {
        t[key] = value(rng, 2);
    }
    t
}

/// A record with the signature's keys and mostly plausible values.
fn record(rng: &mut Rng) -> Value {
    const PLAUSIBLE: &[&str] = &["1", "2.5", "true", "2024-02-29", "2024-02-29 10:00:00", ""];
    let mut m = Map::new();
    for key in ["a", "b", "n", "when", "data", "name"] {
        let v = match rng.below(10) {
            0 => value(rng, 3),
            1..=3 => Value::Null,
            _ => Value::String(rng.pick(PLAUSIBLE).to_string()),
        };
        if rng.below(20) != 0 {
            m.insert(key.to_string(), v);
        }
    }
    Value::Object(m)
}

fn signature() -> Vec<InputColumn> {
    [
        ("a", ColumnType::Integer),
        ("b", ColumnType::Float),
        ("n", ColumnType::Boolean),
        ("when", ColumnType::Timestamp),
        ("data", ColumnType::Date),
        ("name", ColumnType::Categorical),
    ]
    .into_iter()
    .map(|(name, column_type)| InputColumn {
        name: name.into(),
        column_type,
        categories: None,
    })
    .collect()
}

/// How far random inputs got, so the test is known to reach typing.
#[derive(Default, Debug)]
struct Reached {
    decoded: usize,
    typed: usize,
}

/// Types every frame decoded; all that matters is that nothing panics.
fn type_it(frame: Result<Frame, InputError>, signature: &[InputColumn], reached: &mut Reached) {
    if let Ok(f) = frame {
        reached.decoded += 1;
        assert!(f.columns.iter().all(|(_, v)| v.len() == f.rows), "{f:?}");
        let _ = f.to_batch(signature);
        // The subset of columns it has, so typing itself is reached.
        let subset: Vec<InputColumn> = signature
            .iter()
            .filter(|c| f.column(&c.name).is_some())
            .cloned()
            .collect();
        if f.columns.len() == subset.len()
            && let Ok(batch) = f.to_batch(&subset)
        {
            assert_eq!(batch.num_rows(), f.rows);
            reached.typed += 1;
        }
    }
}

#[test]
fn random_json_shapes_are_decoded_or_refused_without_panicking() {
    let signature = signature();
    let mut reached = Reached::default();
    let mut rng = Rng(0x5EED);
    for _ in 0..20_000 {
        let v = match rng.below(4) {
            0 => value(&mut rng, 0),
            1 => Value::Array((0..rng.below(4)).map(|_| record(&mut rng)).collect()),
            2 => Value::Array((0..rng.below(4)).map(|_| tensor(&mut rng)).collect()),
            _ => json!({
                "columns": value(&mut rng, 2),
                "data": Value::Array((0..rng.below(4)).map(|_| value(&mut rng, 2)).collect()),
            }),
        };
        if let Value::Array(items) = &v {
            type_it(Frame::from_records(items), &signature, &mut reached);
        }
        type_it(Frame::from_split(&v), &signature, &mut reached);
        type_it(Frame::from_inputs(&v), &signature, &mut reached);
        type_it(Frame::from_v2(&v), &signature, &mut reached);
    }
    eprintln!("{reached:?}");
    assert!(
        reached.decoded > 1_000 && reached.typed > 100,
        "{reached:?}"
    );
}

#[test]
fn deeply_nested_v2_data_is_flattened_without_recursion() {
    let mut data = json!([1.5]);
    for _ in 0..1_000 {
        data = json!([data]);
    }
    let f = Frame::from_v2(&json!([{"name": "b", "shape": [1], "datatype": "FP64", "data": data}]))
        .unwrap();
    assert_eq!(f.column("b").unwrap(), [json!(1.5)]);
}

/// CSV-ish bytes: a header and rows of fields from a list of likely and
/// unlikely ones, with some bytes changed at random.
fn csv_bytes(rng: &mut Rng) -> Vec<u8> {
    const FIELDS: &[&[u8]] = &[
        b"",
        b"1",
        b"-2",
        b"2.5",
        b"true",
        b"FALSE",
        b"2024-02-29",
        b"2024-02-29 10:00:00",
        b"\"q,\"\"x\"\"\"",
        b"\"",
        b"\xff",
        b"\xef\xbb\xbf",
        b"a\rb",
        b"NaN",
    ];
    const NOISE: &[u8] = b"ab1.5,,\"\n\n\r-eT:\xff ";
    // Fields each column (integer, float, boolean) types well.
    const GOOD: [&[&[u8]]; 3] = [
        &[b"", b"1", b"-2", b"3.0"],
        &[b"", b"2.5", b"NaN", b"1e3"],
        &[b"", b"true", b"FALSE"],
    ];
    let mut out = b"a,b,n\n".to_vec();
    for _ in 0..rng.below(6) {
        for (i, good) in GOOD.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            let field: &[u8] = if rng.below(4) == 0 {
                rng.pick::<&[u8]>(FIELDS)
            } else {
                rng.pick::<&[u8]>(good)
            };
            out.extend_from_slice(field);
        }
        out.push(b'\n');
    }
    for _ in 0..rng.below(3) {
        if !out.is_empty() {
            let at = rng.below(out.len());
            out[at] = *rng.pick(NOISE);
        }
    }
    if rng.below(10) == 0 {
        out = (0..rng.below(120)).map(|_| *rng.pick(NOISE)).collect();
    }
    out
}

#[test]
fn random_csv_bytes_are_decoded_or_refused_without_panicking() {
    let signature = signature();
    let mut reached = Reached::default();
    let mut rng = Rng(42);
    for _ in 0..5_000 {
        type_it(
            Frame::from_csv(&csv_bytes(&mut rng)),
            &signature,
            &mut reached,
        );
    }
    eprintln!("{reached:?}");
    assert!(reached.decoded > 500 && reached.typed > 50, "{reached:?}");
}
