//! Monitoring: what a model saw at training (a reference [`profile`]), how
//! far the traffic it serves has moved from it ([`drift`]), outlier inputs
//! ([`iforest`]) and anomalies in operational series ([`anomaly`]).
//!
//! Like kiln-ml, this crate knows nothing of stores, projects or HTTP: Arrow
//! columns in, values out.

pub mod anomaly;
pub mod drift;
pub use kiln_html as html;
pub mod iforest;
pub mod profile;
pub mod report;
pub mod stats;
pub mod table;
