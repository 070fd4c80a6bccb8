use std::path::{Path, PathBuf};

use kiln_store::{MetaStore, Objects, ObjectsUrl, StoreUrl};

use crate::config::{DatasetConfig, KilnYaml};
use crate::{ProjectError, Result};

/// The file that marks a project root.
pub const CONFIG_FILE: &str = "kiln.yaml";
/// The folder holding the embedded stores.
pub const STATE_DIR: &str = ".kiln";

/// Store locations given on the command line or in the environment; they
/// win over `kiln.yaml`.
#[derive(Clone, Debug, Default)]
pub struct Locations {
    pub store: Option<String>,
    pub objects: Option<String>,
    /// The project's name where no `kiln.yaml` says it (a worker on
    /// another machine, say); default `default`.
    pub project: Option<String>,
}

/// An open project: its declarations and its stores.
pub struct Project {
    /// The directory holding `kiln.yaml`, if there is one.
    pub root: Option<PathBuf>,
    pub config: KilnYaml,
    pub meta: MetaStore,
    pub objects: Objects,
}

/// The nearest directory at or above `start` that holds a `kiln.yaml`.
pub fn find_root(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .find(|d| d.join(CONFIG_FILE).is_file())
        .map(Path::to_path_buf)
}

impl Project {
    /// Creates a project in `dir`: `kiln.yaml`, and `.kiln/` with the SQLite
    /// database and the object folder. Returns the `kiln.yaml` path.
    ///
    /// With `locations`, the project's stores are those instead (a
    /// PostgreSQL database is migrated, an S3 bucket checked for reach), and
    /// `kiln.yaml` records them unless the store URL holds a password.
    pub async fn init(dir: &Path, name: Option<&str>, locations: &Locations) -> Result<PathBuf> {
        std::fs::create_dir_all(dir).map_err(ProjectError::io("create", dir))?;
        let dir = std::fs::canonicalize(dir).map_err(ProjectError::io("open", dir))?;
        let config = dir.join(CONFIG_FILE);
        if config.exists() {
            return Err(ProjectError::AlreadyInitialized(dir));
        }
        let name = match name {
            Some(n) => n.to_string(),
            None => dir
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("kiln")
                .to_string(),
        };
        let state = dir.join(STATE_DIR);
        std::fs::create_dir_all(&state).map_err(ProjectError::io("create", &state))?;
        // The stores are not source: keep them out of git.
        std::fs::write(state.join(".gitignore"), "*\n")
            .map_err(ProjectError::io("write", &state))?;
        let store = match &locations.store {
            Some(u) => resolve_store(StoreUrl::parse(u)?, &dir),
            None => StoreUrl::Sqlite(state.join("kiln.db")),
        };
        let meta = MetaStore::open(&store, &name).await?;
        meta.close().await;
        let objects = match &locations.objects {
            Some(u) => resolve_objects(ObjectsUrl::parse(u)?, &dir),
            None => ObjectsUrl::Folder(state.join("objects")),
        };
        // Any answer, even "absent", shows the object store is reachable.
        Objects::open(&objects)?
            .exists(&kiln_core::ContentHash::of(b"kiln init"))
            .await?;
        let store_line = match (&locations.store, &store) {
            (Some(u), StoreUrl::Postgres(_)) if store.redacted() != *u => None,
            (Some(u), _) => Some(u.as_str()),
            (None, _) => None,
        };
        // kiln.yaml last: its presence means the project is complete.
        let tmp = dir.join(".kiln.yaml.tmp");
        let text = KilnYaml::starter(&name, store_line, locations.objects.as_deref());
        std::fs::write(&tmp, text).map_err(ProjectError::io("write", &tmp))?;
        std::fs::rename(&tmp, &config).map_err(ProjectError::io("write", &config))?;
        Ok(config)
    }

    /// Opens the project found from `cwd`, with `locations` overriding where
    /// its stores are.
    pub async fn open(cwd: &Path, locations: &Locations) -> Result<Self> {
        let root = find_root(cwd);
        let config = match &root {
            Some(r) => KilnYaml::load(&r.join(CONFIG_FILE))?,
            None if locations.store.is_some() && locations.objects.is_some() => KilnYaml {
                project: locations
                    .project
                    .clone()
                    .unwrap_or_else(|| "default".into()),
                ..KilnYaml::default()
            },
            None => return Err(ProjectError::NotFound(cwd.to_path_buf())),
        };
        let base = root.clone().unwrap_or_else(|| cwd.to_path_buf());
        let store = match locations.store.as_ref().or(config.store.as_ref()) {
            Some(u) => resolve_store(StoreUrl::parse(u)?, &base),
            None => StoreUrl::Sqlite(base.join(STATE_DIR).join("kiln.db")),
        };
        let objects = match locations.objects.as_ref().or(config.objects.as_ref()) {
            Some(u) => resolve_objects(ObjectsUrl::parse(u)?, &base),
            None => ObjectsUrl::Folder(base.join(STATE_DIR).join("objects")),
        };
        let objects = Objects::open(&objects)?;
        let meta = MetaStore::open(&store, &config.project).await?;
        Ok(Self {
            root,
            config,
            meta,
            objects,
        })
    }

    /// What `kiln.yaml` declares about a dataset (nothing, if it is not there).
    pub fn dataset_config(&self, name: &str) -> DatasetConfig {
        self.config.datasets.get(name).cloned().unwrap_or_default()
    }
}

fn resolve_store(url: StoreUrl, base: &Path) -> StoreUrl {
    match url {
        StoreUrl::Sqlite(p) if p.is_relative() => StoreUrl::Sqlite(base.join(p)),
        other => other,
    }
}

fn resolve_objects(url: ObjectsUrl, base: &Path) -> ObjectsUrl {
    match url {
        ObjectsUrl::Folder(p) if p.is_relative() => ObjectsUrl::Folder(base.join(p)),
        other => other,
    }
}
