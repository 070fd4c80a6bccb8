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

/// The status of each step of a `kiln run --json`, by name.
fn statuses(run: &serde_json::Value) -> std::collections::BTreeMap<String, String> {
    run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["step"].as_str().unwrap().to_string(),
                s["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn with_pipeline(steps: &str) -> Project {
    let p = Project::new();
    p.set_config(&format!("project: t\npipelines:\n  main:\n{steps}"));
    p
}

#[test]
fn a_pipeline_reruns_only_the_steps_downstream_of_a_changed_input() {
    let p = with_pipeline(
        r#"    params: { greeting: hello }
    steps:
      clean:
        run: "tr a-z A-Z < raw.txt > clean.txt && echo lines=$(wc -l < clean.txt) >> $KILN_OUTPUTS"
        inputs: [raw.txt]
        outputs: [clean.txt]
      report:
        run: "echo '${params.greeting} ${steps.clean.lines}' > report.txt && cat clean.txt >> report.txt"
        outputs: [report.txt]
      other:
        run: "cat other.txt > other.out"
        inputs: [other.txt]
        outputs: [other.out]
"#,
    );
    p.write("raw.txt", "a\nb\n");
    p.write("other.txt", "x\n");
    let first = p.kiln(&["run", "--json"]).ok().json();
    assert_eq!(first["run"]["status"], "succeeded");
    assert!(
        statuses(&first).values().all(|s| s == "succeeded"),
        "{first}"
    );
    assert_eq!(
        std::fs::read_to_string(p.path("report.txt")).unwrap(),
        "hello 2\nA\nB\n"
    );

    // Nothing changed: every step is reused, and a deleted output comes back
    // from the object store.
    std::fs::remove_file(p.path("clean.txt")).unwrap();
    let second = p.kiln(&["run", "main", "--json"]).ok().json();
    assert!(
        statuses(&second).values().all(|s| s == "cached"),
        "{second}"
    );
    assert_eq!(
        std::fs::read_to_string(p.path("clean.txt")).unwrap(),
        "A\nB\n"
    );
    assert_eq!(
        second["steps"][0]["cached_from"], first["run"]["id"],
        "{second}"
    );

    // One input changes: its step and the one downstream run, the other
    // branch is reused.
    p.write("raw.txt", "a\nb\nc\n");
    let plan = p.kiln(&["run", "--dry-run", "--json"]).ok().json();
    let will: Vec<(&str, &str)> = plan
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["step"].as_str().unwrap(), s["will"].as_str().unwrap()))
        .collect();
    assert_eq!(will[0], ("clean", "run"));
    assert!(will[1].1.starts_with("cached"), "{will:?}");
    assert_eq!(will[2], ("report", "run after `clean`"));
    let third = p.kiln(&["run", "--json"]).ok().json();
    let s = statuses(&third);
    assert_eq!(
        (
            s["clean"].as_str(),
            s["report"].as_str(),
            s["other"].as_str()
        ),
        ("succeeded", "succeeded", "cached")
    );
    assert!(
        std::fs::read_to_string(p.path("report.txt"))
            .unwrap()
            .starts_with("hello 3\n")
    );

    // A parameter is part of the key; --force runs everything.
    let fourth = p
        .kiln(&["run", "--param", "greeting=hi", "--json"])
        .ok()
        .json();
    let s = statuses(&fourth);
    assert_eq!(
        (s["clean"].as_str(), s["report"].as_str()),
        ("cached", "succeeded")
    );
    let forced = p.kiln(&["run", "--force", "--json"]).ok().json();
    assert!(statuses(&forced).values().all(|s| s == "succeeded"));

    // Every run is recorded; `show` and `logs` read them back.
    let runs = p.kiln(&["pipelines", "runs", "--json"]).ok().json();
    assert_eq!(runs.as_array().unwrap().len(), 5);
    let id = first["run"]["id"].as_str().unwrap();
    let shown = p
        .kiln(&["pipelines", "show", &id[..10], "--json"])
        .ok()
        .json();
    assert_eq!(shown["steps"][0]["outputs"]["lines"], "2");
    let logs = p.kiln(&["pipelines", "logs", &id[..10], "report"]).ok();
    assert_eq!(logs.stdout, "");
    let ls = p.kiln(&["pipelines", "ls"]).ok();
    assert!(
        ls.stdout.contains("main") && ls.stdout.contains("succeeded"),
        "{}",
        ls.stdout
    );
}

#[test]
fn a_failed_step_is_retried_then_stops_what_needs_it_and_the_run_exits_1() {
    let p = with_pipeline(
        r#"    steps:
      flaky:
        run: "echo try >> tries.txt; echo oops; exit 3"
        retries: 2
        retry_delay: 10ms
      after: { run: "touch after.txt", needs: [flaky] }
      later: { run: "touch later.txt", needs: [after] }
      beside: { run: "touch beside.txt" }
"#,
    );
    let junit = p.path("run.xml");
    let out = p
        .kiln(&["run", "--json", "--junit", junit.to_str().unwrap()])
        .code(1);
    let run = out.json();
    let s = statuses(&run);
    assert_eq!(s["flaky"], "failed");
    assert_eq!(s["after"], "skipped");
    assert_eq!(s["later"], "skipped");
    assert_eq!(s["beside"], "succeeded");
    assert_eq!(
        std::fs::read_to_string(p.path("tries.txt")).unwrap(),
        "try\ntry\ntry\n"
    );
    let flaky = &step_of(&run, "flaky");
    assert_eq!(flaky["attempts"], 3);
    let error = flaky["error"].as_str().unwrap();
    assert!(
        error.contains("exited with status 3") && error.contains("oops"),
        "{error}"
    );
    assert!(!p.path("after.txt").exists());
    assert_eq!(run["run"]["status"], "failed");
    assert!(
        run["run"]["error"]
            .as_str()
            .unwrap()
            .starts_with("step `flaky` failed")
    );
    let after = &step_of(&run, "later");
    assert_eq!(after["error"], "needs `after`, which was skipped");

    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains("tests=\"4\" failures=\"1\" errors=\"0\" skipped=\"2\""),
        "{xml}"
    );

    // A failure is not cached: the next run tries again.
    let again = p.kiln(&["run", "--json"]).code(1).json();
    assert_eq!(statuses(&again)["flaky"], "failed");
    assert_eq!(statuses(&again)["beside"], "cached");
    let log = p
        .kiln(&[
            "pipelines",
            "logs",
            run["run"]["id"].as_str().unwrap(),
            "flaky",
        ])
        .ok();
    assert_eq!(
        log.stdout.lines().filter(|l| *l == "oops").count(),
        3,
        "{}",
        log.stdout
    );
    assert!(log.stdout.contains("--- attempt 3"), "{}", log.stdout);
}

#[test]
fn independent_steps_run_in_parallel_and_a_timeout_kills_the_command() {
    let p = with_pipeline(
        r#"    steps:
      one: { run: "sleep 1", cache: false }
      two: { run: "sleep 1", cache: false }
      slow:
        run: "sleep 30; touch never.txt"
        timeout: 500ms
"#,
    );
    let t = std::time::Instant::now();
    let run = p.kiln(&["run", "--jobs", "3", "--json"]).code(1).json();
    let took = t.elapsed().as_secs_f64();
    assert!(
        took < 1.9,
        "the two 1 s steps ran one after the other: {took:.2}s"
    );
    let s = statuses(&run);
    assert_eq!(
        (s["one"].as_str(), s["two"].as_str()),
        ("succeeded", "succeeded")
    );
    assert_eq!(s["slow"], "failed");
    let slow = step_of(&run, "slow");
    assert!(
        slow["error"].as_str().unwrap().contains("timed out"),
        "{slow}"
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(!p.path("never.txt").exists());

    // One job at a time: the same steps take twice as long.
    let t = std::time::Instant::now();
    p.kiln(&["run", "--jobs", "1", "--json"]).code(1);
    assert!(t.elapsed().as_secs_f64() >= 2.0);
}

#[test]
fn ctrl_c_cancels_the_run_and_its_commands() {
    let p = with_pipeline(
        r#"    steps:
      long: { run: "sleep 30; touch never.txt" }
      next: { run: "touch next.txt", needs: [long] }
"#,
    );
    let child = p
        .command(&["run", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    // SAFETY: signals a child we started.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let run: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(run["run"]["status"], "cancelled");
    let s = statuses(&run);
    assert_eq!(
        (s["long"].as_str(), s["next"].as_str()),
        ("cancelled", "cancelled")
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(!p.path("never.txt").exists() && !p.path("next.txt").exists());
}

#[test]
fn bad_pipelines_are_refused_with_the_line_and_nothing_runs() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "    steps:\n      a: { run: x, needs: [b] }\n      b: { run: y, needs: [a] }\n",
            "kiln.yaml:5",
            "cycle: a → b → a",
        ),
        (
            "    steps:\n      a: { kind: trian }\n",
            "kiln.yaml:5",
            "unknown kind `trian`",
        ),
        (
            "    steps:\n      a: { run: x }\n      b:\n        run: y\n        needs: [a, nope]\n",
            "kiln.yaml:8",
            "needs `nope`",
        ),
        (
            "    schedule: \"0 25 * * *\"\n    steps:\n      a: { run: x }\n",
            "kiln.yaml:4",
            "schedule `0 25 * * *`",
        ),
        (
            "    steps:\n      a: { run: \"${params.nope}\" }\n",
            "kiln.yaml:5",
            "not declared",
        ),
        ("    steps:\n      a: { run: x\n", "kiln.yaml", ""),
    ];
    for (steps, at, needle) in cases {
        let p = with_pipeline(steps);
        let out = p.kiln(&["run"]).code(2);
        assert!(out.stderr.contains(at), "{steps}\n{}", out.stderr);
        assert!(out.stderr.contains(needle), "{steps}\n{}", out.stderr);
        assert!(out.stderr.contains("hint:"), "{steps}\n{}", out.stderr);
    }

    // Parameters: a required one left out, an unknown one, a bad one.
    let p = with_pipeline(
        "    params: { size: ~ }\n    steps:\n      a: { run: \"touch ${params.size}\" }\n",
    );
    let out = p.kiln(&["run"]).code(2);
    assert!(
        out.stderr.contains("needs parameter `size`") && out.stderr.contains("--param size="),
        "{}",
        out.stderr
    );
    let out = p.kiln(&["run", "--param", "sise=1"]).code(2);
    assert!(
        out.stderr.contains("no parameter `sise`") && out.stderr.contains("size"),
        "{}",
        out.stderr
    );
    let out = p.kiln(&["run", "--param", "size"]).code(2);
    assert!(out.stderr.contains("NAME=VALUE"), "{}", out.stderr);
    let out = p.kiln(&["run", "nope", "--param", "size=1"]).code(2);
    assert!(
        out.stderr.contains("pipeline `nope`") && out.stderr.contains("main"),
        "{}",
        out.stderr
    );
    let runs = p.kiln(&["pipelines", "runs", "--json"]).ok().json();
    assert_eq!(runs.as_array().unwrap().len(), 0, "nothing was recorded");
    p.kiln(&["run", "--param", "size=big"]).ok();
    assert!(p.path("big").exists());
}

#[test]
fn an_ml_pipeline_trains_registers_gates_waits_for_approval_and_deploys() {
    let p = Project::new();
    std::fs::copy(BIKES, p.path("bikes.csv")).unwrap();
    p.set_config(
        r#"project: t
datasets:
  bikes:
    checks:
      rows: { min: 100 }
pipelines:
  bikes:
    params: { min_r2: "0.3" }
    steps:
      ingest: { kind: ingest, with: { dataset: bikes, path: bikes.csv } }
      check: { kind: check, with: { dataset: "${steps.ingest.dataset}" } }
      train:
        kind: train
        needs: [check]
        with: { dataset: "${steps.ingest.dataset}", target: bikers, trials: 2, split: time }
      register: { kind: register, with: { model: bikes, run: "${steps.train.run}" } }
      gate:
        kind: gate
        with: { model: "${steps.register.model}", require: "r2 >= ${params.min_r2} && rmse <= champion.rmse * 1.2" }
      approve: { kind: approve, needs: [gate], with: { message: "look at the report" } }
      deploy: { kind: deploy, needs: [approve], with: { model: "${steps.register.model}", alias: champion } }
"#,
    );
    let child = p
        .command(&["run", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the approval step waits, then approve it.
    let run_id = wait_for_latest_run(
        &p,
        120,
        || "the approval step never waited".into(),
        |shown| (step_of(shown, "approve")["status"] == "running").then_some(()),
    )
    .0;
    let wrong = p.kiln(&["approve", &run_id, "deploy"]).code(2);
    assert!(wrong.stderr.contains("Nothing waits"), "{}", wrong.stderr);
    p.kiln(&["approve", &run_id, "approve", "-m", "fine"]).ok();
    let out = child.wait_with_output().unwrap();
    let run: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        run["run"]["status"],
        "succeeded",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = statuses(&run);
    assert!(s.values().all(|v| v == "succeeded"), "{s:?}");
    let champion = p
        .kiln(&["models", "show", "bikes@champion", "--json"])
        .ok()
        .json();
    assert_eq!(champion["version"]["version"], 1);
    // The model version traces back to the pipeline run.
    let lineage = p.kiln(&["lineage", "bikes@1", "--json"]).ok().stdout;
    assert!(lineage.contains(&run_id), "{lineage}");
    let audit = p.kiln(&["audit", "--json"]).ok().stdout;
    assert!(audit.contains("pipeline.approved"), "{audit}");

    // Run again: the data and model are reused, the gate compares with the
    // champion now, and a rejection stops the deploy.
    let child = p
        .command(&["run", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(std::time::Duration::from_millis(300));
        let runs = p.kiln(&["pipelines", "runs", "--json"]).ok().json();
        let id = runs[0]["id"].as_str().unwrap().to_string();
        if id != run_id && p.kiln(&["approve", &id, "approve", "--reject"]).code == 0 {
            break;
        }
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let run: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = statuses(&run);
    assert_eq!(s["ingest"], "cached");
    assert_eq!(s["train"], "cached");
    assert_eq!(s["register"], "cached");
    assert_eq!(s["gate"], "succeeded");
    assert_eq!(s["approve"], "failed");
    assert_eq!(s["deploy"], "skipped");
    let gate = step_of(&run, "gate");
    assert_eq!(gate["outputs"]["clauses"][1]["outcome"], "passed", "{gate}");
}

/// Two `kiln server`s on one PostgreSQL + S3 store run a pipeline on its
/// schedule (every 2 s), on a new version of a dataset it watches and on a
/// pending trigger; each firing runs once.
#[tokio::test(flavor = "multi_thread")]
async fn servers_run_schedules_dataset_triggers_and_pending_triggers_once() {
    let p = Project::on_servers().await;
    p.write("a.csv", "x,y\n1,2\n3,4\n");
    p.write("b.csv", "x,y\n5,6\n7,8\n");
    let config = std::fs::read_to_string(p.path("kiln.yaml")).unwrap();
    p.set_config(&format!(
        r#"{config}
pipelines:
  tick:
    schedule: "*/2 * * * * *"
    steps:
      say: {{ run: "echo tick", cache: false }}
  fresh:
    triggers: [{{ dataset: watched }}]
    steps:
      count: {{ kind: check, with: {{ dataset: watched }} }}
"#
    ));
    // A version that exists before the servers start does not trigger.
    p.kiln(&[
        "data",
        "add",
        "watched",
        p.path("a.csv").to_str().unwrap(),
        "-q",
    ])
    .ok();
    let args = ["server", "--port", "0", "--scheduler-every", "200ms"];
    let mut one = common::Server::start(&p, &args, &[]);
    let mut two = common::Server::start(&p, &args, &[]);
    std::thread::sleep(std::time::Duration::from_millis(1000));
    p.kiln(&[
        "data",
        "add",
        "watched",
        p.path("b.csv").to_str().unwrap(),
        "-q",
    ])
    .ok();
    p.kiln(&["pipelines", "trigger", "tick", "--reason", "by hand"])
        .ok();
    std::thread::sleep(std::time::Duration::from_millis(6500));
    one.terminate();
    two.terminate();

    let runs = p
        .kiln(&["pipelines", "runs", "--limit", "100", "--json"])
        .ok()
        .json();
    let runs = runs.as_array().unwrap();
    let causes: Vec<&str> = runs.iter().map(|r| r["cause"].as_str().unwrap()).collect();
    let ticks: Vec<&&str> = causes
        .iter()
        .filter(|c| c.starts_with("schedule:"))
        .collect();
    let unique: std::collections::BTreeSet<&&&str> = ticks.iter().collect();
    assert_eq!(ticks.len(), unique.len(), "a tick fired twice: {causes:?}");
    assert!(
        (3..=5).contains(&ticks.len()),
        "every 2 s for about 7 s: {causes:?}\n{}\n{}",
        one.log(),
        two.log()
    );
    let fresh: Vec<&serde_json::Value> = runs.iter().filter(|r| r["pipeline"] == "fresh").collect();
    assert_eq!(fresh.len(), 1, "{causes:?}");
    assert_eq!(fresh[0]["status"], "succeeded");
    let manual = causes.iter().filter(|c| c.starts_with("trigger:")).count();
    assert_eq!(
        manual, 2,
        "the dataset trigger and the manual one, once each: {causes:?}"
    );
    let triggers = p.kiln(&["monitor", "triggers", "--json"]).ok().json();
    assert!(
        triggers
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["status"] == "taken"),
        "{triggers}"
    );
    assert!(runs.iter().all(|r| r["status"] == "succeeded"), "{runs:?}");
}

/// Three workers, each in its own folder as on its own machine, share a
/// PostgreSQL + S3 store; one is killed with SIGKILL in the middle of a
/// step. The step is taken over when its lease runs out, the pipeline ends
/// with every result right, and no step's work is done twice.
#[tokio::test(flavor = "multi_thread")]
async fn a_worker_killed_mid_step_has_its_step_finished_elsewhere_once() {
    let p = Project::on_servers().await;
    let shared = tempfile::tempdir().unwrap();
    let ran = shared.path().join("ran.txt");
    let mut steps = String::new();
    for i in 1..=6 {
        steps.push_str(&format!(
            "      s{i}:\n        run: \"mkdir -p out && sleep 1.5 && echo s{i} > out/s{i}.txt && echo s{i} >> {}\"\n        outputs: [out/s{i}.txt]\n",
            ran.display()
        ));
    }
    let inputs: Vec<String> = (1..=6).map(|i| format!("out/s{i}.txt")).collect();
    steps.push_str(&format!(
        "      join:\n        run: \"cat {} | tr '\\\\n' , > all.txt && echo content=$(cat all.txt) >> $KILN_OUTPUTS\"\n        inputs: [{}]\n        outputs: [all.txt]\n",
        inputs.join(" "),
        inputs.join(", ")
    ));
    let config = std::fs::read_to_string(p.path("kiln.yaml")).unwrap();
    p.set_config(&format!(
        "{config}\npipelines:\n  fleet:\n    steps:\n{steps}"
    ));

    // Workers have no kiln.yaml: the project is named on the command line.
    let project = config
        .lines()
        .find_map(|l| l.strip_prefix("project: "))
        .unwrap()
        .trim()
        .to_string();
    let machines: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut workers: Vec<std::process::Child> = machines
        .iter()
        .enumerate()
        .map(|(i, dir)| {
            let mut c = p.command(&[
                "worker",
                "--project",
                &project,
                "--name",
                &format!("w{}", i + 1),
                "--lease",
                "1s",
                "--poll",
                "25ms",
            ]);
            let log = std::fs::File::create(shared.path().join(format!("w{}.log", i + 1))).unwrap();
            c.current_dir(dir.path())
                .stdout(std::process::Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap()
        })
        .collect();
    let run = p
        .command(&["run", "fleet", "--remote", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();

    // Kill w2 while it runs a step.
    let (_, killed_step) = wait_for_latest_run(
        &p,
        30,
        || format!("w2 never ran a step: {}", worker_logs(shared.path())),
        |shown| {
            shown["steps"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["worker"] == "w2" && s["status"] == "running")
                .map(|s| s["step"].as_str().unwrap().to_string())
        },
    );
    workers[1].kill().unwrap();
    workers[1].wait().unwrap();
    let out = run.wait_with_output().unwrap();
    for w in workers.iter_mut() {
        let _ = w.kill();
        let _ = w.wait();
    }
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        worker_logs(shared.path())
    );
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["run"]["status"], "succeeded");
    let steps = result["steps"].as_array().unwrap();
    assert!(steps.iter().all(|s| s["status"] == "succeeded"), "{result}");
    let join = steps.iter().find(|s| s["step"] == "join").unwrap();
    assert_eq!(join["outputs"]["content"], "s1,s2,s3,s4,s5,s6,");
    let taken_over = steps.iter().find(|s| s["step"] == killed_step).unwrap();
    assert_ne!(taken_over["worker"], "w2");
    assert_eq!(taken_over["attempts"], 2, "{taken_over}");
    // Each step's command finished once: the killed one's shell died with
    // its worker before it wrote anything.
    let mut lines: Vec<String> = std::fs::read_to_string(&ran)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    assert_eq!(lines, ["s1", "s2", "s3", "s4", "s5", "s6"]);
    // Each step ran in some worker's folder; the join found the others'
    // files there, fetched from the object store.
    let used: usize = machines
        .iter()
        .filter(|m| m.path().join("out").exists())
        .count();
    assert!(used >= 2, "the steps were spread over the workers");
}

fn worker_logs(dir: &std::path::Path) -> String {
    (1..=3)
        .map(|i| std::fs::read_to_string(dir.join(format!("w{i}.log"))).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn reproduce_reruns_a_recorded_run_on_its_versions_and_compares_every_output() {
    let p = Project::new();
    std::fs::copy(BIKES, p.path("bikes.csv")).unwrap();
    p.write("words.txt", "pear\napple\n");
    p.set_config(
        r#"project: t
pipelines:
  repro:
    steps:
      ingest: { kind: ingest, with: { dataset: bikes, path: bikes.csv } }
      train:
        kind: train
        needs: [ingest]
        with: { dataset: bikes, target: bikers, trials: 2, seed: 3, split: time }
      register: { kind: register, with: { model: bikes, run: "${steps.train.run}" } }
      split:
        kind: split
        with: { dataset: "${steps.ingest.dataset}", test_fraction: 0.25, seed: 1, stratify: season }
      sorted: { run: "sort words.txt > sorted.txt", inputs: [words.txt], outputs: [sorted.txt] }
"#,
    );
    let first = p.kiln(&["run", "--json"]).ok().json();
    let id = first["run"]["id"].as_str().unwrap().to_string();
    // The split: two new datasets, every row on one side, each season on both.
    let split = step_of(&first, "split");
    let (train_rows, test_rows) = (
        split["outputs"]["train_rows"].as_u64().unwrap(),
        split["outputs"]["test_rows"].as_u64().unwrap(),
    );
    let ingest = step_of(&first, "ingest");
    assert_eq!(
        train_rows + test_rows,
        ingest["outputs"]["rows"].as_u64().unwrap()
    );
    assert_eq!(
        test_rows,
        ((train_rows + test_rows) as f64 * 0.25).round() as u64
    );
    assert!(
        split["outputs"]["test"]
            .as_str()
            .unwrap()
            .starts_with("bikes-test@")
    );
    let test_part = p
        .kiln(&["data", "show", "bikes-test", "--json"])
        .ok()
        .stdout;
    assert!(test_part.contains("season"), "{test_part}");

    // Nothing changed: every re-run output is byte-identical (the model
    // too: same data, seed and trials), and the registry is left alone.
    let r = p.kiln(&["reproduce", &id[..10], "--json"]).ok().json();
    assert_eq!(r["identical"], true, "{r}");
    let verdict =
        |r: &serde_json::Value, step: &str| -> serde_json::Value { step_of(r, step).clone() };
    assert_eq!(verdict(&r, "train")["verdict"], "identical");
    assert_eq!(verdict(&r, "register")["verdict"], "not rerun");
    assert_eq!(r["run"]["run"]["cause"], format!("reproduce:{id}"));
    let train = r["run"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "train")
        .unwrap();
    assert_eq!(
        train["status"], "succeeded",
        "it ran again, not from the cache"
    );
    assert_ne!(train["outputs"]["run"], first["steps"][1]["outputs"]["run"]);
    p.kiln(&["models", "show", "bikes@1"]).ok();
    p.kiln(&["models", "show", "bikes@2"]).code(2);

    // The data and a source file change. The ingest reads the new file (a
    // new version); training is pinned to the version the run read, so the
    // model is the same; the sorted file differs, and its input is named.
    let mut csv = std::fs::read_to_string(p.path("bikes.csv")).unwrap();
    let last = csv.lines().last().unwrap().to_string();
    csv.push_str(&last);
    csv.push('\n');
    p.write("bikes.csv", csv);
    p.write("words.txt", "fig\napple\n");
    let out = p.kiln(&["reproduce", &id, "--json"]).code(1);
    let r = out.json();
    assert_eq!(r["identical"], false);
    assert_eq!(verdict(&r, "ingest")["verdict"], "different");
    assert!(
        verdict(&r, "ingest")["changed_inputs"][0]
            .as_str()
            .unwrap()
            .starts_with("content"),
        "{r}"
    );
    assert_eq!(verdict(&r, "train")["verdict"], "identical", "{r}");
    assert_eq!(verdict(&r, "split")["verdict"], "identical", "{r}");
    let sorted = verdict(&r, "sorted");
    assert_eq!(sorted["verdict"], "different");
    assert!(
        sorted["differences"][0]
            .as_str()
            .unwrap()
            .starts_with("files.sorted.txt"),
        "{sorted}"
    );
    assert!(
        sorted["changed_inputs"][0]
            .as_str()
            .unwrap()
            .starts_with("words.txt"),
        "{sorted}"
    );

    // The table says the same; a run that does not exist is an error.
    let table = p.kiln(&["reproduce", &id]).code(1);
    assert!(
        table.stderr.contains("did not reproduce"),
        "{}",
        table.stderr
    );
    p.kiln(&["reproduce", "abcdef12"]).code(2);
}

#[test]
fn a_transform_runs_sql_over_datasets_into_a_new_versioned_dataset() {
    let p = Project::new();
    p.write(
        "trips.csv",
        "day,station,riders\n2026-01-01,a,3\n2026-01-01,b,4\n2026-01-02,a,5\n2026-01-03,b,\n",
    );
    p.write(
        "weather.csv",
        "day,temp\n2026-01-01,1.5\n2026-01-02,-2.25\n2026-01-03,0.0\n",
    );
    p.set_config(
        r#"project: t
pipelines:
  daily:
    steps:
      trips: { kind: ingest, with: { dataset: trips, path: trips.csv } }
      weather: { kind: ingest, with: { dataset: weather, path: weather.csv } }
      join:
        kind: transform
        with:
          tables: { t: "${steps.trips.dataset}", w: "${steps.weather.dataset}" }
          sql: >
            SELECT t.day, SUM(t.riders) AS riders, COUNT(*) AS trips, w.temp,
                   strftime('%w', t.day) AS weekday
            FROM t JOIN w ON w.day = t.day GROUP BY t.day ORDER BY t.day
          output: daily
      top: { kind: transform, needs: [join], with: { sql: "SELECT * FROM daily WHERE riders > 4", output: busy } }
"#,
    );
    let run = p.kiln(&["run", "--json"]).ok().json();
    let s = statuses(&run);
    assert!(s.values().all(|v| v == "succeeded"), "{run}");
    let join = step_of(&run, "join");
    assert_eq!(join["outputs"]["rows"], 3);
    let out = p.path("daily.csv");
    p.kiln(&["data", "get", "daily", "-o", out.to_str().unwrap()])
        .ok();
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "day,riders,trips,temp,weekday\n2026-01-01,7,2,1.5,4\n2026-01-02,5,1,-2.25,5\n2026-01-03,,1,0.0,6\n"
    );
    // Types are inferred again: a date, integers with a null, floats.
    let shown = p.kiln(&["data", "show", "daily", "--json"]).ok().json();
    let types: Vec<(String, String)> = shown["version"]["schema"]["columns"]
        .as_array()
        .or_else(|| shown["schema"]["columns"].as_array())
        .map(|c| {
            c.iter()
                .map(|c| {
                    (
                        c["name"].as_str().unwrap().to_string(),
                        c["type"].as_str().unwrap().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    assert!(
        types.contains(&("riders".into(), "integer".into())),
        "{shown}"
    );
    assert!(types.contains(&("temp".into(), "float".into())), "{shown}");
    let top = step_of(&run, "top");
    assert_eq!(
        top["outputs"]["rows"], 2,
        "the table found by its name in the SQL"
    );

    // Unchanged inputs: cached. A new trips file: the join and what reads
    // `daily` run again.
    let again = p.kiln(&["run", "--json"]).ok().json();
    assert!(statuses(&again).values().all(|v| v == "cached"), "{again}");
    p.write("trips.csv", "day,station,riders\n2026-01-01,a,30\n");
    let third = p.kiln(&["run", "--json"]).ok().json();
    let s = statuses(&third);
    assert_eq!(
        (s["weather"].as_str(), s["join"].as_str(), s["top"].as_str()),
        ("cached", "succeeded", "succeeded")
    );

    // Bad SQL fails the step with SQLite's message.
    p.set_config(
        "project: t\npipelines:\n  bad:\n    steps:\n      q: { kind: transform, with: { sql: \"SELEC * FROM trips\", output: x } }\n      none: { kind: transform, with: { sql: \"SELECT 1\", output: y } }\n",
    );
    let bad = p.kiln(&["run", "--json"]).code(1).json();
    let q = step_of(&bad, "q");
    assert!(q["error"].as_str().unwrap().contains("syntax error"), "{q}");
    let none = step_of(&bad, "none");
    assert!(
        none["error"].as_str().unwrap().contains("names no dataset"),
        "{none}"
    );
}

#[test]
fn cached_results_survive_gc_and_new_checks_run_the_check_step_again() {
    let p = Project::new();
    p.write("d.csv", "x,y\n1,2\n3,4\n");
    p.write("in.txt", "hello\n");
    let pipeline = r#"pipelines:
  main:
    steps:
      ingest: { kind: ingest, with: { dataset: d, path: d.csv } }
      check: { kind: check, with: { dataset: "${steps.ingest.dataset}" } }
      copy: { run: "cp in.txt out.txt && echo copied", inputs: [in.txt], outputs: [out.txt] }
"#;
    p.set_config(&format!("project: t\n{pipeline}"));
    let first = p.kiln(&["run", "--json"]).ok().json();
    assert!(statuses(&first).values().all(|s| s == "succeeded"));

    // gc keeps the stored output file and the step's log.
    p.kiln(&["gc", "--grace", "0s"]).ok();
    std::fs::remove_file(p.path("out.txt")).unwrap();
    let again = p.kiln(&["run", "--json"]).ok().json();
    assert!(statuses(&again).values().all(|s| s == "cached"), "{again}");
    assert_eq!(
        std::fs::read_to_string(p.path("out.txt")).unwrap(),
        "hello\n"
    );
    let id = first["run"]["id"].as_str().unwrap();
    let log = p.kiln(&["pipelines", "logs", id, "copy"]).ok();
    assert_eq!(log.stdout, "copied\n");

    // A stricter check in kiln.yaml: the check step runs again, and fails.
    p.set_config(&format!(
        "project: t\ndatasets:\n  d:\n    checks:\n      rows: {{ min: 3 }}\n{pipeline}"
    ));
    let stricter = p.kiln(&["run", "--json"]).code(1).json();
    let s = statuses(&stricter);
    assert_eq!(
        (
            s["ingest"].as_str(),
            s["check"].as_str(),
            s["copy"].as_str()
        ),
        ("cached", "failed", "cached")
    );
}

/// A step of a `kiln run --json` (or `pipelines show --json`) by name.
fn step_of<'a>(run: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == name)
        .unwrap_or_else(|| panic!("no step `{name}` in {run}"))
}

#[test]
fn a_kiln_run_killed_outright_is_ended_by_the_next_look_at_its_runs() {
    let p = with_pipeline(
        r#"    steps:
      long: { run: "sleep 30; touch never.txt" }
      next: { run: "touch next.txt", needs: [long] }
"#,
    );
    let mut child = p
        .command(&["run", "--json"])
        .env("KILN_PIPELINE_STALE_AFTER", "1s")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (id, ()) = wait_for_latest_run(
        &p,
        30,
        || "the step never started".into(),
        |shown| (step_of(shown, "long")["status"] == "running").then_some(()),
    );
    // While it beats, looking at it changes nothing.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let look = |p: &Project| {
        let out = p
            .command(&["pipelines", "show", &id, "--json"])
            .env("KILN_PIPELINE_STALE_AFTER", "1s")
            .output()
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    assert_eq!(look(&p)["run"]["status"], "running");
    child.kill().unwrap();
    child.wait().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let shown = look(&p);
    assert_eq!(shown["run"]["status"], "failed", "{shown}");
    assert!(
        shown["run"]["error"].as_str().unwrap().contains("stopped"),
        "{shown}"
    );
    assert_eq!(step_of(&shown, "long")["status"], "cancelled");
    assert_eq!(step_of(&shown, "next")["status"], "cancelled");
    assert!(!p.path("never.txt").exists() && !p.path("next.txt").exists());
}

/// Polls the newest pipeline run's `show --json` until `found` picks
/// something out of it; returns the run id and that.
fn wait_for_latest_run<T>(
    p: &Project,
    seconds: u64,
    never: impl Fn() -> String,
    found: impl Fn(&serde_json::Value) -> Option<T>,
) -> (String, T) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    loop {
        assert!(std::time::Instant::now() < deadline, "{}", never());
        std::thread::sleep(std::time::Duration::from_millis(100));
        let runs = p.kiln(&["pipelines", "runs", "--json"]).ok().json();
        let Some(id) = runs[0]["id"].as_str() else {
            continue;
        };
        let shown = p.kiln(&["pipelines", "show", id, "--json"]).ok().json();
        if let Some(t) = found(&shown) {
            return (id.to_string(), t);
        }
    }
}
