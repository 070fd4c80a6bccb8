-- Monitoring: each monitor's windows of logged traffic with the metrics
-- computed on them; alerts with their state (firing, resolved) and every
-- event of one (fired, resolved, each webhook delivery); retraining
-- triggers that the pipeline runner picks up; and the model server's
-- operational counters, sampled. Times are milliseconds since the epoch.

CREATE TABLE monitor_windows (
    project_id TEXT NOT NULL REFERENCES projects (id),
    monitor    TEXT NOT NULL,
    -- 0, 1, 2… in time order.
    seq        BIGINT NOT NULL,
    deployment TEXT NOT NULL,
    start_time BIGINT NOT NULL,
    end_time   BIGINT NOT NULL,
    -- The last piece of the log the window took: {object, offset} as JSON
    -- (every piece is in detail.pieces).
    end_key    TEXT NOT NULL,
    rows       BIGINT NOT NULL,
    labels     BIGINT NOT NULL,
    -- 1 once the label delay has passed: label metrics no longer change.
    final      BIGINT NOT NULL,
    -- JSON: metric name → value.
    metrics    TEXT NOT NULL,
    -- JSON: the pieces of the log it took, per-column drift and histograms.
    detail     TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (project_id, monitor, seq)
);

CREATE TABLE alerts (
    project_id  TEXT NOT NULL REFERENCES projects (id),
    id          TEXT NOT NULL,
    monitor     TEXT NOT NULL,
    rule        TEXT NOT NULL,
    severity    TEXT NOT NULL,
    -- firing or resolved; at most one firing alert per monitor and rule.
    state       TEXT NOT NULL,
    started_at  BIGINT NOT NULL,
    resolved_at BIGINT,
    -- The window that last breached (or cleared) the rule.
    window_seq  BIGINT NOT NULL,
    -- JSON: metric, value, condition, message.
    detail      TEXT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (project_id, id)
);
CREATE INDEX alerts_by_rule ON alerts (project_id, monitor, rule, state);
-- Two monitor runs at once cannot both fire the same rule.
CREATE UNIQUE INDEX alerts_one_firing ON alerts (project_id, monitor, rule)
    WHERE state = 'firing';

CREATE TABLE alert_events (
    project_id TEXT NOT NULL REFERENCES projects (id),
    alert_id   TEXT NOT NULL,
    at         BIGINT NOT NULL,
    -- firing, resolved, webhook, retrain.
    kind       TEXT NOT NULL,
    -- For webhooks: delivered or failed; for triggers: the trigger id.
    outcome    TEXT NOT NULL,
    detail     TEXT NOT NULL
);
CREATE INDEX alert_events_by_alert ON alert_events (project_id, alert_id, at);

CREATE TABLE pipeline_triggers (
    project_id TEXT NOT NULL REFERENCES projects (id),
    id         TEXT NOT NULL,
    pipeline   TEXT NOT NULL,
    -- What asked for it: alert:<id>, manual.
    cause      TEXT NOT NULL,
    reason     TEXT NOT NULL,
    -- pending until a runner takes it.
    status     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    taken_at   BIGINT,
    PRIMARY KEY (project_id, id)
);

CREATE TABLE serving_samples (
    project_id  TEXT NOT NULL REFERENCES projects (id),
    deployment  TEXT NOT NULL,
    -- One serving process: counters below are since it started.
    instance    TEXT NOT NULL,
    at          BIGINT NOT NULL,
    requests    BIGINT NOT NULL,
    errors      BIGINT NOT NULL,
    cpu_ms      BIGINT NOT NULL,
    rss_bytes   BIGINT NOT NULL,
    PRIMARY KEY (project_id, deployment, instance, at)
);
