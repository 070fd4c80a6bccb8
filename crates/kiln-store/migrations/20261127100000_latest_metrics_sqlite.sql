-- latest_metrics follows run_metrics: each inserted point replaces the
-- latest of its key when it is newer (greater step, then timestamp, then
-- value; a number beats NaN). A trigger, so that logging a point is one
-- statement. SQLite's spelling; PostgreSQL's is the _postgres file.
CREATE TRIGGER run_metrics_latest AFTER INSERT ON run_metrics
BEGIN
    INSERT INTO latest_metrics (run_id, key, step, timestamp, value, is_nan)
    VALUES (NEW.run_id, NEW.key, NEW.step, NEW.timestamp,
            CASE WHEN NEW.is_nan = 1 THEN NULL ELSE NEW.value END, NEW.is_nan)
    ON CONFLICT (run_id, key) DO UPDATE SET step = excluded.step, timestamp = excluded.timestamp,
        value = excluded.value, is_nan = excluded.is_nan
    WHERE excluded.step > latest_metrics.step
       OR (excluded.step = latest_metrics.step AND excluded.timestamp > latest_metrics.timestamp)
       OR (excluded.step = latest_metrics.step AND excluded.timestamp = latest_metrics.timestamp
           AND (latest_metrics.is_nan = 1 OR (excluded.is_nan = 0 AND excluded.value >= latest_metrics.value)));
END;
