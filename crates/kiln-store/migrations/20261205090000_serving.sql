-- Serving: the prediction log's segments (append-only Parquet objects, one
-- per deployment, model version, role and hour) and ground-truth labels
-- that arrive later, by request id. Times are milliseconds since the epoch.

CREATE TABLE prediction_segments (
    project_id TEXT NOT NULL REFERENCES projects (id),
    deployment TEXT NOT NULL,
    -- The hour the rows fall in, as YYYY-MM-DDTHH (UTC): the partition.
    hour       TEXT NOT NULL,
    model      TEXT NOT NULL,
    version    TEXT NOT NULL,
    -- answer (the model that answered) or shadow.
    role       TEXT NOT NULL,
    object     TEXT NOT NULL,
    rows       BIGINT NOT NULL,
    first_time BIGINT NOT NULL,
    last_time  BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (project_id, deployment, hour, object)
);

CREATE TABLE prediction_feedback (
    project_id  TEXT NOT NULL REFERENCES projects (id),
    deployment  TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    -- The row of the request the label is for (0 for single-row requests).
    row_index   BIGINT NOT NULL,
    -- The label as JSON text: a number or a class name.
    label       TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (project_id, deployment, request_id, row_index)
);
