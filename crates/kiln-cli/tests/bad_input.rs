//! Every bad input named in the foundation issue gets one clear error (what,
//! where, what to do), exit status 2, and leaves nothing half-written.

mod common;

use common::{Out, Project};

/// Asserts a failed add: exit 2, the message parts, a hint, and no trace in the store.
#[track_caller]
fn refused(p: &Project, file: &str, expect: &[&str]) {
    let out = p.kiln(&["data", "add", "d", file]).code(2);
    for e in expect {
        assert!(out.stderr.contains(e), "expected {e:?} in:\n{}", out.stderr);
    }
    assert!(out.stderr.contains("hint: "), "no hint in:\n{}", out.stderr);
    assert!(p.dataset_count() == 0);
    assert!(
        p.tmp_files().is_empty(),
        "temporary files left: {:?}",
        p.tmp_files()
    );
    assert_eq!(p.object_count(), 0, "objects written for a refused add");
}

#[test]
fn a_ragged_row_is_reported_with_file_and_line() {
    let p = Project::new();
    p.write("r.csv", "a,b,c\n1,2,3\n4,5\n6,7,8\n");
    refused(&p, "r.csv", &["r.csv:3:", "expected 3 fields, found 2"]);
}

#[test]
fn a_ragged_row_past_the_type_sample_is_reported_with_its_line() {
    let p = Project::new();
    let mut csv = String::from("id,x\n");
    for i in 0..15_000 {
        csv.push_str(&format!("{i},a\n"));
    }
    csv.push_str("15000\n");
    p.write("r.csv", csv);
    refused(&p, "r.csv", &["r.csv:15002:", "expected 2 fields, found 1"]);
}

#[test]
fn an_unclosed_quote_is_reported_where_its_record_starts() {
    let p = Project::new();
    p.write("q.csv", "a,b,c\n1,2,3\n4,\"5,6\n7,8,9\n");
    refused(
        &p,
        "q.csv",
        &["q.csv:3:", "a quote that is opened and never closed"],
    );
}

#[test]
fn invalid_utf8_is_reported_with_line_and_column() {
    let p = Project::new();
    p.write("u.csv", b"a,b,c\n1,2,3\n4,\xff\xfe,6\n".as_slice());
    refused(&p, "u.csv", &["u.csv:3:2:", "invalid UTF-8", "iconv"]);
}

#[test]
fn an_empty_file_and_a_duplicate_column_are_refused() {
    let p = Project::new();
    p.write("e.csv", "");
    refused(&p, "e.csv", &["e.csv:1:", "empty"]);
    p.write("dup.csv", "a,b,a\n1,2,3\n");
    refused(&p, "dup.csv", &["dup.csv:1:3:", "`a` appears twice"]);
}

#[test]
fn a_missing_or_unreadable_file_is_reported() {
    let p = Project::new();
    refused(
        &p,
        "nope.csv",
        &["nope.csv", "No such file", "check the path"],
    );
    std::os::unix::fs::symlink(p.path("gone"), p.path("link.csv")).unwrap();
    refused(&p, "link.csv", &["link.csv", "No such file"]);
}

#[test]
fn an_unknown_dataset_or_version_is_reported_with_where_to_look() {
    let p = Project::new();
    let out = p.kiln(&["data", "log", "nope"]).code(2);
    assert!(
        out.stderr.contains("No dataset named `nope`") && out.stderr.contains("kiln data ls"),
        "{}",
        out.stderr
    );
    p.write("a.csv", "x\n1\n");
    p.kiln(&["data", "add", "a", "a.csv"]).ok();
    let out = p.kiln(&["data", "get", "a@cafe0000", "-o", "x"]).code(2);
    assert!(
        out.stderr.contains("no version `cafe0000`") && out.stderr.contains("kiln data log a"),
        "{}",
        out.stderr
    );
    assert!(!p.path("x").exists());
    let out = p.kiln(&["data", "show", "bad name@1"]).code(2);
    assert!(
        out.stderr.contains("Invalid dataset name"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_full_disk_fails_cleanly_and_records_nothing() {
    let p = Project::new();
    let mut csv = String::from("id,x,label\n");
    for i in 0..200_000 {
        csv.push_str(&format!("{i},{},{}\n", i as f64 * 0.37, i % 13));
    }
    p.write("big.csv", csv);
    // A file-size limit makes writes fail as a full disk does (EFBIG for
    // ENOSPC); SIGXFSZ is ignored so the write returns the error.
    let kiln = env!("CARGO_BIN_EXE_kiln");
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "trap '' XFSZ; ulimit -f 1000; exec {kiln} data add big big.csv"
        ))
        .current_dir(p.dir.path())
        .env("KILN_USER", "tester")
        .env_remove("KILN_STORE")
        .env_remove("KILN_OBJECTS")
        .output()
        .unwrap()
        .into();
    let err = Out::code(out, 2).stderr;
    assert!(
        err.contains("File too large") && err.contains("hint: free some disk space"),
        "{err}"
    );
    assert!(p.dataset_count() == 0);
    assert!(p.tmp_files().is_empty(), "{:?}", p.tmp_files());
}

#[test]
fn an_unreachable_postgresql_server_is_reported_with_a_hint() {
    let p = Project::new();
    let out = p
        .kiln(&[
            "data",
            "ls",
            "--store",
            "postgres://kiln:secret@127.0.0.1:1/kiln",
        ])
        .code(2);
    assert!(
        out.stderr
            .contains("Failed to connect to the metadata store"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("secret"),
        "the password leaked: {}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("hint: check that the database server is running"),
        "{}",
        out.stderr
    );
}

#[test]
fn an_unreachable_s3_server_is_reported_and_records_nothing() {
    let p = Project::new();
    p.write("a.csv", "x\n1\n");
    let out = p
        .command(&[
            "data",
            "add",
            "a",
            "a.csv",
            "--objects",
            "s3://bucket/prefix",
        ])
        .env("KILN_S3_ENDPOINT", "http://127.0.0.1:1")
        .env("AWS_ACCESS_KEY_ID", "x")
        .env("AWS_SECRET_ACCESS_KEY", "x")
        .output()
        .unwrap()
        .into();
    let err = Out::code(out, 2).stderr;
    assert!(
        err.contains("Object store operation failed")
            && err.contains("hint: check that the object store is reachable"),
        "{err}"
    );
    assert!(p.dataset_count() == 0);
}

#[test]
fn invalid_store_urls_are_explained() {
    let p = Project::new();
    let out = p.kiln(&["data", "ls", "--store", "mysql://x"]).code(2);
    assert!(
        out.stderr.contains("Invalid store URL") && out.stderr.contains("sqlite://PATH"),
        "{}",
        out.stderr
    );
    let out = p.kiln(&["data", "ls", "--objects", "gs://b"]).code(2);
    assert!(
        out.stderr.contains("Invalid objects URL") && out.stderr.contains("s3://BUCKET/PREFIX"),
        "{}",
        out.stderr
    );
}

#[test]
fn killing_an_add_midway_leaves_the_store_consistent() {
    let p = Project::new();
    let mut csv = String::with_capacity(60 << 20);
    csv.push_str("id,a,b,c,label\n");
    for i in 0..1_500_000u64 {
        csv.push_str(&format!(
            "{i},{},{},{},l{}\n",
            i * 7 % 1000,
            i as f64 / 3.0,
            i % 97,
            i % 5
        ));
    }
    p.write("big.csv", &csv);
    for delay_ms in [150u64, 600] {
        let mut child = p
            .command(&["data", "add", "big", "big.csv"])
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        child.kill().unwrap();
        child.wait().unwrap();
        // The next command, even a read, sweeps what the killed writer left.
        let ls = p.kiln(&["data", "ls", "--json"]).ok().json();
        assert!(
            p.tmp_files().is_empty(),
            "after {delay_ms} ms: {:?}",
            p.tmp_files()
        );
        // Either no version, or a complete one whose objects are all there.
        for d in ls.as_array().unwrap() {
            let v = &d["latest"];
            for key in ["original_object", "columnar_object"] {
                let h = v[key].as_str().unwrap();
                assert!(
                    p.path(&format!(".kiln/objects/{}/{}", &h[..2], &h[2..]))
                        .is_file(),
                    "{key} missing"
                );
            }
        }
    }
    // And the store still works: the add completes.
    p.kiln(&["data", "add", "big", "big.csv"]).ok();
    p.kiln(&["data", "get", "big", "-o", "back.csv"]).ok();
    assert!(std::fs::read(p.path("back.csv")).unwrap() == csv.as_bytes());
}

#[test]
fn init_against_an_unreachable_store_fails_and_leaves_no_project() {
    let dir = tempfile::tempdir().unwrap();
    let out = common::kiln_in(
        dir.path(),
        &["init", "--store", "postgres://kiln@127.0.0.1:1/kiln"],
    )
    .code(2);
    assert!(
        out.stderr
            .contains("Failed to connect to the metadata store"),
        "{}",
        out.stderr
    );
    assert!(
        !dir.path().join("kiln.yaml").exists(),
        "a half-made project was left"
    );
}
