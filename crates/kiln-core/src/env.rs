/// Every environment variable kiln reads, in one place (uv: `uv-static`).
pub struct EnvVars;

impl EnvVars {
    /// Metadata store URL: `sqlite://PATH` or `postgres://…`. Same as `--store`.
    pub const KILN_STORE: &'static str = "KILN_STORE";
    /// Object store URL: `file://PATH` or `s3://BUCKET/PREFIX`. Same as `--objects`.
    pub const KILN_OBJECTS: &'static str = "KILN_OBJECTS";
    /// The project's name where no `kiln.yaml` says it.
    pub const KILN_PROJECT: &'static str = "KILN_PROJECT";
    /// Endpoint of an S3-compatible server (overrides `AWS_ENDPOINT_URL`).
    pub const KILN_S3_ENDPOINT: &'static str = "KILN_S3_ENDPOINT";
    /// Name recorded as the actor in the audit log (defaults to `USER`).
    pub const KILN_USER: &'static str = "KILN_USER";
    /// Log filter, as `RUST_LOG` (e.g. `kiln=debug`).
    pub const KILN_LOG: &'static str = "KILN_LOG";
    /// PostgreSQL server URL the store tests create throw-away databases on.
    pub const KILN_TEST_POSTGRES_URL: &'static str = "KILN_TEST_POSTGRES_URL";
    /// S3-compatible endpoint the object store tests use (bucket `kiln-test`).
    pub const KILN_TEST_S3_ENDPOINT: &'static str = "KILN_TEST_S3_ENDPOINT";
    /// The folder of shared real datasets tests and benchmarks read
    /// (default: `../shared/data` beside the repository).
    pub const KILN_SHARED_DATA: &'static str = "KILN_SHARED_DATA";
    /// Standard: disables colour when set.
    /// Where to send OpenLineage run events: a file (`file:///path.jsonl` or
    /// a path; one JSON event per line) or an `http(s)://` endpoint
    /// (events are POSTed as JSON, e.g. to Marquez's `/api/v1/lineage`).
    pub const KILN_OPENLINEAGE_URL: &'static str = "KILN_OPENLINEAGE_URL";
    /// How long a running pipeline run may go without its process's
    /// heartbeat before it is ended as failed (default `60s`).
    pub const KILN_PIPELINE_STALE_AFTER: &'static str = "KILN_PIPELINE_STALE_AFTER";
    /// The interpreter with `mlflow` installed that the interoperability
    /// tests drive (`scripts/test` sets it).
    pub const KILN_TEST_MLFLOW_PYTHON: &'static str = "KILN_TEST_MLFLOW_PYTHON";
    pub const NO_COLOR: &'static str = "NO_COLOR";
}
