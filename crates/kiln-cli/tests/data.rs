//! `kiln init` and `kiln data …` end to end, on SQLite + a local folder.

mod common;

use common::{BIKES, Project, bikes_with};

const CHECKS: &str = "project: t
datasets:
  bikes:
    key: datetime
    checks:
      rows: { min: 8000 }
      unique: [datetime]
      columns:
        bikers: { type: integer, not_null: true, range: { min: 0, max: 1000 } }
        weather: { allowed: [clear, cloudy/misty, light rain/snow, heavy rain/snow] }
";

#[test]
fn init_creates_a_project_and_refuses_to_run_twice() {
    let p = Project::new();
    assert!(p.path("kiln.yaml").is_file());
    assert!(p.path(".kiln/kiln.db").is_file());
    assert!(p.path(".kiln/objects").is_dir());
    let again = p.kiln(&["init"]).code(2);
    assert!(
        again.stderr.contains("already a kiln project"),
        "{}",
        again.stderr
    );
}

#[test]
fn commands_find_the_project_from_a_subdirectory_and_fail_outside_one() {
    let p = Project::new();
    p.write("sub/deeper/x.csv", "a,b\n1,2\n");
    let mut c = p.command(&["data", "add", "x", "x.csv"]);
    c.current_dir(p.path("sub/deeper"));
    assert!(c.status().unwrap().success());
    assert!(p.kiln(&["data", "ls"]).ok().stdout.contains('x'));

    let outside = tempfile::tempdir().unwrap();
    let err = common::kiln_in(outside.path(), &["data", "ls"])
        .code(2)
        .stderr;
    assert!(
        err.contains("No kiln project found") && err.contains("hint: run `kiln init`"),
        "{err}"
    );
}

#[test]
fn a_csv_is_versioned_with_schema_profile_and_columnar_copy() {
    let p = Project::new();
    let out = p.kiln(&["data", "add", "bikes", BIKES, "-m", "first"]).ok();
    assert!(
        out.stdout.contains("Added bikes@") && out.stdout.contains("8,645 rows"),
        "{}",
        out.stdout
    );

    let show = p.kiln(&["data", "show", "bikes", "--json"]).ok().json();
    let v = &show["version"];
    assert_eq!(v["row_count"], 8645);
    assert_eq!(v["seq"], 1);
    assert_eq!(v["message"], "first");
    assert_eq!(v["author"], "tester");
    assert!(v["columnar_object"].is_string());
    let types: std::collections::HashMap<String, String> = v["schema"]["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["type"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(types["datetime"], "timestamp");
    assert_eq!(types["bikers"], "integer");
    assert_eq!(types["temp"], "float");
    assert_eq!(types["weather"], "categorical");
    let bikers = v["profile"]["columns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "bikers")
        .unwrap();
    assert_eq!(
        (
            bikers["min"].as_i64(),
            bikers["max"].as_i64(),
            bikers["nulls"].as_i64()
        ),
        (Some(1), Some(651), Some(0))
    );
    assert_eq!(
        bikers["histogram"]["counts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_u64().unwrap())
            .sum::<u64>(),
        8645
    );

    let table = p.kiln(&["data", "show", "bikes"]).ok().stdout;
    assert!(
        table.contains("8,645 rows × 14 columns") && table.contains("categorical"),
        "{table}"
    );
    let ls = p.kiln(&["data", "ls", "--json"]).ok().json();
    assert_eq!(ls[0]["name"], "bikes");
    assert_eq!(ls[0]["versions"], 1);
}

#[test]
fn identical_content_makes_no_new_version_and_says_so() {
    let p = Project::new();
    p.kiln(&["data", "add", "bikes", BIKES]).ok();
    let copy = p.write("copy.csv", std::fs::read(BIKES).unwrap());
    let again = p
        .kiln(&["data", "add", "bikes", copy.to_str().unwrap()])
        .ok();
    assert!(
        again.stdout.contains("Unchanged") && again.stdout.contains("no new version"),
        "{}",
        again.stdout
    );
    assert_eq!(
        p.kiln(&["data", "log", "bikes", "--json"])
            .ok()
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let json = p
        .kiln(&["data", "add", "bikes", BIKES, "--json"])
        .ok()
        .json();
    assert_eq!(json["outcome"], "unchanged");
}

#[test]
fn get_restores_each_version_byte_for_byte() {
    let p = Project::new();
    p.kiln(&["data", "add", "bikes", BIKES]).ok();
    p.kiln(&["data", "tag", "bikes@latest", "v1"]).ok();
    let v2 = p.write("v2.csv", bikes_with(|i, _| i % 2 == 0));
    p.kiln(&["data", "add", "bikes", v2.to_str().unwrap()]).ok();
    p.kiln(&["data", "get", "bikes@v1", "-o", "one.csv"]).ok();
    p.kiln(&["data", "get", "bikes", "-o", "two.csv"]).ok();
    assert!(std::fs::read(p.path("one.csv")).unwrap() == std::fs::read(BIKES).unwrap());
    assert!(std::fs::read(p.path("two.csv")).unwrap() == std::fs::read(&v2).unwrap());
    let exists = p.kiln(&["data", "get", "bikes", "-o", "one.csv"]).code(2);
    assert!(
        exists.stderr.contains("already exists"),
        "{}",
        exists.stderr
    );
}

#[test]
fn versions_are_named_by_latest_tag_or_id_prefix() {
    let p = Project::new();
    p.write("a.csv", "x\n1\n");
    p.write("b.csv", "x\n2\n");
    p.kiln(&["data", "add", "d", "a.csv"]).ok();
    p.kiln(&["data", "add", "d", "b.csv"]).ok();
    let log = p.kiln(&["data", "log", "d", "--json"]).ok().json();
    let first = log[0]["id"].as_str().unwrap().to_string();
    let second = log[1]["id"].as_str().unwrap().to_string();
    let id_of = |r: &str| {
        p.kiln(&["data", "show", r, "--json"]).ok().json()["version"]["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(id_of("d"), second);
    assert_eq!(id_of("d@latest"), second);
    assert_eq!(id_of(&format!("d@{}", &first[..8])), first);
    p.kiln(&["data", "tag", &format!("d@{}", &first[..10]), "gold"])
        .ok();
    assert_eq!(id_of("d@gold"), first);
    let unknown = p.kiln(&["data", "show", "d@ffff0000"]).code(2);
    assert!(
        unknown.stderr.contains("has no version `ffff0000`")
            && unknown.stderr.contains("kiln data log d"),
        "{}",
        unknown.stderr
    );
    let no_dataset = p.kiln(&["data", "show", "nope"]).code(2);
    assert!(
        no_dataset.stderr.contains("No dataset named `nope`"),
        "{}",
        no_dataset.stderr
    );
}

#[test]
fn tsv_gzip_parquet_and_json_lines_are_read() {
    let p = Project::new();
    p.write("t.tsv", "a\tb\n1\tx\n2\ty\n");
    let gz = {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(b"a;b\n1;x\n2;y\n3;z\n").unwrap();
        e.finish().unwrap()
    };
    p.write("s.csv.gz", &gz);
    p.write(
        "j.jsonl",
        "{\"a\": 1, \"b\": \"x\", \"c\": true}\n{\"a\": 2, \"b\": null, \"c\": false}\n",
    );
    for (name, file, rows, format) in [
        ("t", "t.tsv", 2, "tsv"),
        ("s", "s.csv.gz", 3, "csv"),
        ("j", "j.jsonl", 2, "jsonl"),
    ] {
        p.kiln(&["data", "add", name, file]).ok();
        let v = p.kiln(&["data", "show", name, "--json"]).ok().json();
        assert_eq!(v["version"]["row_count"], rows, "{name}");
        assert_eq!(v["version"]["format"], format, "{name}");
        assert_eq!(
            v["version"]["schema"]["columns"][0]["type"], "integer",
            "{name}"
        );
    }
    // A gzip file is restored compressed, as it was added.
    p.kiln(&["data", "get", "s", "-o", "back.csv.gz"]).ok();
    assert_eq!(std::fs::read(p.path("back.csv.gz")).unwrap(), gz);
    // The columnar copy of one version is a Parquet file kiln reads back.
    let v = p.kiln(&["data", "show", "s", "--json"]).ok().json();
    let h = v["version"]["columnar_object"].as_str().unwrap();
    let parquet = p.path(&format!(".kiln/objects/{}/{}", &h[..2], &h[2..]));
    std::fs::copy(parquet, p.path("s.parquet")).unwrap();
    p.kiln(&["data", "add", "sp", "s.parquet"]).ok();
    let back = p.kiln(&["data", "show", "sp", "--json"]).ok().json();
    assert_eq!(back["version"]["format"], "parquet");
    assert_eq!(back["version"]["row_count"], 3);
    assert_eq!(back["version"]["schema"], v["version"]["schema"]);
}

#[test]
fn a_column_is_widened_when_a_late_value_breaks_the_sampled_type() {
    let p = Project::new();
    let mut csv = String::from("id,x\n");
    for i in 0..20_000 {
        csv.push_str(&format!(
            "{i},{}\n",
            if i == 19_000 {
                "2.5".to_string()
            } else {
                i.to_string()
            }
        ));
    }
    p.write("w.csv", csv);
    p.kiln(&["data", "add", "w", "w.csv"]).ok();
    let v = p.kiln(&["data", "show", "w", "--json"]).ok().json();
    assert_eq!(v["version"]["schema"]["columns"][1]["type"], "float");
    assert_eq!(v["version"]["row_count"], 20_000);
}

#[test]
fn a_folder_is_versioned_and_one_changed_file_is_a_new_version() {
    let p = Project::new();
    for i in 0..40 {
        p.write(&format!("imgs/{}/f{i}.bin", i % 4), format!("content {i}"));
    }
    let first = p
        .kiln(&["data", "add", "imgs", "imgs", "--json"])
        .ok()
        .json();
    assert_eq!(first["outcome"], "created");
    assert_eq!(first["version"]["file_count"], 40);
    assert_eq!(first["version"]["kind"], "files");
    let same = p
        .kiln(&["data", "add", "imgs", "imgs", "--json"])
        .ok()
        .json();
    assert_eq!(same["outcome"], "unchanged");
    p.write("imgs/2/f2.bin", "changed");
    let second = p
        .kiln(&["data", "add", "imgs", "imgs", "--json"])
        .ok()
        .json();
    assert_eq!(second["outcome"], "created");
    assert_eq!(second["version"]["seq"], 2);
    let first_id = first["version"]["id"].as_str().unwrap();
    p.kiln(&[
        "data",
        "get",
        &format!("imgs@{}", &first_id[..12]),
        "-o",
        "restored",
    ])
    .ok();
    assert_eq!(
        std::fs::read_to_string(p.path("restored/2/f2.bin")).unwrap(),
        "content 2"
    );
    assert_eq!(
        std::fs::read_to_string(p.path("restored/3/f39.bin")).unwrap(),
        "content 39"
    );
    let show = p.kiln(&["data", "show", "imgs"]).ok().stdout;
    assert!(
        show.contains("files    40") && show.contains("0/f0.bin") && show.contains("and 20 more"),
        "{show}"
    );
}

#[test]
fn failing_checks_exit_1_name_the_rows_and_are_stored() {
    let p = Project::new();
    p.set_config(CHECKS);
    let good = p.kiln(&["data", "add", "bikes", BIKES]).ok();
    assert!(good.stderr.contains("all 6 passed"), "{}", good.stderr);
    p.kiln(&["data", "check", "bikes"]).ok();
    let bad = p.write(
        "bad.csv",
        bikes_with(|i, f| {
            if i == 10 {
                f[13] = "-5".into();
            }
            if i == 20 {
                f[8] = "fog".into();
            }
            true
        }),
    );
    let added = p
        .kiln(&["data", "add", "bikes", bad.to_str().unwrap()])
        .ok();
    assert!(
        added.stderr.contains("2 of 6 checks failed"),
        "{}",
        added.stderr
    );
    let check = p.kiln(&["data", "check", "bikes@latest"]).code(1);
    assert!(
        check.stdout.contains("FAIL") && check.stdout.contains("bikers: range [0, 1000]"),
        "{}",
        check.stdout
    );
    assert!(
        check.stdout.contains("row 11: -5") && check.stdout.contains("row 21: fog"),
        "{}",
        check.stdout
    );
    let json = p.kiln(&["data", "check", "bikes", "--json"]).code(1).json();
    assert_eq!(json["report"]["passed"], false);
    let show = p.kiln(&["data", "show", "bikes", "--json"]).ok().json();
    assert_eq!(show["latest_check"]["passed"], false);
    assert_eq!(show["latest_check"]["checks_failed"], 2);
}

#[test]
fn add_with_check_refuses_a_failing_version_and_writes_nothing() {
    let p = Project::new();
    p.set_config(CHECKS);
    let bad = p.write(
        "bad.csv",
        bikes_with(|i, f| {
            if i < 3 {
                f[13] = "5000".into();
            }
            true
        }),
    );
    let objects = p.object_count();
    let out = p
        .kiln(&["data", "add", "bikes", bad.to_str().unwrap(), "--check"])
        .code(1);
    assert!(
        out.stderr.contains("Refused") && out.stderr.contains("nothing was written"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.contains("row 1: 5000"), "{}", out.stdout);
    assert_eq!(p.object_count(), objects, "no object was written");
    assert!(p.tmp_files().is_empty());
    assert_eq!(p.dataset_count(), 0, "no dataset was created");
    // The same file passes without --check, with a warning.
    p.kiln(&["data", "add", "bikes", bad.to_str().unwrap()])
        .ok();
}

#[test]
fn diff_reports_schema_statistics_and_rows_by_key() {
    let p = Project::new();
    p.set_config(CHECKS);
    p.kiln(&["data", "add", "bikes", BIKES]).ok();
    let text = bikes_with(|i, f| {
        if i == 5 {
            f[13] = "999".into();
        }
        i >= 2
    });
    // Add a column, to see a schema change.
    let with_col: String = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == 0 {
                format!("{l},source\n")
            } else {
                format!("{l},feed\n")
            }
        })
        .collect();
    p.write("v2.csv", with_col);
    p.kiln(&["data", "add", "bikes", "v2.csv"]).ok();
    let log = p.kiln(&["data", "log", "bikes", "--json"]).ok().json();
    let a = format!("bikes@{}", &log[0]["id"].as_str().unwrap()[..12]);
    let d = p
        .kiln(&["data", "diff", &a, "bikes@latest", "--json"])
        .ok()
        .json();
    assert_eq!(d["rows_a"], 8645);
    assert_eq!(d["rows_b"], 8643);
    assert_eq!(d["schema_changes"][0]["change"], "added");
    assert_eq!(d["schema_changes"][0]["column"], "source");
    assert_eq!(d["rows"]["removed"], 2);
    assert_eq!(d["rows"]["added"], 0);
    assert_eq!(d["rows"]["changed"], 8643, "every row gained a column");
    let text = p.kiln(&["data", "diff", &a, "bikes@latest"]).ok().stdout;
    assert!(
        text.contains("+ source (categorical)") && text.contains("2 removed"),
        "{text}"
    );
    // Without the new column, only the edited row changes.
    let only_edit = bikes_with(|i, f| {
        if i == 5 {
            f[13] = "999".into();
        }
        i >= 2
    });
    p.write("v3.csv", only_edit);
    p.kiln(&["data", "add", "bikes", "v3.csv"]).ok();
    let d = p
        .kiln(&[
            "data",
            "diff",
            &a,
            "bikes@latest",
            "--key",
            "datetime",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(d["rows"]["changed"], 1);
    assert_eq!(d["rows"]["unchanged"], 8642);
    let example = d["rows"]["changed_examples"][0][1][0].as_str().unwrap();
    assert!(
        example.starts_with("bikers: ") && example.ends_with("→ 999"),
        "{example}"
    );
    let stats = d["stat_shifts"].as_array().unwrap();
    assert!(
        stats
            .iter()
            .any(|s| s["column"] == "bikers" && s["stat"] == "mean")
    );
}

#[test]
fn describe_sets_catalog_fields() {
    let p = Project::new();
    p.kiln(&["data", "add", "bikes", BIKES]).ok();
    p.kiln(&[
        "data",
        "describe",
        "bikes",
        "--description",
        "Hourly rentals",
        "--owner",
        "ana",
        "--tag",
        "demand",
        "--tag",
        "public",
    ])
    .ok();
    let ls = p.kiln(&["data", "ls", "--json"]).ok().json();
    assert_eq!(ls[0]["description"], "Hourly rentals");
    assert_eq!(ls[0]["owner"], "ana");
    assert_eq!(ls[0]["tags"], serde_json::json!(["demand", "public"]));
    p.kiln(&["data", "describe", "nope", "--owner", "x"])
        .code(2);
}

#[test]
fn no_profile_stores_and_hashes_only() {
    let p = Project::new();
    p.set_config(CHECKS);
    let out = p
        .kiln(&["data", "add", "bikes", BIKES, "--no-profile", "--json"])
        .ok()
        .json();
    assert_eq!(out["version"]["row_count"], serde_json::Value::Null);
    assert_eq!(out["version"]["columnar_object"], serde_json::Value::Null);
    assert_eq!(
        out["version"]["schema"]["columns"]
            .as_array()
            .unwrap()
            .len(),
        14
    );
    let check = p.kiln(&["data", "check", "bikes"]).code(2);
    assert!(
        check.stderr.contains("no columnar copy"),
        "{}",
        check.stderr
    );
}

#[test]
fn a_malformed_kiln_yaml_is_reported_with_its_path() {
    let p = Project::new();
    p.set_config(
        "project: t\ndatasets:\n  d:\n    checks:\n      columns:\n        a: { rnage: [1, 2] }\n",
    );
    let out = p.kiln(&["data", "ls"]).code(2);
    assert!(
        out.stderr.contains("kiln.yaml") && out.stderr.contains("rnage"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_json_lines_column_with_a_late_float_is_a_float_column() {
    let p = Project::new();
    let mut text = String::new();
    for i in 0..12_000 {
        let x = if i < 11_000 {
            i.to_string()
        } else {
            format!("{i}.5")
        };
        text.push_str(&format!("{{\"id\": {i}, \"x\": {x}}}\n"));
    }
    p.write("w.jsonl", text);
    p.kiln(&["data", "add", "w", "w.jsonl"]).ok();
    let v = p.kiln(&["data", "show", "w", "--json"]).ok().json();
    let x = v["version"]["profile"]["columns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "x")
        .unwrap()
        .clone();
    assert_eq!(x["type"], "float");
    assert_eq!(x["max"], 11_999.5);
}

#[test]
fn every_kind_of_check_passes_and_fails_on_the_rows_it_should() {
    let p = Project::new();
    p.set_config(
        "project: t
datasets:
  orders:
    checks:
      rows: { min: 1, max: 3 }
      unique: [[store, day]]
      columns:
        email: { regex: '^[^@]+@[^@]+$', max_null_fraction: 0.2 }
        day: { type: date, freshness: 30d }
        amount: { type: integer }
        paid: { type: boolean, not_null: true }
        missing_column: { not_null: true }
",
    );
    let today = chrono_like_today();
    p.write(
        "o.csv",
        format!("store,day,email,amount,paid\n1,2020-01-01,a@x.org,3.5,true\n1,2020-01-01,bad,4,\n2,{today},,5,false\n2,2020-01-02,c@y.com,1,true\n"),
    );
    p.kiln(&["data", "add", "orders", "o.csv"]).ok();
    let r = p
        .kiln(&["data", "check", "orders", "--json"])
        .code(1)
        .json();
    let results = r["report"]["results"].as_array().unwrap();
    let by_name = |n: &str| {
        results
            .iter()
            .find(|c| c["name"].as_str().unwrap().starts_with(n))
            .unwrap_or_else(|| panic!("no {n} in {results:?}"))
    };
    assert_eq!(by_name("rows")["passed"], false, "4 rows > max 3");
    assert_eq!(by_name("unique (store, day)")["failing_rows"], 1);
    assert_eq!(
        by_name("unique (store, day)")["examples"][0],
        serde_json::json!([2, "1, 2020-01-01"])
    );
    assert_eq!(
        by_name("email: regex")["examples"][0],
        serde_json::json!([2, "bad"])
    );
    assert_eq!(
        by_name("email: max null fraction")["passed"],
        false,
        "1 of 4 is 0.25 > 0.2"
    );
    assert_eq!(by_name("day: type date")["passed"], true);
    assert_eq!(
        by_name("day: freshness")["passed"],
        true,
        "today's row is fresh"
    );
    assert_eq!(
        by_name("amount: type integer")["passed"],
        false,
        "3.5 makes it a float column"
    );
    assert_eq!(
        by_name("paid: not null")["examples"][0],
        serde_json::json!([2, "null"])
    );
    assert_eq!(by_name("missing_column: exists")["passed"], false);
}

/// Today as `YYYY-MM-DD` in UTC, without a date crate in the tests.
fn chrono_like_today() -> String {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        / 86_400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[test]
fn a_stale_timestamp_column_fails_freshness() {
    let p = Project::new();
    p.set_config(
        "project: t\ndatasets:\n  e:\n    checks:\n      columns:\n        at: { freshness: 7d }\n",
    );
    p.write(
        "e.csv",
        "at,v\n2020-01-01T10:00:00,1\n2021-06-01T10:00:00,2\n",
    );
    p.kiln(&["data", "add", "e", "e.csv"]).ok();
    let out = p.kiln(&["data", "check", "e"]).code(1);
    assert!(
        out.stdout.contains("at: freshness 7d") && out.stdout.contains("newest value is"),
        "{}",
        out.stdout
    );
}

#[test]
fn a_csv_without_header_gets_numbered_columns() {
    let p = Project::new();
    p.write("n.csv", "1,a\n2,b\n3,c\n");
    p.kiln(&["data", "add", "n", "n.csv", "--no-header"]).ok();
    let v = p.kiln(&["data", "show", "n", "--json"]).ok().json();
    assert_eq!(v["version"]["row_count"], 3);
    assert_eq!(v["version"]["schema"]["columns"][0]["type"], "integer");
}

#[test]
fn small_files_are_packed_and_a_new_version_packs_only_what_changed() {
    let p = Project::new();
    for i in 0..300 {
        p.write(&format!("f/{i:03}.txt"), format!("file {i}"));
    }
    p.write("f/same-a.txt", "duplicate");
    p.write("f/same-b.txt", "duplicate");
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    p.write("f/big.bin", &big);
    p.kiln(&["data", "add", "f", "f"]).ok();
    // One pack, one large object, one manifest.
    assert_eq!(p.object_count(), 3);
    p.write("f/007.txt", "edited");
    p.kiln(&["data", "add", "f", "f"]).ok();
    assert_eq!(
        p.object_count(),
        5,
        "a new pack with one file, and a new manifest"
    );
    p.kiln(&["data", "get", "f", "-o", "out"]).ok();
    assert_eq!(
        std::fs::read_to_string(p.path("out/007.txt")).unwrap(),
        "edited"
    );
    assert_eq!(
        std::fs::read_to_string(p.path("out/299.txt")).unwrap(),
        "file 299"
    );
    assert_eq!(
        std::fs::read_to_string(p.path("out/same-b.txt")).unwrap(),
        "duplicate"
    );
    assert!(std::fs::read(p.path("out/big.bin")).unwrap() == big);
}

#[test]
fn the_audit_log_names_who_did_what() {
    let p = Project::new();
    p.write("a.csv", "x\n1\n");
    p.kiln(&["data", "add", "a", "a.csv"]).ok();
    p.kiln(&["data", "tag", "a", "gold"]).ok();
    let log = p.kiln(&["audit", "--json"]).ok().json();
    let actions: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "dataset_version.tag",
            "dataset_version.create",
            "dataset.create"
        ]
    );
    assert!(
        log.as_array()
            .unwrap()
            .iter()
            .all(|e| e["actor"] == "tester")
    );
    let table = p.kiln(&["audit"]).ok().stdout;
    assert!(
        table.contains("dataset_version.tag") && table.contains("tester"),
        "{table}"
    );
}

#[test]
fn a_same_size_edit_is_seen_despite_the_hash_cache() {
    let p = Project::new();
    p.write("a.csv", "x\n1\n");
    p.kiln(&["data", "add", "a", "a.csv", "--no-profile"]).ok();
    assert!(p.path(".kiln/state/hashes.json").is_file());
    let same = p.kiln(&["data", "add", "a", "a.csv", "--no-profile"]).ok();
    assert!(same.stdout.contains("Unchanged"), "{}", same.stdout);
    p.write("a.csv", "x\n2\n");
    let edited = p.kiln(&["data", "add", "a", "a.csv", "--no-profile"]).ok();
    assert!(edited.stdout.contains("version 2"), "{}", edited.stdout);
    p.write("d/f.txt", "aaaa");
    p.kiln(&["data", "add", "d", "d"]).ok();
    p.write("d/f.txt", "bbbb");
    let edited = p.kiln(&["data", "add", "d", "d", "--json"]).ok().json();
    assert_eq!(edited["outcome"], "created");
    p.kiln(&["data", "get", "d@latest", "-o", "out"]).ok();
    assert_eq!(
        std::fs::read_to_string(p.path("out/f.txt")).unwrap(),
        "bbbb"
    );
}

#[test]
fn a_folder_of_csv_partitions_is_one_checked_table_and_restores_as_a_folder() {
    let p = Project::new();
    p.set_config(
        "project: t\ndatasets:\n  sales:\n    key: id\n    checks:\n      columns:\n        amount: { range: { min: 0 } }\n",
    );
    p.write("sales/day=1/part-0.csv", "id,amount\n1,10\n2,20\n");
    p.write("sales/day=2/part-0.csv", "id,amount\n3,30.5\n");
    p.write("sales/_SUCCESS", "");
    let out = p
        .kiln(&["data", "add", "sales", "sales", "--json"])
        .ok()
        .json();
    let v = &out["version"];
    assert_eq!(v["kind"], "partitions");
    assert_eq!(v["row_count"], 3);
    assert_eq!(v["file_count"], 3);
    assert_eq!(v["format"], "csv");
    assert_eq!(
        v["schema"]["columns"][1]["type"], "float",
        "integer and float partitions unify to float"
    );
    p.kiln(&["data", "check", "sales"]).ok();
    let show = p.kiln(&["data", "show", "sales"]).ok().stdout;
    assert!(show.contains("3 rows × 2 columns in 3 files"), "{show}");

    // A bad partition is refused with --check, and nothing is stored.
    p.write("sales/day=3/part-0.csv", "id,amount\n4,-1\n");
    let objects = p.object_count();
    p.kiln(&["data", "add", "sales", "sales", "--check"])
        .code(1);
    assert_eq!(p.object_count(), objects);
    p.write("sales/day=3/part-0.csv", "id,amount\n4,1\n");
    p.kiln(&["data", "add", "sales", "sales"]).ok();
    // Only the new partition was packed: unchanged files keep their pack.
    assert_eq!(
        p.object_count(),
        objects + 3,
        "one pack, one manifest, one columnar copy"
    );
    let manifest = |r: &str| -> serde_json::Value {
        let h = p.kiln(&["data", "show", r, "--json"]).ok().json()["version"]["original_object"]
            .as_str()
            .unwrap()
            .to_string();
        serde_json::from_slice(
            &std::fs::read(p.path(&format!(".kiln/objects/{}/{}", &h[..2], &h[2..]))).unwrap(),
        )
        .unwrap()
    };
    let pack_of = |m: &serde_json::Value, path: &str| {
        m["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["path"] == path)
            .unwrap()["pack"]
            .clone()
    };
    let (old, new) = (
        manifest(&format!(
            "sales@{}",
            &out["version"]["id"].as_str().unwrap()[..12]
        )),
        manifest("sales@latest"),
    );
    assert_eq!(
        pack_of(&old, "day=1/part-0.csv"),
        pack_of(&new, "day=1/part-0.csv")
    );
    assert_ne!(
        pack_of(&new, "day=1/part-0.csv"),
        pack_of(&new, "day=3/part-0.csv")
    );
    let d = p
        .kiln(&["data", "diff", "sales@latest", "sales@latest"])
        .ok()
        .stdout;
    assert!(d.contains("identical"), "{d}");
    let log = p.kiln(&["data", "log", "sales", "--json"]).ok().json();
    let first = log[0]["id"].as_str().unwrap();
    let d = p
        .kiln(&[
            "data",
            "diff",
            &format!("sales@{}", &first[..12]),
            "sales",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(d["rows"]["added"], 1);

    p.kiln(&["data", "get", "sales", "-o", "back"]).ok();
    assert_eq!(
        std::fs::read_to_string(p.path("back/day=3/part-0.csv")).unwrap(),
        "id,amount\n4,1\n"
    );
    assert!(p.path("back/_SUCCESS").is_file());

    // Partitions whose columns differ are refused with the file named.
    p.write("sales/day=4/part-0.csv", "id,price\n5,1\n");
    let bad = p.kiln(&["data", "add", "sales", "sales"]).code(2);
    assert!(
        bad.stderr.contains("day=4/part-0.csv") && bad.stderr.contains("differ"),
        "{}",
        bad.stderr
    );
}
