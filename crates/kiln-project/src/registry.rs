//! Registering models: a run's model, or a model file trained elsewhere
//! (kiln, ONNX, LightGBM text, XGBoost JSON), as the next version of a
//! registered model, with its signature and metrics for the model card.

use std::path::Path;

use kiln_ml::foreign::{self, ModelInfo};
use kiln_store::{KV, ModelVersion, NewModelVersion};

use crate::{Project, ProjectError, Result};

impl Project {
    /// Registers the model a run produced as the next version of `name`.
    pub async fn register_run_model(
        &self,
        name: &str,
        run: &str,
        description: Option<&str>,
    ) -> Result<ModelVersion> {
        let record = self.meta.run(run).await?;
        let run = self.meta.tracked_run(&record.id).await?;
        let object = record.model_object.as_deref().ok_or_else(|| {
            ProjectError::WrongKind(format!(
                "Run `{}` produced no kiln model; register MLflow models with their client, \
                 or import a model file with `kiln models import`",
                &run.id[..12]
            ))
        })?;
        let hash =
            kiln_core::ContentHash::parse(object).map_err(|e| kiln_store::StoreError::Corrupt {
                context: "a run's model object",
                detail: e.to_string(),
            })?;
        let bytes = self.objects.get_bytes(&hash).await?;
        let info = foreign::inspect(&bytes).map_err(|source| ProjectError::Import {
            path: format!("run {}", &run.id[..12]).into(),
            source,
        })?;
        let metrics: serde_json::Map<String, serde_json::Value> = run
            .metrics
            .iter()
            .filter(|m| m.value.is_finite())
            .map(|m| (m.key.clone(), m.value.into()))
            .collect();
        Ok(self
            .meta
            .create_model_version(
                NewModelVersion {
                    name: name.to_string(),
                    source: format!("runs:/{}/model", run.id),
                    run_id: Some(run.id.clone()),
                    description: description.map(str::to_string),
                    object: Some(hash),
                    format: info.format.as_str().to_string(),
                    signature: Some(
                        serde_json::to_value(&info.signature).expect("signatures serialise"),
                    ),
                    metrics: Some(metrics.into()),
                    tags: vec![KV::new("kiln.producer", info.producer)],
                    ..NewModelVersion::default()
                },
                true,
            )
            .await?)
    }

    /// Imports a model file as the next version of `name`.
    pub async fn import_model(
        &self,
        name: &str,
        path: &Path,
        description: Option<&str>,
    ) -> Result<(ModelVersion, ModelInfo)> {
        let bytes = std::fs::read(path).map_err(ProjectError::io("read", path))?;
        let info = foreign::inspect(&bytes).map_err(|source| ProjectError::Import {
            path: path.to_path_buf(),
            source,
        })?;
        let hash = {
            let _lock = self.objects.lock()?;
            self.objects.put_bytes(bytes).await?
        };
        let file = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut tags = vec![
            KV::new("kiln.import.file", file),
            KV::new("kiln.producer", info.producer.clone()),
        ];
        if let Some(t) = &info.task {
            tags.push(KV::new("kiln.task", t.clone()));
        }
        let version = self
            .meta
            .create_model_version(
                NewModelVersion {
                    name: name.to_string(),
                    source: format!("kiln-object:{}", hash.to_hex()),
                    description: description.map(str::to_string),
                    object: Some(hash),
                    format: info.format.as_str().to_string(),
                    signature: Some(
                        serde_json::to_value(&info.signature).expect("signatures serialise"),
                    ),
                    tags,
                    ..NewModelVersion::default()
                },
                true,
            )
            .await?;
        Ok((version, info))
    }
}

/// A model to serve, as named on the command line or in `kiln.yaml`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelRef {
    /// `NAME@ALIAS`: follows the alias as it moves.
    Alias { name: String, alias: String },
    /// `NAME@VERSION` (a number) or `NAME@vVERSION`.
    Version { name: String, version: i64 },
    /// A run id (or prefix) from `kiln train`.
    Run(String),
    /// A model file: kiln, ONNX, LightGBM text or XGBoost JSON.
    File(std::path::PathBuf),
}

impl ModelRef {
    /// Reads `NAME@ALIAS`, `NAME@VERSION`, a run id or a file path.
    pub fn parse(s: &str) -> ModelRef {
        let p = Path::new(s);
        if p.is_file() || p.components().count() > 1 {
            return ModelRef::File(p.to_path_buf());
        }
        match s.split_once('@') {
            Some((name, v)) => match v.strip_prefix('v').unwrap_or(v).parse::<i64>() {
                Ok(version) => ModelRef::Version {
                    name: name.to_string(),
                    version,
                },
                Err(_) => ModelRef::Alias {
                    name: name.to_string(),
                    alias: v.to_string(),
                },
            },
            None if p.extension().is_some() => ModelRef::File(p.to_path_buf()),
            None => ModelRef::Run(s.strip_prefix("run:").unwrap_or(s).to_string()),
        }
    }

    /// The name a deployment of this model gets by default.
    pub fn default_name(&self) -> String {
        match self {
            ModelRef::Alias { name, .. } | ModelRef::Version { name, .. } => name.clone(),
            ModelRef::Run(id) => format!("run-{}", &id[..id.len().min(8)]),
            ModelRef::File(p) => p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "model".into()),
        }
    }
}

impl std::fmt::Display for ModelRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModelRef::Alias { name, alias } => write!(f, "{name}@{alias}"),
            ModelRef::Version { name, version } => write!(f, "{name}@{version}"),
            ModelRef::Run(id) => write!(f, "run {}", &id[..id.len().min(12)]),
            ModelRef::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// A model's bytes and where they came from.
#[derive(Clone, Debug)]
pub struct FetchedModel {
    /// The registered model, run or file it came from.
    pub model_name: String,
    /// The registry version (`"3"`), a run id prefix, or the file's content hash prefix.
    pub version: String,
    /// kiln, onnx, lightgbm or xgboost.
    pub format: String,
    pub bytes: Vec<u8>,
}

impl Project {
    /// The registry version an alias or version reference points at now
    /// (None for runs and files, which do not move). Cheap: one query.
    pub async fn current_version(&self, r: &ModelRef) -> Result<Option<i64>> {
        Ok(match r {
            ModelRef::Alias { name, alias } => {
                Some(self.meta.model_version_by_alias(name, alias).await?.version)
            }
            ModelRef::Version { version, .. } => Some(*version),
            _ => None,
        })
    }

    /// Fetches the model a reference names, refusing what kiln cannot serve.
    pub async fn fetch_model(&self, r: &ModelRef) -> Result<FetchedModel> {
        let version = match r {
            ModelRef::File(path) => {
                let bytes = std::fs::read(path).map_err(ProjectError::io("read", path))?;
                let info = foreign::inspect(&bytes).map_err(|source| ProjectError::Import {
                    path: path.clone(),
                    source,
                })?;
                let hash = kiln_core::ContentHash::of(&bytes).to_hex();
                return Ok(FetchedModel {
                    model_name: r.default_name(),
                    version: hash[..12].to_string(),
                    format: info.format.as_str().to_string(),
                    bytes,
                });
            }
            ModelRef::Run(id) => {
                let run = self.meta.run(id).await?;
                let object = run.model_object.as_deref().ok_or_else(|| {
                    ProjectError::WrongKind(format!(
                        "Run `{}` produced no kiln model to serve",
                        &run.id[..12]
                    ))
                })?;
                let hash = parse_object(object)?;
                return Ok(FetchedModel {
                    model_name: format!("run-{}", &run.id[..8]),
                    version: run.id[..12].to_string(),
                    format: "kiln".into(),
                    bytes: self.objects.get_bytes(&hash).await?,
                });
            }
            ModelRef::Alias { name, alias } => {
                self.meta.model_version_by_alias(name, alias).await?
            }
            ModelRef::Version { name, version } => self.meta.model_version(name, *version).await?,
        };
        let object = version.object.as_deref().ok_or_else(|| {
            ProjectError::WrongKind(format!(
                "{}@{} is an MLflow-flavoured model (source {}); kiln serves kiln, ONNX, \
                 LightGBM and XGBoost files: register one with `kiln models register` or \
                 `kiln models import`",
                version.name, version.version, version.source
            ))
        })?;
        let hash = parse_object(object)?;
        Ok(FetchedModel {
            model_name: version.name.clone(),
            version: version.version.to_string(),
            format: version.format.clone(),
            bytes: self.objects.get_bytes(&hash).await?,
        })
    }
}

fn parse_object(object: &str) -> Result<kiln_core::ContentHash> {
    kiln_core::ContentHash::parse(object).map_err(|e| {
        kiln_store::StoreError::Corrupt {
            context: "a model's object",
            detail: e.to_string(),
        }
        .into()
    })
}
