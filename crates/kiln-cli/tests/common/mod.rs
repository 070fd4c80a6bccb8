//! Runs the real `kiln` binary in throw-away projects.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub const BIKES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/data/bikeshare_hourly.csv"
);

/// A file of the shared real datasets, as a string argument.
pub fn shared_data(name: &str) -> String {
    let p = kiln_test::shared_data(name);
    p.to_str().expect("a UTF-8 path").to_string()
}

/// What a kiln run printed and how it exited.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<std::process::Output> for Out {
    fn from(out: std::process::Output) -> Self {
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Out {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }

    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "expected success\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    #[track_caller]
    pub fn code(self, code: i32) -> Self {
        assert_eq!(
            self.code, code,
            "expected exit {code}\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// Runs kiln in `dir`, which need not be a project, with no store variables set.
pub fn kiln_in(dir: &Path, args: &[&str]) -> Out {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .current_dir(dir)
        .env_remove("KILN_STORE")
        .env_remove("KILN_OBJECTS")
        .output()
        .expect("run kiln")
        .into()
}

/// A kiln project in a temporary directory, optionally on PostgreSQL + S3.
pub struct Project {
    pub dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Project {
    /// `kiln init` on SQLite + folder.
    pub fn new() -> Self {
        let p = Self {
            dir: tempfile::tempdir().unwrap(),
            env: Vec::new(),
        };
        p.kiln(&["init", "-q"]).ok();
        p
    }

    /// A project whose stores are a fresh PostgreSQL database and S3 prefix.
    pub async fn on_servers() -> Self {
        let mut env = kiln_test::s3_env();
        env.push(("KILN_STORE".into(), kiln_test::postgres_url().await));
        env.push(("KILN_OBJECTS".into(), kiln_test::s3_objects_url()));
        let p = Self {
            dir: tempfile::tempdir().unwrap(),
            env,
        };
        p.kiln(&["init", "-q"]).ok();
        p
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(rel);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(&p, content).unwrap();
        p
    }

    pub fn set_config(&self, yaml: &str) {
        self.write("kiln.yaml", yaml);
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_kiln"));
        c.args(args).current_dir(self.dir.path());
        for v in [
            "KILN_STORE",
            "KILN_OBJECTS",
            "KILN_PROJECT",
            "KILN_S3_ENDPOINT",
            "KILN_LOG",
            "RUST_LOG",
        ] {
            c.env_remove(v);
        }
        c.env("KILN_USER", "tester").env("NO_COLOR", "1");
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    pub fn kiln(&self, args: &[&str]) -> Out {
        self.command(args).output().expect("run kiln").into()
    }

    /// How many datasets `kiln data ls` lists.
    pub fn dataset_count(&self) -> usize {
        self.kiln(&["data", "ls", "--json"])
            .ok()
            .json()
            .as_array()
            .unwrap()
            .len()
    }

    /// How many runs `kiln runs ls` lists.
    pub fn run_count(&self) -> usize {
        self.kiln(&["runs", "ls", "--json"])
            .ok()
            .json()
            .as_array()
            .unwrap()
            .len()
    }

    /// Files in the local object folder's temporary area.
    pub fn tmp_files(&self) -> Vec<PathBuf> {
        list(&self.path(".kiln/objects/tmp"))
    }

    /// Stored objects (excluding tmp/ and the lock file).
    pub fn object_count(&self) -> usize {
        list(&self.path(".kiln/objects"))
            .into_iter()
            .filter(|p| !p.starts_with(self.path(".kiln/objects/tmp")) && !p.ends_with("LOCK"))
            .count()
    }
}

fn list(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        if e.file_type().unwrap().is_dir() {
            out.extend(list(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

/// The bundled bikes CSV with `f` applied to each data row's fields.
pub fn bikes_with(f: impl Fn(usize, &mut Vec<String>) -> bool) -> String {
    let text = std::fs::read_to_string(BIKES).unwrap();
    let mut lines = text.lines();
    let mut out = vec![lines.next().unwrap().to_string()];
    for (i, l) in lines.enumerate() {
        let mut fields: Vec<String> = l.split(',').map(String::from).collect();
        if f(i, &mut fields) {
            out.push(fields.join(","));
        }
    }
    out.join("\n") + "\n"
}

/// A `kiln server` or `kiln serve` on a free port in a project, killed on
/// drop. Its stderr is kept in `log`.
pub struct Server {
    pub child: std::process::Child,
    pub url: String,
    pub log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Server {
    /// Starts `kiln ARGS` and waits for its "listening on URL" line.
    pub fn start(p: &Project, args: &[&str], env: &[(&str, String)]) -> Self {
        use std::io::{BufRead, BufReader};
        let mut command = p.command(args);
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start kiln");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut url = None;
        let mut seen = String::new();
        for line in lines.by_ref() {
            let line = line.unwrap();
            seen.push_str(&line);
            seen.push('\n');
            if let Some(rest) = line.split("listening on ").nth(1) {
                url = Some(rest.split_whitespace().next().unwrap().to_string());
                break;
            }
        }
        let url = url.unwrap_or_else(|| panic!("kiln {args:?} did not start:\n{seen}"));
        // Keep draining stderr so the server never blocks on a full pipe.
        let log = std::sync::Arc::new(std::sync::Mutex::new(seen));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Server { child, url, log }
    }

    /// What the server wrote to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Sends SIGTERM and waits for the process to end; returns its exit code.
    pub fn terminate(&mut self) -> i32 {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().expect("wait").code().unwrap_or(-1)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
