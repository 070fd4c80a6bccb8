"""Real clients against a running `kiln serve`: the Triton client
(tritonclient[http], Open Inference Protocol v2, binary and JSON tensors) and
`requests` posting every MLflow /invocations format. Each answer is compared
with the predictions `kiln predict` wrote for the same rows.

    python clients.py URL DEPLOYMENT ROWS.csv EXPECTED.csv

ROWS.csv holds the input rows; EXPECTED.csv is `kiln predict`'s output
(column `prediction`). Prints one JSON line of what it checked; exits non-zero
on the first difference.
"""

import json
import sys
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import requests
import tritonclient.http as httpclient

url, deployment, rows_path, expected_path = sys.argv[1:5]
rows = pd.read_csv(rows_path)
expected = pd.read_csv(expected_path)["prediction"].to_numpy()
checked = []


def same(got, what):
    got = np.asarray(got, dtype=np.float64)
    if got.shape != expected.shape or not np.allclose(got, expected, rtol=1e-9, atol=1e-9):
        sys.exit(f"{what}: served {got[:5]}..., kiln predict {expected[:5]}...")
    checked.append(what)


# --- MLflow's scoring protocol through requests -----------------------------
records = json.loads(rows.to_json(orient="records"))
split = json.loads(rows.to_json(orient="split", index=False))
for fmt, body in [
    ("dataframe_split", {"dataframe_split": split}),
    ("dataframe_records", {"dataframe_records": records}),
    ("instances", {"instances": records}),
    ("inputs", {"inputs": {c: rows[c].tolist() for c in rows.columns}}),
]:
    r = requests.post(f"{url}/invocations", json=body, timeout=30)
    r.raise_for_status()
    assert r.headers.get("x-request-id"), "no request id"
    same(r.json()["predictions"], f"requests {fmt}")
r = requests.post(
    f"{url}/invocations",
    data=rows.to_csv(index=False),
    headers={"Content-Type": "text/csv"},
    timeout=30,
)
r.raise_for_status()
same(r.json()["predictions"], "requests csv")
bad = requests.post(f"{url}/invocations", json={"dataframe_records": [{"nope": 1}]}, timeout=30)
assert bad.status_code == 400 and bad.json()["error_code"] == "BAD_REQUEST", bad.text

# --- Open Inference Protocol v2 through Triton's client ----------------------
client = httpclient.InferenceServerClient(url=urlparse(url).netloc)
assert client.is_server_live() and client.is_server_ready()
assert client.is_model_ready(deployment)
meta = client.get_model_metadata(deployment)
types = {i["name"]: i["datatype"] for i in meta["inputs"]}
assert set(types) == set(rows.columns), (types, list(rows.columns))


def tensors(binary):
    out = []
    for name, datatype in types.items():
        col = rows[name]
        if datatype == "BYTES":
            data = col.astype(str).to_numpy(dtype=np.object_)
        elif datatype == "INT64":
            data = col.to_numpy(dtype=np.int64)
        elif datatype == "BOOL":
            data = col.to_numpy(dtype=np.bool_)
        else:
            data = col.to_numpy(dtype=np.float64)
        t = httpclient.InferInput(name, [len(rows)], datatype)
        t.set_data_from_numpy(data, binary_data=binary)
        out.append(t)
    return out


for binary in (False, True):
    result = client.infer(
        deployment,
        tensors(binary),
        outputs=[httpclient.InferRequestedOutput("prediction", binary_data=binary)],
        request_id=f"triton-{binary}",
    )
    got = result.as_numpy("prediction")
    same(got.astype(np.float64), f"tritonclient {'binary' if binary else 'json'} tensors")
    assert result.get_response()["id"] == f"triton-{binary}"

print(json.dumps({"checked": checked, "rows": len(rows)}))
