//! `kiln-bench hello --port P [--host H]`: the HTTP floor for bench/serve.sh.
//!
//! An axum server on tokio's multi-thread runtime (default worker threads, as
//! `kiln serve` uses) with one route, `POST /invocations`, that reads the
//! whole body and answers a fixed `{"predictions":[0.5]}`. Whatever `kiln
//! serve` spends beyond this is parsing, predicting and logging; this is what
//! HTTP alone costs on the machine. Prints `listening on http://ADDR` to
//! stderr once bound.

use axum::Router;
use axum::body::Bytes;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::post;

const ANSWER: &str = r#"{"predictions":[0.5]}"#;

async fn invocations(body: Bytes) -> impl IntoResponse {
    // The body is read in full, as a real handler would before parsing it.
    std::hint::black_box(body.len());
    ([(header::CONTENT_TYPE, "application/json")], ANSWER)
}

pub fn run(args: &[String]) {
    let mut host = "127.0.0.1".to_string();
    let mut port = 0u16;
    let mut it = args.iter();
    while let Some(k) = it.next() {
        let v = it
            .next()
            .unwrap_or_else(|| super::fail(&format!("{k} needs a value")));
        match k.as_str() {
            "--host" => host.clone_from(v),
            "--port" => {
                port = v
                    .parse()
                    .unwrap_or_else(|_| super::fail(&"--port must be a number"));
            }
            other => super::fail(&format!("unknown flag `{other}`")),
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| super::fail(&e));
    rt.block_on(async move {
        let app = Router::new().route("/invocations", post(invocations));
        let listener = tokio::net::TcpListener::bind((host.as_str(), port))
            .await
            .unwrap_or_else(|e| super::fail(&e));
        let addr = listener.local_addr().unwrap_or_else(|e| super::fail(&e));
        eprintln!("listening on http://{addr}");
        axum::serve(listener, app)
            .await
            .unwrap_or_else(|e| super::fail(&e));
    });
}
