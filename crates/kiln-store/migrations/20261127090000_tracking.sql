-- Tracking and registry, shaped after MLflow's entities so its REST API maps
-- onto them one to one. Times in these tables are milliseconds since the
-- epoch (MLflow's unit), as BIGINT. Child rows of runs are keyed by the run
-- id alone: run ids are 128-bit random, unique across projects.

CREATE TABLE experiments (
    project_id        TEXT NOT NULL REFERENCES projects (id),
    id                TEXT NOT NULL,
    name              TEXT NOT NULL,
    artifact_location TEXT NOT NULL,
    lifecycle_stage   TEXT NOT NULL DEFAULT 'active',
    creation_time     BIGINT NOT NULL,
    last_update_time  BIGINT NOT NULL,
    PRIMARY KEY (project_id, id),
    UNIQUE (project_id, name)
);

CREATE TABLE experiment_tags (
    project_id    TEXT NOT NULL,
    experiment_id TEXT NOT NULL,
    key           TEXT NOT NULL,
    value         TEXT NOT NULL,
    PRIMARY KEY (project_id, experiment_id, key)
);

-- Runs made before this migration belong to the default experiment "0".
ALTER TABLE runs ADD COLUMN experiment_id TEXT NOT NULL DEFAULT '0';
ALTER TABLE runs ADD COLUMN name TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN lifecycle_stage TEXT NOT NULL DEFAULT 'active';
ALTER TABLE runs ADD COLUMN start_time BIGINT;
ALTER TABLE runs ADD COLUMN end_time BIGINT;
ALTER TABLE runs ADD COLUMN artifact_uri TEXT;
ALTER TABLE runs ADD COLUMN source_commit TEXT;
ALTER TABLE runs ADD COLUMN source_dirty BIGINT;
ALTER TABLE runs ADD COLUMN command TEXT;
ALTER TABLE runs ADD COLUMN environment_json TEXT;
ALTER TABLE runs ADD COLUMN deleted_time BIGINT;
-- Statuses are MLflow's: RUNNING, SCHEDULED, FINISHED, FAILED, KILLED.
UPDATE runs SET status = UPPER(status);
CREATE INDEX runs_by_experiment ON runs (project_id, experiment_id, start_time);

CREATE TABLE run_params (
    run_id TEXT NOT NULL,
    key    TEXT NOT NULL,
    value  TEXT NOT NULL,
    PRIMARY KEY (run_id, key)
);

CREATE TABLE run_tags (
    run_id TEXT NOT NULL,
    key    TEXT NOT NULL,
    value  TEXT NOT NULL,
    PRIMARY KEY (run_id, key)
);

-- Every point logged, once: a point sent again (MLflow's client re-sends a
-- run's points when it logs a model, to link them to it) adds no row. NaN is
-- kept as value 0 with is_nan 1 (SQLite has no NaN); infinities as they are.
CREATE TABLE run_metrics (
    run_id    TEXT NOT NULL,
    key       TEXT NOT NULL,
    step      BIGINT NOT NULL,
    timestamp BIGINT NOT NULL,
    value     DOUBLE PRECISION,
    is_nan    BIGINT NOT NULL DEFAULT 0,
    model_id  TEXT
);
CREATE UNIQUE INDEX run_metrics_points ON run_metrics (run_id, key, step, timestamp, value, is_nan);
CREATE INDEX run_metrics_by_model ON run_metrics (model_id);

-- The latest point of each metric of a run (greatest step, then timestamp,
-- then value): what searches filter and order on. Here NaN is value NULL.
CREATE TABLE latest_metrics (
    run_id    TEXT NOT NULL,
    key       TEXT NOT NULL,
    step      BIGINT NOT NULL,
    timestamp BIGINT NOT NULL,
    value     DOUBLE PRECISION,
    is_nan    BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, key)
);
CREATE INDEX latest_metrics_by_value ON latest_metrics (key, value);

-- Datasets a run read, with their role (train, validation, test, …). A kiln
-- dataset version has source_type `kiln` and source `NAME@ID`.
CREATE TABLE run_inputs (
    run_id       TEXT NOT NULL,
    position     BIGINT NOT NULL,
    name         TEXT NOT NULL,
    digest       TEXT NOT NULL,
    source_type  TEXT NOT NULL,
    source       TEXT NOT NULL,
    schema_json  TEXT,
    profile_json TEXT,
    role         TEXT,
    tags_json    TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (run_id, name, digest)
);

-- Files under the artifact root (`mlflow-artifacts:/`), each a
-- content-addressed object. Paths look like `EXPERIMENT/RUN/artifacts/a/b.txt`.
CREATE TABLE artifacts (
    project_id TEXT NOT NULL REFERENCES projects (id),
    path       TEXT NOT NULL,
    object     TEXT NOT NULL,
    size       BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (project_id, path)
);
CREATE INDEX artifacts_by_object ON artifacts (object);

-- MLflow 3 logged models: a model's files and metadata, before or without
-- registration.
CREATE TABLE logged_models (
    project_id        TEXT NOT NULL REFERENCES projects (id),
    id                TEXT NOT NULL,
    experiment_id     TEXT NOT NULL,
    name              TEXT NOT NULL,
    artifact_location TEXT NOT NULL,
    creation_time     BIGINT NOT NULL,
    last_updated_time BIGINT NOT NULL,
    source_run_id     TEXT,
    status            TEXT NOT NULL,
    status_message    TEXT,
    model_type        TEXT,
    params_json       TEXT NOT NULL DEFAULT '{}',
    tags_json         TEXT NOT NULL DEFAULT '{}',
    lifecycle_stage   TEXT NOT NULL DEFAULT 'active',
    PRIMARY KEY (project_id, id)
);

CREATE TABLE registered_models (
    project_id        TEXT NOT NULL REFERENCES projects (id),
    name              TEXT NOT NULL,
    description       TEXT NOT NULL DEFAULT '',
    creation_time     BIGINT NOT NULL,
    last_updated_time BIGINT NOT NULL,
    PRIMARY KEY (project_id, name)
);

CREATE TABLE registered_model_tags (
    project_id TEXT NOT NULL,
    name       TEXT NOT NULL,
    key        TEXT NOT NULL,
    value      TEXT NOT NULL,
    PRIMARY KEY (project_id, name, key)
);

-- A model version: a registered model's numbered, immutable artifact. Its
-- files are either one kiln object (`object`, with `format` kiln, onnx,
-- lightgbm or xgboost) or the artifacts under `source` (an MLflow model).
CREATE TABLE model_versions (
    project_id        TEXT NOT NULL,
    name              TEXT NOT NULL,
    version           BIGINT NOT NULL,
    creation_time     BIGINT NOT NULL,
    last_updated_time BIGINT NOT NULL,
    description       TEXT NOT NULL DEFAULT '',
    user_id           TEXT NOT NULL,
    current_stage     TEXT NOT NULL DEFAULT 'None',
    source            TEXT NOT NULL,
    run_id            TEXT,
    run_link          TEXT,
    model_id          TEXT,
    status            TEXT NOT NULL DEFAULT 'READY',
    object            TEXT,
    format            TEXT NOT NULL,
    signature_json    TEXT,
    metrics_json      TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (project_id, name, version),
    FOREIGN KEY (project_id, name) REFERENCES registered_models (project_id, name)
);

CREATE TABLE model_version_tags (
    project_id TEXT NOT NULL,
    name       TEXT NOT NULL,
    version    BIGINT NOT NULL,
    key        TEXT NOT NULL,
    value      TEXT NOT NULL,
    PRIMARY KEY (project_id, name, version, key)
);

CREATE TABLE model_aliases (
    project_id TEXT NOT NULL,
    name       TEXT NOT NULL,
    alias      TEXT NOT NULL,
    version    BIGINT NOT NULL,
    PRIMARY KEY (project_id, name, alias)
);
