"""A data scientist's session with the official MLflow client, end to end.

Run against any MLflow-compatible tracking server:

    MLFLOW_TRACKING_URI=http://127.0.0.1:5000 python tests/mlflow/flow.py

It uses only the public client (`import mlflow`, `MlflowClient`): an
experiment with a tag, runs with params (one near the 6000-character limit),
metrics over steps (NaN and +/-inf included), a log_batch, tags, artifacts
(files, a directory, text, a dict), a dataset input, a scikit-learn model
logged and registered (MLflow 3 logged models), aliases, the deprecated stage
transition, run search with filter and order, metric history, artifact
download, loading the model back by alias, registry search, delete/restore,
and the error codes of three mistakes. Every check is a plain assert.

Prints ONE JSON line on stdout with the facts the Rust test cross-checks
through kiln's CLI. Non-finite metric values in "metric_history" are written
as the strings "NaN", "Infinity", "-Infinity" (the protobuf JSON spelling) so
the line stays valid JSON; "metrics" holds only finite latest values.
Names carry a random hex suffix, so reruns against one server do not clash.
"""

import json
import math
import os
import secrets
import sys
import tempfile
import time
import warnings

# concurrent_writes.py beside this file shadows the standard library's `concurrent`
# package (mlflow imports concurrent.futures): drop this folder from the path.
_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]

# MLflow prints "View run … at: URL" to stdout when a run ends; stdout is
# kept for the one JSON line.
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
# The client retries 429/5xx with exponential back-off (7 times by default),
# which turns a server error into a long hang: fail fast instead.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "120")

import numpy as np
import pandas as pd

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag, ViewType
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from sklearn.linear_model import LogisticRegression

# Only the stdout JSON line is machine-read; keep library chatter on stderr
# and quiet the deprecation warning of transition_model_version_stage.
warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=UserWarning)


def log(msg):
    print(f"flow.py: {msg}", file=sys.stderr, flush=True)


def expect_error(code, fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except MlflowException as e:
        assert e.error_code == code, f"{fn.__name__}: expected {code}, got {e.error_code}: {e}"
        return e
    raise AssertionError(f"{fn.__name__}{args}: expected MlflowException {code}, nothing raised")


def same_float(a, b):
    """Equal, NaN matching NaN. MLflow's SQL store keeps +/-inf as +/-DBL_MAX
    (sys.float_info.max), so a stored infinity may come back as either."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(b):
        return a == b or a == math.copysign(sys.float_info.max, b)
    return a == b


def json_float(v):
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    return v


def make_data(n=200, seed=7):
    """A 200-row binary classification frame, generated (no files needed)."""
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=n)
    x2 = rng.normal(size=n)
    x3 = rng.uniform(-1, 1, size=n)
    logit = 2.0 * x1 - 1.5 * x2 + 0.5 * x3
    y = (logit + rng.normal(scale=0.5, size=n) > 0).astype(np.int64)
    return pd.DataFrame({"x1": x1, "x2": x2, "x3": x3, "y": y})


def walk_artifacts(client, run_id, path=None):
    out = []
    for f in client.list_artifacts(run_id, path):
        if f.is_dir:
            out.extend(walk_artifacts(client, run_id, f.path))
        else:
            out.append(f.path)
    return out


def main():
    uri = os.environ["MLFLOW_TRACKING_URI"]
    mlflow.set_tracking_uri(uri)
    client = MlflowClient()
    suffix = secrets.token_hex(4)
    exp_name = f"flow-{suffix}"
    model_name = f"flow-model-{suffix}"
    run_name = f"baseline-{suffix}"
    t0 = time.time()

    # --- Experiment ---------------------------------------------------------
    exp_id = mlflow.create_experiment(exp_name, tags={"team": "kiln", "purpose": "interop"})
    assert isinstance(exp_id, str) and exp_id, f"experiment id should be a non-empty string: {exp_id!r}"
    exp = client.get_experiment(exp_id)
    assert exp.name == exp_name, f"experiment name: {exp.name}"
    assert exp.tags.get("team") == "kiln", f"experiment tags: {exp.tags}"
    assert exp.lifecycle_stage == "active", exp.lifecycle_stage
    by_name = mlflow.get_experiment_by_name(exp_name)
    assert by_name is not None and by_name.experiment_id == exp_id, f"get by name: {by_name}"
    assert mlflow.get_experiment_by_name(f"no-such-{suffix}") is None, "unknown experiment name should give None"
    client.set_experiment_tag(exp_id, "stage", "dev")
    assert client.get_experiment(exp_id).tags.get("stage") == "dev", "set_experiment_tag"
    mlflow.set_experiment(experiment_id=exp_id)
    log(f"experiment {exp_id} ({exp_name})")

    df = make_data()
    X, y = df[["x1", "x2", "x3"]], df["y"]
    long_value = "x" * 5990  # MLflow's limit for a param value is 6000 characters
    weird = [1.0, float("nan"), float("inf"), float("-inf"), 2.5]
    tmp = tempfile.mkdtemp(prefix="kiln-flow-")

    # --- Run 1: the main run --------------------------------------------------
    with mlflow.start_run(run_name=run_name) as run:
        run_id = run.info.run_id
        assert run.info.run_name == run_name, f"run name: {run.info.run_name}"
        assert run.info.experiment_id == exp_id, run.info.experiment_id
        mlflow.log_param("C", "1.0")
        mlflow.log_params({"solver": "lbfgs", "max_iter": 200, "long": long_value})
        # Re-logging the same value is allowed.
        mlflow.log_param("solver", "lbfgs")

        for step in range(5):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        for step, v in enumerate(weird):
            mlflow.log_metric("weird", v, step=step)
        mlflow.log_metrics({"precision": 0.81, "recall": 0.77}, step=1)

        now = int(time.time() * 1000)
        client.log_batch(
            run_id,
            metrics=[Metric("batch_m", float(i) * 0.5, now + i, i) for i in range(10)],
            params=[Param("batch_p", "b1"), Param("penalty", "l2")],
            tags=[RunTag("batch_tag", "yes")],
        )
        mlflow.set_tag("owner", "data-scientist")
        mlflow.set_tags({"dataset": "synthetic", "note": "unicode ✓ ok"})

        # Artifacts: one file at the root, one in a folder, a directory, text, dict.
        f1 = os.path.join(tmp, "summary.txt")
        with open(f1, "wb") as fh:
            fh.write(b"hello from kiln flow\n" + bytes(range(256)))
        mlflow.log_artifact(f1)
        mlflow.log_artifact(f1, artifact_path="reports")
        d = os.path.join(tmp, "plots")
        os.makedirs(os.path.join(d, "sub"))
        with open(os.path.join(d, "a.csv"), "w") as fh:
            fh.write("a,b\n1,2\n")
        with open(os.path.join(d, "sub", "b.json"), "w") as fh:
            fh.write('{"b": 1}\n')
        mlflow.log_artifacts(d, artifact_path="plots")
        mlflow.log_text("some notes\nline 2\n", "notes/notes.txt")
        mlflow.log_dict({"C": 1.0, "features": ["x1", "x2", "x3"]}, "config.json")

        dataset = mlflow.data.from_pandas(df, name="synthetic-200", targets="y")
        mlflow.log_input(dataset, context="train")

        model = LogisticRegression(C=1.0, max_iter=200).fit(X, y)
        acc = float((model.predict(X) == y).mean())
        mlflow.log_metric("acc", acc)
        signature = infer_signature(X, model.predict(X))
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            registered_model_name=model_name,
            input_example=X.head(5),
            signature=signature,
        )
    log(f"run 1 {run_id} acc={acc:.3f} model_id={info.model_id} ({time.time() - t0:.1f}s)")
    assert acc > 0.7, f"the model should learn the synthetic data: acc={acc}"
    assert info.registered_model_version is not None, "log_model should register a version"
    model_version = str(info.registered_model_version)

    # --- Runs 2-4: other params and metrics -----------------------------------
    with mlflow.start_run(run_name=f"small-C-{suffix}") as r2:
        mlflow.log_params({"C": "0.1", "solver": "lbfgs"})
        model2 = LogisticRegression(C=0.1, max_iter=200).fit(X, y)
        acc2 = float((model2.predict(X) == y).mean())
        mlflow.log_metric("acc", acc2)
        mlflow.log_metric("loss", 0.9, step=0)
    with mlflow.start_run(run_name=f"mid-{suffix}") as r3:
        mlflow.log_param("C", "1.0")
        mlflow.log_metric("acc", 0.6)
    with mlflow.start_run(run_name=f"poor-{suffix}") as r4:
        mlflow.log_param("C", "1.0")
        mlflow.log_metric("acc", 0.4)
    run_ids = [run_id, r2.info.run_id, r3.info.run_id, r4.info.run_id]

    # --- Reading the main run back ------------------------------------------------
    got = client.get_run(run_id)
    assert got.info.status == "FINISHED", f"status: {got.info.status}"
    assert got.info.end_time and got.info.end_time >= got.info.start_time, "end_time"
    assert got.info.run_name == run_name, got.info.run_name
    p = got.data.params
    assert p["C"] == "1.0" and p["solver"] == "lbfgs" and p["max_iter"] == "200", p
    assert p["long"] == long_value, f"long param came back with {len(p['long'])} chars"
    assert p["batch_p"] == "b1" and p["penalty"] == "l2", p
    m = got.data.metrics
    assert m["loss"] == 0.2, f"latest loss: {m['loss']}"
    assert m["weird"] == 2.5, f"latest weird: {m['weird']}"
    assert m["batch_m"] == 4.5 and m["precision"] == 0.81 and m["recall"] == 0.77, m
    assert abs(m["acc"] - acc) < 1e-12, m["acc"]
    t = got.data.tags
    assert t["owner"] == "data-scientist" and t["batch_tag"] == "yes", t
    assert t["note"] == "unicode ✓ ok", t["note"]
    assert t.get("mlflow.runName") == run_name, f"mlflow.runName tag: {t.get('mlflow.runName')}"
    ins = got.inputs.dataset_inputs
    assert len(ins) == 1, f"dataset inputs: {ins}"
    assert ins[0].dataset.name == "synthetic-200" and ins[0].dataset.digest == dataset.digest, ins[0].dataset
    assert any(tg.key == "mlflow.data.context" and tg.value == "train" for tg in ins[0].tags), ins[0].tags

    # Metric history: every point, in step order, NaN/inf kept.
    hist = {}
    for key in sorted(m):
        h = sorted(client.get_metric_history(run_id, key), key=lambda x: (x.step, x.timestamp))
        hist[key] = h
    assert [x.step for x in hist["loss"]] == [0, 1, 2, 3, 4], hist["loss"]
    assert [x.value for x in hist["loss"]] == [1.0, 0.5, 1.0 / 3, 0.25, 0.2], hist["loss"]
    wv = [x.value for x in hist["weird"]]
    assert len(wv) == len(weird) and all(same_float(a, b) for a, b in zip(wv, weird)), f"weird history: {wv}"
    assert len(hist["batch_m"]) == 10 and [x.value for x in hist["batch_m"]] == [i * 0.5 for i in range(10)], hist["batch_m"]
    assert [x.timestamp for x in hist["batch_m"]] == [now + i for i in range(10)], "batch timestamps"

    # Artifacts: listing and byte-exact download.
    paths = walk_artifacts(client, run_id)
    for want in ["summary.txt", "reports/summary.txt", "plots/a.csv", "plots/sub/b.json",
                 "notes/notes.txt", "config.json"]:
        assert want in paths, f"artifact {want} missing from {paths}"
    top = {f.path: f for f in client.list_artifacts(run_id)}
    assert top["plots"].is_dir and not top["summary.txt"].is_dir, top
    assert top["summary.txt"].file_size == 21 + 256, f"file_size: {top['summary.txt'].file_size}"
    dl = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="reports/summary.txt",
                                             dst_path=os.path.join(tmp, "dl1"))
    with open(dl, "rb") as fh, open(f1, "rb") as orig:
        assert fh.read() == orig.read(), "downloaded bytes differ"
    dl_dir = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="plots",
                                                 dst_path=os.path.join(tmp, "dl2"))
    with open(os.path.join(dl_dir, "sub", "b.json")) as fh:
        assert fh.read() == '{"b": 1}\n', "downloaded directory content"
    assert mlflow.artifacts.load_text(f"runs:/{run_id}/notes/notes.txt") == "some notes\nline 2\n", "load_text"
    assert mlflow.artifacts.load_dict(f"runs:/{run_id}/config.json")["features"] == ["x1", "x2", "x3"], "load_dict"

    # --- Search ------------------------------------------------------------------
    found = client.search_runs([exp_id], filter_string="metrics.acc > 0.5 and params.C = '1.0'",
                               order_by=["metrics.acc DESC"])
    got_ids = [r.info.run_id for r in found]
    assert got_ids == [run_id, r3.info.run_id], f"search order/count: {got_ids} vs {[run_id, r3.info.run_id]}"
    asc = client.search_runs([exp_id], order_by=["metrics.acc ASC"])
    accs = [r.data.metrics["acc"] for r in asc]
    assert accs == sorted(accs) and len(accs) == 4, f"ascending acc: {accs}"
    page1 = client.search_runs([exp_id], max_results=2, order_by=["attributes.start_time ASC"])
    assert len(page1) == 2 and page1.token, f"first page: {len(page1)} token={page1.token!r}"
    page2 = client.search_runs([exp_id], max_results=2, order_by=["attributes.start_time ASC"],
                               page_token=page1.token)
    paged = [r.info.run_id for r in page1] + [r.info.run_id for r in page2]
    assert paged == run_ids, f"paging: {paged}"
    by_name = client.search_runs([exp_id], filter_string=f"attributes.run_name = '{run_name}'")
    assert [r.info.run_id for r in by_name] == [run_id], "search by run_name"
    by_tag = client.search_runs([exp_id], filter_string="tags.owner = 'data-scientist'")
    assert [r.info.run_id for r in by_tag] == [run_id], "search by tag"
    frame = mlflow.search_runs(experiment_ids=[exp_id], order_by=["metrics.acc DESC"])
    assert len(frame) == 4 and frame.iloc[0]["run_id"] == run_id, f"search_runs frame:\n{frame}"
    assert "params.C" in frame.columns and "metrics.acc" in frame.columns, list(frame.columns)
    exps = client.search_experiments(filter_string=f"name = '{exp_name}'")
    assert [e.experiment_id for e in exps] == [exp_id], f"search_experiments: {exps}"

    # --- Model registry ------------------------------------------------------------
    client.set_registered_model_alias(model_name, "champion", model_version)
    mv = client.get_model_version_by_alias(model_name, "champion")
    assert str(mv.version) == model_version, f"alias -> version {mv.version}"
    assert mv.run_id == run_id, f"model version run_id {mv.run_id}"
    rm = client.get_registered_model(model_name)
    assert rm.aliases.get("champion") == model_version or rm.aliases.get("champion") == int(model_version), rm.aliases
    moved = client.transition_model_version_stage(model_name, model_version, "Staging")
    assert moved.current_stage == "Staging", f"stage: {moved.current_stage}"
    assert client.get_model_version(model_name, model_version).current_stage == "Staging", "stage kept"
    latest = client.get_latest_versions(model_name, stages=["Staging"])
    assert [str(v.version) for v in latest] == [model_version], f"latest versions: {latest}"
    client.update_model_version(model_name, model_version, description="first")
    assert client.get_model_version(model_name, model_version).description == "first", "description"
    client.set_model_version_tag(model_name, model_version, "validated", "true")
    client.set_registered_model_tag(model_name, "task", "classification")
    rms = client.search_registered_models(filter_string=f"name = '{model_name}'")
    assert [r.name for r in rms] == [model_name], f"search_registered_models: {rms}"
    assert rms[0].tags.get("task") == "classification", rms[0].tags
    mvs = client.search_model_versions(f"name='{model_name}'")
    assert [str(v.version) for v in mvs] == [model_version], f"search_model_versions: {mvs}"
    assert mvs[0].tags.get("validated") == "true", mvs[0].tags

    loaded = mlflow.sklearn.load_model(f"models:/{model_name}@champion")
    assert (loaded.predict(X) == model.predict(X)).all(), "loaded model predicts differently"
    pyf = mlflow.pyfunc.load_model(f"models:/{model_name}/{model_version}")
    assert (np.asarray(pyf.predict(X.head(10))) == model.predict(X.head(10))).all(), "pyfunc predicts differently"

    logged_model_id = info.model_id
    if logged_model_id:
        lm = mlflow.get_logged_model(logged_model_id)
        assert lm.model_id == logged_model_id and lm.name == "model", f"logged model: {lm}"
        assert lm.source_run_id == run_id, f"logged model source run: {lm.source_run_id}"
        assert str(lm.status).endswith("READY"), f"logged model status: {lm.status}"
    log(f"registry done ({time.time() - t0:.1f}s)")

    # --- Delete and restore ------------------------------------------------------
    client.delete_run(r4.info.run_id)
    assert client.get_run(r4.info.run_id).info.lifecycle_stage == "deleted", "run deleted"
    active = client.search_runs([exp_id])
    assert r4.info.run_id not in [r.info.run_id for r in active], "deleted run still listed as active"
    deleted = client.search_runs([exp_id], run_view_type=ViewType.DELETED_ONLY)
    assert [r.info.run_id for r in deleted] == [r4.info.run_id], "deleted-only view"
    client.restore_run(r4.info.run_id)
    assert client.get_run(r4.info.run_id).info.lifecycle_stage == "active", "run restored"

    tmp_exp = client.create_experiment(f"flow-tmp-{suffix}")
    client.delete_experiment(tmp_exp)
    assert client.get_experiment(tmp_exp).lifecycle_stage == "deleted", "experiment deleted"
    client.restore_experiment(tmp_exp)
    assert client.get_experiment(tmp_exp).lifecycle_stage == "active", "experiment restored"
    client.rename_experiment(tmp_exp, f"flow-tmp2-{suffix}")
    assert client.get_experiment(tmp_exp).name == f"flow-tmp2-{suffix}", "rename"
    client.delete_experiment(tmp_exp)

    # --- Mistakes and their error codes -----------------------------------------------
    expect_error("RESOURCE_DOES_NOT_EXIST", client.get_run, "0" * 32)
    expect_error("RESOURCE_DOES_NOT_EXIST", client.get_experiment, "987654321")
    expect_error("RESOURCE_ALREADY_EXISTS", client.create_experiment, exp_name)
    expect_error("INVALID_PARAMETER_VALUE", client.log_param, run_id, "C", "2.0")
    expect_error("RESOURCE_DOES_NOT_EXIST", client.get_registered_model, f"no-such-model-{suffix}")
    expect_error("INVALID_PARAMETER_VALUE", client.search_runs, [exp_id], filter_string="metrics.acc >>> 1")

    # --- The facts the Rust side checks through kiln's CLI --------------------
    facts = {
        "experiment_id": exp_id,
        "experiment_name": exp_name,
        "run_ids": run_ids,
        "run_name": run_name,
        "params": {k: v for k, v in sorted(p.items()) if len(v) <= 250},
        "long_param": {"key": "long", "length": len(long_value)},
        "metrics": {k: v for k, v in sorted(m.items()) if math.isfinite(v)},
        "metric_history": {k: [[x.step, json_float(x.value)] for x in h] for k, h in sorted(hist.items())},
        "tags": {k: v for k, v in sorted(t.items()) if not k.startswith("mlflow.")},
        "artifact_paths": sorted(paths),
        "model_name": model_name,
        "model_version": model_version,
        "alias": "champion",
        "logged_model_id": logged_model_id,
        "seconds": round(time.time() - t0, 2),
    }
    print(json.dumps(facts, sort_keys=True, allow_nan=False), flush=True)


if __name__ == "__main__":
    main()
