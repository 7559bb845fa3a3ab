"""Record what the real TensorRT bindings offer for each name in edge_agent/engine/trt_surface.py.

Run inside a subprocess whose LD_LIBRARY_PATH holds the stub NVIDIA libraries (see
scripts/fetch_trt_bindings.py): prints {name: {"exists", "kind", "signatures"}} as JSON.
`python tests/engine/trt_introspect.py --write` regenerates trt_surface_snapshot.json from every
fetched version (the fakes of the builder tests are generated from that snapshot).
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BINDINGS = REPO / ".cache" / "trt-bindings"
SNAPSHOT = Path(__file__).resolve().parent / "trt_surface_snapshot.json"
_SIGNATURE = re.compile(r"^(?:\d+\. )?(\w+)\((.*)\) -> ")


def _params(doc):
    """Parameter lists (name, has_default) of each overload in a pybind11 docstring, self excluded."""
    out = []
    for line in (doc or "").splitlines():
        match = _SIGNATURE.match(line.strip())
        if not match:
            continue
        params, depth, current = [], 0, ""
        for char in match.group(2) + ",":
            if char in "[(":
                depth += 1
            elif char in "])":
                depth -= 1
            if char == "," and depth == 0:
                if current.strip():
                    params.append(current.strip())
                current = ""
            else:
                current += char
        names = [(p.split(":")[0].strip(), "=" in p) for p in params]
        out.append([n for n in names if n[0] != "self"])
    return out


def introspect(trt, names):
    result = {}
    for name in names:
        owner, obj, exists = None, trt, True
        for part in name.split("."):
            owner = obj
            if not hasattr(obj, part):
                exists = False
                break
            obj = getattr(obj, part)
        entry = {"exists": exists}
        if exists:
            raw = owner.__dict__.get(name.split(".")[-1]) if isinstance(owner, type) else None
            if isinstance(obj, type):
                entry["kind"] = "class"
                entry["signatures"] = _params(getattr(obj.__init__, "__doc__", ""))
            elif isinstance(raw, property):
                entry["kind"] = "property"
            elif callable(obj) and not isinstance(obj, int):
                entry["kind"] = "method"
                entry["signatures"] = _params(obj.__doc__)
            else:
                entry["kind"] = "value"
        result[name] = entry
    return result


def run_version(version):
    """Introspection of one fetched version (or one derived from a fetched one), or the reason it is not
    available."""
    from edge_agent.engine.trt_surface import DERIVED_VERSIONS

    if version in DERIVED_VERSIONS:
        from trt_surface_852 import derive_852

        data, reason = run_version(DERIVED_VERSIONS[version])
        if data is None:
            return None, "derived from {}, which is unavailable: {}".format(DERIVED_VERSIONS[version], reason)
        return {"version": version, "surface": derive_852(data["surface"])}, None
    return _run_real(version)


def run_names(version, names):
    """{name: entry} of the real bindings of `version` for names outside the declared surface."""
    return _run_real(version, names)


def _run_real(version, names=None):
    folder = BINDINGS / version
    if (folder / "FAILED").exists():
        return None, (folder / "FAILED").read_text().strip()
    if not (folder / "stubs" / "READY").exists():
        return None, "not fetched (run scripts/fetch_trt_bindings.py; scripts/test.sh does)"
    env = dict(os.environ, LD_LIBRARY_PATH=str(folder / "stubs"), PYTHONPATH=os.pathsep.join([str(folder), str(REPO)]))
    extra = ["--names", ",".join(names)] if names else []
    proc = subprocess.run([sys.executable, __file__, "--child"] + extra, env=env, capture_output=True, text=True,
                          timeout=120)
    if proc.returncode != 0:
        return None, "importing the {} bindings failed: {}".format(version, proc.stderr.strip()[-800:])
    return json.loads(proc.stdout), None


def main():
    if "--child" in sys.argv:
        import tensorrt_bindings as trt

        from edge_agent.engine.trt_surface import NAMES

        names = sys.argv[sys.argv.index("--names") + 1].split(",") if "--names" in sys.argv else sorted(NAMES)
        print(json.dumps({"version": trt.__version__, "surface": introspect(trt, names)}))
        return 0
    if "--write" in sys.argv:
        from edge_agent.engine.trt_surface import SUPPORTED_VERSIONS

        snapshot = {}
        for version in SUPPORTED_VERSIONS:
            data, reason = run_version(version)
            if data is None:
                print("cannot record {}: {}".format(version, reason))
                return 1
            snapshot[version] = data["surface"]
        SNAPSHOT.write_text(json.dumps(snapshot, indent=1, sort_keys=True) + "\n")
        print("wrote", SNAPSHOT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
