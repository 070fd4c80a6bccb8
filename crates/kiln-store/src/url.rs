use std::path::PathBuf;

use crate::StoreError;

/// Where the metadata lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreUrl {
    /// A SQLite file (created if missing).
    Sqlite(PathBuf),
    /// A PostgreSQL server; the string is the full `postgres://` URL.
    Postgres(String),
}

/// Where the objects live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ObjectsUrl {
    /// A local folder (created if missing).
    Folder(PathBuf),
    /// An S3 bucket and key prefix (possibly empty).
    S3 { bucket: String, prefix: String },
}

impl StoreUrl {
    pub fn parse(s: &str) -> Result<Self, StoreError> {
        let invalid = |reason: &str| StoreError::InvalidUrl {
            what: "store",
            url: s.to_string(),
            reason: reason.to_string(),
        };
        if let Some(path) = s.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(invalid("the path is empty"));
            }
            Ok(Self::Sqlite(PathBuf::from(path)))
        } else if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            Ok(Self::Postgres(s.to_string()))
        } else {
            Err(invalid("the scheme must be `sqlite://` or `postgres://`"))
        }
    }

    /// The URL with any password replaced by `***`, for messages.
    pub fn redacted(&self) -> String {
        match self {
            Self::Sqlite(p) => format!("sqlite://{}", p.display()),
            Self::Postgres(u) => redact_password(u),
        }
    }
}

impl ObjectsUrl {
    pub fn parse(s: &str) -> Result<Self, StoreError> {
        let invalid = |reason: &str| StoreError::InvalidUrl {
            what: "objects",
            url: s.to_string(),
            reason: reason.to_string(),
        };
        if let Some(path) = s.strip_prefix("file://") {
            if path.is_empty() {
                return Err(invalid("the path is empty"));
            }
            Ok(Self::Folder(PathBuf::from(path)))
        } else if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(invalid("the bucket name is empty"));
            }
            Ok(Self::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.trim_matches('/').to_string(),
            })
        } else {
            Err(invalid("the scheme must be `file://` or `s3://`"))
        }
    }
}

impl std::fmt::Display for ObjectsUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Folder(p) => write!(f, "file://{}", p.display()),
            Self::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

fn redact_password(url: &str) -> String {
    match ::url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_scheme() {
        assert_eq!(
            StoreUrl::parse("sqlite://.kiln/kiln.db").unwrap(),
            StoreUrl::Sqlite(".kiln/kiln.db".into())
        );
        assert!(matches!(
            StoreUrl::parse("postgres://u:p@127.0.0.1:5432/db").unwrap(),
            StoreUrl::Postgres(_)
        ));
        assert_eq!(
            ObjectsUrl::parse("s3://bucket/a/b/").unwrap(),
            ObjectsUrl::S3 {
                bucket: "bucket".into(),
                prefix: "a/b".into()
            }
        );
        assert_eq!(
            ObjectsUrl::parse("file:///tmp/o").unwrap(),
            ObjectsUrl::Folder("/tmp/o".into())
        );
    }

    #[test]
    fn rejects_unknown_schemes_and_hides_passwords() {
        assert!(StoreUrl::parse("mysql://x").is_err());
        assert!(ObjectsUrl::parse("gs://b").is_err());
        assert!(ObjectsUrl::parse("s3://").is_err());
        let u = StoreUrl::parse("postgres://kiln:secret@localhost/db").unwrap();
        assert!(!u.redacted().contains("secret"));
    }
}
