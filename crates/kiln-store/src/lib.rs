//! kiln's storage: a metadata store (SQLite or PostgreSQL, one schema, the
//! same behaviour) and a content-addressed object store (a local folder or any
//! S3-compatible server).
//!
//! * [`MetaStore`] holds projects, datasets, dataset versions, check results,
//!   lineage edges and the audit log. Every mutation runs in one transaction
//!   together with its audit row. The schema is versioned by the migrations in
//!   `migrations/`, applied on connect.
//! * [`Objects`] stores immutable blobs named by their BLAKE3 digest. Writes
//!   stream (a 10 GB file never sits in memory) and are atomic: a local write
//!   goes to `tmp/` and is renamed into place; an S3 write is a multipart upload
//!   that becomes visible only when completed.
//!
//! The order of a write is always objects first, metadata second, so a
//! crash leaves at worst an unreferenced object, never a version without its
//! objects.

mod error;
mod meta;
mod migrate;
mod objects;
mod url;

pub use error::StoreError;
pub use meta::{
    Alert, AlertChange, AlertEvent, ArtifactEntry, AuditEntry, CheckRecord, DEFAULT_EXPERIMENT,
    DatasetRecord, DatasetSummary, Edge, Experiment, Feedback, KV, LineageEdge, LoggedModel,
    MetaStore, Metric, ModelVersion, MonitorWindow, NewLoggedModel, NewModelVersion,
    NewPipelineRun, NewRun, NewTrackedRun, NewVersion, Page, PipelineRun, PipelineTrigger,
    PredictionSegment, RegisteredModel, Run, RunInput, RunRecord, RunUpdate, ServingSample,
    StepRun, VersionRecord, VersionSpec, ViewType, check_alias, check_artifact_path, now_ms,
};
pub use objects::{ObjectLock, Objects, Staged, hash_file};
pub use url::{ObjectsUrl, StoreUrl};

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
