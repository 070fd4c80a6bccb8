//! `kiln serve` through real HTTP on loopback: every protocol against
//! `kiln predict` on the same rows, bad input, A/B and sticky routing, a
//! shadow, an alias moved under load, the prediction log and feedback,
//! /metrics, and graceful shutdown.

mod common;

use common::{BIKES, Project, Server};
use serde_json::{Value, json};

/// A project with the bundled bikes data, two trained models registered as
/// versions 1 and 2 of `bikes`, and `champion` on version 1.
fn two_versions() -> Project {
    let p = Project::new();
    p.kiln(&["data", "add", "bikes", BIKES, "-q"]).ok();
    for seed in ["1", "2"] {
        let out = p
            .kiln(&[
                "train", "bikes", "--target", "bikers", "--trials", "2", "--seed", seed, "--json",
            ])
            .ok()
            .json();
        let run = out["model"].as_str().unwrap().to_string();
        p.kiln(&["models", "register", "bikes", "--run", &run, "-q"])
            .ok();
    }
    p.kiln(&["models", "alias", "bikes", "champion", "1", "-q"])
        .ok();
    p
}

/// The first `n` rows of the bikes data, without the target, as records.
fn records(n: usize) -> Vec<Value> {
    let text = std::fs::read_to_string(BIKES).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    lines
        .take(n)
        .map(|l| {
            let mut o = serde_json::Map::new();
            for (k, v) in header.iter().zip(l.split(',')) {
                if *k == "bikers" {
                    continue;
                }
                let v: Value = v
                    .parse::<i64>()
                    .map(Value::from)
                    .or_else(|_| v.parse::<f64>().map(Value::from))
                    .unwrap_or_else(|_| Value::from(v));
                o.insert(k.to_string(), v);
            }
            Value::Object(o)
        })
        .collect()
}

/// The same rows as CSV (header first), without the target.
fn csv(rows: &[Value]) -> String {
    let cols: Vec<&String> = rows[0].as_object().unwrap().keys().collect();
    let mut s = cols
        .iter()
        .map(|c| c.as_str())
        .collect::<Vec<_>>()
        .join(",");
    s.push('\n');
    for r in rows {
        let line: Vec<String> = cols
            .iter()
            .map(|c| match &r[c.as_str()] {
                Value::String(s) => s.clone(),
                v => v.to_string(),
            })
            .collect();
        s.push_str(&line.join(","));
        s.push('\n');
    }
    s
}

/// `kiln predict MODEL` on the rows: the prediction column.
fn kiln_predict(p: &Project, model: &str, rows: &[Value]) -> Vec<f64> {
    p.write("rows.csv", csv(rows));
    p.kiln(&["predict", model, "rows.csv", "-o", "out.csv", "-q"])
        .ok();
    let out = std::fs::read_to_string(p.path("out.csv")).unwrap();
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let at = header.iter().position(|h| *h == "prediction").unwrap();
    lines
        .map(|l| l.split(',').nth(at).unwrap().parse().unwrap())
        .collect()
}

/// The rows as v2 input tensors, one per column.
fn v2_inputs(rows: &[Value]) -> Vec<Value> {
    rows[0]
        .as_object()
        .unwrap()
        .keys()
        .map(|c| {
            let data: Vec<Value> = rows.iter().map(|r| r[c].clone()).collect();
            let datatype = if data[0].is_string() {
                "BYTES"
            } else if data.iter().all(Value::is_i64) {
                "INT64"
            } else {
                "FP64"
            };
            json!({ "name": c, "shape": [rows.len()], "datatype": datatype, "data": data })
        })
        .collect()
}

fn numbers(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn assert_close(got: &[f64], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: row count");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-9 * w.abs().max(1.0),
            "{what}: row {i}: served {g}, kiln predict {w}"
        );
    }
}

struct Http {
    client: reqwest::Client,
    base: String,
}

impl Http {
    fn new(server: &Server) -> Self {
        Http {
            client: reqwest::Client::new(),
            base: server.url.clone(),
        }
    }

    async fn post(
        &self,
        path: &str,
        content_type: &str,
        body: String,
    ) -> (u16, Option<String>, Value) {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let id = r
            .headers()
            .get("x-request-id")
            .map(|v| v.to_str().unwrap().to_string());
        let text = r.text().await.unwrap();
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, id, v)
    }

    async fn json(&self, path: &str, body: Value) -> (u16, Option<String>, Value) {
        self.post(path, "application/json", body.to_string()).await
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }
}

fn serve(p: &Project, args: &[&str]) -> Server {
    let mut all = vec!["serve", "--port", "0"];
    all.extend_from_slice(args);
    Server::start(p, &all, &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_protocol_answers_what_kiln_predict_computes() {
    let p = two_versions();
    let rows = records(25);
    let want = kiln_predict(&p, "bikes@1", &rows);
    let server = serve(&p, &["bikes@champion"]);
    let http = Http::new(&server);
    let cols: Vec<String> = rows[0].as_object().unwrap().keys().cloned().collect();
    let split = json!({
        "columns": cols,
        "data": rows.iter().map(|r| cols.iter().map(|c| r[c].clone()).collect::<Vec<_>>()).collect::<Vec<_>>(),
    });

    // MLflow's four JSON formats and CSV.
    for body in [
        json!({ "dataframe_split": split }),
        json!({ "dataframe_records": rows }),
        json!({ "instances": rows }),
        json!({ "inputs": rows }),
    ] {
        let (status, id, v) = http.json("/invocations", body.clone()).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(id.unwrap().len(), 32);
        assert_close(&numbers(&v["predictions"]), &want, &format!("{body:.40}"));
    }
    let (status, _, v) = http.post("/invocations", "text/csv", csv(&rows)).await;
    assert_eq!(status, 200, "{v}");
    assert_close(&numbers(&v["predictions"]), &want, "CSV");

    // Open Inference Protocol v2: one tensor per column.
    let inputs = v2_inputs(&rows);
    let (status, id, v) = http
        .json(
            "/v2/models/bikes/infer",
            json!({ "id": "req-7", "inputs": inputs }),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["id"], "req-7");
    assert_eq!(id.as_deref(), Some("req-7"));
    assert_eq!(v["model_version"], "1");
    assert_close(&numbers(&v["outputs"][0]["data"]), &want, "v2");
    let (status, _, _) = http
        .json(
            "/v2/models/bikes/versions/1/infer",
            json!({ "inputs": inputs }),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _, v) = http
        .json(
            "/v2/models/bikes/versions/9/infer",
            json!({ "inputs": inputs }),
        )
        .await;
    assert_eq!(status, 404, "{v}");
    let (status, meta) = http.get("/v2/models/bikes").await;
    assert_eq!(status, 200);
    let meta: Value = serde_json::from_str(&meta).unwrap();
    assert_eq!(meta["inputs"].as_array().unwrap().len(), cols.len());
    assert_eq!(meta["platform"], "kiln");
    assert_eq!(http.get("/v2/health/ready").await.0, 200);
    assert_eq!(http.get("/v2/models/bikes/ready").await.0, 200);
    assert_eq!(http.get("/healthz").await.0, 200);
    assert_eq!(http.get("/readyz").await.0, 200);

    // kiln's own: records in; predictions, version and request id out.
    let (status, id, v) = http
        .json(
            "/api/v1/deployments/bikes/predict",
            json!({ "records": rows }),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["request_id"].as_str(), id.as_deref());
    assert_eq!(v["model"]["version"], "1");
    assert_close(&numbers(&v["predictions"]), &want, "kiln");
    // With explanations: each row's top columns, adding up to its prediction.
    let (status, _, v) = http
        .json(
            "/api/v1/deployments/bikes/predict",
            json!({ "records": rows, "explain": true }),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_close(&numbers(&v["predictions"]), &want, "kiln, explained");
    let e = &v["explanations"];
    let explained = e["rows"].as_array().unwrap();
    assert_eq!(explained.len(), rows.len());
    for (r, row) in explained.iter().enumerate() {
        let top = row["top"].as_array().unwrap();
        assert_eq!(top.len(), 5);
        let total = e["expected_value"].as_f64().unwrap()
            + row["rest"].as_f64().unwrap()
            + top.iter().map(|t| t["shap"].as_f64().unwrap()).sum::<f64>();
        if e["output"].as_str().unwrap().starts_with("predicted") {
            assert!(
                (total - want[r]).abs() < 1e-6,
                "row {r}: {total} vs {}",
                want[r]
            );
        }
        // Values are the request's, a date as a date.
        for t in top {
            let column = t["column"].as_str().unwrap();
            if column == "datetime" {
                let day = &rows[r]["datetime"].as_str().unwrap()[..10];
                assert!(t["value"].as_str().unwrap().starts_with(day), "{t}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_400_naming_the_column_and_row() {
    let p = two_versions();
    let server = serve(&p, &["bikes@champion", "--max-body", "1"]);
    let http = Http::new(&server);
    let good = records(3);

    // A value of the wrong type, in the second row.
    let mut rows = good.clone();
    rows[1]["hour"] = json!("noon");
    let (status, _, v) = http
        .json(
            "/api/v1/deployments/bikes/predict",
            json!({ "records": rows }),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["column"], "hour");
    assert_eq!(v["error"]["row"], 1);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("noon"),
        "{v}"
    );

    // A missing column, named; an extra one, named.
    let mut rows = good.clone();
    rows.iter_mut().for_each(|r| {
        r.as_object_mut().unwrap().remove("temp");
    });
    let (status, _, v) = http
        .json("/invocations", json!({ "dataframe_records": rows }))
        .await;
    assert_eq!(status, 400);
    assert_eq!(v["error_code"], "BAD_REQUEST");
    assert!(v["message"].as_str().unwrap().contains("\"temp\""), "{v}");
    let mut rows = good.clone();
    rows[0]["shoe_size"] = json!(44);
    rows[1]["shoe_size"] = json!(44);
    rows[2]["shoe_size"] = json!(44);
    let (status, _, v) = http
        .json("/invocations", json!({ "dataframe_records": rows }))
        .await;
    assert_eq!(status, 400);
    assert!(v["message"].as_str().unwrap().contains("shoe_size"), "{v}");

    // No rows; malformed JSON; no recognised format; a wrong content type.
    let (status, _, v) = http
        .json("/invocations", json!({ "dataframe_records": [] }))
        .await;
    assert_eq!(status, 400);
    assert!(v["message"].as_str().unwrap().contains("no rows"), "{v}");
    let (status, _, v) = http
        .post("/invocations", "application/json", "{\"dataframe".into())
        .await;
    assert_eq!(status, 400);
    assert!(
        v["message"].as_str().unwrap().contains("not valid JSON"),
        "{v}"
    );
    let (status, _, v) = http.json("/invocations", json!({ "rows": good })).await;
    assert_eq!(status, 400);
    assert!(
        v["message"].as_str().unwrap().contains("dataframe_split"),
        "{v}"
    );
    let (status, _, _) = http
        .post("/invocations", "application/xml", "<x/>".into())
        .await;
    assert_eq!(status, 415);
    let (status, text) = http.get("/invocations").await;
    assert_eq!(status, 405);
    assert!(text.contains("GET is not allowed"), "{text}");

    // v2: a tensor whose length disagrees with its shape.
    let (status, _, v) = http
        .json(
            "/v2/models/bikes/infer",
            json!({ "inputs": [{ "name": "hour", "shape": [2], "datatype": "INT64", "data": [1] }] }),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    assert!(v["error"].is_string());

    // An unknown deployment; a body over --max-body (1 MiB).
    let (status, _, _) = http
        .json(
            "/api/v1/deployments/nope/predict",
            json!({ "records": good }),
        )
        .await;
    assert_eq!(status, 404);
    // (On a connection of its own: the server closes it after a 413.)
    let big = "x".repeat(2 << 20);
    let (status, _, _) = Http::new(&server)
        .post("/invocations", "text/csv", big)
        .await;
    assert_eq!(status, 413);

    // Rows refused by the model's signature count against its version;
    // every error answer counts by deployment and status.
    let (_, metrics) = http.get("/metrics").await;
    let value = |prefix: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in\n{metrics}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(
        value(
            "kiln_requests_total{deployment=\"bikes\",model=\"bikes\",version=\"1\",outcome=\"client_error\"}"
        ),
        4.0
    );
    assert_eq!(
        value("kiln_request_errors_total{deployment=\"bikes\",status=\"400\"}"),
        7.0
    );
    assert_eq!(
        value("kiln_request_errors_total{deployment=\"bikes\",status=\"415\"}"),
        1.0
    );
    assert_eq!(
        value("kiln_request_errors_total{deployment=\"\",status=\"404\"}"),
        1.0
    );

    // Bad declarations never start a server.
    let out = p.kiln(&[
        "serve",
        "bikes@champion",
        "--split",
        "bikes@2=120",
        "--port",
        "0",
    ]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("percent"), "{}", out.stderr);
    let out = p.kiln(&["serve", "bikes@nope", "--port", "0"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("nope"), "{}", out.stderr);
    let out = p.kiln(&["serve", "--port", "0"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("Nothing to serve"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_the_alias_swaps_the_version_without_a_failed_request() {
    let p = two_versions();
    let rows = records(1);
    let want2 = kiln_predict(&p, "bikes@2", &rows);
    let server = serve(&p, &["bikes@champion", "--reload-every", "100ms"]);
    let http = std::sync::Arc::new(Http::new(&server));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut firing = Vec::new();
    for _ in 0..4 {
        let (http, stop, rows) = (http.clone(), stop.clone(), rows.clone());
        firing.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (status, _, v) = http
                    .json(
                        "/api/v1/deployments/bikes/predict",
                        json!({ "records": rows }),
                    )
                    .await;
                seen.push((
                    status,
                    v["model"]["version"].clone(),
                    v["predictions"][0].clone(),
                ));
            }
            seen
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    p.kiln(&["models", "alias", "bikes", "champion", "2", "-q"])
        .ok();
    // Wait until version 2 answers, then a little longer.
    let mut answered_by_2 = false;
    for _ in 0..100 {
        let (_, _, v) = http
            .json(
                "/api/v1/deployments/bikes/predict",
                json!({ "records": rows }),
            )
            .await;
        if v["model"]["version"] == "2" {
            answered_by_2 = true;
            assert_close(&numbers(&v["predictions"]), &want2, "after the swap");
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(answered_by_2, "version 2 never answered:\n{}", server.log());
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut all = Vec::new();
    for f in firing {
        all.extend(f.await.unwrap());
    }
    let failed: Vec<_> = all.iter().filter(|(s, _, _)| *s != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {} failed: {:?}",
        failed.len(),
        all.len(),
        &failed[..failed.len().min(3)]
    );
    assert!(all.iter().any(|(_, v, _)| v == "1"));
    assert!(all.iter().any(|(_, v, _)| v == "2"));
    // Once 2 answered, 1 never answers again (the swap is whole).
    assert!(
        server.log().contains("moved from v1 to v2"),
        "{}",
        server.log()
    );
    let (_, metrics) = http.get("/metrics").await;
    assert!(metrics.contains("kiln_model_reloads_total 1"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_sends_its_share_and_a_key_always_meets_the_same_version() {
    let p = two_versions();
    let server = serve(&p, &["bikes@1", "--split", "bikes@2=30"]);
    let http = Http::new(&server);
    let rows = records(1);
    let mut by_2 = 0;
    for _ in 0..400 {
        let (status, _, v) = http
            .json(
                "/api/v1/deployments/bikes/predict",
                json!({ "records": rows }),
            )
            .await;
        assert_eq!(status, 200, "{v}");
        if v["model"]["version"] == "2" {
            by_2 += 1;
        }
    }
    // An evenly spread sequence: 30% within a couple of requests.
    assert!(
        (110..=130).contains(&by_2),
        "version 2 answered {by_2} of 400"
    );

    // A request to a version's own v2 path is answered by that version.
    for v in ["1", "2", "1", "2", "2"] {
        let (status, _, out) = http
            .json(
                &format!("/v2/models/bikes/versions/{v}/infer"),
                json!({ "inputs": v2_inputs(&rows) }),
            )
            .await;
        assert_eq!(status, 200, "{out}");
        assert_eq!(out["model_version"], v);
    }

    // Sticky: a key always meets the same version, and keys spread.
    let mut versions = std::collections::HashSet::new();
    for k in 0..40 {
        let key = format!("customer-{k}");
        let (_, _, first) = http
            .json(
                "/api/v1/deployments/bikes/predict",
                json!({ "records": rows, "key": key }),
            )
            .await;
        for _ in 0..3 {
            let (_, _, again) = http
                .json(
                    "/api/v1/deployments/bikes/predict",
                    json!({ "records": rows, "key": key }),
                )
                .await;
            assert_eq!(again["model"], first["model"], "key {key}");
        }
        versions.insert(first["model"]["version"].as_str().unwrap().to_string());
    }
    assert_eq!(versions.len(), 2, "40 keys all met one version");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_scores_every_request_and_reports_agreement() {
    let p = two_versions();
    let server = serve(
        &p,
        &[
            "bikes@champion",
            "--shadow",
            "bikes@2",
            "--log-flush",
            "100ms",
        ],
    );
    let http = Http::new(&server);
    let rows = records(4);
    let want1 = kiln_predict(&p, "bikes@1", &rows);
    for _ in 0..10 {
        let (status, _, v) = http
            .json(
                "/api/v1/deployments/bikes/predict",
                json!({ "records": rows }),
            )
            .await;
        assert_eq!(status, 200);
        // The champion answers.
        assert_eq!(v["model"]["version"], "1");
        assert_close(&numbers(&v["predictions"]), &want1, "champion");
    }
    let mut report = Value::Null;
    for _ in 0..50 {
        let (status, text) = http.get("/api/v1/deployments/bikes/shadow").await;
        assert_eq!(status, 200, "{text}");
        report = serde_json::from_str(&text).unwrap();
        if report["compared_rows"] == 40 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(report["compared_rows"], 40, "{report}");
    assert_eq!(report["shadow"]["version"], "2");
    // Two different models: values differ, so regression rows disagree.
    let agreement = report["agreement"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&agreement));
    assert!(
        report["mean_abs_difference"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    assert!(report["latency_ms"]["shadow"]["p50"].as_f64().unwrap() > 0.0);
    let (_, metrics) = http.get("/metrics").await;
    assert!(
        metrics.contains("kiln_shadow_rows_total{deployment=\"bikes\"} 40"),
        "{metrics}"
    );

    // Both models' predictions are logged, by role.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let logged = p
        .kiln(&["predictions", "bikes", "--limit", "1000", "--json"])
        .ok()
        .json();
    let roles: Vec<&str> = logged
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles.iter().filter(|r| **r == "answer").count(), 40);
    assert_eq!(roles.iter().filter(|r| **r == "shadow").count(), 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn predictions_are_logged_and_labels_arrive_later_by_request_id() {
    let p = two_versions();
    let mut server = serve(&p, &["bikes@champion"]);
    let http = Http::new(&server);
    let rows = records(3);
    let (_, id, v) = http
        .json(
            "/api/v1/deployments/bikes/predict",
            json!({ "records": rows }),
        )
        .await;
    let id = id.unwrap();
    let predicted = numbers(&v["predictions"]);
    let (status, _, _) = http
        .json("/invocations", json!({ "dataframe_records": &rows[..1] }))
        .await;
    assert_eq!(status, 200);

    // Labels for rows 0 and 2 of the first request; one sent twice (the
    // second replaces the first); bad feedback is refused.
    let (status, _, v) = http
        .json(
            "/api/v1/deployments/bikes/feedback",
            json!({ "feedback": [
                { "request_id": id, "row": 0, "label": 10 },
                { "request_id": id, "row": 2, "label": 30 },
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["accepted"], 2);
    let (status, _, _) = http
        .json(
            "/api/v1/deployments/bikes/feedback",
            json!({ "request_id": id, "row": 0, "label": 11 }),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _, v) = http
        .json("/api/v1/deployments/bikes/feedback", json!({ "label": 3 }))
        .await;
    assert_eq!(status, 400);
    assert_eq!(v["error"]["column"], "request_id");
    let (status, _, _) = http
        .json(
            "/api/v1/deployments/bikes/feedback",
            json!({ "request_id": id, "label": [1, 2] }),
        )
        .await;
    assert_eq!(status, 400);

    // SIGTERM: the server finishes, and writes what the log holds.
    assert_eq!(server.terminate(), 0, "{}", server.log());
    let logged = p
        .kiln(&["predictions", "bikes", "--limit", "100", "--json"])
        .ok()
        .json();
    let logged = logged.as_array().unwrap();
    assert_eq!(logged.len(), 4, "{logged:?}");
    let mine: Vec<&Value> = logged
        .iter()
        .filter(|r| r["request_id"] == id.as_str())
        .collect();
    assert_eq!(mine.len(), 3);
    for r in &mine {
        let row = r["row"].as_u64().unwrap() as usize;
        assert_eq!(r["model"], "bikes");
        assert_eq!(r["version"], "1");
        assert_eq!(r["role"], "answer");
        assert_eq!(r["prediction"].as_f64().unwrap(), predicted[row]);
        assert_eq!(r["input.hour"], rows[row]["hour"]);
        assert!(r["latency_ms"].as_f64().unwrap() > 0.0);
        let want = match row {
            0 => json!(11),
            2 => json!(30),
            _ => Value::Null,
        };
        assert_eq!(r["label"], want, "row {row}");
    }

    // A sample of 0 logs nothing.
    let mut server = serve(&p, &["quiet=bikes@champion", "--sample", "0"]);
    let http = Http::new(&server);
    let (status, _, _) = http
        .json(
            "/api/v1/deployments/quiet/predict",
            json!({ "records": rows }),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(server.terminate(), 0);
    let out = p.kiln(&["predictions", "quiet"]);
    assert_eq!(out.code, 2, "{}", out.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_report_requests_latency_load_time_and_the_process() {
    let p = two_versions();
    let yaml = std::fs::read_to_string(p.path("kiln.yaml")).unwrap();
    p.set_config(&format!(
        "{yaml}\ndeployments:\n  demand:\n    model: bikes@champion\n    sample: 0.5\n"
    ));
    let server = serve(&p, &[]);
    let http = Http::new(&server);
    for _ in 0..5 {
        let (status, _, _) = http
            .json(
                "/api/v1/deployments/demand/predict",
                json!({ "records": records(2) }),
            )
            .await;
        assert_eq!(status, 200);
    }
    let (status, text) = http.get("/metrics").await;
    assert_eq!(status, 200);
    let value = |prefix: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let labels = "deployment=\"demand\",model=\"bikes\",version=\"1\"";
    assert_eq!(
        value(&format!("kiln_requests_total{{{labels},outcome=\"ok\"}}")),
        5.0
    );
    assert_eq!(
        value(&format!("kiln_request_duration_seconds_count{{{labels}}}")),
        5.0
    );
    assert!(value(&format!("kiln_request_duration_seconds_sum{{{labels}}}")) > 0.0);
    assert_eq!(
        value(&format!("kiln_prediction_rows_total{{{labels}}}")),
        10.0
    );
    assert!(value(&format!("kiln_model_load_seconds{{{labels}}}")) > 0.0);
    assert_eq!(value("kiln_requests_in_flight{deployment=\"demand\"}"), 0.0);
    assert!(value("process_cpu_seconds_total") > 0.0);
    assert!(value("process_resident_memory_bytes") > 1e6);
    assert!(text.contains("kiln_request_duration_seconds_bucket"));

    // The deployment as declared in kiln.yaml.
    let (_, d) = http.get("/api/v1/deployments/demand").await;
    let d: Value = serde_json::from_str(&d).unwrap();
    assert_eq!(d["sample"], 0.5);
    assert_eq!(d["models"][0]["reference"], "bikes@champion");
    assert_eq!(d["models"][0]["percent"], 100.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triton_and_requests_clients_get_what_kiln_predict_computes() {
    let python = std::env::var(kiln_core::EnvVars::KILN_TEST_MLFLOW_PYTHON).unwrap_or_else(|_| {
        panic!(
            "{} is not set: run the tests with scripts/test, which installs the clients",
            kiln_core::EnvVars::KILN_TEST_MLFLOW_PYTHON
        )
    });
    let p = two_versions();
    let rows = records(40);
    kiln_predict(&p, "bikes@champion", &rows);
    let server = serve(&p, &["bikes@champion"]);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/serving/clients.py"
    );
    let out = tokio::task::spawn_blocking({
        let (url, rows, expected) = (server.url.clone(), p.path("rows.csv"), p.path("out.csv"));
        move || {
            std::process::Command::new(python)
                .arg(script)
                .args([url.as_str(), "bikes"])
                .arg(rows)
                .arg(expected)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "clients.py failed:\n{stdout}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let checked: Vec<&str> = report["checked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(checked.len(), 7, "{checked:?}");
    assert!(checked.contains(&"tritonclient binary tensors"));
    assert_eq!(report["rows"], 40);
}

/// The foreign-model fixtures of kiln-ml, with their libraries' predictions.
const FOREIGN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../kiln-ml/tests/fixtures/foreign/"
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_models_answer_what_their_own_libraries_predict() {
    let p = Project::new();
    let fixtures = [
        ("lgb-credit", "lightgbm_credit_binary.txt"),
        ("lgb-weather", "lightgbm_bikeshare_weather_multiclass.txt"),
        ("lgb-bikes", "lightgbm_bikeshare_categorical_regression.txt"),
        ("xgb-credit", "xgboost_credit_binary.json"),
        ("xgb-weather", "xgboost_bikeshare_weather_multiclass.json"),
        ("onnx-gbr", "onnx_bikeshare_gbr.onnx"),
        ("onnx-forest", "onnx_bikeshare_weather_forest.onnx"),
    ];
    let mut targets = Vec::new();
    for (name, file) in fixtures {
        p.kiln(&["models", "import", name, &format!("{FOREIGN}{file}"), "-q"])
            .ok();
        targets.push(format!("{name}@1"));
    }
    let args: Vec<&str> = targets.iter().map(String::as_str).collect();
    let server = serve(&p, &args);
    let http = Http::new(&server);
    for (name, file) in fixtures {
        let stem = file.rsplit_once('.').unwrap().0;
        let expected: Value = serde_json::from_str(
            &std::fs::read_to_string(format!("{FOREIGN}{stem}.expected.json")).unwrap(),
        )
        .unwrap();
        let cols: Vec<String> = expected["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect();
        let split = json!({ "columns": cols, "data": expected["rows"] });
        let (status, _, v) = http
            .json(
                &format!("/api/v1/deployments/{name}/predict"),
                json!({ "dataframe_split": split }),
            )
            .await;
        assert_eq!(status, 200, "{name}: {v}");
        let want = expected["predictions"].as_array().unwrap();
        // MLflow's /invocations answers as the flavour does: a booster's
        // probabilities, a label for the rest.
        let (status, _, inv) = http
            .json(
                &format!("/invocations?deployment={name}"),
                json!({ "dataframe_split": split }),
            )
            .await;
        assert_eq!(status, 200, "{name}: {inv}");
        if name.starts_with("lgb-credit") || name.starts_with("xgb-") {
            assert_eq!(inv["predictions"].as_array().unwrap().len(), want.len());
            let flat = |v: &Value| -> Vec<f64> {
                match v {
                    Value::Array(a) => a.iter().map(|x| x.as_f64().unwrap()).collect(),
                    x => vec![x.as_f64().unwrap()],
                }
            };
            for (g, w) in inv["predictions"].as_array().unwrap().iter().zip(want) {
                let (g, w) = (flat(g), flat(w));
                assert_eq!(g.len(), w.len(), "{name}");
                assert!(
                    g.iter().zip(&w).all(|(g, w)| (g - w).abs() <= 1e-6),
                    "{name}: {g:?} vs {w:?}"
                );
            }
        } else if name.starts_with("onnx-forest") {
            assert!(inv["predictions"][0].is_string(), "{name}: {inv}");
        }
        for (i, w) in want.iter().enumerate() {
            let got: Vec<f64> = match &v["probabilities"] {
                Value::Array(rows) => rows[i]
                    .as_object()
                    .unwrap()
                    .values()
                    .map(|x| x.as_f64().unwrap())
                    .collect(),
                _ => vec![v["predictions"][i].as_f64().unwrap()],
            };
            let want: Vec<f64> = match w {
                Value::Array(ps) => ps.iter().map(|x| x.as_f64().unwrap()).collect(),
                // A binary model's probability of class 1.
                x if got.len() == 2 => vec![1.0 - x.as_f64().unwrap(), x.as_f64().unwrap()],
                x => vec![x.as_f64().unwrap()],
            };
            assert_eq!(got.len(), want.len(), "{name} row {i}");
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (g - w).abs() <= 1e-6,
                    "{name} row {i}: served {g}, library {w}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_request_times_out_and_shutdown_finishes_requests_in_flight() {
    let p = Project::new();
    p.kiln(&[
        "models",
        "import",
        "weather",
        &format!("{FOREIGN}lightgbm_bikeshare_weather_multiclass.txt"),
        "-q",
    ])
    .ok();
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(format!(
            "{FOREIGN}lightgbm_bikeshare_weather_multiclass.expected.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let row = expected["rows"][0].clone();
    let many = |n: usize| {
        json!({ "dataframe_split": {
            "columns": expected["columns"],
            "data": vec![row.clone(); n],
        }})
    };

    // 200,000 rows cannot be scored in 5 ms: 503, and the server lives on.
    let server = serve(&p, &["weather@1", "--timeout", "5ms"]);
    let http = Http::new(&server);
    let (status, _, v) = http.json("/invocations", many(90_000)).await;
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["error"]["code"], "TIMEOUT");
    let (status, _, _) = http.json("/invocations", many(1)).await;
    assert_eq!(status, 200);
    drop(server);

    // SIGTERM while a large request is being answered: it is answered.
    let mut server = serve(&p, &["weather@1"]);
    let http = std::sync::Arc::new(Http::new(&server));
    let in_flight = {
        let (http, body) = (http.clone(), many(90_000));
        tokio::spawn(async move { http.json("/invocations", body).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    assert_eq!(server.terminate(), 0, "{}", server.log());
    let (status, _, v) = in_flight.await.unwrap();
    assert_eq!(status, 200, "{v:.200}");
    assert_eq!(v["predictions"].as_array().unwrap().len(), 90_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serving_logs_to_postgres_and_s3() {
    let p = Project::on_servers().await;
    p.kiln(&[
        "models",
        "import",
        "credit",
        &format!("{FOREIGN}xgboost_credit_binary.json"),
        "-q",
    ])
    .ok();
    p.kiln(&["models", "alias", "credit", "champion", "1", "-q"])
        .ok();
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{FOREIGN}xgboost_credit_binary.expected.json")).unwrap(),
    )
    .unwrap();
    let mut server = serve(&p, &["credit@champion"]);
    let http = Http::new(&server);
    let (status, id, v) = http
        .json(
            "/api/v1/deployments/credit/predict",
            json!({ "dataframe_split": { "columns": expected["columns"], "data": expected["rows"] } }),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let id = id.unwrap();
    let n = expected["rows"].as_array().unwrap().len();
    let (status, _, _) = http
        .json(
            "/api/v1/deployments/credit/feedback",
            json!({ "request_id": id, "labels": vec!["1"; n] }),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(server.terminate(), 0, "{}", server.log());
    let logged = p
        .kiln(&["predictions", "credit", "--limit", "1000", "--json"])
        .ok()
        .json();
    let logged = logged.as_array().unwrap();
    assert_eq!(logged.len(), n);
    for r in logged {
        let row = r["row"].as_u64().unwrap() as usize;
        let want = expected["predictions"][row].as_f64().unwrap();
        assert!((r["prob.1"].as_f64().unwrap() - want).abs() <= 1e-6, "{r}");
        assert_eq!(r["label"], "1");
        assert_eq!(r["format"], Value::Null);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alias_moved_to_a_version_that_cannot_load_keeps_the_old_one_serving() {
    let p = Project::new();
    for file in ["xgboost_credit_binary.json", "onnx_credit_forest.onnx"] {
        p.kiln(&[
            "models",
            "import",
            "credit",
            &format!("{FOREIGN}{file}"),
            "-q",
        ])
        .ok();
    }
    p.kiln(&["models", "alias", "credit", "champion", "1", "-q"])
        .ok();
    // Version 2 reads strings through operators kiln does not evaluate:
    // serving it is refused at start, naming them.
    let out = p.kiln(&["serve", "credit@2", "--port", "0"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("OneHotEncoder"), "{}", out.stderr);

    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{FOREIGN}xgboost_credit_binary.expected.json")).unwrap(),
    )
    .unwrap();
    let body = json!({ "dataframe_split": {
        "columns": expected["columns"],
        "data": [expected["rows"][0]],
    }});
    let server = serve(&p, &["credit@champion", "--reload-every", "100ms"]);
    let http = Http::new(&server);
    p.kiln(&["models", "alias", "credit", "champion", "2", "-q"])
        .ok();
    let mut reported = false;
    for _ in 0..50 {
        let (status, _, v) = http
            .json("/api/v1/deployments/credit/predict", body.clone())
            .await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["model"]["version"], "1");
        if server.log().contains("cannot be loaded") {
            reported = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(reported, "{}", server.log());
    // Tried once for this move, not on every check.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(
        server.log().matches("cannot be loaded").count(),
        1,
        "{}",
        server.log()
    );
    let (_, metrics) = http.get("/metrics").await;
    assert!(metrics.contains("kiln_model_reloads_total 0"), "{metrics}");
}

#[test]
fn kiln_predict_scores_imported_models_like_their_libraries() {
    let p = Project::new();
    p.kiln(&[
        "models",
        "import",
        "weather",
        &format!("{FOREIGN}xgboost_bikeshare_weather_multiclass.json"),
        "-q",
    ])
    .ok();
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(format!(
            "{FOREIGN}xgboost_bikeshare_weather_multiclass.expected.json"
        ))
        .unwrap(),
    )
    .unwrap();
    // The rows as CSV, with an id column the model does not read first.
    let cols: Vec<&str> = expected["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let mut csv = format!("id,{}\n", cols.join(","));
    for (i, r) in expected["rows"].as_array().unwrap().iter().enumerate() {
        let cells: Vec<String> = r
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                if v.is_null() {
                    String::new()
                } else {
                    v.to_string()
                }
            })
            .collect();
        csv.push_str(&format!("{i},{}\n", cells.join(",")));
    }
    p.write("rows.csv", csv);
    for model in [
        "weather@1".to_string(),
        format!("{FOREIGN}xgboost_bikeshare_weather_multiclass.json"),
    ] {
        p.kiln(&[
            "predict", &model, "rows.csv", "-o", "out.csv", "--keep", "id", "-q",
        ])
        .ok();
        let out = std::fs::read_to_string(p.path("out.csv")).unwrap();
        let mut lines = out.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        assert_eq!(&header[..2], &["id", "prediction"], "{header:?}");
        for (i, line) in lines.enumerate() {
            let cells: Vec<&str> = line.split(',').collect();
            assert_eq!(cells[0], i.to_string());
            let want = expected["predictions"][i].as_array().unwrap();
            for (k, w) in want.iter().enumerate() {
                let got: f64 = cells[2 + k].parse().unwrap();
                assert!((got - w.as_f64().unwrap()).abs() <= 1e-6, "{model} row {i}");
            }
        }
    }
    // A table without a column the model reads: named.
    p.write("short.csv", "hour\n1\n");
    let out = p.kiln(&["predict", "weather@1", "short.csv", "-o", "x.csv"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("lacks column"), "{}", out.stderr);
}
