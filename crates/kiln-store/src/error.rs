use std::path::PathBuf;

/// Everything that can go wrong in the metadata or object store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A `--store` / `--objects` URL kiln cannot use.
    #[error("Invalid {what} URL `{url}`: {reason}")]
    InvalidUrl {
        what: &'static str,
        url: String,
        reason: String,
    },
    /// The metadata database could not be reached or opened.
    #[error("Failed to connect to the metadata store at `{url}`")]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    /// A schema migration failed; the database is left at the previous version.
    #[error("Failed to apply metadata schema migration {version} (`{name}`)")]
    Migrate {
        version: i64,
        name: String,
        #[source]
        source: sqlx::Error,
    },
    /// An applied migration differs from the one this kiln carries.
    #[error(
        "Metadata schema migration {version} applied to this store differs from the one this kiln carries"
    )]
    MigrationChanged { version: i64 },
    /// The store was migrated by a newer kiln.
    #[error("The metadata store has schema version {found}, newer than this kiln knows ({known})")]
    SchemaTooNew { found: i64, known: i64 },
    /// A query failed.
    #[error("Metadata store query failed: {context}")]
    Query {
        context: &'static str,
        #[source]
        source: sqlx::Error,
    },
    /// A stored value could not be decoded.
    #[error("Metadata store holds an invalid value in {context}: {detail}")]
    Corrupt {
        context: &'static str,
        detail: String,
    },
    /// No dataset of that name in the project.
    #[error("No dataset named `{name}` in project `{project}`")]
    UnknownDataset { project: String, name: String },
    /// No version matches the given spec.
    #[error("Dataset `{dataset}` has no version `{spec}`")]
    UnknownVersion { dataset: String, spec: String },
    /// An id prefix matches several versions.
    #[error("Version prefix `{spec}` of dataset `{dataset}` is ambiguous: it matches {candidates}")]
    AmbiguousVersion {
        dataset: String,
        spec: String,
        candidates: String,
    },
    /// No run matches the given id or prefix.
    #[error("No run `{0}` in this project")]
    UnknownRun(String),
    /// A run id prefix matches several runs.
    #[error("Run prefix `{spec}` is ambiguous: it matches {candidates}")]
    AmbiguousRun { spec: String, candidates: String },
    /// No entity of that kind with that id or name.
    #[error("No {kind} `{id}` in this project")]
    NotFound { kind: &'static str, id: String },
    /// An entity of that kind with that name exists already.
    #[error("{kind} `{id}` already exists")]
    AlreadyExists { kind: &'static str, id: String },
    /// A value that breaks a rule of the entity it was given for.
    #[error("Invalid value for `{field}`: {message}")]
    Invalid { field: String, message: String },
    /// The object store failed.
    #[error("Object store operation failed: {context} `{key}`")]
    Object {
        context: &'static str,
        key: String,
        #[source]
        source: object_store::Error,
    },
    /// A local file operation failed.
    #[error("Failed to {action} `{}`", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Content read back does not hash to its name.
    #[error("Object `{expected}` is corrupt: its content hashes to `{actual}`")]
    CorruptObject { expected: String, actual: String },
    /// No object with that hash.
    #[error("Object `{0}` is missing from the object store")]
    MissingObject(String),
}

impl StoreError {
    pub(crate) fn query(context: &'static str) -> impl FnOnce(sqlx::Error) -> Self {
        move |source| Self::Query { context, source }
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io {
            action,
            path,
            source,
        }
    }

    /// A line telling the user what to do about this error, where there is one.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Connect { .. } => Some(
                "check that the database server is running and the URL (`--store` / `KILN_STORE`) is right".into(),
            ),
            Self::InvalidUrl { what: "store", .. } => {
                Some("use `sqlite://PATH` or `postgres://USER:PASSWORD@HOST:PORT/DB`".into())
            }
            Self::InvalidUrl { .. } => Some("use `file://PATH` or `s3://BUCKET/PREFIX`".into()),
            Self::SchemaTooNew { .. } => Some("upgrade kiln to use this store".into()),
            Self::UnknownDataset { .. } => Some("`kiln data ls` lists the datasets".into()),
            Self::UnknownVersion { dataset, .. } | Self::AmbiguousVersion { dataset, .. } => Some(format!(
                "`kiln data log {dataset}` lists its versions; name one by id prefix, tag, or `latest`"
            )),
            Self::UnknownRun(_) | Self::AmbiguousRun { .. } => {
                Some("`kiln runs ls` lists the runs; name one by id or a prefix of 6 or more characters".into())
            }
            Self::NotFound { kind: "experiment", .. } => {
                Some("`kiln experiments ls` lists the experiments".into())
            }
            Self::NotFound { kind: "registered model", .. } => {
                Some("`kiln models ls` lists the registered models".into())
            }
            Self::NotFound { kind: "model version", .. } => {
                Some("`kiln models show NAME` lists its versions and aliases".into())
            }
            Self::Object { .. } => Some(
                "check that the object store is reachable (`--objects` / `KILN_OBJECTS`, `KILN_S3_ENDPOINT`) and the credentials are right".into(),
            ),
            Self::Io { source, .. } if is_disk_full(source) => {
                Some("free some disk space and run the command again; nothing was recorded".into())
            }
            _ => None,
        }
    }
}

/// Whether an I/O error means the disk (or the process's file size limit) is full.
pub fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(28) | Some(27)) // ENOSPC, EFBIG
        || e.kind() == std::io::ErrorKind::StorageFull
}
