//! A real kiln model predicts exactly the same for a request, in every
//! format, as for the same rows read from a CSV file the way `kiln predict`
//! reads them.

use std::path::Path;

use arrow_array::RecordBatch;
use kiln_core::ColumnType;
use kiln_data::read::{ReadOptions, open};
use kiln_ml::automl::{AutoMlOptions, train};
use kiln_ml::model::{Model, Scored};
use kiln_serve::Frame;
use serde_json::{Value, json};

/// A small portable generator (xorshift64*), so the data is the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// One row of the table, as typed values.
struct Row {
    age: i64,
    income: Option<f64>,
    city: Option<&'static str>,
    member: bool,
    /// Days since 1970-01-01.
    joined: i64,
    /// Seconds since the epoch.
    seen: i64,
}

const CITIES: [&str; 4] = ["Oslo", "Lima", "Pune", "Kyiv"];

fn rows(seed: u64, n: usize, unseen: bool) -> Vec<Row> {
    let mut rng = Rng(seed);
    (0..n)
        .map(|_| Row {
            age: 18 + rng.below(60) as i64,
            // Two decimals, so CSV text and JSON numbers are the same doubles.
            income: (!rng.chance(5)).then(|| (20_000 + rng.below(80_000)) as f64 + 0.25),
            city: if rng.chance(5) {
                None
            } else if unseen && rng.chance(10) {
                Some("Baku")
            } else {
                Some(CITIES[rng.below(4) as usize])
            },
            member: rng.chance(40),
            joined: 18_262 + rng.below(1_460) as i64, // 2020 to 2023
            seen: 1_704_067_200 + rng.below(365 * 86_400) as i64, // 2024
        })
        .collect()
}

fn label(r: &Row, rng: &mut Rng) -> &'static str {
    let mut score = (r.age as f64 - 45.0) / 10.0;
    score += r.income.map_or(0.0, |i| (i - 60_000.0) / 20_000.0);
    score += if r.member { 1.5 } else { -0.5 };
    score += if r.city == Some("Oslo") { 1.0 } else { 0.0 };
    score += ((r.joined - 18_262) as f64 / 1_460.0) - 0.5;
    score += (rng.below(100) as f64 - 50.0) / 40.0;
    if score > 0.0 { "yes" } else { "no" }
}

fn date_text(days: i64) -> String {
    (chrono::DateTime::UNIX_EPOCH + chrono::TimeDelta::days(days))
        .format("%Y-%m-%d")
        .to_string()
}

fn timestamp_text(secs: i64, rfc3339: bool) -> String {
    let t = chrono::DateTime::UNIX_EPOCH + chrono::TimeDelta::seconds(secs);
    if rfc3339 {
        t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        t.format("%Y-%m-%d %H:%M:%S").to_string()
    }
}

/// The rows as CSV, with the target when labels are given.
fn csv(rows: &[Row], labels: Option<&[&str]>) -> String {
    let mut out = String::from("age,income,city,member,joined,seen");
    if labels.is_some() {
        out.push_str(",bought");
    }
    out.push('\n');
    for (i, r) in rows.iter().enumerate() {
        out.push_str(&format!(
            "{},{},{},{},{},{}",
            r.age,
            r.income.map_or(String::new(), |x| format!("{x:.2}")),
            r.city.unwrap_or(""),
            r.member,
            date_text(r.joined),
            timestamp_text(r.seen, false),
        ));
        if let Some(l) = labels {
            out.push(',');
            out.push_str(l[i]);
        }
        out.push('\n');
    }
    out
}

/// The rows as JSON records, in natural JSON types; timestamps in RFC 3339.
fn json_records(rows: &[Row]) -> Vec<Value> {
    rows.iter()
        .map(|r| {
            json!({
                "age": r.age,
                "income": r.income,
                "city": r.city,
                "member": r.member,
                "joined": date_text(r.joined),
                "seen": timestamp_text(r.seen, true),
            })
        })
        .collect()
}

/// Reads a CSV file as `kiln predict` and `kiln train` do.
fn kiln_read(path: &Path) -> Vec<RecordBatch> {
    open(path, &ReadOptions::default(), false)
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn trained(dir: &Path) -> Model {
    let train_rows = rows(7, 400, false);
    let mut rng = Rng(99);
    let labels: Vec<&str> = train_rows.iter().map(|r| label(r, &mut rng)).collect();
    let path = dir.join("train.csv");
    std::fs::write(&path, csv(&train_rows, Some(&labels))).unwrap();
    let opts = AutoMlOptions {
        max_trials: Some(2),
        ..AutoMlOptions::default()
    };
    train(&kiln_read(&path), "bought", &opts, &mut |_| {})
        .unwrap()
        .model
}

fn assert_same(got: &Scored, expected: &Scored, format: &str) {
    assert_eq!(got.predictions, expected.predictions, "{format}");
    assert_eq!(got.notes, expected.notes, "{format}");
}

#[test]
fn every_request_format_predicts_exactly_what_kiln_predicts_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let model = trained(dir.path());
    let types: Vec<(&str, ColumnType)> = model
        .inputs()
        .iter()
        .map(|c| (c.name.as_str(), c.column_type))
        .collect();
    assert_eq!(
        types,
        [
            ("age", ColumnType::Integer),
            ("income", ColumnType::Float),
            ("city", ColumnType::String),
            ("member", ColumnType::Boolean),
            ("joined", ColumnType::Date),
            ("seen", ColumnType::Timestamp),
        ]
    );

    // Rows never seen in training, with missing values and an unseen city.
    let score_rows = rows(1234, 80, true);
    let score_csv = csv(&score_rows, None);
    let path = dir.path().join("score.csv");
    std::fs::write(&path, &score_csv).unwrap();
    let expected = model.predict(&kiln_read(&path)).unwrap();
    assert_eq!(expected.predictions.len(), 80);
    assert!(
        expected.notes.iter().any(|n| n.column == "city"),
        "the unseen city is counted: {:?}",
        expected.notes
    );

    let records = json_records(&score_rows);
    let names = ["age", "income", "city", "member", "joined", "seen"];
    let split = json!({
        "columns": names,
        "data": records.iter().map(|r| names.map(|n| r[n].clone())).collect::<Vec<_>>(),
    });
    let dict: serde_json::Map<String, Value> = names
        .iter()
        .map(|n| {
            (
                n.to_string(),
                Value::Array(records.iter().map(|r| r[n].clone()).collect()),
            )
        })
        .collect();
    let tensor = |name: &str, datatype: &str| {
        json!({
            "name": name,
            "shape": [records.len(), 1],
            "datatype": datatype,
            "data": records.iter().map(|r| json!([r[name].clone()])).collect::<Vec<_>>(),
        })
    };
    let v2 = json!([
        tensor("age", "INT64"),
        tensor("income", "FP64"),
        tensor("city", "BYTES"),
        tensor("member", "BOOL"),
        tensor("joined", "BYTES"),
        tensor("seen", "BYTES"),
    ]);
    let frames = [
        ("csv", Frame::from_csv(score_csv.as_bytes()).unwrap()),
        ("dataframe_records", Frame::from_records(&records).unwrap()),
        ("dataframe_split", Frame::from_split(&split).unwrap()),
        (
            "inputs (dict)",
            Frame::from_inputs(&Value::Object(dict)).unwrap(),
        ),
        (
            "instances (records)",
            Frame::from_inputs(&Value::Array(records.clone())).unwrap(),
        ),
        ("v2", Frame::from_v2(&v2).unwrap()),
    ];
    let json_batch = frames[1].1.to_batch(model.inputs()).unwrap();
    for (format, frame) in &frames {
        let batch = frame.to_batch(model.inputs()).unwrap();
        assert_eq!(batch, json_batch, "{format}: the same typed batch");
        let got = model.predict(std::slice::from_ref(&batch)).unwrap();
        assert_same(&got, &expected, format);
    }

    // One row alone predicts what it predicts within the table.
    let one = Frame::from_inputs(&records[3]).unwrap();
    let got = model
        .predict(&[one.to_batch(model.inputs()).unwrap()])
        .unwrap();
    let all = expected.predictions.clone();
    match (&got.predictions, &all) {
        (kiln_ml::Predictions::Binary(a), kiln_ml::Predictions::Binary(b)) => {
            assert_eq!(a[0], b[3]);
        }
        other => panic!("a binary model predicts probabilities, got {other:?}"),
    }
}

#[test]
fn the_training_file_itself_less_its_target_predicts_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let model = trained(dir.path());
    let train = std::fs::read_to_string(dir.path().join("train.csv")).unwrap();
    // The target is not part of the signature: a request with it is refused.
    let with_target = Frame::from_csv(train.as_bytes()).unwrap();
    let e = with_target.to_batch(model.inputs()).unwrap_err();
    assert_eq!(e.column.as_deref(), Some("bought"));
    let without: String = train
        .lines()
        .map(|l| format!("{}\n", &l[..l.rfind(',').unwrap()]))
        .collect();
    let path = dir.path().join("features.csv");
    std::fs::write(&path, &without).unwrap();
    let expected = model.predict(&kiln_read(&path)).unwrap();
    let frame = Frame::from_csv(without.as_bytes()).unwrap();
    let got = model
        .predict(&[frame.to_batch(model.inputs()).unwrap()])
        .unwrap();
    assert_same(&got, &expected, "csv");
}
