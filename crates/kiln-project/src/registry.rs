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
