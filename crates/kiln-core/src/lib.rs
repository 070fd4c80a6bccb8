//! The base of kiln: content ids, the column types every crate speaks of, the
//! progress interface long-running work reports through, and every `KILN_*`
//! environment variable name ([`EnvVars`]).
//!
//! Nothing here does I/O beyond reading the clock; every other crate depends on it.
//!
//! ```
//! use kiln_core::ContentHash;
//! let h = ContentHash::of(b"hello");
//! assert_eq!(h.to_hex().len(), 64);
//! assert_eq!(ContentHash::parse(&h.to_hex()).unwrap(), h);
//! ```

mod duration;
mod env;
mod hash;
mod progress;
mod types;

pub use duration::parse_duration;
pub use env::EnvVars;
pub use hash::{ContentHash, HashParseError};
pub use progress::{NoProgress, Progress};
pub use types::{ColumnType, UnknownColumnType};

/// The current time as an RFC 3339 string in UTC with microseconds, the one
/// spelling of timestamps in kiln's metadata (it sorts as text).
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Who is acting, for the audit log: `KILN_USER`, else the login name
/// (`USER`, `LOGNAME`, `USERNAME`), else `unknown`.
pub fn current_actor() -> String {
    [EnvVars::KILN_USER, "USER", "LOGNAME", "USERNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "unknown".to_string())
}
