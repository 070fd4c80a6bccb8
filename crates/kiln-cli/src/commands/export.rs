//! `kiln export`: CI files, a Dockerfile, Kubernetes manifests.
//!
//! Every export is text kiln writes once for a person to read and commit:
//! files carry comments saying what to set where, and never a secret's
//! value. Writes are atomic (a temporary file in the same folder, renamed)
//! and refuse to replace a file unless `--force`; every file of an export
//! is checked before the first is written, so a refusal leaves nothing half
//! done.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{ArgGroup, Args, Subcommand};
use kiln_project::{KilnYaml, Locations};

use crate::ExitStatus;
use crate::output::Printer;

/// kiln's version: image tags and the headers of written files.
const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The Rust the builder stage compiles with: the workspace's `rust-version`.
const RUST_VERSION: &str = env!("CARGO_PKG_RUST_VERSION");
/// Where the images are published.
const IMAGE_REPO: &str = "ghcr.io/kiln-ml/kiln";
/// The non-root user of both images (distroless' `nonroot`).
const UID: i64 = 65532;
/// Where the pods mount kiln.yaml; also their working directory, since kiln
/// finds kiln.yaml by walking up from there.
const CONFIG_DIR: &str = "/etc/kiln";
/// `kiln server`'s health route (kiln-server `v1.rs`).
const SERVER_HEALTH: &str = "/health";
/// `kiln serve`'s liveness and readiness routes (kiln-server `serve/mod.rs`).
const SERVE_LIVE: &str = "/healthz";
const SERVE_READY: &str = "/readyz";
/// The JUnit reports the CI jobs write and publish.
const RUN_REPORT: &str = "kiln-run.xml";
const GATE_REPORT: &str = "kiln-gate.xml";
/// The store's variables, in the order the files list them.
const SECRET_KEYS: [(&str, bool); 6] = [
    ("KILN_STORE", true),
    ("KILN_OBJECTS", true),
    ("AWS_ACCESS_KEY_ID", false),
    ("AWS_SECRET_ACCESS_KEY", false),
    ("AWS_REGION", false),
    ("KILN_S3_ENDPOINT", false),
];

#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// Write a CI file that runs a kiln pipeline and, with `--gate`, gates a
    /// model: GitLab CI, Jenkins or GitHub Actions.
    ///
    /// The job runs `kiln run PIPELINE --junit kiln-run.xml`, then `kiln gate
    /// MODEL --require EXPR --junit kiln-gate.xml` (a failed gate exits 1
    /// and fails the build), and publishes both JUnit reports even when a
    /// step failed. kiln comes from the image in KILN_IMAGE, which needs a
    /// shell: `docker build --target ci` on `kiln export docker`'s
    /// Dockerfile builds it. The store comes from the CI's secrets
    /// (KILN_STORE, KILN_OBJECTS, AWS_*, KILN_S3_ENDPOINT); the file names
    /// them and holds no value.
    #[command(after_help = "Examples:
  kiln export ci --gitlab --pipeline train                 .gitlab-ci.yml
  kiln export ci --github --pipeline train \\
      --gate fraud@candidate --require 'roc_auc >= 0.9'  .github/workflows/kiln.yml
  kiln export ci --jenkins --pipeline nightly -o ci/Jenkinsfile

Exit status: 0 written, 2 error (nothing is written).")]
    Ci(CiArgs),
    /// Write a multi-stage Dockerfile that builds kiln into a small image,
    /// and a .dockerignore beside it.
    ///
    /// The builder compiles kiln from source into a static binary (musl,
    /// `cargo build --release --locked`), so build it at the root of kiln's
    /// source tree. The default target is a distroless image (CA
    /// certificates, no shell, non-root user 65532) whose entrypoint is
    /// `kiln` and command `serve`; `--target ci` gives an Alpine image with a
    /// shell, for CI jobs.
    #[command(after_help = "Examples:
  kiln export docker
  docker build -t ghcr.io/kiln-ml/kiln:VERSION .
  docker build --target ci -t ghcr.io/kiln-ml/kiln:VERSION-ci .
  docker run -p 8080:8080 -v \"$PWD/kiln.yaml:/etc/kiln/kiln.yaml:ro\" \\
      -e KILN_STORE -e KILN_OBJECTS ghcr.io/kiln-ml/kiln:VERSION

Exit status: 0 written, 2 error (nothing is written).")]
    Docker(DockerArgs),
    /// Write Kubernetes manifests for this project: `kiln server`, `kiln
    /// serve` (with an autoscaler) and `kiln worker`, one file each, plus
    /// kiln.yaml as a ConfigMap.
    ///
    /// Needs a project: kiln.yaml (found by walking up from here) goes into
    /// the ConfigMap, mounted at /etc/kiln, the pods' working directory. The
    /// store comes from a Secret the manifests name but do not hold (create
    /// it with `kubectl create secret`, shown in each file). Pods run
    /// non-root on a read-only root filesystem with an emptyDir at /tmp.
    #[command(after_help = "Examples:
  kiln export k8s
  kiln export k8s --namespace ml --serve-replicas 3 --workers 2 --image registry.example.com/kiln:1
  kubectl apply -f k8s/

Exit status: 0 written, 2 error (nothing is written).")]
    K8s(K8sArgs),
}

/// Where written files go and whether they may replace others.
#[derive(Debug, Args)]
pub struct WriteArgs {
    /// Replace files that already exist.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("system").required(true).args(["gitlab", "jenkins", "github"])))]
pub struct CiArgs {
    /// GitLab CI: `.gitlab-ci.yml`, JUnit reports shown in merge requests.
    #[arg(long)]
    pub gitlab: bool,
    /// Jenkins: a declarative `Jenkinsfile` on a Docker agent, JUnit
    /// published with the `junit` step.
    #[arg(long)]
    pub jenkins: bool,
    /// GitHub Actions: `.github/workflows/kiln.yml`, JUnit reports uploaded
    /// as an artifact.
    #[arg(long)]
    pub github: bool,
    /// The pipeline `kiln run` runs (default: the only one kiln.yaml
    /// declares).
    #[arg(long, value_name = "NAME")]
    pub pipeline: Option<String>,
    /// A parameter for the pipeline, `kiln run`'s `--param` (repeatable).
    #[arg(long = "param", value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// Gate this model version after the pipeline: `MODEL@VERSION` or
    /// `MODEL@ALIAS`.
    #[arg(long, value_name = "MODEL", requires = "require")]
    pub gate: Option<String>,
    /// What the gated model must meet, e.g. `roc_auc >= 0.9`.
    #[arg(long, value_name = "EXPR", requires = "gate")]
    pub require: Option<String>,
    /// The image with kiln and a shell the jobs use (the default of
    /// KILN_IMAGE; default ghcr.io/kiln-ml/kiln:VERSION-ci).
    #[arg(long, value_name = "IMAGE")]
    pub image: Option<String>,
    /// Where to write (default `.gitlab-ci.yml`, `Jenkinsfile` or
    /// `.github/workflows/kiln.yml`).
    #[arg(long, short, value_name = "PATH")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub write: WriteArgs,
}

#[derive(Debug, Args)]
pub struct DockerArgs {
    /// Where to write the Dockerfile; .dockerignore goes beside it.
    #[arg(long, short, value_name = "PATH", default_value = "Dockerfile")]
    pub output: PathBuf,
    #[command(flatten)]
    pub write: WriteArgs,
}

#[derive(Debug, Args)]
pub struct K8sArgs {
    /// The folder to write the manifests in.
    #[arg(long, short, value_name = "DIR", default_value = "k8s")]
    pub output: PathBuf,
    /// Put every object in this namespace (default: kubectl's current one).
    #[arg(long, value_name = "NS")]
    pub namespace: Option<String>,
    /// `kiln serve` replicas, and the autoscaler's minimum.
    #[arg(long, value_name = "N", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub serve_replicas: u32,
    /// The autoscaler's maximum for `kiln serve` (default: 4 × --serve-replicas).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub serve_max_replicas: Option<u32>,
    /// `kiln worker` replicas (0 writes no worker).
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub workers: u32,
    /// The kiln image the pods run (default ghcr.io/kiln-ml/kiln:VERSION).
    #[arg(long, value_name = "IMAGE")]
    pub image: Option<String>,
    /// The Secret holding KILN_STORE, KILN_OBJECTS and the AWS_* keys.
    #[arg(long, value_name = "NAME", default_value = "kiln-store")]
    pub secret: String,
    #[command(flatten)]
    pub write: WriteArgs,
}

pub async fn run(
    cmd: ExportCommand,
    _locations: &Locations,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    let (files, force, next) = match cmd {
        ExportCommand::Ci(mut args) => {
            args.pipeline = Some(ci_pipeline(args.pipeline.take())?);
            let (files, next) = ci(&args)?;
            (files, args.write.force, next)
        }
        ExportCommand::Docker(args) => (docker(&args), args.write.force, docker_next()),
        ExportCommand::K8s(args) => {
            let (files, next) = k8s(&args, printer)?;
            (files, args.write.force, next)
        }
    };
    write_all(&files, force)?;
    for f in &files {
        printer.note(format!("Wrote {}", f.path.display()));
    }
    printer.note(next);
    if printer.json {
        let paths: Vec<String> = files.iter().map(|f| f.path.display().to_string()).collect();
        printer.json(&paths);
    }
    Ok(ExitStatus::Success)
}

/// A file an export writes.
struct File {
    path: PathBuf,
    text: String,
}

/// Checks that no file exists (unless `force`), then writes each
/// atomically.
fn write_all(files: &[File], force: bool) -> anyhow::Result<()> {
    if !force {
        for f in files {
            // symlink_metadata: a dangling link is in the way too.
            if f.path.symlink_metadata().is_ok() {
                bail!(
                    "`{}` already exists\n  hint: pass --force to replace it",
                    f.path.display()
                );
            }
        }
    }
    for f in files {
        write_atomic(&f.path, &f.text, force)
            .with_context(|| format!("Failed to write `{}`", f.path.display()))?;
    }
    Ok(())
}

/// Writes a temporary file in `path`'s folder and renames it over `path`,
/// so a reader sees the old file or the new one, never part of one.
fn write_atomic(path: &Path, text: &str, replace: bool) -> anyhow::Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)
        .with_context(|| format!("Failed to create the folder `{}`", dir.display()))?;
    let mut builder = tempfile::Builder::new();
    builder.prefix(".kiln-export").suffix(".tmp");
    // NamedTempFile's 0600 would leave a Dockerfile unreadable to others.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o644));
    }
    let mut tmp = builder
        .tempfile_in(dir)
        .with_context(|| format!("Failed to create a temporary file in `{}`", dir.display()))?;
    tmp.write_all(text.as_bytes())?;
    tmp.as_file().sync_all()?;
    if replace {
        tmp.persist(path)?;
    } else {
        // Refuses, without a race, a file that appeared since the check.
        tmp.persist_noclobber(path)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// CI

/// Which CI system.
#[derive(Clone, Copy, PartialEq)]
enum System {
    Gitlab,
    Jenkins,
    Github,
}

fn ci(args: &CiArgs) -> anyhow::Result<(Vec<File>, String)> {
    let system = if args.gitlab {
        System::Gitlab
    } else if args.jenkins {
        System::Jenkins
    } else {
        System::Github
    };
    let plan = CiPlan::new(args, system)?;
    let (default, text) = match system {
        System::Gitlab => (".gitlab-ci.yml", plan.gitlab()),
        System::Jenkins => ("Jenkinsfile", plan.jenkins()),
        System::Github => (".github/workflows/kiln.yml", plan.github()),
    };
    let path = args.output.clone().unwrap_or_else(|| default.into());
    let next = match system {
        System::Gitlab => {
            "Next: set KILN_STORE, KILN_OBJECTS and the AWS_* variables in Settings > CI/CD > Variables (the file's header lists them)"
        }
        System::Jenkins => {
            "Next: add the credentials the Jenkinsfile's header lists (kind \"Secret text\")"
        }
        System::Github => {
            "Next: add the secrets KILN_STORE, KILN_OBJECTS, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (Settings > Secrets and variables > Actions)"
        }
    };
    Ok((vec![File { path, text }], next.to_string()))
}

/// The pipeline a CI file runs: the one named (which kiln.yaml, when
/// there is one, must declare), else the only one kiln.yaml declares.
fn ci_pipeline(named: Option<String>) -> anyhow::Result<String> {
    let cwd = std::env::current_dir()?;
    let config = match kiln_project::find_root(&cwd) {
        Some(root) => Some(kiln_project::KilnYaml::load(
            &root.join(kiln_project::CONFIG_FILE),
        )?),
        None => None,
    };
    let declared: Vec<String> = config
        .as_ref()
        .map(|c| c.pipelines.keys().cloned().collect())
        .unwrap_or_default();
    match named {
        Some(name) if config.is_none() || declared.contains(&name) => Ok(name),
        Some(name) => bail!(
            "Invalid --pipeline `{name}`: kiln.yaml declares no such pipeline\n  hint: pipelines: {}",
            if declared.is_empty() {
                "none yet".to_string()
            } else {
                declared.join(", ")
            }
        ),
        None => match declared.as_slice() {
            [one] => Ok(one.clone()),
            [] => bail!(
                "Name the pipeline the CI file runs: --pipeline NAME\n  hint: kiln.yaml declares none here; declare one under `pipelines:`"
            ),
            many => bail!(
                "Name the pipeline the CI file runs: --pipeline NAME\n  hint: pipelines: {}",
                many.join(", ")
            ),
        },
    }
}

/// What every CI file does, resolved from the arguments.
struct CiPlan {
    flag: &'static str,
    pipeline: String,
    image: String,
    /// `kiln run …` as a shell command.
    run: String,
    /// `kiln gate …` as a shell command, with the model gated.
    gate: Option<(String, String)>,
}

impl CiPlan {
    fn new(args: &CiArgs, system: System) -> anyhow::Result<Self> {
        let flag = match system {
            System::Gitlab => "--gitlab",
            System::Jenkins => "--jenkins",
            System::Github => "--github",
        };
        let check = |what: &str, value: &str| -> anyhow::Result<()> {
            if value.trim().is_empty() {
                bail!("{what} is empty");
            }
            if value.chars().any(char::is_control) {
                bail!(
                    "{what} `{}` holds a control character or line break",
                    value.escape_debug()
                );
            }
            // GitHub evaluates `${{ … }}` anywhere in `run:`, before the shell.
            if system == System::Github && value.contains("${{") {
                bail!("{what} `{value}` holds `${{{{`, which GitHub Actions would evaluate");
            }
            Ok(())
        };
        let pipeline = args.pipeline.as_deref().expect("resolved before");
        check("The pipeline name", pipeline)?;
        let mut run = vec!["kiln", "run", pipeline];
        for p in &args.params {
            check("A --param", p)?;
            if !p.contains('=') {
                bail!("Invalid --param `{p}`\n  hint: write KEY=VALUE");
            }
            run.extend(["--param", p]);
        }
        run.extend(["--junit", RUN_REPORT]);
        let gate = match (&args.gate, &args.require) {
            (Some(model), Some(expr)) => {
                check("The gated model", model)?;
                check("The --require expression", expr)?;
                let argv = [
                    "kiln",
                    "gate",
                    model,
                    "--require",
                    expr,
                    "--junit",
                    GATE_REPORT,
                ];
                Some((sh_join(&argv), model.clone()))
            }
            _ => None,
        };
        let image = args
            .image
            .clone()
            .unwrap_or_else(|| format!("{IMAGE_REPO}:{VERSION}-ci"));
        check("The image", &image)?;
        Ok(Self {
            flag,
            pipeline: pipeline.to_string(),
            image,
            run: sh_join(&run),
            gate,
        })
    }

    /// The first lines of every CI file: what it does.
    fn summary(&self, comment: &str) -> String {
        let what = match &self.gate {
            Some((_, model)) => {
                format!("then gates `{model}`, and publishes both JUnit reports")
            }
            None => "and publishes its JUnit report".to_string(),
        };
        wrap_comment(
            comment,
            &format!(
                "Written by `kiln export ci {}` (kiln {VERSION}): runs kiln pipeline `{}`, \
                 {what} even when a step fails.",
                self.flag, self.pipeline
            ),
        )
    }

    fn gitlab(&self) -> String {
        let mut header = self.summary("#");
        header.push_str(
            "#
# Set these in Settings > CI/CD > Variables (masked, and protected if only
# protected branches may write the store); this file holds no value:
#   KILN_STORE         postgres://USER:PASSWORD@HOST:5432/DB
#   KILN_OBJECTS       s3://BUCKET/PREFIX
#   AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, and AWS_REGION unless us-east-1
#   KILN_S3_ENDPOINT   only for an S3-compatible server (MinIO, Ceph, ...)
#   KILN_IMAGE         overrides the image below: it needs kiln on PATH and a
#                      shell (`docker build --target ci` on the Dockerfile of
#                      `kiln export docker`)
",
        );
        let image = map([
            ("name", "$KILN_IMAGE".into()),
            // An image whose entrypoint is `kiln` still runs the job's shell.
            ("entrypoint", Yaml::List(vec!["".into()])),
        ]);
        let job = |stage: &str, command: &str, report: &str| {
            map([
                ("stage", stage.into()),
                ("image", image.clone()),
                ("script", Yaml::List(vec![command.into()])),
                (
                    "artifacts",
                    map([
                        ("when", "always".into()),
                        ("reports", map([("junit", report.into())])),
                    ]),
                ),
            ])
        };
        let mut stages = vec![Yaml::from("pipeline")];
        if self.gate.is_some() {
            stages.push("gate".into());
        }
        let mut doc = map([
            (
                "variables",
                map([
                    ("KILN_IMAGE", self.image.as_str().into()),
                    // Audit entries name who ran the job.
                    ("KILN_USER", "gitlab:$GITLAB_USER_LOGIN".into()),
                ]),
            ),
            ("stages", Yaml::List(stages)),
            ("kiln-run", job("pipeline", &self.run, RUN_REPORT)),
        ]);
        if let Some((gate, _)) = &self.gate {
            doc = doc.with("kiln-gate", job("gate", gate, GATE_REPORT));
        }
        render(&header, &[doc])
    }

    fn github(&self) -> String {
        let mut header = self.summary("#");
        header.push_str(
            "#
# Set these in Settings > Secrets and variables > Actions; this file holds no
# value. Secrets: KILN_STORE (postgres://USER:PASSWORD@HOST:5432/DB),
# KILN_OBJECTS (s3://BUCKET/PREFIX), AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY.
# Variables, if needed: AWS_REGION (default us-east-1), KILN_S3_ENDPOINT (an
# S3-compatible server), KILN_IMAGE (the image kiln is copied from).
",
        );
        let secret = |name: &str| Yaml::from(format!("${{{{ secrets.{name} }}}}"));
        let install =
            "# kiln is a static binary: copy it out of the image, no container job needed.
id=\"$(docker create \"$KILN_IMAGE\")\"
mkdir -p \"$RUNNER_TEMP/kiln\"
docker cp \"$id:/usr/local/bin/kiln\" \"$RUNNER_TEMP/kiln/kiln\"
docker rm \"$id\" >/dev/null
echo \"$RUNNER_TEMP/kiln\" >> \"$GITHUB_PATH\"
# An empty KILN_S3_ENDPOINT would be taken for an endpoint: set it only when given.
if [ -n \"$S3_ENDPOINT\" ]; then echo \"KILN_S3_ENDPOINT=$S3_ENDPOINT\" >> \"$GITHUB_ENV\"; fi
\"$RUNNER_TEMP/kiln/kiln\" --version
";
        let mut steps = vec![
            map([
                ("name", "Check out".into()),
                ("uses", "actions/checkout@v4".into()),
            ]),
            map([
                ("name", "Install kiln".into()),
                (
                    "env",
                    map([("S3_ENDPOINT", "${{ vars.KILN_S3_ENDPOINT }}".into())]),
                ),
                ("run", install.into()),
            ]),
            map([
                ("name", format!("Run pipeline {}", self.pipeline).into()),
                ("run", self.run.as_str().into()),
            ]),
        ];
        let mut reports = format!("{RUN_REPORT}\n");
        if let Some((gate, model)) = &self.gate {
            steps.push(map([
                ("name", format!("Gate {model}").into()),
                ("run", gate.as_str().into()),
            ]));
            reports.push_str(GATE_REPORT);
            reports.push('\n');
        }
        steps.push(map([
            ("name", "Upload the JUnit reports".into()),
            ("if", "always()".into()),
            ("uses", "actions/upload-artifact@v4".into()),
            (
                "with",
                map([
                    ("name", "kiln-junit".into()),
                    ("path", reports.into()),
                    ("if-no-files-found", "ignore".into()),
                ]),
            ),
        ]));
        let mut env = Vec::new();
        for key in [
            "KILN_STORE",
            "KILN_OBJECTS",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
        ] {
            env.push((key.to_string(), secret(key)));
        }
        env.push((
            "AWS_REGION".into(),
            "${{ vars.AWS_REGION || 'us-east-1' }}".into(),
        ));
        env.push((
            "KILN_IMAGE".into(),
            format!("${{{{ vars.KILN_IMAGE || '{}' }}}}", self.image).into(),
        ));
        env.push(("KILN_USER".into(), "github:${{ github.actor }}".into()));
        let doc = map([
            ("name", "kiln".into()),
            (
                "on",
                map([
                    ("push", map([("branches", Yaml::List(vec!["main".into()]))])),
                    ("pull_request", Yaml::Map(Vec::new())),
                    ("workflow_dispatch", Yaml::Map(Vec::new())),
                ]),
            ),
            ("permissions", map([("contents", "read".into())])),
            ("env", Yaml::Map(env)),
            (
                "jobs",
                map([(
                    "kiln",
                    map([
                        ("runs-on", "ubuntu-latest".into()),
                        ("steps", Yaml::List(steps)),
                    ]),
                )]),
            ),
        ]);
        render(&header, &[doc])
    }

    fn jenkins(&self) -> String {
        let mut s = self.summary("//");
        s.push_str(
            "//
// Needs a Docker agent and the Docker Pipeline plugin. Add these credentials
// (Manage Jenkins > Credentials, kind \"Secret text\"); this file holds no value:
//   kiln-store             KILN_STORE, postgres://USER:PASSWORD@HOST:5432/DB
//   kiln-objects           KILN_OBJECTS, s3://BUCKET/PREFIX
//   aws-access-key-id      AWS_ACCESS_KEY_ID
//   aws-secret-access-key  AWS_SECRET_ACCESS_KEY
// AWS_REGION (default us-east-1) and KILN_S3_ENDPOINT (an S3-compatible
// server), when needed, come from the agent's environment. The build
// parameter KILN_IMAGE is the image with kiln and a shell in it.
",
        );
        let _ = write!(
            s,
            "pipeline {{
    agent {{
        docker {{
            image \"${{params.KILN_IMAGE ?: {image}}}\"
            // An image whose entrypoint is `kiln` still runs the steps' shell.
            args '--entrypoint='
        }}
    }}
    parameters {{
        string(name: 'KILN_IMAGE', defaultValue: {image}, description: 'An image with kiln on PATH and a shell')
    }}
    environment {{
        KILN_STORE = credentials('kiln-store')
        KILN_OBJECTS = credentials('kiln-objects')
        AWS_ACCESS_KEY_ID = credentials('aws-access-key-id')
        AWS_SECRET_ACCESS_KEY = credentials('aws-secret-access-key')
        // Audit entries name the job that ran.
        KILN_USER = \"jenkins:${{env.JOB_NAME}}#${{env.BUILD_NUMBER}}\"
    }}
    stages {{
        stage('Pipeline') {{
            steps {{
                sh {run}
            }}
        }}
",
            image = groovy_str(&self.image),
            run = groovy_str(&self.run),
        );
        if let Some((gate, _)) = &self.gate {
            let _ = write!(
                s,
                "        stage('Gate') {{
            steps {{
                sh {gate}
            }}
        }}
",
                gate = groovy_str(gate),
            );
        }
        let _ = write!(
            s,
            "    }}
    post {{
        always {{
            junit testResults: 'kiln-*.xml', allowEmptyResults: true
        }}
    }}
}}
"
        );
        s
    }
}

/// `text` as comment lines of at most 78 columns, each starting with
/// `prefix` and a space.
fn wrap_comment(prefix: &str, text: &str) -> String {
    let mut out = String::new();
    let mut line = prefix.to_string();
    for word in text.split_whitespace() {
        if line.len() > prefix.len() && line.len() + 1 + word.len() > 78 {
            out.push_str(&line);
            out.push('\n');
            line = prefix.to_string();
        }
        line.push(' ');
        line.push_str(word);
    }
    out.push_str(&line);
    out.push('\n');
    out
}

/// `argv` as one POSIX shell command: words with only safe characters
/// bare, the rest in single quotes.
fn sh_join(argv: &[&str]) -> String {
    argv.iter()
        .map(|a| {
            let safe = !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "@%+=:,./_-".contains(c));
            if safe {
                (*a).to_string()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A Groovy single-quoted string: no `$` interpolation.
fn groovy_str(s: &str) -> String {
    format!("'{}'", s.replace('\\', r"\\").replace('\'', r"\'"))
}

// ---------------------------------------------------------------------------
// Docker

fn docker(args: &DockerArgs) -> Vec<File> {
    let serve_port = default_port("serve");
    let server_port = default_port("server");
    let dockerfile = format!(
        r#"# syntax=docker/dockerfile:1
# Written by `kiln export docker` (kiln {VERSION}). Build it at the root of
# kiln's source tree (where Cargo.lock is):
#
#   docker build -t {IMAGE_REPO}:{VERSION} .                # kiln serve, distroless
#   docker build --target ci -t {IMAGE_REPO}:{VERSION}-ci .  # with a shell, for CI jobs
#
# Run a model server from a project folder; the store comes from the
# environment, never from the image:
#
#   docker run --rm -p {serve_port}:{serve_port} -v "$PWD/kiln.yaml:{CONFIG_DIR}/kiln.yaml:ro" \
#     -e KILN_STORE -e KILN_OBJECTS -e AWS_ACCESS_KEY_ID -e AWS_SECRET_ACCESS_KEY \
#     {IMAGE_REPO}:{VERSION}

# Builder: a static kiln (musl, C dependencies linked in), so the final
# image needs no libc.
FROM rust:{RUST_VERSION}-alpine AS build
RUN apk add --no-cache build-base musl-dev linux-headers cmake perl
WORKDIR /src
COPY . .
# Cache mounts keep the registry and target/ between builds; the binary is
# copied out of target/ in the same step, as the mount is gone after it.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    target="$(uname -m)-unknown-linux-musl" \
 && RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --release --locked --target "$target" --package kiln-cli --bin kiln \
 && install -D "target/$target/release/kiln" /out/kiln

# For CI jobs (`kiln export ci`): GitLab, Jenkins and GitHub run their
# steps in a shell, which the final image does not have.
FROM alpine:3.23 AS ci
RUN apk add --no-cache ca-certificates \
 && adduser -D -u {UID} -g kiln kiln
COPY --from=build /out/kiln /usr/local/bin/kiln
USER {UID}:{UID}

# Final: distroless static brings CA certificates (for S3 and PostgreSQL over
# TLS), /etc/passwd and the non-root user {UID}, and no shell.
FROM gcr.io/distroless/static-debian12:nonroot AS runtime
COPY --from=build /out/kiln /usr/local/bin/kiln
# kiln finds kiln.yaml by walking up from its working directory: mount it
# here (Kubernetes: the ConfigMap of `kiln export k8s`).
WORKDIR {CONFIG_DIR}
# Listen beyond the container's loopback (both servers read KILN_HOST).
ENV KILN_HOST=0.0.0.0
USER {UID}:{UID}
# kiln serve answers on {serve_port}; kiln server (the tracking and REST API)
# on {server_port}.
EXPOSE {serve_port} {server_port}
# No HEALTHCHECK: it would need a shell or an HTTP client in the image.
# Kubernetes ignores HEALTHCHECK anyway; its probes (`kiln export k8s`) call
# {SERVE_LIVE} and {SERVE_READY} on kiln serve and {SERVER_HEALTH} on kiln server.
ENTRYPOINT ["kiln"]
CMD ["serve"]
"#
    );
    let ignore = "# Written by `kiln export docker`: what `docker build` need not send.
target/
.kiln/
.git/
"
    .to_string();
    let dir = match args.output.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::new(),
    };
    vec![
        File {
            path: args.output.clone(),
            text: dockerfile,
        },
        File {
            path: dir.join(".dockerignore"),
            text: ignore,
        },
    ]
}

fn docker_next() -> String {
    format!(
        "Next: at the root of kiln's source, `docker build -t {IMAGE_REPO}:{VERSION} .` (and `--target ci` for the CI image)"
    )
}

/// The default `--port` of `kiln server` or `kiln serve`, read from their
/// own argument definitions so the two never drift apart.
fn default_port(command: &str) -> u16 {
    use clap::CommandFactory;
    let cli = crate::cli::Cli::command();
    cli.find_subcommand(command)
        .and_then(|c| c.get_arguments().find(|a| a.get_id() == "port"))
        .and_then(|a| a.get_default_values().first())
        .and_then(|v| v.to_str()?.parse().ok())
        .unwrap_or_else(|| panic!("`kiln {command}` has a default --port"))
}

// ---------------------------------------------------------------------------
// Kubernetes

/// One kiln process as a Deployment.
struct Component {
    /// `server`, `serve` or `worker`: the subcommand and the name's suffix.
    name: &'static str,
    what: &'static str,
    replicas: u32,
    args: Vec<String>,
    http: Option<Http>,
    /// CPU and memory requested, then the limits.
    requests: (&'static str, &'static str),
    limits: (&'static str, &'static str),
}

/// An HTTP component's port and probe routes.
struct Http {
    port: u16,
    live: &'static str,
    ready: &'static str,
    /// How long (probes × 5 s) it may take to start: load models, migrate.
    startup_probes: i64,
}

/// What every manifest shares.
struct K8sPlan<'a> {
    namespace: Option<&'a str>,
    image: String,
    secret: &'a str,
    /// `app.kubernetes.io/instance`: the project's name as a label value.
    instance: String,
    /// Changes with kiln.yaml, so that applying a new one restarts the pods.
    config_hash: String,
}

fn k8s(args: &K8sArgs, printer: Printer) -> anyhow::Result<(Vec<File>, String)> {
    let cwd = std::env::current_dir().context("Failed to read the current directory")?;
    let Some(root) = kiln_project::find_root(&cwd) else {
        bail!(
            "No kiln.yaml in `{}` or any folder above it\n  hint: run `kiln export k8s` in a project (`kiln init` creates one)",
            cwd.display()
        );
    };
    let config_path = root.join("kiln.yaml");
    let text = std::fs::read_to_string(&config_path)
        .with_context(|| format!("Failed to read `{}`", config_path.display()))?;
    // The pods would refuse a malformed file: refuse it now.
    let config = KilnYaml::parse(&text, &config_path)?;
    if let Some(store) = &config.store
        && let Ok(url) = kiln_store::StoreUrl::parse(store)
        && url.redacted() != *store
    {
        bail!(
            "`{}` holds a password in `store:`, and a ConfigMap is not secret\n  hint: remove `store:` from kiln.yaml and put the URL in the Secret `{}` as KILN_STORE",
            config_path.display(),
            args.secret
        );
    }
    if let Some(ns) = &args.namespace {
        check_dns_label("--namespace", ns)?;
    }
    check_dns_subdomain("--secret", &args.secret)?;
    let image = args
        .image
        .clone()
        .unwrap_or_else(|| format!("{IMAGE_REPO}:{VERSION}"));
    if image.trim().is_empty() || image.chars().any(char::is_whitespace) {
        bail!("Invalid --image `{image}`: an image reference has no spaces");
    }
    let plan = K8sPlan {
        namespace: args.namespace.as_deref(),
        image,
        secret: &args.secret,
        instance: label_value(&config.project),
        config_hash: kiln_core::ContentHash::of(text.as_bytes()).short(),
    };
    if config.deployments.is_empty() {
        printer.note(format!(
            "warning: `{}` declares no `deployments:`, so `kiln serve` (no TARGET) will refuse to start\n  hint: declare what to serve under `deployments:` and export again",
            config_path.display()
        ));
    }
    let server_port = default_port("server");
    let serve_port = default_port("serve");
    let listen = |port: u16| {
        // --port beats KILN_PORT / KILN_SERVE_PORT, and the host must not be
        // the container's loopback.
        vec![
            "--host".into(),
            "0.0.0.0".into(),
            "--port".into(),
            port.to_string(),
        ]
    };
    let server = Component {
        name: "server",
        what: "`kiln server`: the REST API and MLflow's tracking, artifact and registry API.",
        replicas: 1,
        args: [vec!["server".to_string()], listen(server_port)].concat(),
        http: Some(Http {
            port: server_port,
            live: SERVER_HEALTH,
            ready: SERVER_HEALTH,
            startup_probes: 24,
        }),
        requests: ("100m", "256Mi"),
        limits: ("1", "1Gi"),
    };
    let serve = Component {
        name: "serve",
        what: "`kiln serve`: every deployment kiln.yaml declares, for real-time predictions.",
        replicas: args.serve_replicas,
        args: [vec!["serve".to_string()], listen(serve_port)].concat(),
        http: Some(Http {
            port: serve_port,
            live: SERVE_LIVE,
            ready: SERVE_READY,
            startup_probes: 60,
        }),
        requests: ("500m", "512Mi"),
        limits: ("2", "2Gi"),
    };
    let worker = Component {
        name: "worker",
        what: "`kiln worker`: runs pipeline steps.",
        replicas: args.workers,
        args: vec!["worker".into()],
        http: None,
        requests: ("1", "2Gi"),
        limits: ("4", "8Gi"),
    };
    let max = args
        .serve_max_replicas
        .unwrap_or(args.serve_replicas.saturating_mul(4));
    if max < args.serve_replicas {
        bail!(
            "--serve-max-replicas {max} is below --serve-replicas {}",
            args.serve_replicas
        );
    }
    let dir = &args.output;
    let mut files = vec![
        File {
            path: dir.join("configmap.yaml"),
            text: render(
                &format!(
                    "# Written by `kiln export k8s` (kiln {VERSION}) from {}.
# kiln.yaml for every kiln pod, mounted at {CONFIG_DIR} (their working
# directory, where kiln finds it). Export again after editing kiln.yaml: the
# pods' checksum/config annotation changes, so applying restarts them.
#
{}",
                    config_path.display(),
                    plan.secret_help()
                ),
                &[plan.config_map(&text)],
            ),
        },
        File {
            path: dir.join("server.yaml"),
            text: render(
                &plan.header(&server, ""),
                &[plan.deployment(&server), plan.service(&server)],
            ),
        },
        File {
            path: dir.join("serve.yaml"),
            text: render(
                &plan.header(
                    &serve,
                    "# The autoscaler keeps between --serve-replicas and --serve-max-replicas pods,
# aiming at 70% of the CPU they request.
",
                ),
                &[
                    plan.deployment(&serve),
                    plan.service(&serve),
                    plan.autoscaler(&serve, max),
                ],
            ),
        },
    ];
    if worker.replicas > 0 {
        files.push(File {
            path: dir.join("worker.yaml"),
            text: render(
                &plan.header(
                    &worker,
                    "# No probes: a worker has no HTTP port, and kiln no health command an exec
# probe could run. A worker that fails exits, and Kubernetes restarts it.
",
                ),
                &[plan.deployment(&worker)],
            ),
        });
    }
    let next = format!(
        "Next: create the Secret `{}` (configmap.yaml shows how), then `kubectl apply -f {}`",
        args.secret,
        dir.display()
    );
    Ok((files, next))
}

impl K8sPlan<'_> {
    fn secret_help(&self) -> String {
        let ns = self
            .namespace
            .map(|n| format!(" --namespace {n}"))
            .unwrap_or_default();
        format!(
            "# The store comes from the Secret `{secret}`, which no file here holds:
#   kubectl create secret generic {secret}{ns} \\
#     --from-literal=KILN_STORE='postgres://USER:PASSWORD@HOST:5432/DB' \\
#     --from-literal=KILN_OBJECTS='s3://BUCKET/PREFIX' \\
#     --from-literal=AWS_ACCESS_KEY_ID=... --from-literal=AWS_SECRET_ACCESS_KEY=...
# Optional keys: AWS_REGION (default us-east-1), KILN_S3_ENDPOINT (an
# S3-compatible server). Without AWS_* keys, S3 credentials come from the
# pod's identity (IRSA, workload identity).
",
            secret = self.secret
        )
    }

    fn header(&self, c: &Component, extra: &str) -> String {
        let about = wrap_comment(
            "#",
            &format!(
                "Written by `kiln export k8s` (kiln {VERSION}). {} It runs as the non-root \
                 user {UID} on a read-only root filesystem, with kiln.yaml from the \
                 ConfigMap kiln-config. enableServiceLinks is off and --port explicit: \
                 for the Service kiln-serve, Kubernetes would set \
                 KILN_SERVE_PORT=tcp://..., which kiln would take for its port.",
                c.what
            ),
        );
        format!("{about}{extra}#\n{}", self.secret_help())
    }

    fn metadata(&self, name: &str, component: Option<&str>) -> Yaml {
        let mut m = map([("name", name.into())]);
        if let Some(ns) = self.namespace {
            m = m.with("namespace", ns.into());
        }
        m.with("labels", self.labels(component, true))
    }

    /// The recommended labels; `all` adds those that may change between
    /// versions, which a selector must not hold.
    fn labels(&self, component: Option<&str>, all: bool) -> Yaml {
        let mut m = map([
            ("app.kubernetes.io/name", "kiln".into()),
            ("app.kubernetes.io/instance", self.instance.as_str().into()),
        ]);
        if let Some(c) = component {
            m = m.with("app.kubernetes.io/component", c.into());
        }
        if all {
            m = m
                .with("app.kubernetes.io/part-of", "kiln".into())
                .with("app.kubernetes.io/version", VERSION.into());
        }
        m
    }

    fn config_map(&self, text: &str) -> Yaml {
        map([
            ("apiVersion", "v1".into()),
            ("kind", "ConfigMap".into()),
            ("metadata", self.metadata("kiln-config", None)),
            ("data", map([("kiln.yaml", text.into())])),
        ])
    }

    fn deployment(&self, c: &Component) -> Yaml {
        let name = format!("kiln-{}", c.name);
        let mut env = vec![
            env_value("KILN_USER", &name),
            // Logs as the cluster's collectors read them, without colours.
            env_value("NO_COLOR", "1"),
        ];
        for (key, required) in SECRET_KEYS {
            let mut r = map([("name", self.secret.into()), ("key", key.into())]);
            if !required {
                r = r.with("optional", true.into());
            }
            env.push(map([
                ("name", key.into()),
                ("valueFrom", map([("secretKeyRef", r)])),
            ]));
        }
        let mut container = map([
            ("name", c.name.into()),
            ("image", self.image.as_str().into()),
            (
                "args",
                Yaml::List(c.args.iter().map(|a| a.as_str().into()).collect()),
            ),
            ("workingDir", CONFIG_DIR.into()),
            ("env", Yaml::List(env)),
        ]);
        if let Some(http) = &c.http {
            let probe = |path: &str, period: i64, failures: i64| {
                map([
                    (
                        "httpGet",
                        map([("path", path.into()), ("port", "http".into())]),
                    ),
                    ("periodSeconds", period.into()),
                    ("timeoutSeconds", 2.into()),
                    ("failureThreshold", failures.into()),
                ])
            };
            container = container
                .with(
                    "ports",
                    Yaml::List(vec![map([
                        ("name", "http".into()),
                        ("containerPort", i64::from(http.port).into()),
                        ("protocol", "TCP".into()),
                    ])]),
                )
                .with("startupProbe", probe(http.live, 5, http.startup_probes))
                .with("livenessProbe", probe(http.live, 10, 3))
                .with("readinessProbe", probe(http.ready, 5, 2));
        }
        container = container
            .with(
                "resources",
                map([
                    (
                        "requests",
                        map([
                            ("cpu", c.requests.0.into()),
                            ("memory", c.requests.1.into()),
                        ]),
                    ),
                    (
                        "limits",
                        map([("cpu", c.limits.0.into()), ("memory", c.limits.1.into())]),
                    ),
                ]),
            )
            .with(
                "securityContext",
                map([
                    ("runAsNonRoot", true.into()),
                    ("allowPrivilegeEscalation", false.into()),
                    ("readOnlyRootFilesystem", true.into()),
                    (
                        "capabilities",
                        map([("drop", Yaml::List(vec!["ALL".into()]))]),
                    ),
                ]),
            )
            .with(
                "volumeMounts",
                Yaml::List(vec![
                    map([
                        ("name", "config".into()),
                        ("mountPath", CONFIG_DIR.into()),
                        ("readOnly", true.into()),
                    ]),
                    map([("name", "tmp".into()), ("mountPath", "/tmp".into())]),
                ]),
            );
        let pod = map([
            ("enableServiceLinks", false.into()),
            ("automountServiceAccountToken", false.into()),
            (
                "securityContext",
                map([
                    ("runAsNonRoot", true.into()),
                    ("runAsUser", UID.into()),
                    ("runAsGroup", UID.into()),
                    ("fsGroup", UID.into()),
                    ("seccompProfile", map([("type", "RuntimeDefault".into())])),
                ]),
            ),
            ("containers", Yaml::List(vec![container])),
            (
                "volumes",
                Yaml::List(vec![
                    map([
                        ("name", "config".into()),
                        ("configMap", map([("name", "kiln-config".into())])),
                    ]),
                    // S3 uploads stage here; the root filesystem is read-only.
                    map([("name", "tmp".into()), ("emptyDir", Yaml::Map(Vec::new()))]),
                ]),
            ),
        ]);
        map([
            ("apiVersion", "apps/v1".into()),
            ("kind", "Deployment".into()),
            ("metadata", self.metadata(&name, Some(c.name))),
            (
                "spec",
                map([
                    ("replicas", i64::from(c.replicas).into()),
                    (
                        "selector",
                        map([("matchLabels", self.labels(Some(c.name), false))]),
                    ),
                    (
                        "template",
                        map([
                            (
                                "metadata",
                                map([
                                    ("labels", self.labels(Some(c.name), true)),
                                    (
                                        "annotations",
                                        map([(
                                            "checksum/config",
                                            self.config_hash.as_str().into(),
                                        )]),
                                    ),
                                ]),
                            ),
                            ("spec", pod),
                        ]),
                    ),
                ]),
            ),
        ])
    }

    fn service(&self, c: &Component) -> Yaml {
        let port = c.http.as_ref().map_or(0, |h| h.port);
        map([
            ("apiVersion", "v1".into()),
            ("kind", "Service".into()),
            (
                "metadata",
                self.metadata(&format!("kiln-{}", c.name), Some(c.name)),
            ),
            (
                "spec",
                map([
                    ("type", "ClusterIP".into()),
                    ("selector", self.labels(Some(c.name), false)),
                    (
                        "ports",
                        Yaml::List(vec![map([
                            ("name", "http".into()),
                            ("port", i64::from(port).into()),
                            ("targetPort", "http".into()),
                            ("protocol", "TCP".into()),
                        ])]),
                    ),
                ]),
            ),
        ])
    }

    fn autoscaler(&self, c: &Component, max: u32) -> Yaml {
        let name = format!("kiln-{}", c.name);
        map([
            ("apiVersion", "autoscaling/v2".into()),
            ("kind", "HorizontalPodAutoscaler".into()),
            ("metadata", self.metadata(&name, Some(c.name))),
            (
                "spec",
                map([
                    (
                        "scaleTargetRef",
                        map([
                            ("apiVersion", "apps/v1".into()),
                            ("kind", "Deployment".into()),
                            ("name", name.as_str().into()),
                        ]),
                    ),
                    ("minReplicas", i64::from(c.replicas).into()),
                    ("maxReplicas", i64::from(max).into()),
                    (
                        "metrics",
                        Yaml::List(vec![map([
                            ("type", "Resource".into()),
                            (
                                "resource",
                                map([
                                    ("name", "cpu".into()),
                                    (
                                        "target",
                                        map([
                                            ("type", "Utilization".into()),
                                            ("averageUtilization", 70.into()),
                                        ]),
                                    ),
                                ]),
                            ),
                        ])]),
                    ),
                ]),
            ),
        ])
    }
}

fn env_value(name: &str, value: &str) -> Yaml {
    map([("name", name.into()), ("value", value.into())])
}

/// A name Kubernetes takes for a namespace (RFC 1123 label).
fn check_dns_label(what: &str, s: &str) -> anyhow::Result<()> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if !ok {
        bail!(
            "Invalid {what} `{s}`\n  hint: use at most 63 lowercase letters, digits and `-`, starting and ending with a letter or digit"
        );
    }
    Ok(())
}

/// A name Kubernetes takes for a Secret (RFC 1123 subdomain).
fn check_dns_subdomain(what: &str, s: &str) -> anyhow::Result<()> {
    if s.len() > 253
        || s.split('.')
            .any(|part| check_dns_label(what, part).is_err())
    {
        bail!(
            "Invalid {what} `{s}`\n  hint: use lowercase letters, digits, `-` and `.`, starting and ending with a letter or digit"
        );
    }
    Ok(())
}

/// A project name as a label value: at most 63 of `[A-Za-z0-9._-]`,
/// starting and ending with a letter or digit.
fn label_value(name: &str) -> String {
    let mapped: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    let trimmed = mapped.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    if trimmed.is_empty() {
        "kiln".into()
    } else {
        trimmed.to_string()
    }
}

// ---------------------------------------------------------------------------
// YAML

/// A YAML node whose mappings keep the order they are built in, so that the
/// files read as people write them (`apiVersion`, `kind`, `metadata`, …).
#[derive(Clone, Debug)]
enum Yaml {
    Str(String),
    Int(i64),
    Bool(bool),
    List(Vec<Yaml>),
    Map(Vec<(String, Yaml)>),
}

impl From<&str> for Yaml {
    fn from(s: &str) -> Self {
        Yaml::Str(s.to_string())
    }
}

impl From<String> for Yaml {
    fn from(s: String) -> Self {
        Yaml::Str(s)
    }
}

impl From<i64> for Yaml {
    fn from(n: i64) -> Self {
        Yaml::Int(n)
    }
}

impl From<bool> for Yaml {
    fn from(b: bool) -> Self {
        Yaml::Bool(b)
    }
}

/// A mapping, in the order given.
fn map<const N: usize>(entries: [(&str, Yaml); N]) -> Yaml {
    Yaml::Map(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

impl Yaml {
    /// This mapping with `key` appended.
    fn with(self, key: &str, value: Yaml) -> Yaml {
        match self {
            Yaml::Map(mut entries) => {
                entries.push((key.to_string(), value));
                Yaml::Map(entries)
            }
            other => panic!("with({key}) on a YAML scalar or list: {other:?}"),
        }
    }
}

/// `header` (comment lines), then each document, `---` between them.
fn render(header: &str, docs: &[Yaml]) -> String {
    let mut out = String::from(header);
    for (i, doc) in docs.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        match doc {
            Yaml::Map(e) if !e.is_empty() => block(&mut out, doc, 0),
            Yaml::List(i) if !i.is_empty() => block(&mut out, doc, 0),
            scalar => {
                out.push_str(&inline(scalar));
                out.push('\n');
            }
        }
    }
    out
}

/// A non-empty mapping or sequence in block style, at column `indent`.
fn block(out: &mut String, node: &Yaml, indent: usize) {
    match node {
        Yaml::Map(entries) => entries_at(out, entries, indent),
        Yaml::List(items) => {
            for item in items {
                pad(out, indent);
                out.push('-');
                match item {
                    Yaml::Map(entries) if !entries.is_empty() => {
                        // The first key on the dash's line, the rest under it.
                        out.push(' ');
                        let (k, v) = &entries[0];
                        out.push_str(&scalar(k));
                        out.push(':');
                        value(out, v, indent + 2);
                        entries_at(out, &entries[1..], indent + 2);
                    }
                    other => value(out, other, indent),
                }
            }
        }
        scalar => {
            out.push_str(&inline(scalar));
            out.push('\n');
        }
    }
}

fn entries_at(out: &mut String, entries: &[(String, Yaml)], indent: usize) {
    for (k, v) in entries {
        pad(out, indent);
        out.push_str(&scalar(k));
        out.push(':');
        value(out, v, indent);
    }
}

/// What follows `key:` or `-` at column `indent`: a scalar on the same
/// line, a collection or a literal block on the lines below.
fn value(out: &mut String, v: &Yaml, indent: usize) {
    match v {
        Yaml::Map(e) if !e.is_empty() => {
            out.push('\n');
            block(out, v, indent + 2);
        }
        Yaml::List(i) if !i.is_empty() => {
            out.push('\n');
            block(out, v, indent + 2);
        }
        Yaml::Str(s) if literal_style(s).is_some() => {
            let (indicator, body) = literal_style(s).expect("checked");
            out.push(' ');
            out.push_str(indicator);
            out.push('\n');
            for line in body.split('\n') {
                // Empty lines carry no indentation (no trailing spaces).
                if !line.is_empty() {
                    pad(out, indent + 2);
                    out.push_str(line);
                }
                out.push('\n');
            }
        }
        _ => {
            out.push(' ');
            out.push_str(&inline(v));
            out.push('\n');
        }
    }
}

fn pad(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

fn inline(v: &Yaml) -> String {
    match v {
        Yaml::Str(s) => scalar(s),
        Yaml::Int(n) => n.to_string(),
        Yaml::Bool(b) => b.to_string(),
        Yaml::List(_) => "[]".into(),
        Yaml::Map(_) => "{}".into(),
    }
}

/// Whether `c` may stand unescaped in a YAML file (YAML 1.2's c-printable,
/// less NEL and the byte order mark, which YAML 1.1 readers treat apart).
fn printable(c: char) -> bool {
    matches!(c, '\t' | ' '..='~' | '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..)
        && c != '\u{feff}'
}

/// A string as a scalar: plain when no YAML 1.1 or 1.2 reader could take
/// it for anything else (a number, a boolean, null, a date, syntax), double
/// quoted otherwise.
fn scalar(s: &str) -> String {
    // `-x` and `--flag` are plain (a dash is an indicator only before a
    // space); `-1` is a number and `---` a document marker.
    let undashed = s
        .strip_prefix("--")
        .or_else(|| s.strip_prefix('-'))
        .unwrap_or(s);
    let first = undashed.chars().next();
    let plain = first.is_some_and(|c| c.is_ascii_alphabetic() || c == '/' || c == '$')
        && s.chars().all(|c| c == ' ' || c.is_ascii_graphic())
        && !s.ends_with(' ')
        && !s.ends_with(':')
        && !s.contains(": ")
        && !s.contains(" #")
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "y" | "n" | "yes" | "no" | "true" | "false" | "on" | "off" | "null"
        );
    if plain {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if printable(c) => out.push(c),
            c => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
        }
    }
    out.push('"');
    out
}

/// A literal block (`|`) for a multi-line string that reads back exactly:
/// the indicator and the text to indent. None when the string needs
/// quoting instead (a leading space would need an indentation indicator).
fn literal_style(s: &str) -> Option<(&'static str, &str)> {
    let ok = s.contains('\n')
        && s.chars().all(|c| c == '\n' || printable(c))
        && s.chars()
            .next()
            .is_some_and(|c| c != ' ' && c != '\t' && c != '\n');
    if !ok {
        return None;
    }
    Some(match s.strip_suffix('\n') {
        // Keep (`|+`): trailing line breaks beyond the last.
        Some(body) if body.ends_with('\n') => ("|+", body),
        Some(body) => ("|", body),
        None => ("|-", s),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_that_a_reader_could_mistake_are_quoted() {
        for (s, want) in [
            ("kiln", "kiln"),
            ("app.kubernetes.io/name", "app.kubernetes.io/name"),
            (
                "kiln run main --junit kiln-run.xml",
                "kiln run main --junit kiln-run.xml",
            ),
            ("${{ secrets.KILN_STORE }}", "${{ secrets.KILN_STORE }}"),
            ("on", "\"on\""),
            ("No", "\"No\""),
            ("y", "\"y\""),
            ("null", "\"null\""),
            ("100m", "\"100m\""),
            ("2024-01-01", "\"2024-01-01\""),
            ("1", "\"1\""),
            ("", "\"\""),
            ("a: b", "\"a: b\""),
            ("a #b", "\"a #b\""),
            ("ghcr.io/kiln-ml/kiln:0.1.0", "ghcr.io/kiln-ml/kiln:0.1.0"),
            ("-x", "-x"),
            ("--host", "--host"),
            ("-1", "\"-1\""),
            ("---", "\"---\""),
            ("--", "\"--\""),
            ("*x", "\"*x\""),
            ("é", "\"é\""),
            ("a\u{7f}\"\\", "\"a\\u007f\\\"\\\\\""),
        ] {
            assert_eq!(scalar(s), want, "{s:?}");
        }
    }

    #[test]
    fn literal_blocks_keep_every_line_break() {
        assert_eq!(literal_style("a\nb\n"), Some(("|", "a\nb")));
        assert_eq!(literal_style("a\nb"), Some(("|-", "a\nb")));
        assert_eq!(literal_style("a\n\n\n"), Some(("|+", "a\n\n")));
        assert_eq!(literal_style(" a\n"), None);
        assert_eq!(literal_style("\na\n"), None);
        assert_eq!(literal_style("a\r\nb\n"), None);
        assert_eq!(literal_style("one line"), None);
    }

    #[test]
    fn nested_collections_render_in_block_style() {
        let doc = map([
            ("kind", "Deployment".into()),
            (
                "items",
                Yaml::List(vec![
                    map([("name", "a".into()), ("args", Yaml::List(vec!["x".into()]))]),
                    "b".into(),
                    Yaml::Map(Vec::new()),
                ]),
            ),
            ("text", "a\n\nb\n".into()),
            ("count", 3.into()),
        ]);
        assert_eq!(
            render("# h\n", &[doc.clone(), doc])
                .split("---\n")
                .next()
                .unwrap(),
            "# h\nkind: Deployment\nitems:\n  - name: a\n    args:\n      - x\n  - b\n  - {}\ntext: |\n  a\n\n  b\ncount: 3\n"
        );
    }

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        assert_eq!(
            sh_join(&[
                "kiln",
                "gate",
                "fraud@2",
                "--require",
                "auc >= 0.9 and it's"
            ]),
            r"kiln gate fraud@2 --require 'auc >= 0.9 and it'\''s'"
        );
        assert_eq!(sh_join(&["a", ""]), "a ''");
    }

    #[test]
    fn label_values_come_from_any_project_name() {
        assert_eq!(label_value("Fraud Models!"), "Fraud-Models");
        assert_eq!(label_value("__"), "kiln");
        assert_eq!(label_value(&"x".repeat(80)).len(), 63);
    }
}
