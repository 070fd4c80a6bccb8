//! Reference measurements for `bench/`: what kiln's work costs without kiln.
//!
//! `kiln-bench csv-read FILE`   reads a CSV into Arrow batches and drops them
//!                              (the same parser and type inference kiln uses)
//! `kiln-bench profile FILE`    the same read, plus kiln's profiler
//! `kiln-bench ingest FILE OUT` the same read, profiler and Parquet copy
//! `kiln-bench hash FILE`       kiln's BLAKE3 pass over a file (what `data add`
//!                              does before anything else)
//!
//! `kiln-bench gbdt --train F --test F --target COL --objective binary|regression
//!   --trees N --leaves L --lr X --threads T --max-bin B --min-child-samples M`
//!                              fits kiln's boosted trees alone (see bench/ml.sh)
//!
//! `kiln-bench shap --model F --data F --threads T --method path|interventional
//!   --background N --single K`
//!                              kiln's SHAP engine alone (see bench/explain.sh)
//!
//! `kiln-bench hello --port P [--host H]`
//!                              a hello-world axum server answering a fixed
//!                              prediction on `POST /invocations`, the HTTP
//!                              floor of bench/serve.sh (runs until killed)
//!
//! The others print rows and seconds as one JSON line.

use std::path::Path;
use std::time::Instant;

use kiln_data::profile::Profiler;
use kiln_data::read::{ReadOptions, open};

mod gbdt;
mod hello;
mod shap;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("gbdt") {
        gbdt::run(&args[2..]);
        return;
    }
    if args.get(1).map(String::as_str) == Some("shap") {
        shap::run(&args[2..]);
        return;
    }
    if args.get(1).map(String::as_str) == Some("hello") {
        hello::run(&args[2..]);
        return;
    }
    let (mode, file) = match (args.get(1), args.get(2)) {
        (Some(m), Some(f)) => (m.as_str(), Path::new(f)),
        _ => {
            eprintln!(
                "usage: kiln-bench csv-read|profile|hash FILE | ingest FILE OUT | gbdt … | hello …"
            );
            std::process::exit(2);
        }
    };
    let start = Instant::now();
    let rows = match mode {
        "csv-read" | "profile" => {
            let reader = open(file, &ReadOptions::default(), false).unwrap_or_else(|e| fail(&e));
            let mut profiler = (mode == "profile").then(|| Profiler::new(&reader.schema));
            let mut rows = 0;
            for b in reader {
                let b = b.unwrap_or_else(|e| fail(&e));
                rows += b.num_rows();
                if let Some(p) = profiler.as_mut() {
                    p.update(&b);
                }
            }
            if let Some(p) = profiler {
                std::hint::black_box(p.finish());
            }
            rows as u64
        }
        "hash" => {
            kiln_store::hash_file(file, &kiln_core::NoProgress)
                .unwrap_or_else(|e| fail(&e))
                .1
        }
        "ingest" => {
            let out = Path::new(args.get(3).map_or("out.parquet", String::as_str));
            let r = kiln_data::ingest::ingest(
                file,
                &ReadOptions::default(),
                out,
                &kiln_core::NoProgress,
            )
            .unwrap_or_else(|e| fail(&e));
            r.rows
        }
        other => {
            eprintln!("unknown mode `{other}`");
            std::process::exit(2);
        }
    };
    println!(
        "{{\"mode\": \"{mode}\", \"rows\": {rows}, \"seconds\": {:.3}}}",
        start.elapsed().as_secs_f64()
    );
}

/// `--name value` pairs, as the subcommands with flags take them.
struct Flags(std::collections::HashMap<String, String>);

impl Flags {
    fn parse(args: &[String]) -> Flags {
        let mut flags = std::collections::HashMap::new();
        let mut it = args.iter();
        while let Some(k) = it.next() {
            let v = it
                .next()
                .unwrap_or_else(|| fail(&format!("{k} needs a value")));
            flags.insert(k.trim_start_matches("--").to_string(), v.clone());
        }
        Flags(flags)
    }

    /// The value of `--name`, or `default`.
    fn get(&self, name: &str, default: &str) -> String {
        self.0
            .get(name)
            .cloned()
            .unwrap_or_else(|| default.to_string())
    }
}

fn fail(e: &dyn std::fmt::Display) -> ! {
    eprintln!("error: {e}");
    std::process::exit(2);
}
