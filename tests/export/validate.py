"""Checks the files `kiln export` writes, offline, for crates/kiln-cli/tests/export.rs.

    validate.py k8s VERSION FILE...   every document of every FILE against the
                                      Kubernetes VERSION schemas, strict (no
                                      unknown fields)
    validate.py ci SCHEMA FILE        FILE against a vendored CI schema:
                                      github-workflows or gitlab-ci
    validate.py json FILE             prints FILE's YAML documents as a JSON list
    validate.py dockerfile FILE       prints FILE's instructions as BuildKit's own
                                      parser reads them, as a JSON list

Exits 1 naming each document that failed, 0 otherwise.
"""

import json
import subprocess
import sys

import yaml


def documents(path):
    with open(path, encoding="utf-8") as f:
        # A `---` at the very end gives a None document; there is none to check.
        return [d for d in yaml.safe_load_all(f) if d is not None]


def k8s(version, paths):
    import kubernetes_validate

    failed = 0
    for path in paths:
        for i, doc in enumerate(documents(path)):
            what = f"{path}#{i} {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
            try:
                checked = kubernetes_validate.validate(doc, version, strict=True)
                print(f"ok {what} (Kubernetes {checked})")
            except kubernetes_validate.ValidationError as e:
                failed += 1
                at = "/".join(str(p) for p in e.path) if hasattr(e, "path") else ""
                print(f"FAILED {what}: {e.message} at {at}")
            except kubernetes_validate.SchemaNotFoundError as e:
                failed += 1
                print(f"FAILED {what}: no schema ({e})")
    return 1 if failed else 0


def ci(schema, path):
    # check-jsonschema's vendored schemas need no network.
    return subprocess.call(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", f"vendor.{schema}", path]
    )


def dockerfile(path):
    import dockerfile as parser  # the official Go parser (moby/buildkit)

    print(
        json.dumps(
            [
                {"cmd": c.cmd.upper(), "flags": list(c.flags), "value": list(c.value), "json": c.json}
                for c in parser.parse_file(path)
            ]
        )
    )
    return 0


def main(argv):
    if len(argv) >= 3 and argv[0] == "k8s":
        return k8s(argv[1], argv[2:])
    if len(argv) == 3 and argv[0] == "ci":
        return ci(argv[1], argv[2])
    if len(argv) == 2 and argv[0] == "json":
        print(json.dumps(documents(argv[1])))
        return 0
    if len(argv) == 2 and argv[0] == "dockerfile":
        return dockerfile(argv[1])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
