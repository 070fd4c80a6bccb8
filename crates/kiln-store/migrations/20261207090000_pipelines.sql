-- Pipelines: every run of a pipeline declared in kiln.yaml, and every run
-- of one of its steps (the unit a runner or a worker executes, and the
-- unit of caching: a step whose cache key matches an earlier success reuses
-- its outputs). Times are milliseconds since the epoch.

CREATE TABLE pipeline_runs (
    project_id    TEXT NOT NULL REFERENCES projects (id),
    id            TEXT NOT NULL,
    pipeline      TEXT NOT NULL,
    -- running, succeeded, failed, cancelled.
    status        TEXT NOT NULL,
    -- manual, schedule:<tick>, trigger:<id>, reproduce:<run>.
    cause         TEXT NOT NULL,
    -- JSON: the parameters' values.
    params        TEXT NOT NULL,
    -- JSON: the pipeline as it was declared when it ran.
    definition    TEXT NOT NULL,
    source_commit TEXT,
    source_dirty  BIGINT,
    author        TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    -- Renewed by the process running it; a running run whose heartbeat
    -- stops (that process was killed) is ended by whoever looks next.
    heartbeat_at  BIGINT,
    finished_at   BIGINT,
    error         TEXT,
    PRIMARY KEY (project_id, id)
);
CREATE INDEX pipeline_runs_by_pipeline ON pipeline_runs (project_id, pipeline, created_at);

CREATE TABLE step_runs (
    project_id  TEXT NOT NULL REFERENCES projects (id),
    run_id      TEXT NOT NULL,
    step        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    -- The step's place in the run's order.
    position    BIGINT NOT NULL,
    -- waiting, queued, running, succeeded, cached, failed, skipped, cancelled.
    status      TEXT NOT NULL,
    attempts    BIGINT NOT NULL,
    -- Tries a worker may start before the step fails (its retries, plus
    -- takeovers after a worker died).
    max_attempts BIGINT,
    cache_key   TEXT,
    -- JSON: the step as resolved (templates filled in) and what it read.
    inputs      TEXT NOT NULL,
    -- JSON: output name → value.
    outputs     TEXT,
    -- The run whose result a cached step reused.
    cached_from TEXT,
    -- The object holding the step's log.
    log_object  TEXT,
    error       TEXT,
    -- Who holds it while it runs, until when (workers renew it).
    worker      TEXT,
    lease_until BIGINT,
    -- An approval step's answer: approved or rejected, by whom.
    decision    TEXT,
    decided_by  TEXT,
    queued_at   BIGINT,
    started_at  BIGINT,
    finished_at BIGINT,
    PRIMARY KEY (project_id, run_id, step)
);
CREATE INDEX step_runs_by_key ON step_runs (project_id, cache_key);
CREATE INDEX step_runs_by_status ON step_runs (status, queued_at);

-- A schedule's tick, claimed once by whichever server inserts it first.
CREATE TABLE pipeline_ticks (
    project_id TEXT NOT NULL REFERENCES projects (id),
    pipeline   TEXT NOT NULL,
    tick_at    BIGINT NOT NULL,
    run_id     TEXT,
    PRIMARY KEY (project_id, pipeline, tick_at)
);
