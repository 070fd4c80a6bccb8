//! Test harness: throw-away PostgreSQL databases and S3 prefixes on the real
//! servers `scripts/test` starts on loopback.
//!
//! Tests that need a server call [`postgres_url`] or [`s3_objects_url`]; both
//! fail loudly, naming `scripts/test`, when the server is not there, so a
//! backend can never be skipped silently.

use kiln_core::EnvVars;
use sqlx::Executor;

/// The bucket `scripts/test` creates on its S3 server.
pub const S3_BUCKET: &str = "kiln-test";

fn required(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: run the tests with `scripts/test`, which starts PostgreSQL and an S3 server")
    })
}

/// A file of the shared real datasets (`KILN_SHARED_DATA`, default
/// `../shared/data` beside the repository); panics naming the variable when
/// the folder is not there.
pub fn shared_data(name: &str) -> std::path::PathBuf {
    let dir = std::env::var_os(EnvVars::KILN_SHARED_DATA)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data")
        });
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} not found: set {} to the folder of the shared datasets (see ../shared/data/DATASETS.md)",
        path.display(),
        EnvVars::KILN_SHARED_DATA
    );
    path
}

/// A new, empty PostgreSQL database; returns its URL.
pub async fn postgres_url() -> String {
    let server = required(EnvVars::KILN_TEST_POSTGRES_URL);
    sqlx::any::install_default_drivers();
    let name = format!("kiln_{}", uuid::Uuid::now_v7().simple());
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&server)
        .await
        .expect("connect to the test PostgreSQL server");
    conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .expect("create a test database");
    let base = server.rsplit_once('/').map_or(server.as_str(), |(b, _)| b);
    format!("{base}/{name}")
}

/// The S3 endpoint of the test server (also exported for kiln as
/// `KILN_S3_ENDPOINT` by [`s3_env`]).
pub fn s3_endpoint() -> String {
    required(EnvVars::KILN_TEST_S3_ENDPOINT)
}

/// An `s3://` URL under a fresh prefix of the test bucket.
pub fn s3_objects_url() -> String {
    s3_endpoint();
    format!("s3://{S3_BUCKET}/{}", uuid::Uuid::now_v7().simple())
}

/// Environment variables a kiln process needs to reach the test S3 server.
pub fn s3_env() -> Vec<(String, String)> {
    vec![
        (EnvVars::KILN_S3_ENDPOINT.to_string(), s3_endpoint()),
        (
            "AWS_ACCESS_KEY_ID".into(),
            std::env::var("AWS_ACCESS_KEY_ID").unwrap_or_else(|_| "kiln-test".into()),
        ),
        (
            "AWS_SECRET_ACCESS_KEY".into(),
            std::env::var("AWS_SECRET_ACCESS_KEY").unwrap_or_else(|_| "kiln-test".into()),
        ),
        ("AWS_REGION".into(), "us-east-1".into()),
    ]
}
