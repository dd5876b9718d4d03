"""Makes the pinned Kubernetes JSON schemas in this folder.

Source: the PyPI wheel kubernetes-validate==1.37.0 (Apache-2.0, see
LICENSE.kubernetes-validate), whose kubernetes-json-schema/v1.33.0-local-strict/
holds one JSON Schema (draft 2020-12) per resource, with $refs into a shared
_definitions.json. This keeps the four resources deploy/ uses and makes each
standalone: the definitions it reaches are copied into its own $defs and the
$refs rewritten to them. Descriptions are dropped (size); nothing else changes.

    pip download --no-deps kubernetes-validate==1.37.0 -d /tmp/kv
    python3 deploy/schemas/kubernetes/bundle.py /tmp/kv/kubernetes_validate-1.37.0-py3-none-any.whl
"""

import json
import pathlib
import sys
import zipfile

VERSION = "v1.33.0-local-strict"
RESOURCES = ["deployment-apps-v1", "service-v1", "persistentvolumeclaim-v1", "job-batch-v1"]
PREFIX = "/api/_definitions.json#/$defs/"

wheel = zipfile.ZipFile(sys.argv[1])
base = f"kubernetes_validate/kubernetes-json-schema/{VERSION}/"
defs = json.loads(wheel.read(base + "_definitions.json"))["$defs"]
out = pathlib.Path(__file__).parent


def walk(node, found):
    """Drops descriptions, rewrites $refs, and collects the definitions reached."""
    if isinstance(node, list):
        return [walk(n, found) for n in node]
    if not isinstance(node, dict):
        return node
    res = {}
    for k, v in node.items():
        if k == "description" and isinstance(v, str):
            continue
        if k == "$ref" and isinstance(v, str):
            name = v[len(PREFIX):] if v.startswith(PREFIX) else v.removeprefix("#/$defs/")
            if name not in found:
                found[name] = None
                found[name] = walk(defs[name], found)
            res[k] = "#/$defs/" + name
            continue
        res[k] = walk(v, found)
    return res


for name in RESOURCES:
    schema = json.loads(wheel.read(base + name + ".json"))
    found = {}
    top = walk(schema, found)
    top["$defs"] = {k: found[k] for k in sorted(found)}
    (out / f"{name}.json").write_text(json.dumps(top, indent=1, sort_keys=True) + "\n")
    print(name, len(found), "definitions")
