-- Runs: one execution of a kiln job (for now `train`). The tracking issue
-- extends this with experiments, step-wise metrics and artifacts.
CREATE TABLE runs (
    project_id      TEXT NOT NULL REFERENCES projects (id),
    id              TEXT NOT NULL,
    kind            TEXT NOT NULL,
    status          TEXT NOT NULL,
    dataset         TEXT,
    dataset_version TEXT,
    params_json     TEXT NOT NULL,
    metrics_json    TEXT NOT NULL,
    model_object    TEXT,
    artifacts_json  TEXT NOT NULL DEFAULT '{}',
    author          TEXT NOT NULL,
    started_at      TEXT NOT NULL,
    finished_at     TEXT,
    duration_ms     BIGINT,
    PRIMARY KEY (project_id, id)
);
CREATE INDEX runs_by_time ON runs (project_id, started_at);
