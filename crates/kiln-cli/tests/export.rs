//! `kiln export` through the real binary: the Kubernetes manifests against
//! Kubernetes' own schemas and against the real servers' routes, the CI
//! files against GitLab's and GitHub's schemas with their commands run by a
//! shell, the Jenkinsfile's structure, the Dockerfile's stages, and bad
//! input. The schemas come from tests/export/validate.py, whose interpreter
//! is KILN_TEST_EXPORT_PYTHON, which `scripts/test` sets.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use common::{Out, Project, Server};
use serde_json::{Value, json};

const VALIDATE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/export/validate.py"
);
const FOREIGN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../kiln-ml/tests/fixtures/foreign/"
);
/// The Kubernetes release the manifests are checked against.
const KUBERNETES: &str = "1.30";

// --- Helpers ----------------------------------------------------------------

/// Runs tests/export/validate.py with the interpreter scripts/test installs.
fn validate(args: &[&str]) -> Out {
    let python = std::env::var("KILN_TEST_EXPORT_PYTHON").unwrap_or_else(|_| {
        panic!(
            "KILN_TEST_EXPORT_PYTHON is not set: run the tests with scripts/test, which \
             installs tests/export/requirements.txt (kubernetes-validate, check-jsonschema)"
        )
    });
    Command::new(python)
        .arg(VALIDATE)
        .args(args)
        .output()
        .expect("run validate.py")
        .into()
}

/// A YAML file's documents, read by PyYAML.
fn yaml_docs(path: &Path) -> Vec<Value> {
    validate(&["json", path.to_str().unwrap()])
        .ok()
        .json()
        .as_array()
        .unwrap()
        .clone()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The default of `kiln COMMAND --port`, as its help prints it.
fn default_port(p: &Project, command: &str) -> u16 {
    let help = p.kiln(&[command, "--help"]).ok().stdout;
    let after = &help[help.find("--port").expect("a --port option")..];
    let start = after.find("[default: ").expect("a default port") + "[default: ".len();
    let end = start + after[start..].find(']').unwrap();
    after[start..end].parse().unwrap()
}

/// Runs a shell command line with a fake `kiln` first on PATH; returns the
/// argument vectors kiln was called with, one per call.
fn kiln_calls(dir: &Path, command: &str) -> Vec<Vec<String>> {
    let bin = dir.join("fake-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let fake = bin.join("kiln");
    std::fs::write(
        &fake,
        "#!/bin/sh\nprintf '%s\\0' \"$@\" >> \"$KILN_CALLS\"\nprintf '\\n' >> \"$KILN_CALLS\"\n",
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let calls = dir.join("calls");
    let _ = std::fs::remove_file(&calls);
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let status = Command::new("sh")
        .args(["-e", "-c", command])
        .current_dir(dir)
        .env("PATH", path)
        .env("KILN_CALLS", &calls)
        .env("HOME", "/nonexistent-home")
        .status()
        .unwrap();
    assert!(status.success(), "sh -c {command:?}: {status}");
    let text = std::fs::read_to_string(&calls).unwrap_or_default();
    text.split_terminator('\n')
        .map(|call| call.split_terminator('\0').map(String::from).collect())
        .collect()
}

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| (*w).to_string()).collect()
}

#[track_caller]
fn assert_sh_syntax(script: &str) {
    let out = Command::new("sh")
        .args(["-n", "-c", script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "not valid sh: {script}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A --require expression with everything a shell would otherwise touch.
const EXPR: &str = r#"roc_auc >= 0.9 && note != "it's $HOME" || `x` ; *"#;

/// What the CI files must run, for `--pipeline train --param label=a b
/// --gate fraud@candidate --require EXPR`.
fn expected_calls() -> (Vec<String>, Vec<String>) {
    (
        argv(&[
            "run",
            "train",
            "--param",
            "label=a b",
            "--junit",
            "kiln-run.xml",
        ]),
        argv(&[
            "gate",
            "fraud@candidate",
            "--require",
            EXPR,
            "--junit",
            "kiln-gate.xml",
        ]),
    )
}

/// A project whose kiln.yaml declares the pipelines `train` and `t`.
fn ci_project() -> Project {
    let p = Project::new();
    let text = read(&p.path("kiln.yaml"));
    p.set_config(&format!(
        "{text}pipelines:\n  train:\n    steps:\n      a: {{ run: 'true' }}\n  t:\n    steps:\n      a: {{ run: 'true' }}\n"
    ));
    p
}

fn export_ci(p: &Project, system: &str) -> Out {
    p.kiln(&[
        "export",
        "ci",
        system,
        "--pipeline",
        "train",
        "--param",
        "label=a b",
        "--gate",
        "fraud@candidate",
        "--require",
        EXPR,
    ])
}

// --- Kubernetes -------------------------------------------------------------

/// A kiln.yaml whose text must reach the pods byte for byte: comments,
/// quotes, `: ` and ` #` inside strings, non-ASCII, a blank line.
const KILN_YAML_TAIL: &str = "\
# Serving: \"bikes\" answers with version 1 # not an alias yet
deployments:
  bikes:
    model: 'bikes@1'   # über-simple

    sample: 0.5
";

/// A project that serves an imported model, exported with `args`.
fn exported_k8s(args: &[&str]) -> (Project, String) {
    let p = ci_project();
    p.kiln(&[
        "models",
        "import",
        "bikes",
        &format!("{FOREIGN}lightgbm_bikeshare_regression.txt"),
        "-q",
    ])
    .ok();
    let text = format!("{}{KILN_YAML_TAIL}", read(&p.path("kiln.yaml")));
    p.set_config(&text);
    let mut all = vec!["export", "k8s"];
    all.extend_from_slice(args);
    p.kiln(&all).ok();
    (p, text)
}

fn k8s_docs(p: &Project) -> Vec<Value> {
    ["configmap", "server", "serve", "worker"]
        .iter()
        .flat_map(|f| yaml_docs(&p.path(&format!("k8s/{f}.yaml"))))
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

/// Whether every label of `selector` is on `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    let s = selector.as_object().unwrap();
    !s.is_empty() && s.iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[test]
fn kubernetes_manifests_validate_against_the_kubernetes_schemas() {
    let (p, _) = exported_k8s(&["--namespace", "ml", "--workers", "2"]);
    let files: Vec<String> = ["configmap", "server", "serve", "worker"]
        .iter()
        .map(|f| p.path(&format!("k8s/{f}.yaml")).display().to_string())
        .collect();
    let mut args = vec!["k8s", KUBERNETES];
    args.extend(files.iter().map(String::as_str));
    let out = validate(&args);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    // ConfigMap; Deployment + Service; Deployment + Service + HPA; Deployment.
    assert_eq!(out.stdout.matches("ok ").count(), 7, "{}", out.stdout);
}

#[test]
fn kubernetes_objects_reference_each_other_and_hold_no_secret_value() {
    let (p, text) = exported_k8s(&[
        "--namespace",
        "ml",
        "--serve-replicas",
        "3",
        "--workers",
        "2",
        "--image",
        "registry.example.com/kiln:7",
    ]);
    let docs = k8s_docs(&p);
    assert_eq!(docs.len(), 7);
    for d in &docs {
        assert_eq!(d["metadata"]["namespace"], "ml", "{}", d["metadata"]);
        assert_eq!(d["metadata"]["labels"]["app.kubernetes.io/name"], "kiln");
    }

    // kiln.yaml reaches the pods exactly as the project has it.
    let cm = find(&docs, "ConfigMap", "kiln-config");
    assert_eq!(cm["data"]["kiln.yaml"], text.as_str());

    // The autoscaler scales the serve Deployment, from --serve-replicas up.
    let hpa = find(&docs, "HorizontalPodAutoscaler", "kiln-serve");
    let target = &hpa["spec"]["scaleTargetRef"];
    let serve = find(&docs, "Deployment", target["name"].as_str().unwrap());
    assert_eq!(target["kind"], "Deployment");
    assert_eq!(target["apiVersion"], serve["apiVersion"]);
    assert_eq!(
        serve["spec"]["template"]["spec"]["containers"][0]["args"][0],
        "serve"
    );
    assert_eq!(hpa["spec"]["minReplicas"], 3);
    assert_eq!(hpa["spec"]["maxReplicas"], 12);
    assert_eq!(serve["spec"]["replicas"], 3);
    assert_eq!(
        hpa["spec"]["metrics"][0]["resource"]["name"], "cpu",
        "{}",
        hpa["spec"]
    );

    for (component, replicas) in [("server", 1), ("serve", 3), ("worker", 2)] {
        let d = find(&docs, "Deployment", &format!("kiln-{component}"));
        assert_eq!(d["spec"]["replicas"], replicas);
        let template = &d["spec"]["template"];
        assert!(selects(
            &d["spec"]["selector"]["matchLabels"],
            &template["metadata"]["labels"]
        ));
        let pod = &template["spec"];
        // Service links would set KILN_SERVE_PORT=tcp://…, which kiln reads.
        assert_eq!(pod["enableServiceLinks"], false);
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        assert_ne!(pod["securityContext"]["runAsUser"], 0);
        let c = &pod["containers"][0];
        assert_eq!(c["image"], "registry.example.com/kiln:7");
        assert_eq!(c["args"][0], component);
        assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
        assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
        for limit in ["requests", "limits"] {
            for r in ["cpu", "memory"] {
                assert!(
                    c["resources"][limit][r].is_string(),
                    "{component} {limit}.{r}"
                );
            }
        }

        // kiln finds kiln.yaml in its working directory, where the
        // ConfigMap is mounted; /tmp is writable.
        let volume = |mount: &str| {
            let m = c["volumeMounts"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["mountPath"] == mount)
                .unwrap_or_else(|| panic!("{component}: nothing at {mount}"));
            pod["volumes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["name"] == m["name"])
                .unwrap()
                .clone()
        };
        assert_eq!(c["workingDir"], "/etc/kiln");
        assert_eq!(volume("/etc/kiln")["configMap"]["name"], "kiln-config");
        assert!(volume("/tmp")["emptyDir"].is_object());

        // The store comes from the Secret, by reference only.
        let env = c["env"].as_array().unwrap();
        for (key, optional) in [
            ("KILN_STORE", false),
            ("KILN_OBJECTS", false),
            ("AWS_ACCESS_KEY_ID", true),
            ("AWS_SECRET_ACCESS_KEY", true),
            ("KILN_S3_ENDPOINT", true),
        ] {
            let e = env.iter().find(|e| e["name"] == key).unwrap();
            assert!(e.get("value").is_none(), "{key} has a value");
            let r = &e["valueFrom"]["secretKeyRef"];
            assert_eq!(r["name"], "kiln-store");
            assert_eq!(r["key"], key);
            assert_eq!(r["optional"].as_bool().unwrap_or(false), optional, "{key}");
        }

        if component == "worker" {
            // No HTTP port: nothing to probe, no Service.
            for probe in ["livenessProbe", "readinessProbe", "startupProbe", "ports"] {
                assert!(c.get(probe).is_none(), "worker has {probe}");
            }
            assert!(
                !docs
                    .iter()
                    .any(|d| d["kind"] == "Service" && d["metadata"]["name"] == "kiln-worker")
            );
            continue;
        }
        // The Service reaches this Deployment's pods on their named port.
        let svc = find(&docs, "Service", &format!("kiln-{component}"));
        assert!(selects(
            &svc["spec"]["selector"],
            &template["metadata"]["labels"]
        ));
        let port_name = &svc["spec"]["ports"][0]["targetPort"];
        let port = c["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == *port_name)
            .unwrap();
        assert_eq!(svc["spec"]["ports"][0]["port"], port["containerPort"]);
        for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
            assert_eq!(
                c[probe]["httpGet"]["port"], *port_name,
                "{component} {probe}"
            );
        }
    }
    // No Service selects pods of another component.
    let services: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "Service").collect();
    assert_eq!(services.len(), 2);
    for svc in services {
        let selected: Vec<&Value> = docs
            .iter()
            .filter(|d| d["kind"] == "Deployment")
            .filter(|d| {
                selects(
                    &svc["spec"]["selector"],
                    &d["spec"]["template"]["metadata"]["labels"],
                )
            })
            .collect();
        assert_eq!(selected.len(), 1, "{}", svc["metadata"]["name"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_answer_on_the_servers_the_manifests_start() {
    let (p, _) = exported_k8s(&[]);
    let docs = k8s_docs(&p);
    let client = reqwest::Client::new();
    for (component, command) in [("kiln-server", "server"), ("kiln-serve", "serve")] {
        let c = &find(&docs, "Deployment", component)["spec"]["template"]["spec"]["containers"][0];
        // The container listens on the command's own default port.
        let port = c["ports"][0]["containerPort"].as_u64().unwrap();
        assert_eq!(port, u64::from(default_port(&p, command)), "{component}");
        // Start exactly what the pod runs, on loopback and a free port.
        let mut args: Vec<String> = c["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect();
        assert_eq!(args[0], command);
        for (flag, value) in [("--port", "0"), ("--host", "127.0.0.1")] {
            let i = args.iter().position(|a| a == flag).unwrap_or_else(|| {
                panic!("{component} does not set {flag}: {args:?}");
            });
            args[i + 1] = value.into();
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        // What Services named kiln and kiln-serve would inject: harmless,
        // as the manifests give --port.
        let links = [
            ("KILN_PORT", "tcp://10.0.0.1:5000".to_string()),
            ("KILN_SERVE_PORT", "tcp://10.0.0.2:8080".to_string()),
        ];
        let server = Server::start(&p, &args, &links);
        for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
            let path = c[probe]["httpGet"]["path"].as_str().unwrap();
            let r = client
                .get(format!("{}{path}", server.url))
                .send()
                .await
                .unwrap();
            assert_eq!(
                r.status().as_u16(),
                200,
                "{component} {probe} {path}\n{}",
                server.log()
            );
        }
        // A route that does not exist is not a 200: the check above means something.
        let r = client
            .get(format!("{}/no-such-probe", server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 404);
    }
}

#[test]
fn kubernetes_export_outside_a_project_names_the_missing_kiln_yaml() {
    let dir = tempfile::tempdir().unwrap();
    let out = common::kiln_in(dir.path(), &["export", "k8s"]).code(2);
    assert!(out.stderr.contains("No kiln.yaml"), "{}", out.stderr);
    assert!(out.stderr.contains("kiln init"), "{}", out.stderr);
    assert!(!dir.path().join("k8s").exists());
}

#[test]
fn a_password_in_kiln_yaml_is_not_put_in_a_config_map() {
    let p = ci_project();
    let text = read(&p.path("kiln.yaml")).replace(
        "# store: sqlite://.kiln/kiln.db",
        "store: postgres://kiln:hunter2@db:5432/kiln",
    );
    assert!(text.contains("hunter2"));
    p.set_config(&text);
    let out = p.kiln(&["export", "k8s"]).code(2);
    assert!(out.stderr.contains("password"), "{}", out.stderr);
    assert!(!p.path("k8s").exists());
}

// --- CI ---------------------------------------------------------------------

#[test]
fn gitlab_ci_runs_the_pipeline_then_the_gate_and_publishes_junit_always() {
    let p = ci_project();
    export_ci(&p, "--gitlab").ok();
    let path = p.path(".gitlab-ci.yml");
    let out = validate(&["ci", "gitlab-ci", path.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);

    let doc = &yaml_docs(&path)[0];
    assert_eq!(doc["stages"], json!(["pipeline", "gate"]));
    assert_eq!(
        doc["variables"]["KILN_IMAGE"],
        "ghcr.io/kiln-ml/kiln:0.1.0-ci"
    );
    let (run, gate) = expected_calls();
    for (job, stage, report, call) in [
        ("kiln-run", "pipeline", "kiln-run.xml", run),
        ("kiln-gate", "gate", "kiln-gate.xml", gate),
    ] {
        let j = &doc[job];
        assert_eq!(j["stage"], stage);
        assert_eq!(j["image"]["name"], "$KILN_IMAGE");
        assert_eq!(j["artifacts"]["when"], "always");
        assert_eq!(j["artifacts"]["reports"]["junit"], report);
        let script = j["script"].as_array().unwrap();
        let calls: Vec<Vec<String>> = script
            .iter()
            .flat_map(|line| kiln_calls(p.dir.path(), line.as_str().unwrap()))
            .collect();
        assert_eq!(calls, vec![call], "{job}");
    }
    // The store's variables are named in comments, never given values.
    let text = read(&path);
    assert!(doc["variables"].get("KILN_STORE").is_none());
    assert!(text.contains("KILN_STORE") && text.contains("KILN_OBJECTS"));

    // Without --gate: one stage, one job.
    p.kiln(&[
        "export",
        "ci",
        "--gitlab",
        "--pipeline",
        "t",
        "-o",
        "plain.yml",
    ])
    .ok();
    let plain = &yaml_docs(&p.path("plain.yml"))[0];
    assert_eq!(plain["stages"], json!(["pipeline"]));
    assert!(plain.get("kiln-gate").is_none());
    assert_eq!(
        kiln_calls(
            p.dir.path(),
            plain["kiln-run"]["script"][0].as_str().unwrap()
        ),
        vec![argv(&["run", "t", "--junit", "kiln-run.xml"])]
    );
}

#[test]
fn github_workflow_runs_the_pipeline_then_the_gate_and_uploads_junit_always() {
    let p = ci_project();
    export_ci(&p, "--github").ok();
    let path = p.path(".github/workflows/kiln.yml");
    let out = validate(&["ci", "github-workflows", path.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);

    let doc = &yaml_docs(&path)[0];
    assert!(doc["on"]["pull_request"].is_object(), "{}", doc["on"]);
    for key in [
        "KILN_STORE",
        "KILN_OBJECTS",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    ] {
        assert_eq!(doc["env"][key], format!("${{{{ secrets.{key} }}}}"));
    }
    // An empty KILN_S3_ENDPOINT would be taken for an endpoint.
    assert!(doc["env"].get("KILN_S3_ENDPOINT").is_none());

    let steps = doc["jobs"]["kiln"]["steps"].as_array().unwrap();
    for step in steps {
        if let Some(script) = step["run"].as_str() {
            assert_sh_syntax(script);
        }
    }
    let position = |f: &dyn Fn(&Value) -> bool| steps.iter().position(f).unwrap();
    let (run, gate) = expected_calls();
    let calls_of = |step: &Value| kiln_calls(p.dir.path(), step["run"].as_str().unwrap());
    let ran = position(&|s| s["run"].as_str().is_some_and(|r| r.starts_with("kiln run")));
    let gated = position(&|s| {
        s["run"]
            .as_str()
            .is_some_and(|r| r.starts_with("kiln gate"))
    });
    let upload = position(&|s| {
        s["uses"]
            .as_str()
            .is_some_and(|u| u.starts_with("actions/upload-artifact@"))
    });
    assert_eq!(calls_of(&steps[ran]), vec![run]);
    assert_eq!(calls_of(&steps[gated]), vec![gate]);
    assert!(ran < gated && gated < upload);
    assert_eq!(steps[upload]["if"], "always()");
    let uploaded: BTreeSet<&str> = steps[upload]["with"]["path"]
        .as_str()
        .unwrap()
        .lines()
        .collect();
    assert_eq!(uploaded, BTreeSet::from(["kiln-run.xml", "kiln-gate.xml"]));
    // kiln is installed before it runs.
    let install = position(&|s| s["run"].as_str().is_some_and(|r| r.contains("docker cp")));
    assert!(install < ran);
}

/// A Jenkinsfile block: the text before its `{`, its own lines, its blocks.
#[derive(Debug, Default)]
struct Block {
    head: String,
    lines: Vec<String>,
    blocks: Vec<Block>,
}

impl Block {
    /// Parses Groovy's braces, skipping strings and `//` comments; panics
    /// on unbalanced braces.
    fn parse(text: &str) -> Block {
        let mut stack = vec![Block::default()];
        let mut line = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\'' | '"' => {
                    line.push(c);
                    while let Some(d) = chars.next() {
                        line.push(d);
                        if d == '\\' {
                            line.push(chars.next().unwrap());
                        } else if d == c {
                            break;
                        }
                    }
                }
                '/' if chars.peek() == Some(&'/') => {
                    for d in chars.by_ref() {
                        if d == '\n' {
                            break;
                        }
                    }
                    Self::flush(&mut stack, &mut line);
                }
                '{' => {
                    let head = std::mem::take(&mut line).trim().to_string();
                    stack.push(Block {
                        head,
                        ..Block::default()
                    });
                }
                '}' => {
                    Self::flush(&mut stack, &mut line);
                    let done = stack.pop().unwrap();
                    stack
                        .last_mut()
                        .expect("a `}` without its `{`")
                        .blocks
                        .push(done);
                }
                '\n' => Self::flush(&mut stack, &mut line),
                c => line.push(c),
            }
        }
        Self::flush(&mut stack, &mut line);
        assert_eq!(stack.len(), 1, "a `{{` without its `}}`");
        stack.pop().unwrap()
    }

    fn flush(stack: &mut [Block], line: &mut String) {
        let l = std::mem::take(line).trim().to_string();
        if !l.is_empty() {
            stack.last_mut().unwrap().lines.push(l);
        }
    }

    fn block(&self, head: &str) -> &Block {
        self.blocks
            .iter()
            .find(|b| b.head == head)
            .unwrap_or_else(|| panic!("no `{head} {{` in `{}`", self.head))
    }
}

/// The shell command of a Groovy `sh '…'` line.
fn groovy_sh(line: &str) -> String {
    let quoted = line
        .strip_prefix("sh '")
        .unwrap()
        .strip_suffix('\'')
        .unwrap();
    let mut out = String::new();
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        out.push(if c == '\\' { chars.next().unwrap() } else { c });
    }
    out
}

#[test]
fn jenkinsfile_runs_the_pipeline_then_the_gate_and_publishes_junit_always() {
    let p = ci_project();
    export_ci(&p, "--jenkins").ok();
    let root = Block::parse(&read(&p.path("Jenkinsfile")));
    assert_eq!(root.blocks.len(), 1);
    let pipeline = root.block("pipeline");
    assert!(
        pipeline.block("agent").block("docker").lines[0]
            .starts_with("image \"${params.KILN_IMAGE ?: 'ghcr.io/kiln-ml/kiln:0.1.0-ci'}\"")
    );
    let env = pipeline.block("environment");
    for key in [
        "KILN_STORE",
        "KILN_OBJECTS",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    ] {
        assert!(
            env.lines
                .iter()
                .any(|l| l.starts_with(&format!("{key} = credentials('"))),
            "{key}"
        );
    }
    let stages = pipeline.block("stages");
    let heads: Vec<&str> = stages.blocks.iter().map(|b| b.head.as_str()).collect();
    assert_eq!(heads, ["stage('Pipeline')", "stage('Gate')"]);
    let (run, gate) = expected_calls();
    for (stage, call) in stages.blocks.iter().zip([run, gate]) {
        let sh = &stage.block("steps").lines;
        assert_eq!(sh.len(), 1);
        assert_eq!(kiln_calls(p.dir.path(), &groovy_sh(&sh[0])), vec![call]);
    }
    let always = pipeline.block("post").block("always");
    assert!(
        always
            .lines
            .iter()
            .any(|l| l.starts_with("junit ") && l.contains("kiln-*.xml")),
        "{always:?}"
    );
}

#[test]
fn ci_takes_exactly_one_system_and_a_gate_with_its_requirement() {
    let p = ci_project();
    let two = p
        .kiln(&[
            "export",
            "ci",
            "--gitlab",
            "--github",
            "--pipeline",
            "train",
        ])
        .code(2);
    assert!(two.stderr.contains("cannot be used with"), "{}", two.stderr);
    let none = p.kiln(&["export", "ci", "--pipeline", "train"]).code(2);
    assert!(
        none.stderr.contains("--gitlab|--jenkins|--github"),
        "{}",
        none.stderr
    );
    let no_pipeline = p.kiln(&["export", "ci", "--gitlab"]).code(2);
    assert!(
        no_pipeline.stderr.contains("--pipeline"),
        "{}",
        no_pipeline.stderr
    );
    let gate_alone = p
        .kiln(&[
            "export",
            "ci",
            "--gitlab",
            "--pipeline",
            "t",
            "--gate",
            "m@1",
        ])
        .code(2);
    assert!(
        gate_alone.stderr.contains("--require"),
        "{}",
        gate_alone.stderr
    );
    let newline = p
        .kiln(&[
            "export",
            "ci",
            "--github",
            "--pipeline",
            "t",
            "--param",
            "x=a\nb",
        ])
        .code(2);
    assert!(newline.stderr.contains("line break"), "{}", newline.stderr);
    // The pipeline must be one kiln.yaml declares; alone, it is the default.
    let unknown = p
        .kiln(&["export", "ci", "--github", "--pipeline", "nope"])
        .code(2);
    assert!(
        unknown.stderr.contains("no such pipeline") && unknown.stderr.contains("t, train"),
        "{}",
        unknown.stderr
    );
    assert!(!p.path(".gitlab-ci.yml").exists());
    assert!(!p.path(".github").exists());
}

// --- Docker -----------------------------------------------------------------

/// A Dockerfile instruction: its keyword (upper case) and its arguments,
/// continuation lines joined.
#[derive(Debug)]
struct Instruction {
    keyword: String,
    args: String,
}

fn parse_dockerfile(text: &str) -> Vec<Instruction> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                let (keyword, args) = current.split_once(' ').unwrap_or((&current, ""));
                out.push(Instruction {
                    keyword: keyword.to_ascii_uppercase(),
                    args: args.trim().to_string(),
                });
                current.clear();
            }
        }
    }
    assert!(current.is_empty(), "a continuation runs off the end");
    out
}

#[test]
fn dockerfile_builds_a_static_kiln_and_runs_it_as_non_root() {
    let p = ci_project();
    let out = p.kiln(&["export", "docker", "--json"]).ok();
    assert_eq!(out.json(), json!(["Dockerfile", ".dockerignore"]));
    let path = p.path("Dockerfile");
    let instructions = parse_dockerfile(&read(&path));

    // BuildKit's own parser reads the same instructions, and every RUN is
    // valid shell.
    let official = validate(&["dockerfile", path.to_str().unwrap()])
        .ok()
        .json();
    let official = official.as_array().unwrap();
    let keywords: Vec<&str> = official
        .iter()
        .map(|i| i["cmd"].as_str().unwrap())
        .collect();
    let ours: Vec<&str> = instructions.iter().map(|i| i.keyword.as_str()).collect();
    assert_eq!(keywords, ours);
    for i in official {
        match i["cmd"].as_str().unwrap() {
            "ENTRYPOINT" | "CMD" => assert_eq!(i["json"], true, "{i}"),
            "RUN" => assert_sh_syntax(i["value"][0].as_str().unwrap()),
            _ => {}
        }
    }

    // Stages by name, each instruction in its stage.
    let mut stages: Vec<(String, String, Vec<&Instruction>)> = Vec::new();
    for i in &instructions {
        if i.keyword == "FROM" {
            let words: Vec<&str> = i.args.split_whitespace().collect();
            assert_eq!(words.len(), 3, "FROM IMAGE AS NAME: {}", i.args);
            assert!(words[1].eq_ignore_ascii_case("as"));
            stages.push((words[0].to_string(), words[2].to_string(), Vec::new()));
        } else {
            stages.last_mut().expect("FROM first").2.push(i);
        }
    }
    let names: Vec<&str> = stages.iter().map(|s| s.1.as_str()).collect();
    assert_eq!(names, ["build", "ci", "runtime"]);
    for (n, (_, name, body)) in stages.iter().enumerate() {
        for copy in body.iter().filter(|i| i.keyword == "COPY") {
            if let Some(from) = copy
                .args
                .split_whitespace()
                .find_map(|w| w.strip_prefix("--from="))
            {
                assert!(
                    names[..n].contains(&from),
                    "{name}: COPY --from={from} names no earlier stage"
                );
            }
        }
    }

    // The builder: a release build of kiln, static, from the lock file.
    let (image, _, build) = &stages[0];
    assert!(
        image.starts_with("rust:") && image.ends_with("-alpine"),
        "{image}"
    );
    let cargo = build
        .iter()
        .find(|i| i.keyword == "RUN" && i.args.contains("cargo build"))
        .unwrap();
    for part in [
        "cargo build --release --locked",
        "--package kiln-cli",
        "--bin kiln",
        "-unknown-linux-musl",
        "+crt-static",
        "/out/kiln",
    ] {
        assert!(cargo.args.contains(part), "{part} in {}", cargo.args);
    }

    // Both images run kiln as a non-root user; the default one is minimal.
    for (image, name, body) in &stages[1..] {
        let user = body.iter().rfind(|i| i.keyword == "USER").unwrap();
        let uid = user.args.split(':').next().unwrap();
        assert!(
            uid.parse::<u32>().is_ok_and(|u| u > 0),
            "{name}: USER {}",
            user.args
        );
        assert!(
            body.iter()
                .any(|i| i.keyword == "COPY"
                    && i.args == "--from=build /out/kiln /usr/local/bin/kiln"),
            "{name} {image}"
        );
    }
    let (image, _, runtime) = stages.last().unwrap();
    assert!(
        image.starts_with("gcr.io/distroless/static") || image == "scratch",
        "{image}"
    );
    let exec_form = |keyword: &str| -> Vec<String> {
        let i = runtime.iter().rfind(|i| i.keyword == keyword).unwrap();
        serde_json::from_str(&i.args)
            .unwrap_or_else(|e| panic!("{keyword} is not in exec (JSON) form: {} ({e})", i.args))
    };
    assert_eq!(exec_form("ENTRYPOINT"), ["kiln"]);
    assert_eq!(exec_form("CMD"), ["serve"]);
    let exposed: Vec<u16> = runtime
        .iter()
        .filter(|i| i.keyword == "EXPOSE")
        .flat_map(|i| i.args.split_whitespace().map(|p| p.parse().unwrap()))
        .collect();
    assert!(exposed.contains(&default_port(&p, "serve")), "{exposed:?}");
    assert!(exposed.contains(&default_port(&p, "server")), "{exposed:?}");
    let workdir = runtime.iter().rfind(|i| i.keyword == "WORKDIR").unwrap();
    assert_eq!(workdir.args, "/etc/kiln");
    // A scratch-like image has no shell for a HEALTHCHECK: the file says so.
    assert!(runtime.iter().all(|i| i.keyword != "HEALTHCHECK"));
    assert!(read(&p.path("Dockerfile")).contains("No HEALTHCHECK"));

    let ignore: BTreeSet<String> = read(&p.path(".dockerignore"))
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(String::from)
        .collect();
    for entry in ["target/", ".kiln/", ".git/"] {
        assert!(ignore.contains(entry), "{entry}");
    }
}

// --- Writing files ----------------------------------------------------------

#[test]
fn an_existing_file_is_kept_unless_force() {
    let p = ci_project();
    p.write("Dockerfile", "FROM mine\n");
    let out = p.kiln(&["export", "docker"]).code(2);
    assert!(
        out.stderr.contains("`Dockerfile` already exists"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("--force"), "{}", out.stderr);
    assert_eq!(read(&p.path("Dockerfile")), "FROM mine\n");
    // Nothing of the export was written: not even the file that was free.
    assert!(!p.path(".dockerignore").exists());

    p.kiln(&["export", "docker", "--force"]).ok();
    assert!(read(&p.path("Dockerfile")).contains("ENTRYPOINT [\"kiln\"]"));
    assert!(p.path(".dockerignore").exists());
    // No temporary file is left behind.
    let names: Vec<String> = std::fs::read_dir(p.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
}

#[test]
fn an_unwritable_output_path_is_an_error_naming_it() {
    let p = ci_project();
    p.write("not-a-folder", "x");
    let out = p
        .kiln(&["export", "docker", "-o", "not-a-folder/Dockerfile"])
        .code(2);
    assert!(
        out.stderr
            .contains("Failed to write `not-a-folder/Dockerfile`"),
        "{}",
        out.stderr
    );
    let out = p
        .kiln(&[
            "export",
            "ci",
            "--gitlab",
            "--pipeline",
            "t",
            "-o",
            "not-a-folder/ci.yml",
        ])
        .code(2);
    assert!(out.stderr.contains("not-a-folder/ci.yml"), "{}", out.stderr);
    assert_eq!(read(&p.path("not-a-folder")), "x");
}

#[test]
fn json_lists_every_written_path() {
    let (p, _) = exported_k8s(&["--workers", "0", "-o", "deploy"]);
    assert!(!p.path("deploy/worker.yaml").exists());
    let out = p
        .kiln(&["export", "k8s", "-o", "deploy2", "--json", "-q"])
        .ok();
    assert_eq!(
        out.json(),
        json!([
            "deploy2/configmap.yaml",
            "deploy2/server.yaml",
            "deploy2/serve.yaml",
            "deploy2/worker.yaml"
        ])
    );
    for f in out.json().as_array().unwrap() {
        assert!(p.path(f.as_str().unwrap()).is_file());
    }
}
