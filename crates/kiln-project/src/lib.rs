//! A kiln project: the `kiln.yaml` a user declares, finding it as git finds
//! its repository, opening its stores, and the dataset operations that tie
//! the data engine ([`kiln_data`]) to storage ([`kiln_store`]).
//!
//! Every write follows one order: objects first, then one metadata
//! transaction. A crash in between leaves an unreferenced object and never a
//! version without its objects.

mod config;
pub mod datasets;
mod error;
pub mod explaining;
pub mod folders;
pub mod gc;
pub mod lineage;
pub mod monitoring;
pub mod openlineage;
pub mod pipelines;
mod project;
mod registry;
pub mod state;
pub mod training;

pub use config::{
    DatasetConfig, DeploymentConfig, KilnYaml, MonitorConfig, RuleConfig, SplitConfig, WindowSpec,
};
pub use error::ProjectError;
pub use project::{CONFIG_FILE, Locations, Project, find_root};
pub use registry::{FetchedModel, ModelRef};

pub type Result<T, E = ProjectError> = std::result::Result<T, E>;
