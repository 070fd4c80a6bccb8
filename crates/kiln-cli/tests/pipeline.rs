//! Gates and pipelines through the real `kiln` binary.

mod common;

use common::{BIKES, Project};

/// The bundled bikes data, two quick runs registered as versions 1 and 2.
fn two_versions() -> Project {
    let p = Project::new();
    p.kiln(&["data", "add", "bikes", BIKES, "-q"]).ok();
    for seed in ["1", "2"] {
        let run = p
            .kiln(&[
                "train", "bikes", "--target", "bikers", "--trials", "2", "--seed", seed, "--split",
                "time", "--json",
            ])
            .ok()
            .json();
        p.kiln(&[
            "models",
            "register",
            "bikes",
            "--run",
            run["model"].as_str().unwrap(),
        ])
        .ok();
    }
    p
}

#[test]
fn a_gate_reads_held_out_metrics_compares_with_the_champion_and_writes_junit() {
    let p = two_versions();

    // No champion yet: the comparison is skipped and the gate passes, so
    // the first model can be promoted.
    let out = p
        .kiln(&[
            "gate",
            "bikes@1",
            "--require",
            "r2 >= 0.3 && rmse <= champion.rmse * 1.5",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(out["passed"], true);
    assert_eq!(out["clauses"][0]["outcome"], "passed");
    assert_eq!(out["clauses"][1]["outcome"], "skipped");
    assert!(
        out["clauses"][1]["reason"]
            .as_str()
            .unwrap()
            .contains("no version of `bikes` is `champion`"),
        "{out}"
    );
    // `r2` is the held-out test metric kiln train recorded.
    assert_eq!(out["metrics"][0]["key"], "test_r2");
    let r2 = out["metrics"][0]["value"].as_f64().unwrap();
    let run = p.kiln(&["models", "show", "bikes@1", "--json"]).ok().json();
    assert_eq!(run["version"]["metrics"]["test_r2"].as_f64(), Some(r2));

    // With a champion, its metrics are read from the version the alias
    // points at; latency is measured on the stored rows.
    p.kiln(&["models", "alias", "bikes", "champion", "1"]).ok();
    let junit = p.path("gate.xml");
    let out = p
        .kiln(&[
            "gate",
            "bikes@2",
            "--require",
            "rmse <= champion.rmse * 10 && p99_latency_ms < 2000 && rmse < 0",
            "--junit",
            junit.to_str().unwrap(),
            "--json",
        ])
        .code(1)
        .json();
    assert_eq!(out["passed"], false);
    assert_eq!(out["compared_with"]["champion"], 1);
    let outcomes: Vec<&str> = out["clauses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["passed", "passed", "failed"]);
    let latency = out["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "p99_latency_ms")
        .unwrap();
    assert_eq!(latency["key"], "measured");
    assert!(latency["value"].as_f64().unwrap() > 0.0);
    assert!(
        out["clauses"][2]["reason"]
            .as_str()
            .unwrap()
            .ends_with("< 0 is false"),
        "{out}"
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("tests=\"3\" failures=\"1\""), "{xml}");
    assert!(xml.contains("<testcase name=\"rmse &lt; 0\""), "{xml}");

    // The table names each clause and its values; stdout only holds data.
    let table = p
        .kiln(&["gate", "bikes@champion", "--require", "r2 > 0.3"])
        .ok();
    assert!(table.stdout.contains("pass") && table.stdout.contains("r2 > 0.3"));
    assert!(
        table.stderr.contains("bikes@1 passed the gate"),
        "{}",
        table.stderr
    );
}

#[test]
fn a_gate_refuses_bad_requirements_and_unknown_models_with_exit_2() {
    let p = two_versions();
    let out = p
        .kiln(&["gate", "bikes@1", "--require", "r2 = 0.3"])
        .code(2);
    assert!(out.stderr.contains("at character 3"), "{}", out.stderr);
    assert!(out.stderr.contains("`==`"), "{}", out.stderr);
    assert!(out.stderr.contains("hint:"), "{}", out.stderr);

    let out = p.kiln(&["gate", "nope@1", "--require", "r2 > 0"]).code(2);
    assert!(out.stderr.contains("nope"), "{}", out.stderr);

    let out = p.kiln(&["gate", "bikes@9", "--require", "r2 > 0"]).code(2);
    assert!(out.stderr.contains("9"), "{}", out.stderr);

    // A metric nobody recorded fails its clause and lists what exists.
    let out = p
        .kiln(&["gate", "bikes@1", "--require", "accuracy > 0.5", "--json"])
        .code(1)
        .json();
    let why = out["clauses"][0]["reason"].as_str().unwrap();
    assert!(
        why.contains("no metric `accuracy`") && why.contains("test_rmse"),
        "{why}"
    );

    // A JUnit path in a missing folder is refused before any work.
    let out = p
        .kiln(&[
            "gate",
            "bikes@1",
            "--require",
            "r2 > 0",
            "--junit",
            "no/such/dir/g.xml",
        ])
        .code(2);
    assert!(out.stderr.contains("does not exist"), "{}", out.stderr);

    // A run id is not a registered version.
    let out = p.kiln(&["gate", "abcdef", "--require", "r2 > 0"]).code(2);
    assert!(out.stderr.contains("MODEL@VERSION"), "{}", out.stderr);
}
